//! The fault suite: the real `emporium` binary under load while something breaks, on loopback
//! only. Every case ends with the same checks (`harness::check`): every acknowledged event is in
//! the log exactly once, the decisions in the log are the batch reference's over that log (and
//! its heartbeats made no event late), the store holds exactly the reference documents, and the
//! lakehouse holds every record of the log once.
//!
//! Two profiles: the short one runs in `scripts/test`; `scripts/test --long` (or
//! `EMPORIUM_FAULTS=long`) sends more traffic and kills more often. Each case prints its seed;
//! `EMPORIUM_FAULT_SEED=<n>` replays one.
//!
//! | case | module |
//! |---|---|
//! | `kill -9` of `emporium run` at random points; producers back off for seconds and resend | `kill` |
//! | a restart after traffic stopped: reservations still expire on time | `kill` |
//! | `kill -9` of each distributed process (ingest, both pipelines, the lakehouse sink) | `distributed` |
//! | the broker down and back (librdkafka's mock cluster) | `broker` |
//! | the data directory's disk full, then grown (a size-capped tmpfs; needs root) | `disk` |
//! | a slow fsync | `disk` |
//! | log lines that cannot be written (stderr on `/dev/full`) | `disk` |
//! | events sent hours after they occurred, and duplicate deliveries | `disorder` |

#[path = "../support/mod.rs"]
mod support;

mod broker;
mod disk;
mod disorder;
mod distributed;
mod harness;
mod kill;
