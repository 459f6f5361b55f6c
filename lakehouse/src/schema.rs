//! The lakehouse tables and their columns (ADR 0009).
//!
//! One Delta table per event type, named after it (`order_placed`, ...), with the columns of the
//! type's Arrow schema (`emporium_schemas::arrow`), plus three the sink adds:
//!
//! - `date` (`DATE`): the UTC day of `occurred_at`, the Hive partition column (`date=2026-11-25`);
//! - `log_partition`, `log_offset`: where the event sits in the log, so that every row can be
//!   traced back to its record (and duplicates would show).
//!
//! Delta Lake has no unsigned integers, so unsigned columns widen to the next signed type
//! (`UInt16` to `INT`, `UInt32` to `BIGINT`; `UInt64` to `BIGINT`, whose range covers every
//! quantity and amount the schemas accept). A record the sink cannot read goes to the
//! [`REJECTED_TABLE`] with its reason: the lake's dead-letter table.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use emporium_schemas::EventKind;

/// The partition column of every table.
pub const DATE_COLUMN: &str = "date";
/// Records of the log that are not a readable event, with why.
pub const REJECTED_TABLE: &str = "rejected_records";
/// Periodic inventory snapshots per (sku, warehouse).
pub const INVENTORY_SNAPSHOTS_TABLE: &str = "inventory_snapshots";

/// The name of `kind`'s table.
pub fn table_name(kind: EventKind) -> &'static str {
    kind.as_str()
}

/// The names of every table the sink writes, event types first.
pub fn sink_tables() -> impl Iterator<Item = &'static str> {
    EventKind::ALL
        .iter()
        .map(|&k| table_name(k))
        .chain(std::iter::once(REJECTED_TABLE))
}

fn widen(dt: &DataType) -> DataType {
    match dt {
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::List(item) => DataType::List(Arc::new(widen_field(item))),
        DataType::Struct(fields) => DataType::Struct(widen_fields(fields)),
        DataType::Map(entries, sorted) => DataType::Map(Arc::new(widen_field(entries)), *sorted),
        other => other.clone(),
    }
}

fn widen_field(f: &Field) -> Field {
    Field::new(f.name(), widen(f.data_type()), f.is_nullable())
}

fn widen_fields(fields: &Fields) -> Fields {
    fields.iter().map(|f| widen_field(f)).collect()
}

fn position_columns() -> [Field; 3] {
    [
        Field::new(DATE_COLUMN, DataType::Date32, false),
        Field::new("log_partition", DataType::Int32, false),
        Field::new("log_offset", DataType::Int64, false),
    ]
}

/// The columns of `kind`'s table: the event's, widened for Delta, then `date`, `log_partition`
/// and `log_offset`.
pub fn event_table_schema(kind: EventKind) -> SchemaRef {
    let source = emporium_schemas::arrow::arrow_schema(kind);
    let mut fields: Vec<Field> = source.fields().iter().map(|f| widen_field(f)).collect();
    fields.extend(position_columns());
    Arc::new(Schema::new(fields))
}

/// The columns of [`REJECTED_TABLE`]: the record's position and log time, why it was rejected,
/// and its bytes (as text when they are UTF-8, else base64).
pub fn rejected_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new(
            "appended_at",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("reason", DataType::Utf8, false),
        Field::new("errors", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, true),
        Field::new("raw_base64", DataType::Utf8, true),
    ];
    fields.extend(position_columns());
    Arc::new(Schema::new(fields))
}

/// The columns of [`INVENTORY_SNAPSHOTS_TABLE`].
pub fn inventory_snapshot_schema() -> SchemaRef {
    let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("snapshot_at", ts.clone(), false),
        Field::new("sku", DataType::Utf8, false),
        Field::new("warehouse", DataType::Utf8, false),
        Field::new("on_hand", DataType::Int64, false),
        Field::new("reserved", DataType::Int64, false),
        Field::new("available", DataType::Int64, false),
        Field::new("as_of_seq", DataType::Int64, false),
        Field::new(DATE_COLUMN, DataType::Date32, false),
    ]))
}

/// The schema of `table`, if the sink writes it.
pub fn sink_table_schema(table: &str) -> Option<SchemaRef> {
    if table == REJECTED_TABLE {
        return Some(rejected_schema());
    }
    EventKind::from_name(table).map(event_table_schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_unsigned(dt: &DataType) -> bool {
        match dt {
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => true,
            DataType::List(f) => has_unsigned(f.data_type()),
            DataType::Struct(fs) => fs.iter().any(|f| has_unsigned(f.data_type())),
            DataType::Map(f, _) => has_unsigned(f.data_type()),
            _ => false,
        }
    }

    #[test]
    fn every_table_has_signed_columns_and_the_position_columns() {
        for name in sink_tables() {
            let schema = sink_table_schema(name).expect("a sink table has a schema");
            for f in schema.fields() {
                assert!(
                    !has_unsigned(f.data_type()),
                    "{name}.{} is unsigned",
                    f.name()
                );
            }
            for column in [DATE_COLUMN, "log_partition", "log_offset"] {
                assert!(
                    schema.field_with_name(column).is_ok(),
                    "{name} lacks {column}"
                );
            }
        }
    }

    #[test]
    fn order_placed_keeps_its_payload_columns() {
        let schema = event_table_schema(EventKind::OrderPlaced);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        for column in [
            "event_id",
            "type",
            "occurred_at",
            "order_id",
            "user_id",
            "lines",
        ] {
            assert!(names.contains(&column), "missing {column}: {names:?}");
        }
        assert_eq!(
            schema
                .field_with_name("schema_version")
                .map(|f| f.data_type().clone())
                .ok(),
            Some(DataType::Int32)
        );
    }
}
