//! `emporium features`: the declared feature views (issue 26, ADR 0016) — what each serves, from
//! which dataflow, fresh for how long.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use emporium_features::declaration::{self, Declarations};

#[derive(Args)]
pub struct FeaturesArgs {
    /// The feature declaration to read instead of the built-in one (the repository's
    /// features/features.toml).
    #[arg(long, env = "EMPORIUM_FEATURES_FILE", global = true)]
    features_file: Option<PathBuf>,
    #[command(subcommand)]
    command: FeaturesCommand,
}

#[derive(Subcommand)]
enum FeaturesCommand {
    /// List the feature views: entity and join keys, dataflow, ttl, features.
    List,
    /// Describe one feature view: each feature with its type and meaning.
    Describe {
        /// The view's name (see `emporium features list`).
        view: String,
    },
}

pub fn main(args: FeaturesArgs) -> anyhow::Result<()> {
    let declared = declaration::load(args.features_file.as_deref())
        .context("the feature declaration was refused")?;
    match args.command {
        FeaturesCommand::List => list(&declared),
        FeaturesCommand::Describe { view } => describe(&declared, &view)?,
    }
    Ok(())
}

fn list(declared: &Declarations) {
    println!("feature views declared in {}:", declared.source);
    println!(
        "{:<16} {:<14} {:<20} {:<18} {:>6}  features",
        "view", "entity", "join keys", "dataflow", "ttl"
    );
    for v in &declared.views {
        println!(
            "{:<16} {:<14} {:<20} {:<18} {:>6}  {}",
            v.name,
            v.entity.name(),
            v.entity.keys().join(", "),
            v.dataflow.name,
            v.ttl_text,
            v.names()
        );
    }
    println!("`emporium features describe VIEW` for a view's features.");
}

fn describe(declared: &Declarations, name: &str) -> anyhow::Result<()> {
    let Some(v) = declared.view(name) else {
        bail!(
            "no feature view {name:?} in {}; declared: {}",
            declared.source,
            declared.names()
        );
    };
    println!("{}: {}", v.name, v.description);
    println!(
        "  entity: {} (join keys: {})",
        v.entity.name(),
        v.entity.keys().join(", ")
    );
    println!("  maintained by: the {} dataflow", v.dataflow.name);
    println!(
        "  ttl: {} (a value older than this, in event time, is stale)",
        v.ttl_text
    );
    println!("  features ({}):", v.features.len());
    let width = v.features.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for f in &v.features {
        println!(
            "    {:<width$}  {:<7}  {}",
            f.name,
            f.ty.name(),
            f.description
        );
    }
    println!(
        "  reference them as {}:<feature>, e.g. {}:{}",
        v.name,
        v.name,
        v.features.first().map_or("", |f| f.name.as_str())
    );
    Ok(())
}
