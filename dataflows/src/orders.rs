//! Order state: every order's status, lines and the time of every transition, maintained from the
//! log (shopper and payment events, fulfilment events, and the inventory decisions).
//!
//! Input: one order's events in log order. All of an order's events — decisions included — are
//! keyed by `order_id` (ADR 0002), so they share a partition and its order; the fold therefore
//! runs per partition, and any interleaving of partitions gives the same states.
//! Output: the order views and anomalies. Invariant: a status only moves along the machine below;
//! an event that makes no sense for the order's status is an anomaly (recorded, never a crash,
//! never silently dropped) and changes nothing — except a shipment, which records the physical
//! fact.
//!
//! placed → reserved | rejected → paid | payment_failed → shipped → delivered → returned, plus
//! cancelled (before shipping) and expired (a reservation released for want of payment).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use emporium_schemas::orders::OrderLine;
use emporium_schemas::{Event, Payload};
use serde::{Deserialize, Serialize};

use crate::piece::{self, Dirty, Entries};

/// How long the decider keeps a closed order (rejected, payment failed, cancelled, expired,
/// delivered, returned) after its closing transition (at that event's own time; a decision's is
/// its decision time): it is forgotten once the step being taken is this much later, so the
/// state is bounded by the orders of the last weeks and those still open, not the history
/// (issue 23). Its document stays in the store. An event that still names a forgotten order is
/// an `unknown_order` anomaly (a return requested more than this after delivery included).
/// Order ids must never be reused: one placed again after its order was forgotten is decided as
/// a new order, and its decisions, whose ids are those of the first order's
/// ([`crate::decisions`]), are not appended again (the pipeline counts them as already logged).
pub fn closed_order_memory() -> Duration {
    Duration::days(14)
}

/// Where an order is in its life (the machine in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    Placed = 0,
    Reserved,
    Rejected,
    Paid,
    PaymentFailed,
    Cancelled,
    Expired,
    Shipped,
    Delivered,
    Returned,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 10] = [
        OrderStatus::Placed,
        OrderStatus::Reserved,
        OrderStatus::Rejected,
        OrderStatus::Paid,
        OrderStatus::PaymentFailed,
        OrderStatus::Cancelled,
        OrderStatus::Expired,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Returned,
    ];

    /// Closed: no event moves it on but a return after delivery.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            OrderStatus::Rejected
                | OrderStatus::PaymentFailed
                | OrderStatus::Cancelled
                | OrderStatus::Expired
                | OrderStatus::Delivered
                | OrderStatus::Returned
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Reserved => "reserved",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Paid => "paid",
            OrderStatus::PaymentFailed => "payment_failed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Returned => "returned",
        }
    }
}

/// One transition of an order, at the event time it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub status: OrderStatus,
    pub at: DateTime<Utc>,
}

/// One order's state: its lines, its status and every transition, oldest first (the first is
/// `placed`). The dataflows' own type, checkpointed as is; the read API's document is mapped
/// from it at the edge, so an API change is not a checkpoint change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub user_id: String,
    pub lines: Vec<OrderLine>,
    pub status: OrderStatus,
    pub history: Vec<Transition>,
}

/// An event that made no sense for its order (or, from the catalog, its product).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// The order id (or product id) it concerns.
    pub key: String,
    pub at: DateTime<Utc>,
    pub kind: &'static str,
    pub detail: String,
}

/// Every order's view, folded from the log.
#[derive(Debug, Clone, Default)]
pub struct Orders {
    orders: HashMap<String, Order>,
    /// Orders per status, indexed by `OrderStatus as usize`.
    counts: [usize; 10],
    /// Closed orders by their last transition's time, to forget [`closed_order_memory`] later.
    closed: BTreeSet<(DateTime<Utc>, String)>,
    /// Orders forgotten, per status they were in: [`Orders::count`] still counts them.
    forgotten: [usize; 10],
    /// Orders changed since the last `take_touched`.
    touched: Vec<String>,
    /// Orders changed or forgotten since the last checkpoint piece.
    dirty: Dirty<String>,
}

