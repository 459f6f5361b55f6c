//! Inventory dataflow recovery: how long a restart takes to catch up, from a checkpoint and by
//! replaying the log from the start (ADR 0008), against a first run over the same log.
//!
//! Workload: generated shop events (100k products, 1M users) in the embedded log, 4 partitions.
//! For 1 and 2 workers: a first run reads them all, decides, appends the decisions, writes every
//! document to a new embedded store and checkpoints on its clean stop; a restart resumes from that
//! checkpoint (nothing left to read: the cost is loading the state and the documents dataflow);
//! a restart without checkpoints replays it all (decisions already logged, documents stored).
//!
//! Run: `cargo bench --bench decision_replay` (add `-- --quick` for a smoke run).

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
    let events = if quick() { 50_000 } else { 2_000_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    header(
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
    ]);
    for workers in [1usize, 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut orders = 0;
        let log = generated_log(&rt, dir.path(), events, |e| {
            orders += usize::from(e.kind() == EventKind::OrderPlaced);
        });
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store")).expect("store"));
        let checkpoints = CheckpointConfig {
            dir: dir.path().join("checkpoints"),
            // Only the one a clean stop takes.
            interval: Duration::from_secs(3600),
        };
        for (run, checkpoint) in [
            ("first run", Some(checkpoints.clone())),
            ("restart from checkpoint", Some(checkpoints.clone())),
            ("restart, replay", None),
        ] {
            let ends = rt.block_on(log.end_offsets(EVENTS_TOPIC)).expect("ends");
            let total: u64 = ends.iter().sum();
            let config = PipelineConfig {
                workers,
                checkpoint,
                ..PipelineConfig::default()
            };
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
            let checkpoint = match stats.checkpoints.load(Ordering::Relaxed) {
                0 => "-".to_owned(),
                _ => format!(
                    "{:.1} MiB, {} ms pause",
                    stats.checkpoint_bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
                    stats.checkpoint_pause_ms.load(Ordering::Relaxed)
                ),
            };
            row(&[
                format!("{workers}"),
                run.into(),
                fmt_rate(read as f64 / elapsed.as_secs_f64().max(1e-9)),
                format!("{:.2} s ({read} of {total} records)", elapsed.as_secs_f64()),
                format!(
                    "{} ({orders} orders)",
                    stats.documents_written.load(Ordering::Relaxed)
                ),
                format!(
                    "{:.0} s",
                    elapsed.as_secs_f64() * 1_000_000.0 / orders.max(1) as f64
                ),
                checkpoint,
            ]);
        }
    }
}
