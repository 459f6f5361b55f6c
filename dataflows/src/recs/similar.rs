//! *Similar products* (item-to-item collaborative filtering, as Amazon's recommender and
//! differential-dataflow's `itembased_cf` example): per product, the products the same users
//! bought or viewed — in any order or session, not only the same one — by cosine similarity of
//! the products' user sets, top [`TOP_K`]. Served at
//! `GET /v1/products/{id}/recommendations?kind=similar` and used by
//! `GET /v1/users/{id}/recommendations`; tested against a plain fold in
//! `dataflows/tests/recommendations.rs`.
//!
//! **What counts.** A user's vector holds their purchases and their views, one entry per
//! product (binary: a product viewed and bought counts once), each at its latest time:
//! - purchases are [`super::also_bought`]'s counted purchases (paid, not cancelled, not returned,
//!   not of an erased user), at the time of their latest payment. Retractions are therefore
//!   exact as there: a cancellation, a return or an erasure takes the purchase out of every
//!   score it was in (a product the user also viewed lately stays in as a view);
//! - views are the user's [`VIEW_CAP`] latest viewed products, at their latest view
//!   ([`super::sessions::latest_viewed_at`], an operator over each user's own state: views are
//!   only ever added). An erased user's views never count.
//!
//! **Caps** (Schelter et al., Mahout's `maxPrefsPerUser`/`maxSimilaritiesPerItem`): a user counts
//! with their [`USER_CAP`] latest products, a product with its [`ITEM_CAP`] latest users (among
//! the entries the user cap kept). One very active user adds at most `USER_CAP²` pairs, and a
//! bestseller's similarities are over a bounded set of users, so its score changes at each sale
//! touch a bounded number of pairs.
//!
//! **Score.** `k / √(n_a · n_b)` — `k` users of both, `n` users of each (after the caps) —
//! in millionths, for pairs with at least [`MIN_BUYERS`] common users (one shared user is
//! noise: it would put any two products a single user touched at similarity 1). Cosine rather
//! than the log-likelihood ratio because it needs no count of all users: the LLR of every pair
//! changes with each new user, which would re-rank every list at every first purchase (ADR 0015).
//! Ties go to the product listed first.

use crate::changes::Json;
use std::cmp::Reverse;
use std::collections::BTreeMap;

use differential_dataflow::{Hashable, VecCollection};
use emporium_schemas::{Event, EventKind};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use super::also_bought::{AlsoBought, BoughtRow, paid_at, purchases};
use super::in_order::in_time_order;
use super::user_views::{RecentRow, views_never_listed};
use crate::view::{Count, Ids, View};

/// Products kept per user: their latest.
pub const USER_CAP: usize = 100;
/// Viewed products a user's vector holds: the latest.
pub const VIEW_CAP: usize = 20;
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

/// A row of the view's input: what [`AlsoBought`] reads, or a user's view of a product in the
/// span applied as the `seq`-th step.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SimilarRow {
    Bought(BoughtRow),
    Viewed { user: u32, product: u32, seq: u64 },
}

impl View for Similar {
    const NAME: &'static str = "similar";
    type Row = SimilarRow;
    /// The product's id.
    type Key = u32;
    type Value = Neighbours;

    fn reads(kind: EventKind) -> bool {
        AlsoBought::reads(kind)
    }

    fn counts(kind: EventKind) -> bool {
        kind == EventKind::ProductViewed
    }

    fn counts_sessions(kind: EventKind) -> bool {
        kind == EventKind::ProductViewed
    }

    fn counted(seq: u64, count: &Count, ids: &mut Ids) -> Option<SimilarRow> {
        let session = count.session.as_ref()?;
        Some(SimilarRow::Viewed {
            user: ids.id(&session.user),
            product: ids.id(&count.product),
            seq,
        })
    }

    fn rows(seq: u64, event: &Event, ids: &mut Ids, out: &mut Vec<(SimilarRow, isize)>) {
        let mut bought = Vec::new();
        AlsoBought::rows(seq, event, ids, &mut bought);
        out.extend(
            bought
                .into_iter()
                .map(|(row, n)| (SimilarRow::Bought(row), n)),
        );
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, SimilarRow>,
    ) -> VecCollection<'s, u64, (u32, Neighbours)> {
        let bought = rows.clone().flat_map(|row| match row {
            SimilarRow::Bought(row) => Some(row),
            SimilarRow::Viewed { .. } => None,
        });
        let viewed = rows.flat_map(|row| match row {
            SimilarRow::Viewed { user, product, seq } => {
                Some(RecentRow::Viewed { user, product, seq })
            }
            SimilarRow::Bought(BoughtRow::Erased { user }) => Some(RecentRow::Erased { user }),
            SimilarRow::Bought(_) => None,
        });
        let paid = paid_at(bought.clone());
        // Per user, their latest USER_CAP products, each at its latest purchase or kept view.
        let by_user = purchases(bought)
            .join_map(paid, |_order, (user, product), seq| {
                (*user, (*product, *seq))
            })
            .concat(super::sessions::latest_viewed_at(viewed, VIEW_CAP))
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
        // Per product, its latest ITEM_CAP users among those.
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

