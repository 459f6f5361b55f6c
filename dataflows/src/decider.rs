//! The streaming driver of the inventory decider: events arrive from every partition in any
//! interleaving; each is stamped with its decision time by its partition's clock, buffered, and
//! applied once the watermark — the smallest bound over all partitions — has passed it. Applied in
//! (decision time, event id) order and deduplicated by event id, they give the same outputs as a
//! batch fold over the whole log, whatever the interleaving. See `specs/adr/0005-inventory-decisions.md`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use chrono::{DateTime, Duration, Utc};
use emporium_schemas::Event;

use crate::event_time::PartitionClock;
use crate::inventory::{Inventory, InventoryConfig, Output};
use crate::orders::{OrderAnomaly, Orders};

struct Pending {
    at: DateTime<Utc>,
    event: Event,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl Pending {
    /// Decision time first, event id to break ties: a total order every reader agrees on.
    fn key(&self) -> (DateTime<Utc>, u128) {
        (self.at, self.event.event_id.as_u128())
    }
}

/// Buffers events per partition and decides at the watermark.
pub struct Decider {
    clocks: Vec<PartitionClock>,
    pending: BinaryHeap<Reverse<Pending>>,
    applied: HashSet<u128>,
    inventory: Inventory,
    orders: Orders,
    order_anomalies: Vec<OrderAnomaly>,
}

impl Decider {
    pub fn new(partitions: usize, allowed_lateness: Duration, config: InventoryConfig) -> Self {
        Self {
            clocks: vec![PartitionClock::new(allowed_lateness); partitions.max(1)],
            pending: BinaryHeap::new(),
            applied: HashSet::new(),
            inventory: Inventory::new(config),
            orders: Orders::default(),
            order_anomalies: Vec::new(),
        }
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Takes the next event of `partition` (events of one partition must come in log order).
    pub fn push(&mut self, partition: usize, event: Event) {
        let n = self.clocks.len();
        let clock = &mut self.clocks[partition % n];
        let at = clock.stamp(event.occurred_at);
        self.pending.push(Reverse(Pending { at, event }));
    }

    /// Events with a decision time before this are complete: no partition can still send one.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.clocks
            .iter()
            .map(PartitionClock::bound)
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }

    /// Applies every buffered event the watermark has passed.
    pub fn decide(&mut self, out: &mut Vec<Output>) {
        if let Some(watermark) = self.watermark() {
            self.drain(Some(watermark), out);
        }
    }

    /// The input has ended: applies everything still buffered.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.drain(None, out);
    }

    fn drain(&mut self, before: Option<DateTime<Utc>>, out: &mut Vec<Output>) {
        while let Some(Reverse(next)) = self.pending.peek() {
            if before.is_some_and(|w| next.at >= w) {
                break;
            }
            let Some(Reverse(next)) = self.pending.pop() else {
                break;
            };
            // A duplicate (same event id) is applied once: at its earliest decision time.
            if self.applied.insert(next.event.event_id.as_u128()) {
                // Expiries due before this event, then the event, then what it decided: the
                // order states see every transition in decision-time order.
                let first = out.len();
                self.inventory.advance_to(next.at, out);
                self.orders_see(&out[first..]);
                self.orders.apply(&next.event, &mut self.order_anomalies);
                let first = out.len();
                self.inventory.apply(next.at, &next.event, out);
                self.orders_see(&out[first..]);
            }
        }
    }
}

impl Decider {
    fn orders_see(&mut self, outputs: &[Output]) {
        for output in outputs {
            if let Output::Decision { at, payload } = output {
                let decision = Event::new(uuid::Uuid::nil(), *at, payload.clone());
                self.orders.apply(&decision, &mut self.order_anomalies);
            }
        }
    }

    /// Every order's state, in decision-time order up to the watermark.
    pub fn orders(&self) -> &Orders {
        &self.orders
    }

    /// Order anomalies found since the last call.
    pub fn take_order_anomalies(&mut self) -> Vec<OrderAnomaly> {
        std::mem::take(&mut self.order_anomalies)
    }
}

/// The batch reference: every partition's events in log order, decided in one fold.
/// Obviously correct by construction; the streaming [`Decider`] must match it.
pub fn decide_all(
    partitions: &[Vec<Event>],
    allowed_lateness: Duration,
    config: InventoryConfig,
) -> (Vec<Output>, Inventory) {
    let mut stamped: Vec<(DateTime<Utc>, u128, &Event)> = Vec::new();
    for events in partitions {
        let mut clock = PartitionClock::new(allowed_lateness);
        for e in events {
            stamped.push((clock.stamp(e.occurred_at), e.event_id.as_u128(), e));
        }
    }
    stamped.sort_by_key(|(at, id, _)| (*at, *id));
    let mut inventory = Inventory::new(config);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (at, id, e) in stamped {
        if seen.insert(id) {
            inventory.apply(at, e, &mut out);
        }
    }
    (out, inventory)
}
