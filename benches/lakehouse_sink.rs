//! Lakehouse sink throughput (ADR 0009): events per second from the event log into the Delta
//! tables (decode, Arrow rows, Parquet with zstd, one commit per table with its log positions).
//!
//! Workload: generated shop events (100k products, 1M users) in the embedded log, 4 partitions.
//! Each run starts a sink on an empty lakehouse directory and times it from start until every
//! record of the log is committed (one commit per table per 1M buffered rows, so files are large).
//! Also reports the bytes on disk per event and the files written. Target: at least ingest's target
//! of 200k events/s.
//!
//! Run: `cargo bench --bench lakehouse_sink` (add `-- --quick` for a smoke run). Writes
//! `<target dir>/bench-results/lakehouse_sink.json` (see `support::Report`).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use emporium_lakehouse::{Sink, SinkConfig, SinkStats};
use support::*;

// The target as the README's Numbers table and slos.md state it; `SOURCE` quotes both lines.
const TARGET_EVENTS_PER_S: f64 = 200_000.0;
const SOURCE: &str = "README Numbers, lakehouse sink (lakehouse_sink): >= 200k/s; slos.md single-machine targets, Lakehouse sink: >= 200k events/s (keeps up with ingest)";

fn dir_size(path: &std::path::Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut parquet = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(meta) = entry.metadata() {
                bytes += meta.len();
                parquet += usize::from(p.extension().is_some_and(|e| e == "parquet"));
            }
        }
    }
    (bytes, parquet)
}

fn main() {
    support::alloc::keep_freed_memory_a_while();
    let events = if quick() { 50_000 } else { 2_000_000 };
    let runs = if quick() { 1 } else { 3 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = generated_log(&rt, &dir.path().join("log"), events, |_| {});
    let log_bytes = dir_size(&dir.path().join("log")).0;
    let mut report = Report::start(
        "lakehouse sink: event log -> Delta tables (Parquet, zstd), exactly once",
        &format!(
            "{events} generated shop events (100k products, 1M users), 4 partitions, embedded log"
        ),
    );
    row(&[
        "run".into(),
        "events/s".into(),
        "seconds".into(),
        "commits".into(),
        "parquet files".into(),
        "bytes/event".into(),
    ]);
    let mut rates = Vec::new();
    let mut disk_bytes_per_event = Vec::new();
    for run in 0..runs {
        let root = dir.path().join(format!("lake-{run}"));
        let stats = Arc::new(SinkStats::default());
        let config = SinkConfig {
            compact_interval: None,
            flush_interval: Duration::from_secs(3600),
            ..SinkConfig::new(&root)
        };
        let began = Instant::now();
        rt.block_on(async {
            let sink = Sink::open(log.clone(), config, stats.clone())
                .await
                .expect("open the sink");
            let stop = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(sink.run(stop.clone()));
            // A stop right away: the sink reads to the end of the log, commits and returns.
            stop.store(true, Ordering::SeqCst);
            task.await.expect("sink task").expect("sink");
        });
        let elapsed = began.elapsed();
        let rows = stats.rows_committed.load(Ordering::Relaxed);
        assert_eq!(rows as usize, events, "every event committed once");
        let (bytes, files) = dir_size(&root);
        let rate = rows as f64 / elapsed.as_secs_f64();
        rates.push(rate);
        disk_bytes_per_event.push(bytes as f64 / rows.max(1) as f64);
        report.row(serde_json::json!({
            "run": run + 1,
            "events_per_s": rate,
            "seconds": elapsed.as_secs_f64(),
            "commits": stats.commits.load(Ordering::Relaxed),
            "parquet_files": files,
            "bytes_per_event": bytes as f64 / rows.max(1) as f64,
        }));
        row(&[
            format!("{}", run + 1),
            fmt_rate(rate),
            format!("{:.2}", elapsed.as_secs_f64()),
            format!("{}", stats.commits.load(Ordering::Relaxed)),
            format!("{files}"),
            format!("{:.1}", bytes as f64 / rows.max(1) as f64),
        ]);
    }
    let m = median(rates);
    println!(
        "   median: {}; the log holds {:.1} bytes/event",
        fmt_rate(m),
        log_bytes as f64 / events as f64
    );
    report.figure(
        "lakehouse_bytes_per_event",
        median(disk_bytes_per_event),
        "B",
    );
    report.figure("log_bytes_per_event", log_bytes as f64 / events as f64, "B");
    report.target(
        "events_per_s",
        m,
        "events/s",
        Op::AtLeast,
        TARGET_EVENTS_PER_S,
        SOURCE,
    );
    report.finish();
}
