//! The order state fold: lifecycles, anomalies, and — on generated traffic with the inventory's
//! decisions merged into the log — every history a valid path, whatever the partition interleaving.

use chrono::{Duration, TimeZone, Utc};
use emporium_dataflows::decider::decide_all;
use emporium_dataflows::decisions::decision_events;
use emporium_dataflows::inventory::InventoryConfig;
use emporium_dataflows::orders::{OrderStatus, Orders};
use emporium_generator::{Generator, GeneratorConfig};
use emporium_schemas::decisions::{InventoryReserved, ReservationReleased, ReservedLine};
use emporium_schemas::orders::{
    OrderCancelled, OrderDelivered, OrderLine, OrderPlaced, OrderShipped, PaymentAuthorized,
    ReturnLine, ReturnRequested,
};
use emporium_schemas::{Event, Money, Payload};
use uuid::Uuid;

fn ev(n: u128, secs: i64, payload: impl Into<Payload>) -> Event {
    let at = Utc
        .timestamp_opt(1_767_225_600 + secs, 0)
        .single()
        .expect("time");
    Event::new(Uuid::from_u128(n), at, payload)
}

fn placed(order: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: order.into(),
        user_id: "u-1".into(),
        lines: vec![OrderLine {
            sku: "a".into(),
            qty: 1,
            unit_price: Money::new(100, "USD"),
        }],
        shipping_region: "eu-west".into(),
        payment_token: "tok_x".into(),
    }
}

fn reserved(order: &str) -> InventoryReserved {
    InventoryReserved {
        order_id: order.into(),
        lines: vec![ReservedLine {
            sku: "a".into(),
            warehouse: "wh-1".into(),
            qty: 1,
        }],
    }
}

fn paid(order: &str) -> PaymentAuthorized {
    PaymentAuthorized {
        order_id: order.into(),
        amount: Money::new(100, "USD"),
        payment_token: "tok_x".into(),
    }
}

fn fold(events: &[Event]) -> (Orders, Vec<&'static str>) {
    let mut orders = Orders::default();
    let mut anomalies = Vec::new();
    for e in events {
        orders.apply(e, &mut anomalies);
    }
    (orders, anomalies.into_iter().map(|a| a.kind).collect())
}

#[test]
fn a_full_lifecycle_keeps_every_transition_with_its_time() {
    let (orders, anomalies) = fold(&[
        ev(1, 0, placed("o-1")),
        ev(2, 1, reserved("o-1")),
        ev(3, 5, paid("o-1")),
        ev(
            4,
            3_600,
            OrderShipped {
                order_id: "o-1".into(),
                carrier: "ups".into(),
                tracking_number: "1Z".into(),
            },
        ),
        ev(
            5,
            90_000,
            OrderDelivered {
                order_id: "o-1".into(),
            },
        ),
        ev(
            6,
            200_000,
            ReturnRequested {
                order_id: "o-1".into(),
                lines: vec![ReturnLine {
                    sku: "a".into(),
                    qty: 1,
                }],
                reason: "x".into(),
            },
        ),
    ]);
    assert!(anomalies.is_empty(), "{anomalies:?}");
    let o = orders.get("o-1").expect("order");
    use OrderStatus::*;
    let path: Vec<OrderStatus> = o.history.iter().map(|t| t.status).collect();
    assert_eq!(
        path,
        vec![Placed, Reserved, Paid, Shipped, Delivered, Returned]
    );
    assert_eq!(o.status, Returned);
    assert_eq!(o.history[3].at - o.history[0].at, Duration::seconds(3_600));
}

#[test]
fn expiry_and_cancellation_close_an_order() {
    let (orders, anomalies) = fold(&[
        ev(1, 0, placed("o-1")),
        ev(2, 0, reserved("o-1")),
        ev(
            3,
            900,
            ReservationReleased {
                order_id: "o-1".into(),
                reason: "expired".into(),
                lines: vec![],
            },
        ),
        ev(4, 0, placed("o-2")),
        ev(5, 0, reserved("o-2")),
        ev(
            6,
            60,
            OrderCancelled {
                order_id: "o-2".into(),
                reason: "x".into(),
            },
        ),
        ev(
            7,
            61,
            ReservationReleased {
                order_id: "o-2".into(),
                reason: "cancelled".into(),
                lines: vec![],
            },
        ),
    ]);
    assert!(anomalies.is_empty(), "{anomalies:?}");
    assert_eq!(
        orders.get("o-1").map(|o| o.status),
        Some(OrderStatus::Expired)
    );
    assert_eq!(
        orders.get("o-2").map(|o| o.status),
        Some(OrderStatus::Cancelled)
    );
}

