//! The streaming driver of the inventory decider: events arrive from every partition in any
//! interleaving; each is stamped with its decision time by its partition's clock, buffered, and
//! applied once the watermark — the smallest bound over all partitions — has passed it. Applied in
//! (decision time, event id) order and deduplicated by event id, they give the same outputs as a
//! batch fold over the whole log, whatever the interleaving. Events the folds do not read (views,
//! searches, carts, reviews: four in five of a shop's events) only move their partition's clock,
//! and unpaid reservations expire as soon as the watermark passes their deadline, each as a step
//! of its own. The events a view counts (product views) are summed per second of decision time,
//! each second's sums a step of its own once the watermark passes its end (ADR 0014). See
//! `specs/adr/0005-inventory-decisions.md`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use chrono::{DateTime, Duration, Utc};
use emporium_schemas::{Event, EventKind, EventKinds};

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Listing};
use crate::changes::{Change, SkuAvailable};
use crate::event_time::{KeyClock, PartitionClock};
use crate::inventory::{Inventory, InventoryConfig, Output};
use crate::orders::{Anomaly, Orders};
use crate::products::{self, Id, ListingKey, Names, ProductInputs, ProductSkus};
use crate::view::{Count, Session};

mod changes;
mod state;

/// How long, in decision time, an applied event's id is remembered: an event whose id was
/// applied less than this before its own decision time is a duplicate and dropped; one whose id
/// was applied longer ago is applied again. Ingest's own deduplication (ADR 0004) covers the
/// last 5M ids (under a minute at 100k events/s); this backstop covers producers that resend
/// after an outage of up to an hour. Ids older than this behind the step being taken are
/// forgotten, so the decider's memory of ids is bounded by an hour of traffic (about one event
/// in five is a step: some 72M ids, 2 GB, at a sustained 100k events/s), not by the history
/// (issue 23). Part of the decisions' definition: [`decide_all`] keeps the same rule.
pub fn duplicate_horizon() -> Duration {
    Duration::hours(1)
}

/// Forget ids outside the horizon every this many applied events (a pass over the ids).
const FORGET_EVERY: u64 = 1 << 16;

/// Whether an event at `at_us` repeats one applied at `first_us` within [`duplicate_horizon`]
/// (both µs since the epoch: the one arithmetic of the decider and the reference).
fn within_horizon(first_us: i64, at_us: i64) -> bool {
    at_us.saturating_sub(first_us) <= duplicate_horizon().num_microseconds().unwrap_or(i64::MAX)
}

pub use state::{StateError, TakenState};

/// Counted events are summed over this much decision time, each span's sums one step (ADR 0014):
/// the longest a count waits for the watermark beyond its own time, and at 80k views a second
/// one step where there would be 80k.
pub const COUNT_SPAN_MS: i64 = 1_000;

/// A counted event's sum: its type, product, hour of event time and, for a sum per session
/// ([`crate::view::View::counts_sessions`]), the session.
type CountKey = (EventKind, String, i64, Option<Session>);

struct Buffered {
    at: DateTime<Utc>,
    /// Its rank among its key's events ([`PartitionClock::stamp_keyed`]): log order at one time.
    rank: u64,
    id: u128,
    /// Boxed: the heap moves entries on every push and pop.
    event: Box<Event>,
    /// When the event was appended to the log (ms since the epoch), for freshness.
    appended_ms: i64,
}

