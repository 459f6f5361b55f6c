//! `GET /v1/products/{id}/recommendations` and `GET /v1/users/{id}/recommendations` (issue 25,
//! ADR 0015).
//!
//! A product's recommendations come from the views the dataflows maintain (`also_bought` so
//! far). A user's are composed at read time, as Amazon's item-to-item recommender does (its
//! online cost depends on the user's history, not on the catalog or the customers): the user's
//! recent purchases (`user_purchases`), most recent first with weight 1/(rank + 1), each
//! lending its `also_bought` partners that weight times their co-purchase count; products the
//! user already bought are left out. Personal: the shopper's own token or the operator key. An
//! erased user is 404; a user with no purchases yet gets an empty list (`cold: true`) until the
//! content-based and trending lists exist.
//!
//! Every candidate is checked against
//! its product document at read time, so a product that has just gone out of stock or been
//! discontinued is left out (unless `include_unavailable=true`) without waiting for the
//! recommendation to change. Public, like the catalog.
//!
//! The answer carries the `seq` of the recommendation document: the rank, in the decider's total
//! order, of the last event that changed it (ADR 0006), the same in every run over the same log.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::metrics;
use crate::reply::{ApiError, Caller, Serving, erased, limit};

/// The kinds of product recommendations served, each a maintained view of that name.
pub const PRODUCT_KINDS: &[&str] = &["also_bought"];
/// Recommendations per answer unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 10;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecommendationQuery {
    kind: Option<String>,
    limit: Option<String>,
    include_unavailable: Option<String>,
}

/// The kind asked for (the first by default), or a 400 naming it.
fn kind(text: Option<&str>) -> Result<&'static str, ApiError> {
    let Some(k) = text else {
        return Ok(PRODUCT_KINDS[0]);
    };
    PRODUCT_KINDS
        .iter()
        .find(|known| **known == k)
        .copied()
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "kind: expected one of {}, got {k:?}",
                PRODUCT_KINDS.join(", ")
            ))
        })
}

/// `include_unavailable` (false by default), or a 400 naming it.
fn include_unavailable(text: Option<&str>) -> Result<bool, ApiError> {
    match text {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "include_unavailable: expected true or false, got {other:?}"
        ))),
    }
}

/// The recent purchases a user's recommendations start from.
pub const USER_BASIS: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserRecommendationQuery {
    limit: Option<String>,
    include_unavailable: Option<String>,
}

pub(crate) async fn user_recommendations(
    Caller(who): Caller,
    State(s): State<Serving>,
    Path(user): Path<String>,
    query: Result<Query<UserRecommendationQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "expected ?limit=<1..{MAX_LIMIT}>&include_unavailable=<true|false>, each at most \
             once: {}",
            e.body_text()
        ))
    })?;
    let limit = limit(q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let include_unavailable = include_unavailable(q.include_unavailable.as_deref())?;
    if !who.may_read(&user) {
        return Err(ApiError::forbidden(format!(
            "the recommendations of user {user:?} belong to another user"
        )));
    }
    let started = Instant::now();
    if erased(&s, &user).await? {
        return Err(ApiError::not_found("user", &user));
    }
    let doc = s.store.view("user_purchases", &user).await?;
    let mut seq = doc.as_ref().map_or(0, |d| d.seq);
    let bought: Vec<String> = doc
        .and_then(|d| serde_json::from_slice::<History>(&d.json).ok())
        .map(|h| h.recent_purchases)
        .unwrap_or_default();
    // Each recent purchase lends its partners its weight times their co-purchase count.
    let mut scores: HashMap<String, f64> = HashMap::new();
    for (rank, product) in bought.iter().take(USER_BASIS).enumerate() {
        let Some(list) = s.store.view("also_bought", product).await? else {
            continue;
        };
        seq = seq.max(list.seq);
        let weight = 1.0 / (rank + 1) as f64;
        for c in candidates(&list.json, "also_bought") {
            if !bought.contains(&c.product_id) {
                *scores.entry(c.product_id).or_default() += weight * c.orders as f64;
            }
        }
    }
    let mut ranked: Vec<(String, f64)> = scores.into_iter().collect();
    ranked.sort_by(|(a, x), (b, y)| y.total_cmp(x).then_with(|| a.cmp(b)));
    let out = available(&s, ranked, limit, include_unavailable).await?;
    metrics::read("user_recommendations", started.elapsed());
    Ok(Json(json!({
        "user_id": user,
        "seq": seq,
        "cold": bought.is_empty(),
        "based_on": bought.iter().take(USER_BASIS).collect::<Vec<_>>(),
        "recommendations": out,
    }))
    .into_response())
}

