//! The ingest HTTP API, served for real on a loopback port: status codes, per-line answers,
//! idempotency, the dead-letter log, metrics, and the 503 path when the log is down.

use std::sync::Arc;

use emporium_ops::{Readiness, ReadinessCheck};
use std::time::Duration;

use emporium_auth::{Authenticator, KeySet, Scope};
use emporium_generator::output::{self, Limits, Progress};
use emporium_generator::{Generator, GeneratorConfig};
use emporium_ingest::api;
use emporium_ingest::intake::{Intake, IntakeConfig};
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::kafka::{KafkaConfig, KafkaLog};
use emporium_log::{DEAD_LETTER_TOPIC, EVENTS_TOPIC, EventLog, read_all};
use emporium_schemas::EventKind;
use emporium_schemas::examples::example;
use rdkafka::mocking::MockCluster;
use serde_json::{Value, json};

struct Server {
    base: String,
    log: Arc<dyn EventLog>,
    _server: api::LocalServer,
    _dir: Option<tempfile::TempDir>,
}

async fn start(
    log: Arc<dyn EventLog>,
    config: IntakeConfig,
    dir: Option<tempfile::TempDir>,
) -> Server {
    let intake = Intake::start(Arc::clone(&log), config)
        .await
        .expect("intake");
    let server = api::LocalServer::start(intake, auth())
        .await
        .expect("server");
    Server {
        base: server.base.clone(),
        log,
        _server: server,
        _dir: dir,
    }
}

async fn embedded_server(config: IntakeConfig) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open");
    start(Arc::new(log), config, Some(dir)).await
}

fn ndjson(kinds: &[EventKind], from: u64) -> String {
    kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            String::from_utf8(example(k, from + i as u64).to_json()).expect("utf-8") + "\n"
        })
        .collect()
}

/// The keys of every server in these tests.
fn auth() -> Authenticator {
    Authenticator::new(
        &KeySet::single("test", "a-test-secret-of-enough-bytes"),
        "the-operator-key-of-these-tests",
    )
    .expect("keys")
}

const OPERATOR: &str = "the-operator-key-of-these-tests";

/// A producer token allowed every producer type.
fn producer() -> String {
    auth().producer_token("tests", &Scope::ALL, Duration::from_secs(3600))
}

/// Posts `body` as a producer allowed every type.
async fn post(base: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    post_as(base, Some(&producer()), content_type, body).await
}

