//! Incremental checkpoints of the decider (issue 23, item 3; ADR 0008): a chain of one full
//! piece and deltas resumes to the decider it was taken from. A generated shop over seven weeks
//! (orders placed, paid, shipped, returned, cancelled and expired; closed orders forgotten after
//! two weeks; applied ids forgotten behind the hour's horizon) is fed in rounds; every few rounds
//! a checkpoint takes a piece (a full one every eighth), and at other points the run "crashes":
//! the decider is resumed from the last checkpoint's head and chain, and the events after that
//! checkpoint are pushed again, its outputs since then dropped (they were never handed over).
//! The decisions must be the batch reference's, and the folds at the end the same as an
//! uninterrupted run's.

use chrono::Duration;
use emporium_dataflows::decider::{Decider, StateError, TakenState, decide_all};
use emporium_dataflows::inventory::{InventoryConfig, Output};
use emporium_dataflows::orders::{Order, OrderStatus};
use emporium_generator::{Generator, GeneratorConfig};
use emporium_schemas::Event;

const PARTITIONS: usize = 4;
/// Events of each partition pushed in a round.
const ROUND: usize = 12;

fn generated(n: usize) -> Vec<Vec<Event>> {
    let mut generator = Generator::new(GeneratorConfig {
        products: 300,
        users: 5_000,
        events_per_day: 8_000.0,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let mut partitions: Vec<Vec<Event>> = vec![Vec::new(); PARTITIONS];
    for _ in 0..n {
        let e = generator.next_event();
        // By key, as the log partitions (any hash keeps an order's events together).
        let p = e
            .partition_key()
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
            % PARTITIONS;
        partitions[p].push(e);
    }
    partitions
}

/// What a decider holds, in an order that does not depend on hashing: every order kept, every
/// stock row, the counts.
#[derive(Debug, PartialEq)]
struct Folds {
    orders: Vec<Order>,
    counts: Vec<usize>,
    stock: Vec<((String, String), emporium_dataflows::inventory::Stock)>,
    inventory_orders: usize,
    open: usize,
    on_hand: i64,
    ids: usize,
    products: Vec<(String, Vec<String>, String)>,
    seq: u64,
    pending: usize,
}

fn folds(decider: &Decider) -> Folds {
    let mut orders: Vec<Order> = decider.orders().iter().cloned().collect();
    orders.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    let mut products: Vec<(String, Vec<String>, String)> = decider
        .catalog()
        .products()
        .map(|(id, l)| (id.to_owned(), l.skus.clone(), format!("{:?}", l.price)))
        .collect();
    products.sort();
    Folds {
        orders,
        counts: OrderStatus::ALL
            .iter()
            .map(|s| decider.orders().count(*s))
            .collect(),
        stock: decider
            .inventory()
            .all_stock()
            .map(|(k, s)| (k.clone(), *s))
            .collect(),
        inventory_orders: decider.inventory().orders_kept(),
        open: decider.inventory().open_reservations(),
        on_hand: decider.inventory().units_on_hand(),
        ids: decider.remembered_ids(),
        products,
        seq: decider.seq(),
        pending: decider.pending(),
    }
}

/// Pushes the next [`ROUND`] events of every partition and decides, taking the changes as the
/// pipeline does each round; `false` once every event was pushed.
fn round_decided(
    decider: &mut Decider,
    partitions: &[Vec<Event>],
    cursors: &mut [usize],
    out: &mut Vec<Output>,
) -> bool {
    if cursors.iter().zip(partitions).all(|(c, p)| *c >= p.len()) {
        return false;
    }
    for (p, events) in partitions.iter().enumerate() {
        let end = (cursors[p] + ROUND).min(events.len());
        for e in &events[cursors[p]..end] {
            decider.push(p, e.clone());
        }
        cursors[p] = end;
    }
    decider.decide(out);
    decider.take_order_changes();
    decider.take_inventory_changes();
    true
}

/// The outputs are the reference's: the first that differs, if any, is reported.
fn same_decisions(out: &[Output], expected: &[Output]) {
    if let Some(i) = (0..out.len().min(expected.len())).find(|i| out[*i] != expected[*i]) {
        panic!(
            "decision {i} differs from the reference's:\n  {:?}\n  {:?}",
            out[i], expected[i]
        );
    }
    assert_eq!(
        out.len(),
        expected.len(),
        "as many decisions as the reference"
    );
}

struct Chain {
    head: Vec<u8>,
    pieces: Vec<Vec<u8>>,
    /// Per partition, the next event to push after the checkpoint.
    cursors: [usize; PARTITIONS],
    /// Outputs handed over by then.
    outputs: usize,
}

#[test]
fn a_chain_of_deltas_resumes_to_the_decider_it_was_taken_from() {
    let partitions = generated(200_000);
    let lateness = Duration::milliseconds(500);
    let config = InventoryConfig::default();
    let (expected, _) = decide_all(&partitions, lateness, config.clone());
    let new = || {
        Decider::new(PARTITIONS, lateness, config.clone())
            .tracking_changes()
            .checkpointed()
    };

    // The uninterrupted run.
    let mut plain = new();
    let mut plain_out = Vec::new();
    let mut cursors = [0usize; PARTITIONS];
    while round_decided(&mut plain, &partitions, &mut cursors, &mut plain_out) {}
    plain.finish(&mut plain_out);
    same_decisions(&plain_out, &expected);

    // Checkpointed every 4 rounds (some 15 minutes of event time: a payment often falls in
    // another delta than its order), a full piece every 8th; a crash every 37 rounds.
    let mut decider = new();
    let mut out: Vec<Output> = Vec::new();
    let mut cursors = [0usize; PARTITIONS];
    let mut chain: Option<Chain> = None;
    let (mut fulls, mut deltas) = (Vec::new(), Vec::new());
    let (mut crashes, mut round, mut most_ids, mut fewer_ids) = (0, 0u64, 0, false);
    while round_decided(&mut decider, &partitions, &mut cursors, &mut out) {
        round += 1;
        let ids = decider.remembered_ids();
        fewer_ids |= ids < most_ids;
        most_ids = most_ids.max(ids);
        if round % 4 == 0 {
            let full = chain.as_ref().is_none_or(|c| c.pieces.len() >= 8);
            let TakenState { head, piece, full } = decider.take_state(full).expect("state");
            let taken = piece.clone();
            if full {
                fulls.push(piece.len());
                chain = Some(Chain {
                    head,
                    pieces: vec![piece],
                    cursors,
                    outputs: out.len(),
                });
            } else {
                deltas.push(piece.len());
                let c = chain.as_mut().expect("a chain starts with a full piece");
                c.head = head;
                c.pieces.push(piece);
                c.cursors = cursors;
                c.outputs = out.len();
            }
            // The chain taken so far holds exactly the decider (its remembered ids included).
            let c = chain.as_ref().expect("a chain");
            assert_eq!(c.pieces.last(), Some(&taken));
            // Every fifth checkpoint: a resume costs the whole state.
            if round % 20 == 0 {
                let again = Decider::resume_pieces(
                    &c.head,
                    &c.pieces,
                    PARTITIONS,
                    lateness,
                    config.clone(),
                )
                .expect("the chain resumes");
                assert!(
                    folds(&again) == folds(&decider),
                    "round {round}: the chain of {} pieces resumes to another decider",
                    c.pieces.len()
                );
            }
        }
        if round % 37 == 0
            && let Some(c) = &chain
        {
            crashes += 1;
            decider =
                Decider::resume_pieces(&c.head, &c.pieces, PARTITIONS, lateness, config.clone())
                    .expect("the chain resumes")
                    .tracking_changes()
                    .checkpointed();
            out.truncate(c.outputs);
            cursors = c.cursors;
        }
    }
    decider.finish(&mut out);
    same_decisions(&out, &expected);
    // The ids remembered differ: forgetting runs every so many steps, counted from the start
    // or the resume (it changes no decision); the chain's ids are checked at each checkpoint.
    let (resumed, uninterrupted) = (folds(&decider), folds(&plain));
    assert_eq!(
        Folds { ids: 0, ..resumed },
        Folds {
            ids: 0,
            ..uninterrupted
        },
        "the folds are the uninterrupted run's"
    );

    assert!(crashes >= 10, "{crashes} crashes");
    assert!(
        fewer_ids,
        "applied ids were forgotten (at most {most_ids} kept)"
    );
    let placed: usize = OrderStatus::ALL
        .iter()
        .map(|s| plain.orders().count(*s))
        .sum();
    assert!(
        plain.orders().len() + 1_000 < placed,
        "closed orders were forgotten: {} kept of {placed}",
        plain.orders().len()
    );
    let mean = |v: &[usize]| v.iter().sum::<usize>() / v.len().max(1);
    // A delta holds four rounds of changes, a full piece everything kept: two weeks of orders.
    assert!(
        deltas.len() > 5 * fulls.len() && mean(&deltas) * 3 < mean(&fulls),
        "pieces: {} full (mean {} B), {} deltas (mean {} B)",
        fulls.len(),
        mean(&fulls),
        deltas.len(),
        mean(&deltas)
    );
}

#[test]
fn a_broken_chain_is_refused_with_the_piece_at_fault() {
    let partitions = generated(5_000);
    let config = InventoryConfig::default();
    let mut decider = Decider::new(PARTITIONS, Duration::zero(), config.clone()).checkpointed();
    let mut out = Vec::new();
    let mut take = |decider: &mut Decider, events: &[Event], full: bool| {
        for e in events {
            decider.push(0, e.clone());
        }
        decider.decide(&mut out);
        decider.take_state(full).expect("state")
    };
    let first = take(&mut decider, &partitions[0][..1_000], true);
    let second = take(&mut decider, &partitions[0][1_000..], false);
    assert!(first.full && !second.full);
    let resume = |pieces: &[&Vec<u8>]| {
        Decider::resume_pieces(
            &second.head,
            pieces,
            PARTITIONS,
            Duration::zero(),
            config.clone(),
        )
        .map(|d| d.seq())
    };
    assert_eq!(
        resume(&[&first.piece, &second.piece]).expect("whole chain"),
        decider.seq()
    );
    let err = resume(&[&second.piece]).expect_err("a delta first");
    assert!(matches!(err, StateError::Chain { index: 0, .. }), "{err}");
    assert!(
        err.to_string().contains("starts with a full piece"),
        "{err}"
    );
    let err = resume(&[&first.piece, &first.piece]).expect_err("two full pieces");
    assert!(matches!(err, StateError::Chain { index: 1, .. }), "{err}");
    assert!(matches!(resume(&[]), Err(StateError::NoPieces)));
    // A decider that does not track changes takes full pieces only.
    let mut untracked = Decider::new(PARTITIONS, Duration::zero(), config);
    assert!(untracked.take_state(false).expect("state").full);
}
