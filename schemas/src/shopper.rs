//! Shopper events: the funnel from a view to a cart. Keyed by `user_id`, so one shopper's session
//! stays in order.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{TextSize, Validator};

/// A shopper opened a product page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductViewed {
    pub user_id: String,
    pub session_id: String,
    pub product_id: String,
}

impl ProductViewed {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("user_id", &self.user_id);
        v.id("session_id", &self.session_id);
        v.id("product_id", &self.product_id);
    }
}

/// A shopper searched the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchPerformed {
    pub user_id: String,
    pub session_id: String,
    pub query: String,
    #[schemars(range(min = 0, max = 1_000_000_000_i64))]
    pub result_count: i64,
}

impl SearchPerformed {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("user_id", &self.user_id);
        v.id("session_id", &self.session_id);
        v.text("query", &self.query, TextSize::Short);
        v.non_negative("result_count", self.result_count);
    }
}

/// A shopper put units of a sku in their cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CartItemAdded {
    pub user_id: String,
    pub session_id: String,
    pub sku: String,
    #[schemars(range(min = 1, max = 1_000_000_000_i64))]
    pub qty: i64,
}

/// A shopper took units of a sku out of their cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CartItemRemoved {
    pub user_id: String,
    pub session_id: String,
    pub sku: String,
    #[schemars(range(min = 1, max = 1_000_000_000_i64))]
    pub qty: i64,
}

fn validate_cart_change(v: &mut Validator, user_id: &str, session_id: &str, sku: &str, qty: i64) {
    v.id("user_id", user_id);
    v.id("session_id", session_id);
    v.id("sku", sku);
    v.positive("qty", qty);
}

impl CartItemAdded {
    pub(crate) fn validate(&self, v: &mut Validator) {
        validate_cart_change(v, &self.user_id, &self.session_id, &self.sku, self.qty);
    }
}

impl CartItemRemoved {
    pub(crate) fn validate(&self, v: &mut Validator) {
        validate_cart_change(v, &self.user_id, &self.session_id, &self.sku, self.qty);
    }
}
