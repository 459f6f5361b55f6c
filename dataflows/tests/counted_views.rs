//! Counted events (ADR 0014): the product views a maintained view counts reach it summed per
//! second of decision time, each second's sums one step of the decider, applied once the
//! watermark has passed the second's end. Checked over a generated shop split into partitions:
//!
//! 1. every step (events, expiries, spans of counts) takes the same `seq` whatever the rounds and
//!    the interleaving of partitions (the pipeline's rounds differ from run to run), and whether
//!    the views arrive whole (`push`) or as the readers send them (`push_count`);
//! 2. a decider resumed from a state taken mid-way (spans still open in it) takes the same steps;
//! 3. in the end every view is counted exactly once: the sums per (product, hour) are a plain
//!    count of the log's view events, computed here from the events alone;
//! 4. the same when another view reads the views whole (each a step, counted when applied).

use std::collections::BTreeMap;

use chrono::Duration;
use differential_dataflow::VecCollection;
use emporium_dataflows::decider::Decider;
use emporium_dataflows::inventory::{InventoryConfig, Output};
use emporium_dataflows::view::{Count, Ids, Session, Spec, View};
use emporium_generator::{Generator, GeneratorConfig};
use emporium_schemas::{Event, EventKind, Payload};
use proptest::prelude::*;

const PARTITIONS: usize = 3;

fn lateness() -> Duration {
    Duration::seconds(2)
}

fn generated(n: usize) -> Vec<Vec<Event>> {
    let mut generator = Generator::new(GeneratorConfig {
        products: 150,
        users: 3_000,
        // About 23 events a second of event time (an hour boundary in 30k events), some 15
        // views in each second's span.
        events_per_day: 2_000_000.0,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let mut partitions: Vec<Vec<Event>> = vec![Vec::new(); PARTITIONS];
    for _ in 0..n {
        let e = generator.next_event();
        let p = e
            .partition_key()
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
            % PARTITIONS;
        partitions[p].push(e);
    }
    partitions
}

fn decider(views: &[Spec]) -> Decider {
    Decider::new(PARTITIONS, lateness(), InventoryConfig::default())
        .feeding(views)
        .tracking_changes()
}

/// A view that reads product views whole (views per product), beside one that counts them.
struct ViewsRead;

impl View for ViewsRead {
    const NAME: &'static str = "views_read";
    type Row = String;
    type Key = String;
    type Value = u64;

    fn reads(kind: EventKind) -> bool {
        kind == EventKind::ProductViewed
    }

    fn rows(_seq: u64, event: &Event, _ids: &mut Ids, out: &mut Vec<(String, isize)>) {
        if let Payload::ProductViewed(v) = &event.payload {
            out.push((v.product_id.clone(), 1));
        }
    }

    fn maintain<'s>(rows: VecCollection<'s, u64, String>) -> VecCollection<'s, u64, (String, u64)> {
        rows.map(|p| (p, ()))
            .reduce_named("ViewsRead", |_p: &String, n: &[(&(), isize)], out| {
                out.push((n.iter().map(|(_, d)| *d as u64).sum::<u64>(), 1isize))
            })
    }

    fn document(_product: &String, n: &u64, _ids: &Ids) -> serde_json::Value {
        serde_json::json!(n)
    }
}

/// Everything a run hands out, by `seq`: the spans of counts, the events the views read, the
/// decisions (as text: outputs compare by value), and the last `seq`.
#[derive(Debug, Default)]
struct Steps {
    counts: Vec<(u64, Vec<Count>)>,
    events: Vec<(u64, uuid::Uuid)>,
    decisions: Vec<String>,
    seq: u64,
    /// Sums in the state the run resumed from (not compared).
    resumed_with: Option<usize>,
}

impl PartialEq for Steps {
    fn eq(&self, other: &Self) -> bool {
        (&self.counts, &self.events, &self.decisions, self.seq)
            == (&other.counts, &other.events, &other.decisions, other.seq)
    }
}

impl Steps {
    fn take(&mut self, decider: &mut Decider, out: &mut Vec<Output>) {
        self.counts.extend(decider.take_view_counts());
        self.events.extend(
            decider
                .take_view_events()
                .into_iter()
                .map(|(seq, e)| (seq, e.event_id)),
        );
        self.decisions
            .extend(out.drain(..).map(|o| format!("{o:?}")));
        self.seq = decider.seq();
    }
}

/// Pushes `event` of `partition` as the pipeline's readers do when `counted` (a view as its
/// type, time and product alone), else whole.
fn push(decider: &mut Decider, partition: usize, event: &Event, counted: bool) {
    match &event.payload {
        Payload::ProductViewed(v) if counted && decider.counts_on(EventKind::ProductViewed) => {
            decider.push_count(
                partition,
                EventKind::ProductViewed,
                event.occurred_at,
                v.product_id.clone(),
                decider
                    .counts_sessions_on(EventKind::ProductViewed)
                    .then(|| Session {
                        user: v.user_id.clone(),
                        id: v.session_id.clone(),
                    }),
            )
        }
        _ => decider.push(partition, event.clone()),
    }
}

/// Runs the log through `decider` in rounds: each round pushes the next `sizes[r]` events of
/// partition `r % PARTITIONS`, then decides. With `resume_at`, the state is taken after that
/// many rounds and the run goes on in a decider resumed from it.
fn run(
    partitions: &[Vec<Event>],
    sizes: &[usize],
    counted: bool,
    resume_at: Option<usize>,
) -> Steps {
    run_with(
        &emporium_dataflows::views(),
        partitions,
        sizes,
        counted,
        resume_at,
    )
}

