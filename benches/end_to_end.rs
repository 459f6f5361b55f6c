//! The platform end to end, in one process as `emporium run` wires it: the generator posts NDJSON
//! batches over HTTP to ingest (durable acks into the embedded log); the timely pipeline reads the
//! log, decides at the event-time watermark, appends its decisions and writes the documents to the
//! embedded store. Measured at fixed offered rates:
//! - sustained events/s accepted and kept up with;
//! - freshness: event appended → its documents durable in the store (p50/p99, 5 ms buckets);
//! - decision latency, from the log itself: decision's append time − its `order_placed`'s.
//!
//! Before the traffic, the shop's catalog and initial stock (1M products: ~5M events) are
//! appended straight to the log and the pipeline catches up on them, writing every product and
//! sku document: that catch-up is reported too (a cold start's throughput into the store).
//! Targets (issue 3): ≥ 100k events/s with p99 freshness ≤ 1 s; decision p99 ≤ 1 s at 5,000
//! orders/s. `EMPORIUM_BENCH_LATENESS_MS` overrides the allowed lateness (default 500 ms).
//!
//! Each rate's traffic is generated (and serialized to NDJSON) before its timed window, as a load
//! generator on another machine would have it ready: the shop simulation costs about a fifth of
//! the 2 cores at 100k events/s, and the platform under test is ingest → log → pipeline → store.
//! The HTTP client that posts the batches still runs here. Event times then trail the send by
//! the time the generation took (a few seconds, like clients that buffer); freshness and decision
//! latency are measured from append times, which that does not move. `EMPORIUM_BENCH_LIVE_GENERATOR=1`
//! generates during the window instead (the figures before this change).
//!
//! `EMPORIUM_BENCH_SEARCH=1` runs the same with the search index fed (issue 24, ADR 0013): it
//! adds search freshness, event appended → searchable, twice: *live* (its batch applied by the
//! sink: sell-outs, restocks, price, rating and popularity changes, the target, judged at
//! the least loaded rate of at least 100k events/s) and *text* (its batch committed to the index:
//! new and changed titles and descriptions); and compares the rate kept up with the latest run
//! without search (`end_to_end.json`: at most 10% lower); its report is `end_to_end_search`.
//!
//! `EMPORIUM_BENCH_RECS=1` adds the recommendation views (issue 25, ADR 0015; or a comma-separated
//! list of some of them, e.g. `also_bought,user_purchases`, to see what each costs), off by default
//! as in `emporium run` (`--recommendations`): their documents are in the round's store write,
//! so freshness covers a purchase's *also bought*; the run (report `end_to_end_recs`) compares
//! its rate kept up with the latest run without them (`end_to_end.json`: at most 10% lower).
//!
//! Run: `cargo bench --bench end_to_end` (add `-- --quick` for a smoke run). Writes
//! `<target dir>/bench-results/end_to_end.json` (see `support::Report`).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use emporium_generator::output::{Endpoint, Limits, Progress, send_http, send_http_lines};
use emporium_generator::{Generator, GeneratorConfig};
use emporium_ingest::api;
use emporium_ingest::intake::{Intake, IntakeConfig};
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{EVENTS_TOPIC, EventLog, Record, read_all};
use emporium_pipeline::search::{DEFAULT_REFRESH, SearchSink};
use emporium_pipeline::{PipelineConfig, PipelineStats, RunningPipeline};
use emporium_schemas::{Event, EventKind, Payload};
use emporium_serving::store::Store;
use emporium_serving::store::embedded::EmbeddedStore;
use support::*;