impl PartialEq for Buffered {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Buffered {}

impl PartialOrd for Buffered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Buffered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl Buffered {
    /// Decision time first, then the key, then the rank among the key's events (a key's events at
    /// one time in log order), then the event id: a total order every reader agrees on, whatever
    /// the number of partitions. Ranks are compared within one key only: a key forgotten by the
    /// clock ([`PartitionClock`] prunes) ranks from 0 again, but its earlier events are all at
    /// earlier times, so a resumed decider orders exactly as an uninterrupted one.
    fn key(&self) -> (DateTime<Utc>, &str, u64, u128) {
        (self.at, self.event.partition_key(), self.rank, self.id)
    }
}

/// Buffers events per partition and decides at the watermark.
///
/// It also keeps the catalog and, when asked to ([`Decider::tracking_changes`]), what each step
/// changed, at the `seq` of the change (the rank of the step — an event applied or a reservation
/// expired — in the order steps are taken, the same in every run over the same log): the orders
/// and skus whose documents changed, and the availability and listings the documents dataflow
/// ([`crate::products`]) derives the product documents from.
pub struct Decider {
    clocks: Vec<PartitionClock>,
    pending: BinaryHeap<Reverse<Buffered>>,
    /// Ids of the events applied within [`duplicate_horizon`] of the last step, with the decision
    /// time (µs since the epoch) they were applied at.
    applied: HashMap<u128, i64>,
    /// Events applied since ids were last forgotten, and the oldest time among the ids kept
    /// (µs; not checkpointed: forgetting is deterministic whenever it runs).
    since_forgetting: u64,
    oldest_applied_us: i64,
    /// Checkpoint deltas ([`Decider::checkpointed`]): whether they are taken, the ids applied
    /// since the last piece, and the bound of the last forgetting pass since then.
    tracking_pieces: bool,
    applied_since_piece: Vec<u128>,
    forgot_since_piece: Option<i64>,
    inventory: Inventory,
    orders: Orders,
    catalog: Catalog,
    anomalies: Vec<Anomaly>,
    /// Steps taken so far (events applied and reservations expired): the `seq` of the last one.
    seq: u64,
    track_changes: bool,
    /// Orders changed since the last [`Decider::take_order_changes`], with the `seq` of their
    /// last change.
    changed_orders: HashMap<String, u64>,
    /// The last documents of orders forgotten ([`crate::orders::closed_order_memory`]) while
    /// their change was still to be taken, for [`Decider::take_order_changes`].
    forgotten: Vec<Change>,
    /// Skus whose inventory document changed since the last
    /// [`Decider::take_inventory_changes`], with the `seq` of their last change.
    changed_skus: HashMap<String, u64>,
    product_inputs: ProductInputs,
    /// The documents dataflow's ids of skus and products (not checkpointed: see [`Names`]).
    sku_names: Names,
    product_names: Names,
    /// Listings whose served fields changed, by (product, revision) with the `seq` that replaced
    /// them: the documents dataflow may give a product at a revision the catalog has moved past
    /// when this decider decided further while worker 0 waited for the documents
    /// ([`Decider::product_documents`], [`Decider::forget_superseded`]).
    superseded: HashMap<(Id, u32), (u64, Listing)>,
    /// The products whose listing changed in each step, for
    /// [`crate::reference::reference_documents`] (when `report_steps`).
    report_steps: bool,
    relisted: Vec<String>,
    applied_appended_ms: Vec<i64>,
    /// Events pushed since this decider was made that were late: counted at their partition's
    /// bound, not their own time (not checkpointed: a count for metrics).
    late: u64,
    /// The event types the maintained views read ([`Decider::feeding`]): their events are
    /// steps too, so views share the `seq`s.
    view_kinds: EventKinds,
    /// Events applied for the views since the last [`Decider::take_view_events`], at their `seq`.
    view_events: Vec<(u64, Event)>,
    /// [`Decider::causal`], as a set.
    causal: EventKinds,
    /// The event types the maintained views count ([`Decider::feeding`]).
    count_kinds: EventKinds,
    /// Those of them a view counts per session too.
    session_kinds: EventKinds,
    /// Counted events not applied yet, by the end (ms since the epoch) of the span of decision
    /// time they fell in ([`COUNT_SPAN_MS`]).
    counts: BTreeMap<i64, HashMap<CountKey, u32>>,
    /// Spans of counts applied since the last [`Decider::take_view_counts`], at their `seq`.
    view_counts: Vec<(u64, Vec<Count>)>,
}

impl Decider {
    pub fn new(partitions: usize, allowed_lateness: Duration, config: InventoryConfig) -> Self {
        Self {
            clocks: vec![PartitionClock::new(allowed_lateness); partitions.max(1)],
            pending: BinaryHeap::new(),
            applied: HashMap::new(),
            since_forgetting: 0,
            oldest_applied_us: i64::MIN,
            tracking_pieces: false,
            applied_since_piece: Vec::new(),
            forgot_since_piece: None,
            inventory: Inventory::new(config),
            orders: Orders::default(),
            catalog: Catalog::default(),
            anomalies: Vec::new(),
            seq: 0,
            track_changes: false,
            changed_orders: HashMap::new(),
            forgotten: Vec::new(),
            changed_skus: HashMap::new(),
            product_inputs: ProductInputs::default(),
            sku_names: Names::default(),
            product_names: Names::default(),
            superseded: HashMap::new(),
            report_steps: false,
            relisted: Vec::new(),
            applied_appended_ms: Vec::new(),
            late: 0,
            view_kinds: EventKinds::default(),
            view_events: Vec::new(),
            causal: EventKinds::matching(Self::causal),
            count_kinds: EventKinds::default(),
            session_kinds: EventKinds::default(),
            counts: BTreeMap::new(),
            view_counts: Vec::new(),
        }
    }

