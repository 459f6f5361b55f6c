//! Generator output rate: events/s of `emporium generate` logic writing NDJSON to a file.
//! Target (issue 2): at least 1M events/s to a file on a 2-core machine.
//!
//! Run: `cargo bench --bench generator_rate` (add `-- --quick` for a smoke run). Writes
//! `<target dir>/bench-results/generator_rate.json` (see `support::Report`).

mod support;

use std::io::BufWriter;

use emporium_generator::output::{Limits, Progress, write_ndjson};
use emporium_generator::{Generator, GeneratorConfig};
use support::*;

// The target as the README's Numbers table and slos.md state it; `SOURCE` quotes both lines.
const TARGET_EVENTS_PER_S: f64 = 1_000_000.0;
const SOURCE: &str = "README Numbers, generator (generator_rate): >= 1M/s; slos.md single-machine targets, Generator output: >= 1M events/s to a file";

fn main() {
    support::alloc::keep_freed_memory_a_while();
    let events: u64 = if quick() { 200_000 } else { 3_000_000 };
    let runs = if quick() { 1 } else { 5 };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut report = Report::start(
        "generator → NDJSON file",
        &format!("{events} events, 100k products, 1M users, seed 42; median of {runs} runs"),
    );
    row(&[
        "run".into(),
        "events/s".into(),
        "MB/s".into(),
        "bytes/event".into(),
    ]);
    let mut rates = Vec::new();
    let mut bytes_per_event = Vec::new();
    for run in 0..runs {
        let path = dir.path().join(format!("run{run}.ndjson"));
        let progress = Progress::default();
        let config = GeneratorConfig {
            products: 100_000,
            users: 1_000_000,
            ..GeneratorConfig::default()
        };
        let start = std::time::Instant::now();
        let mut generator = Generator::new(config).expect("generator");
        let file = std::fs::File::create(&path).expect("file");
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let limits = Limits {
            events: Some(events),
            ..Limits::default()
        };
        write_ndjson(&mut generator, &mut out, limits, &progress).expect("write");
        drop(out);
        let secs = start.elapsed().as_secs_f64();
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let rate = events as f64 / secs;
        rates.push(rate);
        bytes_per_event.push(bytes as f64 / events as f64);
        report.row(serde_json::json!({
            "run": run,
            "events_per_s": rate,
            "mb_per_s": bytes as f64 / secs / 1e6,
            "bytes_per_event": bytes as f64 / events as f64,
        }));
        row(&[
            format!("{run}"),
            fmt_rate(rate),
            format!("{:.0}", bytes as f64 / secs / 1e6),
            format!("{:.0}", bytes as f64 / events as f64),
        ]);
        let _ = std::fs::remove_file(&path);
    }
    let m = median(rates);
    println!("median: {}", fmt_rate(m));
    report.figure("bytes_per_event", median(bytes_per_event), "B");
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
