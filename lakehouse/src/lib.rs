//! The lakehouse: every event of the log in Delta Lake tables (Parquet, zstd, partitioned by day),
//! written exactly once, and SQL over them with DataFusion (ADR 0009).
//!
//! - [`schema`]: the tables and their columns, one table per event type;
//! - [`rows`]: log records to Arrow rows (and unreadable records to the rejected table);
//! - [`table`]: the Delta tables, and commits that carry the log positions they reach;
//! - [`sink`]: the loop that reads the log and commits, inside `emporium run` or alone;
//! - [`sql`]: read-only SQL over every table, with time and memory limits.

pub mod bounded;
pub mod dynamic;
pub mod estimates;
pub mod functions;
pub mod plan;
pub mod rows;
pub mod sandbox;
pub mod schema;
pub mod shared;
pub mod sink;
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
    #[error("reading the event log: {0}")]
    Log(#[from] emporium_log::LogError),
}

impl LakeError {
    pub(crate) fn delta(table: &str, source: deltalake::DeltaTableError) -> Self {
        LakeError::Delta {
            table: table.to_owned(),
            source: Box::new(source),
        }
    }
}
