//! The embedded store's engine, chosen by this workload: redb (copy-on-write B+tree) beside fjall
//! (LSM tree), in one run, with the same documents, batches and reads (ADR 0006).
//!
//! Workload, shaped like the dataflow's writes and the API's reads:
//! - write: order documents of ~370 B JSON keyed by order id, in batches of 2,000, each document
//!   read first (its stored seq decides whether it is replaced) and each batch one atomic commit
//!   made durable (fsync) before the next; first inserts, then a second round of updates (orders
//!   move on);
//! - read: point reads of random order ids from 2 threads, the API's `GET /v1/orders/{id}`.
//!
//! No target: the README reports the ratios behind the choice of redb (ADR 0006); slos.md has no
//! line for it.
//!
//! Run: `cargo bench --bench store_engines` (add `-- --quick` for a smoke run). Writes
//! `<target dir>/bench-results/store_engines.json` (see `support::Report`).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use support::*;

const BATCH: usize = 2_000;
const READERS: usize = 2;

fn document(i: usize, round: usize) -> Vec<u8> {
    format!(
        concat!(
            "{{\"order_id\":\"o-{i:010}\",\"user_id\":\"u-{u:08}\",\"lines\":[{{\"sku\":\"p-{p:07}-red\",\"qty\":2,",
            "\"unit_price\":{{\"amount_minor\":53299,\"currency\":\"USD\"}}}},{{\"sku\":\"p-{q:07}-black\",\"qty\":1,",
            "\"unit_price\":{{\"amount_minor\":1299,\"currency\":\"USD\"}}}}],\"status\":\"{s}\",\"history\":[",
            "{{\"status\":\"placed\",\"at\":\"2026-11-25T01:02:39.696Z\"}},{{\"status\":\"reserved\",\"at\":\"2026-11-25T01:02:39.696Z\"}}]}}"
        ),
        i = i,
        u = i * 7 % 1_000_000,
        p = i % 1_000_000,
        q = (i * 13) % 1_000_000,
        s = if round == 0 { "reserved" } else { "paid" },
    )
    .into_bytes()
}

fn key(i: usize) -> String {
    format!("o-{i:010}")
}

fn value(seq: u64, json: &[u8]) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    v.extend_from_slice(json);
    v
}

fn stored_seq(v: &[u8]) -> u64 {
    v.get(..8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

trait Engine: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// One atomic, durable batch of conditional upserts; returns documents written.
    fn write_batch(&self, docs: &[(String, Vec<u8>)], seq: u64) -> usize;
    fn get(&self, key: &str) -> Option<Vec<u8>>;
}

struct Redb(redb::Database);

const ORDERS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("orders");

impl Redb {
    fn open(dir: &Path) -> Self {
        let db = redb::Database::builder()
            .set_cache_size(256 << 20)
            .create(dir.join("store.redb"))
            .expect("redb");
        let txn = db.begin_write().expect("txn");
        txn.open_table(ORDERS).expect("table");
        txn.commit().expect("commit");
        Self(db)
    }
}

impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb 4.6"
    }

    fn write_batch(&self, docs: &[(String, Vec<u8>)], seq: u64) -> usize {
        use redb::ReadableTable;
        let txn = self.0.begin_write().expect("txn");
        let mut n = 0;
        {
            let mut t = txn.open_table(ORDERS).expect("table");
            for (k, json) in docs {
                let old = t
                    .get(k.as_str())
                    .expect("get")
                    .map(|v| stored_seq(v.value()));
                if old.is_none_or(|s| s <= seq) {
                    t.insert(k.as_str(), value(seq, json).as_slice())
                        .expect("insert");
                    n += 1;
                }
            }
        }
        txn.commit().expect("commit");
        n
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        use redb::ReadableDatabase;
        let txn = self.0.begin_read().expect("read txn");
        let t = txn.open_table(ORDERS).expect("table");
        t.get(key).expect("get").map(|v| v.value().to_vec())
    }
}

struct Fjall {
    db: fjall::Database,
    orders: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path) -> Self {
        let db = fjall::Database::builder(dir.join("fjall"))
            .cache_size(256 << 20)
            .open()
            .expect("fjall");
        let orders = db
            .keyspace("orders", fjall::KeyspaceCreateOptions::default)
            .expect("keyspace");
        Self { db, orders }
    }
}

impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall 3.1"
    }

    fn write_batch(&self, docs: &[(String, Vec<u8>)], seq: u64) -> usize {
        // One writer (the dataflow), so reading before the batch cannot lose an update.
        let mut batch = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        let mut n = 0;
        for (k, json) in docs {
            let old = self.orders.get(k).expect("get").map(|v| stored_seq(&v));
            if old.is_none_or(|s| s <= seq) {
                batch.insert(&self.orders, k.as_str(), value(seq, json));
                n += 1;
            }
        }
        batch.commit().expect("commit");
        n
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.orders.get(key).expect("get").map(|v| v.to_vec())
    }
}

struct Result {
    insert_rate: f64,
    update_rate: f64,
    read_rate: f64,
    p50: Duration,
    p99: Duration,
    bytes: u64,
}

