//! The JSON Schema of the wire format, generated from the Rust types and from the validator, so it
//! cannot drift from what ingest accepts: the types give the shapes; the validator, run over each
//! type's example in a recording mode, says which strings are identifiers (non-empty, no control
//! characters, at most 128 characters) or texts (their length), which lists must hold an item, and
//! the bounds of maps. The committed copy is `schemas/event.schema.json`; a test fails when it is
//! stale (regenerate with `emporium schema json > schemas/event.schema.json`). What no JSON Schema
//! can say stays the validator's alone: no card number in any string, no time in the future, one
//! currency per order. `tests/contract.rs` checks both ways with generated events.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::envelope::EventKind;
use crate::validate::{Limits, PathPart, Rule, Validator};

/// RFC 3339 in UTC, as the validator reads it (`Z` or a zero offset).
const UTC_TIMESTAMP: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-]00:00)$";
/// A UUID in its hyphenated form (either case).
const HYPHENATED_UUID: &str =
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// No control character (Unicode category Cc, what `char::is_control` finds).
const NO_CONTROL: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";

/// The JSON Schema (draft 2020-12) of one event: a `oneOf` with one branch per event type.
pub fn event_json_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let branches: Vec<Value> = EventKind::ALL
        .iter()
        .map(|&kind| {
            let payload = kind.payload_schema(&mut generator);
            let mut branch = json!({
                "title": kind.as_str(),
                "type": "object",
                "additionalProperties": false,
                "required": ["event_id", "type", "schema_version", "occurred_at", "payload"],
                "properties": {
                    "event_id": {
                        "description": "Idempotency key chosen by the producer, hyphenated.",
                        "type": "string",
                        "format": "uuid",
                        "pattern": HYPHENATED_UUID
                    },
                    "type": { "const": kind.as_str() },
                    "schema_version": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": kind.current_version()
                    },
                    "occurred_at": {
                        "description": "RFC 3339 in UTC (Z or +00:00), not later than the receiver's clock plus its allowed skew.",
                        "type": "string",
                        "format": "date-time",
                        "pattern": UTC_TIMESTAMP
                    },
                    "payload": payload
                }
            });
            if kind.is_system() {
                branch["description"] = json!(
                    "Written only by Emporium's dataflows: it is in the log, and ingest refuses it from producers (403)."
                );
            }
            branch
        })
        .collect();
    let defs = generator.take_definitions(true);
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Emporium event",
        "description": "One event of the Emporium event log. Partition keys and evolution rules: specs/adr/0001-event-envelope-and-evolution.md. Beyond this schema, the validator refuses any string holding a payment card number (13-19 digits passing Luhn, in any digit form or grouping), an occurred_at later than its clock plus the allowed skew, and an order whose lines are in different currencies.",
        "oneOf": branches,
        "$defs": defs
    });
    add_validator_rules(&mut root);
    root
}

/// Asks the validator which rule applies where (over each type's example, whose optional fields
/// and lists are filled) and writes each rule into the schema.
fn add_validator_rules(root: &mut Value) {
    let limits = Limits::default();
    for (i, &kind) in EventKind::ALL.iter().enumerate() {
        let example = crate::examples::example(kind, 0);
        let mut v = Validator::recording(&limits, "payload");
        example.payload.validate(&mut v);
        for (path, rule) in v.into_rules() {
            let mut at = format!("/oneOf/{i}/properties/payload");
            for part in &path {
                at = resolve(root, at);
                at += match part {
                    PathPart::Field(name) => format!("/properties/{name}"),
                    PathPart::Item => "/items".to_owned(),
                    PathPart::Value => "/additionalProperties".to_owned(),
                }
                .as_str();
            }
            let at = resolve(root, at);
            if let Some(Value::Object(node)) = root.pointer_mut(&at) {
                apply(node, &rule);
            }
        }
    }
}

/// The pointer of the schema `at` refers to, following a `$ref` into `$defs`.
fn resolve(root: &Value, at: String) -> String {
    match root
        .pointer(&at)
        .and_then(|node| node.get("$ref"))
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
    {
        Some(target) => target.to_owned(),
        None => at,
    }
}

fn apply(node: &mut serde_json::Map<String, Value>, rule: &Rule) {
    match *rule {
        Rule::Id(max) => {
            node.insert("minLength".into(), json!(1));
            node.insert("maxLength".into(), json!(max));
            node.insert("pattern".into(), json!(NO_CONTROL));
        }
        Rule::Text(max) => {
            node.insert("maxLength".into(), json!(max));
        }
        Rule::List(max) => {
            node.insert("minItems".into(), json!(1));
            node.insert("maxItems".into(), json!(max));
        }
        Rule::Map(entries, key, value) => {
            node.insert("maxProperties".into(), json!(entries));
            node.insert("propertyNames".into(), json!({ "maxLength": key }));
            if let Some(Value::Object(values)) = node.get_mut("additionalProperties") {
                values.insert("maxLength".into(), json!(value));
            }
        }
    }
}

/// The JSON Schema of one event type's payload, with definitions resolved against `root`.
pub(crate) fn payload_schema_of(root: &Value, kind: EventKind) -> Option<&Value> {
    root.get("oneOf")?
        .as_array()?
        .iter()
        .find(|b| b.get("title").and_then(Value::as_str) == Some(kind.as_str()))?
        .pointer("/properties/payload")
}
