//! Inventory dataflow replay: how fast the timely pipeline reads a log from the start, decides
//! every order in it and writes the store — the recovery time after a restart (the pipeline
//! replays instead of checkpointing; issue 3 asks to show that a replay is fast enough, for 1M
//! orders).
//!
//! Workload: generated shop events (100k products, 1M users) in the embedded log, 4 partitions.
//! For 1 and 2 workers: a first run reads them all, decides, appends the decisions and writes every
//! document to a new embedded store; then a restart on the same log and store replays it all (its
//! decisions are already logged and its documents already stored: the recovery case).
//!
//! Run: `cargo bench --bench decision_replay` (add `-- --quick` for a smoke run).

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use emporium_dataflows::pipeline::{PipelineConfig, RunningPipeline};
use emporium_ingest::generator::{Generator, GeneratorConfig};
use emporium_ingest::log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_ingest::log::{EVENTS_TOPIC, EventLog, Record};
use emporium_schemas::EventKind;
use emporium_serving::store::Store;
use emporium_serving::store::embedded::EmbeddedStore;
use support::*;

fn fill(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    events: usize,
) -> (Arc<dyn EventLog>, usize) {
    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir)).expect("open");
    let mut generator = Generator::new(GeneratorConfig {
        products: 100_000,
        users: 1_000_000,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let mut orders = 0;
    rt.block_on(async {
        log.ensure_topic(EVENTS_TOPIC, 4).await.expect("topic");
        for _ in 0..events / 5_000 {
            let batch: Vec<Record> = (0..5_000)
                .map(|_| {
                    let e = generator.next_event();
                    orders += usize::from(e.kind() == EventKind::OrderPlaced);
                    Record::new(e.partition_key().as_bytes().to_vec(), e.to_json())
                })
                .collect();
            log.append(EVENTS_TOPIC, batch).await.expect("append");
        }
    });
    (Arc::new(log), orders)
}

fn main() {
    let events = if quick() { 50_000 } else { 2_000_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    header(
        "inventory dataflow: replay of the log from the start",
        &format!("{events} generated events, 100k products, 1M users, 4 partitions, embedded log"),
    );
    row(&[
        "workers".into(),
        "run".into(),
        "events/s".into(),
        "time".into(),
        "documents sent".into(),
        "for 1M orders".into(),
    ]);
    for workers in [1usize, 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, orders) = fill(&rt, dir.path(), events);
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store")).expect("store"));
        for run in ["first run", "restart"] {
            let total: u64 = rt
                .block_on(log.end_offsets(EVENTS_TOPIC))
                .expect("ends")
                .iter()
                .sum();
            let config = PipelineConfig {
                workers,
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
            while stats.records_read.load(Ordering::Relaxed) < total {
                std::thread::sleep(Duration::from_millis(5));
            }
            let elapsed = start.elapsed();
            pipeline.stop().expect("pipeline");
            row(&[
                format!("{workers}"),
                run.into(),
                fmt_rate(total as f64 / elapsed.as_secs_f64()),
                format!("{:.2} s", elapsed.as_secs_f64()),
                format!(
                    "{} ({orders} orders)",
                    stats.documents_written.load(Ordering::Relaxed)
                ),
                format!(
                    "{:.0} s",
                    elapsed.as_secs_f64() * 1_000_000.0 / orders.max(1) as f64
                ),
            ]);
        }
    }
}
