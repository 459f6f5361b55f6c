//! Shared by the end-to-end tests: the `emporium run` process and generated traffic for it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use emporium_generator::{Generator, GeneratorConfig};

/// A running `emporium run`.
pub struct Run {
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// What it printed up to `ready`.
    pub printed: Vec<String>,
    /// What it prints after.
    pub lines: Receiver<String>,
}

/// Starts `emporium run` on a free loopback port with `args` and `data_dir`, and waits until it
/// printed its address and then a line starting with `ready`.
pub fn start_run(data_dir: &Path, args: &[&str], ready: &str) -> Run {
    let mut run_args = vec!["run", "--listen", "127.0.0.1:0", "--status-every", "0"];
    run_args.extend_from_slice(args);
    let (child, lines) = spawn_printing(&run_args, data_dir);
    let mut printed = Vec::new();
    let mut base = None;
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("emporium printed its address and started");
        printed.push(line.clone());
        if let Some(url) = line.trim().strip_prefix("listening on ") {
            base = Some(url.trim().to_owned());
        }
        if base.is_some() && line.trim_start().starts_with(ready) {
            break;
        }
    }
    Run {
        child,
        base: base.expect("an address"),
        printed,
        lines,
    }
}

/// Starts `emporium ARGS --data-dir DIR` with its stdout read line by line into a channel (its
/// stderr dropped).
pub fn spawn_printing(args: &[&str], data_dir: &Path) -> (Child, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start emporium");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, lines)
}

/// What `emporium token ARGS --data-dir DIR` prints: a token signed with the keys of the data
/// directory (made there if `emporium run` has not made them yet), or the operator key.
pub fn token(args: &[&str], data_dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_emporium"))
        .arg("token")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("emporium token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A producer token for every event type.
pub fn producer_token(data_dir: &Path) -> String {
    token(
        &[
            "--producer",
            "tests",
            "--scope",
            "storefront,orders,catalog,accounts",
        ],
        data_dir,
    )
}

/// A generated shop with `products` products and the other settings at their defaults.
pub fn shop(products: usize) -> Generator {
    Generator::new(GeneratorConfig {
        products,
        ..GeneratorConfig::default()
    })
    .expect("generator")
}

/// Posts events one at a time to a running process's ingest API, as a producer with a token,
/// each with the next event id (`1`, `2`, …), and checks each was accepted.
pub struct Producer {
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
    next: u128,
}

impl Producer {
    pub fn new(base: String, token: String) -> Self {
        Self {
            client: reqwest::Client::new(),
            base,
            token,
            next: 0,
        }
    }

    /// Posts `payload` as the next event, now.
    pub async fn post(&mut self, payload: impl Into<emporium_schemas::Payload>) {
        self.next += 1;
        let event = emporium_schemas::Event::new(
            uuid::Uuid::from_u128(self.next),
            chrono::Utc::now(),
            payload,
        );
        let report: serde_json::Value = self
            .client
            .post(format!("{}/v1/events", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(event.to_json())
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("report");
        assert_eq!(report["accepted"], 1, "{report}");
    }
}

/// Posts the next `events` events of `generator` to `base`'s ingest API as one NDJSON body, and
/// returns its report.
pub async fn post_generated(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    generator: &mut Generator,
    events: usize,
) -> serde_json::Value {
    let body: String = (0..events)
        .map(|_| String::from_utf8(generator.next_event().to_json()).expect("utf-8") + "\n")
        .collect();
    client
        .post(format!("{base}/v1/events"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("report")
}

/// A metric's value from `base`'s `/metrics` (`None`: not there, or no answer).
pub async fn gauge(client: &reqwest::Client, base: &str, name: &str) -> Option<u64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Polls `/metrics` until the dataflow's position covers at least `at_least` records and then
/// does not move for two seconds.
pub async fn wait_until_caught_up(client: &reqwest::Client, base: &str, at_least: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let mut last = (0, std::time::Instant::now());
    while std::time::Instant::now() < deadline {
        let n = gauge(client, base, "emporium_dataflow_consumer_position")
            .await
            .unwrap_or(0);
        if n != last.0 {
            last = (n, std::time::Instant::now());
        } else if n >= at_least && last.1.elapsed() > Duration::from_secs(2) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the dataflow did not catch up: {} records read", last.0);
}

/// Asserts that the embedded store in `store_dir` holds exactly the reference documents of the
/// log whose producer events (and heartbeats) per partition are `partitions`, decided with
/// `config`'s settings: every one with its seq, none beyond them. Returns how many order documents there are.
pub async fn assert_store_is_the_reference(
    store_dir: &Path,
    partitions: &[Vec<emporium_schemas::Event>],
    config: &emporium_pipeline::PipelineConfig,
) -> usize {
    use emporium_serving::store::Store;
    use emporium_serving::views::Upsert;

    let reference = emporium_dataflows::reference::reference_documents(
        partitions,
        config.allowed_lateness,
        config.inventory.clone(),
        &config.views,
    )
    .into_iter()
    .map(emporium_pipeline::documents::upsert)
    .collect::<Vec<_>>();
    let store = emporium_serving::store::embedded::EmbeddedStore::open(store_dir).expect("store");
    let mut orders = 0;
    for u in &reference {
        let (what, key, seq, want, got) = match u {
            Upsert::Product { seq, view } => {
                let doc = store.product(&view.product_id).await.expect("read");
                let want = serde_json::to_value(view);
                ("product", &view.product_id, seq, want, doc)
            }
            Upsert::Inventory { seq, view } => {
                let doc = store.inventory(&view.sku).await.expect("read");
                ("inventory", &view.sku, seq, serde_json::to_value(view), doc)
            }
            Upsert::Order { seq, view } => {
                orders += 1;
                let doc = store.order(&view.order_id).await.expect("read").map(|d| {
                    emporium_serving::store::Document {
                        seq: d.seq,
                        json: d.json,
                    }
                });
                let want = serde_json::to_value(view);
                ("order", &view.order_id, seq, want, doc)
            }
            Upsert::View {
                seq,
                view,
                key,
                json,
            } => {
                let doc = store.view(view, key).await.expect("read");
                ("view", key, seq, serde_json::from_slice(json), doc)
            }
        };
        let got = got.unwrap_or_else(|| panic!("{what} {key} missing from the store"));
        let got_json: serde_json::Value = serde_json::from_slice(&got.json).expect("JSON");
        assert_eq!(
            (got.seq, got_json),
            (*seq, want.expect("JSON")),
            "{what} {key} differs from an uninterrupted run's"
        );
    }
    let (p, i, o) = store.counts().expect("counts");
    assert_eq!(
        (p + i + o) as usize,
        reference.len(),
        "no document beyond the reference's"
    );
    orders
}
