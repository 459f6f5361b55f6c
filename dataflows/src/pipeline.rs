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

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use chrono::Duration;
use differential_dataflow::input::InputSession;
use emporium_ingest::log::{EVENTS_TOPIC, EventLog, LogError, Record};
use emporium_schemas::{Event, EventKind, Payload};
use emporium_serving::store::Store;
use emporium_serving::views::{Upsert, WriteBatch};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::core::Filter as _;
use timely::dataflow::operators::{Exchange as _, Input, Inspect, Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use uuid::Uuid;

use crate::checkpoint::{self, Checkpoint};
use crate::decider::Decider;
use crate::heartbeat::Arrivals;
use crate::inventory::{InventoryConfig, Output};
use crate::metrics;
use crate::orders::OrderStatus;
use crate::views::{self, AvailableRow, Latest, ListingRow, ViewChanges};

/// The namespace of decision event ids (UUIDv5 of `"<type>:<order_id>"`).
pub const DECISION_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_0b7e_2d4a_4e61_9c83_7a2b_e6d4_1f09);

/// Settings of the decision pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Timely worker threads; partitions are split between them.
    pub workers: usize,
    /// How far behind its partition's newest event an event may arrive and still count at its
    /// own time (ADR 0005).
    pub allowed_lateness: Duration,
    pub inventory: InventoryConfig,
    /// Records read from one partition per round.
    pub read_batch: usize,
    /// Pause when a round read nothing.
    pub idle_sleep: std::time::Duration,
    /// Run as one process of several (timely's cluster mode); `None`: this process alone.
    pub cluster: Option<ClusterConfig>,
    /// Checkpoint the decider there; `None`: a restart replays the log from the start.
    pub checkpoint: Option<CheckpointConfig>,
    /// Append a heartbeat to a partition idle this long while it holds the watermark back
    /// ([`crate::heartbeat`]); `None`: never (a quiet partition then holds decisions until its
    /// next event).
    pub idle_heartbeat: Option<std::time::Duration>,
}

/// Where and how often the decider is checkpointed (ADR 0008). Only the process that writes the
/// store checkpoints (and resumes): a checkpoint is only valid with the store it was taken with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    pub dir: std::path::PathBuf,
    /// The shortest time between two checkpoints; one is also taken on a clean stop.
    pub interval: std::time::Duration,
}

/// This process's place among the pipeline's processes. Every process runs `workers` workers;
/// worker `w` of process `p` is global worker `p × workers + w`, and partition `n` is read by
/// global worker `n mod (processes × workers)`. Global worker 0 — on process 0 — decides, appends
/// the decisions and writes the store; the others read and forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Index of this process in `addresses`.
    pub process: usize,
    /// `host:port` each process listens on for the others, in process order.
    pub addresses: Vec<String>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            allowed_lateness: Duration::milliseconds(500),
            inventory: InventoryConfig::default(),
            read_batch: 5_000,
            idle_sleep: std::time::Duration::from_millis(20),
            cluster: None,
            checkpoint: None,
            idle_heartbeat: Some(std::time::Duration::from_millis(200)),
        }
    }
}

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
    /// Checkpoints written, the size of the last (bytes), and how long the last one held worker
    /// 0 (taking the state, in ms; writing it is on the store writer's thread).
    pub checkpoints: AtomicU64,
    pub checkpoint_bytes: AtomicU64,
    pub checkpoint_pause_ms: AtomicU64,
    /// The `seq` this run resumed from (0: it replayed the log from the start).
    pub resumed_from_seq: AtomicU64,
}

/// A histogram of latencies in 5 ms buckets up to 10 s (and one above), readable while it fills.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: Vec<AtomicU64>,
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
    State(#[from] crate::decider::StateError),
}

/// The decision event for a decider output, with its deterministic id.
pub fn decision_event(at: chrono::DateTime<chrono::Utc>, payload: Payload) -> Event {
    // Decision types are keyed by order_id (schemas' type table), so the key is the order.
    let name = format!("{}:{}", payload.kind(), payload.partition_key());
    Event::new(
        Uuid::new_v5(&DECISION_NAMESPACE, name.as_bytes()),
        at,
        payload,
    )
}

/// The decision events among decider outputs, in order, with their ids: what the pipeline
/// appends for them.
pub fn decision_events(outputs: Vec<Output>) -> impl Iterator<Item = Event> {
    outputs.into_iter().filter_map(|o| match o {
        Output::Decision { at, payload } => Some(decision_event(at, payload)),
        Output::Anomaly { .. } => None,
    })
}

