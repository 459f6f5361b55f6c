//! One well-formed example event per type: the documentation's examples and the tests' fixtures.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::accounts::UserErased;
use crate::catalog::{PriceChanged, ProductDiscontinued, ProductUpserted};
use crate::decisions::{
    InventoryReserved, OrderRejected, PartitionHeartbeat, ReservationReleased, ReservedLine,
    ShortLine,
};
use crate::envelope::{Event, EventKind, Payload};
use crate::money::Money;
use crate::orders::{
    OrderCancelled, OrderDelivered, OrderLine, OrderPlaced, OrderShipped, PaymentAuthorized,
    PaymentFailed, ReturnLine, ReturnRequested,
};
use crate::reviews::ReviewPosted;
use crate::shopper::{CartItemAdded, CartItemRemoved, ProductViewed, SearchPerformed};
use crate::stock::{StockAdjusted, StockReceived};

/// The time every example happened at.
pub fn example_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .expect("a valid fixed date")
}

/// An example event of `kind`; `n` varies its event id.
pub fn example(kind: EventKind, n: u64) -> Event {
    let id = Uuid::from_u64_pair(0x0b5f_8a2e_7c1d_4e9a, n);
    let usd = |amount| Money::new(amount, "USD");
    let payload: Payload = match kind {
        EventKind::ProductUpserted => ProductUpserted {
            product_id: "p-1".into(),
            skus: vec!["p-1-black".into(), "p-1-white".into()],
            title: "Wireless headphones".into(),
            description: "Over-ear, 30 h battery.".into(),
            brand: "Acme".into(),
            category_path: vec!["Electronics".into(), "Audio".into()],
            attributes: [("color".to_owned(), "black".to_owned())].into(),
            price: usd(12_999),
        }
        .into(),
        EventKind::PriceChanged => PriceChanged {
            product_id: "p-1".into(),
            price: usd(9_999),
        }
        .into(),
        EventKind::ProductDiscontinued => ProductDiscontinued {
            product_id: "p-1".into(),
            reason: Some("end of line".into()),
        }
        .into(),
        EventKind::StockReceived => StockReceived {
            sku: "p-1-black".into(),
            warehouse: "wh-1".into(),
            quantity: 100,
            reason: "purchase_order".into(),
        }
        .into(),
        EventKind::StockAdjusted => StockAdjusted {
            sku: "p-1-black".into(),
            warehouse: "wh-1".into(),
            delta: -2,
            reason: "damaged".into(),
        }
        .into(),
        EventKind::ProductViewed => ProductViewed {
            user_id: "u-1".into(),
            session_id: "s-1".into(),
            product_id: "p-1".into(),
        }
        .into(),
        EventKind::SearchPerformed => SearchPerformed {
            user_id: "u-1".into(),
            session_id: "s-1".into(),
            query: "headphones".into(),
            result_count: 42,
        }
        .into(),
        EventKind::CartItemAdded => CartItemAdded {
            user_id: "u-1".into(),
            session_id: "s-1".into(),
            sku: "p-1-black".into(),
            qty: 1,
        }
        .into(),
        EventKind::CartItemRemoved => CartItemRemoved {
            user_id: "u-1".into(),
            session_id: "s-1".into(),
            sku: "p-1-black".into(),
            qty: 1,
        }
        .into(),
        EventKind::OrderPlaced => OrderPlaced {
            order_id: "o-1".into(),
            user_id: "u-1".into(),
            lines: vec![OrderLine {
                sku: "p-1-black".into(),
                qty: 2,
                unit_price: usd(12_999),
            }],
            shipping_region: "us-east".into(),
            payment_token: "tok_9f2c".into(),
        }
        .into(),
        EventKind::OrderCancelled => OrderCancelled {
            order_id: "o-1".into(),
            reason: "changed_mind".into(),
        }
        .into(),
        EventKind::PaymentAuthorized => PaymentAuthorized {
            order_id: "o-1".into(),
            amount: usd(25_998),
            payment_token: "tok_9f2c".into(),
        }
        .into(),
        EventKind::PaymentFailed => PaymentFailed {
            order_id: "o-1".into(),
            amount: usd(25_998),
            payment_token: "tok_9f2c".into(),
            reason: "insufficient_funds".into(),
        }
        .into(),
        EventKind::OrderShipped => OrderShipped {
            order_id: "o-1".into(),
            carrier: "ups".into(),
            tracking_number: "1ZAB".into(),
        }
        .into(),
        EventKind::OrderDelivered => OrderDelivered {
            order_id: "o-1".into(),
        }
        .into(),
        EventKind::ReturnRequested => ReturnRequested {
            order_id: "o-1".into(),
            lines: vec![ReturnLine {
                sku: "p-1-black".into(),
                qty: 1,
            }],
            reason: "too_small".into(),
        }
        .into(),
        EventKind::ReviewPosted => ReviewPosted {
            review_id: "r-1".into(),
            product_id: "p-1".into(),
            user_id: "u-1".into(),
            rating: 5,
            text: "Great sound.".into(),
        }
        .into(),
        EventKind::UserErased => UserErased {
            user_id: "u-1".into(),
            reason: "gdpr_request".into(),
        }
        .into(),
        EventKind::InventoryReserved => InventoryReserved {
            order_id: "o-1".into(),
            lines: vec![reserved_line()],
        }
        .into(),
        EventKind::OrderRejected => OrderRejected {
            order_id: "o-1".into(),
            short_lines: vec![ShortLine {
                sku: "p-1-black".into(),
                wanted: 2,
                available: 1,
            }],
        }
        .into(),
        EventKind::ReservationReleased => ReservationReleased {
            order_id: "o-1".into(),
            reason: "payment_failed".into(),
            lines: vec![reserved_line()],
        }
        .into(),
        EventKind::PartitionHeartbeat => PartitionHeartbeat {
            partition: 3,
            routing_key: "heartbeat-3-0".into(),
        }
        .into(),
    };
    Event::new(id, example_time(), payload)
}

fn reserved_line() -> ReservedLine {
    ReservedLine {
        sku: "p-1-black".into(),
        warehouse: "wh-1".into(),
        qty: 2,
    }
}
