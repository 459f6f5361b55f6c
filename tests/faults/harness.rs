//! What every fault case shares: the profile, generated traffic, producers that retry the way a
//! careful client does (exponential back-off with jitter, the same batch again), the `emporium`
//! process, and the end-of-case checks.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emporium_dataflows::decider::decide_all;
use emporium_generator::{Generator, GeneratorConfig};
use emporium_log::{EVENTS_TOPIC, EventLog, read_all};
use emporium_pipeline::{PipelineConfig, decision_events};
use emporium_schemas::{Event, EventKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How much traffic and how many faults a case brings.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub long: bool,
    /// Batches the producers send.
    pub batches: usize,
    /// Events per batch.
    pub batch_size: usize,
    /// How often a process is killed.
    pub kills: usize,
}

impl Profile {
    /// The short profile, or the long one with `EMPORIUM_FAULTS=long`.
    pub fn get() -> Self {
        if std::env::var("EMPORIUM_FAULTS").is_ok_and(|v| v == "long") {
            Self {
                long: true,
                batches: 600,
                batch_size: 200,
                kills: 4,
            }
        } else {
            Self {
                long: false,
                batches: 100,
                batch_size: 200,
                kills: 1,
            }
        }
    }
}

/// The case's seed: `EMPORIUM_FAULT_SEED`, else `fixed` in the short profile (its inputs are the
/// same on every run; its timing is not), else a new one. Printed, so a failure can be replayed.
pub fn seed(case: &str, fixed: u64) -> u64 {
    let seed = std::env::var("EMPORIUM_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            if Profile::get().long {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(fixed, |d| d.as_nanos() as u64)
            } else {
                fixed
            }
        });
    println!("{case}: seed {seed} (EMPORIUM_FAULT_SEED={seed} replays its inputs)");
    seed
}

/// A data directory for a case: removed afterwards, unless `EMPORIUM_FAULT_KEEP` is set (then
/// its path is printed, for the processes' `stderr-*.log` and files).
pub fn data_dir() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("EMPORIUM_FAULT_KEEP").is_some() {
        dir.disable_cleanup(true);
        println!("data directory kept: {}", dir.path().display());
    }
    dir
}

/// A free loopback port (a restarted process listens where its producers keep sending).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The start most cases share: a data directory, a port its `emporium run` keeps across
/// restarts, and a producer token signed with its keys.
pub struct Shop {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub token: String,
}

impl Shop {
    pub fn new() -> Self {
        let dir = data_dir();
        let port = free_port();
        let token = super::support::producer_token(dir.path());
        Self {
            dir,
            port,
            base: format!("http://127.0.0.1:{port}"),
            token,
        }
    }

    /// `emporium run` on this shop ([`Process::run`]).
    pub fn run(&self, args: &[&str], env: &[(&str, String)]) -> Process {
        Process::run(self.dir.path(), self.port, args, env)
    }

    /// `emporium run` on this shop with its stderr written to `stderr_path`.
    pub fn run_logging_to(&self, args: &[&str], stderr_path: &Path) -> Process {
        let all = Process::run_args(self.port, args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        Process::start_logging_to(
            &all,
            self.dir.path(),
            &[],
            Some("listening on"),
            stderr_path,
        )
    }

    /// `count` producers sending `batches` to this shop.
    pub fn producers(
        &self,
        batches: Vec<Batch>,
        count: usize,
        backoff: Backoff,
        seed: u64,
    ) -> Producers {
        Producers::start(&self.base, &self.token, batches, count, backoff, seed)
    }

    /// Waits until `run`'s dataflow has read at least `acked` records and stopped moving, then
    /// stops it cleanly.
    pub async fn stop_caught_up(&self, run: Process, acked: usize) {
        let client = reqwest::Client::new();
        super::support::wait_until_caught_up(&client, &self.base, acked as u64).await;
        run.stop();
    }
}

/// [`check`] of the embedded log and store in `dir`, decided with the default settings.
pub async fn check_embedded(dir: &Path, acked: &HashSet<String>) -> Outcome {
    let log = emporium_log::embedded::EmbeddedLog::open(
        emporium_log::embedded::EmbeddedConfig::in_dir(dir.join("log")),
    )
    .expect("log");
    check(dir, &log, acked, &PipelineConfig::default()).await
}

/// librdkafka's mock cluster (one broker) with the topics as `emporium run` makes them (the
/// mock answers CreateTopics from another process with a timeout), and its address.
pub fn mock_broker() -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
) {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic(emporium_log::EVENTS_TOPIC, 4, 1)
        .expect("events topic");
    cluster
        .create_topic(emporium_log::DEAD_LETTER_TOPIC, 1, 1)
        .expect("dead-letter topic");
    let brokers = cluster.bootstrap_servers();
    (cluster, brokers)
}

