//! One timely worker's loop: read its partitions, route to worker 0's decider, and (worker 0)
//! run the documents dataflow and hand each round to the store writer.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use differential_dataflow::input::InputSession;
use emporium_dataflows::decider::Decider;
use emporium_dataflows::inventory::Output;
use emporium_dataflows::products::{self, AvailableRow, Latest, ListingRow};
use emporium_dataflows::view::Installed;
use emporium_log::{EVENTS_TOPIC, EventLog};
use emporium_schemas::{Event, EventKinds, Payload};
use emporium_serving::store::Store;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::core::Filter as _;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Exchange as _, Input, Inspect, Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use uuid::Uuid;

use crate::config::{PipelineConfig, reader_of};
use crate::decisions::{Decided, append_decisions};
use crate::heartbeat::*;
use crate::metrics;
use crate::round::{RoundEnd, StoreWork, publish_state};
use crate::route::{Raw, Read, kind_at, route};
use crate::stats::{PipelineStats, record_since};
use crate::writer::{STOP_GRACE, StoreWriter};
use crate::{Claims, PipelineError};

/// What every worker of this process shares.
pub(crate) struct WorkerContext<'a> {
    pub(crate) log: &'a Arc<dyn EventLog>,
    pub(crate) store: &'a Option<Arc<dyn Store>>,
    pub(crate) runtime: &'a tokio::runtime::Handle,
    pub(crate) config: &'a PipelineConfig,
    pub(crate) stats: &'a Arc<PipelineStats>,
    pub(crate) stop: &'a Arc<AtomicBool>,
    pub(crate) logged: &'a Arc<HashSet<Uuid>>,
    /// The writer claims, on the process that decides (`None` on the others).
    pub(crate) claims: &'a Option<Claims>,
    /// Per partition, the first offset to decide on (a checkpoint's positions, or 0).
    pub(crate) start: &'a Arc<Vec<u64>>,
    /// The decider and the views' states resumed from a checkpoint, for worker 0 to take.
    pub(crate) resumed: &'a Arc<std::sync::Mutex<Option<Resumed>>>,
}

/// What worker 0 resumes from: the checkpoint's decider, and each view's input collection.
pub(crate) struct Resumed {
    pub(crate) decider: Decider,
    pub(crate) views: Vec<(String, Vec<u8>)>,
}

/// The start positions of worker 0 (the one that resumed from a checkpoint, or 0s), broadcast to
/// every worker of every process before any reads.
fn start_from_worker_0(
    worker: &mut timely::worker::Worker,
    start: &[u64],
) -> Result<Vec<u64>, PipelineError> {
    let mut input: InputHandle<u64, CapacityContainerBuilder<Vec<Vec<u64>>>> = InputHandle::new();
    let got: Rc<RefCell<Option<Vec<u64>>>> = Rc::default();
    let probe = {
        let got = Rc::clone(&got);
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .broadcast()
                .inspect(move |positions: &Vec<u64>| *got.borrow_mut() = Some(positions.clone()))
                .probe()
                .0
        })
    };
    if worker.index() == 0 {
        input.send(start.to_vec());
    }
    input.close();
    while !probe.done() {
        worker.step_or_park(Some(std::time::Duration::from_millis(10)));
    }
    got.borrow_mut().take().ok_or_else(|| {
        PipelineError::Timely("the start positions did not arrive from worker 0".into())
    })
}

