//! Deliberate defects for `--invalid-fraction`: each turns a valid event into a line that ingest
//! must reject with a precise reason, one kind of defect per validation rule.

use emporium_schemas::EventKind;
use rand::Rng;
use serde_json::{Value, json};

/// The defects, named as the rule they break.
pub const DEFECTS: &[&str] = &[
    "malformed_json",
    "unknown_type",
    "missing_field",
    "unknown_field",
    "invalid_uuid",
    "future_timestamp",
    "invalid_value",
    "card_number",
];

/// Breaks `line` (a valid event's JSON) in one way; returns the new line and the defect's name.
pub fn corrupt(line: &[u8], rng: &mut impl Rng) -> (Vec<u8>, &'static str) {
    let defect = DEFECTS[rng.random_range(0..DEFECTS.len())];
    let Ok(mut v) = serde_json::from_slice::<Value>(line) else {
        return (line.to_vec(), "none");
    };
    match defect {
        "malformed_json" => {
            let cut = line.len() / 2;
            return (line[..cut].to_vec(), defect);
        }
        "unknown_type" => v["type"] = json!("order_teleported"),
        "missing_field" => {
            // The partition key is required in every type.
            let key = v["type"]
                .as_str()
                .and_then(EventKind::from_name)
                .map(EventKind::partition_key_field);
            if let (Some(payload), Some(key)) = (v["payload"].as_object_mut(), key) {
                payload.remove(key);
            }
        }
        "unknown_field" => v["payload"]["coupon_code"] = json!("SAVE10"),
        "invalid_uuid" => v["event_id"] = json!("not-a-uuid"),
        "future_timestamp" => v["occurred_at"] = json!("2099-01-01T00:00:00.000Z"),
        "invalid_value" => {
            v["payload"]["qty"] = json!(0);
            if v["type"] != "cart_item_added" && v["type"] != "cart_item_removed" {
                v["payload"].as_object_mut().map(|p| p.remove("qty"));
                v["schema_version"] = json!(0);
            }
        }
        _ => {
            // card_number: a test card number in the first string field of the payload.
            if let Some(payload) = v["payload"].as_object_mut() {
                let key = payload
                    .iter()
                    .find(|(_, val)| val.is_string())
                    .map(|(k, _)| k.clone());
                if let Some(k) = key {
                    payload.insert(k, json!("4111 1111 1111 1111"));
                }
            }
        }
    }
    let bytes = serde_json::to_vec(&v).unwrap_or_else(|_| line.to_vec());
    (bytes, defect)
}
