//! *Similar products* (item-to-item collaborative filtering, as Amazon's recommender and
//! differential-dataflow's `itembased_cf` example): per product, the products bought by the
//! same users — in any order, not only the same one — by cosine similarity of the products'
//! buyer sets, top [`TOP_K`]. Served at `GET /v1/products/{id}/recommendations?kind=similar` and
//! used by `GET /v1/users/{id}/recommendations`; tested against a plain fold in
//! `dataflows/tests/recommendations.rs`.
//!
//! **What counts.** A user's purchases are [`super::also_bought`]'s counted purchases (paid, not
//! cancelled, not returned, not of an erased user), one per (user, product) at the time of its
//! latest payment. Retractions are therefore exact as there: a cancellation, a return or an
//! erasure takes the purchase out of every score it was in.
//!
//! **Caps** (Schelter et al., Mahout's `maxPrefsPerUser`/`maxSimilaritiesPerItem`): a user counts
//! with their [`USER_CAP`] latest products, a product with its [`ITEM_CAP`] latest buyers (among
//! the purchases the user cap kept). One very active user adds at most `USER_CAP²` pairs, and a
//! bestseller's similarities are over a bounded set of buyers, so its score changes at each sale
//! touch a bounded number of pairs.
//!
//! **Score.** `k / √(n_a · n_b)` — `k` buyers of both, `n` buyers of each (after the caps) —
//! in millionths, for pairs with at least [`MIN_BUYERS`] common buyers (one shared buyer is
//! noise: it would put any two products a single user bought at similarity 1). Cosine rather
//! than the log-likelihood ratio because it needs no count of all users: the LLR of every pair
//! changes with each new user, which would re-rank every list at every first purchase (ADR 0015).
//! Ties go to the product listed first.
//!
//! **Walked from views.** The user route walks these lists from the user's recent *views*
//! (`serving::recommendations::USER_WALKS`): the offline evaluation scores that above walking
//! them from the recent purchases, and above popularity (ADR 0015).
//!
//! **Purchases only, not views.** Vectors that also held each user's 20 latest viewed products
//! (the "purchase and view vectors") were built and measured (ADR 0015, option S3;
//! commit `c643e3e`): no better offline, and 16 times the cost, because nearly every view
//! changes a product's user count and so every score of its pairs.

use crate::changes::Json;
use std::cmp::Reverse;
use std::collections::BTreeMap;

use differential_dataflow::{Hashable, VecCollection};
use emporium_schemas::{Event, EventKind};
use rustc_hash::FxHashMap;

use super::also_bought::{AlsoBought, BoughtRow, paid_at, purchases};
use super::in_order::in_time_order;
use crate::view::{Ids, View};

/// Products kept per user: their latest.
pub const USER_CAP: usize = 100;
/// Buyers kept per product: its latest.
pub const ITEM_CAP: usize = 500;
/// Common buyers a pair needs to be similar.
pub const MIN_BUYERS: u64 = 2;
/// Neighbours kept per product.
pub const TOP_K: usize = 30;
/// Scores are cosines in millionths.
pub const SCALE: f64 = 1_000_000.0;

/// The similar-products view.
pub struct Similar;

/// A product's neighbours, best first: (product id, cosine in millionths).
pub type Neighbours = Vec<(u32, u64)>;

impl View for Similar {
    const NAME: &'static str = "similar";
    type Row = BoughtRow;
    /// The product's id.
    type Key = u32;
    type Value = Neighbours;

    fn reads(kind: EventKind) -> bool {
        AlsoBought::reads(kind)
    }

