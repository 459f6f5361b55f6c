//! What each user viewed lately: per user, the products they viewed, most recently first (by the
//! step of the span their latest view was counted in; ties: the product listed last first), at
//! most [`RECENT`]. The read API's `GET /v1/users/{id}/recommendations` walks them through the
//! item-to-item lists, beside [`super::user_purchases`]. Personal: served only by that route, with
//! the shopper's own token or the operator key, never at `/v1/views`.
//!
//! Views are counted per session ([`View::counts_sessions`], as [`super::also_viewed`]): a row per
//! (user, product, span), never a step per view. An erased user has no document, before or after
//! the erasure.

use crate::changes::Json;
use differential_dataflow::VecCollection;
use emporium_schemas::{Event, EventKind, Payload};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::view::{Count, Ids, View};

/// Products listed per user.
pub const RECENT: usize = 20;

/// The user-views view.
pub struct UserViews;

/// A row of the view's input, names as their [`Ids`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RecentRow {
    /// `user` viewed `product` in the span applied as the `seq`-th step.
    Viewed {
        user: u32,
        product: u32,
        seq: u64,
    },
    Erased {
        user: u32,
    },
}

/// A user's recent views: product ids, most recent first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Viewed(pub Vec<u32>);

impl View for UserViews {
    const NAME: &'static str = "user_views";
    type Row = RecentRow;
    /// The user's id.
    type Key = u32;
    type Value = Viewed;

    /// Erasures; and listings, which add no row but give products their ids in listing order
    /// (ties go to the product listed first, as in every list).
    fn reads(kind: EventKind) -> bool {
        matches!(kind, EventKind::UserErased | EventKind::ProductUpserted)
    }

    fn counts(kind: EventKind) -> bool {
        kind == EventKind::ProductViewed
    }

    fn counts_sessions(kind: EventKind) -> bool {
        kind == EventKind::ProductViewed
    }

    fn counted(seq: u64, count: &Count, ids: &mut Ids) -> Option<RecentRow> {
        let session = count.session.as_ref()?;
        Some(RecentRow::Viewed {
            user: ids.id(&session.user),
            product: ids.id(&count.product),
            seq,
        })
    }

    fn rows(_seq: u64, event: &Event, ids: &mut Ids, out: &mut Vec<(RecentRow, isize)>) {
        match &event.payload {
            Payload::ProductUpserted(p) => {
                ids.id(&p.product_id);
            }
            Payload::UserErased(u) => out.push((
                RecentRow::Erased {
                    user: ids.id(&u.user_id),
                },
                1,
            )),
            _ => {}
        }
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, RecentRow>,
    ) -> VecCollection<'s, u64, (u32, Viewed)> {
        super::sessions::latest_viewed(rows, RECENT)
    }

    /// Keeps, per user, the latest view of each of their [`RECENT`] latest products — the only
    /// rows [`super::sessions::latest_viewed`] can still list: views are only added, so a
    /// product that fell out comes back only with a newer view — and nothing but the erasure
    /// of an erased user.
    fn compact(rows: &mut FxHashMap<RecentRow, isize>) {
        let mut erased: FxHashSet<u32> = FxHashSet::default();
        let mut views: Vec<(u32, u64, u32)> = Vec::with_capacity(rows.len());
        for row in rows.keys() {
            match row {
                RecentRow::Erased { user } => {
                    erased.insert(*user);
                }
                RecentRow::Viewed { user, product, seq } => views.push((*user, *seq, *product)),
            }
        }
        // Per user, newest first, as `latest_viewed` lists them.
        views.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
        let mut listed: Vec<u32> = Vec::with_capacity(RECENT);
        let mut user = None;
        for (u, seq, product) in views {
            if user != Some(u) {
                user = Some(u);
                listed.clear();
            }
            let keep = !erased.contains(&u) && !listed.contains(&product) && listed.len() < RECENT;
            if keep {
                listed.push(product);
            } else {
                rows.remove(&RecentRow::Viewed {
                    user: u,
                    product,
                    seq,
                });
            }
        }
    }

    fn document(user: &u32, viewed: &Viewed, ids: &Ids) -> serde_json::Value {
        Self::json(user, viewed, ids).value()
    }

    /// `{"recent_views": [ids…], "user_id": …}`.
    fn json(user: &u32, viewed: &Viewed, ids: &Ids) -> Json {
        let products = viewed.0.iter().map(|p| ids.name(*p));
        super::recent_json(ids.name(*user), "recent_views", products)
    }

    fn key_name(user: &u32, ids: &Ids) -> String {
        ids.name(*user).to_owned()
    }
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

    /// Each (user, list) output with its multiplicity.
    type Counted = BTreeMap<(u32, Vec<u32>), isize>;

    /// What `latest_viewed` lists per user at the end, fed `rows` at `seq` 1 then `later` one
    /// `seq` each.
    fn lists(rows: Vec<(RecentRow, isize)>, later: Vec<RecentRow>) -> BTreeMap<u32, Vec<u32>> {
        timely::execute_directly(move |worker| {
            let out: Rc<RefCell<Counted>> = Rc::default();
            let mut input: InputSession<u64, RecentRow, isize> = InputSession::new();
            let sink = Rc::clone(&out);
            let probe = timely::dataflow::ProbeHandle::new();
            worker.dataflow::<u64, _, _>(|scope| {
                crate::recs::sessions::latest_viewed(input.to_collection(scope), RECENT)
                    .inner
                    .inspect(move |((user, Viewed(list)), _, diff)| {
                        *sink.borrow_mut().entry((*user, list.clone())).or_default() += diff;
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
                .map(|((user, list), _)| (*user, list.clone()))
                .collect()
        })
    }

    fn row() -> impl Strategy<Value = RecentRow> {
        prop_oneof![
            1 => (0u32..4).prop_map(|user| RecentRow::Erased { user }),
            40 => (0u32..4, 0u32..40, 0u64..200)
                .prop_map(|(user, product, seq)| RecentRow::Viewed { user, product, seq }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever comes next, the rows `compact` drops change nothing `latest_viewed` lists.
        #[test]
        fn compaction_drops_only_what_can_never_be_listed(
            before in prop::collection::vec(row(), 0..300),
            mut after in prop::collection::vec(row(), 0..60),
        ) {
            // Later views are later steps.
            for row in &mut after {
                if let RecentRow::Viewed { seq, .. } = row {
                    *seq += 200;
                }
            }
            let mut rows: FxHashMap<RecentRow, isize> = FxHashMap::default();
            for row in before {
                *rows.entry(row).or_default() += 1;
            }
            let all: Vec<(RecentRow, isize)> = rows.clone().into_iter().collect();
            UserViews::compact(&mut rows);
            let kept: Vec<(RecentRow, isize)> = rows.into_iter().collect();
            // At most a list's worth of views per user, none of an erased one.
            let mut per_user: BTreeMap<u32, usize> = BTreeMap::new();
            for (row, _) in &kept {
                if let RecentRow::Viewed { user, .. } = row {
                    *per_user.entry(*user).or_default() += 1;
                }
            }
            for (user, n) in per_user {
                prop_assert!(n <= RECENT, "user {} keeps {} views", user, n);
                let erasure = RecentRow::Erased { user };
                prop_assert!(!kept.iter().any(|(row, _)| *row == erasure), "user {} erased", user);
            }
            prop_assert_eq!(lists(kept, after.clone()), lists(all, after));
        }
    }
}
