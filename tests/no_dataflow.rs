//! `emporium run --no-dataflow`: an ingest and read-API node of a distributed deployment. It
//! accepts events into the log and answers reads from the store, and decides nothing: no decision
//! is appended and no document written, however many orders arrive.

mod support;

use std::process::Command;
use std::time::Duration;

use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{EVENTS_TOPIC, read_all};
use emporium_schemas::{Event, EventKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_dataflow_events_are_ingested_and_nothing_is_decided() {
    let dir = tempfile::tempdir().expect("tempdir");
    let support::Run {
        mut child,
        base,
        mut printed,
        lines,
    } = support::start_run(dir.path(), &["--no-dataflow"], "listening on ");

    // Enough generated traffic for stock and orders (a small catalog fills quickly).
    let client = reqwest::Client::new();
    let token = support::producer_token(dir.path());
    let report =
        support::post_generated(&client, &base, &token, &mut support::shop(20), 5_000).await;
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
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
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
