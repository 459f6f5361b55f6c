//! The latest value of each key among a differential collection's output changes, as a sink
//! takes them after a round: per key, the value inserted at the highest time, or `None` when the
//! key was only retracted then. Changes may come in any order.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug)]
pub struct Latest<K, V> {
    keys: HashMap<K, (u64, Option<V>)>,
    /// Changes at or before this time are ignored (see [`Latest::after`]); 0: none.
    floor: u64,
}

impl<K, V> Default for Latest<K, V> {
    fn default() -> Self {
        Self {
            keys: HashMap::new(),
            floor: 0,
        }
    }
}

impl<K: Hash + Eq, V> Latest<K, V> {
    /// Keeps only changes after `seq`: a dataflow loaded with a checkpoint's rows at its `seq`
    /// outputs then what the store has already, which must not be rewritten with that `seq`
    /// (it is not the seq of their last change).
    pub fn after(seq: u64) -> Self {
        Self {
            floor: seq,
            ..Self::default()
        }
    }

    /// Takes one output change: `value` at `time`, inserted (`diff` > 0) or retracted.
    pub fn add(&mut self, key: K, value: V, time: u64, diff: isize) {
        if time <= self.floor && self.floor > 0 {
            return;
        }
        let inserted = diff > 0;
        match self.keys.get_mut(&key) {
            Some((at, _)) if *at > time => {}
            // At one time a value is retracted (the old) and inserted (the new), in any order.
            Some((at, latest)) if *at == time => {
                if inserted {
                    *latest = Some(value);
                }
            }
            _ => {
                self.keys.insert(key, (time, inserted.then_some(value)));
            }
        }
    }

    /// Each key's latest value with its time (`None`: retracted), and empties the set.
    pub fn take(&mut self) -> Vec<(K, u64, Option<V>)> {
        self.keys
            .drain()
            .map(|(key, (time, value))| (key, time, value))
            .collect()
    }

    /// The keys with a value now, with their values (for a test's final collection).
    pub fn values(&self) -> impl Iterator<Item = (&K, &V)> {
        self.keys
            .iter()
            .filter_map(|(k, (_, v))| Some((k, v.as_ref()?)))
    }
}
