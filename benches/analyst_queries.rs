//! Analyst queries over the lakehouse (ADR 0009): five questions a data scientist asks of the
//! shop, timed with DataFusion (`emporium sql`'s engine, over the Delta tables) and with DuckDB
//! (PyPI `duckdb`, over the same Parquet files) in the same run, and their answers compared.
//!
//! Workload: 10M generated shop events (100k products, 1M users, 3 warehouses) over 90 days of
//! event time, decided by the inventory decider (its reservations, rejections and releases are
//! logged like in `emporium run`), in the embedded log with 4 partitions, then sunk into the
//! lakehouse and compacted. The queries are the `.sql` files in `benches/analyst_queries/`.
//! Each engine runs each query once untimed (warm caches), then the two take turns, one run each,
//! `--runs` times (3): on a shared machine whose speed drifts, both see the same moments. The table
//! gives medians and the ratio DataFusion / DuckDB (target: at most 1.0).
//!
//! DuckDB runs through `scripts/analyst_duckdb.py` with the Python of `EMPORIUM_BENCH_PYTHON`,
//! or a venv in `~/.cache/emporium/bench-venv` that is created (`pip install duckdb`) when
//! missing; without Python or PyPI the DuckDB columns say so and only DataFusion is timed.
//!
//! Run: `cargo bench --bench analyst_queries` (add `-- --quick` for a smoke run on 100k events;
//! `-- --events N` to change the size; `-- --data DIR` to keep the generated lakehouse in DIR
//! and reuse it on the next run with the same size; `-- --query K` to run only query K; `-- --runs
//! N` for more timed runs). Writes `<target dir>/bench-results/analyst_queries.json` (see
//! `support::Report`).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use emporium_dataflows::decider::Decider;
use emporium_dataflows::inventory::{InventoryConfig, Output};
use emporium_generator::{Generator, GeneratorConfig};
use emporium_lakehouse::sql::{Format, QueryResult, SqlEngine, SqlLimits, encode};
use emporium_lakehouse::table::{open_table, table_names};
use emporium_lakehouse::{Lake, Sink, SinkConfig, SinkStats};
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{EVENTS_TOPIC, EventLog, Record};
use emporium_pipeline::decision_events;
use emporium_schemas::Event;
use serde_json::Value;
use support::*;

/// The queries, in the order of the issue.
// The target as the README's Numbers table and slos.md state it; `SOURCE` quotes both lines.
const TARGET_RATIO: f64 = 1.0;
const SOURCE: &str = "README Numbers, analyst queries (analyst_queries): <= 1.0x DuckDB on each; slos.md single-machine targets, Five analyst queries on 10M events: each <= 1.0x DuckDB's time, same answers";

const QUERIES: [(&str, &str); 5] = [
    (
        "funnel by category",
        include_str!("analyst_queries/1_funnel_by_category.sql"),
    ),
    (
        "top 20 products, 1 week",
        include_str!("analyst_queries/2_top_products_week.sql"),
    ),
    (
        "cart abandonment/day",
        include_str!("analyst_queries/3_cart_abandonment.sql"),
    ),
    (
        "stock-out hours",
        include_str!("analyst_queries/4_stock_out_hours.sql"),
    ),
    (
        "30-day repeat cohorts",
        include_str!("analyst_queries/5_repeat_cohorts.sql"),
    ),
];

const DAYS: f64 = 90.0;

struct Args {
    events: usize,
    runs: usize,
    data: Option<PathBuf>,
    /// Only the query with this number (1-5).
    only: Option<usize>,
}

fn args() -> Args {
    let mut parsed = Args {
        events: if quick() { 100_000 } else { 10_000_000 },
        runs: if quick() { 1 } else { 3 },
        data: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--events" => parsed.events = value("--events").parse().expect("--events: a count"),
            "--runs" => parsed.runs = value("--runs").parse().expect("--runs: a count"),
            "--data" => parsed.data = Some(PathBuf::from(value("--data"))),
            "--query" => parsed.only = Some(value("--query").parse().expect("--query: 1 to 5")),
            _ => {}
        }
    }
    parsed
}

/// Products and users: 100k and 1M, fewer for a smaller run (the catalog comes first).
fn shop_size(events: usize) -> (usize, usize) {
    (
        (events / 100).clamp(100, 100_000),
        (events / 10).clamp(1_000, 1_000_000),
    )
}