/// The pipeline running on its own thread. Dropping it asks it to stop (without waiting).
pub struct RunningPipeline {
    pub stats: Arc<PipelineStats>,
    stop: Arc<AtomicBool>,
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
        let thread = {
            let (stats, stop) = (Arc::clone(&stats), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("emporium-dataflow".into())
                .spawn(move || {
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
            thread: Some(thread),
        })
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
    let resumed_seq = resumed.as_ref().map_or(0, |(_, c)| c.seq);
    stats.resumed_from_seq.store(resumed_seq, Ordering::Relaxed);
    metrics::resumed_from(resumed_seq);
    // Decisions appended after the checkpoint lie after its positions: only those can be in the
    // log already.
    let logged = Arc::new(runtime.block_on(decisions_in_log(log.as_ref(), &start))?);
    tracing::info!(
        partitions,
        workers = config.workers,
        decisions_in_log = logged.len(),
        resumed_from_seq = resumed_seq,
        "inventory pipeline starting"
    );
    let resumed = Arc::new(std::sync::Mutex::new(resumed.map(|(decider, _)| decider)));
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
    let guards = timely::execute(timely_config, move |worker| {
        let shared = Shared {
            log: &log,
            store: &store,
            runtime: &runtime,
            config: &config,
            stats: &stats,
            stop: &stop,
            logged: &logged,
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
    for result in guards.join() {
        result.map_err(PipelineError::Timely)??;
    }
    Ok(())
}

/// The checkpoint to resume from, with the decider it holds, if there is one that fits this log,
/// these settings and this store (see [`checkpoint`]); `None`: replay from the start.
fn resume(
    checkpoints: &CheckpointConfig,
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    partitions: u32,
    config: &PipelineConfig,
) -> Result<Option<(Decider, Checkpoint)>, PipelineError> {
    let checkpoint = match checkpoint::read(&checkpoints.dir) {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the checkpoint: replaying the log from the start");
            return Ok(None);
        }
    };
    let stored = runtime.block_on(store.positions())?;
    let refuse = |why: String| {
        tracing::warn!(
            seq = checkpoint.seq,
            "ignoring the checkpoint ({why}): replaying the log from the start"
        );
        Ok(None)
    };
    if checkpoint.allowed_lateness_ms != config.allowed_lateness.num_milliseconds()
        || checkpoint.reservation_ttl_ms != config.inventory.reservation_ttl.num_milliseconds()
    {
        return refuse("taken with another allowed lateness or reservation TTL".into());
    }
    if checkpoint.positions.len() != partitions as usize {
        return refuse(format!(
            "taken over {} partitions, the log has {partitions}",
            checkpoint.positions.len()
        ));
    }
    let behind = stored.as_ref().is_none_or(|stored| {
        stored.len() != checkpoint.positions.len()
            || stored.iter().zip(&checkpoint.positions).any(|(s, c)| s < c)
    });
    if behind {
        return refuse("the store is behind it: it was taken with another store".into());
    }
    let decider = match Decider::resume(
        &checkpoint.state,
        partitions as usize,
        config.allowed_lateness,
        config.inventory.clone(),
    ) {
        Ok(d) => d,
        Err(e) => return refuse(e.to_string()),
    };
    tracing::info!(
        seq = checkpoint.seq,
        positions = ?checkpoint.positions,
        "resuming from the checkpoint"
    );
    Ok(Some((decider, checkpoint)))
}

/// What every worker of this process shares.
struct Shared<'a> {
    log: &'a Arc<dyn EventLog>,
    store: &'a Option<Arc<dyn Store>>,
    runtime: &'a tokio::runtime::Handle,
    config: &'a PipelineConfig,
    stats: &'a Arc<PipelineStats>,
    stop: &'a Arc<AtomicBool>,
    logged: &'a Arc<HashSet<Uuid>>,
    /// Per partition, the first offset to decide on (a checkpoint's positions, or 0).
    start: &'a Arc<Vec<u64>>,
    /// The decider resumed from a checkpoint, for worker 0 to take.
    resumed: &'a Arc<std::sync::Mutex<Option<Decider>>>,
}

/// A record on its way to the decider, as its reader routed it ([`route`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Raw {
    partition: u32,
    offset: u64,
    appended_ms: i64,
    read: Read,
}

/// What the decider gets of a record: the event when it reads its type, only its time when it
/// does not, only its position for a decision (its own output) or a record that is not an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Read {
    Event(Vec<u8>),
    /// `occurred_at`, as seconds and nanoseconds since the epoch.
    Tick(i64, u32),
    Position,
}

/// Routes a record by its head alone ([`Event::decode_head`]): only the events the decider reads
/// ([`Decider::reads`], about one in five of a shop's) are decoded, copied and sent whole, by
/// the one worker that decides; the others cost their reader a partial parse. See ADR 0005.
fn route(bytes: &[u8], stats: &PipelineStats) -> Read {
    match Event::decode_head(bytes) {
        Ok((kind, _)) if kind.is_decision() => Read::Position,
        Ok((kind, at)) if !Decider::reads(kind) => {
            Read::Tick(at.timestamp(), at.timestamp_subsec_nanos())
        }
        Ok(_) => Read::Event(bytes.to_vec()),
        Err(_) => {
            stats.undecodable.fetch_add(1, Ordering::Relaxed);
            Read::Position
        }
    }
}
/// Appends the heartbeats [`Arrivals::due`] finds due. A partition counts as read to its end
/// when the readers' published position has reached the log's end offset.
fn send_heartbeats(
    log: &Arc<dyn EventLog>,
    runtime: &tokio::runtime::Handle,
    decider: &Decider,
    arrivals: &mut Arrivals,
    idle_after: std::time::Duration,
    stats: &PipelineStats,
) -> Result<(), PipelineError> {
    let read = stats
        .read_positions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let now_ms = chrono::Utc::now().timestamp_millis();
    // The end offsets only when a partition is otherwise due (a request to Kafka).
    let mut ends: Option<Result<Vec<u64>, LogError>> = None;
    let due = arrivals.due(decider, now_ms, idle_after, |p| {
        let ends = ends.get_or_insert_with(|| runtime.block_on(log.end_offsets(EVENTS_TOPIC)));
        let p = p as usize;
        ends.as_ref()
            .is_ok_and(|ends| read.get(p).zip(ends.get(p)).is_some_and(|(r, e)| r >= e))
    });
    if let Some(Err(e)) = ends {
        return Err(e.into());
    }
    if due.is_empty() {
        return Ok(());
    }
    let n = due.len() as u64;
    runtime.block_on(log.append(EVENTS_TOPIC, due.into_iter().map(|(_, r)| r).collect()))?;
    stats.heartbeats.fetch_add(n, Ordering::Relaxed);
    metrics::heartbeats(n);
    Ok(())
}

/// A decider output, with the append time of the `order_placed` it decides (for latency).
type Decided = (Output, Option<i64>);

/// What worker 0 writes to the store after a round.
#[derive(Default)]
struct StoreWork {
    upserts: Vec<Upsert>,
    /// What the round changed in the document dataflow's inputs.
    views: ViewChanges,
    /// Next offset to read, per partition, over the records the decider received.
    positions: Vec<u64>,
    /// Append times of the events applied, for freshness.
    applied_ms: Vec<i64>,
    /// The decider's seq after the round.
    seq: u64,
    /// A checkpoint to write once the store holds the documents up to its seq.
    checkpoint: Option<Checkpoint>,
    dirty: bool,
}

fn worker_main(
    worker: &mut timely::worker::Worker,
    partitions: u32,
    shared: Shared<'_>,
) -> Result<(), PipelineError> {
    let Shared {
        log,
        store,
        runtime,
        config,
        stats,
        stop,
        logged,
        start,
        resumed,
    } = shared;
    let index = worker.index();
    let peers = worker.peers();
    let writes_store = store.is_some();
    // Worker 0's decider, shared with the dataflow's operator so it can be checkpointed.
    let decider = Rc::new(RefCell::new({
        let resumed = match index {
            0 => resumed.lock().unwrap_or_else(|e| e.into_inner()).take(),
            _ => None,
        };
        let decider = resumed.unwrap_or_else(|| {
            Decider::new(
                partitions as usize,
                config.allowed_lateness,
                config.inventory.clone(),
            )
        });
        if writes_store {
            decider.tracking_changes()
        } else {
            decider
        }
    }));
    let arrivals = Rc::new(RefCell::new(Arrivals::new(partitions)));
    let resumed_seq = decider.borrow().seq();
    if resumed_seq > 0 {
        // What the resumed state holds, before any new event arrives.
        publish_state(&decider.borrow(), stats);
    }
    let mut input: InputHandle<u64, CapacityContainerBuilder<Vec<Raw>>> = InputHandle::new();
    let probe = ProbeHandle::new();
    let decided: Rc<RefCell<Vec<Decided>>> = Rc::new(RefCell::new(Vec::new()));
    let store_work: Rc<RefCell<StoreWork>> = Rc::new(RefCell::new(StoreWork {
        positions: start.to_vec(),
        seq: resumed_seq,
        ..StoreWork::default()
    }));
    {
        let (decided_out, stats) = (Rc::clone(&decided), Arc::clone(stats));
        let work = Rc::clone(&store_work);
        let (decider, start) = (Rc::clone(&decider), Arc::clone(start));
        let arrivals = Rc::clone(&arrivals);
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .unary::<CapacityContainerBuilder<Vec<Decided>>, _, _, _>(
                    // Every record to worker 0: one decider sees the whole log.
                    Exchange::new(|_: &Raw| 0u64),
                    "InventoryDecider",
                    move |_capability, _info| {
                        let mut outputs = Vec::new();
                        // Append time of each undecided order_placed, for decision latency.
                        let mut placed_at: HashMap<String, i64> = HashMap::new();
                        move |input, _output| {
                            input.for_each(|_time, data| {
                                let mut work = work.borrow_mut();
                                let mut decider = decider.borrow_mut();
                                let mut arrivals = arrivals.borrow_mut();
                                for Raw {
                                    partition,
                                    offset,
                                    appended_ms,
                                    read,
                                } in data.drain(..)
                                {
                                    // Already in the resumed state (another process may read
                                    // from the start).
                                    if start.get(partition as usize).is_some_and(|s| offset < *s) {
                                        continue;
                                    }
                                    if let Some(next) = work.positions.get_mut(partition as usize) {
                                        *next = (*next).max(offset + 1);
                                        work.dirty = true;
                                    }
                                    let bytes = match read {
                                        Read::Event(bytes) => bytes,
                                        Read::Tick(secs, nanos) => {
                                            if let Some(at) =
                                                chrono::DateTime::from_timestamp(secs, nanos)
                                            {
                                                arrivals.observe(partition, appended_ms, at);
                                                decider.push_tick(partition as usize, at);
                                            }
                                            continue;
                                        }
                                        Read::Position => continue,
                                    };
                                    match Event::decode(&bytes) {
                                        Ok(event) => {
                                            arrivals.observe(
                                                partition,
                                                appended_ms,
                                                event.occurred_at,
                                            );
                                            if let Payload::OrderPlaced(o) = &event.payload {
                                                // The first copy's append time: a duplicate must not move it.
                                                placed_at
                                                    .entry(o.order_id.clone())
                                                    .or_insert(appended_ms);
                                            }
                                            decider.push_appended(
                                                partition as usize,
                                                event,
                                                appended_ms,
                                            )
                                        }
                                        Err(_) => {
                                            stats.undecodable.fetch_add(1, Ordering::Relaxed);
                                        }
                                    }
                                }
                                decider.decide(&mut outputs);
                                if writes_store {
                                    work.upserts.extend(decider.take_order_changes());
                                    work.upserts.extend(decider.take_inventory_changes());
                                    work.views.extend(decider.take_view_changes());
                                    work.seq = decider.seq();
                                    let applied = decider.take_applied_append_times();
                                    record_since(&stats.applied, &stats, &applied);
                                    work.applied_ms.extend(applied);
                                }
                                drop(work);
                                publish_state(&decider, &stats);
                                for a in decider.take_anomalies() {
                                    stats.anomalies.fetch_add(1, Ordering::Relaxed);
                                    metrics::anomaly(a.kind);
                                }
                                let decided = outputs.drain(..).map(|o| {
                                    // Reserve or reject ends an order's wait for a decision.
                                    let placed = match &o {
                                        Output::Decision { payload, .. }
                                            if matches!(
                                                payload,
                                                Payload::InventoryReserved(_)
                                                    | Payload::OrderRejected(_)
                                            ) =>
                                        {
                                            placed_at.remove(payload.partition_key())
                                        }
                                        _ => None,
                                    };
                                    (o, placed)
                                });
                                // Straight to worker 0's loop, not down the stream: so the
                                // decisions and the decider's state always agree between two
                                // operator runs, which is what a checkpoint takes.
                                decided_out.borrow_mut().extend(decided);
                            });
                        }
                    },
                )
                .probe_with(&probe);
        });
    }

    // The product documents: a differential dataflow over the availability and listings the
    // decider changes, at the seq of each change (`views`). Every worker builds it and maintains
    // its share of the products; worker 0 alone feeds it and receives each changed product's
    // skus, which its decider makes into documents for the store writer.
    let mut available_in: InputSession<u64, AvailableRow, isize> = InputSession::new();
    let mut listings_in: InputSession<u64, ListingRow, isize> = InputSession::new();
    let documents: Rc<RefCell<Latest>> = Rc::new(RefCell::new(Latest::after(resumed_seq)));
    let views_probe = ProbeHandle::new();
    {
        let documents = Rc::clone(&documents);
        worker.dataflow::<u64, _, _>(|scope| {
            views::documents(
                available_in.to_collection(scope),
                listings_in.to_collection(scope),
            )
            .inner
            // A changed product is its old value retracted and its new one inserted, at the
            // same time; documents are never deleted, so only the new values need to travel.
            .filter(|(_, _, diff)| *diff > 0)
            .exchange(|_| 0)
            .inspect(move |update| documents.borrow_mut().add(update.clone()))
            .probe_with(&views_probe);
        });
    }
    let mut views_in = if index == 0 && store.is_some() {
        if resumed_seq > 0 {
            // Load the resumed state's rows at its seq; the documents they give are in the
            // store already (the checkpoint was written after them).
            let rows = decider.borrow_mut().view_rows();
            for (row, seq, diff) in rows.available {
                available_in.update_at(row, seq, diff);
            }
            for (row, seq, diff) in rows.listings {
                listings_in.update_at(row, seq, diff);
            }
            available_in.advance_to(resumed_seq + 1);
            listings_in.advance_to(resumed_seq + 1);
            available_in.flush();
            listings_in.flush();
            while views_probe.less_than(&(resumed_seq + 1)) && !stop.load(Ordering::Relaxed) {
                worker.step_or_park(Some(std::time::Duration::from_millis(10)));
            }
        }
        Some((available_in, listings_in))
    } else {
        // Closed: the dataflow's progress is worker 0's inputs alone.
        drop((available_in, listings_in));
        None
    };

    let started_ms = chrono::Utc::now().timestamp_millis();
    let mut readers = Vec::new();
    for p in (0..partitions).filter(|p| *p as usize % peers == index) {
        readers.push((
            p,
            runtime.block_on(log.partition_reader(EVENTS_TOPIC, p, start[p as usize]))?,
        ));
    }
    // Worker 0 hands each round's documents to a writer thread and goes on deciding: a slow
    // store write delays freshness, not decisions.
    let writer = match store {
        Some(store) if index == 0 => Some(StoreWriter::start(
            Arc::clone(store),
            runtime.clone(),
            Arc::clone(stats),
            started_ms,
            config.checkpoint.as_ref().map(|c| c.dir.clone()),
        )?),
        _ => None,
    };
    let append =
        |outputs: Vec<Decided>| append_decisions(log, runtime, outputs, stats, logged, started_ms);
    let round_end = RoundEnd {
        decider: &decider,
        decided: &decided,
        append: &append,
        store_work: &store_work,
        views_probe: &views_probe,
        documents: &documents,
        config,
        stats,
    };
    let mut last_checkpoint = std::time::Instant::now();
    let mut changed_since_checkpoint = false;
    let mut complete = true;
    let publish_positions = |positions: &[(u32, u64)]| {
        let mut read = stats
            .read_positions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        read.resize(partitions as usize, 0);
        for &(p, next) in positions {
            read[p as usize] = next;
        }
        metrics::consumer_position(read.iter().sum());
    };
    let mut next_offsets: Vec<(u32, u64)> = readers
        .iter()
        .map(|(p, _)| (*p, start[*p as usize]))
        .collect();
    publish_positions(&next_offsets);
    let mut round = 0u64;
    let mut last_heartbeat_check = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut read = 0;
        for ((p, reader), (_, next)) in readers.iter_mut().zip(&mut next_offsets) {
            let records = runtime.block_on(reader.next_batch(config.read_batch))?;
            read += records.len();
            if let Some(last) = records.last() {
                *next = last.offset + 1;
            }
            for r in records {
                input.send(Raw {
                    partition: *p,
                    offset: r.offset,
                    appended_ms: r.timestamp_ms,
                    read: route(&r.value, stats),
                });
            }
        }
        stats.records_read.fetch_add(read as u64, Ordering::Relaxed);
        if read > 0 {
            publish_positions(&next_offsets);
        }
        metrics::records_read(read as u64);
        round += 1;
        input.advance_to(round);
        // Park rather than spin while other workers block on the log; give up when stopping
        // (a failed or panicked peer would otherwise hold the probe back forever).
        while probe.less_than(input.time()) && !stop.load(Ordering::Relaxed) {
            worker.step_or_park(Some(std::time::Duration::from_millis(10)));
        }
        if writer.is_none() {
            append(std::mem::take(&mut *decided.borrow_mut()))?;
        }
        if let Some(writer) = &writer {
            // Something to checkpoint (the decider took records in since the last one), and time.
            let changed = changed_since_checkpoint || store_work.borrow().dirty;
            let due = changed
                && config
                    .checkpoint
                    .as_ref()
                    .is_some_and(|c| last_checkpoint.elapsed() >= c.interval);
            // A stop lets the round's documents complete (a clean stop then checkpoints), for a
            // while: if they do not, its positions must not be written without them (the next
            // start resumes from the last checkpoint instead).
            let stopping_since = std::cell::Cell::new(None);
            let give_up = || {
                if !stop.load(Ordering::Relaxed) {
                    return false;
                }
                let since = stopping_since.get().unwrap_or_else(std::time::Instant::now);
                stopping_since.set(Some(since));
                since.elapsed() > STOP_GRACE
            };
            let Some(work) = round_end.take(worker, &mut views_in, due, give_up)? else {
                complete = false;
                break;
            };
            if work.checkpoint.is_some() {
                last_checkpoint = std::time::Instant::now();
                changed_since_checkpoint = false;
            } else {
                changed_since_checkpoint |= work.dirty;
            }
            writer.hand_off(work)?;
        }
        if index == 0
            && let Some(idle_after) = config.idle_heartbeat
            && last_heartbeat_check.elapsed() >= idle_after / 4
        {
            last_heartbeat_check = std::time::Instant::now();
            send_heartbeats(
                log,
                runtime,
                &decider.borrow(),
                &mut arrivals.borrow_mut(),
                idle_after,
                stats,
            )?;
        }
        if read == 0 {
            std::thread::sleep(config.idle_sleep);
        }
    }
    if let Some(writer) = writer {
        if complete {
            // A clean stop: what the decider took in while the last round was handed over, and
            // a checkpoint where it stopped, so the next start reads nothing twice. The other
            // workers keep stepping until every dataflow is done, so the documents complete
            // unless one of them failed (hence the time limit).
            let changed = changed_since_checkpoint || store_work.borrow().dirty;
            let limit = std::time::Instant::now() + STOP_GRACE;
            let checkpoint = changed && config.checkpoint.is_some();
            let give_up = || std::time::Instant::now() > limit;
            if let Some(work) = round_end.take(worker, &mut views_in, checkpoint, give_up)? {
                writer.hand_off(work)?;
            }
        }
        writer.finish()?;
    }
    Ok(())
}

