//! The decider's state for checkpoints: taken (whole, or as a delta over the previous piece:
//! [`crate::piece`]), resumed, and the products dataflow's rows it implies (ADR 0008).

use super::*;
use crate::catalog::{CatalogPiece, CatalogPieceRef};
use crate::inventory::{InventoryPiece, InventoryPieceRef};
use crate::orders::{OrdersPiece, OrdersPieceRef};

/// The head of the state: the small part, written whole at every checkpoint.
#[derive(Serialize)]
struct HeadRef {
    newest: Vec<Option<DateTime<Utc>>>,
    keys: Vec<Vec<(String, KeyClock)>>,
    pending: Vec<(DateTime<Utc>, u64, i64, Vec<u8>)>,
    seq: u64,
    counts: Vec<(i64, Vec<CountRow>)>,
}

/// A counted event's sum as a checkpoint keeps it: its type by name, product, hour, count and
/// session (user and session ids), if a sum per session.
type CountRow = (String, String, i64, u32, Option<(String, String)>);

/// What a checkpoint keeps of a [`Decider`] besides its pieces: its clocks, the events it
/// buffers, the spans of counted events not applied yet and its `seq`, without its settings and without what it hands out between rounds
/// (taken before a checkpoint).
#[derive(Deserialize)]
struct Head {
    /// Per partition, the newest event time seen.
    newest: Vec<Option<DateTime<Utc>>>,
    /// Per partition, the keys' clocks that can still change a stamp, in key order.
    keys: Vec<Vec<(String, KeyClock)>>,
    /// Events buffered above the watermark: decision time, rank among its key's events, append
    /// time (ms), the event as JSON (its own format: payloads are tagged by `type`, which
    /// bincode cannot carry).
    pending: Vec<(DateTime<Utc>, u64, i64, Vec<u8>)>,
    seq: u64,
    /// Counted events not applied yet, per span of decision time (its end, ms), sorted.
    counts: Vec<(i64, Vec<CountRow>)>,
}

/// [`Piece`] as written, borrowed from the folds.
#[derive(Serialize)]
struct PieceRef<'a> {
    full: bool,
    applied: Vec<(u128, i64)>,
    forgot_below: Option<i64>,
    inventory: InventoryPieceRef<'a>,
    orders: OrdersPieceRef<'a>,
    catalog: CatalogPieceRef<'a>,
}

/// The large part of the state ([`crate::piece`]): every entry of the folds' maps (`full`), or
/// the entries changed since the previous piece.
#[derive(Deserialize)]
struct Piece {
    full: bool,
    /// Applied ids within the duplicate horizon, with the decision time (µs) of their step: all
    /// of them, or those applied since the previous piece.
    applied: Vec<(u128, i64)>,
    /// In a delta: ids applied before this time were forgotten since the previous piece.
    forgot_below: Option<i64>,
    inventory: InventoryPiece,
    orders: OrdersPiece,
    catalog: CatalogPiece,
}

/// The state a checkpoint takes: the head, written whole each time, and a piece, full or a
/// delta over the previous piece. Resume with [`Decider::resume_pieces`] from the head and the
/// chain of pieces since the last full one, in order.
#[derive(Debug, Clone)]
pub struct TakenState {
    pub head: Vec<u8>,
    pub piece: Vec<u8>,
    pub full: bool,
}

/// A decider state that could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("decider state: {0}")]
    Encoding(#[from] bincode::Error),
    #[error("decider state: a buffered event does not decode: {0}")]
    Event(String),
    #[error("decider state: taken with {found} partitions, the log has {expected}")]
    Partitions { found: usize, expected: usize },
    #[error("decider state: piece {index} of {count} {problem}")]
    Chain {
        index: usize,
        count: usize,
        problem: &'static str,
    },
    #[error("decider state: no pieces (expected a full piece, then the deltas after it)")]
    NoPieces,
    #[error("decider state: a count of an unknown event type {0:?}")]
    CountKind(String),
}