fn measure(engine: Arc<dyn Engine>, dir: &Path, orders: usize, reads: usize) -> Result {
    let mut rates = Vec::new();
    for round in 0..2 {
        let started = Instant::now();
        let mut written = 0;
        for (b, chunk) in (0..orders).collect::<Vec<_>>().chunks(BATCH).enumerate() {
            let docs: Vec<(String, Vec<u8>)> = chunk
                .iter()
                .map(|&i| (key(i), document(i, round)))
                .collect();
            written += engine.write_batch(&docs, (round * orders + b) as u64 + 1);
        }
        assert_eq!(written, orders, "every document written");
        rates.push(orders as f64 / started.elapsed().as_secs_f64());
    }
    let started = Instant::now();
    let threads: Vec<_> = (0..READERS)
        .map(|t| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(t as u64);
                let mut lat = Vec::with_capacity(reads / READERS);
                for _ in 0..reads / READERS {
                    let k = key(rng.random_range(0..orders));
                    let t0 = Instant::now();
                    let v = engine.get(&k);
                    lat.push(t0.elapsed());
                    assert!(v.is_some_and(|v| v.len() > 300));
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("reader"))
        .collect();
    let read_rate = lat.len() as f64 / started.elapsed().as_secs_f64();
    lat.sort();
    Result {
        insert_rate: rates[0],
        update_rate: rates[1],
        read_rate,
        p50: lat[lat.len() / 2],
        p99: lat[lat.len() * 99 / 100],
        bytes: dir_bytes(dir),
    }
}

fn main() {
    support::alloc::keep_freed_memory_a_while();
    let (orders, reads, runs) = if quick() {
        (10_000, 20_000, 1)
    } else {
        (300_000, 600_000, 3)
    };
    let mut report = Report::start(
        "embedded store engines: conditional upserts in durable batches, point reads",
        &format!(
            "{orders} order documents (~370 B) inserted then updated in batches of {BATCH} (fsync each), \
             then {reads} random point reads from {READERS} threads; median of {runs} runs"
        ),
    );
    row(&[
        "engine".into(),
        "insert docs/s".into(),
        "update docs/s".into(),
        "reads/s".into(),
        "read p50".into(),
        "read p99".into(),
        "on disk".into(),
    ]);
    let mut medians = Vec::new();
    for which in ["redb", "fjall"] {
        let mut results = Vec::new();
        for _ in 0..runs {
            let dir = tempfile::tempdir().expect("tempdir");
            let engine: Arc<dyn Engine> = match which {
                "redb" => Arc::new(Redb::open(dir.path())),
                _ => Arc::new(Fjall::open(dir.path())),
            };
            let name = engine.name();
            let r = measure(engine, dir.path(), orders, reads);
            report.row(serde_json::json!({
                "engine": which,
                "insert_docs_per_s": r.insert_rate,
                "update_docs_per_s": r.update_rate,
                "reads_per_s": r.read_rate,
                "read_p50_us": r.p50.as_secs_f64() * 1e6,
                "read_p99_us": r.p99.as_secs_f64() * 1e6,
                "on_disk_bytes": r.bytes,
            }));
            results.push((name, r));
        }
        let name = results[0].0;
        let med = |f: &dyn Fn(&Result) -> f64| median(results.iter().map(|(_, r)| f(r)).collect());
        let m = (
            med(&|r| r.insert_rate),
            med(&|r| r.update_rate),
            med(&|r| r.read_rate),
            med(&|r| r.p50.as_secs_f64() * 1e6),
            med(&|r| r.p99.as_secs_f64() * 1e6),
            med(&|r| r.bytes as f64 / (1 << 20) as f64),
        );
        row(&[
            name.into(),
            fmt_rate(m.0),
            fmt_rate(m.1),
            fmt_rate(m.2),
            format!("{:.1} µs", m.3),
            format!("{:.1} µs", m.4),
            format!("{:.0} MiB", m.5),
        ]);
        report.figure(format!("{which}.insert_docs_per_s"), m.0, "docs/s");
        report.figure(format!("{which}.update_docs_per_s"), m.1, "docs/s");
        report.figure(format!("{which}.reads_per_s"), m.2, "reads/s");
        report.figure(format!("{which}.read_p50_us"), m.3, "µs");
        report.figure(format!("{which}.read_p99_us"), m.4, "µs");
        report.figure(format!("{which}.on_disk_mib"), m.5, "MiB");
        medians.push(m);
    }
    let (r, f) = (medians[0], medians[1]);
    println!(
        "   redb/fjall: inserts {:.2}×, updates {:.2}×, reads {:.2}×, read p99 {:.2}× (lower is better)",
        r.0 / f.0,
        r.1 / f.1,
        r.2 / f.2,
        r.4 / f.4
    );
    report.figure("redb_vs_fjall.inserts", r.0 / f.0, "x");
    report.figure("redb_vs_fjall.updates", r.1 / f.1, "x");
    report.figure("redb_vs_fjall.reads", r.2 / f.2, "x");
    report.figure("redb_vs_fjall.read_p99", r.4 / f.4, "x");
    report.finish();
}
