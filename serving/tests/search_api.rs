//! `GET /v1/search` and `GET /v1/suggest` through real HTTP over a real (in-memory) index: the
//! answer's shape (hits, total, facets, `as_of` as the commit's position), a 400 naming the
//! parameter for every bad input the issue lists, the `search_performed` event each search
//! records (the shopper from a token, `anonymous` without), and the OpenAPI entries.

use std::sync::{Arc, Mutex};

use emporium_schemas::shopper::SearchPerformed;
use emporium_search::{SearchDocument, SearchIndex};
use emporium_serving::auth::{Authenticator, KeySet};
use serde_json::Value;

struct Fixture {
    base: String,
    auth: Authenticator,
    http: reqwest::Client,
    recorded: Arc<Mutex<Vec<SearchPerformed>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Fixture {
    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }
}

fn doc(id: &str, title: &str, brand: &str, category: &[&str], price: i64) -> SearchDocument {
    SearchDocument {
        product_id: id.into(),
        title: title.into(),
        brand: brand.into(),
        category_path: category.iter().map(|c| (*c).to_owned()).collect(),
        description: String::new(),
        price_minor: price,
        currency: "USD".into(),
        reviews: 1,
        mean_rating: 4.0,
        popularity: 1.0,
        listed_ms: 0,
    }
}

async fn fixture() -> Fixture {
    let index = Arc::new(SearchIndex::in_memory().expect("index"));
    for (d, in_stock) in [
        (
            doc(
                "p-1",
                "Wireless headphones",
                "Acme",
                &["Electronics", "Audio"],
                5_999,
            ),
            true,
        ),
        (
            doc(
                "p-2",
                "Wireless speaker",
                "Acme",
                &["Electronics", "Audio"],
                12_999,
            ),
            false,
        ),
        (
            doc(
                "p-3",
                "Kitchen scale",
                "Initech",
                &["Home", "Kitchen"],
                2_499,
            ),
            true,
        ),
    ] {
        index.upsert(&d).expect("upsert");
        index.set_in_stock(&d.product_id, in_stock);
    }
    index
        .commit(r#"{"seq":42,"positions":[10,11]}"#)
        .expect("commit");
    let auth = Authenticator::new(
        &KeySet::single("test", "a-test-secret-of-enough-bytes"),
        "operator-key-of-the-tests",
    )
    .expect("keys");
    let recorded: Arc<Mutex<Vec<SearchPerformed>>> = Arc::default();
    let log: emporium_serving::search::SearchLog = {
        let recorded = Arc::clone(&recorded);
        Arc::new(move |e| recorded.lock().expect("lock").push(e))
    };
    let counters = Arc::new(emporium_serving::search::SearchCounters::default());
    let router = emporium_serving::search::router(index, auth.clone(), Some(log), counters).merge(
        emporium_serving::api::router(
            Arc::new(
                emporium_serving::store::embedded::EmbeddedStore::open(
                    tempfile::tempdir().expect("tempdir").path(),
                )
                .expect("store"),
            ),
            auth.clone(),
        ),
    );
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
        recorded,
        _server: server,
    }
}

