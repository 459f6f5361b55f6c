//! `emporium serve`: the read API alone, for the distributed deployment — several of these
//! answer shoppers from ScyllaDB while pipeline processes keep it up to date.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use emporium_serving::api;
use tokio::net::TcpListener;

#[derive(Args)]
pub struct ServeArgs {
    /// Address the read API listens on.
    #[arg(long, env = "EMPORIUM_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Where auth.json is kept when EMPORIUM_TOKEN_SECRET / EMPORIUM_OPERATOR_KEY are not set.
    #[arg(long, env = "EMPORIUM_DATA_DIR", default_value = "emporium-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    store: crate::store::StoreArgs,
    /// The feature declaration `/v1/features` serves instead of the built-in one
    /// (features/features.toml); refused at start, with its line, when it is wrong.
    #[arg(long, env = "EMPORIUM_FEATURES_FILE")]
    features_file: Option<PathBuf>,
}

pub fn main(args: ServeArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("emporium-http")
        .build()?;
    let features = emporium_features::declaration::load(args.features_file.as_deref())
        .context("the feature declaration was refused")?;
    rt.block_on(async move {
        let store = args.store.open(&args.data_dir).await?;
        let keys = crate::keys::load_or_create(&args.data_dir)?;
        let auth = keys.authenticator()?;
        crate::keys::watch(&keys, auth.clone());
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let base = format!("http://{}", listener.local_addr()?);
        println!("Emporium read API on {base} over the {}", store.describe());
        println!("  keys        {}", keys.source);
        println!("  API         {base}/openapi.json");
        println!("  operations  GET {base}/healthz  {base}/readyz  {base}/metrics");
        let readiness = emporium_ops::Readiness::new()
            .with(Arc::new(crate::ops::StoreReachable(Arc::clone(&store))));
        let router = emporium_ops::http::instrument(
            api::router_with_features(store, auth, features),
            "serving",
        )
        .merge(emporium_ops::router::router(readiness));
        // SIGTERM (a deployment's stop) or Ctrl-C: stop accepting, drain in-flight requests.
        let cancel = emporium_ops::shutdown::on_signal();
        emporium_ops::http::serve(listener, router, cancel)
            .await
            .context("HTTP server")
    })
}
