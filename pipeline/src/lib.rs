//! The edge of the inventory dataflow: it reads every partition of the events topic through the
//! [`EventLog`] trait, runs the decider as a timely dataflow on several worker threads, appends
//! the decisions to the log, runs the documents dataflow ([`crate::views`]) and writes the store,
//! and checkpoints the decider. All I/O of `dataflows/` lives here and in [`crate::checkpoint`];
//! the computations it runs are the pure [`Decider`] and the documents dataflow.
//!
//! Workers split the partitions (partition `p` is read by worker `p mod workers`) and route
//! every record to worker 0 ([`route`]: whole if the decider reads its type, else its time
//! alone), where one [`Decider`] applies them at the event-time watermark: decisions are
//! therefore the same for any number of workers (ADR 0005). Decision events get
//! deterministic ids (UUIDv5 of kind and order id), and ids already in the log are never appended
//! again, so a restart that replays the log from the start converges to the same log as an
//! uninterrupted run: nothing decided twice, nothing lost.
//!
//! The crate layout and the view shape: `specs/adr/0010-crates-along-the-data-path.md`.

pub mod checkpoint;
mod config;
mod decisions;
pub mod documents;
pub mod heartbeat;
mod metrics;
mod resume;
mod round;
mod route;
pub mod search;
mod stats;
mod worker;
mod writer;

pub use config::{CheckpointConfig, ClusterConfig, PipelineConfig, reader_of};
pub use decisions::{DECISION_NAMESPACE, decision_event, decision_events};
pub use stats::{LatencyHistogram, PipelineStats};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use emporium_log::{EVENTS_TOPIC, EventLog, LogError};
use emporium_serving::store::{Store, StoreError};

use crate::decisions::decisions_in_log;
use crate::resume::{check_retained, resume};
use crate::worker::{WorkerContext, worker_main};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("store: {0}")]
    Store(#[from] emporium_serving::store::StoreError),
    #[error("timely: {0}")]
    Timely(String),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    State(#[from] emporium_dataflows::decider::StateError),
    #[error("search index: {0}")]
    Search(String),
    /// The pipeline must read a partition from an offset retention already removed: deciding on
    /// the rest would answer from a history with a hole in it (ADR 0003).
    #[error(
        "cannot {what}: {source}. Deciding on what is left would give other answers than the \
         full history. Restore the checkpoint that goes with this store, or rebuild the log from \
         the lakehouse (README, \"When the log no longer holds the beginning\")"
    )]
    Gap {
        /// "resume from the checkpoint" or "replay the log from the start (no usable checkpoint)".
        what: &'static str,
        #[source]
        source: LogError,
    },
}

impl PipelineError {
    /// Whether a newer writer fenced this pipeline (ADR 0012): it must stop, not restart, or it
    /// would take the role back and fence the newer one in turn.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            PipelineError::Log(LogError::Fenced { .. })
                | PipelineError::Store(emporium_serving::store::StoreError::Fenced { .. })
        )
    }

    /// For a read's error: a gap (retention removed what must be read) is [`PipelineError::Gap`]
    /// saying what could not be done, anything else the log's error.
    pub(crate) fn reading(what: &'static str) -> impl Fn(LogError) -> PipelineError {
        move |e| match e {
            LogError::OffsetOutOfRange { .. } => PipelineError::Gap { what, source: e },
            e => PipelineError::Log(e),
        }
    }
}

/// The name the deciding process claims in the log ([`EventLog::claim_writer`]; Kafka
/// `transactional.id` `emporium-decider`).
pub const WRITER_NAME: &str = "decider";

/// The deciding process's claims (ADR 0012): what it appends and writes carries them.
pub(crate) struct Claims {
    pub(crate) log: emporium_log::WriterClaim,
    pub(crate) store: u64,
}

/// The pipeline running on its own thread. Dropping it asks it to stop (without waiting).
pub struct RunningPipeline {
    pub stats: Arc<PipelineStats>,
    stop: Arc<AtomicBool>,
    /// Cancelled when the pipeline's thread ends, however it ends.
    ended: tokio_util::sync::CancellationToken,
    thread: Option<std::thread::JoinHandle<Result<(), PipelineError>>>,
}

