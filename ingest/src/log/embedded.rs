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
    partition_for,
};

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
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("emporium-data/log"),
            segment_bytes: 64 * 1024 * 1024,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_bytes: None,
            max_record_bytes: 1024 * 1024,
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

#[derive(Serialize, Deserialize, Default)]
struct GroupPositions {
    /// Next offset to read, per partition.
    next: Vec<u64>,
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
}

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
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: Arc::clone(&shared),
            active,
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

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>> {
        self.shared.check()?;
        let topic = self.topic(topic)?;
        Ok(topic
            .partitions
            .iter()
            .map(|p| p.durable_end.load(Ordering::Acquire))
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
        read_partition(p, partition, from, max)
    }

    async fn partition_reader(
        &self,
        topic_name: &str,
        partition: u32,
        from: u64,
    ) -> Result<Box<dyn PartitionReader>> {
        let topic = self.topic(topic_name)?;
        if partition as usize >= topic.partitions.len() {
            return Err(LogError::UnknownPartition {
                topic: topic_name.to_owned(),
                partition,
            });
        }
        Ok(Box::new(EmbeddedReader {
            topic,
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
            group_file: path,
            next,
            turn: 0,
        }))
    }
}

/// A cursor over one partition of the embedded log.
struct EmbeddedReader {
    topic: Arc<Topic>,
    partition: u32,
    next: u64,
}

#[async_trait]
impl PartitionReader for EmbeddedReader {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<ConsumedRecord>> {
        let batch = read_partition(
            &self.topic.partitions[self.partition as usize],
            self.partition,
            self.next,
            max,
        )?;
        if let Some(last) = batch.last() {
            self.next = last.offset + 1;
        }
        Ok(batch)
    }
}

/// The only member of its consumer group: it owns every partition of the topic.
struct EmbeddedConsumer {
    topic: Arc<Topic>,
    group_file: PathBuf,
    /// Next offset to hand out per partition (ahead of the committed position until commit).
    next: Vec<u64>,
    turn: usize,
}

#[async_trait]
impl LogConsumer for EmbeddedConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.topic.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut out = Vec::new();
            let n = self.topic.partitions.len();
            for i in 0..n {
                if out.len() >= max {
                    break;
                }
                let p = (self.turn + i) % n;
                let batch = read_partition(
                    &self.topic.partitions[p],
                    p as u32,
                    self.next[p],
                    max - out.len(),
                )?;
                if let Some(last) = batch.last() {
                    self.next[p] = last.offset + 1;
                }
                out.extend(batch);
            }
            self.turn = (self.turn + 1) % n.max(1);
            if !out.is_empty() {
                return Ok(out);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(out);
            }
        }
    }

    async fn commit(&mut self, next: &[Position]) -> Result<()> {
        let mut positions = if self.group_file.is_file() {
            read_json::<GroupPositions>(&self.group_file)?.next
        } else {
            Vec::new()
        };
        positions.resize(self.topic.partitions.len(), 0);
        for pos in next {
            let slot = positions
                .get_mut(pos.partition as usize)
                .ok_or_else(|| LogError::Config(format!("no partition {}", pos.partition)))?;
            *slot = pos.offset;
        }
        write_json_durably(&self.group_file, &GroupPositions { next: positions })
    }
}

/// The writer thread's state: the open active segment of every partition.
struct Writer {
    shared: Arc<Shared>,
    active: HashMap<String, Vec<ActiveSegment>>,
}

struct ActiveSegment {
    file: File,
    path: PathBuf,
    len: u64,
    next_offset: u64,
    last_indexed: u64,
    /// `last_indexed` as of the last durable write, restored when a write fails.
    durable_last_indexed: u64,
    /// Frames staged in the current group commit, not yet written.
    staged: Vec<u8>,
    staged_count: u64,
    staged_index: Vec<(u64, u64)>,
}