/// Worker 0's inputs of the documents dataflow.
type ViewInputs = (
    InputSession<u64, AvailableRow, isize>,
    InputSession<u64, ListingRow, isize>,
);

/// The end of one of worker 0's rounds, when it writes the store.
struct RoundEnd<'a> {
    decider: &'a RefCell<Decider>,
    /// The decider's outputs not appended yet.
    decided: &'a RefCell<Vec<Decided>>,
    /// Appends decisions to the log.
    append: &'a dyn Fn(Vec<Decided>) -> Result<(), PipelineError>,
    store_work: &'a RefCell<StoreWork>,
    views_probe: &'a ProbeHandle<u64>,
    documents: &'a RefCell<Latest>,
    config: &'a PipelineConfig,
    stats: &'a PipelineStats,
}

impl RoundEnd<'_> {
    /// Takes what the decider produced since the last round, with a checkpoint if `checkpoint`
    /// (taken at the same moment, so state, decisions, positions and documents agree: the
    /// decider keeps deciding while worker 0 steps); appends the decisions (before the
    /// checkpoint can be written, which is after the hand-off); and adds the documents of its
    /// changes, once the documents dataflow has passed them. `None` if `give_up` said so first.
    fn take(
        &self,
        worker: &mut timely::worker::Worker,
        views_in: &mut Option<ViewInputs>,
        checkpoint: bool,
        give_up: impl Fn() -> bool,
    ) -> Result<Option<StoreWork>, PipelineError> {
        let mut work = std::mem::take(&mut *self.store_work.borrow_mut());
        let decided = std::mem::take(&mut *self.decided.borrow_mut());
        {
            let mut next = self.store_work.borrow_mut();
            next.positions = work.positions.clone();
            next.seq = work.seq;
        }
        if checkpoint {
            work.checkpoint = Some(take_checkpoint(
                &self.decider.borrow(),
                &work,
                self.config,
                self.stats,
            )?);
            work.dirty = true;
        }
        let began = std::time::Instant::now();
        (self.append)(decided)?;
        self.stats.decision_append.record(began.elapsed());
        let began = std::time::Instant::now();
        if let Some((available_in, listings_in)) = views_in {
            // The round's documents: complete once the dataflow has passed its last seq.
            let changes = std::mem::take(&mut work.views);
            for (row, seq, diff) in changes.available {
                available_in.update_at(row, seq, diff);
            }
            for (row, seq, diff) in changes.listings {
                listings_in.update_at(row, seq, diff);
            }
            let next = (work.seq + 1).max(*available_in.time());
            available_in.advance_to(next);
            listings_in.advance_to(next);
            available_in.flush();
            listings_in.flush();
            while self.views_probe.less_than(&next) {
                if give_up() {
                    return Ok(None);
                }
                worker.step_or_park(Some(std::time::Duration::from_millis(10)));
            }
            let products = self.documents.borrow_mut().take();
            let mut decider = self.decider.borrow_mut();
            work.upserts.extend(decider.product_documents(products));
            decider.forget_superseded(work.seq);
        }
        self.stats.documents_wait.record(began.elapsed());
        Ok(Some(work))
    }
}

