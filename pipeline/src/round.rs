//! The end of worker 0's round: the decider's outputs and changes taken together (with a
//! checkpoint when one is due), the decisions appended, the products dataflow and the views run
//! up to the round's `seq`, and their documents added.

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use differential_dataflow::input::InputSession;
use emporium_dataflows::changes::Change;
use emporium_dataflows::decider::Decider;
use emporium_dataflows::orders::OrderStatus;
use emporium_dataflows::products::{self, AvailableRow, Latest, ListingRow, ProductInputs};
use emporium_dataflows::view::{Count, Installed};
use emporium_schemas::Event;
use timely::dataflow::ProbeHandle;

use crate::PipelineError;
use crate::checkpoint::{self, Checkpoint, NewPiece};
use crate::config::PipelineConfig;
use crate::decisions::Decided;
use crate::metrics;
use crate::stats::PipelineStats;

/// What worker 0 writes to the store after a round.
#[derive(Default)]
pub(crate) struct StoreWork {
    pub(crate) changes: Vec<Change>,
    /// What the round changed in the products dataflow's inputs.
    pub(crate) products: ProductInputs,
    /// The events the maintained views read, applied this round, at their `seq`.
    pub(crate) view_events: Vec<(u64, Event)>,
    /// The spans of events the maintained views count, applied this round, at their `seq`.
    pub(crate) view_counts: Vec<(u64, Vec<Count>)>,
    /// Next offset to read, per partition, over the records the decider received.
    pub(crate) positions: Vec<u64>,
    /// Append times of the events applied, for freshness.
    pub(crate) applied_ms: Vec<i64>,
    /// The decider's seq after the round.
    pub(crate) seq: u64,
    /// A checkpoint to write once the store holds the documents up to its seq.
    pub(crate) checkpoint: Option<Checkpoint>,
    pub(crate) dirty: bool,
}

/// Worker 0's inputs of the documents dataflow.
pub(crate) type ViewInputs = (
    InputSession<u64, AvailableRow, isize>,
    InputSession<u64, ListingRow, isize>,
);

/// The end of one of worker 0's rounds, when it writes the store.
pub(crate) struct RoundEnd<'a> {
    pub(crate) decider: &'a RefCell<Decider>,
    /// The decider's outputs not appended yet.
    pub(crate) decided: &'a RefCell<Vec<Decided>>,
    /// Appends decisions to the log.
    pub(crate) append: &'a dyn Fn(Vec<Decided>) -> Result<(), PipelineError>,
    pub(crate) store_work: &'a RefCell<StoreWork>,
    pub(crate) views_probe: &'a ProbeHandle<u64>,
    pub(crate) documents: &'a RefCell<Latest>,
    pub(crate) config: &'a PipelineConfig,
    pub(crate) stats: &'a PipelineStats,
    /// Set by the store writer when the next checkpoint must start a new chain with a full
    /// piece ([`crate::writer::Chain`]); `None`: always full.
    pub(crate) wants_full: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl RoundEnd<'_> {
    /// Takes what the decider produced since the last round, with a checkpoint if `checkpoint`
    /// (taken at the same moment, so state, decisions, positions and documents agree: the
    /// decider keeps deciding while worker 0 steps); appends the decisions (before the
    /// checkpoint can be written, which is after the hand-off); and adds the documents of its
    /// changes, once the documents dataflow has passed them. `None` if `give_up` said so first.
    pub(crate) fn take(
        &self,
        worker: &mut timely::worker::Worker,
        views_in: &mut Option<ViewInputs>,
        views: &mut [Box<dyn Installed>],
        checkpoint: bool,
        give_up: impl Fn() -> bool,
    ) -> Result<Option<StoreWork>, PipelineError> {
        let mut work = std::mem::take(&mut *self.store_work.borrow_mut());
        let decided = std::mem::take(&mut *self.decided.borrow_mut());
        {
            let mut next = self.store_work.borrow_mut();
            next.positions = work.positions.clone();
            next.seq = work.seq;
        }
        // The views' rows first, so a checkpoint's view states are at the decider's seq.
        if views_in.is_some() {
            for (seq, event) in work.view_events.drain(..) {
                for view in views.iter_mut() {
                    view.feed(seq, &event);
                }
            }
            for (seq, counts) in work.view_counts.drain(..) {
                for view in views.iter_mut() {
                    view.feed_counts(seq, &counts);
                }
            }
        }
        if checkpoint {
            // Taken: the next is a delta unless the writer asks again (a break, a long chain).
            let full = self
                .wants_full
                .as_ref()
                .is_none_or(|w| w.swap(false, std::sync::atomic::Ordering::Relaxed));
            work.checkpoint = Some(take_checkpoint(
                &mut self.decider.borrow_mut(),
                full,
                views,
                &work,
                self.config,
                self.stats,
            )?);
            work.dirty = true;
        }
        let began = std::time::Instant::now();
        (self.append)(decided)?;
        self.stats.decision_append.record(began.elapsed());
        let began = std::time::Instant::now();
        if let Some((available_in, listings_in)) = views_in {
            // The round's documents: complete once the dataflow has passed its last seq.
            let changes = std::mem::take(&mut work.products);
            for (row, seq, diff) in changes.available {
                available_in.update_at(row, seq, diff);
            }
            for (row, seq, diff) in changes.listings {
                listings_in.update_at(row, seq, diff);
            }
            let next = (work.seq + 1).max(*available_in.time());
            available_in.advance_to(next);
            listings_in.advance_to(next);
            available_in.flush();
            listings_in.flush();
            for view in views.iter_mut() {
                view.advance_to(next);
            }
            while self.views_probe.less_than(&next) || views.iter().any(|v| !v.passed(next)) {
                if give_up() {
                    return Ok(None);
                }
                worker.step_or_park(Some(std::time::Duration::from_millis(10)));
            }
            for view in views.iter_mut() {
                work.changes.extend(view.take());
            }
            let products = products::present(self.documents.borrow_mut().take());
            let mut decider = self.decider.borrow_mut();
            work.changes.extend(decider.product_documents(products));
            decider.forget_superseded(work.seq);
        }
        self.stats.documents_wait.record(began.elapsed());
        Ok(Some(work))
    }
}

