//! Which store the platform keeps its documents in: the embedded redb file by default, or a
//! ScyllaDB cluster (`--scylla`). Shared by `emporium run` and `emporium serve`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use emporium_serving::store::Store;
use emporium_serving::store::embedded::EmbeddedStore;
use emporium_serving::store::scylla::{ScyllaConfig, ScyllaStore};

#[derive(Args, Clone)]
pub struct StoreArgs {
    /// Keep documents in ScyllaDB at these nodes (host:port,...) instead of the embedded store.
    #[arg(long, env = "EMPORIUM_SCYLLA_URI")]
    pub scylla: Option<String>,
    /// ScyllaDB keyspace (created with the tables if missing).
    #[arg(
        long,
        env = "EMPORIUM_SCYLLA_KEYSPACE",
        default_value = "emporium",
        requires = "scylla"
    )]
    pub scylla_keyspace: String,
    /// Replication factor of the keyspace when Emporium creates it.
    #[arg(
        long,
        env = "EMPORIUM_SCYLLA_RF",
        default_value_t = 3,
        requires = "scylla"
    )]
    pub scylla_rf: u32,
}

impl StoreArgs {
    /// Opens the store: ScyllaDB if asked, else `<data dir>/store/store.redb`.
    pub async fn open(&self, data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match &self.scylla {
            Some(nodes) => {
                let config = ScyllaConfig {
                    keyspace: self.scylla_keyspace.clone(),
                    replication_factor: self.scylla_rf,
                    ..ScyllaConfig::new(nodes)
                };
                Arc::new(
                    ScyllaStore::connect(config)
                        .await
                        .with_context(|| format!("connecting to ScyllaDB at {nodes}"))?,
                )
            }
            None => {
                let dir = data_dir.join("store");
                Arc::new(
                    EmbeddedStore::open(&dir).with_context(|| {
                        format!("opening the embedded store in {}", dir.display())
                    })?,
                )
            }
        })
    }
}

/// How the decider is checkpointed (ADR 0008).
#[derive(clap::Args)]
pub struct CheckpointArgs {
    /// Seconds between checkpoints of the decider's state and log positions, kept under
    /// <data dir>/checkpoints (one is also taken on a clean stop). A restart resumes from the
    /// last one and reads only the log after it. 0: no checkpoints; a restart replays the log
    /// from the start.
    #[arg(long, env = "EMPORIUM_CHECKPOINT_INTERVAL", default_value_t = 60)]
    checkpoint_interval: u64,
}

impl CheckpointArgs {
    pub fn config(
        &self,
        data_dir: &std::path::Path,
    ) -> Option<emporium_pipeline::CheckpointConfig> {
        (self.checkpoint_interval > 0).then(|| emporium_pipeline::CheckpointConfig {
            dir: data_dir.join("checkpoints"),
            interval: std::time::Duration::from_secs(self.checkpoint_interval),
        })
    }
}
