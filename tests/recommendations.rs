//! Recommendations in `emporium run`, end to end (issue 25, "Done when"): a paid order shows up
//! in its products' *also bought* (how long that took is printed: `benches/end_to_end.rs`
//! measures the p99 under load) and in the buyer's recommendations; a cancellation takes it back;
//! an erased user vanishes from every answer, and their own recommendations and orders are 404.

mod support;

use std::time::{Duration, Instant};

use emporium_schemas::Payload;
use emporium_schemas::accounts::UserErased;
use emporium_schemas::catalog::ProductUpserted;
use emporium_schemas::money::Money;
use emporium_schemas::orders::{OrderCancelled, OrderLine, OrderPlaced, PaymentAuthorized};
use emporium_schemas::shopper::ProductViewed;
use emporium_schemas::stock::StockReceived;
use serde_json::Value;

struct Shop {
    producer: support::Producer,
}

impl Shop {
    async fn post(&mut self, payload: impl Into<Payload>) {
        self.producer.post(payload).await;
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .producer
            .client
            .get(format!("{}{path}", self.producer.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let response = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    }

    /// Polls `path` until `done` holds (at most 30 s); gives how long that took.
    async fn until(
        &self,
        path: &str,
        token: Option<&str>,
        done: impl Fn(u16, &Value) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let (status, answer) = self.get(path, token).await;
            if done(status, &answer) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{path}: still {status} {answer}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn order(&mut self, order: &str, user: &str, skus: &[&str]) {
        self.post(OrderPlaced {
            order_id: order.into(),
            user_id: user.into(),
            lines: skus
                .iter()
                .map(|sku| OrderLine {
                    sku: (*sku).into(),
                    qty: 1,
                    unit_price: usd(1_000),
                })
                .collect(),
            shipping_region: "eu-west".into(),
            payment_token: "tok-1".into(),
        })
        .await;
        self.post(PaymentAuthorized {
            order_id: order.into(),
            amount: usd(1_000 * skus.len() as i64),
            payment_token: "tok-1".into(),
        })
        .await;
    }
}

fn usd(cents: i64) -> Money {
    Money {
        amount_minor: cents,
        currency: "USD".into(),
    }
}

fn ids(answer: &Value) -> Vec<String> {
    answer["recommendations"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|r| r["product_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_shows_up_a_cancellation_takes_it_back_an_erased_user_vanishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let support::Run {
        mut child, base, ..
    } = support::start_run(
        dir.path(),
        &[
            "--no-lakehouse",
            "--heartbeat-grace-ms",
            "0",
            "--recommendations",
        ],
        "Press Ctrl-C",
    );
    let mut shop = Shop {
        producer: support::Producer::new(base, support::producer_token(dir.path())),
    };
    for (product, title) in [
        ("p-phone", "Phone"),
        ("p-case", "Case"),
        ("p-cable", "Cable"),
    ] {
        let sku = format!("{product}-black");
        shop.post(ProductUpserted {
            product_id: product.into(),
            skus: vec![sku.clone()],
            title: title.into(),
            description: format!("A {title}."),
            brand: "Acme".into(),
            category_path: vec!["Electronics".into(), "Phones".into()],
            attributes: Default::default(),
            price: usd(1_000),
        })
        .await;
        shop.post(StockReceived {
            sku,
            warehouse: "w-1".into(),
            quantity: 10,
            reason: "initial_stock".into(),
        })
        .await;
    }
    // Ann buys a phone and a case: each is the other's also-bought.
    shop.order("o-ann", "u-ann", &["p-phone-black", "p-case-black"])
        .await;
    let shown = shop
        .until("/v1/products/p-phone/recommendations", None, |_, a| {
            ids(a) == ["p-case"]
        })
        .await;
    eprintln!("paid → in also_bought after {shown:?} (acknowledged to answered)");
    // The feature store's `user` view counts Ann's paid order (issue 26).
    let operator = support::token(&["--operator"], dir.path());
    let orders_7d = |a: &Value| a["features"]["orders_7d"]["value"].clone();
    let shown = shop
        .until("/v1/features/user/u-ann", Some(&operator), |s, a| {
            s == 200 && orders_7d(a) == serde_json::json!(1)
        })
        .await;
    eprintln!("paid → in the user's features after {shown:?}");
    let (_, answer) = shop.get("/v1/products/p-case/recommendations", None).await;
    assert_eq!(ids(&answer), ["p-phone"], "{answer}");
    assert!(answer["seq"].as_u64().is_some_and(|s| s > 0), "{answer}");

    // Bob buys the phone: his recommendations are what phone buyers also bought.
    shop.order("o-bob", "u-bob", &["p-phone-black", "p-cable-black"])
        .await;
    let bob = support::token(&["--user", "u-bob"], dir.path());
    shop.until("/v1/users/u-bob/recommendations", Some(&bob), |s, a| {
        s == 200 && ids(a) == ["p-case"]
    })
    .await;

    // Ann cancels: her order no longer counts anywhere.
    shop.post(OrderCancelled {
        order_id: "o-ann".into(),
        reason: "changed_mind".into(),
    })
    .await;
    let taken = shop
        .until("/v1/products/p-phone/recommendations", None, |_, a| {
            ids(a) == ["p-cable"]
        })
        .await;
    eprintln!("cancelled → taken back after {taken:?}");
    let (_, answer) = shop.get("/v1/products/p-case/recommendations", None).await;
    assert_eq!(ids(&answer), Vec::<String>::new(), "{answer}");
    // And no longer in Ann's features; Bob's paid order is in his, with its amount.
    shop.until("/v1/features/user/u-ann", Some(&operator), |_, a| {
        orders_7d(a) == serde_json::json!(0)
    })
    .await;
    shop.until("/v1/features/user/u-bob", Some(&operator), |_, a| {
        orders_7d(a) == serde_json::json!(1)
            && a["features"]["spend_7d_minor"]["value"] == serde_json::json!(2_000)
    })
    .await;

    // Bob and Carol browse: each product viewed in one session with the phone is its
    // also-viewed (one session each: the one listed first leads).
    for (user, product) in [
        ("u-bob", "p-phone"),
        ("u-bob", "p-case"),
        ("u-carol", "p-phone"),
        ("u-carol", "p-cable"),
    ] {
        shop.post(ProductViewed {
            user_id: user.into(),
            session_id: "s-1".into(),
            product_id: product.into(),
        })
        .await;
    }
    let viewed = "/v1/products/p-phone/recommendations?kind=also_viewed";
    let shown = shop
        .until(viewed, None, |_, a| ids(a) == ["p-case", "p-cable"])
        .await;
    eprintln!("viewed → in also_viewed after {shown:?}");
    // Alike in the catalogue: the same category, brand and price band.
    let (_, answer) = shop
        .get("/v1/products/p-phone/recommendations?kind=content", None)
        .await;
    assert_eq!(ids(&answer), ["p-case", "p-cable"], "{answer}");
    // Carol bought nothing: her recommendations come from what she viewed.
    let carol = support::token(&["--user", "u-carol"], dir.path());
    shop.until("/v1/users/u-carol/recommendations", Some(&carol), |s, a| {
        s == 200
            && a["cold"] == Value::Bool(false)
            && a["based_on_views"] == serde_json::json!(["p-cable", "p-phone"])
    })
    .await;

    // Bob asks to be forgotten: his purchase and his session leave every list, and he is 404.
    shop.post(UserErased {
        user_id: "u-bob".into(),
        reason: "gdpr_request".into(),
    })
    .await;
    shop.until("/v1/users/u-bob/recommendations", Some(&bob), |s, _| {
        s == 404
    })
    .await;
    let (_, answer) = shop.get("/v1/products/p-phone/recommendations", None).await;
    assert_eq!(ids(&answer), Vec::<String>::new(), "{answer}");
    shop.until(viewed, None, |_, a| ids(a) == ["p-cable"]).await;
    // Erased: no features either.
    shop.until("/v1/features/user/u-bob", Some(&operator), |s, a| {
        s == 200
            && a["features"]["orders_7d"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("no value"))
    })
    .await;
    let (status, _) = shop.get("/v1/orders/o-bob", Some(&operator)).await;
    assert_eq!(status, 404);
    let (status, _) = shop.get("/v1/users/u-bob/orders", Some(&operator)).await;
    assert_eq!(status, 404);
    // Ann is untouched: her (cancelled) order is still hers to read.
    let (status, _) = shop.get("/v1/orders/o-ann", Some(&operator)).await;
    assert_eq!(status, 200);

    stop(&mut child);
}

fn stop(child: &mut std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("send SIGINT");
    assert!(status.success());
    assert!(child.wait().expect("exit").success(), "clean exit");
}
