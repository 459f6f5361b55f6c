//! Decision time: when an event counts, for decisions that must not depend on arrival order.
//!
//! An event counts at its `occurred_at`, unless it is *late*: older than its partition's newest
//! event so far minus the allowed lateness. A late event counts at that bound instead. Both depend
//! only on the events before it in its own partition, so every reader of the log — any number of
//! workers, any interleaving of partitions — gives every event the same decision time. This is
//! what lets a watermark be exact: once every partition's bound has passed `t`, no event with a
//! decision time before `t` can still arrive. See `specs/adr/0005-inventory-decisions.md`.
//!
//! Causal order per key ([`PartitionClock::stamp_keyed`]): the events of one key (an order, a
//! sku, a product) keep their log order whatever their producers' clocks say. A payment stamped a
//! second before its order (the payment service's clock trails) counts at the order's time, not
//! before it; events of a key at one time are ranked by log order, not by their random ids.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The decision time of a key's last event, and how many events of the key were stamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyClock {
    pub last: DateTime<Utc>,
    pub events: u64,
}

/// A keyed event's stamp: its decision time, its rank among its key's events (log order, for
/// ties), and whether it was late (counted at the partition's bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub at: DateTime<Utc>,
    pub rank: u64,
    pub late: bool,
}

/// Keys kept before the first prune (then twice what a prune leaves).
const PRUNE_FLOOR: usize = 1024;

/// The clock of one partition: the newest event time seen and the lateness allowed behind it,
/// and the recent keys' clocks.
#[derive(Debug, Clone)]
pub struct PartitionClock {
    newest: Option<DateTime<Utc>>,
    allowed_lateness: Duration,
    /// Per key, while its last decision time is at or after the bound. Older entries cannot
    /// change a later stamp (every later stamp is at or after the bound, so strictly after
    /// them) and are dropped: the map holds the keys of about one allowed lateness of events.
    keys: HashMap<Box<str>, KeyClock>,
    prune_above: usize,
}

impl PartitionClock {
    pub fn new(allowed_lateness: Duration) -> Self {
        Self {
            newest: None,
            allowed_lateness,
            keys: HashMap::new(),
            prune_above: PRUNE_FLOOR,
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

    /// [`PartitionClock::stamp`] for an event of `key`, never before the key's previous event:
    /// the key's events keep their log order (their rank breaks ties of equal times).
    pub fn stamp_keyed(&mut self, key: &str, occurred_at: DateTime<Utc>) -> Stamp {
        let own = self.stamp(occurred_at);
        let late = own > occurred_at;
        let (at, rank) = match self.keys.get_mut(key) {
            Some(clock) => {
                clock.last = clock.last.max(own);
                clock.events += 1;
                (clock.last, clock.events - 1)
            }
            None => {
                self.keys.insert(
                    key.into(),
                    KeyClock {
                        last: own,
                        events: 1,
                    },
                );
                (own, 0)
            }
        };
        if self.keys.len() > self.prune_above {
            self.prune();
        }
        Stamp { at, rank, late }
    }

    /// Drops the keys whose last decision time is before the bound (they cannot change a later
    /// stamp); deterministic in effect, so when it runs does not matter.
    fn prune(&mut self) {
        if let Some(bound) = self.bound() {
            self.keys.retain(|_, k| k.last >= bound);
        }
        self.prune_above = (self.keys.len() * 2).max(PRUNE_FLOOR);
    }

    /// The clock after events up to `newest`, with the keys' clocks (see
    /// [`PartitionClock::keys`]).
    pub fn resumed(
        allowed_lateness: Duration,
        newest: Option<DateTime<Utc>>,
        keys: Vec<(String, KeyClock)>,
    ) -> Self {
        let mut clock = Self {
            newest,
            allowed_lateness,
            keys: keys.into_iter().map(|(k, c)| (k.into(), c)).collect(),
            prune_above: PRUNE_FLOOR,
        };
        clock.prune_above = (clock.keys.len() * 2).max(PRUNE_FLOOR);
        clock
    }

    /// The newest event time seen (`None`: nothing seen): with [`PartitionClock::keys`], all a
    /// checkpoint needs of the clock.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.newest
    }

    /// The keys' clocks that can still change a stamp (at or after the bound), in key order.
    pub fn keys(&self) -> Vec<(String, KeyClock)> {
        let bound = self.bound();
        let mut keys: Vec<(String, KeyClock)> = self
            .keys
            .iter()
            .filter(|(_, k)| bound.is_none_or(|b| k.last >= b))
            .map(|(key, k)| (key.to_string(), *k))
            .collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        keys
    }

    /// How many keys' clocks are held (for memory figures).
    pub fn keys_held(&self) -> usize {
        self.keys.len()
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

    #[test]
    fn a_keys_events_keep_their_log_order_whatever_their_clocks_say() {
        let mut c = PartitionClock::new(Duration::seconds(60));
        let placed = c.stamp_keyed("o-1", t(100));
        // The payment's producer clock trails by 3 s: it still counts after its order.
        let paid = c.stamp_keyed("o-1", t(97));
        assert_eq!((placed.at, paid.at), (t(100), t(100)));
        assert!(paid.rank > placed.rank, "ties keep log order");
        assert!(!paid.late, "within the allowed lateness");
        // Another key keeps its own (earlier) time.
        assert_eq!(c.stamp_keyed("o-2", t(98)).at, t(98));
        // Equal times: ranked by log order.
        let a = c.stamp_keyed("o-3", t(110));
        let b = c.stamp_keyed("o-3", t(110));
        assert_eq!((a.at, a.rank, b.at, b.rank), (t(110), 0, t(110), 1));
    }

    #[test]
    fn pruning_forgets_only_keys_that_cannot_matter() {
        let mut pruned = PartitionClock::new(Duration::seconds(10));
        let mut kept = PartitionClock::new(Duration::seconds(10));
        kept.prune_above = usize::MAX;
        for i in 0..5_000i64 {
            // Keys come back within and beyond the lateness, with clocks off by up to 30 s.
            let key = format!("k-{}", (i * 7919) % 1_500);
            let at = t(i - (i * 31) % 30);
            assert_eq!(
                pruned.stamp_keyed(&key, at).at,
                kept.stamp_keyed(&key, at).at,
                "event {i}"
            );
        }
        assert!(pruned.keys_held() < kept.keys_held());
        // The same keys can still matter, at the same times (a key dropped and seen again ranks
        // from 0: its earlier events are all strictly before its new ones).
        let lasts = |c: &PartitionClock| -> Vec<(String, DateTime<Utc>)> {
            c.keys().into_iter().map(|(k, c)| (k, c.last)).collect()
        };
        assert_eq!(lasts(&pruned), lasts(&kept));
    }
}
