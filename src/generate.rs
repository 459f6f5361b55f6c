//! `emporium generate`: deterministic shop traffic to stdout, a file, an ingest URL or Kafka.

use std::io::{BufWriter, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use emporium_generator::output::{self, Limits, Progress};
use emporium_generator::{Generator, GeneratorConfig};
use emporium_log::EVENTS_TOPIC;

#[derive(Args)]
pub struct GenerateArgs {
    /// Seed of the random generator: same seed and flags, same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Products in the catalog (each has 1–3 skus).
    #[arg(long, default_value_t = 1_000)]
    products: usize,
    /// Distinct shoppers.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Warehouses stock is spread over.
    #[arg(long, default_value_t = 3)]
    warehouses: usize,
    /// Events per second; 0 for as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop after this many events.
    #[arg(long, conflicts_with = "duration")]
    events: Option<u64>,
    /// Stop after this long, e.g. 30s, 5m, 1h.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Share of lines made invalid on purpose (for testing validation and the dead-letter log).
    #[arg(long, default_value_t = 0.0)]
    invalid_fraction: f64,
    /// Multiplies restock, shipping, delivery, return and review delays (1 = a real shop's hours
    /// and days; 0.01 = a hundred times faster).
    #[arg(long, default_value_t = 1.0)]
    fulfilment_scale: f64,
    /// Share of payments that fail.
    #[arg(long, default_value_t = 0.05)]
    payment_failure_rate: f64,
    /// Share of product views drawn from the shopper's taste (their favourite subcategories and
    /// brands, drifting over weeks) rather than popularity alone; 0 leaves nothing personal to
    /// learn (the recommenders' control).
    #[arg(long, default_value_t = 0.7)]
    taste_share: f64,
    /// Chance per step of traffic that a user asks to be forgotten (`user_erased`).
    #[arg(long, default_value_t = 0.000_01)]
    erasure_rate: f64,
    /// Number orders after this one (o-0000000001 by default). Feeding a log that already holds
    /// generated orders? Start after them (its event count is always enough), or their ids repeat
    /// and the dataflow records `order_placed_twice` anomalies instead of deciding them (or,
    /// for orders it has forgotten, two weeks after they closed, decides them again under the
    /// ids of the first decisions: order ids must never repeat).
    #[arg(long, default_value_t = 0)]
    first_order: u64,
    /// Event time of the first event: RFC 3339, or `now`.
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    start: String,
    /// Events per day of event time (spacing of occurred_at). With --rate and --start now,
    /// defaults to rate × 86,400 so event time follows the clock.
    #[arg(long)]
    events_per_day: Option<f64>,
    /// Write NDJSON to this file (`-` for stdout, the default).
    #[arg(long, short, default_value = "-", conflicts_with_all = ["http", "kafka"])]
    output: PathBuf,
    /// POST NDJSON batches to this ingest URL, e.g. http://127.0.0.1:8080/v1/events.
    #[arg(long, conflicts_with = "kafka", requires = "token")]
    http: Option<String>,
    /// The producer token sent with --http; its scopes must cover every type generated:
    /// `emporium token --producer generator --scope storefront,orders,catalog,accounts`.
    #[arg(long, env = "EMPORIUM_PRODUCER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Append straight to Kafka at these brokers (host:port,...), bypassing ingest.
    #[arg(long)]
    kafka: Option<String>,
    #[command(flatten)]
    kafka_client: crate::open::KafkaClientArgs,
    /// Lines per HTTP request or Kafka append.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Partitions of the events topic if --kafka has to create it.
    #[arg(long, default_value_t = 4, requires = "kafka")]
    partitions: u32,
    /// HTTP requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("expected a duration like 30s, 5m or 1h, got {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn parse_start(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if s == "now" {
        return Ok(Utc::now());
    }
    Ok(DateTime::parse_from_rfc3339(s)
        .with_context(|| {
            format!("--start: expected RFC 3339 (2026-01-01T00:00:00Z) or `now`, got {s:?}")
        })?
        .with_timezone(&Utc))
}

