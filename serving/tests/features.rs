//! The feature store's online reads (issue 26, ADR 0016) over a real embedded store, through
//! real HTTP: a view's features with their value, event time and `seq`; `null` with the reason
//! for an entity without a value and for a stale one (older than the view's ttl); a 400 naming
//! an unknown view or feature or a bad batch; the operator key only.

use std::sync::Arc;

use chrono::{Duration, Utc};
use emporium_serving::api;
use emporium_serving::auth::{Authenticator, KeySet};
use emporium_serving::store::Store;
use emporium_serving::store::embedded::EmbeddedStore;
use emporium_serving::views::{Upsert, WriteBatch};
use serde_json::{Value, json};

const OPERATOR: &str = "operator-key-of-the-tests";

fn activity(user: &str, days_ago: i64, orders_7d: i64, seq: u64) -> Upsert {
    let at = (Utc::now() - Duration::days(days_ago))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let doc = json!({
        "user_id": user,
        "event_time": at,
        "features": {
            "orders_7d": orders_7d, "orders_30d": orders_7d + 1,
            "spend_7d_minor": 100 * orders_7d, "spend_30d_minor": 100 * orders_7d + 50,
            "returns_7d": 0, "returns_30d": 1,
        },
    });
    Upsert::View {
        view: "user_activity".into(),
        key: user.into(),
        seq,
        json: serde_json::to_vec(&doc).expect("json").into(),
    }
}

async fn serve() -> (String, tempfile::TempDir, Authenticator) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    store
        .apply(WriteBatch {
            upserts: vec![activity("u-1", 1, 2, 7), activity("u-old", 40, 5, 3)],
            positions: vec![1],
            seq: 7,
            writer: 0,
        })
        .await
        .expect("apply");
    let auth = Authenticator::new(
        &KeySet::single("test", "a-test-secret-of-enough-bytes"),
        OPERATOR,
    )
    .expect("keys");
    let router = api::router(store as Arc<dyn Store>, auth.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    (base, dir, auth)
}

async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("send");
    (
        resp.status().as_u16(),
        resp.json().await.expect("JSON body"),
    )
}

async fn post(base: &str, path: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(OPERATOR)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("send");
    (
        resp.status().as_u16(),
        resp.json().await.expect("JSON body"),
    )
}

