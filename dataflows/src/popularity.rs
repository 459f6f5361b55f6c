//! The product popularity view: per product, how much shoppers want it — its page views and its
//! ordered units, decayed in event time (ADR 0013, ADR 0014). The search index sorts and
//! suggests by it (`sort=popularity`); served at `GET /v1/views/product_popularity/{product_id}`;
//! tested against a plain fold in `dataflows/tests/search_documents.rs`.
//!
//! A view of its own, not a field of the search documents: a view of a product changes its
//! popularity (tail products, with a handful of views each, at nearly every view: some 23k
//! products a second at 80k views a second), and each change here rewrites a number, not the
//! product's whole text in every arrangement, in the store and in the index.
//!
//! **Views are counted, not read** ([`View::counts`], ADR 0014). They are four events in five:
//! read whole, each a step of its own, they put the pipeline seconds behind at 100k events/s.
//! Counted, their readers send the decider only (product, time), the decider sums them per
//! second of decision time, and this view takes each second's sums as rows `Viewed { product,
//! hour }` whose diff is the count.
//!
//! **Ordered units name a sku**, so they are joined with the sku's owner: among the products'
//! current listings naming it, the one with the highest `seq` (the rule of [`crate::products`]).
//!
//! **Popularity by forward decay** (Cormode et al., ICDE 2009). A view counts [`VIEW_WEIGHT`],
//! an ordered unit [`ORDER_WEIGHT`], decayed with a half-life of [`HALF_LIFE_HOURS`] in event
//! time. Decaying towards a moving "now" would change every product as time passes; instead each
//! interaction at hour `h` weighs `w · 2^((h − E) / H)` for a fixed epoch `E`, so a product's
//! popularity changes only when an interaction arrives, and the order of two products by
//! popularity is the order of their decayed counts at any "now". The view keeps `log2` of the
//! sum, rounded to 1/16 ([`POPULARITY_STEP`]): a popular product changes only when its decayed
//! count moves by about 4%.
//!
//! **Precision follows evidence** (ADR 0014). A count of `n` is known to about `1/√n`: a
//! product with three views is not more popular than one with two in any sense a shopper would
//! see, and ranking on it is noise (Algolia's advice for custom ranking attributes is the same:
//! bucket them, so relevance breaks the ties). So, with the evidence `n` the product's
//! interactions ever counted, undecayed, in views (an ordered unit is 10):
//! - `n` < [`MIN_SUPPORT`] (5 views, or half an ordered unit): no popularity yet (it sorts last);
//! - `n` < [`FINE_SUPPORT`] (32 views, about ±18%): whole doublings only (`log2` rounded down);
//! - above: steps of 1/16.
//!
//! The evidence only grows, and the decayed sum only grows, so a product's popularity never goes
//! down and, once it has one, never leaves (a whole doubling rounded down is never above the
//! same `log2` in steps of 1/16). Values stay comparable across products (all are `log2` of the
//! same decayed sum, coarse ones rounded down). And a product changes about five times less often
//! while its count is small:
//! at 80k views a second over a million products, some 4,400 changes a second instead of
//! 22,000 (most views are of tail products with a handful each).

use differential_dataflow::VecCollection;
use emporium_schemas::{Event, EventKind, Payload};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::owners::sku_owners;
use crate::view::{Count, Ids, View, event_hour};

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
/// Below this evidence (interactions ever counted, undecayed, in views) a product has no
/// popularity.
pub const MIN_SUPPORT: i64 = 5;
/// Below this evidence popularity is resolved to whole doublings only.
pub const FINE_SUPPORT: i64 = 32;
/// Slack for the float sums at a whole doubling: a `log2` within this below one counts as on it.
const EDGE: f64 = 1e-9;

/// The product popularity view.
pub struct ProductPopularity;

/// A row of the view's input: one event's contribution.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PopularityRow {
    /// A `product_upserted` naming these skus, the `seq`-th step.
    Listed {
        product: String,
        seq: u64,
        skus: Vec<String>,
    },
    /// Units of a sku ordered in an hour of event time (the diff counts them, times
    /// [`ORDER_WEIGHT`]).
    Ordered { sku: String, hour: i64 },
    /// Views of a product in an hour of event time (the diff counts them, times
    /// [`VIEW_WEIGHT`]).
    Viewed { product: String, hour: i64 },
}

/// `log2` of a product's decayed interest, in 1/[`POPULARITY_STEP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Popularity(pub i64);

impl Popularity {
    /// The popularity the index sorts by: `log2` of the decayed interest.
    pub fn score(self) -> f64 {
        self.0 as f64 / POPULARITY_STEP
    }
}

