//! The store writer thread: merges rounds by key, writes a batch at most every 100 ms, then the
//! checkpoint the store now covers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use emporium_dataflows::changes::Change;
use emporium_dataflows::products::ProductInputs;
use emporium_serving::store::Store;
use emporium_serving::views::WriteBatch;

use crate::PipelineError;
use crate::checkpoint::{self, Checkpoint};
use crate::metrics;
use crate::round::StoreWork;
use crate::stats::PipelineStats;

/// How long a stop waits for the documents of the round in progress.
pub(crate) const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The shortest time between two store commits.
pub(crate) const STORE_COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Documents waiting for the writer, merged by key: a document changed in several rounds is
/// written once, at its latest `seq`.
#[derive(Default)]
pub(crate) struct Unwritten {
    pub(crate) changes: HashMap<(&'static str, String), Change>,
    pub(crate) positions: Vec<u64>,
    pub(crate) seq: u64,
    pub(crate) applied_ms: Vec<i64>,
    pub(crate) checkpoint: Option<Checkpoint>,
    pub(crate) dirty: bool,
    pub(crate) closed: bool,
    pub(crate) error: Option<PipelineError>,
}

/// The thread that writes the store, one batch at a time, while worker 0 keeps deciding.
pub(crate) struct StoreWriter {
    pub(crate) shared: Arc<(std::sync::Mutex<Unwritten>, std::sync::Condvar)>,
    pub(crate) thread: std::thread::JoinHandle<()>,
}

impl StoreWriter {
    pub(crate) fn start(
        store: Arc<dyn Store>,
        runtime: tokio::runtime::Handle,
        stats: Arc<PipelineStats>,
        started_ms: i64,
        checkpoints: Option<std::path::PathBuf>,
        claim: u64,
    ) -> Result<Self, PipelineError> {
        let shared = Arc::new((
            std::sync::Mutex::new(Unwritten::default()),
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
                                changes: std::mem::take(&mut p.changes).into_values().collect(),
                                products: ProductInputs::default(),
                                view_events: Vec::new(),
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
                            write_store(store.as_ref(), &runtime, work, claim, &stats, started_ms);
                        let result = match (result, &checkpoints) {
                            (Ok(Some(c)), Some(dir)) => {
                                save_checkpoint(store.as_ref(), &runtime, dir, &c, claim, &stats)
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
    pub(crate) fn hand_off(&self, work: StoreWork) -> Result<(), PipelineError> {
        let (lock, ready) = &*self.shared;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = p.error.take() {
            return Err(e);
        }
        if !work.dirty {
            return Ok(());
        }
        for change in work.changes {
            let (kind, id) = change.key();
            p.changes.insert((kind, id.to_owned()), change);
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
    pub(crate) fn finish(self) -> Result<(), PipelineError> {
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

/// Writes a checkpoint the store now covers. A failure is logged and counted, not fatal: the
/// previous checkpoint stays, and checkpoints only shorten restarts. A checkpoint the store is not
/// at or past in every partition is skipped, since a restart would refuse it: that happens while
/// a restarted pipeline catches up with a store written further before a crash (the store keeps
/// the positions of its highest `seq`).
pub(crate) fn save_checkpoint(
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    dir: &std::path::Path,
    checkpoint: &Checkpoint,
    claim: u64,
    stats: &PipelineStats,
) -> Result<(), PipelineError> {
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
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint skipped: reading the store's positions");
            metrics::checkpoint_failed();
            return Ok(());
        }
    }
    let bytes = match checkpoint::encode(checkpoint) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint not written (the previous one stays)");
            metrics::checkpoint_failed();
            return Ok(());
        }
    };
    // The store's copy first (refused once a newer writer claimed the store: this one then
    // stops, and its checkpoint file is not written either), then the file.
    match runtime.block_on(store.put_checkpoint(&bytes, claim)) {
        Err(e @ emporium_serving::store::StoreError::Fenced { .. }) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint not written (the previous one stays)");
            metrics::checkpoint_failed();
            return Ok(());
        }
        Ok(()) => {}
    }
    match checkpoint::write_bytes(dir, &bytes) {
        Ok(size) => {
            stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            stats.checkpoint_bytes.store(size, Ordering::Relaxed);
            let pause = stats.checkpoint_pause_ms.load(Ordering::Relaxed);
            metrics::checkpoint(size, std::time::Duration::from_millis(pause));
        }
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint file not written (the store's copy is newer)");
            metrics::checkpoint_failed();
        }
    }
    Ok(())
}

/// Writes a round's documents and positions to the store; records freshness. Gives back the
/// batch's checkpoint, now covered by the store.
pub(crate) fn write_store(
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    work: StoreWork,
    claim: u64,
    stats: &PipelineStats,
    started_ms: i64,
) -> Result<Option<Checkpoint>, PipelineError> {
    if !work.dirty {
        return Ok(None);
    }
    let documents = work.changes.len();
    let began = std::time::Instant::now();
    runtime.block_on(
        store.apply(WriteBatch {
            upserts: work
                .changes
                .into_iter()
                .map(crate::documents::upsert)
                .collect(),
            positions: work.positions,
            seq: work.seq,
            writer: claim,
        }),
    )?;
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
