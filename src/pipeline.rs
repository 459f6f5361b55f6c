//! `emporium pipeline`: the dataflow alone, for the distributed deployment. Several of these
//! processes (timely's cluster mode) split the partitions of the Kafka log; process 0 decides,
//! appends the decisions and writes the store, the others read their partitions and forward them.
//! Ingest runs elsewhere (`emporium run --kafka`), reads in `emporium serve`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use emporium_log::EVENTS_TOPIC;
use emporium_pipeline::{ClusterConfig, PipelineConfig, RunningPipeline};

#[derive(Args)]
pub struct PipelineArgs {
    /// Address of this process's /healthz, /readyz and /metrics (port 0: a free port, printed
    /// at start).
    #[arg(long, env = "EMPORIUM_OPS_LISTEN", default_value = "127.0.0.1:0")]
    ops_listen: std::net::SocketAddr,
    /// Kafka brokers (host:port,...) of the log every process reads.
    #[arg(long, env = "EMPORIUM_KAFKA")]
    kafka: String,
    #[command(flatten)]
    kafka_client: crate::open::KafkaClientArgs,
    /// This process's index in --addresses (0 decides and writes the store).
    #[arg(long, default_value_t = 0)]
    process: usize,
    /// host:port every pipeline process listens on for the others, in process order, this one's
    /// included (e.g. 10.0.0.1:2101,10.0.0.2:2101). Omit to run as the only process.
    #[arg(long, value_delimiter = ',')]
    addresses: Vec<String>,
    /// Timely worker threads in this process (every process runs the same number).
    #[arg(long, env = "EMPORIUM_WORKERS", default_value_t = 2)]
    workers: usize,
    /// Where process 0 keeps the embedded store (when not --scylla).
    #[arg(long, env = "EMPORIUM_DATA_DIR", default_value = "emporium-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    store: crate::store::StoreArgs,
    #[command(flatten)]
    checkpoints: crate::store::CheckpointArgs,
    #[command(flatten)]
    decisions: DecisionArgs,
    /// Seconds between status lines (0: none).
    #[arg(long, default_value_t = 5)]
    status_every: u64,
}

/// The settings of the decision rule (ADR 0005). They are part of the rule: every process over
/// one log must use the same, and a checkpoint taken with others is not resumed (the log is
/// replayed instead).
#[derive(clap::Args)]
pub struct DecisionArgs {
    /// How far (ms) an event may trail the newest event of its partition and still count at its
    /// own time; an event further behind counts at that bound (`emporium_dataflow_late_events_total`
    /// counts them). Decisions wait this long behind the slowest partition: set it just above
    /// the producers' disorder.
    #[arg(long, env = "EMPORIUM_ALLOWED_LATENESS_MS", default_value_t = 500)]
    allowed_lateness_ms: u32,
    /// Seconds, in event time, a reservation waits for its payment before it is released
    /// (reason `expired`).
    #[arg(long, env = "EMPORIUM_RESERVATION_TTL_SECS", default_value_t = 900, value_parser = clap::value_parser!(u32).range(1..))]
    reservation_ttl_secs: u32,
    /// Append a `partition_heartbeat` to a partition that has had no event for this long (ms)
    /// while it holds back a decision or an expiry, so a quiet partition does not stall the
    /// rest (0: never). Heartbeats are log records: a replay reads them where they are, so
    /// decisions stay a function of the log.
    #[arg(long, env = "EMPORIUM_IDLE_HEARTBEAT_MS", default_value_t = 200)]
    idle_heartbeat_ms: u64,
    /// No heartbeat for this long (ms) after a start, or after Kafka was last unreachable, so
    /// that producers backing off while the process or the broker was down resend their events
    /// before any heartbeat moves their partitions' clocks (set it above the producers' longest
    /// retry back-off).
    #[arg(long, env = "EMPORIUM_HEARTBEAT_GRACE_MS", default_value_t = 10_000)]
    heartbeat_grace_ms: u64,
    /// Also maintain the recommendation views (`also_bought`, `also_viewed`, `similar`,
    /// `content`, `trending`, `user_purchases`, `user_views`; ADR 0015), which the
    /// recommendation routes read (`erased_users` always runs). Off by default for now:
    /// at 100k events/s they take the pipeline past its 1 s freshness and decision targets
    /// (README, Numbers). `run --demo` turns them on. Part of the views every process over one
    /// log must run alike: switching it replays the log.
    #[arg(long, env = "EMPORIUM_RECOMMENDATIONS")]
    pub recommendations: bool,
}

impl DecisionArgs {
    /// The pipeline's settings with these.
    pub fn apply(&self, config: PipelineConfig) -> PipelineConfig {
        let mut config = config;
        config.allowed_lateness = chrono::Duration::milliseconds(self.allowed_lateness_ms.into());
        config.inventory.reservation_ttl =
            chrono::Duration::seconds(self.reservation_ttl_secs.into());
        config.idle_heartbeat = (self.idle_heartbeat_ms > 0)
            .then(|| std::time::Duration::from_millis(self.idle_heartbeat_ms));
        config.heartbeat_grace = std::time::Duration::from_millis(self.heartbeat_grace_ms);
        if !self.recommendations {
            config
                .views
                .retain(|v| !emporium_dataflows::recs::VIEWS.contains(&v.name));
        }
        config
    }
}

