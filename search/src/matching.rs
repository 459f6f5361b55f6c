//! Which documents a query matches, as bitsets: per segment, each query term's documents (its
//! word in any text field, through the `all` field, or a typo or a completion of it in the
//! fields that name the product) in a bitset, the terms' bitsets intersected word by word, and
//! the exact filters (category, brand) likewise. The loose matches of each term and field are
//! kept for the clauses that score them ([`LooseClause`]), so a term dictionary is walked once
//! per query, field and segment.
//!
//! Why bitsets: a term of a large category holds a document in 40, and an intersection of
//! unions of posting lists (a union per term, over its fields and loose words) re-decodes and
//! re-seeks them for every candidate; decoding each list once into a bitset and intersecting 64
//! documents at a time costs a pass over the postings and over the words
//! (`benches/search.rs`: the match went from about half of a query to a small part).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tantivy::index::SegmentId;
use tantivy::postings::BlockSegmentPostings;
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED, Term};

use crate::loose::Loose;

/// A set of a segment's documents.
#[derive(Debug, Clone)]
pub(crate) struct Bits {
    words: Vec<u64>,
    len: u32,
}

impl Bits {
    fn empty(max_doc: u32) -> Self {
        Self {
            words: vec![0; (max_doc as usize).div_ceil(64)],
            len: 0,
        }
    }

    fn full(max_doc: u32) -> Self {
        let mut words = vec![u64::MAX; (max_doc as usize).div_ceil(64)];
        if let Some(last) = words.last_mut()
            && !max_doc.is_multiple_of(64)
        {
            *last = (1u64 << (max_doc % 64)) - 1;
        }
        Self {
            words,
            len: max_doc,
        }
    }

    fn insert(&mut self, doc: DocId) {
        if let Some(w) = self.words.get_mut((doc / 64) as usize) {
            *w |= 1 << (doc % 64);
        }
    }

    fn union(&mut self, other: &Bits) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
    }

    fn intersect(&mut self, other: &Bits) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w &= o;
        }
    }

    fn count(&mut self) {
        self.len = self.words.iter().map(|w| w.count_ones()).sum();
    }

    /// Adds every document of a posting list.
    fn add_postings(&mut self, mut postings: BlockSegmentPostings) {
        loop {
            let docs = postings.docs();
            if docs.is_empty() {
                break;
            }
            for &doc in docs {
                self.insert(doc);
            }
            postings.advance();
        }
    }
}

/// The documents of a [`Bits`], in order.
pub(crate) struct BitsDocSet {
    bits: Arc<Bits>,
    word: usize,
    /// The current word's bits not yet visited.
    rest: u64,
    doc: DocId,
}

impl BitsDocSet {
    pub(crate) fn new(bits: Arc<Bits>) -> Self {
        let rest = bits.words.first().copied().unwrap_or(0);
        let mut set = Self {
            bits,
            word: 0,
            rest,
            doc: 0,
        };
        set.advance();
        set
    }
}

impl DocSet for BitsDocSet {
    fn advance(&mut self) -> DocId {
        loop {
            if self.rest != 0 {
                let bit = self.rest.trailing_zeros();
                self.rest &= self.rest - 1;
                self.doc = self.word as DocId * 64 + bit;
                return self.doc;
            }
            self.word += 1;
            match self.bits.words.get(self.word) {
                Some(w) => self.rest = *w,
                None => {
                    self.doc = TERMINATED;
                    return TERMINATED;
                }
            }
        }
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if target <= self.doc {
            return self.doc;
        }
        let word = (target / 64) as usize;
        match self.bits.words.get(word) {
            Some(w) => {
                self.word = word;
                self.rest = w & (u64::MAX << (target % 64));
                // `advance` takes the lowest bit left, in this word or a later one.
                self.advance()
            }
            None => {
                self.word = self.bits.words.len();
                self.rest = 0;
                self.doc = TERMINATED;
                TERMINATED
            }
        }
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.bits.len
    }
}

/// A [`BitsDocSet`] scoring a constant.
struct ConstBits {
    docs: BitsDocSet,
    score: Score,
}

impl DocSet for ConstBits {
    fn advance(&mut self) -> DocId {
        self.docs.advance()
    }
    fn seek(&mut self, target: DocId) -> DocId {
        self.docs.seek(target)
    }
    fn doc(&self) -> DocId {
        self.docs.doc()
    }
    fn size_hint(&self) -> u32 {
        self.docs.size_hint()
    }
}

impl Scorer for ConstBits {
    fn score(&mut self) -> Score {
        self.score
    }
}

/// One query term: its word (in the `all` field) and the words it matches loosely, in the
/// fields that name the product.
pub(crate) struct PlanTerm {
    pub(crate) all: Term,
    pub(crate) loose: Option<Arc<Loose>>,
}

/// What a query matches, and the loose matches its scoring clauses read, per segment.
pub(crate) struct Plan {
    terms: Vec<PlanTerm>,
    loose_fields: Vec<Field>,
    /// Exact terms every hit holds (category, brand filters).
    filters: Vec<Term>,
    segments: Mutex<HashMap<SegmentId, Arc<SegmentMatch>>>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let terms: Vec<&Term> = self.terms.iter().map(|t| &t.all).collect();
        f.debug_struct("Plan")
            .field("terms", &terms)
            .field("filters", &self.filters)
            .finish_non_exhaustive()
    }
}