    /// Feeds the maintained `views` ([`crate::view`]): applies, in decision-time order and as
    /// steps of their own, the events of the types they read, kept for
    /// [`Decider::take_view_events`]; sums the events of the types they count per second of
    /// decision time, each second a step of its own, kept for [`Decider::take_view_counts`]
    /// (both when tracking changes). Every decider over one log must be given the same views:
    /// they change the `seq`s.
    pub fn feeding(mut self, views: &[crate::view::Spec]) -> Self {
        self.view_kinds = EventKinds::matching(|kind| crate::view::any_reads(views, kind));
        self.count_kinds = EventKinds::matching(|kind| views.iter().any(|v| (v.counts)(kind)));
        self.session_kinds =
            EventKinds::matching(|kind| views.iter().any(|v| (v.counts_sessions)(kind)));
        self
    }

    /// Whether events of this type are only counted ([`Decider::push_count`]): a view counts
    /// them, and no fold or view reads them whole.
    pub fn counts_on(&self, kind: EventKind) -> bool {
        self.count_kinds.contains(kind) && !self.steps_on(kind)
    }

    /// The spans of counted events applied since the last call, each with its `seq`, sorted.
    pub fn take_view_counts(&mut self) -> Vec<(u64, Vec<Count>)> {
        std::mem::take(&mut self.view_counts)
    }

    /// Whether a counted event of this type is counted per session too (the readers then send
    /// its session: [`Decider::push_count`]).
    pub fn counts_sessions_on(&self, kind: EventKind) -> bool {
        self.counts_on(kind) && self.session_kinds.contains(kind)
    }

    /// Whether events of this type are steps: the folds or a view read them (the others only
    /// move their partition's clock).
    pub fn steps_on(&self, kind: EventKind) -> bool {
        Self::reads(kind) || self.view_kinds.contains(kind)
    }

    /// The events applied for the views since the last call, each with its `seq`.
    pub fn take_view_events(&mut self) -> Vec<(u64, Event)> {
        std::mem::take(&mut self.view_events)
    }

    /// Keeps the changes for [`Decider::take_order_changes`],
    /// [`Decider::take_inventory_changes`] and [`Decider::take_product_inputs`], and the append
    /// times of applied events for [`Decider::take_applied_append_times`].
    pub fn tracking_changes(mut self) -> Self {
        self.track_changes = true;
        self
    }

