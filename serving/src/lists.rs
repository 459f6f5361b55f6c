//! The recommendation views' lists as the read routes use them ([`List`]: a product's
//! `also_bought`, `also_viewed`, `similar` or `content` list, best first, with its scores), and
//! those `GET /v1/users/{id}/recommendations` walks, reused for a second ([`ListCache`]) — with
//! the [`CATEGORY`] walk's: a product's leaf category's trending list.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::recent::{Recent, Source};
use crate::store::{Store, StoreError};

/// The kinds of product recommendations served, each a maintained view of that name.
pub const PRODUCT_KINDS: &[&str] = &["also_bought", "also_viewed", "similar", "content"];

/// A stored list, decoded once: its products' ids end to end in one string, and per entry
/// where its id ends and its score (`also_bought`: the orders holding both; `also_viewed`: the
/// sessions that viewed both; `similar`: the cosine; `content`: the attribute score).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct List {
    /// The `seq` of the stored document (0 for a product without one).
    pub seq: u64,
    ids: String,
    ends: Vec<u32>,
    scores: Vec<f64>,
}

impl List {
    /// The `kind` list stored as `json` with `seq`, or an empty one when it does not parse.
    pub fn parse(kind: &str, seq: u64, json: &[u8]) -> Self {
        let Ok(stored) = serde_json::from_slice::<Stored>(json) else {
            return Self::default();
        };
        let entries = match kind {
            "also_bought" => stored.also_bought,
            "also_viewed" => stored.also_viewed,
            "similar" => stored.similar,
            "content" => stored.content,
            _ => None,
        }
        .unwrap_or_default();
        Self::from_entries(
            seq,
            entries.iter().filter_map(|e| {
                let score = e.orders.or(e.sessions).or(e.score)?;
                Some((e.product_id.as_ref(), score))
            }),
        )
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The entries, best first: (product id, score).
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .zip(&self.scores)
            .map(|((start, end), score)| (&self.ids[start as usize..*end as usize], *score))
    }
}

/// The stored document of any of the four kinds, as much of it as a list needs.
#[derive(Deserialize)]
struct Stored<'a> {
    #[serde(borrow)]
    also_bought: Option<Vec<Entry<'a>>>,
    #[serde(borrow)]
    also_viewed: Option<Vec<Entry<'a>>>,
    #[serde(borrow)]
    similar: Option<Vec<Entry<'a>>>,
    #[serde(borrow)]
    content: Option<Vec<Entry<'a>>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    product_id: Cow<'a, str>,
    orders: Option<f64>,
    sessions: Option<f64>,
    score: Option<f64>,
}

/// The walk of `GET /v1/users/{id}/recommendations` whose list of a product is the `trending`
/// list (a day's half-life) of the product's leaf category: the products people look at and buy
/// in the categories of the user's recent products. Content-based (the category is a catalogue
/// attribute; ADR 0015, option P2): the `content` lists rank by attributes alone, and ranked
/// over the whole catalogue they miss what shoppers of those categories buy.
pub const CATEGORY: &str = "category";

/// How long [`ListCache`] reuses a product's leaf category: it changes only when the product is
/// listed again, and a stale one only shifts which categories a user's answer weighs.
pub const CATEGORY_TTL: Duration = Duration::from_secs(60);

/// Products whose leaf category [`ListCache`] holds at most.
const CATEGORIES_MAX: usize = 1 << 18;

/// A trending list's entries as a [`List`] the walk scales: each score the interest relative
/// to the list's best (`2^(log2 − best log2)`, 1 for the best), so that interest adds up as
/// co-purchase counts do. `entries`: (product id, `log2` of the decayed interest), best first.
pub fn interest_shares<'a>(
    entries: impl IntoIterator<Item = (&'a str, f64)>,
) -> Vec<(&'a str, f64)> {
    let entries: Vec<(&str, f64)> = entries.into_iter().collect();
    let best = entries
        .iter()
        .map(|(_, s)| *s)
        .fold(f64::NEG_INFINITY, f64::max);
    entries
        .into_iter()
        .map(|(p, s)| (p, (s - best).exp2()))
        .collect()
}

