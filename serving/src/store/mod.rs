//! The store: the documents of [`crate::views`], kept per read path, written by the dataflows and
//! read by the serving API. One trait, two backends: [`embedded`] (one file, one machine — the
//! default) and [`scylla`] (a ScyllaDB cluster, for the distributed deployment). Both pass the one
//! conformance suite in `serving/tests/store_conformance.rs`.
//!
//! The contract every backend keeps (ADR 0006):
//! - a document is replaced only by a write with a higher or equal `seq`: replayed writes are
//!   no-ops and a store never moves backwards;
//! - `apply` makes the documents of a batch visible before its positions, so the stored positions
//!   never claim more than the documents reflect;
//! - reads never block writes, and never see half a document.

pub mod embedded;
pub mod scylla;

use async_trait::async_trait;
use bytes::Bytes;

use crate::views::{OrderSummary, WriteBatch};

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("embedded store: {0}")]
    Embedded(String),
    #[error("scylla: {0}")]
    Scylla(String),
    #[error("stored document {key} is corrupt: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("bad page cursor {0:?}: expected one returned by a previous page")]
    BadCursor(String),
    /// A newer writer claimed the store ([`Store::claim_writer`]) since the one that sent this
    /// write: it is refused, and that writer must stop (ADR 0012).
    #[error(
        "this writer (claim {epoch}) was fenced: claim {current} is the store's writer now, so \
         this one stops writing"
    )]
    Fenced { epoch: u64, current: u64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stored document: its JSON, as the API returns it, and the `seq` it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub seq: u64,
    pub json: Bytes,
}

/// A stored order: the document, and its owner (for authorization without parsing the JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDocument {
    pub seq: u64,
    pub user_id: String,
    pub json: Bytes,
}

/// One page of a user's orders, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderPage {
    pub orders: Vec<OrderSummary>,
    /// Pass it back as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

impl OrderPage {
    /// The page of `limit` entries out of a newest-first scan that fetched `limit + 1`: one more
    /// than the page means there is a next page, whose cursor is the page's last entry.
    pub(crate) fn from_scan(
        limit: usize,
        entries: impl IntoIterator<Item = Result<OrderSummary>>,
    ) -> Result<Self> {
        let mut page = OrderPage::default();
        for entry in entries {
            if page.orders.len() == limit {
                page.next = page
                    .orders
                    .last()
                    .map(|last| encode_cursor(last.placed_at.timestamp_micros(), &last.order_id));
                break;
            }
            page.orders.push(entry?);
        }
        Ok(page)
    }
}

