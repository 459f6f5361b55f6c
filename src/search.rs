//! The search index's settings for `emporium run`, and `emporium reindex`: the index rebuilt
//! from the store's search documents (`emporium_pipeline::search`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use emporium_ingest::intake::Intake;
use emporium_ingest::producers::Grant;
use emporium_ingest::recorder::Recorder;
use emporium_pipeline::search::{Progress, SearchPosition, SearchSink};
use emporium_schemas::Event;
use emporium_search::{SearchError, SearchIndex};
use emporium_serving::auth::Scope;
use emporium_serving::search::SearchLog;

#[derive(Args, Clone)]
pub struct SearchArgs {
    /// Do not keep the search index (no `/v1/search`).
    #[arg(long)]
    pub no_search: bool,
    /// Longest wait, in ms, before a change the store has is searchable (the index's commit
    /// interval; a stock change is searchable at once, without a commit).
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub refresh_ms: u64,
    /// The index's directory (default: `<data dir>/search`).
    #[arg(long, value_name = "DIR")]
    pub search_dir: Option<PathBuf>,
}

impl SearchArgs {
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        self.search_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("search"))
    }

    pub fn open(&self, data_dir: &Path) -> anyhow::Result<Arc<SearchIndex>> {
        let dir = self.dir(data_dir);
        let opened = match SearchIndex::open(&dir) {
            // Derived data: an index another version wrote is replaced, and rebuilt from the
            // store before the pipeline starts (or by `emporium reindex`).
            Err(SearchError::OtherSchema { .. }) => {
                tracing::warn!(dir = %dir.display(), "the search index was written by another version of Emporium: replacing it (it is rebuilt from the store)");
                std::fs::remove_dir_all(&dir).with_context(|| {
                    format!("removing the old search index at {}", dir.display())
                })?;
                SearchIndex::open(&dir)
            }
            opened => opened,
        };
        opened.map(Arc::new).with_context(|| {
            format!(
                "opening the search index at {} (is another emporium using it? stop it, or \
                 delete the directory to rebuild it from the store at start)",
                dir.display()
            )
        })
    }

    pub fn sink(&self, index: &Arc<SearchIndex>) -> SearchSink {
        SearchSink {
            index: Arc::clone(index),
            refresh: Duration::from_millis(self.refresh_ms.max(1)),
        }
    }
}

/// Each search made through the API, appended to the log as a `search_performed` event.
pub fn search_log(intake: &Arc<Intake>) -> SearchLog {
    let recorder = Recorder::start(
        Arc::clone(intake),
        Grant {
            producer: "search-api".into(),
            scopes: vec![Scope::Storefront],
        },
    );
    Arc::new(move |searched| {
        recorder.record(Event::new(
            uuid::Uuid::new_v4(),
            chrono::Utc::now(),
            searched,
        ));
    })
}

/// The status line's search part.
pub fn status(index: &SearchIndex, log_ends: &[u64], queries_per_s: f64) -> String {
    let stats = index.stats();
    let lag = match SearchPosition::of(index).and_then(|at| at.behind(log_ends)) {
        Some(behind) => format!("{behind} events behind the log"),
        None => "no commit yet".to_owned(),
    };
    format!(
        "search: {} products in {} segments ({}), {queries_per_s:.0} queries/s",
        stats.documents, stats.segments, lag
    )
}

#[derive(Args)]
#[command(after_help = "Examples:
  emporium reindex
  emporium reindex --data-dir /var/lib/emporium
  emporium reindex --scylla node1:9042 --search-dir /fast/search

Rebuilds the search index from the store's search documents (the `search_documents` view the
dataflow keeps), page by page, and commits it at the store's checkpoint: the next `emporium run`
starts from it and replays only what follows. Stop `emporium run` first (one writer per index).
Deleting the index's directory and starting `emporium run` does the same at start.")]
pub struct ReindexArgs {
    /// Where the embedded store keeps its files (and the index, unless --search-dir).
    #[arg(long, env = "EMPORIUM_DATA_DIR", default_value = "emporium-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    store: crate::store::StoreArgs,
    /// The index's directory (default: `<data dir>/search`).
    #[arg(long, value_name = "DIR")]
    search_dir: Option<PathBuf>,
}

pub fn reindex(args: ReindexArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store = rt.block_on(args.store.open(&args.data_dir))?;
    let search = SearchArgs {
        no_search: false,
        refresh_ms: 250,
        search_dir: args.search_dir,
    };
    let index = search.open(&args.data_dir)?;
    // The store is at or past its checkpoint: the index reflects at least that seq.
    let seq = match rt.block_on(store.checkpoint())? {
        Some(bytes) => emporium_pipeline::checkpoint::decode(&bytes, Path::new("the store"))
            .map(|c| c.seq)
            .unwrap_or(0),
        None => 0,
    };
    let positions = rt.block_on(store.positions())?.unwrap_or_default();
    let started = std::time::Instant::now();
    let mut last_print = started;
    let mut progress = |p: Progress| {
        if last_print.elapsed() >= Duration::from_millis(500) {
            last_print = std::time::Instant::now();
            let (what, n) = match p {
                Progress::Documents(n) => ("documents indexed", n),
                Progress::Popularity(n) => ("products' popularity read", n),
                Progress::Products(n) => ("products' availability read", n),
            };
            let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "[{:>6.1}s] {n} {what} ({rate:.0}/s)",
                started.elapsed().as_secs_f64()
            );
        }
    };
    let documents = emporium_pipeline::search::rebuild(
        &index,
        store.as_ref(),
        rt.handle(),
        &SearchPosition { seq, positions },
        &mut progress,
    )?;
    let took = started.elapsed().as_secs_f64();
    let stats = index.stats();
    println!(
        "Reindexed {documents} products from {} into {} in {took:.1} s ({:.0} documents/s, {} segments)",
        store.describe(),
        search.dir(&args.data_dir).display(),
        documents as f64 / took.max(1e-3),
        stats.segments
    );
    Ok(())
}
