//! `emporium`: the one binary that wires Emporium's parts together. It parses arguments, builds
//! each component's configuration, starts them, and shuts them down; it holds no logic of its own.

mod alloc;
mod dlq;
mod features;
mod generate;
mod keys;
mod lakehouse;
mod open;
mod ops;
mod pipeline;
mod rebuild;
mod run;
mod schema;
mod search;
mod serve;
mod sql;
mod store;
mod token;

use clap::{Parser, Subcommand};

/// Emporium: the data plane of a large shop, run as streams.
///
/// Every shopper action is an event appended to a durable log (embedded by default, or Kafka);
/// incremental dataflows keep inventory and orders up to date; analysts query every event with
/// SQL. Start with `emporium run --demo` and open http://127.0.0.1:8080/metrics.
#[derive(Parser)]
#[command(name = "emporium", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform on one machine: ingest, dataflows, store and read API (embedded or Kafka/ScyllaDB).
    Run(run::RunArgs),
    /// Generate deterministic shop traffic: NDJSON to stdout/a file, HTTP batches, or Kafka.
    Generate(generate::GenerateArgs),
    /// Show rejected events from the dead-letter log, with the reasons they were rejected.
    Dlq(dlq::DlqArgs),
    /// Print the event schemas: the JSON Schema producers validate against, or Arrow schemas.
    Schema(schema::SchemaArgs),
    /// Run the dataflow alone: one of several processes splitting a Kafka log (distributed deployment).
    Pipeline(pipeline::PipelineArgs),
    /// Serve the read API alone from the store (ScyllaDB in the distributed deployment).
    Serve(serve::ServeArgs),
    /// Write every event of the log into the lakehouse (Delta tables) alone, exactly once.
    Lakehouse(lakehouse::LakehouseArgs),
    /// Query the lakehouse with SQL (DataFusion): one query, or an interactive prompt.
    Sql(sql::SqlArgs),
    /// Rebuild an event log from the lakehouse, for when the log lost its beginning.
    RebuildLog(rebuild::RebuildArgs),
    /// Rebuild the search index from the store's search documents, with progress.
    Reindex(search::ReindexArgs),
    /// List and describe the feature store's declared feature views (features/features.toml).
    Features(features::FeaturesArgs),
    /// Mint bearer tokens: a shopper's for the read API, a producer's for ingest; print the operator
    /// key; or rotate the signing key.
    Token(token::TokenArgs),
}

/// Emporium's own messages at info; the Delta Lake and DataFusion libraries log every commit and
/// scan at info, so theirs only from warn (`EMPORIUM_LOG=debug` shows everything).
const DEFAULT_LOG_FILTER: &str =
    "info,deltalake_core=warn,deltalake=warn,buoyant_kernel=warn,delta_kernel=warn,datafusion=warn";

fn main() -> anyhow::Result<()> {
    alloc::keep_freed_memory_a_while();
    let cli = Cli::parse();
    // Before anything emits a metric: those emitted earlier would be lost.
    emporium_ops::metrics::install();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EMPORIUM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        // A log line that cannot be written is dropped. With this on (the default), the
        // subscriber reports it with `eprintln!`, which panics when stderr fails too: a full disk
        // under `2> file` then killed whatever thread logged next (the fault suite's full-disk
        // case lost its dataflow and lakehouse threads, and their supervisor, that way).
        .log_internal_errors(false)
        .init();
    let result = match cli.command {
        Command::Run(args) => run::main(args),
        Command::Generate(args) => generate::main(args),
        Command::Dlq(args) => dlq::main(args),
        Command::Schema(args) => schema::main(args),
        Command::Pipeline(args) => pipeline::main(args),
        Command::Serve(args) => serve::main(args),
        Command::Lakehouse(args) => lakehouse::main(args),
        Command::Sql(args) => sql::main(args),
        Command::RebuildLog(args) => rebuild::main(args),
        Command::Reindex(args) => search::reindex(args),
        Command::Token(args) => token::main(args),
        Command::Features(args) => features::main(args),
    };
    // Fenced by a newer decider (ADR 0012): a distinct exit code, so that a supervisor that
    // restarts failed processes can be told not to restart this one (which would take the role
    // back): systemd `RestartPreventExitStatus=3`, or a restart policy keyed on it.
    if let Err(e) = &result
        && e.chain()
            .any(|c| c.is::<emporium_ops::supervisor::Permanent>())
    {
        eprintln!("Error: {e:#}");
        eprintln!(
            "Exit code {FENCED_EXIT_CODE}: a newer decider took over; do not restart this one."
        );
        std::process::exit(FENCED_EXIT_CODE);
    }
    result
}

/// The exit code of a process whose dataflow a newer decider fenced (ADR 0012).
const FENCED_EXIT_CODE: i32 = 3;