/// [`OrdersPiece`] as written, borrowed from the fold.
#[derive(Serialize)]
pub(crate) struct OrdersPieceRef<'a> {
    orders: Vec<(Cow<'a, str>, Option<&'a Order>)>,
    forgotten: [usize; 10],
}

/// The orders of a checkpoint piece ([`crate::piece`]): every order (a full piece), or every
/// order changed since the previous piece with its state now (`None`: forgotten).
#[derive(Deserialize)]
pub(crate) struct OrdersPiece {
    orders: Vec<(String, Option<Order>)>,
    forgotten: [usize; 10],
}

impl Orders {
    pub fn get(&self, order_id: &str) -> Option<&Order> {
        self.orders.get(order_id)
    }

    /// How many orders are in `status` now, those forgotten in it included (a forgotten order
    /// is closed: it stays in its last status).
    pub fn count(&self, status: OrderStatus) -> usize {
        self.counts[status as usize] + self.forgotten[status as usize]
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Order> {
        self.orders.values()
    }

    /// Forgets the orders closed before `bound` ([`closed_order_memory`] before the step being
    /// taken) and gives them back, last state included.
    pub fn forget_closed_before(&mut self, bound: DateTime<Utc>) -> Vec<Order> {
        let mut gone = Vec::new();
        while let Some((at, _)) = self.closed.first()
            && *at < bound
        {
            let Some((_, order_id)) = self.closed.pop_first() else {
                break;
            };
            if let Some(order) = self.orders.remove(&order_id) {
                self.dirty.mark(order_id.as_str());
                self.counts[order.status as usize] -= 1;
                self.forgotten[order.status as usize] += 1;
                gone.push(order);
            }
        }
        gone
    }

    /// Orders changed since the last call (an id may repeat).
    pub fn take_touched(&mut self) -> Vec<String> {
        std::mem::take(&mut self.touched)
    }

    /// Marks changed orders for checkpoint deltas from now on ([`crate::piece`]).
    pub(crate) fn track_pieces(&mut self) {
        self.dirty.track();
    }

    /// Every order, for a full checkpoint piece.
    pub(crate) fn full_piece(&self) -> OrdersPieceRef<'_> {
        OrdersPieceRef {
            orders: self
                .orders
                .iter()
                .map(|(id, order)| (Cow::Borrowed(id.as_str()), Some(order)))
                .collect(),
            forgotten: self.forgotten,
        }
    }

