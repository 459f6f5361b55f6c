//! The store's documents, joined from the folds: an inventory document per sku (its stock in every
//! warehouse), a product document per listed product (catalog entry, price, and availability of
//! each of its skus), an order document per order. Pure functions of the folds' state; the
//! decider calls them for the documents an event changed; [`reference_documents`] gives every
//! document of a log (what the pipeline's store is compared with).

use chrono::Duration;
use emporium_schemas::Event;
use emporium_serving::views::{
    InventoryView, ProductView, SkuAvailability, Upsert, WarehouseStock,
};

use crate::catalog::Catalog;
use crate::decider::Decider;
use crate::inventory::{Inventory, InventoryConfig};

/// The inventory document of `sku`.
pub fn inventory(inventory: &Inventory, sku: &str) -> InventoryView {
    let warehouses = inventory
        .stock_of(sku)
        .map(|(warehouse, s)| WarehouseStock {
            warehouse: warehouse.to_owned(),
            on_hand: s.on_hand,
            reserved: s.reserved,
            available: s.available(),
        })
        .collect();
    InventoryView::new(sku.to_owned(), warehouses)
}

/// The product document of `product_id` (`None`: never listed).
pub fn product(catalog: &Catalog, inventory: &Inventory, product_id: &str) -> Option<ProductView> {
    let p = catalog.get(product_id)?;
    let skus: Vec<SkuAvailability> = p
        .entry
        .skus
        .iter()
        .filter(|sku| catalog.owner(sku) == Some(product_id))
        .map(|sku| SkuAvailability {
            sku: sku.clone(),
            available: inventory
                .stock_of(sku)
                .map(|(_, s)| s.available().max(0))
                .sum(),
        })
        .collect();
    Some(ProductView {
        product_id: product_id.to_owned(),
        title: p.entry.title.clone(),
        brand: p.entry.brand.clone(),
        category_path: p.entry.category_path.clone(),
        price: p.entry.price.clone(),
        discontinued: p.discontinued,
        available: skus.iter().map(|s| s.available).sum(),
        skus,
    })
}

/// The reference for the store: every document, with the `seq` of its last change, after
/// deciding the whole log at once (every partition's events in log order) up to the watermark
/// those events give — what a pipeline that has read all of them must have written.
pub fn reference_documents(
    partitions: &[Vec<Event>],
    allowed_lateness: Duration,
    config: InventoryConfig,
) -> Vec<Upsert> {
    let mut decider = Decider::new(partitions.len(), allowed_lateness, config).tracking_changes();
    for (p, events) in partitions.iter().enumerate() {
        for e in events {
            decider.push(p, e.clone());
        }
    }
    decider.decide(&mut Vec::new());
    decider.take_changes()
}
