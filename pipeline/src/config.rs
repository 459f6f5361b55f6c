//! The pipeline's settings: workers, lateness, batches, cluster and checkpoints.

use chrono::Duration;
use emporium_dataflows::inventory::InventoryConfig;
use emporium_dataflows::view::Spec;

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
    /// No heartbeat for this long after a start: producers that were backing off while the
    /// process was down resend first, at their own times, instead of finding their partitions'
    /// clocks pushed past them by heartbeats (ADR 0005, ADR 0008).
    pub heartbeat_grace: std::time::Duration,
    /// The maintained views, besides the decider's folds and the products dataflow
    /// ([`emporium_dataflows::view`]); every process over one log must run the same.
    pub views: Vec<Spec>,
    /// The store claim this pipeline took last, shared by its restarts (clones of the config):
    /// a restart that finds a newer claim in the store stops as fenced instead of claiming
    /// again, which would fence the newer decider in turn (ADR 0012). 0: none yet.
    pub claimed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Feed this search index from the documents written to the store ([`crate::search`]);
    /// only the process that writes the store does.
    pub search: Option<crate::search::SearchSink>,
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
            heartbeat_grace: std::time::Duration::from_secs(10),
            views: emporium_dataflows::views(),
            claimed: Default::default(),
            search: None,
        }
    }
}

/// The global worker that reads `partition` when the pipeline has `global_workers` workers over
/// all its processes (worker `w` of process `p` is global worker `p × workers + w`).
pub fn reader_of(partition: u32, global_workers: usize) -> usize {
    partition as usize % global_workers.max(1)
}
