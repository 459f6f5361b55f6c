//! The process's Prometheus recorder. The binary installs it once at start ([`install`]); every
//! crate emits through the `metrics` macros (`emporium_<component>_<what>_<unit>`; counters end in
//! `_total`, durations are histograms in `_seconds`), and `/metrics` renders them ([`render`]).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Bucket bounds of every `_seconds` histogram: 100 µs (a store read) to 5 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the Prometheus recorder once per process (later calls are no-ops). Metrics emitted
/// before it are lost, so the binary calls it first.
pub fn install() {
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| b.install_recorder())
            .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
            .ok()
    });
}

/// The current metrics in Prometheus text exposition format (installing the recorder if no one
/// has yet, so a test's in-process server renders too).
pub fn render() -> String {
    install();
    HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default()
}
