//! The candidates' popularity that `GET /v1/users/{id}/recommendations` reranks by, read from
//! the store's `product_popularity` and reused for a second ([`PopularityCache`]).

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::recent::Recent;
use crate::store::{Store, StoreError};

/// How long [`PopularityCache`] reuses a product's popularity.
pub const POPULARITY_TTL: Duration = Duration::from_secs(1);

/// Products whose popularity [`PopularityCache`] holds at most.
const POPULARITY_CACHE_MAX: usize = 1 << 18;

/// The `product_popularity` of the candidates [`crate::recommendations::rerank`] weighs, read
/// from the store and reused for [`POPULARITY_TTL`]: a user's answer weighs
/// [`crate::recommendations::RERANK_CANDIDATES`] of them, and the same products are candidates
/// of many users. Popularity is a prior that moves in steps of 1/16 of a doubling; a second
/// old is as good.
pub struct PopularityCache {
    recent: Recent<Option<f64>>,
}

impl Default for PopularityCache {
    fn default() -> Self {
        Self {
            recent: Recent::new(POPULARITY_TTL, POPULARITY_CACHE_MAX),
        }
    }
}

impl PopularityCache {
    /// Each of `products`' popularity (`log2` of its decayed interest; `None` without one),
    /// read from the store for those not read in the last [`POPULARITY_TTL`].
    pub(crate) async fn of(
        &self,
        store: &dyn Store,
        products: &[&str],
    ) -> Result<Vec<Option<f64>>, StoreError> {
        let now = Instant::now();
        let mut out = vec![None; products.len()];
        let mut missing = Vec::new();
        for (i, product) in products.iter().enumerate() {
            match self.recent.get(product, now) {
                Some(value) => out[i] = value,
                None => missing.push(i),
            }
        }
        crate::metrics::cache("popularity", products.len() - missing.len(), missing.len());
        if missing.is_empty() {
            return Ok(out);
        }
        let ids: Vec<String> = missing.iter().map(|i| products[*i].to_owned()).collect();
        let docs = store.views_many("product_popularity", &ids).await?;
        for ((i, id), doc) in missing.into_iter().zip(ids).zip(docs) {
            let value = doc
                .and_then(|d| serde_json::from_slice::<Popular>(&d.json).ok())
                .map(|p| p.popularity);
            out[i] = value;
            self.recent.put(&id, value, now);
        }
        Ok(out)
    }
}

/// The stored `product_popularity` document: `log2` of the product's decayed interest.
#[derive(Deserialize)]
struct Popular {
    popularity: f64,
}