/// A segment's matches.
struct SegmentMatch {
    hits: Arc<Bits>,
    /// Per term, per loose field: the documents with a loose word (`None`: none).
    loose: Vec<Vec<Option<Arc<Bits>>>>,
}

impl Plan {
    pub(crate) fn new(terms: Vec<PlanTerm>, loose_fields: Vec<Field>, filters: Vec<Term>) -> Self {
        Self {
            terms,
            loose_fields,
            filters,
            segments: Mutex::default(),
        }
    }

    fn of(&self, reader: &SegmentReader) -> tantivy::Result<Arc<SegmentMatch>> {
        let id = reader.segment_id();
        if let Some(m) = self.segments.lock().get(&id) {
            return Ok(Arc::clone(m));
        }
        let m = Arc::new(self.compute(reader)?);
        self.segments.lock().insert(id, Arc::clone(&m));
        Ok(m)
    }

    fn compute(&self, reader: &SegmentReader) -> tantivy::Result<SegmentMatch> {
        let max_doc = reader.max_doc();
        let mut hits = Bits::full(max_doc);
        let mut loose = Vec::with_capacity(self.terms.len());
        for term in &self.terms {
            let mut matched = Bits::empty(max_doc);
            let index = reader.inverted_index(term.all.field())?;
            if let Some(postings) =
                index.read_block_postings(&term.all, IndexRecordOption::Basic)?
            {
                matched.add_postings(postings);
            }
            let mut by_field = Vec::with_capacity(self.loose_fields.len());
            for field in &self.loose_fields {
                let Some(automaton) = &term.loose else {
                    by_field.push(None);
                    continue;
                };
                let index = reader.inverted_index(*field)?;
                let mut words = index.terms().search(&**automaton).into_stream()?;
                let mut bits: Option<Bits> = None;
                while words.advance() {
                    let postings = index.read_block_postings_from_terminfo(
                        words.value(),
                        IndexRecordOption::Basic,
                    )?;
                    bits.get_or_insert_with(|| Bits::empty(max_doc))
                        .add_postings(postings);
                }
                by_field.push(bits.map(|mut b| {
                    matched.union(&b);
                    b.count();
                    Arc::new(b)
                }));
            }
            hits.intersect(&matched);
            loose.push(by_field);
        }
        for filter in &self.filters {
            let mut matched = Bits::empty(max_doc);
            let index = reader.inverted_index(filter.field())?;
            if let Some(postings) = index.read_block_postings(filter, IndexRecordOption::Basic)? {
                matched.add_postings(postings);
            }
            hits.intersect(&matched);
        }
        hits.count();
        Ok(SegmentMatch {
            hits: Arc::new(hits),
            loose,
        })
    }
}

/// The documents a [`Plan`] matches (scored 0: [`crate::scored`] scores them).
#[derive(Debug, Clone)]
pub(crate) struct Matching(pub(crate) Arc<Plan>);

impl Query for Matching {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(PlanWeight {
            plan: Arc::clone(&self.0),
            clause: None,
        }))
    }
}

/// The documents where term `term` of a [`Plan`] matches loosely in its loose field `field`;
/// scores its boost.
#[derive(Debug, Clone)]
pub(crate) struct LooseClause {
    pub(crate) plan: Arc<Plan>,
    pub(crate) term: usize,
    pub(crate) field: usize,
}

impl Query for LooseClause {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(PlanWeight {
            plan: Arc::clone(&self.plan),
            clause: Some((self.term, self.field)),
        }))
    }
}

struct PlanWeight {
    plan: Arc<Plan>,
    clause: Option<(usize, usize)>,
}

impl Weight for PlanWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let m = self.plan.of(reader)?;
        let (bits, score) = match self.clause {
            None => (Some(Arc::clone(&m.hits)), 0.0),
            Some((term, field)) => (
                m.loose
                    .get(term)
                    .and_then(|t| t.get(field))
                    .cloned()
                    .flatten(),
                boost,
            ),
        };
        let bits = bits.unwrap_or_else(|| Arc::new(Bits::empty(0)));
        Ok(Box::new(ConstBits {
            docs: BitsDocSet::new(bits),
            score,
        }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )));
        }
        Ok(Explanation::new("matched", scorer.score()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bitset_visits_its_documents_in_order_and_seeks() {
        let mut bits = Bits::empty(300);
        for d in [0, 5, 63, 64, 65, 128, 299] {
            bits.insert(d);
        }
        bits.count();
        let mut set = BitsDocSet::new(Arc::new(bits.clone()));
        assert_eq!(set.size_hint(), 7);
        let mut seen = vec![set.doc()];
        while set.advance() != TERMINATED {
            seen.push(set.doc());
        }
        assert_eq!(seen, [0, 5, 63, 64, 65, 128, 299]);
        let mut set = BitsDocSet::new(Arc::new(bits.clone()));
        assert_eq!(set.seek(6), 63);
        assert_eq!(set.seek(63), 63);
        assert_eq!(set.seek(66), 128);
        assert_eq!(set.seek(200), 299);
        assert_eq!(set.seek(300), TERMINATED);
        let mut full = Bits::full(130);
        full.intersect(&bits);
        full.count();
        assert_eq!(full.len, 6, "299 is past 130");
        let mut none = BitsDocSet::new(Arc::new(Bits::empty(64)));
        assert_eq!(none.doc(), TERMINATED);
        assert_eq!(none.seek(10), TERMINATED);
    }
}
