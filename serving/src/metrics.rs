//! Every metric the serving side records, from one place (vector's `internal_events` pattern).

use std::time::Duration;

/// A store read made for an API request, by read path.
pub fn read(path: &'static str, took: Duration) {
    metrics::histogram!("emporium_serving_store_read_seconds", "path" => path)
        .record(took.as_secs_f64());
}

/// A batch of documents written to the store.
pub fn write(documents: usize, took: Duration) {
    metrics::histogram!("emporium_store_write_seconds").record(took.as_secs_f64());
    metrics::counter!("emporium_store_documents_written_total").increment(documents as u64);
}

/// Lookups of a read cache (`popularity`, `lists`) by one request: how many it answered and how
/// many went to the store.
pub fn cache(cache: &'static str, hits: usize, misses: usize) {
    if hits > 0 {
        metrics::counter!("emporium_serving_cache_lookups_total", "cache" => cache, "result" => "hit")
            .increment(hits as u64);
    }
    if misses > 0 {
        metrics::counter!("emporium_serving_cache_lookups_total", "cache" => cache, "result" => "miss")
            .increment(misses as u64);
    }
}
