//! The one shape of a maintained view: which events it reads, the rows each adds to (or retracts
//! from) its input collection, and the differential computation from those rows to one value per
//! key. Everything else — reading the log, ordering the events, timestamps, checkpoints, the sink
//! — is the pipeline's, the same for every view (ADR 0010):
//!
//! - the decider applies the events a view reads at the event-time watermark, each as a step of
//!   its own, so the rows a view gets are the same, in the same order, in every run over the same
//!   log; they enter its dataflow a round at a time, at the round's last `seq`
//!   ([`Installed::advance_to`]), so the dataflow evaluates a key once per round however many
//!   steps touched it, and a document says the step it reflects;
//! - the events a view only *counts* ([`View::counts`]: product views, four events in five) are
//!   not steps: their readers send the decider only their product and time, the decider adds
//!   them up per (type, product, hour of event time) over a second of decision time, and applies
//!   each second's sums as one step when the watermark passes its end ([`Count`], ADR 0014) —
//!   the same `seq`s in every run, at a cost per distinct product, not per event;
//! - the view's state in a checkpoint is its input collection, consolidated ([`Installed::state`]),
//!   less the rows [`View::compact`] found can never change its value again; a resumed pipeline
//!   loads it back at the checkpoint's `seq`;
//! - what it emits is a [`Change::View`] per key whose value changed, with the JSON of
//!   [`View::document`], which the pipeline writes to the store under the view's name and the read
//!   API serves at `GET /v1/views/{name}/{key}`.
//!
//! A view is tested against a plain fold of the same events with [`evaluate`], which runs the
//! same dataflow on one thread. [`crate::ratings`] is the example; [`crate::views`] lists the
//! views the pipeline runs.
//!
//! See `specs/adr/0010-crates-along-the-data-path.md`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use differential_dataflow::input::InputSession;
use differential_dataflow::{ExchangeData, Hashable, VecCollection};
use emporium_schemas::{Event, EventKind};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::{Exchange as _, Inspect, Probe};

use crate::changes::{Change, Json};
pub use crate::ids::Ids;
use crate::latest::Latest;

/// A view maintained by differential dataflow over the events it reads.
pub trait View: 'static {
    /// Its name: the store's table of its documents, its route, its part of a checkpoint.
    const NAME: &'static str;
    /// A row of its input collection.
    type Row: ExchangeData + Hashable + std::hash::Hash + Serialize + DeserializeOwned;
    /// What it maintains one value of.
    type Key: ExchangeData + Hashable + std::hash::Hash + std::fmt::Display;
    type Value: ExchangeData;

    /// Whether it reads events of this type (only those reach [`View::rows`]). Never a decision
    /// type: decisions are the decider's outputs, not steps ([`Spec::of`] refuses such a view).
    fn reads(kind: EventKind) -> bool;

    /// The rows `event`, the `seq`-th step, adds (a positive diff: how many times) or retracts
    /// (a negative one). A row may carry `seq` to tell versions of a full value apart (the
    /// latest wins): `seq`s are the same in every run over the same log. A row may name things
    /// by their [`Ids`] (the same in every run too) instead of carrying strings.
    fn rows(seq: u64, event: &Event, ids: &mut Ids, out: &mut Vec<(Self::Row, isize)>);

    /// Whether it counts events of this type, per product and hour of event time, without
    /// reading them ([`View::counted`]). A type is read or counted, not both. None by default.
    fn counts(_kind: EventKind) -> bool {
        false
    }

    /// Whether it counts events of this type per session too: its [`Count`]s of this type then
    /// name a shopper's session ([`Count::session`]), one per session, product and hour, instead
    /// of everyone's sum — a cost per distinct (session, product) of the span, not per product.
    /// Only for a type it counts. None by default.
    fn counts_sessions(_kind: EventKind) -> bool {
        false
    }
    /// The row one counted event adds (`count`'s type, product, hour of event time and, for the
    /// types of [`View::counts_sessions`], session), in the span applied as the `seq`-th step; a
    /// [`Count`] of `n` adds it `n` times. `None`: this one does not count.
    fn counted(_seq: u64, _count: &Count, _ids: &mut Ids) -> Option<Self::Row> {
        None
    }

    /// The collection it maintains: at most one value per key at any time, its changes at a time
    /// consolidated (end with a `reduce`: a `join`'s output can insert and retract one value at
    /// one time, which [`Latest`] would read as an insertion).
    fn maintain<'s>(
        rows: VecCollection<'s, u64, Self::Row>,
    ) -> VecCollection<'s, u64, (Self::Key, Self::Value)>;

    /// The document the store keeps for a key's value (what the read API answers), with the
    /// names of the ids its rows used.
    fn document(key: &Self::Key, value: &Self::Value, ids: &Ids) -> serde_json::Value;

    /// The same document as JSON text, which the pipeline hands to the store: [`View::document`]
    /// written out, unless a view writes it straight from its value — one with many changed
    /// documents per round (a ranked list per product) spares worker 0 a `serde_json::Value`
    /// tree per document (a map per entry) and the store writer its serialization.
    fn json(key: &Self::Key, value: &Self::Value, ids: &Ids) -> Json {
        Json::Value(Self::document(key, value, ids))
    }

    /// The store's key of `key`: its text, or the name of its id for a view keyed by [`Ids`].
    fn key_name(key: &Self::Key, _ids: &Ids) -> String {
        key.to_string()
    }

    /// Drops from the consolidated input (`rows`: what a checkpoint holds and a resumed view
    /// is fed) rows that can never again change what [`View::maintain`] gives, whatever rows
    /// come next: a view whose input only grows and whose value keeps a bounded part of it
    /// (the latest products a user viewed) bounds its checkpoint and this copy with it. The
    /// dataflow is not told (it may keep the rows; its output is the same with or without
    /// them). Called when the copy has doubled since the last call. Keeps everything by
    /// default.
    fn compact(_rows: &mut FxHashMap<Self::Row, isize>) {}
}

