//! Heartbeats to idle partitions: what keeps the watermark moving when some partitions get no
//! events.
//!
//! The watermark is the lowest of the partitions' bounds (ADR 0005), so one partition without
//! traffic holds every decision and every expiry back, and a partition that never had an event
//! holds them forever. Worker 0 watches for that. When a step waits on the watermark and a
//! partition that holds it has been idle (read to its end, nothing appended for `idle_after`), it
//! appends a `partition_heartbeat` event to that partition. Read back, the heartbeat moves the
//! partition's clock like any event the decider does not read.
//!
//! The heartbeat's time is the producers' clock as recently seen: the wall clock minus the
//! largest lag (append time − event time) among the records appended in the 5 s before the
//! newest one ([`LAG_WINDOW_MS`]), but no more than [`BATCH_ALLOWANCE_MS`] above the newest
//! append's lag. A producer whose events trail the wall clock by seconds, or one that sends a
//! second of events at a time (the first of them a second old when it is appended), therefore
//! does not find its partition's clock pushed ahead of its next event. The lag of the newest
//! record alone was not enough: between two batches of a batching producer the heartbeat ran
//! ahead of the next batch's first events and made them late (the fault suite's `kill` case
//! found hundreds). The allowance bounds the wait after a bulk load, whose records span minutes
//! of event time in one append. Events that were late themselves (more than the allowed
//! lateness behind their partition's newest) are left out: one event delivered hours late says
//! nothing of when the next ones arrive.
//!
//! Heartbeats are records of the log, so a replay reads them where they were appended: decisions
//! stay a function of the log's contents, as without them. Only when one is appended depends on
//! the wall clock, as for any producer's event.
//!
//! After a start, two things hold (ADR 0005, ADR 0008):
//! - No heartbeat for a grace period ([`crate::PipelineConfig::heartbeat_grace`]). While the
//!   process was down, producers were backing off; the events they resend carry the times they
//!   occurred at, during the outage. A heartbeat at the wall clock before they arrive would make
//!   them late, and a restart would decide differently from an uninterrupted run.
//! - The producers' lag is known before any new record arrives: [`seed`] reads the newest records
//!   of every partition. Without it, a process restarted after traffic stopped never sent a
//!   heartbeat, and its open reservations never expired.

use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use emporium_log::{EVENTS_TOPIC, EventLog, LogError, Record, WriterClaim, partition_for};
use emporium_schemas::Event;
use emporium_schemas::decisions::PartitionHeartbeat;

use emporium_dataflows::decider::Decider;

use crate::{PipelineError, PipelineStats, metrics};

/// What worker 0 saw arrive on each partition, and the heartbeats it sent.
#[derive(Debug, Clone)]
pub struct Arrivals {
    /// Per partition: the append time (ms) of the newest record read that moves its clock.
    last_appended_ms: Vec<i64>,
    /// Per partition: when (wall clock, ms) its last heartbeat was sent.
    last_sent_ms: Vec<i64>,
    /// Append time of the newest record read, and the smallest lag among the records appended
    /// then (the producers' clock as the newest append showed it).
    newest_appended_ms: i64,
    newest_lag_ms: i64,
    /// (append time, lag) of records read, for the largest lag over [`LAG_WINDOW_MS`] before
    /// the newest append: each entry's lag exceeds every later entry's (a sliding maximum).
    lags: VecDeque<(i64, i64)>,
    /// Per partition: the newest event time read (ms), and the allowed lateness (ms) behind it
    /// past which an event is late and its lag not counted.
    newest_occurred_ms: Vec<i64>,
    lateness_ms: i64,
    routing_keys: Vec<String>,
    /// No heartbeat before this (wall clock, ms): the grace period after the start, or after
    /// the log was last unreachable.
    quiet_until_ms: i64,
    grace_ms: i64,
}

