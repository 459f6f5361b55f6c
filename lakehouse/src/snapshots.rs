//! Inventory snapshots: every (sku, warehouse) of the store's inventory documents as rows of the
//! `inventory_snapshots` table, all stamped with one time, in one Delta commit — what analysts
//! join events against ("stock on hand at 09:00").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emporium_log::EVENTS_TOPIC;
use emporium_serving::store::Store;
use emporium_serving::views::InventoryView;
use tokio::task::JoinHandle;

use crate::LakeError;
use crate::rows::{SnapshotRow, snapshot_batch};
use crate::schema::INVENTORY_SNAPSHOTS_TABLE;

/// Pages of inventory documents read from the store per snapshot step.
const SNAPSHOT_PAGE: usize = 5_000;

/// Writes every inventory document of `store` as rows of `inventory_snapshots`, one row per
/// (sku, warehouse), all stamped `at`, in one Delta commit (a crash leaves no partial snapshot).
/// Returns the rows written.
pub async fn snapshot_inventory(
    store: &dyn Store,
    root: &Path,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<usize, LakeError> {
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .scan_inventory(after.as_deref(), SNAPSHOT_PAGE)
            .await
            .map_err(|e| LakeError::Snapshot(format!("reading inventory documents: {e}")))?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (sku, doc) in page {
            let view: InventoryView = serde_json::from_slice(&doc.json)
                .map_err(|e| LakeError::Snapshot(format!("inventory document of {sku}: {e}")))?;
            rows.extend(view.warehouses.into_iter().map(|w| SnapshotRow {
                sku: sku.clone(),
                warehouse: w.warehouse,
                on_hand: w.on_hand,
                reserved: w.reserved,
                available: w.available,
                as_of_seq: doc.seq as i64,
            }));
        }
    }
    let batch = snapshot_batch(at, &rows)?;
    let mut lake = crate::Lake::open(root).await?;
    lake.append(INVENTORY_SNAPSHOTS_TABLE, vec![batch], EVENTS_TOPIC, &[])
        .await?;
    Ok(rows.len())
}

/// Takes an inventory snapshot every `every`, until the task is aborted; failures are logged.
pub fn spawn_snapshots(store: Arc<dyn Store>, root: PathBuf, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let began = Instant::now();
            match snapshot_inventory(store.as_ref(), &root, chrono::Utc::now()).await {
                Ok(rows) => tracing::info!(
                    "lakehouse: inventory snapshot of {rows} (sku, warehouse) rows in {:.1} s",
                    began.elapsed().as_secs_f64()
                ),
                Err(error) => tracing::warn!("lakehouse: inventory snapshot failed: {error}"),
            }
        }
    })
}
