//! The feature store's online reads (issue 26, ADR 0016): `GET /v1/features/{view}/{entity_id}`
//! and `POST /v1/features:batch`, over the documents the feature dataflows keep in the store.
//!
//! A declared view (`features/features.toml`) reads the documents of its dataflow
//! (`{"<join key>": …, "event_time": …, "features": {…}}`); each feature is answered with its
//! value, or `null` with the reason: the entity has no value (never seen, or erased), or the
//! value is stale — its event time more than the view's ttl before now (the wall clock, as
//! Feast's online store judges it). Every answer carries the value's event time and the `seq`
//! (the step in the decider's order) that made it known. Operator key only, for now (scoped
//! service tokens are to come).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use emporium_features::{Declarations, FeatureView};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::Principal;
use crate::metrics;
use crate::reply::{ApiError, Caller, Serving};
use crate::store::Document;

/// The most entities of one `POST /v1/features:batch`.
pub const MAX_BATCH: usize = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeaturesQuery {
    features: Option<String>,
}

/// The body of `POST /v1/features:batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchRequest {
    view: String,
    entity_ids: Vec<String>,
    /// All of the view's when left out (not `null`: the document says an array).
    #[serde(default)]
    features: Vec<String>,
}

/// What a stored feature document holds, as much of it as an answer needs.
#[derive(Deserialize)]
struct Stored {
    event_time: Option<DateTime<Utc>>,
    #[serde(default)]
    features: Map<String, Value>,
}

fn operator_only(who: &Principal) -> Result<(), ApiError> {
    match who {
        Principal::Operator => Ok(()),
        _ => Err(ApiError::forbidden(
            "feature reads need the operator key (scoped service tokens are to come)".into(),
        )),
    }
}

/// The declared view `name`, or a 400 naming it and the declared ones.
fn view<'d>(declared: &'d Declarations, name: &str) -> Result<&'d FeatureView, ApiError> {
    declared.view(name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown feature view {name:?}: declared: {}",
            declared.names()
        ))
    })
}

/// The features asked for (all of the view's when none), or a 400 naming an unknown one.
fn features(view: &FeatureView, asked: Option<Vec<String>>) -> Result<Vec<&str>, ApiError> {
    let Some(asked) = asked.filter(|a| !a.is_empty()) else {
        return Ok(view.features.iter().map(|f| f.name.as_str()).collect());
    };
    asked
        .iter()
        .map(|name| {
            view.feature(name).map(|f| f.name.as_str()).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown feature {name:?} of view {:?}: it serves {}",
                    view.name,
                    view.names()
                ))
            })
        })
        .collect()
}