pub fn main(args: GenerateArgs) -> anyhow::Result<()> {
    let rate = (args.rate > 0.0).then_some(args.rate);
    let start = parse_start(&args.start)?;
    let defaults = GeneratorConfig::default();
    let events_per_day = args
        .events_per_day
        .unwrap_or(match (rate, args.start.as_str()) {
            (Some(r), "now") => r * 86_400.0,
            _ => defaults.events_per_day,
        });
    let config = GeneratorConfig {
        seed: args.seed,
        products: args.products,
        users: args.users,
        warehouses: args.warehouses,
        invalid_fraction: args.invalid_fraction,
        payment_failure_rate: args.payment_failure_rate,
        fulfilment_scale: args.fulfilment_scale,
        taste_share: args.taste_share,
        erasure_rate: args.erasure_rate,
        first_order: args.first_order,
        start,
        events_per_day,
        ..defaults
    };
    let mut generator = Generator::new(config).context("generator settings")?;
    let limits = Limits {
        events: args.events,
        duration: args.duration,
        rate,
    };
    if limits.events.is_none() && limits.duration.is_none() && args.output.as_os_str() != "-" {
        bail!("give --events N or --duration D: writing to a file without a limit never ends");
    }
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    if let Some(url) = &args.http {
        let endpoint = output::Endpoint {
            url: url.clone(),
            token: args.token.clone().unwrap_or_default(),
        };
        let rt = tokio::runtime::Runtime::new()?;
        let reporter = spawn_reporter(Arc::clone(&progress));
        rt.block_on(output::send_http(
            &mut generator,
            &endpoint,
            args.batch,
            args.concurrency,
            limits,
            Arc::clone(&progress),
        ))?;
        drop(reporter);
    } else if let Some(brokers) = &args.kafka {
        let rt = tokio::runtime::Runtime::new()?;
        let reporter = spawn_reporter(Arc::clone(&progress));
        rt.block_on(async {
            let log = crate::open::kafka(brokers, 1, &args.kafka_client)?;
            log.ensure_topic(EVENTS_TOPIC, args.partitions).await?;
            output::send_to_log(
                &mut generator,
                log.as_ref(),
                args.batch,
                limits,
                Arc::clone(&progress),
            )
            .await?;
            anyhow::Ok(())
        })?;
        drop(reporter);
    } else if args.output.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = BufWriter::with_capacity(1 << 20, stdout);
        match output::write_ndjson(&mut generator, &mut out, limits, &progress) {
            Err(output::OutputError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
    } else {
        let file = std::fs::File::create(&args.output)
            .with_context(|| format!("creating {}", args.output.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let reporter = spawn_reporter(Arc::clone(&progress));
        output::write_ndjson(&mut generator, &mut out, limits, &progress)?;
        drop(reporter);
    }
    let n = progress.generated.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    if args.output.as_os_str() != "-"
        || args.http.is_some()
        || args.kafka.is_some()
        || std::io::stderr().is_terminal()
    {
        eprintln!(
            "generated {n} events ({} invalid, {:.1} MB) in {secs:.2} s: {:.0} events/s{}",
            progress.invalid.load(Ordering::Relaxed),
            progress.bytes.load(Ordering::Relaxed) as f64 / 1e6,
            n as f64 / secs.max(1e-9),
            if args.http.is_some() {
                format!(
                    "; ingest accepted {}, duplicates {}, rejected {}",
                    progress.accepted.load(Ordering::Relaxed),
                    progress.duplicates.load(Ordering::Relaxed),
                    progress.rejected.load(Ordering::Relaxed)
                )
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// Prints progress to stderr every 2 s until dropped (the thread wakes at once on the drop).
struct Reporter(Option<std::sync::mpsc::Sender<()>>);

impl Drop for Reporter {
    fn drop(&mut self) {
        self.0.take();
    }
}

fn spawn_reporter(progress: Arc<Progress>) -> Reporter {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let start = Instant::now();
        let rate = emporium_ops::status::Rate::new(0);
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            stopped.recv_timeout(Duration::from_secs(2))
        {
            let n = progress.generated.load(Ordering::Relaxed);
            let line = format!("generated: {n} events (+{:.0}/s)", rate.per_second(n));
            eprintln!(
                "{}",
                emporium_ops::status::format_lines(start.elapsed(), &[line])
            );
        }
    });
    Reporter(Some(stop))
}
