//! The candidates' popularity that `GET /v1/users/{id}/recommendations` reranks by, read from
//! the store's `product_popularity` and reused for a second ([`PopularityCache`]).

use std::time::Duration;

use serde::Deserialize;

use crate::recent::{Recent, Source};
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
        let decode = |doc: Option<crate::store::Document>| {
            doc.and_then(|d| serde_json::from_slice::<Popular>(&d.json).ok())
                .map(|p| p.popularity)
        };
        self.recent
            .read_through(
                "popularity",
                store,
                Source::View("product_popularity"),
                products,
                decode,
            )
            .await
    }
}

/// The stored `product_popularity` document: `log2` of the product's decayed interest.
#[derive(Deserialize)]
struct Popular {
    popularity: f64,
}
