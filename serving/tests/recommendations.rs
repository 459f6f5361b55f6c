//! `GET /v1/products/{id}/recommendations` and `GET /v1/users/{id}/recommendations` over a real
//! embedded store, through real HTTP: the stored list in its order, unavailable products left out
//! at read time unless asked for, the document's `seq`, a 400 naming each bad parameter; a user's
//! list composed from their recent purchases' lists without what they bought, only for them or
//! the operator, 404 once they are erased.

use std::sync::Arc;

use emporium_schemas::money::Money;
use emporium_serving::api;
use emporium_serving::auth::{Authenticator, KeySet};
use emporium_serving::recommendations::USER_BASIS;
use emporium_serving::store::Store;
use emporium_serving::store::embedded::EmbeddedStore;
use emporium_serving::views::{ProductView, SkuAvailability, Upsert, WriteBatch};
use serde_json::{Value, json};

fn product(id: &str, available: i64, discontinued: bool) -> Upsert {
    // p-5 and p-lonely are kitchen things, the rest just home (no trending list of its own).
    let category_path = match id {
        "p-5" | "p-lonely" => vec!["Home".into(), "Kitchen".into()],
        _ => vec!["Home".into()],
    };
    Upsert::Product {
        seq: 1,
        view: ProductView {
            product_id: id.into(),
            title: format!("Title of {id}"),
            brand: "Acme".into(),
            category_path,
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

fn view(view: &str, key: &str, seq: u64, json: Value) -> Upsert {
    Upsert::View {
        view: view.into(),
        key: key.into(),
        seq,
        json: serde_json::to_vec(&json).expect("json").into(),
    }
}

async fn serve() -> (String, tempfile::TempDir, Authenticator) {
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
                view("also_bought", "p-1", 42, also_bought),
                view(
                    "also_bought",
                    "p-2",
                    40,
                    json!({"product_id": "p-2", "also_bought": [
                        {"product_id": "p-1", "orders": 3},
                        {"product_id": "p-5", "orders": 2},
                    ]}),
                ),
                view(
                    "similar",
                    "p-2",
                    44,
                    json!({"product_id": "p-2", "similar": [
                        {"product_id": "p-5", "score": 0.5},
                        {"product_id": "p-3", "score": 0.25},
                    ]}),
                ),
                view(
                    "trending",
                    "*",
                    45,
                    json!({"category": "*",
                        "1h": [
                            {"product_id": "p-3", "score": 3.5},
                            {"product_id": "p-5", "score": 3.0},
                            {"product_id": "p-2", "score": 2.0},
                        ],
                        "24h": [{"product_id": "p-1", "score": 1.0}]}),
                ),
                view(
                    "trending",
                    "Home/Kitchen",
                    46,
                    json!({"category": "Home/Kitchen",
                    "1h": [{"product_id": "p-2", "score": 2.0}],
                    "24h": [
                        {"product_id": "p-2", "score": 2.0},
                        {"product_id": "p-1", "score": 1.0},
                    ]}),
                ),
                view(
                    "user_purchases",
                    "alice",
                    41,
                    json!({"user_id": "alice", "recent_purchases": ["p-1", "p-2"]}),
                ),
                view(
                    "user_purchases",
                    "erin",
                    41,
                    json!({"user_id": "erin", "recent_purchases": [
                        "p-1", "q-2", "q-3", "q-4", "q-5", "q-6", "q-7", "q-8", "q-9", "q-10",
                        "p-2", "p-5",
                    ]}),
                ),
                view(
                    "also_viewed",
                    "p-5",
                    47,
                    json!({"product_id": "p-5", "also_viewed": [
                        {"product_id": "p-2", "sessions": 4},
                        {"product_id": "p-1", "sessions": 2},
                    ]}),
                ),
                view(
                    "content",
                    "p-lonely",
                    48,
                    json!({"product_id": "p-lonely", "content": [
                        {"product_id": "p-5", "score": 5.0},
                        {"product_id": "p-2", "score": 2.5},
                    ]}),
                ),
                view(
                    "user_views",
                    "alice",
                    43,
                    json!({"user_id": "alice", "recent_views": ["p-2"]}),
                ),
                view(
                    "user_views",
                    "dave",
                    49,
                    json!({"user_id": "dave", "recent_views": ["p-lonely", "p-5"]}),
                ),
                view(
                    "erased_users",
                    "bob",
                    43,
                    json!({"user_id": "bob", "erased": true}),
                ),
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

async fn get(base: &str, path: &str) -> (u16, Value) {
    get_as(base, path, None).await
}

async fn get_as(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("send");
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
    let (base, _dir, _) = serve().await;
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
    // The similar list, with its cosines; p-3 is out of stock.
    let (status, body) = get(&base, "/v1/products/p-2/recommendations?kind=similar").await;
    assert_eq!((status, ids(&body)), (200, vec!["p-5"]));
    assert_eq!(
        (
            &body["kind"],
            &body["seq"],
            &body["recommendations"][0]["score"]
        ),
        (&json!("similar"), &json!(44), &json!(0.5))
    );
}

#[tokio::test]
async fn a_product_without_purchases_has_none_and_an_unknown_one_is_404() {
    let (base, _dir, _) = serve().await;
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
    let (base, _dir, _) = serve().await;
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

#[tokio::test]
async fn a_user_gets_their_purchases_lists_without_what_they_bought() {
    let (base, _dir, auth) = serve().await;
    let token = |user: &str| auth.shopper_token(user, std::time::Duration::from_secs(600));
    let path = "/v1/users/alice/recommendations";
    let (status, body) = get_as(&base, path, Some(&token("alice"))).await;
    assert_eq!(status, 200, "{body}");
    // Each list scaled to its best. Purchases: p-1 (weight 1) lends, from also_bought (best 5),
    // p-3 1, p-4 3/5, p-gone 2/5, p-5 1/5; p-2 (weight 1/2) lends, from also_bought (best 3:
    // p-1), p-5 2/3 × 1/2. Views: p-2 (weight 1) lends, from similar (best 0.5), p-5 1 and p-3
    // 1/2. p-1 and p-2 are bought; p-3 is out of stock, p-4 discontinued, p-gone has no
    // document.
    assert_eq!(ids(&body), ["p-5"]);
    let score = body["recommendations"][0]["score"]
        .as_f64()
        .unwrap_or_default();
    assert!((score - (0.2 + 1.0 / 3.0 + 1.0)).abs() < 1e-9, "{score}");
    assert_eq!(
        (
            &body["seq"],
            &body["cold"],
            &body["based_on"],
            &body["based_on_views"]
        ),
        (
            &json!(44),
            &json!(false),
            &json!(["p-1", "p-2"]),
            &json!(["p-2"])
        )
    );
    let (_, body) = get_as(
        &base,
        &format!("{path}?include_unavailable=true"),
        Some("operator-key-of-the-tests"),
    )
    .await;
    assert_eq!(ids(&body), ["p-5", "p-3", "p-4"]);
    let (status, body) = get_as(&base, &format!("{path}?limit=0"), Some(&token("alice"))).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn the_latest_purchases_are_walked_and_every_kept_one_is_left_out() {
    let (base, _dir, _auth) = serve().await;
    let path = "/v1/users/erin/recommendations?include_unavailable=true";
    let (status, body) = get_as(&base, path, Some("operator-key-of-the-tests")).await;
    assert_eq!(status, 200, "{body}");
    // The 10 latest are walked: p-1's list lends p-3, p-2, p-4, p-gone and p-5, but p-2 and p-5
    // are among erin's older purchases (11th and 12th), so left out too.
    assert_eq!(
        body["based_on"].as_array().map(Vec::len),
        Some(USER_BASIS),
        "{body}"
    );
    assert_eq!(ids(&body), ["p-3", "p-4"]);
}

#[tokio::test]
async fn only_the_user_or_the_operator_and_an_erased_user_is_404() {
    let (base, _dir, auth) = serve().await;
    let token = |user: &str| auth.shopper_token(user, std::time::Duration::from_secs(600));
    let path = "/v1/users/alice/recommendations";
    assert_eq!(get_as(&base, path, None).await.0, 401);
    assert_eq!(get_as(&base, path, Some(&token("carol"))).await.0, 403);
    let (status, body) = get_as(&base, "/v1/users/bob/recommendations", Some(&token("bob"))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    // A user who neither bought nor viewed anything yet: cold, the day's trending products.
    let (status, body) = get_as(
        &base,
        "/v1/users/carol/recommendations",
        Some(&token("carol")),
    )
    .await;
    assert_eq!(
        (status, &body["cold"], ids(&body)),
        (200, &json!(true), vec!["p-1"])
    );
}

#[tokio::test]
async fn a_shopper_who_only_viewed_gets_the_lists_of_their_views() {
    let (base, _dir, auth) = serve().await;
    let token = auth.shopper_token("dave", std::time::Duration::from_secs(600));
    let (status, body) = get_as(&base, "/v1/users/dave/recommendations", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    // Views p-lonely (recency 1) then p-5 (1/2). also_viewed (weight 1) of p-5, best 4: p-2
    // 1/2 · 4/4, p-1 1/2 · 2/4; category (weight 1): both are in Home/Kitchen, whose day list
    // has p-2 (log2 2) and p-1 (log2 1): shares 1 and 1/2, so p-2 (1 + 1/2) · 1, p-1
    // (1 + 1/2) · 1/2. p-lonely's content list is not walked. So p-2 2, p-1 1 (no
    // popularity: not reweighed).
    assert_eq!(ids(&body), ["p-2", "p-1"]);
    let score = |i: usize| body["recommendations"][i]["score"].as_f64();
    assert_eq!((score(0), score(1)), (Some(2.0), Some(1.0)));
    assert_eq!(
        (
            &body["seq"],
            &body["cold"],
            &body["based_on"],
            &body["based_on_views"]
        ),
        (
            &json!(49),
            &json!(false),
            &json!([]),
            &json!(["p-lonely", "p-5"])
        )
    );
}

#[tokio::test]
async fn a_product_has_its_co_viewed_and_content_lists() {
    let (base, _dir, _) = serve().await;
    let (status, body) = get(&base, "/v1/products/p-5/recommendations?kind=also_viewed").await;
    assert_eq!((status, ids(&body)), (200, vec!["p-2", "p-1"]), "{body}");
    assert_eq!(
        (
            &body["kind"],
            &body["seq"],
            &body["recommendations"][0]["score"]
        ),
        (&json!("also_viewed"), &json!(47), &json!(4))
    );
    // A product nobody bought has its content list.
    let (status, body) = get(&base, "/v1/products/p-lonely/recommendations?kind=content").await;
    assert_eq!((status, ids(&body)), (200, vec!["p-5", "p-2"]), "{body}");
    assert_eq!(
        (&body["seq"], &body["recommendations"][1]["score"]),
        (&json!(48), &json!(2.5))
    );
}

#[tokio::test]
async fn trending_lists_a_category_in_a_window_without_what_cannot_be_bought() {
    let (base, _dir, _) = serve().await;
    // The whole catalogue in the last hour by default; p-3 is out of stock.
    let (status, body) = get(&base, "/v1/trending").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["products"].as_array().map(Vec::len), Some(2));
    let products: Vec<&str> = body["products"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["product_id"].as_str())
        .collect();
    assert_eq!(products, ["p-5", "p-2"]);
    assert_eq!(
        (&body["window"], &body["seq"], &body["products"][0]["score"]),
        (&json!("1h"), &json!(45), &json!(3.0))
    );
    let (_, body) = get(&base, "/v1/trending?window=24h").await;
    assert_eq!(body["products"][0]["product_id"], "p-1");
    let (_, body) = get(
        &base,
        "/v1/trending?category=Home/Kitchen&window=24h&limit=1",
    )
    .await;
    assert_eq!(
        (
            &body["category"],
            &body["seq"],
            &body["products"][0]["product_id"]
        ),
        (&json!("Home/Kitchen"), &json!(46), &json!("p-2"))
    );
    // A category nothing trends in yet: an empty list.
    let (status, body) = get(&base, "/v1/trending?category=Garden").await;
    assert_eq!(
        (status, &body["products"], &body["seq"]),
        (200, &json!([]), &json!(0))
    );
    for (query, named) in [
        ("window=2h", "window"),
        ("category=/Home", "category"),
        ("category=", "category"),
        ("limit=0", "limit"),
        ("sort=asc", "sort"),
    ] {
        let (status, body) = get(&base, &format!("/v1/trending?{query}")).await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{query}: {body}");
        assert!(message.contains(named), "{query}: {message}");
    }
}
