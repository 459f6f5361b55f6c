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

/// A document: JSON text where the view wrote it itself ([`crate::view::View::json`]), else the
/// `serde_json::Value` of [`crate::view::View::document`], written out by the store writer (off
/// worker 0, which builds the documents and is the pipeline's busiest thread).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Text(String),
    Value(serde_json::Value),
}

impl Json {
    /// `value` as JSON text. A document is made of strings, numbers, lists and maps with string
    /// keys, which always serialize; `null` if one did not.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        Self::Text(serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
    }

    /// Its JSON text, for the store.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Json::Text(text) => text.into_bytes(),
            Json::Value(value) => serde_json::to_vec(&value).unwrap_or_else(|_| b"null".to_vec()),
        }
    }

    /// Its JSON text.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Json::Text(text) => std::borrow::Cow::Borrowed(text),
            Json::Value(value) => std::borrow::Cow::Owned(value.to_string()),
        }
    }

    /// Read as a `T`: for the search sink, which reads two views' documents, and for tests.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self {
            Json::Text(text) => serde_json::from_str(text),
            Json::Value(value) => T::deserialize(value),
        }
    }

    /// As a `serde_json::Value` (`null` if its text is not JSON).
    pub fn value(&self) -> serde_json::Value {
        match self {
            Json::Value(value) => value.clone(),
            Json::Text(_) => self.parse().unwrap_or(serde_json::Value::Null),
        }
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
