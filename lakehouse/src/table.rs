//! The Delta tables under one directory, and the one rule that makes the sink exactly-once
//! (ADR 0009): **every commit to a table records, in the same atomic Delta commit, the log
//! positions its rows reach** — one Delta `txn` action per log partition, `appId`
//! `emporium-lakehouse/<topic>/<partition>`, `version` the next offset to read. A table's rows are
//! then exactly the records of its type below its recorded positions: a restart reads from there,
//! and a crash before a commit leaves only Parquet files no commit names, which no reader sees.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::optimize::Metrics as CompactMetrics;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use url::Url;

use crate::LakeError;
use crate::schema::DATE_COLUMN;

/// Size compaction aims at for each Parquet file.
pub const TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// The Delta `appId` under which a table records how far into `partition` of `topic` it is.
pub fn app_id(topic: &str, partition: u32) -> String {
    format!("emporium-lakehouse/{topic}/{partition}")
}

/// Parquet settings of every file the lakehouse writes: zstd level 3.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("3 is a valid zstd level"),
        ))
        .build()
}

/// Opens the existing table `name` under `root` at its latest commit.
pub async fn open_table(root: &Path, name: &str) -> Result<DeltaTable, LakeError> {
    let url = table_url(root, name)?;
    deltalake::open_table(url)
        .await
        .map_err(|source| LakeError::delta(name, source))
}

/// The names of the tables under `root` (subdirectories holding a Delta log), sorted.
pub fn table_names(root: &Path) -> Result<Vec<String>, LakeError> {
    let entries = std::fs::read_dir(root).map_err(|source| LakeError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| is_table(&e.path()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// The Delta tables of one lakehouse directory, one subdirectory each.
pub struct Lake {
    root: PathBuf,
    tables: BTreeMap<String, DeltaTable>,
}

fn table_url(root: &Path, name: &str) -> Result<Url, LakeError> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).map_err(|source| LakeError::Io {
        path: dir.clone(),
        source,
    })?;
    let dir = dir.canonicalize().map_err(|source| LakeError::Io {
        path: dir.clone(),
        source,
    })?;
    Url::from_directory_path(&dir).map_err(|()| LakeError::Path(dir))
}

/// Whether `dir` holds a Delta table (a `_delta_log` with at least one commit or checkpoint).
pub fn is_table(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("_delta_log"))
        .map(|mut entries| entries.any(|e| e.is_ok()))
        .unwrap_or(false)
}

impl Lake {
    /// Opens every table under `root` (creating `root` if missing).
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, LakeError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| LakeError::Io {
            path: root.clone(),
            source,
        })?;
        let mut lake = Self {
            root,
            tables: BTreeMap::new(),
        };
        for name in table_names(&lake.root)? {
            let table = lake.load(&name).await?;
            lake.tables.insert(name, table);
        }
        Ok(lake)
    }

    /// The table `name`: loaded at its latest commit if it exists, else a handle whose first
    /// write creates it.
    async fn load(&self, name: &str) -> Result<DeltaTable, LakeError> {
        let url = table_url(&self.root, name)?;
        let result = if is_table(&self.root.join(name)) {
            deltalake::open_table(url).await
        } else {
            deltalake::DeltaTableBuilder::from_url(url).and_then(|b| b.build())
        };
        result.map_err(|source| LakeError::delta(name, source))
    }

    /// The tables that exist, by name.
    pub fn tables(&self) -> &BTreeMap<String, DeltaTable> {
        &self.tables
    }

    /// For each of the `partitions` partitions of `topic`, the next offset `table` has to read:
    /// every record of its type below it is in the table. 0 for a table that does not exist.
    pub async fn positions(
        &self,
        table: &str,
        topic: &str,
        partitions: u32,
    ) -> Result<Vec<u64>, LakeError> {
        let Some(delta) = self.tables.get(table) else {
            return Ok(vec![0; partitions as usize]);
        };
        let state = delta
            .snapshot()
            .map_err(|source| LakeError::delta(table, source))?;
        let mut out = Vec::with_capacity(partitions as usize);
        for partition in 0..partitions {
            let version = state
                .transaction_version(delta.log_store().as_ref(), app_id(topic, partition))
                .await
                .map_err(|source| LakeError::delta(table, source))?;
            out.push(version.map_or(0, |v| u64::try_from(v).unwrap_or(0)));
        }
        Ok(out)
    }

    /// Appends `batches` to `table` (creating it, partitioned by date, if it does not exist) and
    /// records `positions` (the next offset per partition of `topic`) in the same commit. Batches
    /// without rows record the positions only; empty `positions` record none (snapshots).
    pub async fn append(
        &mut self,
        table: &str,
        batches: Vec<RecordBatch>,
        topic: &str,
        positions: &[u64],
    ) -> Result<usize, LakeError> {
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let delta = match self.tables.remove(table) {
            Some(t) => t,
            None => self.load(table).await?,
        };
        let transactions = positions
            .iter()
            .enumerate()
            .map(|(partition, &next)| {
                Transaction::new(app_id(topic, partition as u32), next as i64)
            })
            .collect();
        let written = delta
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(SchemaMode::Merge)
            .with_partition_columns([DATE_COLUMN])
            .with_writer_properties(writer_properties())
            .with_commit_properties(
                CommitProperties::default().with_application_transactions(transactions),
            )
            .await
            .map_err(|source| LakeError::delta(table, source))?;
        self.tables.insert(table.to_owned(), written);
        Ok(rows)
    }

    /// Rewrites the small files of each date partition of `table` into files of about
    /// [`TARGET_FILE_BYTES`] (Delta `OPTIMIZE`, bin-packing). Readers see the same rows before and
    /// after; the recorded positions are kept.
    pub async fn compact(&mut self, table: &str) -> Result<CompactMetrics, LakeError> {
        let Some(delta) = self.tables.remove(table) else {
            return Ok(CompactMetrics::default());
        };
        let result = delta
            .clone()
            .optimize()
            .with_target_size(NonZeroU64::new(TARGET_FILE_BYTES).expect("non-zero"))
            .with_writer_properties(writer_properties())
            .await;
        match result {
            Ok((compacted, metrics)) => {
                self.tables.insert(table.to_owned(), compacted);
                Ok(metrics)
            }
            Err(source) => {
                self.tables.insert(table.to_owned(), delta);
                Err(LakeError::delta(table, source))
            }
        }
    }
}
