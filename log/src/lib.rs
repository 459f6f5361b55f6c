//! The event log: the write side and source of truth of the platform. One small trait,
//! [`EventLog`], with two interchangeable backends that pass the same conformance suite:
//!
//! - [`embedded::EmbeddedLog`]: segment files on local disk, group-committed with fdatasync, for
//!   one machine with nothing installed (ADR 0003);
//! - [`kafka::KafkaLog`]: any Kafka-protocol broker through librdkafka, idempotent producer with
//!   `acks=all` (ADR 0002).
//!
//! Both place a record on the partition `murmur2(key) mod partitions` ([`partition_for`]), the
//! Java client's default, so with the same partition count a key lands on the same partition
//! number whichever backend holds it (and wherever a Java producer would put it).
//! Downstream crates read through this trait, never through a backend.

pub mod embedded;
pub mod kafka;
mod partitioner;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use partitioner::{murmur2, partition_for};

/// The topic every accepted event is appended to (ADR 0002).
pub const EVENTS_TOPIC: &str = "emporium.events";
/// The topic rejected input goes to, with the reason it was rejected.
pub const DEAD_LETTER_TOPIC: &str = "emporium.dlq";

/// One record to append: the partition key and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Bytes,
    pub value: Bytes,
}

impl Record {
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// The claim of one writer name, from [`EventLog::claim_writer`]: pass it to
/// [`EventLog::append_as`]. A later claim of the same name fences this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterClaim {
    /// The writer's name (`decider`): one process at a time appends under it.
    pub name: String,
    /// Claims of this name so far, this one included (embedded: kept in the log directory;
    /// Kafka: the claims made by this client, the broker's producer epoch doing the fencing).
    pub epoch: u64,
}

