//! `emporium run --no-dataflow`: an ingest and read-API node of a distributed deployment. It
//! accepts events into the log and answers reads from the store, and decides nothing: no decision
//! is appended and no document written, however many orders arrive.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use emporium_ingest::generator::{Generator, GeneratorConfig};
use emporium_ingest::log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_ingest::log::{EVENTS_TOPIC, read_all};
use emporium_schemas::{Event, EventKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_dataflow_events_are_ingested_and_nothing_is_decided() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(["run", "--no-dataflow", "--listen", "127.0.0.1:0"])
        .args(["--status-every", "0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start emporium");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let base = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("emporium printed its address");
        printed.push(line.clone());
        if let Some(url) = line.trim().strip_prefix("listening on ") {
            break url.trim().to_owned();
        }
    };

    // Enough generated traffic for stock and orders (a small catalog fills quickly).
    let mut generator = Generator::new(GeneratorConfig {
        products: 20,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let body: String = (0..5_000)
        .map(|_| String::from_utf8(generator.next_event().to_json()).expect("utf-8") + "\n")
        .collect();
    let client = reqwest::Client::new();
    let report: serde_json::Value = client
        .post(format!("{base}/v1/events"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("report");
    let accepted = report["accepted"].as_u64().expect("accepted");
    assert!(accepted > 4_000, "{report}");
    // Time a dataflow would have needed to decide (it decides within a second here).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !metrics.contains("emporium_dataflow_records_read_total"),
        "no dataflow reads the log"
    );
    let product = client
        .get(format!("{base}/v1/products/p-0000001"))
        .send()
        .await
        .expect("read API");
    assert_eq!(product.status().as_u16(), 404, "no document was written");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    assert!(child.wait().expect("exit").success(), "clean exit");
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        printed.push(line);
    }
    let printed = printed.join("\n");
    assert!(
        printed.contains("dataflows   off (--no-dataflow)"),
        "{printed}"
    );

    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path().join("log"))).expect("log");
    let records = read_all(&log, EVENTS_TOPIC).await.expect("read");
    let events: Vec<Event> = records
        .iter()
        .map(|r| Event::decode(&r.value).expect("events decode"))
        .collect();
    assert_eq!(events.len() as u64, accepted);
    let orders = events
        .iter()
        .filter(|e| e.kind() == EventKind::OrderPlaced)
        .count();
    assert!(orders > 10, "the traffic placed orders: {orders}");
    assert!(
        events.iter().all(|e| !e.kind().is_system()),
        "no decision was appended"
    );
}
