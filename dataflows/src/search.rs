//! The search documents view: one document per listed product, what the search index keeps of
//! it (ADR 0013) — its text and price from the catalog, its reviews, and its popularity (views and
//! ordered units, decayed in event time). Availability is not in it: it changes with every
//! reservation, and reaches the index from the decider's product documents, beside the text
//! (`emporium-pipeline`'s search sink). Served at `GET /v1/views/search_documents/{product_id}`;
//! tested against a plain fold in `dataflows/tests/search_documents.rs`.
//!
//! The input collection holds every catalog event of a product as a row with its `seq`, so the
//! latest wins exactly as in the decider's catalog ([`crate::catalog`]): a `product_upserted`
//! replaces the listing, a later `price_changed` its price, a later `product_discontinued` takes
//! the product out of the view (a later `product_upserted` lists it again). Ordered units name a
//! sku, so they are joined with the sku's owner: among the products' current listings naming it,
//! the one with the highest `seq` (the rule of [`crate::products`]).
//!
//! **Popularity by forward decay** (Cormode et al., ICDE 2009). A view counts [`VIEW_WEIGHT`],
//! an ordered unit [`ORDER_WEIGHT`], decayed with a half-life of [`HALF_LIFE_HOURS`] in event
//! time.
//! Decaying towards a moving "now" would change every document as time passes; instead each
//! interaction at hour `h` weighs `w · 2^((h − E) / H)` for a fixed epoch `E`, so a document
//! changes only when an interaction arrives, and the order of two products by popularity is the
//! order of their decayed counts at any "now". The document keeps `log2` of the sum, rounded to
//! 1/16 ([`POPULARITY_STEP`]): an order rewrites a product's document only when it moves the
//! decayed count by about 4%, so a popular product's document is not re-indexed on every order.
//!
//! **Views are counted, not read** ([`View::counts`], ADR 0014). They are four events in five:
//! read whole, each a step of its own, they put the pipeline seconds behind at 100k events/s.
//! Counted, their readers send the decider only (product, time), the decider sums them per
//! second of decision time, and the view takes each second's sums as rows `Viewed { product,
//! hour }` whose diff is the count: a product's numbers are re-read once a second at most, not
//! once per view.

use differential_dataflow::VecCollection;
use emporium_schemas::money::Money;
use emporium_schemas::{Event, EventKind, Payload};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::view::View;

/// The weight of one ordered unit.
pub const ORDER_WEIGHT: i64 = 10;
/// The weight of one view of the product's page: 1, so a view row's diff is its count.
pub const VIEW_WEIGHT: i64 = 1;
const _: () = assert!(VIEW_WEIGHT == 1, "a counted view's row weighs its count");
/// The half-life of an interaction's weight, in event time.
pub const HALF_LIFE_HOURS: f64 = 7.0 * 24.0;
/// The epoch of the decay: hours since 1970 of 2020-01-01T00:00Z.
pub const DECAY_EPOCH_HOUR: i64 = 438_288;
/// Popularity is `log2` of the decayed count rounded to this many steps per doubling.
pub const POPULARITY_STEP: f64 = 16.0;

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
    /// Units of a sku ordered in an hour of event time (the diff counts them, times
    /// [`ORDER_WEIGHT`]).
    Ordered {
        sku: String,
        hour: i64,
    },
    /// Views of a product in an hour of event time (the diff counts them, times
    /// [`VIEW_WEIGHT`]).
    Viewed {
        product: String,
        hour: i64,
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
    /// `log2` of the decayed interest, in 1/[`POPULARITY_STEP`] (`i64::MIN`: none yet).
    pub popularity: i64,
}

impl SearchFields {
    pub fn mean_rating(&self) -> f64 {
        if self.reviews == 0 {
            0.0
        } else {
            self.stars as f64 / self.reviews as f64
        }
    }

    /// The popularity the index sorts by: `log2` of the decayed interest, 0 with none.
    pub fn popularity_score(&self) -> f64 {
        if self.popularity == i64::MIN {
            0.0
        } else {
            self.popularity as f64 / POPULARITY_STEP
        }
    }
}

/// The hour of event time of `event`.
fn hour(event: &Event) -> i64 {
    event.occurred_at.timestamp_millis().div_euclid(3_600_000)
}

/// The popularity of interactions weighed per hour (`(hour, weight)`, hours ascending, every
/// weight positive): `log2 Σ w · 2^((h − E)/H)`, summed with the largest term factored out so
/// nothing overflows, rounded to 1/[`POPULARITY_STEP`]; `i64::MIN` with none.
pub fn popularity(per_hour: impl IntoIterator<Item = (i64, i64)>) -> i64 {
    let terms: Vec<f64> = per_hour
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .map(|(h, w)| (h - DECAY_EPOCH_HOUR) as f64 / HALF_LIFE_HOURS + (w as f64).log2())
        .collect();
    let Some(top) = terms.iter().copied().reduce(f64::max) else {
        return i64::MIN;
    };
    let sum: f64 = terms.iter().map(|t| (t - top).exp2()).sum();
    ((top + sum.log2()) * POPULARITY_STEP).round() as i64
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
    /// Interest in an hour: the diff is ordered units times [`ORDER_WEIGHT`] plus views times
    /// [`VIEW_WEIGHT`].
    Interest(i64),
}

