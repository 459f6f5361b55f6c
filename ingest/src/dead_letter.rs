//! The dead-letter log: every rejected input line is kept with why it was rejected, never dropped.
//! Entries ([`DeadLetter`], defined with the events in `emporium-schemas`) go to the
//! [`DEAD_LETTER_TOPIC`] of the same event log, one partition, in arrival order.

use serde::Serialize;

use emporium_log::{self as log, DEAD_LETTER_TOPIC, EventLog, Record};
pub use emporium_schemas::dead_letter::{DeadLetter, DeadLetterError, MAX_RAW_BYTES};

/// The dead letter as a record of the dead-letter topic, keyed by its reason.
pub fn record(letter: &DeadLetter) -> Record {
    Record::new(letter.reason.clone().into_bytes(), letter.to_json())
}

/// A dead letter with its position in the dead-letter topic.
#[derive(Debug, Clone, Serialize)]
pub struct StoredDeadLetter {
    pub offset: u64,
    #[serde(flatten)]
    pub letter: DeadLetter,
}

/// Reads up to `limit` dead letters starting at `from`, or at the oldest one retention kept when
/// `from` is older (a browse, like a Kafka consumer at `earliest`: each entry carries its offset).
pub async fn read(
    log: &dyn EventLog,
    from: u64,
    limit: usize,
) -> log::Result<Vec<StoredDeadLetter>> {
    let first = log
        .start_offsets(DEAD_LETTER_TOPIC)
        .await?
        .first()
        .copied()
        .unwrap_or(0);
    let records = log
        .read(DEAD_LETTER_TOPIC, 0, from.max(first), limit)
        .await?;
    Ok(records
        .into_iter()
        .filter_map(|r| {
            serde_json::from_slice(&r.value)
                .ok()
                .map(|letter| StoredDeadLetter {
                    offset: r.offset,
                    letter,
                })
        })
        .collect())
}