struct Staged {
    reply: oneshot::Sender<Result<Vec<Position>>>,
    result: Result<Vec<Position>>,
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        /// Marks the log failed if the writer thread unwinds, so readiness reports it.
        struct PanicGuard(Arc<Shared>);
        impl Drop for PanicGuard {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.fail("the writer thread panicked".into());
                }
            }
        }
        let _guard = PanicGuard(Arc::clone(&self.shared));
        while let Ok(first) = commands.recv() {
            let mut group = Vec::new();
            self.dispatch(first, &mut group);
            while group.len() < 4096 {
                match commands.try_recv() {
                    Ok(command) => self.dispatch(command, &mut group),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit(group);
            }
        }
    }

    fn dispatch(&mut self, command: Command, group: &mut Vec<Staged>) {
        match command {
            Command::EnsureTopic {
                topic,
                partitions,
                reply,
            } => {
                let _ = reply.send(self.ensure_topic(&topic, partitions));
            }
            Command::Append {
                topic,
                records,
                reply,
            } => {
                let result = self.stage(&topic, records);
                group.push(Staged { reply, result });
            }
        }
    }

    fn ensure_topic(&mut self, name: &str, partitions: u32) -> Result<u32> {
        if let Some(t) = self.shared.topics.read().get(name) {
            return Ok(t.partitions.len() as u32);
        }
        let dir = self.shared.config.dir.join(name);
        fs::create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        // The topic's directory entry must be durable before anything in it is acknowledged.
        sync_dir(&self.shared.config.dir)?;
        let (topic, writers) = recover_topic(&dir, partitions)?;
        // The metadata file is written last: a topic directory without it is ignored on open.
        write_json_durably(&dir.join("topic.json"), &TopicMeta { partitions })?;
        self.shared
            .topics
            .write()
            .insert(name.to_owned(), Arc::new(topic));
        self.active.insert(name.to_owned(), writers);
        Ok(partitions)
    }

    /// Encodes `records` into their partitions' staging buffers and assigns their offsets.
    fn stage(&mut self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        self.shared.check()?;
        let max = self.shared.config.max_record_bytes;
        if let Some(r) = records.iter().find(|r| r.key.len() + r.value.len() > max) {
            return Err(LogError::RecordTooLarge {
                size: r.key.len() + r.value.len(),
                max,
            });
        }
        let segments = self
            .active
            .get_mut(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))?;
        let n = segments.len() as u32;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut positions = Vec::with_capacity(records.len());
        for record in &records {
            let partition = partition_for(&record.key, n);
            let seg = &mut segments[partition as usize];
            let offset = seg.next_offset + seg.staged_count;
            let position = seg.len + seg.staged.len() as u64;
            if position - seg.last_indexed >= INDEX_INTERVAL {
                seg.staged_index.push((offset, position));
                seg.last_indexed = position;
            }
            encode_frame(&mut seg.staged, offset, now_ms, &record.key, &record.value);
            seg.staged_count += 1;
            positions.push(Position { partition, offset });
        }
        Ok(positions)
    }

    /// Writes and syncs everything staged, then answers every caller of the group.
    fn commit(&mut self, group: Vec<Staged>) {
        let outcome = self.write_staged();
        let topics = self.shared.topics.read();
        for staged in group {
            let result = match (&outcome, staged.result) {
                (Ok(()), result) => result,
                (Err(e), Ok(_)) => Err(LogError::Unavailable(format!(
                    "write to the embedded log failed, nothing of this append was kept: {e}"
                ))),
                (Err(_), Err(e)) => Err(e),
            };
            let _ = staged.reply.send(result);
        }
        for topic in topics.values() {
            topic.appended.notify_waiters();
        }
    }

    fn write_staged(&mut self) -> Result<()> {
        let mut touched: Vec<(String, usize)> = Vec::new();
        for (name, segments) in &self.active {
            for (i, seg) in segments.iter().enumerate() {
                if seg.staged_count > 0 {
                    touched.push((name.clone(), i));
                }
            }
        }
        let mut failure = None;
        for (name, i) in &touched {
            if let Err(e) = self.write_one(name, *i) {
                failure = Some(e);
                break;
            }
        }
        if let Some(e) = failure {
            // All or nothing: cut every touched partition back to its last durable length.
            for (name, i) in &touched {
                if let Some(seg) = self.active.get_mut(name).and_then(|s| s.get_mut(*i)) {
                    let restored = seg
                        .file
                        .set_len(seg.len)
                        .and_then(|()| seg.file.sync_data())
                        .and_then(|()| seg.file.metadata())
                        .map(|m| m.len() == seg.len);
                    if !matches!(restored, Ok(true)) {
                        // The file may hold frames that were never acknowledged: stop, so the
                        // next open's recovery decides what is in the log.
                        self.shared.fail(format!(
                            "could not cut {} back to {} bytes after a failed write: {restored:?}",
                            seg.path.display(),
                            seg.len
                        ));
                    }
                    seg.staged.clear();
                    seg.staged_count = 0;
                    seg.staged_index.clear();
                    seg.last_indexed = seg.durable_last_indexed;
                }
            }
            return Err(e);
        }
        // Everything is durable: publish the new ends and index entries.
        let topics = self.shared.topics.read();
        for (name, i) in touched {
            let (Some(seg), Some(topic)) = (
                self.active.get_mut(&name).and_then(|s| s.get_mut(i)),
                topics.get(&name),
            ) else {
                continue;
            };
            seg.len += seg.staged.len() as u64;
            seg.next_offset += seg.staged_count;
            seg.staged.clear();
            seg.staged_count = 0;
            seg.durable_last_indexed = seg.last_indexed;
            let partition = &topic.partitions[i];
            if !seg.staged_index.is_empty() {
                let mut segments = partition.segments.write();
                if let Some(last) = segments.last_mut() {
                    last.entries.append(&mut seg.staged_index);
                }
                seg.staged_index.clear();
            }
            partition
                .durable_end
                .store(seg.next_offset, Ordering::Release);
        }
        Ok(())
    }

    fn write_one(&mut self, name: &str, i: usize) -> Result<()> {
        let config = self.shared.config.clone();
        let topic = self.shared.topics.read().get(name).cloned();
        let seg = self
            .active
            .get_mut(name)
            .and_then(|s| s.get_mut(i))
            .ok_or_else(|| LogError::UnknownTopic(name.to_owned()))?;
        if seg.len >= config.segment_bytes
            && let Some(topic) = &topic
        {
            roll(seg, &topic.partitions[i], &config)?;
        }
        seg.file
            .write_all(&seg.staged)
            .and_then(|()| seg.file.sync_data())
            .map_err(|e| LogError::io(&seg.path, e))
    }
}