/// Generates `events` events, decides them, appends both to an embedded log in `dir`.
fn fill_log(rt: &tokio::runtime::Runtime, dir: &Path, events: usize) -> Arc<dyn EventLog> {
    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir)).expect("open the log");
    let (products, users) = shop_size(events);
    let mut generator = Generator::new(GeneratorConfig {
        products,
        users,
        warehouses: 3,
        start: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a date"),
        events_per_day: events as f64 / DAYS,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    // One input partition in generation order: decisions depend only on the events' order in
    // event time (ADR 0005), which the generator follows.
    let mut decider = Decider::new(
        1,
        chrono::Duration::milliseconds(500),
        InventoryConfig::default(),
    );
    let record = |e: &Event| Record::new(e.partition_key().as_bytes().to_vec(), e.to_json());
    let began = Instant::now();
    let mut outputs: Vec<Output> = Vec::new();
    let mut appended = 0usize;
    rt.block_on(async {
        log.ensure_topic(EVENTS_TOPIC, 4).await.expect("topic");
        let mut generated = 0;
        while generated < events {
            let n = (events - generated).min(10_000);
            let mut batch = Vec::with_capacity(n + n / 10);
            for _ in 0..n {
                let e = generator.next_event();
                batch.push(record(&e));
                decider.push(0, e);
            }
            generated += n;
            if generated == events {
                decider.finish(&mut outputs);
            } else {
                decider.decide(&mut outputs);
            }
            batch.extend(decision_events(std::mem::take(&mut outputs)).map(|e| record(&e)));
            appended += batch.len();
            log.append(EVENTS_TOPIC, batch).await.expect("append");
            if generated % 1_000_000 == 0 {
                eprintln!(
                    "   generated {generated} events ({appended} with decisions) in {:.0} s",
                    began.elapsed().as_secs_f64()
                );
            }
        }
    });
    Arc::new(log)
}

/// The lakehouse of `events` generated events under `dir`, built unless a finished one is there.
fn lakehouse(rt: &tokio::runtime::Runtime, dir: &Path, events: usize) -> PathBuf {
    let root = dir.join("lakehouse");
    let marker = dir.join("complete");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(&events.to_string()) {
        eprintln!("   reusing the lakehouse in {}", root.display());
        return root;
    }
    for stale in [dir.join("log"), root.clone()] {
        if stale.exists() {
            std::fs::remove_dir_all(&stale).expect("remove a stale run");
        }
    }
    let log = fill_log(rt, &dir.join("log"), events);
    let began = Instant::now();
    let stats = Arc::new(SinkStats::default());
    rt.block_on(async {
        let config = SinkConfig {
            compact_interval: None,
            flush_interval: Duration::from_secs(3600),
            ..SinkConfig::new(&root)
        };
        let sink = Sink::open(log, config, stats.clone())
            .await
            .expect("open the sink");
        // Stopped at once: it reads to the end of the log, commits and returns.
        sink.run(Arc::new(AtomicBool::new(true)))
            .await
            .expect("sink");
        let mut lake = Lake::open(&root).await.expect("lake");
        for table in table_names(&root).expect("tables") {
            lake.compact(&table).await.expect("compact");
        }
    });
    eprintln!(
        "   sunk {} rows into the lakehouse and compacted it in {:.0} s",
        stats.rows_committed.load(Ordering::Relaxed),
        began.elapsed().as_secs_f64()
    );
    std::fs::write(&marker, events.to_string()).expect("marker");
    root
}

/// Rows as JSON values, in column order.
fn rows(result: &QueryResult) -> Vec<Vec<Value>> {
    let json = encode(result, Format::Json).expect("encode");
    let objects: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&json).expect("json rows");
    objects
        .into_iter()
        .map(|mut o| {
            result
                .schema
                .fields()
                .iter()
                .map(|f| o.remove(f.name()).unwrap_or(Value::Null))
                .collect()
        })
        .collect()
}

/// Same answer: equal rows, numbers equal to 1e-9 relative (sums of doubles may differ in the
/// last bits with the order of addition).
fn same(a: &[Vec<Value>], b: &[Vec<Value>]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} rows against {}", a.len(), b.len()));
    }
    for (i, (ra, rb)) in a.iter().zip(b).enumerate() {
        let equal = ra.len() == rb.len()
            && ra
                .iter()
                .zip(rb)
                .all(|(x, y)| match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                    _ => x == y,
                });
        if !equal {
            return Err(format!(
                "row {i}: {}",
                serde_json::json!({"datafusion": ra, "duckdb": rb})
            ));
        }
    }
    Ok(())
}

