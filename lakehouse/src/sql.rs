//! Read-only SQL over every lakehouse table (DataFusion), for `emporium sql` and `POST /v1/sql`.
//!
//! - Every table under the lakehouse directory is registered under its own name (`order_placed`,
//!   `inventory_snapshots`, ...), at its latest commit when the query starts.
//! - Only queries run: the statement is parsed first and anything but `SELECT`/`WITH`/`VALUES`/
//!   `EXPLAIN` is refused with [`SqlError::NotReadOnly`]; DataFusion's own DDL/DML switches are off
//!   as well.
//! - Each query runs under a memory pool of `memory_limit` bytes, without spilling to disk (an
//!   operator that needs more fails with [`SqlError::ResourcesExhausted`]), and is cancelled after
//!   `timeout`.
//! - Filters on `date` prune whole partitions (Delta partition values), and a column a newer
//!   schema added reads as null in older files (Delta schema evolution).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::{
    CacheManagerConfig, DEFAULT_METADATA_CACHE_LIMIT, FileMetadataCache,
};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use deltalake::DeltaTable;
use futures::StreamExt;
use tokio::sync::Mutex;

use crate::LakeError;
use crate::functions::UtcDateTrunc;
use crate::planner::{Rules, add_rules};
use crate::table::{is_table, open_table, table_names};

pub use crate::SqlError;

/// Limits on one query.
#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub memory_limit: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            memory_limit: 4 * 1024 * 1024 * 1024,
        }
    }
}

/// A query's result.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// SQL over the tables of one lakehouse directory. Cheap to share: tables are loaded once, and a
/// query brings the tables it names up to their latest commit; the scan providers are kept while a
/// table's version does not change. Parquet footers are cached across queries (a file's cached
/// footer is used only while its size and modification time match; data files are never
/// rewritten in place anyway).
pub struct SqlEngine {
    root: PathBuf,
    limits: SqlLimits,
    rules: Rules,
    tables: Mutex<BTreeMap<String, Loaded>>,
    footers: Arc<FileMetadataCache>,
}

struct Loaded {
    table: DeltaTable,
    /// The provider of `version`, built on first use.
    provider: Option<(Option<u64>, Arc<dyn TableProvider>)>,
}

impl SqlEngine {
    pub fn new(root: impl Into<PathBuf>, limits: SqlLimits) -> Self {
        Self {
            root: root.into(),
            limits,
            rules: Rules::default(),
            tables: Mutex::new(BTreeMap::new()),
            footers: Arc::new(
                DefaultCache::new(DEFAULT_METADATA_CACHE_LIMIT).with_name("lakehouse footers"),
            ),
        }
    }

    /// The same engine with the planner of `rules` (the lakehouse's rules by default).
    pub fn with_rules(mut self, rules: Rules) -> Self {
        self.rules = rules;
        self
    }

    pub fn limits(&self) -> SqlLimits {
        self.limits
    }

