//! The search sink (ADR 0013): the store writer hands it each batch it wrote, and it feeds the
//! search index — the `search_documents` view's documents into the text index, the
//! `product_popularity` view's numbers and each product document's availability into the live
//! tables — and commits the index at most every
//! [`SearchSink::refresh`], recording the log position it reflects. Only this module knows both
//! the dataflows' changes and the index's documents.
//!
//! **Restarts.** The index commits before every checkpoint is written, so a checkpoint's `seq`
//! is never ahead of the index: a restarted pipeline replays the changes after its checkpoint,
//! and the index, at or past it, converges. An index behind the checkpoint (deleted, written by
//! another version, or from another store) is rebuilt from the store's documents before the
//! pipeline starts ([`prepare`], the same as `emporium reindex`). The live tables are not
//! persisted: [`prepare`] sets availability from the store's product documents and the live
//! values from its search documents (price, rating, reviews) and its popularity view.
//!
//! **Its own thread.** The sink runs on a thread of its own ([`SearchThread`]): the store writer
//! hands it each batch the store accepted and goes on to the next, so indexing and commits never
//! delay a store write. The writer waits for the sink only before it writes a checkpoint (the
//! index must commit first). Sell-outs and restocks (the in-stock table) and price, rating and
//! popularity changes (the live values) are searchable as soon as the sink applies the batch;
//! a new or changed text at the next commit, at most [`SearchSink::refresh`] later.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use emporium_dataflows::changes::{Change, Json};
use emporium_dataflows::popularity::ProductPopularity;
use emporium_dataflows::search::SearchDocuments;
use emporium_dataflows::view::View;
use emporium_search::{SearchDocument, SearchIndex};
use emporium_serving::store::{Document, Store};
use emporium_serving::views::ProductView;
use serde::{Deserialize, Serialize};

use crate::PipelineError;
use crate::metrics;
use crate::stats::PipelineStats;

/// The view whose documents the index keeps.
pub const SEARCH_VIEW: &str = SearchDocuments::NAME;
/// The view whose numbers the index sorts by popularity (ADR 0014).
pub const POPULARITY_VIEW: &str = ProductPopularity::NAME;

/// How often the index commits unless told otherwise: a text change (a price, a new product) is
/// searchable this long after the store has it, at most. Elasticsearch refreshes every second.
pub const DEFAULT_REFRESH: Duration = Duration::from_millis(250);

/// Documents read from the store per page in a rebuild.
const PAGE: usize = 2_000;

/// The search index the pipeline feeds, and how often it commits.
#[derive(Clone)]
pub struct SearchSink {
    pub index: Arc<SearchIndex>,
    pub refresh: Duration,
}

impl std::fmt::Debug for SearchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchSink")
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

/// What an index commit records: the store batch it reflects (the decider's `seq`, and the
/// next offset of every partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchPosition {
    pub seq: u64,
    pub positions: Vec<u64>,
}

impl SearchPosition {
    /// The position an index's last commit recorded (`None`: never committed, or not by this
    /// version).
    pub fn of(index: &SearchIndex) -> Option<Self> {
        serde_json::from_str(&index.position()?).ok()
    }

    /// Records the log holds past this position (`None`: of another partition count).
    pub fn behind(&self, log_ends: &[u64]) -> Option<u64> {
        (self.positions.len() == log_ends.len()).then(|| {
            log_ends
                .iter()
                .zip(&self.positions)
                .map(|(end, at)| end.saturating_sub(*at))
                .sum()
        })
    }

