//! Hostile SQL against a running `emporium run`: a query that would run for hours, one whose
//! expressions would allocate gigabytes, and ones that aggregate huge generated values into one. Each
//! is answered by its limit (504 `time_limit` at the deadline, 422 `memory_limit`), and `/healthz`
//! keeps answering the whole time, 99% of probes within 50 ms and every one within a second (a
//! query on the HTTP runtime would hold them for its whole run): queries run on threads of their
//! own. Not every probe within 50 ms: on 2 shared cores, with the query busy on one, the scheduler
//! alone delays one now and then past it (72 ms seen once in CI).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

fn operator_key(data_dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(["token", "--operator", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("emporium token");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// Runs `sql` while probing `/healthz` every 25 ms; returns the query's status, its error code,
/// how long it took, and the probes' 99th percentile and slowest.
async fn run_probed(
    base: &str,
    key: &str,
    sql: &str,
) -> (u16, String, Duration, Duration, Duration) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let started = Instant::now();
    let query = {
        let (client, base, key, sql) = (
            client.clone(),
            base.to_owned(),
            key.to_owned(),
            sql.to_owned(),
        );
        tokio::spawn(async move {
            let r = client
                .post(format!("{base}/v1/sql"))
                .bearer_auth(key)
                .body(sql)
                .send()
                .await
                .expect("sql request");
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (
                status,
                body["error"]["code"].as_str().unwrap_or("").to_owned(),
            )
        })
    };
    let mut probes = Vec::new();
    // A fresh connection per probe, as a load balancer's health check makes.
    while !query.is_finished() {
        let probe = Instant::now();
        let r = reqwest::Client::new()
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("healthz");
        assert_eq!(r.status().as_u16(), 200);
        probes.push(probe.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, code) = query.await.expect("query task");
    let took = started.elapsed();
    probes.sort();
    eprintln!(
        "{sql}\n  {status} {code} in {took:?}; {} /healthz probes, median {:?}, slowest {:?}",
        probes.len(),
        probes.get(probes.len() / 2).copied().unwrap_or_default(),
        probes.last().copied().unwrap_or_default()
    );
    let p99 = probes
        .get((probes.len() * 99 / 100).min(probes.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    (
        status,
        code,
        took,
        p99,
        probes.last().copied().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_are_cut_off_and_the_server_keeps_answering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = operator_key(dir.path());
    let support::Run {
        mut child, base, ..
    } = support::start_run(
        dir.path(),
        &[
            "--no-dataflow",
            "--sql-timeout",
            "8",
            "--sql-memory-mb",
            "256",
        ],
        "Press Ctrl-C",
    );
    let cases = [
        (
            "a cross join sorted: hours of work",
            "SELECT a.value * b.value AS v FROM generate_series(1, 5000000) a \
             CROSS JOIN generate_series(1, 5000000) b ORDER BY v DESC LIMIT 5",
            504,
            "time_limit",
        ),
        (
            "repeat of a 2 GB string",
            "SELECT length(repeat('x', 2000000000))",
            422,
            "memory_limit",
        ),
        (
            "10^8 generated rows (refused by the row bound before it runs)",
            "SELECT length(string_agg(repeat('x', 100), ',')) FROM generate_series(1, 100000000)",
            422,
            "memory_limit",
        ),
        (
            "one value from 10^6 rows of 100 KB (stopped by the memory backstop)",
            "SELECT length(string_agg(repeat('x', 100000), ',')) FROM generate_series(1, 1000000)",
            422,
            "memory_limit",
        ),
    ];
    let mut report = Vec::new();
    for (what, sql, status, code) in cases {
        let (got, got_code, took, p99, slowest) = run_probed(&base, &key, sql).await;
        report.push(format!(
            "{what}: {got} {got_code} in {took:?}, /healthz p99 {p99:?}, slowest {slowest:?}"
        ));
        assert_eq!(
            (got, got_code.as_str()),
            (status, code),
            "{what}: {report:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "{what}: answered by its limit: {report:?}"
        );
        assert!(
            p99 < Duration::from_millis(50) && slowest < Duration::from_secs(1),
            "{what}: /healthz answered within 50 ms (99%) and 1 s (all): {report:?}"
        );
    }
    eprintln!("{}", report.join("\n"));
    // And the server still answers queries.
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/sql"))
        .bearer_auth(&key)
        .body("SELECT 1 + 1 AS two")
        .send()
        .await
        .expect("sql");
    assert_eq!(r.status().as_u16(), 200);
    let _ = child.kill();
    let _ = child.wait();
}
