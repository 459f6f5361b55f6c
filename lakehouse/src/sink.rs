//! The sink: reads every partition of the events topic and appends each record to the table of
//! its type, exactly once (ADR 0009).
//!
//! - **Start.** Each table's commits carry the positions its rows reach ([`crate::table`]). The
//!   sink starts each partition at the lowest of those positions over all tables, and skips, per
//!   table, the records below that table's own position (they are in it already).
//! - **Roll.** Rows are buffered per table (as Arrow, decoded every few thousand rows) and
//!   committed when the buffer reaches `flush_rows` rows or `flush_bytes` bytes, or
//!   `flush_interval` after the last commit: large files under load, fresh tables when quiet. Each
//!   table with rows gets one Delta commit (Parquet files per date, zstd) recording the positions
//!   read so far.
//! - **Overlap.** The commits of one flush run in a task of their own while the sink reads and
//!   decodes the next rows (on a second core). One flush at a time: the next waits for the
//!   previous, so each table's commits stay in log order and at most two flushes of rows are in
//!   memory.
//! - **Progress.** A table that gets no rows for a while (no `return_requested` in the last million
//!   records, say) would pin the restart position. Once it trails by `max_replay` records, it gets
//!   a commit with the positions and no rows. Every table is created when the sink opens, so SQL
//!   can name it before its first event.
//! - **Compact.** Every `compact_interval`, the small files of each day are rewritten into large
//!   ones (Delta `OPTIMIZE`).
//! - **Stop.** A stop reads up to the log's end at that moment and commits it all, with the
//!   positions of every table, so that a restart starts where this run ended.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::record_batch::RecordBatch;
use emporium_log::{EVENTS_TOPIC, EventLog, LogError, PartitionReader};
use metrics::{counter, gauge, histogram};
use parking_lot::Mutex;

use crate::LakeError;
use crate::rows::RowBuffers;
use crate::schema;
use crate::table::Lake;

#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The lakehouse directory: one Delta table per subdirectory.
    pub root: PathBuf,
    pub topic: String,
    /// Commit when this many rows are buffered...
    pub flush_rows: usize,
    /// ... or this many bytes (of Arrow memory, and JSON lines not yet decoded) ...
    pub flush_bytes: usize,
    /// ... or this long after the last commit, if anything is buffered.
    pub flush_interval: Duration,
    /// A table that trails the read positions by this many records gets a commit without rows.
    pub max_replay: u64,
    /// How often small files are compacted (`None`: never).
    pub compact_interval: Option<Duration>,
    /// Records read per partition per call.
    pub read_batch: usize,
}

impl SinkConfig {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            topic: EVENTS_TOPIC.to_owned(),
            flush_rows: 1_000_000,
            flush_bytes: 512 * 1024 * 1024,
            flush_interval: Duration::from_secs(10),
            max_replay: 1_000_000,
            compact_interval: Some(Duration::from_secs(600)),
            read_batch: 20_000,
        }
    }
}

/// What the sink has done, for status lines, metrics and tests.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Rows committed to tables (rejected records included).
    pub rows_committed: AtomicU64,
    /// Records committed to the rejected table.
    pub rejected: AtomicU64,
    pub commits: AtomicU64,
    pub compactions: AtomicU64,
    /// Per partition, the offset below which every record is committed to its table.
    pub committed_positions: Mutex<Vec<u64>>,
    /// Rows committed per table by this run.
    pub rows_per_table: Mutex<BTreeMap<String, u64>>,
}

impl SinkStats {
    /// The sum of the committed positions: how many records of the log are in the lakehouse.
    pub fn committed_records(&self) -> u64 {
        self.committed_positions.lock().iter().sum()
    }

    /// `lakehouse: 12345 rows committed to 21 tables (2 rejected), 40 commits, 1 compactions`,
    /// for status lines.
    pub fn summary(&self) -> String {
        let tables = self.rows_per_table.lock().len();
        format!(
            "lakehouse: {} rows committed to {tables} tables ({} rejected), {} commits, {} compactions",
            self.rows_committed.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
            self.commits.load(Ordering::Relaxed),
            self.compactions.load(Ordering::Relaxed),
        )
    }
}

/// A [`Sink`] running on a Tokio runtime of its own (two worker threads besides the one that
/// drives it): decoding records into Arrow rows, Parquet encoding, commits and compaction are CPU
/// work that must not take the HTTP runtime's workers, and a commit must be able to run while the
/// sink reads on (deltalake spawns tasks for its writes). It stops on [`RunningSink::stop`]
/// (committing what it holds) or on an error ([`RunningSink::finished`] then resolves).
pub struct RunningSink {
    pub stats: Arc<SinkStats>,
    stop: Arc<AtomicBool>,
    /// Cancelled when the thread ends, however it ends.
    ended: emporium_ops::CancellationToken,
    thread: std::thread::JoinHandle<Result<(), LakeError>>,
}

