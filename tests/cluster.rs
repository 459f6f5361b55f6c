//! The pipeline as two processes (timely's cluster mode) splitting a Kafka log, on one machine:
//! two real `emporium pipeline` processes read librdkafka's mock cluster (a real Kafka-protocol
//! broker, in this test's process). Their decisions must be exactly the batch reference's, and the
//! store that process 0 writes must hold exactly the reference documents — the same as one
//! process with any number of threads gives (`dataflows/tests/pipeline.rs`).
//!
//! Partition 3, read by process 1, goes quiet after its first events: only heartbeats that
//! process 0 appends to it move the watermark (they never did: process 0 took process 1's
//! partitions for unread). Both processes are then stopped and restarted from process 0's
//! checkpoint: process 1 must resume where the checkpoint left its partitions, not at offset 0.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emporium_dataflows::decider::decide_all;
use emporium_dataflows::reference::reference_documents;
use emporium_generator::{Generator, GeneratorConfig};
use emporium_log::kafka::{KafkaConfig, KafkaLog};
use emporium_log::{EVENTS_TOPIC, EventLog, Record, partition_for, read_all};
use emporium_pipeline::{PipelineConfig, decision_events, reader_of};
use emporium_schemas::Event;
use emporium_serving::store::Store;
use emporium_serving::store::embedded::EmbeddedStore;
use emporium_serving::views::Upsert;
use rdkafka::mocking::MockCluster;

