//! End to end, with the real `emporium` binary: acknowledged events survive `kill -9`, and the
//! store converges to what an uninterrupted run writes.
//!
//! Producers stream batches into `emporium run`; the process is killed with SIGKILL mid-stream
//! (ingest, the dataflow and store writes all in flight), restarted on the same data directory,
//! fed more, allowed to catch up, and stopped cleanly. Every event that was ever acknowledged must
//! be in the log exactly once, the torn tail (if any) must be gone, and every document in the store
//! must equal — seq included — the reference documents of the final log, with none beyond them.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emporium_generator::{Generator, GeneratorConfig};
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{EVENTS_TOPIC, EventLog, read_all};
use emporium_schemas::Event;

struct Running {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

fn start(data_dir: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--status-every",
            "0",
            // Checkpoints every second: the restart resumes from one taken before the kill.
            "--checkpoint-interval",
            "1",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start emporium");
    let stdout = child.stdout.take().expect("stdout");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
            sink.lock().expect("lines").push(line);
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("emporium printed its address");
    Running { child, base, lines }
}

/// Batches of generated events with their ids.
fn batches(seed: u64, count: usize, size: usize) -> Vec<(Vec<String>, String)> {
    let mut generator = Generator::new(GeneratorConfig {
        seed,
        products: 100,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    (0..count)
        .map(|_| {
            let mut ids = Vec::with_capacity(size);
            let mut body = String::new();
            for _ in 0..size {
                let event = generator.next_event();
                ids.push(event.event_id.to_string());
                body.push_str(&String::from_utf8(event.to_json()).expect("utf-8"));
                body.push('\n');
            }
            (ids, body)
        })
        .collect()
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    body: &str,
) -> Option<serde_json::Value> {
    let r = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body.to_owned())
        .send()
        .await
        .ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = Arc::new(batches(7, 400, 200));
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let unacked: Arc<Mutex<Vec<usize>>> = Arc::default();

    let token = support::producer_token(dir.path());
    let mut first = start(dir.path());
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let checkpoint = dir.path().join("checkpoints").join("decider.ckpt");
    let mut producers = Vec::new();
    for _ in 0..4 {
        let (all, acked, unacked, next, client, base, checkpoint, token) = (
            Arc::clone(&all),
            Arc::clone(&acked),
            Arc::clone(&unacked),
            Arc::clone(&next),
            client.clone(),
            first.base.clone(),
            checkpoint.clone(),
            token.clone(),
        );
        producers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((ids, body)) = all.get(i) else { break };
                // The second half waits for the decider's first checkpoint, so that the kill
                // below always lands mid-stream, however fast the first half went in.
                let deadline = Instant::now() + Duration::from_secs(60);
                while i >= all.len() / 2 && !checkpoint.exists() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                match post(&client, &base, &token, body).await {
                    Some(report) => {
                        assert_eq!(report["accepted"], ids.len(), "{report}");
                        acked.lock().expect("acked").extend(ids.iter().cloned());
                    }
                    None => {
                        unacked.lock().expect("unacked").push(i);
                        break;
                    }
                }
            }
        }));
    }
    // Kill mid-stream, once a good number of batches were acknowledged and the decider
    // checkpointed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (acked.lock().expect("acked").len() < 20 * 200 || !checkpoint.exists())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reaped");
    for p in producers {
        p.await.expect("producer");
    }
    let acked_before = acked.lock().expect("acked").len();
    assert!(
        acked_before >= 20 * 200,
        "enough traffic before the kill: {acked_before}"
    );
    let sent = next.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < all.len(), "the kill happened mid-stream");

    // Restart on the same data: resend what was in flight (idempotent), then new batches.
    let mut second = start(dir.path());
    // Not ready while the dataflow replays what the log held at the start; the reason says so.
    let early = client
        .get(format!("{}/readyz", second.base))
        .send()
        .await
        .expect("readyz");
    if early.status().as_u16() != 200 {
        assert_eq!(early.status().as_u16(), 503);
        let body: serde_json::Value = early.json().await.expect("json");
        assert_eq!(body["error"]["code"], "not_ready", "{body}");
        let why = body["error"]["message"].as_str().unwrap_or("");
        assert!(why.starts_with("dataflow: "), "{body}");
    }
    let retry: Vec<usize> = unacked.lock().expect("unacked").clone();
    for i in retry
        .iter()
        .copied()
        .chain(sent..(sent + 10).min(all.len()))
    {
        let (ids, body) = &all[i];
        let report = post(&client, &second.base, &token, body)
            .await
            .expect("accepted after restart");
        let landed =
            report["accepted"].as_u64().unwrap_or(0) + report["duplicates"].as_u64().unwrap_or(0);
        assert_eq!(landed as usize, ids.len(), "{report}");
        acked.lock().expect("acked").extend(ids.iter().cloned());
    }
    // Let the dataflow of the second run catch up (from its checkpoint), then a clean stop.
    let acked_count = acked.lock().expect("acked").len() as u64;
    support::wait_until_caught_up(&client, &second.base, acked_count).await;
    let ready = client
        .get(format!("{}/readyz", second.base))
        .send()
        .await
        .expect("readyz");
    let code = ready.status().as_u16();
    assert_eq!(code, 200, "{}", ready.text().await.unwrap_or_default());
    let resumed = support::gauge(&client, &second.base, "emporium_dataflow_resumed_from_seq")
        .await
        .unwrap_or(0);
    assert!(resumed > 0, "the restart resumed from the checkpoint");
    let status = Command::new("kill")
        .args(["-TERM", &second.child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let exit = second.child.wait().expect("exit");
    assert!(exit.success(), "clean exit, got {exit}");
    std::thread::sleep(Duration::from_millis(200));
    let printed = second.lines.lock().expect("lines").join("\n");
    assert!(printed.contains("Stopped cleanly"), "{printed}");

    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path().join("log"))).expect("open log");
    let records = read_all(&log, EVENTS_TOPIC).await.expect("read log");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &records {
        let v: serde_json::Value =
            serde_json::from_slice(&r.value).expect("stored events are JSON");
        let id = v["event_id"].as_str().expect("event_id").to_owned();
        *seen.entry(id).or_default() += 1;
    }
    let acked = acked.lock().expect("acked").clone();
    let lost: Vec<&String> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} events stored twice", twice.len());
    assert!(records.len() >= acked.len());

    // The store: exactly the reference documents of the final log.
    let mut partitions =
        vec![Vec::new(); log.partition_count(EVENTS_TOPIC).await.expect("partitions") as usize];
    for r in &records {
        let e = Event::decode(&r.value).expect("events decode");
        if !e.kind().is_decision() {
            partitions[r.partition as usize].push(e);
        }
    }
    let orders = support::assert_store_is_the_reference(
        &dir.path().join("store"),
        &partitions,
        &emporium_pipeline::PipelineConfig::default(),
    )
    .await;
    assert!(orders > 50, "the traffic placed orders: {orders}");
}
