//! The SQL corpus: every query of `tests/sql_corpus/*.slt` (sqllogictest, the runner DataFusion
//! uses) over one generated lakehouse, run three ways, each of which must give the answer the
//! file records:
//!
//! - `emporium sql`'s engine with the lakehouse's planner rules (`Rules::Lakehouse`);
//! - the same engine with DataFusion's planner alone (`Rules::DataFusion`);
//! - DuckDB (PyPI, in the venv `scripts/test` makes), over the tables' active Parquet files.
//!
//! The rules may change how a query runs, never its answer; DuckDB keeps the answers honest
//! (they are not only what DataFusion says). A record that only one of the engines can run
//! carries `skipif duckdb` or `onlyif duckdb`, with the reason in a comment.
//!
//! Each record's header has a letter per column, and the number of columns must match. Answers
//! are compared as text: NULL, `true`/`false`, integral numbers as integers (3 and 3.0
//! are equal), other numbers to 4 decimals, timestamps as `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC,
//! lists `[a,b]` and structs `{k:v}`.
//!
//! To record the answers of a new or changed query, leave its result empty and run
//! `EMPORIUM_SQL_CORPUS_COMPLETE=1 cargo test --test sql_corpus`: the files are rewritten with
//! DataFusion's answers (rules off), and the three-way check then runs on them.
//!
//! The answers depend on the generator's output: when the generator changes (2026-12-05: shoppers
//! with taste, issue 25), empty every result and record them again that way; the records only
//! DuckDB runs (`onlyif duckdb`) take DuckDB's answers from the failing run's diff, and the
//! three-way check must then pass.

#[path = "support/duck.rs"]
#[allow(dead_code)]
mod duck;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use emporium_lakehouse::planner::Rules;
use emporium_lakehouse::sql::{SqlEngine, SqlLimits};
use serde_json::Value;
use sqllogictest::{DBOutput, DefaultColumnType, Runner};

/// The generated shop: 40k events over 4 days from 2026-01-01, with their decisions.
const EVENTS: usize = 40_000;
const DAYS: f64 = 4.0;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct QueryError(String);

/// `emporium sql`'s engine, with the rules of its construction.
struct Engine(Arc<SqlEngine>);

#[async_trait]
impl sqllogictest::AsyncDB for Engine {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        let result = self
            .0
            .query(sql)
            .await
            .map_err(|e| QueryError(e.to_string()))?;
        let rows = duck::rows(&result);
        let types = result
            .schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        Ok(output(types, &rows))
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "datafusion"
    }
}

/// DuckDB in its Python process (`scripts/analyst_duckdb.py`), one query at a time.
struct Duck(Arc<std::sync::Mutex<duck::DuckDb>>);

#[async_trait]
impl sqllogictest::AsyncDB for Duck {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        let mut duck = self
            .0
            .lock()
            .map_err(|_| QueryError("DuckDB's process panicked".into()))?;
        let answer = duck.query(sql);
        if let Some(error) = answer.get("error") {
            return Err(QueryError(format!("DuckDB: {error}")));
        }
        let rows = duck::answer_rows(&answer);
        let columns = answer["columns"].as_array().map_or(0, Vec::len);
        Ok(output(vec![DefaultColumnType::Any; columns], &rows))
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "duckdb"
    }
}

fn output(types: Vec<DefaultColumnType>, rows: &[Vec<Value>]) -> DBOutput<DefaultColumnType> {
    DBOutput::Rows {
        types,
        rows: rows
            .iter()
            .map(|row| row.iter().map(text).collect())
            .collect(),
    }
}

/// The letter a column gets in a record's header (`I`, `R`, `T`; `?` for booleans, which the
/// default column types do not name).
fn column_type(data_type: &arrow::datatypes::DataType) -> DefaultColumnType {
    use arrow::datatypes::DataType;
    if data_type.is_integer() {
        DefaultColumnType::Integer
    } else if data_type.is_floating()
        || matches!(
            data_type,
            DataType::Decimal128(..) | DataType::Decimal256(..)
        )
    {
        DefaultColumnType::FloatingPoint
    } else if data_type == &DataType::Boolean {
        DefaultColumnType::Any
    } else {
        DefaultColumnType::Text
    }
}