// The targets as the README's Numbers table and slos.md state them; each `SOURCE_*` quotes its
// lines.
const TARGET_EVENTS_PER_S: f64 = 100_000.0;
const TARGET_FRESHNESS_P99: Duration = Duration::from_secs(1);
const SOURCE_RATE: &str = "README Numbers, end to end (end_to_end): >= 100k events/s at p99 freshness <= 1 s; slos.md single-machine targets, End-to-end ingest -> log -> dataflows -> store: >= 100k events/s, p99 freshness <= 1 s";
const TARGET_DECISION_P99_S: f64 = 1.0;
const DECISION_AT_ORDERS_PER_S: f64 = 5_000.0;
const SOURCE_DECISION: &str = "README Numbers, end to end (end_to_end): decision p99 <= 1 s at 5,000 orders/s; slos.md single-machine targets, Decision latency: p99 <= 1 s at 5,000 orders/s";
const TARGET_SEARCH_FRESHNESS_P99: Duration = Duration::from_secs(1);
const SOURCE_SEARCH_FRESHNESS: &str = "README Numbers, search freshness (end_to_end with EMPORIUM_BENCH_SEARCH=1): a price change or a sell-out searchable p99 <= 1 s under >= 100k events/s; slos.md, Search freshness";
const TARGET_SEARCH_KEPT_UP_RATIO: f64 = 0.9;
const TARGET_RECS_KEPT_UP_RATIO: f64 = 0.9;
const SOURCE_RECS_KEPT_UP: &str = "README Numbers, recommendations under load (end_to_end, then with EMPORIUM_BENCH_RECS=1): the end-to-end rate kept up within 10% with the recommendation dataflows on; issue 25";
const SOURCE_SEARCH_KEPT_UP: &str = "README Numbers, search freshness: the end-to-end rate kept up drops at most 10% with search on; slos.md, Search freshness";

struct Measured {
    offered: f64,
    search_p50: Duration,
    search_p99: Duration,
    text_p99: Duration,
    events_per_s: f64,
    orders_per_s: f64,
    fresh_p50: Duration,
    fresh_p99: Duration,
    decision_p50: f64,
    decision_p99: f64,
    kept_up: bool,
}

/// The default pipeline, with `EMPORIUM_BENCH_LATENESS_MS` overriding the allowed lateness, and
/// the recommendation views only with `EMPORIUM_BENCH_RECS=1` (as `emporium run`).
fn pipeline_config() -> PipelineConfig {
    let mut config = PipelineConfig::default();
    let asked = recs_asked().unwrap_or_default();
    config.views.retain(|v| {
        !emporium_dataflows::recs::VIEWS.contains(&v.name) || asked.iter().any(|a| a == v.name)
    });
    if let Some(ms) = std::env::var("EMPORIUM_BENCH_LATENESS_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.allowed_lateness = chrono::Duration::milliseconds(ms);
    }
    config
}

