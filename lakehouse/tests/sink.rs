//! The sink end to end on a real (embedded) event log: per event type, the rows in the lakehouse
//! are the events in the log, each exactly once, through clean stops, crashes in the middle of a
//! write (the sink's task dropped at random points) and restarts; records that are not events go
//! to the rejected table; SQL reads it all, and refuses what is not a query.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use emporium_generator::{Generator, GeneratorConfig};
use emporium_lakehouse::sql::{SqlEngine, SqlError, SqlLimits};
use emporium_lakehouse::{Sink, SinkConfig, SinkStats};
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{EVENTS_TOPIC, EventLog, Record, read_all};
use emporium_schemas::Event;

const PARTITIONS: u32 = 3;

fn shop_events(n: usize, seed: u64) -> Vec<Record> {
    let mut generator = Generator::new(GeneratorConfig {
        products: 200,
        users: 1_000,
        events_per_day: 50_000.0,
        seed,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    (0..n)
        .map(|_| {
            let e = generator.next_event();
            Record::new(e.partition_key().as_bytes().to_vec(), e.to_json())
        })
        .collect()
}

async fn shop_log(dir: &Path) -> Arc<dyn EventLog> {
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(EmbeddedConfig::in_dir(dir)).expect("open the log"));
    log.ensure_topic(EVENTS_TOPIC, PARTITIONS)
        .await
        .expect("topic");
    log
}

async fn append(log: &Arc<dyn EventLog>, records: &[Record]) {
    for batch in records.chunks(1000) {
        log.append(EVENTS_TOPIC, batch.to_vec())
            .await
            .expect("append");
    }
}

fn config(root: &Path) -> SinkConfig {
    SinkConfig {
        flush_rows: 700,
        flush_interval: Duration::from_millis(200),
        max_replay: 2_000,
        compact_interval: None,
        read_batch: 300,
        ..SinkConfig::new(root)
    }
}

/// Runs a sink until it has committed every record now in the log, then stops it cleanly.
async fn run_to_end(log: &Arc<dyn EventLog>, config: SinkConfig) -> Arc<SinkStats> {
    let stats = Arc::new(SinkStats::default());
    let sink = Sink::open(log.clone(), config, stats.clone())
        .await
        .expect("open the sink");
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(sink.run(stop.clone()));
    let ends = log.end_offsets(EVENTS_TOPIC).await.expect("ends");
    let began = Instant::now();
    while *stats.committed_positions.lock() < ends {
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "the sink did not catch up: {:?} of {ends:?}",
            stats.committed_positions.lock()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    task.await.expect("sink task").expect("sink run");
    stats
}

/// Per event type, the (partition, offset) of every record of the log: what the lake must hold.
async fn expected_rows(log: &Arc<dyn EventLog>) -> BTreeMap<String, Vec<(i64, i64)>> {
    let mut out: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for record in read_all(log.as_ref(), EVENTS_TOPIC).await.expect("read") {
        let table = match Event::decode(&record.value) {
            Ok(e) => e.kind().as_str().to_owned(),
            Err(_) => "rejected_records".to_owned(),
        };
        out.entry(table)
            .or_default()
            .push((record.partition as i64, record.offset as i64));
    }
    for rows in out.values_mut() {
        rows.sort_unstable();
    }
    out
}

/// Per table, the (log_partition, log_offset) of every row, read back with SQL.
async fn lake_rows(engine: &SqlEngine) -> BTreeMap<String, Vec<(i64, i64)>> {
    let mut out = BTreeMap::new();
    for table in engine.table_names().await.expect("tables") {
        let result = engine
            .query(&format!(
                "SELECT CAST(log_partition AS BIGINT) AS p, log_offset AS o FROM {table} ORDER BY p, o"
            ))
            .await
            .unwrap_or_else(|e| panic!("query {table}: {e}"));
        let mut rows = Vec::new();
        for batch in &result.batches {
            let p = batch.column(0).as_primitive::<Int64Type>();
            let o = batch.column(1).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                rows.push((p.value(i), o.value(i)));
            }
        }
        if !rows.is_empty() {
            out.insert(table, rows);
        }
    }
    out
}

/// A column of strings (whichever Arrow string type the scan gives) as `String`s.
fn strings(column: &arrow::array::ArrayRef) -> Vec<String> {
    let utf8 = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).expect("cast");
    let utf8 = utf8.as_string::<i32>();
    (0..utf8.len()).map(|i| utf8.value(i).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_lands_once_in_the_table_of_its_type_and_sql_reads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = shop_log(&dir.path().join("log")).await;
    append(&log, &shop_events(6_000, 1)).await;
    // A record produced straight into the log that is not an event.
    log.append(
        EVENTS_TOPIC,
        vec![Record::new(&b"k"[..], &b"{\"type\":\"order_placed\"}"[..])],
    )
    .await
    .expect("append");
    let root = dir.path().join("lake");
    let stats = run_to_end(&log, config(&root)).await;
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 1);

    let engine = SqlEngine::new(&root, SqlLimits::default());
    let expected = expected_rows(&log).await;
    assert!(expected.len() > 10, "the workload covers many types");
    assert_eq!(lake_rows(&engine).await, expected);

    // Counts by type, the way an analyst would ask.
    let counts = engine
        .query("SELECT type, count(*) AS n FROM order_placed GROUP BY type")
        .await
        .expect("count");
    let n = counts.batches[0]
        .column(1)
        .as_primitive::<Int64Type>()
        .value(0);
    assert_eq!(n as usize, expected["order_placed"].len());

    // Every table exists, even one without events yet, and reads as empty.
    let tables = engine.table_names().await.expect("tables");
    assert_eq!(tables.len(), emporium_schemas::EventKind::ALL.len() + 1);
    // A query registers only the tables it names, but the information schema lists them all.
    let listed = engine
        .query("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'lakehouse'")
        .await
        .expect("information schema");
    let listed = listed.batches[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0);
    assert_eq!(listed as usize, tables.len());

    // The rejected record keeps its reason and bytes.
    let rejected = engine
        .query("SELECT reason, raw FROM rejected_records")
        .await
        .expect("rejected");
    let batch = &rejected.batches[0];
    assert_eq!(strings(batch.column(0)), ["missing_field"]);
    assert_eq!(strings(batch.column(1)), ["{\"type\":\"order_placed\"}"]);

    // A restart with nothing new commits nothing new and duplicates nothing.
    let again = run_to_end(&log, config(&root)).await;
    assert_eq!(again.rows_committed.load(Ordering::Relaxed), 0);
    assert_eq!(lake_rows(&engine).await, expected);

    // New commits are seen by the same engine's next query (its scan of a table is rebuilt when
    // the table's version changes).
    append(&log, &shop_events(2_000, 2)).await;
    run_to_end(&log, config(&root)).await;
    let expected = expected_rows(&log).await;
    assert!(expected["order_placed"].len() > n as usize);
    assert_eq!(lake_rows(&engine).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_in_the_middle_of_writes_neither_duplicate_nor_lose_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = shop_log(&dir.path().join("log")).await;
    let root = dir.path().join("lake");
    let mut rng_state = 0x9e37_79b9_u64;
    for round in 0..6u64 {
        append(&log, &shop_events(2_500, 10 + round)).await;
        // Run for a pseudo-random while, then drop the sink's task wherever it is: between
        // commits, while writing Parquet files, or between the commits of two tables.
        rng_state = rng_state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let crash_after = Duration::from_millis(20 + (rng_state >> 33) % 400);
        let stats = Arc::new(SinkStats::default());
        let sink = Sink::open(log.clone(), config(&root), stats.clone())
            .await
            .expect("open the sink");
        let task = tokio::spawn(sink.run(Arc::new(AtomicBool::new(false))));
        tokio::time::sleep(crash_after).await;
        task.abort();
        let _ = task.await;
    }
    // A last run to the end; the lake must hold each record exactly once.
    run_to_end(&log, config(&root)).await;
    let engine = SqlEngine::new(&root, SqlLimits::default());
    assert_eq!(lake_rows(&engine).await, expected_rows(&log).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_refuses_writes_and_explains_bad_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = shop_log(&dir.path().join("log")).await;
    append(&log, &shop_events(500, 3)).await;
    let root = dir.path().join("lake");
    run_to_end(&log, config(&root)).await;
    let engine = SqlEngine::new(&root, SqlLimits::default());

    for write in [
        "INSERT INTO order_placed SELECT * FROM order_placed",
        "DELETE FROM order_placed",
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE order_placed",
        "COPY order_placed TO '/tmp/x.parquet'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let error = engine.query(write).await.expect_err(write);
        assert!(
            matches!(error, SqlError::NotReadOnly(_)),
            "{write}: expected a refusal, got {error}"
        );
    }
    let error = engine.query("SELEC 1").await.expect_err("bad syntax");
    assert!(matches!(error, SqlError::Syntax(_)), "{error}");
    let error = engine
        .query("SELECT no_such_column FROM order_placed")
        .await
        .expect_err("unknown column");
    assert!(matches!(error, SqlError::Plan(_)), "{error}");
    assert!(error.to_string().contains("no_such_column"), "{error}");
    assert!(!error.to_string().contains("backtrace"), "{error}");
    let error = engine
        .query("SELECT * FROM no_such_table")
        .await
        .expect_err("unknown table");
    assert!(error.to_string().contains("no_such_table"), "{error}");

    // A small memory limit stops a query that must hold much in memory, with a clear error...
    let small = SqlEngine::new(
        &root,
        SqlLimits {
            memory_limit: 1024 * 1024,
            ..SqlLimits::default()
        },
    );
    let heavy = "SELECT value % 500000 AS k, count(*) FROM range(3000000) GROUP BY k ORDER BY k";
    let error = small.query(heavy).await.expect_err("over the memory limit");
    assert!(
        matches!(error, SqlError::ResourcesExhausted { .. }),
        "{error}"
    );
    // ... and a time limit cancels a long one.
    let quick = SqlEngine::new(
        &root,
        SqlLimits {
            timeout: Duration::from_millis(1),
            ..SqlLimits::default()
        },
    );
    let error = quick.query(heavy).await.expect_err("over the time limit");
    assert!(matches!(error, SqlError::Timeout(_)), "{error}");

    // Queries do run.
    let ok = engine
        .query("SELECT count(*) FROM product_viewed WHERE date >= DATE '2000-01-01'")
        .await
        .expect("query");
    assert_eq!(ok.num_rows(), 1);
    let _ = ok.batches[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .is_null(0);
}

/// Schema evolution: files written before a column existed (an older schema version of the event
/// type) read that column as null; rows written after read their values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_later_reads_as_null_in_older_files() {
    use emporium_lakehouse::rows::RowBuffers;
    use emporium_schemas::{EventKind, examples};

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("lake");
    let records: Vec<emporium_log::ConsumedRecord> = (0..4u64)
        .map(|i| emporium_log::ConsumedRecord {
            partition: 0,
            offset: i,
            timestamp_ms: 1_764_000_000_000,
            key: Default::default(),
            value: examples::example(EventKind::ProductDiscontinued, i)
                .to_json()
                .into(),
        })
        .collect();
    let batch_of = |records: &[emporium_log::ConsumedRecord]| {
        let mut buffers = RowBuffers::new();
        for r in records {
            buffers.push(r).expect("a row");
        }
        let batches = buffers.take().expect("rows").pop().expect("one table").1;
        let schema = batches[0].schema();
        arrow::compute::concat_batches(&schema, &batches).expect("one schema")
    };
    // The first two events as an older version of the type wrote them: without `reason`.
    let old = batch_of(&records[..2]);
    let without_reason: Vec<usize> = (0..old.num_columns())
        .filter(|&i| old.schema().field(i).name() != "reason")
        .collect();
    let old = old.project(&without_reason).expect("project");
    let mut lake = emporium_lakehouse::Lake::open(&root).await.expect("lake");
    lake.append("product_discontinued", vec![old], EVENTS_TOPIC, &[2])
        .await
        .expect("old files");
    lake.append(
        "product_discontinued",
        vec![batch_of(&records[2..])],
        EVENTS_TOPIC,
        &[4],
    )
    .await
    .expect("new files");
    assert_eq!(
        lake.positions("product_discontinued", EVENTS_TOPIC, 1)
            .await
            .expect("positions"),
        vec![4]
    );

    let engine = SqlEngine::new(&root, SqlLimits::default());
    let result = engine
        .query("SELECT reason FROM product_discontinued ORDER BY log_offset")
        .await
        .expect("query");
    let batch = arrow::compute::concat_batches(&result.schema, &result.batches).expect("concat");
    let reason =
        arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8).expect("cast");
    let reason = reason.as_string::<i32>();
    let values: Vec<Option<&str>> = (0..reason.len())
        .map(|i| (!reason.is_null(i)).then(|| reason.value(i)))
        .collect();
    assert_eq!(
        values,
        [None, None, Some("end of line"), Some("end of line")]
    );
}

/// Partition pruning: a filter on `date` reads only that day's files. With the other day's files
/// deleted from disk, the filtered query still answers; a query that needs them fails. (Both read
/// a column: a bare `count(*)` is answered from the Delta log's statistics.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_on_date_reads_only_that_days_files() {
    use emporium_lakehouse::rows::RowBuffers;
    use emporium_schemas::{EventKind, examples};

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("lake");
    let mut buffers = RowBuffers::new();
    for i in 0..6u64 {
        let mut event = examples::example(EventKind::ProductViewed, i);
        event.occurred_at += chrono::Duration::days(i as i64 % 2);
        buffers
            .push(&emporium_log::ConsumedRecord {
                partition: 0,
                offset: i,
                timestamp_ms: 1_764_000_000_000,
                key: Default::default(),
                value: event.to_json().into(),
            })
            .expect("a row");
    }
    let (table, batch) = buffers.take().expect("rows").pop().expect("one table");
    let mut lake = emporium_lakehouse::Lake::open(&root).await.expect("lake");
    lake.append(table, batch, EVENTS_TOPIC, &[6])
        .await
        .expect("append");
    let first_day = examples::example_time().date_naive();
    let second_day = first_day + chrono::Duration::days(1);
    let day_dirs: Vec<_> = std::fs::read_dir(root.join(table))
        .expect("table dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("date="))
        .collect();
    assert_eq!(day_dirs.len(), 2, "{day_dirs:?}");
    std::fs::remove_dir_all(root.join(table).join(format!("date={second_day}")))
        .expect("remove the second day");

    let engine = SqlEngine::new(&root, SqlLimits::default());
    let count = engine
        .query(&format!(
            "SELECT count(*) FROM product_viewed WHERE date = DATE '{first_day}' AND length(user_id) > 0"
        ))
        .await
        .expect("the first day's files are all it reads");
    assert_eq!(
        count.batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0),
        3
    );
    let every_day = engine
        .query("SELECT count(*) FROM product_viewed WHERE length(user_id) > 0")
        .await;
    assert!(
        every_day.is_err(),
        "a query over every day needs the deleted files: {every_day:?}"
    );
}