/// `log2 Σ w · 2^((h − E)/H)` of interactions weighed per hour (`(hour, weight)`, weights ≤ 0
/// ignored) with a half-life of `half_life` hours, summed with the largest term factored out so
/// nothing overflows, and the evidence (the weights' sum); `None` without interactions. What
/// [`popularity`] and [`crate::recs::trending`] rank by.
pub fn decayed_log2(
    per_hour: impl IntoIterator<Item = (i64, i64)>,
    half_life: f64,
) -> Option<(f64, i64)> {
    let (mut terms, mut evidence) = (Vec::new(), 0i64);
    for (h, w) in per_hour.into_iter().filter(|(_, w)| *w > 0) {
        evidence = evidence.saturating_add(w);
        terms.push((h - DECAY_EPOCH_HOUR) as f64 / half_life + (w as f64).log2());
    }
    let top = terms.iter().copied().reduce(f64::max)?;
    let sum: f64 = terms.iter().map(|t| (t - top).exp2()).sum();
    Some((top + sum.log2(), evidence))
}

/// The popularity of interactions weighed per hour (`(hour, weight)`, weights ≤ 0 ignored):
/// [`decayed_log2`] with a half-life of [`HALF_LIFE_HOURS`], at the precision its support allows
/// (module docs); `None` with too little.
pub fn popularity(per_hour: impl IntoIterator<Item = (i64, i64)>) -> Option<Popularity> {
    let (log, evidence) = decayed_log2(per_hour, HALF_LIFE_HOURS)?;
    if evidence < MIN_SUPPORT {
        None
    } else if evidence < FINE_SUPPORT {
        Some(Popularity(((log + EDGE).floor() * POPULARITY_STEP) as i64))
    } else {
        Some(Popularity((log * POPULARITY_STEP).round() as i64))
    }
}

impl View for ProductPopularity {
    const NAME: &'static str = "product_popularity";
    type Row = PopularityRow;
    type Key = String;
    type Value = Popularity;

    fn reads(kind: EventKind) -> bool {
        matches!(kind, EventKind::ProductUpserted | EventKind::OrderPlaced)
    }

    fn counts(kind: EventKind) -> bool {
        kind == EventKind::ProductViewed
    }

    fn counted(_seq: u64, count: &Count, _ids: &mut Ids) -> Option<PopularityRow> {
        (count.kind == EventKind::ProductViewed).then(|| PopularityRow::Viewed {
            product: count.product.clone(),
            hour: count.hour,
        })
    }

    fn rows(seq: u64, event: &Event, _ids: &mut Ids, out: &mut Vec<(PopularityRow, isize)>) {
        match &event.payload {
            Payload::ProductUpserted(p) => out.push((
                PopularityRow::Listed {
                    product: p.product_id.clone(),
                    seq,
                    skus: p.skus.clone(),
                },
                1,
            )),
            Payload::OrderPlaced(o) => {
                for line in &o.lines {
                    if let Ok(units @ 1..) = isize::try_from(line.qty.saturating_mul(ORDER_WEIGHT))
                    {
                        out.push((
                            PopularityRow::Ordered {
                                sku: line.sku.clone(),
                                hour: event_hour(event.occurred_at),
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
        rows: VecCollection<'s, u64, PopularityRow>,
    ) -> VecCollection<'s, u64, (String, Popularity)> {
        let owners = sku_owners(rows.clone().flat_map(|row| match row {
            PopularityRow::Listed { product, seq, skus } => Some((product, (seq, skus))),
            _ => None,
        }));
        let ordered = rows.clone().flat_map(|row| match row {
            PopularityRow::Ordered { sku, hour } => Some((sku, hour)),
            _ => None,
        });
        // The diff of an ordered row is its units times ORDER_WEIGHT, of a viewed row its views
        // (times VIEW_WEIGHT, 1): interest per (product, hour).
        let ordered = owners.join_map(ordered, |_sku, owner, hour| (owner.clone(), *hour));
        rows.flat_map(|row| match row {
            PopularityRow::Viewed { product, hour } => Some((product, hour)),
            _ => None,
        })
        .concat(ordered)
        .reduce_named("Popularity", |_product: &String, hours, out| {
            // A product with enough interest has a popularity.
            let per_hour = hours.iter().map(|(h, n)| (**h, (*n).max(0) as i64));
            if let Some(p) = popularity(per_hour) {
                out.push((p, 1isize));
            }
        })
    }

    fn document(product_id: &String, p: &Popularity, _ids: &Ids) -> serde_json::Value {
        json!({
            "product_id": product_id,
            "popularity": p.score(),
        })
    }
}