/// Each table's active files, and for an empty table a Parquet file with its columns and no rows
/// (DuckDB cannot read an empty list of files).
fn duckdb_tables(
    rt: &tokio::runtime::Runtime,
    engine: &SqlEngine,
    root: &Path,
    scratch: &Path,
) -> BTreeMap<String, Vec<String>> {
    let mut tables = BTreeMap::new();
    for name in table_names(root).expect("tables") {
        let files: Vec<String> = rt.block_on(async {
            let table = open_table(root, &name).await.expect("table");
            table
                .get_file_uris()
                .expect("files")
                .map(|uri| uri.trim_start_matches("file://").to_owned())
                .collect()
        });
        let files = if files.is_empty() {
            let empty = rt
                .block_on(engine.query(&format!("SELECT * EXCLUDE (date) FROM {name} LIMIT 0")))
                .expect("schema");
            let dir = scratch.join(&name).join("date=1970-01-01");
            std::fs::create_dir_all(&dir).expect("dir");
            let path = dir.join("empty.parquet");
            std::fs::write(&path, encode(&empty, Format::Parquet).expect("parquet"))
                .expect("write");
            vec![path.display().to_string()]
        } else {
            files
        };
        tables.insert(name, files);
    }
    tables
}

/// A Python with `duckdb`, or why there is none.
fn duckdb_python() -> Result<PathBuf, String> {
    let has_duckdb = |python: &Path| {
        Command::new(python)
            .args(["-c", "import duckdb"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Some(python) = std::env::var_os("EMPORIUM_BENCH_PYTHON") {
        let python = PathBuf::from(python);
        return if has_duckdb(&python) {
            Ok(python)
        } else {
            Err(format!("{} cannot import duckdb", python.display()))
        };
    }
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let venv = PathBuf::from(home).join(".cache/emporium/bench-venv");
    let python = venv.join("bin/python");
    if has_duckdb(&python) {
        return Ok(python);
    }
    eprintln!("   creating {} with duckdb from PyPI", venv.display());
    let run = |cmd: &mut Command| match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
        Err(e) => Err(e.to_string()),
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
        .map_err(|e| format!("python3 -m venv: {e}"))?;
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "duckdb"]))
        .map_err(|e| format!("pip install duckdb: {e}"))?;
    Ok(python)
}

