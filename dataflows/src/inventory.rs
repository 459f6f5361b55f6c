//! The inventory decider: stock per (sku, warehouse), and for every order an all-or-nothing
//! reservation decision that is final — compensated only by a later release, never revoked.
//!
//! Input: events in decision-time order ([`crate::event_time`]). Output: decision events
//! (`inventory_reserved`, `order_rejected`, `reservation_released`) and anomalies.
//! Invariant: a reservation is only made from available units, so for every (sku, warehouse)
//! `reserved + shipped ≤ received + adjustments` holds after every decision; only a negative stock
//! adjustment (units found damaged or lost) can break it, and that is reported as an anomaly.
//!
//! The rule, precisely enough to re-implement (see `specs/adr/0005-inventory-decisions.md`):
//! 1. Before an event at time `t`, every unpaid reservation whose deadline (decision time +
//!    reservation TTL) is before `t` is released with reason `expired`, in (deadline, order_id)
//!    order. (The streaming driver also releases them as soon as the watermark passes the
//!    deadline: the same releases, in the same place among the decisions.)
//! 2. `order_placed`: lines are taken in order; each line goes to the warehouse with the most
//!    units available for its sku (after the order's earlier lines), among those with at least the
//!    line's quantity; ties go to the smallest warehouse id. If every line finds one, all are
//!    reserved; otherwise nothing is and the order is rejected with its short lines.
//! 3. `payment_authorized` stops the expiry clock; `payment_failed` and `order_cancelled` release;
//!    `order_shipped` turns the reservation into shipped units.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use emporium_schemas::decisions::{
    InventoryReserved, OrderRejected, ReservationReleased, ReservedLine, ShortLine,
};
use emporium_schemas::orders::OrderLine;
use emporium_schemas::{Event, Payload};
use serde::{Deserialize, Serialize};

use crate::orders::closed_order_memory;
use crate::piece::{self, Dirty, Entries};

/// Settings of the decider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryConfig {
    /// How long, in event time, a reservation waits for its payment before it is released.
    pub reservation_ttl: Duration,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            reservation_ttl: Duration::minutes(15),
        }
    }
}

/// Units of one sku in one warehouse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// Physically there: received + adjustments − shipped.
    pub on_hand: i64,
    /// Promised to orders, not shipped yet.
    pub reserved: i64,
    pub shipped: i64,
}

impl Stock {
    pub fn available(&self) -> i64 {
        self.on_hand.saturating_sub(self.reserved)
    }
}

/// What the decider produced, at the decision time it produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A decision event to append to the log.
    Decision { at: DateTime<Utc>, payload: Payload },
    /// An event that made no sense in its order's or stock's history.
    Anomaly {
        at: DateTime<Utc>,
        key: String,
        kind: &'static str,
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum OrderState {
    Reserved {
        lines: Vec<ReservedLine>,
        paid: bool,
        deadline: DateTime<Utc>,
    },
    /// Closed, at the decision time given (forgotten [`closed_order_memory`] later).
    Rejected {
        at: DateTime<Utc>,
    },
    Released {
        at: DateTime<Utc>,
    },
    Shipped {
        at: DateTime<Utc>,
    },
}

impl OrderState {
    /// When it closed (`None`: a reservation still held).
    fn closed_at(&self) -> Option<DateTime<Utc>> {
        match self {
            OrderState::Reserved { .. } => None,
            OrderState::Rejected { at }
            | OrderState::Released { at }
            | OrderState::Shipped { at } => Some(*at),
        }
    }
}

/// The decider's state. Deterministic: the same events in the same order give the same outputs.
/// Checkpointed in pieces ([`crate::piece`]), without its settings (given back on restore).
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    config: InventoryConfig,
    stock: BTreeMap<(String, String), Stock>,
    orders: HashMap<String, OrderState>,
    expiries: BTreeSet<(DateTime<Utc>, String)>,
    /// Orders closed here (rejected, released, shipped) by the decision time they closed at:
    /// forgotten [`closed_order_memory`] later (no event changes their stock any more).
    closed: BTreeSet<(DateTime<Utc>, String)>,
    /// Orders in `Reserved`, kept as a count so reading it costs nothing.
    open: usize,
    /// Units physically in every warehouse together, kept as a count.
    on_hand: i64,
    /// Every (sku, warehouse) whose stock changed since the last `take_touched`, once, with its
    /// stock before the first change (`None`: it had none).
    touched: Vec<StockKey>,
    /// Stock rows and orders changed (or forgotten) since the last checkpoint piece.
    dirty_stock: Dirty<(String, String)>,
    dirty_orders: Dirty<String>,
}