/// Closes the active segment and starts a new one at the next offset; applies retention.
fn roll(seg: &mut ActiveSegment, partition: &Partition, config: &EmbeddedConfig) -> Result<()> {
    let base = seg.next_offset;
    // Staged frames move to the new segment: rebase their index positions.
    let path = segment_path(&partition.dir, base);
    let file = create_segment(&path, &partition.dir)?;
    for entry in &mut seg.staged_index {
        entry.1 -= seg.len;
    }
    seg.file = file;
    seg.path = path.clone();
    seg.len = 0;
    seg.last_indexed = 0;
    seg.durable_last_indexed = 0;
    {
        let mut segments = partition.segments.write();
        segments.push(SegmentIndex {
            base,
            path,
            entries: vec![(base, 0)],
        });
    }
    apply_retention(partition, config);
    Ok(())
}

fn apply_retention(partition: &Partition, config: &EmbeddedConfig) {
    let mut segments = partition.segments.write();
    let sizes: Vec<u64> = segments
        .iter()
        .map(|s| fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0))
        .collect();
    let mut total: u64 = sizes.iter().sum();
    let mut remove = 0;
    // Never the active (last) segment.
    while remove + 1 < segments.len() {
        let seg = &segments[remove];
        let too_old = config.retention.is_some_and(|keep| {
            fs::metadata(&seg.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > keep)
        });
        let too_big = config.retention_bytes.is_some_and(|max| total > max);
        if !(too_old || too_big) {
            break;
        }
        total -= sizes[remove];
        remove += 1;
    }
    // Oldest first, stopping at the first failure: the segments kept stay contiguous.
    let mut deleted = 0;
    for seg in segments.iter().take(remove) {
        if let Err(e) = fs::remove_file(&seg.path) {
            tracing::warn!(path = %seg.path.display(), error = %e, "could not delete expired segment");
            break;
        }
        deleted += 1;
    }
    segments.drain(..deleted);
}

/// Topic and group names become directory and file names: keep them to one plain path segment.
fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(LogError::Config(format!(
            "{what} {name:?} must be non-empty, not start with '.', and hold no slashes"
        )));
    }
    Ok(())
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{SEGMENT_SUFFIX}"))
}

fn create_segment(path: &Path, dir: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| LogError::io(path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir, e))
}