/// A listed product's text, price and first listing time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Text {
    listing: TextListing,
    price: Money,
    listed_ms: i64,
}

/// A product's reviews (count, sum of stars) and popularity.
type Numbers = (u64, u64, i64);

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
                | EventKind::OrderPlaced
        )
    }

    fn counts(kind: EventKind) -> bool {
        kind == EventKind::ProductViewed
    }

    fn counted(kind: EventKind, product: &str, hour: i64) -> Option<SearchRow> {
        (kind == EventKind::ProductViewed).then(|| SearchRow::Viewed {
            product: product.to_owned(),
            hour,
        })
    }

    fn rows(seq: u64, event: &Event, out: &mut Vec<(SearchRow, isize)>) {
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
            Payload::OrderPlaced(o) => {
                for line in &o.lines {
                    if let Ok(units @ 1..) = isize::try_from(line.qty.saturating_mul(ORDER_WEIGHT))
                    {
                        out.push((
                            SearchRow::Ordered {
                                sku: line.sku.clone(),
                                hour: hour(event),
                            },
                            units,
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, SearchRow>,
    ) -> VecCollection<'s, u64, (String, SearchFields)> {
        // Among the products' current listings naming a sku, the one listed last owns it (a
        // product's earlier listings name skus it may no longer have).
        let owners = rows
            .clone()
            .flat_map(|row| match row {
                SearchRow::Listed {
                    product,
                    seq,
                    listing,
                    ..
                } => Some((product, (seq, listing.skus))),
                _ => None,
            })
            .reduce_named(
                "SearchCurrentListing",
                |_product: &String, listings: &[(&(u64, Vec<String>), isize)], out| {
                    // In (seq, skus) order: the last is the latest listing.
                    if let Some((latest, _)) = listings.last() {
                        out.push(((*latest).clone(), 1isize));
                    }
                },
            )
            .flat_map(|(product, (seq, skus))| {
                skus.into_iter()
                    .map(move |sku| (sku, (seq, product.clone())))
                    .collect::<Vec<_>>()
            })
            .reduce_named(
                "SearchSkuOwner",
                |_sku: &String, listers: &[(&(u64, String), isize)], out| {
                    if let Some(((_, owner), _)) = listers.last() {
                        out.push((owner.clone(), 1isize));
                    }
                },
            );
        let ordered = rows.clone().flat_map(|row| match row {
            SearchRow::Ordered { sku, hour } => Some((sku, hour)),
            _ => None,
        });
        // The diff of an ordered row is its units times ORDER_WEIGHT: interest.
        let ordered = owners.join_map(ordered, |_sku, owner, hour| {
            (owner.clone(), Counted::Interest(*hour))
        });
        // Two reduces, so that an order (thousands a second) re-reads a product's numbers, not
        // its text: the text from the catalog events, the numbers from reviews, views and orders
        // (and a mark for every listing, so a listed product has numbers before its first one).
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
        // A view row's diff is its count, times VIEW_WEIGHT (1).
        let numbers = rows
            .flat_map(|row| match row {
                SearchRow::Listed { product, .. } => Some((product, Counted::Listed)),
                SearchRow::Reviewed { product, stars } => Some((product, Counted::Reviewed(stars))),
                SearchRow::Viewed { product, hour } => Some((product, Counted::Interest(hour))),
                _ => None,
            })
            .concat(ordered)
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

    fn document(product_id: &String, f: &SearchFields) -> serde_json::Value {
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
            "popularity": f.popularity_score(),
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

/// A product's numbers from its reviews and interest, in `Counted` order (interest by hour).
fn numbers_of(parts: &[(&Counted, isize)]) -> Numbers {
    let (mut reviews, mut stars) = (0u64, 0u64);
    let mut interest: Vec<(i64, i64)> = Vec::new();
    for (part, diff) in parts {
        let n = (*diff).max(0) as u64;
        match part {
            Counted::Listed => {}
            Counted::Reviewed(s) => {
                reviews += n;
                stars += n * u64::from(*s);
            }
            Counted::Interest(hour) => interest.push((*hour, n as i64)),
        }
    }
    (reviews, stars, popularity(interest))
}

fn fields(text: &Text, (reviews, stars, popularity): &Numbers) -> SearchFields {
    SearchFields {
        title: text.listing.title.clone(),
        brand: text.listing.brand.clone(),
        category_path: text.listing.category_path.clone(),
        description: text.listing.description.clone(),
        price: text.price.clone(),
        listed_ms: text.listed_ms,
        reviews: *reviews,
        stars: *stars,
        popularity: *popularity,
    }
}
