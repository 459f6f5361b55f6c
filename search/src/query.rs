//! A shopper's query (issue 24; ADR 0013): the request as the read API takes it, checked; the
//! tantivy query built from it; the hits, total, facets and highlights.
//!
//! - Matching: every query term must match the title, brand, category path or description. A
//!   term matches exactly (scored by BM25, k1 = 1.2, b = 0.75, tantivy's defaults, as Lucene's)
//!   or, in the title, brand and category, within the edits its length allows
//!   ([`crate::typo::allowed_edits`]; a constant score, a fraction of the exact one, so an exact
//!   match always ranks above a typo); the last term also matches the words it starts, within
//!   the same edits (as you type). A term of digits only matches exactly. Field boosts: title 4,
//!   brand 3, category 2, description 1. Matched first, as per-segment bitsets
//!   ([`crate::matching`]), then each match scored by the clauses that hold it
//!   ([`crate::scored`]): the same scores as a boolean query of the clauses.
//! - Filters (score-neutral): category (any level of the path, `Electronics/Audio`), brand
//!   (exact), in the query; price range (minor units), minimum mean rating and `in_stock=true`
//!   on each hit's live values ([`crate::values`], [`crate::availability`]).
//! - Order: in-stock products first, then by relevance, price, popularity, rating or newest;
//!   ties in index order.
//! - Facets over the whole result set (every hit, not the page): brands, category levels, price
//!   bands, ratings ("4 and up" counts every hit rated at least 4), in one pass over the hits'
//!   columns and live values ([`crate::collect`], [`crate::facets`]). A hit's price, rating, reviews and
//!   popularity are the live ones, newer than the indexed text may be.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tantivy::query::{BoostQuery, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, Term};

use crate::collect::{Filter, Hits};
use crate::index::SearchIndex;
use crate::loose::Loose;
use crate::matching::{LooseClause, Matching, Plan, PlanTerm};
use crate::scored::ScoredMatch;
use crate::typo::{allowed_edits, matches};
use crate::{Result, SearchError};

/// The longest `q` taken, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// The most hits a page holds.
pub const MAX_PER_PAGE: usize = 100;
/// How deep pages may go (as Elasticsearch's `max_result_window`).
pub const MAX_WINDOW: usize = 10_000;
/// A typo's score, as a fraction of the field's boost (an exact match scores its BM25 on top).
const FUZZY_WEIGHT: f32 = 0.2;
/// A prefix match's score, likewise.
const PREFIX_WEIGHT: f32 = 0.3;

/// How the hits are ordered (in-stock products first in every order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    Popularity,
    Rating,
    Newest,
}

impl Sort {
    pub const NAMES: &'static str = "relevance, price_asc, price_desc, popularity, rating, newest";

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "relevance" => Sort::Relevance,
            "price_asc" => Sort::PriceAsc,
            "price_desc" => Sort::PriceDesc,
            "popularity" => Sort::Popularity,
            "rating" => Sort::Rating,
            "newest" => Sort::Newest,
            _ => {
                return Err(SearchError::BadParameter {
                    parameter: "sort",
                    expected: format!("one of {}, got {s:?}", Self::NAMES),
                });
            }
        })
    }
}

/// A search as the read API takes it (`GET /v1/search?…`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub q: Option<String>,
    pub category: Option<String>,
    pub brand: Option<String>,
    /// Price bounds in minor units, inclusive.
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    /// `true`: only products in stock; otherwise those out of stock come last.
    pub in_stock: Option<bool>,
    pub rating_min: Option<f64>,
    pub sort: Option<String>,
    /// From 1.
    pub page: Option<usize>,
    pub per_page: Option<usize>,
}

/// One hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub product_id: String,
    pub title: String,
    pub brand: String,
    pub category_path: Vec<String>,
    pub price_minor: i64,
    pub currency: String,
    pub reviews: u64,
    pub mean_rating: f64,
    pub in_stock: bool,
    /// The relevance score (relevance order only).
    pub score: Option<f32>,
    /// The title with the words that matched in `<em>`.
    pub highlight: String,
}

/// A facet value and how many hits have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub value: String,
    pub count: u64,
}

/// Counts over every hit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facets {
    pub brand: Vec<Bucket>,
    pub category: Vec<Bucket>,
    pub price: Vec<Bucket>,
    pub rating: Vec<Bucket>,
}

/// The answer to a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    pub total: u64,
    pub page: usize,
    pub per_page: usize,
    pub hits: Vec<Hit>,
    pub facets: Facets,
    /// The log position the index reflected (its last commit's): availability may be newer.
    pub as_of: Option<String>,
}

