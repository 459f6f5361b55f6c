//! The embedded event log: Kafka's storage model in one process, for one machine with nothing
//! installed. It owns its data directory; it must never acknowledge a record before it is on disk.
//!
//! Layout: `<dir>/<topic>/<partition:04>/<base offset:020>.seg`, segments rolled by size. A frame is
//! `u32 length | u32 CRC32C(rest) | u64 offset | i64 timestamp_ms | u32 key length | key | value`,
//! little-endian. One writer thread owns every file: it drains all queued appends, writes them,
//! fdatasyncs each touched segment once, and only then answers every caller (group commit). A
//! group that fails is truncated away, so nothing half-written is ever visible. On open, the tail
//! of each partition is scanned and a torn frame (short, bad CRC, offset gap) is cut off.
//! See `specs/adr/0003-embedded-log-design.md`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};

use super::{
    ConsumedRecord, EventLog, LogConsumer, LogError, PartitionReader, Position, Record, Result,
    WriterClaim, partition_for,
};

mod groups;
mod read;
mod recovery;
mod retention;
mod segment;
mod writer;

use groups::*;
use read::*;
use recovery::*;
use retention::*;
use segment::*;
use writer::*;

const HEADER_BYTES: usize = 8; // length + crc
const FIXED_BODY_BYTES: usize = 8 + 8 + 4; // offset + timestamp + key length
const SEGMENT_SUFFIX: &str = "seg";

/// Settings of the embedded log; the defaults suit one machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Directory that holds every topic.
    pub dir: PathBuf,
    /// A partition's active segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Closed segments whose last write is older than this are deleted (`None`: keep forever).
    pub retention: Option<Duration>,
    /// Per partition, oldest closed segments are deleted while the total exceeds this.
    pub retention_bytes: Option<u64>,
    /// Largest record (key + value) accepted.
    pub max_record_bytes: usize,
    /// A pause before every fsync of appended records: zero, except in the fault suite, which
    /// emulates a slow disk with it (`EMPORIUM_FAULT_FSYNC_DELAY_MS` for the binary).
    pub fsync_delay: Duration,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("emporium-data/log"),
            segment_bytes: 64 * 1024 * 1024,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_bytes: None,
            max_record_bytes: 1024 * 1024,
            fsync_delay: Duration::ZERO,
        }
    }
}

impl EmbeddedConfig {
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }
}

/// The embedded, durable, partitioned log. Cheap to share behind an `Arc`.
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    config: EmbeddedConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Set when the files may no longer match what the writer believes (a failed rollback, a
    /// dead writer): every later call fails until the log is reopened and recovery runs.
    failure: Mutex<Option<String>>,
    _lock: File,
}

impl Shared {
    fn check(&self) -> Result<()> {
        match self.failure.lock().as_ref() {
            Some(why) => Err(LogError::Unavailable(format!(
                "the embedded log stopped after a storage failure and must be reopened: {why}"
            ))),
            None => Ok(()),
        }
    }

    fn fail(&self, why: String) {
        tracing::error!(reason = %why, "embedded log stopped");
        self.failure.lock().get_or_insert(why);
    }
}

struct Topic {
    dir: PathBuf,
    partitions: Vec<Partition>,
    /// Woken after every durable append, for consumers waiting in `poll`.
    appended: Notify,
}

struct Partition {
    dir: PathBuf,
    /// Offsets below this are durable and visible to readers.
    durable_end: AtomicU64,
    segments: RwLock<Vec<SegmentIndex>>,
}

impl Partition {
    /// The first offset retention kept: the oldest segment's base (the durable end once every
    /// record is gone; the active segment is never deleted, so it is its base then).
    fn first_retained(&self) -> u64 {
        let end = self.durable_end.load(Ordering::Acquire);
        self.segments
            .read()
            .first()
            .map_or(end, |s| s.base.min(end))
    }
}

/// Where a segment's records are: its first offset, its file, and a sparse offset → byte index.
#[derive(Clone)]
struct SegmentIndex {
    base: u64,
    path: PathBuf,
    /// `(offset, byte position)` of a frame every [`INDEX_INTERVAL`] bytes; first is `(base, 0)`.
    entries: Vec<(u64, u64)>,
}

const INDEX_INTERVAL: u64 = 4096;

#[derive(Serialize, Deserialize)]
struct TopicMeta {
    partitions: u32,
}

enum Command {
    Append {
        topic: String,
        records: Vec<Record>,
        reply: oneshot::Sender<Result<Vec<Position>>>,
    },
    EnsureTopic {
        topic: String,
        partitions: u32,
        reply: oneshot::Sender<Result<u32>>,
    },
    /// Raises a writer name's epoch (durably) and answers with the new one.
    ClaimWriter {
        name: String,
        reply: oneshot::Sender<Result<u64>>,
    },
    /// An append that goes in only while `claim` is its name's current epoch: checked by the
    /// writer thread, which also takes the claims, so no claim can slip between check and write.
    AppendAs {
        claim: WriterClaim,
        topic: String,
        records: Vec<Record>,
        reply: oneshot::Sender<Result<Vec<Position>>>,
    },
}

