//! The search documents view: one document per listed product, what the search index keeps of
//! it (ADR 0013) — its text and price from the catalog, and its reviews. Availability is not in
//! it: it changes with every reservation, and reaches the index from the decider's product
//! documents, beside the text (`emporium-pipeline`'s search sink). Popularity is not in it
//! either: it changes with every view, and is a view of its own ([`crate::popularity`], ADR
//! 0014), so that a view does not rewrite a product's whole document. Served at
//! `GET /v1/views/search_documents/{product_id}`; tested against a plain fold in
//! `dataflows/tests/search_documents.rs`.
//!
//! The input collection holds every catalog event of a product as a row with its `seq`, so the
//! latest wins exactly as in the decider's catalog ([`crate::catalog`]): a `product_upserted`
//! replaces the listing, a later `price_changed` its price, a later `product_discontinued` takes
//! the product out of the view (a later `product_upserted` lists it again).

use differential_dataflow::VecCollection;
use emporium_schemas::money::Money;
use emporium_schemas::{Event, EventKind, Payload};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::view::{Ids, View};

/// The search documents view.
pub struct SearchDocuments;

/// A row of the view's input: one event's contribution.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SearchRow {
    /// A `product_upserted`, the `seq`-th step, at `at_ms` in event time.
    Listed {
        product: String,
        seq: u64,
        at_ms: i64,
        listing: TextListing,
    },
    Priced {
        product: String,
        seq: u64,
        price: Money,
    },
    Discontinued {
        product: String,
        seq: u64,
    },
    /// A review with this many stars (the diff counts them).
    Reviewed {
        product: String,
        stars: u8,
    },
}

/// What a `product_upserted` says that the document keeps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TextListing {
    pub skus: Vec<String>,
    pub title: String,
    pub brand: String,
    pub category_path: Vec<String>,
    pub description: String,
    pub price: Money,
}

/// One product's search document, as the view maintains it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SearchFields {
    pub title: String,
    pub brand: String,
    pub category_path: Vec<String>,
    pub description: String,
    pub price: Money,
    /// When it was first listed (event time of its first `product_upserted`).
    pub listed_ms: i64,
    /// How many reviews, and the sum of their stars.
    pub reviews: u64,
    pub stars: u64,
}

impl SearchFields {
    pub fn mean_rating(&self) -> f64 {
        if self.reviews == 0 {
            0.0
        } else {
            self.stars as f64 / self.reviews as f64
        }
    }
}

/// What the text reduce sees of a product: its catalog events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Cataloged {
    Listed(u64, i64, TextListing),
    Priced(u64, Money),
    Discontinued(u64),
}

/// What the numbers reduce sees of a product.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Counted {
    /// It was listed (once per listing: the reduce gives every listed product numbers).
    Listed,
    Reviewed(u8),
}

/// A listed product's text, price and first listing time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Text {
    listing: TextListing,
    price: Money,
    listed_ms: i64,
}

/// A product's reviews (count, sum of stars).
type Numbers = (u64, u64);

/// What the last reduce puts together.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Joined {
    Text(Text),
    Numbers(Numbers),
}

impl View for SearchDocuments {
    const NAME: &'static str = "search_documents";
    type Row = SearchRow;
    type Key = String;
    type Value = SearchFields;

    fn reads(kind: EventKind) -> bool {
        matches!(
            kind,
            EventKind::ProductUpserted
                | EventKind::PriceChanged
                | EventKind::ProductDiscontinued
                | EventKind::ReviewPosted
        )
    }