    /// The orders changed since the last piece; the next delta starts from here.
    pub(crate) fn delta_piece(&mut self) -> OrdersPieceRef<'_> {
        let orders = &self.orders;
        OrdersPieceRef {
            orders: piece::changed(self.dirty.take(), |id: &str| orders.get(id)),
            forgotten: self.forgotten,
        }
    }

    /// Forgets the changes marked so far: a full piece was taken.
    pub(crate) fn clear_dirty(&mut self) {
        self.dirty.clear();
    }

    /// Applies a piece's entries (a full piece to an empty fold, then each delta in order);
    /// [`Orders::reindex`] once they are all in.
    pub(crate) fn apply_piece(&mut self, piece: OrdersPiece) {
        for (id, order) in piece.orders {
            self.orders.set(id, order);
        }
        self.forgotten = piece.forgotten;
    }

    /// Rebuilds the counts per status and the closed orders by time from the orders.
    pub(crate) fn reindex(&mut self) {
        self.counts = [0; 10];
        self.closed.clear();
        for (id, order) in &self.orders {
            self.counts[order.status as usize] += 1;
            if order.status.is_closed()
                && let Some(last) = order.history.last()
            {
                self.closed.insert((last.at, id.clone()));
            }
        }
    }

    /// Applies the next event of an order (in its partition's log order).
    pub fn apply(&mut self, event: &Event, anomalies: &mut Vec<Anomaly>) {
        use OrderStatus::*;
        let at = event.occurred_at;
        let (order_id, next, allowed): (&str, OrderStatus, &[OrderStatus]) = match &event.payload {
            Payload::OrderPlaced(e) => {
                if self.orders.contains_key(&e.order_id) {
                    anomalies.push(anomaly(
                        &e.order_id,
                        at,
                        "order_placed_twice",
                        "already placed",
                    ));
                } else {
                    self.orders.insert(
                        e.order_id.clone(),
                        Order {
                            order_id: e.order_id.clone(),
                            user_id: e.user_id.clone(),
                            lines: e.lines.clone(),
                            status: Placed,
                            history: vec![Transition { status: Placed, at }],
                        },
                    );
                    self.counts[Placed as usize] += 1;
                    self.touched.push(e.order_id.clone());
                    self.dirty.mark(e.order_id.as_str());
                }
                return;
            }
            Payload::InventoryReserved(e) => (&e.order_id, Reserved, &[Placed]),
            Payload::OrderRejected(e) => (&e.order_id, Rejected, &[Placed]),
            Payload::PaymentAuthorized(e) => (&e.order_id, Paid, &[Reserved]),
            Payload::PaymentFailed(e) => (&e.order_id, PaymentFailed, &[Reserved, Placed, Paid]),
            Payload::OrderCancelled(e) => (&e.order_id, Cancelled, &[Placed, Reserved, Paid]),
            Payload::ReservationReleased(e) => {
                // Releases after a failed payment or a cancellation only confirm the status;
                // an expiry is a transition of its own.
                if e.reason != "expired" {
                    return;
                }
                (&e.order_id, Expired, &[Reserved])
            }
            Payload::OrderShipped(e) => (&e.order_id, Shipped, &[Paid]),
            Payload::OrderDelivered(e) => (&e.order_id, Delivered, &[Shipped]),
            Payload::ReturnRequested(e) => (&e.order_id, Returned, &[Delivered]),
            _ => return,
        };
        let Some(order) = self.orders.get_mut(order_id) else {
            anomalies.push(anomaly(
                order_id,
                at,
                "unknown_order",
                &format!("{} for an order never placed", event.kind()),
            ));
            return;
        };
        if allowed.contains(&order.status) {
            if order.status.is_closed()
                && let Some(last) = order.history.last()
            {
                self.closed.remove(&(last.at, order_id.to_owned()));
            }
            if next.is_closed() {
                self.closed.insert((at, order_id.to_owned()));
            }
            self.counts[order.status as usize] -= 1;
            self.counts[next as usize] += 1;
            order.status = next;
            order.history.push(Transition { status: next, at });
            self.touched.push(order_id.to_owned());
            self.dirty.mark(order_id);
            return;
        }
        let kind = match (next, order.status) {
            (Paid, Paid) => "duplicate_payment",
            (Shipped, Reserved | Placed) => "shipped_before_payment",
            (Shipped, Shipped | Delivered | Returned) => "shipped_twice",
            (Cancelled, Shipped | Delivered | Returned) => "cancelled_after_shipping",
            (Paid, Expired | Cancelled | Rejected | PaymentFailed) => "payment_after_close",
            _ => "out_of_order",
        };
        let detail = format!("{} while {:?}", event.kind(), order.status);
        anomalies.push(anomaly(order_id, at, kind, &detail));
        if next == Shipped && kind == "shipped_before_payment" {
            // The parcel left all the same: the view records the physical fact.
            self.counts[order.status as usize] -= 1;
            self.counts[Shipped as usize] += 1;
            order.status = Shipped;
            order.history.push(Transition {
                status: Shipped,
                at,
            });
            self.touched.push(order_id.to_owned());
            self.dirty.mark(order_id);
        }
    }
}

fn anomaly(order_id: &str, at: DateTime<Utc>, kind: &'static str, detail: &str) -> Anomaly {
    Anomaly {
        key: order_id.to_owned(),
        at,
        kind,
        detail: detail.to_owned(),
    }
}