/// How long [`ListCache`] reuses a list: a user's recommendations reflect item-to-item lists
/// at most this old (the product route reads them fresh).
pub const LIST_TTL: Duration = Duration::from_secs(1);

/// The lists of each kind [`ListCache`] holds at most (about 40 MiB per kind at lists of 30).
pub const LISTS_PER_KIND: usize = 1 << 16;

/// The lists of [`PRODUCT_KINDS`] read for users' recommendations, decoded once and reused for
/// [`LIST_TTL`]: an answer walks the lists of up to 10 recent purchases and 10 recent views,
/// the same products are in many users' histories, and reading and decoding the lists cost
/// most of an answer when read each time (`benches/serving.rs`, ADR 0015).
pub struct ListCache {
    kinds: Vec<Recent<Arc<List>>>,
    /// Products' leaf categories (`A/B`), for the [`CATEGORY`] walk.
    categories: Recent<Option<Arc<str>>>,
    /// Leaf categories' trending lists, for the [`CATEGORY`] walk.
    trending: Recent<Arc<List>>,
}

impl Default for ListCache {
    fn default() -> Self {
        Self {
            kinds: PRODUCT_KINDS
                .iter()
                .map(|_| Recent::new(LIST_TTL, LISTS_PER_KIND))
                .collect(),
            categories: Recent::new(CATEGORY_TTL, CATEGORIES_MAX),
            trending: Recent::new(LIST_TTL, LISTS_PER_KIND),
        }
    }
}

/// What a product document says of its category.
#[derive(Deserialize)]
struct Categorized {
    category_path: Vec<String>,
}

/// The stored `trending` document's list the [`CATEGORY`] walk reads — a day's half-life
/// (`24h`) — as much of it as a list needs.
#[derive(Deserialize)]
struct TrendingStored<'a> {
    #[serde(borrow, rename = "24h")]
    day: Vec<TrendingEntry<'a>>,
}

#[derive(Deserialize)]
struct TrendingEntry<'a> {
    #[serde(borrow)]
    product_id: Cow<'a, str>,
    score: f64,
}

impl List {
    /// A stored `trending` document's day list (`24h`) with `seq`, its scores as
    /// [`interest_shares`]; an empty one when it does not parse.
    pub fn parse_trending(seq: u64, json: &[u8]) -> Self {
        let Ok(stored) = serde_json::from_slice::<TrendingStored>(json) else {
            return Self::default();
        };
        let shares = interest_shares(stored.day.iter().map(|e| (e.product_id.as_ref(), e.score)));
        Self::from_entries(seq, shares)
    }

    fn from_entries<'a>(seq: u64, entries: impl IntoIterator<Item = (&'a str, f64)>) -> Self {
        let mut list = Self {
            seq,
            ..Self::default()
        };
        for (product, score) in entries {
            list.ids.push_str(product);
            let Ok(end) = u32::try_from(list.ids.len()) else {
                break;
            };
            list.ends.push(end);
            list.scores.push(score);
        }
        list
    }
}

impl ListCache {
    /// The `kind` list of each of `products` (empty for one without), read from the store for
    /// those not read in the last [`LIST_TTL`].
    pub(crate) async fn of(
        &self,
        store: &dyn Store,
        kind: &str,
        products: &[String],
    ) -> Result<Vec<Arc<List>>, StoreError> {
        if kind == CATEGORY {
            return self.categories_of(store, products).await;
        }
        let Some(recent) = PRODUCT_KINDS
            .iter()
            .position(|k| *k == kind)
            .map(|i| &self.kinds[i])
        else {
            return Ok(products.iter().map(|_| Arc::default()).collect());
        };
        let decode = |doc: Option<crate::store::Document>| {
            Arc::new(doc.map_or_else(List::default, |d| List::parse(kind, d.seq, &d.json)))
        };
        recent
            .read_through("lists", store, Source::View(kind), products, decode)
            .await
    }

