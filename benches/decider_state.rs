//! The decider's state over a long history (issue 23, item 3): does it stay flat? A 10M-event
//! run of the generated shop at 200k events a day of event time, so fifty days: orders are placed,
//! paid, shipped, delivered and returned within it, and the decider forgets applied ids after a
//! day and closed orders two weeks after closing (ADR 0005, ADR 0008), so its state is bounded by
//! a fortnight of orders, not by the history. A real shop's day holds far more events; the bench
//! compresses event time so that 10M events span several of those windows. Fed to one
//! [`Decider`] as the pipeline feeds it (4 partitions by key, lateness 0.5 s, changes taken every
//! 10,000 events), with no I/O. At
//! 1M, 5M and 10M events it reports the process's resident memory, the state's parts (ids kept
//! for deduplication, orders, open reservations), and a checkpoint: the size of a full piece and
//! how long taking it holds the decider (`Decider::take_state(true)`), and the same for the
//! incremental checkpoints taken every 100,000 events (a hundredth of the run) in between (`take_state(false)`: a delta
//! of what changed since the previous piece, ADR 0008; 100,000 events is one second at the
//! 100k events/s target, twenty at 5,000), as medians over the deltas since the previous sample.
//!
//! Targets (issue 23: "decider memory and checkpoint pause stay flat over a 10M-event run", and
//! "make checkpoints incremental"): the full piece's size and pause at 10M events at most 1.5×
//! those at 5M; the delta's pause at 10M at most 1.5× that at 5M; and a delta at most a quarter
//! of a full piece (size). Not against 1M: at 1M events (five days here) the fortnight of closed
//! orders the decider keeps is still filling, and the state grows until it is full (day 20 or
//! so); the 10M ÷ 1M ratios are reported beside.
//!
//! Run: `cargo bench --bench decider_state` (`-- --quick`: 100k events, a smoke run;
//! `EMPORIUM_BENCH_EVENTS=N` for another length, sampled at N/10, N/2 and N). Writes
//! `<target dir>/bench-results/decider_state.json` (see `support::Report`).

mod support;

use std::time::Instant;

use chrono::Duration;
use emporium_dataflows::decider::Decider;
use emporium_dataflows::inventory::InventoryConfig;
use emporium_generator::{Generator, GeneratorConfig};
use emporium_log::partition_for;
use support::*;

const PARTITIONS: u32 = 4;

fn rss_mib() -> f64 {
    rss_bytes() as f64 / (1 << 20) as f64
}

struct Sample {
    events: u64,
    rss_mib: f64,
    ids: usize,
    orders: usize,
    open: usize,
    state_mib: f64,
    pause_ms: f64,
    delta_mib: f64,
    delta_pause_ms: f64,
}