/// [`InventoryPiece`] as written, borrowed from the fold.
#[derive(Serialize)]
pub(crate) struct InventoryPieceRef<'a> {
    stock: Vec<(Cow<'a, SkuWarehouse>, Option<&'a Stock>)>,
    orders: Vec<(Cow<'a, str>, Option<&'a OrderState>)>,
    on_hand: i64,
}

/// The inventory of a checkpoint piece ([`crate::piece`]): every stock row and order (a full
/// piece), or those changed since the previous piece with their value now (`None`: gone).
#[derive(Deserialize)]
pub(crate) struct InventoryPiece {
    stock: Vec<(SkuWarehouse, Option<Stock>)>,
    orders: Vec<(String, Option<OrderState>)>,
    on_hand: i64,
}

/// A stock row's key.
type SkuWarehouse = (String, String);

/// A (sku, warehouse) whose stock changed, with its stock before (`None`: the row is new).
pub type StockKey = (String, String, Option<Stock>);

impl Inventory {
    pub fn new(config: InventoryConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Gives back the settings a checkpointed state was taken without.
    pub fn with_config(mut self, config: InventoryConfig) -> Self {
        self.config = config;
        self
    }

    pub fn stock(&self, sku: &str, warehouse: &str) -> Stock {
        self.stock
            .get(&(sku.to_owned(), warehouse.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// The stock of a (sku, warehouse) key.
    pub fn stock_at(&self, key: &(String, String)) -> Stock {
        self.stock.get(key).copied().unwrap_or_default()
    }

    /// Every warehouse holding `sku`, with its stock, in warehouse id order.
    pub fn stock_of<'a>(&'a self, sku: &'a str) -> impl Iterator<Item = (&'a str, &'a Stock)> + 'a {
        self.stock
            .range((sku.to_owned(), String::new())..)
            .take_while(move |((s, _), _)| s == sku)
            .map(|((_, warehouse), stock)| (warehouse.as_str(), stock))
    }

    /// Every (sku, warehouse) whose stock changed since the last call, once, with its stock
    /// before the first change: the change is that to its current [`Inventory::stock`].
    pub fn take_touched(&mut self) -> Vec<StockKey> {
        std::mem::take(&mut self.touched)
    }

    /// Marks changed stock rows and orders for checkpoint deltas from now on ([`crate::piece`]).
    pub(crate) fn track_pieces(&mut self) {
        self.dirty_stock.track();
        self.dirty_orders.track();
    }

    /// Every stock row and order, for a full checkpoint piece.
    pub(crate) fn full_piece(&self) -> InventoryPieceRef<'_> {
        InventoryPieceRef {
            stock: self
                .stock
                .iter()
                .map(|(key, stock)| (Cow::Borrowed(key), Some(stock)))
                .collect(),
            orders: self
                .orders
                .iter()
                .map(|(id, state)| (Cow::Borrowed(id.as_str()), Some(state)))
                .collect(),
            on_hand: self.on_hand,
        }
    }

    /// The stock rows and orders changed since the last piece; the next delta starts from here.
    pub(crate) fn delta_piece(&mut self) -> InventoryPieceRef<'_> {
        let (stock, orders) = (&self.stock, &self.orders);
        InventoryPieceRef {
            stock: piece::changed(self.dirty_stock.take(), |key: &SkuWarehouse| stock.get(key)),
            orders: piece::changed(self.dirty_orders.take(), |id: &str| orders.get(id)),
            on_hand: self.on_hand,
        }
    }

    /// Forgets the changes marked so far: a full piece was taken.
    pub(crate) fn clear_dirty(&mut self) {
        self.dirty_stock.clear();
        self.dirty_orders.clear();
    }

    /// Applies a piece's entries (a full piece to an empty fold, then each delta in order);
    /// [`Inventory::reindex`] once they are all in.
    pub(crate) fn apply_piece(&mut self, piece: InventoryPiece) {
        for (key, row) in piece.stock {
            self.stock.set(key, row);
        }
        for (id, state) in piece.orders {
            self.orders.set(id, state);
        }
        self.on_hand = piece.on_hand;
    }

    /// Rebuilds the expiries of unpaid reservations, the closed orders by time and the count of
    /// open reservations from the orders.
    pub(crate) fn reindex(&mut self) {
        self.expiries.clear();
        self.closed.clear();
        self.open = 0;
        for (id, state) in &self.orders {
            match state {
                OrderState::Reserved { paid, deadline, .. } => {
                    self.open += 1;
                    if !*paid {
                        self.expiries.insert((*deadline, id.clone()));
                    }
                }
                closed => {
                    if let Some(at) = closed.closed_at() {
                        self.closed.insert((at, id.clone()));
                    }
                }
            }
        }
    }

    /// Every (sku, warehouse) with its stock, in key order.
    pub fn all_stock(&self) -> impl Iterator<Item = (&(String, String), &Stock)> {
        self.stock.iter()
    }

    /// Orders holding a reservation now.
    pub fn open_reservations(&self) -> usize {
        self.open
    }

    /// Units on hand over every sku and warehouse.
    pub fn units_on_hand(&self) -> i64 {
        self.on_hand
    }

    /// The earliest deadline of an unpaid reservation.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.expiries.first().map(|(deadline, _)| *deadline)
    }

    /// Releases every unpaid reservation whose deadline is before `t`.
    pub fn advance_to(&mut self, t: DateTime<Utc>, out: &mut Vec<Output>) {
        while self.expire_next(t, out) {}
    }

    /// Releases the unpaid reservation with the earliest deadline (then smallest order id) if
    /// that deadline is before `t`; `false` if there is none. One step of
    /// [`Inventory::advance_to`].
    pub fn expire_next(&mut self, t: DateTime<Utc>, out: &mut Vec<Output>) -> bool {
        match self.expiries.first() {
            Some((deadline, _)) if *deadline < t => {}
            _ => return false,
        }
        let Some((deadline, order_id)) = self.expiries.pop_first() else {
            return false;
        };
        self.release(&order_id, "expired", deadline, out);
        true
    }

    /// Orders this fold still keeps (open or closed within [`closed_order_memory`]).
    pub fn orders_kept(&self) -> usize {
        self.orders.len()
    }

    /// Forgets the orders closed more than [`closed_order_memory`] before `at`.
    fn forget_closed(&mut self, at: DateTime<Utc>) {
        let bound = at - closed_order_memory();
        while let Some((closed_at, _)) = self.closed.first()
            && *closed_at < bound
        {
            if let Some((_, order_id)) = self.closed.pop_first() {
                self.orders.remove(&order_id);
                self.dirty_orders.mark(order_id.as_str());
            }
        }
    }

    /// Marks `order_id` closed at `at`, in state `state`.
    fn close(&mut self, order_id: &str, state: OrderState) {
        let at = state.closed_at();
        self.orders.insert(order_id.to_owned(), state);
        self.dirty_orders.mark(order_id);
        if let Some(at) = at {
            self.closed.insert((at, order_id.to_owned()));
        }
    }

    /// Applies one event at decision time `at` (events must come in decision-time order).
    /// Orders closed more than [`closed_order_memory`] before `at` are forgotten first: an event
    /// naming one then finds no order, as one never placed.
    pub fn apply(&mut self, at: DateTime<Utc>, event: &Event, out: &mut Vec<Output>) {
        self.advance_to(at, out);
        self.forget_closed(at);
        match &event.payload {
            Payload::StockReceived(e) => {
                self.change_on_hand(at, &e.sku, &e.warehouse, e.quantity, out);
            }
            Payload::StockAdjusted(e) => {
                if !self.change_on_hand(at, &e.sku, &e.warehouse, e.delta, out) {
                    return;
                }
                let stock = self.entry(&e.sku, &e.warehouse);
                if stock.on_hand < stock.reserved {
                    let detail = format!(
                        "adjustment of {} leaves {} on hand for {} reserved",
                        e.delta, stock.on_hand, stock.reserved
                    );
                    out.push(Output::Anomaly {
                        at,
                        key: format!("{}@{}", e.sku, e.warehouse),
                        kind: "stock_below_reserved",
                        detail,
                    });
                }
            }
            Payload::OrderPlaced(e) => self.decide(at, &e.order_id, &e.lines, out),
            Payload::PaymentAuthorized(e) => match self.orders.get_mut(&e.order_id) {
                Some(OrderState::Reserved { paid, deadline, .. }) if !*paid => {
                    *paid = true;
                    self.dirty_orders.mark(e.order_id.as_str());
                    let key = (*deadline, e.order_id.clone());
                    self.expiries.remove(&key);
                }
                other => {
                    let state = describe(other.map(|s| &*s));
                    anomaly(out, at, &e.order_id, "payment_without_reservation", state);
                }
            },
            Payload::PaymentFailed(e) => self.release(&e.order_id, "payment_failed", at, out),
            Payload::OrderCancelled(e) => self.release(&e.order_id, "cancelled", at, out),
            Payload::OrderShipped(e) => self.ship(at, &e.order_id, out),
            _ => {}
        }
    }

    /// Adds `delta` units on hand at (sku, warehouse) and to the total; `false`, with a
    /// `quantity_overflow` anomaly and nothing changed, when either sum would leave `i64`.
    fn change_on_hand(
        &mut self,
        at: DateTime<Utc>,
        sku: &str,
        warehouse: &str,
        delta: i64,
        out: &mut Vec<Output>,
    ) -> bool {
        let before = self
            .stock
            .get(&(sku.to_owned(), warehouse.to_owned()))
            .map_or(0, |s| s.on_hand);
        match (before.checked_add(delta), self.on_hand.checked_add(delta)) {
            (Some(after), Some(total)) => {
                self.entry(sku, warehouse).on_hand = after;
                self.on_hand = total;
                true
            }
            _ => {
                let detail = format!(
                    "{delta} units would take {before} on hand (all skus: {}) past the largest count",
                    self.on_hand
                );
                out.push(Output::Anomaly {
                    at,
                    key: format!("{sku}@{warehouse}"),
                    kind: "quantity_overflow",
                    detail,
                });
                false
            }
        }
    }

    /// The stock to change: every change of stock goes through here, which marks the sku touched.
    fn entry(&mut self, sku: &str, warehouse: &str) -> &mut Stock {
        let key = (sku.to_owned(), warehouse.to_owned());
        self.dirty_stock.mark(&key);
        // An event touches a handful of rows: a scan finds the repeat.
        if !self
            .touched
            .iter()
            .any(|(s, w, _)| s == sku && w == warehouse)
        {
            let before = self.stock.get(&key).copied();
            self.touched
                .push((sku.to_owned(), warehouse.to_owned(), before));
        }
        self.stock.entry(key).or_default()
    }

    fn decide(
        &mut self,
        at: DateTime<Utc>,
        order_id: &str,
        lines: &[OrderLine],
        out: &mut Vec<Output>,
    ) {
        if self.orders.contains_key(order_id) {
            anomaly(
                out,
                at,
                order_id,
                "order_placed_twice",
                "already decided".into(),
            );
            return;
        }
        let mut taken: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut reserved = Vec::with_capacity(lines.len());
        let mut short = Vec::new();
        for line in lines {
            let candidates = self
                .stock
                .range((line.sku.clone(), String::new())..)
                .take_while(|((sku, _), _)| *sku == line.sku)
                .map(|(key, stock)| {
                    let already = taken.get(key).copied().unwrap_or(0);
                    (stock.available().saturating_sub(already), &key.1)
                });
            // Most available first; on a tie the smallest warehouse id (iteration is in id order,
            // and only a strictly larger count replaces the best so far).
            let mut best: Option<(i64, &String)> = None;
            for (available, warehouse) in candidates {
                if best.is_none_or(|(b, _)| available > b) {
                    best = Some((available, warehouse));
                }
            }
            match best {
                Some((available, warehouse)) if available >= line.qty => {
                    // At most what is available: no overflow.
                    *taken
                        .entry((line.sku.clone(), warehouse.clone()))
                        .or_default() += line.qty;
                    reserved.push(ReservedLine {
                        sku: line.sku.clone(),
                        warehouse: warehouse.clone(),
                        qty: line.qty,
                    });
                }
                best => short.push(ShortLine {
                    sku: line.sku.clone(),
                    wanted: line.qty,
                    available: best.map_or(0, |(a, _)| a.max(0)),
                }),
            }
        }
        if !short.is_empty() {
            self.close(order_id, OrderState::Rejected { at });
            out.push(Output::Decision {
                at,
                payload: Payload::OrderRejected(OrderRejected {
                    order_id: order_id.to_owned(),
                    short_lines: short,
                }),
            });
            return;
        }
        for line in &reserved {
            self.entry(&line.sku, &line.warehouse).reserved += line.qty;
        }
        let deadline = at + self.config.reservation_ttl;
        self.expiries.insert((deadline, order_id.to_owned()));
        self.open += 1;
        self.dirty_orders.mark(order_id);
        self.orders.insert(
            order_id.to_owned(),
            OrderState::Reserved {
                lines: reserved.clone(),
                paid: false,
                deadline,
            },
        );
        out.push(Output::Decision {
            at,
            payload: Payload::InventoryReserved(InventoryReserved {
                order_id: order_id.to_owned(),
                lines: reserved,
            }),
        });
    }

    fn release(&mut self, order_id: &str, reason: &str, at: DateTime<Utc>, out: &mut Vec<Output>) {
        let Some(OrderState::Reserved {
            lines, deadline, ..
        }) = self.orders.get(order_id).cloned()
        else {
            let state = describe(self.orders.get(order_id));
            anomaly(
                out,
                at,
                order_id,
                "release_without_reservation",
                format!("{reason}: {state}"),
            );
            return;
        };
        for line in &lines {
            self.entry(&line.sku, &line.warehouse).reserved -= line.qty;
        }
        self.expiries.remove(&(deadline, order_id.to_owned()));
        self.close(order_id, OrderState::Released { at });
        self.open -= 1;
        out.push(Output::Decision {
            at,
            payload: Payload::ReservationReleased(ReservationReleased {
                order_id: order_id.to_owned(),
                reason: reason.to_owned(),
                lines,
            }),
        });
    }

    fn ship(&mut self, at: DateTime<Utc>, order_id: &str, out: &mut Vec<Output>) {
        let Some(OrderState::Reserved {
            lines,
            paid,
            deadline,
        }) = self.orders.get(order_id).cloned()
        else {
            let state = describe(self.orders.get(order_id));
            anomaly(out, at, order_id, "shipped_without_reservation", state);
            return;
        };
        if !paid {
            // The units left the building all the same: move the stock, report the anomaly.
            anomaly(
                out,
                at,
                order_id,
                "shipped_before_payment",
                "reserved, unpaid".into(),
            );
            self.expiries.remove(&(deadline, order_id.to_owned()));
        }
        let mut overflowed = false;
        for line in &lines {
            let stock = self.entry(&line.sku, &line.warehouse);
            // A reserved line holds at most what was available: only stock adjusted far below
            // zero, or shipped past the largest count, can leave `i64` here.
            let (on_hand, shipped) = (
                stock.on_hand.checked_sub(line.qty),
                stock.shipped.checked_add(line.qty),
            );
            stock.reserved -= line.qty;
            stock.on_hand = on_hand.unwrap_or(i64::MIN);
            stock.shipped = shipped.unwrap_or(i64::MAX);
            let total = self.on_hand.checked_sub(line.qty);
            self.on_hand = total.unwrap_or(i64::MIN);
            overflowed |= on_hand.is_none() || shipped.is_none() || total.is_none();
        }
        if overflowed {
            anomaly(
                out,
                at,
                order_id,
                "quantity_overflow",
                "shipping took a count past the largest or smallest i64; it was clamped".into(),
            );
        }
        self.close(order_id, OrderState::Shipped { at });
        self.open -= 1;
    }
}

fn describe(state: Option<&OrderState>) -> String {
    match state {
        None => "unknown order".into(),
        Some(OrderState::Reserved { paid: true, .. }) => "reserved and paid".into(),
        Some(OrderState::Reserved { .. }) => "reserved".into(),
        Some(OrderState::Rejected { .. }) => "rejected".into(),
        Some(OrderState::Released { .. }) => "released".into(),
        Some(OrderState::Shipped { .. }) => "shipped".into(),
    }
}

fn anomaly(
    out: &mut Vec<Output>,
    at: DateTime<Utc>,
    key: &str,
    kind: &'static str,
    detail: String,
) {
    out.push(Output::Anomaly {
        at,
        key: key.to_owned(),
        kind,
        detail,
    });
}