fn encode_frame(out: &mut Vec<u8>, offset: u64, timestamp_ms: i64, key: &[u8], value: &[u8]) {
    let body_len = FIXED_BODY_BYTES + key.len() + value.len();
    out.reserve(HEADER_BYTES + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32c::crc32c(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// One decoded frame.
struct Frame {
    offset: u64,
    timestamp_ms: i64,
    key: Bytes,
    value: Bytes,
}

enum FrameRead {
    Frame(Frame, u64),
    /// Clean end of file.
    End,
    /// A frame that is cut short or fails its checksum: a torn write.
    Torn(String),
}

/// Reads the frame at the reader's position; `max_body` bounds a sane length.
fn read_frame(reader: &mut impl Read, max_body: usize) -> std::io::Result<FrameRead> {
    let mut header = [0u8; HEADER_BYTES];
    let mut got = 0;
    while got < HEADER_BYTES {
        match reader.read(&mut header[got..])? {
            0 if got == 0 => return Ok(FrameRead::End),
            0 => {
                return Ok(FrameRead::Torn(format!(
                    "header cut short after {got} bytes"
                )));
            }
            n => got += n,
        }
    }
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(FIXED_BODY_BYTES..=max_body).contains(&body_len) {
        return Ok(FrameRead::Torn(format!(
            "implausible frame length {body_len}"
        )));
    }
    let mut body = vec![0u8; body_len];
    let mut got = 0;
    while got < body_len {
        match reader.read(&mut body[got..])? {
            0 => {
                return Ok(FrameRead::Torn(format!(
                    "frame cut short: {got} of {body_len} bytes"
                )));
            }
            n => got += n,
        }
    }
    if crc32c::crc32c(&body) != crc {
        return Ok(FrameRead::Torn("checksum mismatch".into()));
    }
    let offset = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
    let timestamp_ms = i64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
    let key_len = u32::from_le_bytes(body[16..20].try_into().expect("4 bytes")) as usize;
    if FIXED_BODY_BYTES + key_len > body_len {
        return Ok(FrameRead::Torn(format!(
            "key length {key_len} beyond frame"
        )));
    }
    let body = Bytes::from(body);
    let key = body.slice(FIXED_BODY_BYTES..FIXED_BODY_BYTES + key_len);
    let value = body.slice(FIXED_BODY_BYTES + key_len..);
    Ok(FrameRead::Frame(
        Frame {
            offset,
            timestamp_ms,
            key,
            value,
        },
        (HEADER_BYTES + body_len) as u64,
    ))
}

/// The largest body a frame at `position` of a file of `file_len` bytes can have: a length
/// field beyond it is a torn or garbled write (and is never allocated). A setting such as
/// `max_record_bytes` must not decide this, or lowering it would cut acknowledged records.
fn max_body_at(file_len: u64, position: u64) -> usize {
    file_len
        .saturating_sub(position)
        .saturating_sub(HEADER_BYTES as u64)
        .min(u32::MAX as u64) as usize
}

/// Opens every partition of a topic, creating missing ones, and recovers their tails.
fn recover_topic(dir: &Path, partitions: u32) -> Result<(Topic, Vec<ActiveSegment>)> {
    let mut parts = Vec::with_capacity(partitions as usize);
    let mut writers = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let pdir = dir.join(format!("{p:04}"));
        fs::create_dir_all(&pdir).map_err(|e| LogError::io(&pdir, e))?;
        let (partition, active) = recover_partition(&pdir)?;
        parts.push(partition);
        writers.push(active);
    }
    let groups = dir.join("_groups");
    fs::create_dir_all(&groups).map_err(|e| LogError::io(&groups, e))?;
    sync_dir(dir)?;
    Ok((
        Topic {
            dir: dir.to_owned(),
            partitions: parts,
            appended: Notify::new(),
        },
        writers,
    ))
}

fn recover_partition(dir: &Path) -> Result<(Partition, ActiveSegment)> {
    let mut bases: Vec<u64> = fs::read_dir(dir)
        .map_err(|e| LogError::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(&format!(".{SEGMENT_SUFFIX}"))
                .and_then(|b| b.parse().ok())
        })
        .collect();
    bases.sort_unstable();
    if bases.is_empty() {
        bases.push(0);
        create_segment(&segment_path(dir, 0), dir)?;
    }
    let mut segments = Vec::with_capacity(bases.len());
    let mut expected = bases[0];
    let mut last_len = 0;
    let mut last_indexed = 0;
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base);
        let is_last = i + 1 == bases.len();
        if base != expected {
            return Err(LogError::Corrupt {
                path,
                position: 0,
                detail: format!("segment starts at offset {base}, expected {expected}"),
            });
        }
        let file = File::open(&path).map_err(|e| LogError::io(&path, e))?;
        let file_len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut position = 0u64;
        let mut entries = vec![(base, 0)];
        let mut indexed = 0u64;
        loop {
            let read = read_frame(&mut reader, max_body_at(file_len, position))
                .map_err(|e| LogError::io(&path, e))?;
            let problem = match read {
                FrameRead::End => break,
                FrameRead::Frame(frame, size) if frame.offset == expected => {
                    if position - indexed >= INDEX_INTERVAL {
                        entries.push((frame.offset, position));
                        indexed = position;
                    }
                    position += size;
                    expected += 1;
                    continue;
                }
                FrameRead::Frame(frame, _) => {
                    format!("offset {} where {expected} was expected", frame.offset)
                }
                FrameRead::Torn(why) => why,
            };
            if !is_last {
                return Err(LogError::Corrupt {
                    path,
                    position,
                    detail: problem,
                });
            }
            tracing::warn!(path = %path.display(), position, problem, "truncating torn tail of the log");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| LogError::io(&path, e))?;
            f.set_len(position)
                .and_then(|()| f.sync_all())
                .map_err(|e| LogError::io(&path, e))?;
            break;
        }
        if is_last {
            last_len = position;
            last_indexed = indexed;
        }
        segments.push(SegmentIndex {
            base,
            path,
            entries,
        });
    }
    let last = segments.last().expect("at least one segment").clone();
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .open(&last.path)
        .map_err(|e| LogError::io(&last.path, e))?;
    let active = ActiveSegment {
        file,
        path: last.path.clone(),
        len: last_len,
        next_offset: expected,
        last_indexed,
        durable_last_indexed: last_indexed,
        staged: Vec::new(),
        staged_count: 0,
        staged_index: Vec::new(),
    };
    let partition = Partition {
        dir: dir.to_owned(),
        durable_end: AtomicU64::new(expected),
        segments: RwLock::new(segments),
    };
    Ok((partition, active))
}

