//! `GET /v1/products/{id}/recommendations` and `GET /v1/users/{id}/recommendations` (issue 25,
//! ADR 0015).
//!
//! A product's recommendations come from the views the dataflows maintain: `also_bought`
//! (bought in the same orders, by co-purchase count), `also_viewed` (viewed in the same
//! sessions, by co-view count), `similar` (bought by the same users, by cosine) and `content`
//! (alike in the catalogue: for products nobody bought or viewed yet). A user's are composed at
//! read time, as Amazon's item-to-item recommender does (its online cost depends on the user's
//! history, not on the catalog or the customers): [`compose`] gathers the lists of the user's
//! recent purchases and views ([`USER_WALKS`]), [`rerank`] weighs the best candidates by their
//! popularity, and a short answer is topped up with the day's trending products — all of it
//! for a cold user (no purchases, no views).
//! Personal: the shopper's own token or the operator key. An erased user is 404.
//!
//! Every candidate is checked against
//! its product document at read time, so a product that has just gone out of stock or been
//! discontinued is left out (unless `include_unavailable=true`) without waiting for the
//! recommendation to change. Public, like the catalog.
//!
//! The answer carries the `seq` of the recommendation document: the rank, in the decider's total
//! order, of the last event that changed it (ADR 0006), the same in every run over the same log.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::lists::List;
use crate::metrics;
use crate::reply::{ApiError, Caller, Serving, erased, limit};

pub use crate::lists::PRODUCT_KINDS;

/// What a user's recommendations start from: their recent purchases (`user_purchases`) or
/// their recent views (`user_views`), most recent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    Purchases,
    Views,
}

/// The walks of a user's recommendations: from which basis, through which kind of list, with
/// which weight in [`compose`] (the offline evaluation's choice: `benches/recs_evaluate.rs`).
pub const USER_WALKS: &[(Basis, &str, f64)] = &[
    (Basis::Purchases, "also_bought", 1.0),
    (Basis::Views, "similar", 1.0),
    (Basis::Views, "also_viewed", 1.0),
    (Basis::Views, crate::lists::CATEGORY, 1.0),
];

/// One walk of [`compose`]: its weight and, per basis product (most recent first), that
/// product's list, best first, with its scores.
#[derive(Debug, Clone, Default)]
pub struct Walk<L> {
    pub weight: f64,
    pub lists: Vec<L>,
}

/// A list [`compose`] walks: (product id, score), best first.
pub trait Ranked {
    fn ranked(&self) -> impl Iterator<Item = (&str, f64)> + '_;
}

impl Ranked for Vec<(String, f64)> {
    fn ranked(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.iter().map(|(p, s)| (p.as_str(), *s))
    }
}

impl Ranked for Arc<List> {
    fn ranked(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.iter()
    }
}

/// The candidates of a user's recommendations [`rerank`] weighs by popularity: the best of
/// [`compose`]'s ranking.
pub const RERANK_CANDIDATES: usize = 100;

/// How much popularity weighs in [`rerank`]: the power of the decayed interest.
pub const POPULARITY_POWER: f64 = 1.0;

/// `ranked` (best first; [`compose`]'s) cut to its [`RERANK_CANDIDATES`] best, each score then
/// multiplied by its product's decayed interest to the power [`POPULARITY_POWER`]
/// (`popularity[i]`: `product_popularity`'s `log2` of it, `None` for a product with too little
/// to have one, which counts as half the least popular candidate's), best first, ties by
/// product id. The offline evaluation found the item-to-item lists alone below the popularity
/// baseline — they say which products go with the user's, not which of those people buy — and
/// this product of the two above it (`benches/recs_evaluate.rs`, ADR 0015).
pub fn rerank<S: Ord>(ranked: Vec<(S, f64)>, popularity: &[Option<f64>]) -> Vec<(S, f64)> {
    let known = popularity.iter().flatten().copied();
    let top = known.clone().fold(f64::NEG_INFINITY, f64::max);
    let floor = known.fold(f64::INFINITY, f64::min) - 1.0;
    let mut out: Vec<(S, f64)> = ranked
        .into_iter()
        .take(RERANK_CANDIDATES)
        .enumerate()
        .map(|(i, (product, score))| {
            let pop = popularity.get(i).copied().flatten();
            // Relative to the most popular candidate, so the powers of two stay in range.
            let weight = if top.is_finite() {
                (POPULARITY_POWER * (pop.unwrap_or(floor) - top)).exp2()
            } else {
                1.0
            };
            (product, score * weight)
        })
        .collect();
    out.sort_by(|(a, x), (b, y)| y.total_cmp(x).then_with(|| a.cmp(b)));
    out
}