/// One request body of NDJSON events and their ids.
#[derive(Debug, Clone)]
pub struct Batch {
    pub ids: Vec<String>,
    pub body: String,
    /// Sent by two requests at once (a producer's retry racing its first attempt).
    pub twice_at_once: bool,
}

/// What traffic a case sends.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub seed: u64,
    pub batches: usize,
    pub batch_size: usize,
    /// Event time per day of events (the generator's `events_per_day`). The default,
    /// [`PACED_EVENTS_PER_S`] a second, makes event time run at the wall clock's pace for
    /// producers paced with [`PACED`], as in a real shop: heartbeats, which follow the wall
    /// clock, then meet the traffic they are meant for.
    pub events_per_day: f64,
    /// Share of events whose time is set back this far (a device that was offline for hours
    /// and sends what happened then).
    pub skewed: Option<(f64, chrono::Duration)>,
    /// Resend earlier events inside later batches, send some batches again whole, and some
    /// twice at once.
    pub duplicates: bool,
}

/// Events a second that four producers send in batches of 200, pausing [`PACED`] after each.
pub const PACED_EVENTS_PER_S: f64 = 3_200.0;

/// The pause after each batch that makes four producers of 200-event batches send
/// [`PACED_EVENTS_PER_S`].
pub const PACED: Duration = Duration::from_millis(250);

impl Traffic {
    pub fn new(seed: u64, profile: Profile) -> Self {
        Self {
            seed,
            batches: profile.batches,
            batch_size: profile.batch_size,
            events_per_day: PACED_EVENTS_PER_S * 86_400.0,
            skewed: None,
            duplicates: false,
        }
    }

    /// The batches, in the order the producers take them.
    pub fn batches(&self) -> Vec<Batch> {
        let mut generator = Generator::new(GeneratorConfig {
            seed: self.seed,
            products: 100,
            users: 2_000,
            events_per_day: self.events_per_day,
            ..GeneratorConfig::default()
        })
        .expect("generator");
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x5eed);
        let lines: Vec<(String, String)> = (0..self.batches * self.batch_size)
            .map(|_| {
                let mut event = generator.next_event();
                if let Some((share, back)) = self.skewed
                    && rng.random_bool(share)
                {
                    event.occurred_at -= back;
                }
                let json = String::from_utf8(event.to_json()).expect("utf-8");
                (event.event_id.to_string(), json)
            })
            .collect();
        let mut batches: Vec<Batch> = Vec::new();
        for (k, chunk) in lines.chunks(self.batch_size).enumerate() {
            let mut batch: Vec<&(String, String)> = chunk.iter().collect();
            if self.duplicates && k >= 2 {
                // Resent events, from the batches before the last, mixed into this one.
                let earlier = &lines[..(k - 1) * self.batch_size];
                let mut resent: HashSet<usize> = HashSet::new();
                for _ in 0..self.batch_size / 10 {
                    resent.insert(rng.random_range(0..earlier.len()));
                }
                batch.extend(resent.into_iter().map(|i| &earlier[i]));
            }
            let twice_at_once = self.duplicates && rng.random_bool(0.1);
            batches.push(Batch {
                ids: batch.iter().map(|(id, _)| id.clone()).collect(),
                body: batch.iter().map(|(_, json)| format!("{json}\n")).collect(),
                twice_at_once,
            });
            if self.duplicates && k >= 3 && rng.random_bool(0.2) {
                // A whole batch again, as a producer that never saw its acknowledgement would.
                let again = batches[k - 2].clone();
                batches.push(again);
            }
        }
        batches
    }
}

/// How producers wait between attempts: `first`, doubling up to `cap`, each wait a random
/// 50–100% of that ("equal jitter"); and `pause` after each acknowledged batch (a steady
/// stream instead of a burst).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
    pub pause: Duration,
}

impl Backoff {
    /// Retries within a couple of seconds, at the paced rate.
    pub const QUICK: Self = Self {
        first: Duration::from_millis(200),
        cap: Duration::from_secs(2),
        pause: PACED,
    };
    /// Backs off for up to 4 s (longer than a restart takes), a batch a second per producer.
    pub const SLOW: Self = Self {
        first: Duration::from_millis(500),
        cap: Duration::from_secs(4),
        pause: Duration::from_millis(1_000),
    };
}

