//! `emporium rebuild-log`: a log rebuilt from the lakehouse holds the old log's events (producer
//! events, decisions and heartbeats), each in its old partition and order, and `emporium run` on
//! it, without a checkpoint and on an empty store, writes exactly the reference documents and
//! appends no decision again.

mod support;

use std::process::Command;
use std::time::Duration;

use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{EVENTS_TOPIC, EventLog, read_all};
use emporium_schemas::{Event, EventKind};

/// The decoded events of each partition, in log order (as JSON, to compare).
async fn partitions(dir: &std::path::Path) -> Vec<Vec<Event>> {
    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.join("log"))).expect("open log");
    let n = log.partition_count(EVENTS_TOPIC).await.expect("partitions") as usize;
    let mut out = vec![Vec::new(); n];
    for r in read_all(&log, EVENTS_TOPIC).await.expect("read") {
        out[r.partition as usize].push(Event::decode(&r.value).expect("an event"));
    }
    out
}

fn stop(mut run: support::Run) {
    let status = Command::new("kill")
        .args(["-TERM", &run.child.id().to_string()])
        .status()
        .expect("SIGTERM");
    assert!(status.success());
    assert!(run.child.wait().expect("exit").success(), "clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_rebuilt_from_the_lakehouse_decides_as_the_old_one() {
    let old = tempfile::tempdir().expect("tempdir");
    let run = support::start_run(
        old.path(),
        &["--lakehouse-flush-secs", "1", "--heartbeat-grace-ms", "500"],
        "Press Ctrl-C",
    );
    let client = reqwest::Client::new();
    let token = support::producer_token(old.path());
    let mut generator = support::shop(50);
    for _ in 0..4 {
        let report =
            support::post_generated(&client, &run.base, &token, &mut generator, 2_000).await;
        assert_eq!(report["accepted"], 2_000, "{report}");
    }
    support::wait_until_caught_up(&client, &run.base, 8_000).await;
    // Heartbeats to the quiet partitions decide what waited on them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop(run);
    let before = partitions(old.path()).await;
    let kinds =
        |p: &[Vec<Event>], kind: EventKind| p.iter().flatten().filter(|e| e.kind() == kind).count();
    assert!(kinds(&before, EventKind::InventoryReserved) > 20);

    // A new log from the lakehouse alone.
    let new = tempfile::tempdir().expect("tempdir");
    let rebuild = || {
        Command::new(env!("CARGO_BIN_EXE_emporium"))
            .args(["rebuild-log", "--lakehouse-dir"])
            .arg(old.path().join("lakehouse"))
            .arg("--data-dir")
            .arg(new.path())
            .output()
            .expect("emporium rebuild-log")
    };
    let out = rebuild();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total: usize = before.iter().map(Vec::len).sum();
    assert!(
        printed.starts_with(&format!("Rebuilt {total} events into")),
        "{printed}"
    );
    let after = partitions(new.path()).await;
    assert_eq!(after.len(), before.len());
    for (p, (a, b)) in after.iter().zip(&before).enumerate() {
        let json = |events: &[Event]| events.iter().map(Event::to_json).collect::<Vec<_>>();
        assert_eq!(json(a), json(b), "partition {p} differs from the old log's");
    }
    // Into a log that holds events already: refused.
    let again = rebuild();
    assert!(!again.status.success());
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(why.contains("already holds"), "{why}");

    // The dataflow on the rebuilt log, from the start, on an empty store.
    // No heartbeats: nothing new to decide, so every decision must come from the log.
    let run = support::start_run(
        new.path(),
        &["--no-lakehouse", "--idle-heartbeat-ms", "0"],
        "Press Ctrl-C",
    );
    support::wait_until_caught_up(&client, &run.base, total as u64).await;
    stop(run);
    let replayed = partitions(new.path()).await;
    let decisions = |p: &[Vec<Event>]| {
        p.iter()
            .flatten()
            .filter(|e| e.kind().is_decision())
            .count()
    };
    assert_eq!(
        decisions(&replayed),
        decisions(&before),
        "no decision appended again"
    );
    let producer_events: Vec<Vec<Event>> = replayed
        .into_iter()
        .map(|p| p.into_iter().filter(|e| !e.kind().is_decision()).collect())
        .collect();
    let orders = support::assert_store_is_the_reference(
        &new.path().join("store"),
        &producer_events,
        &emporium_pipeline::PipelineConfig::default(),
    )
    .await;
    assert!(orders > 20);
}
