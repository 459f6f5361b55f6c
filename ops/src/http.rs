//! Serving a process's router: the requests of every instrumented router traced (`tower_http`),
//! timed into `emporium_<service>_request_duration_seconds{route,status}` and counted in
//! `emporium_<service>_requests_total{route,status}`; unknown routes (404) and wrong methods (405)
//! answered in the one error envelope; in-flight requests drained when the process's token is
//! cancelled.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

/// Adds request tracing and request metrics under `service` (`ingest`, `serving`, `sql`…: the
/// component whose routes these are). Instrument each component's router, then merge them.
pub fn instrument(router: Router, service: &'static str) -> Router {
    let names: &'static (String, String) = Box::leak(Box::new((
        format!("emporium_{service}_request_duration_seconds"),
        format!("emporium_{service}_requests_total"),
    )));
    router
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            record(names, request, next)
        }))
        .layer(TraceLayer::new_for_http())
}

async fn record(names: &'static (String, String), request: Request, next: Next) -> Response {
    let began = Instant::now();
    // Instrumented routers see only their own routes, each with its matched path.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(String::new, |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(names.0.as_str(), "route" => route.clone(), "status" => status.clone())
        .record(began.elapsed().as_secs_f64());
    metrics::counter!(names.1.as_str(), "route" => route, "status" => status).increment(1);
    response
}

/// Serves `router` on `listener` until `cancel`, then drains in-flight requests. Routes nobody
/// declared get a JSON 404 in the one envelope. Handlers can read the peer's address
/// (`ConnectInfo<SocketAddr>`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router
            .fallback(crate::error::no_route)
            .method_not_allowed_fallback(crate::error::wrong_method)
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { cancel.cancelled().await })
    .await
}
