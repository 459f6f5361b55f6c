//! Emporium's computations over the event log. Every computation here is a pure function of
//! events — no sockets, files or clocks — fed by a source and drained by a sink at the edge, so a
//! test can run it on a `Vec` of events.
//!
//! - [`event_time`]: the decision time of each event, a pure function of its partition's contents;
//! - [`inventory`]: the inventory decider — stock per (sku, warehouse), all-or-nothing reservations,
//!   releases and shipments, in decision-time order;
//! - [`orders`]: every order's status, lines and transition times, with anomalies;
//! - [`decider`]: the streaming driver that buffers events from every partition and applies them
//!   once the watermark has passed them, so decisions do not depend on how partitions interleave.
//!
//! The rule is specified in `specs/adr/0005-inventory-decisions.md`. The timely/differential
//! dataflow that runs it on many workers is the next step of issue 3.

pub mod catalog;
pub mod checkpoint;
pub mod decider;
pub mod event_time;
pub mod inventory;
mod metrics;
pub mod orders;
pub mod pipeline;
pub mod views;
