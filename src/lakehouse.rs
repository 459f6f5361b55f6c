//! `emporium lakehouse`: the lakehouse sink alone (every event of the log into Delta tables,
//! exactly once), and the pieces `emporium run` shares with it: the sink's flags, starting and
//! stopping the sink, its status line, and `POST /v1/sql`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Args;
use emporium_lakehouse::sql::{Format, SqlEngine, SqlError, SqlLimits, encode};
use emporium_lakehouse::{Sink, SinkConfig, SinkStats};
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::kafka::{KafkaConfig, KafkaLog};
use emporium_log::{EVENTS_TOPIC, EventLog};
use emporium_serving::auth::{Audience, Authenticator, Principal};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// The sink's settings, shared by `emporium run` and `emporium lakehouse`.
#[derive(Args, Clone)]
pub struct SinkArgs {
    /// Where the lakehouse tables live [default: <data dir>/lakehouse].
    #[arg(long = "lakehouse-dir", env = "EMPORIUM_LAKEHOUSE_DIR")]
    pub dir: Option<PathBuf>,
    /// Seconds after which buffered rows are committed (new rows are visible to SQL after at most
    /// this long).
    #[arg(long = "lakehouse-flush-secs", default_value_t = 10)]
    pub flush_secs: u64,
    /// Rows buffered before a commit, whatever the time (larger: fewer, larger files).
    #[arg(long = "lakehouse-flush-rows", default_value_t = 1_000_000)]
    pub flush_rows: usize,
    /// Minutes between compactions of small files into large ones (0: never).
    #[arg(long = "lakehouse-compact-minutes", default_value_t = 10)]
    pub compact_minutes: u64,
    /// Seconds between inventory snapshots (every (sku, warehouse) of the store into the
    /// `inventory_snapshots` table; 0: none). Only where the store is: `emporium run`.
    #[arg(long = "inventory-snapshot-secs", default_value_t = 3600)]
    pub snapshot_secs: u64,
}

impl SinkArgs {
    pub fn root(&self, data_dir: &Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join("lakehouse"))
    }

    pub fn config(&self, data_dir: &Path) -> SinkConfig {
        SinkConfig {
            flush_interval: Duration::from_secs(self.flush_secs.max(1)),
            flush_rows: self.flush_rows.max(1),
            compact_interval: (self.compact_minutes > 0)
                .then(|| Duration::from_secs(self.compact_minutes * 60)),
            ..SinkConfig::new(self.root(data_dir))
        }
    }
}

/// A sink running as a task.
pub struct RunningSink {
    pub stats: Arc<SinkStats>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<(), emporium_lakehouse::LakeError>>,
}