/// DuckDB in a Python process of its own, over the same files, running one query at a time
/// when asked (`scripts/analyst_duckdb.py`).
struct DuckDb {
    version: String,
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl DuckDb {
    fn start(
        python: &Path,
        tables: &BTreeMap<String, Vec<String>>,
        queries: &[(String, String)],
        scratch: &Path,
    ) -> Result<Self, String> {
        use std::io::BufRead;
        let spec = serde_json::json!({
            "tables": tables,
            "queries": queries.iter().map(|(n, q)| serde_json::json!({"name": n, "sql": q})).collect::<Vec<_>>(),
            "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        });
        let path = scratch.join("duckdb-spec.json");
        std::fs::write(&path, spec.to_string()).map_err(|e| e.to_string())?;
        // The checkout `cargo bench` runs in, else the one this was compiled in.
        let root = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
        let script = root.join("scripts/analyst_duckdb.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let input = child.stdin.take().ok_or("no stdin")?;
        let mut output = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut first = String::new();
        output.read_line(&mut first).map_err(|e| e.to_string())?;
        let hello: Value = serde_json::from_str(&first)
            .map_err(|e| format!("DuckDB did not start ({e}); its errors are above"))?;
        Ok(Self {
            version: hello["duckdb"].as_str().unwrap_or("?").to_owned(),
            child,
            input,
            output,
        })
    }

    /// Runs query `index` once: its time in seconds and its rows.
    fn run(&mut self, index: usize) -> (f64, Vec<Vec<Value>>) {
        use std::io::{BufRead, Write};
        writeln!(self.input, "{index}").expect("DuckDB's stdin");
        self.input.flush().expect("DuckDB's stdin");
        let mut line = String::new();
        self.output.read_line(&mut line).expect("DuckDB's answer");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("DuckDB failed on query {index} ({e}); see above"));
        let rows = answer["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| r.as_array().cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        (answer["seconds"].as_f64().unwrap_or(f64::NAN), rows)
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    support::alloc::keep_freed_memory_a_while();
    let args = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir).expect("data dir");
    let mut report = Report::start(
        "analyst queries: DataFusion (emporium sql) against DuckDB, same files, same answers",
        &format!(
            "{} generated events ({} products, {} users, 3 warehouses, {DAYS} days) with \
             their decisions, sunk into the lakehouse and compacted; median of {} runs after a \
             warm-up",
            args.events,
            shop_size(args.events).0,
            shop_size(args.events).1,
            args.runs
        ),
    );
    let root = lakehouse(&rt, &dir, args.events);
    let engine = SqlEngine::new(
        &root,
        SqlLimits {
            timeout: Duration::from_secs(3600),
            memory_limit: 16 << 30,
        },
    );
    let chosen: Vec<usize> = (1..=QUERIES.len())
        .filter(|k| args.only.is_none_or(|only| only == *k))
        .collect();
    let queries: Vec<(String, String)> = chosen
        .iter()
        .map(|k| (QUERIES[k - 1].0.to_string(), QUERIES[k - 1].1.to_string()))
        .collect();

    let scratch = dir.join("duckdb");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let mut duck = duckdb_python().and_then(|python| {
        let tables = duckdb_tables(&rt, &engine, &root, &scratch);
        DuckDb::start(&python, &tables, &queries, &scratch)
    });
    match &duck {
        Ok(d) => println!(
            "   DuckDB {} (PyPI), over the tables' active Parquet files; the engines take turns, \
             one run each",
            d.version
        ),
        Err(e) => println!("   DuckDB skipped: {e}"),
    }
    let ours_once = |name: &str, sql: &str| {
        let began = Instant::now();
        let answer = rt
            .block_on(engine.query(sql))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        (began.elapsed().as_secs_f64(), answer)
    };

    // Per query: a warm-up of each engine, then `runs` turns of DataFusion then DuckDB.
    let mut ours: Vec<(Vec<f64>, Vec<Vec<Value>>)> = Vec::new();
    let mut theirs: Vec<(Vec<f64>, Vec<Vec<Value>>)> = Vec::new();
    for (i, (name, sql)) in queries.iter().enumerate() {
        let (_, answer) = ours_once(name, sql);
        let mut our_seconds = Vec::new();
        let mut their_seconds = Vec::new();
        let mut their_rows = Vec::new();
        if let Ok(d) = &mut duck {
            their_rows = d.run(i).1;
        }
        for _ in 0..args.runs {
            our_seconds.push(ours_once(name, sql).0);
            if let Ok(d) = &mut duck {
                their_seconds.push(d.run(i).0);
            }
        }
        ours.push((our_seconds, rows(&answer)));
        theirs.push((their_seconds, their_rows));
    }

    row(&[
        "query".into(),
        "rows".into(),
        "DataFusion".into(),
        "DuckDB".into(),
        "ratio".into(),
        "same answer".into(),
    ]);
    let mut ratios = Vec::new();
    let mut wrong = Vec::new();
    for (i, (name, _)) in queries.iter().enumerate() {
        let (seconds, answer) = &ours[i];
        let (their_seconds, their_rows) = &theirs[i];
        let ours_median = median(seconds.clone());
        let key = format!("q{}", chosen[i]);
        report.figure(format!("{key}.datafusion_s"), ours_median, "s");
        let mut ratio = f64::NAN;
        let (their_cell, ratio_cell, verdict) = match &duck {
            Ok(_) => {
                let their_median = median(their_seconds.clone());
                report.figure(format!("{key}.duckdb_s"), their_median, "s");
                ratio = ours_median / their_median;
                let verdict = match same(answer, their_rows) {
                    Ok(()) => "yes".to_owned(),
                    Err(diff) => {
                        wrong.push(format!("{name}: {diff}"));
                        "NO".to_owned()
                    }
                };
                ratios.push(ratio);
                (
                    format!("{their_median:.3} s"),
                    format!("{ratio:.2}x"),
                    verdict,
                )
            }
            Err(_) => ("-".into(), "-".into(), "-".into()),
        };
        report.target(
            format!("{key}.datafusion_vs_duckdb"),
            ratio,
            "x",
            Op::AtMost,
            TARGET_RATIO,
            SOURCE,
        );
        report.row(serde_json::json!({
            "query": key,
            "name": name,
            "rows": answer.len(),
            "datafusion_s": seconds,
            "duckdb_s": their_seconds,
            "same_answer": verdict,
        }));
        row(&[
            name.clone(),
            answer.len().to_string(),
            format!("{ours_median:.3} s"),
            their_cell,
            ratio_cell,
            verdict,
        ]);
    }
    if !ratios.is_empty() {
        let worst = ratios.iter().cloned().fold(0.0, f64::max);
        println!(
            "   worst ratio {worst:.2}x, median ratio {:.2}x (target: every query at most 1.0x)",
            median(ratios)
        );
    }
    let compared = if duck.is_ok() {
        wrong.len() as f64
    } else {
        f64::NAN
    };
    report.target(
        "queries_answering_differently",
        compared,
        "queries",
        Op::AtMost,
        0.0,
        SOURCE,
    );
    report.finish();
    assert!(
        wrong.is_empty(),
        "DataFusion and DuckDB answer differently:\n{}",
        wrong.join("\n")
    );
}
