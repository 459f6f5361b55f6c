//! The lakehouse through the `emporium` binary: `emporium run` writes every event it accepts (and
//! every decision its dataflow appends) into the Delta tables; `POST /v1/sql` answers operators
//! only, in the format `Accept` asks for, and refuses writes and bad SQL with clear errors; after a
//! clean stop, and after `emporium lakehouse` alone wrote what came later, `emporium sql` counts
//! per type exactly the events of the log.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{EVENTS_TOPIC, read_all};
use emporium_schemas::{Event, EventKind};

fn emporium(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run emporium")
}

/// `SELECT type, count(*) ... UNION ALL ...` over every event type's table.
fn count_by_type_sql() -> String {
    EventKind::ALL
        .iter()
        .map(|k| format!("SELECT type, count(*) AS n FROM {k} GROUP BY type"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

fn counts_of(rows: &serde_json::Value) -> BTreeMap<String, u64> {
    rows.as_array()
        .expect("an array of rows")
        .iter()
        .map(|r| {
            (
                r["type"].as_str().expect("type").to_owned(),
                r["n"].as_u64().expect("n"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_run_accepts_lands_in_the_lakehouse_and_sql_reads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let operator = String::from_utf8(emporium(&["token", "--operator"], data).stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let shopper = String::from_utf8(emporium(&["token", "--user", "u-1"], data).stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let support::Run {
        mut child, base, ..
    } = support::start_run(
        data,
        &[
            "--lakehouse-flush-secs",
            "1",
            "--inventory-snapshot-secs",
            "1",
        ],
        "Press Ctrl-C",
    );

    let client = reqwest::Client::new();
    let mut generator = support::shop(30);
    let token = support::producer_token(data);
    let report = support::post_generated(&client, &base, &token, &mut generator, 4_000).await;
    let accepted = report["accepted"].as_u64().expect("accepted");
    assert!(accepted > 3_000, "{report}");

    let sql = |text: String, token: Option<String>, accept: &'static str| {
        let mut request = client
            .post(format!("{base}/v1/sql"))
            .header("content-type", "text/plain")
            .header("accept", accept)
            .body(text);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    // Every accepted event becomes visible to SQL within seconds (commits every second).
    let began = Instant::now();
    loop {
        let response = sql(
            count_by_type_sql(),
            Some(operator.clone()),
            "application/json",
        )
        .await
        .expect("sql");
        assert_eq!(response.status().as_u16(), 200);
        let counts = counts_of(&response.json().await.expect("json"));
        let user_events: u64 = counts
            .iter()
            .filter(|(t, _)| !EventKind::from_name(t).is_some_and(EventKind::is_system))
            .map(|(_, n)| n)
            .sum();
        if user_events == accepted {
            break;
        }
        assert!(user_events < accepted, "more rows than events: {counts:?}");
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "the lakehouse has {user_events} of {accepted} events"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Inventory snapshots: every (sku, warehouse) once per snapshot, as the store has it.
    let snapshots = loop {
        let response = sql(
            "SELECT count(DISTINCT snapshot_at) AS snapshots, count(*) AS n, \
             count(DISTINCT concat(CAST(snapshot_at AS VARCHAR), sku, '/', warehouse)) AS distinct_rows \
             FROM inventory_snapshots"
                .into(),
            Some(operator.clone()),
            "application/json",
        )
        .await
        .expect("sql");
        if response.status().as_u16() == 200 {
            let rows: serde_json::Value = response.json().await.expect("json");
            if rows[0]["snapshots"].as_u64().unwrap_or(0) >= 1 {
                break rows[0].clone();
            }
        }
        assert!(
            began.elapsed() < Duration::from_secs(90),
            "no inventory snapshot was written"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(snapshots["n"].as_u64().expect("n") > 0, "{snapshots}");
    assert_eq!(snapshots["n"], snapshots["distinct_rows"], "{snapshots}");
    let sku_rows: serde_json::Value = sql(
        "SELECT sku, warehouse, on_hand, reserved FROM inventory_snapshots \
         WHERE snapshot_at = (SELECT max(snapshot_at) FROM inventory_snapshots) LIMIT 1"
            .into(),
        Some(operator.clone()),
        "application/json",
    )
    .await
    .expect("sql")
    .json()
    .await
    .expect("json");
    let sku = sku_rows[0]["sku"].as_str().expect("a sku").to_owned();
    let doc: serde_json::Value = client
        .get(format!("{base}/v1/inventory/{sku}"))
        .send()
        .await
        .expect("inventory")
        .json()
        .await
        .expect("json");
    assert!(
        doc["warehouses"]
            .as_array()
            .expect("warehouses")
            .iter()
            .any(|w| w["warehouse"] == sku_rows[0]["warehouse"]),
        "the snapshot's (sku, warehouse) is in the store: {doc} vs {sku_rows}"
    );

    // Who may ask, and how answers and errors look.
    let anonymous = sql("SELECT 1".into(), None, "application/json")
        .await
        .expect("sql");
    assert_eq!(anonymous.status().as_u16(), 401);
    let as_shopper = sql("SELECT 1".into(), Some(shopper), "application/json")
        .await
        .expect("sql");
    assert_eq!(as_shopper.status().as_u16(), 403);
    let write = sql(
        "DELETE FROM order_placed".into(),
        Some(operator.clone()),
        "application/json",
    )
    .await
    .expect("sql");
    assert_eq!(write.status().as_u16(), 403);
    let body: serde_json::Value = write.json().await.expect("json");
    assert_eq!(body["error"]["code"], "read_only", "{body}");
    let bad = sql(
        "SELECT nope FROM order_placed".into(),
        Some(operator.clone()),
        "application/json",
    )
    .await
    .expect("sql");
    assert_eq!(bad.status().as_u16(), 400);
    let body: serde_json::Value = bad.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("nope"),
        "{body}"
    );
    let csv = sql(
        "SELECT count(*) AS n FROM order_placed".into(),
        Some(operator.clone()),
        "text/csv",
    )
    .await
    .expect("sql");
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/csv")
    );
    let text = csv.text().await.expect("text");
    assert!(text.starts_with("n\n"), "{text}");
    let arrow = sql(
        "SELECT count(*) AS n FROM order_placed".into(),
        Some(operator.clone()),
        "application/vnd.apache.arrow.stream",
    )
    .await
    .expect("sql");
    assert_eq!(
        arrow.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = arrow.bytes().await.expect("bytes");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .expect("an Arrow IPC stream");
    let rows: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
    assert_eq!(rows, 1);

    // A clean stop writes everything the log holds, decisions included.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    assert!(child.wait().expect("exit").success(), "clean exit");

    // `emporium lakehouse` alone on the same data directory writes what arrived since: here,
    // events appended straight into the log while nothing ran.
    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(data.join("log"))).expect("log");
    let more: Vec<emporium_log::Record> = (0..500)
        .map(|_| {
            let e = generator.next_event();
            emporium_log::Record::new(e.partition_key().as_bytes().to_vec(), e.to_json())
        })
        .collect();
    emporium_log::EventLog::append(&log, EVENTS_TOPIC, more)
        .await
        .expect("append");
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for record in read_all(&log, EVENTS_TOPIC).await.expect("read") {
        let event = Event::decode(&record.value).expect("events decode");
        *expected
            .entry(event.kind().as_str().to_owned())
            .or_default() += 1;
    }
    drop(log);
    assert!(
        expected.contains_key("inventory_reserved") || expected.contains_key("order_rejected"),
        "the dataflow decided orders: {expected:?}"
    );
    let mut alone = Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(["lakehouse", "--status-every", "0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start emporium lakehouse");
    let stdout = alone.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    assert!(first.starts_with("Lakehouse sink:"), "{first}");
    for line in lines.by_ref() {
        if line.expect("utf-8").starts_with("Press Ctrl-C") {
            break;
        }
    }
    // Give it a moment to open the tables and read; a stop drains to the end of the log anyway.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = Command::new("kill")
        .args(["-TERM", &alone.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    assert!(alone.wait().expect("exit").success(), "clean exit");
    let printed: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        printed.iter().any(|l| l.starts_with("Stopped cleanly")),
        "{printed:?}"
    );

    let out = emporium(&["sql", "--format", "json", &count_by_type_sql()], data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = counts_of(&serde_json::from_slice(&out.stdout).expect("JSON rows"));
    assert_eq!(counts, expected);

    // The same query from a file, and as an argument, each starting with a `--` comment.
    let commented = format!("-- events per type\n{}", count_by_type_sql());
    let file = data.join("count.sql");
    std::fs::write(&file, &commented).expect("write the query");
    let file = file.to_str().expect("a UTF-8 path");
    for args in [
        vec!["sql", "--format", "json", "--file", file],
        vec!["sql", "--format", "json", &commented],
    ] {
        let out = emporium(&args, data);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let counts = counts_of(&serde_json::from_slice(&out.stdout).expect("JSON rows"));
        assert_eq!(counts, expected);
    }

    // `--planner datafusion`: DataFusion's planner alone, the same answer; a CTE read twice
    // is shared only with the lakehouse's rules.
    let twice = "EXPLAIN WITH t AS (SELECT type, count(*) AS n FROM order_placed GROUP BY type) \
                 SELECT a.type, a.n + b.n FROM t a JOIN t b ON a.type = b.type";
    for (planner, shared) in [("lakehouse", true), ("datafusion", false)] {
        let out = emporium(
            &["sql", "--planner", planner, "--format", "csv", twice],
            data,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan = String::from_utf8_lossy(&out.stdout);
        assert_eq!(plan.contains("SharedExec"), shared, "{planner}: {plan}");
        let out = emporium(
            &[
                "sql",
                "--planner",
                planner,
                "--format",
                "json",
                &count_by_type_sql(),
            ],
            data,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let counts = counts_of(&serde_json::from_slice(&out.stdout).expect("JSON rows"));
        assert_eq!(counts, expected, "{planner}");
    }

    // Errors at the command line are one clear line, not a backtrace.
    let out = emporium(&["sql", "INSERT INTO order_placed VALUES (1)"], data);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only queries are allowed"), "{stderr}");
}
