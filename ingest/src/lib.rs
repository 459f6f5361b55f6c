//! Emporium's write path: the event log every other part reads ([`log`]), the intake that
//! validates events and appends them durably ([`intake`]) behind the HTTP API ([`api`]) for the
//! producers whose tokens allow them ([`producers`]), the
//! dead-letter log ([`dead_letter`]), and the shop-traffic generator ([`generator`]).

pub mod api;
pub mod dead_letter;
pub mod dedup;
pub mod generator;
pub mod intake;
pub mod log;
pub mod metrics;
pub mod producers;
