//! One way to open the event log, for every subcommand: Kafka at the given brokers, or the
//! embedded log in `<data dir>/log`. (The store is opened by [`crate::store::StoreArgs::open`].)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use emporium_log::EventLog;
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::kafka::{KafkaConfig, KafkaLog};

/// librdkafka properties for every Kafka client of a subcommand: security (SASL, TLS) and
/// tuning, as a Kafka user passes them in `client.properties`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KafkaClientArgs {
    /// A librdkafka property for every Kafka client, e.g. `security.protocol=SASL_SSL` or
    /// `sasl.mechanism=SCRAM-SHA-512` (repeatable; applied after --kafka-config-file).
    #[arg(long = "kafka-config", value_name = "KEY=VALUE", value_parser = parse_property)]
    kafka_config: Vec<(String, String)>,
    /// A file of librdkafka properties, one `key=value` per line (`#` or `!` starts a comment),
    /// like Kafka's `client.properties`; keep secrets such as `sasl.password` here, not in flags.
    #[arg(long, value_name = "FILE", env = "EMPORIUM_KAFKA_CONFIG_FILE")]
    kafka_config_file: Option<PathBuf>,
}

/// Properties Emporium sets itself because its guarantees depend on them (ADR 0002, 0003).
const RESERVED: [(&str, &str); 6] = [
    ("bootstrap.servers", "give the brokers with --kafka"),
    (
        "enable.idempotence",
        "the producer is idempotent: no duplicate on retry",
    ),
    ("acks", "every append waits for all in-sync replicas"),
    ("enable.auto.commit", "readers keep their own positions"),
    (
        "auto.offset.reset",
        "a read past retention must fail, never skip",
    ),
    ("group.id", "Emporium names its consumers"),
];

fn parse_property(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE (e.g. security.protocol=SSL), got {text:?}"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("expected a property name before '=' in {text:?}"));
    }
    if let Some((_, why)) = RESERVED.iter().find(|(k, _)| *k == key) {
        return Err(format!("{key} cannot be set: {why}"));
    }
    Ok((key.to_owned(), value.trim().to_owned()))
}

impl KafkaClientArgs {
    /// The properties, from the file then the flags (a flag wins).
    pub fn properties(&self) -> anyhow::Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        if let Some(path) = &self.kafka_config_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --kafka-config-file {}", path.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                    continue;
                }
                let (k, v) = parse_property(line)
                    .map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), n + 1))?;
                out.insert(k, v);
            }
        }
        out.extend(self.kafka_config.iter().cloned());
        Ok(out)
    }
}

/// Kafka at `kafka` (`host:port,...`; topics Emporium creates get `replication`), or the
/// embedded log of `data_dir`.
pub fn log(
    kafka: Option<&str>,
    replication: i32,
    client: &KafkaClientArgs,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn EventLog>> {
    match kafka {
        Some(brokers) => self::kafka(brokers, replication, client),
        None => embedded(data_dir),
    }
}

/// Kafka at `brokers` (`host:port,...`), with the clients' extra properties.
pub fn kafka(
    brokers: &str,
    replication: i32,
    client: &KafkaClientArgs,
) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(Arc::new(
        KafkaLog::connect(KafkaConfig {
            replication_factor: replication,
            properties: client.properties()?,
            ..KafkaConfig::new(brokers.to_owned())
        })
        .with_context(|| format!("connecting to Kafka at {brokers}"))?,
    ))
}

/// The embedded log in `<data_dir>/log`.
pub fn embedded(data_dir: &Path) -> anyhow::Result<Arc<dyn EventLog>> {
    let dir = data_dir.join("log");
    let mut config = EmbeddedConfig::in_dir(&dir);
    // Fault injection for `tests/faults/` (a slow disk); not a setting to run with.
    if let Some(ms) = std::env::var("EMPORIUM_FAULT_FSYNC_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        config.fsync_delay = std::time::Duration::from_millis(ms);
    }
    Ok(Arc::new(EmbeddedLog::open(config).with_context(|| {
        format!("opening the embedded log in {}", dir.display())
    })?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_come_from_the_file_then_the_flags_and_guarded_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("client.properties");
        std::fs::write(
            &file,
            "# security\nsecurity.protocol = SASL_SSL\n! old style comment\n\nsasl.mechanism=PLAIN\nsasl.password=s3cr=t\n",
        )
        .expect("write");
        let args = KafkaClientArgs {
            kafka_config: vec![("sasl.mechanism".into(), "SCRAM-SHA-512".into())],
            kafka_config_file: Some(file.clone()),
        };
        let props = args.properties().expect("properties");
        assert_eq!(props["security.protocol"], "SASL_SSL");
        assert_eq!(props["sasl.mechanism"], "SCRAM-SHA-512", "a flag wins");
        assert_eq!(props["sasl.password"], "s3cr=t", "only the first = splits");

        assert!(
            parse_property("acks=1")
                .unwrap_err()
                .contains("all in-sync")
        );
        assert!(parse_property("auto.offset.reset=earliest").is_err());
        assert!(
            parse_property("no-equals")
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        std::fs::write(&file, "client.id=x\nenable.idempotence=false\n").expect("write");
        let error = args.properties().unwrap_err().to_string();
        assert!(
            error.contains("line 2") && error.contains("enable.idempotence"),
            "{error}"
        );
    }
}
