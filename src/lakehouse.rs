//! `emporium lakehouse`: the lakehouse sink alone (every event of the log into Delta tables,
//! exactly once), and the flags `emporium run` shares with it. The sink, its SQL route and the
//! inventory snapshots are the `emporium-lakehouse` crate's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use emporium_lakehouse::SinkConfig;
use emporium_lakehouse::sink::RunningSink;
use emporium_lakehouse::sql::SqlLimits;
use emporium_log::EVENTS_TOPIC;
use emporium_ops::status::{self, Rate};

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
    #[command(flatten)]
    kafka_client: crate::open::KafkaClientArgs,
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
    let log = crate::open::log(args.kafka.as_deref(), 1, &args.kafka_client, &args.data_dir)?;
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
    let sink = RunningSink::start(Arc::clone(&log), config.clone())
        .await
        .with_context(|| format!("opening the lakehouse at {}", config.root.display()))?;
    let cancel = emporium_ops::shutdown::on_signal();
    let readiness = emporium_ops::Readiness::new().with(Arc::new(
        emporium_ingest::api::LogReachable(Arc::clone(&log)),
    ));
    let ops = crate::ops::serve(args.ops_listen, readiness, cancel.clone()).await?;
    println!("Press Ctrl-C to stop.");
    let stats = Arc::clone(&sink.stats);
    let status_lines = {
        let (log, stats) = (Arc::clone(&log), Arc::clone(&stats));
        let rate = Rate::new(stats.rows_committed.load(Ordering::Relaxed));
        status::spawn(
            Duration::from_secs(args.status_every),
            cancel.clone(),
            move |_| {
                let (log, stats) = (Arc::clone(&log), Arc::clone(&stats));
                let rows_per_s = rate.per_second(stats.rows_committed.load(Ordering::Relaxed));
                async move {
                    let end: u64 = log
                        .end_offsets(EVENTS_TOPIC)
                        .await
                        .map(|e| e.iter().sum())
                        .unwrap_or(0);
                    vec![format!(
                        "{} | +{rows_per_s:.0} rows/s | {} records behind the log",
                        stats.summary(),
                        end.saturating_sub(stats.committed_records()),
                    )]
                }
            },
        )
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = sink.finished() => eprintln!("The lakehouse sink stopped on an error."),
    }
    cancel.cancel();
    if let Some(lines) = status_lines {
        let _ = lines.await;
    }
    sink.stop(crate::ops::SHUTDOWN_GRACE).await?;
    let _ = ops.await;
    println!("Stopped cleanly: {}.", stats.summary());
    Ok(())
}

/// SQL limits from the command line's seconds and MiB.
pub fn sql_limits(timeout_secs: u64, memory_mb: usize) -> SqlLimits {
    SqlLimits {
        timeout: Duration::from_secs(timeout_secs.max(1)),
        memory_limit: memory_mb.max(1) * 1024 * 1024,
    }
}
