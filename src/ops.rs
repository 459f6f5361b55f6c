//! The operational side every subcommand shares: the `/healthz`, `/readyz` and `/metrics`
//! listener of the processes that serve no API of their own (`emporium pipeline`, `emporium
//! lakehouse`), the readiness checks of the parts the binary wires, and how long-running
//! subcommands wait for a stop and drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use emporium_ops::{CancellationToken, Readiness, ReadinessCheck};
use emporium_pipeline::{PipelineStats, RunningPipeline};
use tokio::net::TcpListener;

/// How long Ctrl-C waits for in-flight requests and the dataflow before giving up on them.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Stops the dataflow and waits for it, at most [`SHUTDOWN_GRACE`]; `hint` says what to do if it
/// does not stop in time.
pub(crate) async fn stop_dataflow(pipeline: RunningPipeline, hint: &str) -> anyhow::Result<()> {
    match tokio::time::timeout(
        SHUTDOWN_GRACE,
        tokio::task::spawn_blocking(move || pipeline.stop()),
    )
    .await
    {
        Ok(joined) => Ok(joined
            .context("joining the dataflow thread")?
            .context("inventory dataflow")?),
        Err(_) => anyhow::bail!(
            "the inventory dataflow did not stop within {} s ({hint})",
            SHUTDOWN_GRACE.as_secs()
        ),
    }
}

/// Waits for `cancel` (Ctrl-C / SIGTERM), or for the dataflow to stop on an error (said on
/// stderr).
pub(crate) async fn until_stop_or_failure(
    pipeline: Option<&RunningPipeline>,
    cancel: &CancellationToken,
) {
    let failed = async {
        match pipeline {
            Some(pipeline) => pipeline.ended().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = failed => eprintln!("The dataflow stopped on an error (see the log above); shutting down."),
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listen` until `cancel`; prints where.
pub async fn serve(
    listen: SocketAddr,
    readiness: Readiness,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = TcpListener::bind(listen).await.with_context(|| {
        format!("binding the operations listener to {listen} (use --ops-listen)")
    })?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("  operations  GET {base}/healthz  {base}/readyz  {base}/metrics");
    Ok(tokio::spawn(emporium_ops::http::serve(
        listener,
        emporium_ops::router::router(readiness),
        cancel,
    )))
}

/// The store answers (its positions), for `/readyz`.
pub struct StoreReachable(pub Arc<dyn emporium_serving::store::Store>);

#[async_trait::async_trait]
impl ReadinessCheck for StoreReachable {
    async fn check(&self) -> Result<(), String> {
        self.0
            .positions()
            .await
            .map(drop)
            .map_err(|e| format!("store: {e}"))
    }
}

/// The dataflow's readiness (`/readyz`): it has read every partition up to where the log ended
/// when the process started, and has not stopped on an error.
pub struct Replay {
    pub stats: std::sync::OnceLock<Arc<PipelineStats>>,
    pub ends: Vec<u64>,
}

#[async_trait::async_trait]
impl ReadinessCheck for Replay {
    async fn check(&self) -> Result<(), String> {
        let Some(stats) = self.stats.get() else {
            return Err("dataflow: starting".into());
        };
        if stats.failed.load(Ordering::Relaxed) {
            return Err("dataflow: stopped on an error (see the process's log)".into());
        }
        let read = stats
            .read_positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let total: u64 = self.ends.iter().sum();
        let behind: u64 = self
            .ends
            .iter()
            .enumerate()
            .map(|(p, end)| end.saturating_sub(read.get(p).copied().unwrap_or(0)))
            .sum();
        if behind > 0 {
            return Err(format!(
                "dataflow: replaying the log, {behind} of {total} records to go"
            ));
        }
        Ok(())
    }
}