impl RunningPipeline {
    /// Starts [`run`] on a thread named `emporium-dataflow`.
    pub fn start(
        log: Arc<dyn EventLog>,
        store: Option<Arc<dyn Store>>,
        runtime: tokio::runtime::Handle,
        config: PipelineConfig,
    ) -> std::io::Result<Self> {
        let stats = Arc::new(PipelineStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let ended = tokio_util::sync::CancellationToken::new();
        let thread = {
            let (stats, stop, ended) = (Arc::clone(&stats), Arc::clone(&stop), ended.clone());
            std::thread::Builder::new()
                .name("emporium-dataflow".into())
                .spawn(move || {
                    let _ended = ended.drop_guard();
                    let result = run(log, store, runtime, config, Arc::clone(&stats), stop);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "the dataflow stopped");
                        stats.failed.store(true, Ordering::Relaxed);
                    }
                    result
                })?
        };
        Ok(Self {
            stats,
            stop,
            ended,
            thread: Some(thread),
        })
    }

    /// Resolves when the pipeline's thread has ended (on an error: a stop goes through `stop`).
    pub async fn ended(&self) {
        self.ended.cancelled().await
    }

    /// Stops after the current round and waits for the workers (blocking).
    pub fn stop(mut self) -> Result<(), PipelineError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(PipelineError::Timely("the pipeline thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for RunningPipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs until `stop` is set. Blocking: give it its own thread (or use [`RunningPipeline`]).
/// With a `store`, worker 0 writes the documents each round changed, with the log positions read.
pub fn run(
    log: Arc<dyn EventLog>,
    store: Option<Arc<dyn Store>>,
    runtime: tokio::runtime::Handle,
    config: PipelineConfig,
    stats: Arc<PipelineStats>,
    stop: Arc<AtomicBool>,
) -> Result<(), PipelineError> {
    let partitions = runtime.block_on(log.partition_count(EVENTS_TOPIC))?;
    // A process ≥ 1 reads from process 0's positions (sent at start, `worker`): only the process
    // that decides checks them, appends decisions and writes the store.
    let decides = config.cluster.as_ref().is_none_or(|c| c.process == 0);
    // One writer at a time (ADR 0012): claiming the log's writer name and the store fences any
    // earlier decider (an overlapping redeploy, a second `emporium run` on the same log), before
    // this one reads the checkpoint and the decisions already appended.
    let claims = if decides {
        // The store's claim first: it decides between two deciders that start at once.
        let store_claim = match &store {
            Some(store) => {
                let mine = config.claimed.load(Ordering::Relaxed);
                let current = runtime.block_on(store.writer_claim())?;
                if mine > 0 && current > mine {
                    // Taken over while this one was down: restarting must not take it back.
                    return Err(StoreError::Fenced {
                        epoch: mine,
                        current,
                    }
                    .into());
                }
                let claim = runtime.block_on(store.claim_writer())?;
                config.claimed.store(claim, Ordering::Relaxed);
                claim
            }
            None => 0,
        };
        let log_claim = runtime.block_on(log.claim_writer(WRITER_NAME))?;
        if let Some(store) = &store {
            let current = runtime.block_on(store.writer_claim())?;
            if current != store_claim {
                return Err(StoreError::Fenced {
                    epoch: store_claim,
                    current,
                }
                .into());
            }
        }
        tracing::info!(
            log_claim = log_claim.epoch,
            store_claim,
            "claimed the decider's writer role: earlier deciders are fenced"
        );
        Some(Claims {
            log: log_claim,
            store: store_claim,
        })
    } else {
        None
    };
    stats.watermark_ms.store(i64::MIN, Ordering::Relaxed);
    // Records appended before this run are a replay: not freshness.
    stats
        .freshness_from_ms
        .fetch_max(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    let resumed = match (&config.checkpoint, &store) {
        (Some(checkpoints), Some(store)) => {
            resume(checkpoints, store.as_ref(), &runtime, partitions, &config)?
        }
        _ => None,
    };
    let start: Arc<Vec<u64>> = Arc::new(match &resumed {
        Some((_, checkpoint)) => checkpoint.positions.clone(),
        None => vec![0; partitions as usize],
    });
    if decides {
        check_retained(log.as_ref(), &runtime, &start, resumed.is_some())?;
    }
    let resumed_seq = resumed.as_ref().map_or(0, |(_, c)| c.seq);
    if let (true, Some(store), Some(search)) = (decides, &store, &config.search) {
        let began = std::time::Instant::now();
        let prepared = search::prepare(
            &search.index,
            store.as_ref(),
            &runtime,
            resumed_seq,
            &mut |_| {},
        )?;
        stats
            .search_rebuilt
            .store(prepared.rebuilt, Ordering::Relaxed);
        tracing::info!(
            rebuilt = prepared.rebuilt,
            documents = prepared.documents,
            in_stock = prepared.in_stock,
            took_ms = began.elapsed().as_millis() as u64,
            "search index ready"
        );
    }
    stats.resumed_from_seq.store(resumed_seq, Ordering::Relaxed);
    metrics::resumed_from(resumed_seq);
    // Decisions appended after the checkpoint lie after its positions: only those can be in the
    // log already.
    let logged = Arc::new(if decides {
        runtime.block_on(decisions_in_log(log.as_ref(), &start))?
    } else {
        Default::default()
    });
    tracing::info!(
        partitions,
        workers = config.workers,
        decisions_in_log = logged.len(),
        resumed_from_seq = resumed_seq,
        "inventory pipeline starting"
    );
    let resumed = Arc::new(std::sync::Mutex::new(resumed.map(
        |(decider, checkpoint)| worker::Resumed {
            decider,
            views: checkpoint.views,
        },
    )));
    let workers = config.workers.max(1);
    let timely_config = match &config.cluster {
        None => timely::Config::process(workers),
        Some(cluster) => {
            if cluster.process >= cluster.addresses.len() {
                return Err(PipelineError::Timely(format!(
                    "process {} of {}: expected an index below the number of addresses",
                    cluster.process,
                    cluster.addresses.len()
                )));
            }
            timely::Config {
                communication: timely::CommunicationConfig::Cluster {
                    threads: workers,
                    process: cluster.process,
                    addresses: cluster.addresses.clone(),
                    report: false,
                    zerocopy: false,
                },
                worker: timely::WorkerConfig::default(),
            }
        }
    };
    let (checker, our_store_claim) = (store.clone(), claims.as_ref().map(|c| c.store));
    let check_runtime = runtime.clone();
    let guards = timely::execute(timely_config, move |worker| {
        let shared = WorkerContext {
            log: &log,
            store: &store,
            runtime: &runtime,
            config: &config,
            stats: &stats,
            stop: &stop,
            logged: &logged,
            claims: &claims,
            start: &start,
            resumed: &resumed,
        };
        let result = worker_main(worker, partitions, shared);
        if result.is_err() {
            // Stop the other workers too: their inputs would otherwise stay open and the
            // dataflows never finish, leaving the pipeline silently dead.
            stats.failed.store(true, Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
        }
        result
    })
    .map_err(PipelineError::Timely)?;
    let outcome = guards
        .join()
        .into_iter()
        .try_for_each(|result| result.map_err(PipelineError::Timely)?);
    match (outcome, checker, our_store_claim) {
        // Fenced in the log by a decider that lost the store's claim to this one (both started
        // at once): this one is still the writer, so a restart claims the log back (ADR 0012).
        (Err(e @ PipelineError::Log(LogError::Fenced { .. })), Some(store), Some(ours))
            if check_runtime.block_on(store.writer_claim()).ok() == Some(ours) =>
        {
            Err(PipelineError::Log(LogError::Unavailable(format!(
                "{e}, by a decider that lost the store's claim to this one: claiming the log again"
            ))))
        }
        (outcome, _, _) => outcome,
    }
}