const PARTITIONS: i32 = 4;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start(
    process: usize,
    addresses: &str,
    brokers: &str,
    ops: u16,
    data_dir: &std::path::Path,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args([
            "pipeline",
            "--kafka",
            brokers,
            "--process",
            &process.to_string(),
            "--addresses",
            addresses,
            "--workers",
            "1",
            "--status-every",
            "0",
            "--ops-listen",
            &format!("127.0.0.1:{ops}"),
            "--heartbeat-grace-ms",
            "1000",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start emporium pipeline")
}

/// Decision events in the log, and the non-decision events per partition.
async fn split(log: &dyn EventLog) -> (Vec<Vec<Event>>, Vec<Event>) {
    let mut partitions = vec![Vec::new(); PARTITIONS as usize];
    let mut decisions = Vec::new();
    for r in read_all(log, EVENTS_TOPIC).await.expect("read") {
        let e = Event::decode(&r.value).expect("events decode");
        if e.kind().is_decision() {
            decisions.push(e);
        } else {
            partitions[r.partition as usize].push(e);
        }
    }
    (partitions, decisions)
}

/// `count` generated events, without those of partition 3 after its first `quiet_after`.
fn events(generator: &mut Generator, count: usize, quiet_after: &mut usize) -> Vec<Record> {
    (0..count)
        .map(|_| generator.next_event())
        .filter(|e| {
            if partition_for(e.partition_key().as_bytes(), PARTITIONS as u32) != QUIET {
                return true;
            }
            *quiet_after = quiet_after.saturating_sub(1);
            *quiet_after > 0
        })
        .map(|e| Record::new(e.partition_key().as_bytes().to_vec(), e.to_json()))
        .collect()
}

/// Waits until the decisions in the log stop changing; returns how many there are.
async fn steady_decisions(log: &dyn EventLog, at_least: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (usize::MAX, Instant::now());
    loop {
        let (_, decisions) = split(log).await;
        if decisions.len() != last.0 {
            last = (decisions.len(), Instant::now());
        } else if decisions.len() >= at_least && last.1.elapsed() > Duration::from_secs(3) {
            return decisions.len();
        }
        assert!(
            Instant::now() < deadline,
            "no steady decisions (at least {at_least}): {}",
            last.0
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Stops every process together (one alone cannot make progress without the other).
/// The pipeline processes of a run: killed if the test fails before it stops them, so a failed
/// run leaves none behind to slow the next.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

fn stop_all(Processes(processes): &mut Processes) {
    for p in processes.iter() {
        let status = Command::new("kill")
            .args(["-TERM", &p.id().to_string()])
            .status()
            .expect("SIGTERM");
        assert!(status.success());
    }
    for mut p in processes.drain(..) {
        let exit = p.wait().expect("exit");
        assert!(exit.success(), "a pipeline process failed: {exit}");
    }
}

/// A counter of a process's /metrics.
async fn counter(port: u16, name: &str) -> u64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The partition process 1 reads that goes quiet.
const QUIET: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_decide_exactly_as_the_reference() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic(EVENTS_TOPIC, PARTITIONS, 1)
        .expect("topic");
    let brokers = cluster.bootstrap_servers();
    let log: Arc<dyn EventLog> =
        Arc::new(KafkaLog::connect(KafkaConfig::new(brokers.clone())).expect("connect"));
    let mut generator = Generator::new(GeneratorConfig {
        products: 150,
        users: 2_000,
        events_per_day: 20_000.0,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    assert_eq!(
        reader_of(QUIET, 2),
        1,
        "process 1 reads the quiet partition"
    );
    let mut quiet_after = 6;
    for _ in 0..10 {
        let batch = events(&mut generator, 1_000, &mut quiet_after);
        log.append(EVENTS_TOPIC, batch).await.expect("append");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let addresses = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let ops = [free_port(), free_port()];
    let mut processes = Processes(vec![
        start(0, &addresses, &brokers, ops[0], dir.path()),
        start(1, &addresses, &brokers, ops[1], dir.path()),
    ]);
    // Most decided (without heartbeats to it, the quiet partition holds every decision after
    // its fifth event; unpaid reservations of the last TTL wait for later events to expire).
    let (partitions, _) = split(log.as_ref()).await;
    let config = PipelineConfig::default();
    let (reference, _) = decide_all(
        &partitions,
        config.allowed_lateness,
        config.inventory.clone(),
    );
    steady_decisions(log.as_ref(), reference.len() / 2).await;
    stop_all(&mut processes);
    let ends = log.end_offsets(EVENTS_TOPIC).await.expect("ends");
    let process_1_had = ends[1] + ends[QUIET as usize];

    // More traffic, then both again: process 1 resumes from the checkpoint's positions.
    log.append(
        EVENTS_TOPIC,
        events(&mut generator, 1_000, &mut quiet_after),
    )
    .await
    .expect("append");
    let mut processes = Processes(vec![
        start(0, &addresses, &brokers, ops[0], dir.path()),
        start(1, &addresses, &brokers, ops[1], dir.path()),
    ]);
    let (partitions, _) = split(log.as_ref()).await;
    let (reference, _) = decide_all(
        &partitions,
        config.allowed_lateness,
        config.inventory.clone(),
    );
    steady_decisions(log.as_ref(), reference.len() / 2).await;
    let read_again = counter(ops[1], "emporium_dataflow_records_read_total").await;
    stop_all(&mut processes);
    assert!(
        read_again < process_1_had / 2,
        "process 1 read {read_again} records after the restart, of {process_1_had} it had read \
         before: it must resume from the checkpoint, not from offset 0"
    );

    let (partitions, decisions) = split(log.as_ref()).await;
    let config = PipelineConfig::default();
    let (reference, _) = decide_all(
        &partitions,
        config.allowed_lateness,
        config.inventory.clone(),
    );
    let reference: Vec<Vec<u8>> = decision_events(reference).map(|e| e.to_json()).collect();
    let n = decisions.len();
    let got: HashSet<Vec<u8>> = decisions.iter().map(Event::to_json).collect();
    assert_eq!(got.len(), n, "no decision appended twice");
    let want: HashSet<Vec<u8>> = reference[..n].iter().cloned().collect();
    assert_eq!(
        got, want,
        "the two processes decided the reference's first {n}"
    );

    let store = EmbeddedStore::open(&dir.path().join("store")).expect("store");
    let documents = reference_documents(
        &partitions,
        config.allowed_lateness,
        config.inventory,
        &config.views,
    )
    .into_iter()
    .map(emporium_pipeline::documents::upsert)
    .collect::<Vec<_>>();
    for u in &documents {
        let (seq, found) = match u {
            Upsert::Product { seq, view } => (seq, store.product(&view.product_id).await),
            Upsert::Inventory { seq, view } => (seq, store.inventory(&view.sku).await),
            Upsert::Order { seq, view } => (
                seq,
                store.order(&view.order_id).await.map(|d| {
                    d.map(|d| emporium_serving::store::Document {
                        seq: d.seq,
                        json: d.json,
                    })
                }),
            ),
            Upsert::View { seq, view, key, .. } => (seq, store.view(view, key).await),
        };
        let doc = found.expect("read").expect("document in the store");
        assert_eq!(doc.seq, *seq);
    }
    let (p, i, o) = store.counts().expect("counts");
    assert_eq!((p + i + o) as usize, documents.len());
}