/// A view as the pipeline drives it, whatever its types: installed in a timely worker
/// ([`install`]), fed the events it reads at their `seq`, and drained of its changes.
pub trait Installed {
    fn name(&self) -> &'static str;
    /// Adds `event`'s rows, the `seq`-th step (worker 0 only; a no-op once closed). They enter
    /// the dataflow at the next [`Installed::advance_to`].
    fn feed(&mut self, seq: u64, event: &Event);
    /// Adds the rows of counted events at `seq` (worker 0 only; a no-op once closed).
    fn feed_counts(&mut self, seq: u64, counts: &[Count]);
    /// Promises no more rows before `next` and lets the dataflow run up to it: the rows fed
    /// since the last call enter together at `next − 1`, the round's last step.
    fn advance_to(&mut self, next: u64);
    /// Whether every output before `next` has arrived.
    fn passed(&self, next: u64) -> bool;
    /// The documents changed since the last call, each at the `seq` of its last change.
    fn take(&mut self) -> Vec<Change>;
    /// The input collection, consolidated: the view's part of a checkpoint.
    fn state(&self) -> Result<Vec<u8>, bincode::Error>;
    /// Loads a checkpoint's input collection at `seq`; its outputs up to `seq` are not emitted
    /// (the store has them already).
    fn resume(&mut self, state: &[u8], seq: u64) -> Result<(), bincode::Error>;
    /// Drops the input: on every worker but 0, which alone feeds the views.
    fn close(&mut self);
}

/// Events of one type about one product in one hour of event time, counted: what the decider
/// gives the views that count that type ([`View::counts`]) instead of the events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Count {
    pub kind: EventKind,
    pub product: String,
    /// Hours since the epoch, of the events' `occurred_at`.
    pub hour: i64,
    pub n: u32,
    /// The shopper's session the events happened in, for the types a view counts per session
    /// ([`View::counts_sessions`]); `None`: every session's events of the product and hour. A
    /// span holds both kinds for such a type, the views each taking theirs.
    pub session: Option<Session>,
}

/// A shopper's session: the `user_id` and `session_id` of a funnel event ([`Event::session`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, Serialize)]
pub struct Session {
    pub user: String,
    pub id: String,
}

/// A view's name, its event filters, and how to install it, without its types.
#[derive(Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub reads: fn(EventKind) -> bool,
    pub counts: fn(EventKind) -> bool,
    pub counts_sessions: fn(EventKind) -> bool,
    pub install: fn(&mut timely::worker::Worker) -> Box<dyn Installed>,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Spec {
    /// `V` as the pipeline runs it. Panics (at start, a programming error) when `V` reads a
    /// decision type or takes the name of one of the store's own tables.
    pub fn of<V: View>() -> Self {
        assert!(
            !EventKind::ALL
                .iter()
                .any(|k| k.is_decision() && V::reads(*k)),
            "view {}: decisions are the decider's outputs, not events a view can read",
            V::NAME
        );
        assert!(
            !EventKind::ALL
                .iter()
                .any(|k| V::counts(*k) && (k.is_decision() || V::reads(*k))),
            "view {}: a type is read or counted, not both, and never a decision",
            V::NAME
        );
        assert!(
            !EventKind::ALL
                .iter()
                .any(|k| V::counts_sessions(*k) && !V::counts(*k)),
            "view {}: counts per session a type it does not count",
            V::NAME
        );
        assert!(
            !["products", "inventory", "orders"].contains(&V::NAME),
            "view {}: the name of one of the store's own tables",
            V::NAME
        );
        Self {
            name: V::NAME,
            reads: V::reads,
            counts: V::counts,
            counts_sessions: V::counts_sessions,
            install: install::<V>,
        }
    }
}