    /// Keeps every row [`AlsoBought`] reads, and of the views, per user, the latest view of
    /// each of their [`VIEW_CAP`] latest viewed products — the only ones
    /// [`super::sessions::latest_viewed_at`] can still keep — and none of an erased user.
    fn compact(rows: &mut FxHashMap<SimilarRow, isize>) {
        let mut erased: FxHashSet<u32> = FxHashSet::default();
        let mut views: Vec<(u32, u64, u32)> = Vec::new();
        for row in rows.keys() {
            match row {
                SimilarRow::Bought(BoughtRow::Erased { user }) => {
                    erased.insert(*user);
                }
                SimilarRow::Viewed { user, product, seq } => views.push((*user, *seq, *product)),
                SimilarRow::Bought(_) => {}
            }
        }
        for (user, seq, product) in views_never_listed(views, &erased, VIEW_CAP) {
            rows.remove(&SimilarRow::Viewed { user, product, seq });
        }
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
            while i < p.emitted.len() || j < now.len() {
                match (p.emitted.get(i), now.get(j)) {
                    (Some(a), Some(b)) if a == b => (i, j) = (i + 1, j + 1),
                    (Some(a), Some(b)) if a < b => {
                        out.push(((product, *a), -1));
                        i += 1;
                    }
                    (Some(a), None) => {
                        out.push(((product, *a), -1));
                        i += 1;
                    }
                    (_, Some(b)) => {
                        out.push(((product, *b), 1));
                        j += 1;
                    }
                    (None, None) => break,
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    use differential_dataflow::input::InputSession;
    use proptest::prelude::*;
    use timely::dataflow::operators::{Inspect, Probe};

    use super::*;

    /// What [`Similar`] lists per product at the end, fed `rows` at `seq` 1 then `later` one
    /// `seq` each.
    fn lists(rows: Vec<(SimilarRow, isize)>, later: Vec<SimilarRow>) -> BTreeMap<u32, Neighbours> {
        timely::execute_directly(move |worker| {
            let out: Rc<RefCell<BTreeMap<(u32, Neighbours), isize>>> = Rc::default();
            let mut input: InputSession<u64, SimilarRow, isize> = InputSession::new();
            let sink = Rc::clone(&out);
            let probe = timely::dataflow::ProbeHandle::new();
            worker.dataflow::<u64, _, _>(|scope| {
                Similar::maintain(input.to_collection(scope))
                    .inner
                    .inspect(move |((product, list), _, diff)| {
                        *sink
                            .borrow_mut()
                            .entry((*product, list.clone()))
                            .or_default() += diff;
                    })
                    .probe_with(&probe);
            });
            input.advance_to(1);
            for (row, diff) in rows {
                input.update(row, diff);
            }
            for (i, row) in later.into_iter().enumerate() {
                input.advance_to(2 + i as u64);
                input.insert(row);
            }
            let end = *input.time() + 1;
            input.advance_to(end);
            input.flush();
            while probe.less_than(&end) {
                worker.step();
            }
            let out = out.borrow();
            out.iter()
                .filter(|(_, n)| **n != 0)
                .map(|((product, list), _)| (*product, list.clone()))
                .collect()
        })
    }

    /// Views by three users of 30 products, purchases of them (products own the sku of their
    /// id), and erasures; `offset` moves the `seq`s (later rows come after earlier ones).
    fn row(offset: u64) -> impl Strategy<Value = SimilarRow> {
        let bought = |row| SimilarRow::Bought(row);
        prop_oneof![
            1 => (0u32..5).prop_map(move |user| bought(BoughtRow::Erased { user })),
            2 => (0u32..30, 0u64..200).prop_map(move |(product, seq)| bought(BoughtRow::Listed {
                product,
                seq: seq + offset,
                skus: vec![product + 100],
            })),
            3 => (0u32..20, 0u32..3, 0u32..30).prop_map(move |(order, user, product)| {
                bought(BoughtRow::Line { order, user, sku: product + 100 })
            }),
            3 => (0u32..20, 0u64..200)
                .prop_map(move |(order, seq)| bought(BoughtRow::Paid { order, seq: seq + offset })),
            40 => (0u32..3, 0u32..30, 0u64..200).prop_map(move |(user, product, seq)| {
                SimilarRow::Viewed { user, product, seq: seq + offset }
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever comes next, the rows `compact` drops change no list.
        #[test]
        fn compaction_drops_only_what_can_never_count(
            before in prop::collection::vec(row(0), 0..300),
            after in prop::collection::vec(row(200), 0..60),
        ) {
            let mut rows: FxHashMap<SimilarRow, isize> = FxHashMap::default();
            for row in before {
                *rows.entry(row).or_default() += 1;
            }
            let all: Vec<(SimilarRow, isize)> = rows.clone().into_iter().collect();
            Similar::compact(&mut rows);
            let kept: Vec<(SimilarRow, isize)> = rows.into_iter().collect();
            // Every purchase row is kept; at most VIEW_CAP views per user, none of an erased one.
            let bought = |rows: &[(SimilarRow, isize)]| {
                rows.iter().filter(|(r, _)| matches!(r, SimilarRow::Bought(_))).count()
            };
            prop_assert_eq!(bought(&kept), bought(&all));
            let mut per_user: BTreeMap<u32, usize> = BTreeMap::new();
            for (row, _) in &kept {
                if let SimilarRow::Viewed { user, .. } = row {
                    *per_user.entry(*user).or_default() += 1;
                }
            }
            for (user, n) in per_user {
                prop_assert!(n <= VIEW_CAP, "user {} keeps {} views", user, n);
                let erasure = SimilarRow::Bought(BoughtRow::Erased { user });
                prop_assert!(!kept.iter().any(|(row, _)| *row == erasure), "user {} erased", user);
            }
            prop_assert_eq!(lists(kept, after.clone()), lists(all, after));
        }
    }
}
