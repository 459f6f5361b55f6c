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
    // three resends: 30 min after the original (a duplicate), 90 min after and 30 hours after
    // (applied again, and the reference agrees).
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
    let near = resend(10_000, Duration::minutes(30));
    let far = resend(20_000, Duration::hours(30));
    // Still remembered when it comes (before the first pass that forgets, at step 65,536), but
    // beyond the horizon: applied again by the time rule, not because its id was forgotten.
    let remembered = resend(100, Duration::minutes(90));
    assert!(
        Duration::minutes(30) < duplicate_horizon() && duplicate_horizon() < Duration::minutes(90)
    );
    // Into the log where they would arrive: in time order (one partition, no lateness).
    events.push(near);
    events.push(far);
    events.push(remembered);
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
        100 * (n as i64 + 2),
        "the resends after 90 min and 30 h counted, the one after 30 min not"
    );
    assert_eq!(on_hand(decider.inventory(), sku), on_hand(&reference, sku));
    // An hour of receipts is 1,800 ids; forgetting runs every 65,536 steps.
    assert!(
        most_remembered < 1_800 + 65_536 + 10,
        "ids remembered at most: {most_remembered} of {n} applied"
    );
}

/// What a run of the decider over `partitions` gave: its outputs, the last document of every
/// order (the highest `seq`), the orders it kept half way and at the end, and the orders its
/// inventory kept at the end.
struct Run {
    outputs: Vec<emporium_dataflows::inventory::Output>,
    documents: std::collections::HashMap<String, (u64, emporium_dataflows::orders::Order)>,
    kept_at_half: usize,
    kept: usize,
    inventory_kept: usize,
}

/// Feeds `partitions` round-robin, 500 events of each at a time, taking the order changes every
/// `take_every` rounds (`None`: only at the end, so that orders are forgotten while their
/// changes wait).
fn run(partitions: &[Vec<Event>], lateness: Duration, take_every: Option<usize>) -> Run {
    use emporium_dataflows::changes::Change;
    let n: usize = partitions.iter().map(Vec::len).sum();
    let mut decider =
        Decider::new(partitions.len(), lateness, InventoryConfig::default()).tracking_changes();
    let mut outputs = Vec::new();
    let mut documents = std::collections::HashMap::new();
    let mut take = |decider: &mut Decider| {
        for change in decider.take_order_changes() {
            if let Change::Order { seq, order } = change {
                let entry = documents
                    .entry(order.order_id.clone())
                    .or_insert((seq, order.clone()));
                if seq >= entry.0 {
                    *entry = (seq, order);
                }
            }
        }
    };
    let mut kept_at_half = None;
    let mut cursors = vec![0usize; partitions.len()];
    let mut round = 0;
    while cursors.iter().zip(partitions).any(|(c, p)| *c < p.len()) {
        for (p, events) in partitions.iter().enumerate() {
            let end = (cursors[p] + 500).min(events.len());
            for e in &events[cursors[p]..end] {
                decider.push(p, e.clone());
            }
            cursors[p] = end;
        }
        decider.decide(&mut outputs);
        round += 1;
        if take_every.is_some_and(|every| round % every == 0) {
            take(&mut decider);
        }
        if kept_at_half.is_none() && cursors.iter().sum::<usize>() >= n / 2 {
            kept_at_half = Some(decider.orders().len());
        }
    }
    decider.finish(&mut outputs);
    take(&mut decider);
    Run {
        outputs,
        kept_at_half: kept_at_half.expect("half way"),
        kept: decider.orders().len(),
        inventory_kept: decider.inventory().orders_kept(),
        documents,
    }
}

/// Sixty days of a generated shop (orders placed, paid, shipped, delivered, returned, cancelled,
/// expired): closed orders are forgotten two weeks after closing, by the order states and the
/// inventory alike, and the decisions stay the batch reference's (which forgets by the same
/// rule); every order's last document is still handed out, the same whether the changes are
/// taken every few rounds or only at the end (when orders are forgotten with changes waiting).
#[test]
fn closed_orders_are_forgotten_after_two_weeks_and_decisions_match_the_reference() {
    use std::collections::HashSet;

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
    let times = partitions.iter().flatten().map(|e| e.occurred_at);
    let days = (times.clone().max().expect("events") - times.min().expect("events")).num_days();
    assert!(
        days > 2 * closed_order_memory().num_days(),
        "{days} days of events"
    );
    assert!(placed.len() > 2_000, "{} orders", placed.len());
    let lateness = Duration::milliseconds(500);
    let (expected, _) = decide_all(&partitions, lateness, InventoryConfig::default());
    let often = run(&partitions, lateness, Some(3));
    let at_end = run(&partitions, lateness, None);
    assert_eq!(often.outputs, expected, "the decisions are the reference's");
    assert_eq!(at_end.outputs, expected);
    // Flat: as many orders kept after sixty days as after thirty (the old state kept them all,
    // twice as many), and far fewer than were placed; the inventory likewise.
    assert!(
        often.kept * 10 < often.kept_at_half * 13 && often.kept < placed.len() / 2,
        "orders kept: {} after 30 days, {} after 60, of {} placed",
        often.kept_at_half,
        often.kept,
        placed.len()
    );
    assert!(
        often.inventory_kept < placed.len() / 2,
        "inventory orders kept: {} of {}",
        often.inventory_kept,
        placed.len()
    );
    // Every order's last document, whenever the changes were taken.
    let missing: Vec<&String> = placed
        .iter()
        .filter(|id| !at_end.documents.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "orders without a document: {missing:?}");
    assert!(
        often.documents == at_end.documents,
        "the same last documents whether the changes are taken often or at the end"
    );
}
