//! Autocomplete as the shopper types (`GET /v1/suggest`): product titles, brands and category
//! paths that the words typed so far start. Every word but the last must be a word of the
//! suggestion (a title's within its typo allowance, as in search), the last only starts one.
//!
//! - **Titles**: a query on the title field alone, in-stock products first, then the most
//!   popular (a suggester ranks by weight, as Elasticsearch's completion suggester does; every
//!   match holds every word, so relevance adds little). No counting, no facets: one top-k pass.
//! - **Brands and categories**: the distinct values of the exact brand and category-path fields,
//!   read from the term dictionaries once per index generation (a few hundred values, kept in
//!   memory), matched word by word in memory, most products first. A value whose last product
//!   was removed can linger until its segment is merged.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, Score, SegmentReader, Term};

use crate::index::SearchIndex;
use crate::loose::LooseQuery;
use crate::typo::allowed_edits;
use crate::{Result, SearchError};

/// The longest `q` accepted.
pub const MAX_SUGGEST_CHARS: usize = 100;
/// Titles, brands and categories suggested at most.
pub const MAX_TITLES: usize = 5;
pub const MAX_VALUES: usize = 3;

/// What a suggestion completes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionKind {
    Title,
    Brand,
    Category,
}

/// One suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub kind: SuggestionKind,
    /// The title, the brand, or the category path (`Electronics/Audio`).
    pub text: String,
    /// The product a title suggestion is of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    /// Products in stock (titles: 1 or 0), or products with the brand or in the category.
    pub products: u64,
}

/// The answer to a suggest request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestResponse {
    pub suggestions: Vec<Suggestion>,
    /// The log position the index reflected (its last commit's).
    pub as_of: Option<String>,
}

/// The distinct brands and category paths of one index generation, with their products.
#[derive(Debug, Default)]
pub(crate) struct Vocabulary {
    generation: Option<u64>,
    brands: Values,
    categories: Values,
}

/// The brands or the category paths of a generation, most products first.
type Values = Arc<Vec<Value>>;

/// A brand or category path, its words lowercased, and how many products have it.
#[derive(Debug, Clone)]
struct Value {
    text: String,
    words: Vec<String>,
    products: u64,
}

/// The distinct values of an exact field over every segment, most products first.
fn values(
    searcher: &tantivy::Searcher,
    field: Field,
    words_of: fn(&str) -> Vec<String>,
) -> Result<Vec<Value>> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for segment in searcher.segment_readers() {
        let inverted = segment.inverted_index(field)?;
        let mut stream = inverted
            .terms()
            .stream()
            .map_err(|e| SearchError::Index(e.into()))?;
        while stream.advance() {
            let Ok(text) = std::str::from_utf8(stream.key()) else {
                continue;
            };
            *counts.entry(text.to_owned()).or_default() += u64::from(stream.value().doc_freq);
        }
    }
    let mut values: Vec<Value> = counts
        .into_iter()
        .map(|(text, products)| Value {
            words: words_of(&text),
            text,
            products,
        })
        .collect();
    values.sort_by(|a, b| {
        b.products
            .cmp(&a.products)
            .then_with(|| a.text.cmp(&b.text))
    });
    Ok(values)
}

/// Lowercased alphanumeric words.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The words of a category path's last level (`Electronics/Audio` is suggested for "aud", not
/// for "elec", which suggests `Electronics`).
fn last_level_words(path: &str) -> Vec<String> {
    words(path.rsplit('/').next().unwrap_or(path))
}

/// Whether `terms` complete to `words`: each term but the last is one of them, the last starts
/// one.
fn completes(terms: &[String], words: &[String]) -> bool {
    let Some((last, rest)) = terms.split_last() else {
        return false;
    };
    rest.iter().all(|t| words.contains(t)) && words.iter().any(|w| w.starts_with(last.as_str()))
}

