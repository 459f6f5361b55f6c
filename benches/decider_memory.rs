//! Memory per million open orders: the resident memory the decider's state (inventory
//! reservations, order views with lines and history, expiry queue, dedup set) grows by while it
//! holds `n` reserved, unpaid orders. Measured as the process's RSS (`/proc/self/statm`) before
//! and after, with the same allocator as the binary (mimalloc).
//!
//! Workload: 10,000 skus in 3 warehouses with ample stock; `n` orders of 1–3 lines from 1M users,
//! all reserved and never paid (a TTL longer than the run), so every order stays open.
//!
//! No target: slos.md ("Memory per million open orders": "reported, no target") and the README
//! report it.
//!
//! Run: `cargo bench --bench decider_memory` (add `-- --quick` for a smoke run). Writes
//! `<target dir>/bench-results/decider_memory.json` (see `support::Report`).

mod support;

use chrono::{Duration, TimeZone, Utc};
use emporium_dataflows::decider::Decider;
use emporium_dataflows::inventory::InventoryConfig;
use emporium_schemas::orders::{OrderLine, OrderPlaced};
use emporium_schemas::stock::StockReceived;
use emporium_schemas::{Event, Money};
use support::*;
use uuid::Uuid;

fn main() {
    support::alloc::keep_freed_memory_a_while();
    // One size per process: memory freed by a first run stays mapped by the allocator and would
    // hide part of a second run's growth. EMPORIUM_BENCH_ORDERS picks the size.
    let n: usize = if quick() {
        50_000
    } else {
        std::env::var("EMPORIUM_BENCH_ORDERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    };
    let mut report = Report::start(
        "decider memory per open order",
        &format!(
            "10k skus × 3 warehouses stocked; {n} reserved, unpaid orders of 1–3 lines (TTL longer than the run)"
        ),
    );
    row(&[
        "open orders".into(),
        "RSS growth".into(),
        "per open order".into(),
        "per million".into(),
    ]);
    let t0 = Utc
        .timestamp_opt(1_767_225_600, 0)
        .single()
        .expect("valid time");
    let before = rss_bytes();
    let config = InventoryConfig {
        reservation_ttl: Duration::days(365),
    };
    let mut decider = Decider::new(1, Duration::zero(), config).tracking_changes();
    let mut id = 0u128;
    let mut next_id = || {
        id += 1;
        Uuid::from_u128(id)
    };
    for sku in 0..10_000 {
        for wh in 0..3 {
            let e = Event::new(
                next_id(),
                t0,
                StockReceived {
                    sku: format!("p-{sku:07}-red"),
                    warehouse: format!("wh-{}", wh + 1),
                    quantity: 1_000_000,
                    reason: "initial_stock".into(),
                },
            );
            decider.push(0, e);
        }
    }
    let mut out = Vec::new();
    for i in 0..n {
        let lines = (0..1 + i % 3)
            .map(|l| OrderLine {
                sku: format!("p-{:07}-red", (i * 7 + l * 13) % 10_000),
                qty: 1 + (l as i64),
                unit_price: Money::new(1_999, "USD"),
            })
            .collect();
        let e = Event::new(
            next_id(),
            t0 + Duration::milliseconds(i as i64),
            OrderPlaced {
                order_id: format!("o-{i:010}"),
                user_id: format!("u-{:08}", i % 1_000_000),
                lines,
                shipping_region: "eu-west".into(),
                payment_token: "tok_abcdef".into(),
            },
        );
        decider.push(0, e);
        if i % 10_000 == 0 {
            decider.decide(&mut out);
            out.clear();
            // The pipeline hands changes to the store every round.
            drop(decider.take_order_changes());
            drop(decider.take_inventory_changes());
            drop(decider.take_product_inputs());
            decider.take_applied_append_times();
        }
    }
    decider.finish(&mut out);
    drop(decider.take_order_changes());
    drop(decider.take_inventory_changes());
    drop(decider.take_product_inputs());
    let open = decider.inventory().open_reservations();
    assert!(open + 1 >= n, "every order stays open: {open} of {n}");
    let grown = rss_bytes().saturating_sub(before);
    let grown_mib = grown as f64 / (1 << 20) as f64;
    let per_order = grown as f64 / open as f64;
    let per_million_gib = per_order * 1e6 / (1u64 << 30) as f64;
    row(&[
        format!("{open}"),
        format!("{grown_mib:.0} MiB"),
        format!("{per_order:.0} B"),
        format!("{per_million_gib:.2} GiB"),
    ]);
    drop(out);
    drop(decider);
    report.figure("open_orders", open as f64, "orders");
    report.figure("rss_growth_mib", grown_mib, "MiB");
    report.figure("bytes_per_open_order", per_order, "B");
    report.figure("gib_per_million_open_orders", per_million_gib, "GiB");
    report.finish();
}
