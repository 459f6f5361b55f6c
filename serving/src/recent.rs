//! [`Recent`]: values read from the store, reused for a while by the process that read them.
//! What `GET /v1/users/{id}/recommendations` reads most (its candidates' popularity, the
//! item-to-item lists of the user's recent products) changes slowly and is shared by many
//! users, and each read from the store costs more than the rest of the answer
//! (`benches/serving.rs`, ADR 0015).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::store::{Document, Store, StoreError};

/// One shard of [`Recent`]: per key, when its value was read and the value.
type Shard<V> = Mutex<FxHashMap<Box<str>, (Instant, V)>>;

/// Values by key, each reused for `ttl` after it was read, at most `max` of them (a shard
/// that fills up starts over: a bound on memory, not an eviction policy worth tuning, since
/// every value is read again within `ttl` anyway).
pub(crate) struct Recent<V> {
    shards: Box<[Shard<V>]>,
    ttl: Duration,
    per_shard: usize,
}

/// Where [`Recent::read_through`] reads what it has not read lately: a maintained view's
/// documents, or the product documents.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    View(&'a str),
    Products,
}

/// Shards of a [`Recent`]: the two cores' requests rarely wait on each other.
const SHARDS: usize = 16;

impl<V: Clone> Recent<V> {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            ttl,
            per_shard: max.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &str) -> &Shard<V> {
        let h = key
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.shards[h % self.shards.len()]
    }

    /// `key`'s value if it was read less than the `ttl` before `now`.
    pub(crate) fn get(&self, key: &str, now: Instant) -> Option<V> {
        let shard = self.shard(key).lock().ok()?;
        match shard.get(key) {
            Some((at, value)) if now.saturating_duration_since(*at) < self.ttl => {
                Some(value.clone())
            }
            _ => None,
        }
    }

    /// The value of each of `keys`: reused when read less than the `ttl` ago, else `decode`d
    /// from its document in `source` (`None`: no document), all those at once; the lookups
    /// counted as `cache`'s hits and misses (`crate::metrics::cache`).
    pub(crate) async fn read_through<K: AsRef<str>>(
        &self,
        cache: &'static str,
        store: &dyn Store,
        source: Source<'_>,
        keys: &[K],
        decode: impl Fn(Option<Document>) -> V,
    ) -> Result<Vec<V>, StoreError>
    where
        V: Default,
    {
        let now = Instant::now();
        let mut out: Vec<V> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match self.get(key.as_ref(), now) {
                Some(value) => out.push(value),
                None => {
                    out.push(V::default());
                    missing.push(i);
                }
            }
        }
        crate::metrics::cache(cache, keys.len() - missing.len(), missing.len());
        if missing.is_empty() {
            return Ok(out);
        }
        let ids: Vec<String> = missing
            .iter()
            .map(|i| keys[*i].as_ref().to_owned())
            .collect();
        let docs = match source {
            Source::View(view) => store.views_many(view, &ids).await?,
            Source::Products => store.products_many(&ids).await?,
        };
        for ((i, id), doc) in missing.into_iter().zip(ids).zip(docs) {
            let value = decode(doc);
            self.put(&id, value.clone(), now);
            out[i] = value;
        }
        Ok(out)
    }

    /// `key`'s value, read at `now`.
    pub(crate) fn put(&self, key: &str, value: V, now: Instant) {
        if let Ok(mut shard) = self.shard(key).lock() {
            if shard.len() >= self.per_shard && !shard.contains_key(key) {
                shard.clear();
            }
            shard.insert(key.into(), (now, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_reused_for_their_ttl_only() {
        let recent = Recent::new(Duration::from_secs(1), 100);
        let t0 = Instant::now();
        recent.put("p-1", 7, t0);
        assert_eq!(recent.get("p-1", t0 + Duration::from_millis(999)), Some(7));
        assert_eq!(recent.get("p-1", t0 + Duration::from_secs(1)), None);
        assert_eq!(recent.get("p-2", t0), None);
        recent.put("p-1", 8, t0 + Duration::from_secs(2));
        assert_eq!(recent.get("p-1", t0 + Duration::from_secs(2)), Some(8));
    }

    #[test]
    fn the_bound_holds() {
        let recent = Recent::new(Duration::from_secs(60), 32);
        let t0 = Instant::now();
        for i in 0..10_000 {
            recent.put(&format!("p-{i}"), i, t0);
        }
        let held: usize = recent
            .shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum();
        assert!(held <= 32, "{held} held");
        // The last one put is always there.
        assert_eq!(recent.get("p-9999", t0), Some(9_999));
    }
}
