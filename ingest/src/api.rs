//! The HTTP surface of the write path: `POST /v1/events` (producers, with a token whose scopes
//! allow the types they send) and `GET /v1/dlq` (operators); the process's operational routes
//! (`/healthz`, `/readyz`, `/metrics`) come from `emporium-ops`, with [`LogReachable`] among the
//! readiness checks. Handlers only translate HTTP to [`Intake`] calls and errors to status codes
//! with the one JSON error envelope; they never block. The caller is authenticated before the
//! body is read.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use emporium_auth::{Audience, AuthError, Authenticator, Principal};
use emporium_ops::http::{instrument, serve};
use emporium_ops::{ApiError, CancellationToken, Readiness, ReadinessCheck};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::dead_letter;
use crate::intake::{BodyFormat, Intake, IntakeError};
use crate::metrics;
use crate::producers::Grant;
use emporium_log::{EVENTS_TOPIC, EventLog, LogError};

#[derive(Clone)]
struct WritePath {
    intake: Arc<Intake>,
    auth: Authenticator,
}

/// The routes of the write path, ready to be merged into the platform's router; `auth` checks
/// producer tokens and the operator key.
pub fn router(intake: Arc<Intake>, auth: Authenticator) -> Router {
    let max_body = intake.config().max_body_bytes;
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/dlq", get(get_dead_letters))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(WritePath { intake, auth })
}

/// Readiness: the event log answers (its end offsets), for `/readyz`.
pub struct LogReachable(pub Arc<dyn EventLog>);

#[async_trait::async_trait]
impl ReadinessCheck for LogReachable {
    async fn check(&self) -> Result<(), String> {
        self.0
            .end_offsets(EVENTS_TOPIC)
            .await
            .map(drop)
            .map_err(|e| format!("event log: {e}"))
    }
}

/// The write path served on a free loopback port, for tests and benchmarks (the mini-redis
/// `serve(listener, shutdown)` pattern). Dropping it stops the server.
pub struct LocalServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl LocalServer {
    /// Starts the routes of `intake` on `127.0.0.1:0`, checking tokens with `auth`.
    pub async fn start(intake: Arc<Intake>, auth: Authenticator) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let readiness = Readiness::new().with(Arc::new(LogReachable(Arc::clone(intake.log()))));
        let router = instrument(router(intake, auth), "ingest")
            .merge(emporium_ops::router::router(readiness));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(listener, router, cancel.clone()));
        tokio::spawn(async move {
            let _ = stopped.await;
            cancel.cancel();
        });
        Ok(Self {
            base,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stops accepting, drains in-flight requests and waits for the server to end.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// True when reading the body stopped at the size limit.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    metrics::request(status.as_u16());
    ApiError::new(status, code, message).into_response()
}

/// The body format named by the Content-Type header, or the 415 answer.
fn body_format(headers: &HeaderMap) -> Result<BodyFormat, (&'static str, String)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(BodyFormat::Single),
        "application/x-ndjson" | "application/jsonl" | "application/ndjson" => {
            Ok(BodyFormat::Ndjson)
        }
        "" => Err((
            "missing_content_type",
            "set Content-Type: application/json for one event or application/x-ndjson for a batch"
                .to_owned(),
        )),
        other => Err((
            "unsupported_content_type",
            format!(
                "Content-Type {other:?} is not accepted: use application/json or application/x-ndjson"
            ),
        )),
    }
}

/// The caller of a request.
fn caller(auth: &Authenticator, headers: &HeaderMap) -> Result<Principal, AuthError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    auth.authenticate(header, Audience::Ingest)
}

/// The 401 answer (with its `WWW-Authenticate: Bearer`).
fn unauthorized(e: AuthError) -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
}

