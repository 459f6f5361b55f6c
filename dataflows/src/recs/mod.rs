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

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::changes::Json;
use crate::view::View;

pub mod also_bought;
pub mod also_viewed;
pub mod content;
pub mod erased_users;
mod in_order;
pub mod sessions;
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

/// One entry of a ranked list's document, `{"product_id": …, "<score>": …}`.
pub(crate) struct Entry<'a, S> {
    pub(crate) product: &'a str,
    pub(crate) score_name: &'static str,
    pub(crate) score: S,
}

impl<S: Serialize> Serialize for Entry<'_, S> {
    fn serialize<Z: Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        // Keys in sorted order, as `json!` wrote them before (its maps are sorted).
        let mut map = z.serialize_map(Some(2))?;
        if self.score_name < "product_id" {
            map.serialize_entry(self.score_name, &self.score)?;
            map.serialize_entry("product_id", self.product)?;
        } else {
            map.serialize_entry("product_id", self.product)?;
            map.serialize_entry(self.score_name, &self.score)?;
        }
        map.end()
    }
}

/// A document of two keys, `key_name` (a name) and `list_name` (a list), in sorted order.
struct Keyed<'a, L> {
    key_name: &'static str,
    key: &'a str,
    list_name: &'static str,
    list: L,
}

impl<L: Serialize> Serialize for Keyed<'_, L> {
    fn serialize<Z: Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        let mut map = z.serialize_map(Some(2))?;
        if self.list_name < self.key_name {
            map.serialize_entry(self.list_name, &self.list)?;
            map.serialize_entry(self.key_name, self.key)?;
        } else {
            map.serialize_entry(self.key_name, self.key)?;
            map.serialize_entry(self.list_name, &self.list)?;
        }
        map.end()
    }
}

/// A product's ranked list as its document, written straight from the ids (no
/// `serde_json::Value` tree: [`crate::view::View::json`]):
/// `{"<list_name>": [{"product_id": …, "<score_name>": …}, …], "product_id": …}`.
pub(crate) fn list_json<'a, S: Serialize>(
    product: &'a str,
    list_name: &'static str,
    score_name: &'static str,
    entries: impl Iterator<Item = (&'a str, S)>,
) -> Json {
    let list: Vec<Entry<'a, S>> = entries
        .map(|(product, score)| Entry {
            product,
            score_name,
            score,
        })
        .collect();
    Json::of(&Keyed {
        key_name: "product_id",
        key: product,
        list_name,
        list,
    })
}

/// A user's recent products as their document: `{"<list_name>": [ids…], "user_id": …}`.
pub(crate) fn recent_json<'a>(
    user: &'a str,
    list_name: &'static str,
    products: impl Iterator<Item = &'a str>,
) -> Json {
    Json::of(&Keyed {
        key_name: "user_id",
        key: user,
        list_name,
        list: products.collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// The documents written straight from the ids are the ones `json!` wrote, byte for byte
    /// (keys sorted), escapes included.
    #[test]
    fn written_documents_are_what_json_wrote() {
        let entries = [("p-1", 3u64), ("p-\"2\"", 1)];
        let fast = super::list_json("p-0", "also_bought", "orders", entries.iter().copied());
        let slow = json!({
            "product_id": "p-0",
            "also_bought": entries
                .iter()
                .map(|(p, n)| json!({"product_id": p, "orders": n}))
                .collect::<Vec<_>>(),
        });
        assert_eq!(fast.text(), slow.to_string());
        let scored = [("p-1", 0.5f64), ("p-2", 1.0 / 3.0)];
        let fast = super::list_json("p-0", "similar", "score", scored.iter().copied());
        let slow = json!({
            "product_id": "p-0",
            "similar": scored
                .iter()
                .map(|(p, s)| json!({"product_id": p, "score": s}))
                .collect::<Vec<_>>(),
        });
        assert_eq!(fast.text(), slow.to_string());
        let fast = super::recent_json("u-1", "recent_views", ["p-1", "p-2"].into_iter());
        let slow = json!({"user_id": "u-1", "recent_views": ["p-1", "p-2"]});
        assert_eq!(fast.text(), slow.to_string());
    }
}