/// After a crash, tables can be at different positions, and a table can be ahead of the sink's
/// start in one partition and behind in another. Its next commit must not move its position back,
/// or the records in between would land in it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_ahead_of_the_restart_position_gets_nothing_twice() {
    use emporium_lakehouse::rows::RowBuffers;

    let dir = tempfile::tempdir().expect("tempdir");
    let log = shop_log(&dir.path().join("log")).await;
    append(&log, &shop_events(4_000, 21)).await;
    let root = dir.path().join("lake");
    // product_viewed as a crashed run left it: every view of partition 0 below offset 600 and of
    // partition 1 below offset 20 (and none of partition 2), positions [600, 20, 0]; every other
    // table still at [0, 0, 0].
    let ahead = [600u64, 20, 0];
    let mut buffers = RowBuffers::new();
    for record in read_all(log.as_ref(), EVENTS_TOPIC).await.expect("read") {
        if record.offset < ahead[record.partition as usize] {
            buffers
                .push_if(&record, |table| table == "product_viewed")
                .expect("a row");
        }
    }
    let (table, batch) = buffers.take().expect("rows").pop().expect("views");
    assert_eq!(table, "product_viewed");
    assert!(batch.iter().map(|b| b.num_rows()).sum::<usize>() > 100);
    let mut lake = emporium_lakehouse::Lake::open(&root).await.expect("lake");
    lake.append(table, batch, EVENTS_TOPIC, &ahead)
        .await
        .expect("append");
    drop(lake);
    // Small reads and commits: the first commits come while partition 0 is read below 600.
    run_to_end(
        &log,
        SinkConfig {
            flush_rows: 50,
            read_batch: 40,
            ..config(&root)
        },
    )
    .await;
    let engine = SqlEngine::new(&root, SqlLimits::default());
    assert_eq!(lake_rows(&engine).await, expected_rows(&log).await);
}