/// The OpenAPI document `base` with the feature routes' view and feature names restricted to
/// those `declared` (the document in the repository names the built-in declaration's): a
/// request the document allows names a declared view and features. The features of every view
/// are allowed in each (the document cannot tie them to the view named in the path); a feature
/// of another view is still a 400 naming it. `base` itself when it does not parse.
pub fn openapi(base: &str, declared: &Declarations) -> bytes::Bytes {
    let Ok(mut doc) = serde_json::from_str::<Value>(base) else {
        return bytes::Bytes::copy_from_slice(base.as_bytes());
    };
    let views: Vec<Value> = declared
        .views
        .iter()
        .map(|v| v.name.clone().into())
        .collect();
    let mut names: Vec<&str> = declared
        .views
        .iter()
        .flat_map(|v| v.features.iter().map(|f| f.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let one = format!("(?:{})", names.join("|"));
    let list = format!("^(?:{one}(?:,{one})*)?$");
    let path = &mut doc["paths"]["/v1/features/{view}/{entity_id}"]["get"]["parameters"];
    if let Some(parameters) = path.as_array_mut() {
        for p in parameters {
            match p["name"].as_str() {
                Some("view") => p["schema"]["enum"] = views.clone().into(),
                Some("features") => p["schema"]["pattern"] = list.clone().into(),
                _ => {}
            }
        }
    }
    let batch = &mut doc["components"]["schemas"]["FeatureBatchRequest"]["properties"];
    if batch.is_object() {
        batch["view"]["enum"] = views.into();
        batch["features"]["items"]["enum"] = names.into_iter().map(Value::from).collect();
    }
    bytes::Bytes::from(serde_json::to_vec_pretty(&doc).unwrap_or_else(|_| base.as_bytes().to_vec()))
}

/// One entity's answer from its stored document (`None`: no value), judged stale at `now`.
fn answer(
    view: &FeatureView,
    entity_id: &str,
    features: &[&str],
    doc: Option<Document>,
    now: DateTime<Utc>,
) -> Value {
    let key = view.entity.keys().join(":");
    let stored = doc.as_ref().and_then(|d| {
        serde_json::from_slice::<Stored>(&d.json)
            .ok()
            .map(|s| (d.seq, s))
    });
    let mut out = Map::new();
    let (seq, event_time, reason) = match &stored {
        None => (
            None,
            None,
            Some(format!(
                "no value: the {} dataflow has none for {key} {entity_id:?}",
                view.dataflow.name
            )),
        ),
        Some((seq, s)) => {
            let stale = s.event_time.and_then(|at| {
                let ttl = chrono::Duration::from_std(view.ttl).ok()?;
                (now - at > ttl).then(|| {
                    format!(
                        "stale: its event time {} is more than the view's ttl ({}) before now",
                        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        view.ttl_text
                    )
                })
            });
            (Some(*seq), s.event_time, stale)
        }
    };
    for name in features {
        let value = match (&reason, &stored) {
            (None, Some((_, s))) => {
                json!({"value": s.features.get(*name).cloned().unwrap_or(Value::Null)})
            }
            _ => json!({"value": Value::Null, "reason": reason}),
        };
        out.insert((*name).to_owned(), value);
    }
    json!({
        "entity_id": entity_id,
        "seq": seq,
        "event_time": event_time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "features": out,
    })
}

/// `GET /v1/features/{view}/{entity_id}?features=a,b`: one entity's features (all of the
/// view's without `features`), each with its value or `null` and the reason.
pub(crate) async fn get_features(
    Caller(who): Caller,
    State(s): State<Serving>,
    Path((name, entity_id)): Path<(String, String)>,
    query: Result<Query<FeaturesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    operator_only(&who)?;
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "expected ?features=<name,name,…> at most once: {}",
            e.body_text()
        ))
    })?;
    let declared = Arc::clone(&s.features);
    let view = view(&declared, &name)?;
    // `features=` (empty) asks for all, as leaving it out does.
    let asked = q
        .features
        .filter(|f| !f.is_empty())
        .map(|f| f.split(',').map(str::to_owned).collect());
    let features = features(view, asked)?;
    let started = Instant::now();
    let doc = s.store.view(view.dataflow.name, &entity_id).await?;
    metrics::read("features", started.elapsed());
    let mut body = answer(view, &entity_id, &features, doc, Utc::now());
    if let Some(map) = body.as_object_mut() {
        map.insert("view".into(), view.name.clone().into());
    }
    Ok(Json(body).into_response())
}

/// `POST /v1/features:batch` with `{"view": …, "entity_ids": […], "features": […]}`: up to
/// [`MAX_BATCH`] entities' features in one read, in the order asked.
pub(crate) async fn batch_features(
    Caller(who): Caller,
    State(s): State<Serving>,
    body: Result<Json<BatchRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    operator_only(&who)?;
    let Json(req) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"view\": name, \"entity_ids\": [ids…], \"features\": [names…]}}: {}",
            e.body_text()
        ))
    })?;
    if req.entity_ids.is_empty() || req.entity_ids.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "entity_ids: expected 1 to {MAX_BATCH} ids, got {}",
            req.entity_ids.len()
        )));
    }
    let declared = Arc::clone(&s.features);
    let view = view(&declared, &req.view)?;
    let features = features(view, Some(req.features))?;
    let started = Instant::now();
    let docs = s
        .store
        .views_many(view.dataflow.name, &req.entity_ids)
        .await?;
    metrics::read("features_batch", started.elapsed());
    let now = Utc::now();
    let results: Vec<Value> = req
        .entity_ids
        .iter()
        .zip(docs)
        .map(|(id, doc)| answer(view, id, &features, doc, now))
        .collect();
    Ok(Json(json!({"view": view.name, "results": results})).into_response())
}
