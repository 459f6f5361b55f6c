//! Match first, score after: a query whose documents are those of `required`, found without
//! scoring, each scored by the sum of the scoring clauses that match it, every clause moved
//! forward by seeking to the match.
//!
//! Why not tantivy's `BooleanQuery` of a must and shoulds: a union of should clauses, moved to
//! each match, decodes and scores every posting of every clause in the window it buffers — for a
//! two-word query that is every document holding either word in any field, though only the few
//! holding both are hits (`benches/search.rs`: scoring was a fifth of a query, and the unions'
//! buffers a third). Here a clause scores only the hits: a posting list skips to the hit through
//! its skip list. The score is the same sum the boolean query gives.

use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED};

/// Documents of `required`, scored by the matching `clauses`.
#[derive(Debug)]
pub(crate) struct ScoredMatch {
    pub(crate) required: Box<dyn Query>,
    pub(crate) clauses: Vec<Box<dyn Query>>,
}

impl Clone for ScoredMatch {
    fn clone(&self) -> Self {
        Self {
            required: self.required.box_clone(),
            clauses: self.clauses.iter().map(|c| c.box_clone()).collect(),
        }
    }
}

impl Query for ScoredMatch {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let required = self
            .required
            .weight(EnableScoring::disabled_from_schema(scoring.schema()))?;
        let clauses = match scoring.is_scoring_enabled() {
            true => self
                .clauses
                .iter()
                .map(|c| c.weight(scoring))
                .collect::<tantivy::Result<Vec<_>>>()?,
            false => Vec::new(),
        };
        Ok(Box::new(ScoredMatchWeight { required, clauses }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a tantivy::Term, bool)) {
        self.required.query_terms(visitor);
    }
}

struct ScoredMatchWeight {
    required: Box<dyn Weight>,
    clauses: Vec<Box<dyn Weight>>,
}

impl Weight for ScoredMatchWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let required = self.required.scorer(reader, boost)?;
        let mut clauses = Vec::with_capacity(self.clauses.len());
        for c in &self.clauses {
            let scorer = c.scorer(reader, boost)?;
            // A clause with no document in this segment is left out.
            if scorer.doc() != TERMINATED {
                clauses.push(scorer);
            }
        }
        Ok(Box::new(ScoredMatchScorer { required, clauses }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )));
        }
        Ok(Explanation::new(
            "sum of the scoring clauses that match",
            scorer.score(),
        ))
    }
}

struct ScoredMatchScorer {
    required: Box<dyn Scorer>,
    clauses: Vec<Box<dyn Scorer>>,
}

impl DocSet for ScoredMatchScorer {
    fn advance(&mut self) -> DocId {
        self.required.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.required.seek(target)
    }

    fn doc(&self) -> DocId {
        self.required.doc()
    }

    fn size_hint(&self) -> u32 {
        self.required.size_hint()
    }

    fn cost(&self) -> u64 {
        self.required.cost()
    }
}

impl Scorer for ScoredMatchScorer {
    fn score(&mut self) -> Score {
        let doc = self.required.doc();
        let mut sum = 0.0;
        for clause in &mut self.clauses {
            let mut at = clause.doc();
            if at < doc {
                at = clause.seek(doc);
            }
            if at == doc {
                sum += clause.score();
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use tantivy::collector::TopDocs;
    use tantivy::query::{BooleanQuery, BoostQuery, ConstScoreQuery, Occur, TermQuery};
    use tantivy::schema::{IndexRecordOption, STORED, Schema, TEXT};
    use tantivy::{Index, TantivyDocument, Term, doc};

    use super::*;

    /// The same hits and scores as the boolean query it replaces: a must (scoring nothing)
    /// and the scoring clauses as shoulds.
    #[test]
    fn scores_as_the_boolean_query_of_a_must_and_shoulds() {
        let mut b = Schema::builder();
        let title = b.add_text_field("title", TEXT | STORED);
        let body = b.add_text_field("body", TEXT);
        let index = Index::create_in_ram(b.build());
        let mut writer = index
            .writer_with_num_threads(1, 15_000_000)
            .expect("writer");
        let words = ["lamp", "brass", "desk", "oak", "chair", "reading"];
        for i in 0..300usize {
            let t = format!("{} {}", words[i % 6], words[(i / 6) % 6]);
            let d = format!("{} {} {}", words[(i / 2) % 6], words[(i / 3) % 6], t);
            let doc: TantivyDocument = doc!(title => t, body => d);
            writer.add_document(doc).expect("add");
            if i % 70 == 0 {
                writer.commit().expect("commit");
            }
        }
        writer.commit().expect("commit");
        let searcher = index.reader().expect("reader").searcher();
        let term = |f, w: &str| Term::from_field_text(f, w);
        for (a, z) in [("lamp", "brass"), ("oak", "chair"), ("reading", "lamp")] {
            let either = |w: &str| -> Box<dyn Query> {
                Box::new(BooleanQuery::new(vec![
                    (
                        Occur::Should,
                        Box::new(TermQuery::new(term(title, w), IndexRecordOption::Basic)),
                    ),
                    (
                        Occur::Should,
                        Box::new(TermQuery::new(term(body, w), IndexRecordOption::Basic)),
                    ),
                ]))
            };
            let required =
                BooleanQuery::new(vec![(Occur::Must, either(a)), (Occur::Must, either(z))]);
            let clauses: Vec<Box<dyn Query>> = [
                (title, a, 4.0),
                (body, a, 1.0),
                (title, z, 4.0),
                (body, z, 1.0),
            ]
            .into_iter()
            .map(|(f, w, boost)| -> Box<dyn Query> {
                Box::new(BoostQuery::new(
                    Box::new(TermQuery::new(term(f, w), IndexRecordOption::WithFreqs)),
                    boost,
                ))
            })
            .collect();
            let mut boolean: Vec<(Occur, Box<dyn Query>)> = vec![(
                Occur::Must,
                Box::new(ConstScoreQuery::new(Box::new(required.clone()), 0.0)),
            )];
            boolean.extend(clauses.iter().map(|c| (Occur::Should, c.box_clone())));
            let ours = ScoredMatch {
                required: Box::new(required),
                clauses,
            };
            let top = TopDocs::with_limit(400).order_by_score();
            let mut expected = searcher
                .search(&BooleanQuery::new(boolean), &top)
                .expect("boolean");
            let mut got = searcher.search(&ours, &top).expect("ours");
            assert!(!expected.is_empty(), "{a} {z}");
            let by_address = |v: &mut Vec<(Score, tantivy::DocAddress)>| v.sort_by_key(|(_, d)| *d);
            by_address(&mut expected);
            by_address(&mut got);
            assert_eq!(got.len(), expected.len(), "{a} {z}: the same hits");
            for ((s1, d1), (s2, d2)) in got.iter().zip(&expected) {
                assert_eq!(d1, d2);
                assert!(
                    (s1 - s2).abs() < 1e-5,
                    "{a} {z}: {d1:?} scored {s1}, not {s2}"
                );
            }
            assert_eq!(ours.count(&searcher).expect("count"), expected.len());
        }
    }
}
