//! The values of a product that change often — price, mean rating, reviews, popularity — kept
//! live beside the index, by the product's ordinal, as availability is ([`crate::availability`];
//! ADR 0013). An order changes a product's popularity, a review its rating, a price change its
//! price: each is visible to the next query, and none re-indexes the product's text. Queries
//! filter, sort and count facets by these values, never by the indexed document's copies.
//!
//! Beside the values, each row holds a fingerprint of the text the index holds for the product
//! (title, brand, category path, description, currency, when listed): an upsert whose text is
//! the indexed one only sets the values ([`crate::SearchIndex::upsert`]). The fingerprint is also
//! a fast field of the indexed document, read back at open.
//!
//! Not persisted either: at open they are the indexed documents' (as of their last re-index), and
//! whoever feeds the index sets them from the store's documents at start.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::document::SearchDocument;

/// A product's live values.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LiveValues {
    pub price_minor: i64,
    pub mean_rating: f64,
    pub reviews: u64,
    pub popularity: f64,
}

impl LiveValues {
    pub fn of(doc: &SearchDocument) -> Self {
        Self {
            price_minor: doc.price_minor,
            mean_rating: doc.mean_rating,
            reviews: doc.reviews,
            popularity: doc.popularity,
        }
    }
}

/// One product's row: 40 bytes. Popularity as `f32` (a decayed log rounded to 1/16 is exact
/// in it); the rating as `f64`, as `rating_min` compares it.
#[derive(Debug, Default)]
struct Row {
    price: AtomicI64,
    rating: AtomicU64,
    reviews: AtomicU32,
    popularity: AtomicU32,
    /// The indexed text's fingerprint; 0: none indexed.
    text: AtomicU64,
}

/// The rows, and beside them each product's price and rating bands in a byte (the facets read
/// only these for most hits: 1 MiB per million products, where the rows take 40).
#[derive(Debug, Default)]
struct Table {
    rows: Vec<Row>,
    bands: Vec<AtomicU8>,
}

/// A product without values: no bands.
const NO_BANDS: u8 = u8::MAX;

/// The table.
#[derive(Debug, Default)]
pub(crate) struct ValueTable {
    table: RwLock<Arc<Table>>,
}

/// The rows as one query reads them.
#[derive(Debug, Clone)]
pub struct Values(Arc<Table>);

/// A product's price band (the index in [`crate::facets::PRICE_BANDS`]'s bands) and rating
/// band (whole stars, 0–4), in a byte.
fn bands_of(v: &LiveValues) -> u8 {
    let price = crate::facets::PRICE_BANDS
        .iter()
        .take_while(|b| v.price_minor >= **b)
        .count() as u8;
    let rating = (v.mean_rating.max(0.0) as u8).min(4);
    price | (rating << 4)
}

impl Values {
    /// The price band and the rating band (`None`: a product without values).
    pub(crate) fn bands(&self, ordinal: u64) -> Option<(usize, usize)> {
        let b = self
            .0
            .bands
            .get(usize::try_from(ordinal).ok()?)?
            .load(Ordering::Relaxed);
        (b != NO_BANDS).then_some(((b & 0x0f) as usize, (b >> 4) as usize))
    }

    /// `None`: a product without values (never set).
    pub fn get(&self, ordinal: u64) -> Option<LiveValues> {
        let row = self.row(ordinal)?;
        Some(LiveValues {
            price_minor: row.price.load(Ordering::Relaxed),
            mean_rating: f64::from_bits(row.rating.load(Ordering::Relaxed)),
            reviews: u64::from(row.reviews.load(Ordering::Relaxed)),
            popularity: f64::from(f32::from_bits(row.popularity.load(Ordering::Relaxed))),
        })
    }

    pub fn popularity(&self, ordinal: u64) -> f32 {
        self.row(ordinal).map_or(0.0, |r| {
            f32::from_bits(r.popularity.load(Ordering::Relaxed))
        })
    }

    fn row(&self, ordinal: u64) -> Option<&Row> {
        self.0.rows.get(usize::try_from(ordinal).ok()?)
    }
}

impl ValueTable {
    /// Runs `f` on the product's row, growing the table if it ends before it. Writers hold the
    /// read lock while they store, so a growth (under the write lock) never copies a row while
    /// it changes.
    fn with_row<T>(&self, ordinal: u64, f: impl Fn(&Row, &AtomicU8) -> T) -> T {
        let at = usize::try_from(ordinal).unwrap_or(usize::MAX);
        {
            let table = self.table.read();
            if let (Some(row), Some(bands)) = (table.rows.get(at), table.bands.get(at)) {
                return f(row, bands);
            }
        }
        let mut table = self.table.write();
        if table.rows.len() <= at {
            // Twice the rows needed, so growth is rare; the old rows copied over.
            let len = (at + 1).saturating_mul(2);
            let rows: Vec<Row> = (0..len)
                .map(|i| match table.rows.get(i) {
                    Some(old) => Row {
                        price: AtomicI64::new(old.price.load(Ordering::Relaxed)),
                        rating: AtomicU64::new(old.rating.load(Ordering::Relaxed)),
                        reviews: AtomicU32::new(old.reviews.load(Ordering::Relaxed)),
                        popularity: AtomicU32::new(old.popularity.load(Ordering::Relaxed)),
                        text: AtomicU64::new(old.text.load(Ordering::Relaxed)),
                    },
                    None => Row::default(),
                })
                .collect();
            let bands: Vec<AtomicU8> = (0..len)
                .map(|i| {
                    AtomicU8::new(
                        table
                            .bands
                            .get(i)
                            .map_or(NO_BANDS, |b| b.load(Ordering::Relaxed)),
                    )
                })
                .collect();
            *table = Arc::new(Table { rows, bands });
        }
        f(&table.rows[at], &table.bands[at])
    }

