//! *Customers who bought this also bought*: per product, the products bought in the same paid
//! orders, by how many orders hold both (co-purchase count; ties by product id). Served at
//! `GET /v1/products/{id}/recommendations?kind=also_bought` and
//! `GET /v1/views/also_bought/{product_id}`; tested against a plain fold, and against a
//! recomputation without an erased user, in `dataflows/tests/recommendations.rs`.
//!
//! **What counts as bought.** An order counts once it is paid (`payment_authorized`: the
//! inventory reserved it, or the payment would have been refused as out of order, and the money
//! was taken): its basket is the skus its `order_placed` named, credited to their owners (the
//! latest listing naming the sku, as everywhere: [`crate::owners`]). A product appears once per
//! order whatever its quantity and skus. Orders that were placed but never paid (rejected, failed,
//! expired) never count.
//!
//! **Exact retractions** (ADR 0015). The view's input keeps every order's basket, and what takes
//! an order back is a set the dataflow subtracts ([`purchases`]), not a recomputation:
//! - `order_cancelled` withdraws the whole order;
//! - `return_requested` withdraws the returned skus' products from that order's basket (the rest
//!   of the order still counts);
//! - `user_erased` withdraws every order of that user, past and future: the derived state equals
//!   a recomputation over the log without them.
//!
//! **Bounded work per order.** A basket counts its first [`MAX_BASKET`] products (by id): an
//! order of 500 products would otherwise add 250,000 pairs. Every pair (a, b) is counted both
//! ways; each product keeps its [`TOP_K`] best partners, ranked in two levels
//! ([`super::top_k`]), so a bestseller's thousands of partners do not all re-rank at each sale.
//!
//! Raw counts, not a correction for popularity: a product's complements (a phone's case) are in
//! a large share of its baskets, a bestseller in a small share of everyone's, so counts put the
//! complements first; [`crate::recs`]'s *similar* corrects for popularity where it matters.

use differential_dataflow::VecCollection;
use emporium_schemas::{Event, EventKind, Payload};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::owners::sku_owners;
use crate::view::View;

/// Products of one order that count (the first by id).
pub const MAX_BASKET: usize = 20;
/// Partners kept per product: the read API's largest `limit` after leaving out unavailable ones.
pub const TOP_K: usize = 30;

/// The also-bought view.
pub struct AlsoBought;

/// A row of the view's input: one event's contribution.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BoughtRow {
    /// A `product_upserted` naming these skus, the `seq`-th step.
    Listed {
        product: String,
        seq: u64,
        skus: Vec<String>,
    },
    /// A sku of an order, and who placed it.
    Line {
        order: String,
        user: String,
        sku: String,
    },
    /// A payment for an order, the `seq`-th step (the purchase's time, for recency).
    Paid {
        order: String,
        seq: u64,
    },
    Cancelled {
        order: String,
    },
    Returned {
        order: String,
        sku: String,
    },
    Erased {
        user: String,
    },
}

/// A product's partners, best first: (product, orders holding both).
pub type Partners = Vec<(String, u64)>;

impl View for AlsoBought {
    const NAME: &'static str = "also_bought";
    type Row = BoughtRow;
    type Key = String;
    type Value = Partners;

    fn reads(kind: EventKind) -> bool {
        matches!(
            kind,
            EventKind::ProductUpserted
                | EventKind::OrderPlaced
                | EventKind::PaymentAuthorized
                | EventKind::OrderCancelled
                | EventKind::ReturnRequested
                | EventKind::UserErased
        )
    }

