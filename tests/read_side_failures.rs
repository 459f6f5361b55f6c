//! Ingest survives the read side (issue 23): with the lakehouse directory broken mid-run, `emporium
//! run` keeps acknowledging events (200), `/readyz` says the lakehouse is down and why, and once
//! the directory is repaired the restarted sink catches up: every accepted event lands in the
//! lakehouse, once. (The dataflow's restart from its checkpoint after store failures is
//! `pipeline/tests/restarts.rs`.)

mod support;

use std::time::{Duration, Instant};

use emporium_schemas::EventKind;

fn user_events_sql() -> String {
    EventKind::ALL
        .iter()
        .filter(|k| !k.is_system())
        .map(|k| format!("SELECT count(*) AS n FROM {k}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

async fn lake_user_events(client: &reqwest::Client, base: &str, operator: &str) -> Option<u64> {
    let response = client
        .post(format!("{base}/v1/sql"))
        .bearer_auth(operator)
        .header("content-type", "text/plain")
        .header("accept", "application/json")
        .body(user_events_sql())
        .send()
        .await
        .ok()?;
    if response.status().as_u16() != 200 {
        return None;
    }
    let rows: serde_json::Value = response.json().await.ok()?;
    Some(
        rows.as_array()?
            .iter()
            .filter_map(|r| r["n"].as_u64())
            .sum(),
    )
}

async fn readyz(client: &reqwest::Client, base: &str) -> (u16, String) {
    let response = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_keeps_acknowledging_while_the_lakehouse_is_broken_and_it_catches_up_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let operator = support::token(&["--operator"], data);
    let token = support::producer_token(data);
    let support::Run {
        mut child, base, ..
    } = support::start_run(
        data,
        &[
            "--lakehouse-flush-secs",
            "1",
            "--inventory-snapshot-secs",
            "0",
        ],
        "Press Ctrl-C",
    );
    let client = reqwest::Client::new();
    let mut generator = support::shop(30);
    let mut accepted = 0;
    let post = async |generator: &mut emporium_generator::Generator| {
        let report = support::post_generated(&client, &base, &token, generator, 500).await;
        report["accepted"].as_u64().expect("accepted")
    };
    accepted += post(&mut generator).await;

    // Break the lakehouse: its directory replaced by a file.
    let lake = data.join("lakehouse");
    let away = data.join("lakehouse.away");
    let began = Instant::now();
    while !lake.exists() {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "no lakehouse yet"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::rename(&lake, &away).expect("move the lakehouse away");
    std::fs::write(&lake, b"not a directory").expect("a file in its place");

    // Ingest answers 200 throughout; /readyz says the lakehouse is down, and why.
    let mut down = None;
    let began = Instant::now();
    while down.is_none() {
        accepted += post(&mut generator).await;
        let (status, body) = readyz(&client, &base).await;
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "/readyz never reported the lakehouse down: {status} {body}"
        );
        if status == 503 && body.contains("lakehouse") {
            down = Some(body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let down = down.expect("down");
    assert!(down.contains("stopped on an error"), "{down}");
    for _ in 0..4 {
        accepted += post(&mut generator).await;
    }
    let (status, body) = readyz(&client, &base).await;
    assert_eq!(status, 503, "still down while broken: {body}");

    // Repair: the sink starts again and catches up with everything accepted meanwhile.
    std::fs::remove_file(&lake).expect("remove the file");
    std::fs::rename(&away, &lake).expect("move the lakehouse back");
    let began = Instant::now();
    loop {
        let (status, body) = readyz(&client, &base).await;
        let rows = lake_user_events(&client, &base, &operator).await;
        if status == 200 && rows == Some(accepted) {
            break;
        }
        assert!(
            rows.is_none_or(|n| n <= accepted),
            "more rows than events accepted: {rows:?} of {accepted}"
        );
        assert!(
            began.elapsed() < Duration::from_secs(90),
            "not caught up after the repair: /readyz {status} {body}, {rows:?} of {accepted} events"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("SIGTERM");
    assert!(status.success());
    let exit = child.wait().expect("exit");
    assert!(exit.success(), "a clean stop: {exit}");
}
