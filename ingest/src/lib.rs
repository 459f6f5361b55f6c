//! Emporium's HTTP intake: validates events and appends them durably to the event log
//! ([`intake`]) behind the HTTP API ([`api`]) for the producers whose tokens allow them
//! ([`producers`]), and keeps what it refuses in the dead-letter log ([`dead_letter`]).
//! The log itself is the `emporium-log` crate; the traffic generator, a producer, is
//! `emporium-generator`.

pub mod api;
pub mod dead_letter;
pub mod dedup;
pub mod intake;
pub mod metrics;
pub mod producers;
pub mod recorder;
