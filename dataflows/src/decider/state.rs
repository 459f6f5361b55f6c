//! The decider's state for checkpoints: taken, resumed, and the products dataflow's rows it
//! implies (ADR 0008).

use super::*;

/// [`State`] as written: borrowed from the decider (a copy would double the pause).
#[derive(Serialize)]
struct StateRef<'a> {
    newest: Vec<Option<DateTime<Utc>>>,
    keys: Vec<Vec<(String, KeyClock)>>,
    pending: Vec<(DateTime<Utc>, u64, i64, Vec<u8>)>,
    applied: &'a HashMap<u128, i64>,
    inventory: &'a Inventory,
    orders: &'a Orders,
    catalog: &'a Catalog,
    seq: u64,
}

/// What a checkpoint keeps of a [`Decider`]: its whole state, without its settings and without
/// what it hands out between rounds (taken before a checkpoint).
#[derive(Deserialize)]
struct State {
    /// Per partition, the newest event time seen.
    newest: Vec<Option<DateTime<Utc>>>,
    /// Per partition, the keys' clocks that can still change a stamp, in key order.
    keys: Vec<Vec<(String, KeyClock)>>,
    /// Events buffered above the watermark: decision time, rank among its key's events, append
    /// time (ms), the event as JSON (its own format: payloads are tagged by `type`, which
    /// bincode cannot carry).
    pending: Vec<(DateTime<Utc>, u64, i64, Vec<u8>)>,
    /// Applied ids within the duplicate horizon, with the decision time (µs) of their step.
    applied: HashMap<u128, i64>,
    inventory: Inventory,
    orders: Orders,
    catalog: Catalog,
    seq: u64,
}

/// A decider state that could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("decider state: {0}")]
    Encoding(#[from] bincode::Error),
    #[error("decider state: a buffered event does not decode: {0}")]
    Event(String),
    #[error("decider state: taken with {found} partitions, the log has {expected}")]
    Partitions { found: usize, expected: usize },
}

impl Decider {
    /// The decider's state as bytes, for a checkpoint. Take the changes first: what was not
    /// taken is not in the state.
    pub fn state(&self) -> Result<Vec<u8>, StateError> {
        let state = StateRef {
            newest: self.clocks.iter().map(PartitionClock::newest).collect(),
            keys: self.clocks.iter().map(PartitionClock::keys).collect(),
            pending: self
                .pending
                .iter()
                .map(|Reverse(p)| (p.at, p.rank, p.appended_ms, p.event.to_json()))
                .collect(),
            applied: &self.applied,
            inventory: &self.inventory,
            orders: &self.orders,
            catalog: &self.catalog,
            seq: self.seq,
        };
        Ok(bincode::serialize(&state)?)
    }

    /// A decider resumed from [`Decider::state`], with the same settings it was taken with
    /// (checked by the caller: other settings would give other decisions).
    pub fn resume(
        bytes: &[u8],
        partitions: usize,
        allowed_lateness: Duration,
        config: InventoryConfig,
    ) -> Result<Self, StateError> {
        let state: State = bincode::deserialize(bytes)?;
        if state.newest.len() != partitions.max(1) {
            return Err(StateError::Partitions {
                found: state.newest.len(),
                expected: partitions.max(1),
            });
        }
        let mut pending = BinaryHeap::with_capacity(state.pending.len());
        for (at, rank, appended_ms, json) in state.pending {
            let event = Event::decode(&json).map_err(|e| StateError::Event(e.to_string()))?;
            pending.push(Reverse(Buffered {
                at,
                rank,
                id: event.event_id.as_u128(),
                event: Box::new(event),
                appended_ms,
            }));
        }
        let mut decider = Self::new(partitions, allowed_lateness, config.clone());
        if state.keys.len() != state.newest.len() {
            return Err(StateError::Partitions {
                found: state.keys.len(),
                expected: state.newest.len(),
            });
        }
        decider.clocks = state
            .newest
            .into_iter()
            .zip(state.keys)
            .map(|(newest, keys)| PartitionClock::resumed(allowed_lateness, newest, keys))
            .collect();
        decider.pending = pending;
        decider.applied = state.applied;
        decider.inventory = state.inventory.with_config(config);
        decider.orders = state.orders;
        decider.catalog = state.catalog;
        decider.seq = state.seq;
        Ok(decider)
    }

    /// Every row of the document dataflow's inputs now, at the current `seq`: what a dataflow
    /// started from a checkpoint is loaded with.
    pub fn product_rows(&mut self) -> ProductInputs {
        let seq = self.seq;
        let mut rows = ProductInputs::default();
        // The stock is in (sku, warehouse) order: a sku's rows are adjacent.
        let mut per_sku: Vec<(&str, i64)> = Vec::new();
        for ((sku, _), stock) in self.inventory.all_stock() {
            let n = stock.available().max(0);
            match per_sku.last_mut() {
                Some((last, total)) if *last == sku.as_str() => *total += n,
                _ => per_sku.push((sku, n)),
            }
        }
        for (sku, n) in per_sku.into_iter().filter(|(_, n)| *n != 0) {
            rows.available.push(((self.sku_names.id(sku), n), seq, 1));
        }
        for (product_id, listing) in self.catalog.products() {
            let id = self.product_names.id(product_id);
            let key = listing_key(&mut self.sku_names, listing);
            rows.listings.push(((id, key), seq, 1));
        }
        rows
    }
}
