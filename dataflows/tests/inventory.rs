//! The inventory decider against its rule (unit cases) and against its batch reference on random
//! histories: out-of-order events, duplicates, any number of partitions, any interleaving; and the
//! documents it hands the store, through restarts, against the reference documents.

use chrono::{DateTime, Duration, TimeZone, Utc};
use emporium_dataflows::changes::Change;
use emporium_dataflows::decider::{Decider, decide_all};
use emporium_dataflows::inventory::{Inventory, InventoryConfig, Output};
use emporium_dataflows::products::ProductInputs;
use emporium_dataflows::reference::{documents_of, reference_documents};
use emporium_schemas::catalog::{PriceChanged, ProductUpserted};
use emporium_schemas::decisions::{ReservedLine, ShortLine};
use emporium_schemas::orders::{
    OrderCancelled, OrderLine, OrderPlaced, OrderShipped, PaymentAuthorized, PaymentFailed,
};
use emporium_schemas::shopper::ProductViewed;
use emporium_schemas::stock::{StockAdjusted, StockReceived};
use emporium_schemas::{Event, Money, Payload};
use proptest::prelude::*;
use uuid::Uuid;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_600 + s, 0)
        .single()
        .expect("valid time")
}

fn ev(id: u128, at: i64, payload: impl Into<Payload>) -> Event {
    Event::new(Uuid::from_u128(id), t(at), payload)
}

fn received(sku: &str, wh: &str, qty: i64) -> Payload {
    StockReceived {
        sku: sku.into(),
        warehouse: wh.into(),
        quantity: qty,
        reason: "po".into(),
    }
    .into()
}

fn placed(order: &str, lines: &[(&str, i64)]) -> Payload {
    OrderPlaced {
        order_id: order.into(),
        user_id: "u-1".into(),
        lines: lines
            .iter()
            .map(|(sku, qty)| OrderLine {
                sku: (*sku).into(),
                qty: *qty,
                unit_price: Money::new(100, "USD"),
            })
            .collect(),
        shipping_region: "eu-west".into(),
        payment_token: "tok_abc".into(),
    }
    .into()
}

fn paid(order: &str) -> Payload {
    PaymentAuthorized {
        order_id: order.into(),
        amount: Money::new(100, "USD"),
        payment_token: "tok_abc".into(),
    }
    .into()
}

fn shipped(order: &str) -> Payload {
    OrderShipped {
        order_id: order.into(),
        carrier: "ups".into(),
        tracking_number: "1Z".into(),
    }
    .into()
}

fn run(events: &[Event]) -> (Vec<Output>, Inventory) {
    decide_all(
        &[events.to_vec()],
        Duration::seconds(0),
        InventoryConfig::default(),
    )
}

fn decisions(out: &[Output]) -> Vec<Payload> {
    out.iter()
        .filter_map(|o| match o {
            Output::Decision { payload, .. } => Some(payload.clone()),
            Output::Anomaly { .. } => None,
        })
        .collect()
}

#[test]
fn a_line_goes_to_the_warehouse_with_most_available_ties_to_the_smallest_id() {
    let (out, inv) = run(&[
        ev(1, 0, received("a", "wh-2", 5)),
        ev(2, 0, received("a", "wh-1", 5)),
        ev(3, 0, received("a", "wh-3", 3)),
        ev(4, 1, placed("o-1", &[("a", 2), ("a", 4)])),
    ]);
    let Some(Payload::InventoryReserved(r)) = decisions(&out).pop() else {
        panic!("reserved: {out:?}")
    };
    assert_eq!(
        r.lines,
        vec![
            ReservedLine {
                sku: "a".into(),
                warehouse: "wh-1".into(),
                qty: 2
            },
            // After the first line wh-1 has 3 left, wh-2 has 5: the second line goes to wh-2.
            ReservedLine {
                sku: "a".into(),
                warehouse: "wh-2".into(),
                qty: 4
            },
        ]
    );
    assert_eq!(inv.stock("a", "wh-1").reserved, 2);
    assert_eq!(inv.stock("a", "wh-2").available(), 1);
}

