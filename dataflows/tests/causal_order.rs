//! Causal order within an order: its events are applied in log order whatever their producers'
//! clocks say (ADR 0005). A payment or cancel stamped before its `order_placed` (the payment
//! service's clock trails the shop's), or at the very same millisecond, must still follow it.
//! Before the fix they were applied by (time, random event id): the payment came first, was an
//! anomaly, and the paid reservation later expired; a cancel was lost.
//!
//! The expectation is computed from the scenario alone (every order has stock, so it is
//! reserved; then paid, cancelled, failed or shipped), not from the decider.

use chrono::{DateTime, Duration, TimeZone, Utc};
use emporium_dataflows::decider::{Decider, decide_all};
use emporium_dataflows::inventory::{InventoryConfig, Output};
use emporium_schemas::orders::{
    OrderCancelled, OrderLine, OrderPlaced, OrderShipped, PaymentAuthorized, PaymentFailed,
};
use emporium_schemas::stock::StockReceived;
use emporium_schemas::{Event, Money, Payload};
use proptest::prelude::*;
use std::collections::BTreeMap;
use uuid::Uuid;

fn t(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_767_225_600_000 + ms)
        .single()
        .expect("valid time")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Pay,
    PayAndShip,
    Cancel,
    Fail,
}

fn then() -> impl Strategy<Value = Then> {
    prop_oneof![
        Just(Then::Pay),
        Just(Then::PayAndShip),
        Just(Then::Cancel),
        Just(Then::Fail)
    ]
}

/// An order of one unit of `sku-1`.
fn placed(order: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: order.to_owned(),
        user_id: "u-1".into(),
        lines: vec![OrderLine {
            sku: "sku-1".into(),
            qty: 1,
            unit_price: Money::new(100, "USD"),
        }],
        shipping_region: "eu-west".into(),
        payment_token: "tok_abc".into(),
    }
}

/// The partition of a key (any deterministic function keeps per-key log order).
fn partition(key: &str, partitions: usize) -> usize {
    key.bytes()
        .fold(7usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
        % partitions
}

struct Shop {
    partitions: Vec<Vec<Event>>,
    expected: BTreeMap<String, Then>,
}

/// Stock for everything first; then per order, `order_placed` and what follows it, each
/// follow-up stamped `skew` ms *before* the event it follows in the log (0: the same
/// millisecond). Orders are 2 s apart, so time moves well past the reservation TTL.
fn shop(orders: &[(Then, i64)], partitions: usize, ids: &mut impl FnMut() -> Uuid) -> Shop {
    let mut out = vec![Vec::new(); partitions];
    let mut push = |e: Event| out[partition(e.partition_key(), partitions)].push(e);
    push(Event::new(
        ids(),
        t(0),
        StockReceived {
            sku: "sku-1".into(),
            warehouse: "wh-1".into(),
            quantity: 1_000_000,
            reason: "po".into(),
        },
    ));
    let mut expected = BTreeMap::new();
    for (i, &(then, skew)) in orders.iter().enumerate() {
        let order = format!("o-{i}");
        let placed_at = 1_000 + i as i64 * 2_000;
        push(Event::new(ids(), t(placed_at), placed(&order)));
        let paid = || PaymentAuthorized {
            order_id: order.clone(),
            amount: Money::new(100, "USD"),
            payment_token: "tok_abc".into(),
        };
        let follow_ups: Vec<Payload> = match then {
            Then::Pay => vec![paid().into()],
            Then::PayAndShip => vec![
                paid().into(),
                OrderShipped {
                    order_id: order.clone(),
                    carrier: "ups".into(),
                    tracking_number: "1Z".into(),
                }
                .into(),
            ],
            Then::Cancel => vec![
                OrderCancelled {
                    order_id: order.clone(),
                    reason: "changed my mind".into(),
                }
                .into(),
            ],
            Then::Fail => vec![
                PaymentFailed {
                    order_id: order.clone(),
                    amount: Money::new(100, "USD"),
                    payment_token: "tok_abc".into(),
                    reason: "declined".into(),
                }
                .into(),
            ],
        };
        let mut at = placed_at;
        for payload in follow_ups {
            // Each follow-up's producer clock trails the previous event's by `skew`.
            at -= skew;
            push(Event::new(ids(), t(at), payload));
        }
        expected.insert(order, then);
    }
    Shop {
        partitions: out,
        expected,
    }
}

/// What happened to each order: its decisions' kinds and reasons, in order, and the anomalies.
fn outcomes(out: &[Output]) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut per_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut anomalies = Vec::new();
    for o in out {
        match o {
            Output::Decision { payload, .. } => {
                let (order, what) = match payload {
                    Payload::InventoryReserved(r) => (&r.order_id, "reserved".to_owned()),
                    Payload::OrderRejected(r) => (&r.order_id, "rejected".to_owned()),
                    Payload::ReservationReleased(r) => {
                        (&r.order_id, format!("released:{}", r.reason))
                    }
                    other => panic!("not a decision: {other:?}"),
                };
                per_order.entry(order.clone()).or_default().push(what);
            }
            Output::Anomaly {
                key, kind, detail, ..
            } => anomalies.push(format!("{key}: {kind} ({detail})")),
        }
    }
    (per_order, anomalies)
}

