//! Routing records to the decider by their head alone (ADR 0005).

use std::sync::atomic::Ordering;

use emporium_dataflows::view::Session;
use emporium_schemas::{Event, EventKind, EventKinds};
use serde::{Deserialize, Serialize};

use crate::stats::PipelineStats;

/// A record on its way to the decider, as its reader routed it ([`route`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Raw {
    pub(crate) partition: u32,
    pub(crate) offset: u64,
    pub(crate) appended_ms: i64,
    pub(crate) read: Read,
}

/// What the decider gets of a record: the event when it reads its type, only its time when it
/// does not, only its position for a decision (its own output) or a record that is not an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Read {
    Event(Vec<u8>),
    /// `occurred_at`, as seconds and nanoseconds since the epoch.
    Tick(i64, u32),
    /// An event a view counts ([`emporium_dataflows::decider::Decider::counts_on`]): its type
    /// (index in [`EventKind::ALL`]), `occurred_at` as a tick's, its product and, for a type a
    /// view counts per session ([`emporium_dataflows::decider::Decider::counts_sessions_on`]),
    /// its session.
    Count(u8, i64, u32, String, Option<Box<Session>>),
    Position,
}

/// Routes a record by its head alone ([`Event::decode_head`]): only the events the decider
/// steps on (`steps`: [`emporium_dataflows::decider::Decider::steps_on`], the folds' types, about one in five of a shop's
/// events, and those a maintained view reads) are decoded, copied and sent whole, by the one
/// worker that decides; the others cost their reader a partial parse. See ADR 0005.
///
/// The events a view only counts (`counts`: product views) cost their reader the head and the
/// payload's `product_id` (and its `user_id` and `session_id`, for the types counted per
/// session: `sessions`), and the decider a sum ([`Read::Count`], ADR 0014).
pub(crate) fn route(
    bytes: &[u8],
    stats: &PipelineStats,
    steps: EventKinds,
    counts: EventKinds,
    sessions: EventKinds,
) -> Read {
    match Event::decode_head(bytes) {
        Ok((kind, _)) if kind.is_decision() => Read::Position,
        Ok((kind, at)) if sessions.contains(kind) && !steps.contains(kind) => {
            match Event::decode_product_in_session(bytes) {
                Ok(read) => Read::Count(
                    kind_index(kind),
                    at.timestamp(),
                    at.timestamp_subsec_nanos(),
                    read.product,
                    Some(Box::new(Session {
                        user: read.user,
                        id: read.session,
                    })),
                ),
                Err(_) => Read::Tick(at.timestamp(), at.timestamp_subsec_nanos()),
            }
        }
        Ok((kind, at)) if counts.contains(kind) && !steps.contains(kind) => {
            match Event::decode_product(bytes) {
                Ok((_, _, product)) => Read::Count(
                    kind_index(kind),
                    at.timestamp(),
                    at.timestamp_subsec_nanos(),
                    product,
                    None,
                ),
                // Accepted into the log, so it has a product; if not, it still moves the clock.
                Err(_) => Read::Tick(at.timestamp(), at.timestamp_subsec_nanos()),
            }
        }
        Ok((kind, at)) if !steps.contains(kind) => {
            Read::Tick(at.timestamp(), at.timestamp_subsec_nanos())
        }
        Ok(_) => Read::Event(bytes.to_vec()),
        Err(_) => {
            stats.undecodable.fetch_add(1, Ordering::Relaxed);
            Read::Position
        }
    }
}

/// `kind`'s index in [`EventKind::ALL`], which [`kind_at`] reverses.
fn kind_index(kind: EventKind) -> u8 {
    EventKind::ALL
        .iter()
        .position(|k| *k == kind)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

/// The event type at `index` in [`EventKind::ALL`].
pub(crate) fn kind_at(index: u8) -> Option<EventKind> {
    EventKind::ALL.get(usize::from(index)).copied()
}