#[test]
fn an_order_is_all_or_nothing_and_rejections_name_the_short_lines() {
    let (out, inv) = run(&[
        ev(1, 0, received("a", "wh-1", 5)),
        ev(2, 0, received("b", "wh-1", 1)),
        ev(3, 0, received("b", "wh-2", 1)),
        ev(4, 1, placed("o-1", &[("a", 2), ("b", 2), ("c", 1)])),
    ]);
    let Some(Payload::OrderRejected(r)) = decisions(&out).pop() else {
        panic!("rejected: {out:?}")
    };
    assert_eq!(
        r.short_lines,
        vec![
            ShortLine {
                sku: "b".into(),
                wanted: 2,
                available: 1
            },
            ShortLine {
                sku: "c".into(),
                wanted: 1,
                available: 0
            },
        ],
        "lines are never split across warehouses"
    );
    assert_eq!(
        inv.stock("a", "wh-1").reserved,
        0,
        "nothing reserved for a rejected order"
    );
}

fn viewed(product: &str) -> Payload {
    ProductViewed {
        user_id: "u-1".into(),
        session_id: "s-1".into(),
        product_id: product.into(),
    }
    .into()
}

#[test]
fn a_reservation_expires_once_the_watermark_passes_its_deadline_views_alone_moving_time() {
    let ttl = InventoryConfig::default().reservation_ttl.num_seconds();
    let mut decider = Decider::new(2, Duration::seconds(0), InventoryConfig::default());
    let mut out = Vec::new();
    decider.push(0, ev(1, 0, received("a", "wh-1", 10)));
    decider.push(0, ev(2, 10, placed("o-1", &[("a", 3)])));
    decider.push(1, ev(3, 11, viewed("p-1")));
    decider.push(0, ev(4, 12, viewed("p-1")));
    decider.decide(&mut out);
    assert_eq!(decider.seq(), 2, "two events read; views are only time");
    assert_eq!(decider.pending(), 0);
    // Only views from here on: the watermark alone passes the deadline.
    decider.push(0, ev(5, 10 + ttl, viewed("p-2")));
    decider.push(1, ev(6, 10 + ttl, viewed("p-2")));
    decider.decide(&mut out);
    assert_eq!(
        decider.inventory().open_reservations(),
        1,
        "at the deadline, not before"
    );
    decider.push(0, ev(7, 10 + ttl + 1, viewed("p-2")));
    decider.decide(&mut out);
    assert_eq!(
        decider.inventory().open_reservations(),
        1,
        "partition 1 is still behind"
    );
    decider.push(1, ev(8, 10 + ttl + 1, viewed("p-2")));
    decider.decide(&mut out);
    assert_eq!(decider.inventory().open_reservations(), 0);
    assert_eq!(decider.seq(), 3, "the expiry is a step of its own");
    let released: Vec<_> = decisions(&out)
        .into_iter()
        .filter_map(|p| match p {
            Payload::ReservationReleased(r) => Some((r.order_id, r.reason)),
            _ => None,
        })
        .collect();
    assert_eq!(released, vec![("o-1".to_owned(), "expired".to_owned())]);
    assert_eq!(decider.inventory().stock("a", "wh-1").reserved, 0);
    // The batch fold over the same log agrees.
    let parts = vec![
        vec![
            ev(1, 0, received("a", "wh-1", 10)),
            ev(2, 10, placed("o-1", &[("a", 3)])),
            ev(4, 12, viewed("p-1")),
            ev(5, 10 + ttl, viewed("p-2")),
            ev(7, 10 + ttl + 1, viewed("p-2")),
        ],
        vec![
            ev(3, 11, viewed("p-1")),
            ev(6, 10 + ttl, viewed("p-2")),
            ev(8, 10 + ttl + 1, viewed("p-2")),
        ],
    ];
    let (reference, _) = decide_all(&parts, Duration::seconds(0), InventoryConfig::default());
    assert_eq!(out, reference);
}

