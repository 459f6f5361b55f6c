//! `emporium run`: the platform in one process: the ingest API over the embedded log (or Kafka),
//! the inventory dataflow deciding orders and writing the store (embedded, or ScyllaDB), the read
//! API over that store, and an optional demo generator feeding it all. Ctrl-C drains requests and
//! stops cleanly; a restart continues where the log left off.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use emporium_dataflows::orders::OrderStatus;
use emporium_generator::output::{self, Limits, Progress};
use emporium_generator::{Generator, GeneratorConfig};
use emporium_ingest::api;
use emporium_ingest::intake::{Intake, IntakeConfig};
use emporium_lakehouse::SinkStats;
use emporium_lakehouse::sink::RunningSink;
use emporium_log::{DEAD_LETTER_TOPIC, EVENTS_TOPIC, EventLog};
use emporium_ops::http::{instrument, serve};
use emporium_ops::status::{self, Rate};
use emporium_ops::supervisor::{Backoff, Health, Part, supervise};
use emporium_ops::{CancellationToken, Readiness, ReadinessCheck};
use emporium_pipeline::{PipelineConfig, PipelineStats, RunningPipeline};
use emporium_serving::auth::Scope;
use tokio::net::TcpListener;

#[derive(Args)]
pub struct RunArgs {
    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "EMPORIUM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the embedded log and store keep their files.
    #[arg(long, env = "EMPORIUM_DATA_DIR", default_value = "emporium-data")]
    data_dir: PathBuf,
    /// Use Kafka at these brokers (host:port,...) instead of the embedded log.
    #[arg(long, env = "EMPORIUM_KAFKA")]
    kafka: Option<String>,
    /// Replication factor of topics Emporium creates in Kafka.
    #[arg(long, default_value_t = 1, requires = "kafka")]
    kafka_replication: i32,
    #[command(flatten)]
    kafka_client: crate::open::KafkaClientArgs,
    /// Partitions of the events topic when it is created.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Feed the platform generated shop traffic, so there is something to see.
    #[arg(long)]
    demo: bool,
    /// Events per second the demo generator sends.
    #[arg(long, default_value_t = 200.0, requires = "demo")]
    demo_rate: f64,
    /// Timely worker threads of the inventory dataflow (they split the log's partitions).
    #[arg(long, env = "EMPORIUM_WORKERS", default_value_t = 2)]
    workers: usize,
    /// Run ingest and the read API only, without the dataflow: for an ingest/serving node of a
    /// distributed deployment whose dataflow runs as `emporium pipeline` processes.
    #[arg(long)]
    no_dataflow: bool,
    /// Seconds between status lines (0: none).
    #[arg(long, default_value_t = 5)]
    status_every: u64,
    #[command(flatten)]
    store: crate::store::StoreArgs,
    #[command(flatten)]
    checkpoints: crate::store::CheckpointArgs,
    #[command(flatten)]
    decisions: crate::pipeline::DecisionArgs,
    /// Do not write the lakehouse (for a node whose lakehouse is an `emporium lakehouse` process).
    #[arg(long)]
    no_lakehouse: bool,
    /// The feature declaration `/v1/features` serves instead of the built-in one
    /// (features/features.toml); refused at start, with its line, when it is wrong.
    #[arg(long, env = "EMPORIUM_FEATURES_FILE")]
    features_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    lakehouse: crate::lakehouse::SinkArgs,
    #[command(flatten)]
    search: crate::search::SearchArgs,
    /// Seconds a `POST /v1/sql` query may run before it is cancelled.
    #[arg(long, default_value_t = 60)]
    sql_timeout: u64,
    /// Memory a `POST /v1/sql` query may use, in MiB (two run at once).
    #[arg(long, default_value_t = 2048)]
    sql_memory_mb: usize,
}

pub fn main(args: RunArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("emporium-http")
        .build()?;
    rt.block_on(run(args))
}

