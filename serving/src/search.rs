//! The search routes of the read API (issue 24, ADR 0013): `GET /v1/search` and
//! `GET /v1/suggest`, answered from the search index the pipeline feeds. Public, like the
//! catalog reads: a bearer token is optional and only names the shopper in the
//! `search_performed` event each search appends (through [`SearchLog`], off the request path:
//! a full queue drops the event and counts it, the answer never waits).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use emporium_schemas::shopper::SearchPerformed;
use emporium_search::{SearchError, SearchIndex, SearchRequest};
use serde_json::Value;

use crate::api::ApiError;
use crate::auth::{Audience, Authenticator, Principal};
use crate::metrics;

/// Where each search made through the API is recorded (the binary appends it to the log).
pub type SearchLog = Arc<dyn Fn(SearchPerformed) + Send + Sync>;

/// Searches and suggestions answered (for the status line's queries/s).
#[derive(Debug, Default)]
pub struct SearchCounters {
    pub searches: AtomicU64,
    pub suggests: AtomicU64,
}

#[derive(Clone)]
struct Searching {
    index: Arc<SearchIndex>,
    auth: Authenticator,
    log: Option<SearchLog>,
    counters: Arc<SearchCounters>,
}

/// The search routes, ready to be merged into the platform's router.
pub fn router(
    index: Arc<SearchIndex>,
    auth: Authenticator,
    log: Option<SearchLog>,
    counters: Arc<SearchCounters>,
) -> Router {
    Router::new()
        .route("/v1/search", get(search))
        .route("/v1/suggest", get(suggest))
        .with_state(Searching {
            index,
            auth,
            log,
            counters,
        })
}

/// The search routes of a process that keeps no index (`--no-search`, `--no-dataflow`): each
/// answers 503 saying so, as the API documents, rather than an undocumented 404.
pub fn unavailable_router(why: &'static str) -> Router {
    let off = move || async move { ApiError::unavailable("search_off", why) };
    Router::new()
        .route("/v1/search", get(off))
        .route("/v1/suggest", get(off))
}

/// The parameters `GET /v1/search` takes.
const SEARCH_PARAMETERS: &[&str] = &[
    "q",
    "category",
    "brand",
    "price_min",
    "price_max",
    "in_stock",
    "rating_min",
    "sort",
    "page",
    "per_page",
];

/// The shopper a token names, if a valid one came (searching needs none).
struct Shopper(Option<String>);

impl FromRequestParts<Searching> for Shopper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &Searching) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Ok(Shopper(None));
        };
        // A token sent must be valid: a shopper whose session expired hears so.
        let value = value
            .to_str()
            .map_err(|_| ApiError::from(crate::auth::AuthError::NotBearer))?;
        Ok(Shopper(
            match s.auth.authenticate(Some(value), Audience::Read)? {
                Principal::Shopper(user) => Some(user),
                _ => None,
            },
        ))
    }
}

/// The query string's parameters, each at most once and each one of `allowed`.
fn parameters(
    pairs: Vec<(String, String)>,
    allowed: &[&str],
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let mut out = std::collections::HashMap::new();
    for (name, value) in pairs {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "{name}: not a parameter of this route; expected {}",
                allowed.join(", ")
            )));
        }
        if out.insert(name.clone(), value).is_some() {
            return Err(ApiError::bad_request(format!(
                "{name}: given more than once"
            )));
        }
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(
    p: &std::collections::HashMap<String, String>,
    name: &str,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    p.get(name)
        .map(|text| {
            text.trim().parse::<T>().map_err(|_| {
                ApiError::bad_request(format!("{name}: expected {expected}, got {text:?}"))
            })
        })
        .transpose()
}

fn search_error(e: SearchError) -> ApiError {
    match e {
        SearchError::BadParameter { .. } => ApiError::bad_request(e.to_string()),
        e => {
            tracing::error!(error = %e, "search failed");
            ApiError::unavailable(
                "search_unavailable",
                "the search index could not answer; try again",
            )
        }
    }
}

/// The commit's position as JSON (`{"seq", "positions"}`), or as it was recorded.
fn as_of(payload: Option<String>) -> Value {
    match payload {
        None => Value::Null,
        Some(p) => serde_json::from_str(&p).unwrap_or(Value::String(p)),
    }
}

/// A session id from the `X-Session-Id` header, or `none`.
fn session(parts: &axum::http::HeaderMap) -> String {
    parts
        .get("x-session-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && !v.chars().any(char::is_control))
        .unwrap_or("none")
        .to_owned()
}

async fn search(
    State(s): State<Searching>,
    Shopper(user): Shopper,
    headers: axum::http::HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) =
        query.map_err(|e| ApiError::bad_request(format!("the query string: {e}")))?;
    let p = parameters(pairs, SEARCH_PARAMETERS)?;
    let in_stock = match p.get("in_stock").map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "in_stock: expected true or false, got {other:?}"
            )));
        }
    };
    let request = SearchRequest {
        q: p.get("q").cloned(),
        category: p.get("category").cloned(),
        brand: p.get("brand").cloned(),
        price_min: number(&p, "price_min", "a price in minor units (cents), 0 or more")?,
        price_max: number(&p, "price_max", "a price in minor units (cents), 0 or more")?,
        in_stock,
        rating_min: number(&p, "rating_min", "a rating from 0 to 5")?,
        sort: p.get("sort").cloned(),
        page: number(&p, "page", "a page number from 1")?,
        per_page: number(&p, "per_page", "1 to 100")?,
    };
    let started = Instant::now();
    let index = Arc::clone(&s.index);
    // Scoring and facets are CPU work: off the threads that answer HTTP.
    let (response, request) = tokio::task::spawn_blocking(move || {
        let response = index.search(&request);
        (response, request)
    })
    .await
    .map_err(|e| ApiError::unavailable("search_unavailable", &format!("search task: {e}")))?;
    let response = response.map_err(search_error)?;
    metrics::read("search", started.elapsed());
    s.counters.searches.fetch_add(1, Ordering::Relaxed);
    if let Some(log) = &s.log {
        log(SearchPerformed {
            user_id: user.unwrap_or_else(|| "anonymous".into()),
            session_id: session(&headers),
            query: request.q.unwrap_or_default(),
            result_count: i64::try_from(response.total).unwrap_or(i64::MAX),
        });
    }
    let mut body = serde_json::to_value(&response)
        .map_err(|e| ApiError::unavailable("search_unavailable", &e.to_string()))?;
    body["as_of"] = as_of(response.as_of);
    Ok(axum::Json(body).into_response())
}

async fn suggest(
    State(s): State<Searching>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) =
        query.map_err(|e| ApiError::bad_request(format!("the query string: {e}")))?;
    let p = parameters(pairs, &["q"])?;
    let q = p.get("q").cloned().unwrap_or_default();
    let started = Instant::now();
    let index = Arc::clone(&s.index);
    let response = tokio::task::spawn_blocking(move || index.suggest(&q))
        .await
        .map_err(|e| ApiError::unavailable("search_unavailable", &format!("suggest task: {e}")))?
        .map_err(search_error)?;
    metrics::read("suggest", started.elapsed());
    s.counters.suggests.fetch_add(1, Ordering::Relaxed);
    let mut body = serde_json::to_value(&response)
        .map_err(|e| ApiError::unavailable("search_unavailable", &e.to_string()))?;
    body["as_of"] = as_of(response.as_of);
    Ok(axum::Json(body).into_response())
}
