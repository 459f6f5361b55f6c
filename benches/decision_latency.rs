//! Decision latency end to end, in one process as `emporium run` wires it: the generator posts
//! NDJSON batches over HTTP to ingest (durable acks into the embedded log); the timely inventory
//! pipeline reads the log, decides at the event-time watermark and appends each decision. Latency
//! is measured from the log itself: decision's append time − its `order_placed`'s append time.
//! Target (issue 3): p99 ≤ 1 s at 5,000 orders/s.
//!
//! Run: `cargo bench --bench decision_latency` (add `-- --quick` for a smoke run).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use emporium_dataflows::pipeline::{PipelineConfig, RunningPipeline};
use emporium_ingest::api;
use emporium_ingest::generator::output::{Limits, Progress, send_http};
use emporium_ingest::generator::{Generator, GeneratorConfig};
use emporium_ingest::intake::{Intake, IntakeConfig};
use emporium_ingest::log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_ingest::log::{EVENTS_TOPIC, EventLog, read_all};
use emporium_schemas::{Event, Payload};
use support::*;

struct Measured {
    orders_per_s: f64,
    events_per_s: f64,
    p50: f64,
    p99: f64,
    decided: usize,
}

async fn measure(rate: f64, seconds: u64) -> Measured {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open"));
    let intake = Intake::start(Arc::clone(&log), IntakeConfig::default())
        .await
        .expect("intake");
    let server = api::LocalServer::start(intake).await.expect("server");
    let url = format!("{}/v1/events", server.base);
    let pipeline = RunningPipeline::start(
        Arc::clone(&log),
        None,
        tokio::runtime::Handle::current(),
        pipeline_config(),
    )
    .expect("pipeline");
    let mut generator = Generator::new(GeneratorConfig {
        products: 20_000,
        users: 1_000_000,
        start: chrono::Utc::now(),
        events_per_day: rate * 86_400.0,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let limits = Limits {
        duration: Some(Duration::from_secs(seconds)),
        rate: Some(rate),
        ..Limits::default()
    };
    let progress = Arc::new(Progress::default());
    send_http(&mut generator, &url, 500, 4, limits, Arc::clone(&progress))
        .await
        .expect("send");
    // Let the watermark pass the last orders, then stop everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::spawn_blocking(move || pipeline.stop())
        .await
        .expect("join")
        .expect("pipeline");
    server.shutdown().await.expect("server stops");

    let records = read_all(log.as_ref(), EVENTS_TOPIC).await.expect("read");
    let mut placed: HashMap<String, i64> = HashMap::new();
    let mut decided: Vec<(String, i64)> = Vec::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for r in &records {
        let Ok(e) = Event::decode(&r.value) else {
            continue;
        };
        match e.payload {
            Payload::OrderPlaced(o) => {
                placed.insert(o.order_id, r.timestamp_ms);
                first = first.min(r.timestamp_ms);
                last = last.max(r.timestamp_ms);
            }
            Payload::InventoryReserved(d) => decided.push((d.order_id, r.timestamp_ms)),
            Payload::OrderRejected(d) => decided.push((d.order_id, r.timestamp_ms)),
            _ => {}
        }
    }
    let mut latencies: Vec<f64> = decided
        .iter()
        .filter_map(|(order, at)| placed.get(order).map(|p| (at - p) as f64 / 1000.0))
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let span = ((last - first) as f64 / 1000.0).max(1e-3);
    Measured {
        orders_per_s: placed.len() as f64 / span,
        events_per_s: progress.accepted.load(Ordering::Relaxed) as f64 / seconds as f64,
        p50: pct(0.50),
        p99: pct(0.99),
        decided: latencies.len(),
    }
}

/// The default pipeline, with `EMPORIUM_BENCH_LATENESS_MS` overriding the allowed lateness.
fn pipeline_config() -> PipelineConfig {
    let mut config = PipelineConfig::default();
    if let Some(ms) = std::env::var("EMPORIUM_BENCH_LATENESS_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.allowed_lateness = chrono::Duration::milliseconds(ms);
    }
    config
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (rates, seconds): (Vec<f64>, u64) = if quick() {
        (vec![5_000.0], 3)
    } else {
        (vec![30_000.0, 60_000.0, 105_000.0, 150_000.0], 20)
    };
    header(
        "decision latency: order_placed appended → decision appended",
        &format!(
            "generator over HTTP at fixed rates for {seconds} s (20k products, 1M users), ingest → embedded log → timely pipeline (2 workers, lateness {} ms)",
            pipeline_config().allowed_lateness.num_milliseconds()
        ),
    );
    row(&[
        "offered events/s".into(),
        "accepted events/s".into(),
        "orders/s".into(),
        "p50 / p99".into(),
        "orders decided".into(),
    ]);
    for rate in rates {
        let m = measure(rate, seconds).await;
        row(&[
            format!("{rate:.0}"),
            fmt_rate(m.events_per_s),
            format!("{:.0}", m.orders_per_s),
            format!("{:.2} / {:.2} s", m.p50, m.p99),
            format!("{}", m.decided),
        ]);
    }
    println!("target: p99 ≤ 1 s at 5,000 orders/s");
}
