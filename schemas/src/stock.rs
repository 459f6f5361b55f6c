//! Stock events: physical units arriving at or leaving a warehouse outside of orders. Keyed by `sku`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{TextSize, Validator};

/// Units of a sku arrived at a warehouse (a delivery from a supplier, a restock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StockReceived {
    pub sku: String,
    pub warehouse: String,
    #[schemars(range(min = 1, max = 1_000_000_000_i64))]
    pub quantity: i64,
    /// Why it arrived, e.g. `purchase_order`, `initial_stock`, `return_restock`.
    pub reason: String,
}

impl StockReceived {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("sku", &self.sku);
        v.id("warehouse", &self.warehouse);
        v.positive("quantity", self.quantity);
        v.text("reason", &self.reason, TextSize::Short);
    }
}

/// A correction of on-hand units after a count, damage or loss; `delta` is signed and non-zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjusted {
    pub sku: String,
    pub warehouse: String,
    /// Units added (positive) or removed (negative), at most 1,000,000,000 either way; never 0.
    #[schemars(range(min = -1_000_000_000_i64, max = 1_000_000_000_i64), extend("not" = {"const": 0}))]
    pub delta: i64,
    /// Why, e.g. `cycle_count`, `damaged`, `lost`.
    pub reason: String,
}

impl StockAdjusted {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("sku", &self.sku);
        v.id("warehouse", &self.warehouse);
        let delta = self.delta;
        v.field("delta", |v| {
            if delta == 0 {
                v.invalid("expected a non-zero integer, got 0".to_owned());
            } else if delta.unsigned_abs() > crate::validate::MAX_QUANTITY.unsigned_abs() {
                v.invalid(format!(
                    "expected a change of at most {} units either way, got {delta}",
                    crate::validate::MAX_QUANTITY
                ));
            }
        });
        v.text("reason", &self.reason, TextSize::Short);
    }
}
