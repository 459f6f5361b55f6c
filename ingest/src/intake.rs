//! Intake: turns a request body into durably appended events. Every line is validated; valid
//! lines are appended as the producer's own bytes (no re-serialization), keyed by their partition
//! key; invalid lines go to the dead-letter log with their reasons; ids already in the log are
//! acknowledged without a second append. It answers only after the log acknowledged durability,
//! and on failure acknowledges nothing, so a resend of the whole batch is always safe.
//! See `specs/adr/0004-ingest-durability-and-idempotency.md`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
pub use emporium_schemas::intake::{IntakeReport, RejectedField, RejectedLine};
use emporium_schemas::{
    Event, EventKind, FieldError, Limits, RejectReason, ValidationContext, ValidationError,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::dead_letter::{self, DeadLetter};
use crate::dedup::{Claim, Dedup};
use crate::metrics;
use crate::producers::{Grant, peek_kind};
use emporium_log::{self as log, DEAD_LETTER_TOPIC, EVENTS_TOPIC, EventLog, LogError, Record};

/// Settings of the ingest path; defaults suit one machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeConfig {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Most lines in one NDJSON batch (413 above).
    pub max_batch_lines: usize,
    /// Largest single event; a longer line is rejected (dead-lettered) on its own.
    pub max_event_bytes: usize,
    /// How many recent event ids are remembered for idempotency.
    pub dedup_window: usize,
    /// Partitions of the events topic when Emporium creates it.
    pub event_partitions: u32,
    /// Seconds a client is asked to wait (Retry-After) when the log is unavailable.
    pub retry_after_secs: u64,
    /// How far ahead of this server's clock `occurred_at` may be, in seconds.
    pub max_future_skew_secs: i64,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_batch_lines: 10_000,
            max_event_bytes: 256 * 1024,
            dedup_window: 5_000_000,
            event_partitions: 4,
            retry_after_secs: 1,
            max_future_skew_secs: 300,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the request body is empty: send one JSON event or NDJSON lines")]
    EmptyBody,
    #[error("the batch has {lines} lines; at most {max} are accepted per request")]
    TooManyLines { lines: usize, max: usize },
    #[error(
        "the event log could not acknowledge the batch; nothing of it was acknowledged, resend it whole: {0}"
    )]
    Unavailable(LogError),
    /// An append failure that a resend cannot fix (a bug or a misconfiguration, not an outage).
    #[error("the event log refused the batch: {0}")]
    Refused(LogError),
    /// A line of a type the producer's token does not allow: nothing of the request is kept.
    #[error("line {index}: {why}; nothing of this request was appended")]
    Forbidden { index: usize, why: String },
}

/// The shape of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON document.
    Single,
    /// Newline-delimited JSON, one event per line.
    Ndjson,
}

struct ValidLine {
    id: Uuid,
    kind: EventKind,
    key: Bytes,
    raw: Bytes,
}

struct InvalidLine {
    index: usize,
    error: ValidationError,
    raw: Bytes,
}

/// The write path behind `POST /v1/events`.
pub struct Intake {
    log: Arc<dyn EventLog>,
    dedup: Dedup,
    config: IntakeConfig,
}

