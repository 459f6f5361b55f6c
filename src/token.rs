//! `emporium token --user ID`: mints a shopper's bearer token for the read API, signed with this
//! deployment's secret (see `keys.rs`). `--operator` prints the operator key instead.

use std::path::PathBuf;

use clap::Args;

#[derive(Args)]
pub struct TokenArgs {
    /// The user the token is for: it reads that user's orders and no one else's.
    #[arg(long, required_unless_present = "operator")]
    user: Option<String>,
    /// Print the operator key (reads every order) instead of a shopper token.
    #[arg(long, conflicts_with = "user")]
    operator: bool,
    /// The data directory of `emporium run` (where auth.json is kept).
    #[arg(long, env = "EMPORIUM_DATA_DIR", default_value = "emporium-data")]
    data_dir: PathBuf,
}

pub fn main(args: TokenArgs) -> anyhow::Result<()> {
    let (auth, _) = crate::keys::load_or_create(&args.data_dir)?;
    match args.user {
        Some(user) => println!("{}", auth.token_for(&user)),
        None => println!("{}", auth.operator_key()),
    }
    Ok(())
}
