//! Shared by the benchmark harnesses: repeated runs, medians, and a plain-text table.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use emporium_generator::{Generator, GeneratorConfig};
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{EVENTS_TOPIC, EventLog, Record};
use emporium_schemas::Event;

/// Runs `f` `runs` times and returns each run's duration.
pub fn time_runs(runs: usize, mut f: impl FnMut() -> u64) -> Vec<(Duration, u64)> {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let n = f();
            (start.elapsed(), n)
        })
        .collect()
}

/// Median of per-run rates (items per second).
pub fn median_rate(runs: &[(Duration, u64)]) -> f64 {
    let mut rates: Vec<f64> = runs
        .iter()
        .map(|(d, n)| *n as f64 / d.as_secs_f64())
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[rates.len() / 2]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

pub fn header(title: &str, workload: &str) {
    println!();
    println!("== {title}");
    println!("   workload: {workload}");
    if quick() {
        println!("   (--quick: a smoke run that the harness works, not a measurement)");
    }
    println!(
        "   machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
}

pub fn row(cells: &[String]) {
    let line: Vec<String> = cells.iter().map(|c| format!("{c:>18}")).collect();
    println!("{}", line.join(" |"));
}

/// The keys of a benchmark's servers, and a producer token allowed every event type (ingest
/// checks it on every request, as in production).
pub fn bench_auth() -> (emporium_serving::auth::Authenticator, String) {
    use emporium_serving::auth::{Authenticator, KeySet, Scope};
    let auth = Authenticator::new(
        &KeySet::single("bench", "a-benchmark-secret-0123456789"),
        "a-benchmark-operator-key",
    )
    .expect("keys");
    let token = auth.producer_token("bench", &Scope::ALL, std::time::Duration::from_secs(86_400));
    (auth, token)
}

/// `--quick` (or EMPORIUM_BENCH_QUICK=1) shrinks the workload for a smoke run.
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick") || std::env::var_os("EMPORIUM_BENCH_QUICK").is_some()
}

// Same allocator, with the same settings, as the `emporium` binary, so the numbers are the
// binary's (each harness calls `alloc::keep_freed_memory_a_while()` first).
#[path = "../src/alloc.rs"]
pub mod alloc;

/// A new embedded log in `dir` holding `events` generated shop events (100k products, 1M users)
/// in 4 partitions, appended in batches of 5,000; `seen` is shown each event.
pub fn generated_log(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    events: usize,
    mut seen: impl FnMut(&Event),
) -> Arc<dyn EventLog> {
    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir)).expect("open");
    let mut generator = Generator::new(GeneratorConfig {
        products: 100_000,
        users: 1_000_000,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    rt.block_on(async {
        log.ensure_topic(EVENTS_TOPIC, 4).await.expect("topic");
        for _ in 0..events / 5_000 {
            let batch: Vec<Record> = (0..5_000)
                .map(|_| {
                    let e = generator.next_event();
                    seen(&e);
                    Record::new(e.partition_key().as_bytes().to_vec(), e.to_json())
                })
                .collect();
            log.append(EVENTS_TOPIC, batch).await.expect("append");
        }
    });
    Arc::new(log)
}