impl Arrivals {
    pub fn new(partitions: u32) -> Self {
        let partitions = partitions.max(1);
        let n = partitions as usize;
        Self {
            last_appended_ms: vec![i64::MIN; n],
            last_sent_ms: vec![i64::MIN; n],
            newest_appended_ms: i64::MIN,
            newest_lag_ms: 0,
            lags: VecDeque::new(),
            newest_occurred_ms: vec![i64::MIN; n],
            lateness_ms: i64::MAX,
            routing_keys: (0..partitions)
                .map(|p| routing_key(p, partitions))
                .collect(),
            quiet_until_ms: i64::MIN,
            grace_ms: 0,
        }
    }

    /// No heartbeat before `now_ms + grace`.
    pub fn with_grace(mut self, now_ms: i64, grace: std::time::Duration) -> Self {
        let grace = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        self.grace_ms = grace;
        self.quiet_until_ms = now_ms.saturating_add(grace);
        self
    }

    /// The log was unreachable at `at_ms`: appends held by producers meanwhile land after it,
    /// so no heartbeat for the grace period from then, as after a start.
    pub fn unreachable_at(&mut self, at_ms: i64) {
        self.quiet_until_ms = self.quiet_until_ms.max(at_ms.saturating_add(self.grace_ms));
    }

    /// Events more than `lateness` behind their partition's newest are late: their lag is not
    /// the producers' (without this, every lag counts).
    pub fn with_lateness(mut self, lateness: chrono::Duration) -> Self {
        self.lateness_ms = lateness.num_milliseconds();
        self
    }

    /// A record of `partition` that moves its clock (an event or a tick) was read: appended at
    /// `appended_ms`, it occurred at `occurred_at`.
    pub fn observe(&mut self, partition: u32, appended_ms: i64, occurred_at: DateTime<Utc>) {
        if let Some(last) = self.last_appended_ms.get_mut(partition as usize) {
            *last = (*last).max(appended_ms);
        }
        let occurred_ms = occurred_at.timestamp_millis();
        if let Some(newest) = self.newest_occurred_ms.get_mut(partition as usize) {
            let late = *newest != i64::MIN && occurred_ms < newest.saturating_sub(self.lateness_ms);
            *newest = (*newest).max(occurred_ms);
            if late {
                return;
            }
        }
        let lag = (appended_ms - occurred_ms).max(0);
        if appended_ms > self.newest_appended_ms {
            (self.newest_appended_ms, self.newest_lag_ms) = (appended_ms, lag);
        } else if appended_ms == self.newest_appended_ms {
            self.newest_lag_ms = self.newest_lag_ms.min(lag);
        }
        while self.lags.back().is_some_and(|&(_, l)| l <= lag) {
            self.lags.pop_back();
        }
        self.lags.push_back((appended_ms, lag));
        let since = self.newest_appended_ms.saturating_sub(LAG_WINDOW_MS);
        while self.lags.len() > 1 && self.lags.front().is_some_and(|&(a, _)| a < since) {
            self.lags.pop_front();
        }
    }

    /// The producers' lag: the largest over the window, at most [`BATCH_ALLOWANCE_MS`] above
    /// the newest append's (0 before any record). "Newest" is by append time, not by the order
    /// records were read in: a worker reads partition after partition, and the last record it
    /// read may be an old one of a quiet partition.
    fn lag_ms(&self) -> i64 {
        let largest = self.lags.front().map_or(0, |&(_, lag)| lag);
        largest.min(self.newest_lag_ms.saturating_add(BATCH_ALLOWANCE_MS))
    }