/// Only the number of columns is compared: the engines type some columns differently (DuckDB's
/// `sum` of integers is a HUGEINT, a decimal here), and the values are compared as text anyway.
#[allow(clippy::ptr_arg)] // the runner's signature
fn same_column_count(actual: &Vec<DefaultColumnType>, expected: &Vec<DefaultColumnType>) -> bool {
    actual.len() == expected.len()
}

/// One value as the corpus writes it.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return i.to_string();
            }
            if let Some(u) = n.as_u64() {
                return u.to_string();
            }
            number(n.as_f64().unwrap_or(f64::NAN))
        }
        Value::String(s) if s.is_empty() => "(empty)".to_owned(),
        Value::String(s) => timestamp(s).unwrap_or_else(|| s.clone()),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(text).collect();
            format!("[{}]", items.join(","))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{k}:{}", text(v)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
    }
}

fn number(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let rounded = (x * 10_000.0).round() / 10_000.0;
    if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
        // -0 is 0.
        return format!("{}", rounded as i64);
    }
    let fixed = format!("{rounded:.4}");
    fixed.trim_end_matches('0').to_owned()
}

/// `2026-01-01T10:00:00.120000Z` (or `+00:00`, or a space for the `T`) as
/// `2026-01-01 10:00:00.12`; `None` for anything else.
fn timestamp(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let shaped = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b' ')
        && b[13] == b':'
        && b[16] == b':'
        && b[..19]
            .iter()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16].contains(&i) || c.is_ascii_digit());
    if !shaped {
        return None;
    }
    let rest = s[19..]
        .trim_end_matches('Z')
        .trim_end_matches("+00:00")
        .trim_end_matches("+00");
    let fraction = match rest.strip_prefix('.') {
        Some(digits) if digits.bytes().all(|c| c.is_ascii_digit()) => digits.trim_end_matches('0'),
        None if rest.is_empty() => "",
        _ => return None,
    };
    let mut out = format!("{} {}", &s[..10], &s[11..19]);
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    Some(out)
}

/// `inventory_snapshots` (which `emporium run` fills from its store, and a generated lakehouse
/// lacks): 4 days × 4 times × 40 skus × 3 warehouses, with made-up but deterministic stock.
async fn add_snapshots(root: &Path) {
    use arrow::array::{ArrayRef, Date32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    let (mut at, mut sku, mut warehouse, mut on_hand, mut reserved, mut seq, mut date) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let start_day = 20_454i64; // 2026-01-01
    for day in 0..4i64 {
        for hour in [0i64, 6, 12, 18] {
            for k in 0..40i64 {
                for w in 0..3i64 {
                    let stock = (k * 13 + day * 5 + hour * 3 + w * 11) % 50;
                    at.push(((start_day + day) * 86_400 + hour * 3_600) * 1_000_000);
                    sku.push(format!("p-{:07}-black", k * 7));
                    warehouse.push(format!("wh-{w}"));
                    on_hand.push(stock);
                    reserved.push(((k + day + w) % 7).min(stock));
                    seq.push(day * 100 + hour);
                    date.push((start_day + day) as i32);
                }
            }
        }
    }
    let available: Vec<i64> = on_hand.iter().zip(&reserved).map(|(o, r)| o - r).collect();
    let schema = emporium_lakehouse::schema::inventory_snapshot_schema();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(at).with_timezone("UTC")),
        Arc::new(StringArray::from(sku)),
        Arc::new(StringArray::from(warehouse)),
        Arc::new(Int64Array::from(on_hand)),
        Arc::new(Int64Array::from(reserved)),
        Arc::new(Int64Array::from(available)),
        Arc::new(Int64Array::from(seq)),
        Arc::new(Date32Array::from(date)),
    ];
    let batch = arrow::record_batch::RecordBatch::try_new(schema, columns).expect("snapshot rows");
    let mut lake = emporium_lakehouse::Lake::open(root).await.expect("lake");
    lake.append(
        "inventory_snapshots",
        vec![batch],
        emporium_log::EVENTS_TOPIC,
        &[],
    )
    .await
    .expect("append snapshots");
}