async fn post_as(
    base: &str,
    token: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .header("content-type", content_type);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.body(body).send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_appended_once_even_when_resent() {
    let server = embedded_server(IntakeConfig::default()).await;
    let producer_kinds: Vec<EventKind> = EventKind::ALL
        .iter()
        .copied()
        .filter(|k| !k.is_system())
        .collect();
    let body = ndjson(&producer_kinds, 0);
    let (status, report) = post(&server.base, "application/x-ndjson", body.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], producer_kinds.len());
    assert_eq!(report["duplicates"], 0);

    let (status, report) = post(&server.base, "application/x-ndjson", body).await;
    assert_eq!(status, 200);
    assert_eq!(report["accepted"], 0);
    assert_eq!(report["duplicates"], producer_kinds.len());

    let events = read_all(server.log.as_ref(), EVENTS_TOPIC)
        .await
        .expect("read");
    assert_eq!(
        events.len(),
        producer_kinds.len(),
        "each event is in the log exactly once"
    );
    // The producer's bytes are stored as sent, on the partition of the event's key.
    let original = ndjson(&[EventKind::OrderPlaced], 9);
    let (status, _) = post(&server.base, "application/json", original.clone()).await;
    assert_eq!(status, 200);
    let events = read_all(server.log.as_ref(), EVENTS_TOPIC)
        .await
        .expect("read");
    let stored = events
        .iter()
        .find(|r| r.key.as_ref() == b"o-1" && r.value.as_ref() == original.trim_end().as_bytes());
    assert!(
        stored.is_some(),
        "the event is stored byte for byte under its order_id key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_event_gets_a_field_level_422_and_is_dead_lettered() {
    let server = embedded_server(IntakeConfig::default()).await;
    let mut bad: Value =
        serde_json::from_slice(&example(EventKind::OrderPlaced, 1).to_json()).expect("json");
    bad["payload"]["lines"][0]["qty"] = json!(0);
    bad["payload"]["payment_token"] = json!("4111 1111 1111 1111");
    let (status, report) = post(&server.base, "application/json", bad.to_string()).await;
    assert_eq!(status, 422, "{report}");
    let errors = &report["rejected"][0]["errors"];
    assert_eq!(report["rejected"][0]["index"], 0);
    assert_eq!(errors[0]["path"], "payload.lines[0].qty");
    assert_eq!(errors[0]["message"], "expected a positive integer, got 0");
    assert_eq!(errors[1]["path"], "payload.payment_token");
    assert_eq!(errors[1]["reason"], "card_number");

    let dlq: Value = reqwest::Client::new()
        .get(format!("{}/v1/dlq", server.base))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("dlq")
        .json()
        .await
        .expect("json");
    let letter = &dlq["dead_letters"][0];
    assert_eq!(letter["reason"], "invalid_value");
    assert_eq!(letter["errors"][0]["path"], "payload.lines[0].qty");
    let raw = letter["raw"].as_str().expect("raw kept");
    assert!(raw.contains("\"qty\":0"), "the raw line is kept: {raw}");
    assert!(
        raw.contains("****-****") || raw.contains("**** **** **** 1111"),
        "card masked: {raw}"
    );
    assert!(
        !raw.contains("4111 1111"),
        "no card number is stored: {raw}"
    );
    assert!(
        read_all(server.log.as_ref(), EVENTS_TOPIC)
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_answers_per_line() {
    let server = embedded_server(IntakeConfig::default()).await;
    let mut body = ndjson(&[EventKind::ProductViewed, EventKind::CartItemAdded], 0);
    body.push_str("{not json\n\n");
    body.push_str(&ndjson(&[EventKind::OrderPlaced], 5));
    body.push_str("{\"event_id\":\"x\",\"type\":\"nope\",\"schema_version\":1,\"occurred_at\":\"2026-01-01T00:00:00Z\",\"payload\":{}}\n");
    let (status, report) = post(&server.base, "application/x-ndjson", body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 3);
    let rejected: Vec<(u64, String)> = report["rejected"]
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap_or(99),
                r["errors"][0]["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (2, "malformed_json".to_owned()),
            (5, "invalid_uuid".to_owned())
        ]
    );
    let dead = read_all(server.log.as_ref(), DEAD_LETTER_TOPIC)
        .await
        .expect("read");
    assert_eq!(dead.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_events_are_refused_from_producers() {
    let server = embedded_server(IntakeConfig::default()).await;
    let body = ndjson(&[EventKind::ProductViewed, EventKind::InventoryReserved], 0);
    let (status, report) = post(&server.base, "application/x-ndjson", body).await;
    assert_eq!(status, 403, "{report}");
    assert_eq!(report["error"]["code"], "type_not_allowed");
    let message = report["error"]["message"].as_str().expect("message");
    assert!(message.contains("line 1"), "{message}");
    assert!(message.contains("written only by Emporium"), "{message}");
    for topic in [EVENTS_TOPIC, DEAD_LETTER_TOPIC] {
        assert!(
            read_all(server.log.as_ref(), topic)
                .await
                .expect("read")
                .is_empty(),
            "nothing of the request is kept in {topic}"
        );
    }
}

/// Ingest is closed to anonymous and forged callers, and a producer sends only the types of its
/// scopes: an anonymous `order_cancelled` or `price_changed` (what an attacker would send to
/// cancel another shopper's order or set a price to 1) is refused, and nothing is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_need_a_token_scoped_to_what_they_send() {
    let server = embedded_server(IntakeConfig::default()).await;
    let cancel = ndjson(&[EventKind::OrderCancelled], 0);
    let price = ndjson(&[EventKind::PriceChanged], 1);
    let storefront = auth().producer_token("web", &[Scope::Storefront], Duration::from_secs(60));
    let shopper = auth().shopper_token("u-1", Duration::from_secs(60));
    let forged = Authenticator::new(
        &KeySet::single("test", "another-secret-of-enough-bytes"),
        OPERATOR,
    )
    .expect("keys")
    .producer_token("evil", &Scope::ALL, Duration::from_secs(60));
    for (token, expected, who) in [
        (None, 401, "anonymous"),
        (Some(forged.as_str()), 401, "forged"),
        (Some("Bearer-less junk"), 401, "junk"),
        (
            Some(shopper.as_str()),
            401,
            "a shopper's token (another audience)",
        ),
        (Some(OPERATOR), 403, "the operator key"),
        (Some(storefront.as_str()), 403, "a storefront token"),
    ] {
        for body in [&cancel, &price] {
            let (status, answer) =
                post_as(&server.base, token, "application/x-ndjson", body.clone()).await;
            assert_eq!(status, expected, "{who}: {answer}");
            assert!(answer["error"]["message"].is_string(), "{who}: {answer}");
        }
    }
    let (status, answer) = post_as(
        &server.base,
        Some(&storefront),
        "application/x-ndjson",
        price.clone(),
    )
    .await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("needs the catalog scope")),
        "{status} {answer}"
    );
    for topic in [EVENTS_TOPIC, DEAD_LETTER_TOPIC] {
        assert!(
            read_all(server.log.as_ref(), topic)
                .await
                .expect("read")
                .is_empty(),
            "nothing reached {topic}"
        );
    }
    // The right scopes are let in.
    let orders = auth().producer_token("orders", &[Scope::Orders], Duration::from_secs(60));
    let (status, report) =
        post_as(&server.base, Some(&orders), "application/x-ndjson", cancel).await;
    assert_eq!(
        (status, report["accepted"].clone()),
        (200, json!(1)),
        "{report}"
    );
    let views = ndjson(&[EventKind::ProductViewed, EventKind::CartItemAdded], 5);
    let (status, report) = post_as(
        &server.base,
        Some(&storefront),
        "application/x-ndjson",
        views,
    )
    .await;
    assert_eq!(
        (status, report["accepted"].clone()),
        (200, json!(2)),
        "{report}"
    );
}

/// The dead-letter log holds what producers sent: operators only, in pages of bounded size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_for_operators_in_pages_of_bounded_size() {
    let server = embedded_server(IntakeConfig::default()).await;
    // 30 rejected lines of ~3 KiB each.
    let mut review: Value =
        serde_json::from_slice(&example(EventKind::ReviewPosted, 1).to_json()).expect("json");
    review["payload"]["rating"] = json!(9);
    review["payload"]["text"] = json!("z".repeat(3000));
    let body: String = (0..30).map(|_| format!("{review}\n")).collect();
    let (status, _) = post(&server.base, "application/x-ndjson", body).await;
    assert_eq!(status, 422);
    let get = |token: Option<String>, query: &str| {
        let mut request = reqwest::Client::new().get(format!("{}/v1/dlq{query}", server.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let r = request.send().await.expect("dlq");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.expect("json"))
        }
    };
    assert_eq!(get(None, "").await.0, 401);
    assert_eq!(get(Some(producer()), "").await.0, 403);
    let shopper = auth().shopper_token("u-1", Duration::from_secs(60));
    assert_eq!(get(Some(shopper), "").await.0, 401);
    for bad in [
        "?limit=0",
        "?limit=5000",
        "?max_bytes=0",
        "?from=1&from=2",
        "?colour=red",
    ] {
        let (status, body) = get(Some(OPERATOR.into()), bad).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (400, json!("bad_query")),
            "{bad}"
        );
    }
    // Pages of at most 10 KiB hold a few letters each; following `next` reads them all once.
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut from = 0;
    loop {
        let (status, page) = get(
            Some(OPERATOR.into()),
            &format!("?from={from}&max_bytes=10240"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let letters = page["dead_letters"].as_array().expect("letters").clone();
        if letters.is_empty() {
            break;
        }
        let size: usize = letters.iter().map(|l| l.to_string().len() + 1).sum();
        assert!(size <= 10240, "a page of {size} bytes");
        pages += 1;
        seen.extend(
            letters
                .iter()
                .map(|l| l["offset"].as_u64().expect("offset")),
        );
        from = page["next"].as_u64().expect("next");
    }
    assert_eq!(seen, (0..30).collect::<Vec<u64>>());
    assert!(pages >= 10, "{pages} pages of at most 10 KiB for ~100 KiB");
    // A page always holds one letter, however small the cap.
    let (_, page) = get(Some(OPERATOR.into()), "?max_bytes=1").await;
    assert_eq!(page["dead_letters"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors() {
    let server = embedded_server(IntakeConfig {
        max_batch_lines: 3,
        max_body_bytes: 64 * 1024,
        max_event_bytes: 2048,
        ..IntakeConfig::default()
    })
    .await;
    let (status, body) = post(&server.base, "application/x-ndjson", "\n \n").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("empty_body"))
    );
    let (status, body) = post(&server.base, "text/plain", "x").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (415, json!("unsupported_content_type"))
    );
    let four = ndjson(&[EventKind::ProductViewed; 4], 0);
    let (status, body) = post(&server.base, "application/x-ndjson", four).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (413, json!("too_many_lines"))
    );
    let (status, body) = post(&server.base, "application/x-ndjson", "x".repeat(100 * 1024)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (413, json!("body_too_large"))
    );
    // One oversize event is rejected on its own line, not the whole request.
    let mut review: Value =
        serde_json::from_slice(&example(EventKind::ReviewPosted, 1).to_json()).expect("json");
    review["payload"]["text"] = json!("y".repeat(4000));
    let body = format!("{review}\n{}", ndjson(&[EventKind::ProductViewed], 3));
    let (status, report) = post(&server.base, "application/x-ndjson", body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1);
    assert_eq!(report["rejected"][0]["errors"][0]["reason"], "oversize");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let server = embedded_server(IntakeConfig::default()).await;
    post(
        &server.base,
        "application/x-ndjson",
        ndjson(&[EventKind::OrderPlaced, EventKind::OrderPlaced], 100),
    )
    .await;
    post(&server.base, "application/json", "{}").await;
    for path in ["/healthz", "/readyz"] {
        let r = reqwest::get(format!("{}{path}", server.base))
            .await
            .expect("get");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for needle in [
        "emporium_ingest_events_accepted_total{type=\"order_placed\"}",
        "emporium_ingest_events_rejected_total{reason=\"missing_field\"}",
        "emporium_ingest_bytes_total",
        "emporium_ingest_append_duration_seconds_bucket",
        "emporium_ingest_events_duplicate_total",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_traffic_with_defects_is_accounted_for_line_by_line() {
    let server = embedded_server(IntakeConfig::default()).await;
    let mut generator = Generator::new(GeneratorConfig {
        invalid_fraction: 0.05,
        products: 200,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let progress = Arc::new(Progress::default());
    let limits = Limits {
        events: Some(5_000),
        ..Limits::default()
    };
    output::send_http(
        &mut generator,
        &output::Endpoint {
            url: format!("{}/v1/events", server.base),
            token: producer(),
        },
        500,
        4,
        limits,
        Arc::clone(&progress),
    )
    .await
    .expect("send");
    use std::sync::atomic::Ordering::Relaxed;
    let (generated, invalid) = (
        progress.generated.load(Relaxed),
        progress.invalid.load(Relaxed),
    );
    assert_eq!(generated, 5_000);
    assert!(invalid > 150, "about 5% invalid, got {invalid}");
    assert_eq!(
        progress.rejected.load(Relaxed),
        invalid,
        "every defect is caught, nothing valid is"
    );
    assert_eq!(progress.accepted.load(Relaxed), generated - invalid);
    let events = read_all(server.log.as_ref(), EVENTS_TOPIC)
        .await
        .expect("read");
    assert_eq!(events.len() as u64, generated - invalid);
    let dead = read_all(server.log.as_ref(), DEAD_LETTER_TOPIC)
        .await
        .expect("read");
    assert_eq!(dead.len() as u64, invalid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_kafka_is_down_ingest_answers_503_and_a_resend_lands_once() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(EVENTS_TOPIC, 4, 1).expect("topic");
    cluster
        .create_topic(DEAD_LETTER_TOPIC, 1, 1)
        .expect("topic");
    let log = KafkaLog::connect(KafkaConfig {
        delivery_timeout: Duration::from_secs(2),
        ..KafkaConfig::new(cluster.bootstrap_servers())
    })
    .expect("connect");
    let server = start(Arc::new(log), IntakeConfig::default(), None).await;

    let first = ndjson(&[EventKind::ProductViewed, EventKind::OrderPlaced], 0);
    let (status, report) = post(&server.base, "application/x-ndjson", first).await;
    assert_eq!(status, 200, "{report}");

    cluster.broker_down(1).expect("down");
    let batch = ndjson(
        &[
            EventKind::CartItemAdded,
            EventKind::PaymentAuthorized,
            EventKind::ReviewPosted,
        ],
        10,
    );
    let response = reqwest::Client::new()
        .post(format!("{}/v1/events", server.base))
        .bearer_auth(producer())
        .header("content-type", "application/x-ndjson")
        .body(batch.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "log_unavailable");

    cluster.broker_up(1).expect("up");
    let mut accepted = 0;
    for _ in 0..30 {
        let (status, report) = post(&server.base, "application/x-ndjson", batch.clone()).await;
        if status == 200 {
            accepted = report["accepted"].as_u64().unwrap_or(0)
                + report["duplicates"].as_u64().unwrap_or(0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(accepted, 3, "the resend is acknowledged");
    let events = read_all(server.log.as_ref(), EVENTS_TOPIC)
        .await
        .expect("read");
    let mut ids: Vec<String> = events
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.value).expect("json")["event_id"].to_string())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no event was appended twice");
    assert_eq!(n, 5, "every acknowledged event is in the log");
}

/// A check that is not ready until told.
struct Gate(std::sync::atomic::AtomicBool);

#[async_trait::async_trait]
impl ReadinessCheck for Gate {
    async fn check(&self) -> Result<(), String> {
        if self.0.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(())
        } else {
            Err("dataflow: replaying the log, 7 of 10 records to go".into())
        }
    }
}

/// `/readyz` is 503 with the reason while a readiness check fails (`/healthz` stays 200), and
/// 200 once it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_failing_check_until_it_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open");
    let intake = Intake::start(Arc::new(log), IntakeConfig::default())
        .await
        .expect("intake");
    let gate = Arc::new(Gate(std::sync::atomic::AtomicBool::new(false)));
    let readiness = Readiness::new()
        .with(Arc::new(api::LogReachable(Arc::clone(intake.log()))))
        .with(Arc::clone(&gate) as Arc<dyn ReadinessCheck>);
    let router = api::router(intake, auth()).merge(emporium_ops::router::router(readiness));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = emporium_ops::CancellationToken::new();
    let server = tokio::spawn(emporium_ops::http::serve(listener, router, stop.clone()));

    let r = reqwest::get(format!("{base}/readyz")).await.expect("get");
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    assert_eq!(
        body["error"]["message"],
        "dataflow: replaying the log, 7 of 10 records to go"
    );
    let r = reqwest::get(format!("{base}/healthz")).await.expect("get");
    assert_eq!(r.status().as_u16(), 200);

    gate.0.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = reqwest::get(format!("{base}/readyz")).await.expect("get");
    assert_eq!(r.status().as_u16(), 200);
    stop.cancel();
    server.await.expect("join").expect("serve");
}

/// Every form of an event the validator accepts is deduplicated by its `event_id` across a
/// restart (the idempotency window is rebuilt from the log), and a record written as an array —
/// which serde alone would read — is refused rather than stored in a form the window cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_form_is_deduplicated_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || -> Arc<dyn EventLog> {
        Arc::new(EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open"))
    };
    let canonical = |n: u64| -> String {
        String::from_utf8(example(EventKind::CartItemAdded, n).to_json()).expect("utf-8")
    };
    let value = |n: u64| -> Value { serde_json::from_str(&canonical(n)).expect("json") };
    // Each form, with an id of its own.
    let forms: Vec<(&str, String)> = vec![
        ("canonical", canonical(1)),
        (
            "pretty-printed",
            serde_json::to_string_pretty(&value(2)).expect("json"),
        ),
        ("keys reordered, spaced", {
            let v = value(3);
            format!(
                "{{ \"payload\": {} , \"type\" : \"cart_item_added\", \"occurred_at\": {}, \"schema_version\": 1, \"event_id\": {} }}",
                v["payload"], v["occurred_at"], v["event_id"]
            )
        }),
        ("upper-case id", {
            let mut v = value(4);
            v["event_id"] = json!(v["event_id"].as_str().expect("id").to_uppercase());
            v.to_string()
        }),
        ("escaped id", {
            let v = value(5);
            let id = v["event_id"].as_str().expect("id").to_owned();
            let escaped: String = id.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
            canonical(5).replace(&id, &escaped)
        }),
    ];
    {
        let server = start(open(), IntakeConfig::default(), None).await;
        for (name, body) in &forms {
            let (status, report) = post(&server.base, "application/json", body.clone()).await;
            assert_eq!(status, 200, "{name}: {report}");
            assert_eq!(report["accepted"], 1, "{name}: {report}");
        }
        // The array form of a new event is refused, and not stored.
        let array = {
            let v = value(6);
            json!([
                v["event_id"],
                v["type"],
                v["schema_version"],
                v["occurred_at"],
                v["payload"]
            ])
        };
        let (status, report) = post(&server.base, "application/json", array.to_string()).await;
        assert_eq!(status, 422, "{report}");
        assert_eq!(
            report["rejected"][0]["errors"][0]["reason"], "malformed_json",
            "{report}"
        );
        let server = server._server;
        server.shutdown().await.expect("shutdown");
    }
    // A new intake over the same log, as after a crash: every form is a duplicate.
    let server = start(open(), IntakeConfig::default(), None).await;
    for (name, body) in &forms {
        let (status, report) = post(&server.base, "application/json", body.clone()).await;
        assert_eq!(status, 200, "{name}: {report}");
        assert_eq!(report["duplicates"], 1, "{name} after a restart: {report}");
    }
    let events = read_all(server.log.as_ref(), EVENTS_TOPIC)
        .await
        .expect("read");
    assert_eq!(events.len(), forms.len(), "each form stored once");
}
