//! The JSON Schema of the wire format, generated from the Rust types so it cannot drift from what
//! ingest accepts. The committed copy is `schemas/event.schema.json`; a test fails when it is stale
//! (regenerate with `emporium schema json > schemas/event.schema.json`).

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::envelope::EventKind;

/// The JSON Schema (draft 2020-12) of one event: a `oneOf` with one branch per event type.
pub fn event_json_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let branches: Vec<Value> = EventKind::ALL
        .iter()
        .map(|&kind| {
            let payload = kind.payload_schema(&mut generator);
            json!({
                "title": kind.as_str(),
                "type": "object",
                "additionalProperties": false,
                "required": ["event_id", "type", "schema_version", "occurred_at", "payload"],
                "properties": {
                    "event_id": {
                        "description": "Idempotency key chosen by the producer.",
                        "type": "string",
                        "format": "uuid"
                    },
                    "type": { "const": kind.as_str() },
                    "schema_version": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": kind.current_version()
                    },
                    "occurred_at": {
                        "description": "RFC 3339 in UTC (Z or +00:00).",
                        "type": "string",
                        "format": "date-time"
                    },
                    "payload": payload
                }
            })
        })
        .collect();
    let defs = generator.take_definitions(true);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Emporium event",
        "description": "One event of the Emporium event log. Partition keys, evolution rules and validation rules beyond this schema (PCI guard, future timestamps, sizes): specs/adr/0001-event-envelope-and-evolution.md.",
        "oneOf": branches,
        "$defs": defs
    })
}

/// The JSON Schema of one event type's payload, with definitions resolved against `root`.
pub(crate) fn payload_schema_of(root: &Value, kind: EventKind) -> Option<&Value> {
    root.get("oneOf")?
        .as_array()?
        .iter()
        .find(|b| b.get("title").and_then(Value::as_str) == Some(kind.as_str()))?
        .pointer("/properties/payload")
}
