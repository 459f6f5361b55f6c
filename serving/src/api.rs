//! The read API: `GET /v1/products/{id}`, `/v1/inventory/{sku}`, `/v1/orders/{id}` and
//! `/v1/users/{id}/orders`, plus `/openapi.json`. Handlers translate HTTP to [`Store`] reads and
//! errors to status codes with JSON bodies; documents go out as stored, never re-encoded.
//!
//! Products and inventory are public (shoppers browse before they sign in). Orders need a bearer
//! token: a shopper sees only their own (401 without a valid token, 403 for someone else's), the
//! operator key sees all.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Authenticator;
use crate::metrics;
pub use crate::reply::ApiError;
use crate::reply::{Caller, Serving, erased, limit};
use crate::store::Store;

/// The OpenAPI 3.1 document of this API (and of the write path's routes).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Orders per page of `GET /v1/users/{id}/orders` unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 20;
/// The largest `limit` accepted.
pub const MAX_PAGE: usize = 100;

/// The routes of the read path, ready to be merged into the platform's router, serving the
/// built-in feature declaration.
pub fn router(store: Arc<dyn Store>, auth: Authenticator) -> Router {
    let features = emporium_features::declaration::built_in().unwrap_or_else(|e| {
        // The built-in declaration is checked by its crate's tests; were it refused, the
        // feature routes would answer that no view is declared.
        tracing::error!(error = %e, "the built-in feature declaration was refused");
        emporium_features::Declarations {
            source: e.file,
            views: Vec::new(),
        }
    });
    router_with_features(store, auth, features)
}

/// [`router`] serving the feature views of `features` (`--features-file`).
pub fn router_with_features(
    store: Arc<dyn Store>,
    auth: Authenticator,
    features: emporium_features::Declarations,
) -> Router {
    Router::new()
        .route("/v1/products/{id}", get(get_product))
        .route(
            "/v1/products/{id}/recommendations",
            get(crate::recommendations::product_recommendations),
        )
        .route(
            "/v1/users/{id}/recommendations",
            get(crate::recommendations::user_recommendations),
        )
        .route("/v1/trending", get(crate::recommendations::trending))
        .route("/v1/inventory/{sku}", get(get_inventory))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/users/{id}/orders", get(get_user_orders))
        .route("/v1/views/{view}/{key}", get(get_view))
        .route(
            "/v1/features/{view}/{entity_id}",
            get(crate::features::get_features),
        )
        .route(
            "/v1/features:batch",
            axum::routing::post(crate::features::batch_features),
        )
        .route("/openapi.json", get(get_openapi))
        .with_state(Serving {
            store,
            auth,
            popularity: Arc::default(),
            lists: Arc::default(),
            openapi: crate::features::openapi(OPENAPI, &features),
            features: Arc::new(features),
        })
}

fn json_bytes(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn get_product(
    State(s): State<Serving>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let doc = s.store.product(&id).await?;
    metrics::read("product", started.elapsed());
    let doc = doc.ok_or_else(|| ApiError::not_found("product", &id))?;
    Ok(json_bytes(doc.json))
}

/// The maintained views shoppers may read without a token (ADR 0010). A view that holds anything
/// personal gets a route of its own, with authorization, instead of a place here.
pub const PUBLIC_VIEWS: &[&str] = &[
    "product_ratings",
    "search_documents",
    "product_popularity",
    "also_bought",
    "similar",
    "trending",
    "also_viewed",
    "content",
];

async fn get_view(
    State(s): State<Serving>,
    Path((view, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !PUBLIC_VIEWS.contains(&view.as_str()) {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!(
                "no view named {view:?}; the views served are {}",
                PUBLIC_VIEWS.join(", ")
            ),
        });
    }
    let started = Instant::now();
    let doc = s.store.view(&view, &key).await?;
    metrics::read("view", started.elapsed());
    match doc {
        // `null`: the key left the view.
        Some(doc) if doc.json.as_ref() != b"null" => Ok(json_bytes(doc.json)),
        _ => Err(ApiError::not_found(&format!("{view} document"), &key)),
    }
}

async fn get_inventory(
    State(s): State<Serving>,
    Path(sku): Path<String>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let doc = s.store.inventory(&sku).await?;
    metrics::read("inventory", started.elapsed());
    let doc = doc.ok_or_else(|| ApiError::not_found("sku", &sku))?;
    Ok(json_bytes(doc.json))
}

async fn get_order(
    Caller(who): Caller,
    State(s): State<Serving>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let doc = s.store.order(&id).await?;
    metrics::read("order", started.elapsed());
    let doc = doc.ok_or_else(|| ApiError::not_found("order", &id))?;
    if !who.may_read(&doc.user_id) {
        return Err(ApiError::forbidden(format!(
            "order {id:?} belongs to another user"
        )));
    }
    if erased(&s, &doc.user_id).await? {
        return Err(ApiError::not_found("order", &id));
    }
    Ok(json_bytes(doc.json))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<String>,
    after: Option<String>,
}

async fn get_user_orders(
    Caller(who): Caller,
    State(s): State<Serving>,
    Path(user): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    // A repeated or unknown parameter: the JSON error body every route answers with.
    let Query(q) = query.map_err(|_| {
        ApiError::bad_request(
            "expected ?limit=<1..100>&after=<cursor>, each at most once".to_owned(),
        )
    })?;
    if !who.may_read(&user) {
        return Err(ApiError::forbidden(format!(
            "the orders of user {user:?} belong to another user"
        )));
    }
    let limit = limit(q.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    if erased(&s, &user).await? {
        return Err(ApiError::not_found("user", &user));
    }
    let started = Instant::now();
    let page = s
        .store
        .user_orders(&user, q.after.as_deref(), limit)
        .await?;
    metrics::read("user_orders", started.elapsed());
    Ok(Json(json!({"user_id": user, "orders": page.orders, "next": page.next})).into_response())
}

async fn get_openapi(State(s): State<Serving>) -> Response {
    json_bytes(s.openapi.clone())
}