fn corpus_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql_corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "slt"))
        .collect();
    files.sort();
    files
}

/// Runs every file with one engine; the failures, as text.
fn run_all<D, F>(rt: &tokio::runtime::Runtime, label: &str, make: F) -> Vec<String>
where
    D: sqllogictest::AsyncDB<ColumnType = DefaultColumnType> + 'static,
    F: Fn() -> D + Clone + Send + 'static,
{
    let mut failures = Vec::new();
    for file in corpus_files() {
        let make = make.clone();
        let mut runner = Runner::new(move || {
            let db = make();
            async move { Ok::<_, D::Error>(db) }
        });
        runner.add_label(label);
        runner.with_column_validator(same_column_count);
        let records = sqllogictest::parse_file::<DefaultColumnType>(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for record in records {
            if let Err(e) = rt.block_on(runner.run_async(record)) {
                failures.push(format!("[{label}] {}", e.display(false)));
            }
        }
    }
    failures
}

#[test]
fn the_rules_datafusion_and_duckdb_give_the_recorded_answers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = duck::lakehouse(&rt, dir.path(), EVENTS, DAYS);
    rt.block_on(add_snapshots(&root));
    let limits = SqlLimits {
        timeout: Duration::from_secs(120),
        memory_limit: 2 << 30,
    };
    let stock = Arc::new(SqlEngine::new(&root, limits).with_rules(Rules::DataFusion));
    let ours = Arc::new(SqlEngine::new(&root, limits).with_rules(Rules::Lakehouse));

    if std::env::var_os("EMPORIUM_SQL_CORPUS_COMPLETE").is_some() {
        for file in corpus_files() {
            let stock = Arc::clone(&stock);
            let mut runner = Runner::new(move || {
                let db = Engine(Arc::clone(&stock));
                async move { Ok::<_, QueryError>(db) }
            });
            runner.add_label("datafusion");
            rt.block_on(runner.update_test_file(
                &file,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                same_column_count,
            ))
            .unwrap_or_else(|e| panic!("completing {}: {e}", file.display()));
        }
    }

    let mut failures = Vec::new();
    let mut queries = 0;
    for file in corpus_files() {
        let records = sqllogictest::parse_file::<DefaultColumnType>(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        queries += records
            .iter()
            .filter(|r| matches!(r, sqllogictest::Record::Query { .. }))
            .count();
    }
    assert!(
        queries >= 200,
        "the corpus has {queries} queries, fewer than 200"
    );
    for (label, engine) in [("rules", &ours), ("datafusion", &stock)] {
        let engine = Arc::clone(engine);
        failures.extend(run_all(&rt, label, move || Engine(Arc::clone(&engine))));
    }

    let python = duck::duckdb_python().unwrap_or_else(|e| {
        panic!("DuckDB is needed (scripts/test installs it in ~/.cache/emporium/bench-venv): {e}")
    });
    let scratch = dir.path().join("duckdb");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let tables: BTreeMap<String, Vec<String>> = duck::duckdb_tables(&rt, &stock, &root, &scratch);
    let duckdb = duck::DuckDb::start(&python, &tables, &[], &scratch).expect("start DuckDB");
    eprintln!("DuckDB {}", duckdb.version);
    let duckdb = Arc::new(std::sync::Mutex::new(duckdb));
    failures.extend(run_all(&rt, "duckdb", move || Duck(Arc::clone(&duckdb))));

    assert!(
        failures.is_empty(),
        "{} of {queries} queries × 3 engines differ from the corpus:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{queries} queries, 3 engines, the same answers");
}