impl RunningSink {
    pub async fn start(log: Arc<dyn EventLog>, config: SinkConfig) -> anyhow::Result<Self> {
        let root = config.root.clone();
        let stats = Arc::new(SinkStats::default());
        let sink = Sink::open(log, config, Arc::clone(&stats))
            .await
            .with_context(|| format!("opening the lakehouse at {}", root.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(sink.run(Arc::clone(&stop)));
        Ok(Self { stats, stop, task })
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Commits what is buffered and stops, within `grace`.
    pub async fn stop(self, grace: Duration) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match tokio::time::timeout(grace, self.task).await {
            Ok(joined) => Ok(joined
                .context("joining the lakehouse sink")?
                .context("lakehouse sink")?),
            Err(_) => anyhow::bail!(
                "the lakehouse sink did not stop within {} s (a restart writes what it had not committed)",
                grace.as_secs()
            ),
        }
    }
}

/// `lakehouse: 12,345 rows in 21 tables (2 rejected), 40 commits`.
pub fn status(stats: &SinkStats) -> String {
    let tables = stats.rows_per_table.lock().len();
    format!(
        "lakehouse: {} rows committed to {tables} tables ({} rejected), {} commits, {} compactions",
        stats.rows_committed.load(Ordering::Relaxed),
        stats.rejected.load(Ordering::Relaxed),
        stats.commits.load(Ordering::Relaxed),
        stats.compactions.load(Ordering::Relaxed),
    )
}

#[derive(Args)]
pub struct LakehouseArgs {
    /// Address of this process's /healthz, /readyz and /metrics (port 0: a free port, printed
    /// at start).
    #[arg(long, env = "EMPORIUM_OPS_LISTEN", default_value = "127.0.0.1:0")]
    ops_listen: std::net::SocketAddr,
    /// Read this Kafka log (host:port,...) instead of the embedded log in --data-dir (which must
    /// then not be open in an `emporium run`: that one runs the sink itself).
    #[arg(long, env = "EMPORIUM_KAFKA")]
    kafka: Option<String>,
    /// The data directory of the embedded log, and of the lakehouse unless --lakehouse-dir.
    #[arg(long, env = "EMPORIUM_DATA_DIR", default_value = "emporium-data")]
    data_dir: PathBuf,
    /// Seconds between status lines (0: none).
    #[arg(long, default_value_t = 5)]
    status_every: u64,
    #[command(flatten)]
    sink: SinkArgs,
}

pub fn main(args: LakehouseArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: LakehouseArgs) -> anyhow::Result<()> {
    let log: Arc<dyn EventLog> = match &args.kafka {
        Some(brokers) => Arc::new(
            KafkaLog::connect(KafkaConfig::new(brokers.clone()))
                .with_context(|| format!("connecting to Kafka at {brokers}"))?,
        ),
        None => {
            let dir = args.data_dir.join("log");
            Arc::new(
                EmbeddedLog::open(EmbeddedConfig::in_dir(&dir))
                    .with_context(|| format!("opening the embedded log in {}", dir.display()))?,
            )
        }
    };
    log.partition_count(EVENTS_TOPIC).await.with_context(|| {
        format!(
            "the {} has no events topic yet: start `emporium run` (or ingest) first",
            log.describe()
        )
    })?;
    let config = args.sink.config(&args.data_dir);
    println!(
        "Lakehouse sink: {} -> {}",
        log.describe(),
        config.root.display()
    );
    println!(
        "  commits every {} s or {} rows; query with `emporium sql --data-dir {}`.",
        config.flush_interval.as_secs(),
        config.flush_rows,
        args.data_dir.display()
    );
    let sink = RunningSink::start(Arc::clone(&log), config).await?;
    let cancel = emporium_ops::shutdown::on_signal();
    let readiness = emporium_ops::Readiness::new().with(Arc::new(
        emporium_ingest::api::LogReachable(Arc::clone(&log)),
    ));
    let ops = crate::ops::serve(args.ops_listen, readiness, cancel.clone()).await?;
    println!("Press Ctrl-C to stop.");
    let stats = Arc::clone(&sink.stats);
    let status_lines = (args.status_every > 0).then(|| {
        let log = Arc::clone(&log);
        let every = Duration::from_secs(args.status_every);
        tokio::spawn(async move {
            let start = Instant::now();
            let mut last = (start, stats.rows_committed.load(Ordering::Relaxed));
            loop {
                tokio::time::sleep(every).await;
                let end: u64 = log
                    .end_offsets(EVENTS_TOPIC)
                    .await
                    .map(|e| e.iter().sum())
                    .unwrap_or(0);
                let rows = stats.rows_committed.load(Ordering::Relaxed);
                let now = Instant::now();
                let rate = rows.saturating_sub(last.1) as f64 / (now - last.0).as_secs_f64();
                last = (now, rows);
                println!(
                    "[{:>5.0}s] {} | +{rate:.0} rows/s | {} records behind the log",
                    start.elapsed().as_secs_f64(),
                    status(&stats),
                    end.saturating_sub(stats.committed_records()),
                );
            }
        })
    });
    let finished = async {
        while !sink.is_finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = finished => eprintln!("The lakehouse sink stopped on an error."),
    }
    if let Some(lines) = status_lines {
        lines.abort();
    }
    let stats = Arc::clone(&sink.stats);
    cancel.cancel();
    sink.stop(crate::run::SHUTDOWN_GRACE).await?;
    let _ = ops.await;
    println!("Stopped cleanly: {}.", status(&stats));
    Ok(())
}

/// Pages of inventory documents read from the store per snapshot step.
const SNAPSHOT_PAGE: usize = 5_000;

/// Writes every inventory document of `store` as rows of `inventory_snapshots`, one row per
/// (sku, warehouse), all stamped `at`, in one Delta commit (a crash leaves no partial snapshot).
/// Returns the rows written.
pub async fn snapshot_inventory(
    store: &dyn emporium_serving::store::Store,
    root: &Path,
    at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<usize> {
    use emporium_lakehouse::rows::{SnapshotRow, snapshot_batch};
    use emporium_lakehouse::schema::INVENTORY_SNAPSHOTS_TABLE;
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .scan_inventory(after.as_deref(), SNAPSHOT_PAGE)
            .await
            .context("reading inventory documents from the store")?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (sku, doc) in page {
            let view: emporium_serving::views::InventoryView = serde_json::from_slice(&doc.json)
                .with_context(|| format!("inventory document of {sku}"))?;
            rows.extend(view.warehouses.into_iter().map(|w| SnapshotRow {
                sku: sku.clone(),
                warehouse: w.warehouse,
                on_hand: w.on_hand,
                reserved: w.reserved,
                available: w.available,
                as_of_seq: doc.seq as i64,
            }));
        }
    }
    let batch = snapshot_batch(at, &rows)?;
    let mut lake = emporium_lakehouse::Lake::open(root).await?;
    lake.append(INVENTORY_SNAPSHOTS_TABLE, vec![batch], EVENTS_TOPIC, &[])
        .await?;
    Ok(rows.len())
}

/// Takes an inventory snapshot every `every`, until the task is aborted; failures are logged.
pub fn spawn_snapshots(
    store: Arc<dyn emporium_serving::store::Store>,
    root: PathBuf,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let began = Instant::now();
            match snapshot_inventory(store.as_ref(), &root, chrono::Utc::now()).await {
                Ok(rows) => tracing::info!(
                    "lakehouse: inventory snapshot of {rows} (sku, warehouse) rows in {:.1} s",
                    began.elapsed().as_secs_f64()
                ),
                Err(error) => tracing::warn!("lakehouse: inventory snapshot failed: {error:#}"),
            }
        }
    })
}

