//! The embedded store: one redb file (copy-on-write B+trees, MVCC), for `emporium run` on one
//! machine. Chosen over fjall by `benches/store_engines.rs` (ADR 0006).
//!
//! Tables: `products`, `inventory` and `orders` map an id to `seq (8 bytes, big-endian) ‖ value`;
//! an order's value starts with its user id (`u16` length ‖ bytes) so reads can authorize without
//! parsing the JSON. `user_orders` is keyed by (user id, placed-at µs, order id) and holds the
//! order's summary, so a user's page is one reverse range scan. `meta` holds the positions.
//!
//! A batch is one write transaction committed with fsync: its documents and positions become
//! visible (and durable) together or not at all. Writes and commits run on tokio's blocking pool,
//! never on the threads that answer HTTP; a read is a short in-memory lookup in a read
//! transaction and runs inline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Document, OrderDocument, OrderPage, Result, Store, StoreError, decode_cursor};
use crate::views::{Upsert, WriteBatch};

const PRODUCTS: TableDefinition<&str, &[u8]> = TableDefinition::new("products");
const INVENTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("inventory");
const ORDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("orders");
const USER_ORDERS: TableDefinition<(&str, i64, &str), &[u8]> = TableDefinition::new("user_orders");
const VIEWS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("views");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The pieces of the incremental checkpoint, by name.
const CHECKPOINT_PIECES: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoint_pieces");
const POSITIONS: &str = "positions";
/// The pipeline's checkpoint (opaque bytes), beside the documents it goes with.
const CHECKPOINT: &str = "checkpoint";
/// The current writer's claim (`u64`, big-endian; ADR 0012).
const WRITER: &str = "writer";

/// The store's current writer claim (0: never claimed).
fn current_writer(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64> {
    match meta.get(WRITER).map_err(redb_error)? {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 8] = v.value().try_into().map_err(|_| StoreError::Corrupt {
                key: WRITER.into(),
                detail: format!("{} bytes, expected 8", v.value().len()),
            })?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

/// Refuses a write by a writer a newer claim fenced.
fn check_writer(meta: &impl ReadableTable<&'static str, &'static [u8]>, writer: u64) -> Result<()> {
    let current = current_writer(meta)?;
    if writer < current {
        return Err(StoreError::Fenced {
            epoch: writer,
            current,
        });
    }
    Ok(())
}

/// The file name of the store inside a data directory.
pub const FILE_NAME: &str = "store.redb";

/// The redb store. Cheap to share: clone the `Arc`.
pub struct EmbeddedStore {
    db: Arc<Handle>,
    path: PathBuf,
}

/// The database, closed and opened again after an I/O error. redb refuses every operation after
/// one ("previous I/O error") until the file is reopened, so without this a disk that was full
/// for a moment stopped the store for good, though the dataflow restarted (the fault suite's
/// full-disk case).
struct Handle {
    path: PathBuf,
    db: RwLock<Option<Database>>,
}

impl Handle {
    fn open(path: &Path) -> Result<Database> {
        Database::builder()
            // 1 GiB of page cache (redb's default, filled only as pages are read): a million
            // orders with their index fit, so reads rarely leave memory (benches/serving.rs).
            .set_cache_size(1 << 30)
            .create(path)
            .map_err(redb_error)
    }

    /// Runs `f` on the database. After an I/O error the database is reopened, for the next call.
    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        {
            let guard = self.db.read();
            if let Some(db) = guard.as_ref() {
                let result = f(db);
                if matches!(result, Err(StoreError::Io { .. })) {
                    drop(guard);
                    self.reopen();
                }
                return result;
            }
        }
        self.reopen();
        match self.db.read().as_ref() {
            Some(db) => f(db),
            None => Err(StoreError::Io {
                path: self.path.display().to_string(),
                source: std::io::Error::other("closed after an I/O error, and not reopened yet"),
            }),
        }
    }

    /// Closes the database and opens it again (a reader or writer holds the lock until done).
    fn reopen(&self) {
        let mut db = self.db.write();
        // Closed first: redb locks the file, so a second open would be refused.
        drop(db.take());
        match Self::open(&self.path) {
            Ok(reopened) => {
                tracing::warn!(path = %self.path.display(), "store reopened after an I/O error");
                *db = Some(reopened);
            }
            Err(e) => tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "store not reopened after an I/O error; trying again at the next operation"
            ),
        }
    }
}

