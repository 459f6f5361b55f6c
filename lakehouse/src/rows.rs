//! From log records to Arrow rows: each record is decoded and validated as an event
//! (`Event::decode`), flattened into one JSON line with the columns of its table (envelope fields,
//! `date`, log position, then the payload's fields) and buffered per table; every
//! [`CHUNK_ROWS`] rows a table's lines become a `RecordBatch` (arrow-json), and
//! [`RowBuffers::take`] hands over each table's batches. A record that is not a readable event
//! goes to the [`REJECTED_TABLE`] with its reason, never dropped.

use std::collections::BTreeMap;
use std::io::Write;

use arrow::datatypes::SchemaRef;
use arrow::json::ReaderBuilder;
use arrow::json::reader::Decoder;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use emporium_log::ConsumedRecord;
use emporium_schemas::dead_letter::DeadLetter;
use emporium_schemas::{Event, RejectReason};

use crate::LakeError;
use crate::schema::{self, REJECTED_TABLE};

/// Rows decoded into Arrow at a time: small enough that the JSON lines and arrow-json's tape stay
/// in cache and their memory is reused, large enough for Arrow's per-batch costs not to show.
const CHUNK_ROWS: usize = 8192;

struct TableBuffer {
    decoder: Decoder,
    /// JSON lines not yet decoded (fewer than [`CHUNK_ROWS`]).
    lines: Vec<u8>,
    line_rows: usize,
    /// The rows decoded so far.
    batches: Vec<RecordBatch>,
    rows: usize,
}

impl TableBuffer {
    fn new(table: &str, schema: SchemaRef) -> Result<Self, LakeError> {
        let decoder = ReaderBuilder::new(schema)
            .with_batch_size(CHUNK_ROWS)
            .with_strict_mode(true)
            .build_decoder()
            .map_err(|source| arrow_error(table, source))?;
        Ok(Self {
            decoder,
            lines: Vec::with_capacity(CHUNK_ROWS * 256),
            line_rows: 0,
            batches: Vec::new(),
            rows: 0,
        })
    }

    /// Decodes the buffered lines into Arrow; returns the bytes of Arrow memory they took.
    fn decode_lines(&mut self, table: &str) -> Result<usize, LakeError> {
        let mut rest = &self.lines[..];
        let mut bytes = 0;
        loop {
            let read = self
                .decoder
                .decode(rest)
                .map_err(|source| arrow_error(table, source))?;
            rest = &rest[read..];
            let stuck = read == 0;
            // Whatever is left did not fit the decoder's batch: flush it and go on.
            if let Some(batch) = self
                .decoder
                .flush()
                .map_err(|source| arrow_error(table, source))?
            {
                bytes += batch.get_array_memory_size();
                self.batches.push(batch);
            } else if stuck && !rest.is_empty() {
                return Err(arrow_error(
                    table,
                    arrow::error::ArrowError::JsonError("the decoder took no input".into()),
                ));
            }
            if rest.is_empty() {
                break;
            }
        }
        self.lines.clear();
        self.line_rows = 0;
        Ok(bytes)
    }
}

fn arrow_error(table: &str, source: arrow::error::ArrowError) -> LakeError {
    LakeError::Rows {
        table: table.to_owned(),
        source,
    }
}

/// Rows waiting to be written, per table: decoded into Arrow every [`CHUNK_ROWS`] rows as they
/// come, so that a commit of a million rows has its batches ready.
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

    /// Bytes buffered: the Arrow memory of the decoded rows plus the JSON lines not yet decoded.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records sent to the rejected table since the last [`take`](Self::take).
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    /// Buffers `record` as a row of its event type's table, or of the rejected table. Returns the
    /// table it went to.
    pub fn push(&mut self, record: &ConsumedRecord) -> Result<&'static str, LakeError> {
        Ok(self
            .push_if(record, |_| true)?
            .expect("a record every table keeps is buffered"))
    }

    /// Like [`push`](Self::push), but only when `keep(table)` says so (the sink skips records a
    /// table has already committed): `None` when skipped. An error means the row does not fit its
    /// table's Arrow schema: a bug in the schemas, not bad input (bad input goes to the rejected
    /// table).
    pub fn push_if(
        &mut self,
        record: &ConsumedRecord,
        keep: impl FnOnce(&str) -> bool,
    ) -> Result<Option<&'static str>, LakeError> {
        let decoded = Event::decode(&record.value);
        let table = match &decoded {
            Ok(event) => schema::table_name(event.kind()),
            Err(_) => REJECTED_TABLE,
        };
        if !keep(table) {
            return Ok(None);
        }
        let buffer = match self.tables.entry(table) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let schema =
                    schema::sink_table_schema(table).expect("the sink writes only its own tables");
                e.insert(TableBuffer::new(table, schema)?)
            }
        };
        let before = buffer.lines.len();
        match &decoded {
            Ok(event) => write_event_line(&mut buffer.lines, event, record),
            Err(error) => write_rejected_line(&mut buffer.lines, record, error),
        }
        self.bytes += buffer.lines.len() - before;
        buffer.rows += 1;
        buffer.line_rows += 1;
        if buffer.line_rows >= CHUNK_ROWS {
            let lines = buffer.lines.len();
            let arrow = buffer.decode_lines(table)?;
            self.bytes = self.bytes - lines + arrow;
        }
        self.rows += 1;
        if decoded.is_err() {
            self.rejected += 1;
        }
        Ok(Some(table))
    }

    /// The buffered rows as batches per table (tables without rows are absent), emptying the
    /// buffers. The tables keep their decoders and line buffers for the next rows.
    pub fn take(&mut self) -> Result<Vec<(&'static str, Vec<RecordBatch>)>, LakeError> {
        self.rows = 0;
        self.bytes = 0;
        self.rejected = 0;
        let mut out = Vec::new();
        for (&name, buffer) in &mut self.tables {
            if buffer.rows == 0 {
                continue;
            }
            buffer.decode_lines(name)?;
            buffer.rows = 0;
            out.push((name, std::mem::take(&mut buffer.batches)));
        }
        Ok(out)
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
    let schema = schema::inventory_snapshot_schema();
    if rows.is_empty() {
        return Ok(RecordBatch::new_empty(schema));
    }
    let mut buffer = TableBuffer::new(table, schema.clone())?;
    let snapshot_at = at.timestamp_micros();
    let date = days_since_epoch(at.timestamp_micros());
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
    buffer.decode_lines(table)?;
    arrow::compute::concat_batches(&schema, &buffer.batches).map_err(|e| arrow_error(table, e))
}