#[test]
fn unpaid_reservations_expire_paid_ones_ship() {
    let ttl = InventoryConfig::default().reservation_ttl.num_seconds();
    let (out, inv) = run(&[
        ev(1, 0, received("a", "wh-1", 10)),
        ev(2, 10, placed("o-1", &[("a", 3)])),
        ev(3, 11, placed("o-2", &[("a", 4)])),
        ev(4, 20, paid("o-2")),
        ev(5, 10 + ttl + 1, shipped("o-2")),
        ev(6, 10 + ttl + 2, paid("o-1")),
    ]);
    let kinds: Vec<String> = decisions(&out)
        .iter()
        .map(|p| p.kind().to_string())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "inventory_reserved",
            "inventory_reserved",
            "reservation_released"
        ]
    );
    let released = out.iter().find_map(|o| match o {
        Output::Decision {
            at,
            payload: Payload::ReservationReleased(r),
        } => Some((*at, r.reason.clone())),
        _ => None,
    });
    assert_eq!(
        released,
        Some((t(10 + ttl), "expired".to_owned())),
        "released at its deadline"
    );
    let late_payment = out.iter().any(|o| {
        matches!(
            o,
            Output::Anomaly {
                kind: "payment_without_reservation",
                ..
            }
        )
    });
    assert!(
        late_payment,
        "a payment after expiry is an anomaly: {out:?}"
    );
    let s = inv.stock("a", "wh-1");
    assert_eq!((s.on_hand, s.reserved, s.shipped), (6, 0, 4));
    assert_eq!(
        inv.open_reservations(),
        0,
        "one expired, one shipped: none open"
    );
    assert_eq!(inv.units_on_hand(), 6);
}

#[test]
fn nonsense_becomes_anomalies_not_crashes() {
    let (out, _) = run(&[
        ev(1, 0, shipped("o-9")),
        ev(
            2,
            1,
            PaymentFailed {
                order_id: "o-9".into(),
                amount: Money::new(1, "USD"),
                payment_token: "t".into(),
                reason: "x".into(),
            },
        ),
        ev(3, 2, placed("o-1", &[("a", 1)])),
        ev(4, 3, placed("o-1", &[("a", 1)])),
        ev(
            5,
            4,
            OrderCancelled {
                order_id: "o-1".into(),
                reason: "x".into(),
            },
        ),
    ]);
    let kinds: Vec<&str> = out
        .iter()
        .filter_map(|o| match o {
            Output::Anomaly { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "shipped_without_reservation",
            "release_without_reservation",
            "order_placed_twice",
            "release_without_reservation"
        ]
    );
}

/// Quantities past what the validator allows can still reach the log (a producer writing to
/// Kafka directly): the fold refuses to wrap, reports the overflow, and keeps the stock it had.
#[test]
fn quantities_that_would_overflow_are_anomalies_not_wraps() {
    let adjust = |delta: i64| -> Payload {
        StockAdjusted {
            sku: "a".into(),
            warehouse: "wh-1".into(),
            delta,
            reason: "count".into(),
        }
        .into()
    };
    let (out, inventory) = run(&[
        ev(1, 0, received("a", "wh-1", i64::MAX)),
        ev(2, 1, received("a", "wh-1", i64::MAX)),
        ev(3, 2, received("b", "wh-1", 5)),
        ev(4, 3, adjust(1)),
        ev(5, 4, adjust(-10)),
        ev(6, 5, placed("o-1", &[("a", 3)])),
    ]);
    let anomalies: Vec<(&str, &str)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Anomaly { kind, key, .. } => Some((*kind, key.as_str())),
            _ => None,
        })
        .collect();
    // The second receipt and the +1 would take "a" past i64::MAX; "b"'s 5 units the total.
    assert_eq!(
        anomalies,
        vec![
            ("quantity_overflow", "a@wh-1"),
            ("quantity_overflow", "b@wh-1"),
            ("quantity_overflow", "a@wh-1"),
        ],
        "{out:?}"
    );
    let stock: Vec<(&str, i64)> = inventory
        .all_stock()
        .map(|((sku, _), s)| (sku.as_str(), s.on_hand))
        .collect();
    assert_eq!(stock, vec![("a", i64::MAX - 10)]);
    assert_eq!(inventory.units_on_hand(), i64::MAX - 10);
    assert_eq!(
        decisions(&out).len(),
        1,
        "the order is still decided: {out:?}"
    );
}

// ---- random histories ------------------------------------------------------------------------

