//! Event-log append and read throughput: the embedded log beside Kafka, in one run, as a ratio.
//!
//! Workload: records of ~300 B keyed by 10k distinct keys, appended in batches of 500 by 4
//! concurrent appenders (the embedded log fdatasyncs every group commit; Kafka acks=all with an
//! idempotent producer), then read back whole through a consumer group. Kafka here is librdkafka's mock cluster
//! (in-process, memory only) unless `EMPORIUM_BENCH_KAFKA_BROKERS` names a broker process (e.g.
//! tansu), which is then measured too.
//!
//! No target: slos.md ("Embedded log append and read vs Kafka": "ratio reported, no target") and
//! the README report the ratios.
//!
//! Run: `cargo bench --bench log_throughput` (add `-- --quick` for a smoke run). Writes
//! `<target dir>/bench-results/log_throughput.json` (see `support::Report`).

mod support;

use std::sync::Arc;
use std::time::Instant;

use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::kafka::{KafkaConfig, KafkaLog};
use emporium_log::{EventLog, Record};
use rdkafka::mocking::MockCluster;
use support::*;

const BATCH: usize = 500;
const APPENDERS: usize = 4;
const PARTITIONS: u32 = 4;

fn records(n: usize) -> Vec<Vec<Record>> {
    let value = "x".repeat(280);
    (0..n)
        .map(|i| {
            Record::new(
                format!("o-{:06}", i % 10_000),
                format!("{{\"n\":{i},\"v\":\"{value}\"}}"),
            )
        })
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|c| c.to_vec())
        .collect()
}

async fn append_all(log: Arc<dyn EventLog>, topic: &str, batches: Arc<Vec<Vec<Record>>>) -> f64 {
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|_| {
            let (log, batches, next, topic) = (
                Arc::clone(&log),
                Arc::clone(&batches),
                Arc::clone(&next),
                topic.to_owned(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(batch) = batches.get(i) else { break };
                    log.append(&topic, batch.clone()).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("appender");
    }
    let n: usize = batches.iter().map(Vec::len).sum();
    n as f64 / start.elapsed().as_secs_f64()
}

/// Reads the topic back through a consumer group, timed from the end of the first poll that
/// returned records to the last record (a Kafka group's join and rebalance is not read speed).
async fn read_all_rate(log: &dyn EventLog, topic: &str, n: usize) -> f64 {
    let mut consumer = log
        .consumer(&format!("{topic}-reader"), topic)
        .await
        .expect("consumer");
    let mut got = 0;
    let mut timed = None;
    while got < n {
        let batch = consumer
            .poll(10_000, std::time::Duration::from_secs(30))
            .await
            .expect("poll");
        assert!(!batch.is_empty(), "reader stalled at {got} of {n}");
        got += batch.len();
        timed.get_or_insert_with(|| (Instant::now(), got));
    }
    let (start, before) = timed.expect("read at least once");
    (got - before) as f64 / start.elapsed().as_secs_f64().max(1e-9)
}

/// One backend's median append and read rates.
struct Measured {
    name: &'static str,
    /// The backend in figure names.
    key: &'static str,
    append: f64,
    read: f64,
}

/// Appends and reads `n` records `runs` times (a topic each), prints one row and keeps each
/// run in `report`.
async fn measure(
    (name, key): (&'static str, &'static str),
    log: Arc<dyn EventLog>,
    n: usize,
    runs: usize,
    report: &mut Report,
) -> Measured {
    let batches = Arc::new(records(n));
    let mut appends = Vec::new();
    let mut reads = Vec::new();
    for run in 0..runs {
        let topic = format!("bench-{run}-{}", std::process::id());
        log.ensure_topic(&topic, PARTITIONS).await.expect("topic");
        let append = append_all(Arc::clone(&log), &topic, Arc::clone(&batches)).await;
        let read = read_all_rate(log.as_ref(), &topic, n).await;
        report.row(serde_json::json!({
            "backend": key,
            "run": run,
            "append_records_per_s": append,
            "read_records_per_s": read,
        }));
        appends.push(append);
        reads.push(read);
    }
    let (append, read) = (median(appends), median(reads));
    row(&[name.into(), fmt_rate(append), fmt_rate(read)]);
    Measured {
        name,
        key,
        append,
        read,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    support::alloc::keep_freed_memory_a_while();
    let n = if quick() { 50_000 } else { 500_000 };
    let runs = if quick() { 1 } else { 3 };
    let mut report = Report::start(
        "event log: append and read throughput",
        &format!(
            "{n} records × ~300 B, batches of {BATCH}, {APPENDERS} appenders, {PARTITIONS} partitions; median of {runs} runs"
        ),
    );
    row(&["backend".into(), "append".into(), "read".into()]);
    let mut results = Vec::new();

    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open");
    let measured = measure(
        ("embedded (fsync)", "embedded"),
        Arc::new(embedded),
        n,
        runs,
        &mut report,
    )
    .await;
    results.push(measured);

    let cluster = MockCluster::new(1).expect("mock cluster");
    for run in 0..runs {
        cluster
            .create_topic(
                &format!("bench-{run}-{}", std::process::id()),
                PARTITIONS as i32,
                1,
            )
            .expect("topic");
    }
    let kafka = KafkaLog::connect(KafkaConfig::new(cluster.bootstrap_servers())).expect("connect");
    let measured = measure(
        ("kafka (mock)", "kafka_mock"),
        Arc::new(kafka),
        n,
        runs,
        &mut report,
    )
    .await;
    results.push(measured);

    if let Ok(brokers) = std::env::var("EMPORIUM_BENCH_KAFKA_BROKERS") {
        let kafka = KafkaLog::connect(KafkaConfig::new(brokers)).expect("connect");
        let measured = measure(
            ("kafka (broker)", "kafka_broker"),
            Arc::new(kafka),
            n,
            runs,
            &mut report,
        )
        .await;
        results.push(measured);
    }

    for m in &results {
        report.figure(
            format!("{}.append_records_per_s", m.key),
            m.append,
            "records/s",
        );
        report.figure(format!("{}.read_records_per_s", m.key), m.read, "records/s");
    }
    let embedded = &results[0];
    for m in &results[1..] {
        println!(
            "embedded / {}: append {:.2}×, read {:.2}×",
            m.name,
            embedded.append / m.append,
            embedded.read / m.read
        );
        report.figure(
            format!("embedded_vs_{}.append", m.key),
            embedded.append / m.append,
            "x",
        );
        report.figure(
            format!("embedded_vs_{}.read", m.key),
            embedded.read / m.read,
            "x",
        );
    }
    report.finish();
}
