//! One way to open the event log, for every subcommand: Kafka at the given brokers, or the
//! embedded log in `<data dir>/log`. (The store is opened by [`crate::store::StoreArgs::open`].)

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use emporium_log::EventLog;
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::kafka::{KafkaConfig, KafkaLog};

/// Kafka at `kafka` (`host:port,...`; topics Emporium creates get `replication`), or the
/// embedded log of `data_dir`.
pub fn log(
    kafka: Option<&str>,
    replication: i32,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn EventLog>> {
    match kafka {
        Some(brokers) => self::kafka(brokers, replication),
        None => embedded(data_dir),
    }
}

/// Kafka at `brokers` (`host:port,...`).
pub fn kafka(brokers: &str, replication: i32) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(Arc::new(
        KafkaLog::connect(KafkaConfig {
            replication_factor: replication,
            ..KafkaConfig::new(brokers.to_owned())
        })
        .with_context(|| format!("connecting to Kafka at {brokers}"))?,
    ))
}

/// The embedded log in `<data_dir>/log`.
pub fn embedded(data_dir: &Path) -> anyhow::Result<Arc<dyn EventLog>> {
    let dir = data_dir.join("log");
    Ok(Arc::new(
        EmbeddedLog::open(EmbeddedConfig::in_dir(&dir))
            .with_context(|| format!("opening the embedded log in {}", dir.display()))?,
    ))
}