/// The log's retention removed events the lakehouse never wrote (the sink was stopped for longer
/// than the retention): the sink refuses to go on past the hole, naming it, and writes nothing.
/// Once it has written them, a later retention is harmless: it restarts from its own positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_behind_the_logs_retention_stops_and_says_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> = Arc::new(
        EmbeddedLog::open(EmbeddedConfig {
            segment_bytes: 64 * 1024,
            retention: None,
            retention_bytes: Some(256 * 1024),
            ..EmbeddedConfig::in_dir(dir.path().join("log"))
        })
        .expect("open the log"),
    );
    log.ensure_topic(EVENTS_TOPIC, PARTITIONS)
        .await
        .expect("topic");
    let events = shop_events(12_000, 5);
    append(&log, &events[..500]).await;
    let root = dir.path().join("lake");
    run_to_end(&log, config(&root)).await;
    append(&log, &events[500..]).await;
    let starts = log.start_offsets(EVENTS_TOPIC).await.expect("starts");
    assert!(starts.iter().all(|&s| s > 0), "retention moved: {starts:?}");

    let stats = Arc::new(SinkStats::default());
    let sink = Sink::open(log.clone(), config(&root), stats.clone())
        .await
        .expect("open the sink");
    let result = sink.run(Arc::new(AtomicBool::new(false))).await;
    match result {
        Err(e @ emporium_lakehouse::LakeError::Gap(_)) => {
            let message = e.to_string();
            assert!(message.contains("no longer in the log"), "{message}");
            assert!(
                message.contains("When the log no longer holds"),
                "{message}"
            );
        }
        other => panic!("expected the sink to stop at the gap, got {other:?}"),
    }
    let engine = SqlEngine::new(&root, SqlLimits::default());
    let rows: usize = lake_rows(&engine).await.values().map(Vec::len).sum();
    assert_eq!(rows, 500, "the first events, nothing after the hole");
}