async fn wait_caught_up(log: &dyn EventLog, stats: &PipelineStats, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let total: u64 = log
            .end_offsets(EVENTS_TOPIC)
            .await
            .expect("ends")
            .iter()
            .sum();
        if stats.records_read.load(Ordering::Relaxed) >= total {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    support::alloc::keep_freed_memory_a_while();
    let (mut products, mut rates, seconds): (usize, Vec<f64>, u64) = if quick() {
        (20_000, vec![20_000.0], 3)
    } else {
        (
            1_000_000,
            vec![30_000.0, 60_000.0, 100_000.0, 110_000.0, 120_000.0],
            20,
        )
    };
    // EMPORIUM_BENCH_PRODUCTS and EMPORIUM_BENCH_RATES (comma-separated) override the workload.
    if let Some(n) = std::env::var("EMPORIUM_BENCH_PRODUCTS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        products = n;
    }
    if let Ok(list) = std::env::var("EMPORIUM_BENCH_RATES") {
        rates = list
            .split(',')
            .filter_map(|r| r.trim().parse().ok())
            .collect();
    }
    let live = std::env::var_os("EMPORIUM_BENCH_LIVE_GENERATOR").is_some();
    let mut report = Report::start(
        "end to end: ingest → log → timely pipeline → store",
        &format!(
            "{products} products, 1M users; generator over HTTP at fixed rates for {seconds} s each \
             ({}); embedded log and store; 2 workers; lateness {} ms; views: {}",
            if live {
                "generating while it sends"
            } else {
                "traffic generated before each window"
            },
            pipeline_config().allowed_lateness.num_milliseconds(),
            pipeline_config()
                .views
                .iter()
                .map(|v| v.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path().join("log"))).expect("open"));
    log.ensure_topic(EVENTS_TOPIC, IntakeConfig::default().event_partitions)
        .await
        .expect("topic");
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store")).expect("store"));
    // Catalog and stock "happened" over the last two minutes (about 5.4 events per product):
    // event times stay behind the clock, so the traffic that follows is on time, not late
    // (ADR 0005).
    let mut generator = Generator::new(GeneratorConfig {
        products,
        users: 1_000_000,
        start: chrono::Utc::now() - chrono::Duration::seconds(120),
        events_per_day: products as f64 * 5.4 / 100.0 * 86_400.0,
        // EMPORIUM_BENCH_TASTE_SHARE sets the shoppers' taste (0: the mix before taste existed).
        taste_share: std::env::var("EMPORIUM_BENCH_TASTE_SHARE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(GeneratorConfig::default().taste_share),
        ..GeneratorConfig::default()
    })
    .expect("generator");

    // The catalog and initial stock, straight into the log.
    let mut bootstrap = 0u64;
    loop {
        let batch: Vec<Event> = (0..5_000).map(|_| generator.next_event()).collect();
        let done = batch.iter().any(|e| {
            !matches!(
                e.kind(),
                EventKind::ProductUpserted | EventKind::StockReceived
            )
        });
        bootstrap += batch.len() as u64;
        let records = batch
            .iter()
            .map(|e| Record::new(e.partition_key().as_bytes().to_vec(), e.to_json()))
            .collect();
        log.append(EVENTS_TOPIC, records).await.expect("append");
        if done {
            break;
        }
    }
    let search = search_on().then(|| {
        Arc::new(
            emporium_search::SearchIndex::open(&dir.path().join("search")).expect("search index"),
        )
    });
    let started = Instant::now();
    let pipeline = RunningPipeline::start(
        Arc::clone(&log),
        Some(Arc::clone(&store) as Arc<dyn Store>),
        tokio::runtime::Handle::current(),
        PipelineConfig {
            search: search.as_ref().map(|index| SearchSink {
                index: Arc::clone(index),
                refresh: DEFAULT_REFRESH,
            }),
            ..pipeline_config()
        },
    )
    .expect("pipeline");
    let stats = Arc::clone(&pipeline.stats);
    assert!(wait_caught_up(log.as_ref(), &stats, Duration::from_secs(1800)).await);
    let took = started.elapsed().as_secs_f64();
    let (p, i, _) = store.counts().expect("counts");
    report.figure("cold_start_s", took, "s");
    report.figure(
        "cold_start_events_per_s",
        bootstrap as f64 / took,
        "events/s",
    );
    println!(
        "   cold start: {bootstrap} catalog and stock events read, {p} product and {i} sku documents in the store, in {took:.1} s ({})",
        fmt_rate(bootstrap as f64 / took)
    );
    if let Some(index) = &search {
        // The catch-up is read; the index commits within its refresh after the last batch.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = index.stats();
        println!(
            "   search index after the cold start: {} products in {} segments, {:.0} MiB on disk",
            s.documents,
            s.segments,
            dir_bytes(&dir.path().join("search")) as f64 / (1 << 20) as f64
        );
        report.figure(
            "cold_start_search_documents",
            s.documents as f64,
            "documents",
        );
    }

    let intake = Intake::start(Arc::clone(&log), IntakeConfig::default())
        .await
        .expect("intake");
    let (auth, token) = bench_auth();
    let server = api::LocalServer::start(intake, auth).await.expect("server");
    let endpoint = Endpoint {
        url: format!("{}/v1/events", server.base),
        token,
    };
    row(&[
        "offered events/s".into(),
        "accepted events/s".into(),
        "orders/s".into(),
        "freshness p50/p99".into(),
        "store write p99".into(),
        "decision p50/p99".into(),
        "search live p50/p99 · text p99".into(),
        "kept up".into(),
    ]);
    let mut results = Vec::new();
    for rate in rates {
        // Events of the previous rate still waiting for the watermark (no traffic since) are
        // left out: freshness here is of this rate's events.
        stats
            .freshness_from_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        stats.freshness.reset();
        stats.applied.reset();
        stats.decision_append.reset();
        stats.documents_wait.reset();
        stats.decision.reset();
        stats.store_write.reset();
        stats.search_freshness.reset();
        stats.search_live_freshness.reset();
        let from: Vec<u64> = log.end_offsets(EVENTS_TOPIC).await.expect("ends");
        // Its clock runs through its own catalog phase (skipped below) at `rate` events per
        // second: start that far back so its traffic happens now.
        let skipped = chrono::Duration::milliseconds((bootstrap as f64 / rate * 1000.0) as i64);
        let mut traffic = Generator::new(GeneratorConfig {
            products,
            users: 1_000_000,
            start: chrono::Utc::now() - skipped,
            events_per_day: rate * 86_400.0,
            seed: rate as u64,
            // New order ids: the orders of earlier rates are in the log.
            first_order: from.iter().sum(),
            ..GeneratorConfig::default()
        })
        .expect("generator");
        // Skip its own catalog phase: the shop is already stocked.
        while matches!(
            traffic.next_event().kind(),
            EventKind::ProductUpserted | EventKind::StockReceived
        ) {}
        let mut limits = Limits {
            duration: Some(Duration::from_secs(seconds)),
            rate: Some(rate),
            ..Limits::default()
        };
        let ready = (!live).then(|| {
            let lines = (rate * seconds as f64).ceil() as u64;
            limits.events = Some(lines);
            Traffic::generate(&mut traffic, lines)
        });
        // Whatever the generation did to the clock, this rate's freshness starts now.
        stats
            .freshness_from_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        let progress = Arc::new(Progress::default());
        let documents_before = stats.documents_written.load(Ordering::Relaxed);
        let batches_before = stats.store_batches.load(Ordering::Relaxed);
        let began = Instant::now();
        match ready {
            Some(mut ready) => send_http_lines(
                |n, body| ready.take(n, body),
                &endpoint,
                500,
                4,
                limits,
                Arc::clone(&progress),
            )
            .await
            .expect("send"),
            None => send_http(
                &mut traffic,
                &endpoint,
                500,
                4,
                limits,
                Arc::clone(&progress),
            )
            .await
            .expect("send"),
        }
        let sent_for = began.elapsed().as_secs_f64();
        // Kept up: read all it was sent within 2 s of the end (plus the watermark's wait).
        let kept_up = wait_caught_up(log.as_ref(), &stats, Duration::from_secs(2)).await;
        wait_caught_up(log.as_ref(), &stats, Duration::from_secs(600)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;

        let (placed, decided) = decisions_since(log.as_ref(), &from).await;
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
        let store_write_p99_s = stats
            .store_write
            .quantile(0.99)
            .unwrap_or_default()
            .as_secs_f64();
        let m = Measured {
            offered: rate,
            events_per_s: progress.accepted.load(Ordering::Relaxed) as f64 / sent_for,
            orders_per_s: placed.len() as f64 / sent_for,
            fresh_p50: stats.freshness.quantile(0.5).unwrap_or_default(),
            fresh_p99: stats.freshness.quantile(0.99).unwrap_or_default(),
            decision_p50: pct(0.5),
            decision_p99: pct(0.99),
            search_p50: stats
                .search_live_freshness
                .quantile(0.5)
                .unwrap_or_default(),
            search_p99: stats
                .search_live_freshness
                .quantile(0.99)
                .unwrap_or_default(),
            text_p99: stats.search_freshness.quantile(0.99).unwrap_or_default(),
            kept_up,
        };
        row(&[
            format!("{:.0}", m.offered),
            fmt_rate(m.events_per_s),
            format!("{:.0}", m.orders_per_s),
            format!(
                "{:.2} / {:.2} s",
                m.fresh_p50.as_secs_f64(),
                m.fresh_p99.as_secs_f64()
            ),
            format!("{store_write_p99_s:.3} s"),
            format!("{:.2} / {:.2} s", m.decision_p50, m.decision_p99),
            match &search {
                Some(_) => format!(
                    "{:.2} / {:.2} · {:.2} s",
                    m.search_p50.as_secs_f64(),
                    m.search_p99.as_secs_f64(),
                    m.text_p99.as_secs_f64()
                ),
                None => "off".into(),
            },
            if m.kept_up { "yes" } else { "no" }.into(),
        ]);
        if std::env::var_os("EMPORIUM_BENCH_VERBOSE").is_some() {
            let q = |x| {
                stats
                    .freshness
                    .quantile(x)
                    .unwrap_or_default()
                    .as_secs_f64()
            };
            println!(
                "      freshness p90 {:.2} p95 {:.2} p98 {:.2} p99.5 {:.2} max-bucket; {} events",
                q(0.90),
                q(0.95),
                q(0.98),
                q(0.995),
                stats.freshness.count()
            );
            println!(
                "      late events (counted at their partition's bound) so far: {}; heartbeats to idle partitions so far: {}",
                stats.late_events.load(Ordering::Relaxed),
                stats.heartbeats.load(Ordering::Relaxed)
            );
            let a = |x| stats.applied.quantile(x).unwrap_or_default().as_secs_f64();
            println!(
                "      appended → applied by the decider p50 {:.2} p90 {:.2} p99 {:.2} s",
                a(0.5),
                a(0.9),
                a(0.99)
            );
            let ms = |h: &emporium_pipeline::LatencyHistogram, x| {
                h.quantile(x).unwrap_or_default().as_millis()
            };
            println!(
                "      worker 0's round: decision append p50/p99/max {}/{}/{} ms; documents p50/p99/max {}/{}/{} ms; {} rounds; store write max {} ms",
                ms(&stats.decision_append, 0.5),
                ms(&stats.decision_append, 0.99),
                ms(&stats.decision_append, 1.0),
                ms(&stats.documents_wait, 0.5),
                ms(&stats.documents_wait, 0.99),
                ms(&stats.documents_wait, 1.0),
                stats.documents_wait.count(),
                ms(&stats.store_write, 1.0),
            );
            println!(
                "      decision latency as the pipeline saw it p50/p99 {}/{} ms; {:.0} documents/s written in {} batches",
                ms(&stats.decision, 0.5),
                ms(&stats.decision, 0.99),
                (stats.documents_written.load(Ordering::Relaxed) - documents_before) as f64
                    / sent_for,
                stats.store_batches.load(Ordering::Relaxed) - batches_before,
            );
        }
        let prefix = format!("offered_{:.0}", m.offered);
        report.figure(format!("{prefix}.events_per_s"), m.events_per_s, "events/s");
        report.figure(format!("{prefix}.orders_per_s"), m.orders_per_s, "orders/s");
        report.figure(
            format!("{prefix}.freshness_p50_s"),
            m.fresh_p50.as_secs_f64(),
            "s",
        );
        report.figure(
            format!("{prefix}.freshness_p99_s"),
            m.fresh_p99.as_secs_f64(),
            "s",
        );
        report.figure(format!("{prefix}.decision_p50_s"), m.decision_p50, "s");
        report.figure(format!("{prefix}.decision_p99_s"), m.decision_p99, "s");
        if search.is_some() {
            report.figure(
                format!("{prefix}.search_freshness_p99_s"),
                m.search_p99.as_secs_f64(),
                "s",
            );
        }
        report.row(serde_json::json!({
            "search_freshness_p50_s": m.search_p50.as_secs_f64(),
            "search_freshness_p99_s": m.search_p99.as_secs_f64(),
            "search_text_freshness_p99_s": m.text_p99.as_secs_f64(),
            "offered_events_per_s": m.offered,
            "events_per_s": m.events_per_s,
            "orders_per_s": m.orders_per_s,
            "freshness_p50_s": m.fresh_p50.as_secs_f64(),
            "freshness_p99_s": m.fresh_p99.as_secs_f64(),
            "store_write_p99_s": store_write_p99_s,
            "decision_p50_s": m.decision_p50,
            "decision_p99_s": m.decision_p99,
            "kept_up": m.kept_up,
        }));
        results.push(m);
    }
    tokio::task::spawn_blocking(move || pipeline.stop())
        .await
        .expect("join")
        .expect("pipeline");
    server.shutdown().await.expect("server stops");
    let best = results
        .iter()
        .filter(|m| m.kept_up && m.fresh_p99 <= TARGET_FRESHNESS_P99)
        .map(|m| m.events_per_s)
        .fold(0.0, f64::max);
    println!(
        "   highest rate kept up with p99 freshness ≤ 1 s: {}",
        fmt_rate(best)
    );
    report.target(
        "highest_rate_kept_up_at_p99_freshness_1s_events_per_s",
        best,
        "events/s",
        Op::AtLeast,
        TARGET_EVENTS_PER_S,
        SOURCE_RATE,
    );
    // The decision target holds at 5,000 orders/s: judged at the least loaded rate that reached
    // it (not measured, so missed, when none did, as in a --quick run).
    let at_orders = results
        .iter()
        .filter(|m| m.orders_per_s >= DECISION_AT_ORDERS_PER_S)
        .min_by(|a, b| a.orders_per_s.total_cmp(&b.orders_per_s));
    report.figure(
        "decision_check.orders_per_s",
        at_orders.map_or(f64::NAN, |m| m.orders_per_s),
        "orders/s",
    );
    report.target(
        "decision_check.decision_p99_s",
        at_orders.map_or(f64::NAN, |m| m.decision_p99),
        "s",
        Op::AtMost,
        TARGET_DECISION_P99_S,
        SOURCE_DECISION,
    );
    match &search {
        None if !recs_on() => report.finish(),
        None => {
            // Against the latest run without the recommendation views, on this machine.
            let without = best_of("end_to_end");
            println!(
                "   rate kept up without the recommendation views (latest end_to_end.json): {}",
                without.map_or("none".into(), fmt_rate)
            );
            report.target(
                "kept_up_ratio_to_without_recs",
                without.map_or(f64::NAN, |w| best / w),
                "x",
                Op::AtLeast,
                TARGET_RECS_KEPT_UP_RATIO,
                SOURCE_RECS_KEPT_UP,
            );
            report.finish_as("end_to_end_recs")
        }
        Some(index) => {
            let s = index.stats();
            println!(
                "   search index at the end: {} products in {} segments, {} commits",
                s.documents,
                s.segments,
                stats.search_commits.load(Ordering::Relaxed)
            );
            // Search freshness under the target load: at the least loaded rate offered at or
            // above it that kept up (as the decision check).
            let judged = results
                .iter()
                .filter(|m| m.kept_up && m.offered >= TARGET_EVENTS_PER_S)
                .min_by(|a, b| a.offered.total_cmp(&b.offered));
            report.figure(
                "search_check.events_per_s",
                judged.map_or(f64::NAN, |m| m.events_per_s),
                "events/s",
            );
            report.target(
                "search_check.search_freshness_p99_s",
                judged.map_or(f64::NAN, |m| m.search_p99.as_secs_f64()),
                "s",
                Op::AtMost,
                TARGET_SEARCH_FRESHNESS_P99.as_secs_f64(),
                SOURCE_SEARCH_FRESHNESS,
            );
            report.figure(
                "search_check.text_freshness_p99_s",
                judged.map_or(f64::NAN, |m| m.text_p99.as_secs_f64()),
                "s",
            );
            // Against the latest run without search, on this machine.
            let without = best_of("end_to_end");
            println!(
                "   rate kept up without search (latest end_to_end.json): {}",
                without.map_or("none".into(), fmt_rate)
            );
            report.target(
                "kept_up_ratio_to_without_search",
                without.map_or(f64::NAN, |w| best / w),
                "x",
                Op::AtLeast,
                TARGET_SEARCH_KEPT_UP_RATIO,
                SOURCE_SEARCH_KEPT_UP,
            );
            report.finish_as("end_to_end_search");
        }
    }
}

/// Whether `EMPORIUM_BENCH_SEARCH` asks for the search index.
fn search_on() -> bool {
    std::env::var("EMPORIUM_BENCH_SEARCH").is_ok_and(|v| v == "1")
}

/// Whether `EMPORIUM_BENCH_RECS` asks for the recommendation views (`1`: all of them; or a
/// comma-separated list of their names, to see what each costs).
fn recs_on() -> bool {
    recs_asked().is_some()
}

/// The recommendation views `EMPORIUM_BENCH_RECS` asks for, if any.
fn recs_asked() -> Option<Vec<String>> {
    let v = std::env::var("EMPORIUM_BENCH_RECS").ok()?;
    if v == "1" {
        return Some(
            emporium_dataflows::recs::VIEWS
                .iter()
                .map(|n| n.to_string())
                .collect(),
        );
    }
    let names: Vec<String> = v
        .split(',')
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    for n in &names {
        assert!(
            emporium_dataflows::recs::VIEWS.contains(&n.as_str()),
            "EMPORIUM_BENCH_RECS: {n:?} is not a recommendation view (1, or some of {:?})",
            emporium_dataflows::recs::VIEWS
        );
    }
    (!names.is_empty()).then_some(names)
}

/// The highest rate kept up in the latest `<report>.json` (e.g. `end_to_end`, the run without
/// search), if it was as full a run as this one.
fn best_of(report: &str) -> Option<f64> {
    let path = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target"))
        .join(format!("bench-results/{report}.json"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    if json["quick"].as_bool() != Some(quick()) {
        return None;
    }
    json["targets"]
        .as_array()?
        .iter()
        .find(|t| t["figure"] == "highest_rate_kept_up_at_p99_freshness_1s_events_per_s")?["value"]
        .as_f64()
        .filter(|v| *v > 0.0)
}

/// A rate's traffic as NDJSON lines, generated before it is sent.
struct Traffic {
    text: Vec<u8>,
    /// Where each line ends in `text`.
    ends: Vec<usize>,
    next: usize,
}

impl Traffic {
    fn generate(generator: &mut Generator, lines: u64) -> Self {
        let began = Instant::now();
        let mut text = Vec::with_capacity(lines as usize * 330);
        let mut ends = Vec::with_capacity(lines as usize);
        for _ in 0..lines {
            generator.next_generated().write_line(&mut text);
            ends.push(text.len());
        }
        println!(
            "      ({lines} events generated in {:.1} s, {:.0} MiB)",
            began.elapsed().as_secs_f64(),
            text.len() as f64 / (1 << 20) as f64
        );
        Self {
            text,
            ends,
            next: 0,
        }
    }

    /// Appends the next `n` lines (fewer at the end) to `body`.
    fn take(&mut self, n: u64, body: &mut Vec<u8>) {
        let start = self.next.checked_sub(1).map_or(0, |i| self.ends[i]);
        let last = (self.next + n as usize).min(self.ends.len());
        if last > self.next {
            body.extend_from_slice(&self.text[start..self.ends[last - 1]]);
        }
        self.next = last;
    }
}

/// `order_placed` append times and the decisions of those orders, after offsets `from`.
async fn decisions_since(
    log: &dyn EventLog,
    from: &[u64],
) -> (HashMap<String, i64>, Vec<(String, i64)>) {
    let mut placed = HashMap::new();
    let mut decided = Vec::new();
    for r in read_all(log, EVENTS_TOPIC).await.expect("read") {
        if r.offset < from[r.partition as usize] {
            continue;
        }
        let Ok(e) = Event::decode(&r.value) else {
            continue;
        };
        match e.payload {
            Payload::OrderPlaced(o) => {
                placed.insert(o.order_id, r.timestamp_ms);
            }
            Payload::InventoryReserved(d) => decided.push((d.order_id, r.timestamp_ms)),
            Payload::OrderRejected(d) => decided.push((d.order_id, r.timestamp_ms)),
            _ => {}
        }
    }
    (placed, decided)
}