#[tokio::test]
async fn a_users_features_with_their_event_time_and_seq() {
    let (base, _dir, _) = serve().await;
    let (status, body) = get(&base, "/v1/features/user/u-1", Some(OPERATOR)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["view"], &body["entity_id"], &body["seq"]),
        (&json!("user"), &json!("u-1"), &json!(7))
    );
    assert!(body["event_time"].as_str().is_some(), "{body}");
    let features = body["features"].as_object().expect("features");
    assert_eq!(features.len(), 6, "{body}");
    assert_eq!(features["orders_7d"], json!({"value": 2}));
    assert_eq!(features["spend_30d_minor"], json!({"value": 250}));
    // Some of them, in the order asked.
    let (status, body) = get(
        &base,
        "/v1/features/user/u-1?features=returns_30d,orders_7d",
        Some(OPERATOR),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&String> = body["features"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(names.len(), 2, "{body}");
    assert_eq!(body["features"]["returns_30d"], json!({"value": 1}));
    // `features=` is all of them; an empty name among others is not a feature.
    let (_, body) = get(&base, "/v1/features/user/u-1?features=", Some(OPERATOR)).await;
    assert_eq!(
        body["features"].as_object().map(|m| m.len()),
        Some(6),
        "{body}"
    );
    let (status, _) = get(
        &base,
        "/v1/features/user/u-1?features=orders_7d,",
        Some(OPERATOR),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn no_value_and_stale_values_are_null_with_the_reason() {
    let (base, _dir, _) = serve().await;
    let (status, body) = get(&base, "/v1/features/user/u-nobody", Some(OPERATOR)).await;
    assert_eq!(status, 200, "{body}");
    let f = &body["features"]["orders_7d"];
    assert_eq!(f["value"], Value::Null, "{body}");
    assert!(
        f["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("no value")),
        "{body}"
    );
    assert_eq!(body["seq"], Value::Null);
    // 40 days old, beyond the view's 30d ttl.
    let (_, body) = get(&base, "/v1/features/user/u-old", Some(OPERATOR)).await;
    let f = &body["features"]["orders_7d"];
    assert_eq!(f["value"], Value::Null, "{body}");
    assert!(
        f["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("stale") && r.contains("ttl (30d)")),
        "{body}"
    );
    assert_eq!(body["seq"], json!(3), "{body}");
}

#[tokio::test]
async fn unknown_names_are_400_naming_them_and_only_the_operator_reads() {
    let (base, _dir, auth) = serve().await;
    let (status, body) = get(&base, "/v1/features/nope/u-1", Some(OPERATOR)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown feature view \"nope\"") && m.contains("user")),
        "{body}"
    );
    let (status, body) = get(
        &base,
        "/v1/features/user/u-1?features=orders_7d,orders_9d",
        Some(OPERATOR),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown feature \"orders_9d\" of view \"user\"")),
        "{body}"
    );
    assert_eq!(get(&base, "/v1/features/user/u-1", None).await.0, 401);
    let shopper = auth.shopper_token("u-1", std::time::Duration::from_secs(600));
    assert_eq!(
        get(&base, "/v1/features/user/u-1", Some(&shopper)).await.0,
        403
    );
}

#[tokio::test]
async fn a_batch_answers_each_entity_in_order() {
    let (base, _dir, _) = serve().await;
    let (status, body) = post(
        &base,
        "/v1/features:batch",
        r#"{"view": "user", "entity_ids": ["u-old", "u-1", "u-nobody"], "features": ["orders_7d"]}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    let ids: Vec<&Value> = results.iter().map(|r| &r["entity_id"]).collect();
    assert_eq!(ids, [&json!("u-old"), &json!("u-1"), &json!("u-nobody")]);
    assert_eq!(results[1]["features"]["orders_7d"], json!({"value": 2}));
    assert_eq!(results[0]["features"]["orders_7d"]["value"], Value::Null);
    assert_eq!(results[2]["features"]["orders_7d"]["value"], Value::Null);
    let too_many = format!(
        r#"{{"view": "user", "entity_ids": {}}}"#,
        serde_json::to_string(&vec!["u-1"; 1_001]).expect("json")
    );
    for (body, named) in [
        (too_many.as_str(), "entity_ids"),
        (r#"{"view": "user", "entity_ids": []}"#, "entity_ids"),
        (r#"{"view": "user"}"#, "entity_ids"),
        (r#"{"view": "nope", "entity_ids": ["u-1"]}"#, "nope"),
        (
            r#"{"view": "user", "entity_ids": ["u-1"], "colour": 1}"#,
            "colour",
        ),
        (
            r#"{"view": "user", "entity_ids": ["u-1"], "features": null}"#,
            "null",
        ),
    ] {
        let (status, answer) = post(&base, "/v1/features:batch", body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(named)),
            "{body}: {answer}"
        );
    }
}

#[tokio::test]
async fn the_openapi_document_lists_the_feature_routes() {
    let (base, _dir, _) = serve().await;
    let (status, doc) = get(&base, "/openapi.json", None).await;
    assert_eq!(status, 200);
    for (path, method) in [
        ("/v1/features/{view}/{entity_id}", "get"),
        ("/v1/features:batch", "post"),
    ] {
        for code in ["200", "400", "401", "403"] {
            assert!(
                doc["paths"][path][method]["responses"][code].is_object(),
                "{path} documents {code}"
            );
        }
    }
    // The declared names, so that a request the document allows is one the route accepts.
    let batch = &doc["components"]["schemas"]["FeatureBatchRequest"]["properties"];
    assert_eq!(batch["view"]["enum"], json!(["user"]));
    assert_eq!(
        batch["features"]["items"]["enum"].as_array().map(Vec::len),
        Some(6)
    );
}

#[test]
fn the_document_names_the_views_of_another_declaration() {
    let text = r#"
[[view]]
name = "shopper_week"
entity = "user"
dataflow = "user_activity"
ttl = "7d"
description = "d"
  [[view.feature]]
  name = "orders_7d"
  type = "int64"
  description = "d"

[[view]]
name = "shopper_month"
entity = "user"
dataflow = "user_activity"
ttl = "30d"
description = "d"
  [[view.feature]]
  name = "spend_30d_minor"
  type = "int64"
  description = "d"
"#;
    let declared = emporium_features::declaration::parse("f.toml", text).expect("declaration");
    let doc: Value = serde_json::from_slice(&emporium_serving::features::openapi(
        api::OPENAPI,
        &declared,
    ))
    .expect("json");
    let parameters = doc["paths"]["/v1/features/{view}/{entity_id}"]["get"]["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let schema = |name: &str| {
        parameters
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"].clone())
            .unwrap_or_default()
    };
    assert_eq!(
        schema("view")["enum"],
        json!(["shopper_week", "shopper_month"])
    );
    assert_eq!(
        schema("features")["pattern"],
        json!("^(?:(?:orders_7d|spend_30d_minor)(?:,(?:orders_7d|spend_30d_minor))*)?$")
    );
}
