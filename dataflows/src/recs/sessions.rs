//! The two views of product views, *also viewed* and *user views*, each as one operator over
//! its users' own state, instead of differential `reduce`s and joins over every row ever seen.
//!
//! Their input only grows: a shopper's view is never taken back, only every view of a user at
//! once when the user is erased. So a session's first products (by id) never change once
//! the session holds [`super::also_viewed::MAX_SESSION`] of them, and a user's latest products
//! only lose the oldest. Each operator keeps just that per user — a session's kept products, a
//! user's latest — and emits the differences of its output collection as differential would:
//! a session's pairs as they enter and leave (the multiset of *also viewed*'s pair counts), a
//! user's list retracted and added back changed. The arrangements the `reduce`s and joins kept
//! (every (session, product) row, four times) are gone; ADR 0015 measures the difference, and
//! `dataflows/tests/recommendations.rs` checks both against plain folds, and against a
//! recomputation without an erased user.
//!
//! The times are `seq`s, totally ordered: updates are held until the input frontier has passed
//! their time, then applied one time after the other, a time's erasures first (a user's views
//! at the time of their erasure do not count, as in the `antijoin` they replace).

use differential_dataflow::{Hashable, VecCollection};
use rustc_hash::FxHashMap;

use super::also_viewed::SessionRow;
use super::in_order::in_time_order;
use super::user_views::{RecentRow, Viewed};

/// The multiset of ordered pairs `(a, b)`, `a ≠ b`, of products kept together in a session —
/// a session keeps its first `cap` products (the smallest ids) — what *also viewed* counts.
/// An erased user's sessions are taken back, and their later views never count.
pub fn co_viewed_pairs<'s>(
    rows: VecCollection<'s, u64, SessionRow>,
    cap: usize,
) -> VecCollection<'s, u64, (u32, u32)> {
    #[derive(Default)]
    struct User {
        erased: bool,
        /// Per session, its kept products, ascending.
        sessions: FxHashMap<u64, Vec<u32>>,
    }
    let mut users: FxHashMap<u32, User> = FxHashMap::default();
    let user_of = |row: &SessionRow| match row {
        SessionRow::Viewed { user, .. } | SessionRow::Erased { user } => *user,
    };
    let route = move |row: &SessionRow| user_of(row).hashed();
    in_time_order(rows, "CoViewedPairs", route, move |updates, out| {
        // Erasures first: a user's views at the time of the erasure do not count.
        updates.sort_unstable_by_key(|(row, _)| !matches!(row, SessionRow::Erased { .. }));
        for (row, diff) in updates.drain(..) {
            // Views are only ever added, erasures only made: the input grows (see the module).
            debug_assert!(diff > 0, "a view or an erasure taken back: {row:?}");
            if diff <= 0 {
                continue;
            }
            match row {
                SessionRow::Erased { user } => {
                    let u = users.entry(user).or_default();
                    for (_, kept) in u.sessions.drain() {
                        pairs(&kept, -1, out);
                    }
                    u.erased = true;
                }
                SessionRow::Viewed {
                    user,
                    session,
                    product,
                } => {
                    let u = users.entry(user).or_default();
                    if u.erased || cap == 0 {
                        continue;
                    }
                    let kept = u.sessions.entry(session).or_default();
                    let Err(at) = kept.binary_search(&product) else {
                        continue; // counted once per session
                    };
                    if at >= cap {
                        continue; // after every one the full session keeps
                    }
                    if kept.len() >= cap
                        && let Some(dropped) = kept.pop()
                    {
                        for other in kept.iter() {
                            out.push(((dropped, *other), -1));
                            out.push(((*other, dropped), -1));
                        }
                    }
                    for other in kept.iter() {
                        out.push(((product, *other), 1));
                        out.push(((*other, product), 1));
                    }
                    kept.insert(at, product);
                }
            }
        }
    })
}

/// Every ordered pair of `kept`, `diff` times.
fn pairs(kept: &[u32], diff: isize, out: &mut Vec<((u32, u32), isize)>) {
    for a in kept {
        for b in kept {
            if a != b {
                out.push(((*a, *b), diff));
            }
        }
    }
}

/// Per user, the `k` products viewed last, most recent first (by the `seq` of each product's
/// latest view; ties: the larger id first); no list for a user without views, or once erased.
pub fn latest_viewed<'s>(
    rows: VecCollection<'s, u64, RecentRow>,
    k: usize,
) -> VecCollection<'s, u64, (u32, Viewed)> {
    #[derive(Default)]
    struct User {
        erased: bool,
        /// Its latest products with their latest view's `seq`, most recent first.
        latest: Vec<(u64, u32)>,
    }
    let mut users: FxHashMap<u32, User> = FxHashMap::default();
    let user_of = |row: &RecentRow| match row {
        RecentRow::Viewed { user, .. } | RecentRow::Erased { user } => *user,
    };
    // Per user touched at a time, its list before the time.
    let mut before: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    let route = move |row: &RecentRow| user_of(row).hashed();
    in_time_order(rows, "LatestViewed", route, move |updates, out| {
        // Erasures first, then the views oldest first, so each is the newest when it comes.
        updates.sort_unstable_by_key(|(row, _)| match row {
            RecentRow::Erased { .. } => (0, 0, 0),
            RecentRow::Viewed { seq, product, .. } => (1, *seq, *product),
        });
        for (row, diff) in updates.drain(..) {
            debug_assert!(diff > 0, "a view or an erasure taken back: {row:?}");
            if diff <= 0 {
                continue;
            }
            let user = user_of(&row);
            let u = users.entry(user).or_default();
            before
                .entry(user)
                .or_insert_with(|| u.latest.iter().map(|(_, p)| *p).collect());
            match row {
                RecentRow::Erased { .. } => {
                    u.erased = true;
                    u.latest.clear();
                }
                RecentRow::Viewed { product, seq, .. } => {
                    if u.erased || k == 0 {
                        continue;
                    }
                    if let Some(at) = u.latest.iter().position(|(_, p)| *p == product) {
                        if u.latest[at].0 >= seq {
                            continue;
                        }
                        u.latest.remove(at);
                    }
                    // The newest in (seq, product) order when views come oldest first; placed
                    // by order anyway.
                    let at = u
                        .latest
                        .iter()
                        .position(|entry| *entry < (seq, product))
                        .unwrap_or(u.latest.len());
                    u.latest.insert(at, (seq, product));
                    u.latest.truncate(k);
                }
            }
        }
        for (user, old) in before.drain() {
            let now: Vec<u32> = users
                .get(&user)
                .map(|u| u.latest.iter().map(|(_, p)| *p).collect())
                .unwrap_or_default();
            if now == old {
                continue;
            }
            if !old.is_empty() {
                out.push(((user, Viewed(old)), -1));
            }
            if !now.is_empty() {
                out.push(((user, Viewed(now)), 1));
            }
        }
    })
}
