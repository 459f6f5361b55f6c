//! Every metric the write path emits, from one place, so names stay consistent
//! (`emporium_<component>_<what>_<unit>`; counters end in `_total`, durations are histograms in
//! `_seconds`). The recorder and `/metrics` are `emporium-ops`'s.

use std::time::Duration;

use emporium_schemas::{EventKind, RejectReason};
use metrics::{counter, histogram};

pub(crate) fn events_accepted(kind: EventKind, n: u64) {
    counter!("emporium_ingest_events_accepted_total", "type" => kind.as_str()).increment(n);
}

pub(crate) fn event_rejected(reason: RejectReason) {
    counter!("emporium_ingest_events_rejected_total", "reason" => reason.as_str()).increment(1);
}

pub(crate) fn events_duplicate(n: u64) {
    counter!("emporium_ingest_events_duplicate_total").increment(n);
}

pub(crate) fn bytes_received(n: u64) {
    counter!("emporium_ingest_bytes_total").increment(n);
}

pub(crate) fn append_latency(elapsed: Duration) {
    histogram!("emporium_ingest_append_duration_seconds").record(elapsed.as_secs_f64());
}

pub(crate) fn request(status: u16) {
    counter!("emporium_ingest_requests_total", "status" => status.to_string()).increment(1);
}

pub(crate) fn log_unavailable() {
    counter!("emporium_ingest_log_unavailable_total").increment(1);
}

/// An event the platform records itself (a search made through the read API) dropped because
/// the recorder's queue was full: the answer does not wait for the log.
pub fn recorded_dropped() {
    counter!("emporium_ingest_recorded_dropped_total").increment(1);
}
