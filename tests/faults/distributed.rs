//! `kill -9` of each process of a distributed deployment under load: an ingest node (`emporium
//! run --no-dataflow --no-lakehouse`), two `emporium pipeline` processes splitting the partitions
//! (timely's cluster mode), and `emporium lakehouse`, all on librdkafka's mock cluster. A small
//! orchestrator (as systemd or Kubernetes would) starts again any process that exits; the test
//! kills one process of each kind at random points while four producers send.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emporium_log::kafka::{KafkaConfig, KafkaLog};
use emporium_log::{EVENTS_TOPIC, EventLog, read_all};
use emporium_pipeline::PipelineConfig;
use emporium_schemas::Event;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::harness::{self, Backoff, Process, Producers, Profile, Traffic};
use super::support;

/// One process the orchestrator keeps running.
struct Slot {
    name: &'static str,
    args: Vec<String>,
    dir: PathBuf,
    ready: Option<&'static str>,
    process: Option<Process>,
    starts: usize,
}

impl Slot {
    fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.process = Some(Process::start(&args, &self.dir, &[], self.ready));
        self.starts += 1;
    }

    fn exited(&mut self) -> bool {
        self.process
            .as_mut()
            .is_none_or(|p| !matches!(p.child.try_wait(), Ok(None)))
    }
}

