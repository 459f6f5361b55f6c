//! Decision time: when an event counts, for decisions that must not depend on arrival order.
//!
//! An event counts at its `occurred_at`, unless it is *late*: older than its partition's newest
//! event so far minus the allowed lateness. A late event counts at that bound instead. Both depend
//! only on the events before it in its own partition, so every reader of the log — any number of
//! workers, any interleaving of partitions — gives every event the same decision time. This is
//! what lets a watermark be exact: once every partition's bound has passed `t`, no event with a
//! decision time before `t` can still arrive. See `specs/adr/0005-inventory-decisions.md`.

use chrono::{DateTime, Duration, Utc};

/// The clock of one partition: the newest event time seen and the lateness allowed behind it.
#[derive(Debug, Clone)]
pub struct PartitionClock {
    newest: Option<DateTime<Utc>>,
    allowed_lateness: Duration,
}

impl PartitionClock {
    pub fn new(allowed_lateness: Duration) -> Self {
        Self {
            newest: None,
            allowed_lateness,
        }
    }

    /// The decision time of the partition's next event, which occurred at `occurred_at`.
    pub fn stamp(&mut self, occurred_at: DateTime<Utc>) -> DateTime<Utc> {
        let bound = self.bound();
        self.newest = Some(self.newest.map_or(occurred_at, |n| n.max(occurred_at)));
        match bound {
            Some(b) if occurred_at < b => b,
            _ => occurred_at,
        }
    }

    /// The clock after events up to `newest` (see [`PartitionClock::newest`]).
    pub fn resumed(allowed_lateness: Duration, newest: Option<DateTime<Utc>>) -> Self {
        Self {
            newest,
            allowed_lateness,
        }
    }

    /// The newest event time seen (`None`: nothing seen): all a checkpoint needs of the clock.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.newest
    }

    pub fn allowed_lateness(&self) -> Duration {
        self.allowed_lateness
    }

    /// No later event of this partition gets a decision time before this (`None`: nothing seen).
    pub fn bound(&self) -> Option<DateTime<Utc>> {
        self.newest.map(|n| n - self.allowed_lateness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_767_225_600 + s, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn on_time_events_keep_their_time_and_late_ones_move_to_the_bound() {
        let mut c = PartitionClock::new(Duration::seconds(10));
        assert_eq!(c.stamp(t(100)), t(100));
        assert_eq!(c.stamp(t(95)), t(95), "within the allowed lateness");
        assert_eq!(c.stamp(t(80)), t(90), "late: counted at newest - lateness");
        assert_eq!(c.stamp(t(120)), t(120));
        assert_eq!(c.bound(), Some(t(110)));
    }
}