fn expected_decisions(then: Then) -> Vec<String> {
    match then {
        // Paid in time: the reservation stays until shipped, never expires.
        Then::Pay | Then::PayAndShip => vec!["reserved".into()],
        Then::Cancel => vec!["reserved".into(), "released:cancelled".into()],
        Then::Fail => vec!["reserved".into(), "released:payment_failed".into()],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn an_orders_events_apply_in_log_order_under_skewed_clocks_and_equal_times(
        orders in prop::collection::vec((then(), prop_oneof![Just(0i64), 1..1_500i64]), 1..40),
        partitions in 1..5usize,
        interleaving in prop::collection::vec(0..5usize, 300),
        seed in any::<u64>(),
    ) {
        // Random ids: the old tie-break (by id) put a same-millisecond payment before its
        // order about half the time.
        let mut state = seed | 1;
        let mut ids = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            Uuid::from_u128(u128::from(state) << 64 | u128::from(state.rotate_left(17)))
        };
        let shop = shop(&orders, partitions, &mut ids);
        // Lateness above every skew: no event is late, so each counts at its own time unless
        // its order's earlier event says otherwise. TTL 5 s: unpaid reservations expire within
        // the history (orders are 2 s apart).
        let lateness = Duration::seconds(2);
        let config = InventoryConfig { reservation_ttl: Duration::seconds(5) };

        let mut decider = Decider::new(partitions, lateness, config.clone());
        let mut cursors = vec![0usize; partitions];
        let mut out = Vec::new();
        let mut choices = interleaving.iter().cycle();
        let parts = &shop.partitions;
        while cursors.iter().zip(parts).any(|(c, p)| *c < p.len()) {
            let pick = choices.next().copied().unwrap_or(0) % partitions;
            let p = (0..partitions)
                .map(|i| (pick + i) % partitions)
                .find(|&p| cursors[p] < parts[p].len())
                .expect("some left");
            decider.push(p, parts[p][cursors[p]].clone());
            cursors[p] += 1;
            decider.decide(&mut out);
        }
        decider.finish(&mut out);

        let (per_order, anomalies) = outcomes(&out);
        prop_assert!(anomalies.is_empty(), "anomalies: {:?}", anomalies);
        for (order, then) in &shop.expected {
            prop_assert_eq!(
                per_order.get(order).cloned().unwrap_or_default(),
                expected_decisions(*then),
                "order {} ({:?})", order, then
            );
        }
        // The batch reference agrees.
        let (reference, _) = decide_all(parts, lateness, config);
        prop_assert_eq!(out, reference);
    }
}

/// A decider resumed from its state mid-stream decides exactly as an uninterrupted one, with
/// thousands of keys (so the clocks forget old keys) and many events at one time (so ties between
/// keys are common). Ranks restart at 0 for a forgotten key: a tie-break comparing ranks across
/// keys made the resumed decider order differently (`tests/crash_recovery.rs` caught it).
#[test]
fn a_resumed_decider_orders_ties_as_an_uninterrupted_one() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let partitions = 3;
    let mut events: Vec<(usize, Event)> = Vec::new();
    let stock = Event::new(
        Uuid::from_u128(1),
        t(0),
        StockReceived {
            sku: "sku-1".into(),
            warehouse: "wh-1".into(),
            quantity: 2_500,
            reason: "po".into(),
        },
    );
    events.push((partition(stock.partition_key(), partitions), stock));
    for i in 0..6_000u64 {
        // Whole seconds, 20 orders a second, clocks off by up to 2 s: many ties between keys.
        let order = format!("o-{}", next() % 4_000);
        let at = t(((i / 20) as i64 - (next() % 3) as i64) * 1_000);
        let id = Uuid::from_u128(u128::from(next()) << 64 | u128::from(i));
        let payload: Payload = match next() % 3 {
            0 => placed(&order).into(),
            1 => PaymentAuthorized {
                order_id: order.clone(),
                amount: Money::new(100, "USD"),
                payment_token: "tok_abc".into(),
            }
            .into(),
            _ => OrderCancelled {
                order_id: order.clone(),
                reason: "x".into(),
            }
            .into(),
        };
        let e = Event::new(id, at, payload);
        events.push((partition(e.partition_key(), partitions), e));
    }
    let lateness = Duration::seconds(1);
    let config = InventoryConfig {
        reservation_ttl: Duration::seconds(30),
    };
    let run = |resume_every: Option<usize>| {
        let mut decider = Decider::new(partitions, lateness, config.clone());
        let mut out = Vec::new();
        for (i, (p, e)) in events.iter().enumerate() {
            decider.push(*p, e.clone());
            decider.decide(&mut out);
            if resume_every.is_some_and(|n| i % n == n - 1) {
                let bytes = decider.state().expect("state");
                decider =
                    Decider::resume(&bytes, partitions, lateness, config.clone()).expect("resume");
            }
        }
        decider.finish(&mut out);
        (out, decider.seq())
    };
    let uninterrupted = run(None);
    assert!(uninterrupted.1 > 3_000, "steps: {}", uninterrupted.1);
    for every in [997, 1_500] {
        assert!(
            run(Some(every)) == uninterrupted,
            "resumed every {every} events"
        );
    }
}
