//! A generated lakehouse and DuckDB beside it, for the benchmarks and tests that compare
//! `emporium sql` with DuckDB over the same files (`benches/analyst_queries.rs`,
//! `tests/sql_corpus.rs`). Included by path: `#[path = "../tests/support/duck.rs"] mod duck;`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use chrono::{TimeZone, Utc};
use emporium_dataflows::decider::Decider;
use emporium_dataflows::inventory::{InventoryConfig, Output};
use emporium_generator::{Generator, GeneratorConfig};
use emporium_lakehouse::sql::{Format, QueryResult, SqlEngine, encode};
use emporium_lakehouse::table::{open_table, table_names};
use emporium_lakehouse::{Lake, Sink, SinkConfig, SinkStats};
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{EVENTS_TOPIC, EventLog, Record};
use emporium_pipeline::decision_events;
use emporium_schemas::Event;
use serde_json::Value;

/// Products and users: 100k and 1M, fewer for a smaller run (the catalog comes first).
pub fn shop_size(events: usize) -> (usize, usize) {
    (
        (events / 100).clamp(100, 100_000),
        (events / 10).clamp(1_000, 1_000_000),
    )
}

/// Generates `events` events, decides them, appends both to an embedded log in `dir`.
fn fill_log(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    events: usize,
    days: f64,
) -> Arc<dyn EventLog> {
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
        events_per_day: events as f64 / days,
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

/// The lakehouse of `events` generated events over `days` days from 2026-01-01, with their
/// decisions, under `dir`: built unless a finished one is there.
pub fn lakehouse(rt: &tokio::runtime::Runtime, dir: &Path, events: usize, days: f64) -> PathBuf {
    let root = dir.join("lakehouse");
    let marker = dir.join("complete");
    let recipe = format!("{events} {days}");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(recipe.as_str()) {
        eprintln!("   reusing the lakehouse in {}", root.display());
        return root;
    }
    for stale in [dir.join("log"), root.clone()] {
        if stale.exists() {
            std::fs::remove_dir_all(&stale).expect("remove a stale run");
        }
    }
    let log = fill_log(rt, &dir.join("log"), events, days);
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
    std::fs::write(&marker, recipe).expect("marker");
    root
}

/// Rows as JSON values, in column order.
pub fn rows(result: &QueryResult) -> Vec<Vec<Value>> {
    // Columns renamed by position first: two columns of one name (`p.n`, `q.n`) would be one
    // key of a JSON object.
    let fields: Vec<arrow::datatypes::Field> = result
        .schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| f.as_ref().clone().with_name(format!("c{i}")))
        .collect();
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    let batches = result
        .batches
        .iter()
        .map(|b| RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec()).expect("rename"))
        .collect();
    let positional = QueryResult {
        schema: Arc::clone(&schema),
        batches,
    };
    let json = encode(&positional, Format::Json).expect("encode");
    let objects: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&json).expect("json rows");
    objects
        .into_iter()
        .map(|mut o| {
            (0..schema.fields().len())
                .map(|i| o.remove(&format!("c{i}")).unwrap_or(Value::Null))
                .collect()
        })
        .collect()
}

/// Each table's active files, and for an empty table a Parquet file with its columns and no rows
/// (DuckDB cannot read an empty list of files).
pub fn duckdb_tables(
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
pub fn duckdb_python() -> Result<PathBuf, String> {
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
pub struct DuckDb {
    pub version: String,
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl DuckDb {
    pub fn start(
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

    /// Runs `sql` once: DuckDB's answer as its script writes it (`rows`, or `error`).
    pub fn query(&mut self, sql: &str) -> Value {
        self.ask(&serde_json::json!({ "sql": sql }).to_string())
    }

    /// Runs query `index` once: its time in seconds and its rows.
    pub fn run(&mut self, index: usize) -> (f64, Vec<Vec<Value>>) {
        let answer = self.ask(&index.to_string());
        (
            answer["seconds"].as_f64().unwrap_or(f64::NAN),
            answer_rows(&answer),
        )
    }

    /// One line to the script, and its answer.
    fn ask(&mut self, request: &str) -> Value {
        use std::io::{BufRead, Write};
        writeln!(self.input, "{request}").expect("DuckDB's stdin");
        self.input.flush().expect("DuckDB's stdin");
        let mut line = String::new();
        self.output.read_line(&mut line).expect("DuckDB's answer");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("DuckDB failed on {request} ({e}); see above"))
    }
}

/// The rows of one of the script's answers.
pub fn answer_rows(answer: &Value) -> Vec<Vec<Value>> {
    answer["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
