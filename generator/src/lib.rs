//! The shop-traffic generator: a deterministic stream of realistic shop events for demos, tests
//! and benchmarks. Same seed and settings give byte-identical output.
//!
//! The catalog and initial stock come first; then shopper sessions run concurrently through the
//! funnel view → search → cart → order, with product popularity Zipf-distributed; orders move on
//! through payment (a configurable share fails), shipping and delivery, with cancellations,
//! returns, reviews, restocks, price changes and stock adjustments in between. The generator
//! keeps its own rough view of stock, so popular skus run out and some orders ask for more than is
//! left, as in a real shop. A share of lines can be made invalid on purpose ([`corrupt`]).
//!
//! Shoppers have taste ([`taste`]): each user likes a few (subcategory, brand) pairs that drift
//! over weeks, a session browses one of them, and products come with complements bought together.
//! That model is the ground truth of the recommenders' offline evaluation; they never read it.
//! Now and then a user asks to be forgotten (`user_erased`, [`GeneratorConfig::erasure_rate`]) and
//! never shops again.

pub mod catalog;
pub mod corrupt;
pub mod output;
mod popularity;
mod shop;
pub mod taste;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use emporium_schemas::Event;

pub use shop::Generator;

/// Settings of a generated shop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    pub seed: u64,
    pub products: usize,
    pub users: usize,
    pub warehouses: usize,
    /// Share of lines made invalid on purpose (0.0–1.0).
    pub invalid_fraction: f64,
    /// Share of payments that fail (0.0–1.0).
    pub payment_failure_rate: f64,
    /// Event time of the first event.
    pub start: DateTime<Utc>,
    /// How many events make one day of event time (sets the spacing of `occurred_at`).
    pub events_per_day: f64,
    /// Shopper sessions open at once (interleaved in the output).
    pub concurrent_sessions: usize,
    /// Zipf exponent of product popularity.
    pub zipf_exponent: f64,
    /// Multiplies the delays of restocks, cancellations, shipping, delivery, returns and reviews
    /// (hours to days in a real shop); below 1 a demo shows whole order lives within minutes.
    pub fulfilment_scale: f64,
    /// Order numbers start after this one (`o-0000000001` by default). A generator that feeds a
    /// log which already holds orders starts after them (e.g. at the log's event count), so an
    /// order id is never placed twice.
    pub first_order: u64,
    /// Share of product views drawn from the shopper's taste (the session's slot) rather than
    /// from popularity alone ([`taste`]; 0.0–1.0). 0 with no complements is the control where
    /// nothing personal can be learnt.
    pub taste_share: f64,
    /// Chance, per step of traffic, that a user is erased (`user_erased`) and never shops again
    /// (0.0–0.01).
    pub erasure_rate: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            products: 1_000,
            users: 10_000,
            warehouses: 3,
            invalid_fraction: 0.0,
            payment_failure_rate: 0.05,
            start: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .expect("a valid fixed date"),
            events_per_day: 1_000_000.0,
            concurrent_sessions: 64,
            zipf_exponent: 1.07,
            fulfilment_scale: 1.0,
            first_order: 0,
            taste_share: 0.7,
            erasure_rate: 0.000_01,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GeneratorError {
    #[error("{field}: {expected}, got {got}")]
    Config {
        field: &'static str,
        expected: &'static str,
        got: String,
    },
}

impl GeneratorConfig {
    pub fn validate(&self) -> Result<(), GeneratorError> {
        let fail = |field, expected, got: String| {
            Err(GeneratorError::Config {
                field,
                expected,
                got,
            })
        };
        if self.products == 0 {
            return fail("products", "at least 1", self.products.to_string());
        }
        if self.users == 0 {
            return fail("users", "at least 1", self.users.to_string());
        }
        if self.warehouses == 0 {
            return fail("warehouses", "at least 1", self.warehouses.to_string());
        }
        if !(0.0..=1.0).contains(&self.invalid_fraction) {
            return fail(
                "invalid_fraction",
                "a share from 0.0 to 1.0",
                self.invalid_fraction.to_string(),
            );
        }
        if !(0.0..=1.0).contains(&self.payment_failure_rate) {
            return fail(
                "payment_failure_rate",
                "a share from 0.0 to 1.0",
                self.payment_failure_rate.to_string(),
            );
        }
        if self.events_per_day.is_nan() || self.events_per_day <= 0.0 {
            return fail(
                "events_per_day",
                "a positive number",
                self.events_per_day.to_string(),
            );
        }
        if self.concurrent_sessions == 0 {
            return fail(
                "concurrent_sessions",
                "at least 1",
                self.concurrent_sessions.to_string(),
            );
        }
        if !(self.fulfilment_scale > 0.0 && self.fulfilment_scale <= 1_000.0) {
            return fail(
                "fulfilment_scale",
                "a positive factor of at most 1000",
                self.fulfilment_scale.to_string(),
            );
        }
        if !(0.0..=1.0).contains(&self.taste_share) {
            return fail(
                "taste_share",
                "a share from 0.0 to 1.0",
                self.taste_share.to_string(),
            );
        }
        if !(0.0..=0.01).contains(&self.erasure_rate) {
            return fail(
                "erasure_rate",
                "a chance per step from 0.0 to 0.01",
                self.erasure_rate.to_string(),
            );
        }
        if self.zipf_exponent.is_nan() || self.zipf_exponent <= 0.0 {
            return fail(
                "zipf_exponent",
                "a positive number",
                self.zipf_exponent.to_string(),
            );
        }
        Ok(())
    }
}

/// One generated line.
#[derive(Debug, Clone, PartialEq)]
pub enum Generated {
    Valid(Event),
    /// A deliberately invalid line (no newline), and what was broken.
    Invalid {
        line: Vec<u8>,
        defect: &'static str,
    },
}

impl Generated {
    /// Appends the NDJSON line (with its newline) to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        match self {
            Generated::Valid(event) => event.write_json(out),
            Generated::Invalid { line, .. } => out.extend_from_slice(line),
        }
        out.push(b'\n');
    }
}
