//! `GET /v1/products/{id}/recommendations` over a real embedded store, through real HTTP: the
//! stored list in its order, unavailable products left out at read time unless asked for, the
//! document's `seq`, and a 400 naming each bad parameter.

use std::sync::Arc;

use emporium_schemas::money::Money;
use emporium_serving::api;
use emporium_serving::auth::{Authenticator, KeySet};
use emporium_serving::store::Store;
use emporium_serving::store::embedded::EmbeddedStore;
use emporium_serving::views::{ProductView, SkuAvailability, Upsert, WriteBatch};
use serde_json::{Value, json};

fn product(id: &str, available: i64, discontinued: bool) -> Upsert {
    Upsert::Product {
        seq: 1,
        view: ProductView {
            product_id: id.into(),
            title: format!("Title of {id}"),
            brand: "Acme".into(),
            category_path: vec!["Home".into()],
            price: Money::new(1_999, "USD"),
            discontinued,
            available,
            skus: vec![SkuAvailability {
                sku: format!("{id}-black"),
                available,
            }],
        },
    }
}

async fn serve() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let also_bought = json!({
        "product_id": "p-1",
        "also_bought": [
            {"product_id": "p-3", "orders": 5},
            {"product_id": "p-2", "orders": 4},
            {"product_id": "p-4", "orders": 3},
            {"product_id": "p-gone", "orders": 2},
            {"product_id": "p-5", "orders": 1},
        ],
    });
    store
        .apply(WriteBatch {
            upserts: vec![
                product("p-1", 3, false),
                product("p-2", 7, false),
                product("p-3", 0, false),
                product("p-4", 9, true),
                product("p-5", 1, false),
                product("p-lonely", 1, false),
                Upsert::View {
                    view: "also_bought".into(),
                    key: "p-1".into(),
                    seq: 42,
                    json: serde_json::to_vec(&also_bought).expect("json").into(),
                },
            ],
            positions: vec![1],
            seq: 42,
            writer: 0,
        })
        .await
        .expect("apply");
    let auth = Authenticator::new(
        &KeySet::single("test", "a-test-secret-of-enough-bytes"),
        "operator-key-of-the-tests",
    )
    .expect("keys");
    let router = api::router(store as Arc<dyn Store>, auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    (base, dir)
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let resp = reqwest::get(format!("{base}{path}")).await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

fn ids(body: &Value) -> Vec<&str> {
    body["recommendations"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|r| r["product_id"].as_str().expect("id"))
        .collect()
}

#[tokio::test]
async fn unavailable_products_are_left_out_unless_asked_for() {
    let (base, _dir) = serve().await;
    let path = "/v1/products/p-1/recommendations";
    let (status, body) = get(&base, path).await;
    assert_eq!(status, 200, "{body}");
    // p-3 is out of stock, p-4 discontinued, p-gone has no product document.
    assert_eq!(ids(&body), ["p-2", "p-5"]);
    assert_eq!(
        (body["kind"].as_str(), body["seq"].as_u64()),
        (Some("also_bought"), Some(42))
    );
    let first = &body["recommendations"][0];
    assert_eq!(
        (&first["score"], &first["title"], &first["available"]),
        (&json!(4), &json!("Title of p-2"), &json!(7))
    );
    assert_eq!(
        first["price"],
        json!({"amount_minor": 1999, "currency": "USD"})
    );

    let (_, body) = get(&base, &format!("{path}?include_unavailable=true")).await;
    assert_eq!(ids(&body), ["p-3", "p-2", "p-4", "p-5"]);
    let (_, body) = get(&base, &format!("{path}?include_unavailable=true&limit=2")).await;
    assert_eq!(ids(&body), ["p-3", "p-2"]);
    let (_, body) = get(&base, &format!("{path}?kind=also_bought&limit=1")).await;
    assert_eq!(ids(&body), ["p-2"]);
}

#[tokio::test]
async fn a_product_without_purchases_has_none_and_an_unknown_one_is_404() {
    let (base, _dir) = serve().await;
    let (status, body) = get(&base, "/v1/products/p-lonely/recommendations").await;
    assert_eq!(
        (status, ids(&body).len(), body["seq"].as_u64()),
        (200, 0, Some(0))
    );
    let (status, body) = get(&base, "/v1/products/p-none/recommendations").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn bad_parameters_are_400_naming_them() {
    let (base, _dir) = serve().await;
    for (query, named) in [
        ("kind=similar_ish", "kind"),
        ("limit=0", "limit"),
        ("limit=21", "limit"),
        ("limit=ten", "limit"),
        ("include_unavailable=yes", "include_unavailable"),
        ("colour=red", "colour"),
        ("limit=1&limit=2", "limit"),
    ] {
        let (status, body) = get(&base, &format!("/v1/products/p-1/recommendations?{query}")).await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{query}"
        );
        assert!(message.contains(named), "{query}: {message}");
    }
}