struct Shared {
    base: String,
    token: String,
    batches: Vec<Batch>,
    backoff: Backoff,
    next: AtomicUsize,
    acked: Mutex<HashSet<String>>,
    acked_batches: AtomicUsize,
    failed_attempts: AtomicU64,
    client: reqwest::Client,
}

/// Producers sending a case's batches until each is acknowledged.
pub struct Producers {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Producers {
    pub fn start(
        base: &str,
        token: &str,
        batches: Vec<Batch>,
        count: usize,
        backoff: Backoff,
        seed: u64,
    ) -> Self {
        let shared = Arc::new(Shared {
            base: base.to_owned(),
            token: token.to_owned(),
            batches,
            backoff,
            next: AtomicUsize::new(0),
            acked: Mutex::default(),
            acked_batches: AtomicUsize::new(0),
            failed_attempts: AtomicU64::new(0),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        });
        let tasks = (0..count)
            .map(|p| {
                let shared = Arc::clone(&shared);
                let seed = seed.wrapping_add(p as u64);
                tokio::spawn(async move {
                    let rng = Mutex::new(ChaCha8Rng::seed_from_u64(seed));
                    loop {
                        let i = shared.next.fetch_add(1, Ordering::SeqCst);
                        let Some(batch) = shared.batches.get(i) else {
                            break;
                        };
                        if batch.twice_at_once {
                            tokio::join!(
                                deliver(&shared, batch, &rng),
                                deliver(&shared, batch, &rng)
                            );
                        } else {
                            deliver(&shared, batch, &rng).await;
                        }
                        shared.acked_batches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(shared.backoff.pause).await;
                    }
                })
            })
            .collect();
        Self { shared, tasks }
    }

    pub fn acked_batches(&self) -> usize {
        self.shared.acked_batches.load(Ordering::SeqCst)
    }

    pub fn batches(&self) -> usize {
        self.shared.batches.len()
    }

    /// Attempts that failed (connection refused, 5xx) and were retried.
    pub fn failed_attempts(&self) -> u64 {
        self.shared.failed_attempts.load(Ordering::SeqCst)
    }

    /// Waits until `batches` batches were acknowledged (or all were).
    pub async fn wait_for(&self, batches: usize) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.acked_batches() < batches.min(self.batches()) {
            assert!(
                Instant::now() < deadline,
                "producers stuck at {} of {batches} batches",
                self.acked_batches()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for every batch to be acknowledged; the acknowledged ids.
    pub async fn finish(self) -> HashSet<String> {
        for task in self.tasks {
            task.await.expect("a producer failed");
        }
        let acked = self.shared.acked.lock().expect("acked");
        acked.clone()
    }
}

/// Sends `batch` until it is acknowledged whole (accepted or already there), backing off after
/// each failure.
async fn deliver(shared: &Shared, batch: &Batch, rng: &Mutex<ChaCha8Rng>) {
    let started = Instant::now();
    let mut wait = shared.backoff.first;
    loop {
        let answer = shared
            .client
            .post(format!("{}/v1/events", shared.base))
            .bearer_auth(&shared.token)
            .header("content-type", "application/x-ndjson")
            .body(batch.body.clone())
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => {
                let report: serde_json::Value = r.json().await.expect("a report");
                let landed = report["accepted"].as_u64().unwrap_or(0)
                    + report["duplicates"].as_u64().unwrap_or(0);
                assert_eq!(landed as usize, batch.ids.len(), "{report}");
                shared
                    .acked
                    .lock()
                    .expect("acked")
                    .extend(batch.ids.iter().cloned());
                return;
            }
            Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {}
            Ok(r) => {
                let status = r.status();
                panic!("refused: {status} {}", r.text().await.unwrap_or_default());
            }
            Err(_) => {}
        }
        shared.failed_attempts.fetch_add(1, Ordering::SeqCst);
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "a batch was not acknowledged for 5 minutes"
        );
        let jitter = rng.lock().expect("rng").random_range(0.5..1.0);
        tokio::time::sleep(wait.mul_f64(jitter)).await;
        wait = (wait * 2).min(shared.backoff.cap);
    }
}

/// A running `emporium` process.
pub struct Process {
    pub child: Child,
    printed: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `emporium ARGS --data-dir DIR` with `env`; its stderr goes to
    /// `<dir>/stderr-<pid>.log`. Waits for a line starting with `ready` if one is given.
    pub fn start(args: &[&str], dir: &Path, env: &[(&str, String)], ready: Option<&str>) -> Self {
        let stderr_path = dir.join(format!(
            "stderr-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros())
        ));
        Self::start_logging_to(args, dir, env, ready, &stderr_path)
    }

