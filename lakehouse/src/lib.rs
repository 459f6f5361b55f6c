//! The lakehouse: every event of the log in Delta Lake tables (Parquet, zstd, partitioned by day),
//! written exactly once, and SQL over them with DataFusion (ADR 0009).
//!
//! - [`schema`]: the tables and their columns, one table per event type;
//! - [`rows`]: log records to Arrow rows (and unreadable records to the rejected table);
//! - [`table`]: the Delta tables, and commits that carry the log positions they reach;
//! - [`sink`]: the loop that reads the log and commits, inside `emporium run` or alone, and
//!   [`sink::RunningSink`], the loop as a task that stops on request;
//! - [`snapshots`]: the store's inventory as rows of `inventory_snapshots`, on a schedule;
//! - [`sql`]: read-only SQL over every table, with time and memory limits, and [`http`], the
//!   operators' `POST /v1/sql`; what its sessions add to DataFusion's planner ([`planner`]: shared
//!   subplans, sorted windows, filters above unnests, row estimates); the bounds on functions
//!   that could exhaust memory ([`bounded`], [`functions`]); and the isolation of each query
//!   ([`sandbox`]).

pub mod bounded;
pub mod functions;
pub mod http;
pub mod planner;
pub mod rebuild;
pub mod rows;
pub mod sandbox;
pub mod schema;
pub mod sink;
pub mod snapshots;
pub mod sql;
pub mod table;

use std::path::PathBuf;

pub use sink::{Sink, SinkConfig, SinkStats};
pub use table::Lake;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} cannot be a table location")]
    Path(PathBuf),
    #[error("table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    #[error("converting rows of {table} to Arrow: {source}")]
    Rows {
        table: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("the commit task stopped: {0}")]
    Task(String),
    #[error("inventory snapshot: {0}")]
    Snapshot(String),
    #[error("reading the event log: {0}")]
    Log(#[from] emporium_log::LogError),
    /// The tables hold a partition up to an offset that retention has since removed from the
    /// log: the events in between can no longer reach the lakehouse (ADR 0003).
    #[error(
        "the lakehouse cannot go on: {0}. Its tables end before the log's start, so the events in \
         between are missing from them; see README, \"When the log no longer holds the beginning\""
    )]
    Gap(#[source] emporium_log::LogError),
}

impl LakeError {
    pub(crate) fn delta(table: &str, source: deltalake::DeltaTableError) -> Self {
        LakeError::Delta {
            table: table.to_owned(),
            source: Box::new(source),
        }
    }
}

/// Why a SQL query was refused or failed ([`sql`], [`sandbox`]).
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("SQL syntax error: {0}")]
    Syntax(String),
    #[error("only queries are allowed (SELECT, WITH, VALUES, EXPLAIN): {0} is refused")]
    NotReadOnly(String),
    #[error("{0}")]
    Plan(String),
    #[error("the query needs more than the {limit} bytes of memory it may use: {detail}")]
    ResourcesExhausted { limit: usize, detail: String },
    #[error("the query ran longer than its limit of {0:?} and was cancelled")]
    Timeout(std::time::Duration),
    #[error("the query failed: {0}")]
    Execution(String),
    #[error(transparent)]
    Lake(#[from] LakeError),
}