/// Where the dataflows write and the API reads. See the module docs for the contract.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short description for logs (`embedded store at ./data/store.redb`).
    fn describe(&self) -> String;

    /// Makes the caller the store's one writer and returns its claim (1, 2, …): from now on a
    /// batch or checkpoint sent with an earlier claim is refused with [`StoreError::Fenced`]
    /// (ADR 0012). Claims are durable and totally ordered (embedded: one write transaction;
    /// ScyllaDB: a lightweight transaction).
    async fn claim_writer(&self) -> Result<u64>;

    /// The store's current writer claim (0: never claimed).
    async fn writer_claim(&self) -> Result<u64>;

    /// Upserts every document of `batch` (each only if its `seq` is not below the stored one),
    /// then records `batch.positions`. Refused whole ([`StoreError::Fenced`]) when
    /// `batch.writer` is below the store's current claim.
    async fn apply(&self, batch: WriteBatch) -> Result<()>;

    /// The positions recorded by the last `apply` (`None` on a new store).
    async fn positions(&self) -> Result<Option<Vec<u64>>>;

    async fn product(&self, product_id: &str) -> Result<Option<Document>>;

    async fn inventory(&self, sku: &str) -> Result<Option<Document>>;

    /// Every inventory document, a page of at most `limit` at a time: pass the last sku of a page
    /// as `after` for the next (`None` for the first); an empty page is the end. The order is the
    /// store's own (sku order embedded, token order in ScyllaDB), the same from page to page. For
    /// snapshots (the lakehouse's `inventory_snapshots`), not for the request path.
    async fn scan_inventory(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>>;

    /// Every product document, paged like [`Store::scan_inventory`] (by product id). For
    /// rebuilding what derives from them (the search index's availability), not for requests.
    async fn scan_products(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>>;

    /// Every document of a maintained view, paged like [`Store::scan_inventory`] (by key); a
    /// key that left the view has the JSON `null`. For rebuilds (`emporium reindex`), not for
    /// requests: ScyllaDB walks every view's documents to find this one's.
    async fn scan_view(
        &self,
        view: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Document)>>;

    async fn order(&self, order_id: &str) -> Result<Option<OrderDocument>>;

    /// A maintained view's document for `key` (`None`: never written; its JSON is `null` when
    /// the key left the view).
    async fn view(&self, view: &str, key: &str) -> Result<Option<Document>>;

    /// [`Store::view`] for each of `keys`, in their order: what a read that needs many
    /// documents asks at once (the embedded store in one read transaction, ScyllaDB
    /// concurrently), not one round trip after another.
    async fn views_many(&self, view: &str, keys: &[String]) -> Result<Vec<Option<Document>>> {
        futures::future::try_join_all(keys.iter().map(|k| self.view(view, k))).await
    }

    /// [`Store::product`] for each of `ids`, in their order, like [`Store::views_many`].
    async fn products_many(&self, ids: &[String]) -> Result<Vec<Option<Document>>> {
        futures::future::try_join_all(ids.iter().map(|id| self.product(id))).await
    }

    /// Replaces the pipeline's checkpoint kept beside the documents it goes with (ADR 0008): a
    /// copy that outlives the machine of the process that wrote it and the log's retention.
    /// Opaque bytes (the checkpoint file's format, which checks itself); durable on return.
    /// Refused ([`StoreError::Fenced`]) when `writer` is below the store's current claim.
    async fn put_checkpoint(&self, bytes: &[u8], writer: u64) -> Result<()>;

    /// The checkpoint last put (`None`: none yet).
    async fn checkpoint(&self) -> Result<Option<Vec<u8>>>;

    /// Keeps a piece of an incremental checkpoint (ADR 0008) under `name`, durably, before a
    /// checkpoint put later names it; opaque bytes (the head holds their size and checksum).
    /// Refused ([`StoreError::Fenced`]) when `writer` is below the store's current claim.
    async fn put_checkpoint_piece(&self, name: &str, bytes: &[u8], writer: u64) -> Result<()>;

    /// The piece kept under `name` (`None`: none).
    async fn checkpoint_piece(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Deletes every piece but those named in `keep` (the chain of the checkpoint last put) and
    /// those of later writers (a piece's name starts with its writer's claim in hex, then `-`);
    /// refused ([`StoreError::Fenced`]) like a put.
    async fn delete_checkpoint_pieces_except(&self, keep: &[String], writer: u64) -> Result<()>;

    /// A user's orders, newest placed first (ties: larger order id first), `limit` per page,
    /// starting after the cursor `after` of the previous page.
    async fn user_orders(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OrderPage>;
}

/// The cursor of a page of a user's orders: the last entry's (placed_at µs, order id).
pub(crate) fn encode_cursor(placed_at_us: i64, order_id: &str) -> String {
    format!("{placed_at_us}.{order_id}")
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<(i64, String)> {
    let bad = || StoreError::BadCursor(cursor.to_owned());
    let (at, id) = cursor.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok((at, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = encode_cursor(1_767_225_600_000_000, "o-1.2");
        assert_eq!(
            decode_cursor(&c).expect("valid"),
            (1_767_225_600_000_000, "o-1.2".to_owned())
        );
        for bad in ["", "x.o-1", "12", "12."] {
            assert!(
                matches!(decode_cursor(bad), Err(StoreError::BadCursor(_))),
                "{bad}"
            );
        }
    }
}
