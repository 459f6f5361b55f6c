//! `POST /v1/sql`: read-only SQL over the lakehouse for operators, on the platform's HTTP surface.
//! The body is the SQL text (`text/plain` or `application/sql`) or `{"sql": "..."}`
//! (`application/json`); the result is JSON (default), CSV, NDJSON, Arrow IPC or Parquet by
//! `Accept`. Queries run on threads of their own ([`crate::sandbox`]) and results are encoded off
//! the async workers, so the server keeps answering while they run. Errors are the one envelope
//! of `emporium-ops`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use emporium_auth::{Audience, Authenticator, Principal};
use tokio::sync::Semaphore;

use crate::sql::{Format, SqlEngine, SqlError, encode};

/// Queries at once over HTTP; more wait for a turn (within their time limit).
const CONCURRENT_QUERIES: usize = 2;
/// The largest SQL text accepted.
const MAX_SQL_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
struct SqlService {
    engine: Arc<SqlEngine>,
    auth: Authenticator,
    slots: Arc<Semaphore>,
}

/// `POST /v1/sql`: read-only SQL over the lakehouse for operators. The body is the SQL text
/// (`text/plain` or `application/sql`) or `{"sql": "..."}` (`application/json`); the result is
/// JSON (default), CSV, NDJSON, Arrow IPC or Parquet by `Accept`.
pub fn router(engine: Arc<SqlEngine>, auth: Authenticator) -> Router {
    Router::new()
        .route("/v1/sql", post(post_sql))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_SQL_BYTES))
        .with_state(SqlService {
            engine,
            auth,
            slots: Arc::new(Semaphore::new(CONCURRENT_QUERIES)),
        })
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    emporium_ops::ApiError::new(status, code, message).into_response()
}

fn sql_error(e: SqlError) -> Response {
    let (status, code) = match &e {
        SqlError::Syntax(_) => (StatusCode::BAD_REQUEST, "sql_syntax"),
        SqlError::Plan(_) => (StatusCode::BAD_REQUEST, "sql_invalid"),
        SqlError::NotReadOnly(_) => (StatusCode::FORBIDDEN, "read_only"),
        SqlError::ResourcesExhausted { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "memory_limit"),
        SqlError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "time_limit"),
        SqlError::Execution(_) | SqlError::Lake(_) => {
            tracing::error!(error = %e, "SQL query failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "query_failed")
        }
    };
    error(status, code, e.to_string())
}

async fn post_sql(State(service): State<SqlService>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match service.auth.authenticate(authorization, Audience::Read) {
        Ok(Principal::Operator) => {}
        Ok(_) => {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "SQL over the lakehouse is for operators (the operator key), not shoppers".into(),
            );
        }
        Err(e) => return error(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain");
    let sql = if content_type.starts_with("application/json") {
        #[derive(serde::Deserialize)]
        struct Body {
            sql: String,
        }
        match serde_json::from_slice::<Body>(&body) {
            Ok(b) => b.sql,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("expected {{\"sql\": \"SELECT ...\"}}: {e}"),
                );
            }
        }
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(s) => s,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the SQL text is not UTF-8".into(),
                );
            }
        }
    };
    let format = Format::from_accept(
        headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json"),
    );
    let limits = service.engine.limits();
    // A turn within a tenth of the time limit, or come back later.
    let Ok(Ok(slot)) = tokio::time::timeout(
        limits.timeout / 10,
        Arc::clone(&service.slots).acquire_owned(),
    )
    .await
    else {
        return emporium_ops::ApiError::unavailable(
            "busy",
            format!("{CONCURRENT_QUERIES} queries are running; try again shortly"),
            2,
        )
        .into_response();
    };
    // On threads of its own, answered by the deadline: the server keeps answering meanwhile.
    // The slot is held until the query's thread ends, not just until the answer: a cancelled
    // query still finishing a step counts against the limit.
    let result = match service.engine.query_isolated(&sql, slot).await {
        Ok(r) => r,
        Err(e) => return sql_error(e),
    };
    // Encoding a large result is CPU work: off the async workers.
    let encoded = tokio::task::spawn_blocking(move || encode(&result, format)).await;
    let encoded = match encoded {
        Ok(e) => e,
        Err(e) => return sql_error(SqlError::Execution(e.to_string())),
    };
    match encoded {
        Ok(bytes) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => sql_error(SqlError::Execution(e.to_string())),
    }
}
