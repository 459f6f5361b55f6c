//! Emporium's write path: the event log every other part reads ([`log`]), the HTTP ingest API
//! that validates events and appends them durably, and the shop-traffic generator.

pub mod log;