const SKUS: [&str; 3] = ["a", "b", "c"];
const WAREHOUSES: [&str; 3] = ["wh-1", "wh-2", "wh-3"];

#[derive(Debug, Clone)]
enum Step {
    Receive(usize, usize, i64),
    Adjust(usize, usize, i64),
    Place(usize, Vec<(usize, i64)>),
    Pay(usize),
    Fail(usize),
    Cancel(usize),
    Ship(usize),
    /// Product `p` lists the skus picked by the bit mask (a relisting moves skus between products).
    List(usize, u8),
    Reprice(usize, i64),
    /// A shopper views product `p`: an event the decider does not read, only time passing.
    View(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..3usize, 0..3usize, 1..8i64).prop_map(|(s, w, q)| Step::Receive(s, w, q)),
        1 => (0..3usize, 0..3usize, prop_oneof![-3..0i64, 1..3i64]).prop_map(|(s, w, d)| Step::Adjust(s, w, d)),
        4 => (0..12usize, prop::collection::vec((0..3usize, 1..4i64), 1..3)).prop_map(|(o, l)| Step::Place(o, l)),
        2 => (0..12usize).prop_map(Step::Pay),
        1 => (0..12usize).prop_map(Step::Fail),
        1 => (0..12usize).prop_map(Step::Cancel),
        2 => (0..12usize).prop_map(Step::Ship),
        1 => (0..2usize, 1..8u8).prop_map(|(p, m)| Step::List(p, m)),
        1 => (0..3usize, 1..500i64).prop_map(|(p, c)| Step::Reprice(p, c)),
        3 => (0..3usize).prop_map(Step::View),
    ]
}

/// A history: events with jittered (so sometimes out-of-order) times and a few duplicates,
/// spread over `partitions` partitions by their key, each partition in append order.
fn history(steps: &[(Step, i64, bool)], partitions: usize) -> Vec<Vec<Event>> {
    let mut out = vec![Vec::new(); partitions];
    for (i, (step, jitter, duplicate)) in steps.iter().enumerate() {
        let order = |o: &usize| format!("o-{o}");
        let payload: Payload = match step {
            Step::Receive(s, w, q) => received(SKUS[*s], WAREHOUSES[*w], *q),
            Step::Adjust(s, w, d) => StockAdjusted {
                sku: SKUS[*s].into(),
                warehouse: WAREHOUSES[*w].into(),
                delta: *d,
                reason: "count".into(),
            }
            .into(),
            Step::Place(o, lines) => {
                let lines: Vec<(&str, i64)> = lines.iter().map(|(s, q)| (SKUS[*s], *q)).collect();
                placed(&order(o), &lines)
            }
            Step::Pay(o) => paid(&order(o)),
            Step::Fail(o) => PaymentFailed {
                order_id: order(o),
                amount: Money::new(1, "USD"),
                payment_token: "t".into(),
                reason: "x".into(),
            }
            .into(),
            Step::Cancel(o) => OrderCancelled {
                order_id: order(o),
                reason: "x".into(),
            }
            .into(),
            Step::Ship(o) => shipped(&order(o)),
            Step::List(p, mask) => ProductUpserted {
                product_id: format!("p-{p}"),
                skus: (0..3)
                    .filter(|b| mask & (1 << b) != 0)
                    .map(|b| SKUS[b].to_owned())
                    .collect(),
                title: format!("Product {p}"),
                description: String::new(),
                brand: "Acme".into(),
                category_path: vec!["Home".into()],
                attributes: Default::default(),
                price: Money::new(100, "USD"),
            }
            .into(),
            Step::Reprice(p, cents) => PriceChanged {
                product_id: format!("p-{p}"),
                price: Money::new(*cents, "USD"),
            }
            .into(),
            Step::View(p) => viewed(&format!("p-{p}")),
        };
        // Ten seconds between steps, jittered by up to ±40 s: later steps can carry earlier times.
        let event = ev(i as u128 + 1, i as i64 * 10 + jitter, payload);
        let p = emporium_partition(event.partition_key(), partitions);
        out[p].push(event.clone());
        if *duplicate {
            out[p].push(event);
        }
    }
    out
}