fn redb_error(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::DatabaseAlreadyOpen => StoreError::Embedded(
            "the store file is open in another process (is another `emporium run` using this \
             data directory?)"
                .into(),
        ),
        redb::Error::Io(source) => StoreError::Io {
            path: FILE_NAME.into(),
            source,
        },
        redb::Error::PreviousIo => StoreError::Io {
            path: FILE_NAME.into(),
            source: std::io::Error::other(
                "an earlier write failed; the store is reopened before it is used again",
            ),
        },
        e => StoreError::Embedded(e.to_string()),
    }
}

impl EmbeddedStore {
    /// A page of a table keyed by one string, in key order after `after`.
    fn scan(
        &self,
        table: TableDefinition<&str, &[u8]>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>> {
        use std::ops::Bound;
        self.db.with(|db| {
            let txn = db.begin_read().map_err(redb_error)?;
            let table = txn.open_table(table).map_err(redb_error)?;
            let lower = match after {
                Some(key) => Bound::Excluded(key),
                None => Bound::Unbounded,
            };
            let mut page = Vec::with_capacity(limit.min(10_000));
            for entry in table
                .range::<&str>((lower, Bound::Unbounded))
                .map_err(redb_error)?
                .take(limit)
            {
                let (key, value) = entry.map_err(redb_error)?;
                let key = key.value().to_owned();
                let (seq, json) = split_seq(&key, value.value())?;
                page.push((
                    key,
                    Document {
                        seq,
                        json: Bytes::from(json),
                    },
                ));
            }
            Ok(page)
        })
    }

    /// Opens the store in `dir` (creating `dir/store.redb` if missing).
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = Handle::open(&path)?;
        // Create every table up front so readers never meet a missing one.
        let txn = db.begin_write().map_err(redb_error)?;
        for table in [PRODUCTS, INVENTORY, ORDERS, META, CHECKPOINT_PIECES] {
            txn.open_table(table).map_err(redb_error)?;
        }
        txn.open_table(USER_ORDERS).map_err(redb_error)?;
        txn.open_table(VIEWS).map_err(redb_error)?;
        txn.commit().map_err(redb_error)?;
        Ok(Self {
            db: Arc::new(Handle {
                path: path.clone(),
                db: RwLock::new(Some(db)),
            }),
            path,
        })
    }

    /// Documents of each kind: (products, inventory, orders).
    pub fn counts(&self) -> Result<(u64, u64, u64)> {
        self.db.with(|db| {
            let txn = db.begin_read().map_err(redb_error)?;
            let len = |t| -> Result<u64> {
                txn.open_table(t)
                    .map_err(redb_error)?
                    .len()
                    .map_err(redb_error)
            };
            Ok((len(PRODUCTS)?, len(INVENTORY)?, len(ORDERS)?))
        })
    }

    /// Runs `write` in one write transaction, on a blocking thread, once `writer` is checked to
    /// hold the store's claim; commits it.
    async fn write_as(
        &self,
        writer: u64,
        what: &'static str,
        write: impl FnOnce(&redb::WriteTransaction) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            db.with(|db| {
                let txn = db.begin_write().map_err(redb_error)?;
                check_writer(&txn.open_table(META).map_err(redb_error)?, writer)?;
                write(&txn)?;
                txn.commit().map_err(redb_error)
            })
        })
        .await
        .map_err(|e| StoreError::Embedded(format!("{what} task failed: {e}")))?
    }

    /// The values of `keys` in `table`, in one read transaction.
    fn read_many(
        &self,
        table: TableDefinition<&str, &[u8]>,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.db.with(|db| {
            let txn = db.begin_read().map_err(redb_error)?;
            let table = txn.open_table(table).map_err(redb_error)?;
            keys.iter()
                .map(|key| {
                    let raw = table.get(key.as_str()).map_err(redb_error)?;
                    Ok(raw.map(|v| v.value().to_vec()))
                })
                .collect()
        })
    }

    fn read(&self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<Option<Vec<u8>>> {
        self.db.with(|db| {
            let txn = db.begin_read().map_err(redb_error)?;
            let table = txn.open_table(table).map_err(redb_error)?;
            Ok(table
                .get(key)
                .map_err(redb_error)?
                .map(|v| v.value().to_vec()))
        })
    }
}

/// `seq ‖ body`, and back.
fn encode(seq: u64, prefix: &[u8], json: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + prefix.len() + json.len());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(prefix);
    v.extend_from_slice(json);
    v
}