    fn rows(seq: u64, event: &Event, _ids: &mut Ids, out: &mut Vec<(SearchRow, isize)>) {
        match &event.payload {
            Payload::ProductUpserted(p) => out.push((
                SearchRow::Listed {
                    product: p.product_id.clone(),
                    seq,
                    at_ms: event.occurred_at.timestamp_millis(),
                    listing: TextListing {
                        skus: p.skus.clone(),
                        title: p.title.clone(),
                        brand: p.brand.clone(),
                        category_path: p.category_path.clone(),
                        description: p.description.clone(),
                        price: p.price.clone(),
                    },
                },
                1,
            )),
            Payload::PriceChanged(p) => out.push((
                SearchRow::Priced {
                    product: p.product_id.clone(),
                    seq,
                    price: p.price.clone(),
                },
                1,
            )),
            Payload::ProductDiscontinued(p) => out.push((
                SearchRow::Discontinued {
                    product: p.product_id.clone(),
                    seq,
                },
                1,
            )),
            Payload::ReviewPosted(r) => {
                if let Ok(stars @ 1..=5) = u8::try_from(r.rating) {
                    out.push((
                        SearchRow::Reviewed {
                            product: r.product_id.clone(),
                            stars,
                        },
                        1,
                    ));
                }
            }
            _ => {}
        }
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, SearchRow>,
    ) -> VecCollection<'s, u64, (String, SearchFields)> {
        // Two reduces, so that a review re-reads a product's numbers, not its text: the text
        // from the catalog events, the numbers from reviews (and a mark for every listing, so a
        // listed product has numbers before its first review).
        let text = rows
            .clone()
            .flat_map(|row| match row {
                SearchRow::Listed {
                    product,
                    seq,
                    at_ms,
                    listing,
                } => Some((product, Cataloged::Listed(seq, at_ms, listing))),
                SearchRow::Priced {
                    product,
                    seq,
                    price,
                } => Some((product, Cataloged::Priced(seq, price))),
                SearchRow::Discontinued { product, seq } => {
                    Some((product, Cataloged::Discontinued(seq)))
                }
                _ => None,
            })
            .reduce_named("SearchText", |_product: &String, parts, out| {
                if let Some(text) = text_of(parts) {
                    out.push((text, 1isize));
                }
            });
        let numbers = rows
            .flat_map(|row| match row {
                SearchRow::Listed { product, .. } => Some((product, Counted::Listed)),
                SearchRow::Reviewed { product, stars } => Some((product, Counted::Reviewed(stars))),
                _ => None,
            })
            .reduce_named("SearchNumbers", |_product: &String, parts, out| {
                out.push((numbers_of(parts), 1isize));
            });
        // A reduce, not a join: its output at a time is consolidated (a join's is not, and a
        // value inserted and retracted at one time would read as inserted downstream).
        text.map(|(product, text)| (product, Joined::Text(text)))
            .concat(numbers.map(|(product, numbers)| (product, Joined::Numbers(numbers))))
            .reduce_named("SearchDocument", |_product: &String, parts, out| {
                let (mut text, mut numbers) = (None, None);
                for (part, _) in parts {
                    match part {
                        Joined::Text(t) => text = Some(t),
                        Joined::Numbers(n) => numbers = Some(n),
                    }
                }
                if let (Some(text), Some(numbers)) = (text, numbers) {
                    out.push((fields(text, numbers), 1));
                }
            })
    }

    fn document(product_id: &String, f: &SearchFields, _ids: &Ids) -> serde_json::Value {
        json!({
            "product_id": product_id,
            "title": f.title,
            "brand": f.brand,
            "category_path": f.category_path,
            "description": f.description,
            "price_minor": f.price.amount_minor,
            "currency": f.price.currency,
            "reviews": f.reviews,
            "mean_rating": f.mean_rating(),
            "listed_ms": f.listed_ms,
        })
    }
}

/// A product's text from its catalog events, in `Cataloged` order (so listings by `seq`);
/// `None` when it is not listed, or discontinued since it was last listed.
fn text_of(parts: &[(&Cataloged, isize)]) -> Option<Text> {
    let mut first: Option<i64> = None;
    let mut latest: Option<(u64, &TextListing)> = None;
    let mut price: Option<(u64, &Money)> = None;
    let mut discontinued = 0u64;
    for (part, _) in parts {
        match part {
            Cataloged::Listed(seq, at_ms, listing) => {
                first.get_or_insert(*at_ms);
                latest = Some((*seq, listing));
            }
            Cataloged::Priced(seq, p) => price = Some((*seq, p)),
            Cataloged::Discontinued(seq) => discontinued = discontinued.max(*seq),
        }
    }
    let (listed_seq, listing) = latest?;
    if discontinued > listed_seq {
        return None;
    }
    let price = match price {
        Some((seq, p)) if seq > listed_seq => p.clone(),
        _ => listing.price.clone(),
    };
    Some(Text {
        listing: listing.clone(),
        price,
        listed_ms: first.unwrap_or(0),
    })
}

/// A product's numbers from its reviews.
fn numbers_of(parts: &[(&Counted, isize)]) -> Numbers {
    let (mut reviews, mut stars) = (0u64, 0u64);
    for (part, diff) in parts {
        if let Counted::Reviewed(s) = part {
            let n = (*diff).max(0) as u64;
            reviews += n;
            stars += n * u64::from(*s);
        }
    }
    (reviews, stars)
}

fn fields(text: &Text, (reviews, stars): &Numbers) -> SearchFields {
    SearchFields {
        title: text.listing.title.clone(),
        brand: text.listing.brand.clone(),
        category_path: text.listing.category_path.clone(),
        description: text.listing.description.clone(),
        price: text.price.clone(),
        listed_ms: text.listed_ms,
        reviews: *reviews,
        stars: *stars,
    }
}