    /// [`Decider::tracking_changes`], and keeps the products each step relisted for
    /// [`Decider::take_relisted`].
    pub fn reporting_steps(mut self) -> Self {
        self.report_steps = true;
        self.tracking_changes()
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The `seq` of the last step (0: none yet).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether events of this type keep their order's log order (ADR 0005, step 1b): the types
    /// the folds read that are keyed by the order (placed, paid, failed, cancelled, shipped,
    /// delivered, returned). Catalog and stock events keep the partition rule alone: there are
    /// millions of their keys in a catalog load, and no lifecycle to put out of order.
    pub fn causal(kind: EventKind) -> bool {
        Self::reads(kind) && kind.partition_key_field() == "order_id"
    }

    /// Whether the decider's folds (inventory, orders, catalog) read events of this type. The
    /// others (views, searches, carts, reviews) only move their partition's clock
    /// ([`Decider::push_tick`]); decisions are the decider's own outputs, never its inputs.
    pub fn reads(kind: EventKind) -> bool {
        use EventKind::*;
        match kind {
            ProductUpserted | PriceChanged | ProductDiscontinued | StockReceived
            | StockAdjusted | OrderPlaced | OrderCancelled | PaymentAuthorized | PaymentFailed
            | OrderShipped | OrderDelivered | ReturnRequested => true,
            ProductViewed | SearchPerformed | CartItemAdded | CartItemRemoved | ReviewPosted
            | UserErased | InventoryReserved | OrderRejected | ReservationReleased
            | PartitionHeartbeat => false,
        }
    }

    /// Takes the next event of `partition` (events of one partition must come in log order).
    pub fn push(&mut self, partition: usize, event: Event) {
        self.push_appended(partition, event, 0);
    }

    /// [`Decider::push`], with the time the event was appended to the log (ms since the epoch).
    /// An event of a type the decider does not read is [`Decider::push_tick`]; a decision is
    /// ignored: where it lands in the log depends on when it was appended, so it must not move a
    /// clock.
    pub fn push_appended(&mut self, partition: usize, event: Event, appended_ms: i64) {
        let kind = event.kind();
        if kind.is_decision() {
            return;
        }
        if !self.steps_on(kind) {
            match event.product_id() {
                Some(product) if self.counts_on(kind) => {
                    let product = product.to_owned();
                    let session = event
                        .session()
                        .filter(|_| self.session_kinds.contains(kind))
                        .map(|(user, id)| Session {
                            user: user.to_owned(),
                            id: id.to_owned(),
                        });
                    self.push_count(partition, kind, event.occurred_at, product, session)
                }
                _ => self.push_tick(partition, event.occurred_at),
            }
            return;
        }
        let (at, rank) = if self.causal.contains(kind) {
            // An order's events keep their log order (a payment never before its order).
            let n = self.clocks.len();
            let stamp =
                self.clocks[partition % n].stamp_keyed(event.partition_key(), event.occurred_at);
            self.late += u64::from(stamp.late);
            (stamp.at, stamp.rank)
        } else {
            (self.stamp(partition, event.occurred_at), 0)
        };
        self.pending.push(Reverse(Buffered {
            at,
            rank,
            id: event.event_id.as_u128(),
            event: Box::new(event),
            appended_ms,
        }));
    }

    /// The next event of `partition` is one the decider does not read ([`Decider::reads`]),
    /// which occurred at `occurred_at`: it moves the partition's clock (and so the watermark)
    /// and nothing else. The pipeline's readers send only this for such events, without the
    /// event itself.
    pub fn push_tick(&mut self, partition: usize, occurred_at: DateTime<Utc>) {
        self.stamp(partition, occurred_at);
    }

    /// The next event of `partition` is one the views count ([`Decider::counts_on`]), of type
    /// `kind`, about `product`, which occurred at `occurred_at`: it moves the partition's clock
    /// and adds one to its sum in the span of its decision time — and, with its `session` for a
    /// type a view counts per session ([`Decider::counts_sessions_on`]), to that session's sum.
    /// The pipeline's readers send only this for such events.
    pub fn push_count(
        &mut self,
        partition: usize,
        kind: EventKind,
        occurred_at: DateTime<Utc>,
        product: String,
        session: Option<Session>,
    ) {
        let at = self.stamp(partition, occurred_at);
        self.add_count(at, kind, occurred_at, product, session);
    }

    fn add_count(
        &mut self,
        at: DateTime<Utc>,
        kind: EventKind,
        occurred_at: DateTime<Utc>,
        product: String,
        session: Option<Session>,
    ) {
        let end = (at.timestamp_millis().div_euclid(COUNT_SPAN_MS) + 1) * COUNT_SPAN_MS;
        let hour = crate::view::event_hour(occurred_at);
        let sums = self.counts.entry(end).or_default();
        if let Some(session) = session.filter(|_| self.session_kinds.contains(kind)) {
            let n = sums
                .entry((kind, product.clone(), hour, Some(session)))
                .or_insert(0);
            *n = n.saturating_add(1);
        }
        let n = sums.entry((kind, product, hour, None)).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// Counted events not applied yet: their sums, over every span.
    pub fn pending_counts(&self) -> usize {
        self.counts.values().map(HashMap::len).sum()
    }

    /// The decision time of `partition`'s next event, which occurred at `occurred_at`.
    fn stamp(&mut self, partition: usize, occurred_at: DateTime<Utc>) -> DateTime<Utc> {
        let n = self.clocks.len();
        let at = self.clocks[partition % n].stamp(occurred_at);
        if at > occurred_at {
            self.late += 1;
        }
        at
    }

    /// Events pushed to this decider that were late (ADR 0005): counted at their partition's
    /// bound, more than the allowed lateness behind its newest event. Read events and ticks
    /// alike; a steady count says the allowed lateness is below the producers' disorder.
    pub fn late_events(&self) -> u64 {
        self.late
    }

    /// Events pushed and not applied yet (above the watermark).
    /// Applied event ids still remembered for deduplication ([`duplicate_horizon`]).
    pub fn remembered_ids(&self) -> usize {
        self.applied.len()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Events with a decision time before this are complete: no partition can still send one.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.clocks
            .iter()
            .map(PartitionClock::bound)
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }

    /// The decision time of the next step waiting on the watermark: the earliest buffered event,
    /// unpaid reservation deadline or end of a span of counts (`None`: nothing waits).
    pub fn next_step_at(&self) -> Option<DateTime<Utc>> {
        let event = self.pending.peek().map(|Reverse(next)| next.at);
        let expiry = self.inventory.next_deadline();
        let counts = self.first_count_end();
        [event, expiry, counts].into_iter().flatten().min()
    }

    /// The end of the earliest span of counts not applied yet.
    fn first_count_end(&self) -> Option<DateTime<Utc>> {
        let (end, _) = self.counts.first_key_value()?;
        DateTime::from_timestamp_millis(*end)
    }

    /// How far behind its partition's newest event an event may come and count at its own time.
    pub fn allowed_lateness(&self) -> Duration {
        self.clocks
            .first()
            .map_or_else(Duration::zero, PartitionClock::allowed_lateness)
    }

    /// `partition`'s bound: no later event of it counts before this (`None`: nothing seen).
    pub fn partition_bound(&self, partition: usize) -> Option<DateTime<Utc>> {
        self.clocks.get(partition).and_then(PartitionClock::bound)
    }

    /// The newest event time `partition` has seen (`None`: nothing seen).
    pub fn partition_newest(&self, partition: usize) -> Option<DateTime<Utc>> {
        self.clocks.get(partition).and_then(PartitionClock::newest)
    }

    /// Applies every buffered event the watermark has passed, and every expiry it has passed.
    pub fn decide(&mut self, out: &mut Vec<Output>) {
        if let Some(watermark) = self.watermark() {
            self.drain(Some(watermark), out);
        }
    }

    /// The input has ended: applies everything still buffered, and every expiry before the
    /// newest decision time seen.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.drain(None, out);
    }

    /// Takes the next step the watermark allows, if any; `false` when there is none. A step of
    /// [`Decider::decide`], for a fold that looks at the state after each step.
    pub fn decide_next(&mut self, out: &mut Vec<Output>) -> bool {
        match self.watermark() {
            Some(watermark) => self.apply_next(Some(watermark), out),
            None => false,
        }
    }

    fn drain(&mut self, before: Option<DateTime<Utc>>, out: &mut Vec<Output>) {
        while self.apply_next(before, out) {}
    }

    /// The newest decision time seen on any partition: at the end of the input, time has
    /// reached it.
    fn newest(&self) -> Option<DateTime<Utc>> {
        self.clocks.iter().filter_map(PartitionClock::newest).max()
    }

    /// Takes the next step before `before` (`None`: the end of the input); `false` when there is
    /// none. A step, each with its own `seq`, is either
    /// - a span of counted events, once `before` is at or past its end and no event or expiry
    ///   before its end waits (ADR 0014); or
    /// - an expiry: the earliest unpaid reservation whose deadline is before the next buffered
    ///   event's decision time (or, with none buffered, before `before` — before the newest
    ///   decision time at the end). Every event up to the deadline has been applied then, and
    ///   every one after it is still to come, so an expiry takes the same place among the steps
    ///   whichever round it falls in, whether the events around it are read or only ticks; or
    /// - the next buffered event before `before`: a duplicate (same event id) is dropped, so
    ///   each event is applied once, at its earliest decision time.
    fn apply_next(&mut self, before: Option<DateTime<Utc>>, out: &mut Vec<Output>) -> bool {
        let next_at = self
            .pending
            .peek()
            .map(|Reverse(next)| next.at)
            .filter(|at| before.is_none_or(|w| *at < w));
        let expire_before = next_at.or(before).or_else(|| self.newest());
        // The earliest span of counts, once the watermark has passed its end (every event of
        // it has come: none can still be stamped before the watermark), before every step at or
        // after its end — so a span takes the same place among the steps in every run.
        if let Some(end) = self.first_count_end()
            && before.is_none_or(|w| end <= w)
        {
            let deadline = self
                .inventory
                .next_deadline()
                .filter(|d| expire_before.is_some_and(|t| *d < t));
            if next_at.into_iter().chain(deadline).all(|t| end <= t) {
                let sums = self.counts.pop_first().map(|(_, s)| s).unwrap_or_default();
                self.seq += 1;
                if self.track_changes {
                    let mut counts: Vec<Count> = sums
                        .into_iter()
                        .map(|((kind, product, hour, session), n)| Count {
                            kind,
                            product,
                            hour,
                            n,
                            session,
                        })
                        .collect();
                    counts.sort_unstable();
                    self.view_counts.push((self.seq, counts));
                }
                self.mark_changes(None);
                return true;
            }
        }
        if let Some(t) = expire_before {
            let first = out.len();
            if self.inventory.expire_next(t, out) {
                self.seq += 1;
                self.orders_see(&out[first..]);
                self.mark_changes(None);
                return true;
            }
        }
        if next_at.is_none() {
            return false;
        }
        let Some(Reverse(next)) = self.pending.pop() else {
            return false;
        };
        // Decision times of the steps never decrease: an id applied more than the horizon before
        // this step can match no later event, whenever it is forgotten, so forgetting is
        // deterministic.
        let at_us = next.at.timestamp_micros();
        let horizon_us = duplicate_horizon().num_microseconds().unwrap_or(i64::MAX);
        match self.applied.get(&next.id) {
            Some(&first) if within_horizon(first, at_us) => return true,
            _ => {
                self.applied.insert(next.id, at_us);
                if self.tracking_pieces {
                    self.applied_since_piece.push(next.id);
                }
            }
        }
        self.seq += 1;
        self.since_forgetting += 1;
        let bound = at_us.saturating_sub(horizon_us);
        // A pass only when some id is old enough to go: steps' times never decrease, so the
        // oldest id kept only changes on a pass (a cold start, all at one time, makes none).
        if self.since_forgetting >= FORGET_EVERY && self.oldest_applied_us < bound {
            self.since_forgetting = 0;
            let mut oldest = i64::MAX;
            self.applied.retain(|_, at| {
                let keep = *at >= bound;
                if keep {
                    oldest = oldest.min(*at);
                }
                keep
            });
            self.oldest_applied_us = oldest;
            if self.tracking_pieces {
                self.forgot_since_piece = Some(bound);
            }
        }
        let kind = next.event.kind();
        if self.count_kinds.contains(kind)
            && let Some(product) = next.event.product_id()
        {
            // A type one view reads whole and another counts.
            let product = product.to_owned();
            let session = next.event.session().map(|(user, id)| Session {
                user: user.to_owned(),
                id: id.to_owned(),
            });
            self.add_count(next.at, kind, next.event.occurred_at, product, session);
        }
        let for_views = self.view_kinds.contains(kind) && self.track_changes;
        if !Self::reads(kind) {
            // A step for the views alone: they take the event itself.
            if for_views {
                self.view_events.push((self.seq, *next.event));
            }
            self.mark_changes(Some(next.appended_ms));
            return true;
        }
        if for_views {
            self.view_events.push((self.seq, (*next.event).clone()));
        }
        // Orders closed long enough ago are forgotten first, at this step's time: the same
        // orders at the same step in every run (the inventory does the same in `apply`).
        let bound = next.at - crate::orders::closed_order_memory();
        for order in self.orders.forget_closed_before(bound) {
            if let Some(seq) = self.changed_orders.remove(&order.order_id) {
                self.forgotten.push(Change::Order { seq, order });
            }
        }
        // The event, then what it decided: the order states see every transition in
        // decision-time order (the expiries before it were steps of their own).
        self.orders.apply(&next.event, &mut self.anomalies);
        let first = out.len();
        self.inventory.apply(next.at, &next.event, out);
        self.orders_see(&out[first..]);
        if let Some(kind) = self.catalog.apply(self.seq, &next.event) {
            self.anomalies.push(Anomaly {
                key: next.event.partition_key().to_owned(),
                at: next.at,
                kind,
                detail: format!("{} for a product never listed", next.event.kind()),
            });
        }
        self.mark_changes(Some(next.appended_ms));
        true
    }
}

/// Units of `sku` available over its warehouses (none counted below zero), as its inventory
/// document says.
fn available(inventory: &Inventory, sku: &str) -> i64 {
    inventory
        .stock_of(sku)
        .map(|(_, s)| s.available().max(0))
        .sum()
}

/// What the documents dataflow sees of a listing.
fn listing_key(sku_names: &mut Names, listing: &Listing) -> ListingKey {
    ListingKey {
        listed_seq: listing.listed_seq,
        revision: listing.revision,
        skus: listing.skus.iter().map(|sku| sku_names.id(sku)).collect(),
    }
}

/// The batch reference: every partition's events in log order, decided in one fold.
/// Obviously correct by construction; the streaming [`Decider`] must match it.
pub fn decide_all(
    partitions: &[Vec<Event>],
    allowed_lateness: Duration,
    config: InventoryConfig,
) -> (Vec<Output>, Inventory) {
    let mut stamped: Vec<(DateTime<Utc>, &str, u64, u128, &Event)> = Vec::new();
    for events in partitions {
        let mut clock = PartitionClock::new(allowed_lateness);
        // Decisions are outputs: a log's own decisions are not read again.
        for e in events.iter().filter(|e| !e.kind().is_decision()) {
            let (at, rank) = if Decider::causal(e.kind()) {
                let stamp = clock.stamp_keyed(e.partition_key(), e.occurred_at);
                (stamp.at, stamp.rank)
            } else {
                (clock.stamp(e.occurred_at), 0)
            };
            stamped.push((at, e.partition_key(), rank, e.event_id.as_u128(), e));
        }
    }
    stamped.sort_by_key(|(at, key, rank, id, _)| (*at, *key, *rank, *id));
    let mut inventory = Inventory::new(config);
    // An id seen again within the horizon of its last application is a duplicate.
    let mut seen: HashMap<u128, i64> = HashMap::new();
    let mut out = Vec::new();
    for (at, _, _, id, e) in stamped {
        // Time passes with every event, a duplicate or one the inventory ignores included.
        inventory.advance_to(at, &mut out);
        let at_us = at.timestamp_micros();
        let duplicate = seen
            .get(&id)
            .is_some_and(|first| within_horizon(*first, at_us));
        if !duplicate {
            seen.insert(id, at_us);
            inventory.apply(at, e, &mut out);
            inventory.take_touched();
        }
    }
    (out, inventory)
}

#[cfg(test)]
mod tests {
    use emporium_schemas::examples::example;

