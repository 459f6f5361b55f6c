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
//! [`top_k`], the ranking every list ends with: one operator that keeps each key's items ordered,
//! so that a product with thousands of partners (a bestseller is in everyone's basket) or the
//! whole catalogue's trending list costs `O(log n)` per change, not its size.

use differential_dataflow::{ExchangeData, VecCollection};

use crate::view::View;

pub mod also_bought;
pub mod also_viewed;
pub mod content;
pub mod erased_users;
pub mod similar;
pub mod top_k;
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
        });
    top_k_counted(pairs, k)
}

pub use top_k::{top_k, top_k_counted};
