//! What the pipeline counts while it runs, read by status lines, `/readyz` and benchmarks.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Counters the pipeline updates while it runs.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub records_read: AtomicU64,
    /// Per partition, the next offset this process will read (its consumer position; 0 for a
    /// partition another process reads).
    pub read_positions: std::sync::Mutex<Vec<u64>>,
    pub decisions_appended: AtomicU64,
    /// Decisions already in the log (a replay after a restart).
    pub decisions_already_logged: AtomicU64,
    /// Decisions not appended because the log holds the other answer for the order (an earlier
    /// decider with other settings reserved what this one rejects, or the reverse: ADR 0012).
    pub decisions_conflicting: AtomicU64,
    pub anomalies: AtomicU64,
    /// Events counted at their partition's bound, not their own time ([`Decider::late_events`]).
    pub late_events: AtomicU64,
    /// Heartbeats appended to idle partitions ([`crate::heartbeat`]).
    pub heartbeats: AtomicU64,
    /// Records that are not events (cannot happen through ingest; counted, never fatal).
    pub undecodable: AtomicU64,
    /// The decider's watermark, in ms since the epoch (`i64::MIN` until every partition spoke).
    pub watermark_ms: AtomicI64,
    /// Orders per status now, indexed by `OrderStatus as usize` (see [`OrderStatus::ALL`]).
    pub orders_by_status: [AtomicU64; 10],
    /// Units on hand in every warehouse together, as decided so far.
    pub units_on_hand: AtomicI64,
    /// Batches and documents written to the store.
    pub store_batches: AtomicU64,
    pub documents_written: AtomicU64,
    /// Event appended → its documents written to the store, for events appended while this run
    /// was up (a replay is not freshness) and not before `freshness_from_ms`.
    pub freshness: LatencyHistogram,
    /// Events appended before this time (ms since the epoch) are left out of `freshness`.
    pub freshness_from_ms: AtomicI64,
    /// Event appended → applied by the decider (the watermark's wait and the read), for the same
    /// events as `freshness`: the rest of their freshness is the documents and the store write.
    pub applied: LatencyHistogram,
    /// Worker 0's round: appending its decisions to the log, and the documents dataflow's work.
    pub decision_append: LatencyHistogram,
    pub documents_wait: LatencyHistogram,
    /// `order_placed` appended → its decision appended, for orders appended while this run was
    /// up (as `emporium_dataflow_decision_latency_seconds`).
    pub decision: LatencyHistogram,
    /// Set when the pipeline stopped on an error (the error itself comes from `stop`).
    pub failed: AtomicBool,
    /// Time to write one batch to the store.
    pub store_write: LatencyHistogram,
    /// Checkpoints written, what the last wrote (bytes: its head and new pieces, a delta most of
    /// the time), and how long the last one held worker 0 (taking the state, in ms; writing it is
    /// on the store writer's thread).
    pub checkpoints: AtomicU64,
    pub checkpoint_bytes: AtomicU64,
    pub checkpoint_pause_ms: AtomicU64,
    /// The `seq` this run resumed from (0: it replayed the log from the start).
    pub resumed_from_seq: AtomicU64,
    /// Commits of the search index ([`crate::search`]).
    pub search_commits: AtomicU64,
    /// Whether this run rebuilt the index from the store at start (it was behind).
    pub search_rebuilt: AtomicBool,
    /// Event appended → searchable (its batch committed to the index: new and changed texts),
    /// for the same events as `freshness`.
    pub search_freshness: LatencyHistogram,
    /// Event appended → its live effect searchable (its batch applied: sell-outs and restocks,
    /// price, rating and popularity changes), for the same events.
    pub search_live_freshness: LatencyHistogram,
}

/// A histogram of latencies in 5 ms buckets up to 10 s (and one above), readable while it fills.
#[derive(Debug)]
pub struct LatencyHistogram {
    pub(crate) buckets: Vec<AtomicU64>,
}

impl PipelineStats {
    /// How long ago each append time in `appended_ms` was, leaving out events appended before
    /// this run started (`started_ms`) or before `freshness_from_ms`: those are a replay, not
    /// freshness.
    pub(crate) fn freshness_of(
        &self,
        started_ms: i64,
        appended_ms: impl IntoIterator<Item = i64>,
    ) -> impl Iterator<Item = std::time::Duration> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let from = started_ms.max(self.freshness_from_ms.load(Ordering::Relaxed));
        appended_ms
            .into_iter()
            .filter(move |ms| *ms >= from)
            .map(
                move |ms| std::time::Duration::from_millis(now_ms.saturating_sub(ms).max(0) as u64),
            )
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..=Self::BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LatencyHistogram {
    const BUCKET_MS: u64 = 5;
    const BUCKETS: usize = 2_000;

    pub fn record(&self, latency: std::time::Duration) {
        let i = (latency.as_millis() as u64 / Self::BUCKET_MS).min(Self::BUCKETS as u64);
        self.buckets[i as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<std::time::Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(std::time::Duration::from_millis(
                    (i as u64 + 1) * Self::BUCKET_MS,
                ));
            }
        }
        None
    }

    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
    }
}

/// Records now − each append time in `histogram`, for events appended since `freshness_from_ms`.
pub(crate) fn record_since(
    histogram: &LatencyHistogram,
    stats: &PipelineStats,
    appended_ms: &[i64],
) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let from = stats.freshness_from_ms.load(Ordering::Relaxed);
    for ms in appended_ms.iter().filter(|ms| **ms >= from) {
        histogram.record(std::time::Duration::from_millis(
            now_ms.saturating_sub(*ms).max(0) as u64,
        ));
    }
}
