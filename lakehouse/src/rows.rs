//! From log records to Arrow rows: each record is decoded and validated as an event
//! (`Event::decode`), flattened into one JSON line with the columns of its table (envelope fields,
//! `date`, log position, then the payload's fields) and buffered per table; [`RowBuffers::take`]
//! turns the buffered lines into one `RecordBatch` per table with arrow-json. A record that is not
//! a readable event goes to the [`REJECTED_TABLE`] with its reason, never dropped.

use std::collections::BTreeMap;
use std::io::Write;

use arrow::datatypes::SchemaRef;
use arrow::json::ReaderBuilder;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, SecondsFormat, Utc};
use emporium_ingest::dead_letter::DeadLetter;
use emporium_ingest::log::ConsumedRecord;
use emporium_schemas::{Event, RejectReason};

use crate::LakeError;
use crate::schema::{self, REJECTED_TABLE};

struct TableBuffer {
    schema: SchemaRef,
    lines: Vec<u8>,
    rows: usize,
}

/// Rows waiting to be written, per table.
#[derive(Default)]
pub struct RowBuffers {
    tables: BTreeMap<&'static str, TableBuffer>,
    rows: usize,
    bytes: usize,
    rejected: usize,
}

impl RowBuffers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes of JSON buffered: a rough measure of the memory the rows will take as Arrow.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records sent to the rejected table since the last [`take`](Self::take).
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    fn buffer(&mut self, table: &'static str) -> &mut TableBuffer {
        self.tables.entry(table).or_insert_with(|| TableBuffer {
            schema: schema::sink_table_schema(table).expect("the sink writes only its own tables"),
            lines: Vec::new(),
            rows: 0,
        })
    }

    /// Buffers `record` as a row of its event type's table, or of the rejected table. Returns the
    /// table it went to.
    pub fn push(&mut self, record: &ConsumedRecord) -> &'static str {
        self.push_if(record, |_| true)
            .expect("a record every table keeps is buffered")
    }

    /// Like [`push`](Self::push), but only when `keep(table)` says so (the sink skips records a
    /// table has already committed): `None` when skipped.
    pub fn push_if(
        &mut self,
        record: &ConsumedRecord,
        keep: impl FnOnce(&str) -> bool,
    ) -> Option<&'static str> {
        let decoded = Event::decode(&record.value);
        let table = match &decoded {
            Ok(event) => schema::table_name(event.kind()),
            Err(_) => REJECTED_TABLE,
        };
        if !keep(table) {
            return None;
        }
        let buffer = self.buffer(table);
        let before = buffer.lines.len();
        match &decoded {
            Ok(event) => write_event_line(&mut buffer.lines, event, record),
            Err(error) => write_rejected_line(&mut buffer.lines, record, error),
        }
        buffer.rows += 1;
        let added = buffer.lines.len() - before;
        self.rows += 1;
        self.bytes += added;
        if decoded.is_err() {
            self.rejected += 1;
        }
        Some(table)
    }

    /// The buffered rows as one batch per table (tables without rows are absent), emptying the
    /// buffers.
    pub fn take(&mut self) -> Result<Vec<(&'static str, RecordBatch)>, LakeError> {
        let tables = std::mem::take(&mut self.tables);
        self.rows = 0;
        self.bytes = 0;
        self.rejected = 0;
        tables
            .into_iter()
            .filter(|(_, b)| b.rows > 0)
            .map(|(name, buffer)| Ok((name, to_batch(name, &buffer)?)))
            .collect()
    }
}

/// One (sku, warehouse) row of an inventory snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotRow {
    pub sku: String,
    pub warehouse: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    /// The `seq` of the inventory document the row comes from (ADR 0006).
    pub as_of_seq: i64,
}

/// The rows of one inventory snapshot taken at `at`, as a batch of `inventory_snapshots`.
pub fn snapshot_batch(at: DateTime<Utc>, rows: &[SnapshotRow]) -> Result<RecordBatch, LakeError> {
    let table = schema::INVENTORY_SNAPSHOTS_TABLE;
    let mut buffer = TableBuffer {
        schema: schema::inventory_snapshot_schema(),
        lines: Vec::with_capacity(rows.len() * 128),
        rows: rows.len(),
    };
    let snapshot_at = at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let date = at.date_naive().format("%Y-%m-%d").to_string();
    for row in rows {
        let line = serde_json::json!({
            "snapshot_at": snapshot_at,
            "sku": row.sku,
            "warehouse": row.warehouse,
            "on_hand": row.on_hand,
            "reserved": row.reserved,
            "available": row.available,
            "as_of_seq": row.as_of_seq,
            "date": date,
        });
        serde_json::to_writer(&mut buffer.lines, &line).expect("JSON values serialize");
        buffer.lines.push(b'\n');
    }
    if rows.is_empty() {
        return Ok(RecordBatch::new_empty(buffer.schema));
    }
    to_batch(table, &buffer)
}

fn to_batch(table: &str, buffer: &TableBuffer) -> Result<RecordBatch, LakeError> {
    let arrow_error = |source| LakeError::Rows {
        table: table.to_owned(),
        source,
    };
    let mut decoder = ReaderBuilder::new(buffer.schema.clone())
        .with_batch_size(buffer.rows.max(1))
        .with_strict_mode(true)
        .build_decoder()
        .map_err(arrow_error)?;
    let mut rest = &buffer.lines[..];
    let mut batches = Vec::with_capacity(1);
    while !rest.is_empty() {
        let read = decoder.decode(rest).map_err(arrow_error)?;
        if read == 0 {
            batches.extend(decoder.flush().map_err(arrow_error)?);
        }
        rest = &rest[read..];
    }
    batches.extend(decoder.flush().map_err(arrow_error)?);
    match batches.len() {
        1 => Ok(batches.pop().expect("one batch")),
        _ => arrow::compute::concat_batches(&buffer.schema, &batches).map_err(arrow_error),
    }
}

