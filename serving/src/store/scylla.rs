//! The ScyllaDB store, for the distributed deployment: the schema in `serving/cql/schema.cql`
//! (one table per read path, partition keys in ADR 0006), applied on connect when missing;
//! prepared statements at LOCAL_QUORUM; documents written with `USING TIMESTAMP <seq>` so that a
//! replayed write never replaces a newer document, and read back with `WRITETIME(doc)`.
//!
//! A batch writes its documents concurrently (each is its own partition: a multi-partition CQL
//! batch would only add a coordinator hop), then, once all succeeded, its positions. Statements
//! are idempotent (explicit timestamps), so the driver's retry policy may retry them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{ExecutionError, RequestAttemptError};
use scylla::policies::retry::DefaultRetryPolicy;
use scylla::response::PagingState;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};

use super::{Document, OrderDocument, OrderPage, Result, Store, StoreError, decode_cursor};
use crate::views::{Upsert, WriteBatch};

/// The schema, with `{{keyspace}}` and `{{replication_factor}}` to fill in.
pub const SCHEMA_CQL: &str = include_str!("../../cql/schema.cql");

/// Documents written at once by one batch.
const WRITE_CONCURRENCY: usize = 128;

/// Settings of the ScyllaDB store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaConfig {
    /// `host:port` of one or more nodes.
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub replication_factor: u32,
    /// Names this pipeline's rows in the positions table.
    pub pipeline: String,
    pub request_timeout: Duration,
}