impl RunningSink {
    pub async fn start(log: Arc<dyn EventLog>, config: SinkConfig) -> Result<Self, LakeError> {
        let stats = Arc::new(SinkStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let ended = emporium_ops::CancellationToken::new();
        let (opened_tx, opened) = tokio::sync::oneshot::channel::<Result<(), LakeError>>();
        let thread = {
            let (stats, stop, ended) = (Arc::clone(&stats), Arc::clone(&stop), ended.clone());
            std::thread::Builder::new()
                .name("emporium-lakehouse".into())
                .spawn(move || {
                    let _ended = ended.drop_guard();
                    let runtime = match tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .thread_name("emporium-lakehouse")
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let e = LakeError::Task(format!("the sink's runtime: {e}"));
                            let message = e.to_string();
                            let _ = opened_tx.send(Err(e));
                            return Err(LakeError::Task(message));
                        }
                    };
                    runtime.block_on(async move {
                        match Sink::open(log, config, stats).await {
                            Ok(sink) => {
                                let _ = opened_tx.send(Ok(()));
                                sink.run(stop).await
                            }
                            Err(e) => {
                                let message = e.to_string();
                                let _ = opened_tx.send(Err(e));
                                Err(LakeError::Task(message))
                            }
                        }
                    })
                })
                .map_err(|e| LakeError::Task(format!("the sink's thread: {e}")))?
        };
        match opened.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            // The thread ended without a word: it panicked; its join says how.
            Err(_) => {
                let why = match thread.join() {
                    Err(panic) => panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "a panic".into()),
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(())) => "no error".into(),
                };
                return Err(LakeError::Task(format!(
                    "the sink's thread ended at start: {why}"
                )));
            }
        }
        Ok(Self {
            stats,
            stop,
            ended,
            thread,
        })
    }

    /// Resolves when the sink has ended on its own (an error: a stop goes through `stop`).
    pub async fn finished(&self) {
        self.ended.cancelled().await
    }

    /// Commits what is buffered and stops, within `grace`.
    pub async fn stop(self, grace: Duration) -> Result<(), LakeError> {
        self.stop.store(true, Ordering::SeqCst);
        if tokio::time::timeout(grace, self.ended.cancelled())
            .await
            .is_err()
        {
            return Err(LakeError::Task(format!(
                "the lakehouse sink did not stop within {} s (a restart writes what it had not committed)",
                grace.as_secs()
            )));
        }
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => Err(LakeError::Task("the sink's thread panicked".into())),
        }
    }
}

/// The positions a table records after a commit: per partition, the larger of what it had and what
/// the sink has read. A table can be ahead of the sink in a partition (it committed further before
/// a crash than the table that set the restart position); its position there must not go back,
/// or the records in between would be added to it again.
fn advanced(table: Option<&Vec<u64>>, read_upto: &[u64]) -> Vec<u64> {
    read_upto
        .iter()
        .enumerate()
        .map(|(p, &read)| read.max(table.and_then(|t| t.get(p).copied()).unwrap_or(0)))
        .collect()
}

pub struct Sink {
    log: Arc<dyn EventLog>,
    config: SinkConfig,
    stats: Arc<SinkStats>,
    /// The tables, when no flush is running; else the flush has them and gives them back.
    lake: Option<Lake>,
    flushing: Option<Flushing>,
}

/// The running flush. Its commits run on a blocking thread of the runtime (polled there with
/// `Handle::block_on`), not as a task: the sink's loop decodes without yielding while records
/// come, and a task queued behind it on the same worker would wait instead of using the other
/// core. Dropping the sink (a crash, as far as the tables can tell) drops `cancel`, and the
/// commits stop at their next await, as the sink's own task does.
struct Flushing {
    done: tokio::task::JoinHandle<Result<Lake, LakeError>>,
    cancel: tokio::sync::oneshot::Sender<()>,
}

impl Flushing {
    fn start(commits: impl Future<Output = Result<Lake, LakeError>> + Send + 'static) -> Self {
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Handle::current();
        let done = tokio::task::spawn_blocking(move || {
            runtime.block_on(async move {
                tokio::select! {
                    biased;
                    _ = cancelled => Err(LakeError::Task("cancelled: the sink stopped".into())),
                    result = commits => result,
                }
            })
        });
        Self { done, cancel }
    }

    async fn finish(self) -> Result<Lake, LakeError> {
        let Self { done, cancel } = self;
        let result = done.await;
        drop(cancel);
        result.map_err(|error| LakeError::Task(error.to_string()))?
    }
}

