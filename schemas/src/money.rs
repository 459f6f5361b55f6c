//! Money: integer minor units with an ISO 4217 currency. Never a float.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An amount of money in the currency's minor unit (cents for USD, yen for JPY).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Amount in minor units: a price, from 0 to 999,999,999,999.
    #[schemars(range(min = 0, max = 999_999_999_999_i64))]
    pub amount_minor: i64,
    /// ISO 4217 code: three upper-case letters.
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
}

impl Money {
    pub fn new(amount_minor: i64, currency: &str) -> Self {
        Self {
            amount_minor,
            currency: currency.to_owned(),
        }
    }
}