/// Whether any of `views` reads events of this type.
pub fn any_reads(views: &[Spec], kind: EventKind) -> bool {
    views.iter().any(|v| (v.reads)(kind))
}

/// Builds `V`'s dataflow in `worker`; its outputs go to worker 0.
pub fn install<V: View>(worker: &mut timely::worker::Worker) -> Box<dyn Installed> {
    Box::new(build::<V>(worker))
}

fn build<V: View>(worker: &mut timely::worker::Worker) -> Running<V> {
    let mut input: InputSession<u64, V::Row, isize> = InputSession::new();
    let latest: Rc<RefCell<Latest<V::Key, V::Value>>> = Rc::default();
    let probe = ProbeHandle::new();
    {
        let latest = Rc::clone(&latest);
        worker.dataflow::<u64, _, _>(|scope| {
            V::maintain(input.to_collection(scope))
                .inner
                .exchange(|_| 0)
                .inspect(move |((key, value), time, diff)| {
                    latest
                        .borrow_mut()
                        .add(key.clone(), value.clone(), *time, *diff)
                })
                .probe_with(&probe);
        });
    }
    Running::<V> {
        input: Some(input),
        probe,
        latest,
        rows: FxHashMap::default(),
        pending: Vec::new(),
        compacted: 0,
        ids: Ids::default(),
        scratch: Vec::new(),
    }
}

struct Running<V: View> {
    input: Option<InputSession<u64, V::Row, isize>>,
    probe: ProbeHandle<u64>,
    latest: Rc<RefCell<Latest<V::Key, V::Value>>>,
    /// The input collection as fed so far, consolidated (for checkpoints).
    rows: FxHashMap<V::Row, isize>,
    /// The rows fed since the last [`Installed::advance_to`], which enter the dataflow together
    /// at the round's last `seq` (see [`Installed::advance_to`]).
    pending: Vec<(V::Row, isize)>,
    /// How many `rows` there were after the last [`View::compact`].
    compacted: usize,
    /// The names its rows gave ids to (fed on worker 0 only, like the rows).
    ids: Ids,
    scratch: Vec<(V::Row, isize)>,
}

impl<V: View> Installed for Running<V> {
    fn name(&self) -> &'static str {
        V::NAME
    }

    fn feed(&mut self, seq: u64, event: &Event) {
        if self.input.is_none() || !V::reads(event.kind()) {
            return;
        }
        V::rows(seq, event, &mut self.ids, &mut self.scratch);
        for (row, diff) in self.scratch.drain(..) {
            add_row(&mut self.rows, &mut self.pending, row, diff);
        }
    }

    fn feed_counts(&mut self, seq: u64, counts: &[Count]) {
        if self.input.is_none() {
            return;
        }
        // Per session for the types it counts that way, everyone's sums for the others.
        let mine =
            |c: &&Count| V::counts(c.kind) && c.session.is_some() == V::counts_sessions(c.kind);
        for count in counts.iter().filter(mine) {
            let Some(row) = V::counted(seq, count, &mut self.ids) else {
                continue;
            };
            add_row(&mut self.rows, &mut self.pending, row, count.n as isize);
        }
    }

    fn advance_to(&mut self, next: u64) {
        let Some(input) = &mut self.input else { return };
        // The round's rows all enter at its last `seq`: the dataflow evaluates each key once per
        // round, not once per step that touched it (a busy product's list, a trending category,
        // change at hundreds of steps in one round). Nothing reads the states between: a
        // round's documents are taken once it has passed `next`, as of `next − 1`, which is what
        // they reflect.
        let at = next.saturating_sub(1).max(*input.time());
        for (row, diff) in self.pending.drain(..) {
            input.update_at(row, at, diff);
        }
        if next > *input.time() {
            input.advance_to(next);
        }
        input.flush();
        if self.rows.len() > 2 * self.compacted.max(COMPACT_FROM) {
            V::compact(&mut self.rows);
            self.compacted = self.rows.len();
        }
    }

    fn passed(&self, next: u64) -> bool {
        !self.probe.less_than(&next)
    }

    fn take(&mut self) -> Vec<Change> {
        self.latest
            .borrow_mut()
            .take()
            .into_iter()
            .map(|(key, seq, value)| Change::View {
                view: V::NAME,
                key: V::key_name(&key, &self.ids),
                seq,
                document: value.map(|v| V::json(&key, &v, &self.ids)),
            })
            .collect()
    }

    fn state(&self) -> Result<Vec<u8>, bincode::Error> {
        let mut rows: Vec<(&V::Row, &isize)> = self.rows.iter().collect();
        rows.sort();
        bincode::serialize(&(&self.ids, rows))
    }

    fn resume(&mut self, state: &[u8], seq: u64) -> Result<(), bincode::Error> {
        let (ids, rows): (Ids, Vec<(V::Row, isize)>) = bincode::deserialize(state)?;
        self.ids = ids;
        *self.latest.borrow_mut() = Latest::after(seq);
        if let Some(input) = &mut self.input {
            for (row, diff) in rows {
                self.rows.insert(row.clone(), diff);
                input.update_at(row, seq, diff);
            }
        }
        Ok(())
    }

    fn close(&mut self) {
        self.input = None;
    }
}