async fn post_events(
    State(WritePath { intake, auth }): State<WritePath>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Who is asking, before anything of the body is read.
    let grant = match caller(&auth, &headers) {
        Ok(Principal::Producer { name, scopes }) => Grant {
            producer: name,
            scopes,
        },
        Ok(_) => {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "appending events needs a producer token (`emporium token --producer NAME --scope \
                 storefront,orders,catalog,accounts`); the operator key and shopper tokens cannot append",
            );
        }
        Err(e) => return unauthorized(e),
    };
    let format = match body_format(&headers) {
        Ok(f) => f,
        Err((code, message)) => return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, code, message),
    };
    let max_body = intake.config().max_body_bytes;
    let body = match axum::body::to_bytes(body, max_body).await {
        Ok(body) => body,
        Err(e) if is_length_limit(&e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body exceeds {max_body} bytes: split it into smaller batches"),
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, "unreadable_body", e.to_string()),
    };
    let source = format!("http {peer} producer {}", grant.producer);
    match intake.submit(body, format, source, grant).await {
        Ok(report) => {
            let status = if report.accepted + report.duplicates == 0 && !report.rejected.is_empty()
            {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            metrics::request(status.as_u16());
            (status, Json(report)).into_response()
        }
        Err(IntakeError::EmptyBody) => error(
            StatusCode::BAD_REQUEST,
            "empty_body",
            IntakeError::EmptyBody.to_string(),
        ),
        Err(e @ IntakeError::TooManyLines { .. }) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_lines",
            e.to_string(),
        ),
        Err(e @ IntakeError::Forbidden { .. }) => {
            error(StatusCode::FORBIDDEN, "type_not_allowed", e.to_string())
        }
        Err(e @ IntakeError::Refused(_)) => {
            tracing::error!(error = %e, "append refused; answering 500");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "append_refused",
                e.to_string(),
            )
        }
        Err(e @ IntakeError::Unavailable(_)) => {
            tracing::warn!(error = %e, "append failed; answering 503");
            metrics::request(503);
            ApiError::unavailable(
                "log_unavailable",
                e.to_string(),
                intake.config().retry_after_secs,
            )
            .into_response()
        }
    }
}

/// Most dead letters one page holds.
pub const DLQ_MAX_LIMIT: usize = 1_000;
/// Most bytes of dead letters one page holds by default, and at most.
pub const DLQ_DEFAULT_BYTES: usize = 1024 * 1024;
pub const DLQ_MAX_BYTES: usize = 8 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DlqQuery {
    #[serde(default)]
    from: u64,
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default = "default_max_bytes")]
    max_bytes: usize,
}

fn default_limit() -> usize {
    100
}

fn default_max_bytes() -> usize {
    DLQ_DEFAULT_BYTES
}

/// Dead letters keep what producers sent (ids, tokens, texts): operators only, a page at a time,
/// each page at most `max_bytes` (always at least one letter, so paging moves on).
async fn get_dead_letters(
    State(WritePath { intake, auth }): State<WritePath>,
    headers: HeaderMap,
    query: Result<Query<DlqQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match caller(&auth, &headers) {
        Ok(Principal::Operator) => {}
        Ok(_) => {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the dead-letter log is for operators: use the operator key (`emporium token --operator`)",
            );
        }
        Err(e) => return unauthorized(e),
    }
    let q = match query {
        Ok(Query(q))
            if (1..=DLQ_MAX_LIMIT).contains(&q.limit)
                && (1..=DLQ_MAX_BYTES).contains(&q.max_bytes) =>
        {
            q
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!(
                    "expected ?from=<offset>&limit=<1..{DLQ_MAX_LIMIT}>&max_bytes=<1..{DLQ_MAX_BYTES}>, each at most once"
                ),
            );
        }
    };
    match dead_letter::read(intake.log().as_ref(), q.from, q.limit).await {
        Ok(letters) => {
            let mut bytes = 0;
            let mut page = Vec::new();
            for letter in letters {
                let value = match serde_json::to_value(&letter) {
                    Ok(value) => value,
                    Err(_) => continue,
                };
                let size = value.to_string().len() + 1;
                if !page.is_empty() && bytes + size > q.max_bytes {
                    break;
                }
                bytes += size;
                page.push((letter.offset, value));
            }
            let next = page.last().map(|(offset, _)| offset + 1).unwrap_or(q.from);
            let letters: Vec<serde_json::Value> = page.into_iter().map(|(_, v)| v).collect();
            metrics::request(200);
            Json(json!({ "dead_letters": letters, "next": next })).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

fn unavailable(e: &LogError) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "log_unavailable",
        e.to_string(),
    )
}