    fn rows(seq: u64, event: &Event, ids: &mut Ids, out: &mut Vec<(BoughtRow, isize)>) {
        AlsoBought::rows(seq, event, ids, out)
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, BoughtRow>,
    ) -> VecCollection<'s, u64, (u32, Neighbours)> {
        let paid = paid_at(rows.clone());
        // Per user, their latest USER_CAP products, each at its latest payment.
        let by_user = purchases(rows)
            .join_map(paid, |_order, (user, product), seq| {
                (*user, (*product, *seq))
            })
            .reduce_named("UserCap", |_user, items: &[(&(u32, u64), isize)], out| {
                // In (product, seq) order: the last of each product is its latest.
                let mut latest: Vec<(u64, u32)> = Vec::new();
                for (i, ((product, seq), _)) in items.iter().enumerate() {
                    let next = items.get(i + 1).map(|((p, _), _)| p);
                    if next != Some(product) {
                        latest.push((*seq, *product));
                    }
                }
                latest.sort_unstable_by(|a, b| b.cmp(a));
                for (seq, product) in latest.into_iter().take(USER_CAP) {
                    out.push(((seq, product), 1isize));
                }
            });
        // Per product, its latest ITEM_CAP buyers among those.
        let kept = latest_users(
            by_user.map(|(user, (seq, product))| (product, (Reverse(seq), user))),
            ITEM_CAP,
        )
        .map(|(product, user)| (user, product))
        .arrange_by_key_named("Buyers");
        let common = kept
            .clone()
            .join_core(kept.clone(), |_user, a: &u32, b: &u32| {
                (a != b).then_some((*a, *b))
            })
            .count();
        let buyers = kept.as_collection(|_user, product| *product).count();
        let scored = common
            .flat_map(|((a, b), k)| (k as u64 >= MIN_BUYERS).then_some((a, (b, k as u64))))
            .join_map(buyers.clone(), |a, (b, k), n_a| (*b, (*a, *k, *n_a as u64)))
            .join_map(buyers, |b, (a, k, n_a): &(u32, u64, u64), n_b| {
                let n_b = *n_b as u64;
                let cosine = *k as f64 / ((*n_a * n_b) as f64).sqrt();
                ((*a, *b), (cosine * SCALE).round() as u64)
            });
        super::top_k(scored, TOP_K)
    }

    fn document(product: &u32, neighbours: &Neighbours, ids: &Ids) -> serde_json::Value {
        Self::json(product, neighbours, ids).value()
    }

    /// `{"similar": [{"product_id": …, "score": s}, …], "product_id": …}` (keys sorted).
    fn json(product: &u32, neighbours: &Neighbours, ids: &Ids) -> Json {
        super::list_json(
            ids.name(*product),
            "similar",
            "score",
            neighbours
                .iter()
                .map(|(p, s)| (ids.name(*p), *s as f64 / SCALE)),
        )
    }

    fn key_name(product: &u32, ids: &Ids) -> String {
        ids.name(*product).to_owned()
    }
}

/// Per product, its `cap` latest users: `(product, user)` for the first `cap` of its
/// `(Reverse(seq), user)` entries (at most one per user) — what a `reduce` keyed by the product
/// gives, but kept in an ordered set per product, so a change costs `O(log n)` and the `cap`
/// first, not a re-read of every user the product ever had.
fn latest_users<'s>(
    entries: VecCollection<'s, u64, (u32, (Reverse<u64>, u32))>,
    cap: usize,
) -> VecCollection<'s, u64, (u32, u32)> {
    #[derive(Default)]
    struct Product {
        entries: BTreeMap<(Reverse<u64>, u32), isize>,
        /// The users it last emitted, sorted.
        emitted: Vec<u32>,
    }
    let mut products: FxHashMap<u32, Product> = FxHashMap::default();
    let mut touched: Vec<u32> = Vec::new();
    let route = |(product, _): &(u32, (Reverse<u64>, u32))| product.hashed();
    in_time_order(entries, "ItemCap", route, move |updates, out| {
        for ((product, entry), diff) in updates.drain(..) {
            let p = products.entry(product).or_default();
            let n = p.entries.entry(entry).or_default();
            *n += diff;
            if *n == 0 {
                p.entries.remove(&entry);
            }
            touched.push(product);
        }
        touched.sort_unstable();
        touched.dedup();
        for product in touched.drain(..) {
            let Some(p) = products.get_mut(&product) else {
                continue;
            };
            let mut now: Vec<u32> = p
                .entries
                .iter()
                .filter(|(_, n)| **n > 0)
                .take(cap)
                .map(|((_, user), _)| *user)
                .collect();
            now.sort_unstable();
            // Both sorted: the users that left, then the ones that came.
            let (mut i, mut j) = (0, 0);
            loop {
                match (p.emitted.get(i), now.get(j)) {
                    (Some(a), Some(b)) if a == b => (i, j) = (i + 1, j + 1),
                    (Some(a), b) if b.is_none_or(|b| a < b) => {
                        out.push(((product, *a), -1));
                        i += 1;
                    }
                    (_, Some(b)) => {
                        out.push(((product, *b), 1));
                        j += 1;
                    }
                    _ => break,
                }
            }
            if now.is_empty() && p.entries.is_empty() {
                products.remove(&product);
            } else {
                p.emitted = now;
            }
        }
    })
}
