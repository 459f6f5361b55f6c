//! Recommendations maintained as views (issue 25, ADR 0015): each is a [`crate::view::View`]
//! whose documents are a product's (or a category's) ranked list, kept exact under retractions.
//!
//! - [`also_bought`]: products bought in the same paid orders, by co-purchase count; a
//!   cancellation, a returned line or the buyer's erasure takes the order's contribution back;
//! - [`also_viewed`]: products viewed in the same sessions, by co-view count;
//! - [`similar`]: products bought by the same users, by cosine over their (capped) buyer sets;
//! - [`content`]: products alike in the catalogue (category, brand, title, price), for products
//!   and shoppers with too few interactions (cold start);
//! - [`trending`]: per category, the products with the most interest in the last hour and day;
//! - [`user_purchases`]: what each user bought lately (personal: served only to them);
//! - [`user_views`]: what each user viewed lately (personal too);
//! - [`erased_users`]: a tombstone per erased user, which every per-user route checks.
//!
//! Shared here: [`co_occurring`], the pair counts of *also bought* and *also viewed*, and
//! [`top_k`], the ranking every list uses, in two levels so that a product with
//! thousands of partners (a bestseller is in everyone's basket) re-ranks a sixteenth of them per
//! change, not all.

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{ExchangeData, VecCollection};

use crate::view::View;

pub mod also_bought;
pub mod also_viewed;
pub mod content;
pub mod erased_users;
pub mod similar;
pub mod trending;
pub mod user_purchases;
pub mod user_views;

/// The names of the recommendation views, which processes run only when asked
/// (`--recommendations`; benchmarks with and without them). `erased_users` is not one: it costs
/// nothing and every per-user route needs it.
pub const VIEWS: &[&str] = &[
    also_bought::AlsoBought::NAME,
    user_purchases::UserPurchases::NAME,
    similar::Similar::NAME,
    trending::Trending::NAME,
    also_viewed::AlsoViewed::NAME,
    user_views::UserViews::NAME,
    content::Content::NAME,
];

/// Per item, the `k` items most often in the same groups (ties: the smaller item first), with
/// how many groups hold both: the co-occurrence lists of *also bought* (groups: orders) and
/// *also viewed* (groups: sessions). `members` holds `(group, item)` once each; a group counts its
/// first `cap` items (the smallest: for ids of [`crate::ids::Ids`], the ones named first), so
/// one huge group adds at most `cap²` pairs.
pub fn co_occurring<'s, G>(
    members: VecCollection<'s, u64, (G, u32)>,
    cap: usize,
    k: usize,
) -> VecCollection<'s, u64, (u32, Vec<(u32, u64)>)>
where
    G: ExchangeData + std::hash::Hash,
{
    let groups = members
        .reduce_named("Group", move |_group: &G, items: &[(&u32, isize)], out| {
            for (item, _) in items.iter().filter(|(_, n)| *n > 0).take(cap) {
                out.push((**item, 1isize));
            }
        })
        .arrange_by_key_named("Groups");
    let pairs = groups
        .clone()
        .join_core(groups, |_group, a: &u32, b: &u32| {
            (a != b).then_some((*a, *b))
        })
        .count()
        .map(|(pair, n)| (pair, n.max(0) as u64));
    top_k(pairs, k)
}

/// Buckets of the first level of [`top_k`].
pub const TOP_K_BUCKETS: u64 = 16;

/// Per key, its `k` items with the highest scores (ties: the smaller item first: for ids of
/// [`crate::ids::Ids`], the one named first), highest first.
/// `scored` holds `((key, item), score)` with at most one score per (key, item).
///
/// Two levels: the best `k` of each of [`TOP_K_BUCKETS`] buckets of items (by hash), then the
/// best `k` of those. A change to one item's score re-ranks its bucket and the key's
/// `16 · k` finalists, instead of every item of the key.
pub fn top_k<'s, K, I>(
    scored: VecCollection<'s, u64, ((K, I), u64)>,
    k: usize,
) -> VecCollection<'s, u64, (K, Vec<(I, u64)>)>
where
    K: ExchangeData + std::hash::Hash,
    I: ExchangeData + std::hash::Hash,
{
    top_k_in_levels(scored, k, &[TOP_K_BUCKETS])
}

/// [`top_k`] with a level per entry of `buckets` (each the number of buckets of items, by hash,
/// that level keeps the best `k` of), then the key's best `k`: for keys with very many items
/// (a trending list of the whole catalogue), where one level's buckets would still be large —
/// a reduce re-reads its whole bucket at each change.
pub fn top_k_in_levels<'s, K, I>(
    scored: VecCollection<'s, u64, ((K, I), u64)>,
    k: usize,
    buckets: &[u64],
) -> VecCollection<'s, u64, (K, Vec<(I, u64)>)>
where
    K: ExchangeData + std::hash::Hash,
    I: ExchangeData + std::hash::Hash,
{
    let mut ranked =
        scored.map(|((key, item), score)| ((key, 0u64), (std::cmp::Reverse(score), item)));
    for (level, n) in buckets.iter().copied().enumerate() {
        ranked = ranked
            .map(move |((key, _), (score, item))| {
                let bucket = item.hashed() % n.max(1);
                ((key, bucket), (score, item))
            })
            .reduce_named(
                if level == 0 {
                    "TopKBucket"
                } else {
                    "TopKLevel"
                },
                move |_key, items: &[(&(std::cmp::Reverse<u64>, I), isize)], out| {
                    // In (score descending, item) order already: the first k are the best.
                    for (item, _) in items.iter().filter(|(_, n)| *n > 0).take(k) {
                        out.push(((*item).clone(), 1isize));
                    }
                },
            );
    }
    ranked
        .map(|((key, _bucket), ranked)| (key, ranked))
        .reduce_named(
            "TopK",
            move |_key, items: &[(&(std::cmp::Reverse<u64>, I), isize)], out| {
                let best: Vec<(I, u64)> = items
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .take(k)
                    .map(|((score, item), _)| (item.clone(), score.0))
                    .collect();
                if !best.is_empty() {
                    out.push((best, 1isize));
                }
            },
        )
}