impl Decider {
    /// Marks what changes from now on, so that [`Decider::take_state`] can take deltas: the
    /// pipeline's checkpointed decider. Without it every piece is taken full.
    pub fn checkpointed(mut self) -> Self {
        self.tracking_pieces = true;
        self.inventory.track_pieces();
        self.orders.track_pieces();
        self.catalog.track_pieces();
        self
    }

    fn head(&self) -> Result<Vec<u8>, StateError> {
        let head = HeadRef {
            newest: self.clocks.iter().map(PartitionClock::newest).collect(),
            keys: self.clocks.iter().map(PartitionClock::keys).collect(),
            pending: self
                .pending
                .iter()
                .map(|Reverse(p)| (p.at, p.rank, p.appended_ms, p.event.to_json()))
                .collect(),
            seq: self.seq,
            counts: self
                .counts
                .iter()
                .map(|(end, sums)| {
                    let mut rows: Vec<CountRow> = sums
                        .iter()
                        .map(|((kind, product, hour, session), n)| {
                            let session = session.as_ref().map(|s| (s.user.clone(), s.id.clone()));
                            (
                                kind.as_str().to_owned(),
                                product.clone(),
                                *hour,
                                *n,
                                session,
                            )
                        })
                        .collect();
                    rows.sort_unstable();
                    (*end, rows)
                })
                .collect(),
        };
        Ok(bincode::serialize(&head)?)
    }

    fn full_piece(&self) -> Result<Vec<u8>, StateError> {
        let piece = PieceRef {
            full: true,
            applied: self.applied.iter().map(|(id, at)| (*id, *at)).collect(),
            forgot_below: None,
            inventory: self.inventory.full_piece(),
            orders: self.orders.full_piece(),
            catalog: self.catalog.full_piece(),
        };
        Ok(bincode::serialize(&piece)?)
    }

    /// The state for a checkpoint: the head and a piece, full when `full` (or when this decider
    /// is not [`Decider::checkpointed`]), else what changed since the last piece taken. Either
    /// way the next delta starts from here. Take the changes first: what was not taken is not in
    /// the state.
    pub fn take_state(&mut self, full: bool) -> Result<TakenState, StateError> {
        let head = self.head()?;
        let full = full || !self.tracking_pieces;
        let piece = if full {
            self.applied_since_piece.clear();
            self.forgot_since_piece = None;
            self.inventory.clear_dirty();
            self.orders.clear_dirty();
            self.catalog.clear_dirty();
            self.full_piece()?
        } else {
            let mut ids = std::mem::take(&mut self.applied_since_piece);
            ids.sort_unstable();
            ids.dedup();
            let applied = &self.applied;
            let piece = PieceRef {
                full: false,
                applied: ids
                    .into_iter()
                    .filter_map(|id| applied.get(&id).map(|at| (id, *at)))
                    .collect(),
                forgot_below: self.forgot_since_piece.take(),
                inventory: self.inventory.delta_piece(),
                orders: self.orders.delta_piece(),
                catalog: self.catalog.delta_piece(),
            };
            bincode::serialize(&piece)?
        };
        Ok(TakenState { head, piece, full })
    }

    /// The whole state in one blob (the head and a full piece), for tests and benchmarks; it
    /// changes nothing.
    pub fn state(&self) -> Result<Vec<u8>, StateError> {
        Ok(bincode::serialize(&(self.head()?, self.full_piece()?))?)
    }

    /// A decider resumed from [`Decider::state`]'s blob.
    pub fn resume(
        bytes: &[u8],
        partitions: usize,
        allowed_lateness: Duration,
        config: InventoryConfig,
    ) -> Result<Self, StateError> {
        let (head, piece): (Vec<u8>, Vec<u8>) = bincode::deserialize(bytes)?;
        Self::resume_pieces(&head, &[piece], partitions, allowed_lateness, config)
    }

