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
//! **Bounded work per order.** A basket counts its first [`MAX_BASKET`] products (by id: the ones
//! listed first): an order of 500 products would otherwise add 250,000 pairs. Every pair (a, b) is counted both
//! ways; each product keeps its [`TOP_K`] best partners, ranked in two levels
//! ([`super::top_k`]), so a bestseller's thousands of partners do not all re-rank at each sale.
//!
//! **Integers inside.** Rows name products, skus, users and orders by their [`Ids`] (given in
//! log order on worker 0), and ties between partners go to the product listed first; documents
//! carry the names again.
//!
//! Raw counts, not a correction for popularity: a product's complements (a phone's case) are in
//! a large share of its baskets, a bestseller in a small share of everyone's, so counts put the
//! complements first; [`crate::recs`]'s *similar* corrects for popularity where it matters.

use crate::changes::Json;
use differential_dataflow::VecCollection;
use emporium_schemas::{Event, EventKind, Payload};
use serde::{Deserialize, Serialize};

use crate::owners::sku_owners;
use crate::view::{Ids, View};

/// Products of one order that count (the first by id).
pub const MAX_BASKET: usize = 20;
/// Partners kept per product: the read API's largest `limit` after leaving out unavailable ones.
pub const TOP_K: usize = 30;

/// The also-bought view.
pub struct AlsoBought;

/// A row of the view's input: one event's contribution, names as their [`Ids`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BoughtRow {
    /// A `product_upserted` naming these skus, the `seq`-th step.
    Listed {
        product: u32,
        seq: u64,
        skus: Vec<u32>,
    },
    /// A sku of an order, and who placed it.
    Line {
        order: u32,
        user: u32,
        sku: u32,
    },
    /// A payment for an order, the `seq`-th step (the purchase's time, for recency).
    Paid {
        order: u32,
        seq: u64,
    },
    Cancelled {
        order: u32,
    },
    Returned {
        order: u32,
        sku: u32,
    },
    Erased {
        user: u32,
    },
}

/// A product's partners, best first: (product id, orders holding both).
pub type Partners = Vec<(u32, u64)>;

impl View for AlsoBought {
    const NAME: &'static str = "also_bought";
    type Row = BoughtRow;
    /// The product's id.
    type Key = u32;
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

    fn rows(seq: u64, event: &Event, ids: &mut Ids, out: &mut Vec<(BoughtRow, isize)>) {
        let row = match &event.payload {
            Payload::ProductUpserted(p) => BoughtRow::Listed {
                product: ids.id(&p.product_id),
                seq,
                skus: p.skus.iter().map(|sku| ids.id(sku)).collect(),
            },
            Payload::OrderPlaced(o) => {
                let (order, user) = (ids.id(&o.order_id), ids.id(&o.user_id));
                for line in &o.lines {
                    let sku = ids.id(&line.sku);
                    out.push((BoughtRow::Line { order, user, sku }, 1));
                }
                return;
            }
            Payload::PaymentAuthorized(p) => BoughtRow::Paid {
                order: ids.id(&p.order_id),
                seq,
            },
            Payload::OrderCancelled(c) => BoughtRow::Cancelled {
                order: ids.id(&c.order_id),
            },
            Payload::ReturnRequested(r) => {
                let order = ids.id(&r.order_id);
                for line in &r.lines {
                    let sku = ids.id(&line.sku);
                    out.push((BoughtRow::Returned { order, sku }, 1));
                }
                return;
            }
            Payload::UserErased(u) => BoughtRow::Erased {
                user: ids.id(&u.user_id),
            },
            _ => return,
        };
        out.push((row, 1));
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, BoughtRow>,
    ) -> VecCollection<'s, u64, (u32, Partners)> {
        let baskets = purchases(rows).map(|(order, (_user, product))| (order, product));
        super::co_occurring(baskets, MAX_BASKET, TOP_K)
    }

    fn document(product: &u32, partners: &Partners, ids: &Ids) -> serde_json::Value {
        Self::json(product, partners, ids).value()
    }

    /// `{"also_bought": [{"orders": n, "product_id": …}, …], "product_id": …}`.
    fn json(product: &u32, partners: &Partners, ids: &Ids) -> Json {
        super::list_json(
            ids.name(*product),
            "also_bought",
            "orders",
            partners.iter().map(|(p, orders)| (ids.name(*p), *orders)),
        )
    }

    fn key_name(product: &u32, ids: &Ids) -> String {
        ids.name(*product).to_owned()
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
) -> VecCollection<'s, u64, (u32, (u32, u32))> {
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
        |_order: &u32, facts: &[(&OrderFact, isize)], out| {
            let has = |f: &OrderFact| facts.iter().any(|(g, n)| **g == *f && *n > 0);
            if !has(&OrderFact::Paid) || has(&OrderFact::Cancelled) {
                return;
            }
            for (fact, n) in facts {
                if let OrderFact::Line { user, sku } = **fact
                    && *n > 0
                    && !has(&OrderFact::Returned { sku })
                {
                    out.push(((user, sku), 1isize));
                }
            }
        },
    )
    .map(|(order, (user, sku))| (user, (order, sku)))
    .antijoin(erased)
    .map(|(user, (order, sku))| (sku, (order, user)))
    .join_map(owners, |_sku, (order, user), product| {
        (*order, (*user, *product))
    })
}

/// When each order was paid: `(order, seq)`, its first payment's step.
pub(crate) fn paid_at<'s>(
    rows: VecCollection<'s, u64, BoughtRow>,
) -> VecCollection<'s, u64, (u32, u64)> {
    rows.flat_map(|row| match row {
        BoughtRow::Paid { order, seq } => Some((order, seq)),
        _ => None,
    })
    .reduce_named("PaidAt", |_order, seqs: &[(&u64, isize)], out| {
        if let Some((first, _)) = seqs.first() {
            out.push((**first, 1isize));
        }
    })
}

/// What one event says about an order, for [`purchases`]' reduce.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum OrderFact {
    Line { user: u32, sku: u32 },
    Paid,
    Cancelled,
    Returned { sku: u32 },
}

/// The users erased (`user_erased`), once each.
pub(crate) fn erased_users<'s>(
    rows: VecCollection<'s, u64, BoughtRow>,
) -> VecCollection<'s, u64, u32> {
    rows.flat_map(|row| match row {
        BoughtRow::Erased { user } => Some(user),
        _ => None,
    })
    .distinct()
}
