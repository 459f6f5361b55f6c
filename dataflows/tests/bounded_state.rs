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
