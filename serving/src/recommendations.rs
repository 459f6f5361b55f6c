//! `GET /v1/products/{id}/recommendations` (issue 25, ADR 0015): a product's recommendations
//! from the views the dataflows maintain (`also_bought` so far), each candidate checked against
//! its product document at read time, so a product that has just gone out of stock or been
//! discontinued is left out (unless `include_unavailable=true`) without waiting for the
//! recommendation to change. Public, like the catalog.
//!
//! The answer carries the `seq` of the recommendation document: the rank, in the decider's total
//! order, of the last event that changed it (ADR 0006), the same in every run over the same log.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{ApiError, Serving};
use crate::metrics;
use crate::views::ProductView;

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

/// What the parameters ask for, or a 400 naming the bad one.
fn parse(q: &RecommendationQuery) -> Result<(&'static str, usize, bool), ApiError> {
    let kind = match q.kind.as_deref() {
        None => PRODUCT_KINDS[0],
        Some(k) => PRODUCT_KINDS
            .iter()
            .find(|known| **known == k)
            .copied()
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "kind: expected one of {}, got {k:?}",
                    PRODUCT_KINDS.join(", ")
                ))
            })?,
    };
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit: expected an integer from 1 to {MAX_LIMIT}, got {text:?}"
                )));
            }
        },
    };
    let include_unavailable = match q.include_unavailable.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "include_unavailable: expected true or false, got {other:?}"
            )));
        }
    };
    Ok((kind, limit, include_unavailable))
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
    let (kind, limit, include_unavailable) = parse(&q)?;
    let started = Instant::now();
    if s.store.product(&id).await?.is_none() {
        return Err(ApiError::not_found("product", &id));
    }
    let doc = s.store.view(kind, &id).await?;
    let seq = doc.as_ref().map_or(0, |d| d.seq);
    let ranked: Vec<(String, u64)> = match &doc {
        Some(d) => serde_json::from_slice::<Value>(&d.json)
            .ok()
            .and_then(|v| v.get(kind).cloned())
            .and_then(|list| serde_json::from_value::<Vec<Candidate>>(list).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.product_id, c.orders))
            .collect(),
        None => Vec::new(),
    };
    let mut out = Vec::with_capacity(limit);
    for (candidate, score) in ranked {
        if out.len() == limit {
            break;
        }
        let Some(product) = s.store.product(&candidate).await? else {
            continue;
        };
        let Ok(product) = serde_json::from_slice::<ProductView>(&product.json) else {
            continue;
        };
        if !include_unavailable && (product.discontinued || product.available <= 0) {
            continue;
        }
        out.push(json!({
            "product_id": candidate,
            "score": score,
            "title": product.title,
            "price": product.price,
            "available": product.available,
        }));
    }
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
