//! Incremental checkpoints of the folds (ADR 0008, issue 23): which keys changed since the last
//! checkpoint piece.
//!
//! A checkpoint of the decider is a chain of pieces: one *full* piece (every entry of the folds'
//! maps) and then *deltas*, each holding, for every key changed since the piece before it, its
//! value now (`None`: the key is gone). Resuming applies the pieces in order and rebuilds the
//! folds' indexes (closed orders by time, expiries, counts) from the entries, so those indexes
//! are never written. A delta costs what changed since the previous checkpoint, not the state:
//! taking one holds the decider in proportion to the traffic between two checkpoints.
//!
//! Each fold marks a key in its [`Dirty`] set wherever it changes that key's entry; marking is
//! off unless the decider is checkpointed ([`crate::decider::Decider::checkpointed`]), so a
//! decider that never takes a delta keeps no set.

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;

/// Keys changed since the last piece was taken.
#[derive(Debug, Clone)]
pub(crate) struct Dirty<K> {
    tracking: bool,
    keys: HashSet<K>,
}

impl<K> Default for Dirty<K> {
    fn default() -> Self {
        Self {
            tracking: false,
            keys: HashSet::new(),
        }
    }
}

impl<K: Eq + Hash> Dirty<K> {
    /// Starts marking (a checkpointed decider).
    pub(crate) fn track(&mut self) {
        self.tracking = true;
    }

    /// Notes that `key`'s entry changed (or went).
    pub(crate) fn mark<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.tracking && !self.keys.contains(key) {
            self.keys.insert(key.to_owned());
        }
    }

    /// The keys marked since the last call (or [`Dirty::clear`]).
    pub(crate) fn take(&mut self) -> HashSet<K> {
        std::mem::take(&mut self.keys)
    }

    /// Forgets the marks: a full piece holds every key.
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
    }
}

/// A delta's entries: each key marked, with its value now (`None`: gone).
pub(crate) fn changed<'a, K, V>(
    keys: HashSet<K::Owned>,
    get: impl Fn(&K) -> Option<&'a V>,
) -> Vec<(Cow<'a, K>, Option<&'a V>)>
where
    K: ToOwned + ?Sized + 'a,
{
    keys.into_iter()
        .map(|key| {
            let value = get(key.borrow());
            (Cow::Owned(key), value)
        })
        .collect()
}

/// A fold's map, as a piece's entries change it.
pub(crate) trait Entries<K, V> {
    /// Sets `key` to `value`, or removes it (`None`).
    fn set(&mut self, key: K, value: Option<V>);
}

impl<K: Eq + Hash, V> Entries<K, V> for HashMap<K, V> {
    fn set(&mut self, key: K, value: Option<V>) {
        match value {
            Some(value) => self.insert(key, value),
            None => self.remove(&key),
        };
    }
}

impl<K: Ord, V> Entries<K, V> for BTreeMap<K, V> {
    fn set(&mut self, key: K, value: Option<V>) {
        match value {
            Some(value) => self.insert(key, value),
            None => self.remove(&key),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_kept_only_when_tracking_and_once_per_key() {
        let mut dirty: Dirty<String> = Dirty::default();
        dirty.mark("a");
        assert!(dirty.take().is_empty(), "not tracking: nothing kept");
        dirty.track();
        dirty.mark("a");
        dirty.mark("b");
        dirty.mark("a");
        let mut keys: Vec<String> = dirty.take().into_iter().collect();
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
        assert!(dirty.take().is_empty(), "taken");
        dirty.mark("c");
        dirty.clear();
        assert!(dirty.take().is_empty(), "cleared");
    }
}