/// One table's commit in a flush: its rows (none for a commit of positions only) and the
/// positions it records.
struct Commit {
    table: &'static str,
    batches: Vec<RecordBatch>,
    positions: Vec<u64>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Sink {
    pub async fn open(
        log: Arc<dyn EventLog>,
        config: SinkConfig,
        stats: Arc<SinkStats>,
    ) -> Result<Self, LakeError> {
        let mut lake = Lake::open(&config.root).await?;
        // Every table exists from the start, so that SQL can name it before its first event.
        let partitions = log.partition_count(&config.topic).await?;
        for table in schema::sink_tables() {
            if !lake.tables().contains_key(table) {
                let schema = schema::sink_table_schema(table).expect("a sink table");
                let zeros = vec![0; partitions as usize];
                lake.append(
                    table,
                    vec![RecordBatch::new_empty(schema)],
                    &config.topic,
                    &zeros,
                )
                .await?;
            }
        }
        Ok(Self {
            log,
            config,
            stats,
            lake: Some(lake),
            flushing: None,
        })
    }

    /// The tables, once the running flush (if any) has committed.
    async fn settle(&mut self) -> Result<&mut Lake, LakeError> {
        if let Some(flushing) = self.flushing.take() {
            self.lake = Some(flushing.finish().await?);
        }
        Ok(self
            .lake
            .as_mut()
            .expect("the tables are back once no flush runs"))
    }

    /// Reads and commits until `stop` is set; then reads up to the end of the log as it is at that
    /// moment, commits it all with every table's positions, and returns.
    pub async fn run(mut self, stop: Arc<AtomicBool>) -> Result<(), LakeError> {
        let topic = self.config.topic.clone();
        let partitions = self.log.partition_count(&topic).await?;
        let mut committed: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
        let lake = self.settle().await?;
        for table in schema::sink_tables() {
            committed.insert(table, lake.positions(table, &topic, partitions).await?);
        }
        let start: Vec<u64> = (0..partitions as usize)
            .map(|p| committed.values().map(|v| v[p]).min().unwrap_or(0))
            .collect();
        tracing::info!(
            "lakehouse: writing {} to {}, from positions {start:?}",
            topic,
            self.config.root.display()
        );
        let firsts = self.log.start_offsets(&topic).await?;
        for (partition, (&from, &first)) in start.iter().zip(&firsts).enumerate() {
            if from < first {
                return Err(LakeError::Gap(LogError::out_of_range(
                    &topic,
                    partition as u32,
                    from,
                    first,
                )));
            }
        }
        let mut readers: Vec<Box<dyn PartitionReader>> = Vec::with_capacity(start.len());
        for (partition, &from) in start.iter().enumerate() {
            readers.push(
                self.log
                    .partition_reader(&topic, partition as u32, from)
                    .await?,
            );
        }
        *self.stats.committed_positions.lock() = start.clone();

        let mut read_upto = start;
        let mut buffers = RowBuffers::new();
        let mut oldest_ms: Option<i64> = None;
        let mut last_flush = Instant::now();
        let mut last_compact = Instant::now();
        // On a stop: the end of the log at that moment, read up to before the last commit.
        let mut drain_to: Option<Vec<u64>> = None;
        loop {
            if drain_to.is_none() && stop.load(Ordering::SeqCst) {
                drain_to = Some(self.log.end_offsets(&topic).await?);
            }
            let mut got = 0;
            for (partition, reader) in readers.iter_mut().enumerate() {
                let batch =
                    reader
                        .next_batch(self.config.read_batch)
                        .await
                        .map_err(|e| match e {
                            // Retention overtook the sink: never skip what it did not write.
                            LogError::OffsetOutOfRange { .. } => LakeError::Gap(e),
                            e => LakeError::Log(e),
                        })?;
                for record in &batch {
                    let kept = buffers.push_if(record, |table| {
                        committed
                            .get(table)
                            .is_none_or(|positions| record.offset >= positions[partition])
                    })?;
                    if kept.is_some() {
                        oldest_ms = Some(
                            oldest_ms.map_or(record.timestamp_ms, |o| o.min(record.timestamp_ms)),
                        );
                    }
                }
                if let Some(last) = batch.last() {
                    read_upto[partition] = last.offset + 1;
                }
                got += batch.len();
            }
            let stopping = drain_to
                .as_ref()
                .is_some_and(|ends| read_upto.iter().zip(ends).all(|(read, end)| read >= end));
            let due = buffers.rows() >= self.config.flush_rows
                || buffers.bytes() >= self.config.flush_bytes
                || last_flush.elapsed() >= self.config.flush_interval
                || stopping;
            if due {
                self.flush(
                    &mut buffers,
                    &mut committed,
                    &read_upto,
                    stopping,
                    oldest_ms.take(),
                )
                .await?;
                last_flush = Instant::now();
            }
            if stopping {
                return Ok(());
            }
            if let Some(every) = self.config.compact_interval
                && last_compact.elapsed() >= every
            {
                self.compact_all().await?;
                last_compact = Instant::now();
            }
            if got == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Commits the buffered rows, one commit per table with rows, each recording `read_upto`;
    /// then a commit without rows for each table that trails by `max_replay` records or more, or
    /// (on `final_flush`) that trails at all.
    ///
    /// Waits for the previous flush, then starts this one's commits in a task of their own and
    /// returns; a `final_flush` waits for them too. `oldest_ms` is the log time of the oldest
    /// row, for the freshness histogram.
    async fn flush(
        &mut self,
        buffers: &mut RowBuffers,
        committed: &mut BTreeMap<&'static str, Vec<u64>>,
        read_upto: &[u64],
        final_flush: bool,
        oldest_ms: Option<i64>,
    ) -> Result<(), LakeError> {
        self.settle().await?;
        let mut commits = Vec::new();
        for (table, batches) in buffers.take()? {
            let positions = advanced(committed.get(table), read_upto);
            committed.insert(table, positions.clone());
            commits.push(Commit {
                table,
                batches,
                positions,
            });
        }
        for table in schema::sink_tables() {
            if commits.iter().any(|c| c.table == table) {
                continue;
            }
            let positions = committed.get(table).cloned().unwrap_or_default();
            let trail: u64 = read_upto
                .iter()
                .zip(positions.iter().chain(std::iter::repeat(&0)))
                .map(|(r, c)| r.saturating_sub(*c))
                .sum();
            if trail >= self.config.max_replay || (final_flush && trail > 0) {
                let schema = schema::sink_table_schema(table).expect("a sink table");
                let positions = advanced(committed.get(table), read_upto);
                committed.insert(table, positions.clone());
                commits.push(Commit {
                    table,
                    batches: vec![RecordBatch::new_empty(schema)],
                    positions,
                });
            }
        }
        let mut lake = self.lake.take().expect("settled");
        let stats = self.stats.clone();
        let topic = self.config.topic.clone();
        let read_upto = read_upto.to_vec();
        let task = async move {
            commit_all(&mut lake, commits, &topic, &stats).await?;
            *stats.committed_positions.lock() = read_upto.clone();
            gauge!("emporium_lakehouse_committed_position")
                .set(read_upto.iter().sum::<u64>() as f64);
            if let Some(oldest) = oldest_ms {
                let age = (now_ms() - oldest).max(0) as f64 / 1000.0;
                histogram!("emporium_lakehouse_freshness_seconds").record(age);
            }
            Ok(lake)
        };
        if final_flush {
            self.lake = Some(task.await?);
        } else {
            self.flushing = Some(Flushing::start(task));
        }
        Ok(())
    }

    /// Compacts every table, once the running flush has committed; a failure to compact is logged
    /// (the files stay as they were) and the sink goes on. The error is the running flush's.
    async fn compact_all(&mut self) -> Result<(), LakeError> {
        let stats = self.stats.clone();
        let lake = self.settle().await?;
        let names: Vec<String> = lake.tables().keys().cloned().collect();
        for table in names {
            let began = Instant::now();
            match lake.compact(&table).await {
                Ok(metrics) if metrics.num_files_removed > 0 => {
                    stats.compactions.fetch_add(1, Ordering::Relaxed);
                    counter!("emporium_lakehouse_compactions_total").increment(1);
                    tracing::info!(
                        "lakehouse: compacted {table}: {} files into {} in {:.1} s",
                        metrics.num_files_removed,
                        metrics.num_files_added,
                        began.elapsed().as_secs_f64()
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!("lakehouse: compacting {table} failed: {error}"),
            }
        }
        Ok(())
    }
}

/// Makes `commits` in order, and counts them in `stats` and the metrics.
async fn commit_all(
    lake: &mut Lake,
    commits: Vec<Commit>,
    topic: &str,
    stats: &SinkStats,
) -> Result<(), LakeError> {
    for commit in commits {
        let began = Instant::now();
        let table = commit.table;
        let rows = lake
            .append(table, commit.batches, topic, &commit.positions)
            .await? as u64;
        stats.commits.fetch_add(1, Ordering::Relaxed);
        counter!("emporium_lakehouse_commits_total").increment(1);
        if rows == 0 {
            continue;
        }
        histogram!("emporium_lakehouse_commit_seconds").record(began.elapsed().as_secs_f64());
        counter!("emporium_lakehouse_rows_total", "table" => table).increment(rows);
        if table == schema::REJECTED_TABLE {
            counter!("emporium_lakehouse_rejected_total").increment(rows);
            stats.rejected.fetch_add(rows, Ordering::Relaxed);
        }
        stats.rows_committed.fetch_add(rows, Ordering::Relaxed);
        *stats
            .rows_per_table
            .lock()
            .entry(table.to_owned())
            .or_default() += rows;
    }
    Ok(())
}
