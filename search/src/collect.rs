//! One pass over a query's hits that does everything the answer needs of every hit: the live
//! filters (in stock, price range, minimum rating), the count, the facet counts, and the top of
//! the order (in stock first, then the sort's key). Every hit is visited, so this loop is the
//! part of a query that grows with the number of hits (`benches/search.rs`): it reads plain
//! arrays — each segment's columns decoded once ([`ColumnCache`]) and the live tables — rather
//! than tantivy's compressed columns through three collectors and a filter wrapper.
//!
//! Ties keep index order (segment, then document), as tantivy's `TopDocs` does.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{ColumnValues, StrColumn};
use tantivy::index::SegmentId;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use crate::availability::InStock;
use crate::facets::{PRICE_BANDS, Tally};
use crate::query::Sort;
use crate::values::{LiveValues, Values};

/// A segment's columns the hit loop reads, decoded into arrays. Segments never change (a delete
/// only marks a document dead), so a segment's are decoded once, when a commit or a merge makes
/// it searchable, and dropped when it goes.
pub(crate) struct SegmentColumns {
    /// Each document's product ordinal (`u32::MAX`: none).
    ordinals: Vec<u32>,
    /// Each document's brand, as its term ordinal in the segment (`u32::MAX`: none).
    brands: Vec<u32>,
    /// Each document's category-path prefixes, as term ordinals: document `d`'s are
    /// `categories[category_at[d]..category_at[d + 1]]`.
    category_at: Vec<u32>,
    categories: Vec<u32>,
    /// The dictionaries that name the ordinals (read at harvest).
    brand_names: Option<StrColumn>,
    category_names: Option<StrColumn>,
}

impl SegmentColumns {
    fn decode(segment: &SegmentReader) -> tantivy::Result<Self> {
        let ff = segment.fast_fields();
        let docs = segment.max_doc() as usize;
        let ordinal_column = ff.u64("ordinal")?;
        let ordinals = (0..docs as DocId)
            .map(|d| {
                ordinal_column
                    .first(d)
                    .and_then(|o| u32::try_from(o).ok())
                    .unwrap_or(u32::MAX)
            })
            .collect();
        let brand_names = ff.str("brand_exact")?;
        let brands = match &brand_names {
            Some(c) => (0..docs as DocId)
                .map(|d| {
                    c.term_ords(d)
                        .next()
                        .and_then(|o| u32::try_from(o).ok())
                        .unwrap_or(u32::MAX)
                })
                .collect(),
            None => vec![u32::MAX; docs],
        };
        let category_names = ff.str("category_prefix")?;
        let mut category_at = Vec::with_capacity(docs + 1);
        let mut categories = Vec::with_capacity(docs * 3);
        category_at.push(0);
        for d in 0..docs as DocId {
            if let Some(c) = &category_names {
                categories.extend(c.term_ords(d).filter_map(|o| u32::try_from(o).ok()));
            }
            category_at.push(u32::try_from(categories.len()).unwrap_or(u32::MAX));
        }
        Ok(Self {
            ordinals,
            brands,
            category_at,
            categories,
            brand_names,
            category_names,
        })
    }

    /// The document's product ordinal (`u64::MAX`: none).
    pub(crate) fn ordinal(&self, doc: DocId) -> u64 {
        match self.ordinals.get(doc as usize) {
            Some(&o) if o != u32::MAX => u64::from(o),
            _ => u64::MAX,
        }
    }
}

/// Every searchable segment's columns.
#[derive(Default)]
pub(crate) struct ColumnCache {
    segments: Mutex<HashMap<SegmentId, Arc<SegmentColumns>>>,
}

impl ColumnCache {
    /// The segment's columns, decoded now if they were not yet.
    pub(crate) fn of(&self, segment: &SegmentReader) -> tantivy::Result<Arc<SegmentColumns>> {
        let id = segment.segment_id();
        if let Some(c) = self.segments.lock().get(&id) {
            return Ok(Arc::clone(c));
        }
        // Decoded outside the lock; two queries may both decode a new segment (same result).
        let decoded = Arc::new(SegmentColumns::decode(segment)?);
        self.segments.lock().insert(id, Arc::clone(&decoded));
        Ok(decoded)
    }