fn main() {
    support::alloc::keep_freed_memory_a_while();
    let n: u64 = if quick() {
        100_000
    } else {
        std::env::var("EMPORIUM_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000_000)
    };
    let marks = [n / 10, n / 2, n];
    // A delta every 100,000 events of the 10M run (a hundredth of any run).
    let delta_every = (n / 100).max(1_000);
    let mut report = Report::start(
        "decider state over a long history",
        &format!(
            "{n} generated events (100k products, 1M users, 200k events per day of event time), \
             4 partitions, one decider, changes taken every 10,000 events; sampled at {marks:?}"
        ),
    );
    let mut generator = Generator::new(GeneratorConfig {
        products: 100_000,
        users: 1_000_000,
        events_per_day: 200_000.0,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let mut decider = Decider::new(
        PARTITIONS as usize,
        Duration::milliseconds(500),
        InventoryConfig::default(),
    )
    .tracking_changes()
    .checkpointed();
    row(&[
        "events".into(),
        "RSS".into(),
        "ids kept".into(),
        "orders".into(),
        "open".into(),
        "full piece".into(),
        "pause".into(),
        "delta (median)".into(),
        "pause".into(),
    ]);
    let mut deltas: Vec<(f64, f64)> = Vec::new();
    let mut out = Vec::new();
    let mut samples = Vec::new();
    let began = Instant::now();
    for i in 1..=n {
        let e = generator.next_event();
        let p = partition_for(e.partition_key().as_bytes(), PARTITIONS);
        decider.push(p as usize, e);
        if i % 10_000 == 0 || marks.contains(&i) {
            decider.decide(&mut out);
            out.clear();
            // The pipeline hands the changes to the store every round.
            drop(decider.take_order_changes());
            drop(decider.take_inventory_changes());
            drop(decider.take_product_inputs());
            drop(decider.take_view_events());
            decider.take_applied_append_times();
        }
        if i % delta_every == 0 && !marks.contains(&i) {
            let taken = Instant::now();
            let state = decider.take_state(false).expect("state");
            let pause_ms = taken.elapsed().as_secs_f64() * 1e3;
            assert!(!state.full);
            deltas.push((state.piece.len() as f64 / (1 << 20) as f64, pause_ms));
        }
        if marks.contains(&i) {
            let taken = Instant::now();
            let state = decider.take_state(true).expect("state");
            let pause_ms = taken.elapsed().as_secs_f64() * 1e3;
            let state_bytes = state.head.len() + state.piece.len();
            let delta_mib = median(deltas.iter().map(|d| d.0).collect());
            let delta_pause_ms = median(deltas.drain(..).map(|d| d.1).collect());
            let sample = Sample {
                events: i,
                rss_mib: rss_mib(),
                ids: decider.remembered_ids(),
                orders: decider.orders().len(),
                open: decider.inventory().open_reservations(),
                state_mib: state_bytes as f64 / (1 << 20) as f64,
                pause_ms,
                delta_mib,
                delta_pause_ms,
            };
            drop(state);
            row(&[
                format!("{}", sample.events),
                format!("{:.0} MiB", sample.rss_mib),
                format!("{}", sample.ids),
                format!("{}", sample.orders),
                format!("{}", sample.open),
                format!("{:.1} MiB", sample.state_mib),
                format!("{:.0} ms", sample.pause_ms),
                format!("{:.2} MiB", sample.delta_mib),
                format!("{:.1} ms", sample.delta_pause_ms),
            ]);
            report.row(serde_json::json!({
                "events": sample.events,
                "rss_mib": sample.rss_mib,
                "ids_kept": sample.ids,
                "orders": sample.orders,
                "open_reservations": sample.open,
                "checkpoint_mib": sample.state_mib,
                "pause_ms": sample.pause_ms,
                "delta_mib": sample.delta_mib,
                "delta_pause_ms": sample.delta_pause_ms,
            }));
            samples.push(sample);
        }
    }
    println!(
        "   {n} events decided in {:.1} s ({} events/s, checkpoints included)",
        began.elapsed().as_secs_f64(),
        fmt_rate(n as f64 / began.elapsed().as_secs_f64())
    );
    let (first, middle, last) = (&samples[0], &samples[1], &samples[samples.len() - 1]);
    report.figure(
        "checkpoint_size_growth_from_first_sample",
        last.state_mib / first.state_mib,
        "x",
    );
    report.figure("rss_mib_at_end", last.rss_mib, "MiB");
    report.figure("rss_growth_from_middle", last.rss_mib / middle.rss_mib, "x");
    report.figure("ids_kept_at_end", last.ids as f64, "ids");
    report.figure("orders_kept_at_end", last.orders as f64, "orders");
    report.figure("checkpoint_mib_at_end", last.state_mib, "MiB");
    report.figure("pause_ms_at_end", last.pause_ms, "ms");
    report.target(
        "checkpoint_size_growth",
        last.state_mib / middle.state_mib,
        "x",
        Op::AtMost,
        1.5,
        "issue 23: decider memory and checkpoint pause stay flat over a 10M-event run",
    );
    report.target(
        "checkpoint_pause_growth",
        last.pause_ms / middle.pause_ms.max(0.001),
        "x",
        Op::AtMost,
        1.5,
        "issue 23: decider memory and checkpoint pause stay flat over a 10M-event run",
    );
    report.figure("delta_mib_at_end", last.delta_mib, "MiB");
    report.figure("delta_pause_ms_at_end", last.delta_pause_ms, "ms");
    report.target(
        "delta_pause_growth",
        last.delta_pause_ms / middle.delta_pause_ms.max(0.001),
        "x",
        Op::AtMost,
        1.5,
        "issue 23: checkpoints incremental, their pause flat",
    );
    report.target(
        "delta_to_full_size",
        last.delta_mib / last.state_mib.max(1e-9),
        "x",
        Op::AtMost,
        0.25,
        "issue 23: a checkpoint costs what changed, not the state",
    );
    report.finish();
}
