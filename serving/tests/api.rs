//! The read API over a real embedded store, through real HTTP: documents as stored, 404s with
//! bodies, bearer auth (401 without a valid token, 403 for another user's orders, the operator
//! sees all), pagination, and an OpenAPI document that lists every route.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use emporium_schemas::money::Money;
use emporium_schemas::orders::OrderLine;
use emporium_serving::api;
use emporium_serving::auth::{Authenticator, KeySet};
use emporium_serving::store::Store;
use emporium_serving::store::embedded::EmbeddedStore;
use emporium_serving::views::{OrderStatus, OrderView, Transition, Upsert, WriteBatch};
use serde_json::Value;

struct Fixture {
    base: String,
    auth: Authenticator,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

fn order(id: &str, user: &str, minute: i64) -> OrderView {
    OrderView {
        order_id: id.into(),
        user_id: user.into(),
        lines: vec![OrderLine {
            sku: "sku-1".into(),
            qty: 1,
            unit_price: Money::new(999, "USD"),
        }],
        status: OrderStatus::Placed,
        history: vec![Transition {
            status: OrderStatus::Placed,
            at: Utc
                .timestamp_opt(1_767_225_600 + minute * 60, 0)
                .single()
                .expect("valid"),
        }],
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let mut upserts: Vec<Upsert> = (0..5)
        .map(|i| Upsert::Order {
            seq: i + 1,
            view: order(&format!("o-{i}"), "alice", i as i64),
        })
        .collect();
    upserts.push(Upsert::Order {
        seq: 9,
        view: order("o-bob", "bob", 1),
    });
    // Eve asked to be forgotten: her order is still in the store, her tombstone too.
    upserts.push(Upsert::Order {
        seq: 10,
        view: order("o-eve", "eve", 2),
    });
    upserts.push(Upsert::View {
        view: "erased_users".into(),
        key: "eve".into(),
        seq: 11,
        json: br#"{"user_id":"eve","erased":true}"#.to_vec().into(),
    });
    store
        .apply(WriteBatch {
            upserts,
            positions: vec![6],
            seq: 11,
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
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    Fixture {
        base,
        auth,
        http: reqwest::Client::new(),
        _dir: dir,
        _server: server,
    }
}

impl Fixture {
    async fn get(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json::<Value>().await.expect("JSON body");
        (status, body, headers)
    }
}

#[tokio::test]
async fn orders_need_a_token_and_shoppers_see_only_their_own() {
    let f = fixture().await;
    let alice = f
        .auth
        .shopper_token("alice", std::time::Duration::from_secs(600));

    let (status, body, headers) = f.get("/v1/orders/o-1", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _, _) = f.get("/v1/orders/o-1", Some("v1.forged.token")).await;
    assert_eq!(status, 401);

    let (status, body, headers) = f.get("/v1/orders/o-1", Some(&alice)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["order_id"], "o-1");
    assert_eq!(body["status"], "placed");
    assert_eq!(body["history"][0]["status"], "placed");

    let (status, body, _) = f.get("/v1/orders/o-bob", Some(&alice)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _, _) = f
        .get("/v1/orders/o-bob", Some("operator-key-of-the-tests"))
        .await;
    assert_eq!(status, 200, "the operator sees every order");

    let (status, body, _) = f.get("/v1/orders/o-missing", Some(&alice)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("o-missing")
    );

    let (status, _, _) = f.get("/v1/users/bob/orders", Some(&alice)).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_users_orders_come_newest_first_in_pages() {
    let f = fixture().await;
    let alice = f
        .auth
        .shopper_token("alice", std::time::Duration::from_secs(600));
    let (status, body, _) = f.get("/v1/users/alice/orders?limit=2", Some(&alice)).await;
    assert_eq!(status, 200);
    let ids = |b: &Value| -> Vec<String> {
        b["orders"]
            .as_array()
            .expect("orders")
            .iter()
            .map(|o| o["order_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(ids(&body), ["o-4", "o-3"]);
    let mut seen = ids(&body);
    let mut next = body["next"].as_str().map(str::to_owned);
    while let Some(cursor) = next {
        let (status, body, _) = f
            .get(
                &format!("/v1/users/alice/orders?limit=2&after={cursor}"),
                Some(&alice),
            )
            .await;
        assert_eq!(status, 200);
        seen.extend(ids(&body));
        next = body["next"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, ["o-4", "o-3", "o-2", "o-1", "o-0"]);

    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "after=garbage",
        "limit=2&limit=3",
        "colour=red",
    ] {
        let (status, body, _) = f
            .get(&format!("/v1/users/alice/orders?{bad}"), Some(&alice))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn catalog_reads_are_public_and_missing_ones_are_404() {
    let f = fixture().await;
    let (status, body, _) = f.get("/v1/products/p-none", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _, _) = f.get("/v1/inventory/sku-none", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_openapi_document_lists_every_read_route() {
    let f = fixture().await;
    let (status, doc, _) = f.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, codes) in [
        ("/v1/products/{id}", &["200", "404"][..]),
        ("/v1/inventory/{sku}", &["200", "404"]),
        ("/v1/orders/{id}", &["200", "401", "403", "404"]),
        ("/v1/users/{id}/orders", &["200", "400", "401", "403"]),
        ("/v1/products/{id}/recommendations", &["200", "400", "404"]),
        (
            "/v1/users/{id}/recommendations",
            &["200", "400", "401", "403", "404"],
        ),
        ("/v1/trending", &["200", "400"]),
    ] {
        for code in codes {
            assert!(
                doc["paths"][path]["get"]["responses"][code].is_object(),
                "{path} documents {code}"
            );
        }
    }
}

#[tokio::test]
async fn an_erased_users_orders_are_404_to_everyone() {
    let f = fixture().await;
    let eve = f
        .auth
        .shopper_token("eve", std::time::Duration::from_secs(600));
    for token in [eve.as_str(), "operator-key-of-the-tests"] {
        for path in ["/v1/orders/o-eve", "/v1/users/eve/orders"] {
            let (status, body, _) = f.get(path, Some(token)).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (404, Some("not_found")),
                "{path}"
            );
        }
    }
    // Others are untouched.
    let (status, _, _) = f
        .get("/v1/orders/o-bob", Some("operator-key-of-the-tests"))
        .await;
    assert_eq!(status, 200);
}
