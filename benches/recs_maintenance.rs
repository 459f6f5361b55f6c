//! What the recommendation views cost alone (issue 25, ADR 0015): the events/s their dataflows
//! sustain on 2 timely workers, and the memory they hold per million paid orders.
//!
//! Workload: a generated shop (100k products, 1M users, shoppers with taste: `emporium_generator::
//! taste`), its events fed to each view in `emporium_dataflows::recs::VIEWS` as the pipeline feeds
//! them — on worker 0, the events the view reads, each at its own `seq`, and the events it counts
//! (product views) summed per second of event time, each second's sums one `seq` (everyone's per
//! product and hour, and per session too for a view that counts per session: ADR 0014), in rounds
//! of 10,000 shop events, each round run until the dataflow has passed it and its changed
//! documents taken. The
//! generation is not timed. Memory: the process's RSS growth over the run (mimalloc, as the
//! binary), and the view's checkpoint (its input collection, consolidated), per million paid
//! orders. Each view runs in a process of its own (the harness runs itself with
//! `EMPORIUM_BENCH_VIEW=<name>`), so memory one run freed does not hide the next one's.
//!
//! Target (issue 25): the views must not hold the pipeline back: ≥ 120k shop events/s alone
//! (the end-to-end rate kept up, so they are never its bottleneck). Memory is reported.
//!
//! Run: `cargo bench --bench recs_maintenance` (add `-- --quick` for a smoke run;
//! `EMPORIUM_BENCH_EVENTS` sets the events). Writes `<target dir>/bench-results/recs_maintenance.json`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use emporium_dataflows::view::{Count, Session, Spec, event_hour};
use emporium_generator::{Generator, GeneratorConfig};
use emporium_schemas::EventKind;
use support::*;

const ROUND: u64 = 10_000;
const TARGET_EVENTS_PER_S: f64 = 120_000.0;
const SOURCE: &str = "issue 25, Numbers: maintenance cost, events/s the recommendation dataflows sustain alone on 2 workers (at least the end-to-end rate kept up, 120k/s, so never the bottleneck)";

/// What one view's run measured.
struct Run {
    events: u64,
    fed: u64,
    paid: u64,
    took: Duration,
    documents: u64,
    state_bytes: usize,
    rss_growth: u64,
    /// RSS and paid orders half way: the second half's growth per order is the state's
    /// (the catalog and the generator are in both halves' start).
    half_rss: u64,
    half_paid: u64,
}

impl Run {
    /// Bytes per paid order over the second half of the run.
    fn marginal_bytes_per_order(&self) -> f64 {
        let grown = self.rss_growth.saturating_sub(self.half_rss) as f64;
        grown / self.paid.saturating_sub(self.half_paid).max(1) as f64
    }
}

/// The shop: 100k products and 1M users (a smoke run: 10k and 100k).
fn shop() -> GeneratorConfig {
    let (products, users) = if quick() {
        (10_000, 100_000)
    } else {
        (100_000, 1_000_000)
    };
    GeneratorConfig {
        products,
        users,
        ..GeneratorConfig::default()
    }
}