impl ScyllaConfig {
    /// Defaults for `nodes` (comma-separated `host:port` list, as in `EMPORIUM_SCYLLA_URI`).
    pub fn new(nodes: &str) -> Self {
        Self {
            nodes: nodes
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| n.trim_start_matches("scylla://").to_owned())
                .collect(),
            keyspace: "emporium".into(),
            replication_factor: 3,
            pipeline: "inventory".into(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The schema's statements for `config`, in order.
pub fn schema_statements(config: &ScyllaConfig) -> Result<Vec<String>> {
    let ks = &config.keyspace;
    let valid = !ks.is_empty()
        && ks.len() <= 48
        && ks.starts_with(|c: char| c.is_ascii_alphabetic())
        && ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(StoreError::Scylla(format!(
            "keyspace {ks:?}: expected a letter then up to 47 letters, digits or underscores"
        )));
    }
    if config.replication_factor == 0 {
        return Err(StoreError::Scylla(
            "replication factor: expected at least 1".into(),
        ));
    }
    let text: String = SCHEMA_CQL
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("{{keyspace}}", ks)
        .replace(
            "{{replication_factor}}",
            &config.replication_factor.to_string(),
        );
    Ok(text
        .split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect())
}

struct Statements {
    put_product: PreparedStatement,
    put_inventory: PreparedStatement,
    put_order: PreparedStatement,
    put_user_order: PreparedStatement,
    put_position: PreparedStatement,
    get_product: PreparedStatement,
    get_inventory: PreparedStatement,
    scan_inventory: PreparedStatement,
    scan_inventory_after: PreparedStatement,
    scan_products: PreparedStatement,
    scan_products_after: PreparedStatement,
    scan_views: PreparedStatement,
    scan_views_after: PreparedStatement,
    get_order: PreparedStatement,
    get_user_orders: PreparedStatement,
    get_user_orders_after: PreparedStatement,
    get_positions: PreparedStatement,
    put_view: PreparedStatement,
    get_view: PreparedStatement,
    write_checkpoint_chunk: PreparedStatement,
    write_checkpoint_head: PreparedStatement,
    get_checkpoint_head: PreparedStatement,
    get_checkpoint_chunks: PreparedStatement,
    delete_checkpoint: PreparedStatement,
    write_piece_chunk: PreparedStatement,
    write_piece_name: PreparedStatement,
    get_piece_name: PreparedStatement,
    get_piece_chunks: PreparedStatement,
    list_piece_names: PreparedStatement,
    delete_piece: PreparedStatement,
    delete_piece_name: PreparedStatement,
    get_writer_claim: PreparedStatement,
    insert_writer_claim: PreparedStatement,
    raise_writer_claim: PreparedStatement,
}

/// The statement texts, by name (unit-tested; prepared on connect).
pub fn statement_texts(ks: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "put_product",
            format!("INSERT INTO {ks}.products (product_id, doc) VALUES (?, ?) USING TIMESTAMP ?"),
        ),
        (
            "put_inventory",
            format!("INSERT INTO {ks}.inventory (sku, doc) VALUES (?, ?) USING TIMESTAMP ?"),
        ),
        (
            "put_order",
            format!(
                "INSERT INTO {ks}.orders (order_id, user_id, doc) VALUES (?, ?, ?) USING TIMESTAMP ?"
            ),
        ),
        (
            "put_user_order",
            format!(
                "INSERT INTO {ks}.user_orders (user_id, placed_at, order_id, summary) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
            ),
        ),
        (
            "put_position",
            format!(
                "INSERT INTO {ks}.positions (pipeline, log_partition, next_offset) VALUES (?, ?, ?) USING TIMESTAMP ?"
            ),
        ),
        (
            "get_product",
            format!("SELECT doc, WRITETIME(doc) FROM {ks}.products WHERE product_id = ?"),
        ),
        (
            "get_inventory",
            format!("SELECT doc, WRITETIME(doc) FROM {ks}.inventory WHERE sku = ?"),
        ),
        // Snapshots page through the whole table in token order.
        (
            "scan_inventory",
            format!("SELECT sku, doc, WRITETIME(doc) FROM {ks}.inventory LIMIT ?"),
        ),
        (
            "scan_inventory_after",
            format!(
                "SELECT sku, doc, WRITETIME(doc) FROM {ks}.inventory WHERE token(sku) > token(?) LIMIT ?"
            ),
        ),
        (
            "scan_products",
            format!("SELECT product_id, doc, WRITETIME(doc) FROM {ks}.products LIMIT ?"),
        ),
        (
            "scan_products_after",
            format!(
                "SELECT product_id, doc, WRITETIME(doc) FROM {ks}.products WHERE token(product_id) > token(?) LIMIT ?"
            ),
        ),
        // One view's documents: every view's, in token order, filtered here (rebuilds only).
        (
            "scan_views",
            format!("SELECT view, key, doc, WRITETIME(doc) FROM {ks}.view_documents LIMIT ?"),
        ),
        (
            "scan_views_after",
            format!(
                "SELECT view, key, doc, WRITETIME(doc) FROM {ks}.view_documents WHERE token(view, key) > token(?, ?) LIMIT ?"
            ),
        ),
        (
            "get_order",
            format!("SELECT user_id, doc, WRITETIME(doc) FROM {ks}.orders WHERE order_id = ?"),
        ),
        (
            "get_user_orders",
            format!(
                "SELECT placed_at, order_id, summary FROM {ks}.user_orders WHERE user_id = ? LIMIT ?"
            ),
        ),
        (
            "get_user_orders_after",
            format!(
                "SELECT placed_at, order_id, summary FROM {ks}.user_orders WHERE user_id = ? AND (placed_at, order_id) < (?, ?) LIMIT ?"
            ),
        ),
        (
            "get_positions",
            format!("SELECT log_partition, next_offset FROM {ks}.positions WHERE pipeline = ?"),
        ),
        (
            "put_view",
            format!(
                "INSERT INTO {ks}.view_documents (view, key, doc) VALUES (?, ?, ?) USING TIMESTAMP ?"
            ),
        ),
        (
            "get_view",
            format!(
                "SELECT doc, WRITETIME(doc) FROM {ks}.view_documents WHERE view = ? AND key = ?"
            ),
        ),
        (
            "write_checkpoint_chunk",
            format!(
                "INSERT INTO {ks}.checkpoint_chunks (pipeline, generation, chunk, body) \
                 VALUES (?, ?, ?, ?)"
            ),
        ),
        (
            "write_checkpoint_head",
            format!(
                "INSERT INTO {ks}.checkpoint_head (pipeline, generation, chunks) VALUES (?, ?, ?)"
            ),
        ),
        (
            "get_checkpoint_head",
            format!("SELECT generation, chunks FROM {ks}.checkpoint_head WHERE pipeline = ?"),
        ),
        (
            "get_checkpoint_chunks",
            format!(
                "SELECT body FROM {ks}.checkpoint_chunks \
                 WHERE pipeline = ? AND generation = ? AND chunk = ?"
            ),
        ),
        (
            "delete_checkpoint",
            format!("DELETE FROM {ks}.checkpoint_chunks WHERE pipeline = ? AND generation = ?"),
        ),
        // The pieces of an incremental checkpoint: chunks, then the name that lists them.
        (
            "write_piece_chunk",
            format!(
                "INSERT INTO {ks}.checkpoint_pieces (pipeline, name, chunk, body) \
                 VALUES (?, ?, ?, ?)"
            ),
        ),
        (
            "write_piece_name",
            format!(
                "INSERT INTO {ks}.checkpoint_piece_names (pipeline, name, chunks) VALUES (?, ?, ?)"
            ),
        ),
        (
            "get_piece_name",
            format!(
                "SELECT chunks FROM {ks}.checkpoint_piece_names WHERE pipeline = ? AND name = ?"
            ),
        ),
        (
            "get_piece_chunks",
            format!(
                "SELECT body FROM {ks}.checkpoint_pieces \
                 WHERE pipeline = ? AND name = ? AND chunk = ?"
            ),
        ),
        (
            "list_piece_names",
            format!("SELECT name FROM {ks}.checkpoint_piece_names WHERE pipeline = ?"),
        ),
        (
            "delete_piece",
            format!("DELETE FROM {ks}.checkpoint_pieces WHERE pipeline = ? AND name = ?"),
        ),
        (
            "delete_piece_name",
            format!("DELETE FROM {ks}.checkpoint_piece_names WHERE pipeline = ? AND name = ?"),
        ),
        // Writer claims (ADR 0012): lightweight transactions, read at SERIAL consistency.
        (
            "get_writer_claim",
            format!("SELECT claim FROM {ks}.writer_claims WHERE pipeline = ?"),
        ),
        (
            "insert_writer_claim",
            format!("INSERT INTO {ks}.writer_claims (pipeline, claim) VALUES (?, ?) IF NOT EXISTS"),
        ),
        // Raises the claim, or (with the same value twice) checks it is still the current one.
        (
            "raise_writer_claim",
            format!("UPDATE {ks}.writer_claims SET claim = ? WHERE pipeline = ? IF claim = ?"),
        ),
    ]
}

