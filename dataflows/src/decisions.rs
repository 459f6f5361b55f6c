//! Decision events: what the decider's outputs become in the log, with deterministic ids (UUIDv5
//! of kind and order id), so a replay produces the same ids and a pipeline can tell the decisions
//! already appended from new ones.

use emporium_schemas::{Event, EventKind, Payload};
use uuid::Uuid;

use crate::inventory::Output;

/// The namespace of decision event ids (UUIDv5 of `"<type>:<order_id>"`).
pub const DECISION_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_0b7e_2d4a_4e61_9c83_7a2b_e6d4_1f09);

/// The deterministic id of the decision of type `kind` for order `order_id`.
pub fn decision_id(kind: EventKind, order_id: &str) -> Uuid {
    Uuid::new_v5(&DECISION_NAMESPACE, format!("{kind}:{order_id}").as_bytes())
}

/// The decision event for a decider output, with its deterministic id.
pub fn decision_event(at: chrono::DateTime<chrono::Utc>, payload: Payload) -> Event {
    // Decision types are keyed by order_id (schemas' type table), so the key is the order.
    let id = decision_id(payload.kind(), payload.partition_key());
    Event::new(id, at, payload)
}

/// The decision events among decider outputs, in order, with their ids: what the pipeline
/// appends for them.
pub fn decision_events(outputs: Vec<Output>) -> impl Iterator<Item = Event> {
    outputs.into_iter().filter_map(|o| match o {
        Output::Decision { at, payload } => Some(decision_event(at, payload)),
        Output::Anomaly { .. } => None,
    })
}