/// A request checked, with its defaults.
#[derive(Debug, Clone)]
struct Checked {
    terms: Vec<String>,
    sort: Sort,
    page: usize,
    per_page: usize,
}

fn bad(parameter: &'static str, expected: impl Into<String>) -> SearchError {
    SearchError::BadParameter {
        parameter,
        expected: expected.into(),
    }
}

impl SearchIndex {
    /// The query's terms, as the index's tokenizer cuts and lowercases them.
    pub(crate) fn terms(&self, q: &str) -> Result<Vec<String>> {
        let mut analyzer = self.index.tokenizer_for_field(self.fields.title)?;
        let mut stream = analyzer.token_stream(q);
        let mut terms = Vec::new();
        while let Some(token) = stream.next() {
            terms.push(token.text.clone());
        }
        Ok(terms)
    }

    fn check(&self, r: &SearchRequest) -> Result<Checked> {
        let q = r.q.as_deref().map(str::trim).unwrap_or("");
        let filtered = r.category.is_some()
            || r.brand.is_some()
            || r.price_min.is_some()
            || r.price_max.is_some()
            || r.in_stock == Some(true)
            || r.rating_min.is_some();
        let chars = q.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(bad(
                "q",
                format!("at most {MAX_QUERY_CHARS} characters, got {chars}"),
            ));
        }
        let terms = self.terms(q)?;
        if terms.is_empty() && !filtered {
            return Err(bad(
                "q",
                "a query of 1 to 256 characters with at least one word, or a filter \
                 (category, brand, price_min, price_max, in_stock=true, rating_min)",
            ));
        }
        let sort = Sort::parse(r.sort.as_deref().unwrap_or("relevance"))?;
        let per_page = r.per_page.unwrap_or(20);
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(bad(
                "per_page",
                format!("1 to {MAX_PER_PAGE}, got {per_page}"),
            ));
        }
        let page = r.page.unwrap_or(1);
        if page == 0 || page.saturating_mul(per_page) > MAX_WINDOW {
            return Err(bad(
                "page",
                format!(
                    "from 1, within the first {MAX_WINDOW} hits (page × per_page ≤ {MAX_WINDOW}), \
                     got page {page} of {per_page}"
                ),
            ));
        }
        if let (Some(min), Some(max)) = (r.price_min, r.price_max)
            && min > max
        {
            return Err(bad(
                "price_min",
                format!("at most price_max ({max}), got {min}"),
            ));
        }
        if r.price_min.is_some_and(|p| p < 0) || r.price_max.is_some_and(|p| p < 0) {
            return Err(bad("price_min", "a price in minor units, 0 or more"));
        }
        if let Some(rating) = r.rating_min
            && !(0.0..=5.0).contains(&rating)
        {
            return Err(bad("rating_min", format!("0 to 5, got {rating}")));
        }
        Ok(Checked {
            terms,
            sort,
            page,
            per_page,
        })
    }

    /// What the query matches ([`Matching`]: every term in some field, exactly, within its
    /// edits or, the last, as a prefix; and the filters), and the clauses that score a match
    /// ([`ScoredMatch`]).
    fn query(&self, r: &SearchRequest, c: &Checked) -> Box<dyn Query> {
        let f = &self.fields;
        let loose_fields = vec![f.title, f.brand, f.category];
        let mut terms = Vec::with_capacity(c.terms.len());
        let mut scoring: Vec<Box<dyn Query>> = Vec::new();
        let mut loose_clauses = Vec::new();
        for (i, t) in c.terms.iter().enumerate() {
            // Numbers (model numbers, sizes) match exactly, as Meilisearch's `disableOnNumbers`
            // and Algolia's `allowTyposOnNumericTokens: false`: "123" is not a typo of "124",
            // and a number as typed ("12") would match a tenth of the catalog's numbers.
            let number = t.chars().all(|c| c.is_ascii_digit());
            let last = i + 1 == c.terms.len() && !number;
            let edits = if number { 0 } else { allowed_edits(t) };
            // The other words it matches: within its typo allowance and (the last term) those
            // it starts as typed (a prefix with no edits, as Elasticsearch's
            // `match_bool_prefix`), without the word itself, which the exact clauses score
            // ([`crate::loose`]); in the fields that name the product (the description repeats
            // their words).
            let loose = Loose::new(&Term::from_field_text(f.title, t), t, edits, last);
            for (field, boost) in f.boosted() {
                scoring.push(Box::new(BoostQuery::new(
                    Box::new(TermQuery::new(
                        Term::from_field_text(field, t),
                        IndexRecordOption::WithFreqs,
                    )),
                    boost,
                )));
                if loose.is_some()
                    && let Some(at) = loose_fields.iter().position(|l| *l == field)
                {
                    let weight = if last { PREFIX_WEIGHT } else { FUZZY_WEIGHT };
                    loose_clauses.push((i, at, boost * weight));
                }
            }
            terms.push(PlanTerm {
                all: Term::from_field_text(f.all, t),
                loose,
            });
        }
        // Price, rating and stock are live values, filtered in the hit loop ([`Hits`]).
        let mut filters = Vec::new();
        if let Some(category) = &r.category {
            filters.push(Term::from_field_text(f.category_prefix, category));
        }
        if let Some(brand) = &r.brand {
            filters.push(Term::from_field_text(f.brand_exact, brand));
        }
        let plan = Arc::new(Plan::new(terms, loose_fields, filters));
        for (term, field, boost) in loose_clauses {
            scoring.push(Box::new(BoostQuery::new(
                Box::new(LooseClause {
                    plan: Arc::clone(&plan),
                    term,
                    field,
                }),
                boost,
            )));
        }
        Box::new(ScoredMatch {
            required: Box::new(Matching(plan)),
            clauses: scoring,
        })
    }

    /// Runs a search.
    pub fn search(&self, r: &SearchRequest) -> Result<SearchResponse> {
        let c = self.check(r)?;
        let query = self.query(r, &c);
        // The position first: a commit between the two then understates it, never overstates.
        let as_of = self.as_of.read().clone();
        let searcher = self.reader.searcher();
        let in_stock = self.availability.snapshot();
        let offset = (c.page - 1) * c.per_page;
        let collector = Hits {
            sort: c.sort,
            top: offset + c.per_page,
            filter: Filter {
                in_stock: (r.in_stock == Some(true)).then(|| in_stock.clone()),
                price_min: r.price_min,
                price_max: r.price_max,
                rating_min: r.rating_min,
            },
            in_stock,
            values: self.values.snapshot(),
            columns: Arc::clone(&self.columns),
        };
        let gathered = searcher.search(&query, &collector)?;
        let mut hits = Vec::with_capacity(c.per_page);
        for ranked in gathered.top.iter().skip(offset) {
            hits.push(self.hit(
                &searcher,
                ranked.address,
                ranked.available,
                (c.sort == Sort::Relevance).then_some(ranked.key as f32),
                &c.terms,
            )?);
        }
        Ok(SearchResponse {
            total: gathered.total,
            page: c.page,
            per_page: c.per_page,
            hits,
            facets: gathered.tally.facets(),
            as_of,
        })
    }

    fn hit(
        &self,
        searcher: &tantivy::Searcher,
        address: DocAddress,
        in_stock: bool,
        score: Option<f32>,
        terms: &[String],
    ) -> Result<Hit> {
        let doc = self.stored(searcher, address)?;
        let highlight = self.highlight(&doc.title, terms)?;
        Ok(Hit {
            product_id: doc.product_id,
            title: doc.title,
            brand: doc.brand,
            category_path: doc.category_path,
            price_minor: doc.price_minor,
            currency: doc.currency,
            reviews: doc.reviews,
            mean_rating: doc.mean_rating,
            in_stock,
            score,
            highlight,
        })
    }

    /// `text` with every word that matches a query term (within its edits; the last term as a
    /// prefix too) in `<em>`, the rest escaped for HTML.
    fn highlight(&self, text: &str, terms: &[String]) -> Result<String> {
        let mut analyzer = self.index.tokenizer_for_field(self.fields.title)?;
        let mut stream = analyzer.token_stream(text);
        let mut out = String::with_capacity(text.len() + 16);
        let mut at = 0;
        while let Some(token) = stream.next() {
            let hit = terms
                .iter()
                .enumerate()
                .any(|(i, t)| matches(t, &token.text, i + 1 == terms.len()));
            if hit && token.offset_from >= at && token.offset_to <= text.len() {
                escape_into(&mut out, &text[at..token.offset_from]);
                out.push_str("<em>");
                escape_into(&mut out, &text[token.offset_from..token.offset_to]);
                out.push_str("</em>");
                at = token.offset_to;
            }
        }
        escape_into(&mut out, &text[at..]);
        Ok(out)
    }
}

fn escape_into(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(ch),
        }
    }
}