/// The file, in the log directory, that keeps each writer name's epoch (ADR 0012).
const WRITERS_FILE: &str = "writers.json";

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `config.dir`, recovering every partition's tail.
    pub fn open(config: EmbeddedConfig) -> Result<Self> {
        fs::create_dir_all(&config.dir).map_err(|e| LogError::io(&config.dir, e))?;
        if let Some(parent) = config.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        let lock_path = config.dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LogError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(LogError::Locked(config.dir.clone())),
            Err(fs::TryLockError::Error(e)) => return Err(LogError::io(&lock_path, e)),
        }
        let mut topics = HashMap::new();
        let mut active = HashMap::new();
        let entries = fs::read_dir(&config.dir).map_err(|e| LogError::io(&config.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| LogError::io(&config.dir, e))?;
            let meta_path = entry.path().join("topic.json");
            if !meta_path.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta: TopicMeta = read_json(&meta_path)?;
            if meta.partitions == 0 {
                return Err(LogError::Corrupt {
                    path: meta_path,
                    position: 0,
                    detail: "a topic with 0 partitions".into(),
                });
            }
            let (topic, writers) = recover_topic(&entry.path(), meta.partitions)?;
            topics.insert(name.clone(), Arc::new(topic));
            active.insert(name, writers);
        }
        let shared = Arc::new(Shared {
            config,
            topics: RwLock::new(topics),
            failure: Mutex::new(None),
            _lock: lock,
        });
        let writers_path = shared.config.dir.join(WRITERS_FILE);
        let writers: HashMap<String, u64> = if writers_path.is_file() {
            read_json(&writers_path)?
        } else {
            HashMap::new()
        };
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: Arc::clone(&shared),
            active,
            writers,
        };
        let handle = std::thread::Builder::new()
            .name("emporium-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::io(&shared.config.dir, e))?;
        Ok(Self {
            shared,
            commands: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.config.dir
    }

    /// Stops the writer after it has finished every queued append. Later calls fail with `Closed`.
    pub fn close(&self) {
        self.commands.lock().take();
        if let Some(handle) = self.writer.lock().take() {
            // A panicking writer already failed its callers; nothing more to report here.
            let _ = handle.join();
        }
    }

    /// Sends a command to the writer thread and waits for its answer.
    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        {
            let guard = self.commands.lock();
            let tx = guard.as_ref().ok_or(LogError::Closed)?;
            tx.send(command(reply)).map_err(|_| LogError::Closed)?;
        }
        answer.await.map_err(|_| LogError::Closed)?
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.shared
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_owned()))
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    fn describe(&self) -> String {
        format!("embedded log at {}", self.shared.config.dir.display())
    }

    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32> {
        if let Ok(existing) = self.topic(topic) {
            return Ok(existing.partitions.len() as u32);
        }
        if partitions == 0 {
            return Err(LogError::Config(
                "a topic needs at least one partition".into(),
            ));
        }
        check_name("topic", topic)?;
        self.request(|reply| Command::EnsureTopic {
            topic: topic.to_owned(),
            partitions,
            reply,
        })
        .await
    }

    async fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic)?.partitions.len() as u32)
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.request(|reply| Command::Append {
            topic: topic.to_owned(),
            records,
            reply,
        })
        .await
    }

    async fn claim_writer(&self, writer: &str) -> Result<WriterClaim> {
        check_name("writer", writer)?;
        let epoch = self
            .request(|reply| Command::ClaimWriter {
                name: writer.to_owned(),
                reply,
            })
            .await?;
        Ok(WriterClaim {
            name: writer.to_owned(),
            epoch,
        })
    }

    async fn append_as(
        &self,
        claim: &WriterClaim,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<Vec<Position>> {
        self.request(|reply| Command::AppendAs {
            claim: claim.clone(),
            topic: topic.to_owned(),
            records,
            reply,
        })
        .await
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>> {
        self.shared.check()?;
        let topic = self.topic(topic)?;
        Ok(topic
            .partitions
            .iter()
            .map(|p| p.durable_end.load(Ordering::Acquire))
            .collect())
    }

    async fn start_offsets(&self, topic: &str) -> Result<Vec<u64>> {
        self.shared.check()?;
        let topic = self.topic(topic)?;
        Ok(topic
            .partitions
            .iter()
            .map(Partition::first_retained)
            .collect())
    }

    async fn read(
        &self,
        topic_name: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<ConsumedRecord>> {
        let topic = self.topic(topic_name)?;
        let p =
            topic
                .partitions
                .get(partition as usize)
                .ok_or_else(|| LogError::UnknownPartition {
                    topic: topic_name.to_owned(),
                    partition,
                })?;
        read_partition(p, topic_name, partition, from, max)
    }

    async fn partition_reader(
        &self,
        topic_name: &str,
        partition: u32,
        from: u64,
    ) -> Result<Box<dyn PartitionReader>> {
        let topic = self.topic(topic_name)?;
        let Some(p) = topic.partitions.get(partition as usize) else {
            return Err(LogError::UnknownPartition {
                topic: topic_name.to_owned(),
                partition,
            });
        };
        let first = p.first_retained();
        if from < first {
            return Err(LogError::gap(topic_name, partition, from, first));
        }
        Ok(Box::new(EmbeddedReader {
            topic,
            name: topic_name.to_owned(),
            partition,
            next: from,
        }))
    }

    async fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn LogConsumer>> {
        let t = self.topic(topic)?;
        check_name("consumer group", group)?;
        let path = t.dir.join("_groups").join(format!("{group}.json"));
        let mut next = if path.is_file() {
            read_json::<GroupPositions>(&path)?.next
        } else {
            Vec::new()
        };
        next.resize(t.partitions.len(), 0);
        Ok(Box::new(EmbeddedConsumer {
            topic: t,
            name: topic.to_owned(),
            group_file: path,
            next,
            turn: 0,
        }))
    }
}
