//! The edge between the dataflows and the read API: each [`Change`] the dataflows emit becomes
//! the document the store keeps and `GET` returns ([`emporium_serving::views`]). Only this module
//! knows both shapes, so an API change is not a dataflow or checkpoint change.

use emporium_dataflows::changes::{Change, Product, SkuStock};
use emporium_dataflows::orders::{Order, OrderStatus, Transition};
use emporium_serving::views::{self, Upsert};

/// The store's document of a change, at the change's `seq`.
pub fn upsert(change: Change) -> Upsert {
    match change {
        Change::Product { seq, product } => Upsert::Product {
            seq,
            view: product_view(product),
        },
        Change::Inventory { seq, stock } => Upsert::Inventory {
            seq,
            view: inventory_view(stock),
        },
        Change::Order { seq, order } => Upsert::Order {
            seq,
            view: order_view(order),
        },
        Change::View {
            view,
            key,
            seq,
            document,
        } => Upsert::View {
            view: view.to_owned(),
            key,
            seq,
            // Written by the view already; `null`: the key left the view.
            json: document
                .map_or_else(|| b"null".to_vec(), |d| d.into_bytes())
                .into(),
        },
    }
}

pub fn product_view(p: Product) -> views::ProductView {
    let skus: Vec<views::SkuAvailability> = p
        .skus
        .into_iter()
        .map(|s| views::SkuAvailability {
            sku: s.sku,
            available: s.available,
        })
        .collect();
    views::ProductView {
        product_id: p.product_id,
        title: p.title,
        brand: p.brand,
        category_path: p.category_path,
        price: p.price,
        discontinued: p.discontinued,
        available: skus.iter().map(|s| s.available).sum(),
        skus,
    }
}

pub fn inventory_view(s: SkuStock) -> views::InventoryView {
    let warehouses = s
        .warehouses
        .into_iter()
        .map(|w| views::WarehouseStock {
            warehouse: w.warehouse,
            on_hand: w.on_hand,
            reserved: w.reserved,
            available: w.available,
        })
        .collect();
    views::InventoryView::new(s.sku, warehouses)
}

pub fn order_view(o: Order) -> views::OrderView {
    views::OrderView {
        order_id: o.order_id,
        user_id: o.user_id,
        lines: o.lines,
        status: order_status(o.status),
        history: o
            .history
            .into_iter()
            .map(|Transition { status, at }| views::Transition {
                status: order_status(status),
                at,
            })
            .collect(),
    }
}

pub fn order_status(s: OrderStatus) -> views::OrderStatus {
    match s {
        OrderStatus::Placed => views::OrderStatus::Placed,
        OrderStatus::Reserved => views::OrderStatus::Reserved,
        OrderStatus::Rejected => views::OrderStatus::Rejected,
        OrderStatus::Paid => views::OrderStatus::Paid,
        OrderStatus::PaymentFailed => views::OrderStatus::PaymentFailed,
        OrderStatus::Cancelled => views::OrderStatus::Cancelled,
        OrderStatus::Expired => views::OrderStatus::Expired,
        OrderStatus::Shipped => views::OrderStatus::Shipped,
        OrderStatus::Delivered => views::OrderStatus::Delivered,
        OrderStatus::Returned => views::OrderStatus::Returned,
    }
}
