//! Ingest over HTTP: NDJSON batches of 500 generated events (~300 B each) posted by concurrent
//! clients to the real axum server on loopback, answered only after durable acks. Measured into
//! the embedded log and into Kafka in the same run. Target (issue 2): ≥ 200k events/s into the
//! embedded log on a 2-core machine (clients, server and log share those 2 cores).
//!
//! Run: `cargo bench --bench ingest_throughput` (add `-- --quick` for a smoke run). Writes
//! `<target dir>/bench-results/ingest_throughput.json` (see `support::Report`).

mod support;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use emporium_generator::{Generator, GeneratorConfig};
use emporium_ingest::api;
use emporium_ingest::intake::{Intake, IntakeConfig};
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::kafka::{KafkaConfig, KafkaLog};
use emporium_log::{DEAD_LETTER_TOPIC, EVENTS_TOPIC, EventLog};
use rdkafka::mocking::MockCluster;
use support::*;

const BATCH: usize = 500;
const CLIENTS: usize = 8;

// The targets as the README's Numbers table and slos.md state them; each `SOURCE_*` quotes its
// lines. The request latency bound is slos.md's read-path SLO for the ingest acknowledgement
// (server-side, in a distributed deployment): here it is timed by the client on loopback, which
// includes more than the server's part, so meeting it here is the stricter test.
const TARGET_EVENTS_PER_S: f64 = 200_000.0;
const SOURCE_RATE: &str = "README Numbers, ingest over HTTP -> embedded log (ingest_throughput): >= 200k/s; slos.md single-machine targets, Ingest into the embedded log, durable acks: >= 200k events/s";
const TARGET_REQUEST_P99_MS: f64 = 50.0;
const SOURCE_LATENCY: &str =
    "slos.md read paths, Ingest acknowledgement, POST /v1/events (batch of 500): latency p99 50 ms";

/// Pre-generated request bodies (generation is not part of what is measured).
fn bodies(seed: u64, events: usize) -> (Vec<Bytes>, usize) {
    let mut generator = Generator::new(GeneratorConfig {
        seed,
        products: 10_000,
        users: 100_000,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let mut bytes = 0;
    let bodies = (0..events / BATCH)
        .map(|_| {
            let mut body = Vec::with_capacity(BATCH * 320);
            for _ in 0..BATCH {
                generator.next_event().write_json(&mut body);
                body.push(b'\n');
            }
            bytes += body.len();
            Bytes::from(body)
        })
        .collect();
    (bodies, bytes)
}

async fn run_once(log: Arc<dyn EventLog>, bodies: Arc<Vec<Bytes>>) -> (f64, Vec<f64>) {
    let intake = Intake::start(Arc::clone(&log), IntakeConfig::default())
        .await
        .expect("intake");
    let (auth, token) = bench_auth();
    let server = api::LocalServer::start(intake, auth).await.expect("server");
    let url = format!("{}/v1/events", server.base);
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, bodies, next, token) = (
                client.clone(),
                url.clone(),
                Arc::clone(&bodies),
                Arc::clone(&next),
                token.clone(),
            );
            tokio::spawn(async move {
                let mut accepted = 0u64;
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let sent = Instant::now();
                    let r = client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/x-ndjson")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("post");
                    assert_eq!(r.status().as_u16(), 200);
                    let report: serde_json::Value = r.json().await.expect("report");
                    accepted += report["accepted"].as_u64().unwrap_or(0);
                    latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                }
                (accepted, latencies)
            })
        })
        .collect();
    let mut accepted = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (n, l) = t.await.expect("client");
        accepted += n;
        latencies.extend(l);
    }
    let rate = accepted as f64 / start.elapsed().as_secs_f64();
    assert_eq!(
        accepted as usize,
        bodies.len() * BATCH,
        "every event accepted"
    );
    server.shutdown().await.expect("server stops");
    (rate, latencies)
}