    /// The heartbeats to append at wall-clock time `now_ms`: one per partition that holds back
    /// the decider's next step and has been idle for `idle_after` (nothing appended to it since,
    /// and none sent to it since), among those `caught_up` says were read to their end.
    pub fn due(
        &mut self,
        decider: &Decider,
        now_ms: i64,
        idle_after: std::time::Duration,
        mut caught_up: impl FnMut(u32) -> bool,
    ) -> Vec<(u32, Record)> {
        let Some(waiting) = decider.next_step_at() else {
            return Vec::new();
        };
        if self.newest_appended_ms == i64::MIN || now_ms < self.quiet_until_ms {
            return Vec::new();
        }
        let idle_ms = i64::try_from(idle_after.as_millis()).unwrap_or(i64::MAX);
        let Some(at) = DateTime::from_timestamp_millis(now_ms - self.lag_ms()) else {
            return Vec::new();
        };
        // Only a heartbeat that lets the step go: its partition's bound would pass it.
        if at - decider.allowed_lateness() <= waiting {
            return Vec::new();
        }
        // Never (`i64::MIN`) saturates to quiet.
        let quiet = |since: i64| now_ms.saturating_sub(since) >= idle_ms;
        let mut out = Vec::new();
        for (p, key) in self.routing_keys.iter().enumerate() {
            let holds = decider.partition_bound(p).is_none_or(|b| b <= waiting);
            let behind = decider.partition_newest(p).is_none_or(|n| n < at);
            if holds
                && behind
                && quiet(self.last_appended_ms[p])
                && quiet(self.last_sent_ms[p])
                && caught_up(p as u32)
            {
                self.last_sent_ms[p] = now_ms;
                // Its id names the partition and the moment it was sent: unique, as one goes to a
                // partition at most once per `idle_after`.
                let id = uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_OID,
                    format!("emporium/partition_heartbeat/{p}/{now_ms}").as_bytes(),
                );
                let event = Event::new(
                    id,
                    at,
                    PartitionHeartbeat {
                        partition: p as u32,
                        routing_key: key.clone(),
                    },
                );
                out.push((
                    p as u32,
                    Record::new(key.clone().into_bytes(), event.to_json()),
                ));
            }
        }
        out
    }
}

/// How far back (ms of append time, before the newest record) the producers' largest lag is
/// taken from.
/// Short: what matters is how the producers batch now. A longer window keeps a past stall's
/// lag and holds the last events before a lull back by it (a minute was tried first).
pub const LAG_WINDOW_MS: i64 = 5_000;

/// How much more than the newest record's lag a heartbeat allows for: producers that send up
/// to this much of event time in one batch never have a heartbeat run ahead of their next batch.
pub const BATCH_ALLOWANCE_MS: i64 = 5_000;

/// Records read from the end of each partition by [`seed`].
const SEED_TAIL: u64 = 64;

/// Observes the newest records of every partition (up to [`SEED_TAIL`] each, those that move a
/// clock), so the producers' lag is known at once after a start, even when no record comes
/// after it.
pub(crate) async fn seed(log: &dyn EventLog, arrivals: &mut Arrivals) -> Result<(), LogError> {
    let starts = log.start_offsets(EVENTS_TOPIC).await?;
    let ends = log.end_offsets(EVENTS_TOPIC).await?;
    for (p, (&first, &end)) in starts.iter().zip(&ends).enumerate() {
        let from = end.saturating_sub(SEED_TAIL).max(first);
        if from >= end {
            continue;
        }
        for r in log
            .read(EVENTS_TOPIC, p as u32, from, SEED_TAIL as usize)
            .await?
        {
            if let Ok(e) = Event::decode(&r.value)
                && !e.kind().is_decision()
            {
                arrivals.observe(p as u32, r.timestamp_ms, e.occurred_at);
            }
        }
    }
    Ok(())
}

/// A key Kafka's partitioner puts in `partition` of `partitions`: the first of `heartbeat-{p}-{n}`.
pub fn routing_key(partition: u32, partitions: u32) -> String {
    (0u64..)
        .map(|n| format!("heartbeat-{partition}-{n}"))
        .find(|k| partition_for(k.as_bytes(), partitions) == partition)
        .expect("invariant: murmur2 reaches every partition")
}

