//! Product search (issue 24): a tantivy index of one search document per product, and beside it
//! a live table of which products are in stock, so that a reservation or a shipment changes what
//! `in_stock=true` returns without re-indexing the product (ADR 0013).
//!
//! - [`document`]: what the index keeps of a product ([`SearchDocument`]);
//! - [`availability`]: the live in-stock table, by a dense ordinal that each indexed document
//!   carries as a fast field;
//! - [`values`]: price, rating, reviews and popularity, live by the same ordinal, so an order, a
//!   review or a price change is searchable at once and re-indexes nothing;
//! - [`index`]: the index on disk (`<data dir>/search/`) or in memory: upserts, removals, commits
//!   that record the log position they reflect, and a reader reloaded after each commit;
//! - [`query`]: a shopper's query: BM25 with field boosts, typo tolerance by term length
//!   (Elasticsearch's fuzziness `AUTO`), prefix match on the last term, filters, sorts with
//!   in-stock products first, facets over the whole result set, highlights;
//! - [`suggest`]: autocomplete of titles, brands and categories as the shopper types;
//! - `matching`: which documents a query matches, as per-segment bitsets intersected word by
//!   word; `scored`: each match scored by the clauses that hold it, seeking each to it;
//! - `collect`: the one pass over every hit: live filters, count, facets, the top of the order;
//! - [`facets`]: the counts over every hit (brands, category levels, price and rating bands);
//! - [`judged`]: the judged query set and its scores (success@3, nDCG@10);
//! - [`typo`]: the edit distances allowed and the Damerau–Levenshtein distance that highlights
//!   use.
//!
//! No I/O but the index's own directory: the pipeline feeds it, the read API queries it.

pub mod availability;
mod collect;
pub mod document;
pub mod facets;
pub mod index;
pub mod judged;
mod loose;
mod matching;
pub mod query;
mod scored;
pub mod suggest;
pub mod typo;
pub mod values;

pub use availability::Availability;
pub use document::SearchDocument;
pub use index::{IndexStats, SearchIndex};
pub use query::{Bucket, Facets, Hit, SearchRequest, SearchResponse, Sort};
pub use suggest::{SuggestResponse, Suggestion, SuggestionKind};
pub use values::LiveValues;

/// What went wrong in a search or an index operation.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index {path}: {reason}")]
    Open { path: String, reason: String },
    /// The directory holds an index of another schema (written by another version): it can
    /// only be rebuilt.
    #[error(
        "search index {path}: written with another schema (another version of Emporium); \
         delete the directory to rebuild it"
    )]
    OtherSchema { path: String },
    /// A request parameter out of its allowed range: which, and what is allowed.
    #[error("{parameter}: {expected}")]
    BadParameter {
        parameter: &'static str,
        expected: String,
    },
    /// A document's stored source that does not encode or decode.
    #[error("search document source: {0}")]
    Source(String),
}

pub type Result<T, E = SearchError> = std::result::Result<T, E>;
