//! The operational side every subcommand shares: the `/healthz`, `/readyz` and `/metrics`
//! listener of the processes that serve no API of their own (`emporium pipeline`, `emporium
//! lakehouse`), the readiness checks of the parts the binary wires, and how long-running
//! subcommands wait for a stop and drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use emporium_lakehouse::sink::RunningSink;
use emporium_ops::supervisor::{Part, Permanent};
use emporium_ops::{CancellationToken, Readiness, ReadinessCheck};
use emporium_pipeline::{PipelineStats, RunningPipeline, reader_of};
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
        Ok(joined) => match joined.context("joining the dataflow thread")? {
            Ok(()) => Ok(()),
            // A newer writer took over: starting again would take its place back (ADR 0012).
            Err(e) if e.is_fenced() => {
                Err(anyhow::Error::new(Permanent(e.to_string()))).context("inventory dataflow")
            }
            Err(e) => Err(anyhow::Error::new(e).context("inventory dataflow")),
        },
        Err(_) => anyhow::bail!(
            "the inventory dataflow did not stop within {} s ({hint})",
            SHUTDOWN_GRACE.as_secs()
        ),
    }
}

/// The dataflow as a part `emporium run` restarts when it fails ([`emporium_ops::supervisor`]).
pub(crate) struct Dataflow(pub RunningPipeline);

#[async_trait::async_trait]
impl Part for Dataflow {
    async fn ended(&self) {
        self.0.ended().await
    }
    async fn stop(self: Box<Self>) -> anyhow::Result<()> {
        stop_dataflow(self.0, "a restart resumes from its last checkpoint").await
    }
}

/// The lakehouse sink as a part `emporium run` restarts when it fails.
pub(crate) struct Lakehouse(pub RunningSink);

#[async_trait::async_trait]
impl Part for Lakehouse {
    async fn ended(&self) {
        self.0.finished().await
    }
    async fn stop(self: Box<Self>) -> anyhow::Result<()> {
        Ok(self.0.stop(SHUTDOWN_GRACE).await?)
    }
}

/// The current instance of a part that is restarted (its stats, for status lines and
/// `/readyz`): empty until the first start.
pub struct Current<T>(std::sync::RwLock<Option<Arc<T>>>);

impl<T> Default for Current<T> {
    fn default() -> Self {
        Self(std::sync::RwLock::new(None))
    }
}

impl<T> Current<T> {
    pub fn set(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(value);
    }

    pub fn get(&self) -> Option<Arc<T>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
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

/// The dataflow's readiness (`/readyz`): it has read every partition this process reads up to
/// where the log ended when the process started, and has not stopped on an error.
pub struct Replay {
    /// The running dataflow's stats (a restarted one replaces them).
    pub stats: Current<PipelineStats>,
    pub ends: Vec<u64>,
    /// The partitions this process reads (its workers' share; every one for a single process):
    /// the others' positions are another process's.
    pub mine: Vec<bool>,
}

impl Replay {
    /// For a process reading every partition of a log that ended at `ends`.
    pub fn all(ends: Vec<u64>) -> Self {
        Self::of(ends, 0, 1, 1)
    }

    /// For process `process` of `processes`, each with `workers` workers: a partition is this
    /// process's when its reader ([`emporium_pipeline::reader_of`]) is one of its workers.
    pub fn of(ends: Vec<u64>, process: usize, processes: usize, workers: usize) -> Self {
        let workers = workers.max(1);
        let mine = (0..ends.len() as u32)
            .map(|p| reader_of(p, processes.max(1) * workers) / workers == process)
            .collect();
        Self {
            stats: Current::default(),
            ends,
            mine,
        }
    }
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
        let mine = || {
            self.ends
                .iter()
                .enumerate()
                .filter(|(p, _)| self.mine.get(*p).copied().unwrap_or(false))
        };
        let total: u64 = mine().map(|(_, end)| end).sum();
        let behind: u64 = mine()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_waits_only_for_the_partitions_its_workers_read() {
        // 2 processes × 2 workers over 6 partitions: global workers 0..4, process 0 has 0 and 1.
        let mine = |process| Replay::of(vec![0; 6], process, 2, 2).mine;
        assert_eq!(mine(0), [true, true, false, false, true, true]);
        assert_eq!(mine(1), [false, false, true, true, false, false]);
        assert!(Replay::all(vec![0; 3]).mine.iter().all(|m| *m));
    }

    #[tokio::test]
    async fn replay_is_ready_once_this_process_s_partitions_are_read() {
        let replay = Replay::of(vec![5, 7], 0, 2, 1);
        let stats = Arc::new(PipelineStats::default());
        *stats
            .read_positions
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = vec![3, 0];
        replay.stats.set(Arc::clone(&stats));
        let why = replay.check().await.expect_err("2 records to go");
        assert!(why.contains("2 of 5 records to go"), "{why}");
        *stats
            .read_positions
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = vec![5, 0];
        assert_eq!(
            replay.check().await,
            Ok(()),
            "partition 1 is the other process's"
        );
    }
}