fn emporium_partition(key: &str, partitions: usize) -> usize {
    // The same placement the log uses (Kafka's murmur2), reimplemented here would be a copy;
    // any deterministic function of the key keeps per-key order, which is all the rule needs.
    key.bytes()
        .fold(7usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
        % partitions
}

/// A document as the store keys it, with its seq and JSON.
fn keyed(u: &Change) -> (String, u64, String) {
    let (key, seq, json) = match u {
        Change::Product { seq, product } => (
            format!("p/{}", product.product_id),
            *seq,
            serde_json::to_string(product),
        ),
        Change::Inventory { seq, stock } => (
            format!("i/{}", stock.sku),
            *seq,
            serde_json::to_string(stock),
        ),
        Change::Order { seq, order } => (
            format!("o/{}", order.order_id),
            *seq,
            serde_json::to_string(order),
        ),
        Change::View {
            view,
            key,
            seq,
            document,
        } => (
            format!("v/{view}/{key}"),
            *seq,
            Ok(document
                .as_ref()
                .map_or_else(|| "null".to_owned(), |d| d.text().into_owned())),
        ),
    };
    (key, seq, json.expect("views serialize"))
}

fn check_invariants(outputs: &[Output], inventory: &Inventory) -> Result<(), TestCaseError> {
    let flagged: Vec<&String> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Anomaly {
                kind: "stock_below_reserved",
                key,
                ..
            } => Some(key),
            _ => None,
        })
        .collect();
    for ((sku, wh), s) in inventory.all_stock() {
        prop_assert!(s.reserved >= 0 && s.shipped >= 0, "{sku}@{wh}: {s:?}");
        let key = format!("{sku}@{wh}");
        prop_assert!(
            s.reserved <= s.on_hand || flagged.contains(&&key),
            "oversold {key}: {s:?} without a stock adjustment to blame"
        );
    }
    // Each order: one reserve-or-reject decision; a release only after a reservation, once.
    let mut state = std::collections::HashMap::new();
    for o in outputs {
        if let Output::Decision { payload, .. } = o {
            let (order, kind) = match payload {
                Payload::InventoryReserved(r) => (&r.order_id, "reserved"),
                Payload::OrderRejected(r) => (&r.order_id, "rejected"),
                Payload::ReservationReleased(r) => (&r.order_id, "released"),
                other => panic!("not a decision: {other:?}"),
            };
            let before = state.insert(order.clone(), kind);
            let ok = match kind {
                "released" => before == Some("reserved"),
                _ => before.is_none(),
            };
            prop_assert!(ok, "order {order}: {before:?} then {kind}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn streaming_matches_the_batch_fold_for_any_interleaving(
        steps in prop::collection::vec((step(), -40..40i64, prop::bool::weighted(0.05)), 1..80),
        partitions in 1..5usize,
        interleaving in prop::collection::vec(0..5usize, 200),
        lateness in prop_oneof![Just(0i64), Just(15), Just(60)],
        ttl in prop_oneof![Just(45i64), Just(900)],
    ) {
        let parts = history(&steps, partitions);
        let lateness = Duration::seconds(lateness);
        // A short TTL: reservations expire within a history (steps are ten seconds apart).
        let config = InventoryConfig { reservation_ttl: Duration::seconds(ttl) };
        let (reference, ref_inventory) = decide_all(&parts, lateness, config.clone());
        check_invariants(&reference, &ref_inventory)?;

        let mut decider = Decider::new(partitions, lateness, config);
        let mut cursors = vec![0usize; partitions];
        let mut out = Vec::new();
        let mut choices = interleaving.iter().cycle();
        while cursors.iter().zip(&parts).any(|(c, p)| *c < p.len()) {
            let pick = choices.next().copied().unwrap_or(0) % partitions;
            // The chosen partition, or the next one that still has events.
            let p = (0..partitions).map(|i| (pick + i) % partitions).find(|&p| cursors[p] < parts[p].len()).expect("some left");
            decider.push(p, parts[p][cursors[p]].clone());
            cursors[p] += 1;
            decider.decide(&mut out);
        }
        decider.finish(&mut out);
        prop_assert_eq!(&out, &reference);
        check_invariants(&out, decider.inventory())?;
    }

    #[test]
    fn the_documents_written_through_restarts_are_the_reference_documents(
        steps in prop::collection::vec((step(), -40..40i64, prop::bool::weighted(0.05)), 1..80),
        partitions in 1..5usize,
        interleaving in prop::collection::vec(0..5usize, 200),
        takes in prop::collection::vec(prop::bool::weighted(0.3), 200),
        crash_at in prop::option::of(0..200usize),
        lateness in prop_oneof![Just(0i64), Just(15), Just(60)],
        ttl in prop_oneof![Just(45i64), Just(900)],
    ) {
        let parts = history(&steps, partitions);
        let lateness = Duration::seconds(lateness);
        let config = InventoryConfig { reservation_ttl: Duration::seconds(ttl) };
        // The store's contract, as a map: a document is replaced by an equal or higher seq only.
        let mut store: std::collections::HashMap<String, (u64, String)> = Default::default();
        let mut upsert = |changes: Vec<Change>| -> Result<(), TestCaseError> {
            for u in &changes {
                let (key, seq, json) = keyed(u);
                match store.get(&key) {
                    Some((s, stored)) if *s == seq => {
                        // A replay must reproduce a document exactly at the same seq.
                        prop_assert_eq!(stored, &json, "{} at seq {}", key, seq);
                    }
                    Some((s, _)) if *s > seq => {}
                    _ => { store.insert(key, (seq, json)); }
                }
            }
            Ok(())
        };
        // A run that crashes after `crash_at` steps (its untaken changes lost), then a restart
        // that replays every partition from the start (in another interleaving), as the pipeline does.
        let runs = match crash_at { Some(n) => vec![(Some(n), 0), (None, 1)], None => vec![(None, 0)] };
        for (stop_after, shift) in runs {
            let mut decider = Decider::new(partitions, lateness, config.clone()).tracking_changes();
            // The run's document dataflow: fed every change since the run began.
            let mut fed = ProductInputs::default();
            let mut cursors = vec![0usize; partitions];
            let mut choices = interleaving.iter().cycle();
            let mut take = takes.iter().cycle();
            let mut steps_done = 0;
            while cursors.iter().zip(&parts).any(|(c, p)| *c < p.len()) {
                if stop_after == Some(steps_done) { break; }
                steps_done += 1;
                let pick = (choices.next().copied().unwrap_or(0) + shift) % partitions;
                let p = (0..partitions).map(|i| (pick + i) % partitions).find(|&p| cursors[p] < parts[p].len()).expect("some left");
                decider.push(p, parts[p][cursors[p]].clone());
                cursors[p] += 1;
                decider.decide(&mut Vec::new());
                if *take.next().unwrap_or(&true) {
                    upsert(decider.take_order_changes())?;
                    upsert(decider.take_inventory_changes())?;
                    fed.extend(decider.take_product_inputs());
                    upsert(documents_of(fed.clone(), &decider))?;
                }
            }
            if stop_after.is_none() {
                upsert(decider.take_order_changes())?;
                upsert(decider.take_inventory_changes())?;
                fed.extend(decider.take_product_inputs());
                upsert(documents_of(fed.clone(), &decider))?;
            }
        }
        let mut want: std::collections::HashMap<String, (u64, String)> = Default::default();
        for u in reference_documents(&parts, lateness, config, &[]) {
            let (key, seq, json) = keyed(&u);
            prop_assert!(want.insert(key, (seq, json)).is_none(), "one document per key");
        }
        prop_assert_eq!(store, want);
    }

    #[test]
    fn without_late_events_the_partition_count_does_not_matter(
        steps in prop::collection::vec((step(), -40..40i64, Just(false)), 1..80),
        partitions in 2..5usize,
    ) {
        // Lateness above the largest jitter: no event is ever late, so decision times are the
        // events' own times whatever the partitioning.
        let lateness = Duration::seconds(200);
        let (one, _) = decide_all(&history(&steps, 1), lateness, InventoryConfig::default());
        let (many, _) = decide_all(&history(&steps, partitions), lateness, InventoryConfig::default());
        prop_assert_eq!(one, many);
    }
}
