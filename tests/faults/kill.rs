//! `kill -9` of `emporium run` (issue 23 items 7 and 10).
//!
//! Under load: the process is killed at random points while four producers send; they back off
//! for up to 4 s (exponential, jittered) and resend the same batches to the restarted process.
//! Heartbeats must not move a partition's clock past the events still coming (the restart's
//! heartbeat grace, ADR 0005), so the decisions are the reference's over the final log and no
//! heartbeat made an event late.
//!
//! After traffic stopped: a restart with no traffic still sends heartbeats, so reservations
//! whose deadline came after the last event expire on time.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{EVENTS_TOPIC, read_all};
use emporium_pipeline::PipelineConfig;
use emporium_schemas::{Event, EventKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::harness::{self, Backoff, Profile, Shop, Traffic};
use super::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_with_producers_backing_off_changes_no_decision() {
    let profile = Profile::get();
    let seed = harness::seed("kill -9 of emporium run under load", 23);
    let shop = Shop::new();
    let mut run = shop.run(&[], &[]);
    // A steady stream of ~800 events/s whose event time runs at about the wall clock's pace (as
    // a real shop's does), so the process heartbeats its idle partitions between batches.
    let traffic = Traffic {
        events_per_day: 800.0 * 86_400.0,
        ..Traffic::new(seed, profile)
    };
    let producers = shop.producers(traffic.batches(), 4, Backoff::SLOW, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let per_kill = producers.batches() / (profile.kills + 1);
    for k in 0..profile.kills {
        producers
            .wait_for(per_kill * k + rng.random_range(per_kill / 3..per_kill))
            .await;
        let killed_at = producers.acked_batches();
        run.kill_9();
        // Down long enough that every producer (pausing 1 s between batches) meets it.
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_500..4_000))).await;
        run = shop.run(&[], &[]);
        println!("killed after {killed_at} batches; restarted");
    }
    let failed = producers.failed_attempts();
    let acked = producers.finish().await;
    shop.stop_caught_up(run, acked.len()).await;

    let outcome = harness::check_embedded(shop.dir.path(), &acked).await;
    println!("{outcome:?}; {failed} failed attempts retried");
    assert!(failed > 0, "the producers met the kill");
    assert!(
        outcome.heartbeats > 0,
        "heartbeats were appended: {outcome:?}"
    );
    assert!(
        outcome.orders > 50,
        "the traffic placed orders: {outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_traffic_stopped_still_expires_reservations_on_time() {
    let profile = Profile::get();
    let seed = harness::seed("a restart with no traffic", 7);
    let shop = Shop::new();
    let dir = shop.dir.path();
    // Reservations wait 5 s of event time for their payment; event time runs at about the wall
    // clock's pace (~800 events/s), so most reservations expire while traffic flows and the last
    // ones only by the heartbeats after it.
    let args = [
        "--reservation-ttl-secs",
        "5",
        "--heartbeat-grace-ms",
        "1000",
    ];
    let run = shop.run(&args, &[]);
    let traffic = Traffic {
        batches: 30,
        events_per_day: 800.0 * 86_400.0,
        ..Traffic::new(seed, profile)
    };
    let producers = shop.producers(
        traffic.batches(),
        2,
        Backoff {
            pause: Duration::from_millis(500),
            ..Backoff::QUICK
        },
        seed,
    );
    let acked = producers.finish().await;
    let client = reqwest::Client::new();
    support::wait_until_caught_up(&client, &shop.base, acked.len() as u64).await;
    run.kill_9();

    // No traffic after the restart: only its heartbeats move time on.
    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.join("log"))).expect("log");
    let last_event = read_all(&log, EVENTS_TOPIC)
        .await
        .expect("read")
        .iter()
        .filter_map(|r| Event::decode(&r.value).ok())
        .filter(|e| !e.kind().is_system())
        .map(|e| e.occurred_at)
        .max()
        .expect("events");
    drop(log);
    let run = shop.run(&args, &[]);
    // Wait (up to 90 s) until the lakehouse shows every unpaid reservation released.
    let deadline = Instant::now() + Duration::from_secs(90);
    while open_in_lakehouse(dir) != Some(0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    run.stop();
    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.join("log"))).expect("log");
    let open = open_reservations(&log).await;
    assert!(
        open.is_empty(),
        "{} unpaid reservations never expired after the restart, e.g. {:?}",
        open.len(),
        open.iter().next()
    );
    let records = read_all(&log, EVENTS_TOPIC).await.expect("read");
    let expired_after_traffic = records
        .iter()
        .filter_map(|r| Event::decode(&r.value).ok())
        .filter(|e| e.kind() == EventKind::ReservationReleased && e.occurred_at > last_event)
        .count();
    assert!(
        expired_after_traffic > 0,
        "some reservations were due after the last event (the test needs them)"
    );
    let config = PipelineConfig {
        inventory: emporium_dataflows::inventory::InventoryConfig {
            reservation_ttl: chrono::Duration::seconds(5),
        },
        ..PipelineConfig::default()
    };
    let outcome = harness::check(dir, &log, &acked, &config).await;
    println!("{outcome:?}; {expired_after_traffic} released after the last event");
}

/// How many orders the lakehouse shows reserved and neither paid nor released (`None`: the
/// query failed, e.g. before the first commit).
fn open_in_lakehouse(data: &std::path::Path) -> Option<u64> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args([
            "sql",
            "--format",
            "json",
            "SELECT count(*) AS n FROM inventory_reserved r \
             WHERE r.order_id NOT IN (SELECT order_id FROM payment_authorized) \
             AND r.order_id NOT IN (SELECT order_id FROM reservation_released)",
            "--data-dir",
        ])
        .arg(data)
        .output()
        .ok()?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    rows[0]["n"].as_u64()
}

/// Orders reserved and neither paid nor released, per the log.
async fn open_reservations(log: &EmbeddedLog) -> HashSet<String> {
    let mut state: HashMap<String, bool> = HashMap::new();
    for r in read_all(log, EVENTS_TOPIC).await.expect("read") {
        let Ok(e) = Event::decode(&r.value) else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_slice(&e.to_json()).expect("JSON");
        let Some(order) = json["payload"]["order_id"].as_str() else {
            continue;
        };
        match e.kind() {
            EventKind::InventoryReserved => {
                state.entry(order.to_owned()).or_insert(true);
            }
            EventKind::PaymentAuthorized | EventKind::ReservationReleased => {
                state.insert(order.to_owned(), false);
            }
            _ => {}
        }
    }
    state
        .into_iter()
        .filter(|(_, open)| *open)
        .map(|(order, _)| order)
        .collect()
}