/// Reads up to `max` durable records of a partition starting at `from`.
fn read_partition(
    partition: &Partition,
    id: u32,
    from: u64,
    max: usize,
) -> Result<Vec<ConsumedRecord>> {
    let end = partition.durable_end.load(Ordering::Acquire);
    let mut out = Vec::new();
    if from >= end || max == 0 {
        return Ok(out);
    }
    let segments: Vec<SegmentIndex> = {
        let all = partition.segments.read();
        // The segment holding `from`, and every later one; an offset removed by retention reads
        // from the oldest segment still kept.
        let start = all.partition_point(|s| s.base <= from).saturating_sub(1);
        all[start..].to_vec()
    };
    let mut next = from;
    for (i, seg) in segments.iter().enumerate() {
        let position = if i == 0 {
            let at = seg
                .entries
                .partition_point(|(o, _)| *o <= next)
                .saturating_sub(1);
            seg.entries.get(at).map(|e| e.1).unwrap_or(0)
        } else {
            0
        };
        let file = match File::open(&seg.path) {
            Ok(f) => f,
            // Deleted by retention between the listing and the open: move on.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(LogError::io(&seg.path, e)),
        };
        let file_len = file
            .metadata()
            .map_err(|e| LogError::io(&seg.path, e))?
            .len();
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        reader
            .seek(SeekFrom::Start(position))
            .map_err(|e| LogError::io(&seg.path, e))?;
        let mut position = position;
        // Stops at the end of this segment, or at frames beyond the durable end being written now.
        while let FrameRead::Frame(frame, size) =
            read_frame(&mut reader, max_body_at(file_len, position))
                .map_err(|e| LogError::io(&seg.path, e))?
        {
            position += size;
            if frame.offset >= end {
                return Ok(out);
            }
            if frame.offset >= next {
                next = frame.offset + 1;
                out.push(ConsumedRecord {
                    partition: id,
                    offset: frame.offset,
                    timestamp_ms: frame.timestamp_ms,
                    key: frame.key,
                    value: frame.value,
                });
                if out.len() >= max {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| LogError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| LogError::Corrupt {
        path: path.to_owned(),
        position: 0,
        detail: e.to_string(),
    })
}

/// Write to a temporary file, fsync it, rename it over `path`, fsync the directory.
fn write_json_durably<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value).map_err(|e| LogError::Config(e.to_string()))?;
    let mut f = File::create(&tmp).map_err(|e| LogError::io(&tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| LogError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| LogError::io(path, e))?;
    sync_dir(dir)
}
