//! *Trending*: per category (each prefix of a product's category path, `Electronics` and
//! `Electronics/Audio`, and [`ALL`] for the whole catalogue), the products with the most
//! interest lately, in two windows of event time: interest decayed with a half-life of 1 hour
//! and of 24 hours. Served at `GET /v1/trending?category=&window=1h|24h`; tested against a plain
//! fold in `dataflows/tests/recommendations.rs`.
//!
//! **Interest** is [`crate::popularity`]'s: a product view counts 1 and an ordered unit
//! [`crate::popularity::ORDER_WEIGHT`], per hour of event time (views are counted, not read: ADR
//! 0014). A product's score in a window of half-life `H` hours is `log2 Σ w_h · 2^((h − E)/H)`
//! over its hours `h` with interest `w_h` (`E`: 2020-01-01), in steps of 1/16: ranking by it is
//! ranking by the interest decayed to any common "now" (the factor `2^((now − E)/H)` is the
//! same for every product), so the view needs no clock and no watermark, and a product nobody
//! looks at any more falls behind the ones people look at now. The steps make most new views
//! of a busy product change nothing downstream.
//!
//! A product belongs to the categories of its latest listing; ties go to the product listed
//! first. Each list keeps its [`TOP_K`] best, ranked by [`super::top_k`] (an ordered set per
//! list: in `reduce`s, even in three levels of buckets, each round re-read most of the
//! catalogue in the whole catalogue's list; ADR 0015).

use differential_dataflow::VecCollection;
use emporium_schemas::{Event, EventKind, Payload};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::changes::Json;

use crate::owners::sku_owners;
use crate::popularity::{ORDER_WEIGHT, POPULARITY_STEP, decayed_log2};
use crate::view::{Count, Ids, View};

/// The category of the whole catalogue.
pub const ALL: &str = "*";
/// Products kept per category and window.
pub const TOP_K: usize = 50;
/// The windows: their names and half-lives in hours.
pub const WINDOWS: [(&str, f64); 2] = [("1h", 1.0), ("24h", 24.0)];

/// The trending view.
pub struct Trending;

/// A row of the view's input, names as their [`Ids`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TrendingRow {
    /// A `product_upserted` naming these skus and categories (every prefix of its path, and
    /// [`ALL`]), the `seq`-th step.
    Listed {
        product: u32,
        seq: u64,
        skus: Vec<u32>,
        categories: Vec<u32>,
    },
    /// Units of a sku ordered in an hour of event time (the diff counts them).
    Ordered { sku: u32, hour: i64 },
    /// Views of a product in an hour of event time (the diff counts them).
    Viewed { product: u32, hour: i64 },
}

/// One list, best first: (product id, score in 1/16 of a doubling).
pub type Ranked = Vec<(u32, u64)>;

/// A category's lists, one per window of [`WINDOWS`].
pub type Lists = Vec<Ranked>;

/// The score of a product's interest per hour in a window of half-life `half_life` hours:
/// [`decayed_log2`] in 1/[`POPULARITY_STEP`]; `None` without interest.
pub fn score(per_hour: impl IntoIterator<Item = (i64, i64)>, half_life: f64) -> Option<u64> {
    let (log, _) = decayed_log2(per_hour, half_life)?;
    Some((log * POPULARITY_STEP).round().max(0.0) as u64)
}

/// A category path's names in [`Trending`]: [`ALL`], then each prefix (`A`, `A/B`, …).
pub fn categories(path: &[String]) -> Vec<String> {
    let mut out = vec![ALL.to_owned()];
    let mut prefix = String::new();
    for level in path {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(level);
        out.push(prefix.clone());
    }
    out
}

impl View for Trending {
    const NAME: &'static str = "trending";
    type Row = TrendingRow;
    /// The category's id.
    type Key = u32;
    type Value = Lists;

    fn reads(kind: EventKind) -> bool {
        matches!(kind, EventKind::ProductUpserted | EventKind::OrderPlaced)
    }

    fn counts(kind: EventKind) -> bool {
        kind == EventKind::ProductViewed
    }

    fn counted(_seq: u64, count: &Count, ids: &mut Ids) -> Option<TrendingRow> {
        (count.kind == EventKind::ProductViewed).then(|| TrendingRow::Viewed {
            product: ids.id(&count.product),
            hour: count.hour,
        })
    }