/// Where a record sits: its partition and its offset within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: u32,
    pub offset: u64,
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: u32,
    pub offset: u64,
    /// When the log appended it, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub key: Bytes,
    pub value: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log cannot take or serve records right now; the caller may retry later.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// Some records reached the log and others did not (possible with Kafka, where a batch spans
    /// partitions). `appended` lists the indices, in the input, of those that did.
    #[error("only {} records of the batch were appended: {cause}", appended.len())]
    PartiallyAppended { appended: Vec<usize>, cause: String },
    #[error("unknown topic {0:?}: create it first")]
    UnknownTopic(String),
    #[error("partition {partition} does not exist in topic {topic:?}")]
    UnknownPartition { topic: String, partition: u32 },
    /// A read asked for offsets that retention has already removed: the partition now starts at
    /// `first`. Never skipped silently: a reader that went on from `first` would decide on, or
    /// store, a history with a hole in it (ADR 0003). Counted in `emporium_log_gaps_total`.
    #[error(
        "offsets {requested}..{first} of {topic}/{partition} are no longer in the log (removed by \
         retention); the partition now starts at offset {first}"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        requested: u64,
        first: u64,
    },
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt log file {path} at byte {position}: {detail}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        detail: String,
    },
    #[error("data directory {0} is in use by another process (its LOCK file is held)")]
    Locked(PathBuf),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the event log has been closed")]
    Closed,
    /// Another process claimed this writer's name since this one did ([`EventLog::claim_writer`]):
    /// this one must stop appending (and deciding). Not retryable: retrying would take the
    /// name back and fence the newer writer in turn (ADR 0012).
    #[error(
        "writer {writer:?} (claim {epoch}) was fenced: another process claimed that name since, \
         so this one stops appending"
    )]
    Fenced { writer: String, epoch: u64 },
    #[error("Kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl LogError {
    /// The error for a read below a partition's first retained offset, for readers that check
    /// positions up front; counts the gap in `emporium_log_gaps_total`.
    pub fn out_of_range(topic: &str, partition: u32, requested: u64, first: u64) -> Self {
        Self::gap(topic, partition, requested, first)
    }

    /// The error for a read below a partition's first retained offset; counts the gap.
    pub(crate) fn gap(topic: &str, partition: u32, requested: u64, first: u64) -> Self {
        metrics::counter!(
            "emporium_log_gaps_total",
            "topic" => topic.to_owned(),
            "partition" => partition.to_string()
        )
        .increment(1);
        tracing::error!(
            topic,
            partition,
            requested,
            first,
            "read below the first retained offset"
        );
        LogError::OffsetOutOfRange {
            topic: topic.to_owned(),
            partition,
            requested,
            first,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether retrying the same call later may succeed (answered with 503 + Retry-After).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LogError::Unavailable(_)
                | LogError::PartiallyAppended { .. }
                | LogError::Io { .. }
                | LogError::Kafka(_)
                | LogError::Closed
        )
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// A partitioned, ordered, durable, append-only log of records.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// What and where this log is, for start-up messages (`embedded log at ./data/log`).
    fn describe(&self) -> String;

    /// When (ms since the epoch) a reader of this log in this process last found it
    /// unreachable and waited for it to come back (`None`: never). Producers' appends held
    /// during such an outage land after it, late, so the pipeline sends no heartbeat for a grace
    /// period after one, as after its own start (ADR 0005). The embedded log is never unreachable.
    fn last_unreachable_ms(&self) -> Option<i64> {
        None
    }

    /// Creates `topic` with `partitions` partitions if it does not exist; returns the partition
    /// count it has (an existing topic keeps its count, as in Kafka).
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32>;

    async fn partition_count(&self, topic: &str) -> Result<u32>;

    /// Appends `records`, each to the partition of its key, and returns once every one of them is
    /// durable (fsynced, or acknowledged by all in-sync replicas). Positions are in input order.
    /// On error none of them is acknowledged, except those listed by
    /// [`LogError::PartiallyAppended`]; the caller resends the rest (ADR 0004).
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>>;

    /// Makes this process the one writer named `writer` (ADR 0012): every append through an
    /// earlier claim of the name, by this process or another, fails with [`LogError::Fenced`]
    /// from now on. Embedded: an epoch kept in the log directory. Kafka: a transactional producer
    /// with `transactional.id = emporium-<writer>`, which fences the previous one at the broker
    /// and aborts its open transaction.
    async fn claim_writer(&self, writer: &str) -> Result<WriterClaim>;

    /// Appends `records` as the claimed writer, all of them or none (Kafka: one transaction),
    /// and returns once they are durable. [`LogError::Fenced`] once the name was claimed again.
    /// Readers skip what an aborted transaction wrote (Kafka's `read_committed`, librdkafka's
    /// default), and offsets may then have gaps: transaction markers take an offset each.
    async fn append_as(
        &self,
        claim: &WriterClaim,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<Vec<Position>>;

    /// The next offset to be written in each partition (Kafka's high watermark).
    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>>;

    /// The first offset each partition still holds (Kafka's log start offset): retention removed
    /// everything below it. Equal to the end offset when retention emptied the partition.
    async fn start_offsets(&self, topic: &str) -> Result<Vec<u64>>;

    /// Reads up to `max` records of one partition from offset `from`, without waiting for more.
    /// A `from` below the partition's first retained offset is an error
    /// ([`LogError::OffsetOutOfRange`]), never a read that silently starts later.
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<ConsumedRecord>>;

    /// A member of consumer group `group` reading `topic` from the group's committed positions
    /// (the first retained offset where the group has none, or where retention removed its
    /// position: Kafka's `auto.offset.reset=earliest`, for tools; Emporium's own readers keep
    /// their positions and use [`EventLog::partition_reader`]).
    async fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn LogConsumer>>;

    /// A cursor over one partition from offset `from`, for readers that keep their own positions
    /// (the dataflows: positions are part of their state, not of a consumer group). A `from`
    /// below the first retained offset, now or when retention overtakes the cursor later, is
    /// [`LogError::OffsetOutOfRange`] (from this call or from `next_batch`).
    async fn partition_reader(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<Box<dyn PartitionReader>>;
}

/// A cursor over one partition.
#[async_trait]
pub trait PartitionReader: Send {
    /// Up to `max` records from the cursor, without waiting for more (empty at the end of the
    /// partition); the cursor moves past what it returns.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<ConsumedRecord>>;

    /// The offset the cursor reads next: past the last record returned, and past any Kafka
    /// transaction markers (and aborted records) after it, which take offsets but are never
    /// returned. At the partition's end offset once everything there was read.
    fn position(&self) -> u64;
}

/// One member of a consumer group. Positions advance only when committed.
#[async_trait]
pub trait LogConsumer: Send {
    /// Waits up to `timeout` for records, returning at most `max` (empty when none came).
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>>;

    /// Records, for each partition, the offset of the next record the group should read.
    async fn commit(&mut self, next: &[Position]) -> Result<()>;
}

/// Reads a whole topic, from what retention kept up to its current end (for tests and tools).
pub async fn read_all(log: &dyn EventLog, topic: &str) -> Result<Vec<ConsumedRecord>> {
    let starts = log.start_offsets(topic).await?;
    let ends = log.end_offsets(topic).await?;
    let mut out = Vec::new();
    for (partition, &end) in ends.iter().enumerate() {
        let mut from = starts.get(partition).copied().unwrap_or(0);
        let partition = partition as u32;
        while from < end {
            let batch = log.read(topic, partition, from, 10_000).await?;
            let Some(last) = batch.last() else { break };
            from = last.offset + 1;
            out.extend(batch);
        }
    }
    Ok(out)
}
