//! Decision events: what Emporium's inventory dataflow decided about an order, appended to the
//! same log as everything else (issue 3). Keyed by `order_id`, so an order's decisions stay in its
//! lifecycle. Only the platform writes them: ingest refuses them from producers. The pipeline's
//! heartbeats to idle partitions ([`PartitionHeartbeat`]) are platform events too.
//! See `specs/adr/0005-inventory-decisions.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{TextSize, Validator};

/// Units of one order line reserved in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservedLine {
    pub sku: String,
    pub warehouse: String,
    #[schemars(range(min = 1, max = 1_000_000_000_i64))]
    pub qty: i64,
}

/// Every line of the order is reserved (all or nothing), each from one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryReserved {
    pub order_id: String,
    pub lines: Vec<ReservedLine>,
}

/// An order line that no single warehouse could fill when the order was decided.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShortLine {
    pub sku: String,
    #[schemars(range(min = 1, max = 1_000_000_000_i64))]
    pub wanted: i64,
    /// The most any one warehouse had available for this line.
    #[schemars(range(min = 0, max = 1_000_000_000_i64))]
    pub available: i64,
}

/// The order could not be reserved; nothing was.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRejected {
    pub order_id: String,
    pub short_lines: Vec<ShortLine>,
}

/// A reservation was given back: `payment_failed`, `cancelled` or `expired`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationReleased {
    pub order_id: String,
    pub reason: String,
    pub lines: Vec<ReservedLine>,
}

fn validate_lines(v: &mut Validator, lines: &[ReservedLine]) {
    v.list("lines", lines, |v, line| {
        v.id("sku", &line.sku);
        v.id("warehouse", &line.warehouse);
        v.positive("qty", line.qty);
    });
}

impl InventoryReserved {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("order_id", &self.order_id);
        validate_lines(v, &self.lines);
    }
}

impl OrderRejected {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("order_id", &self.order_id);
        v.list("short_lines", &self.short_lines, |v, line| {
            v.id("sku", &line.sku);
            v.positive("wanted", line.wanted);
            v.non_negative("available", line.available);
        });
    }
}

impl ReservationReleased {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("order_id", &self.order_id);
        v.text("reason", &self.reason, TextSize::Short);
        validate_lines(v, &self.lines);
    }
}

/// The pipeline found this partition idle while an event or an expiry waited on the watermark
/// that it held back: its clock moves to `occurred_at`, as if an event of that time had come
/// (ADR 0005). `routing_key` is a key that lands in `partition` (Kafka's partitioner).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionHeartbeat {
    #[schemars(range(max = 4_294_967_295_u32))]
    pub partition: u32,
    pub routing_key: String,
}

impl PartitionHeartbeat {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("routing_key", &self.routing_key);
    }
}
