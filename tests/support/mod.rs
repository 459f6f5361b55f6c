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
            "storefront,orders,catalog",
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
