//! The catalog: every product's latest entry and price, and which product each sku belongs to.
//!
//! Input: catalog events (`product_upserted`, `price_changed`, `product_discontinued`) in
//! decision-time order. Output: the catalog part of each product's document; availability comes
//! from the inventory (joined in [`crate::views`]). Invariant: a `product_upserted` replaces the
//! whole entry (it is a full value), a price change or discontinuation of an unknown product is an
//! anomaly, and a sku belongs to the product that listed it last.

use std::collections::HashMap;

use emporium_schemas::catalog::ProductUpserted;
use emporium_schemas::{Event, Payload};

/// A product as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub entry: ProductUpserted,
    pub discontinued: bool,
}

/// Every product, folded from the log.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    products: HashMap<String, Product>,
    owner: HashMap<String, String>,
    touched: Vec<String>,
}

impl Catalog {
    pub fn get(&self, product_id: &str) -> Option<&Product> {
        self.products.get(product_id)
    }

    /// The product that lists `sku`.
    pub fn owner(&self, sku: &str) -> Option<&str> {
        self.owner.get(sku).map(String::as_str)
    }

    pub fn product_ids(&self) -> impl Iterator<Item = &str> {
        self.products.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Products changed since the last call.
    pub fn take_touched(&mut self) -> Vec<String> {
        std::mem::take(&mut self.touched)
    }

    /// Applies one event; returns an anomaly kind when it made no sense.
    pub fn apply(&mut self, event: &Event) -> Option<&'static str> {
        match &event.payload {
            Payload::ProductUpserted(e) => {
                if let Some(old) = self.products.get(&e.product_id) {
                    for sku in &old.entry.skus {
                        if self.owner.get(sku) == Some(&e.product_id) {
                            self.owner.remove(sku);
                        }
                    }
                }
                for sku in &e.skus {
                    if let Some(previous) = self.owner.insert(sku.clone(), e.product_id.clone())
                        && previous != e.product_id
                    {
                        // The sku moved: its old product's availability changes too.
                        self.touched.push(previous);
                    }
                }
                self.products.insert(
                    e.product_id.clone(),
                    Product {
                        entry: e.clone(),
                        discontinued: false,
                    },
                );
                self.touched.push(e.product_id.clone());
                None
            }
            Payload::PriceChanged(e) => match self.products.get_mut(&e.product_id) {
                Some(p) => {
                    p.entry.price = e.price.clone();
                    self.touched.push(e.product_id.clone());
                    None
                }
                None => Some("price_of_unknown_product"),
            },
            Payload::ProductDiscontinued(e) => match self.products.get_mut(&e.product_id) {
                Some(p) => {
                    p.discontinued = true;
                    self.touched.push(e.product_id.clone());
                    None
                }
                None => Some("discontinued_unknown_product"),
            },
            _ => None,
        }
    }
}