impl Intake {
    /// Creates the topics if needed and rebuilds the idempotency window from the log's tail.
    pub async fn start(log: Arc<dyn EventLog>, config: IntakeConfig) -> log::Result<Arc<Self>> {
        emporium_ops::metrics::install();
        log.ensure_topic(EVENTS_TOPIC, config.event_partitions)
            .await?;
        log.ensure_topic(DEAD_LETTER_TOPIC, 1).await?;
        let dedup = Dedup::new(config.dedup_window);
        let rebuilt = rebuild_window(log.as_ref(), &dedup, config.dedup_window).await?;
        tracing::info!(ids = rebuilt, "idempotency window rebuilt from the log");
        Ok(Arc::new(Self { log, dedup, config }))
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    pub fn config(&self) -> &IntakeConfig {
        &self.config
    }

    /// Validates, deduplicates and appends the events in `body`; see the module docs.
    ///
    /// The work runs in its own task: a client that disconnects mid-request cannot cancel it
    /// between the append and the settling of its idempotency claims.
    /// `grant` says which event types the request's producer may send: a line of another type
    /// refuses the whole request ([`IntakeError::Forbidden`]).
    pub async fn submit(
        self: &Arc<Self>,
        body: Bytes,
        format: BodyFormat,
        source: String,
        grant: Grant,
    ) -> Result<IntakeReport, IntakeError> {
        let this = Arc::clone(self);
        tokio::spawn(async move { this.submit_in_task(body, format, &source, grant).await })
            .await
            .map_err(|e| IntakeError::Refused(LogError::Unavailable(format!("ingest task: {e}"))))?
    }

    async fn submit_in_task(
        &self,
        body: Bytes,
        format: BodyFormat,
        source: &str,
        grant: Grant,
    ) -> Result<IntakeReport, IntakeError> {
        metrics::bytes_received(body.len() as u64);
        let limits = Limits {
            max_future_skew: chrono::Duration::seconds(self.config.max_future_skew_secs),
            ..Limits::default()
        };
        let (max_lines, max_event) = (self.config.max_batch_lines, self.config.max_event_bytes);
        // Parsing, validation and the dead letters' card masking are CPU work: keep them off the
        // threads that answer HTTP. A panic in them is a bug, not an outage: 500, so the client
        // does not resend the same batch forever.
        let source = source.to_owned();
        let (valid, invalid, letters) = tokio::task::spawn_blocking(move || {
            let (valid, invalid) = parse_body(&body, format, limits, max_lines, max_event, &grant)?;
            let received_at = Utc::now();
            let letters: Vec<Record> = invalid
                .iter()
                .map(|l| {
                    metrics::event_rejected(l.error.reason());
                    dead_letter::record(&DeadLetter::new(
                        received_at,
                        &source,
                        l.index,
                        l.error.reason(),
                        &l.error.errors,
                        &l.raw,
                    ))
                })
                .collect();
            Ok::<_, IntakeError>((valid, invalid, letters))
        })
        .await
        .map_err(|e| IntakeError::Refused(LogError::Unavailable(format!("parsing: {e}"))))??;

        let mut report = IntakeReport {
            rejected: invalid
                .iter()
                .map(|l| RejectedLine {
                    index: l.index,
                    errors: l.error.errors.iter().map(RejectedField::from).collect(),
                })
                .collect(),
            ..IntakeReport::default()
        };
        // Dead letters first: if they cannot be kept, nothing of the request is acknowledged.
        self.log
            .append(DEAD_LETTER_TOPIC, letters)
            .await
            .map_err(append_error)?;

        // Rounds: claim the ids, append and settle the new ones, and only then — holding no
        // claims, so two requests can never wait on each other — wait for ids another request
        // is appending, and claim those again.
        let started = Instant::now();
        let mut appended: Vec<usize> = Vec::new();
        let mut pending: Vec<usize> = (0..valid.len()).collect();
        while !pending.is_empty() {
            let ids: Vec<Uuid> = pending.iter().map(|&i| valid[i].id).collect();
            let (claims, ticket) = self.dedup.claim(&ids);
            let mut new = Vec::new();
            let mut waits = Vec::new();
            for (&i, claim) in pending.iter().zip(claims) {
                match claim {
                    Claim::New => new.push(i),
                    Claim::Duplicate => report.duplicates += 1,
                    Claim::InFlight(rx) => waits.push((i, rx)),
                }
            }
            let records: Vec<Record> = new
                .iter()
                .map(|&i| Record {
                    key: valid[i].key.clone(),
                    value: valid[i].raw.clone(),
                })
                .collect();
            let result = self.log.append(EVENTS_TOPIC, records).await;
            // Ids whose records reached the log stay claimed (a resend sees them as
            // duplicates); the others are released so the resend appends them.
            let landed: HashSet<Uuid> = match &result {
                Ok(_) => new.iter().map(|&i| valid[i].id).collect(),
                Err(LogError::PartiallyAppended { appended, .. }) => appended
                    .iter()
                    .filter_map(|&j| new.get(j))
                    .map(|&i| valid[i].id)
                    .collect(),
                Err(_) => HashSet::new(),
            };
            self.dedup.settle_each(ticket, |id| landed.contains(&id));
            result.map_err(append_error)?;
            appended.extend(new);
            pending = Vec::with_capacity(waits.len());
            for (i, mut rx) in waits {
                // Either outcome of the other append ends the wait; so does its owner vanishing.
                let _ = rx.wait_for(|done| *done).await;
                pending.push(i);
            }
        }
        metrics::append_latency(started.elapsed());
        let mut by_kind = BTreeMap::new();
        for &i in &appended {
            *by_kind.entry(valid[i].kind).or_insert(0u64) += 1;
        }
        for (kind, n) in by_kind {
            metrics::events_accepted(kind, n);
        }
        metrics::events_duplicate(report.duplicates as u64);
        report.accepted = appended.len();
        Ok(report)
    }
}

/// An append failure as the client sees it: retryable outages are 503s, the rest 500s.
fn append_error(e: LogError) -> IntakeError {
    if e.is_retryable() {
        metrics::log_unavailable();
        IntakeError::Unavailable(e)
    } else {
        IntakeError::Refused(e)
    }
}

type Parsed = (Vec<ValidLine>, Vec<InvalidLine>);

fn parse_body(
    body: &Bytes,
    format: BodyFormat,
    limits: Limits,
    max_lines: usize,
    max_event_bytes: usize,
    grant: &Grant,
) -> Result<Parsed, IntakeError> {
    let ctx = ValidationContext {
        now: Utc::now(),
        limits,
    };
    let lines: Vec<(usize, Bytes)> = match format {
        BodyFormat::Single => vec![(0, trim(body.clone()))],
        BodyFormat::Ndjson => split_lines(body),
    };
    let lines: Vec<(usize, Bytes)> = lines.into_iter().filter(|(_, l)| !l.is_empty()).collect();
    if lines.is_empty() {
        return Err(IntakeError::EmptyBody);
    }
    if lines.len() > max_lines {
        return Err(IntakeError::TooManyLines {
            lines: lines.len(),
            max: max_lines,
        });
    }
    // Every line's type is authorized: the type validation read, or, for a line validation
    // refuses, its type read alone. One line out of scope refuses the whole request, before
    // anything of it (a dead letter included) is kept; each line is parsed once on the way.
    let authorize = |index: usize, kind: EventKind| {
        grant
            .check(kind)
            .map_err(|why| IntakeError::Forbidden { index, why })
    };
    let mut valid = Vec::with_capacity(lines.len());
    let mut invalid = Vec::new();
    for (index, raw) in lines {
        let parsed = if raw.len() > max_event_bytes {
            Err(ValidationError {
                errors: vec![FieldError {
                    path: "$".into(),
                    message: format!(
                        "expected an event of at most {max_event_bytes} bytes, got {}",
                        raw.len()
                    ),
                    reason: RejectReason::Oversize,
                }],
            })
        } else {
            Event::parse(&raw, &ctx)
        };
        match parsed {
            Ok(event) => {
                authorize(index, event.kind())?;
                valid.push(ValidLine {
                    id: event.event_id,
                    kind: event.kind(),
                    key: Bytes::copy_from_slice(event.partition_key().as_bytes()),
                    raw,
                });
            }
            Err(error) => {
                if let Some(kind) = peek_kind(&raw) {
                    authorize(index, kind)?;
                }
                invalid.push(InvalidLine { index, error, raw });
            }
        }
    }
    Ok((valid, invalid))
}

/// Splits on `\n` (tolerating `\r\n`); each line keeps its index in the body.
fn split_lines(body: &Bytes) -> Vec<(usize, Bytes)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' {
            out.push((out.len(), trim(body.slice(start..i))));
            start = i + 1;
        }
    }
    if start < body.len() {
        out.push((out.len(), trim(body.slice(start..))));
    }
    out
}