/// The UTC day of a time in microseconds since the epoch, as days since the epoch (Arrow `Date32`).
fn days_since_epoch(micros: i64) -> i64 {
    micros.div_euclid(86_400_000_000)
}

/// `"date":<days>,"log_partition":…,"log_offset":…` (dates as days since the epoch, which
/// arrow-json reads into `Date32` without parsing text).
fn write_position(out: &mut Vec<u8>, micros: i64, record: &ConsumedRecord) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        r#""date":{},"log_partition":{},"log_offset":{}"#,
        days_since_epoch(micros),
        record.partition,
        record.offset
    );
}

/// `{"event_id":…,"type":…,"schema_version":…,"occurred_at":…,"date":…,"log_partition":…,
/// "log_offset":…, <payload fields>}`.
fn write_event_line(out: &mut Vec<u8>, event: &Event, record: &ConsumedRecord) {
    // Times as microseconds since the epoch: arrow-json reads a number into a timestamp column as
    // is, where text would be parsed.
    let occurred_at = event.occurred_at.timestamp_micros();
    let _ = write!(
        out,
        r#"{{"event_id":"{}","type":"{}","schema_version":{},"occurred_at":{},"#,
        event.event_id.hyphenated(),
        event.kind().as_str(),
        event.schema_version,
        occurred_at,
    );
    write_position(out, occurred_at, record);
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
    write_position(out, appended_at.timestamp_micros(), record);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use emporium_schemas::{EventKind, examples};

    fn concat(table: &str, batches: &[RecordBatch]) -> RecordBatch {
        let schema = schema::sink_table_schema(table).expect("schema");
        arrow::compute::concat_batches(&schema, batches).expect("one schema")
    }

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
            let table = buffers
                .push(&record(1, i as u64, event.to_json()))
                .expect("a row");
            assert_eq!(table, event.kind().as_str());
        }
        let batches = buffers.take().expect("the rows convert");
        let total: usize = batches
            .iter()
            .flat_map(|(_, b)| b)
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(total, events.len());
        for (table, batches) in &batches {
            let batch = &concat(table, batches);
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
    fn rows_past_a_chunk_keep_their_order_and_count_across_takes() {
        let mut buffers = RowBuffers::new();
        let kinds = [EventKind::ProductViewed, EventKind::CartItemAdded];
        let mut expected: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        let mut got: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        let mut offset = 0u64;
        // Two takes: the second starts from decoders and line buffers the first left behind.
        for rows in [2 * CHUNK_ROWS + 37, CHUNK_ROWS + 1] {
            for i in 0..rows {
                let event = examples::example(kinds[i % 3 / 2], offset);
                let table = buffers
                    .push(&record(0, offset, event.to_json()))
                    .expect("a row");
                expected.entry(table).or_default().push(offset as i64);
                offset += 1;
            }
            assert_eq!(buffers.rows(), rows);
            for (table, batches) in buffers.take().expect("the rows convert") {
                let batch = concat(table, &batches);
                assert_eq!(
                    batches.len(),
                    batch.num_rows().div_ceil(CHUNK_ROWS),
                    "{table} decoded in chunks"
                );
                let offsets = batch
                    .column_by_name("log_offset")
                    .expect("log_offset")
                    .as_primitive::<arrow::datatypes::Int64Type>();
                got.entry(table)
                    .or_default()
                    .extend(offsets.values().iter());
            }
            assert_eq!(buffers.rows(), 0);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn a_record_that_is_not_an_event_goes_to_the_rejected_table_with_its_reason() {
        let mut buffers = RowBuffers::new();
        assert_eq!(
            buffers
                .push(&record(0, 7, b"{\"nope\":1}".to_vec()))
                .expect("a row"),
            REJECTED_TABLE
        );
        assert_eq!(
            buffers
                .push(&record(0, 8, vec![0xff, 0xfe]))
                .expect("a row"),
            REJECTED_TABLE
        );
        assert_eq!(buffers.rejected(), 2);
        let batches = buffers.take().expect("the rows convert");
        let (table, batches) = &batches[0];
        assert_eq!(*table, REJECTED_TABLE);
        let batch = &concat(table, batches);
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