    fn rows(seq: u64, event: &Event, ids: &mut Ids, out: &mut Vec<(TrendingRow, isize)>) {
        match &event.payload {
            Payload::ProductUpserted(p) => {
                let row = TrendingRow::Listed {
                    product: ids.id(&p.product_id),
                    seq,
                    skus: p.skus.iter().map(|s| ids.id(s)).collect(),
                    categories: categories(&p.category_path)
                        .iter()
                        .map(|c| ids.id(c))
                        .collect(),
                };
                out.push((row, 1));
            }
            Payload::OrderPlaced(o) => {
                let hour = crate::view::event_hour(event.occurred_at);
                for line in &o.lines {
                    if let Ok(units @ 1..) = isize::try_from(line.qty.saturating_mul(ORDER_WEIGHT))
                    {
                        let sku = ids.id(&line.sku);
                        out.push((TrendingRow::Ordered { sku, hour }, units));
                    }
                }
            }
            _ => {}
        }
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, TrendingRow>,
    ) -> VecCollection<'s, u64, (u32, Lists)> {
        let listings = rows.clone().flat_map(|row| match row {
            TrendingRow::Listed {
                product,
                seq,
                skus,
                categories,
            } => Some((product, (seq, skus, categories))),
            _ => None,
        });
        let owners = sku_owners(
            listings
                .clone()
                .map(|(product, (seq, skus, _))| (product, (seq, skus))),
        );
        let in_categories = listings
            .map(|(product, (seq, _, categories))| (product, (seq, categories)))
            .reduce_named(
                "Categories",
                |_product, listings: &[(&(u64, Vec<u32>), isize)], out| {
                    // In (seq, …) order: the last is the latest listing.
                    if let Some(((_, categories), _)) = listings.last() {
                        out.push((categories.clone(), 1isize));
                    }
                },
            );
        let ordered = rows.clone().flat_map(|row| match row {
            TrendingRow::Ordered { sku, hour } => Some((sku, hour)),
            _ => None,
        });
        let ordered = owners.join_map(ordered, |_sku, owner, hour| (*owner, *hour));
        let scored = rows
            .flat_map(|row| match row {
                TrendingRow::Viewed { product, hour } => Some((product, hour)),
                _ => None,
            })
            .concat(ordered)
            .reduce_named("Trend", |_product, hours: &[(&i64, isize)], out| {
                for (window, (_, half_life)) in WINDOWS.iter().enumerate() {
                    let per_hour = hours.iter().map(|(h, n)| (**h, (*n).max(0) as i64));
                    if let Some(s) = score(per_hour, *half_life) {
                        out.push(((window, s), 1isize));
                    }
                }
            });
        let per_category = scored
            .join_map(in_categories, |product, (window, s), categories| {
                (*product, *window, *s, categories.clone())
            })
            .flat_map(|(product, window, s, categories)| {
                categories
                    .into_iter()
                    .map(move |c| (((c, window), product), s))
            });
        // The whole catalogue's list ranks every product: an ordered set per list.
        super::top_k(per_category, TOP_K)
            .map(|((category, window), list)| (category, (window, list)))
            .reduce_named(
                "Windows",
                |_category, lists: &[(&(usize, Ranked), isize)], out| {
                    let mut value: Lists = vec![Vec::new(); WINDOWS.len()];
                    for ((window, list), _) in lists {
                        if let Some(slot) = value.get_mut(*window) {
                            *slot = list.clone();
                        }
                    }
                    out.push((value, 1isize));
                },
            )
    }

    fn document(category: &u32, lists: &Lists, ids: &Ids) -> serde_json::Value {
        Self::json(category, lists, ids).value()
    }

    /// `{"1h": [{"product_id": …, "score": s}, …], "24h": […], "category": …}`.
    fn json(category: &u32, lists: &Lists, ids: &Ids) -> Json {
        Json::of(&TrendingDoc {
            category: ids.name(*category),
            lists,
            ids,
        })
    }

    fn key_name(category: &u32, ids: &Ids) -> String {
        ids.name(*category).to_owned()
    }
}

/// A category's document: its list per window (named as in [`WINDOWS`]: `1h` and `24h`, which
/// sort before `category`), then its name.
struct TrendingDoc<'a> {
    category: &'a str,
    lists: &'a Lists,
    ids: &'a Ids,
}

impl Serialize for TrendingDoc<'_> {
    fn serialize<Z: Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        let mut map = z.serialize_map(Some(WINDOWS.len() + 1))?;
        for ((name, _), list) in WINDOWS.iter().zip(self.lists) {
            let entries: Vec<super::Entry<'_, f64>> = list
                .iter()
                .map(|(p, s)| super::Entry {
                    product: self.ids.name(*p),
                    score_name: "score",
                    score: *s as f64 / POPULARITY_STEP,
                })
                .collect();
            map.serialize_entry(name, &entries)?;
        }
        map.serialize_entry("category", self.category)?;
        map.end()
    }
}