fn trim(mut line: Bytes) -> Bytes {
    while line.last().is_some_and(|b| b.is_ascii_whitespace()) {
        line.truncate(line.len() - 1);
    }
    let lead = line.iter().take_while(|b| b.is_ascii_whitespace()).count();
    line.slice(lead..)
}

/// Reads the newest records of every partition into the window; returns how many ids it holds.
async fn rebuild_window(log: &dyn EventLog, dedup: &Dedup, window: usize) -> log::Result<usize> {
    #[derive(Deserialize)]
    struct IdOnly {
        event_id: Uuid,
    }
    let starts = log.start_offsets(EVENTS_TOPIC).await?;
    let ends = log.end_offsets(EVENTS_TOPIC).await?;
    let per_partition = (window / ends.len().max(1)) as u64;
    for (partition, &end) in ends.iter().enumerate() {
        // The newest records that retention kept.
        let first = starts.get(partition).copied().unwrap_or(0);
        let mut from = end.saturating_sub(per_partition).max(first);
        while from < end {
            let batch = log
                .read(EVENTS_TOPIC, partition as u32, from, 50_000)
                .await?;
            let Some(last) = batch.last() else { break };
            from = last.offset + 1;
            for record in batch {
                if let Ok(id) = serde_json::from_slice::<IdOnly>(&record.value) {
                    dedup.remember(id.event_id);
                }
            }
        }
    }
    Ok(dedup.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_index_and_blank_lines_are_skipped() {
        let body = Bytes::from_static(b"a\r\n\n  b \nc");
        let lines = split_lines(&body);
        let got: Vec<(usize, &[u8])> = lines.iter().map(|(i, l)| (*i, l.as_ref())).collect();
        assert_eq!(got, vec![(0, &b"a"[..]), (1, b""), (2, b"b"), (3, b"c")]);
    }
}
