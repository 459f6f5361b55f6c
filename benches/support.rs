//! Shared by the benchmark harnesses: repeated runs, medians, a plain-text table, and the
//! [`Report`] each harness ends with (its verdict on its targets and its figures as JSON, which
//! `scripts/bench_medians.py` aggregates across runs).

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

fn header(title: &str, workload: &str) {
    println!();
    println!("== {title}");
    println!("   workload: {workload}");
    if quick() {
        println!("   (--quick: a smoke run that the harness works, not a measurement)");
    }
    println!("   machine: {} cores", cores());
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
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
/// The bytes of every file under `path`, its subdirectories included (0 where there is none).
pub fn dir_bytes(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The process's resident memory now, in bytes (`/proc/self/statm`; 0 where there is none).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

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

/// How a measured figure must compare with its threshold.
#[derive(Clone, Copy)]
pub enum Op {
    AtLeast,
    AtMost,
    Under,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::AtLeast => ">=",
            Op::AtMost => "<=",
            Op::Under => "<",
        }
    }

    /// False for a figure that could not be measured (NaN).
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::AtLeast => value >= threshold,
            Op::AtMost => value <= threshold,
            Op::Under => value < threshold,
        }
    }
}

struct Target {
    figure: String,
    value: f64,
    unit: &'static str,
    op: Op,
    threshold: f64,
    /// The document line the threshold comes from.
    source: &'static str,
}

impl Target {
    fn met(&self) -> bool {
        self.op.holds(self.value, self.threshold)
    }

    fn describe(&self) -> String {
        format!(
            "{} {} {}: {}",
            self.figure,
            self.op.symbol(),
            show(self.threshold, self.unit),
            show(self.value, self.unit)
        )
    }
}

/// A number and its unit as the verdict lines print it: 409.5k events/s, 0.84 s.
fn show(value: f64, unit: &str) -> String {
    if value.is_nan() {
        return "not measured".into();
    }
    let number = if value.abs() >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value.abs() >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if value.abs() >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    };
    format!("{number} {unit}").trim_end().to_owned()
}

/// What one run of a benchmark measured, the targets it checks, and where it writes them.
///
/// `finish` prints one line per target and a last line `target: met`, `target: missed (…)` or
/// `target: none stated`, then writes `<target dir>/bench-results/<bench>.json` (the latest run)
/// and a copy in `bench-results/runs/<bench>/<UTC time>.json` (every run, for
/// `scripts/bench_medians.py`). A target's threshold is the one the README's Numbers table and
/// `specs/requirements/slos.md` state; each harness names the line it took it from.
pub struct Report {
    workload: String,
    figures: Vec<(String, f64, &'static str)>,
    rows: Vec<serde_json::Value>,
    targets: Vec<Target>,
}

impl Report {
    /// Prints the harness's header and starts its report.
    pub fn start(title: &str, workload: &str) -> Self {
        header(title, workload);
        Self {
            workload: workload.to_owned(),
            figures: Vec::new(),
            rows: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// A headline figure (one `scripts/bench_medians.py` takes the median of across runs). Name
    /// it for what it is; NaN means not measured.
    pub fn figure(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        self.figures.push((name.into(), value, unit));
    }

    /// A headline figure with the target it must meet; `source` names the document line.
    pub fn target(
        &mut self,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        op: Op,
        threshold: f64,
        source: &'static str,
    ) {
        let figure = name.into();
        self.figure(figure.clone(), value, unit);
        self.targets.push(Target {
            figure,
            value,
            unit,
            op,
            threshold,
            source,
        });
    }

    /// A detail behind the headline figures (one run, one size, one engine), kept in the JSON.
    pub fn row(&mut self, row: serde_json::Value) {
        self.rows.push(row);
    }

    /// Prints the verdict and writes the JSON.
    pub fn finish(self) {
        self.finish_as(env!("CARGO_CRATE_NAME"))
    }

    /// [`Report::finish`] under another name: one harness, two configurations (each with its
    /// own JSON and medians).
    pub fn finish_as(self, bench: &str) {
        for t in &self.targets {
            let ratio = if t.threshold == 0.0 || t.value.is_nan() {
                String::new()
            } else {
                format!(" ({:.2}x the threshold)", t.value / t.threshold)
            };
            println!(
                "   target {}{ratio}: {}  [{}]",
                t.describe(),
                if t.met() { "met" } else { "missed" },
                t.source
            );
        }
        let missed: Vec<String> = self
            .targets
            .iter()
            .filter(|t| !t.met())
            .map(Target::describe)
            .collect();
        let smoke = if quick() {
            " [--quick: a smoke run]"
        } else {
            ""
        };
        let target_met = if self.targets.is_empty() {
            println!("target: none stated (figures reported){smoke}");
            None
        } else if missed.is_empty() {
            let all: Vec<String> = self.targets.iter().map(Target::describe).collect();
            println!("target: met ({}){smoke}", all.join("; "));
            Some(true)
        } else {
            println!("target: missed ({}){smoke}", missed.join("; "));
            Some(false)
        };

        let figures: Vec<serde_json::Value> = self
            .figures
            .iter()
            .map(|(name, value, unit)| {
                serde_json::json!({ "name": name, "value": value, "unit": unit })
            })
            .collect();
        let targets: Vec<serde_json::Value> = self
            .targets
            .iter()
            .map(|t| {
                serde_json::json!({
                    "figure": t.figure,
                    "value": t.value,
                    "unit": t.unit,
                    "op": t.op.symbol(),
                    "threshold": t.threshold,
                    "met": t.met(),
                    "source": t.source,
                })
            })
            .collect();
        let now = chrono::Utc::now();
        let json = serde_json::json!({
            "bench": bench,
            "timestamp": now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "commit": commit(),
            "cores": cores(),
            "quick": quick(),
            "workload": self.workload,
            "figures": figures,
            "targets": targets,
            "target_met": target_met,
            "rows": self.rows,
        });
        let text = format!("{json:#}\n");
        let dir = std::path::Path::new(
            &std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
        )
        .join("bench-results");
        let latest = dir.join(format!("{bench}.json"));
        let runs = dir.join("runs").join(bench);
        let archived = runs.join(format!("{}.json", now.format("%Y%m%dT%H%M%S%.3fZ")));
        let written = std::fs::create_dir_all(&runs)
            .and_then(|()| std::fs::write(&latest, &text))
            .and_then(|()| std::fs::write(&archived, &text));
        match written {
            Ok(()) => println!(
                "   written to {} (and {})",
                latest.display(),
                archived.display()
            ),
            Err(e) => println!(
                "   could not write the JSON results to {}: {e}",
                dir.display()
            ),
        }
    }
}

/// The commit measured, `-dirty` when the work tree has changes; None without git.
fn commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--exclude", "*"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// The generator's first `n` listings as search documents (each as listed, before any review
/// or order): the catalog of the search benchmarks.
#[allow(dead_code)]
pub fn search_catalog(n: usize) -> Vec<emporium_search::SearchDocument> {
    let mut generator = Generator::new(GeneratorConfig {
        products: n,
        users: 1_000,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let mut docs = Vec::with_capacity(n);
    while docs.len() < n {
        let e = generator.next_event();
        if let emporium_schemas::Payload::ProductUpserted(p) = &e.payload {
            docs.push(emporium_search::SearchDocument::listed(
                p,
                e.occurred_at.timestamp_millis(),
            ));
        }
    }
    docs
}
