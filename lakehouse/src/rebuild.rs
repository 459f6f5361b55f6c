//! A log rebuilt from the lakehouse: for when the log no longer holds its beginning and no
//! checkpoint is recent enough (README, "When the log no longer holds the beginning").
//!
//! Every row of an event table is an event of the log with its `log_partition` and `log_offset`
//! (ADR 0009), decisions and heartbeats included. Rebuilding reads every event table, turns each
//! row back into its event (the envelope columns, the payload from the rest), checks it decodes,
//! and appends the events of each partition in offset order to an empty log with the same
//! partition count, keyed as before, so each lands in its old partition in its old order. The
//! dataflow then replays the rebuilt log from the start and decides exactly as it did on the
//! original (decisions are a function of each partition's order).
//!
//! What does not carry over: offsets (a log cannot be written at chosen offsets; a Kafka log's
//! transaction markers also left holes), so checkpoints of the old log do not apply: start the
//! dataflow on the rebuilt log without one, on an empty store. Records that never decoded
//! (`rejected_records`) are not events and are left out, counted. The rows are held in memory
//! while they are sorted: about 1 GB per 2M events.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use emporium_log::{EVENTS_TOPIC, EventLog, LogError, Record, partition_for};
use emporium_schemas::{Event, EventKind};
use serde_json::{Map, Value};

use crate::SqlError;
use crate::schema::{DATE_COLUMN, REJECTED_TABLE};
use crate::sql::SqlEngine;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("the target log: {0}")]
    Log(#[from] LogError),
    #[error("{table} row at partition {partition} offset {offset}: {detail}")]
    Row {
        table: String,
        partition: i64,
        offset: i64,
        detail: String,
    },
    #[error(
        "the target log's {EVENTS_TOPIC} already holds {records} records: rebuild into an empty \
         log (a new data directory, or a new Kafka cluster or topic)"
    )]
    NotEmpty { records: u64 },
    #[error(
        "the lakehouse has partitions up to {highest}, the target log {target}: the rebuilt log \
         needs as many partitions as the old one (--partitions)"
    )]
    Partitions { highest: u32, target: u32 },
    #[error("the lakehouse holds no events")]
    Empty,
}

/// What a rebuild appended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildStats {
    /// Events appended, per partition.
    pub per_partition: Vec<u64>,
    /// Per partition, the first and last offset the old log had them at.
    pub old_offsets: Vec<Option<(u64, u64)>>,
    /// Records of `rejected_records` left out.
    pub rejected_left_out: u64,
}

impl RebuildStats {
    pub fn events(&self) -> u64 {
        self.per_partition.iter().sum()
    }
}

/// Events appended per call to the log.
const APPEND_BATCH: usize = 10_000;

