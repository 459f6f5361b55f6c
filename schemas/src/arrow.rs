//! Arrow schemas: one per event type, the columns its lakehouse table has. Derived from the JSON
//! Schema (itself derived from the Rust types), so the three never disagree: envelope columns first
//! (`event_id`, `type`, `schema_version`, `occurred_at`), then one column per payload field, money
//! as a struct of `amount_minor` and `currency`, lists as Arrow lists, attribute maps as Arrow maps.
//! A field that is optional in JSON is nullable here, which is what lets a field added later read
//! as null in older files (ADR 0001).

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use serde_json::Value;

use crate::envelope::EventKind;
use crate::json_schema::{event_json_schema, payload_schema_of};

fn root() -> &'static Value {
    static ROOT: OnceLock<Value> = OnceLock::new();
    ROOT.get_or_init(event_json_schema)
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Arrow schema of `kind`'s table.
pub fn arrow_schema(kind: EventKind) -> Schema {
    let root = root();
    let mut fields = vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("schema_version", DataType::UInt16, false),
        Field::new("occurred_at", timestamp_type(), false),
    ];
    let payload = payload_schema_of(root, kind)
        .expect("every event kind has a branch in the generated JSON schema");
    match to_arrow(payload, root) {
        (DataType::Struct(payload_fields), _) => {
            fields.extend(payload_fields.iter().map(|f| f.as_ref().clone()))
        }
        (other, _) => panic!("payload of {kind} must be an object, got {other:?}"),
    }
    Schema::new(fields).with_metadata(
        [
            ("emporium.event_type".to_owned(), kind.as_str().to_owned()),
            (
                "emporium.schema_version".to_owned(),
                kind.current_version().to_string(),
            ),
        ]
        .into(),
    )
}

fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            root.pointer(pointer)
                .map(|s| resolve(s, root))
                .unwrap_or(schema)
        }
        None => schema,
    }
}

/// Maps a JSON Schema node to an Arrow type and whether null is allowed.
fn to_arrow(schema: &Value, root: &Value) -> (DataType, bool) {
    let schema = resolve(schema, root);
    for combinator in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(combinator).and_then(Value::as_array) {
            let is_null = |s: &Value| s.get("type").and_then(Value::as_str) == Some("null");
            let nullable = options.iter().any(is_null);
            if let Some(inner) = options.iter().find(|s| !is_null(s)) {
                let (dt, inner_nullable) = to_arrow(inner, root);
                return (dt, nullable || inner_nullable);
            }
        }
    }
    let (ty, nullable) = match schema.get("type") {
        Some(Value::String(t)) => (t.as_str(), false),
        Some(Value::Array(types)) => {
            let nullable = types.iter().any(|t| t == "null");
            let ty = types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null");
            (ty, nullable)
        }
        _ => ("null", true),
    };
    let format = schema.get("format").and_then(Value::as_str);
    let dt = match ty {
        "integer" => match format {
            Some("int32") => DataType::Int32,
            Some("uint8") => DataType::UInt8,
            Some("uint16") => DataType::UInt16,
            Some("uint32") => DataType::UInt32,
            Some("uint64") => DataType::UInt64,
            _ => DataType::Int64,
        },
        "number" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "string" if format == Some("date-time") => timestamp_type(),
        "string" => DataType::Utf8,
        "array" => {
            let (item, item_nullable) = schema
                .get("items")
                .map(|i| to_arrow(i, root))
                .unwrap_or((DataType::Utf8, true));
            DataType::List(Arc::new(Field::new("item", item, item_nullable)))
        }
        "object" => object_type(schema, root),
        _ => DataType::Null,
    };
    (dt, nullable)
}

fn object_type(schema: &Value, root: &Value) -> DataType {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match schema.get("properties").and_then(Value::as_object) {
        Some(properties) => {
            let fields: Fields = properties
                .iter()
                .map(|(name, prop)| {
                    let (dt, nullable) = to_arrow(prop, root);
                    Field::new(name, dt, nullable || !required.contains(&name.as_str()))
                })
                .collect();
            DataType::Struct(fields)
        }
        None => {
            let (value, value_nullable) = schema
                .get("additionalProperties")
                .filter(|v| v.is_object())
                .map(|v| to_arrow(v, root))
                .unwrap_or((DataType::Utf8, true));
            let entries = Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("key", DataType::Utf8, false),
                    Field::new("value", value, value_nullable),
                ])),
                false,
            );
            DataType::Map(Arc::new(entries), false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_placed_has_typed_columns() {
        let schema = arrow_schema(EventKind::OrderPlaced);
        let lines = schema.field_with_name("lines").expect("lines column");
        let DataType::List(item) = lines.data_type() else {
            panic!("lines must be a list, got {:?}", lines.data_type())
        };
        let DataType::Struct(line_fields) = item.data_type() else {
            panic!("a line must be a struct")
        };
        let names: Vec<&str> = line_fields.iter().map(|f| f.name().as_str()).collect();
        assert!(names.contains(&"sku") && names.contains(&"qty") && names.contains(&"unit_price"));
        assert_eq!(
            schema
                .field_with_name("occurred_at")
                .map(|f| f.data_type().clone())
                .ok(),
            Some(timestamp_type())
        );
    }

    #[test]
    fn optional_fields_are_nullable_and_maps_are_maps() {
        let discontinued = arrow_schema(EventKind::ProductDiscontinued);
        assert!(
            discontinued
                .field_with_name("reason")
                .map(|f| f.is_nullable())
                .unwrap_or(false)
        );
        assert!(
            !discontinued
                .field_with_name("product_id")
                .map(|f| f.is_nullable())
                .unwrap_or(true)
        );
        let upserted = arrow_schema(EventKind::ProductUpserted);
        assert!(matches!(
            upserted
                .field_with_name("attributes")
                .map(|f| f.data_type().clone()),
            Ok(DataType::Map(_, _))
        ));
    }

    #[test]
    fn every_kind_has_a_schema_with_its_payload_fields() {
        for &kind in EventKind::ALL {
            let schema = arrow_schema(kind);
            assert!(
                schema.field_with_name(kind.partition_key_field()).is_ok(),
                "{kind} lacks its partition key column"
            );
        }
    }
}