async fn run(mut args: RunArgs) -> anyhow::Result<()> {
    let features = emporium_features::declaration::load(args.features_file.as_deref())
        .context("the feature declaration was refused")?;
    let log = crate::open::log(
        args.kafka.as_deref(),
        args.kafka_replication,
        &args.kafka_client,
        &args.data_dir,
    )?;
    let intake = Intake::start(
        Arc::clone(&log),
        IntakeConfig {
            event_partitions: args.partitions,
            ..IntakeConfig::default()
        },
    )
    .await
    .with_context(|| format!("starting ingest on the {}", log.describe()))?;
    let store = args.store.open(&args.data_dir).await?;
    // The search index, fed by this process's dataflow (none without one: `emporium pipeline`
    // processes write the store, and this process's index would never move).
    let search = match args.search.no_search || args.no_dataflow {
        true => None,
        false => Some(args.search.open(&args.data_dir)?),
    };
    let keys = crate::keys::load_or_create(&args.data_dir)?;
    let auth = keys.authenticator()?;
    crate::keys::watch(&keys, auth.clone());
    let listener = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "binding {} (is another emporium running? use --listen)",
            args.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let ends_at_start = log.end_offsets(EVENTS_TOPIC).await?;
    let events_at_start: u64 = ends_at_start.iter().sum();
    println!("Emporium is running");
    println!(
        "  event log   {} ({events_at_start} events so far)",
        log.describe()
    );
    println!("  listening on {base}");
    println!(
        "  ingest      POST {base}/v1/events  (application/json or application/x-ndjson; a producer token: emporium token --producer NAME --scope storefront,orders,catalog,accounts)"
    );
    println!("  dead letters GET {base}/v1/dlq     (operator key; or: emporium dlq --url {base})");
    println!("  store       {}", store.describe());
    println!(
        "  read API    GET {base}/v1/products/{{id}}  /v1/inventory/{{sku}}  /v1/orders/{{id}}  /v1/users/{{id}}/orders"
    );
    println!(
        "              bearer tokens: `emporium token --user ID` (keys in {}); spec at {base}/openapi.json",
        keys.source
    );
    println!(
        "  SQL         POST {base}/v1/sql (operator key), or: emporium sql --data-dir {}",
        args.data_dir.display()
    );
    match &search {
        Some(_) => println!(
            "  search      GET {base}/v1/search?q=…  /v1/suggest?q=…  (index at {}, refreshed every {} ms)",
            args.search.dir(&args.data_dir).display(),
            args.search.refresh_ms
        ),
        None => println!("  search      off"),
    }
    println!("  operations  GET {base}/healthz  {base}/readyz  {base}/metrics");

    let cancel = emporium_ops::shutdown::on_signal();
    let lakehouse_root = args.lakehouse.root(&args.data_dir);
    let sql = Arc::new(emporium_lakehouse::sql::SqlEngine::new(
        &lakehouse_root,
        crate::lakehouse::sql_limits(args.sql_timeout, args.sql_memory_mb),
    ));
    // `/readyz` waits for the log, and for the dataflow to read what the log held at the start (a
    // replay after a restart can take minutes); until then the store's answers are behind.
    let replay = Arc::new(crate::ops::Replay::all(ends_at_start));
    // The dataflow and the sink are restarted when they fail; ingest and reads go on meanwhile,
    // and `/readyz` says which is down and why.
    let dataflow_health = Arc::new(Health::new("dataflow"));
    let sink_health = Arc::new(Health::new("lakehouse"));
    let mut readiness = Readiness::new().with(Arc::new(api::LogReachable(Arc::clone(&log))));
    if !args.no_dataflow {
        readiness.add(Arc::clone(&dataflow_health) as Arc<dyn ReadinessCheck>);
        readiness.add(Arc::clone(&replay) as Arc<dyn ReadinessCheck>);
    }
    if !args.no_lakehouse {
        readiness.add(Arc::clone(&sink_health) as Arc<dyn ReadinessCheck>);
    }
    let router = instrument(api::router(Arc::clone(&intake), auth.clone()), "ingest")
        .merge(instrument(
            emporium_serving::api::router_with_features(Arc::clone(&store), auth.clone(), features),
            "serving",
        ))
        .merge(instrument(
            emporium_lakehouse::http::router(sql, auth.clone()),
            "sql",
        ))
        .merge(emporium_ops::router::router(readiness));
    let search_counters = Arc::new(emporium_serving::search::SearchCounters::default());
    let router = match &search {
        Some(index) => router.merge(instrument(
            emporium_serving::search::router(
                Arc::clone(index),
                auth.clone(),
                Some(crate::search::search_log(&intake)),
                Arc::clone(&search_counters),
            ),
            "search",
        )),
        None => router.merge(emporium_serving::search::unavailable_router(
            "this process keeps no search index (--no-search or --no-dataflow)",
        )),
    };
    let server = tokio::spawn(serve(listener, router, cancel.clone()));

    let progress = Arc::new(Progress::default());
    let demo = args.demo.then(|| {
        println!(
            "  demo        generating ~{} events/s into {base}/v1/events",
            args.demo_rate
        );
        let config = GeneratorConfig {
            // A fresh seed per start: new event ids, so a restart adds traffic instead of repeats.
            seed: chrono::Utc::now().timestamp_micros() as u64,
            start: chrono::Utc::now(),
            events_per_day: args.demo_rate * 86_400.0,
            invalid_fraction: 0.002,
            // A small catalog, so the shop's traffic starts within seconds, and fulfilment
            // 600× faster than a real shop, so orders ship within seconds to minutes.
            products: 200,
            users: 5_000,
            fulfilment_scale: 1.0 / 600.0,
            // Order ids after every event so far: a restart never places an order id twice.
            first_order: events_at_start,
            ..GeneratorConfig::default()
        };
        // The demo's traffic comes in as any producer's would: with a token for every scope.
        let endpoint = output::Endpoint {
            url: format!("{base}/v1/events"),
            token: auth.producer_token("demo", &Scope::ALL, Duration::from_secs(365 * 86_400)),
        };
        let progress = Arc::clone(&progress);
        let rate = args.demo_rate;
        tokio::spawn(async move {
            let mut generator = match Generator::new(config) {
                Ok(g) => g,
                Err(e) => return tracing::error!(error = %e, "demo generator"),
            };
            let limits = Limits {
                rate: Some(rate),
                ..Limits::default()
            };
            if let Err(e) =
                output::send_http(&mut generator, &endpoint, 500, 2, limits, progress).await
            {
                tracing::error!(error = %e, "demo generator stopped");
            }
        })
    });
    // The inventory dataflow: decides every order at the event-time watermark and appends the
    // decisions to the log (ADR 0005). Its own threads: timely workers block on the log.
    let backoff = Backoff::default();
    let dataflow_cancel = CancellationToken::new();
    let dataflow = if args.no_dataflow {
        println!(
            "  dataflows   off (--no-dataflow): `emporium pipeline` processes decide and write the store"
        );
        None
    } else {
        // The demo shows recommendations (its traffic is light).
        args.decisions.recommendations |= args.demo;
        let config = args.decisions.apply(PipelineConfig {
            workers: args.workers,
            checkpoint: args.checkpoints.config(&args.data_dir),
            search: search.as_ref().map(|index| args.search.sink(index)),
            ..PipelineConfig::default()
        });
        let (log, store, replay) = (Arc::clone(&log), Arc::clone(&store), Arc::clone(&replay));
        let (health, cancel, backoff) = (
            Arc::clone(&dataflow_health),
            dataflow_cancel.clone(),
            backoff.clone(),
        );
        println!(
            "  dataflows   inventory decisions on {} timely worker(s), appended to the log as events; documents to the store",
            args.workers
        );
        Some(tokio::spawn(async move {
            supervise(&health, &cancel, &backoff, || {
                let pipeline = RunningPipeline::start(
                    Arc::clone(&log),
                    Some(Arc::clone(&store)),
                    tokio::runtime::Handle::current(),
                    config.clone(),
                )
                .context("starting the dataflow thread")
                .map(|pipeline| {
                    replay.stats.set(Arc::clone(&pipeline.stats));
                    Box::new(crate::ops::Dataflow(pipeline)) as Box<dyn Part>
                });
                std::future::ready(pipeline)
            })
            .await
        }))
    };
    // The lakehouse sink: every event into Delta tables, exactly once (ADR 0009).
    let sink_cancel = CancellationToken::new();
    let sink_stats: Arc<crate::ops::Current<SinkStats>> = Arc::default();
    let sink = if args.no_lakehouse {
        println!("  lakehouse   off (--no-lakehouse)");
        None
    } else {
        let config = args.lakehouse.config(&args.data_dir);
        println!(
            "  lakehouse   every event into Delta tables at {} (commits every {} s)",
            config.root.display(),
            config.flush_interval.as_secs()
        );
        let (log, current) = (Arc::clone(&log), Arc::clone(&sink_stats));
        let (health, cancel, backoff) = (
            Arc::clone(&sink_health),
            sink_cancel.clone(),
            backoff.clone(),
        );
        Some(tokio::spawn(async move {
            supervise(&health, &cancel, &backoff, || {
                let (log, config, current) =
                    (Arc::clone(&log), config.clone(), Arc::clone(&current));
                async move {
                    let sink =
                        RunningSink::start(log, config.clone())
                            .await
                            .with_context(|| {
                                format!("opening the lakehouse at {}", config.root.display())
                            })?;
                    current.set(Arc::clone(&sink.stats));
                    Ok(Box::new(crate::ops::Lakehouse(sink)) as Box<dyn Part>)
                }
            })
            .await
        }))
    };
    let snapshots = (!args.no_lakehouse && args.lakehouse.snapshot_secs > 0).then(|| {
        println!(
            "              inventory snapshots from the store every {} s (table inventory_snapshots)",
            args.lakehouse.snapshot_secs
        );
        emporium_lakehouse::snapshots::spawn_snapshots(
            Arc::clone(&store),
            lakehouse_root.clone(),
            Duration::from_secs(args.lakehouse.snapshot_secs),
        )
    });
    let has_dataflow = dataflow.is_some();
    let has_sink = sink.is_some();
    // Started (or failed, and being retried) before saying so: the lakehouse's tables exist
    // once this prints, as before the parts were supervised.
    if has_dataflow {
        dataflow_health.started().await;
    }
    if has_sink {
        sink_health.started().await;
    }
    println!("Press Ctrl-C to stop.");

    let status = {
        let log = Arc::clone(&log);
        let (search, search_counters) = (search.clone(), Arc::clone(&search_counters));
        let queries = Arc::new(Rate::new(0));
        let (replay, sink_stats) = (Arc::clone(&replay), Arc::clone(&sink_stats));
        let (dataflow_health, sink_health) =
            (Arc::clone(&dataflow_health), Arc::clone(&sink_health));
        let rate = Arc::new(Rate::new(events_at_start));
        status::spawn(
            Duration::from_secs(args.status_every),
            cancel.clone(),
            move |_| {
                let (log, rate) = (Arc::clone(&log), Arc::clone(&rate));
                let (search, queries) = (search.clone(), Arc::clone(&queries));
                let answered = search_counters.searches.load(Ordering::Relaxed)
                    + search_counters.suggests.load(Ordering::Relaxed);
                // The running instances' stats (a restarted part has new ones); without a
                // dataflow, stats that stay at zero.
                let stats = replay.stats.get().unwrap_or_default();
                let sink = has_sink.then(|| sink_stats.get()).flatten();
                let down: Vec<String> =
                    [(has_dataflow, &dataflow_health), (has_sink, &sink_health)]
                        .into_iter()
                        .filter(|(on, _)| *on)
                        .filter_map(|(_, health)| health.down().map(|why| format!("DOWN {why}")))
                        .collect();
                async move {
                    let (events, dead) = (
                        total(log.as_ref(), EVENTS_TOPIC).await,
                        total(log.as_ref(), DEAD_LETTER_TOPIC).await,
                    );
                    let mut lines =
                        status_lines(events, &rate, dead, has_dataflow, &stats, sink.as_deref());
                    if let Some(index) = &search {
                        let ends = log.end_offsets(EVENTS_TOPIC).await.unwrap_or_default();
                        lines.push(crate::search::status(
                            index,
                            &ends,
                            queries.per_second(answered),
                        ));
                    }
                    lines.extend(down);
                    lines
                }
            },
        )
    };
    cancel.cancelled().await;
    println!("Stopping: draining requests…");
    if let Some(demo) = demo {
        demo.abort();
    }
    if let Some(snapshots) = snapshots {
        snapshots.abort();
    }
    cancel.cancel();
    if let Some(status) = status {
        let _ = status.await;
    }
    // Bounded drains: a stuck client or worker must not keep Ctrl-C from working.
    match tokio::time::timeout(crate::ops::SHUTDOWN_GRACE, server).await {
        Ok(joined) => joined.context("HTTP server task")?.context("HTTP server")?,
        Err(_) => anyhow::bail!(
            "requests still running after {} s; stopping without waiting for them (nothing unacknowledged was promised)",
            crate::ops::SHUTDOWN_GRACE.as_secs()
        ),
    }
    dataflow_cancel.cancel();
    if let Some(dataflow) = dataflow {
        dataflow.await.context("the dataflow's supervisor")??;
    }
    // After the dataflow: its last decisions are in the log, and the sink writes them too.
    sink_cancel.cancel();
    if let Some(sink) = sink {
        sink.await.context("the lakehouse sink's supervisor")??;
    }
    let events: u64 = log.end_offsets(EVENTS_TOPIC).await?.iter().sum();
    drop(intake);
    println!(
        "Stopped cleanly: {events} events in the log{}.",
        if args.demo {
            format!(
                " (demo sent {})",
                progress.generated.load(Ordering::Relaxed)
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Records in every partition of `topic` (0 when the log does not answer).
async fn total(log: &dyn EventLog, topic: &str) -> u64 {
    log.end_offsets(topic)
        .await
        .map(|e| e.iter().sum())
        .unwrap_or(0)
}

/// The status report of `emporium run`: the log, the dataflow's decisions and orders, the store
/// and the lakehouse.
fn status_lines(
    events: u64,
    rate: &Rate,
    dead: u64,
    dataflow: bool,
    stats: &PipelineStats,
    sink: Option<&SinkStats>,
) -> Vec<String> {
    let per_s = rate.per_second(events);
    let log = format!("log: {events} events (+{per_s:.0}/s) | dead letters: {dead}");
    let lakehouse = sink.map_or_else(|| "lakehouse: off".to_owned(), SinkStats::summary);
    if !dataflow {
        return vec![log, lakehouse];
    }
    let watermark = stats.watermark_ms.load(Ordering::Relaxed);
    let lag = if watermark == i64::MIN {
        "waiting for every partition".to_owned()
    } else {
        let ms = chrono::Utc::now().timestamp_millis() - watermark;
        format!("watermark {:.1} s behind", ms as f64 / 1000.0)
    };
    let orders: Vec<String> = OrderStatus::ALL
        .iter()
        .map(|s| {
            (
                s,
                stats.orders_by_status[*s as usize].load(Ordering::Relaxed),
            )
        })
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    vec![
        format!(
            "{log} | decisions: {} ({lag}), anomalies: {}, late events: {}, heartbeats: {}",
            stats.decisions_appended.load(Ordering::Relaxed),
            stats.anomalies.load(Ordering::Relaxed),
            stats.late_events.load(Ordering::Relaxed),
            stats.heartbeats.load(Ordering::Relaxed),
        ),
        format!(
            "orders: {} | stock on hand: {} units | store: {} documents written | {}",
            if orders.is_empty() {
                "none yet".to_owned()
            } else {
                orders.join(", ")
            },
            stats.units_on_hand.load(Ordering::Relaxed),
            stats.documents_written.load(Ordering::Relaxed),
            crate::pipeline::checkpoint_status(stats),
        ),
        lakehouse,
    ]
}