/// A user's recommendations from item-to-item `walks` (each a kind of list of the user's recent
/// purchases or views: `walk.lists[i]` the list of the `i`-th most recent, best first, with its
/// scores): every candidate scores `Σ weight · 1/(i + 1) · score / (the list's best score)` —
/// recent products count more, and each list is scaled to its best so that co-purchase counts,
/// co-view counts and cosines add up. Products of `exclude` (what the user bought) are left out.
/// The best `limit`, best first, ties by product id. Shared with the offline evaluation
/// (`benches/recs_evaluate.rs`), which measures what this ranking is worth.
pub fn compose<'a, L: Ranked>(
    walks: &'a [Walk<L>],
    exclude: &[String],
    limit: usize,
) -> Vec<(&'a str, f64)> {
    let entries = walks.iter().map(|w| w.lists.len()).sum::<usize>() * 32;
    let mut scores: FxHashMap<&'a str, f64> =
        FxHashMap::with_capacity_and_hasher(entries, Default::default());
    for walk in walks {
        for (i, list) in walk.lists.iter().enumerate() {
            let best = list.ranked().map(|(_, s)| s).fold(0.0, f64::max);
            if best <= 0.0 {
                continue;
            }
            let recency = 1.0 / (i + 1) as f64;
            for (product, score) in list.ranked() {
                *scores.entry(product).or_default() += walk.weight * recency * score / best;
            }
        }
    }
    for product in exclude {
        scores.remove(product.as_str());
    }
    let mut ranked: Vec<(&str, f64)> = scores.into_iter().collect();
    let order = |(a, x): &(&str, f64), (b, y): &(&str, f64)| y.total_cmp(x).then_with(|| a.cmp(b));
    if ranked.len() > limit {
        ranked.select_nth_unstable_by(limit, order);
        ranked.truncate(limit);
    }
    ranked.sort_unstable_by(order);
    ranked
}

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