    fn payload(&self) -> String {
        // Plain numbers: always encodes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn search_error(e: emporium_search::SearchError) -> PipelineError {
    PipelineError::Search(e.to_string())
}

/// Whether a product can be bought now: listed, and a unit of a sku available (`available`:
/// each sku's units).
fn buyable(discontinued: bool, mut available: impl Iterator<Item = i64>) -> bool {
    !discontinued && available.any(|units| units > 0)
}

/// [`buyable`] for a product document of the store.
pub fn in_stock(product: &ProductView) -> bool {
    buyable(
        product.discontinued,
        product.skus.iter().map(|s| s.available),
    )
}

/// The changes of a batch the index reads: search documents, popularity and product documents.
pub(crate) fn relevant(changes: &[Change]) -> Vec<Change> {
    changes
        .iter()
        .filter(|c| match c {
            Change::Product { .. } => true,
            Change::View { view, .. } => *view == SEARCH_VIEW || *view == POPULARITY_VIEW,
            _ => false,
        })
        .cloned()
        .collect()
}

/// The store writer's side of the sink: what it applied since the last commit.
pub(crate) struct Feeder {
    sink: SearchSink,
    stats: Arc<PipelineStats>,
    /// Changes applied since the last commit, and the position they bring the index to.
    pending: bool,
    position: SearchPosition,
    /// Append times of the events applied since the last commit (freshness at commit).
    applied_ms: Vec<i64>,
    last_commit: Instant,
    started_ms: i64,
}

impl Feeder {
    pub(crate) fn new(sink: SearchSink, stats: Arc<PipelineStats>, started_ms: i64) -> Self {
        let position = SearchPosition::of(&sink.index).unwrap_or(SearchPosition {
            seq: 0,
            positions: Vec::new(),
        });
        Self {
            sink,
            stats,
            pending: false,
            position,
            applied_ms: Vec::new(),
            last_commit: Instant::now(),
            started_ms,
        }
    }

    /// Applies the changes of a batch the store now holds, at `seq` and `positions`.
    pub(crate) fn apply(
        &mut self,
        changes: &[Change],
        seq: u64,
        positions: &[u64],
        applied_ms: &[i64],
    ) -> Result<(), PipelineError> {
        let index = &self.sink.index;
        for change in changes {
            match change {
                Change::View {
                    view,
                    key,
                    document,
                    ..
                } if *view == SEARCH_VIEW => {
                    match document {
                        Some(json) => match json.parse::<SearchDocument>() {
                            Ok(mut doc) => {
                                // Its popularity is the popularity view's, already live.
                                doc.popularity =
                                    index.values(&doc.product_id).map_or(0.0, |v| v.popularity);
                                index.upsert(&doc).map_err(search_error)?;
                            }
                            Err(e) => {
                                // The view and the index disagree on the document's shape: a
                                // bug, logged rather than fatal (the rest of the batch goes on).
                                tracing::error!(product_id = %key, error = %e, "search document not indexed");
                                continue;
                            }
                        },
                        None => index.remove(key).map_err(search_error)?,
                    }
                }
                Change::View {
                    view,
                    key,
                    document,
                    ..
                } if *view == POPULARITY_VIEW => {
                    index.set_popularity(key, popularity_of(document.as_ref()));
                }
                Change::Product { product, .. } => index.set_in_stock(
                    &product.product_id,
                    buyable(
                        product.discontinued,
                        product.skus.iter().map(|s| s.available),
                    ),
                ),
                _ => {}
            }
        }
        if seq >= self.position.seq {
            self.position = SearchPosition {
                seq,
                positions: positions.to_vec(),
            };
        }
        // Availability and values are searchable now; texts at the commit.
        let mut oldest = Duration::ZERO;
        for latency in self
            .stats
            .freshness_of(self.started_ms, applied_ms.iter().copied())
        {
            self.stats.search_live_freshness.record(latency);
            oldest = oldest.max(latency);
        }
        if !applied_ms.is_empty() {
            metrics::search_applied(oldest);
        }
        self.applied_ms.extend_from_slice(applied_ms);
        self.pending = true;
        Ok(())
    }

    /// How long until a commit is due; `None` when nothing waits for one.
    pub(crate) fn due_in(&self) -> Option<Duration> {
        self.pending
            .then(|| self.sink.refresh.saturating_sub(self.last_commit.elapsed()))
    }