    /// [`Process::start`], its stderr written to `stderr_path` (created or truncated).
    pub fn start_logging_to(
        args: &[&str],
        dir: &Path,
        env: &[(&str, String)],
        ready: Option<&str>,
        stderr_path: &Path,
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_emporium"));
        command.args(args).arg("--data-dir").arg(dir);
        for (k, v) in env {
            command.env(k, v);
        }
        let stderr = std::fs::File::create(stderr_path).map_or_else(|_| Stdio::null(), Stdio::from);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start emporium");
        let stdout = child.stdout.take().expect("stdout");
        let printed = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&printed);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                sink.lock().expect("printed").push(line);
            }
        });
        if let Some(ready) = ready {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) if line.trim_start().starts_with(ready) => break,
                    Ok(_) => {}
                    Err(_) => panic!(
                        "emporium {args:?} did not print {ready:?}: {:?}\nstderr: {}",
                        printed.lock().expect("printed"),
                        stderr_of(stderr_path)
                    ),
                }
            }
        }
        Self { child, printed }
    }

    /// `emporium run` listening on `port`, checkpointing every second, the lakehouse committing
    /// every second; `args` added.
    pub fn run(dir: &Path, port: u16, args: &[&str], env: &[(&str, String)]) -> Self {
        let all = Self::run_args(port, args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        Self::start(&all, dir, env, Some("listening on"))
    }

    fn run_args(port: u16, args: &[&str]) -> Vec<String> {
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec![
            "run",
            "--listen",
            &listen,
            "--status-every",
            "0",
            "--checkpoint-interval",
            "1",
            "--lakehouse-flush-secs",
            "1",
        ];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect()
    }

    /// SIGKILL, and reaped.
    pub fn kill_9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM; the process must exit 0 after saying it stopped cleanly.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("send SIGTERM");
        assert!(status.success());
        let exit = self.child.wait().expect("exit");
        assert!(exit.success(), "clean exit, got {exit}");
        std::thread::sleep(Duration::from_millis(200));
        let printed = self.printed.lock().expect("printed").join("\n");
        assert!(printed.contains("Stopped cleanly"), "{printed}");
    }
}

/// What a process wrote to its stderr file (nothing read from a device: `/dev/full` reads as
/// endless zeros).
fn stderr_of(path: &Path) -> String {
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return format!("(not a file: {})", path.display());
    }
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A case that fails leaves no process behind.
impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the checks found (printed by each case).
#[derive(Debug)]
#[allow(dead_code)] // read through Debug
pub struct Outcome {
    pub records: usize,
    pub decisions: usize,
    pub heartbeats: usize,
    pub orders: usize,
    /// Producer events later than the allowed lateness behind their partition's newest event.
    pub late: u64,
}

