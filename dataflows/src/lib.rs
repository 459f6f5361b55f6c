//! Emporium's computations over the event log. The computations are pure functions of events —
//! no sockets, files or clocks — fed by a source and drained by a sink at the edge
//! ([`pipeline`], [`checkpoint`]), so a test can run them on a `Vec` of events.
//!
//! - [`event_time`]: the decision time of each event, a pure function of its partition's contents;
//! - [`inventory`]: the inventory decider — stock per (sku, warehouse), all-or-nothing reservations,
//!   releases and shipments, in decision-time order;
//! - [`orders`]: every order's status, lines and transition times, with anomalies;
//! - [`catalog`]: every product's listing;
//! - [`decider`]: the streaming driver that buffers events from every partition and applies them
//!   once the watermark has passed them, so decisions do not depend on how partitions interleave;
//! - [`views`]: the differential dataflow that derives the product documents from the
//!   availability and listings the decider changes, and the plain-fold reference for all
//!   documents;
//! - [`pipeline`]: the timely dataflow that runs all of it over the log on many workers and
//!   processes, appends the decisions and writes the store; [`checkpoint`]: its checkpoints.
//!
//! The decision rule is specified in `specs/adr/0005-inventory-decisions.md`, the documents and the
//! checkpoints in `specs/adr/0006-store-documents-and-engines.md` and
//! `specs/adr/0008-differential-documents-and-checkpoints.md`.

pub mod catalog;
pub mod checkpoint;
pub mod decider;
pub mod event_time;
pub mod heartbeat;
pub mod inventory;
mod metrics;
pub mod orders;
pub mod pipeline;
pub mod views;
