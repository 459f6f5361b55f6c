//! What every Emporium process shares for operations, so each subcommand answers the same way:
//!
//! - [`metrics`]: the process's Prometheus recorder (installed by the binary) and its text;
//! - [`error`]: the one JSON error envelope of every route, `{"error":{"code","message"}}`;
//! - [`router`]: `/metrics`, `/healthz` and `/readyz` (with [`router::ReadinessCheck`]s);
//! - [`http`]: serving a router with request tracing, request-duration metrics by route and
//!   status, and a graceful drain on shutdown;
//! - [`shutdown`]: one [`CancellationToken`] cancelled by SIGTERM or Ctrl-C;
//! - [`status`]: the one-line progress reports long-running subcommands print.
//!
//! See `specs/adr/0010-crates-along-the-data-path.md`.

pub mod error;
pub mod http;
pub mod metrics;
pub mod router;
pub mod shutdown;
pub mod status;
pub mod supervisor;

pub use error::ApiError;
pub use router::{Readiness, ReadinessCheck};
pub use tokio_util::sync::CancellationToken;