#[test]
fn nonsense_is_recorded_not_applied() {
    let (orders, anomalies) = fold(&[
        ev(1, 0, paid("o-9")),
        ev(2, 0, placed("o-1")),
        ev(3, 1, reserved("o-1")),
        ev(4, 2, paid("o-1")),
        ev(5, 3, paid("o-1")),
        ev(
            6,
            4,
            OrderDelivered {
                order_id: "o-1".into(),
            },
        ),
        ev(7, 5, placed("o-1")),
    ]);
    assert_eq!(
        anomalies,
        vec![
            "unknown_order",
            "duplicate_payment",
            "out_of_order",
            "order_placed_twice"
        ]
    );
    assert_eq!(orders.get("o-1").map(|o| o.status), Some(OrderStatus::Paid));
}

/// Generated traffic with the inventory's decisions merged into each order's partition, the way
/// the pipeline appends them (after the order, in decision-time order).
fn shop_log(partitions: usize) -> Vec<Vec<Event>> {
    let mut g = Generator::new(GeneratorConfig {
        products: 120,
        users: 1_000,
        events_per_day: 8_000.0,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let events: Vec<Event> = (0..30_000).map(|_| g.next_event()).collect();
    let (decisions, _) = decide_all(
        std::slice::from_ref(&events),
        Duration::zero(),
        InventoryConfig::default(),
    );
    let mut all: Vec<Event> = events;
    all.extend(decision_events(decisions));
    // Decisions are appended after what they decide: sort by time, decisions last on a tie.
    all.sort_by_key(|e| (e.occurred_at, e.kind().is_system()));
    let mut parts = vec![Vec::new(); partitions];
    for e in all {
        let p = e
            .partition_key()
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
            % partitions;
        parts[p].push(e);
    }
    parts
}

#[test]
fn generated_histories_follow_the_machine_in_any_interleaving() {
    use OrderStatus::*;
    let parts = shop_log(3);
    let (by_partition, anomalies_a) = fold(&parts.concat());
    // Round-robin across partitions: a different interleaving of the same log.
    let longest = parts.iter().map(Vec::len).max().unwrap_or(0);
    let interleaved: Vec<Event> = (0..longest)
        .flat_map(|i| parts.iter().filter_map(move |p| p.get(i).cloned()))
        .collect();
    let (round_robin, anomalies_b) = fold(&interleaved);
    assert_eq!(anomalies_a.len(), anomalies_b.len());
    assert!(
        by_partition.len() > 300,
        "orders placed: {}",
        by_partition.len()
    );
    let valid_next = |from: OrderStatus, to: OrderStatus| match from {
        Placed => matches!(
            to,
            Reserved | Rejected | PaymentFailed | Cancelled | Shipped
        ),
        Reserved => matches!(to, Paid | PaymentFailed | Cancelled | Expired | Shipped),
        Paid => matches!(to, Shipped | Cancelled | PaymentFailed),
        Shipped => to == Delivered,
        Delivered => to == Returned,
        _ => false,
    };
    let mut statuses = std::collections::HashMap::new();
    for o in by_partition.iter() {
        assert_eq!(
            Some(o),
            round_robin.get(&o.order_id),
            "same view in any interleaving"
        );
        for w in o.history.windows(2) {
            assert!(
                valid_next(w[0].status, w[1].status),
                "{}: {:?} -> {:?}",
                o.order_id,
                w[0].status,
                w[1].status
            );
            assert!(
                w[0].at <= w[1].at,
                "{}: transitions in time order",
                o.order_id
            );
        }
        for t in &o.history {
            *statuses.entry(t.status).or_insert(0usize) += 1;
        }
    }
    for s in [Reserved, Paid, PaymentFailed, Cancelled, Shipped, Delivered] {
        assert!(
            statuses.get(&s).copied().unwrap_or(0) > 0,
            "no order went {s:?}: {statuses:?}"
        );
    }
}
