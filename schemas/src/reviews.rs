//! Review events. Keyed by `product_id`, so a product's reviews stay in order.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{TextSize, Validator};

/// A shopper reviewed a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewPosted {
    pub review_id: String,
    pub product_id: String,
    pub user_id: String,
    /// 1 (worst) to 5 (best) stars.
    #[schemars(range(min = 1, max = 5))]
    pub rating: i64,
    pub text: String,
}

impl ReviewPosted {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("review_id", &self.review_id);
        v.id("product_id", &self.product_id);
        v.id("user_id", &self.user_id);
        let rating = self.rating;
        v.field("rating", |v| {
            if !(1..=5).contains(&rating) {
                v.invalid(format!("expected an integer from 1 to 5, got {rating}"));
            }
        });
        v.text("text", &self.text, TextSize::Long);
    }
}