fn write_position(out: &mut Vec<u8>, date: chrono::NaiveDate, record: &ConsumedRecord) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        r#""date":"{}","log_partition":{},"log_offset":{}"#,
        date.format("%Y-%m-%d"),
        record.partition,
        record.offset
    );
}

/// `{"event_id":…,"type":…,"schema_version":…,"occurred_at":…,"date":…,"log_partition":…,
/// "log_offset":…, <payload fields>}`.
fn write_event_line(out: &mut Vec<u8>, event: &Event, record: &ConsumedRecord) {
    let occurred_at = event
        .occurred_at
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    let _ = write!(
        out,
        r#"{{"event_id":"{}","type":"{}","schema_version":{},"occurred_at":"{}","#,
        event.event_id.hyphenated(),
        event.kind().as_str(),
        event.schema_version,
        occurred_at,
    );
    write_position(out, event.occurred_at.date_naive(), record);
    // The payload is a JSON object: written in place, its opening brace becomes the comma that
    // splices its fields after ours (an empty object just closes the line).
    let at = out.len();
    serde_json::to_writer(&mut *out, &event.payload).expect("payloads serialize infallibly");
    if out.len() - at == 2 {
        out.truncate(at);
        out.push(b'}');
    } else {
        out[at] = b',';
    }
    out.push(b'\n');
}

/// The rejected record as the dead-letter log keeps rejected input (`DeadLetter::new`: card
/// numbers masked in the bytes and the messages before the bytes are cut), plus its position.
fn write_rejected_line(
    out: &mut Vec<u8>,
    record: &ConsumedRecord,
    error: &emporium_schemas::ValidationError,
) {
    let appended_at = DateTime::<Utc>::from_timestamp_millis(record.timestamp_ms)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let reason = error
        .errors
        .first()
        .map_or(RejectReason::MalformedJson, |e| e.reason);
    let letter = DeadLetter::new(appended_at, "log", 0, reason, &error.errors, &record.value);
    let errors: Vec<String> = letter
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect();
    let line = serde_json::json!({
        "appended_at": record.timestamp_ms,
        "reason": letter.reason,
        "errors": errors.join("; "),
        "raw": letter.raw,
        "raw_base64": letter.raw_base64,
    });
    let mut text = serde_json::to_vec(&line).expect("JSON values serialize infallibly");
    text.pop(); // the closing brace: the position columns follow
    out.extend_from_slice(&text);
    out.push(b',');
    write_position(out, appended_at.date_naive(), record);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use emporium_schemas::{EventKind, examples};

    fn record(partition: u32, offset: u64, value: Vec<u8>) -> ConsumedRecord {
        ConsumedRecord {
            partition,
            offset,
            timestamp_ms: 1_764_000_000_000,
            key: Default::default(),
            value: value.into(),
        }
    }

    #[test]
    fn every_example_event_becomes_a_row_of_its_table() {
        let mut buffers = RowBuffers::new();
        let events: Vec<Event> = EventKind::ALL
            .iter()
            .enumerate()
            .map(|(i, &kind)| examples::example(kind, i as u64))
            .collect();
        for (i, event) in events.iter().enumerate() {
            let table = buffers.push(&record(1, i as u64, event.to_json()));
            assert_eq!(table, event.kind().as_str());
        }
        let batches = buffers.take().expect("the rows convert");
        let total: usize = batches.iter().map(|(_, b)| b.num_rows()).sum();
        assert_eq!(total, events.len());
        for (table, batch) in &batches {
            let expected = schema::sink_table_schema(table).expect("schema");
            assert_eq!(batch.schema().fields(), expected.fields(), "{table}");
            let ids = batch
                .column_by_name("event_id")
                .expect("event_id")
                .as_string::<i32>();
            let offsets = batch
                .column_by_name("log_offset")
                .expect("log_offset")
                .as_primitive::<arrow::datatypes::Int64Type>();
            for row in 0..batch.num_rows() {
                let event = &events[offsets.value(row) as usize];
                assert_eq!(ids.value(row), event.event_id.to_string());
            }
        }
    }

    #[test]
    fn a_record_that_is_not_an_event_goes_to_the_rejected_table_with_its_reason() {
        let mut buffers = RowBuffers::new();
        assert_eq!(
            buffers.push(&record(0, 7, b"{\"nope\":1}".to_vec())),
            REJECTED_TABLE
        );
        assert_eq!(
            buffers.push(&record(0, 8, vec![0xff, 0xfe])),
            REJECTED_TABLE
        );
        assert_eq!(buffers.rejected(), 2);
        let batches = buffers.take().expect("the rows convert");
        let (table, batch) = &batches[0];
        assert_eq!(*table, REJECTED_TABLE);
        assert_eq!(batch.num_rows(), 2);
        let reasons = batch
            .column_by_name("reason")
            .expect("reason")
            .as_string::<i32>();
        assert!(!reasons.value(0).is_empty());
        let raw = batch.column_by_name("raw").expect("raw").as_string::<i32>();
        assert_eq!(raw.value(0), "{\"nope\":1}");
        let b64 = batch
            .column_by_name("raw_base64")
            .expect("raw_base64")
            .as_string::<i32>();
        assert!(raw.is_null(1));
        assert_eq!(b64.value(1), "//4=");
    }
}