    /// A session with no tables yet, under the memory limit.
    fn context(&self) -> Result<SessionContext, SqlError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_limit, 1.0)
            // Each query has its own memory pool, but all share the footers read before.
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(Arc::clone(&self.footers))),
            )
            // No spilling: a query keeps to its memory or fails, and ad hoc queries never fill
            // the disk the log and the store live on.
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| SqlError::Execution(e.to_string()))?;
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("emporium", "lakehouse");
        // A partial aggregation that barely reduces its input (a GROUP BY on a near-unique key,
        // such as sku) stops after 10k rows instead of 100k and passes rows straight on.
        config
            .options_mut()
            .execution
            .skip_partial_aggregation_probe_rows_threshold = 10_000;
        // ... and when it keeps more than half of them (DataFusion: 80%): a partial DISTINCT
        // that keeps two rows in three does the final's work twice.
        config
            .options_mut()
            .execution
            .skip_partial_aggregation_probe_ratio_threshold = 0.5;
        let builder = SessionStateBuilder::new()
            .with_runtime_env(runtime)
            .with_default_features();
        let state = add_rules(builder, &mut config, self.rules)
            .with_config(config)
            .build();
        let ctx = SessionContext::new_with_state(state);
        // `date_trunc` on UTC timestamps by arithmetic (`functions.rs`).
        ctx.register_udf(UtcDateTrunc::udf());
        // Functions that make large values from small arguments, bounded (`bounded.rs`).
        crate::bounded::register(&ctx);
        Ok(ctx)
    }

    /// Registers the tables named in `only` (every table for `None`), each at its latest commit.
    /// A name that is not a table is left for the planner to report.
    async fn register(
        &self,
        ctx: &SessionContext,
        only: Option<&BTreeSet<String>>,
    ) -> Result<(), SqlError> {
        let mut tables = self.tables.lock().await;
        self.load_new(&mut tables).await?;
        for (name, loaded) in tables.iter_mut() {
            if only.is_some_and(|only| !only.contains(name)) {
                continue;
            }
            if is_table(&self.root.join(name.as_str())) {
                loaded
                    .table
                    .update_state()
                    .await
                    .map_err(|source| LakeError::delta(name, source))?;
            }
            loaded
                .table
                .update_datafusion_session(&ctx.state())
                .map_err(|source| LakeError::delta(name, source))?;
            let version = loaded.table.version();
            let provider = match &loaded.provider {
                Some((v, provider)) if *v == version => Arc::clone(provider),
                _ => {
                    let provider = loaded
                        .table
                        .table_provider()
                        .await
                        .map_err(|e| SqlError::Execution(format!("table {name}: {e}")))?;
                    loaded.provider = Some((version, Arc::clone(&provider)));
                    provider
                }
            };
            ctx.register_table(name.as_str(), provider)
                .map_err(|e| SqlError::Execution(e.to_string()))?;
        }
        Ok(())
    }

    /// Loads the tables created since the last call.
    async fn load_new(&self, tables: &mut BTreeMap<String, Loaded>) -> Result<(), SqlError> {
        if self.root.is_dir() {
            for name in table_names(&self.root)? {
                if let Entry::Vacant(slot) = tables.entry(name) {
                    let table = open_table(&self.root, slot.key()).await?;
                    slot.insert(Loaded {
                        table,
                        provider: None,
                    });
                }
            }
        }
        Ok(())
    }

    /// The names of the tables, sorted.
    pub async fn table_names(&self) -> Result<Vec<String>, SqlError> {
        let mut tables = self.tables.lock().await;
        self.load_new(&mut tables).await?;
        Ok(tables.keys().cloned().collect())
    }

    /// [`SqlEngine::query`] on threads of its own, answered by the deadline whatever the query
    /// is doing, and cancelled when the process grows past the memory limit (`sandbox.rs`):
    /// what a server that takes queries from the network runs.
    /// `held` is kept until the query's thread has ended (`sandbox::run`).
    pub async fn query_isolated<H: Send + 'static>(
        self: &Arc<Self>,
        sql: &str,
        held: H,
    ) -> Result<QueryResult, SqlError> {
        let engine = Arc::clone(self);
        let sql = sql.to_owned();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        crate::sandbox::run(
            threads,
            self.limits.timeout,
            self.limits.memory_limit,
            held,
            move || async move { engine.query(&sql).await },
        )
        .await
    }

    /// Runs one read-only statement under the limits, on the caller's runtime.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, SqlError> {
        let ctx = self.context()?;
        let statement = check_read_only(&ctx, sql)?;
        // Only the tables the statement names are brought up to date; the information schema
        // lists them all.
        let named = ctx
            .state()
            .resolve_table_references(&statement)
            .map_err(|e| SqlError::Plan(strip_context(&e)))?;
        let everything = named
            .iter()
            .any(|r| r.schema() == Some("information_schema"));
        let only: BTreeSet<String> = named.iter().map(|r| r.table().to_owned()).collect();
        self.register(&ctx, (!everything).then_some(&only)).await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let limits = self.limits;
        let run = async {
            let frame = ctx
                .sql_with_options(sql, options)
                .await
                .map_err(|e| classify(e, limits))?;
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            // The result counts against the memory limit too: the pool bounds the operators, not
            // what is collected here.
            let mut stream = frame
                .execute_stream()
                .await
                .map_err(|e| classify(e, limits))?;
            let mut batches = Vec::new();
            let mut bytes = 0;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(|e| classify(e, limits))?;
                bytes += batch.get_array_memory_size();
                if bytes > limits.memory_limit {
                    return Err(SqlError::ResourcesExhausted {
                        limit: limits.memory_limit,
                        detail: "the result itself is larger: add a LIMIT or aggregate".into(),
                    });
                }
                batches.push(batch);
            }
            Ok(QueryResult { schema, batches })
        };
        tokio::time::timeout(limits.timeout, run)
            .await
            .map_err(|_| SqlError::Timeout(limits.timeout))?
    }
}