/// Queries at once over HTTP; more wait for a turn (within their time limit).
const CONCURRENT_QUERIES: usize = 2;
/// The largest SQL text accepted.
const MAX_SQL_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
struct SqlService {
    engine: Arc<SqlEngine>,
    auth: Authenticator,
    slots: Arc<Semaphore>,
}

/// `POST /v1/sql`: read-only SQL over the lakehouse for operators. The body is the SQL text
/// (`text/plain` or `application/sql`) or `{"sql": "..."}` (`application/json`); the result is
/// JSON (default), CSV, NDJSON, Arrow IPC or Parquet by `Accept`.
pub fn sql_router(engine: Arc<SqlEngine>, auth: Authenticator) -> Router {
    Router::new()
        .route("/v1/sql", post(post_sql))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_SQL_BYTES))
        .with_state(SqlService {
            engine,
            auth,
            slots: Arc::new(Semaphore::new(CONCURRENT_QUERIES)),
        })
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    let mut response = emporium_ops::ApiError::new(status, code, message).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn sql_error(e: SqlError) -> Response {
    let (status, code) = match &e {
        SqlError::Syntax(_) => (StatusCode::BAD_REQUEST, "sql_syntax"),
        SqlError::Plan(_) => (StatusCode::BAD_REQUEST, "sql_invalid"),
        SqlError::NotReadOnly(_) => (StatusCode::FORBIDDEN, "read_only"),
        SqlError::ResourcesExhausted { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "memory_limit"),
        SqlError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "time_limit"),
        SqlError::Execution(_) | SqlError::Lake(_) => {
            tracing::error!(error = %e, "SQL query failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "query_failed")
        }
    };
    error(status, code, e.to_string())
}

async fn post_sql(State(service): State<SqlService>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match service.auth.authenticate(authorization, Audience::Read) {
        Ok(Principal::Operator) => {}
        Ok(_) => {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "SQL over the lakehouse is for operators (the operator key), not shoppers".into(),
            );
        }
        Err(e) => return error(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain");
    let sql = if content_type.starts_with("application/json") {
        #[derive(serde::Deserialize)]
        struct Body {
            sql: String,
        }
        match serde_json::from_slice::<Body>(&body) {
            Ok(b) => b.sql,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("expected {{\"sql\": \"SELECT ...\"}}: {e}"),
                );
            }
        }
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(s) => s,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the SQL text is not UTF-8".into(),
                );
            }
        }
    };
    let format = Format::from_accept(
        headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json"),
    );
    let limits = service.engine.limits();
    // A turn within a tenth of the time limit, or come back later.
    let Ok(Ok(slot)) = tokio::time::timeout(
        limits.timeout / 10,
        Arc::clone(&service.slots).acquire_owned(),
    )
    .await
    else {
        let mut busy = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{CONCURRENT_QUERIES} queries are running; try again shortly"),
        );
        busy.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        return busy;
    };
    // On threads of its own, answered by the deadline: the server keeps answering meanwhile.
    // The slot is held until the query's thread ends, not just until the answer: a cancelled
    // query still finishing a step counts against the limit.
    let result = match service.engine.query_isolated(&sql, slot).await {
        Ok(r) => r,
        Err(e) => return sql_error(e),
    };
    // Encoding a large result is CPU work: off the async workers.
    let encoded = tokio::task::spawn_blocking(move || encode(&result, format)).await;
    let encoded = match encoded {
        Ok(e) => e,
        Err(e) => return sql_error(SqlError::Execution(e.to_string())),
    };
    match encoded {
        Ok(bytes) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => sql_error(SqlError::Execution(e.to_string())),
    }
}

/// SQL limits from the command line's seconds and MiB.
pub fn sql_limits(timeout_secs: u64, memory_mb: usize) -> SqlLimits {
    SqlLimits {
        timeout: Duration::from_secs(timeout_secs.max(1)),
        memory_limit: memory_mb.max(1) * 1024 * 1024,
    }
}