/// Starts every slot, then starts again (after half a second) any whose process exited, until
/// `stop`.
fn orchestrate(slots: Arc<Mutex<Vec<Slot>>>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let exited: Vec<usize> = {
                let mut slots = slots.lock().expect("slots");
                (0..slots.len()).filter(|&i| slots[i].exited()).collect()
            };
            if !exited.is_empty() {
                std::thread::sleep(Duration::from_millis(500));
                let mut slots = slots.lock().expect("slots");
                for i in exited {
                    println!("orchestrator: starting {} again", slots[i].name);
                    slots[i].start();
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn kill_9(slots: &Mutex<Vec<Slot>>, name: &str) {
    let mut slots = slots.lock().expect("slots");
    let slot = slots
        .iter_mut()
        .find(|s| s.name == name)
        .expect("a process of that name");
    if let Some(p) = slot.process.as_mut() {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
}

/// A metric of the process whose ops listener is `port` (0 when absent or unreachable).
async fn metric(port: u16, name: &str) -> u64 {
    let client = reqwest::Client::new();
    support::gauge(&client, &format!("http://127.0.0.1:{port}"), name)
        .await
        .unwrap_or(0)
}

/// Records in the log, and decisions among them.
async fn counts(log: &dyn EventLog) -> (u64, usize) {
    let records = read_all(log, EVENTS_TOPIC).await.expect("read");
    let decisions = records
        .iter()
        .filter_map(|r| Event::decode(&r.value).ok())
        .filter(|e| e.kind().is_decision())
        .count();
    (records.len() as u64, decisions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_each_distributed_process_changes_no_decision() {
    let profile = Profile::get();
    let seed = harness::seed("kill -9 of the distributed processes", 17);
    let (_cluster, brokers) = harness::mock_broker();
    let data = harness::data_dir();
    let ingest_dir = harness::data_dir();
    let token = support::producer_token(ingest_dir.path());
    let port = harness::free_port();
    let (ops0, ops1, ops_lakehouse) = (
        harness::free_port(),
        harness::free_port(),
        harness::free_port(),
    );
    let addresses = format!(
        "127.0.0.1:{},127.0.0.1:{}",
        harness::free_port(),
        harness::free_port()
    );
    let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let pipeline = |process: &str, ops: u16| {
        owned(&[
            "pipeline",
            "--kafka",
            &brokers,
            "--process",
            process,
            "--addresses",
            &addresses,
            "--workers",
            "1",
            "--status-every",
            "0",
            "--checkpoint-interval",
            "1",
            "--ops-listen",
            &format!("127.0.0.1:{ops}"),
        ])
    };
    let listen = format!("127.0.0.1:{port}");
    let slot = |name, args, dir: &Path, ready| Slot {
        name,
        args,
        dir: dir.to_owned(),
        ready,
        process: None,
        starts: 0,
    };
    let slots = Arc::new(Mutex::new(vec![
        slot(
            "ingest",
            owned(&[
                "run",
                "--kafka",
                &brokers,
                "--no-dataflow",
                "--no-lakehouse",
                "--listen",
                &listen,
                "--status-every",
                "0",
            ]),
            ingest_dir.path(),
            Some("listening on"),
        ),
        slot("pipeline 0", pipeline("0", ops0), data.path(), None),
        slot("pipeline 1", pipeline("1", ops1), data.path(), None),
        slot(
            "lakehouse",
            owned(&[
                "lakehouse",
                "--kafka",
                &brokers,
                "--status-every",
                "0",
                "--lakehouse-flush-secs",
                "1",
                "--ops-listen",
                &format!("127.0.0.1:{ops_lakehouse}"),
            ]),
            data.path(),
            None,
        ),
    ]));
    let stop = Arc::new(AtomicBool::new(false));
    let orchestrator = orchestrate(Arc::clone(&slots), Arc::clone(&stop));
    // The ingest node answers before the producers start.
    let deadline = Instant::now() + Duration::from_secs(60);
    while slots.lock().expect("slots")[0].starts == 0 {
        assert!(Instant::now() < deadline, "the ingest node did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let traffic = Traffic {
        events_per_day: 800.0 * 86_400.0,
        ..Traffic::new(seed, profile)
    };
    let producers = Producers::start(
        &format!("http://{listen}"),
        &token,
        traffic.batches(),
        4,
        Backoff::SLOW,
        seed,
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut victims = vec!["pipeline 1", "pipeline 0", "lakehouse", "ingest"];
    if profile.long {
        victims.extend_from_slice(&["pipeline 0", "ingest", "pipeline 1", "lakehouse"]);
    }
    let per_kill = producers.batches() / (victims.len() + 1);
    for (k, victim) in victims.iter().enumerate() {
        producers
            .wait_for(per_kill * k + rng.random_range(per_kill / 2..per_kill))
            .await;
        println!(
            "kill -9 {victim} after {} batches",
            producers.acked_batches()
        );
        kill_9(&slots, victim);
    }
    let acked = producers.finish().await;

    // Caught up: the decisions stop changing and the lakehouse holds every record.
    let log = KafkaLog::connect(KafkaConfig::new(brokers.clone())).expect("connect");
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut last = (0, 0, Instant::now());
    loop {
        let (records, decisions) = counts(&log).await;
        let committed = metric(ops_lakehouse, "emporium_lakehouse_committed_position").await;
        if (records, decisions) != (last.0, last.1) {
            last = (records, decisions, Instant::now());
        } else if decisions > 0 && committed >= records && last.2.elapsed() > Duration::from_secs(3)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not caught up: {records} records, {decisions} decisions, {committed} in the \
             lakehouse; pipeline 0 read {}",
            metric(ops0, "emporium_dataflow_records_read_total").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::SeqCst);
    orchestrator.join().expect("orchestrator");
    let mut slots = Arc::try_unwrap(slots)
        .ok()
        .expect("the orchestrator is done")
        .into_inner()
        .expect("slots");
    let starts: Vec<(&str, usize)> = slots.iter().map(|s| (s.name, s.starts)).collect();
    // Every process at once (the pipelines need each other to stop cleanly).
    for s in &slots {
        if let Some(p) = &s.process {
            let _ = Command::new("kill")
                .args(["-TERM", &p.child.id().to_string()])
                .status();
        }
    }
    for s in &mut slots {
        if let Some(mut p) = s.process.take() {
            let exit = p.child.wait().expect("exit");
            assert!(exit.success(), "{} did not stop cleanly: {exit}", s.name);
        }
    }

    let outcome = harness::check(data.path(), &log, &acked, &PipelineConfig::default()).await;
    println!("{outcome:?}; starts {starts:?}");
    assert!(
        starts.iter().all(|(_, n)| *n >= 2),
        "every process was killed and started again: {starts:?}"
    );
}
