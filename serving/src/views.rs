//! The documents the store keeps, one per read path: what a shopper's `GET` returns, exactly.
//!
//! Each is a full value (never a delta), written by the dataflows as an upsert and read back as is,
//! so a document never needs to be assembled at read time. Every write also carries a `seq`: the
//! rank, in the decider's total order (decision time, event id), of the last event that changed
//! the document. `seq` depends only on the log's contents, so a write replayed after a crash
//! carries the same `seq` as the first time, and a store keeps the document with the highest one
//! (ADR 0006): writes are idempotent and never move a document backwards.

use chrono::{DateTime, Utc};
use emporium_schemas::money::Money;
use emporium_schemas::orders::OrderLine;
use serde::{Deserialize, Serialize};

/// Where an order is in its life (the state machine is in `dataflows/src/orders.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// One order as a reader sees it: `GET /v1/orders/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub order_id: String,
    pub user_id: String,
    pub lines: Vec<OrderLine>,
    pub status: OrderStatus,
    /// Every transition, oldest first; the first is `placed`.
    pub history: Vec<Transition>,
}

impl OrderView {
    /// When the order was placed (its first transition).
    pub fn placed_at(&self) -> DateTime<Utc> {
        self.history.first().map_or(DateTime::UNIX_EPOCH, |t| t.at)
    }

    /// The order's entry in its user's list.
    pub fn summary(&self) -> OrderSummary {
        let currency = self
            .lines
            .first()
            .map_or_else(|| "USD".to_owned(), |l| l.unit_price.currency.clone());
        let total = self
            .lines
            .iter()
            .map(|l| l.qty.saturating_mul(l.unit_price.amount_minor))
            .fold(0_i64, i64::saturating_add);
        OrderSummary {
            order_id: self.order_id.clone(),
            status: self.status,
            placed_at: self.placed_at(),
            total: Money::new(total, &currency),
        }
    }
}

/// Units of one sku in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WarehouseStock {
    pub warehouse: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

/// One sku in every warehouse: `GET /v1/inventory/{sku}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InventoryView {
    pub sku: String,
    /// In warehouse id order.
    pub warehouses: Vec<WarehouseStock>,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

impl InventoryView {
    /// Sums `warehouses` into the totals.
    pub fn new(sku: String, warehouses: Vec<WarehouseStock>) -> Self {
        let sum = |f: fn(&WarehouseStock) -> i64| warehouses.iter().map(f).sum();
        Self {
            on_hand: sum(|w| w.on_hand),
            reserved: sum(|w| w.reserved),
            available: sum(|w| w.available.max(0)),
            sku,
            warehouses,
        }
    }
}

/// One product with its price and availability: `GET /v1/products/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductView {
    pub product_id: String,
    pub title: String,
    pub brand: String,
    pub category_path: Vec<String>,
    pub price: Money,
    pub discontinued: bool,
    /// Units available to order now, over every sku and warehouse.
    pub available: i64,
    pub skus: Vec<SkuAvailability>,
}

/// Units of one sku of a product available to order now.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SkuAvailability {
    pub sku: String,
    pub available: i64,
}

/// A document to upsert, with the `seq` it reflects (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upsert {
    Product {
        seq: u64,
        view: ProductView,
    },
    Inventory {
        seq: u64,
        view: InventoryView,
    },
    Order {
        seq: u64,
        view: OrderView,
    },
    /// A maintained view's document for `key`, as JSON (`null`: the key left the view), served
    /// at `GET /v1/views/{view}/{key}`.
    View {
        view: String,
        key: String,
        seq: u64,
        json: bytes::Bytes,
    },
}

impl Upsert {
    pub fn seq(&self) -> u64 {
        match self {
            Upsert::Product { seq, .. }
            | Upsert::Inventory { seq, .. }
            | Upsert::Order { seq, .. }
            | Upsert::View { seq, .. } => *seq,
        }
    }
}

/// One write of the dataflows: documents, and the log positions they reflect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub upserts: Vec<Upsert>,
    /// Per partition of the events topic, the next offset to read: every event before it has been
    /// read by the dataflow. Stored as the store's checkpoint, after the documents.
    pub positions: Vec<u64>,
    /// The decider's `seq` when the batch was taken: positions with a lower one (a replay) never
    /// replace stored positions.
    pub seq: u64,
    /// The sender's claim ([`crate::store::Store::claim_writer`]; 0 for a sender that never
    /// claimed, such as tools and tests on an unclaimed store): a batch with a claim below the
    /// store's current one is refused whole.
    pub writer: u64,
}

/// An entry of `GET /v1/users/{id}/orders`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub order_id: String,
    pub status: OrderStatus,
    pub placed_at: DateTime<Utc>,
    pub total: Money,
}