/// A checkpoint is written in chunks of this size: ScyllaDB warns on cells over 1 MiB.
const CHECKPOINT_CHUNK: usize = 512 * 1024;

/// Is this error worth retrying later (the cluster is busy or a node is down), as opposed to a
/// mistake that a retry would repeat?
pub fn is_transient(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::RequestTimeout(_) | ExecutionError::ConnectionPoolError(_) => true,
        ExecutionError::LastAttemptError(a) => match a {
            RequestAttemptError::BrokenConnectionError(_)
            | RequestAttemptError::UnableToAllocStreamId => true,
            RequestAttemptError::DbError(db, _) => db.can_speculative_retry(),
            _ => false,
        },
        _ => false,
    }
}

fn exec_error(e: ExecutionError) -> StoreError {
    let kind = if is_transient(&e) {
        "transient"
    } else {
        "permanent"
    };
    StoreError::Scylla(format!("{kind}: {e}"))
}

fn scylla_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Scylla(format!("{what}: {e}"))
}

/// A `seq` as a CQL write timestamp (bigint).
fn ts(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// The ScyllaDB store.
pub struct ScyllaStore {
    session: Arc<Session>,
    statements: Statements,
    config: ScyllaConfig,
}

impl ScyllaStore {
    /// A page of a table keyed by one text column, in token order after `after`.
    async fn scan(
        &self,
        what: &str,
        first: &PreparedStatement,
        next: &PreparedStatement,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>> {
        let limit = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
        let result = match after {
            Some(key) => self.session.execute_unpaged(next, (key, limit)).await,
            None => self.session.execute_unpaged(first, (limit,)).await,
        };
        let rows = result
            .map_err(exec_error)?
            .into_rows_result()
            .map_err(|e| scylla_error(what, e))?;
        let mut page = Vec::new();
        for row in rows
            .rows::<(String, Option<String>, Option<i64>)>()
            .map_err(|e| scylla_error(what, e))?
        {
            let (key, doc, seq) = row.map_err(|e| scylla_error(what, e))?;
            if let Some(doc) = doc {
                page.push((
                    key,
                    Document {
                        seq: seq.unwrap_or(0).max(0) as u64,
                        json: Bytes::from(doc),
                    },
                ));
            }
        }
        Ok(page)
    }

    /// Connects, applies the schema if missing, and prepares every statement.
    pub async fn connect(config: ScyllaConfig) -> Result<Self> {
        if config.nodes.is_empty() {
            return Err(StoreError::Scylla(
                "no ScyllaDB node given: expected host:port[,host:port...]".into(),
            ));
        }
        let schema = schema_statements(&config)?;
        let profile = ExecutionProfile::builder()
            .consistency(Consistency::LocalQuorum)
            .request_timeout(Some(config.request_timeout))
            .retry_policy(Arc::new(DefaultRetryPolicy::new()))
            .build();
        let session = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .connection_timeout(Duration::from_secs(5))
            .default_execution_profile_handle(profile.into_handle())
            .build()
            .await
            .map_err(|e| scylla_error(&format!("connect to {}", config.nodes.join(",")), e))?;
        for statement in schema {
            session
                .query_unpaged(statement.as_str(), &[])
                .await
                .map_err(|e| scylla_error(&format!("apply schema ({statement})"), e))?;
        }
        let mut prepared = std::collections::HashMap::new();
        for (name, text) in statement_texts(&config.keyspace) {
            let mut p = session
                .prepare(text.as_str())
                .await
                .map_err(|e| scylla_error(&format!("prepare {name}"), e))?;
            if name.ends_with("_writer_claim") {
                // Lightweight transactions: linearizable, and not retried blindly (a raise that
                // went through would fail its condition on a retry).
                p.set_serial_consistency(Some(SerialConsistency::LocalSerial));
                if name.starts_with("get_") {
                    p.set_consistency(Consistency::LocalSerial);
                } else {
                    p.set_consistency(Consistency::LocalQuorum);
                }
            } else {
                p.set_consistency(Consistency::LocalQuorum);
                p.set_is_idempotent(true);
            }
            prepared.insert(name, p);
        }
        let mut take = |name: &str| {
            prepared
                .remove(name)
                .ok_or_else(|| StoreError::Scylla(format!("statement {name} not prepared")))
        };
        let statements = Statements {
            put_product: take("put_product")?,
            put_inventory: take("put_inventory")?,
            put_order: take("put_order")?,
            put_user_order: take("put_user_order")?,
            put_position: take("put_position")?,
            get_product: take("get_product")?,
            get_inventory: take("get_inventory")?,
            scan_inventory: take("scan_inventory")?,
            scan_inventory_after: take("scan_inventory_after")?,
            scan_products: take("scan_products")?,
            scan_products_after: take("scan_products_after")?,
            scan_views: take("scan_views")?,
            scan_views_after: take("scan_views_after")?,
            get_order: take("get_order")?,
            get_user_orders: take("get_user_orders")?,
            get_user_orders_after: take("get_user_orders_after")?,
            get_positions: take("get_positions")?,
            put_view: take("put_view")?,
            get_view: take("get_view")?,
            write_checkpoint_chunk: take("write_checkpoint_chunk")?,
            write_checkpoint_head: take("write_checkpoint_head")?,
            get_checkpoint_head: take("get_checkpoint_head")?,
            get_checkpoint_chunks: take("get_checkpoint_chunks")?,
            delete_checkpoint: take("delete_checkpoint")?,
            write_piece_chunk: take("write_piece_chunk")?,
            write_piece_name: take("write_piece_name")?,
            get_piece_name: take("get_piece_name")?,
            get_piece_chunks: take("get_piece_chunks")?,
            list_piece_names: take("list_piece_names")?,
            delete_piece: take("delete_piece")?,
            delete_piece_name: take("delete_piece_name")?,
            get_writer_claim: take("get_writer_claim")?,
            insert_writer_claim: take("insert_writer_claim")?,
            raise_writer_claim: take("raise_writer_claim")?,
        };
        Ok(Self {
            session: Arc::new(session),
            statements,
            config,
        })
    }

    async fn write(&self, upsert: &Upsert) -> Result<()> {
        let s = &self.statements;
        let session = &self.session;
        let t = ts(upsert.seq());
        match upsert {
            Upsert::Product { view, .. } => {
                session
                    .execute_unpaged(&s.put_product, (&view.product_id, json(view), t))
                    .await
                    .map_err(exec_error)?;
            }
            Upsert::Inventory { view, .. } => {
                session
                    .execute_unpaged(&s.put_inventory, (&view.sku, json(view), t))
                    .await
                    .map_err(exec_error)?;
            }
            Upsert::View {
                view, key, json, ..
            } => {
                let doc = String::from_utf8_lossy(json).into_owned();
                session
                    .execute_unpaged(&s.put_view, (view, key, doc, t))
                    .await
                    .map_err(exec_error)?;
            }
            Upsert::Order { view, .. } => {
                session
                    .execute_unpaged(&s.put_order, (&view.order_id, &view.user_id, json(view), t))
                    .await
                    .map_err(exec_error)?;
                let entry = view.summary();
                session
                    .execute_unpaged(
                        &s.put_user_order,
                        (
                            &view.user_id,
                            entry.placed_at.timestamp_micros(),
                            &view.order_id,
                            json(&entry),
                            t,
                        ),
                    )
                    .await
                    .map_err(exec_error)?;
            }
        }
        Ok(())
    }

    /// The store's current writer claim (0: never claimed), read at SERIAL consistency.
    async fn read_writer_claim(&self) -> Result<u64> {
        let rows = self
            .session
            .execute_unpaged(&self.statements.get_writer_claim, (&self.config.pipeline,))
            .await
            .map_err(exec_error)?
            .into_rows_result()
            .map_err(|e| scylla_error("read the writer claim", e))?;
        let claim = rows
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(|e| scylla_error("read the writer claim", e))?;
        Ok(claim.and_then(|(c,)| c).map_or(0, |c| c.max(0) as u64))
    }

    /// Runs a lightweight transaction; whether it was applied (the first column, `[applied]`).
    async fn conditional(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<bool> {
        let rows = self
            .session
            .execute_unpaged(statement, values)
            .await
            .map_err(exec_error)?
            .into_rows_result()
            .map_err(|e| scylla_error("writer claim", e))?;
        let row = rows
            .maybe_first_row::<scylla::value::Row>()
            .map_err(|e| scylla_error("writer claim", e))?;
        Ok(matches!(
            row.as_ref().and_then(|r| r.columns.first()),
            Some(Some(scylla::value::CqlValue::Boolean(true)))
        ))
    }

    /// Refuses a write by a writer a newer claim fenced: a lightweight transaction that sets
    /// the claim to itself if it is still `writer`'s.
    async fn check_writer(&self, writer: u64) -> Result<()> {
        let current = if writer == 0 {
            self.read_writer_claim().await?
        } else {
            let w = i64::try_from(writer).unwrap_or(i64::MAX);
            let still = self
                .conditional(
                    &self.statements.raise_writer_claim,
                    (w, &self.config.pipeline, w),
                )
                .await?;
            if still {
                return Ok(());
            }
            self.read_writer_claim().await?
        };
        if writer < current || (writer > 0 && writer != current) {
            return Err(StoreError::Fenced {
                epoch: writer,
                current,
            });
        }
        Ok(())
    }

    /// The blob stored in `chunks` chunks, read one chunk at a time (`statement` at `key(n)`
    /// gives chunk `n`'s body: a whole piece in one unpaged read could pass ScyllaDB's limit for
    /// unpaged reads, 100 MB by default); [`StoreError::Corrupt`] naming `what` when one is
    /// missing.
    async fn read_chunks<K: scylla::serialize::row::SerializeRow>(
        &self,
        statement: &PreparedStatement,
        key: impl Fn(i32) -> K,
        chunks: i32,
        what: impl Fn() -> String,
    ) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        for n in 0..chunks {
            let rows = self
                .session
                .execute_unpaged(statement, key(n))
                .await
                .map_err(exec_error)?
                .into_rows_result()
                .map_err(|e| scylla_error("read checkpoint", e))?;
            let Some((body,)) = rows
                .maybe_first_row::<(Vec<u8>,)>()
                .map_err(|e| scylla_error("read checkpoint", e))?
            else {
                return Err(StoreError::Corrupt {
                    key: what(),
                    detail: format!("{n} of its {chunks} chunks read back"),
                });
            };
            bytes.extend_from_slice(&body);
        }
        Ok(bytes)
    }

    /// The current checkpoint's generation and chunk count.
    async fn checkpoint_head(&self) -> Result<Option<(i64, i32)>> {
        let rows = self
            .session
            .execute_unpaged(
                &self.statements.get_checkpoint_head,
                (&self.config.pipeline,),
            )
            .await
            .map_err(exec_error)?
            .into_rows_result()
            .map_err(|e| scylla_error("read checkpoint", e))?;
        rows.maybe_first_row::<(i64, i32)>()
            .map_err(|e| scylla_error("read checkpoint", e))
    }

    async fn document(
        &self,
        statement: &PreparedStatement,
        key: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Option<Document>> {
        let rows = self
            .session
            .execute_unpaged(statement, key)
            .await
            .map_err(exec_error)?
            .into_rows_result()
            .map_err(|e| scylla_error("read", e))?;
        let row = rows
            .maybe_first_row::<(Option<String>, Option<i64>)>()
            .map_err(|e| scylla_error("read", e))?;
        Ok(match row {
            Some((Some(doc), seq)) => Some(Document {
                seq: seq.unwrap_or(0).max(0) as u64,
                json: Bytes::from(doc),
            }),
            _ => None,
        })
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("invariant: views serialize to JSON")
}

#[async_trait]
impl Store for ScyllaStore {
    fn describe(&self) -> String {
        format!(
            "ScyllaDB store {} at {}",
            self.config.keyspace,
            self.config.nodes.join(",")
        )
    }

    async fn claim_writer(&self) -> Result<u64> {
        // Compare-and-set on the claim; a lost race reads the winner's claim and tries again.
        for _ in 0..16 {
            let current = self.read_writer_claim().await?;
            let next = i64::try_from(current + 1).unwrap_or(i64::MAX);
            let applied = if current == 0 {
                self.conditional(
                    &self.statements.insert_writer_claim,
                    (&self.config.pipeline, next),
                )
                .await?
            } else {
                self.conditional(
                    &self.statements.raise_writer_claim,
                    (next, &self.config.pipeline, current as i64),
                )
                .await?
            };
            if applied {
                return Ok(current + 1);
            }
        }
        Err(StoreError::Scylla(
            "claiming the writer: 16 compare-and-set attempts lost to other writers".into(),
        ))
    }

    async fn writer_claim(&self) -> Result<u64> {
        self.read_writer_claim().await
    }

    async fn apply(&self, batch: WriteBatch) -> Result<()> {
        // One lightweight transaction per batch (at most 10 a second): a fenced writer's batch
        // is refused before any of its documents is written.
        self.check_writer(batch.writer).await?;
        let writes: Vec<_> = batch.upserts.iter().map(|u| self.write(u)).collect();
        futures::stream::iter(writes)
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        // Positions only after every document: they never claim more than the store holds.
        let t = ts(batch.seq);
        for (partition, next) in batch.positions.iter().enumerate() {
            let partition = i32::try_from(partition).unwrap_or(i32::MAX);
            let next = i64::try_from(*next).unwrap_or(i64::MAX);
            self.session
                .execute_unpaged(
                    &self.statements.put_position,
                    (&self.config.pipeline, partition, next, t),
                )
                .await
                .map_err(exec_error)?;
        }
        Ok(())
    }

    async fn positions(&self) -> Result<Option<Vec<u64>>> {
        let rows = self
            .session
            .execute_unpaged(&self.statements.get_positions, (&self.config.pipeline,))
            .await
            .map_err(exec_error)?
            .into_rows_result()
            .map_err(|e| scylla_error("read positions", e))?;
        let mut positions = Vec::new();
        for row in rows
            .rows::<(i32, i64)>()
            .map_err(|e| scylla_error("read positions", e))?
        {
            let (partition, next) = row.map_err(|e| scylla_error("read positions", e))?;
            let p = usize::try_from(partition).unwrap_or(0);
            if positions.len() <= p {
                positions.resize(p + 1, 0);
            }
            positions[p] = u64::try_from(next).unwrap_or(0);
        }
        Ok((!positions.is_empty()).then_some(positions))
    }

    async fn product(&self, product_id: &str) -> Result<Option<Document>> {
        self.document(&self.statements.get_product, (product_id,))
            .await
    }

    async fn put_checkpoint(&self, bytes: &[u8], writer: u64) -> Result<()> {
        self.check_writer(writer).await?;
        let pipeline = &self.config.pipeline;
        let previous = self.checkpoint_head().await?;
        // A new generation each time (microseconds, above the previous one): its chunks are
        // written first, then the head names it, then the previous generation is deleted.
        let generation = chrono::Utc::now()
            .timestamp_micros()
            .max(previous.map_or(0, |(g, _)| g + 1));
        let chunks = bytes.chunks(CHECKPOINT_CHUNK).collect::<Vec<_>>();
        for (i, chunk) in chunks.iter().enumerate() {
            self.session
                .execute_unpaged(
                    &self.statements.write_checkpoint_chunk,
                    (pipeline, generation, i as i32, *chunk),
                )
                .await
                .map_err(exec_error)?;
        }
        self.session
            .execute_unpaged(
                &self.statements.write_checkpoint_head,
                (pipeline, generation, chunks.len() as i32),
            )
            .await
            .map_err(exec_error)?;
        if let Some((old, _)) = previous {
            // Best effort: a leftover generation is only space.
            if let Err(e) = self
                .session
                .execute_unpaged(&self.statements.delete_checkpoint, (pipeline, old))
                .await
            {
                tracing::warn!(error = %e, generation = old, "old checkpoint not deleted");
            }
        }
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Option<Vec<u8>>> {
        let Some((generation, chunks)) = self.checkpoint_head().await? else {
            return Ok(None);
        };
        let bytes = self
            .read_chunks(
                &self.statements.get_checkpoint_chunks,
                |n| (&self.config.pipeline, generation, n),
                chunks,
                || format!("checkpoint generation {generation}"),
            )
            .await?;
        Ok(Some(bytes))
    }

    async fn put_checkpoint_piece(&self, name: &str, bytes: &[u8], writer: u64) -> Result<()> {
        self.check_writer(writer).await?;
        let pipeline = &self.config.pipeline;
        let chunks = bytes.chunks(CHECKPOINT_CHUNK).collect::<Vec<_>>();
        // The name first: chunks left by a failure half way are listed, so deleted later. A
        // piece is only read once a head names it, which is after it was written whole.
        self.session
            .execute_unpaged(
                &self.statements.write_piece_name,
                (pipeline, name, chunks.len() as i32),
            )
            .await
            .map_err(exec_error)?;
        for (i, chunk) in chunks.iter().enumerate() {
            self.session
                .execute_unpaged(
                    &self.statements.write_piece_chunk,
                    (pipeline, name, i as i32, *chunk),
                )
                .await
                .map_err(exec_error)?;
        }
        Ok(())
    }

    async fn checkpoint_piece(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let pipeline = &self.config.pipeline;
        let rows = self
            .session
            .execute_unpaged(&self.statements.get_piece_name, (pipeline, name))
            .await
            .map_err(exec_error)?
            .into_rows_result()
            .map_err(|e| scylla_error("read checkpoint piece", e))?;
        let Some((chunks,)) = rows
            .maybe_first_row::<(i32,)>()
            .map_err(|e| scylla_error("read checkpoint piece", e))?
        else {
            return Ok(None);
        };
        let bytes = self
            .read_chunks(
                &self.statements.get_piece_chunks,
                |n| (pipeline, name, n),
                chunks,
                || format!("checkpoint piece {name}"),
            )
            .await?;
        Ok(Some(bytes))
    }

    async fn delete_checkpoint_pieces_except(&self, keep: &[String], writer: u64) -> Result<()> {
        self.check_writer(writer).await?;
        let pipeline = &self.config.pipeline;
        let rows = self
            .session
            .execute_unpaged(&self.statements.list_piece_names, (pipeline,))
            .await
            .map_err(exec_error)?
            .into_rows_result()
            .map_err(|e| scylla_error("list checkpoint pieces", e))?;
        let mut gone = Vec::new();
        for row in rows
            .rows::<(String,)>()
            .map_err(|e| scylla_error("list checkpoint pieces", e))?
        {
            let (name,) = row.map_err(|e| scylla_error("list checkpoint pieces", e))?;
            // The claim check above and these deletes are not one transaction: a writer fenced
            // in between must not delete the pieces of the writer that fenced it (names start
            // with the claim, in hex).
            let claim = name
                .split('-')
                .next()
                .and_then(|c| u64::from_str_radix(c, 16).ok());
            if !keep.contains(&name) && claim.is_none_or(|c| c <= writer) {
                gone.push(name);
            }
        }
        for name in gone {
            // The chunks first: a name left without chunks would read back as a torn piece.
            self.session
                .execute_unpaged(&self.statements.delete_piece, (pipeline, &name))
                .await
                .map_err(exec_error)?;
            self.session
                .execute_unpaged(&self.statements.delete_piece_name, (pipeline, &name))
                .await
                .map_err(exec_error)?;
        }
        Ok(())
    }

    async fn view(&self, view: &str, key: &str) -> Result<Option<Document>> {
        self.document(&self.statements.get_view, (view, key)).await
    }

    async fn inventory(&self, sku: &str) -> Result<Option<Document>> {
        self.document(&self.statements.get_inventory, (sku,)).await
    }

    async fn scan_inventory(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>> {
        let s = &self.statements;
        self.scan(
            "scan inventory",
            &s.scan_inventory,
            &s.scan_inventory_after,
            after,
            limit,
        )
        .await
    }

    async fn scan_products(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>> {
        let s = &self.statements;
        self.scan(
            "scan products",
            &s.scan_products,
            &s.scan_products_after,
            after,
            limit,
        )
        .await
    }

    async fn scan_view(
        &self,
        view: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>> {
        const WHAT: &str = "scan view documents";
        let limit = limit.max(1);
        let fetch = i32::try_from(limit.max(1_000)).unwrap_or(i32::MAX);
        let mut page = Vec::new();
        // Walk the table from (view, after) in token order, keeping this view's documents: the
        // next page starts after the last one kept, since every row between was another view's.
        let mut from: Option<(String, String)> = after.map(|key| (view.to_owned(), key.to_owned()));
        loop {
            let result = match &from {
                Some((v, k)) => {
                    self.session
                        .execute_unpaged(&self.statements.scan_views_after, (v, k, fetch))
                        .await
                }
                None => {
                    self.session
                        .execute_unpaged(&self.statements.scan_views, (fetch,))
                        .await
                }
            };
            let rows = result
                .map_err(exec_error)?
                .into_rows_result()
                .map_err(|e| scylla_error(WHAT, e))?;
            let mut fetched = 0;
            for row in rows
                .rows::<(String, String, Option<String>, Option<i64>)>()
                .map_err(|e| scylla_error(WHAT, e))?
            {
                let (of, key, doc, seq) = row.map_err(|e| scylla_error(WHAT, e))?;
                fetched += 1;
                if of == view
                    && let Some(doc) = doc
                {
                    page.push((
                        key.clone(),
                        Document {
                            seq: seq.unwrap_or(0).max(0) as u64,
                            json: Bytes::from(doc),
                        },
                    ));
                    if page.len() == limit {
                        return Ok(page);
                    }
                }
                from = Some((of, key));
            }
            if fetched < fetch as usize {
                return Ok(page);
            }
        }
    }

    async fn order(&self, order_id: &str) -> Result<Option<OrderDocument>> {
        let rows = self
            .session
            .execute_unpaged(&self.statements.get_order, (order_id,))
            .await
            .map_err(exec_error)?
            .into_rows_result()
            .map_err(|e| scylla_error("read order", e))?;
        let row = rows
            .maybe_first_row::<(Option<String>, Option<String>, Option<i64>)>()
            .map_err(|e| scylla_error("read order", e))?;
        Ok(match row {
            Some((Some(user_id), Some(doc), seq)) => Some(OrderDocument {
                seq: seq.unwrap_or(0).max(0) as u64,
                user_id,
                json: Bytes::from(doc),
            }),
            _ => None,
        })
    }

    async fn user_orders(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OrderPage> {
        let limit = limit.max(1);
        // One more than asked: if it comes back, there is a next page.
        let fetch = i32::try_from(limit + 1).unwrap_or(i32::MAX);
        let result = match after {
            Some(cursor) => {
                let (at, id) = decode_cursor(cursor)?;
                self.session
                    .execute_single_page(
                        &self.statements.get_user_orders_after,
                        (user_id, at, id, fetch),
                        PagingState::start(),
                    )
                    .await
            }
            None => {
                self.session
                    .execute_single_page(
                        &self.statements.get_user_orders,
                        (user_id, fetch),
                        PagingState::start(),
                    )
                    .await
            }
        };
        let (result, _) = result.map_err(exec_error)?;
        let rows = result
            .into_rows_result()
            .map_err(|e| scylla_error("read user orders", e))?;
        let entries = rows
            .rows::<(i64, String, Option<String>)>()
            .map_err(|e| scylla_error("read user orders", e))?
            .map(|row| {
                let (at, order_id, summary) =
                    row.map_err(|e| scylla_error("read user orders", e))?;
                serde_json::from_str(summary.as_deref().unwrap_or("")).map_err(|e| {
                    StoreError::Corrupt {
                        key: format!("user_orders({user_id}, {at}, {order_id})"),
                        detail: e.to_string(),
                    }
                })
            });
        OrderPage::from_scan(limit, entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_renders_for_a_keyspace_and_every_statement_is_idempotent_ddl() {
        let mut config = ScyllaConfig::new("scylla://10.0.0.1:9042, 10.0.0.2:9042");
        assert_eq!(config.nodes, ["10.0.0.1:9042", "10.0.0.2:9042"]);
        config.keyspace = "shop_test".into();
        config.replication_factor = 1;
        let statements = schema_statements(&config).expect("valid");
        assert_eq!(statements.len(), 12, "{statements:#?}");
        assert!(statements[0].starts_with("CREATE KEYSPACE IF NOT EXISTS shop_test"));
        assert!(statements[0].contains("'replication_factor': 1"));
        for s in &statements {
            assert!(s.contains("IF NOT EXISTS"), "{s}");
            assert!(!s.contains("{{"), "unfilled placeholder: {s}");
        }
        for table in [
            "products",
            "inventory",
            "orders",
            "user_orders",
            "view_documents",
            "positions",
            "checkpoint_chunks",
            "checkpoint_head",
            "checkpoint_pieces",
            "checkpoint_piece_names",
            "writer_claims",
        ] {
            assert!(
                statements
                    .iter()
                    .any(|s| s.contains(&format!("TABLE IF NOT EXISTS shop_test.{table} "))),
                "{table}"
            );
        }
    }

    #[test]
    fn bad_keyspaces_and_replication_are_refused_before_connecting() {
        for ks in ["", "1abc", "a-b", "a;DROP", &"k".repeat(49)] {
            let mut c = ScyllaConfig::new("h:9042");
            c.keyspace = ks.into();
            assert!(schema_statements(&c).is_err(), "{ks:?}");
        }
        let mut c = ScyllaConfig::new("h:9042");
        c.replication_factor = 0;
        assert!(schema_statements(&c).is_err());
    }

    #[test]
    fn writes_carry_the_seq_as_their_timestamp_and_reads_return_it() {
        for (name, text) in statement_texts("ks") {
            if name.starts_with("put_") {
                assert!(text.ends_with("USING TIMESTAMP ?"), "{name}: {text}");
                // Bind markers: one per column, plus the timestamp.
                let columns = text.split('(').nth(1).map_or(0, |c| c.split(',').count());
                assert_eq!(text.matches('?').count(), columns + 1, "{name}: {text}");
            }
            if name == "get_product"
                || name == "get_inventory"
                || name == "get_order"
                || name.starts_with("scan_")
            {
                assert!(text.contains("WRITETIME(doc)"), "{name}");
            }
            assert!(text.contains(" ks."), "{name} names the keyspace");
        }
    }

    #[test]
    fn overload_and_timeouts_are_transient_syntax_errors_are_not() {
        use scylla::errors::DbError;
        let db = |e| ExecutionError::LastAttemptError(RequestAttemptError::DbError(e, "x".into()));
        assert!(is_transient(&ExecutionError::RequestTimeout(
            Duration::from_secs(1)
        )));
        assert!(is_transient(&db(DbError::Overloaded)));
        assert!(!is_transient(&db(DbError::SyntaxError)));
        assert!(!is_transient(&db(DbError::Invalid)));
    }

    #[test]
    fn seqs_beyond_bigint_saturate() {
        assert_eq!(ts(7), 7);
        assert_eq!(ts(u64::MAX), i64::MAX);
    }
}