impl SearchIndex {
    /// Suggestions for what the shopper typed so far.
    pub fn suggest(&self, q: &str) -> Result<SuggestResponse> {
        let chars = q.chars().count();
        if chars > MAX_SUGGEST_CHARS {
            return Err(SearchError::BadParameter {
                parameter: "q",
                expected: format!("at most {MAX_SUGGEST_CHARS} characters, got {chars}"),
            });
        }
        let terms = self.terms(q)?;
        if terms.is_empty() {
            return Err(SearchError::BadParameter {
                parameter: "q",
                expected: "the start of a word (1 to 100 characters)".into(),
            });
        }
        // The position first: a commit between the two then understates it, never overstates.
        let as_of = self.as_of.read().clone();
        let searcher = self.reader.searcher();
        let mut suggestions = self.title_suggestions(&searcher, &terms)?;
        let (brands, categories) = self.vocabulary(&searcher)?;
        for (kind, values) in [
            (SuggestionKind::Brand, brands),
            (SuggestionKind::Category, categories),
        ] {
            suggestions.extend(
                values
                    .iter()
                    .filter(|v| completes(&terms, &v.words))
                    .take(MAX_VALUES)
                    .map(|v| Suggestion {
                        kind,
                        text: v.text.clone(),
                        product_id: None,
                        products: v.products,
                    }),
            );
        }
        Ok(SuggestResponse { suggestions, as_of })
    }

    /// The brands and category paths of the searcher's generation (read once per generation).
    fn vocabulary(&self, searcher: &tantivy::Searcher) -> Result<(Values, Values)> {
        let generation = searcher.generation().generation_id();
        {
            let v = self.vocabulary.read();
            if v.generation == Some(generation) {
                return Ok((Arc::clone(&v.brands), Arc::clone(&v.categories)));
            }
        }
        let brands = Arc::new(values(searcher, self.fields.brand_exact, words)?);
        let categories = Arc::new(values(
            searcher,
            self.fields.category_prefix,
            last_level_words,
        )?);
        *self.vocabulary.write() = Vocabulary {
            generation: Some(generation),
            brands: Arc::clone(&brands),
            categories: Arc::clone(&categories),
        };
        Ok((brands, categories))
    }

    fn title_suggestions(
        &self,
        searcher: &tantivy::Searcher,
        terms: &[String],
    ) -> Result<Vec<Suggestion>> {
        let title = self.fields.title;
        let mut musts: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(terms.len());
        for (i, t) in terms.iter().enumerate() {
            let term = Term::from_field_text(title, t);
            // As in search: numbers match exactly; the other words within their typo allowance,
            // the last as a prefix as typed (with no typo in it).
            let number = t.chars().all(|c| c.is_ascii_digit());
            let last = i + 1 == terms.len() && !number;
            let edits = if number || last { 0 } else { allowed_edits(t) };
            let exact: Box<dyn Query> =
                Box::new(TermQuery::new(term.clone(), IndexRecordOption::Basic));
            let query: Box<dyn Query> = match LooseQuery::new(&term, t, edits, last) {
                Some(loose) => Box::new(BooleanQuery::new(vec![
                    (Occur::Should, exact),
                    (Occur::Should, Box::new(loose) as Box<dyn Query>),
                ])),
                None => exact,
            };
            musts.push((Occur::Must, query));
        }
        let query = BooleanQuery::new(musts);
        let in_stock = self.availability.snapshot();
        let live = self.values.snapshot();
        let columns = Arc::clone(&self.columns);
        let top = TopDocs::with_limit(MAX_TITLES).tweak_score(move |segment: &SegmentReader| {
            let columns = columns.of(segment).ok();
            let (in_stock, live) = (in_stock.clone(), live.clone());
            move |doc: DocId, _score: Score| match columns.as_ref().map(|c| c.ordinal(doc)) {
                Some(o) if o != u64::MAX => (u8::from(in_stock.contains(o)), live.popularity(o)),
                _ => (0, 0.0),
            }
        });
        let mut out = Vec::new();
        for ((available, _), address) in searcher.search(&query, &top)? {
            let doc = self.stored(searcher, address)?;
            out.push(Suggestion {
                kind: SuggestionKind::Title,
                text: doc.title,
                product_id: Some(doc.product_id),
                products: u64::from(available),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_but_the_last_is_whole_and_the_last_starts_one() {
        let w = words("Acme Sound Labs");
        let t = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(completes(&t(&["so"]), &w));
        assert!(completes(&t(&["acme", "lab"]), &w));
        assert!(
            !completes(&t(&["acm", "lab"]), &w),
            "only the last may be partial"
        );
        assert!(!completes(&t(&["xyz"]), &w));
        assert_eq!(
            last_level_words("Electronics/Audio Gear"),
            ["audio", "gear"]
        );
    }
}
