//! The candidates' popularity that `GET /v1/users/{id}/recommendations` reranks by, read from
//! the store's `product_popularity` and reused for a second ([`PopularityCache`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::store::{Store, StoreError};

/// One shard of [`PopularityCache`]: per product, when its popularity was read and what it was.
type Shard = std::sync::Mutex<HashMap<String, (Instant, Option<f64>)>>;

/// How long [`PopularityCache`] reuses a product's popularity.
pub const POPULARITY_TTL: Duration = Duration::from_secs(1);

/// Products whose popularity [`PopularityCache`] holds at most (it starts over past that).
const POPULARITY_CACHE_MAX: usize = 1 << 18;

/// The `product_popularity` of the candidates [`crate::recommendations::rerank`] weighs, read from the store and reused
/// for [`POPULARITY_TTL`]: a user's answer weighs [`crate::recommendations::RERANK_CANDIDATES`] of them, most of its
/// store reads, and the same products are candidates of many users. Popularity is a prior
/// that moves in steps of 1/16 of a doubling; a second old is as good (the answer's `seq`
/// is its lists', read fresh).
#[derive(Default)]
pub struct PopularityCache {
    shards: [Shard; 16],
}

impl PopularityCache {
    fn shard(&self, product: &str) -> &Shard {
        let h = product
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.shards[h % self.shards.len()]
    }

    /// Each of `ranked`'s popularity (`log2` of its decayed interest; `None` without one), read
    /// from the store for those not seen in the last [`POPULARITY_TTL`].
    pub(crate) async fn of(
        &self,
        store: &dyn Store,
        ranked: &[(String, f64)],
    ) -> Result<Vec<Option<f64>>, StoreError> {
        let now = Instant::now();
        let mut out = vec![None; ranked.len()];
        let mut missing = Vec::new();
        for (i, (product, _)) in ranked.iter().enumerate() {
            let cached = self
                .shard(product)
                .lock()
                .ok()
                .and_then(|m| m.get(product).copied());
            match cached {
                Some((at, value)) if now.duration_since(at) < POPULARITY_TTL => out[i] = value,
                _ => missing.push(i),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let ids: Vec<String> = missing.iter().map(|i| ranked[*i].0.clone()).collect();
        let docs = store.views_many("product_popularity", &ids).await?;
        for ((i, id), doc) in missing.into_iter().zip(ids).zip(docs) {
            let value = doc
                .and_then(|d| serde_json::from_slice::<Popular>(&d.json).ok())
                .map(|p| p.popularity);
            out[i] = value;
            if let Ok(mut m) = self.shard(&id).lock() {
                if m.len() >= POPULARITY_CACHE_MAX / self.shards.len() {
                    m.clear();
                }
                m.insert(id, (now, value));
            }
        }
        Ok(out)
    }
}

/// The stored `product_popularity` document: `log2` of the product's decayed interest.
#[derive(Deserialize)]
struct Popular {
    popularity: f64,
}