/// Rows of a view's consolidated input below which [`View::compact`] is not worth calling.
const COMPACT_FROM: usize = 1 << 16;

/// Adds `row` `diff` times at `seq`: to the input and to the consolidated copy checkpoints take.
fn add_row<R: ExchangeData + std::hash::Hash>(
    rows: &mut FxHashMap<R, isize>,
    pending: &mut Vec<(R, isize)>,
    row: R,
    diff: isize,
) {
    let n = rows.entry(row.clone()).or_insert(0);
    *n += diff;
    if *n == 0 {
        rows.remove(&row);
    }
    pending.push((row, diff));
}

/// The hour of event time of `at`, hours since the epoch: what counted events and the views'
/// own rows are summed by.
pub fn event_hour(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_millis().div_euclid(3_600_000)
}

/// Runs `V`'s dataflow over `events` as the pipeline does — each event fed at its own `seq` (its
/// index + 1), incrementally; a counted one as a [`Count`] of 1 at its `seq` — on this thread,
/// and gives the collection it maintains at the end, by key. For tests against a plain fold.
pub fn evaluate<V: View>(events: &[Event]) -> HashMap<V::Key, V::Value> {
    evaluate_with_ids::<V>(events).0
}

/// [`evaluate`], with the names of the ids the view's rows used: for a view keyed by [`Ids`].
pub fn evaluate_with_ids<V: View>(events: &[Event]) -> (HashMap<V::Key, V::Value>, Ids) {
    evaluate_in_rounds::<V>(events, 7)
}

/// [`evaluate_with_ids`], letting the dataflow work once every `round` events (at least 1)
/// instead of every 7: for long histories (the offline evaluation), as the pipeline's rounds do.
pub fn evaluate_in_rounds<V: View>(
    events: &[Event],
    round: usize,
) -> (HashMap<V::Key, V::Value>, Ids) {
    let round = round.max(1);
    let events = events.to_vec();
    timely::execute_directly(move |worker| {
        let mut view = build::<V>(worker);
        let end = events.len() as u64 + 1;
        for (i, event) in events.iter().enumerate() {
            let seq = i as u64 + 1;
            match counted(event) {
                Some(mut count) if V::counts(count.kind) => {
                    if V::counts_sessions(count.kind) {
                        count.session = event.session().map(|(user, id)| Session {
                            user: user.to_owned(),
                            id: id.to_owned(),
                        });
                    }
                    view.feed_counts(seq, &[count])
                }
                _ => view.feed(seq, event),
            }
            // Let the dataflow work between some events, as rounds do.
            if i % round == 0 {
                view.advance_to(i as u64 + 2);
                worker.step();
            }
        }
        view.advance_to(end);
        while !view.passed(end) {
            worker.step();
        }
        let latest = view.latest.borrow();
        let values = latest
            .values()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (values, view.ids.clone())
    })
}

/// `event` as a [`Count`] of 1 (everyone's: no session), when it names a product (the types a
/// view may count).
pub fn counted(event: &Event) -> Option<Count> {
    let product = event.product_id()?;
    Some(Count {
        kind: event.kind(),
        product: product.to_owned(),
        hour: event_hour(event.occurred_at),
        n: 1,
        session: None,
    })
}
