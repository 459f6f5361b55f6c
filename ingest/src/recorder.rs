//! Events the platform records itself, such as the `search_performed` of each search made
//! through the read API: queued without waiting, and appended through the [`Intake`] like any
//! producer's (validated, deduplicated by id, refused ones to the dead-letter log) by a task of
//! their own, in batches. A full queue drops the event and counts it
//! (`emporium_ingest_recorded_dropped_total`): the answer it describes never waits for the log.

use std::sync::Arc;

use bytes::Bytes;
use emporium_schemas::Event;
use tokio::sync::mpsc;

use crate::intake::{BodyFormat, Intake};
use crate::metrics;
use crate::producers::Grant;

/// Events waiting at most; past this, new ones are dropped.
pub const QUEUE: usize = 10_000;
/// Events appended in one batch at most.
const BATCH: usize = 1_000;

/// The queue of events to record.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
}

impl Recorder {
    /// Starts the task that appends what is recorded, as `producer` with `grant`'s scopes.
    pub fn start(intake: Arc<Intake>, grant: Grant) -> Self {
        let (tx, mut rx) = mpsc::channel::<Event>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let mut body = Vec::with_capacity(batch.len() * 200);
                for event in batch.drain(..) {
                    body.extend_from_slice(&event.to_json());
                    body.push(b'\n');
                }
                let report = intake
                    .submit(
                        Bytes::from(body),
                        BodyFormat::Ndjson,
                        grant.producer.clone(),
                        grant.clone(),
                    )
                    .await;
                if let Err(e) = report {
                    tracing::warn!(error = %e, producer = %grant.producer, "recorded events not appended");
                }
            }
        });
        Self { tx }
    }

    /// Queues `event`; `false` (and counted) when the queue is full or the task has stopped.
    pub fn record(&self, event: Event) -> bool {
        let queued = self.tx.try_send(event).is_ok();
        if !queued {
            metrics::recorded_dropped();
        }
        queued
    }
}
