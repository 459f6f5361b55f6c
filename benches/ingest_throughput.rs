//! Ingest over HTTP: NDJSON batches of 500 generated events (~300 B each) posted by concurrent
//! clients to the real axum server on loopback, answered only after durable acks. Measured into
//! the embedded log and into Kafka in the same run. Target (issue 2): ≥ 200k events/s into the
//! embedded log on a 2-core machine (clients, server and log share those 2 cores).
//!
//! Run: `cargo bench --bench ingest_throughput` (add `-- --quick` for a smoke run).

mod support;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use emporium_ingest::api;
use emporium_ingest::generator::{Generator, GeneratorConfig};
use emporium_ingest::intake::{Intake, IntakeConfig};
use emporium_ingest::log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_ingest::log::kafka::{KafkaConfig, KafkaLog};
use emporium_ingest::log::{DEAD_LETTER_TOPIC, EVENTS_TOPIC, EventLog};
use rdkafka::mocking::MockCluster;
use support::*;

const BATCH: usize = 500;
const CLIENTS: usize = 8;

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

async fn run_once(log: Arc<dyn EventLog>, bodies: Arc<Vec<Bytes>>) -> f64 {
    let intake = Intake::start(Arc::clone(&log), IntakeConfig::default())
        .await
        .expect("intake");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1/events", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, api::router(intake), async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, bodies, next) = (
                client.clone(),
                url.clone(),
                Arc::clone(&bodies),
                Arc::clone(&next),
            );
            tokio::spawn(async move {
                let mut accepted = 0u64;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let r = client
                        .post(&url)
                        .header("content-type", "application/x-ndjson")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("post");
                    assert_eq!(r.status().as_u16(), 200);
                    let report: serde_json::Value = r.json().await.expect("report");
                    accepted += report["accepted"].as_u64().unwrap_or(0);
                }
                accepted
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.expect("client");
    }
    let rate = accepted as f64 / start.elapsed().as_secs_f64();
    assert_eq!(
        accepted as usize,
        bodies.len() * BATCH,
        "every event accepted"
    );
    let _ = stop.send(());
    let _ = server.await;
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events = if quick() { 50_000 } else { 1_000_000 };
    let runs = if quick() { 1 } else { 3 };
    let (bodies, bytes) = bodies(1, events);
    let bodies = Arc::new(bodies);
    header(
        "ingest over HTTP, durable acks",
        &format!(
            "{events} generated events ({:.0} B avg), NDJSON batches of {BATCH}, {CLIENTS} concurrent clients on loopback; median of {runs} runs",
            bytes as f64 / events as f64
        ),
    );
    row(&["log".into(), "events/s".into(), "runs".into()]);

    let mut embedded_rates = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open");
        embedded_rates.push(run_once(Arc::new(log), Arc::clone(&bodies)).await);
    }
    let runs_text = |v: &[f64]| v.iter().map(|r| fmt_rate(*r)).collect::<Vec<_>>().join(" ");
    row(&[
        "embedded".into(),
        fmt_rate(median(embedded_rates.clone())),
        runs_text(&embedded_rates),
    ]);

    let mut kafka_rates = Vec::new();
    for _ in 0..runs {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(EVENTS_TOPIC, 4, 1).expect("topic");
        cluster
            .create_topic(DEAD_LETTER_TOPIC, 1, 1)
            .expect("topic");
        let log =
            KafkaLog::connect(KafkaConfig::new(cluster.bootstrap_servers())).expect("connect");
        kafka_rates.push(run_once(Arc::new(log), Arc::clone(&bodies)).await);
    }
    row(&[
        "kafka (mock)".into(),
        fmt_rate(median(kafka_rates.clone())),
        runs_text(&kafka_rates),
    ]);

    let e = median(embedded_rates);
    println!(
        "embedded: {} (target ≥ 200k/s: ratio {:.2}×); embedded / kafka-mock: {:.2}×",
        fmt_rate(e),
        e / 200_000.0,
        e / median(kafka_rates)
    );
}