    /// Sets the product's values; visible to the next query.
    pub(crate) fn set(&self, ordinal: u64, v: &LiveValues) {
        self.with_row(ordinal, |row, bands| {
            bands.store(bands_of(v), Ordering::Relaxed);
            row.price.store(v.price_minor, Ordering::Relaxed);
            row.rating.store(v.mean_rating.to_bits(), Ordering::Relaxed);
            row.reviews.store(
                u32::try_from(v.reviews).unwrap_or(u32::MAX),
                Ordering::Relaxed,
            );
            row.popularity
                .store((v.popularity as f32).to_bits(), Ordering::Relaxed);
        });
    }

    /// Sets the product's popularity only; visible to the next query.
    pub(crate) fn set_popularity(&self, ordinal: u64, popularity: f64) {
        self.with_row(ordinal, |row, _| {
            row.popularity
                .store((popularity as f32).to_bits(), Ordering::Relaxed)
        });
    }

    /// Sets every product's popularity to 0.
    pub(crate) fn forget_popularity(&self) {
        for row in self.table.read().rows.iter() {
            row.popularity.store(0f32.to_bits(), Ordering::Relaxed);
        }
    }

    /// The fingerprint of the text indexed for the product (0: none).
    pub(crate) fn text(&self, ordinal: u64) -> u64 {
        let table = self.table.read();
        usize::try_from(ordinal)
            .ok()
            .and_then(|at| table.rows.get(at))
            .map_or(0, |r| r.text.load(Ordering::Relaxed))
    }

    pub(crate) fn set_text(&self, ordinal: u64, fingerprint: u64) {
        self.with_row(ordinal, |row, _| {
            row.text.store(fingerprint, Ordering::Relaxed)
        });
    }

    /// Forgets every fingerprint (the index is cleared: every upsert re-indexes).
    pub(crate) fn forget_texts(&self) {
        for row in self.table.read().rows.iter() {
            row.text.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> Values {
        Values(Arc::clone(&self.table.read()))
    }
}

/// The fingerprint of what the index holds of a document's text (never 0).
pub(crate) fn fingerprint(doc: &SearchDocument) -> u64 {
    // SipHash with fixed keys: the same within a build; another build may differ, and then
    // each product is re-indexed once at its next upsert (a mismatch re-indexes, never skips).
    let mut h = std::hash::DefaultHasher::new();
    doc.title.hash(&mut h);
    doc.brand.hash(&mut h);
    doc.category_path.hash(&mut h);
    doc.description.hash(&mut h);
    doc.currency.hash(&mut h);
    doc.listed_ms.hash(&mut h);
    h.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_grow_and_a_snapshot_taken_before_keeps_its_rows() {
        let table = ValueTable::default();
        let v = LiveValues {
            price_minor: 1_999,
            mean_rating: 4.1,
            reviews: 3,
            popularity: 12.0625,
        };
        table.set(0, &v);
        let before = table.snapshot();
        table.set(10_000, &LiveValues::default());
        table.set_text(10_000, 7);
        assert_eq!(before.get(0), Some(v));
        assert_eq!(before.get(10_000), None, "past the old table's end");
        let after = table.snapshot();
        assert_eq!(after.get(0), Some(v), "rows copied when the table grew");
        assert_eq!(table.text(10_000), 7);
        assert_eq!(table.text(0), 0);
        table.forget_texts();
        assert_eq!(table.text(10_000), 0);
        assert_eq!(after.get(0).map(|v| v.price_minor), Some(1_999));
        assert_eq!(after.bands(0), Some((1, 4)), "10–25, 4 stars and up");
        assert_eq!(after.bands(10_000), Some((0, 0)));
        assert_eq!(after.bands(9_999), None, "never set");
        assert_eq!(after.get(u64::MAX), None);
    }

    #[test]
    fn the_fingerprint_sees_text_and_not_values() {
        let doc = SearchDocument {
            product_id: "p-1".into(),
            title: "Brass reading lamp".into(),
            brand: "Lumina".into(),
            category_path: vec!["Home".into(), "Lighting".into()],
            description: "A lamp".into(),
            price_minor: 4_999,
            currency: "USD".into(),
            reviews: 0,
            mean_rating: 0.0,
            popularity: 0.0,
            listed_ms: 1,
        };
        let numbers = SearchDocument {
            price_minor: 1,
            reviews: 9,
            mean_rating: 5.0,
            popularity: 3.0,
            ..doc.clone()
        };
        assert_eq!(fingerprint(&doc), fingerprint(&numbers));
        for changed in [
            SearchDocument {
                title: "Brass reading lamps".into(),
                ..doc.clone()
            },
            SearchDocument {
                category_path: vec!["Home".into(), "Lightin".into(), "g".into()],
                ..doc.clone()
            },
            SearchDocument {
                listed_ms: 2,
                ..doc.clone()
            },
        ] {
            assert_ne!(fingerprint(&doc), fingerprint(&changed));
        }
    }
}
