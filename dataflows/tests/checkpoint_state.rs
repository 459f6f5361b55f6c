//! The decider's checkpointed state, pinned: a fixed log gives these exact bytes. Checkpoints
//! written by a deployed version must resume in the next (`pipeline/src/checkpoint.rs`), and the
//! tests that write and resume with one binary cannot see a layout change. If this fails, the
//! layout changed: bump the checkpoint `FORMAT` (a checkpoint of another format is refused and
//! the log replayed) and update the fixture below.
//!
//! The log holds one applied event, one pending and one counted view in a span still open: the
//! state's hash collections (applied ids, stock, orders, catalog) have at most one entry each,
//! and the span's two sums (everyone's and the session's) are written sorted, so their bytes do
//! not depend on hashing
//! (the keys' clocks are written in key order). `state()` is the head and a full piece; a delta
//! has the same layout with only the changed entries (`tests/incremental_checkpoints.rs`).

use chrono::Duration;
use emporium_dataflows::decider::Decider;
use emporium_dataflows::inventory::InventoryConfig;
use emporium_schemas::EventKind;
use emporium_schemas::examples::{example, example_time};

/// The state after a stock receipt is applied, and an order and a counted view wait above the
/// watermark.
fn state() -> Vec<u8> {
    let mut decider = Decider::new(1, Duration::zero(), InventoryConfig::default())
        .feeding(&emporium_dataflows::views());
    let mut received = example(EventKind::StockReceived, 1);
    received.occurred_at = example_time();
    let mut placed = example(EventKind::OrderPlaced, 2);
    placed.occurred_at = example_time() + Duration::seconds(5);
    let mut viewed = example(EventKind::ProductViewed, 3);
    viewed.occurred_at = example_time() + Duration::seconds(5);
    decider.push(0, received);
    decider.push(0, placed);
    decider.push(0, viewed);
    decider.decide(&mut Vec::new());
    // The view counted twice in its span: everyone's sum and its session's (a view counts
    // product views per session: `also_viewed`).
    assert_eq!(
        (decider.seq(), decider.pending(), decider.pending_counts()),
        (1, 1, 2),
        "one applied, one pending, one counted"
    );
    decider.state().expect("state")
}

/// `state()`'s bytes, as hex, when the layout was last changed (checkpoint FORMAT 10: a head and a
/// piece, full or a delta, for incremental checkpoints; the folds' entries only, their indexes
/// rebuilt on resume; the inventory's closed orders with the time they closed; the head's spans
/// of counted events, ADR 0014, their sums per session too, ADR 0015).
const PINNED: &str = concat!(
    "76020000000000000100000000000000011400000000000000323032362d30312d30315431323a30303a3035",
    "5a0100000000000000010000000000000003000000000000006f2d311400000000000000323032362d30312d",
    "30315431323a30303a30355a010000000000000001000000000000001400000000000000323032362d30312d",
    "30315431323a30303a30355a0000000000000000000000000000000044010000000000007b226576656e745f",
    "6964223a2230623566386132652d376331642d346539612d303030302d303030303030303030303032222c22",
    "74797065223a226f726465725f706c61636564222c22736368656d615f76657273696f6e223a312c226f6363",
    "75727265645f6174223a22323032362d30312d30315431323a30303a30352e3030305a222c227061796c6f61",
    "64223a7b226f726465725f6964223a226f2d31222c22757365725f6964223a22752d31222c226c696e657322",
    "3a5b7b22736b75223a22702d312d626c61636b222c22717479223a322c22756e69745f7072696365223a7b22",
    "616d6f756e745f6d696e6f72223a31323939392c2263757272656e6379223a22555344227d7d5d2c22736869",
    "7070696e675f726567696f6e223a2275732d65617374222c227061796d656e745f746f6b656e223a22746f6b",
    "5f39663263227d7d0100000000000000010000000000000070ed6d799b01000002000000000000000e000000",
    "0000000070726f647563745f7669657765640300000000000000702d319c7d07000000000001000000000e00",
    "00000000000070726f647563745f7669657765640300000000000000702d319c7d0700000000000100000001",
    "0300000000000000752d310300000000000000732d31d0000000000000000101000000000000000100000000",
    "0000009a4e1d7c2e8a5f0b00f00b55524706000001000000000000000900000000000000702d312d626c6163",
    "6b040000000000000077682d3101640000000000000000000000000000000000000000000000000000000000",
    "0000640000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000",
);

#[test]
fn the_decider_state_keeps_its_layout() {
    let bytes = state();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex, PINNED,
        "the decider's state layout changed: bump the checkpoint FORMAT and update PINNED"
    );
    let resumed = Decider::resume(&bytes, 1, Duration::zero(), InventoryConfig::default())
        .expect("the pinned state resumes");
    assert_eq!(resumed.seq(), 1);
    assert_eq!(
        resumed.state().expect("state"),
        bytes,
        "resume and state round-trip"
    );
}
