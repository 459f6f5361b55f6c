//! Every subcommand that runs for long answers the same operational routes (`/healthz`,
//! `/readyz`, `/metrics`), errors in the one envelope, and drains and exits 0 on SIGTERM.

mod support;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use emporium_log::EventLog;
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};

/// Starts `emporium ARGS` and waits for a printed line starting with `prefix`; gives the URL that
/// follows it (up to the next space) and the process.
fn start(args: &[&str], data_dir: &Path, prefix: &str) -> (Child, String, Receiver<String>) {
    let (mut child, lines) = support::spawn_printing(args, data_dir);
    loop {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("emporium {args:?} did not print a line starting {prefix:?}");
        };
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            let url = rest.trim().split(' ').next().unwrap_or("").to_owned();
            let base = url.trim_end_matches("/healthz").to_owned();
            return (child, base, lines);
        }
    }
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// The ops routes answer: alive, ready, and metrics that include `want`.
async fn assert_ops(base: &str, want: &str) {
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    // Readiness may take a moment (the store or log opening).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(&format!("{base}/readyz")).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics.contains(want), "{want} in /metrics:\n{metrics}");
    let (status, body) = get(&format!("{base}/no/such/route")).await;
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let r = reqwest::Client::new()
        .delete(format!("{base}/healthz"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 405);
    let body: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
}

/// SIGTERM drains and exits 0 within a few seconds.
fn terminate(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            assert!(exit.success(), "exit after SIGTERM: {exit}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_the_ops_routes_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, base, _lines) = start(
        &["serve", "--listen", "127.0.0.1:0"],
        dir.path(),
        "Emporium read API on",
    );
    let base = base.trim_end_matches(' ').to_owned();
    // A read first, so its request metric exists; a missing product in the one envelope.
    let (status, body) = get(&format!("{base}/v1/products/p-missing")).await;
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("p-missing")),
        "{body}"
    );
    assert_ops(
        &base,
        "emporium_serving_request_duration_seconds_bucket{route=\"/v1/products/{id}\",status=\"404\"",
    )
    .await;
    terminate(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lakehouse_sink_answers_the_ops_routes_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // The sink reads an existing events topic (made by `emporium run` or ingest).
        let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path().join("log"))).expect("log");
        log.ensure_topic(emporium_log::EVENTS_TOPIC, 2)
            .await
            .expect("topic");
        log.close();
    }
    let (child, base, _lines) = start(
        &[
            "lakehouse",
            "--ops-listen",
            "127.0.0.1:0",
            "--status-every",
            "0",
        ],
        dir.path(),
        "operations  GET",
    );
    assert_ops(
        &base,
        "emporium_ops_request_duration_seconds_bucket{route=\"/healthz\",status=\"200\"",
    )
    .await;
    terminate(child);
}
