//! `emporium token`: mints bearer tokens signed with this deployment's keys (see `keys.rs`) — a
//! shopper's for the read API, a producer's for ingest — prints the operator key, or rotates the
//! signing key.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use emporium_serving::auth::{Scope, parse_ttl};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["user", "producer", "operator", "rotate"]))]
pub struct TokenArgs {
    /// A shopper's token for the read API: it reads that user's orders and no one else's.
    #[arg(long)]
    user: Option<String>,
    /// A producer's token for `POST /v1/events`, named after the service that sends (it shows
    /// in the dead-letter log's `source`). Give its --scope.
    #[arg(long, requires = "scope")]
    producer: Option<String>,
    /// The event types the producer may send, comma-separated: `storefront` (views, searches,
    /// carts, reviews), `orders` (orders, payments, shipments, returns), `catalog` (products,
    /// prices, stock). Decisions are written only by the dataflows.
    #[arg(long, value_delimiter = ',', value_parser = parse_scope)]
    scope: Vec<Scope>,
    /// How long the token lives: 90m, 12h, 30d … (default: 1h for a shopper, 30d for a
    /// producer). At most 365d.
    #[arg(long, value_parser = parse_ttl)]
    ttl: Option<Duration>,
    /// Print the operator key (reads every order, the dead-letter log and SQL).
    #[arg(long)]
    operator: bool,
    /// Make a new signing key in auth.json. Tokens signed by the older keys keep working until
    /// --keep-old has passed (make it at least the longest --ttl you mint); a running emporium
    /// picks the new key up within seconds.
    #[arg(long)]
    rotate: bool,
    /// With --rotate: how long the older keys keep checking the tokens they signed.
    #[arg(long, value_parser = parse_ttl, default_value = "30d", requires = "rotate")]
    keep_old: Duration,
    /// The data directory of `emporium run` (where auth.json is kept).
    #[arg(long, env = "EMPORIUM_DATA_DIR", default_value = "emporium-data")]
    data_dir: PathBuf,
}

const MAX_TTL: Duration = Duration::from_secs(365 * 86_400);

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s.trim()).ok_or_else(|| {
        format!("{s:?}: expected one of storefront, orders, catalog (decisions have no scope)")
    })
}

pub fn main(args: TokenArgs) -> anyhow::Result<()> {
    if args.rotate {
        let (kid, until) = crate::keys::rotate(&args.data_dir, args.keep_old)?;
        let until = chrono::DateTime::from_timestamp(until, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        println!(
            "new signing key {kid}; tokens signed by the older keys are accepted until {until}"
        );
        return Ok(());
    }
    let keys = crate::keys::load_or_create(&args.data_dir)?;
    let auth = keys.authenticator()?;
    if args.operator {
        println!("{}", auth.operator_key());
        return Ok(());
    }
    if let Some(ttl) = args.ttl
        && ttl > MAX_TTL
    {
        anyhow::bail!("--ttl: at most 365d");
    }
    match (args.user, args.producer) {
        (Some(user), _) => {
            println!(
                "{}",
                auth.shopper_token(&user, args.ttl.unwrap_or(Duration::from_secs(3600)))
            );
        }
        (None, Some(producer)) => {
            println!(
                "{}",
                auth.producer_token(
                    &producer,
                    &args.scope,
                    args.ttl.unwrap_or(Duration::from_secs(30 * 86_400)),
                )
            );
        }
        (None, None) => {
            return Err(anyhow::anyhow!("nothing to mint")).context("give --user or --producer");
        }
    }
    Ok(())
}