/// The entries of a stored list, or none when it does not parse.
fn candidates(json: &[u8], kind: &str) -> Vec<Candidate> {
    match kind {
        "also_bought" => serde_json::from_slice::<AlsoBoughtList>(json)
            .map(|l| l.also_bought)
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The first `limit` of `ranked` with a product document, each with its title, price and units
/// available; without `include_unavailable`, discontinued and out-of-stock products left out.
async fn available<S: Into<Value>>(
    s: &Serving,
    ranked: Vec<(String, S)>,
    limit: usize,
    include_unavailable: bool,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::with_capacity(limit);
    for (candidate, score) in ranked {
        if out.len() == limit {
            break;
        }
        let Some(product) = s.store.product(&candidate).await? else {
            continue;
        };
        let Ok(product) = serde_json::from_slice::<Listed>(&product.json) else {
            continue;
        };
        if !include_unavailable && (product.discontinued || product.available <= 0) {
            continue;
        }
        out.push(json!({
            "product_id": candidate,
            "score": score.into(),
            "title": product.title,
            "price": product.price,
            "available": product.available,
        }));
    }
    Ok(out)
}

pub(crate) async fn product_recommendations(
    State(s): State<Serving>,
    Path(id): Path<String>,
    query: Result<Query<RecommendationQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "expected ?kind=<{}>&limit=<1..{MAX_LIMIT}>&include_unavailable=<true|false>, each \
             at most once: {}",
            PRODUCT_KINDS.join("|"),
            e.body_text()
        ))
    })?;
    let kind = kind(q.kind.as_deref())?;
    let limit = limit(q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let include_unavailable = include_unavailable(q.include_unavailable.as_deref())?;
    let started = Instant::now();
    if s.store.product(&id).await?.is_none() {
        return Err(ApiError::not_found("product", &id));
    }
    let doc = s.store.view(kind, &id).await?;
    let seq = doc.as_ref().map_or(0, |d| d.seq);
    let ranked: Vec<(String, u64)> = doc
        .as_ref()
        .map(|d| candidates(&d.json, kind))
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.product_id, c.orders))
        .collect();
    let out = available(&s, ranked, limit, include_unavailable).await?;
    metrics::read("recommendations", started.elapsed());
    Ok(Json(json!({
        "product_id": id,
        "kind": kind,
        "seq": seq,
        "recommendations": out,
    }))
    .into_response())
}

/// An entry of a stored list (`also_bought`: the orders holding both).
#[derive(Deserialize)]
struct Candidate {
    product_id: String,
    orders: u64,
}

/// The stored `also_bought` document, as much of it as an answer needs.
#[derive(Deserialize)]
struct AlsoBoughtList {
    also_bought: Vec<Candidate>,
}

/// The stored `user_purchases` document.
#[derive(Deserialize)]
struct History {
    recent_purchases: Vec<String>,
}

/// What an answer shows of a product document ([`crate::views::ProductView`]; the rest is
/// skipped, not built).
#[derive(Deserialize)]
struct Listed {
    title: String,
    price: emporium_schemas::Money,
    discontinued: bool,
    available: i64,
}