fn run(spec: Spec, events: u64) -> Run {
    let before = rss_bytes();
    let done = Arc::new(AtomicBool::new(false));
    let results = timely::execute(timely::Config::process(2), move |worker| {
        let mut view = (spec.install)(worker);
        if worker.index() != 0 {
            view.close();
            while !done.load(Ordering::Acquire) {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
            return None;
        }
        let mut generator = Generator::new(shop()).expect("generator");
        let (mut seq, mut fed, mut paid, mut documents) = (0u64, 0u64, 0u64, 0u64);
        let mut took = Duration::ZERO;
        let mut batch = Vec::with_capacity(ROUND as usize);
        // The counted events of the current second of event time.
        let mut span: Option<(i64, Spans)> = None;
        let mut left = events;
        let (mut half_rss, mut half_paid) = (0, 0);
        while left > 0 {
            if half_paid == 0 && left <= events / 2 {
                half_rss = rss_bytes().saturating_sub(before);
                half_paid = paid;
            }
            let n = left.min(ROUND);
            left -= n;
            batch.clear();
            batch.extend((0..n).map(|_| generator.next_event()));
            paid += batch
                .iter()
                .filter(|e| e.kind() == EventKind::PaymentAuthorized)
                .count() as u64;
            let started = Instant::now();
            for event in &batch {
                let kind = event.kind();
                if (spec.reads)(kind) {
                    seq += 1;
                    fed += 1;
                    view.feed(seq, event);
                } else if (spec.counts)(kind)
                    && let Some(product) = event.product_id()
                {
                    fed += 1;
                    let second = event.occurred_at.timestamp();
                    if span.as_ref().is_some_and(|(s, _)| *s != second) {
                        seq += 1;
                        view.feed_counts(seq, &sums(span.take()));
                    }
                    let (_, counts) = span.get_or_insert_with(|| (second, BTreeMap::new()));
                    let hour = event_hour(event.occurred_at);
                    let session = event
                        .session()
                        .filter(|_| (spec.counts_sessions)(kind))
                        .map(|(user, id)| Session {
                            user: user.to_owned(),
                            id: id.to_owned(),
                        });
                    if session.is_some() {
                        *counts
                            .entry((kind, product.to_owned(), hour, session))
                            .or_insert(0) += 1;
                    }
                    *counts
                        .entry((kind, product.to_owned(), hour, None))
                        .or_insert(0) += 1;
                }
            }
            if span.is_some() {
                seq += 1;
                view.feed_counts(seq, &sums(span.take()));
            }
            view.advance_to(seq + 1);
            while !view.passed(seq + 1) {
                worker.step();
            }
            documents += view.take().len() as u64;
            took += started.elapsed();
        }
        let state_bytes = view.state().expect("state").len();
        let rss_growth = rss_bytes().saturating_sub(before);
        view.close();
        done.store(true, Ordering::Release);
        Some(Run {
            events,
            fed,
            paid,
            took,
            documents,
            state_bytes,
            rss_growth,
            half_rss,
            half_paid,
        })
    })
    .expect("timely")
    .join();
    results
        .into_iter()
        .find_map(|r| r.ok().flatten())
        .expect("worker 0's run")
}

/// Counted events' sums: per type, product, hour of event time and (or not) session.
type Spans = BTreeMap<(EventKind, String, i64, Option<Session>), u32>;

/// A span's sums as the decider hands them to the views.
fn sums(span: Option<(i64, Spans)>) -> Vec<Count> {
    span.map(|(_, counts)| counts)
        .unwrap_or_default()
        .into_iter()
        .map(|((kind, product, hour, session), n)| Count {
            kind,
            product,
            hour,
            n,
            session,
        })
        .collect()
}

/// Runs `name`'s view alone in this process and prints its measures as one JSON line.
fn child(name: &str, events: u64) {
    let spec = emporium_dataflows::views()
        .into_iter()
        .find(|v| v.name == name)
        .expect("a view of that name");
    let r = run(spec, events);
    println!(
        "RESULT {}",
        serde_json::json!({
            "view": name,
            "events": r.events,
            "read": r.fed,
            "paid_orders": r.paid,
            "seconds": r.took.as_secs_f64(),
            "documents_changed": r.documents,
            "rss_growth_bytes": r.rss_growth,
            "checkpoint_bytes": r.state_bytes,
            "half_rss_bytes": r.half_rss,
            "half_paid_orders": r.half_paid,
        })
    );
}

/// Runs `name`'s view in a child process (this harness with `EMPORIUM_BENCH_VIEW`).
fn in_child(name: &str) -> Run {
    let out = std::process::Command::new(std::env::current_exe().expect("this harness"))
        .args(std::env::args().skip(1))
        .env("EMPORIUM_BENCH_VIEW", name)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "{name}: no result ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let v: serde_json::Value = serde_json::from_str(line).expect("the child's JSON");
    let n = |k: &str| v[k].as_u64().unwrap_or_default();
    Run {
        events: n("events"),
        fed: n("read"),
        paid: n("paid_orders"),
        took: Duration::from_secs_f64(v["seconds"].as_f64().unwrap_or_default()),
        documents: n("documents_changed"),
        state_bytes: n("checkpoint_bytes") as usize,
        rss_growth: n("rss_growth_bytes"),
        half_rss: n("half_rss_bytes"),
        half_paid: n("half_paid_orders"),
    }
}

fn main() {
    support::alloc::keep_freed_memory_a_while();
    let events: u64 = if quick() {
        200_000
    } else {
        std::env::var("EMPORIUM_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5_000_000)
    };
    if let Ok(name) = std::env::var("EMPORIUM_BENCH_VIEW") {
        child(&name, events);
        return;
    }
    let mut report = Report::start(
        "recommendation views alone: events/s on 2 workers, memory per million paid orders",
        &format!(
            "{events} generated shop events ({} products, {} users, taste on), fed to each view \
             in rounds of {ROUND} as the pipeline does; 2 timely workers; generation not timed",
            shop().products,
            shop().users
        ),
    );
    row(&[
        "view".into(),
        "shop events/s".into(),
        "events read/s".into(),
        "paid orders".into(),
        "documents changed".into(),
        "RSS growth per M orders".into(),
        "second half, per M orders".into(),
        "checkpoint per M orders".into(),
    ]);
    let mut slowest = f64::INFINITY;
    for spec in emporium_dataflows::views()
        .into_iter()
        .filter(|v| emporium_dataflows::recs::VIEWS.contains(&v.name))
    {
        let r = in_child(spec.name);
        let secs = r.took.as_secs_f64();
        let per_m = |bytes: f64| bytes * 1e6 / r.paid.max(1) as f64 / (1u64 << 20) as f64;
        let (rss_per_m, state_per_m) = (per_m(r.rss_growth as f64), per_m(r.state_bytes as f64));
        let marginal = r.marginal_bytes_per_order() * 1e6 / (1u64 << 20) as f64;
        row(&[
            spec.name.into(),
            fmt_rate(r.events as f64 / secs),
            fmt_rate(r.fed as f64 / secs),
            format!("{}", r.paid),
            format!("{}", r.documents),
            format!("{rss_per_m:.0} MiB"),
            format!("{marginal:.0} MiB"),
            format!("{state_per_m:.0} MiB"),
        ]);
        slowest = slowest.min(r.events as f64 / secs);
        report.figure(
            format!("{}.shop_events_per_s", spec.name),
            r.events as f64 / secs,
            "events/s",
        );
        report.figure(
            format!("{}.read_events_per_s", spec.name),
            r.fed as f64 / secs,
            "events/s",
        );
        report.figure(
            format!("{}.paid_orders", spec.name),
            r.paid as f64,
            "orders",
        );
        report.figure(
            format!("{}.rss_mib_per_million_paid_orders", spec.name),
            rss_per_m,
            "MiB",
        );
        report.figure(
            format!("{}.second_half_rss_mib_per_million_paid_orders", spec.name),
            marginal,
            "MiB",
        );
        report.figure(
            format!("{}.checkpoint_mib_per_million_paid_orders", spec.name),
            state_per_m,
            "MiB",
        );
        report.row(serde_json::json!({
            "view": spec.name,
            "events": r.events,
            "read": r.fed,
            "paid_orders": r.paid,
            "seconds": secs,
            "documents_changed": r.documents,
            "rss_growth_bytes": r.rss_growth,
            "checkpoint_bytes": r.state_bytes,
            "half_rss_bytes": r.half_rss,
            "half_paid_orders": r.half_paid,
        }));
    }
    report.target(
        "slowest_view_shop_events_per_s",
        slowest,
        "events/s",
        Op::AtLeast,
        TARGET_EVENTS_PER_S,
        SOURCE,
    );
    report.finish();
}
