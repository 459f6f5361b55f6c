//! Idempotent ingest: an `event_id` is appended at most once within a window of recent ids.
//!
//! An id is *claimed* before its append and *settled* after: kept if the append was durable,
//! released if it failed (so the producer's resend goes through). A request that meets an id
//! another request is still appending waits for that append's outcome rather than answering
//! "duplicate" for an event that might yet be lost. The window is rebuilt at start from the tail
//! of the log. See `specs/adr/0004-ingest-durability-and-idempotency.md`.

use std::collections::{HashMap, HashSet, VecDeque};

use parking_lot::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

/// What a claim found for one id.
pub enum Claim {
    /// Not seen: this caller now owns the id and must settle it.
    New,
    /// Already durable in the log.
    Duplicate,
    /// Another request is appending it; wait on the receiver, then claim again.
    InFlight(watch::Receiver<bool>),
}

pub struct Dedup {
    inner: Mutex<Inner>,
}

struct Inner {
    capacity: usize,
    durable: HashSet<u128>,
    order: VecDeque<u128>,
    in_flight: HashMap<u128, watch::Receiver<bool>>,
}

/// The ids one request claimed; settle it once the append finished.
pub struct ClaimTicket {
    ids: Vec<u128>,
    done: watch::Sender<bool>,
}

impl Dedup {
    /// A window that remembers up to `capacity` durable ids (oldest forgotten first).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                capacity: capacity.max(1),
                durable: HashSet::with_capacity(capacity.min(1 << 20)),
                order: VecDeque::with_capacity(capacity.min(1 << 20)),
                in_flight: HashMap::new(),
            }),
        }
    }

    /// Claims every id of a batch at once. Ids repeated inside the batch: the first occurrence is
    /// `New`, the rest `Duplicate`.
    pub fn claim(&self, ids: &[Uuid]) -> (Vec<Claim>, ClaimTicket) {
        let (done, rx) = watch::channel(false);
        let mut claimed = Vec::new();
        let mut inner = self.inner.lock();
        let claims = ids
            .iter()
            .map(|id| {
                let id = id.as_u128();
                if inner.durable.contains(&id) {
                    Claim::Duplicate
                } else if let Some(other) = inner
                    .in_flight
                    .get(&id)
                    // A claim whose owner vanished without settling (its sender is gone) is free.
                    .filter(|other| other.has_changed().is_ok())
                {
                    if other.same_channel(&rx) {
                        Claim::Duplicate // repeated inside this batch
                    } else {
                        Claim::InFlight(other.clone())
                    }
                } else {
                    inner.in_flight.insert(id, rx.clone());
                    claimed.push(id);
                    Claim::New
                }
            })
            .collect();
        (claims, ClaimTicket { ids: claimed, done })
    }

    /// Records the outcome of a claimed batch: durable ids are remembered, failed ones released.
    pub fn settle(&self, ticket: ClaimTicket, durable: bool) {
        self.settle_each(ticket, |_| durable);
    }

    /// Like [`Dedup::settle`], with the outcome given per id (a partly appended batch).
    pub fn settle_each(&self, ticket: ClaimTicket, durable: impl Fn(Uuid) -> bool) {
        {
            let mut inner = self.inner.lock();
            for id in &ticket.ids {
                inner.in_flight.remove(id);
                if durable(Uuid::from_u128(*id)) {
                    inner.remember(*id);
                }
            }
        }
        // Waiters re-claim; a closed channel wakes them too.
        let _ = ticket.done.send(true);
    }

    /// Remembers an id already in the log (rebuilding the window at start).
    pub fn remember(&self, id: Uuid) {
        self.inner.lock().remember(id.as_u128());
    }

    pub fn len(&self) -> usize {
        self.inner.lock().durable.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn remember(&mut self, id: u128) {
        if self.durable.insert(id) {
            self.order.push_back(id);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.durable.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Uuid {
        Uuid::from_u64_pair(1, n)
    }

    #[test]
    fn durable_ids_are_duplicates_and_failed_ones_are_released() {
        let d = Dedup::new(100);
        let (claims, ticket) = d.claim(&[id(1), id(2), id(1)]);
        assert!(matches!(claims[0], Claim::New));
        assert!(matches!(claims[1], Claim::New));
        assert!(
            matches!(claims[2], Claim::Duplicate),
            "repeat inside one batch"
        );
        d.settle(ticket, true);
        let (claims, ticket) = d.claim(&[id(1), id(3)]);
        assert!(matches!(claims[0], Claim::Duplicate));
        assert!(matches!(claims[1], Claim::New));
        d.settle(ticket, false);
        let (claims, _ticket) = d.claim(&[id(3)]);
        assert!(
            matches!(claims[0], Claim::New),
            "a failed append releases its ids"
        );
    }

    #[test]
    fn a_partly_appended_batch_keeps_only_what_landed() {
        let d = Dedup::new(100);
        let (_, ticket) = d.claim(&[id(1), id(2), id(3)]);
        d.settle_each(ticket, |u| u != id(2));
        let (claims, _) = d.claim(&[id(1), id(2), id(3)]);
        let new: Vec<bool> = claims.iter().map(|c| matches!(c, Claim::New)).collect();
        assert_eq!(
            new,
            vec![false, true, false],
            "only the id that did not land is resent"
        );
    }

    #[test]
    fn a_claim_whose_owner_vanished_is_free_again() {
        let d = Dedup::new(100);
        let (_, ticket) = d.claim(&[id(1)]);
        drop(ticket); // the owner went away without settling (a cancelled request)
        let (claims, _) = d.claim(&[id(1)]);
        assert!(
            matches!(claims[0], Claim::New),
            "no one waits on a claim nobody will settle"
        );
    }

    #[test]
    fn in_flight_ids_make_others_wait() {
        let d = Dedup::new(100);
        let (_, ticket) = d.claim(&[id(1)]);
        let (claims, _) = d.claim(&[id(1)]);
        let Claim::InFlight(mut rx) = claims.into_iter().next().expect("one claim") else {
            panic!("expected InFlight");
        };
        d.settle(ticket, true);
        assert!(rx.has_changed().unwrap_or(true));
        assert!(*rx.borrow_and_update());
    }

    #[test]
    fn the_window_forgets_the_oldest() {
        let d = Dedup::new(2);
        for n in 1..=3 {
            d.remember(id(n));
        }
        assert_eq!(d.len(), 2);
        let (claims, _) = d.claim(&[id(1), id(3)]);
        assert!(matches!(claims[0], Claim::New));
        assert!(matches!(claims[1], Claim::Duplicate));
    }
}
