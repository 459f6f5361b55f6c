//! Facet counts over every hit: a count per brand, per category-path prefix, per price band and
//! per rating band, counted in the hit loop ([`crate::collect`]: by term ordinal in each segment,
//! named once at the end) and turned into the answer's buckets here. tantivy's aggregations do
//! the same through a general request tree; the hit loop is written for this one.

use std::collections::HashMap;

use crate::query::{Bucket, Facets};

/// Price bands of the facet, in minor units: under 10, 10–25, 25–50, 50–100, 100–250, 250–500,
/// 500 and over.
pub(crate) const PRICE_BANDS: [i64; 6] = [1_000, 2_500, 5_000, 10_000, 25_000, 50_000];
/// Brands and category prefixes listed, the most frequent first.
const TOP_BRANDS: usize = 20;
const TOP_CATEGORIES: usize = 50;

/// Facet counts over every hit, by value name.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) brand: HashMap<String, u64>,
    pub(crate) category: HashMap<String, u64>,
    pub(crate) price: [u64; PRICE_BANDS.len() + 1],
    pub(crate) rating: [u64; 5],
}

impl Tally {
    /// Adds another segment's counts.
    pub(crate) fn add(&mut self, t: Tally) {
        for (k, n) in t.brand {
            *self.brand.entry(k).or_default() += n;
        }
        for (k, n) in t.category {
            *self.category.entry(k).or_default() += n;
        }
        for (a, n) in self.price.iter_mut().zip(t.price) {
            *a += n;
        }
        for (a, n) in self.rating.iter_mut().zip(t.rating) {
            *a += n;
        }
    }

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
