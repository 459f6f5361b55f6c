//! Inventory dataflow recovery: how long a restart takes to catch up, from a checkpoint and by
//! replaying the log from the start (ADR 0008), against a first run over the same log.
//!
//! Workload: generated shop events (100k products, 1M users) in the embedded log, 4 partitions.
//! For 1 and 2 workers: a first run reads them all, decides, appends the decisions, writes every
//! document to a new embedded store and checkpoints every second and on its clean stop
//! (incremental checkpoints, ADR 0008: the head names a chain of a full piece and the deltas
//! after it); a restart resumes from the last one (nothing left to read: the cost is reading
//! the chain, loading the state and the documents dataflow); a restart without checkpoints
//! replays it all (decisions already logged, documents stored). The chain the restart reads is
//! reported (pieces, MiB), and the first run's checkpoints: how many, and what the last one
//! wrote and how long taking it held worker 0.
//!
//! No target: slos.md ("recovery time for 1M orders": "reported, no target") and the README
//! report it.
//!
//! Run: `cargo bench --bench decision_replay` (add `-- --quick` for a smoke run;
//! `EMPORIUM_BENCH_EVENTS=10000000` for another log length, `EMPORIUM_BENCH_WORKERS=2` for one
//! worker count). Writes
//! `<target dir>/bench-results/decision_replay.json` (see `support::Report`).

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use emporium_log::EVENTS_TOPIC;
use emporium_pipeline::{CheckpointConfig, PipelineConfig, RunningPipeline};
use emporium_schemas::EventKind;
use emporium_serving::store::Store;
use emporium_serving::store::embedded::EmbeddedStore;
use support::*;

fn main() {
    support::alloc::keep_freed_memory_a_while();
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let events = if quick() {
        50_000
    } else {
        env("EMPORIUM_BENCH_EVENTS").unwrap_or(2_000_000)
    };
    let worker_counts: Vec<usize> = match env("EMPORIUM_BENCH_WORKERS") {
        Some(w) => vec![w.max(1)],
        None => vec![1, 2],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut report = Report::start(
        "inventory dataflow: first run, restart from a checkpoint, restart replaying the log",
        &format!("{events} generated events, 100k products, 1M users, 4 partitions, embedded log"),
    );
    row(&[
        "workers".into(),
        "run".into(),
        "events/s".into(),
        "time".into(),
        "documents sent".into(),
        "for 1M orders".into(),
        "checkpoint".into(),
        "chain read".into(),
    ]);
    for workers in worker_counts {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut orders = 0;
        let log = generated_log(&rt, dir.path(), events, |e| {
            orders += usize::from(e.kind() == EventKind::OrderPlaced);
        });
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store")).expect("store"));
        let checkpoints = CheckpointConfig {
            dir: dir.path().join("checkpoints"),
            // Every second: the restart reads a chain of deltas, as after a kill -9.
            interval: Duration::from_secs(1),
        };
        for (run, key, checkpoint) in [
            ("first run", "first_run", Some(checkpoints.clone())),
            (
                "restart from checkpoint",
                "from_checkpoint",
                Some(checkpoints.clone()),
            ),
            ("restart, replay", "replay", None),
        ] {
            let ends = rt.block_on(log.end_offsets(EVENTS_TOPIC)).expect("ends");
            let total: u64 = ends.iter().sum();
            let mut config = PipelineConfig {
                workers,
                checkpoint,
                ..PipelineConfig::default()
            };
            // The views `emporium run` runs by default: the recommendation views only with
            // `--recommendations` (their cost is measured by `end_to_end` and `recs_maintenance`).
            config
                .views
                .retain(|v| !emporium_dataflows::recs::VIEWS.contains(&v.name));
            let start = Instant::now();
            let pipeline = RunningPipeline::start(
                Arc::clone(&log),
                Some(Arc::clone(&store)),
                rt.handle().clone(),
                config,
            )
            .expect("start");
            let stats = Arc::clone(&pipeline.stats);
            // Caught up: every record present at the start read, from wherever it resumed.
            let caught_up = || {
                let read = stats.read_positions.lock().expect("positions");
                read.len() == ends.len() && read.iter().zip(&ends).all(|(r, e)| r >= e)
            };
            while !caught_up() {
                std::thread::sleep(Duration::from_millis(5));
            }
            // ... and the store holds the documents of all of it.
            while rt
                .block_on(store.positions())
                .expect("positions")
                .as_deref()
                < Some(&ends[..])
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let elapsed = start.elapsed();
            pipeline.stop().expect("pipeline");
            let read = stats.records_read.load(Ordering::Relaxed);
            let seconds = elapsed.as_secs_f64();
            let rate = read as f64 / seconds.max(1e-9);
            let per_million_orders = seconds * 1_000_000.0 / orders.max(1) as f64;
            let checkpoint_mib =
                stats.checkpoint_bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64;
            let pause_ms = stats.checkpoint_pause_ms.load(Ordering::Relaxed);
            let checkpoints_taken = stats.checkpoints.load(Ordering::Relaxed);
            let checkpoint = match checkpoints_taken {
                0 => "-".to_owned(),
                n => format!("{n}, the last {checkpoint_mib:.1} MiB, {pause_ms} ms pause"),
            };
            // The chain a restart from this run's last checkpoint reads (the replay takes none).
            let (pieces, chain_mib) = match key {
                "replay" => (0, 0.0),
                _ => {
                    let head = emporium_pipeline::checkpoint::read(&checkpoints.dir)
                        .expect("read the checkpoint")
                        .expect("a checkpoint");
                    let bytes: u64 = head.pieces.iter().map(|p| p.len).sum();
                    (head.pieces.len(), bytes as f64 / (1 << 20) as f64)
                }
            };
            let chain = match pieces {
                0 => "-".to_owned(),
                n => format!("{n} pieces, {chain_mib:.1} MiB"),
            };
            let prefix = format!("workers_{workers}.{key}");
            report.figure(format!("{prefix}_s"), seconds, "s");
            report.figure(format!("{prefix}_events_per_s"), rate, "events/s");
            report.row(serde_json::json!({
                "workers": workers,
                "run": key,
                "seconds": seconds,
                "records_read": read,
                "records_in_log": total,
                "events_per_s": rate,
                "documents_written": stats.documents_written.load(Ordering::Relaxed),
                "orders": orders,
                "seconds_per_million_orders": per_million_orders,
                "checkpoints_taken": checkpoints_taken,
                "checkpoint_mib": checkpoint_mib,
                "checkpoint_pause_ms": pause_ms,
                "chain_pieces": pieces,
                "chain_mib": chain_mib,
            }));
            if key == "first_run" {
                report.figure(
                    format!("workers_{workers}.checkpoint_mib"),
                    checkpoint_mib,
                    "MiB",
                );
                report.figure(
                    format!("workers_{workers}.checkpoint_pause_ms"),
                    pause_ms as f64,
                    "ms",
                );
            }
            row(&[
                format!("{workers}"),
                run.into(),
                fmt_rate(rate),
                format!("{seconds:.2} s ({read} of {total} records)"),
                format!(
                    "{} ({orders} orders)",
                    stats.documents_written.load(Ordering::Relaxed)
                ),
                format!("{per_million_orders:.0} s"),
                checkpoint,
                chain,
            ]);
        }
    }
    report.finish();
}