#[tokio::test]
async fn a_search_answers_hits_facets_and_the_position_and_is_recorded() {
    let f = fixture().await;
    let (status, body) = f.get("/v1/search?q=wireles", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 2);
    let hits: Vec<&str> = body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["product_id"].as_str().expect("id"))
        .collect();
    assert_eq!(hits, ["p-1", "p-2"], "in stock first");
    assert_eq!(body["hits"][1]["in_stock"], false);
    assert_eq!(body["hits"][0]["highlight"], "<em>Wireless</em> headphones");
    assert_eq!(body["facets"]["brand"][0]["value"], "Acme");
    assert_eq!(body["facets"]["brand"][0]["count"], 2);
    assert_eq!(body["as_of"]["seq"], 42);
    assert_eq!(body["as_of"]["positions"][1], 11);

    let (_, body) = f.get("/v1/search?q=wireless&in_stock=true", None).await;
    assert_eq!(body["total"], 1, "the speaker is sold out");
    let (_, body) = f
        .get("/v1/search?category=Home&sort=price_asc&per_page=5", None)
        .await;
    assert_eq!(body["hits"][0]["product_id"], "p-3", "a filter alone");

    // Each search is recorded: anonymous without a token, the shopper with one.
    let token = f
        .auth
        .shopper_token("u-7", std::time::Duration::from_secs(60));
    let response = f
        .http
        .get(format!("{}/v1/search?q=scale", f.base))
        .bearer_auth(&token)
        .header("x-session-id", "s-9")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let recorded = f.recorded.lock().expect("lock").clone();
    assert_eq!(recorded.len(), 4);
    assert_eq!(recorded[0].user_id, "anonymous");
    assert_eq!(
        (recorded[0].query.as_str(), recorded[0].result_count),
        ("wireles", 2)
    );
    let last = recorded.last().expect("one");
    assert_eq!(
        (
            last.user_id.as_str(),
            last.session_id.as_str(),
            last.result_count
        ),
        ("u-7", "s-9", 1)
    );
    // A token that is not valid is refused, not taken as anonymous.
    let (status, _) = f.get("/v1/search?q=scale", Some("not-a-token")).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn bad_parameters_get_a_400_naming_them() {
    let f = fixture().await;
    let long = "a".repeat(257);
    for (query, parameter) in [
        ("", "q"),
        ("q=", "q"),
        ("q=%20%20", "q"),
        (&format!("q={long}") as &str, "q"),
        ("q=x&sort=cheapest", "sort"),
        ("q=x&per_page=101", "per_page"),
        ("q=x&per_page=0", "per_page"),
        ("q=x&page=501", "page"),
        ("q=x&page=0", "page"),
        ("q=x&price_min=500&price_max=100", "price_min"),
        ("q=x&price_min=cheap", "price_min"),
        ("q=x&in_stock=maybe", "in_stock"),
        ("q=x&rating_min=6", "rating_min"),
        ("q=x&colour=red", "colour"),
        ("q=x&q=y", "q"),
    ] {
        let (status, body) = f.get(&format!("/v1/search?{query}"), None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
        let message = body["error"]["message"].as_str().expect("a message");
        assert!(
            message.starts_with(&format!("{parameter}:")),
            "{query}: {message}"
        );
    }
    assert!(
        f.recorded.lock().expect("lock").is_empty(),
        "refused searches are not recorded"
    );
}

#[tokio::test]
async fn suggest_completes_and_refuses_an_empty_query() {
    let f = fixture().await;
    let (status, body) = f.get("/v1/suggest?q=wire", None).await;
    assert_eq!(status, 200, "{body}");
    let first = &body["suggestions"][0];
    assert_eq!(
        (first["kind"].as_str(), first["text"].as_str()),
        (Some("title"), Some("Wireless headphones"))
    );
    let (_, body) = f.get("/v1/suggest?q=ac", None).await;
    assert_eq!(body["suggestions"][0]["kind"], "brand");
    assert_eq!(body["suggestions"][0]["products"], 2);
    for bad in ["", "?q=", "?x=1"] {
        let (status, body) = f.get(&format!("/v1/suggest{bad}"), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test]
async fn the_openapi_document_lists_the_search_routes() {
    let f = fixture().await;
    let (_, doc) = f.get("/openapi.json", None).await;
    for (path, codes) in [
        ("/v1/search", &["200", "400", "401", "503"][..]),
        ("/v1/suggest", &["200", "400", "503"]),
    ] {
        for code in codes {
            assert!(
                doc["paths"][path]["get"]["responses"][code].is_object(),
                "{path} documents {code}"
            );
        }
    }
    let sorts = &doc["paths"]["/v1/search"]["get"]["parameters"];
    assert!(sorts.as_array().expect("parameters").len() == 10);
}
