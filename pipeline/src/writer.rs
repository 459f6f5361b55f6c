//! The store writer thread: merges rounds by key, writes a batch at most every 100 ms, hands the
//! search sink's thread what the store now holds ([`crate::search`]), then writes the checkpoint
//! the store now covers (its new pieces, then its head: [`crate::checkpoint`]), once the search
//! index has committed through it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use emporium_dataflows::changes::Change;
use emporium_dataflows::products::ProductInputs;
use emporium_serving::store::Store;
use emporium_serving::views::WriteBatch;

use crate::PipelineError;
use crate::checkpoint::{self, Checkpoint, Piece};
use crate::metrics;
use crate::round::StoreWork;
use crate::search::{Batch, SearchSink, SearchThread};
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
    /// The writer was dropped without `finish` (its worker failed): the thread writes nothing
    /// more, not even the search commit it has pending, and ends (a restarted pipeline may be
    /// rebuilding the same index).
    pub(crate) abandoned: bool,
    pub(crate) error: Option<PipelineError>,
}

/// The thread that writes the store, one batch at a time, while worker 0 keeps deciding.
pub(crate) struct StoreWriter {
    pub(crate) shared: Arc<(std::sync::Mutex<Unwritten>, std::sync::Condvar)>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
    /// Whether worker 0's next checkpoint must take a full piece ([`Chain`]).
    pub(crate) wants_full: Arc<AtomicBool>,
}

/// New pieces with their names, and whether each is full.
type Named = Vec<(Piece, bool)>;

/// A chain this long starts over with a full piece, whatever the sizes: a restore reads at most
/// this many pieces.
const MAX_CHAIN: usize = 64;

/// The chain of pieces the checkpoints written so far name (both copies: the file's and the
/// store's hold the same pieces), and when to start a new one. Deltas since the last full piece
/// are bounded by its size: a restore then reads at most about twice the state, and the pieces
/// kept weigh at most about twice the state in each place.
pub(crate) struct Chain {
    /// Unique to this writer: pieces are named `<prefix>-<n>`, so no piece of another writer
    /// (an earlier run, a fenced one) is ever overwritten.
    prefix: String,
    next: u64,
    pieces: Vec<Piece>,
    full_bytes: u64,
    delta_bytes: u64,
    /// A piece taken was not written (a failure, a skipped checkpoint): the deltas after it
    /// cannot be applied, so nothing is written until a full piece starts a new chain.
    broken: bool,
    wants_full: Arc<AtomicBool>,
}

impl Chain {
    pub(crate) fn new(claim: u64, started_ms: i64, wants_full: Arc<AtomicBool>) -> Self {
        wants_full.store(true, Ordering::Relaxed);
        Self {
            prefix: format!("{claim:x}-{started_ms:x}"),
            next: 0,
            pieces: Vec::new(),
            full_bytes: 0,
            delta_bytes: 0,
            broken: true,
            wants_full,
        }
    }

    fn breaks(&mut self) {
        self.broken = true;
        self.wants_full.store(true, Ordering::Relaxed);
    }

    /// The chain once `checkpoint`'s new pieces are added, with those pieces named; `None` when
    /// they cannot continue this chain (a delta after a piece that was not written). New pieces
    /// before the last full one are dropped from `checkpoint`: no chain needs them.
    fn extended(&mut self, checkpoint: &mut Checkpoint) -> Option<(Vec<Piece>, Named)> {
        let mut chain = match checkpoint.new_pieces.iter().rposition(|n| n.full) {
            Some(last_full) => {
                checkpoint.new_pieces.drain(..last_full);
                Vec::new()
            }
            None if self.broken => return None,
            None => self.pieces.clone(),
        };
        let mut named = Vec::new();
        for new in &checkpoint.new_pieces {
            let piece = Piece::of(format!("{}-{:08}", self.prefix, self.next), &new.bytes);
            self.next += 1;
            chain.push(piece.clone());
            named.push((piece, new.full));
        }
        Some((chain, named))
    }

