//! Which products are in stock, beside the index (ADR 0013): a bit per product, by a dense
//! ordinal that the product's indexed document carries as a fast field. A stock change flips a
//! bit, visible to the next query; the text index is not touched. Queries read the bits without
//! a lock (atomics), through an `Arc` of the table taken when they start; the table grows, under
//! a write lock, when a product gets an ordinal past its end.
//!
//! The bits are not persisted: whoever feeds the index sets them again at start, from the
//! store's documents. Until then a product counts as out of stock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

/// The live in-stock table and the product ordinals.
#[derive(Debug, Default)]
pub struct Availability {
    ordinals: RwLock<Ordinals>,
    bits: RwLock<Arc<Vec<AtomicU64>>>,
}

/// Each product's ordinal, and the next one to give: past every ordinal given or restored (a
/// product removed from the index leaves a gap when the ordinals are read back, so the next is
/// not the count).
#[derive(Debug, Default)]
struct Ordinals {
    of: HashMap<String, u64>,
    next: u64,
}

/// The bits as one query reads them.
#[derive(Debug, Clone)]
pub struct InStock(Arc<Vec<AtomicU64>>);

impl InStock {
    pub fn contains(&self, ordinal: u64) -> bool {
        self.0
            .get((ordinal / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (ordinal % 64)) != 0)
    }
}

impl Availability {
    /// The product's ordinal, given it if it has none yet.
    pub fn ordinal(&self, product_id: &str) -> u64 {
        if let Some(ordinal) = self.ordinals.read().of.get(product_id) {
            return *ordinal;
        }
        let mut ordinals = self.ordinals.write();
        if let Some(ordinal) = ordinals.of.get(product_id) {
            return *ordinal;
        }
        let ordinal = ordinals.next;
        ordinals.next += 1;
        ordinals.of.insert(product_id.to_owned(), ordinal);
        ordinal
    }

    /// The product's ordinal, if it has one.
    pub fn known(&self, product_id: &str) -> Option<u64> {
        self.ordinals.read().of.get(product_id).copied()
    }

    /// Records an ordinal read back from the index (at open).
    pub(crate) fn restore(&self, product_id: String, ordinal: u64) {
        let mut ordinals = self.ordinals.write();
        ordinals.next = ordinals.next.max(ordinal + 1);
        ordinals.of.insert(product_id, ordinal);
    }

    /// How many products have an ordinal.
    pub fn products(&self) -> usize {
        self.ordinals.read().of.len()
    }

    /// Marks the product in stock or not; visible to the next query.
    pub fn set(&self, product_id: &str, in_stock: bool) {
        let ordinal = self.ordinal(product_id);
        let (word, bit) = ((ordinal / 64) as usize, 1u64 << (ordinal % 64));
        {
            let bits = self.bits.read();
            if let Some(w) = bits.get(word) {
                if in_stock {
                    w.fetch_or(bit, Ordering::Relaxed);
                } else {
                    w.fetch_and(!bit, Ordering::Relaxed);
                }
                return;
            }
        }
        if !in_stock {
            // Past the end: already out of stock.
            return;
        }
        let mut bits = self.bits.write();
        if bits.len() <= word {
            // Twice the words needed, so growth is rare; the old words copied over.
            let grown: Vec<AtomicU64> = (0..(word + 1) * 2)
                .map(|i| AtomicU64::new(bits.get(i).map_or(0, |w| w.load(Ordering::Relaxed))))
                .collect();
            *bits = Arc::new(grown);
        }
        bits[word].fetch_or(bit, Ordering::Relaxed);
    }

    /// Whether the product is in stock now.
    pub fn in_stock(&self, product_id: &str) -> bool {
        self.known(product_id)
            .is_some_and(|ordinal| self.snapshot().contains(ordinal))
    }

    /// The bits for one query.
    pub fn snapshot(&self) -> InStock {
        InStock(Arc::clone(&self.bits.read()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_flip_grow_and_are_seen_by_a_snapshot_taken_before() {
        let table = Availability::default();
        assert!(!table.in_stock("p-1"), "unknown: out of stock");
        table.set("p-1", true);
        let before = table.snapshot();
        assert!(table.in_stock("p-1"));
        for i in 0..1_000 {
            table.set(&format!("q-{i}"), i % 3 == 0);
        }
        assert_eq!(table.products(), 1_001);
        assert!(table.in_stock("q-999") && !table.in_stock("q-998"));
        table.set("p-1", false);
        assert!(!table.in_stock("p-1"));
        // A snapshot taken before the table grew still reads its own words.
        assert!(before.contains(table.ordinal("p-1")));
        assert_eq!(table.ordinal("p-1"), 0, "ordinals are stable");
    }

    #[test]
    fn a_new_product_never_takes_a_restored_ordinal() {
        // Read back from an index whose product with ordinal 1 was removed: a gap.
        let table = Availability::default();
        table.restore("p-0".into(), 0);
        table.restore("p-2".into(), 2);
        let new = table.ordinal("p-new");
        assert!(new > 2, "got {new}");
        table.set("p-2", true);
        table.set("p-new", false);
        assert!(table.in_stock("p-2") && !table.in_stock("p-new"));
    }
}