/// The decider's watermark, open reservations, stock and orders per status, for metrics and
/// status lines.
pub(crate) fn publish_state(decider: &Decider, stats: &PipelineStats) {
    if let Some(w) = decider.watermark() {
        stats
            .watermark_ms
            .store(w.timestamp_millis(), Ordering::Relaxed);
        let lag = chrono::Utc::now() - w;
        metrics::watermark_lag(lag.to_std().unwrap_or_default());
    }
    metrics::open_reservations(decider.inventory().open_reservations());
    stats
        .late_events
        .store(decider.late_events(), Ordering::Relaxed);
    metrics::late_events(decider.late_events());
    stats
        .units_on_hand
        .store(decider.inventory().units_on_hand(), Ordering::Relaxed);
    for status in OrderStatus::ALL {
        let n = decider.orders().count(status) as u64;
        stats.orders_by_status[status as usize].store(n, Ordering::Relaxed);
    }
}

/// The decider's state with the positions it reflects (the round's changes already taken): its
/// head and a new piece, full when `full`, else a delta over the last piece taken.
pub(crate) fn take_checkpoint(
    decider: &mut Decider,
    full: bool,
    views: &[Box<dyn Installed>],
    work: &StoreWork,
    config: &PipelineConfig,
    stats: &PipelineStats,
) -> Result<Checkpoint, PipelineError> {
    let began = std::time::Instant::now();
    let taken = decider.take_state(full)?;
    let views = views
        .iter()
        .map(|v| Ok((v.name().to_owned(), v.state()?)))
        .collect::<Result<Vec<_>, bincode::Error>>()
        .map_err(emporium_dataflows::decider::StateError::from)?;
    stats
        .checkpoint_pause_ms
        .store(began.elapsed().as_millis() as u64, Ordering::Relaxed);
    Ok(Checkpoint {
        format: checkpoint::FORMAT,
        seq: decider.seq(),
        positions: work.positions.clone(),
        allowed_lateness_ms: config.allowed_lateness.num_milliseconds(),
        reservation_ttl_ms: config.inventory.reservation_ttl.num_milliseconds(),
        state: taken.head,
        views,
        pieces: Vec::new(),
        new_pieces: vec![NewPiece {
            full: taken.full,
            bytes: taken.piece,
        }],
    })
}
