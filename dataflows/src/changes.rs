//! What the dataflows hand to their sinks: full values of what changed, each with the `seq` of
//! the step that last changed it (the rank of that step in the decider's total order, the same in
//! every run over the same log: ADR 0005, ADR 0006). These are the dataflows' own types; the
//! read API's documents are mapped from them at the edge (`emporium-pipeline`), so the API's
//! shape is neither part of the checkpoint format nor of the dataflows.

use emporium_schemas::Money;
use serde::{Deserialize, Serialize};

use crate::orders::Order;

/// Units of one sku in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WarehouseStock {
    pub warehouse: String,
    pub on_hand: i64,
    pub reserved: i64,
    /// `on_hand − reserved` (negative after a stock adjustment below what is reserved).
    pub available: i64,
}

/// One sku's stock in every warehouse that has held it, in warehouse id order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SkuStock {
    pub sku: String,
    pub warehouses: Vec<WarehouseStock>,
}

impl SkuStock {
    /// Units available to order over every warehouse (a warehouse below zero counts as none).
    pub fn available(&self) -> i64 {
        self.warehouses.iter().map(|w| w.available.max(0)).sum()
    }
}

/// Units of one sku of a product available to order now.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SkuAvailable {
    pub sku: String,
    pub available: i64,
}

/// One product's listing with the skus it owns and their availability.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Product {
    pub product_id: String,
    pub title: String,
    pub brand: String,
    pub category_path: Vec<String>,
    pub price: Money,
    pub discontinued: bool,
    pub skus: Vec<SkuAvailable>,
}

/// A full value that changed, with the `seq` of its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Product {
        seq: u64,
        product: Product,
    },
    Inventory {
        seq: u64,
        stock: SkuStock,
    },
    Order {
        seq: u64,
        order: Order,
    },
    /// A maintained view's document for a key ([`crate::view`]); `None`: the key left the view.
    View {
        view: &'static str,
        key: String,
        seq: u64,
        document: Option<Json>,
    },
}

/// A document as JSON text, written once where the view builds it; the store keeps it as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json(String);

impl Json {
    /// `value` as JSON. A document is made of strings, numbers, lists and maps with string
    /// keys, which always serialize; `null` if one did not.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        Self(serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
    }

    /// Text that is JSON already (a stored document).
    pub fn of_text(text: &str) -> Self {
        Self(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0.into_bytes()
    }

    /// Parsed back: for the search sink, which reads two views' documents, and for tests.
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }
}

impl Change {
    pub fn seq(&self) -> u64 {
        match self {
            Change::Product { seq, .. }
            | Change::Inventory { seq, .. }
            | Change::Order { seq, .. }
            | Change::View { seq, .. } => *seq,
        }
    }

    /// What it is a change of: a table (`products`, `inventory`, `orders`, or a view's name) and
    /// an id. Two changes with one key replace each other; the later `seq` wins.
    pub fn key(&self) -> (&'static str, &str) {
        match self {
            Change::Product { product, .. } => ("products", &product.product_id),
            Change::Inventory { stock, .. } => ("inventory", &stock.sku),
            Change::Order { order, .. } => ("orders", &order.order_id),
            Change::View { view, key, .. } => (view, key),
        }
    }
}