    /// Decodes the searcher's new segments and forgets those it no longer has (after a commit
    /// or a merge is made searchable).
    pub(crate) fn refresh(&self, searcher: &tantivy::Searcher) -> tantivy::Result<()> {
        let readers = searcher.segment_readers();
        for segment in readers {
            self.of(segment)?;
        }
        let live: Vec<SegmentId> = readers.iter().map(SegmentReader::segment_id).collect();
        self.segments.lock().retain(|id, _| live.contains(id));
        Ok(())
    }
}

/// The filters on live values, by a hit's ordinal: in stock, price range, minimum rating.
#[derive(Clone)]
pub(crate) struct Filter {
    pub in_stock: Option<InStock>,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub rating_min: Option<f64>,
}

impl Filter {
    fn admits(&self, ordinal: u64, price: i64, rating: f64) -> bool {
        self.in_stock.as_ref().is_none_or(|s| s.contains(ordinal))
            && self.price_min.is_none_or(|min| price >= min)
            && self.price_max.is_none_or(|max| price <= max)
            && self.rating_min.is_none_or(|min| rating >= min)
    }
}

/// A hit ranked: in stock first, then the key (larger first), then index order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ranked {
    pub available: bool,
    pub key: f64,
    pub address: DocAddress,
}

impl Ranked {
    /// `Greater`: ranks before.
    fn rank(&self, other: &Self) -> Ordering {
        self.available
            .cmp(&other.available)
            .then_with(|| self.key.total_cmp(&other.key))
            .then_with(|| {
                (other.address.segment_ord, other.address.doc_id)
                    .cmp(&(self.address.segment_ord, self.address.doc_id))
            })
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.rank(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank(other)
    }
}

/// The collector: the best `top` hits in order, the count, the facets.
pub(crate) struct Hits {
    pub sort: Sort,
    pub top: usize,
    pub filter: Filter,
    pub in_stock: InStock,
    pub values: Values,
    pub columns: Arc<ColumnCache>,
}

/// What a segment (or the whole search) gives.
pub(crate) struct Gathered {
    /// Best first.
    pub top: Vec<Ranked>,
    pub total: u64,
    pub tally: Tally,
}

pub(crate) struct SegmentHits {
    segment: SegmentOrdinal,
    sort: Sort,
    top: usize,
    filter: Filter,
    in_stock: InStock,
    values: Values,
    /// Whether a filter or the order reads the live rows (price, rating, popularity).
    needs_values: bool,
    columns: Arc<SegmentColumns>,
    /// When each document was listed (the `newest` sort only).
    listed: Option<Arc<dyn ColumnValues<i64>>>,
    /// The best so far, worst on top.
    best: BinaryHeap<Reverse<Ranked>>,
    total: u64,
    brands: Vec<u64>,
    categories: Vec<u64>,
    price: [u64; PRICE_BANDS.len() + 1],
    rating: [u64; 5],
}

impl Collector for Hits {
    type Fruit = Gathered;
    type Child = SegmentHits;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentHits> {
        let columns = self.columns.of(reader)?;
        let terms = |c: &Option<StrColumn>| c.as_ref().map_or(0, |c| c.num_terms());
        let listed = match self.sort {
            Sort::Newest => reader
                .fast_fields()
                .i64("listed")
                .ok()
                .map(|c| c.first_or_default_col(0)),
            _ => None,
        };
        Ok(SegmentHits {
            segment,
            sort: self.sort,
            top: self.top,
            filter: self.filter.clone(),
            in_stock: self.in_stock.clone(),
            values: self.values.clone(),
            needs_values: self.filter.price_min.is_some()
                || self.filter.price_max.is_some()
                || self.filter.rating_min.is_some()
                || !matches!(self.sort, Sort::Relevance | Sort::Newest),
            brands: vec![0; terms(&columns.brand_names)],
            categories: vec![0; terms(&columns.category_names)],
            columns,
            listed,
            best: BinaryHeap::with_capacity(self.top + 1),
            total: 0,
            price: [0; PRICE_BANDS.len() + 1],
            rating: [0; 5],
        })
    }

