//! Decision events: their deterministic ids, appending them (never one already in the log),
//! and finding those a previous run appended.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use emporium_dataflows::inventory::Output;
use emporium_log::{EVENTS_TOPIC, EventLog, LogError, Record, WriterClaim};
use emporium_schemas::{EventKind, Payload};
use serde::Deserialize;
use uuid::Uuid;

use crate::PipelineError;
use crate::metrics;
use crate::stats::PipelineStats;

pub use emporium_dataflows::decisions::{DECISION_NAMESPACE, decision_event, decision_events};

use emporium_dataflows::decisions::decision_id;

/// A decider output, with the append time of the `order_placed` it decides (for latency).
pub(crate) type Decided = (Output, Option<i64>);

/// Appends the decisions among `outputs` as the claimed writer (`None` on a process that does
/// not decide, which never has any), but none already in the log (`logged`), none whose order
/// the log already answered the other way, and no release of such an order (`conflicted`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn append_decisions(
    log: &Arc<dyn EventLog>,
    claim: Option<&WriterClaim>,
    runtime: &tokio::runtime::Handle,
    outputs: Vec<Decided>,
    stats: &PipelineStats,
    logged: &HashSet<Uuid>,
    conflicted: &RefCell<HashSet<String>>,
    started_ms: i64,
) -> Result<(), PipelineError> {
    let mut records = Vec::new();
    let mut placed = Vec::new();
    for (output, placed_ms) in outputs {
        match output {
            Output::Decision { at, payload } => {
                let outcome = match &payload {
                    Payload::InventoryReserved(_) => "reserved",
                    Payload::OrderRejected(_) => "rejected",
                    _ => "released",
                };
                let event = decision_event(at, payload);
                if logged.contains(&event.event_id) {
                    stats
                        .decisions_already_logged
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // The log's answer stands: an order already reserved (or rejected) by an
                // earlier decider, run with other settings, is never given the other answer too.
                let order = event.payload.partition_key();
                let conflicts = match opposite_decision(&event.payload) {
                    Some(opposite) => logged.contains(&opposite),
                    // A release of an order whose reservation was not appended.
                    None => conflicted.borrow().contains(order),
                };
                if conflicts {
                    conflicted.borrow_mut().insert(order.to_owned());
                    stats.decisions_conflicting.fetch_add(1, Ordering::Relaxed);
                    metrics::decision_conflict();
                    tracing::warn!(
                        order_id = order,
                        decided = outcome,
                        "the log holds another answer for this order: it stands"
                    );
                    continue;
                }
                metrics::decision(outcome);
                placed.extend(placed_ms);
                records.push(Record::new(
                    event.partition_key().as_bytes().to_vec(),
                    event.to_json(),
                ));
            }
            Output::Anomaly {
                at,
                key,
                kind,
                detail,
            } => {
                stats.anomalies.fetch_add(1, Ordering::Relaxed);
                metrics::anomaly(kind);
                tracing::debug!(%at, key, kind, detail, "anomaly");
            }
        }
    }
    let n = records.len() as u64;
    if n > 0 {
        // As the claimed writer, all or nothing: a fenced decider appends nothing (ADR 0012).
        let claim = claim.ok_or_else(|| {
            PipelineError::Timely("only the process that decides appends decisions".into())
        })?;
        runtime.block_on(log.append_as(claim, EVENTS_TOPIC, records))?;
        stats.decisions_appended.fetch_add(n, Ordering::Relaxed);
        let now_ms = chrono::Utc::now().timestamp_millis();
        // Orders appended before this run started are a replay, not decision latency.
        for ms in placed.into_iter().filter(|ms| *ms >= started_ms) {
            let latency = std::time::Duration::from_millis(now_ms.saturating_sub(ms).max(0) as u64);
            metrics::decision_latency(latency);
            stats.decision.record(latency);
        }
    }
    Ok(())
}

/// The id of the answer that excludes this one for the same order (reserved and rejected), if
/// the payload is one of those two.
fn opposite_decision(payload: &Payload) -> Option<Uuid> {
    let opposite = match payload {
        Payload::InventoryReserved(_) => EventKind::OrderRejected,
        Payload::OrderRejected(_) => EventKind::InventoryReserved,
        _ => return None,
    };
    Some(decision_id(opposite, payload.partition_key()))
}

/// Ids of the decision events in the log from `from` on, per partition (read once at start).
pub(crate) async fn decisions_in_log(
    log: &dyn EventLog,
    from: &[u64],
) -> Result<HashSet<Uuid>, LogError> {
    #[derive(Deserialize)]
    struct Head<'a> {
        event_id: Uuid,
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let mut ids = HashSet::new();
    for (p, &end) in log.end_offsets(EVENTS_TOPIC).await?.iter().enumerate() {
        let mut from = from.get(p).copied().unwrap_or(0);
        while from < end {
            let batch = log.read(EVENTS_TOPIC, p as u32, from, 50_000).await?;
            let Some(last) = batch.last() else { break };
            from = last.offset + 1;
            for r in batch {
                if let Ok(head) = serde_json::from_slice::<Head>(&r.value)
                    && EventKind::from_name(&head.kind).is_some_and(EventKind::is_system)
                {
                    ids.insert(head.event_id);
                }
            }
        }
    }
    Ok(ids)
}