/// The recent purchases, and the recent views, a user's recommendations start from (of the 20
/// each that `user_purchases` and `user_views` keep): the offline evaluation scores 10 as high
/// as 20 (the tenth weighs a tenth of the first), with half the lists read for an active
/// shopper, and 5 a little lower (`benches/recs_evaluate.rs`).
pub const USER_BASIS: usize = 10;

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
    let (purchases, views) = futures::try_join!(
        s.store.view("user_purchases", &user),
        s.store.view("user_views", &user)
    )?;
    let mut seq = 0;
    let mut history = |doc: Option<crate::store::Document>| -> Vec<String> {
        let Some(doc) = doc else { return Vec::new() };
        seq = seq.max(doc.seq);
        serde_json::from_slice::<History>(&doc.json)
            .map(|h| h.recent_purchases.or(h.recent_views).unwrap_or_default())
            .unwrap_or_default()
    };
    // Every purchase kept is left out of the answer; the most recent of each are walked.
    let (all_bought, mut viewed) = (history(purchases), history(views));
    let bought = &all_bought[..all_bought.len().min(USER_BASIS)];
    viewed.truncate(USER_BASIS);
    // Each walk's lists of its basis: those read in the last second reused (`ListCache`).
    let mut walks = Vec::with_capacity(USER_WALKS.len());
    for (basis, kind, weight) in USER_WALKS {
        let basis = match basis {
            Basis::Purchases => bought,
            Basis::Views => &viewed[..],
        };
        if basis.is_empty() {
            continue;
        }
        let lists = s.lists.of(s.store.as_ref(), kind, basis).await?;
        seq = lists.iter().fold(seq, |seq, l| seq.max(l.seq));
        walks.push(Walk {
            weight: *weight,
            lists,
        });
    }
    let ranked = compose(&walks, &all_bought, RERANK_CANDIDATES);
    let products: Vec<&str> = ranked.iter().map(|(p, _)| *p).collect();
    let popularity = s.popularity.of(s.store.as_ref(), &products).await?;
    let mut ranked: Vec<(String, f64)> = rerank(ranked, &popularity)
        .into_iter()
        .map(|(p, score)| (p.to_owned(), score))
        .collect();
    // Too few of its own (a cold user, or products with no lists yet): topped up with the
    // day's trending products, below every candidate of its own.
    if ranked.len() < 2 * limit {
        let trending = s.store.view("trending", ALL_CATEGORIES).await?;
        if let Some(lists) =
            trending.and_then(|d| serde_json::from_slice::<TrendingLists>(&d.json).ok())
        {
            for entry in lists.day {
                if ranked.len() >= RERANK_CANDIDATES {
                    break;
                }
                if !all_bought.contains(&entry.product_id)
                    && !ranked.iter().any(|(p, _)| *p == entry.product_id)
                {
                    ranked.push((entry.product_id, 0.0));
                }
            }
        }
    }
    let out = available(&s, ranked, limit, include_unavailable).await?;
    metrics::read("user_recommendations", started.elapsed());
    Ok(Json(json!({
        "user_id": user,
        "seq": seq,
        "cold": bought.is_empty() && viewed.is_empty(),
        "based_on": bought,
        "based_on_views": viewed,
        "recommendations": out,
    }))
    .into_response())
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
    let mut ranked = ranked.into_iter().peekable();
    // The product documents read a batch at a time: as many as are still needed, and a few
    // more for those left out.
    while out.len() < limit && ranked.peek().is_some() {
        let batch: Vec<(String, S)> = ranked.by_ref().take(limit - out.len() + 4).collect();
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let products = s.store.products_many(&ids).await?;
        for ((candidate, score), product) in batch.into_iter().zip(products) {
            if out.len() == limit {
                break;
            }
            let Some(product) = product else { continue };
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
    // Co-purchase counts stay whole numbers in the answer.
    let list = doc
        .as_ref()
        .map(|d| List::parse(kind, d.seq, &d.json))
        .unwrap_or_default();
    let ranked: Vec<(String, Value)> = list
        .iter()
        .map(|(p, score)| match kind {
            "also_bought" | "also_viewed" => (p.to_owned(), Value::from(score as u64)),
            _ => (p.to_owned(), Value::from(score)),
        })
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

/// An entry of a stored `trending` list (`log2` of the decayed interest).
#[derive(Deserialize)]
struct Scored {
    product_id: String,
    score: f64,
}

/// The stored `trending` document: a list per window of [`TRENDING_WINDOWS`].
#[derive(Deserialize)]
struct TrendingLists {
    #[serde(rename = "1h")]
    hour: Vec<Scored>,
    #[serde(rename = "24h")]
    day: Vec<Scored>,
}

/// The stored `user_purchases` or `user_views` document.
#[derive(Deserialize)]
struct History {
    recent_purchases: Option<Vec<String>>,
    recent_views: Option<Vec<String>>,
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

/// The windows of `GET /v1/trending`, in the order of the `trending` view's lists.
pub const TRENDING_WINDOWS: &[&str] = &["1h", "24h"];

/// The key of the whole catalogue in the `trending` view.
const ALL_CATEGORIES: &str = "*";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrendingQuery {
    category: Option<String>,
    window: Option<String>,
    limit: Option<String>,
    include_unavailable: Option<String>,
}

/// `GET /v1/trending?category=&window=1h|24h&limit=&include_unavailable=`: the products with the
/// most interest (views and ordered units) in a category — a prefix of category paths,
/// `Electronics` or `Electronics/Audio`, the whole catalogue when left out — decayed with a
/// half-life of an hour or a day of event time (the `trending` view). Public, like the catalog.
pub(crate) async fn trending(
    State(s): State<Serving>,
    query: Result<Query<TrendingQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "expected ?category=<path>&window=<{}>&limit=<1..{MAX_LIMIT}>&include_unavailable=<true|false>, \
             each at most once: {}",
            TRENDING_WINDOWS.join("|"),
            e.body_text()
        ))
    })?;
    let window = match q.window.as_deref() {
        None => 0,
        Some(w) => TRENDING_WINDOWS
            .iter()
            .position(|k| *k == w)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "window: expected one of {}, got {w:?}",
                    TRENDING_WINDOWS.join(", ")
                ))
            })?,
    };
    let category = match q.category.as_deref() {
        None => ALL_CATEGORIES,
        Some(c)
            if c.is_empty() || c == ALL_CATEGORIES || c.starts_with('/') || c.ends_with('/') =>
        {
            return Err(ApiError::bad_request(format!(
                "category: expected a category path such as Electronics/Audio, got {c:?}"
            )));
        }
        Some(c) => c,
    };
    let limit = limit(q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let include_unavailable = include_unavailable(q.include_unavailable.as_deref())?;
    let started = Instant::now();
    let doc = s.store.view("trending", category).await?;
    let seq = doc.as_ref().map_or(0, |d| d.seq);
    let name = TRENDING_WINDOWS[window];
    let ranked: Vec<(String, f64)> = doc
        .and_then(|d| serde_json::from_slice::<TrendingLists>(&d.json).ok())
        .map(|lists| if window == 0 { lists.hour } else { lists.day })
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.product_id, e.score))
        .collect();
    let out = available(&s, ranked, limit, include_unavailable).await?;
    metrics::read("trending", started.elapsed());
    Ok(Json(json!({
        "category": q.category,
        "window": name,
        "seq": seq,
        "products": out,
    }))
    .into_response())
}