/// Appends the heartbeats [`Arrivals::due`] finds due. A partition counts as read to its end
/// when `read` (per partition, the next offset the decider has received, whichever process read
/// it) has reached the log's end offset.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send_heartbeats(
    log: &Arc<dyn EventLog>,
    claim: &WriterClaim,
    runtime: &tokio::runtime::Handle,
    decider: &Decider,
    arrivals: &mut Arrivals,
    idle_after: std::time::Duration,
    read: &[u64],
    stats: &PipelineStats,
) -> Result<(), PipelineError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    if let Some(at) = log.last_unreachable_ms() {
        arrivals.unreachable_at(at);
    }
    // The end offsets only when a partition is otherwise due (a request to Kafka).
    let mut ends: Option<Result<Vec<u64>, LogError>> = None;
    let due = arrivals.due(decider, now_ms, idle_after, |p| {
        let ends = ends.get_or_insert_with(|| runtime.block_on(log.end_offsets(EVENTS_TOPIC)));
        let p = p as usize;
        ends.as_ref()
            .is_ok_and(|ends| read.get(p).zip(ends.get(p)).is_some_and(|(r, e)| r >= e))
    });
    if let Some(Err(e)) = ends {
        return Err(e.into());
    }
    if due.is_empty() {
        return Ok(());
    }
    let n = due.len() as u64;
    // As the claimed writer: a fenced decider's heartbeats would move idle partitions' clocks.
    runtime.block_on(log.append_as(
        claim,
        EVENTS_TOPIC,
        due.into_iter().map(|(_, r)| r).collect(),
    ))?;
    stats.heartbeats.fetch_add(n, Ordering::Relaxed);
    metrics::heartbeats(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use emporium_schemas::EventKind;
    use emporium_schemas::examples::{example, example_time};

    use super::*;
    use emporium_dataflows::inventory::{InventoryConfig, Output};

    const IDLE: std::time::Duration = std::time::Duration::from_millis(200);

    #[test]
    fn routing_keys_land_in_their_partition() {
        for partitions in [1, 4, 12, 64] {
            for p in 0..partitions {
                let key = routing_key(p, partitions);
                assert_eq!(partition_for(key.as_bytes(), partitions), p, "{key}");
            }
        }
    }

    /// An order on partition 0 while partition 1 has been quiet: a heartbeat goes to 1 (and 1
    /// alone), none again before `idle_after`, and once read back it lets the order be decided.
    #[test]
    fn an_idle_partition_that_holds_an_order_gets_a_heartbeat_that_releases_it() {
        let mut decider = Decider::new(2, Duration::milliseconds(500), InventoryConfig::default());
        let mut arrivals = Arrivals::new(2);
        // Events occur 3 s before they are appended: the producers' clock trails the wall clock.
        let t0 = example_time();
        let appended = |e: &Event| e.occurred_at.timestamp_millis() + 3_000;
        let mut quiet = example(EventKind::ProductViewed, 1);
        quiet.occurred_at = t0;
        arrivals.observe(1, appended(&quiet), quiet.occurred_at);
        decider.push(1, quiet);
        for (n, kind) in [
            EventKind::ProductUpserted,
            EventKind::StockReceived,
            EventKind::OrderPlaced,
        ]
        .into_iter()
        .enumerate()
        {
            let mut e = example(kind, 10 + n as u64);
            e.occurred_at = t0 + Duration::seconds(1 + n as i64);
            arrivals.observe(0, appended(&e), e.occurred_at);
            decider.push(0, e);
        }
        let mut out = Vec::new();
        decider.decide(&mut out);
        assert!(out.is_empty(), "partition 1 holds the watermark: {out:?}");
        let last_append = (t0 + Duration::seconds(3)).timestamp_millis() + 3_000;

        // Partition 0 had its order 100 ms ago; partition 1 has been quiet for 3 s.
        let now = last_append + 100;
        assert!(
            arrivals.due(&decider, now, IDLE, |_| false).is_empty(),
            "not while the readers are behind the partition's end"
        );
        let due = arrivals.due(&decider, now, IDLE, |_| true);
        assert_eq!(
            due.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            vec![1],
            "the quiet partition alone"
        );
        assert!(
            arrivals.due(&decider, now + 150, IDLE, |_| true).is_empty(),
            "at most one per partition per idle_after"
        );
        let push = |decider: &mut Decider, due: Vec<(u32, Record)>, now: i64| {
            for (p, record) in due {
                let e = Event::decode(&record.value).expect("a heartbeat decodes");
                assert_eq!(e.kind(), EventKind::PartitionHeartbeat);
                assert_eq!(partition_for(&record.key, 2), p);
                // The producers' clock: the wall clock minus their 3 s lag.
                assert_eq!(e.occurred_at.timestamp_millis(), now - 3_000);
                decider.push_appended(p as usize, e, now);
            }
        };
        push(&mut decider, due, now);
        decider.decide(&mut out);
        assert_eq!(
            out.len(),
            0,
            "the catalog and stock are applied; the order still waits"
        );
        assert_eq!(decider.seq(), 2);
        // The order's own partition must pass it too: once quiet, it gets one as well.
        let now = last_append + 1_000;
        let due = arrivals.due(&decider, now, IDLE, |_| true);
        assert_eq!(
            due.len(),
            2,
            "both partitions are quiet and behind the order"
        );
        push(&mut decider, due, now);
        decider.decide(&mut out);
        assert!(
            out.iter().any(|o| matches!(
                o,
                Output::Decision { payload, .. } if payload.kind() == EventKind::InventoryReserved
            )),
            "the order is decided: {out:?}"
        );
        // Nothing waits but the reservation's expiry, 15 minutes on: no heartbeat can release it.
        assert!(
            arrivals
                .due(&decider, now + 10_000, IDLE, |_| true)
                .is_empty()
        );
    }

    /// A producer that sends a second of events at a time: the heartbeat between two batches
    /// trails the next batch's first event (by the lag of the batch's oldest event), and an
    /// event delivered hours late does not hold heartbeats back.
    #[test]
    fn a_heartbeat_between_batches_does_not_run_ahead_of_the_next_batch() {
        let lateness = Duration::milliseconds(500);
        let mut arrivals = Arrivals::new(1).with_lateness(lateness);
        let t0 = example_time().timestamp_millis();
        // Batch k holds events that occurred over [t0 + k s, t0 + (k + 1) s), appended 200 ms
        // after its last one (which occurred 100 ms before the batch ends).
        for k in 0..3 {
            let appended = t0 + (k + 1) * 1_000 + 200;
            for i in 0..10 {
                let at = DateTime::from_timestamp_millis(t0 + k * 1_000 + i * 100).expect("time");
                arrivals.observe(0, appended, at);
            }
        }
        let last_append = t0 + 3_000 + 200;
        // 700 ms after the last append, the next batch (its first event at t0 + 3 s) is due.
        let now = last_append + 700;
        let heartbeat_at = now - arrivals.lag_ms();
        assert!(
            heartbeat_at <= t0 + 3_000 + lateness.num_milliseconds(),
            "a heartbeat at {} ms would make the next batch's first event (at 3,000 ms) late",
            heartbeat_at - t0
        );
        assert_eq!(
            arrivals.lag_ms(),
            1_200,
            "the lag of each batch's oldest event"
        );
        // One event three hours late: late itself, its lag is not the producers'.
        let stale = DateTime::from_timestamp_millis(t0 - 3 * 3_600_000).expect("time");
        arrivals.observe(0, last_append + 10, stale);
        assert_eq!(arrivals.lag_ms(), 1_200);
        // A window on, only the recent records count.
        let later = last_append + LAG_WINDOW_MS + 5_000;
        let at = DateTime::from_timestamp_millis(later - 300).expect("time");
        arrivals.observe(0, later, at);
        assert_eq!(arrivals.lag_ms(), 300);
        // A bulk load of ten minutes of events in one append: the allowance bounds the wait.
        let bulk = later + 10 * 60_000 + 200;
        for i in 0..=10 {
            let at = DateTime::from_timestamp_millis(later + i * 60_000).expect("time");
            arrivals.observe(0, bulk, at);
        }
        assert_eq!(arrivals.lag_ms(), 200 + BATCH_ALLOWANCE_MS);
        // One append over two partitions, read partition by partition: the quiet partition's
        // old record read last does not make the newest lag its own.
        let mut other = Arrivals::new(2).with_lateness(lateness);
        for i in 1..=10 {
            let at = DateTime::from_timestamp_millis(later + i * 60_000).expect("time");
            other.observe(0, bulk, at);
        }
        let old = DateTime::from_timestamp_millis(later).expect("time");
        other.observe(1, bulk, old);
        assert_eq!(other.lag_ms(), 200 + BATCH_ALLOWANCE_MS);
    }
}
