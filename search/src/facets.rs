//! Facet counts over every hit, in one pass over the hits' fast fields: a count per term ordinal
//! of `brand_exact` and `category_prefix` in each segment (turned into strings once, at the
//! end), and a count per price band and rating band. tantivy's aggregations do the same through a
//! general request tree; this pass is the part of a query that grows with the number of hits, so
//! it is written for it (`benches/search.rs`).

use std::collections::HashMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use crate::query::{Bucket, Facets};

/// Price bands of the facet, in minor units: under 10, 10–25, 25–50, 50–100, 100–250, 250–500,
/// 500 and over.
pub(crate) const PRICE_BANDS: [i64; 6] = [1_000, 2_500, 5_000, 10_000, 25_000, 50_000];
/// Brands and category prefixes listed, the most frequent first.
const TOP_BRANDS: usize = 20;
const TOP_CATEGORIES: usize = 50;

/// The facet counts of a query's hits.
pub(crate) struct FacetCounts;

/// One segment's counts, or all segments' merged.
#[derive(Default)]
pub(crate) struct Tally {
    brand: HashMap<String, u64>,
    category: HashMap<String, u64>,
    price: [u64; PRICE_BANDS.len() + 1],
    /// Mean rating bands: [0, 1), [1, 2), [2, 3), [3, 4), [4, 5].
    rating: [u64; 5],
}

pub(crate) struct SegmentTally {
    brand: Option<(StrColumn, Vec<u64>)>,
    category: Option<(StrColumn, Vec<u64>)>,
    price: Option<Column<i64>>,
    rating: Option<Column<f64>>,
    tally: Tally,
}

fn str_column(
    segment: &SegmentReader,
    field: &str,
) -> tantivy::Result<Option<(StrColumn, Vec<u64>)>> {
    Ok(segment.fast_fields().str(field)?.map(|column| {
        let terms = column.num_terms();
        (column, vec![0; terms])
    }))
}

impl Collector for FacetCounts {
    type Fruit = Tally;
    type Child = SegmentTally;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTally> {
        Ok(SegmentTally {
            brand: str_column(reader, "brand_exact")?,
            category: str_column(reader, "category_prefix")?,
            price: reader.fast_fields().i64("price").ok(),
            rating: reader.fast_fields().f64("rating").ok(),
            tally: Tally::default(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, tallies: Vec<Tally>) -> tantivy::Result<Tally> {
        let mut all = Tally::default();
        for t in tallies {
            for (k, n) in t.brand {
                *all.brand.entry(k).or_default() += n;
            }
            for (k, n) in t.category {
                *all.category.entry(k).or_default() += n;
            }
            for (a, n) in all.price.iter_mut().zip(t.price) {
                *a += n;
            }
            for (a, n) in all.rating.iter_mut().zip(t.rating) {
                *a += n;
            }
        }
        Ok(all)
    }
}

impl SegmentCollector for SegmentTally {
    type Fruit = Tally;

    fn collect(&mut self, doc: DocId, _score: Score) {
        for (column, counts) in [&mut self.brand, &mut self.category].into_iter().flatten() {
            for ord in column.term_ords(doc) {
                if let Some(n) = counts.get_mut(ord as usize) {
                    *n += 1;
                }
            }
        }
        if let Some(price) = self.price.as_ref().and_then(|c| c.first(doc)) {
            let band = PRICE_BANDS.iter().take_while(|b| price >= **b).count();
            self.tally.price[band] += 1;
        }
        if let Some(rating) = self.rating.as_ref().and_then(|c| c.first(doc)) {
            let band = (rating.max(0.0) as usize).min(4);
            self.tally.rating[band] += 1;
        }
    }

    fn harvest(mut self) -> Tally {
        let mut name = String::new();
        for (column, counts, out) in [
            (&self.brand, &mut self.tally.brand),
            (&self.category, &mut self.tally.category),
        ]
        .into_iter()
        .filter_map(|(c, out)| c.as_ref().map(|(c, n)| (c, n, out)))
        {
            for (ord, n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
                name.clear();
                if column.ord_to_str(ord as u64, &mut name).unwrap_or(false) {
                    *out.entry(name.clone()).or_default() += n;
                }
            }
        }
        self.tally
    }
}

impl Tally {
    /// The facets as the answer gives them.
    pub(crate) fn facets(self) -> Facets {
        let top = |counts: HashMap<String, u64>, n: usize| {
            let mut buckets: Vec<Bucket> = counts
                .into_iter()
                .map(|(value, count)| Bucket { value, count })
                .collect();
            // The most frequent first; ties by name.
            buckets.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
            buckets.truncate(n);
            buckets
        };
        let price = self
            .price
            .iter()
            .zip(price_band_names())
            .map(|(count, value)| Bucket {
                value,
                count: *count,
            })
            .collect();
        // "n and up": every hit rated at least n.
        let rating = (1..=4)
            .rev()
            .map(|n| Bucket {
                value: format!("{n} and up"),
                count: self.rating.iter().skip(n).sum(),
            })
            .collect();
        Facets {
            brand: top(self.brand, TOP_BRANDS),
            category: top(self.category, TOP_CATEGORIES),
            price,
            rating,
        }
    }
}

fn price_band_names() -> Vec<String> {
    let major = |p: i64| p / 100;
    let mut names = vec![format!("under {}", major(PRICE_BANDS[0]))];
    for pair in PRICE_BANDS.windows(2) {
        names.push(format!("{}–{}", major(pair[0]), major(pair[1])));
    }
    names.push(format!(
        "{} and over",
        major(PRICE_BANDS[PRICE_BANDS.len() - 1])
    ));
    names
}
