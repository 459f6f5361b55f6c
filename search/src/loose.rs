//! The words a query term matches *besides itself*: those within its typo allowance, and (the
//! query's last term) those it starts as typed — one automaton over the term dictionary, minus
//! the term itself.
//!
//! Why one clause, and why without the term: the exact word is matched (and scored by BM25) by
//! its own `TermQuery`. Were it also in the typo and prefix clauses, every document with the
//! word as typed would be visited three times per field by the union that scores the query, and
//! for a correctly spelled word of a large category that is nearly all of the work
//! (`benches/search.rs`: one-word queries match 1 product in 40). Without it, the loose clause
//! holds only the documents with another word (a typo's correction, a longer word the prefix
//! starts), usually few. The ranking is unchanged in kind: an exact match scores BM25 × boost,
//! a loose one a constant fraction of the boost, below it.

use std::sync::Arc;

use tantivy::Term;
use tantivy::query::{AutomatonWeight, DfaWrapper, EnableScoring, FuzzyTermQuery, Query, Weight};
use tantivy::schema::Field;
use tantivy_fst::Automaton;

/// Matches a term within `fuzzy`'s edits or starting with `prefix`'s text, but not `exact`.
pub(crate) struct Loose {
    fuzzy: Option<DfaWrapper>,
    prefix: Option<DfaWrapper>,
    exact: Vec<u8>,
}

/// Where each part of [`Loose`] is: the two automata's states, and how much of the exact word
/// the bytes so far spell (`None`: they left it).
#[derive(Clone)]
pub(crate) struct LooseState {
    fuzzy: Option<u32>,
    prefix: Option<u32>,
    exact: Option<usize>,
}

impl Automaton for Loose {
    type State = LooseState;

    fn start(&self) -> LooseState {
        LooseState {
            fuzzy: self.fuzzy.as_ref().map(Automaton::start),
            prefix: self.prefix.as_ref().map(Automaton::start),
            exact: Some(0),
        }
    }

    fn is_match(&self, s: &LooseState) -> bool {
        let matched = |a: &Option<DfaWrapper>, s: &Option<u32>| match (a, s) {
            (Some(a), Some(s)) => a.is_match(s),
            _ => false,
        };
        (matched(&self.fuzzy, &s.fuzzy) || matched(&self.prefix, &s.prefix))
            && s.exact != Some(self.exact.len())
    }

    fn can_match(&self, s: &LooseState) -> bool {
        let live = |a: &Option<DfaWrapper>, s: &Option<u32>| match (a, s) {
            (Some(a), Some(s)) => a.can_match(s),
            _ => false,
        };
        live(&self.fuzzy, &s.fuzzy) || live(&self.prefix, &s.prefix)
    }

    fn accept(&self, s: &LooseState, byte: u8) -> LooseState {
        let step = |a: &Option<DfaWrapper>, s: &Option<u32>| match (a, s) {
            (Some(a), Some(s)) => Some(a.accept(s, byte)),
            _ => None,
        };
        LooseState {
            fuzzy: step(&self.fuzzy, &s.fuzzy),
            prefix: step(&self.prefix, &s.prefix),
            exact: s
                .exact
                .filter(|at| self.exact.get(*at) == Some(&byte))
                .map(|at| at + 1),
        }
    }
}

/// A query for the [`Loose`] words of a term in its field: a constant score (boost it).
#[derive(Clone)]
pub(crate) struct LooseQuery {
    field: Field,
    automaton: Arc<Loose>,
    text: String,
}

impl std::fmt::Debug for LooseQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LooseQuery({:?}, {:?})", self.field, self.text)
    }
}

impl Loose {
    /// The words `text` matches besides itself: within `edits` (if any), and those it starts
    /// (if `prefix`). `None` when that is nothing. The same for every field (`term` is `text`
    /// in any of them).
    pub(crate) fn new(term: &Term, text: &str, edits: u8, prefix: bool) -> Option<Arc<Self>> {
        let fuzzy = (edits > 0)
            .then(|| {
                FuzzyTermQuery::new(term.clone(), edits, true)
                    .automaton()
                    .ok()
            })
            .flatten();
        let prefix = prefix
            .then(|| {
                FuzzyTermQuery::new_prefix(term.clone(), 0, true)
                    .automaton()
                    .ok()
            })
            .flatten();
        if fuzzy.is_none() && prefix.is_none() {
            return None;
        }
        Some(Arc::new(Self {
            fuzzy,
            prefix,
            exact: text.as_bytes().to_vec(),
        }))
    }
}

impl LooseQuery {
    /// The words `term` matches besides itself: within `edits` (if any), and those it starts
    /// (if `prefix`). `None` when that is nothing.
    pub(crate) fn new(term: &Term, text: &str, edits: u8, prefix: bool) -> Option<Self> {
        Some(Self {
            field: term.field(),
            automaton: Loose::new(term, text, edits, prefix)?,
            text: text.to_owned(),
        })
    }
}

impl Query for LooseQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(AutomatonWeight::<Loose>::new(
            self.field,
            Arc::clone(&self.automaton),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::schema::Schema;

    fn words(q: &LooseQuery, dictionary: &[&str]) -> Vec<String> {
        dictionary
            .iter()
            .filter(|w| {
                let a = &q.automaton;
                let mut s = a.start();
                for b in w.bytes() {
                    s = a.accept(&s, b);
                }
                a.is_match(&s)
            })
            .map(|w| (*w).to_owned())
            .collect()
    }

    #[test]
    fn typos_and_longer_words_but_not_the_word_itself() {
        let mut b = Schema::builder();
        let title = b.add_text_field("title", tantivy::schema::TEXT);
        let dictionary = [
            "head",
            "headphone",
            "headphones",
            "heaphones",
            "headset",
            "hedphones",
            "phones",
        ];
        let term = Term::from_field_text(title, "headphones");
        let q = LooseQuery::new(&term, "headphones", 2, false).expect("a typo allowance");
        assert_eq!(
            words(&q, &dictionary),
            ["headphone", "heaphones", "hedphones"]
        );
        let term = Term::from_field_text(title, "head");
        let q = LooseQuery::new(&term, "head", 1, true).expect("prefix and typos");
        assert_eq!(
            words(&q, &dictionary),
            ["headphone", "headphones", "headset"],
            "what it starts, as typed"
        );
        let term = Term::from_field_text(title, "tv");
        assert!(LooseQuery::new(&term, "tv", 0, false).is_none());
    }
}