fn split_seq(key: &str, value: &[u8]) -> Result<(u64, Vec<u8>)> {
    let (seq, rest) = value
        .split_at_checked(8)
        .ok_or_else(|| StoreError::Corrupt {
            key: key.to_owned(),
            detail: format!("{} bytes, shorter than its seq", value.len()),
        })?;
    let seq = u64::from_be_bytes(seq.try_into().expect("invariant: split at 8"));
    Ok((seq, rest.to_vec()))
}

fn stored_seq(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>> {
    let Some(v) = table.get(key).map_err(redb_error)? else {
        return Ok(None);
    };
    seq_of(key, v.value()).map(Some)
}

/// A document's table and key, for ordering a batch.
fn upsert_key(upsert: &Upsert) -> (u8, &str, &str) {
    match upsert {
        Upsert::Product { view, .. } => (0, "", &view.product_id),
        Upsert::Inventory { view, .. } => (1, "", &view.sku),
        Upsert::Order { view, .. } => (2, "", &view.order_id),
        Upsert::View { view, key, .. } => (3, view, key),
    }
}

fn seq_of(key: &str, value: &[u8]) -> Result<u64> {
    value
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt {
            key: key.to_owned(),
            detail: "shorter than its seq".into(),
        })
}

/// Writes `value` (`seq ‖ …`) at `key` (`label` names it in errors) unless the stored value has
/// a higher seq; `true` if written. One B-tree walk: the insert gives back the old value, which
/// is put back in the rare case it was newer (a replay after a restart writes older seqs).
fn write_newer<'k, K: redb::Key + 'static>(
    table: &mut redb::Table<K, &[u8]>,
    key: &K::SelfType<'k>,
    label: &str,
    seq: u64,
    value: &[u8],
) -> Result<bool> {
    let newer = match table.insert(key, value).map_err(redb_error)? {
        Some(old) if seq_of(label, old.value())? > seq => Some(old.value().to_vec()),
        _ => None,
    };
    match newer {
        Some(old) => {
            table.insert(key, old.as_slice()).map_err(redb_error)?;
            Ok(false)
        }
        None => Ok(true),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("invariant: views serialize to JSON")
}

// Every commit is durable (fsync). Committing most batches with `Durability::None` and one a
// second durably was measured slower here (benches/end_to_end.rs, 1M products: store write p99
// 0.34 s vs 0.18 s at 60k events/s).
fn apply_batch(db: &Database, batch: &WriteBatch) -> Result<()> {
    let txn = db.begin_write().map_err(redb_error)?;
    // The claim is read in the batch's own write transaction: no claim slips in between.
    check_writer(&txn.open_table(META).map_err(redb_error)?, batch.writer)?;
    {
        let mut products = txn.open_table(PRODUCTS).map_err(redb_error)?;
        let mut inventory = txn.open_table(INVENTORY).map_err(redb_error)?;
        let mut orders = txn.open_table(ORDERS).map_err(redb_error)?;
        let mut user_orders = txn.open_table(USER_ORDERS).map_err(redb_error)?;
        let mut views = txn.open_table(VIEWS).map_err(redb_error)?;
        // In key order: neighbouring inserts walk the same B-tree pages, which stay cached.
        let mut upserts: Vec<&Upsert> = batch.upserts.iter().collect();
        upserts.sort_by(|a, b| upsert_key(a).cmp(&upsert_key(b)));
        for upsert in upserts {
            let seq = upsert.seq();
            match upsert {
                Upsert::Product { view, .. } => {
                    let value = encode(seq, &[], &to_json(view));
                    write_newer(
                        &mut products,
                        &view.product_id.as_str(),
                        &view.product_id,
                        seq,
                        &value,
                    )?;
                }
                Upsert::Inventory { view, .. } => {
                    let value = encode(seq, &[], &to_json(view));
                    write_newer(&mut inventory, &view.sku.as_str(), &view.sku, seq, &value)?;
                }
                Upsert::Order { view, .. } => {
                    let user = view.user_id.as_bytes();
                    let len = u16::try_from(user.len()).map_err(|_| StoreError::Corrupt {
                        key: view.order_id.clone(),
                        detail: "user id longer than 65535 bytes".into(),
                    })?;
                    let mut prefix = len.to_be_bytes().to_vec();
                    prefix.extend_from_slice(user);
                    let value = encode(seq, &prefix, &to_json(view));
                    if write_newer(
                        &mut orders,
                        &view.order_id.as_str(),
                        &view.order_id,
                        seq,
                        &value,
                    )? {
                        let key = (
                            view.user_id.as_str(),
                            view.placed_at().timestamp_micros(),
                            view.order_id.as_str(),
                        );
                        let entry = to_json(&view.summary());
                        user_orders
                            .insert(key, entry.as_slice())
                            .map_err(redb_error)?;
                    }
                }
                Upsert::View {
                    view, key, json, ..
                } => {
                    let value = encode(seq, &[], json);
                    write_newer(&mut views, &(view.as_str(), key.as_str()), key, seq, &value)?;
                }
            }
        }
        let mut meta = txn.open_table(META).map_err(redb_error)?;
        if stored_seq(&meta, POSITIONS)?.is_none_or(|s| s <= batch.seq) {
            let value = encode(batch.seq, &[], &to_json(&batch.positions));
            meta.insert(POSITIONS, value.as_slice())
                .map_err(redb_error)?;
        }
    }
    txn.commit().map_err(redb_error)
}

#[async_trait]
impl Store for EmbeddedStore {
    fn describe(&self) -> String {
        format!("embedded store at {}", self.path.display())
    }

    async fn claim_writer(&self) -> Result<u64> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            db.with(|db| {
                let txn = db.begin_write().map_err(redb_error)?;
                let claim = {
                    let mut meta = txn.open_table(META).map_err(redb_error)?;
                    let claim = current_writer(&meta)? + 1;
                    meta.insert(WRITER, claim.to_be_bytes().as_slice())
                        .map_err(redb_error)?;
                    claim
                };
                txn.commit().map_err(redb_error)?;
                Ok(claim)
            })
        })
        .await
        .map_err(|e| StoreError::Embedded(format!("claim task failed: {e}")))?
    }

    async fn writer_claim(&self) -> Result<u64> {
        self.db.with(|db| {
            let txn = db.begin_read().map_err(redb_error)?;
            current_writer(&txn.open_table(META).map_err(redb_error)?)
        })
    }

    async fn apply(&self, batch: WriteBatch) -> Result<()> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || db.with(|db| apply_batch(db, &batch)))
            .await
            .map_err(|e| StoreError::Embedded(format!("write task failed: {e}")))?
    }

    async fn positions(&self) -> Result<Option<Vec<u64>>> {
        let Some(raw) = self.read(META, POSITIONS)? else {
            return Ok(None);
        };
        let (_, raw) = split_seq(POSITIONS, &raw)?;
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key: POSITIONS.into(),
                detail: e.to_string(),
            })
    }

    async fn put_checkpoint(&self, bytes: &[u8], writer: u64) -> Result<()> {
        let bytes = bytes.to_vec();
        self.write_as(writer, "checkpoint", move |txn| {
            let mut meta = txn.open_table(META).map_err(redb_error)?;
            meta.insert(CHECKPOINT, bytes.as_slice())
                .map_err(redb_error)?;
            Ok(())
        })
        .await
    }

    async fn checkpoint(&self) -> Result<Option<Vec<u8>>> {
        self.read(META, CHECKPOINT)
    }

    async fn put_checkpoint_piece(&self, name: &str, bytes: &[u8], writer: u64) -> Result<()> {
        let (name, bytes) = (name.to_owned(), bytes.to_vec());
        self.write_as(writer, "checkpoint piece", move |txn| {
            let mut pieces = txn.open_table(CHECKPOINT_PIECES).map_err(redb_error)?;
            pieces
                .insert(name.as_str(), bytes.as_slice())
                .map_err(redb_error)?;
            Ok(())
        })
        .await
    }

    async fn checkpoint_piece(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.read(CHECKPOINT_PIECES, name)
    }

    async fn delete_checkpoint_pieces_except(&self, keep: &[String], writer: u64) -> Result<()> {
        let keep = keep.to_vec();
        self.write_as(writer, "checkpoint piece", move |txn| {
            let mut pieces = txn.open_table(CHECKPOINT_PIECES).map_err(redb_error)?;
            pieces
                .retain(|name, _| keep.iter().any(|k| k == name))
                .map_err(redb_error)?;
            Ok(())
        })
        .await
    }

    async fn view(&self, view: &str, key: &str) -> Result<Option<Document>> {
        let raw = self.db.with(|db| {
            let txn = db.begin_read().map_err(redb_error)?;
            let table = txn.open_table(VIEWS).map_err(redb_error)?;
            Ok(table
                .get((view, key))
                .map_err(redb_error)?
                .map(|v| v.value().to_vec()))
        })?;
        document(key, raw)
    }

    async fn product(&self, product_id: &str) -> Result<Option<Document>> {
        document(product_id, self.read(PRODUCTS, product_id)?)
    }

    async fn views_many(&self, view: &str, keys: &[String]) -> Result<Vec<Option<Document>>> {
        let raws = self.db.with(|db| {
            let txn = db.begin_read().map_err(redb_error)?;
            let table = txn.open_table(VIEWS).map_err(redb_error)?;
            keys.iter()
                .map(|key| {
                    let raw = table.get((view, key.as_str())).map_err(redb_error)?;
                    Ok(raw.map(|v| v.value().to_vec()))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        keys.iter()
            .zip(raws)
            .map(|(key, raw)| document(key, raw))
            .collect()
    }

    async fn products_many(&self, ids: &[String]) -> Result<Vec<Option<Document>>> {
        let raws = self.read_many(PRODUCTS, ids)?;
        ids.iter()
            .zip(raws)
            .map(|(id, raw)| document(id, raw))
            .collect()
    }

    async fn inventory(&self, sku: &str) -> Result<Option<Document>> {
        document(sku, self.read(INVENTORY, sku)?)
    }

    async fn scan_inventory(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>> {
        self.scan(INVENTORY, after, limit)
    }

    async fn scan_products(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>> {
        self.scan(PRODUCTS, after, limit)
    }

    async fn scan_view(
        &self,
        view: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>> {
        use std::ops::Bound;
        self.db.with(|db| {
            let txn = db.begin_read().map_err(redb_error)?;
            let table = txn.open_table(VIEWS).map_err(redb_error)?;
            let lower = match after {
                Some(key) => Bound::Excluded((view, key)),
                None => Bound::Included((view, "")),
            };
            let mut page = Vec::with_capacity(limit.min(10_000));
            for entry in table
                .range::<(&str, &str)>((lower, Bound::Unbounded))
                .map_err(redb_error)?
            {
                let (key, value) = entry.map_err(redb_error)?;
                let (of, key) = key.value();
                if of != view || page.len() == limit {
                    break;
                }
                let (seq, json) = split_seq(key, value.value())?;
                page.push((
                    key.to_owned(),
                    Document {
                        seq,
                        json: Bytes::from(json),
                    },
                ));
            }
            Ok(page)
        })
    }

    async fn order(&self, order_id: &str) -> Result<Option<OrderDocument>> {
        let Some(raw) = self.read(ORDERS, order_id)? else {
            return Ok(None);
        };
        let (seq, rest) = split_seq(order_id, &raw)?;
        let corrupt = || StoreError::Corrupt {
            key: order_id.to_owned(),
            detail: "bad user id prefix".into(),
        };
        let len = rest
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            .ok_or_else(corrupt)?;
        let user = rest.get(2..2 + len).ok_or_else(corrupt)?;
        let user_id = std::str::from_utf8(user).map_err(|_| corrupt())?.to_owned();
        Ok(Some(OrderDocument {
            seq,
            user_id,
            json: Bytes::copy_from_slice(&rest[2 + len..]),
        }))
    }

    async fn user_orders(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OrderPage> {
        let limit = limit.max(1);
        let (end_at, end_id) = match after {
            Some(cursor) => decode_cursor(cursor)?,
            None => (i64::MAX, String::new()),
        };
        self.db.with(|db| {
            let txn = db.begin_read().map_err(redb_error)?;
            let table = txn.open_table(USER_ORDERS).map_err(redb_error)?;
            let range = table
                .range((user_id, i64::MIN, "")..(user_id, end_at, end_id.as_str()))
                .map_err(redb_error)?;
            let entries = range.rev().take(limit + 1).map(|entry| {
                let (key, value) = entry.map_err(redb_error)?;
                serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt {
                    key: format!("{:?}", key.value()),
                    detail: e.to_string(),
                })
            });
            OrderPage::from_scan(limit, entries)
        })
    }
}

fn document(key: &str, raw: Option<Vec<u8>>) -> Result<Option<Document>> {
    raw.map(|raw| {
        let (seq, json) = split_seq(key, &raw)?;
        Ok(Document {
            seq,
            json: Bytes::from(json),
        })
    })
    .transpose()
}