fn run_with(
    views: &[Spec],
    partitions: &[Vec<Event>],
    sizes: &[usize],
    counted: bool,
    resume_at: Option<usize>,
) -> Steps {
    let mut decider = decider(views);
    let mut steps = Steps::default();
    let mut out = Vec::new();
    let mut cursors = [0usize; PARTITIONS];
    let mut round = 0;
    while cursors.iter().zip(partitions).any(|(c, p)| *c < p.len()) {
        let p = round % PARTITIONS;
        let size = sizes[round % sizes.len()];
        let end = (cursors[p] + size).min(partitions[p].len());
        for e in &partitions[p][cursors[p]..end] {
            push(&mut decider, p, e, counted);
        }
        cursors[p] = end;
        decider.decide(&mut out);
        steps.take(&mut decider, &mut out);
        round += 1;
        if resume_at == Some(round) {
            steps.resumed_with = Some(decider.pending_counts());
            let state = decider.state().expect("state");
            decider = Decider::resume(&state, PARTITIONS, lateness(), InventoryConfig::default())
                .expect("resume")
                .feeding(views)
                .tracking_changes();
        }
    }
    decider.finish(&mut out);
    steps.take(&mut decider, &mut out);
    assert_eq!(decider.pending_counts(), 0, "every span applied at the end");
    steps
}

/// Views per (product, hour of event time), from the log alone.
fn views_in(partitions: &[Vec<Event>]) -> BTreeMap<(String, i64), u32> {
    let mut views = BTreeMap::new();
    for e in partitions.iter().flatten() {
        if let Payload::ProductViewed(v) = &e.payload {
            let hour = e.occurred_at.timestamp_millis().div_euclid(3_600_000);
            *views.entry((v.product_id.clone(), hour)).or_insert(0) += 1;
        }
    }
    views
}

/// The steps' everyone's sums per (product, hour); their sums per session, where the views
/// count per session, add up to the same in every step.
fn summed(steps: &Steps) -> BTreeMap<(String, i64), u32> {
    let mut sums = BTreeMap::new();
    let mut sessions = 0;
    for (seq, counts) in &steps.counts {
        let mut everyone = BTreeMap::new();
        let mut per_session = BTreeMap::new();
        for count in counts {
            assert_eq!(count.kind, EventKind::ProductViewed);
            let sums = match count.session {
                None => &mut everyone,
                Some(_) => &mut per_session,
            };
            *sums.entry((count.product.clone(), count.hour)).or_insert(0) += count.n;
        }
        if !per_session.is_empty() {
            assert_eq!(per_session, everyone, "sessions' sums of step {seq}");
            sessions += 1;
        }
        for (key, n) in everyone {
            *sums.entry(key).or_insert(0) += n;
        }
    }
    let per_session = emporium_dataflows::views()
        .iter()
        .any(|v| (v.counts_sessions)(EventKind::ProductViewed));
    assert_eq!(
        sessions > 0,
        per_session,
        "sums per session exactly when a view asks"
    );
    sums
}

#[test]
fn views_are_counted_once_in_spans_with_the_same_seqs_however_they_arrive() {
    let partitions = generated(30_000);
    let views = views_in(&partitions);
    let total: u32 = views.values().sum();
    assert!(total > 15_000, "{total} views");
    let reference = run(&partitions, &[40], true, None);
    assert_eq!(summed(&reference), views, "every view counted once");
    // Spans, not events: far fewer steps than views, and each span one second or less of
    // decision time (its counts are of events at most a second apart, plus lateness).
    assert!(
        reference.counts.len() * 3 < total as usize,
        "{} spans for {total} views",
        reference.counts.len()
    );
    // Seqs strictly increase and no two steps share one.
    let mut seqs: Vec<u64> = reference
        .counts
        .iter()
        .map(|(s, _)| *s)
        .chain(reference.events.iter().map(|(s, _)| *s))
        .collect();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "a seq taken twice");
    // Whole views, other rounds, a resumed decider: the same steps.
    assert_eq!(
        run(&partitions, &[40], false, None),
        reference,
        "whole views"
    );
    assert_eq!(
        run(&partitions, &[7, 300, 1, 55], true, None),
        reference,
        "other rounds"
    );
    let resumed = run(&partitions, &[40], true, Some(300));
    assert!(resumed.resumed_with > Some(0), "spans open in the state");
    assert_eq!(resumed, reference, "resumed");
}

#[test]
fn views_read_whole_by_another_view_are_still_counted_once() {
    let partitions = generated(12_000);
    let views: Vec<Spec> = emporium_dataflows::views()
        .into_iter()
        .chain([Spec::of::<ViewsRead>()])
        .collect();
    let reference = run_with(&views, &partitions, &[40], true, None);
    // Read whole, each view is a step of its own, and counted when it is applied.
    let read = reference.events.len();
    assert!(read > 5_000, "{read} events for the views");
    assert_eq!(
        summed(&reference),
        views_in(&partitions),
        "every view counted once"
    );
    let other = run_with(&views, &partitions, &[7, 300, 1, 55], true, Some(100));
    assert_eq!(other, reference, "other rounds, resumed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn any_rounds_give_the_same_steps(
        sizes in prop::collection::vec(1usize..400, 1..6),
        resume in prop::option::of(1usize..200),
    ) {
        let partitions = generated(6_000);
        let reference = run(&partitions, &[25], true, None);
        prop_assert_eq!(summed(&reference), views_in(&partitions));
        prop_assert_eq!(run(&partitions, &sizes, true, resume), reference);
    }
}