    fn requires_scoring(&self) -> bool {
        // Other orders never read the score: tantivy skips computing it.
        self.sort == Sort::Relevance
    }

    fn merge_fruits(&self, fruits: Vec<Gathered>) -> tantivy::Result<Gathered> {
        let mut all = Gathered {
            top: Vec::new(),
            total: 0,
            tally: Tally::default(),
        };
        for f in fruits {
            all.top.extend(f.top);
            all.total += f.total;
            all.tally.add(f.tally);
        }
        all.top.sort_by(|a, b| b.cmp(a));
        all.top.truncate(self.top);
        Ok(all)
    }
}

impl SegmentCollector for SegmentHits {
    type Fruit = Gathered;

    fn collect(&mut self, doc: DocId, score: Score) {
        let ordinal = self.columns.ordinal(doc);
        // The live row only when a filter or the order needs its values; the facets read the
        // bands (a byte per product).
        let v = match self.needs_values {
            true => self.values.get(ordinal).unwrap_or_default(),
            false => LiveValues::default(),
        };
        if !self.filter.admits(ordinal, v.price_minor, v.mean_rating) {
            return;
        }
        self.total += 1;
        let c = &self.columns;
        if let Some(n) = c
            .brands
            .get(doc as usize)
            .and_then(|b| self.brands.get_mut(*b as usize))
        {
            *n += 1;
        }
        let (from, to) = (
            c.category_at.get(doc as usize).copied().unwrap_or(0) as usize,
            c.category_at.get(doc as usize + 1).copied().unwrap_or(0) as usize,
        );
        for category in c.categories.get(from..to).unwrap_or(&[]) {
            if let Some(n) = self.categories.get_mut(*category as usize) {
                *n += 1;
            }
        }
        let (price, rating) = self.values.bands(ordinal).unwrap_or((0, 0));
        if let Some(n) = self.price.get_mut(price) {
            *n += 1;
        }
        if let Some(n) = self.rating.get_mut(rating) {
            *n += 1;
        }
        if self.top == 0 {
            return;
        }
        let key = match self.sort {
            Sort::Relevance => f64::from(score),
            Sort::PriceAsc => -(v.price_minor as f64),
            Sort::PriceDesc => v.price_minor as f64,
            Sort::Popularity => v.popularity,
            Sort::Rating => v.mean_rating,
            Sort::Newest => self.listed.as_ref().map_or(0, |l| l.get_val(doc)) as f64,
        };
        let hit = Ranked {
            available: self.in_stock.contains(ordinal),
            key,
            address: DocAddress::new(self.segment, doc),
        };
        if self.best.len() < self.top {
            self.best.push(Reverse(hit));
        } else if self.best.peek().is_some_and(|Reverse(worst)| hit > *worst) {
            self.best.pop();
            self.best.push(Reverse(hit));
        }
    }

    fn harvest(self) -> Gathered {
        let mut tally = Tally {
            price: self.price,
            rating: self.rating,
            ..Tally::default()
        };
        let mut name = String::new();
        for (names, counts, out) in [
            (&self.columns.brand_names, &self.brands, &mut tally.brand),
            (
                &self.columns.category_names,
                &self.categories,
                &mut tally.category,
            ),
        ] {
            let Some(names) = names else { continue };
            for (ord, n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
                name.clear();
                if names.ord_to_str(ord as u64, &mut name).unwrap_or(false) {
                    *out.entry(name.clone()).or_default() += n;
                }
            }
        }
        let mut top: Vec<Ranked> = self.best.into_iter().map(|Reverse(r)| r).collect();
        top.sort_by(|a, b| b.cmp(a));
        Gathered {
            top,
            total: self.total,
            tally,
        }
    }
}