    /// A decider resumed from a head and the pieces since the last full one, in the order they
    /// were taken, with the same settings it was taken with (checked by the caller: other
    /// settings would give other decisions). Not [`Decider::checkpointed`] yet.
    pub fn resume_pieces(
        head: &[u8],
        pieces: &[impl AsRef<[u8]>],
        partitions: usize,
        allowed_lateness: Duration,
        config: InventoryConfig,
    ) -> Result<Self, StateError> {
        let head: Head = bincode::deserialize(head)?;
        if head.newest.len() != partitions.max(1) {
            return Err(StateError::Partitions {
                found: head.newest.len(),
                expected: partitions.max(1),
            });
        }
        if head.keys.len() != head.newest.len() {
            return Err(StateError::Partitions {
                found: head.keys.len(),
                expected: head.newest.len(),
            });
        }
        if pieces.is_empty() {
            return Err(StateError::NoPieces);
        }
        let mut pending = BinaryHeap::with_capacity(head.pending.len());
        for (at, rank, appended_ms, json) in head.pending {
            let event = Event::decode(&json).map_err(|e| StateError::Event(e.to_string()))?;
            pending.push(Reverse(Buffered {
                at,
                rank,
                id: event.event_id.as_u128(),
                event: Box::new(event),
                appended_ms,
            }));
        }
        let mut decider = Self::new(partitions, allowed_lateness, config.clone());
        decider.clocks = head
            .newest
            .into_iter()
            .zip(head.keys)
            .map(|(newest, keys)| PartitionClock::resumed(allowed_lateness, newest, keys))
            .collect();
        decider.pending = pending;
        decider.seq = head.seq;
        for (end, rows) in head.counts {
            let mut sums = HashMap::with_capacity(rows.len());
            for (kind, product, hour, n, session) in rows {
                let kind = EventKind::from_name(&kind).ok_or(StateError::CountKind(kind))?;
                let session = session.map(|(user, id)| crate::view::Session { user, id });
                sums.insert((kind, product, hour, session), n);
            }
            decider.counts.insert(end, sums);
        }
        // The first step forgets what is behind the horizon (the count since the last pass was
        // not kept): a decider restarted often still forgets.
        decider.since_forgetting = FORGET_EVERY;
        let count = pieces.len();
        for (index, bytes) in pieces.iter().enumerate() {
            let piece: Piece = bincode::deserialize(bytes.as_ref())?;
            match (index, piece.full) {
                (0, false) => {
                    return Err(StateError::Chain {
                        index,
                        count,
                        problem: "is a delta: a chain starts with a full piece",
                    });
                }
                (1.., true) => {
                    return Err(StateError::Chain {
                        index,
                        count,
                        problem: "is full: only the first piece of a chain is",
                    });
                }
                _ => {}
            }
            if let Some(bound) = piece.forgot_below {
                decider.applied.retain(|_, at| *at >= bound);
            }
            decider.applied.extend(piece.applied);
            decider.inventory.apply_piece(piece.inventory);
            decider.orders.apply_piece(piece.orders);
            decider.catalog.apply_piece(piece.catalog);
        }
        decider.inventory.reindex();
        decider.orders.reindex();
        Ok(decider)
    }

    /// Every row of the document dataflow's inputs now, at the current `seq`: what a dataflow
    /// started from a checkpoint is loaded with.
    pub fn product_rows(&mut self) -> ProductInputs {
        let seq = self.seq;
        let mut rows = ProductInputs::default();
        // The stock is in (sku, warehouse) order: a sku's rows are adjacent.
        let mut per_sku: Vec<(&str, i64)> = Vec::new();
        for ((sku, _), stock) in self.inventory.all_stock() {
            let n = stock.available().max(0);
            match per_sku.last_mut() {
                Some((last, total)) if *last == sku.as_str() => *total += n,
                _ => per_sku.push((sku, n)),
            }
        }
        for (sku, n) in per_sku.into_iter().filter(|(_, n)| *n != 0) {
            rows.available.push(((self.sku_names.id(sku), n), seq, 1));
        }
        for (product_id, listing) in self.catalog.products() {
            let id = self.product_names.id(product_id);
            let key = listing_key(&mut self.sku_names, listing);
            rows.listings.push(((id, key), seq, 1));
        }
        rows
    }
}
