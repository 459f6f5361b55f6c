//! `emporium sql`: read-only SQL over every lakehouse table (DataFusion). With a query, runs it and
//! prints the result (a table, or CSV/JSON/NDJSON/Parquet for pipes); without one, an interactive
//! prompt with history.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use emporium_lakehouse::planner::Rules;
use emporium_lakehouse::sql::{Format, SqlEngine, encode};

#[derive(Args)]
#[command(after_help = "Examples:
  emporium sql \"SELECT type, count(*) FROM order_placed GROUP BY type\"
  emporium sql --format csv \"SELECT * FROM inventory_reserved WHERE date = DATE '2026-11-25'\" > reserved.csv
  emporium sql --file benches/analyst_queries/3_cart_abandonment.sql
  emporium sql            # interactive: end statements with ';', \\d lists tables, \\q quits

Every event type is a table (order_placed, product_viewed, ...), partitioned by `date`
(the UTC day of occurred_at): filters on `date` skip whole days. Records that are not events
are in `rejected_records`.")]
pub struct SqlArgs {
    /// The query (it may start with a `--` comment). Without one or --file, an interactive prompt
    /// opens.
    #[arg(allow_hyphen_values = true, conflicts_with = "file")]
    query: Option<String>,
    /// Read the query from this file (`-` for standard input).
    #[arg(long, short = 'f', value_name = "PATH")]
    file: Option<PathBuf>,
    /// The data directory whose lakehouse to query.
    #[arg(long, env = "EMPORIUM_DATA_DIR", default_value = "emporium-data")]
    data_dir: PathBuf,
    /// The lakehouse directory [default: <data dir>/lakehouse].
    #[arg(long = "lakehouse-dir", env = "EMPORIUM_LAKEHOUSE_DIR")]
    lakehouse_dir: Option<PathBuf>,
    /// Output: table, csv, json (an array), ndjson, parquet (binary: redirect it to a file).
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json", "ndjson", "parquet"])]
    format: String,
    /// Seconds a query may run before it is cancelled.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// Memory a query may use, in MiB (it fails rather than use more).
    #[arg(long, default_value_t = 8192)]
    memory_mb: usize,
    /// The planner: `lakehouse` (DataFusion's with the lakehouse's rules: shared subplans,
    /// sorted windows, filters above unnests, row estimates) or `datafusion` (DataFusion's
    /// alone). The answers are the same (the SQL corpus checks it); use `datafusion` to tell
    /// whether a rule is behind a surprising plan or time.
    #[arg(long, default_value = "lakehouse", value_parser = ["lakehouse", "datafusion"])]
    planner: String,
}

pub fn main(args: SqlArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let root = args
        .lakehouse_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("lakehouse"));
    if !root.is_dir() {
        anyhow::bail!(
            "no lakehouse at {}: run `emporium run` (or `emporium lakehouse`) first, or pass --data-dir / --lakehouse-dir",
            root.display()
        );
    }
    let format = Format::from_name(&args.format).context("unknown --format")?;
    let rules = match args.planner.as_str() {
        "datafusion" => Rules::DataFusion,
        _ => Rules::Lakehouse,
    };
    let engine = SqlEngine::new(
        &root,
        crate::lakehouse::sql_limits(args.timeout, args.memory_mb),
    )
    .with_rules(rules);
    let query = match (&args.query, &args.file) {
        (Some(query), _) => Some(query.clone()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut query = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut query)
                .context("reading the query from standard input")?;
            Some(query)
        }
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the query from {}", path.display()))?,
        ),
        (None, None) => None,
    };
    match query {
        Some(query) => {
            if format == Format::Parquet && std::io::stdout().is_terminal() {
                anyhow::bail!(
                    "--format parquet writes binary: redirect it to a file (> out.parquet)"
                );
            }
            let result = engine.query(&query).await?;
            let bytes = encode(&result, format)?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
            Ok(())
        }
        None => interactive(&engine, format, &root).await,
    }
}

async fn interactive(
    engine: &SqlEngine,
    format: Format,
    root: &std::path::Path,
) -> anyhow::Result<()> {
    let format = if format == Format::Parquet {
        Format::Table
    } else {
        format
    };
    let tables = engine.table_names().await?;
    println!(
        "Emporium SQL over {} ({} tables). End statements with ';'. \\d lists tables, \\q quits.",
        root.display(),
        tables.len()
    );
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = root.join(".sql_history");
    let _ = editor.load_history(&history);
    let mut statement = String::new();
    loop {
        let prompt = if statement.is_empty() {
            "sql> "
        } else {
            "...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                statement.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if statement.is_empty() {
            match trimmed {
                "" => continue,
                "\\q" | "quit" | "exit" | ".quit" => break,
                "\\d" | ".tables" | "show tables" => {
                    let _ = editor.add_history_entry(trimmed);
                    for name in engine.table_names().await? {
                        println!("  {name}");
                    }
                    continue;
                }
                _ => {}
            }
        }
        statement.push_str(&line);
        statement.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut statement);
        let sql = sql.trim().trim_end_matches(';').to_owned();
        let _ = editor.add_history_entry(format!("{sql};"));
        let began = Instant::now();
        match engine.query(&sql).await {
            Ok(result) => {
                let bytes = encode(&result, format)?;
                std::io::stdout().write_all(&bytes)?;
                println!(
                    "({} rows in {:.3} s)",
                    result.num_rows(),
                    began.elapsed().as_secs_f64()
                );
            }
            Err(e) => println!("error: {e}"),
        }
    }
    let _ = editor.save_history(&history);
    Ok(())
}
