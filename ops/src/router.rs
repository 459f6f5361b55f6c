//! The operational routes every process serves: `/healthz` (alive), `/readyz` (ready for
//! traffic: every [`ReadinessCheck`] passes) and `/metrics` (Prometheus text).

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::ApiError;

/// Something the process needs before its answers are current: the event log reachable, the
/// dataflow's replay of the log after a start, the store open. `/readyz` answers 503 with the
/// reasons while any check fails, as a load balancer or Kubernetes expects of a process that
/// should get no traffic yet; `/healthz` stays 200 (the process is alive).
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// `Err(why)` while not ready, e.g. `"dataflow: replaying the log, 1200 of 3400 records to
    /// go"`.
    async fn check(&self) -> Result<(), String>;
}

/// The checks `/readyz` runs, in order.
#[derive(Clone, Default)]
pub struct Readiness(Vec<Arc<dyn ReadinessCheck>>);

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.0.push(check);
        self
    }

    pub fn add(&mut self, check: Arc<dyn ReadinessCheck>) {
        self.0.push(check);
    }

    /// Every failing check's reason (empty: ready).
    pub async fn reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        for check in &self.0 {
            if let Err(why) = check.check().await {
                reasons.push(why);
            }
        }
        reasons
    }
}

/// `/healthz`, `/readyz` and `/metrics`, to merge into a process's router; their own requests
/// are counted under `emporium_ops_request_duration_seconds`.
pub fn router(readiness: Readiness) -> Router {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move { readyz(&readiness).await }
            }),
        )
        .route("/metrics", get(metrics));
    crate::http::instrument(router, "ops")
}

async fn readyz(readiness: &Readiness) -> Response {
    let reasons = readiness.reasons().await;
    if reasons.is_empty() {
        "ready\n".into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            reasons.join("; "),
        )
        .into_response()
    }
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}