    /// Records the chain a head now names.
    fn written(&mut self, chain: Vec<Piece>, named: &[(Piece, bool)]) {
        for (piece, full) in named {
            if *full {
                self.full_bytes = piece.len;
                self.delta_bytes = 0;
            } else {
                self.delta_bytes += piece.len;
            }
        }
        self.pieces = chain;
        self.broken = false;
        let full = self.pieces.len() >= MAX_CHAIN || self.delta_bytes >= self.full_bytes;
        self.wants_full.store(full, Ordering::Relaxed);
    }
}

impl StoreWriter {
    pub(crate) fn start(
        store: Arc<dyn Store>,
        runtime: tokio::runtime::Handle,
        stats: Arc<PipelineStats>,
        started_ms: i64,
        checkpoints: Option<std::path::PathBuf>,
        claim: u64,
        search: Option<SearchSink>,
    ) -> Result<Self, PipelineError> {
        let wants_full = Arc::new(AtomicBool::new(true));
        let mut chain = Chain::new(claim, started_ms, Arc::clone(&wants_full));
        let shared = Arc::new((
            std::sync::Mutex::new(Unwritten::default()),
            std::sync::Condvar::new(),
        ));
        let search = search
            .map(|sink| SearchThread::start(sink, Arc::clone(&stats), started_ms))
            .transpose()?;
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("emporium-store".into())
                .spawn(move || {
                    let (lock, ready) = &*shared;
                    let fail = |e: PipelineError| {
                        lock.lock().unwrap_or_else(|e| e.into_inner()).error = Some(e);
                    };
                    loop {
                        let work = {
                            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                            while !p.dirty && !p.closed && !p.abandoned {
                                p = ready.wait(p).unwrap_or_else(|e| e.into_inner());
                            }
                            if p.abandoned {
                                // `search` dropped: its thread stops without a commit.
                                return;
                            }
                            if !p.dirty {
                                drop(p);
                                if let Some(Err(e)) = search.map(SearchThread::finish) {
                                    return fail(e);
                                }
                                return;
                            }
                            p.dirty = false;
                            StoreWork {
                                changes: std::mem::take(&mut p.changes).into_values().collect(),
                                products: ProductInputs::default(),
                                view_events: Vec::new(),
                                view_counts: Vec::new(),
                                positions: p.positions.clone(),
                                applied_ms: std::mem::take(&mut p.applied_ms),
                                seq: p.seq,
                                checkpoint: p.checkpoint.take(),
                                dirty: true,
                            }
                        };
                        let began = std::time::Instant::now();
                        // What the search index needs of the batch, taken before the store
                        // write consumes it, handed over once the store holds it.
                        let for_search = search.as_ref().map(|_| Batch {
                            changes: crate::search::relevant(&work.changes),
                            seq: work.seq,
                            positions: work.positions.clone(),
                            applied_ms: work.applied_ms.clone(),
                        });
                        // The checkpoint after the documents it covers: a crash between the two
                        // leaves the previous checkpoint, which the store is past.
                        let result =
                            write_store(store.as_ref(), &runtime, work, claim, &stats, started_ms);
                        // The index after the store, and committed before a checkpoint: a
                        // checkpoint is never ahead of the index (`crate::search`).
                        let result = match (result, &search, for_search) {
                            (Ok(checkpoint), Some(search), Some(batch)) => {
                                let seq = batch.seq;
                                search
                                    .hand_off(batch)
                                    .and_then(|()| match checkpoint.is_some() {
                                        true => search.commit_through(seq),
                                        false => Ok(()),
                                    })
                                    .map(|()| checkpoint)
                            }
                            (result, _, _) => result,
                        };
                        let result = match (result, &checkpoints) {
                            (Ok(Some(c)), Some(dir)) => save_checkpoint(
                                store.as_ref(),
                                &runtime,
                                dir,
                                c,
                                &mut chain,
                                claim,
                                &stats,
                            ),
                            (result, _) => result.map(drop),
                        };
                        if let Err(e) = result {
                            return fail(e);
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
        Ok(Self {
            shared,
            thread: Some(thread),
            wants_full,
        })
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
        if let Some(mut next) = work.checkpoint {
            // A checkpoint not written yet is replaced, but its pieces are not dropped: the
            // deltas after them need them (unless the newer one starts with a full piece).
            if let Some(previous) = p.checkpoint.take()
                && !next.new_pieces.first().is_some_and(|n| n.full)
            {
                let mut pieces = previous.new_pieces;
                pieces.append(&mut next.new_pieces);
                next.new_pieces = pieces;
            }
            p.checkpoint = Some(next);
        }
        p.dirty = true;
        ready.notify_one();
        Ok(())
    }

    /// Writes what is still waiting, then stops the thread.
    pub(crate) fn finish(mut self) -> Result<(), PipelineError> {
        let (lock, ready) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        ready.notify_one();
        if self.thread.take().is_some_and(|t| t.join().is_err()) {
            return Err(PipelineError::Timely("the store writer panicked".into()));
        }
        match lock.lock().unwrap_or_else(|e| e.into_inner()).error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for StoreWriter {
    /// Dropped without [`StoreWriter::finish`] (a failed worker): the thread stops writing.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let (lock, ready) = &*self.shared;
            lock.lock().unwrap_or_else(|e| e.into_inner()).abandoned = true;
            ready.notify_one();
        }
    }
}

/// Writes a checkpoint the store now covers: its new pieces to the store and the directory, then
/// its head naming the chain, in the store and then in the file; then deletes, in each place
/// whose head was written, the pieces no longer named. A failure is logged and counted, not
/// fatal: the previous checkpoint stays, and checkpoints only shorten restarts; a piece not
/// written breaks the chain, and the next checkpoint takes a full piece. A checkpoint the store
/// is not at or past in every partition is skipped, since a restart would refuse it: that
/// happens while a restarted pipeline catches up with a store written further before a crash (the
/// store keeps the positions of its highest `seq`).
pub(crate) fn save_checkpoint(
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    dir: &std::path::Path,
    mut checkpoint: Checkpoint,
    chain: &mut Chain,
    claim: u64,
    stats: &PipelineStats,
) -> Result<(), PipelineError> {
    let failed = |chain: &mut Chain, what: &str, e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "checkpoint not written ({what}); the previous one stays");
        metrics::checkpoint_failed();
        chain.breaks();
    };
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
            chain.breaks();
            return Ok(());
        }
        Err(e) => {
            failed(chain, "reading the store's positions", &e);
            return Ok(());
        }
    }
    let Some((pieces, named)) = chain.extended(&mut checkpoint) else {
        tracing::debug!(
            seq = checkpoint.seq,
            "checkpoint skipped: its delta follows a piece that was not written"
        );
        chain.breaks();
        return Ok(());
    };
    let new_pieces = std::mem::take(&mut checkpoint.new_pieces);
    let mut written = 0u64;
    for ((piece, _), new) in named.iter().zip(&new_pieces) {
        // The store's copy first (refused once a newer writer claimed the store: this one then
        // stops, and writes no file either), then the file.
        match runtime.block_on(store.put_checkpoint_piece(&piece.name, &new.bytes, claim)) {
            Err(e @ emporium_serving::store::StoreError::Fenced { .. }) => return Err(e.into()),
            Err(e) => {
                failed(chain, "a piece in the store", &e);
                return Ok(());
            }
            Ok(()) => {}
        }
        if let Err(e) = checkpoint::write_piece(dir, &piece.name, &new.bytes) {
            failed(chain, "a piece file", &e);
            return Ok(());
        }
        written += piece.len;
    }
    checkpoint.pieces = pieces.clone();
    let bytes = match checkpoint::encode(&checkpoint) {
        Ok(bytes) => bytes,
        Err(e) => {
            failed(chain, "encoding the head", &e);
            return Ok(());
        }
    };
    match runtime.block_on(store.put_checkpoint(&bytes, claim)) {
        Err(e @ emporium_serving::store::StoreError::Fenced { .. }) => return Err(e.into()),
        Err(e) => {
            // The pieces are written: the chain goes on, and the next head names them too.
            tracing::warn!(error = %e, "checkpoint not written (the previous one stays)");
            metrics::checkpoint_failed();
            chain.written(pieces, &named);
            return Ok(());
        }
        Ok(()) => {}
    }
    let names: Vec<String> = pieces.iter().map(|p| p.name.clone()).collect();
    if let Err(e) = runtime.block_on(store.delete_checkpoint_pieces_except(&names, claim)) {
        // Only space: the next checkpoint deletes them.
        tracing::warn!(error = %e, "old checkpoint pieces not deleted from the store");
    }
    let chain_bytes: u64 = pieces.iter().map(|p| p.len).sum();
    let full = named.iter().any(|(_, full)| *full);
    match checkpoint::write_bytes(dir, &bytes) {
        Ok(size) => {
            if let Err(e) = checkpoint::remove_pieces_except(dir, &pieces) {
                tracing::warn!(error = %e, "old checkpoint pieces not deleted");
            }
            stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            stats
                .checkpoint_bytes
                .store(size + written, Ordering::Relaxed);
            let pause = stats.checkpoint_pause_ms.load(Ordering::Relaxed);
            metrics::checkpoint(
                size + written,
                chain_bytes,
                full,
                std::time::Duration::from_millis(pause),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint file not written (the store's copy is newer)");
            metrics::checkpoint_failed();
        }
    }
    chain.written(pieces, &named);
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
    for latency in stats.freshness_of(started_ms, work.applied_ms) {
        metrics::freshness(latency);
        stats.freshness.record(latency);
    }
    Ok(work.checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::NewPiece;

    fn taken(pieces: &[(bool, usize)]) -> Checkpoint {
        Checkpoint {
            format: checkpoint::FORMAT,
            seq: 1,
            positions: vec![0],
            allowed_lateness_ms: 0,
            reservation_ttl_ms: 0,
            state: Vec::new(),
            views: Vec::new(),
            pieces: Vec::new(),
            new_pieces: pieces
                .iter()
                .map(|(full, len)| NewPiece {
                    full: *full,
                    bytes: vec![7; *len],
                })
                .collect(),
        }
    }

    #[test]
    fn a_chain_starts_full_grows_by_deltas_and_starts_over_when_they_outweigh_it() {
        let wants_full = Arc::new(AtomicBool::new(false));
        let mut chain = Chain::new(3, 1_000, Arc::clone(&wants_full));
        assert!(
            wants_full.load(Ordering::Relaxed),
            "a new writer starts full"
        );
        assert!(
            chain.extended(&mut taken(&[(false, 10)])).is_none(),
            "a delta cannot start a chain"
        );
        let (pieces, named) = chain.extended(&mut taken(&[(true, 100)])).expect("full");
        assert_eq!(pieces.len(), 1);
        chain.written(pieces, &named);
        assert!(!wants_full.load(Ordering::Relaxed));
        // Two deltas handed over together (a checkpoint replaced before it was written).
        let (pieces, named) = chain
            .extended(&mut taken(&[(false, 40), (false, 50)]))
            .expect("deltas");
        assert_eq!(pieces.len(), 3);
        assert!(pieces[0].name.starts_with("3-3e8-"), "{}", pieces[0].name);
        assert_ne!(pieces[1].name, pieces[2].name);
        chain.written(pieces, &named);
        assert!(
            !wants_full.load(Ordering::Relaxed),
            "90 bytes of deltas over 100"
        );
        let (pieces, named) = chain.extended(&mut taken(&[(false, 10)])).expect("delta");
        chain.written(pieces, &named);
        assert!(
            wants_full.load(Ordering::Relaxed),
            "100 bytes of deltas over 100: start over"
        );
        // A piece lost breaks the chain until a full piece starts a new one.
        chain.breaks();
        assert!(chain.extended(&mut taken(&[(false, 10)])).is_none());
        let (pieces, named) = chain
            .extended(&mut taken(&[(false, 10), (true, 120), (false, 5)]))
            .expect("a full piece in the middle starts a chain");
        assert_eq!(pieces.iter().map(|p| p.len).collect::<Vec<_>>(), [120, 5]);
        chain.written(pieces, &named);
        assert!(!wants_full.load(Ordering::Relaxed));
    }
}
