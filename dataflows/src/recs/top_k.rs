//! Per key, its `k` best items: the ranking every recommendation list ends with.
//!
//! A differential `reduce` re-reads a key's whole group each time it changes, so a list over
//! many items (a bestseller's thousands of partners, the whole catalogue's trending list) costs
//! its group's size per change, even in levels of buckets (ADR 0015 measured it: the first
//! level alone re-read the catalogue in every round). Here one operator keeps each key's items
//! in an ordered set instead: a change costs `O(log n)` and a changed key `O(k)` to compare its
//! new top with the one it last emitted. It is still a differential operator over a
//! differential collection: its input is a collection of updates (time, diff), and its output
//! the collection `(key, list)` with the old list retracted and the new one added at the time
//! the change happened — the same as the `reduce` it replaces (`dataflows/tests/recommendations.rs`
//! checks every list against plain folds).
//!
//! The times are `seq`s, totally ordered: updates are held until the input frontier has passed
//! their time, then applied one time after the other, each consolidated first.
//!
//! Two inputs: [`top_k`] ranks items by a score each `(key, item)` has (at most one at a time);
//! [`top_k_counted`] by how many times each `(key, item)` is in the collection (its
//! multiplicity: the pair counts of *also bought* and *also viewed*), so that the counts need no
//! arrangement of their own.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap as HashMap;

use differential_dataflow::{ExchangeData, Hashable, VecCollection};

use super::in_order::in_time_order;

/// A key's list: items best first, with their scores (ties: the smaller item first).
pub type List<I> = Vec<(I, u64)>;

/// Per key, its `k` items with the highest scores (ties: the smaller item first: for ids of
/// [`crate::ids::Ids`], the one named first), highest first; no list for a key without items.
/// `scored` holds `((key, item), score)` with at most one score per (key, item) at any time.
pub fn top_k<'s, K, I>(
    scored: VecCollection<'s, u64, ((K, I), u64)>,
    k: usize,
) -> VecCollection<'s, u64, (K, List<I>)>
where
    K: ExchangeData + std::hash::Hash + Hashable<Output = u64>,
    I: ExchangeData + std::hash::Hash,
{
    ranked(scored, k, Weigh::Score, "TopK")
}

/// Per key, its `k` items held most often in `items` (a multiset of `(key, item)`), each with
/// that count, highest first (ties: the smaller item first); no list for a key without items.
pub fn top_k_counted<'s, K, I>(
    items: VecCollection<'s, u64, (K, I)>,
    k: usize,
) -> VecCollection<'s, u64, (K, List<I>)>
where
    K: ExchangeData + std::hash::Hash + Hashable<Output = u64>,
    I: ExchangeData + std::hash::Hash,
{
    ranked(items.map(|pair| (pair, 0)), k, Weigh::Count, "TopKCounted")
}

/// What ranks an item: its score, or its multiplicity in the collection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Weigh {
    Score,
    Count,
}

/// One key's items: each one's score (or count) and the same ordered best first, and the list
/// it last emitted.
struct Ranking<I> {
    scores: HashMap<I, u64>,
    order: BTreeSet<(Reverse<u64>, I)>,
    emitted: List<I>,
}

impl<I: Ord + Clone + std::hash::Hash> Default for Ranking<I> {
    fn default() -> Self {
        Self {
            scores: HashMap::default(),
            order: BTreeSet::new(),
            emitted: Vec::new(),
        }
    }
}

impl<I: Ord + Clone + std::hash::Hash> Ranking<I> {
    /// Sets `item`'s score (`None`: no longer an item of this key).
    fn set(&mut self, item: I, score: Option<u64>) {
        let old = match score {
            Some(s) => self.scores.insert(item.clone(), s),
            None => self.scores.remove(&item),
        };
        if old == score {
            return;
        }
        if let Some(old) = old {
            self.order.remove(&(Reverse(old), item.clone()));
        }
        if let Some(new) = score {
            self.order.insert((Reverse(new), item));
        }
    }

    fn best(&self, k: usize) -> List<I> {
        self.order
            .iter()
            .take(k)
            .map(|(Reverse(s), i)| (i.clone(), *s))
            .collect()
    }
}

/// A key's updates of one time, consolidated and grouped by item, applied to its ranking.
fn apply<I: Ord + Clone + std::hash::Hash>(
    ranking: &mut Ranking<I>,
    weigh: Weigh,
    updates: &mut [(I, u64, isize)],
) {
    updates.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut at = 0;
    while at < updates.len() {
        let item = updates[at].0.clone();
        let end = at + updates[at..].iter().take_while(|u| u.0 == item).count();
        let group = &updates[at..end];
        at = end;
        let current = ranking.scores.get(&item).copied();
        let next = match weigh {
            Weigh::Count => {
                let n =
                    current.map_or(0, |c| c as i64) + group.iter().map(|u| u.2 as i64).sum::<i64>();
                (n > 0).then_some(n as u64)
            }
            Weigh::Score => {
                // The present score (multiplicity 1) plus this time's changes; what is left with
                // a positive multiplicity is the score now (at most one, by the input's promise:
                // the highest if it broke it).
                let mut multiplicity: BTreeMap<u64, isize> = BTreeMap::new();
                if let Some(c) = current {
                    multiplicity.insert(c, 1);
                }
                for (_, score, diff) in group {
                    *multiplicity.entry(*score).or_default() += diff;
                }
                multiplicity
                    .iter()
                    .rev()
                    .find(|(_, n)| **n > 0)
                    .map(|(s, _)| *s)
            }
        };
        ranking.set(item, next);
    }
}

fn ranked<'s, K, I>(
    scored: VecCollection<'s, u64, ((K, I), u64)>,
    k: usize,
    weigh: Weigh,
    name: &str,
) -> VecCollection<'s, u64, (K, List<I>)>
where
    K: ExchangeData + std::hash::Hash + Hashable<Output = u64>,
    I: ExchangeData + std::hash::Hash,
{
    let mut rankings: HashMap<K, Ranking<I>> = HashMap::default();
    let mut per_key: HashMap<K, Vec<(I, u64, isize)>> = HashMap::default();
    let route = |((key, _), _): &((K, I), u64)| key.hashed();
    in_time_order(scored, name, route, move |updates, out| {
        for (((key, item), score), diff) in updates.drain(..) {
            per_key.entry(key).or_default().push((item, score, diff));
        }
        for (key, mut updates) in per_key.drain() {
            let ranking = rankings.entry(key.clone()).or_default();
            apply(ranking, weigh, &mut updates);
            let best = ranking.best(k);
            let changed = best != ranking.emitted;
            let old = std::mem::replace(&mut ranking.emitted, best.clone());
            if ranking.scores.is_empty() {
                rankings.remove(&key);
            }
            if !changed {
                continue;
            }
            if !old.is_empty() {
                out.push(((key.clone(), old), -1));
            }
            if !best.is_empty() {
                out.push(((key, best), 1));
            }
        }
    })
}