pub(crate) fn worker_main(
    worker: &mut timely::worker::Worker,
    partitions: u32,
    shared: WorkerContext<'_>,
) -> Result<(), PipelineError> {
    let WorkerContext {
        log,
        store,
        runtime,
        config,
        stats,
        stop,
        logged,
        claims,
        start,
        resumed,
    } = shared;
    let index = worker.index();
    let peers = worker.peers();
    let writes_store = store.is_some();
    // Worker 0's start positions for every worker: in cluster mode only process 0 holds the
    // checkpoint, and a process ≥ 1 must resume its partitions where the checkpoint left them.
    let start = &Arc::new(start_from_worker_0(worker, start)?);
    // Worker 0's decider, shared with the dataflow's operator so it can be checkpointed.
    let resumed = match index {
        0 => resumed.lock().unwrap_or_else(|e| e.into_inner()).take(),
        _ => None,
    };
    let (resumed, resumed_views) = match resumed {
        Some(Resumed { decider, views }) => (Some(decider), views),
        None => (None, Vec::new()),
    };
    let decider = Rc::new(RefCell::new({
        let decider = resumed
            .unwrap_or_else(|| {
                Decider::new(
                    partitions as usize,
                    config.allowed_lateness,
                    config.inventory.clone(),
                )
            })
            .feeding(&config.views);
        match (writes_store, &config.checkpoint) {
            (true, Some(_)) => decider.tracking_changes().checkpointed(),
            (true, None) => decider.tracking_changes(),
            (false, _) => decider,
        }
    }));
    // The types sent whole to the decider, once: routing asks for every record.
    let steps = EventKinds::matching(|kind| decider.borrow().steps_on(kind));
    let counts = EventKinds::matching(|kind| decider.borrow().counts_on(kind));
    let sessions = EventKinds::matching(|kind| decider.borrow().counts_sessions_on(kind));
    let arrivals = Rc::new(RefCell::new({
        let mut arrivals = Arrivals::new(partitions)
            .with_grace(
                chrono::Utc::now().timestamp_millis(),
                config.heartbeat_grace,
            )
            .with_lateness(config.allowed_lateness);
        if index == 0 && config.idle_heartbeat.is_some() {
            runtime.block_on(seed(log.as_ref(), &mut arrivals))?;
        }
        arrivals
    }));
    let resumed_seq = decider.borrow().seq();
    if resumed_seq > 0 {
        // What the resumed state holds, before any new event arrives.
        publish_state(&decider.borrow(), stats);
    }
    let mut input: InputHandle<u64, CapacityContainerBuilder<Vec<Raw>>> = InputHandle::new();
    let probe = ProbeHandle::new();
    let decided: Rc<RefCell<Vec<Decided>>> = Rc::new(RefCell::new(Vec::new()));
    let store_work: Rc<RefCell<StoreWork>> = Rc::new(RefCell::new(StoreWork {
        positions: start.to_vec(),
        seq: resumed_seq,
        ..StoreWork::default()
    }));
    {
        let (decided_out, stats) = (Rc::clone(&decided), Arc::clone(stats));
        let work = Rc::clone(&store_work);
        let (decider, start) = (Rc::clone(&decider), Arc::clone(start));
        let arrivals = Rc::clone(&arrivals);
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .unary::<CapacityContainerBuilder<Vec<Decided>>, _, _, _>(
                    // Every record to worker 0: one decider sees the whole log.
                    Exchange::new(|_: &Raw| 0u64),
                    "InventoryDecider",
                    move |_capability, _info| {
                        let mut outputs = Vec::new();
                        // Append time of each undecided order_placed, for decision latency.
                        let mut placed_at: HashMap<String, i64> = HashMap::new();
                        move |input, _output| {
                            input.for_each(|_time, data| {
                                let mut work = work.borrow_mut();
                                let mut decider = decider.borrow_mut();
                                let mut arrivals = arrivals.borrow_mut();
                                for Raw {
                                    partition,
                                    offset,
                                    appended_ms,
                                    read,
                                } in data.drain(..)
                                {
                                    // Already in the resumed state (another process may read
                                    // from the start).
                                    if start.get(partition as usize).is_some_and(|s| offset < *s) {
                                        continue;
                                    }
                                    if let Some(next) = work.positions.get_mut(partition as usize) {
                                        *next = (*next).max(offset + 1);
                                        work.dirty = true;
                                    }
                                    let bytes = match read {
                                        Read::Event(bytes) => bytes,
                                        Read::Tick(secs, nanos) => {
                                            if let Some(at) =
                                                chrono::DateTime::from_timestamp(secs, nanos)
                                            {
                                                arrivals.observe(partition, appended_ms, at);
                                                decider.push_tick(partition as usize, at);
                                            }
                                            continue;
                                        }
                                        Read::Count(kind, secs, nanos, product, session) => {
                                            if let (Some(kind), Some(at)) = (
                                                kind_at(kind),
                                                chrono::DateTime::from_timestamp(secs, nanos),
                                            ) {
                                                arrivals.observe(partition, appended_ms, at);
                                                decider.push_count(
                                                    partition as usize,
                                                    kind,
                                                    at,
                                                    product,
                                                    session.map(|s| *s),
                                                );
                                            }
                                            continue;
                                        }
                                        Read::Position => continue,
                                    };
                                    match Event::decode(&bytes) {
                                        Ok(event) => {
                                            arrivals.observe(
                                                partition,
                                                appended_ms,
                                                event.occurred_at,
                                            );
                                            if let Payload::OrderPlaced(o) = &event.payload {
                                                // The first copy's append time: a duplicate must not move it.
                                                placed_at
                                                    .entry(o.order_id.clone())
                                                    .or_insert(appended_ms);
                                            }
                                            decider.push_appended(
                                                partition as usize,
                                                event,
                                                appended_ms,
                                            )
                                        }
                                        Err(_) => {
                                            stats.undecodable.fetch_add(1, Ordering::Relaxed);
                                        }
                                    }
                                }
                                decider.decide(&mut outputs);
                                if writes_store {
                                    work.changes.extend(decider.take_order_changes());
                                    work.changes.extend(decider.take_inventory_changes());
                                    work.products.extend(decider.take_product_inputs());
                                    work.view_events.extend(decider.take_view_events());
                                    work.view_counts.extend(decider.take_view_counts());
                                    work.seq = decider.seq();
                                    let applied = decider.take_applied_append_times();
                                    record_since(&stats.applied, &stats, &applied);
                                    work.applied_ms.extend(applied);
                                }
                                drop(work);
                                publish_state(&decider, &stats);
                                for a in decider.take_anomalies() {
                                    stats.anomalies.fetch_add(1, Ordering::Relaxed);
                                    metrics::anomaly(a.kind);
                                }
                                let decided = outputs.drain(..).map(|o| {
                                    // Reserve or reject ends an order's wait for a decision.
                                    let placed = match &o {
                                        Output::Decision { payload, .. }
                                            if matches!(
                                                payload,
                                                Payload::InventoryReserved(_)
                                                    | Payload::OrderRejected(_)
                                            ) =>
                                        {
                                            placed_at.remove(payload.partition_key())
                                        }
                                        _ => None,
                                    };
                                    (o, placed)
                                });
                                // Straight to worker 0's loop, not down the stream: so the
                                // decisions and the decider's state always agree between two
                                // operator runs, which is what a checkpoint takes.
                                decided_out.borrow_mut().extend(decided);
                            });
                        }
                    },
                )
                .probe_with(&probe);
        });
    }

    // The product documents: a differential dataflow over the availability and listings the
    // decider changes, at the seq of each change (`views`). Every worker builds it and maintains
    // its share of the products; worker 0 alone feeds it and receives each changed product's
    // skus, which its decider makes into documents for the store writer.
    let mut available_in: InputSession<u64, AvailableRow, isize> = InputSession::new();
    let mut listings_in: InputSession<u64, ListingRow, isize> = InputSession::new();
    let documents: Rc<RefCell<Latest>> = Rc::new(RefCell::new(Latest::after(resumed_seq)));
    let views_probe = ProbeHandle::new();
    {
        let documents = Rc::clone(&documents);
        worker.dataflow::<u64, _, _>(|scope| {
            products::documents(
                available_in.to_collection(scope),
                listings_in.to_collection(scope),
            )
            .inner
            // A changed product is its old value retracted and its new one inserted, at the
            // same time; documents are never deleted, so only the new values need to travel.
            .filter(|(_, _, diff)| *diff > 0)
            .exchange(|_| 0)
            .inspect(move |((product, skus), time, diff)| {
                documents
                    .borrow_mut()
                    .add(*product, skus.clone(), *time, *diff)
            })
            .probe_with(&views_probe);
        });
    }
    // The maintained views (`config.views`): built by every worker in the same order, fed by
    // worker 0 alone, like the products dataflow.
    let mut views: Vec<Box<dyn Installed>> = config
        .views
        .iter()
        .map(|spec| (spec.install)(worker))
        .collect();
    let mut views_in = if index == 0 && store.is_some() {
        if resumed_seq > 0 {
            // The views' input collections at the checkpoint's seq (resume checked the names).
            for view in &mut views {
                if let Some((_, state)) = resumed_views.iter().find(|(n, _)| n == view.name()) {
                    view.resume(state, resumed_seq)
                        .map_err(emporium_dataflows::decider::StateError::from)?;
                }
                view.advance_to(resumed_seq + 1);
            }
            // Load the resumed state's rows at its seq; the documents they give are in the
            // store already (the checkpoint was written after them).
            let rows = decider.borrow_mut().product_rows();
            for (row, seq, diff) in rows.available {
                available_in.update_at(row, seq, diff);
            }
            for (row, seq, diff) in rows.listings {
                listings_in.update_at(row, seq, diff);
            }
            available_in.advance_to(resumed_seq + 1);
            listings_in.advance_to(resumed_seq + 1);
            available_in.flush();
            listings_in.flush();
            let loaded = |views: &[Box<dyn Installed>]| {
                !views_probe.less_than(&(resumed_seq + 1))
                    && views.iter().all(|v| v.passed(resumed_seq + 1))
            };
            while !loaded(&views) && !stop.load(Ordering::Relaxed) {
                worker.step_or_park(Some(std::time::Duration::from_millis(10)));
            }
        }
        Some((available_in, listings_in))
    } else {
        // Closed: the dataflows' progress is worker 0's inputs alone.
        drop((available_in, listings_in));
        for view in &mut views {
            view.close();
        }
        None
    };

    let started_ms = chrono::Utc::now().timestamp_millis();
    let mut readers = Vec::new();
    for p in (0..partitions).filter(|p| reader_of(*p, peers) == index) {
        let reader = runtime
            .block_on(log.partition_reader(EVENTS_TOPIC, p, start[p as usize]))
            .map_err(PipelineError::reading("resume from worker 0's positions"))?;
        readers.push((p, reader));
    }
    // Worker 0 hands each round's documents to a writer thread and goes on deciding: a slow
    // store write delays freshness, not decisions.
    let writer = match store {
        Some(store) if index == 0 => Some(StoreWriter::start(
            Arc::clone(store),
            runtime.clone(),
            Arc::clone(stats),
            started_ms,
            config.checkpoint.as_ref().map(|c| c.dir.clone()),
            claims.as_ref().map_or(0, |c| c.store),
            config.search.clone(),
        )?),
        _ => None,
    };
    let claim = || {
        claims.as_ref().map(|c| &c.log).ok_or_else(|| {
            PipelineError::Timely("only the process that decides appends to the log".into())
        })
    };
    // Orders whose answer the log already held otherwise (ADR 0012): their later releases are
    // not appended either.
    let conflicted = RefCell::new(HashSet::new());
    let append = |outputs: Vec<Decided>| {
        let claim = claims.as_ref().map(|c| &c.log);
        append_decisions(
            log,
            claim,
            runtime,
            outputs,
            stats,
            logged,
            &conflicted,
            started_ms,
        )
    };
    let round_end = RoundEnd {
        decider: &decider,
        decided: &decided,
        append: &append,
        store_work: &store_work,
        views_probe: &views_probe,
        documents: &documents,
        config,
        stats,
        wants_full: writer.as_ref().map(|w| Arc::clone(&w.wants_full)),
    };
    let mut last_checkpoint = std::time::Instant::now();
    let mut changed_since_checkpoint = false;
    let mut complete = true;
    let publish_positions = |positions: &[(u32, u64)]| {
        let mut read = stats
            .read_positions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        read.resize(partitions as usize, 0);
        for &(p, next) in positions {
            read[p as usize] = next;
        }
        metrics::consumer_position(read.iter().sum());
    };
    let mut next_offsets: Vec<(u32, u64)> = readers
        .iter()
        .map(|(p, _)| (*p, start[*p as usize]))
        .collect();
    publish_positions(&next_offsets);
    let mut round = 0u64;
    let mut last_heartbeat_check = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut read = 0;
        let mut moved = false;
        for ((p, reader), (_, next)) in readers.iter_mut().zip(&mut next_offsets) {
            let records = runtime
                .block_on(reader.next_batch(config.read_batch))
                // Retention overtook the reader: never decide past a hole.
                .map_err(PipelineError::reading("read on"))?;
            read += records.len();
            let after_records = records.last().map_or(*next, |r| r.offset + 1);
            for r in records {
                input.send(Raw {
                    partition: *p,
                    offset: r.offset,
                    appended_ms: r.timestamp_ms,
                    read: route(&r.value, stats, steps, counts, sessions),
                });
            }
            // The reader's position: past its records and past the transaction markers after
            // them, which take offsets on Kafka (ADR 0012). Sent on as a position alone, so the
            // decider's positions (the store's, the heartbeats' "caught up") pass them too.
            let position = reader.position();
            if position > after_records {
                input.send(Raw {
                    partition: *p,
                    offset: position - 1,
                    appended_ms: 0,
                    read: Read::Position,
                });
            }
            if position != *next {
                moved = true;
                *next = position;
            }
        }
        stats.records_read.fetch_add(read as u64, Ordering::Relaxed);
        if moved {
            publish_positions(&next_offsets);
        }
        metrics::records_read(read as u64);
        round += 1;
        input.advance_to(round);
        // Park rather than spin while other workers block on the log; give up when stopping
        // (a failed or panicked peer would otherwise hold the probe back forever).
        while probe.less_than(input.time()) && !stop.load(Ordering::Relaxed) {
            worker.step_or_park(Some(std::time::Duration::from_millis(10)));
        }
        if writer.is_none() {
            append(std::mem::take(&mut *decided.borrow_mut()))?;
        }
        if let Some(writer) = &writer {
            // Something to checkpoint (the decider took records in since the last one), and time.
            let changed = changed_since_checkpoint || store_work.borrow().dirty;
            let due = changed
                && config
                    .checkpoint
                    .as_ref()
                    .is_some_and(|c| last_checkpoint.elapsed() >= c.interval);
            // A stop lets the round's documents complete (a clean stop then checkpoints), for a
            // while: if they do not, its positions must not be written without them (the next
            // start resumes from the last checkpoint instead).
            let stopping_since = std::cell::Cell::new(None);
            let give_up = || {
                if !stop.load(Ordering::Relaxed) {
                    return false;
                }
                let since = stopping_since.get().unwrap_or_else(std::time::Instant::now);
                stopping_since.set(Some(since));
                since.elapsed() > STOP_GRACE
            };
            let Some(work) = round_end.take(worker, &mut views_in, &mut views, due, give_up)?
            else {
                complete = false;
                break;
            };
            if work.checkpoint.is_some() {
                last_checkpoint = std::time::Instant::now();
                changed_since_checkpoint = false;
            } else {
                changed_since_checkpoint |= work.dirty;
            }
            writer.hand_off(work)?;
        }
        if index == 0
            && let Some(idle_after) = config.idle_heartbeat
            && last_heartbeat_check.elapsed() >= idle_after / 4
        {
            last_heartbeat_check = std::time::Instant::now();
            // Caught up as the decider sees it: worker 0 receives every partition's records,
            // those that other processes read included.
            let positions = store_work.borrow().positions.clone();
            send_heartbeats(
                log,
                claim()?,
                runtime,
                &decider.borrow(),
                &mut arrivals.borrow_mut(),
                idle_after,
                &positions,
                stats,
            )?;
        }
        if read == 0 {
            std::thread::sleep(config.idle_sleep);
        }
    }
    if let Some(writer) = writer {
        if complete {
            // A clean stop: what the decider took in while the last round was handed over, and
            // a checkpoint where it stopped, so the next start reads nothing twice. The other
            // workers keep stepping until every dataflow is done, so the documents complete
            // unless one of them failed (hence the time limit).
            let changed = changed_since_checkpoint || store_work.borrow().dirty;
            let limit = std::time::Instant::now() + STOP_GRACE;
            let checkpoint = changed && config.checkpoint.is_some();
            let give_up = || std::time::Instant::now() > limit;
            if let Some(work) =
                round_end.take(worker, &mut views_in, &mut views, checkpoint, give_up)?
            {
                writer.hand_off(work)?;
            }
        }
        writer.finish()?;
    }
    Ok(())
}
