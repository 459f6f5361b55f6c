//! Order, payment and fulfilment events: one order's lifecycle. Keyed by `order_id`, so an order's
//! events stay in order within one partition.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::validate::{TextSize, Validator};

/// One line of an order: units of a sku at the unit price the shopper saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub sku: String,
    #[schemars(range(min = 1, max = 1_000_000_000_i64))]
    pub qty: i64,
    pub unit_price: Money,
}

/// A shopper placed an order; inventory decides later whether it can be reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderPlaced {
    pub order_id: String,
    pub user_id: String,
    pub lines: Vec<OrderLine>,
    /// Where it ships to, e.g. `us-east`, `eu-west`.
    pub shipping_region: String,
    /// The payment provider's opaque token; never card data.
    pub payment_token: String,
}

impl OrderPlaced {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("order_id", &self.order_id);
        v.id("user_id", &self.user_id);
        let currency = self.lines.first().map(|l| l.unit_price.currency.as_str());
        v.list("lines", &self.lines, |v, line| {
            v.id("sku", &line.sku);
            v.positive("qty", line.qty);
            v.price("unit_price", &line.unit_price);
            if Some(line.unit_price.currency.as_str()) != currency {
                v.field("unit_price", |v| {
                    v.field("currency", |v| {
                        v.invalid(format!(
                            "expected every line in the order's currency {:?}, got {:?}",
                            currency.unwrap_or_default(),
                            line.unit_price.currency
                        ))
                    })
                });
            }
        });
        v.id("shipping_region", &self.shipping_region);
        v.id("payment_token", &self.payment_token);
    }

    /// The order's total in minor units (lines × unit price).
    pub fn total_minor(&self) -> i64 {
        self.lines
            .iter()
            .map(|l| l.qty.saturating_mul(l.unit_price.amount_minor))
            .fold(0_i64, i64::saturating_add)
    }
}

/// The shopper cancelled the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCancelled {
    pub order_id: String,
    pub reason: String,
}

impl OrderCancelled {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("order_id", &self.order_id);
        v.text("reason", &self.reason, TextSize::Short);
    }
}

/// The payment provider authorised the order's amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentAuthorized {
    pub order_id: String,
    pub amount: Money,
    pub payment_token: String,
}

impl PaymentAuthorized {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("order_id", &self.order_id);
        v.price("amount", &self.amount);
        v.id("payment_token", &self.payment_token);
    }
}

/// The payment provider declined the order's amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentFailed {
    pub order_id: String,
    pub amount: Money,
    pub payment_token: String,
    /// The provider's decline reason, e.g. `insufficient_funds`.
    pub reason: String,
}

impl PaymentFailed {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("order_id", &self.order_id);
        v.price("amount", &self.amount);
        v.id("payment_token", &self.payment_token);
        v.text("reason", &self.reason, TextSize::Short);
    }
}

/// The order left the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderShipped {
    pub order_id: String,
    pub carrier: String,
    pub tracking_number: String,
}

impl OrderShipped {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("order_id", &self.order_id);
        v.id("carrier", &self.carrier);
        v.id("tracking_number", &self.tracking_number);
    }
}

/// The carrier delivered the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderDelivered {
    pub order_id: String,
}

impl OrderDelivered {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("order_id", &self.order_id);
    }
}

/// Units of a sku the shopper sends back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnLine {
    pub sku: String,
    #[schemars(range(min = 1, max = 1_000_000_000_i64))]
    pub qty: i64,
}

/// The shopper asked to return (part of) a delivered order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnRequested {
    pub order_id: String,
    pub lines: Vec<ReturnLine>,
    pub reason: String,
}

impl ReturnRequested {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("order_id", &self.order_id);
        v.list("lines", &self.lines, |v, line| {
            v.id("sku", &line.sku);
            v.positive("qty", line.qty);
        });
        v.text("reason", &self.reason, TextSize::Short);
    }
}