    /// The [`CATEGORY`] list of each of `products`: its leaf category's trending list (empty
    /// for a product without a document or a category, or a category without a list).
    async fn categories_of(
        &self,
        store: &dyn Store,
        products: &[String],
    ) -> Result<Vec<Arc<List>>, StoreError> {
        let leaf = |doc: Option<crate::store::Document>| {
            let doc = doc?;
            let path = serde_json::from_slice::<Categorized>(&doc.json)
                .ok()?
                .category_path;
            (!path.is_empty()).then(|| Arc::from(path.join("/")))
        };
        let leaves = self
            .categories
            .read_through("categories", store, Source::Products, products, leaf)
            .await?;
        let mut distinct: Vec<&str> = leaves.iter().flatten().map(|c| c.as_ref()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let decode = |doc: Option<crate::store::Document>| {
            Arc::new(doc.map_or_else(List::default, |d| List::parse_trending(d.seq, &d.json)))
        };
        let lists = self
            .trending
            .read_through(
                "trending",
                store,
                Source::View("trending"),
                &distinct,
                decode,
            )
            .await?;
        Ok(leaves
            .iter()
            .map(|leaf| {
                leaf.as_ref()
                    .and_then(|c| distinct.binary_search(&c.as_ref()).ok())
                    .map_or_else(Arc::default, |i| lists[i].clone())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_parses_to_its_entries_in_order() {
        let cases = [
            (
                "also_bought",
                r#"{"product_id":"p-1","also_bought":[{"product_id":"p-2","orders":3},{"product_id":"p-30","orders":1}]}"#,
                vec![("p-2", 3.0), ("p-30", 1.0)],
            ),
            (
                "also_viewed",
                r#"{"product_id":"p-1","also_viewed":[{"product_id":"p-3","sessions":9}]}"#,
                vec![("p-3", 9.0)],
            ),
            (
                "similar",
                r#"{"product_id":"p-1","similar":[{"product_id":"p-\u00e9","score":0.5},{"product_id":"p-4","score":0.25}]}"#,
                vec![("p-é", 0.5), ("p-4", 0.25)],
            ),
            (
                "content",
                r#"{"product_id":"p-1","content":[{"product_id":"p-5","score":6.5}]}"#,
                vec![("p-5", 6.5)],
            ),
        ];
        for (kind, json, want) in cases {
            let list = List::parse(kind, 7, json.as_bytes());
            assert_eq!(list.seq, 7);
            assert_eq!(list.len(), want.len());
            assert_eq!(list.iter().collect::<Vec<_>>(), want, "{kind}");
        }
    }

    #[test]
    fn a_trending_list_is_its_days_shares_of_the_best() {
        let json = br#"{"1h":[{"product_id":"p-9","score":9.0}],"24h":[{"product_id":"p-1","score":40.5},{"product_id":"p-2","score":39.5},{"product_id":"p-3","score":37.5}],"category":"A/B"}"#;
        let list = List::parse_trending(3, json);
        assert_eq!(list.seq, 3);
        assert_eq!(
            list.iter().collect::<Vec<_>>(),
            [("p-1", 1.0), ("p-2", 0.5), ("p-3", 0.125)]
        );
        assert!(List::parse_trending(1, b"{}").is_empty());
        assert!(interest_shares([]).is_empty());
    }

    #[test]
    fn another_kind_or_bad_json_is_an_empty_list() {
        let json = br#"{"product_id":"p-1","also_bought":[{"product_id":"p-2","orders":3}]}"#;
        assert!(List::parse("similar", 1, json).is_empty());
        assert!(List::parse("also_bought", 1, b"{not json").is_empty());
        assert!(List::parse("nonsense", 1, json).is_empty());
    }
}
