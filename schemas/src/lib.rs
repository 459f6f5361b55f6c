//! Emporium's event vocabulary: the envelope every event travels in, the typed payloads of every
//! event type, their validation (field-level errors with JSON paths), the JSON Schema producers
//! validate against, and the Arrow schema each type lands as in the lakehouse.
//!
//! This crate owns the *shape* of events. It never performs I/O: parsing and validation are pure
//! functions of the bytes and a [`ValidationContext`] (which carries "now"), so every other crate
//! and every test can use them on a `Vec` of events.
//!
//! See `specs/adr/0001-event-envelope-and-evolution.md`.

pub mod accounts;
pub mod arrow;
pub mod catalog;
pub mod dead_letter;
pub mod decisions;
pub mod envelope;
pub mod examples;
pub mod intake;
pub mod json_schema;
pub mod money;
pub mod orders;
pub mod pci;
pub mod reviews;
mod serde_errors;
pub mod shopper;
pub mod stock;
pub mod validate;

pub use envelope::{Event, EventKind, EventKinds, Payload, ProductInSession};
pub use money::Money;
pub use validate::{FieldError, Limits, RejectReason, ValidationContext, ValidationError};
