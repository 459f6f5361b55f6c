//! `emporium dlq`: show rejected events and why they were rejected, from a running server, an
//! embedded data directory (when no server holds it), or Kafka.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use emporium_ingest::dead_letter::{self, StoredDeadLetter};
use emporium_log::EventLog;

#[derive(Args)]
pub struct DlqArgs {
    /// Base URL of a running `emporium run` (the default source).
    #[arg(long, default_value = "http://127.0.0.1:8080", conflicts_with_all = ["data_dir", "kafka"])]
    url: String,
    /// Read the embedded log in this data directory directly (the server must be stopped).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Read the dead-letter topic from Kafka at these brokers.
    #[arg(long, conflicts_with = "data_dir")]
    kafka: Option<String>,
    #[command(flatten)]
    kafka_client: crate::open::KafkaClientArgs,
    /// First dead-letter offset to show.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// How many to show at most.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print one JSON object per line instead of a readable listing.
    #[arg(long)]
    json: bool,
    /// The operator key sent to --url (default: the one in the data directory's auth.json,
    /// `emporium-data` unless EMPORIUM_DATA_DIR says otherwise).
    #[arg(long, env = "EMPORIUM_OPERATOR_KEY", hide_env_values = true)]
    token: Option<String>,
}

pub fn main(args: DlqArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let letters: Vec<serde_json::Value> = rt.block_on(async {
        if let Some(dir) = &args.data_dir {
            from_log(crate::open::embedded(dir)?, args.from, args.limit).await
        } else if let Some(brokers) = &args.kafka {
            from_log(
                crate::open::kafka(brokers, 1, &args.kafka_client)?,
                args.from,
                args.limit,
            )
            .await
        } else {
            let url = format!(
                "{}/v1/dlq?from={}&limit={}",
                args.url.trim_end_matches('/'),
                args.from,
                args.limit
            );
            let token = match &args.token {
                Some(token) => token.clone(),
                None => {
                    let dir = std::env::var_os("EMPORIUM_DATA_DIR")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| PathBuf::from("emporium-data"));
                    if std::env::var_os("EMPORIUM_OPERATOR_KEY").is_none()
                        && !crate::keys::path(&dir).exists()
                    {
                        anyhow::bail!(
                            "the dead-letter log is for operators: give --token (the operator key, \
                             `emporium token --operator` where the server's data directory is), or \
                             set EMPORIUM_DATA_DIR to that directory ({} has no auth.json)",
                            dir.display()
                        );
                    }
                    crate::keys::load_or_create(&dir)?.operator_key
                }
            };
            let response = reqwest::Client::new()
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .with_context(|| {
                    format!("asking {url} (is `emporium run` up? or use --data-dir)")
                })?;
            let status = response.status();
            let body: serde_json::Value =
                response.json().await.context("reading the dead letters")?;
            if !status.is_success() {
                anyhow::bail!(
                    "{url}: {status}: {}",
                    body["error"]["message"].as_str().unwrap_or("")
                );
            }
            Ok(body["dead_letters"].as_array().cloned().unwrap_or_default())
        }
    })?;
    for letter in &letters {
        if args.json {
            println!("{letter}");
            continue;
        }
        println!(
            "#{} {} {} line {}: {}",
            letter["offset"],
            letter["received_at"].as_str().unwrap_or(""),
            letter["source"].as_str().unwrap_or(""),
            letter["line"],
            letter["reason"].as_str().unwrap_or("")
        );
        for e in letter["errors"].as_array().into_iter().flatten() {
            println!(
                "    {}: {}",
                e["path"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            );
        }
        let raw = letter["raw"].as_str().unwrap_or("(binary; see --json)");
        let shown: String = raw.chars().take(160).collect();
        println!(
            "    raw: {shown}{}",
            if raw.len() > shown.len() { "…" } else { "" }
        );
    }
    if !args.json {
        eprintln!("{} dead letter(s) from offset {}", letters.len(), args.from);
    }
    Ok(())
}

async fn from_log(
    log: Arc<dyn EventLog>,
    from: u64,
    limit: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let letters: Vec<StoredDeadLetter> = dead_letter::read(log.as_ref(), from, limit)
        .await
        .context("reading the dead-letter topic (has ingest ever run on this log?)")?;
    Ok(letters
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?)
}