/// The p-th percentile (0–100) of request latencies in ms.
fn percentile(latencies: &mut [f64], p: f64) -> f64 {
    latencies.sort_by(|a, b| a.total_cmp(b));
    let i = ((latencies.len() as f64 - 1.0) * p / 100.0).round() as usize;
    latencies.get(i).copied().unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    support::alloc::keep_freed_memory_a_while();
    let events = if quick() { 50_000 } else { 1_000_000 };
    let runs = if quick() { 1 } else { 3 };
    let (bodies, bytes) = bodies(1, events);
    let bodies = Arc::new(bodies);
    let mut report = Report::start(
        "ingest over HTTP, durable acks",
        &format!(
            "{events} generated events ({:.0} B avg), NDJSON batches of {BATCH}, {CLIENTS} concurrent clients on loopback; median of {runs} runs",
            bytes as f64 / events as f64
        ),
    );
    row(&[
        "log".into(),
        "events/s".into(),
        "p50 / p99 request".into(),
        "runs".into(),
    ]);
    let embedded = measure("embedded", runs, &bodies, &mut report, |_| {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open");
        (
            Arc::new(log) as Arc<dyn EventLog>,
            Box::new(dir) as Box<dyn std::any::Any>,
        )
    })
    .await;
    let kafka = measure("kafka (mock)", runs, &bodies, &mut report, |_| {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(EVENTS_TOPIC, 4, 1).expect("topic");
        cluster
            .create_topic(DEAD_LETTER_TOPIC, 1, 1)
            .expect("topic");
        let log =
            KafkaLog::connect(KafkaConfig::new(cluster.bootstrap_servers())).expect("connect");
        (
            Arc::new(log) as Arc<dyn EventLog>,
            Box::new(cluster) as Box<dyn std::any::Any>,
        )
    })
    .await;
    println!(
        "embedded: {}; embedded / kafka-mock: {:.2}×",
        fmt_rate(embedded.rate),
        embedded.rate / kafka.rate
    );
    report.target(
        "embedded.events_per_s",
        embedded.rate,
        "events/s",
        Op::AtLeast,
        TARGET_EVENTS_PER_S,
        SOURCE_RATE,
    );
    report.figure("embedded.request_p50_ms", embedded.p50_ms, "ms");
    report.target(
        "embedded.request_p99_ms",
        embedded.p99_ms,
        "ms",
        Op::AtMost,
        TARGET_REQUEST_P99_MS,
        SOURCE_LATENCY,
    );
    report.figure("kafka_mock.events_per_s", kafka.rate, "events/s");
    report.figure("kafka_mock.request_p50_ms", kafka.p50_ms, "ms");
    report.figure("kafka_mock.request_p99_ms", kafka.p99_ms, "ms");
    report.figure("embedded_vs_kafka_mock", embedded.rate / kafka.rate, "x");
    report.finish();
}

/// One log's median rate and its request latencies over all runs.
struct Measured {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs `runs` times on a fresh log from `make` (which also returns what must outlive the run)
/// and prints one row.
async fn measure(
    name: &str,
    runs: usize,
    bodies: &Arc<Vec<Bytes>>,
    report: &mut Report,
    make: impl Fn(usize) -> (Arc<dyn EventLog>, Box<dyn std::any::Any>),
) -> Measured {
    let mut rates = Vec::new();
    let mut latencies = Vec::new();
    for run in 0..runs {
        let (log, keep) = make(run);
        let (rate, l) = run_once(log, Arc::clone(bodies)).await;
        drop(keep);
        report.row(serde_json::json!({ "log": name, "run": run, "events_per_s": rate }));
        rates.push(rate);
        latencies.extend(l);
    }
    let m = Measured {
        rate: median(rates.clone()),
        p50_ms: percentile(&mut latencies, 50.0),
        p99_ms: percentile(&mut latencies, 99.0),
    };
    row(&[
        name.into(),
        fmt_rate(m.rate),
        format!("{:.1} / {:.1} ms", m.p50_ms, m.p99_ms),
        rates
            .iter()
            .map(|r| fmt_rate(*r))
            .collect::<Vec<_>>()
            .join(" "),
    ]);
    m
}
