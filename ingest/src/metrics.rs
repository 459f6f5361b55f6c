//! Every metric the write path emits, from one place, so names stay consistent
//! (`emporium_<component>_<what>_<unit>`; counters end in `_total`, durations are histograms in
//! `_seconds`). The recorder is process-global; [`render`] gives the Prometheus text format.

use std::sync::OnceLock;
use std::time::Duration;

use emporium_schemas::{EventKind, RejectReason};
use metrics::{counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process (later calls are no-ops).
pub fn install() {
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0,
                ],
            )
            .and_then(|b| b.install_recorder())
            .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
            .ok()
    });
}

/// The current metrics in Prometheus text exposition format.
pub fn render() -> String {
    install();
    HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default()
}

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

/// A consumer error librdkafka recovers from by itself (a broker down, a transport failure),
/// by its code: the reader carries on.
pub fn consumer_error(code: &str) {
    counter!("emporium_log_consumer_errors_total", "code" => code.to_owned()).increment(1);
}
