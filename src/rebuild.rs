//! `emporium rebuild-log`: a new event log from the lakehouse (`emporium_lakehouse::rebuild`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use emporium_lakehouse::rebuild::{Progress, rebuild};
use emporium_lakehouse::sql::SqlEngine;

#[derive(Args)]
#[command(after_help = "Examples:
  emporium rebuild-log --lakehouse-dir old/lakehouse --data-dir new
  emporium rebuild-log --lakehouse-dir /mnt/lake --kafka new-broker:9092 --partitions 12

For when the log no longer holds its beginning and no checkpoint is recent enough. Each event goes
back to its old partition, in its old order; offsets start again from 0, so start the dataflow on
the rebuilt log without a checkpoint, on an empty store: it decides exactly as it did on the old
log. Records that never decoded (`rejected_records`) are left out and counted.")]
pub struct RebuildArgs {
    /// The lakehouse to read.
    #[arg(long = "lakehouse-dir", value_name = "DIR")]
    lakehouse_dir: PathBuf,
    /// The data directory whose embedded log to write (it must not hold events yet).
    #[arg(long, env = "EMPORIUM_DATA_DIR", default_value = "emporium-data")]
    data_dir: PathBuf,
    /// Write to this Kafka log (host:port,...) instead; its events topic must be empty.
    #[arg(long, env = "EMPORIUM_KAFKA")]
    kafka: Option<String>,
    /// Replication factor of the topic when it is created in Kafka.
    #[arg(long, default_value_t = 1)]
    kafka_replication: i32,
    #[command(flatten)]
    kafka_client: crate::open::KafkaClientArgs,
    /// Partitions of the rebuilt events topic: the old log's count (the default is Emporium's).
    #[arg(long, default_value_t = 4)]
    partitions: u32,
}

pub fn main(args: RebuildArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: RebuildArgs) -> anyhow::Result<()> {
    if !args.lakehouse_dir.is_dir() {
        anyhow::bail!("no lakehouse at {}", args.lakehouse_dir.display());
    }
    let log = crate::open::log(
        args.kafka.as_deref(),
        args.kafka_replication,
        &args.kafka_client,
        &args.data_dir,
    )?;
    let engine = SqlEngine::new(
        &args.lakehouse_dir,
        crate::lakehouse::sql_limits(24 * 3600, 64 * 1024),
    );
    let started = std::time::Instant::now();
    let stats = rebuild(&engine, log.as_ref(), args.partitions, |p| match p {
        Progress::Read(n) => eprintln!(
            "[{:>6.1}s] read {n} events",
            started.elapsed().as_secs_f64()
        ),
        Progress::Appended(n) => {
            eprintln!("[{:>6.1}s] appended {n}", started.elapsed().as_secs_f64())
        }
    })
    .await
    .with_context(|| format!("rebuilding the log from {}", args.lakehouse_dir.display()))?;
    println!(
        "Rebuilt {} events into {} in {:.1} s",
        stats.events(),
        log.describe(),
        started.elapsed().as_secs_f64()
    );
    for (p, (n, span)) in stats
        .per_partition
        .iter()
        .zip(&stats.old_offsets)
        .enumerate()
    {
        match span {
            Some((first, last)) => {
                println!("  partition {p}: {n} events (offsets {first}..={last} in the old log)")
            }
            None => println!("  partition {p}: empty"),
        }
    }
    if stats.rejected_left_out > 0 {
        println!(
            "  {} records of rejected_records left out (they never decoded as events)",
            stats.rejected_left_out
        );
    }
    Ok(())
}