    use super::*;

    /// An event of a type [`Decider::reads`] leaves out must change none of the folds, whatever
    /// their state: a type a fold uses and `reads` forgot would be silently lost.
    #[test]
    fn the_types_left_out_change_no_fold() {
        let mut seen = 0;
        for &kind in EventKind::ALL.iter().filter(|k| !Decider::reads(**k)) {
            seen += 1;
            let mut inventory = Inventory::new(InventoryConfig::default());
            let mut orders = Orders::default();
            let mut catalog = Catalog::default();
            // A state every type could touch: the product, its stock and an order of it.
            for setup in [
                EventKind::ProductUpserted,
                EventKind::StockReceived,
                EventKind::OrderPlaced,
            ] {
                let e = example(setup, 1);
                let (mut out, mut anomalies) = (Vec::new(), Vec::new());
                inventory.apply(e.occurred_at, &e, &mut out);
                orders.apply(&e, &mut anomalies);
                catalog.apply(1, &e);
            }
            inventory.take_touched();
            orders.take_touched();
            catalog.take_changed();
            let before = (
                bincode::serialize(&inventory.full_piece()).expect("state"),
                bincode::serialize(&orders.full_piece()).expect("state"),
                bincode::serialize(&catalog.full_piece()).expect("state"),
            );
            let e = example(kind, 2);
            let (mut out, mut anomalies) = (Vec::new(), Vec::new());
            inventory.apply(e.occurred_at, &e, &mut out);
            if !kind.is_system() {
                // Decisions reach the orders fold as the decider's own outputs, not as inputs.
                orders.apply(&e, &mut anomalies);
            }
            assert_eq!(catalog.apply(2, &e), None, "{kind}");
            assert!(
                out.is_empty() && anomalies.is_empty(),
                "{kind}: {out:?} {anomalies:?}"
            );
            assert!(inventory.take_touched().is_empty(), "{kind}");
            assert!(orders.take_touched().is_empty(), "{kind}");
            assert!(catalog.take_changed().is_empty(), "{kind}");
            let after = (
                bincode::serialize(&inventory.full_piece()).expect("state"),
                bincode::serialize(&orders.full_piece()).expect("state"),
                bincode::serialize(&catalog.full_piece()).expect("state"),
            );
            assert!(before == after, "{kind} changed a fold's state");
        }
        assert_eq!(
            seen, 10,
            "views, searches, cart changes, reviews, erasures, the 3 decisions and heartbeats"
        );
    }
}