pub fn main(args: PipelineArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("emporium-io")
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: PipelineArgs) -> anyhow::Result<()> {
    let cluster = (!args.addresses.is_empty()).then(|| ClusterConfig {
        process: args.process,
        addresses: args.addresses.clone(),
    });
    if let Some(c) = &cluster
        && c.process >= c.addresses.len()
    {
        anyhow::bail!(
            "--process {}: expected an index into --addresses ({} given)",
            c.process,
            c.addresses.len()
        );
    }
    let log = crate::open::log(Some(&args.kafka), 1, &args.kafka_client, &args.data_dir)?;
    // Only the deciding process writes the store.
    let store = if args.process == 0 {
        Some(args.store.open(&args.data_dir).await?)
    } else {
        None
    };
    println!(
        "Emporium pipeline process {} of {} ({} worker(s)) on {}",
        args.process,
        args.addresses.len().max(1),
        args.workers,
        log.describe()
    );
    match &store {
        Some(store) => println!("  decides; writes the {}", store.describe()),
        None => println!("  reads its partitions and forwards them to process 0"),
    }
    if cluster.is_some() {
        println!("  waiting for every process to connect…");
    }
    let cancel = emporium_ops::shutdown::on_signal();
    let replay = Arc::new(crate::ops::Replay::of(
        log.end_offsets(EVENTS_TOPIC).await?,
        args.process,
        args.addresses.len().max(1),
        args.workers,
    ));
    let readiness = emporium_ops::Readiness::new()
        .with(Arc::new(emporium_ingest::api::LogReachable(Arc::clone(
            &log,
        ))))
        .with(Arc::clone(&replay) as Arc<dyn emporium_ops::ReadinessCheck>);
    let ops = crate::ops::serve(args.ops_listen, readiness, cancel.clone()).await?;
    let pipeline = RunningPipeline::start(
        Arc::clone(&log),
        store,
        tokio::runtime::Handle::current(),
        args.decisions.apply(PipelineConfig {
            workers: args.workers,
            cluster,
            checkpoint: args.checkpoints.config(&args.data_dir),
            ..PipelineConfig::default()
        }),
    )
    .context("starting the dataflow thread")?;
    let stats = Arc::clone(&pipeline.stats);
    replay.stats.set(Arc::clone(&stats));
    let status = {
        let stats = Arc::clone(&stats);
        emporium_ops::status::spawn(
            Duration::from_secs(args.status_every),
            cancel.clone(),
            move |_| {
                let line = format!(
                    "records read: {} | decisions appended: {} | documents written: {} | {}",
                    stats.records_read.load(Ordering::Relaxed),
                    stats.decisions_appended.load(Ordering::Relaxed),
                    stats.documents_written.load(Ordering::Relaxed),
                    checkpoint_status(&stats),
                );
                async move { vec![line] }
            },
        )
    };
    crate::ops::until_stop_or_failure(Some(&pipeline), &cancel).await;
    cancel.cancel();
    if let Some(status) = status {
        let _ = status.await;
    }
    println!("Stopping…");
    crate::ops::stop_dataflow(pipeline, "stop every process of the pipeline together").await?;
    let _ = ops.await;
    println!(
        "Stopped cleanly: {} records read, {} decisions appended.",
        stats.records_read.load(Ordering::Relaxed),
        stats.decisions_appended.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Where the run resumed from and the checkpoints it took, for status lines.
pub(crate) fn checkpoint_status(stats: &emporium_pipeline::PipelineStats) -> String {
    let resumed = match stats.resumed_from_seq.load(Ordering::Relaxed) {
        0 => "replayed the log from the start".to_owned(),
        seq => format!("resumed from a checkpoint at event {seq}"),
    };
    match stats.checkpoints.load(Ordering::Relaxed) {
        0 => format!("{resumed}, no checkpoint yet"),
        n => format!(
            "{resumed}, {n} checkpoint(s), the last wrote {:.1} MiB, held the decider {} ms",
            stats.checkpoint_bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
            stats.checkpoint_pause_ms.load(Ordering::Relaxed)
        ),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        decisions: DecisionArgs,
    }

    fn config(args: &[&str]) -> PipelineConfig {
        let args = Args::try_parse_from(std::iter::once("emporium").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"));
        args.decisions.apply(PipelineConfig::default())
    }

    #[test]
    fn the_flags_default_to_the_rule_s_defaults_and_set_it() {
        let defaults = config(&[]);
        let want = PipelineConfig::default();
        assert_eq!(defaults.allowed_lateness, want.allowed_lateness);
        assert_eq!(defaults.inventory, want.inventory);
        assert_eq!(defaults.idle_heartbeat, want.idle_heartbeat);
        assert_eq!(defaults.heartbeat_grace, want.heartbeat_grace);
        assert_eq!(
            config(&["--heartbeat-grace-ms", "1500"]).heartbeat_grace,
            std::time::Duration::from_millis(1500)
        );
        assert_eq!(
            config(&["--idle-heartbeat-ms", "0"]).idle_heartbeat,
            None,
            "0 turns heartbeats off"
        );
        let set = config(&[
            "--allowed-lateness-ms",
            "200",
            "--reservation-ttl-secs",
            "60",
        ]);
        assert_eq!(set.allowed_lateness, chrono::Duration::milliseconds(200));
        assert_eq!(set.inventory.reservation_ttl, chrono::Duration::seconds(60));
        assert!(Args::try_parse_from(["emporium", "--reservation-ttl-secs", "0"]).is_err());
    }

    #[test]
    fn recommendation_views_run_only_when_asked_for() {
        let names = |c: PipelineConfig| c.views.iter().map(|v| v.name).collect::<Vec<_>>();
        let off = names(config(&[]));
        let on = names(config(&["--recommendations"]));
        for view in emporium_dataflows::recs::VIEWS {
            assert!(!off.contains(view) && on.contains(view), "{view}");
        }
        assert!(off.contains(&"product_ratings") && on.contains(&"product_ratings"));
    }
}
