//! The index: one tantivy document per product, upserted by product id, committed in batches
//! (ADR 0013). Each commit records, as its payload, the log position the index reflects, so a
//! restart reopens the index and replays only what follows. The reader is reloaded in process
//! after each commit, so a commit is searchable at once (no directory watcher). Segments are
//! merged by tantivy's log merge policy: a commit a second leaves a bounded number of them
//! (`benches/search.rs` measures it).

use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tantivy::indexer::LogMergePolicy;
use tantivy::schema::{
    FAST, Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::availability::Availability;
use crate::collect::ColumnCache;
use crate::document::SearchDocument;
use crate::values::{LiveValues, ValueTable, fingerprint};
use crate::{Result, SearchError};

/// The index's memory budget for buffering documents before it writes a segment.
const WRITER_MEMORY: usize = 64 << 20;

/// The fields of the index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub product_id: Field,
    pub ordinal: Field,
    pub title: Field,
    pub brand: Field,
    pub category: Field,
    pub description: Field,
    /// Every word of the four text fields, without frequencies: what a query term must match
    /// ([`crate::scored`]: matched here, scored in the fields).
    pub all: Field,
    /// Exact values for filters and facets.
    pub brand_exact: Field,
    pub category_prefix: Field,
    /// The values as of the document's last re-index: read back at open only; queries read the
    /// live ones ([`crate::values`]).
    pub price: Field,
    pub rating: Field,
    pub reviews: Field,
    pub popularity: Field,
    pub listed: Field,
    /// The text's fingerprint ([`crate::values::fingerprint`]).
    pub text_hash: Field,
    /// The whole document as JSON, for the hits.
    pub source: Field,
}

impl Fields {
    /// The text fields a query matches, with their boosts (title > brand > category >
    /// description).
    pub(crate) fn boosted(&self) -> [(Field, f32); 4] {
        [
            (self.title, 4.0),
            (self.brand, 3.0),
            (self.category, 2.0),
            (self.description, 1.0),
        ]
    }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    // Term frequencies for BM25; no positions (no phrase queries).
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        product_id: b.add_text_field("product_id", STRING | FAST),
        ordinal: b.add_u64_field("ordinal", FAST),
        title: b.add_text_field("title", text.clone()),
        brand: b.add_text_field("brand", text.clone()),
        category: b.add_text_field("category", text.clone()),
        description: b.add_text_field("description", text),
        all: b.add_text_field(
            "all",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("default")
                    .set_index_option(IndexRecordOption::Basic),
            ),
        ),
        brand_exact: b.add_text_field("brand_exact", STRING | FAST),
        category_prefix: b.add_text_field("category_prefix", STRING | FAST),
        price: b.add_i64_field("price", FAST),
        rating: b.add_f64_field("rating", FAST),
        reviews: b.add_u64_field("reviews", FAST),
        popularity: b.add_f64_field("popularity", FAST),
        listed: b.add_i64_field("listed", FAST),
        text_hash: b.add_u64_field("text_hash", FAST),
        source: b.add_bytes_field("source", STORED),
    };
    (b.build(), fields)
}

/// How big the index is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexStats {
    pub documents: u64,
    pub segments: usize,
}

/// The product search index.
pub struct SearchIndex {
    pub(crate) index: Index,
    pub(crate) fields: Fields,
    writer: Mutex<IndexWriter>,
    pub(crate) reader: IndexReader,
    pub(crate) availability: Arc<Availability>,
    /// Price, rating, reviews and popularity, live ([`crate::values`]).
    pub(crate) values: ValueTable,
    /// The searchable segments' columns the hit loop reads ([`crate::collect`]).
    pub(crate) columns: Arc<ColumnCache>,
    /// The position the searchable generation reflects (its commit's payload).
    pub(crate) as_of: RwLock<Option<String>>,
    /// The brands and categories suggestions complete to ([`crate::suggest`]).
    pub(crate) vocabulary: RwLock<crate::suggest::Vocabulary>,
}