    fn rows(seq: u64, event: &Event, out: &mut Vec<(BoughtRow, isize)>) {
        match &event.payload {
            Payload::ProductUpserted(p) => out.push((
                BoughtRow::Listed {
                    product: p.product_id.clone(),
                    seq,
                    skus: p.skus.clone(),
                },
                1,
            )),
            Payload::OrderPlaced(o) => out.extend(o.lines.iter().map(|line| {
                let row = BoughtRow::Line {
                    order: o.order_id.clone(),
                    user: o.user_id.clone(),
                    sku: line.sku.clone(),
                };
                (row, 1)
            })),
            Payload::PaymentAuthorized(p) => out.push((
                BoughtRow::Paid {
                    order: p.order_id.clone(),
                    seq,
                },
                1,
            )),
            Payload::OrderCancelled(c) => out.push((
                BoughtRow::Cancelled {
                    order: c.order_id.clone(),
                },
                1,
            )),
            Payload::ReturnRequested(r) => out.extend(r.lines.iter().map(|line| {
                let row = BoughtRow::Returned {
                    order: r.order_id.clone(),
                    sku: line.sku.clone(),
                };
                (row, 1)
            })),
            Payload::UserErased(u) => out.push((
                BoughtRow::Erased {
                    user: u.user_id.clone(),
                },
                1,
            )),
            _ => {}
        }
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, BoughtRow>,
    ) -> VecCollection<'s, u64, (String, Partners)> {
        let baskets = purchases(rows)
            .map(|(order, (_user, product))| (order, product))
            .reduce_named(
                "Basket",
                |_order: &String, products: &[(&String, isize)], out| {
                    // Each product once (the input is consolidated), the first by id.
                    for (product, _) in products.iter().filter(|(_, n)| *n > 0).take(MAX_BASKET) {
                        out.push(((*product).clone(), 1isize));
                    }
                },
            )
            .arrange_by_key_named("Baskets");
        let pairs = baskets
            .clone()
            .join_core(baskets, |_order, a: &String, b: &String| {
                (a != b).then(|| (a.clone(), b.clone()))
            })
            .count()
            .map(|(pair, n)| (pair, n.max(0) as u64));
        super::top_k(pairs, TOP_K)
    }

    fn document(product_id: &String, partners: &Partners) -> serde_json::Value {
        json!({
            "product_id": product_id,
            "also_bought": partners
                .iter()
                .map(|(product, orders)| json!({"product_id": product, "orders": orders}))
                .collect::<Vec<_>>(),
        })
    }
}

/// The purchases that count, `(order, (user, product))` (twice where two skus of one product
/// are in one order): the lines of paid orders, not cancelled, not returned, not of an erased
/// user, credited to the sku's owner. Shared by the views that read [`BoughtRow`]s.
///
/// An order's facts meet in one reduce keyed by the order (one arrangement of its lines, not one
/// per semijoin and antijoin: the lines are most of the view's memory); only erasure, keyed by
/// user, is an antijoin of its own.
pub(crate) fn purchases<'s>(
    rows: VecCollection<'s, u64, BoughtRow>,
) -> VecCollection<'s, u64, (String, (String, String))> {
    let owners = sku_owners(rows.clone().flat_map(|row| match row {
        BoughtRow::Listed { product, seq, skus } => Some((product, (seq, skus))),
        _ => None,
    }));
    let erased = erased_users(rows.clone());
    rows.flat_map(|row| match row {
        BoughtRow::Line { order, user, sku } => Some((order, OrderFact::Line { user, sku })),
        BoughtRow::Paid { order, .. } => Some((order, OrderFact::Paid)),
        BoughtRow::Cancelled { order } => Some((order, OrderFact::Cancelled)),
        BoughtRow::Returned { order, sku } => Some((order, OrderFact::Returned { sku })),
        _ => None,
    })
    .reduce_named(
        "CountedLines",
        |_order: &String, facts: &[(&OrderFact, isize)], out| {
            let has = |f: &OrderFact| facts.iter().any(|(g, n)| *g == f && *n > 0);
            if !has(&OrderFact::Paid) || has(&OrderFact::Cancelled) {
                return;
            }
            for (fact, n) in facts {
                if let OrderFact::Line { user, sku } = fact
                    && *n > 0
                    && !has(&OrderFact::Returned { sku: sku.clone() })
                {
                    out.push(((user.clone(), sku.clone()), 1isize));
                }
            }
        },
    )
    .map(|(order, (user, sku))| (user, (order, sku)))
    .antijoin(erased)
    .map(|(user, (order, sku))| (sku, (order, user)))
    .join_map(owners, |_sku, (order, user), product| {
        (order.clone(), (user.clone(), product.clone()))
    })
}

/// What one event says about an order, for [`purchases`]' reduce.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum OrderFact {
    Line { user: String, sku: String },
    Paid,
    Cancelled,
    Returned { sku: String },
}

/// The users erased (`user_erased`), once each.
pub(crate) fn erased_users<'s>(
    rows: VecCollection<'s, u64, BoughtRow>,
) -> VecCollection<'s, u64, String> {
    rows.flat_map(|row| match row {
        BoughtRow::Erased { user } => Some(user),
        _ => None,
    })
    .distinct()
}
