//! Dense integer ids for the names a view's rows carry (products, skus, users, orders), so its
//! dataflow sorts, joins and clones `u32`s instead of strings (ADR 0015: allocation and string
//! comparison were most of the recommendation views' time).
//!
//! A view's [`crate::view::View::rows`] asks its [`Ids`] for the id of each name; the pipeline
//! feeds rows on worker 0 only and in `seq` order, so the same log gives the same ids in every
//! run. [`crate::view::View::document`] turns ids back into names. The table is part of the view's
//! checkpoint, beside its rows. An id is never reused: a name once seen keeps its id.
//!
//! Ids follow first appearance, not the names' order: a view that breaks ties by id breaks them
//! by which name the log named first (for products: which was listed first).

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

/// The names a view has seen, each with its id: its index in the order they were first seen.
/// Serialized as the list of names.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(from = "Vec<String>")]
pub struct Ids {
    names: Vec<Arc<str>>,
    by_name: HashMap<Arc<str>, u32>,
}

impl Ids {
    /// The id of `name`, given now if it has none.
    ///
    /// # Panics
    /// Past `u32::MAX` names (a view that names that many things must key by something else).
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.by_name.get(name) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 names in one view");
        let name: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&name));
        self.by_name.insert(name, id);
        id
    }

    /// The id of `name` if it has one.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// The name of `id`; empty for an id this table never gave (a programming error).
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |n| n)
    }

    /// How many names it holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl Serialize for Ids {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names.iter().map(|n| &**n))
    }
}

impl From<Vec<String>> for Ids {
    fn from(names: Vec<String>) -> Self {
        let mut ids = Self::default();
        for name in names {
            ids.id(&name);
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_first_appearance_and_survive_a_round_trip() {
        let mut ids = Ids::default();
        assert_eq!(ids.id("p-2"), 0);
        assert_eq!(ids.id("p-1"), 1);
        assert_eq!(ids.id("p-2"), 0);
        assert_eq!(ids.name(1), "p-1");
        let bytes = bincode::serialize(&ids).expect("serialize");
        let mut back: Ids = bincode::deserialize(&bytes).expect("deserialize");
        assert_eq!(back.get("p-1"), Some(1));
        assert_eq!(back.id("p-3"), 2);
        assert_eq!(back.len(), 3);
    }
}