impl SearchIndex {
    /// Opens the index in `dir`, creating it if there is none. An index of another schema
    /// (another version of Emporium) is refused ([`SearchError::OtherSchema`]).
    pub fn open(dir: &Path) -> Result<Self> {
        let open_error = |reason: String| SearchError::Open {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        let directory =
            tantivy::directory::MmapDirectory::open(dir).map_err(|e| open_error(e.to_string()))?;
        let (schema, fields) = schema();
        let index = if Index::exists(&directory).map_err(|e| open_error(e.to_string()))? {
            let index = Index::open(directory)?;
            if index.schema() != schema {
                return Err(SearchError::OtherSchema {
                    path: dir.display().to_string(),
                });
            }
            index
        } else {
            Index::create(directory, schema, tantivy::IndexSettings::default())?
        };
        Self::with_index(index, fields)
    }

    /// An index in memory (tests, benchmarks).
    pub fn in_memory() -> Result<Self> {
        let (schema, fields) = schema();
        Self::with_index(Index::create_in_ram(schema), fields)
    }

    fn with_index(index: Index, fields: Fields) -> Result<Self> {
        let writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        writer.set_merge_policy(Box::new(LogMergePolicy::default()));
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let as_of = index.load_metas()?.payload;
        let this = Self {
            index,
            fields,
            writer: Mutex::new(writer),
            reader,
            availability: Arc::new(Availability::default()),
            values: ValueTable::default(),
            columns: Arc::default(),
            as_of: RwLock::new(as_of),
            vocabulary: RwLock::default(),
        };
        this.restore_ordinals()?;
        this.columns.refresh(&this.reader.searcher())?;
        Ok(this)
    }

    /// Reads back every indexed product's ordinal, values and text fingerprint, so the live
    /// tables and the index agree after a reopen.
    fn restore_ordinals(&self) -> Result<()> {
        let searcher = self.reader.searcher();
        for segment in searcher.segment_readers() {
            let ff = segment.fast_fields();
            let ordinals = ff.u64("ordinal")?;
            let Some(ids) = ff.str("product_id")? else {
                continue;
            };
            let (price, rating, reviews) =
                (ff.i64("price")?, ff.f64("rating")?, ff.u64("reviews")?);
            let (popularity, text) = (ff.f64("popularity")?, ff.u64("text_hash")?);
            let mut id = String::new();
            for doc in segment.doc_ids_alive() {
                let (Some(ordinal), Some(term)) = (ordinals.first(doc), ids.term_ords(doc).next())
                else {
                    continue;
                };
                id.clear();
                ids.ord_to_str(term, &mut id)
                    .map_err(|e| SearchError::Index(e.into()))?;
                self.availability.restore(id.clone(), ordinal);
                self.values.set(
                    ordinal,
                    &LiveValues {
                        price_minor: price.first(doc).unwrap_or(0),
                        mean_rating: rating.first(doc).unwrap_or(0.0),
                        reviews: reviews.first(doc).unwrap_or(0),
                        popularity: popularity.first(doc).unwrap_or(0.0),
                    },
                );
                self.values.set_text(ordinal, text.first(doc).unwrap_or(0));
            }
        }
        Ok(())
    }

    /// Replaces (or adds) the product's document. Its values (price, rating, reviews,
    /// popularity) are searchable at once; its text after the next commit, and only a text that
    /// differs from the indexed one is re-indexed. Gives whether it was.
    pub fn upsert(&self, doc: &SearchDocument) -> Result<bool> {
        let ordinal = self.availability.ordinal(&doc.product_id);
        self.values.set(ordinal, &LiveValues::of(doc));
        let text = fingerprint(doc);
        if self.values.text(ordinal) == text {
            return Ok(false);
        }
        let f = &self.fields;
        let mut d = TantivyDocument::default();
        d.add_text(f.product_id, &doc.product_id);
        d.add_u64(f.ordinal, ordinal);
        d.add_text(f.title, &doc.title);
        d.add_text(f.brand, &doc.brand);
        d.add_text(f.category, doc.category_path.join(" "));
        d.add_text(f.description, &doc.description);
        for text in [&doc.title, &doc.brand, &doc.description]
            .into_iter()
            .chain(&doc.category_path)
        {
            d.add_text(f.all, text);
        }
        d.add_text(f.brand_exact, &doc.brand);
        for prefix in doc.category_prefixes() {
            d.add_text(f.category_prefix, prefix);
        }
        d.add_i64(f.price, doc.price_minor);
        d.add_f64(f.rating, doc.mean_rating);
        d.add_u64(f.reviews, doc.reviews);
        d.add_f64(f.popularity, doc.popularity);
        d.add_i64(f.listed, doc.listed_ms);
        d.add_u64(f.text_hash, text);
        let source = serde_json::to_vec(doc).map_err(|e| SearchError::Source(e.to_string()))?;
        d.add_bytes(f.source, &source);
        {
            let writer = self.writer.lock();
            writer.delete_term(Term::from_field_text(f.product_id, &doc.product_id));
            writer.add_document(d)?;
        }
        self.values.set_text(ordinal, text);
        Ok(true)
    }

    /// Sets the product's live values only (at start, from the store's documents, which may be
    /// newer than the indexed ones); its text is left as indexed.
    pub fn set_values(&self, doc: &SearchDocument) {
        let ordinal = self.availability.ordinal(&doc.product_id);
        self.values.set(ordinal, &LiveValues::of(doc));
    }

    /// Sets the product's popularity only, indexed or not yet (the pipeline's sink, from the
    /// `product_popularity` view); visible to the next query.
    pub fn set_popularity(&self, product_id: &str, popularity: f64) {
        let ordinal = self.availability.ordinal(product_id);
        self.values.set_popularity(ordinal, popularity);
    }

    /// Sets every product's popularity to 0 (before the pipeline's sink loads the store's, which
    /// hold none for a product without enough interest).
    pub fn forget_popularity(&self) {
        self.values.forget_popularity();
    }

    /// The product's live values (`None`: never given).
    pub fn values(&self, product_id: &str) -> Option<LiveValues> {
        let ordinal = self.availability.known(product_id)?;
        self.values.snapshot().get(ordinal)
    }

    /// Removes the product (discontinued); gone after the next commit.
    pub fn remove(&self, product_id: &str) -> Result<()> {
        let term = Term::from_field_text(self.fields.product_id, product_id);
        self.writer.lock().delete_term(term);
        self.availability.set(product_id, false);
        if let Some(ordinal) = self.availability.known(product_id) {
            self.values.set_text(ordinal, 0);
        }
        Ok(())
    }

    /// Deletes every document (a rebuild follows); gone after the next commit. Ordinals stay
    /// assigned.
    pub fn clear(&self) -> Result<()> {
        self.writer.lock().delete_all_documents()?;
        self.values.forget_texts();
        Ok(())
    }

    /// Marks the product in stock or not: the next query sees it, no commit needed.
    pub fn set_in_stock(&self, product_id: &str, in_stock: bool) {
        self.availability.set(product_id, in_stock);
    }

    /// The live availability table.
    pub fn availability(&self) -> &Arc<Availability> {
        &self.availability
    }

    /// Commits what was upserted and removed, recording `position` (the log position the index
    /// now reflects), and makes it searchable.
    pub fn commit(&self, position: &str) -> Result<()> {
        {
            let mut writer = self.writer.lock();
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(position);
            prepared.commit()?;
        }
        self.reader.reload()?;
        // The new segments' columns now, not in the first query that meets them.
        self.columns.refresh(&self.reader.searcher())?;
        *self.as_of.write() = Some(position.to_owned());
        Ok(())
    }

    /// The searchable document of a product (`None`: not in the index as of the last commit),
    /// with its live values.
    pub fn get(&self, product_id: &str) -> Result<Option<SearchDocument>> {
        let searcher = self.reader.searcher();
        let query = tantivy::query::TermQuery::new(
            Term::from_field_text(self.fields.product_id, product_id),
            IndexRecordOption::Basic,
        );
        let top = searcher.search(
            &query,
            &tantivy::collector::TopDocs::with_limit(1).order_by_score(),
        )?;
        match top.first() {
            Some((_, address)) => self.stored(&searcher, *address).map(Some),
            None => Ok(None),
        }
    }

    /// The document stored at `address`.
    pub(crate) fn stored(
        &self,
        searcher: &tantivy::Searcher,
        address: tantivy::DocAddress,
    ) -> Result<SearchDocument> {
        use tantivy::schema::Value as _;
        let stored: TantivyDocument = searcher.doc(address)?;
        let source = stored
            .get_first(self.fields.source)
            .and_then(|v| v.as_bytes())
            .ok_or_else(|| SearchError::Source("a document without its source".into()))?;
        let mut doc: SearchDocument = serde_json::from_slice(source)
            .map_err(|e| SearchError::Source(format!("a document's source: {e}")))?;
        if let Some(v) = self.values(&doc.product_id) {
            doc.price_minor = v.price_minor;
            doc.mean_rating = v.mean_rating;
            doc.reviews = v.reviews;
            doc.popularity = v.popularity;
        }
        Ok(doc)
    }

    /// The position recorded by the last commit (`None`: never committed).
    pub fn position(&self) -> Option<String> {
        self.as_of.read().clone()
    }

    /// Documents and segments searchable now.
    pub fn stats(&self) -> IndexStats {
        let searcher = self.reader.searcher();
        IndexStats {
            documents: searcher.num_docs(),
            segments: searcher.segment_readers().len(),
        }
    }
}