/// Appends every event of the lakehouse `engine` reads to `log`, whose events topic must be
/// empty (it is created with `partitions` when missing). `progress` is told the events read and,
/// later, appended so far.
pub async fn rebuild(
    engine: &SqlEngine,
    log: &dyn EventLog,
    partitions: u32,
    mut progress: impl FnMut(Progress),
) -> Result<RebuildStats, RebuildError> {
    let target = log.ensure_topic(EVENTS_TOPIC, partitions).await?;
    let records: u64 = log
        .end_offsets(EVENTS_TOPIC)
        .await?
        .iter()
        .zip(log.start_offsets(EVENTS_TOPIC).await?)
        .map(|(end, start)| end - start)
        .sum();
    if records > 0 {
        return Err(RebuildError::NotEmpty { records });
    }
    // (partition, offset) → (key, event JSON), in order.
    let mut events: BTreeMap<(u32, u64), (String, Vec<u8>)> = BTreeMap::new();
    let mut stats = RebuildStats::default();
    for table in engine.table_names().await? {
        if table == REJECTED_TABLE {
            let result = engine
                .query(&format!("SELECT count(*) AS n FROM {REJECTED_TABLE}"))
                .await?;
            stats.rejected_left_out = first_count(&result.batches);
            continue;
        }
        if EventKind::from_name(&table).is_none() {
            continue; // inventory snapshots and other derived tables
        }
        let result = engine.query(&format!("SELECT * FROM {table}")).await?;
        for row in rows_as_json(&result.batches).map_err(|e| RebuildError::Row {
            table: table.clone(),
            partition: -1,
            offset: -1,
            detail: e.to_string(),
        })? {
            let (partition, offset, event) =
                event_of_row(row).map_err(|(p, o, detail)| RebuildError::Row {
                    table: table.clone(),
                    partition: p,
                    offset: o,
                    detail,
                })?;
            events.insert(
                (partition, offset),
                (event.partition_key().to_owned(), event.to_json()),
            );
        }
        progress(Progress::Read(events.len() as u64));
    }
    let Some(&(highest, _)) = events.keys().next_back() else {
        return Err(RebuildError::Empty);
    };
    if highest >= target {
        return Err(RebuildError::Partitions { highest, target });
    }
    stats.per_partition = vec![0; target as usize];
    stats.old_offsets = vec![None; target as usize];
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    let mut appended = 0u64;
    for ((partition, offset), (key, value)) in events {
        // Keyed as before: the key's partition must be the old one, or the order would change.
        let lands = partition_for(key.as_bytes(), target);
        if lands != partition {
            return Err(RebuildError::Row {
                table: "(any)".into(),
                partition: i64::from(partition),
                offset: offset as i64,
                detail: format!(
                    "its key {key:?} goes to partition {lands} of {target}, not {partition}: \
                     rebuild with the old log's partition count"
                ),
            });
        }
        stats.per_partition[partition as usize] += 1;
        let span = &mut stats.old_offsets[partition as usize];
        *span = Some(span.map_or((offset, offset), |(first, _)| (first, offset)));
        batch.push(Record::new(key.into_bytes(), value));
        if batch.len() == APPEND_BATCH {
            appended += batch.len() as u64;
            log.append(EVENTS_TOPIC, std::mem::take(&mut batch)).await?;
            progress(Progress::Appended(appended));
        }
    }
    if !batch.is_empty() {
        appended += batch.len() as u64;
        log.append(EVENTS_TOPIC, batch).await?;
        progress(Progress::Appended(appended));
    }
    Ok(stats)
}

/// How far a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Read(u64),
    Appended(u64),
}

fn first_count(batches: &[RecordBatch]) -> u64 {
    rows_as_json(batches)
        .ok()
        .and_then(|rows| rows.into_iter().next())
        .and_then(|row| row.get("n").and_then(Value::as_u64))
        .unwrap_or(0)
}

/// Rows as JSON objects (nulls left out, timestamps in RFC 3339 UTC, money and other structs
/// as objects, lists as arrays, maps as objects): the shapes the event JSON uses.
fn rows_as_json(
    batches: &[RecordBatch],
) -> Result<Vec<Map<String, Value>>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    for batch in batches {
        let mut buf = Vec::new();
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
        writer.write(batch)?;
        writer.finish()?;
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let row: Map<String, Value> = serde_json::from_slice(line)
                .map_err(|e| arrow::error::ArrowError::JsonError(e.to_string()))?;
            out.push(row);
        }
    }
    Ok(out)
}

/// The event a row holds, with its old partition and offset.
fn event_of_row(mut row: Map<String, Value>) -> Result<(u32, u64, Event), (i64, i64, String)> {
    let int = |row: &Map<String, Value>, name: &str| row.get(name).and_then(Value::as_i64);
    let (partition, offset) = (
        int(&row, "log_partition").unwrap_or(-1),
        int(&row, "log_offset").unwrap_or(-1),
    );
    let fail = |detail: String| (partition, offset, detail);
    let (Ok(p), Ok(o)) = (u32::try_from(partition), u64::try_from(offset)) else {
        return Err(fail("no valid log_partition and log_offset".into()));
    };
    let mut envelope = Map::new();
    for name in ["event_id", "type", "schema_version", "occurred_at"] {
        let value = row
            .remove(name)
            .ok_or_else(|| fail(format!("no {name} column")))?;
        envelope.insert(name.to_owned(), value);
    }
    for name in [DATE_COLUMN, "log_partition", "log_offset"] {
        row.remove(name);
    }
    envelope.insert("payload".into(), Value::Object(row));
    let json = serde_json::to_vec(&envelope).map_err(|e| fail(e.to_string()))?;
    let event = Event::decode(&json).map_err(|e| fail(format!("does not decode: {e}")))?;
    Ok((p, o, event))
}
