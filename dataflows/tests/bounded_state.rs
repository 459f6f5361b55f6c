//! The decider's state stays bounded over a long history (issue 23): applied event ids are
//! forgotten once they are older than the duplicate horizon behind the step being taken, and the
//! rule is part of the decisions, kept alike by the batch reference: a resend within the horizon
//! is dropped, one after it is applied again, whenever the ids are forgotten.

use chrono::Duration;
use emporium_dataflows::decider::{Decider, decide_all, duplicate_horizon};
use emporium_dataflows::inventory::{Inventory, InventoryConfig};
use emporium_schemas::examples::{example, example_time};
use emporium_schemas::{Event, EventKind};

/// Units on hand of `sku` over its warehouses.
fn on_hand(inventory: &Inventory, sku: &str) -> i64 {
    inventory.stock_of(sku).map(|(_, s)| s.on_hand).sum()
}

#[test]
fn applied_ids_are_forgotten_behind_the_horizon_and_decisions_match_the_reference() {
    // Four and a half days of stock receipts, one every 2 s (100 units each, distinct ids), and
    // two resends: one an hour after its original (a duplicate), one 30 hours after (applied
    // again: its id was forgotten, and the reference agrees).
    let n = 200_000u64;
    let t0 = example_time();
    let receipt = |i: u64| {
        let mut e = example(EventKind::StockReceived, i);
        e.occurred_at = t0 + Duration::seconds(2 * i as i64);
        e
    };
    let mut events: Vec<Event> = (0..n).map(receipt).collect();
    let resend = |i: u64, after: Duration| {
        let mut e = receipt(i);
        e.occurred_at += after;
        e
    };
    let near = resend(10_000, Duration::hours(1));
    let far = resend(20_000, Duration::hours(30));
    assert!(Duration::hours(1) < duplicate_horizon() && duplicate_horizon() < Duration::hours(30));
    // Into the log where they would arrive: in time order (one partition, no lateness).
    events.push(near);
    events.push(far);
    events.sort_by_key(|e| e.occurred_at);

    let config = InventoryConfig::default();
    let (expected, reference) = decide_all(
        std::slice::from_ref(&events),
        Duration::zero(),
        config.clone(),
    );
    let mut decider = Decider::new(1, Duration::zero(), config);
    let mut out = Vec::new();
    let mut most_remembered = 0;
    for e in events {
        decider.push(0, e);
        decider.decide(&mut out);
        most_remembered = most_remembered.max(decider.remembered_ids());
    }
    decider.finish(&mut out);
    assert_eq!(out, expected);
    let sku = "p-1-black";
    assert_eq!(
        on_hand(&reference, sku),
        100 * (n as i64 + 1),
        "the far resend counted, the near one not"
    );
    assert_eq!(on_hand(decider.inventory(), sku), on_hand(&reference, sku));
    // A day of receipts is 43,200 ids; forgetting runs every 65,536 steps.
    assert!(
        most_remembered < 43_200 + 65_536 + 10,
        "ids remembered at most: {most_remembered} of {n} applied"
    );
}

/// Sixty days of a generated shop (orders placed, paid, shipped, delivered, returned, cancelled,
/// expired): closed orders are forgotten two weeks after closing, by the order states and the
/// inventory alike, and the decisions stay the batch reference's (which forgets by the same
/// rule); every order's last document is still handed out, forgotten ones included.
#[test]
fn closed_orders_are_forgotten_after_two_weeks_and_decisions_match_the_reference() {
    use std::collections::{HashMap, HashSet};

    use emporium_dataflows::changes::Change;
    use emporium_dataflows::orders::closed_order_memory;
    use emporium_generator::{Generator, GeneratorConfig};
    use emporium_schemas::Payload;

    let n = 300_000;
    let mut generator = Generator::new(GeneratorConfig {
        products: 200,
        users: 5_000,
        events_per_day: 5_000.0,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let mut partitions: Vec<Vec<Event>> = vec![Vec::new(); 4];
    let mut placed = HashSet::new();
    for _ in 0..n {
        let e = generator.next_event();
        if let Payload::OrderPlaced(o) = &e.payload {
            placed.insert(o.order_id.clone());
        }
        // By key, as the log partitions (any hash keeps an order's events together).
        let p = e
            .partition_key()
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
            % 4;
        partitions[p].push(e);
    }
    let lateness = Duration::milliseconds(500);
    let config = InventoryConfig::default();
    let (expected, reference) = decide_all(&partitions, lateness, config.clone());
    let mut decider = Decider::new(4, lateness, config).tracking_changes();
    let mut out = Vec::new();
    let mut documents: HashMap<String, u64> = HashMap::new();
    let mut kept_at_half = None;
    let mut cursors = [0usize; 4];
    let mut round = 0;
    // Round-robin over the partitions, 500 events at a time, changes taken every round.
    while cursors.iter().zip(&partitions).any(|(c, p)| *c < p.len()) {
        for (p, events) in partitions.iter().enumerate() {
            let end = (cursors[p] + 500).min(events.len());
            for e in &events[cursors[p]..end] {
                decider.push(p, e.clone());
            }
            cursors[p] = end;
        }
        decider.decide(&mut out);
        round += 1;
        if round % 3 == 0 {
            for change in decider.take_order_changes() {
                if let Change::Order { seq, order } = change {
                    documents.insert(order.order_id.clone(), seq);
                }
            }
        }
        if kept_at_half.is_none() && cursors.iter().sum::<usize>() >= n / 2 {
            kept_at_half = Some(decider.orders().len());
        }
    }
    decider.finish(&mut out);
    for change in decider.take_order_changes() {
        if let Change::Order { order, seq } = change {
            documents.insert(order.order_id.clone(), seq);
        }
    }
    assert_eq!(out, expected, "the decisions are the reference's");
    assert_eq!(
        decider.inventory().orders_kept(),
        reference.orders_kept(),
        "the inventory forgets the same orders"
    );
    let days = (partitions
        .iter()
        .flatten()
        .map(|e| e.occurred_at)
        .max()
        .expect("events")
        - partitions
            .iter()
            .flatten()
            .map(|e| e.occurred_at)
            .min()
            .expect("events"))
    .num_days();
    assert!(
        days > 2 * closed_order_memory().num_days(),
        "{days} days of events"
    );
    assert!(placed.len() > 2_000, "{} orders", placed.len());
    // Flat: as many orders kept after sixty days as after thirty (the old state kept them all,
    // twice as many), and far fewer than were placed.
    let kept_at_half = kept_at_half.expect("half way");
    let kept = decider.orders().len();
    assert!(
        kept * 10 < kept_at_half * 13 && kept < placed.len() / 2,
        "orders kept: {kept_at_half} after 30 days, {kept} after 60, of {} placed",
        placed.len()
    );
    assert!(
        decider.inventory().orders_kept() < placed.len() / 2,
        "inventory orders kept: {} of {}",
        decider.inventory().orders_kept(),
        placed.len()
    );
    let missing: Vec<&String> = placed
        .iter()
        .filter(|id| !documents.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "orders without a document: {missing:?}");
}