/// The statement, if it only reads.
fn check_read_only(ctx: &SessionContext, sql: &str) -> Result<DfStatement, SqlError> {
    let dialect = ctx.state().config().options().sql_parser.dialect;
    let statement = ctx
        .state()
        .sql_to_statement(sql, &dialect)
        .map_err(|e| SqlError::Syntax(strip_context(&e)))?;
    let reads = match &statement {
        DfStatement::Statement(inner) => match inner.as_ref() {
            Statement::Query(_) => Ok(()),
            Statement::Explain { statement, .. } if matches!(**statement, Statement::Query(_)) => {
                Ok(())
            }
            other => Err(SqlError::NotReadOnly(statement_kind(other))),
        },
        DfStatement::Explain(explain) => match explain.statement.as_ref() {
            DfStatement::Statement(inner) if matches!(**inner, Statement::Query(_)) => Ok(()),
            _ => Err(SqlError::NotReadOnly("EXPLAIN of a non-query".to_owned())),
        },
        _ => Err(SqlError::NotReadOnly("this statement".to_owned())),
    };
    reads.map(|()| statement)
}

/// `INSERT`, `CREATE TABLE`, ...: the statement's leading keywords, for the error message.
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second] if ["CREATE", "DROP", "ALTER"].contains(first) => {
            format!("{first} {second}")
        }
        [first, ..] => (*first).to_owned(),
        [] => "the statement".to_owned(),
    }
}

fn strip_context(e: &DataFusionError) -> String {
    e.strip_backtrace()
}

fn classify(error: DataFusionError, limits: SqlLimits) -> SqlError {
    let text = error.strip_backtrace();
    match error.find_root() {
        DataFusionError::SQL(..) => SqlError::Syntax(text),
        DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => SqlError::Plan(text),
        DataFusionError::ResourcesExhausted(detail) => SqlError::ResourcesExhausted {
            limit: limits.memory_limit,
            detail: detail.clone(),
        },
        // Bad casts, division by zero: the query's fault, not the server's.
        DataFusionError::NotImplemented(_) | DataFusionError::ArrowError(..) => {
            SqlError::Plan(text)
        }
        _ => SqlError::Execution(text),
    }
}

/// How a result is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A table for a terminal.
    Table,
    Csv,
    /// A JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
    Parquet,
    /// The Arrow IPC stream format.
    Arrow,
}

impl Format {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "table" => Format::Table,
            "csv" => Format::Csv,
            "json" => Format::Json,
            "ndjson" | "jsonl" => Format::Ndjson,
            "parquet" => Format::Parquet,
            "arrow" => Format::Arrow,
            _ => return None,
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Table => "text/plain; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }

    /// The format an HTTP `Accept` header asks for (JSON when it names none we write).
    pub fn from_accept(accept: &str) -> Self {
        accept
            .split(',')
            .map(|part| part.split(';').next().unwrap_or("").trim())
            .find_map(|media| match media {
                "application/json" => Some(Format::Json),
                "text/csv" => Some(Format::Csv),
                "application/x-ndjson" => Some(Format::Ndjson),
                "application/vnd.apache.arrow.stream" => Some(Format::Arrow),
                "application/vnd.apache.parquet" => Some(Format::Parquet),
                "text/plain" => Some(Format::Table),
                _ => None,
            })
            .unwrap_or(Format::Json)
    }
}

/// Writes `result` in `format`.
pub fn encode(result: &QueryResult, format: Format) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    match format {
        Format::Table => {
            let text = arrow::util::pretty::pretty_format_batches(&result.batches)?.to_string();
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if result.batches.is_empty() {
                writer.write(&RecordBatch::new_empty(result.schema.clone()))?;
            }
            for batch in &result.batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut out);
            for batch in &result.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
        }
        Format::Ndjson => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
            for batch in &result.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
        Format::Parquet => {
            let mut writer = parquet::arrow::ArrowWriter::try_new(
                &mut out,
                result.schema.clone(),
                Some(crate::table::writer_properties()),
            )
            .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?;
            for batch in &result.batches {
                writer
                    .write(batch)
                    .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?;
            }
            writer
                .close()
                .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?;
        }
        Format::Arrow => {
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &result.schema)?;
            for batch in &result.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    Ok(out)
}