    /// Commits what was applied, if anything, recording its position.
    pub(crate) fn commit(&mut self) -> Result<(), PipelineError> {
        if !self.pending {
            return Ok(());
        }
        let began = Instant::now();
        self.sink
            .index
            .commit(&self.position.payload())
            .map_err(search_error)?;
        self.pending = false;
        self.last_commit = Instant::now();
        self.stats.search_commits.fetch_add(1, Ordering::Relaxed);
        let index = self.sink.index.stats();
        metrics::search_commit(began.elapsed(), index.documents, index.segments);
        let applied = std::mem::take(&mut self.applied_ms);
        for latency in self.stats.freshness_of(self.started_ms, applied) {
            self.stats.search_freshness.record(latency);
        }
        Ok(())
    }
}

/// A batch the store holds, for the sink: the changes it reads, the decider's `seq`, the next
/// offset of every partition, and the append times of the batch's events.
pub(crate) struct Batch {
    pub(crate) changes: Vec<Change>,
    pub(crate) seq: u64,
    pub(crate) positions: Vec<u64>,
    pub(crate) applied_ms: Vec<i64>,
}

/// What the store writer and the sink's thread share.
#[derive(Default)]
struct Queue {
    batches: Vec<Batch>,
    /// The store writer waits for a commit through this `seq` (a checkpoint follows).
    commit_through: Option<u64>,
    /// The `seq` of the last commit.
    committed: u64,
    closed: bool,
    abandoned: bool,
    error: Option<PipelineError>,
}

/// The sink on its own thread.
pub(crate) struct SearchThread {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(m: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SearchThread {
    pub(crate) fn start(
        sink: SearchSink,
        stats: Arc<PipelineStats>,
        started_ms: i64,
    ) -> Result<Self, PipelineError> {
        let mut feeder = Feeder::new(sink, stats, started_ms);
        let shared = Arc::new((
            Mutex::new(Queue {
                committed: feeder.position.seq,
                ..Queue::default()
            }),
            Condvar::new(),
        ));
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("emporium-search".into())
                .spawn(move || {
                    let (queue, changed) = &*shared;
                    loop {
                        let (batches, wanted, closed) = {
                            let mut q = lock(queue);
                            // Wait for a batch, a commit wanted, or a commit due.
                            while q.batches.is_empty()
                                && q.commit_through.is_none()
                                && !q.closed
                                && !q.abandoned
                            {
                                match feeder.due_in() {
                                    Some(wait) if wait.is_zero() => break,
                                    Some(wait) => {
                                        q = changed
                                            .wait_timeout(q, wait)
                                            .unwrap_or_else(|e| e.into_inner())
                                            .0;
                                    }
                                    None => q = changed.wait(q).unwrap_or_else(|e| e.into_inner()),
                                }
                            }
                            if q.abandoned {
                                return;
                            }
                            (std::mem::take(&mut q.batches), q.commit_through, q.closed)
                        };
                        let result = batches
                            .iter()
                            .try_for_each(|b| {
                                feeder.apply(&b.changes, b.seq, &b.positions, &b.applied_ms)
                            })
                            .and_then(|()| {
                                let due = feeder.due_in().is_some_and(|d| d.is_zero());
                                match wanted.is_some() || due || closed {
                                    true => feeder.commit(),
                                    false => Ok(()),
                                }
                            });
                        let mut q = lock(queue);
                        match result {
                            Ok(()) => {
                                if !feeder.pending {
                                    q.committed = q.committed.max(feeder.position.seq);
                                }
                                // Met, or nothing left to commit (every batch handed is).
                                if q.commit_through.is_some_and(|seq| q.committed >= seq)
                                    || (q.batches.is_empty() && !feeder.pending)
                                {
                                    q.commit_through = None;
                                }
                            }
                            Err(e) => {
                                q.error = Some(e);
                                changed.notify_all();
                                return;
                            }
                        }
                        changed.notify_all();
                        if q.closed && q.batches.is_empty() && !feeder.pending {
                            return;
                        }
                    }
                })
                .map_err(|e| PipelineError::Timely(format!("search thread: {e}")))?
        };
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands the sink a batch the store now holds; fails if the sink failed.
    pub(crate) fn hand_off(&self, batch: Batch) -> Result<(), PipelineError> {
        let (queue, changed) = &*self.shared;
        let mut q = lock(queue);
        if let Some(e) = q.error.take() {
            return Err(e);
        }
        q.batches.push(batch);
        changed.notify_all();
        Ok(())
    }

    /// Waits until the index has committed everything through `seq` (before a checkpoint at
    /// `seq` is written).
    pub(crate) fn commit_through(&self, seq: u64) -> Result<(), PipelineError> {
        let (queue, changed) = &*self.shared;
        let mut q = lock(queue);
        if q.committed >= seq && q.batches.is_empty() {
            return Ok(());
        }
        q.commit_through = Some(q.commit_through.map_or(seq, |s| s.max(seq)));
        changed.notify_all();
        loop {
            if let Some(e) = q.error.take() {
                return Err(e);
            }
            if q.committed >= seq || (q.commit_through.is_none() && q.batches.is_empty()) {
                return Ok(());
            }
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return Err(PipelineError::Search("the search thread stopped".into()));
            }
            q = changed
                .wait_timeout(q, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Commits what is left, then stops the thread.
    pub(crate) fn finish(mut self) -> Result<(), PipelineError> {
        let (queue, changed) = &*self.shared;
        lock(queue).closed = true;
        changed.notify_all();
        if self.thread.take().is_some_and(|t| t.join().is_err()) {
            return Err(PipelineError::Search("the search thread panicked".into()));
        }
        match lock(queue).error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for SearchThread {
    /// Dropped without [`SearchThread::finish`] (the store writer failed or was abandoned): the
    /// thread stops without committing (a restarted pipeline may be rebuilding the same index).
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let (queue, changed) = &*self.shared;
            lock(queue).abandoned = true;
            changed.notify_all();
            let _ = thread.join();
        }
    }
}

/// What [`prepare`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The index was rebuilt from the store (it was behind the checkpoint, or empty).
    pub rebuilt: bool,
    /// Documents in the index, and products marked in stock.
    pub documents: u64,
    pub in_stock: u64,
}

/// Makes the index ready for a pipeline that resumes at `resumed_seq`: rebuilt from the store
/// when it does not reflect that `seq` (its commit is older, or it has none while the store has
/// documents) or is not of this store (its positions are ahead of the store's, or of another
/// partition count: the index is never ahead of the store it was fed from), and its in-stock
/// table set from the store's products, and (not rebuilt) its live values from the store's
/// search documents and popularity. `progress` hears of each page read.
pub fn prepare(
    index: &SearchIndex,
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    resumed_seq: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<Prepared, PipelineError> {
    let at = SearchPosition::of(index);
    let positions = runtime.block_on(store.positions())?.unwrap_or_default();
    let behind = match &at {
        Some(at) => {
            at.seq < resumed_seq
                || at.positions.len() != positions.len()
                || at.positions.iter().zip(&positions).any(|(i, s)| i > s)
        }
        None => resumed_seq > 0 || index.stats().documents > 0,
    };
    let documents = if behind {
        tracing::info!(
            index_seq = at.as_ref().map_or(0, |a| a.seq),
            resumed_seq,
            "the search index is behind the checkpoint or not of this store: rebuilding it from the store"
        );
        rebuild(
            index,
            store,
            runtime,
            &SearchPosition {
                seq: resumed_seq,
                positions,
            },
            progress,
        )?
    } else {
        load_values(index, store, runtime, progress)?;
        index.stats().documents
    };
    let in_stock = load_availability(index, store, runtime, progress)?;
    Ok(Prepared {
        rebuilt: behind,
        documents,
        in_stock,
    })
}

/// How far a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Search documents indexed (or, their values, read) so far.
    Documents(u64),
    /// Products' popularity read so far.
    Popularity(u64),
    /// Product documents read so far (availability).
    Products(u64),
}

/// Replaces the index's documents with the store's `search_documents`, and commits at
/// `position` (what the store's documents reflect at least). Gives the documents indexed.
pub fn rebuild(
    index: &SearchIndex,
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    position: &SearchPosition,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64, PipelineError> {
    index.clear().map_err(search_error)?;
    let indexed = scan_documents(store, runtime, progress, &mut |doc| {
        index.upsert(doc).map(drop).map_err(search_error)
    })?;
    load_popularity(index, store, runtime, progress)?;
    index.commit(&position.payload()).map_err(search_error)?;
    Ok(indexed)
}

/// Sets the live values from the store: price, rating and reviews from its `search_documents`,
/// popularity from its `product_popularity` (an index reopened holds each product's values as
/// of its last re-index, and the store's are newer). Gives the documents read.
pub fn load_values(
    index: &SearchIndex,
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64, PipelineError> {
    let read = scan_documents(store, runtime, progress, &mut |doc| {
        index.set_values(doc);
        Ok(())
    })?;
    load_popularity(index, store, runtime, progress)?;
    Ok(read)
}

/// A `product_popularity` document: `log2` of the product's decayed interest.
#[derive(Deserialize)]
struct Popular {
    popularity: f64,
}

/// The popularity in a `product_popularity` document (0: none, or unreadable).
fn popularity_of(document: Option<&Json>) -> f64 {
    document
        .and_then(|d| d.parse::<Popular>().ok())
        .map_or(0.0, |p| p.popularity)
}

/// Sets every product's popularity from the store's `product_popularity`; gives how many.
/// Products with none get 0 (not what the index's columns or an earlier run left).
fn load_popularity(
    index: &SearchIndex,
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64, PipelineError> {
    index.forget_popularity();
    let mut read = 0u64;
    scan_view(store, runtime, POPULARITY_VIEW, &mut |page| {
        for (key, doc) in page {
            let popularity = serde_json::from_slice::<Popular>(&doc.json);
            index.set_popularity(key, popularity.map_or(0.0, |p| p.popularity));
            read += 1;
        }
        progress(Progress::Popularity(read));
        Ok(())
    })?;
    Ok(read)
}

/// Calls `each` on every search document of the store, page by page; gives how many.
fn scan_documents(
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    progress: &mut dyn FnMut(Progress),
    each: &mut dyn FnMut(&SearchDocument) -> Result<(), PipelineError>,
) -> Result<u64, PipelineError> {
    let mut read = 0u64;
    scan_view(store, runtime, SEARCH_VIEW, &mut |page| {
        for (key, doc) in page {
            if doc.json.as_ref() == b"null" {
                continue;
            }
            // As the feeder does: a document of another shape is logged and left out, not a
            // reason to stop every start.
            match serde_json::from_slice::<SearchDocument>(&doc.json) {
                Ok(doc) => {
                    each(&doc)?;
                    read += 1;
                }
                Err(e) => {
                    tracing::error!(product_id = %key, error = %e, "stored search document not indexed")
                }
            }
        }
        progress(Progress::Documents(read));
        Ok(())
    })?;
    Ok(read)
}

/// A page of a view's documents: (key, document).
type Page = [(String, Document)];

/// Calls `each` on every page of a view's documents in the store, in key order.
fn scan_view(
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    view: &str,
    each: &mut dyn FnMut(&Page) -> Result<(), PipelineError>,
) -> Result<(), PipelineError> {
    let mut after: Option<String> = None;
    loop {
        let page = runtime.block_on(store.scan_view(view, after.as_deref(), PAGE))?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        each(&page)?;
    }
}

/// Sets the in-stock table from the store's product documents; gives how many are in stock.
pub fn load_availability(
    index: &SearchIndex,
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64, PipelineError> {
    let mut after: Option<String> = None;
    let (mut read, mut in_stock_count) = (0u64, 0u64);
    loop {
        let page = runtime.block_on(store.scan_products(after.as_deref(), PAGE))?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (key, doc) in &page {
            let Ok(product) = serde_json::from_slice::<ProductView>(&doc.json) else {
                tracing::error!(product_id = %key, "stored product document unreadable: counted out of stock");
                continue;
            };
            let buyable = in_stock(&product);
            index.set_in_stock(key, buyable);
            in_stock_count += u64::from(buyable);
            read += 1;
        }
        progress(Progress::Products(read));
    }
    Ok(in_stock_count)
}
