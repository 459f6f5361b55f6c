//! Every metric the dataflows emit, from one place (`emporium_dataflow_<what>_<unit>`). Only the
//! pipeline edge calls these; the computations stay free of side effects.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

pub(crate) fn records_read(n: u64) {
    counter!("emporium_dataflow_records_read_total").increment(n);
}

pub(crate) fn decision(outcome: &'static str) {
    counter!("emporium_dataflow_decisions_total", "outcome" => outcome).increment(1);
}

/// A decision not appended: the log holds the other answer for its order (ADR 0012).
pub(crate) fn decision_conflict() {
    counter!("emporium_dataflow_decision_conflicts_total").increment(1);
}

pub(crate) fn anomaly(kind: &'static str) {
    counter!("emporium_dataflow_anomalies_total", "kind" => kind).increment(1);
}

/// Events counted at their partition's bound rather than their own time (ADR 0005), since start.
pub(crate) fn late_events(total: u64) {
    counter!("emporium_dataflow_late_events_total").absolute(total);
}

/// Heartbeats appended to idle partitions that held the watermark back.
pub(crate) fn heartbeats(n: u64) {
    counter!("emporium_dataflow_heartbeats_total").increment(n);
}

pub(crate) fn open_reservations(n: usize) {
    gauge!("emporium_dataflow_open_reservations").set(n as f64);
}

/// How far the event-time watermark trails the wall clock.
pub(crate) fn watermark_lag(lag: Duration) {
    gauge!("emporium_dataflow_watermark_lag_seconds").set(lag.as_secs_f64());
}

/// From an `order_placed` appended to the log to its decision appended (durable) to the log.
pub(crate) fn decision_latency(latency: Duration) {
    histogram!("emporium_dataflow_decision_latency_seconds").record(latency.as_secs_f64());
}

/// From an event appended to the log to the documents it changed written to the store.
pub(crate) fn freshness(latency: Duration) {
    histogram!("emporium_dataflow_freshness_seconds").record(latency.as_secs_f64());
}

/// The sum over partitions of the next offset this process reads: every record before it, in
/// every partition, is decided (a resumed run starts at its checkpoint's positions).
pub(crate) fn consumer_position(sum: u64) {
    gauge!("emporium_dataflow_consumer_position").set(sum as f64);
}

/// The `seq` this run resumed from (0: it replayed the log from the start).
pub(crate) fn resumed_from(seq: u64) {
    gauge!("emporium_dataflow_resumed_from_seq").set(seq as f64);
}

/// A checkpoint written: what it wrote (its head and new pieces), what a restore reads (the
/// chain), whether it started a new chain with a full piece, and how long taking the state held
/// worker 0.
pub(crate) fn checkpoint(bytes: u64, chain_bytes: u64, full: bool, pause: Duration) {
    counter!("emporium_dataflow_checkpoints_total").increment(1);
    let kind = if full { "full" } else { "delta" };
    counter!("emporium_dataflow_checkpoint_pieces_total", "kind" => kind).increment(1);
    gauge!("emporium_dataflow_checkpoint_bytes").set(bytes as f64);
    gauge!("emporium_dataflow_checkpoint_chain_bytes").set(chain_bytes as f64);
    gauge!("emporium_dataflow_checkpoint_pause_seconds").set(pause.as_secs_f64());
}

/// A checkpoint that could not be written (the previous one stays).
pub(crate) fn checkpoint_failed() {
    counter!("emporium_dataflow_checkpoint_failures_total").increment(1);
}

/// A search index commit: how long it took, and the index it left (documents and segments
/// searchable: a count that only grows is the segment pile-up ADR 0013 guards against).
pub(crate) fn search_commit(took: Duration, documents: u64, segments: usize) {
    counter!("emporium_search_commits_total").increment(1);
    histogram!("emporium_search_commit_duration_seconds").record(took.as_secs_f64());
    gauge!("emporium_search_documents").set(documents as f64);
    gauge!("emporium_search_segments").set(segments as f64);
}

/// A batch applied by the search sink: its oldest event, appended → its live effect (stock,
/// price, rating, popularity) searchable.
pub(crate) fn search_applied(oldest: Duration) {
    histogram!("emporium_search_live_freshness_seconds").record(oldest.as_secs_f64());
}