/// The decider's watermark, open reservations, stock and orders per status, for metrics and
/// status lines.
fn publish_state(decider: &Decider, stats: &PipelineStats) {
    if let Some(w) = decider.watermark() {
        stats
            .watermark_ms
            .store(w.timestamp_millis(), Ordering::Relaxed);
        let lag = chrono::Utc::now() - w;
        metrics::watermark_lag(lag.to_std().unwrap_or_default());
    }
    metrics::open_reservations(decider.inventory().open_reservations());
    stats
        .late_events
        .store(decider.late_events(), Ordering::Relaxed);
    metrics::late_events(decider.late_events());
    stats
        .units_on_hand
        .store(decider.inventory().units_on_hand(), Ordering::Relaxed);
    for status in OrderStatus::ALL {
        let n = decider.orders().count(status) as u64;
        stats.orders_by_status[status as usize].store(n, Ordering::Relaxed);
    }
}

/// The decider's state with the positions it reflects (the round's changes already taken).
fn take_checkpoint(
    decider: &Decider,
    work: &StoreWork,
    config: &PipelineConfig,
    stats: &PipelineStats,
) -> Result<Checkpoint, PipelineError> {
    let began = std::time::Instant::now();
    let state = decider.state()?;
    stats
        .checkpoint_pause_ms
        .store(began.elapsed().as_millis() as u64, Ordering::Relaxed);
    Ok(Checkpoint {
        format: checkpoint::FORMAT,
        seq: decider.seq(),
        positions: work.positions.clone(),
        allowed_lateness_ms: config.allowed_lateness.num_milliseconds(),
        reservation_ttl_ms: config.inventory.reservation_ttl.num_milliseconds(),
        state,
    })
}