/// The end-of-case checks, after the processes stopped: every acknowledged event in the log
/// once; the log's decisions the reference's; heartbeats that made nothing late; the store the
/// reference's; the lakehouse every record of the log once.
pub async fn check(
    data: &Path,
    log: &dyn EventLog,
    acked: &HashSet<String>,
    config: &PipelineConfig,
) -> Outcome {
    let records = read_all(log, EVENTS_TOPIC).await.expect("read the log");
    let partition_count = log.partition_count(EVENTS_TOPIC).await.expect("partitions") as usize;

    // Every acknowledged event once; nothing twice.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut partitions = vec![Vec::new(); partition_count];
    let mut decisions = Vec::new();
    let mut logged: HashSet<(u32, u64, String)> = HashSet::new();
    for r in &records {
        let e = Event::decode(&r.value).expect("the log holds events");
        *seen.entry(e.event_id.to_string()).or_default() += 1;
        logged.insert((r.partition, r.offset, e.event_id.to_string()));
        if e.kind().is_decision() {
            decisions.push(e);
        } else {
            partitions[r.partition as usize].push(e);
        }
    }
    let lost = acked.iter().filter(|id| !seen.contains_key(*id)).count();
    assert_eq!(lost, 0, "{lost} acknowledged events are not in the log");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} events are in the log more than once, e.g. {:?}",
        twice.len(),
        twice.first()
    );

    // The decisions: the batch reference's over this log, none twice.
    let (reference, _) = decide_all(
        &partitions,
        config.allowed_lateness,
        config.inventory.clone(),
    );
    let reference: Vec<Vec<u8>> = decision_events(reference).map(|e| e.to_json()).collect();
    let got: HashSet<Vec<u8>> = decisions.iter().map(Event::to_json).collect();
    assert_eq!(got.len(), decisions.len(), "no decision appended twice");
    assert!(
        decisions.len() <= reference.len(),
        "{} decisions in the log, {} in the reference",
        decisions.len(),
        reference.len()
    );
    let want: HashSet<Vec<u8>> = reference[..decisions.len()].iter().cloned().collect();
    let wrong: Vec<String> = got
        .difference(&want)
        .take(3)
        .map(|j| String::from_utf8_lossy(j).into_owned())
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} decisions differ from the reference's first {}, e.g. {wrong:#?}",
        got.difference(&want).count(),
        decisions.len(),
        decisions.len()
    );

    // Heartbeats add no late event of their own (ADR 0005).
    let lateness = config.allowed_lateness;
    let late = late_events(&partitions, lateness, true);
    let without_heartbeats = late_events(&partitions, lateness, false);
    assert_eq!(
        late,
        without_heartbeats,
        "heartbeats made {} producer events late, e.g. {:#?}",
        late.saturating_sub(without_heartbeats),
        made_late_by_heartbeats(&partitions, lateness)
    );

    let orders =
        super::support::assert_store_is_the_reference(&data.join("store"), &partitions, config)
            .await;

    // The lakehouse: every record of the log once, at its partition and offset.
    let query = EventKind::ALL
        .iter()
        .map(|k| format!("SELECT event_id, log_partition, log_offset FROM {k}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let out = Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(["sql", "--format", "json", &query, "--data-dir"])
        .arg(data)
        .output()
        .expect("emporium sql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON rows");
    let mut in_lakehouse: HashSet<(u32, u64, String)> = HashSet::new();
    for row in &rows {
        let key = (
            row["log_partition"].as_u64().expect("log_partition") as u32,
            row["log_offset"].as_u64().expect("log_offset"),
            row["event_id"].as_str().expect("event_id").to_owned(),
        );
        assert!(
            in_lakehouse.insert(key.clone()),
            "{key:?} is in the lakehouse twice"
        );
    }
    let missing = logged.difference(&in_lakehouse).count();
    let extra = in_lakehouse.difference(&logged).count();
    assert_eq!(
        (missing, extra),
        (0, 0),
        "the lakehouse misses {missing} records of the log and has {extra} it does not"
    );

    let heartbeats = partitions
        .iter()
        .flatten()
        .filter(|e| e.kind() == EventKind::PartitionHeartbeat)
        .count();
    Outcome {
        records: records.len(),
        decisions: decisions.len(),
        heartbeats,
        orders,
        late,
    }
}

/// Producer events that trail their partition's newest event (heartbeats included or not) by
/// more than `lateness`: counted here from the log alone, apart from the decider's own count.
fn late_events(partitions: &[Vec<Event>], lateness: chrono::Duration, heartbeats: bool) -> u64 {
    let mut late = 0;
    for events in partitions {
        let mut newest = None;
        for e in events {
            let heartbeat = e.kind() == EventKind::PartitionHeartbeat;
            if heartbeat && !heartbeats {
                continue;
            }
            if !heartbeat && newest.is_some_and(|n| e.occurred_at + lateness < n) {
                late += 1;
            }
            newest = newest.max(Some(e.occurred_at));
        }
    }
    late
}

/// The first few events a heartbeat made late: (partition, position, the event's time, the
/// heartbeat's, the newest producer event's before it).
fn made_late_by_heartbeats(partitions: &[Vec<Event>], lateness: chrono::Duration) -> Vec<String> {
    let mut found = Vec::new();
    for (p, events) in partitions.iter().enumerate() {
        let (mut newest, mut heartbeat) = (None, None);
        for (i, e) in events.iter().enumerate() {
            if e.kind() == EventKind::PartitionHeartbeat {
                heartbeat = heartbeat.max(Some((e.occurred_at, i)));
                continue;
            }
            if let Some((h, at)) = heartbeat
                && e.occurred_at + lateness < h
                && newest.is_none_or(|n| e.occurred_at + lateness >= n)
                && found.len() < 5
            {
                found.push(format!(
                    "partition {p} #{i}: {} {}, heartbeat #{at} at {h}, newest event {newest:?}",
                    e.kind(),
                    e.occurred_at
                ));
            }
            newest = newest.max(Some(e.occurred_at));
        }
    }
    found
}