/// How long a stop waits for the documents of the round in progress.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The shortest time between two store commits.
const STORE_COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Documents waiting for the writer, merged by key: a document changed in several rounds is
/// written once, at its latest `seq`.
#[derive(Default)]
struct Pending {
    upserts: HashMap<(u8, String), Upsert>,
    positions: Vec<u64>,
    seq: u64,
    applied_ms: Vec<i64>,
    checkpoint: Option<Checkpoint>,
    dirty: bool,
    closed: bool,
    error: Option<PipelineError>,
}

/// The thread that writes the store, one batch at a time, while worker 0 keeps deciding.
struct StoreWriter {
    shared: Arc<(std::sync::Mutex<Pending>, std::sync::Condvar)>,
    thread: std::thread::JoinHandle<()>,
}

impl StoreWriter {
    fn start(
        store: Arc<dyn Store>,
        runtime: tokio::runtime::Handle,
        stats: Arc<PipelineStats>,
        started_ms: i64,
        checkpoints: Option<std::path::PathBuf>,
    ) -> Result<Self, PipelineError> {
        let shared = Arc::new((
            std::sync::Mutex::new(Pending::default()),
            std::sync::Condvar::new(),
        ));
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("emporium-store".into())
                .spawn(move || {
                    let (lock, ready) = &*shared;
                    loop {
                        let work = {
                            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                            while !p.dirty && !p.closed {
                                p = ready.wait(p).unwrap_or_else(|e| e.into_inner());
                            }
                            if !p.dirty {
                                return;
                            }
                            p.dirty = false;
                            StoreWork {
                                upserts: std::mem::take(&mut p.upserts).into_values().collect(),
                                views: ViewChanges::default(),
                                positions: p.positions.clone(),
                                applied_ms: std::mem::take(&mut p.applied_ms),
                                seq: p.seq,
                                checkpoint: p.checkpoint.take(),
                                dirty: true,
                            }
                        };
                        let began = std::time::Instant::now();
                        // The checkpoint after the documents it covers: a crash between the two
                        // leaves the previous checkpoint, which the store is past.
                        let result =
                            write_store(store.as_ref(), &runtime, work, &stats, started_ms);
                        let result = match (result, &checkpoints) {
                            (Ok(Some(c)), Some(dir)) => {
                                save_checkpoint(store.as_ref(), &runtime, dir, &c, &stats);
                                Ok(())
                            }
                            (result, _) => result.map(drop),
                        };
                        if let Err(e) = result {
                            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                            p.error = Some(e);
                            return;
                        }
                        // At most one commit per interval: each commit rewrites B-tree paths and
                        // fsyncs, so fewer, larger batches (merged by key) cost far less.
                        if let Some(rest) = STORE_COMMIT_INTERVAL.checked_sub(began.elapsed()) {
                            std::thread::sleep(rest);
                        }
                    }
                })
                .map_err(|e| PipelineError::Timely(format!("store writer thread: {e}")))?
        };
        Ok(Self { shared, thread })
    }

    /// Merges a round's documents into what waits for the writer; fails if the writer failed.
    fn hand_off(&self, work: StoreWork) -> Result<(), PipelineError> {
        let (lock, ready) = &*self.shared;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = p.error.take() {
            return Err(e);
        }
        if !work.dirty {
            return Ok(());
        }
        for u in work.upserts {
            let key = match &u {
                Upsert::Product { view, .. } => (0, view.product_id.clone()),
                Upsert::Inventory { view, .. } => (1, view.sku.clone()),
                Upsert::Order { view, .. } => (2, view.order_id.clone()),
            };
            p.upserts.insert(key, u);
        }
        p.positions = work.positions;
        p.seq = p.seq.max(work.seq);
        p.applied_ms.extend(work.applied_ms);
        if work.checkpoint.is_some() {
            p.checkpoint = work.checkpoint;
        }
        p.dirty = true;
        ready.notify_one();
        Ok(())
    }

    /// Writes what is still waiting, then stops the thread.
    fn finish(self) -> Result<(), PipelineError> {
        let (lock, ready) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        ready.notify_one();
        if self.thread.join().is_err() {
            return Err(PipelineError::Timely("the store writer panicked".into()));
        }
        match lock.lock().unwrap_or_else(|e| e.into_inner()).error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn append_decisions(
    log: &Arc<dyn EventLog>,
    runtime: &tokio::runtime::Handle,
    outputs: Vec<Decided>,
    stats: &PipelineStats,
    logged: &HashSet<Uuid>,
    started_ms: i64,
) -> Result<(), PipelineError> {
    let mut records = Vec::new();
    let mut placed = Vec::new();
    for (output, placed_ms) in outputs {
        match output {
            Output::Decision { at, payload } => {
                let outcome = match &payload {
                    Payload::InventoryReserved(_) => "reserved",
                    Payload::OrderRejected(_) => "rejected",
                    _ => "released",
                };
                let event = decision_event(at, payload);
                if logged.contains(&event.event_id) {
                    stats
                        .decisions_already_logged
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                metrics::decision(outcome);
                placed.extend(placed_ms);
                records.push(Record::new(
                    event.partition_key().as_bytes().to_vec(),
                    event.to_json(),
                ));
            }
            Output::Anomaly {
                at,
                key,
                kind,
                detail,
            } => {
                stats.anomalies.fetch_add(1, Ordering::Relaxed);
                metrics::anomaly(kind);
                tracing::debug!(%at, key, kind, detail, "anomaly");
            }
        }
    }
    let n = records.len() as u64;
    if n > 0 {
        runtime.block_on(log.append(EVENTS_TOPIC, records))?;
        stats.decisions_appended.fetch_add(n, Ordering::Relaxed);
        let now_ms = chrono::Utc::now().timestamp_millis();
        // Orders appended before this run started are a replay, not decision latency.
        for ms in placed.into_iter().filter(|ms| *ms >= started_ms) {
            let latency = std::time::Duration::from_millis(now_ms.saturating_sub(ms).max(0) as u64);
            metrics::decision_latency(latency);
            stats.decision.record(latency);
        }
    }
    Ok(())
}

/// Writes a checkpoint the store now covers. A failure is logged and counted, not fatal: the
/// previous checkpoint stays, and checkpoints only shorten restarts. A checkpoint the store is not
/// at or past in every partition is skipped, since a restart would refuse it: that happens while
/// a restarted pipeline catches up with a store written further before a crash (the store keeps
/// the positions of its highest `seq`).
fn save_checkpoint(
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    dir: &std::path::Path,
    checkpoint: &Checkpoint,
    stats: &PipelineStats,
) {
    match runtime.block_on(store.positions()) {
        Ok(Some(stored))
            if stored.len() == checkpoint.positions.len()
                && stored
                    .iter()
                    .zip(&checkpoint.positions)
                    .all(|(s, c)| s >= c) => {}
        Ok(_) => {
            tracing::debug!(
                seq = checkpoint.seq,
                "checkpoint skipped: the store's positions are from a later seq"
            );
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint skipped: reading the store's positions");
            metrics::checkpoint_failed();
            return;
        }
    }
    match checkpoint::write(dir, checkpoint) {
        Ok(bytes) => {
            stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            stats.checkpoint_bytes.store(bytes, Ordering::Relaxed);
            let pause = stats.checkpoint_pause_ms.load(Ordering::Relaxed);
            metrics::checkpoint(bytes, std::time::Duration::from_millis(pause));
        }
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint not written (the previous one stays)");
            metrics::checkpoint_failed();
        }
    }
}

/// Writes a round's documents and positions to the store; records freshness. Gives back the
/// batch's checkpoint, now covered by the store.
fn write_store(
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    work: StoreWork,
    stats: &PipelineStats,
    started_ms: i64,
) -> Result<Option<Checkpoint>, PipelineError> {
    if !work.dirty {
        return Ok(None);
    }
    let documents = work.upserts.len();
    let began = std::time::Instant::now();
    runtime.block_on(store.apply(WriteBatch {
        upserts: work.upserts,
        positions: work.positions,
        seq: work.seq,
    }))?;
    emporium_serving::metrics::write(documents, began.elapsed());
    stats.store_write.record(began.elapsed());
    stats.store_batches.fetch_add(1, Ordering::Relaxed);
    stats
        .documents_written
        .fetch_add(documents as u64, Ordering::Relaxed);
    let now_ms = chrono::Utc::now().timestamp_millis();
    // Events appended before this run started are a replay, not freshness.
    let from = started_ms.max(stats.freshness_from_ms.load(Ordering::Relaxed));
    for ms in work.applied_ms.into_iter().filter(|ms| *ms >= from) {
        let latency = std::time::Duration::from_millis(now_ms.saturating_sub(ms).max(0) as u64);
        metrics::freshness(latency);
        stats.freshness.record(latency);
    }
    Ok(work.checkpoint)
}

/// Records now − each append time in `histogram`, for events appended since `freshness_from_ms`.
fn record_since(histogram: &LatencyHistogram, stats: &PipelineStats, appended_ms: &[i64]) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let from = stats.freshness_from_ms.load(Ordering::Relaxed);
    for ms in appended_ms.iter().filter(|ms| **ms >= from) {
        histogram.record(std::time::Duration::from_millis(
            now_ms.saturating_sub(*ms).max(0) as u64,
        ));
    }
}

/// Ids of the decision events in the log from `from` on, per partition (read once at start).
async fn decisions_in_log(log: &dyn EventLog, from: &[u64]) -> Result<HashSet<Uuid>, LogError> {
    #[derive(Deserialize)]
    struct Head<'a> {
        event_id: Uuid,
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let mut ids = HashSet::new();
    for (p, &end) in log.end_offsets(EVENTS_TOPIC).await?.iter().enumerate() {
        let mut from = from.get(p).copied().unwrap_or(0);
        while from < end {
            let batch = log.read(EVENTS_TOPIC, p as u32, from, 50_000).await?;
            let Some(last) = batch.last() else { break };
            from = last.offset + 1;
            for r in batch {
                if let Ok(head) = serde_json::from_slice::<Head>(&r.value)
                    && EventKind::from_name(&head.kind).is_some_and(EventKind::is_system)
                {
                    ids.insert(head.event_id);
                }
            }
        }
    }
    Ok(ids)
}
