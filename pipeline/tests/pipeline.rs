//! The timely pipeline end to end on a real (embedded) event log and store: its decisions are the
//! batch reference's, for 1 and 3 workers; the documents it writes to the store are the reference
//! documents; and a restart that replays the log appends nothing twice and leaves the store as is.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use emporium_dataflows::decider::{Decider, decide_all};
use emporium_dataflows::popularity::{DECAY_EPOCH_HOUR, HALF_LIFE_HOURS, POPULARITY_STEP};
use emporium_dataflows::reference::reference_documents;
use emporium_generator::{Generator, GeneratorConfig};
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{EVENTS_TOPIC, EventLog, Record, read_all};
use emporium_pipeline::{
    CheckpointConfig, PipelineConfig, PipelineStats, RunningPipeline, decision_events,
};
use emporium_schemas::{Event, EventKind, Payload};
use emporium_serving::store::embedded::EmbeddedStore;
use emporium_serving::store::{Result as StoreResult, Store};
use emporium_serving::views::{InventoryView, OrderView, ProductView, Upsert};

const PARTITIONS: u32 = 4;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `n` generated shop events, as records keyed by their partition key.
fn shop_events(n: usize) -> Vec<Record> {
    let mut generator = Generator::new(GeneratorConfig {
        products: 150,
        users: 2_000,
        events_per_day: 20_000.0,
        // Fulfilment 100× faster, so orders are delivered and reviewed within the log.
        fulfilment_scale: 0.01,
        // Some users erased, so their orders leave the recommendation views.
        erasure_rate: 0.000_5,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    (0..n)
        .map(|_| {
            let e = generator.next_event();
            Record::new(e.partition_key().as_bytes().to_vec(), e.to_json())
        })
        .collect()
}

fn append(rt: &tokio::runtime::Runtime, log: &Arc<dyn EventLog>, records: &[Record]) {
    rt.block_on(async {
        for batch in records.chunks(1000) {
            log.append(EVENTS_TOPIC, batch.to_vec())
                .await
                .expect("append");
        }
    });
}

/// A log holding `n` generated shop events, spread by key over 4 partitions.
fn shop_log(rt: &tokio::runtime::Runtime, dir: &std::path::Path, n: usize) -> Arc<dyn EventLog> {
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(EmbeddedConfig::in_dir(dir)).expect("open"));
    rt.block_on(log.ensure_topic(EVENTS_TOPIC, PARTITIONS))
        .expect("topic");
    append(rt, &log, &shop_events(n));
    log
}

/// Runs the pipeline until it has read every record present at the start, plus a short settle.
fn run_until_caught_up(
    rt: &tokio::runtime::Runtime,
    log: &Arc<dyn EventLog>,
    store: Option<Arc<dyn Store>>,
    workers: usize,
) -> Arc<PipelineStats> {
    let config = PipelineConfig {
        workers,
        ..PipelineConfig::default()
    };
    run_with(rt, log, store, config)
}

/// [`run_until_caught_up`] with these settings; a resumed run need not read the whole log.
/// An embedded log in `dir` with the events topic.
fn embedded_log(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Arc<dyn EventLog> {
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(EmbeddedConfig::in_dir(dir)).expect("open"));
    rt.block_on(log.ensure_topic(EVENTS_TOPIC, PARTITIONS))
        .expect("topic");
    log
}

fn run_with(
    rt: &tokio::runtime::Runtime,
    log: &Arc<dyn EventLog>,
    store: Option<Arc<dyn Store>>,
    config: PipelineConfig,
) -> Arc<PipelineStats> {
    let ends = rt.block_on(log.end_offsets(EVENTS_TOPIC)).expect("ends");
    let store_handle = store.clone();
    let pipeline =
        RunningPipeline::start(Arc::clone(log), store, rt.handle().clone(), config).expect("start");
    let stats = Arc::clone(&pipeline.stats);
    let deadline = Instant::now() + Duration::from_secs(120);
    // Every record present at the start read (from wherever the run resumed)...
    let caught_up = || {
        let read = stats.read_positions.lock().expect("positions");
        read.len() == ends.len() && read.iter().zip(&ends).all(|(r, e)| r >= e)
    };
    while !caught_up() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... and its own decisions, appended since, read back too: a few idle rounds.
    std::thread::sleep(Duration::from_millis(500));
    if let Some(store) = &store_handle {
        // Then the store reflects the whole log (the documents come with the positions).
        loop {
            let ends = rt.block_on(log.end_offsets(EVENTS_TOPIC)).expect("ends");
            let positions = rt.block_on(store.positions()).expect("positions");
            if positions.as_deref() == Some(&ends[..]) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    pipeline.stop().expect("pipeline");
    stats
}

/// Non-decision events per partition, and the decision events, as they are in the log.
fn split_log(
    rt: &tokio::runtime::Runtime,
    log: &Arc<dyn EventLog>,
) -> (Vec<Vec<Event>>, Vec<Event>) {
    let records = rt
        .block_on(read_all(log.as_ref(), EVENTS_TOPIC))
        .expect("read");
    let mut partitions = vec![Vec::new(); PARTITIONS as usize];
    let mut decisions = Vec::new();
    for r in records {
        let e = Event::decode(&r.value).expect("events decode");
        if e.kind().is_decision() {
            decisions.push(e);
        } else {
            partitions[r.partition as usize].push(e);
        }
    }
    (partitions, decisions)
}

/// The log's decisions are the reference's first n, none twice, and `appended` of them were
/// appended by the runs; returns their ids.
fn check_against_reference(
    rt: &tokio::runtime::Runtime,
    log: &Arc<dyn EventLog>,
    appended: u64,
) -> BTreeSet<String> {
    let (partitions, decisions) = split_log(rt, log);
    let config = PipelineConfig::default();
    let (reference, _) = decide_all(&partitions, config.allowed_lateness, config.inventory);
    let reference: Vec<Event> = decision_events(reference).collect();
    // The pipeline decides up to its watermark: its decisions are a prefix of the reference's.
    let n = decisions.len();
    assert!(n > 100, "the shop produced decisions: {n}");
    assert!(n <= reference.len());
    let got: HashSet<Vec<u8>> = decisions.iter().map(Event::to_json).collect();
    let want: HashSet<Vec<u8>> = reference[..n].iter().map(Event::to_json).collect();
    assert_eq!(got.len(), n, "no decision appended twice");
    assert_eq!(
        got, want,
        "the pipeline's decisions are the reference's first {n}"
    );
    assert_eq!(appended as usize, n);
    decisions.iter().map(|e| e.event_id.to_string()).collect()
}

#[test]
fn decisions_match_the_reference_for_one_and_three_workers() {
    let rt = runtime();
    let (a, b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let one = shop_log(&rt, a.path(), 20_000);
    let three = shop_log(&rt, b.path(), 20_000);
    let s1 = run_until_caught_up(&rt, &one, None, 1);
    let s3 = run_until_caught_up(&rt, &three, None, 3);
    let ids1 = check_against_reference(&rt, &one, s1.decisions_appended.load(Ordering::Relaxed));
    let ids3 = check_against_reference(&rt, &three, s3.decisions_appended.load(Ordering::Relaxed));
    assert_eq!(
        ids1, ids3,
        "the number of workers does not change decisions"
    );
}

#[test]
fn a_restart_replays_the_log_and_appends_nothing_twice() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = shop_log(&rt, dir.path(), 10_000);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(store_dir.path()).expect("store"));
    let first = run_until_caught_up(&rt, &log, Some(Arc::clone(&store)), 2);
    let before =
        check_against_reference(&rt, &log, first.decisions_appended.load(Ordering::Relaxed));
    let documents = check_store(&rt, &log, store.as_ref());
    let second = run_until_caught_up(&rt, &log, Some(Arc::clone(&store)), 2);
    assert_eq!(
        check_store(&rt, &log, store.as_ref()),
        documents,
        "a replay leaves the store as it was"
    );
    assert_eq!(second.decisions_appended.load(Ordering::Relaxed), 0);
    assert_eq!(
        second.decisions_already_logged.load(Ordering::Relaxed) as usize,
        before.len()
    );
    let (_, decisions) = split_log(&rt, &log);
    let after: BTreeSet<String> = decisions.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(after, before);
    assert_eq!(decisions.len(), before.len());
}

/// Every reference document is in the store, equal and with the same seq; returns how many.
fn check_store(rt: &tokio::runtime::Runtime, log: &Arc<dyn EventLog>, store: &dyn Store) -> usize {
    let (partitions, _) = split_log(rt, log);
    let config = PipelineConfig::default();
    let reference = reference_documents(
        &partitions,
        config.allowed_lateness,
        config.inventory,
        &config.views,
    )
    .into_iter()
    .map(emporium_pipeline::documents::upsert)
    .collect::<Vec<_>>();
    let (mut products, mut skus, mut orders) = (0, 0, 0);
    rt.block_on(async {
        for upsert in &reference {
            match upsert {
                Upsert::Product { seq, view } => {
                    let doc = store.product(&view.product_id).await.expect("read");
                    let doc = doc.unwrap_or_else(|| panic!("product {} missing", view.product_id));
                    let got: ProductView = serde_json::from_slice(&doc.json).expect("json");
                    assert_eq!((doc.seq, &got), (*seq, view));
                    products += 1;
                }
                Upsert::Inventory { seq, view } => {
                    let doc = store.inventory(&view.sku).await.expect("read");
                    let doc = doc.unwrap_or_else(|| panic!("sku {} missing", view.sku));
                    let got: InventoryView = serde_json::from_slice(&doc.json).expect("json");
                    assert_eq!((doc.seq, &got), (*seq, view));
                    skus += 1;
                }
                Upsert::Order { seq, view } => {
                    let doc = store.order(&view.order_id).await.expect("read");
                    let doc = doc.unwrap_or_else(|| panic!("order {} missing", view.order_id));
                    let got: OrderView = serde_json::from_slice(&doc.json).expect("json");
                    assert_eq!((doc.seq, &got, &doc.user_id), (*seq, view, &view.user_id));
                    orders += 1;
                }
                Upsert::View { .. } => unreachable!("the reference holds no view documents"),
            }
        }
    });
    // The product_ratings view against a plain fold of the reviews the decider applied.
    let Applied {
        ratings,
        interest,
        from_views,
        partners,
        users,
        erased,
    } = reference_views(&partitions);
    assert!(ratings.len() > 10, "{} products reviewed", ratings.len());
    rt.block_on(async {
        for (product, stars) in &ratings {
            let doc = store.view("product_ratings", product).await.expect("read");
            let doc = doc.unwrap_or_else(|| panic!("ratings of {product} missing"));
            let got: serde_json::Value = serde_json::from_slice(&doc.json).expect("json");
            let reviews: u64 = stars.iter().sum();
            assert_eq!(got["stars"], serde_json::json!(stars), "{product}: {got}");
            assert_eq!(got["reviews"], reviews, "{product}");
        }
    });
    // The popularity view against a plain fold of the views counted and the units ordered:
    // log2 of the decayed sum at the precision its evidence allows (none below 5 views ever,
    // whole doublings below 32, else steps of 1/16; one step apart at most: two float sums of
    // the same terms).
    let mut checked = 0;
    rt.block_on(async {
        for (product, hours) in &interest {
            let doc = store
                .view("product_popularity", product)
                .await
                .expect("read");
            let evidence: i64 = hours.values().sum();
            let weight = |h: i64| ((h - DECAY_EPOCH_HOUR) as f64 / HALF_LIFE_HOURS).exp2();
            let log = hours
                .iter()
                .map(|(h, w)| *w as f64 * weight(*h))
                .sum::<f64>()
                .log2();
            if evidence < 5 {
                assert!(doc.is_none(), "{product}: popularity on too little");
                continue;
            }
            let want = if evidence < 32 {
                (log + 1e-9).floor() * POPULARITY_STEP
            } else {
                (log * POPULARITY_STEP).round()
            };
            let doc = doc.unwrap_or_else(|| panic!("popularity of {product} missing"));
            let got: serde_json::Value = serde_json::from_slice(&doc.json).expect("json");
            let got = got["popularity"]
                .as_f64()
                .unwrap_or_else(|| panic!("{got}"))
                * POPULARITY_STEP;
            assert!(
                (got - want).abs() <= 1.0,
                "{product}: popularity {got} against {want}"
            );
            checked += 1;
        }
    });
    // And no popularity the fold does not expect.
    let stored = rt
        .block_on(store.scan_view("product_popularity", None, 1_000_000))
        .expect("scan");
    assert_eq!(
        stored.len(),
        checked,
        "popularity documents beyond the fold's"
    );
    assert!(
        checked > 10 && from_views > 100,
        "{checked} products' popularity checked, {from_views} views counted"
    );
    // The also_bought view against a plain fold of the paid orders' baskets.
    rt.block_on(async {
        for (product, want) in &partners {
            let doc = store.view("also_bought", product).await.expect("read");
            let doc = doc.unwrap_or_else(|| panic!("also_bought of {product} missing"));
            let got: serde_json::Value = serde_json::from_slice(&doc.json).expect("json");
            let want: Vec<serde_json::Value> = want
                .iter()
                .map(|(p, n)| serde_json::json!({"product_id": p, "orders": n}))
                .collect();
            assert_eq!(got["also_bought"], serde_json::json!(want), "{product}");
        }
    });
    let stored = rt
        .block_on(store.scan_view("also_bought", None, 1_000_000))
        .expect("scan");
    // A product whose every partner was taken back keeps a `null` (the key left the view).
    let live = stored.iter().filter(|(_, d)| d.json.as_ref() != b"null");
    assert_eq!(
        live.count(),
        partners.len(),
        "also_bought beyond the fold's"
    );
    assert!(
        partners.len() > 10,
        "{} products bought together",
        partners.len()
    );
    // The user_purchases view against the same fold.
    rt.block_on(async {
        for (user, want) in &users {
            let doc = store.view("user_purchases", user).await.expect("read");
            let doc = doc.unwrap_or_else(|| panic!("user_purchases of {user} missing"));
            let got: serde_json::Value = serde_json::from_slice(&doc.json).expect("json");
            assert_eq!(&got, want, "{user}");
        }
    });
    let stored = rt
        .block_on(store.scan_view("user_purchases", None, 10_000_000))
        .expect("scan");
    let live = stored.iter().filter(|(_, d)| d.json.as_ref() != b"null");
    assert_eq!(
        live.count(),
        users.len(),
        "user_purchases beyond the fold's"
    );
    assert!(users.len() > 10, "{} users bought", users.len());
    // The erased_users view: a tombstone per erased user, nothing else.
    let stored = rt
        .block_on(store.scan_view("erased_users", None, 10_000_000))
        .expect("scan");
    let got: BTreeMap<String, serde_json::Value> = stored
        .iter()
        .map(|(user, d)| (user.clone(), serde_json::from_slice(&d.json).expect("json")))
        .collect();
    assert_eq!(got, erased, "erased_users");
    assert!(!erased.is_empty(), "some users erased");
    assert!(
        products > 10 && skus > 10 && orders > 10,
        "{products} {skus} {orders}"
    );
    reference.len()
}

/// What the views must hold, by plain folds over the events a decider with the pipeline's views
/// applies (the watermark's cut), not by the views.
struct Applied {
    /// Per product, how many reviews of each star.
    ratings: BTreeMap<String, [u64; 5]>,
    /// Per product and hour of event time, views plus ten per ordered unit (of a sku the
    /// product lists).
    interest: BTreeMap<String, BTreeMap<i64, i64>>,
    /// Views counted.
    from_views: u64,
    /// Per product, its also-bought partners, best first (the rule in `dataflows/src/recs`).
    partners: BTreeMap<String, Vec<(String, u64)>>,
    /// Per user, the `user_purchases` document.
    users: BTreeMap<String, serde_json::Value>,
    /// Per erased user, the `erased_users` document.
    erased: BTreeMap<String, serde_json::Value>,
}

fn reference_views(partitions: &[Vec<Event>]) -> Applied {
    let config = PipelineConfig::default();
    let mut decider = Decider::new(partitions.len(), config.allowed_lateness, config.inventory)
        .feeding(&config.views)
        .tracking_changes();
    for (p, events) in partitions.iter().enumerate() {
        for e in events {
            decider.push(p, e.clone());
        }
    }
    decider.decide(&mut Vec::new());
    let mut stars: BTreeMap<String, [u64; 5]> = BTreeMap::new();
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    let mut ordered: Vec<(String, i64, i64)> = Vec::new();
    let hour = |e: &Event| e.occurred_at.timestamp_millis().div_euclid(3_600_000);
    let mut baskets: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    let (mut paid, mut gone, mut erased) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut returned: BTreeSet<(String, String)> = BTreeSet::new();
    let mut paid_at: BTreeMap<String, u64> = BTreeMap::new();
    for (seq, event) in decider.take_view_events() {
        match &event.payload {
            Payload::PaymentAuthorized(p) => {
                paid.insert(p.order_id.clone());
                paid_at.entry(p.order_id.clone()).or_insert(seq);
            }
            Payload::OrderCancelled(c) => {
                gone.insert(c.order_id.clone());
            }
            Payload::ReturnRequested(r) => {
                for line in &r.lines {
                    returned.insert((r.order_id.clone(), line.sku.clone()));
                }
            }
            Payload::UserErased(u) => {
                erased.insert(u.user_id.clone());
            }
            _ => {}
        }
        match &event.payload {
            Payload::ReviewPosted(r) => {
                let n = stars.entry(r.product_id.clone()).or_default();
                n[(r.rating - 1) as usize] += 1;
            }
            Payload::ProductUpserted(p) => {
                for sku in &p.skus {
                    owner.insert(sku.clone(), p.product_id.clone());
                }
            }
            Payload::OrderPlaced(o) => {
                let basket = baskets
                    .entry(o.order_id.clone())
                    .or_insert_with(|| (o.user_id.clone(), BTreeSet::new()));
                for line in &o.lines {
                    ordered.push((line.sku.clone(), hour(&event), line.qty));
                    basket.1.insert(line.sku.clone());
                }
            }
            _ => {}
        }
    }
    let mut pairs: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut latest: BTreeMap<&String, BTreeMap<&String, u64>> = BTreeMap::new();
    for (order, (user, skus)) in &baskets {
        if !paid.contains(order) || gone.contains(order) || erased.contains(user) {
            continue;
        }
        let products: BTreeSet<&String> = skus
            .iter()
            .filter(|sku| !returned.contains(&(order.clone(), (*sku).clone())))
            .filter_map(|sku| owner.get(sku))
            .collect();
        for product in &products {
            let at = latest.entry(user).or_default().entry(*product).or_default();
            *at = (*at).max(paid_at[order]);
        }
        let products: Vec<&String> = products.into_iter().take(20).collect();
        for a in &products {
            for b in products.iter().filter(|b| *b != a) {
                *pairs.entry(((*a).clone(), (*b).clone())).or_default() += 1;
            }
        }
    }
    let mut partners: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for ((a, b), n) in pairs {
        partners.entry(a).or_default().push((b, n));
    }
    // Ties go to the product listed first (the views' integer ids follow the log); the
    // generator lists its products in id order, so here that is the smaller id.
    for list in partners.values_mut() {
        list.sort_by(|(b1, n1), (b2, n2)| n2.cmp(n1).then(b1.cmp(b2)));
        list.truncate(30);
    }
    // Recent purchases: latest paid first (ties: the one listed last), at most 20; none for the
    // erased, who have a tombstone in erased_users.
    let mut users: BTreeMap<String, serde_json::Value> = latest
        .into_iter()
        .map(|(user, products)| {
            let mut products: Vec<(u64, &String)> =
                products.into_iter().map(|(p, seq)| (seq, p)).collect();
            products.sort_by(|a, b| b.cmp(a));
            let recent: Vec<&String> = products.iter().take(20).map(|(_, p)| *p).collect();
            let doc = serde_json::json!({"user_id": user, "recent_purchases": recent});
            (user.clone(), doc)
        })
        .collect();
    for user in &erased {
        users.remove(user);
    }
    let erased: BTreeMap<String, serde_json::Value> = erased
        .into_iter()
        .map(|user| {
            let doc = serde_json::json!({"user_id": user, "erased": true});
            (user, doc)
        })
        .collect();
    let mut interest: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
    for (sku, hour, qty) in ordered {
        if let Some(product) = owner.get(&sku) {
            *interest
                .entry(product.clone())
                .or_default()
                .entry(hour)
                .or_default() += 10 * qty;
        }
    }
    let mut from_views = 0;
    // Everyone's sums: the sums per session (for `also_viewed`, `user_views`) count them again.
    let counts = decider.take_view_counts().into_iter().flat_map(|(_, c)| c);
    for count in counts.filter(|c| c.session.is_none()) {
        assert_eq!(count.kind, EventKind::ProductViewed);
        from_views += u64::from(count.n);
        *interest
            .entry(count.product)
            .or_default()
            .entry(count.hour)
            .or_default() += i64::from(count.n);
    }
    Applied {
        ratings: stars,
        interest,
        from_views,
        partners,
        users,
        erased,
    }
}

#[test]
fn the_store_holds_the_reference_documents_for_one_and_three_workers() {
    let rt = runtime();
    for workers in [1, 3] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = shop_log(&rt, dir.path(), 20_000);
        let store_dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(EmbeddedStore::open(store_dir.path()).expect("store"));
        let dyn_store: Arc<dyn Store> = store.clone();
        let stats = run_until_caught_up(&rt, &log, Some(Arc::clone(&dyn_store)), workers);
        let n = check_store(&rt, &log, store.as_ref());
        let (p, i, o) = store.counts().expect("counts");
        assert_eq!(
            (p + i + o) as usize,
            n,
            "no document beyond the reference's"
        );
        let ends = rt.block_on(log.end_offsets(EVENTS_TOPIC)).expect("ends");
        let positions = rt.block_on(store.positions()).expect("positions");
        assert_eq!(
            positions.as_deref(),
            Some(&ends[..]),
            "positions cover the log"
        );
        assert!(stats.documents_written.load(Ordering::Relaxed) as usize >= n);
    }
}

#[test]
fn a_restart_resumes_from_its_checkpoint_and_converges_to_the_reference() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let events = shop_events(16_000);
    let (first, later) = events.split_at(10_000);
    let log = embedded_log(&rt, dir.path());
    append(&rt, &log, first);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(store_dir.path()).expect("store"));
    let checkpoints = tempfile::tempdir().expect("tempdir");
    let config = PipelineConfig {
        workers: 2,
        checkpoint: Some(CheckpointConfig {
            dir: checkpoints.path().to_owned(),
            interval: Duration::from_secs(3600),
        }),
        ..PipelineConfig::default()
    };
    let one = run_with(&rt, &log, Some(Arc::clone(&store)), config.clone());
    assert_eq!(one.resumed_from_seq.load(Ordering::Relaxed), 0);
    // Only the one a clean stop takes (the interval is an hour).
    assert_eq!(one.checkpoints.load(Ordering::Relaxed), 1);
    let ends = rt.block_on(log.end_offsets(EVENTS_TOPIC)).expect("ends");

    append(&rt, &log, later);
    let two = run_with(&rt, &log, Some(Arc::clone(&store)), config.clone());
    assert!(two.resumed_from_seq.load(Ordering::Relaxed) > 0);
    let read = two.records_read.load(Ordering::Relaxed);
    let total: u64 = rt
        .block_on(log.end_offsets(EVENTS_TOPIC))
        .expect("ends")
        .iter()
        .sum();
    assert!(
        read <= total - ends.iter().sum::<u64>(),
        "read only what came after the checkpoint: {read} of {total}"
    );
    check_store(&rt, &log, store.as_ref());
    check_against_reference(
        &rt,
        &log,
        one.decisions_appended.load(Ordering::Relaxed)
            + two.decisions_appended.load(Ordering::Relaxed),
    );

    // The checkpoint directory lost (a new machine for process 0): the store's copy resumes.
    let documents = check_store(&rt, &log, store.as_ref());
    let resumed_at = two.resumed_from_seq.load(Ordering::Relaxed);
    std::fs::remove_dir_all(checkpoints.path()).expect("lose the checkpoint directory");
    let three = run_with(&rt, &log, Some(Arc::clone(&store)), config.clone());
    assert!(
        three.resumed_from_seq.load(Ordering::Relaxed) > resumed_at,
        "resumed from the store's copy of the last checkpoint"
    );
    assert_eq!(three.decisions_appended.load(Ordering::Relaxed), 0);
    assert_eq!(check_store(&rt, &log, store.as_ref()), documents);

    // A checkpoint that does not read back, in the file and in the store, is refused, and the
    // log replayed from the start.
    let mut bytes = rt
        .block_on(store.checkpoint())
        .expect("read")
        .expect("the store's copy");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    emporium_pipeline::checkpoint::write_bytes(checkpoints.path(), &bytes).expect("alter");
    // As a writer of its own: the runs before claimed the store, fencing the unclaimed writer.
    let claim = rt.block_on(store.claim_writer()).expect("claim the store");
    rt.block_on(store.put_checkpoint(&bytes, claim))
        .expect("alter the store's copy");
    // A new deployment, not a restart of the runs before (those would find themselves fenced
    // by the claim just taken).
    let config = PipelineConfig {
        claimed: Default::default(),
        ..config
    };
    let four = run_with(&rt, &log, Some(Arc::clone(&store)), config);
    assert_eq!(four.resumed_from_seq.load(Ordering::Relaxed), 0);
    assert_eq!(four.decisions_appended.load(Ordering::Relaxed), 0);
    assert_eq!(check_store(&rt, &log, store.as_ref()), documents);
}

/// Incremental checkpoints (issue 23, item 3): with a checkpoint every round, the head names a
/// chain of a full piece and deltas, the directory keeps exactly the pieces it names, and a
/// restart from that chain (the file's, then the store's) converges to the reference.
#[test]
fn a_restart_resumes_from_a_chain_of_deltas_and_converges_to_the_reference() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let events = shop_events(16_000);
    let (first, later) = events.split_at(10_000);
    let log = embedded_log(&rt, dir.path());
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(store_dir.path()).expect("store"));
    let checkpoints = tempfile::tempdir().expect("tempdir");
    let config = PipelineConfig {
        workers: 2,
        read_batch: 50,
        checkpoint: Some(CheckpointConfig {
            dir: checkpoints.path().to_owned(),
            interval: Duration::ZERO,
        }),
        ..PipelineConfig::default()
    };
    // A run ends with a clean stop's checkpoint, which starts a new chain when the deltas
    // since the last full piece outweigh it: then a short run more (it resumes from that chain,
    // starts one of its own and stops with a delta, all but always).
    let (first, extra) = first.split_at(9_100);
    append(&rt, &log, first);
    let mut extra = extra.chunks(300);
    let mut decisions = 0;
    let head = loop {
        let run = run_with(&rt, &log, Some(Arc::clone(&store)), config.clone());
        decisions += run.decisions_appended.load(Ordering::Relaxed);
        let written = run.checkpoints.load(Ordering::Relaxed);
        assert!(written >= 2, "{written} checkpoints written");
        let head = emporium_pipeline::checkpoint::read(checkpoints.path())
            .expect("read")
            .expect("a head");
        match extra.next() {
            Some(more) if head.pieces.len() < 2 => append(&rt, &log, more),
            _ => break head,
        }
    };
    for more in extra {
        append(&rt, &log, more);
    }
    assert!(
        head.pieces.len() >= 2,
        "a full piece and deltas: {:?}",
        head.pieces
    );
    let full = head.pieces[0].len;
    assert!(
        head.pieces[1..].iter().all(|p| p.len < full),
        "each delta is smaller than the full piece: {:?}",
        head.pieces
    );
    // The directory keeps the pieces the head names, no others.
    let mut files: Vec<String> = std::fs::read_dir(checkpoints.path().join("pieces"))
        .expect("pieces")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut named: Vec<String> = head.pieces.iter().map(|p| p.name.clone()).collect();
    named.sort();
    assert_eq!(files, named);
    // So does the store.
    for piece in &head.pieces {
        let bytes = rt
            .block_on(store.checkpoint_piece(&piece.name))
            .expect("read")
            .expect("the store keeps the piece");
        piece.check(&bytes, "store").expect("the same piece");
    }

    append(&rt, &log, later);
    let two = run_with(&rt, &log, Some(Arc::clone(&store)), config.clone());
    assert_eq!(two.resumed_from_seq.load(Ordering::Relaxed), head.seq);
    check_store(&rt, &log, store.as_ref());
    check_against_reference(
        &rt,
        &log,
        decisions + two.decisions_appended.load(Ordering::Relaxed),
    );
    // The pieces of run one's chain are gone from the store (run two started a chain of its own).
    assert_eq!(
        rt.block_on(store.checkpoint_piece(&head.pieces[0].name))
            .expect("read"),
        None
    );

    // The checkpoint directory lost: the store's chain resumes.
    let documents = check_store(&rt, &log, store.as_ref());
    let last = emporium_pipeline::checkpoint::read(checkpoints.path())
        .expect("read")
        .expect("a head");
    std::fs::remove_dir_all(checkpoints.path()).expect("lose the checkpoint directory");
    let three = run_with(&rt, &log, Some(Arc::clone(&store)), config.clone());
    assert_eq!(three.resumed_from_seq.load(Ordering::Relaxed), last.seq);
    assert_eq!(three.decisions_appended.load(Ordering::Relaxed), 0);
    assert_eq!(check_store(&rt, &log, store.as_ref()), documents);
}

/// A quiet shop: one order, its product and stock, on 2 of 4 partitions, then nothing. Without
/// heartbeats the empty partitions hold the watermark and the order is never decided; with them
/// it is, within seconds, and the decision is the reference's over the log (heartbeats included).
#[test]
fn heartbeats_to_idle_partitions_let_a_quiet_shops_order_be_decided() {
    let rt = runtime();
    let records: Vec<Record> = quiet_shop().iter().map(record_of).collect();
    let decided = |log: &Arc<dyn EventLog>| {
        let (_, decisions) = split_log(&rt, log);
        decisions
            .iter()
            .filter(|e| e.kind() == EventKind::InventoryReserved)
            .count()
    };
    for heartbeats in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log: Arc<dyn EventLog> =
            Arc::new(EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open"));
        rt.block_on(log.ensure_topic(EVENTS_TOPIC, PARTITIONS))
            .expect("topic");
        append(&rt, &log, &records);
        let config = PipelineConfig {
            idle_heartbeat: heartbeats.then(|| Duration::from_millis(100)),
            heartbeat_grace: Duration::from_millis(300),
            ..PipelineConfig::default()
        };
        let pipeline = RunningPipeline::start(Arc::clone(&log), None, rt.handle().clone(), config)
            .expect("start");
        let deadline = Instant::now() + Duration::from_secs(if heartbeats { 30 } else { 3 });
        while decided(&log) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let stats = Arc::clone(&pipeline.stats);
        pipeline.stop().expect("pipeline");
        let sent = stats.heartbeats.load(Ordering::Relaxed);
        if !heartbeats {
            assert_eq!(decided(&log), 0, "idle partitions hold the order back");
            assert_eq!(sent, 0);
            continue;
        }
        assert_eq!(decided(&log), 1, "the order is decided once");
        assert!(sent >= 2, "heartbeats went to the idle partitions: {sent}");
        let (partitions, _) = split_log(&rt, &log);
        let beats: usize = partitions
            .iter()
            .flatten()
            .filter(|e| e.kind() == EventKind::PartitionHeartbeat)
            .count();
        assert_eq!(beats as u64, sent, "every heartbeat is in the log");
        let (partitions, decisions) = split_log(&rt, &log);
        let config = PipelineConfig::default();
        let (reference, _) = decide_all(&partitions, config.allowed_lateness, config.inventory);
        let reference: Vec<Vec<u8>> = decision_events(reference).map(|e| e.to_json()).collect();
        let got: Vec<Vec<u8>> = decisions.iter().map(Event::to_json).collect();
        assert_eq!(got, reference, "the decision is the reference's");
    }
}

/// Retention removed the beginning of the log. With no checkpoint, and with a checkpoint older
/// than the log's start, the pipeline refuses to decide on the rest (it would answer differently
/// from the full history) and says so, naming the partition and offsets; nothing is appended.
#[test]
fn a_log_whose_beginning_retention_removed_is_never_decided_on() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> = Arc::new(
        EmbeddedLog::open(EmbeddedConfig {
            segment_bytes: 64 * 1024,
            retention: None,
            retention_bytes: Some(256 * 1024),
            ..EmbeddedConfig::in_dir(dir.path())
        })
        .expect("open"),
    );
    rt.block_on(log.ensure_topic(EVENTS_TOPIC, PARTITIONS))
        .expect("topic");
    let events = shop_events(12_000);
    let (first, later) = events.split_at(1_000);
    append(&rt, &log, first);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(store_dir.path()).expect("store"));
    let checkpoints = tempfile::tempdir().expect("tempdir");
    let config = PipelineConfig {
        checkpoint: Some(CheckpointConfig {
            dir: checkpoints.path().to_owned(),
            interval: Duration::from_secs(3600),
        }),
        ..PipelineConfig::default()
    };
    // A checkpoint over the first events, while the log still holds them.
    let one = run_with(&rt, &log, Some(Arc::clone(&store)), config.clone());
    assert_eq!(one.checkpoints.load(Ordering::Relaxed), 1);
    append(&rt, &log, later);
    let starts = rt
        .block_on(log.start_offsets(EVENTS_TOPIC))
        .expect("starts");
    assert!(
        starts.iter().all(|&s| s > 0),
        "retention removed the beginning: {starts:?}"
    );
    let ends = rt.block_on(log.end_offsets(EVENTS_TOPIC)).expect("ends");

    let refused = |config: PipelineConfig, store: Option<Arc<dyn Store>>, what: &str| {
        let stats = Arc::new(PipelineStats::default());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let result = emporium_pipeline::run(
            Arc::clone(&log),
            store,
            rt.handle().clone(),
            config,
            Arc::clone(&stats),
            stop,
        );
        match result {
            Err(e @ emporium_pipeline::PipelineError::Gap { .. }) => {
                let message = e.to_string();
                assert!(message.contains(what), "{message}");
                assert!(message.contains("no longer in the log"), "{message}");
                assert!(
                    message.contains("When the log no longer holds"),
                    "{message}"
                );
            }
            other => panic!("expected a refusal to {what}, got {other:?}"),
        }
        assert_eq!(stats.decisions_appended.load(Ordering::Relaxed), 0);
    };
    refused(
        config.clone(),
        Some(Arc::clone(&store)),
        "resume from the checkpoint",
    );
    refused(
        PipelineConfig::default(),
        None,
        "replay the log from the start",
    );
    assert_eq!(
        rt.block_on(log.end_offsets(EVENTS_TOPIC)).expect("ends"),
        ends,
        "nothing appended"
    );
}

/// A store that refuses every write while `broken` (a ScyllaDB that times out, a full disk).
struct Breakable {
    inner: EmbeddedStore,
    broken: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Store for Breakable {
    fn describe(&self) -> String {
        format!("breakable {}", self.inner.describe())
    }
    async fn apply(&self, batch: emporium_serving::views::WriteBatch) -> StoreResult<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(emporium_serving::store::StoreError::Embedded(
                "the disk is full (test)".into(),
            ));
        }
        self.inner.apply(batch).await
    }
    async fn positions(&self) -> StoreResult<Option<Vec<u64>>> {
        self.inner.positions().await
    }
    async fn product(&self, id: &str) -> StoreResult<Option<emporium_serving::store::Document>> {
        self.inner.product(id).await
    }
    async fn inventory(&self, sku: &str) -> StoreResult<Option<emporium_serving::store::Document>> {
        self.inner.inventory(sku).await
    }
    async fn scan_products(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, emporium_serving::store::Document)>> {
        self.inner.scan_products(after, limit).await
    }
    async fn scan_view(
        &self,
        view: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, emporium_serving::store::Document)>> {
        self.inner.scan_view(view, after, limit).await
    }
    async fn scan_inventory(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, emporium_serving::store::Document)>> {
        self.inner.scan_inventory(after, limit).await
    }
    async fn order(&self, id: &str) -> StoreResult<Option<emporium_serving::store::OrderDocument>> {
        self.inner.order(id).await
    }
    async fn view(
        &self,
        view: &str,
        key: &str,
    ) -> StoreResult<Option<emporium_serving::store::Document>> {
        self.inner.view(view, key).await
    }
    async fn claim_writer(&self) -> StoreResult<u64> {
        self.inner.claim_writer().await
    }
    async fn writer_claim(&self) -> StoreResult<u64> {
        self.inner.writer_claim().await
    }
    async fn put_checkpoint(&self, bytes: &[u8], writer: u64) -> StoreResult<()> {
        self.inner.put_checkpoint(bytes, writer).await
    }
    async fn checkpoint(&self) -> StoreResult<Option<Vec<u8>>> {
        self.inner.checkpoint().await
    }
    async fn put_checkpoint_piece(&self, name: &str, bytes: &[u8], writer: u64) -> StoreResult<()> {
        self.inner.put_checkpoint_piece(name, bytes, writer).await
    }
    async fn checkpoint_piece(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.checkpoint_piece(name).await
    }
    async fn delete_checkpoint_pieces_except(
        &self,
        keep: &[String],
        writer: u64,
    ) -> StoreResult<()> {
        self.inner
            .delete_checkpoint_pieces_except(keep, writer)
            .await
    }
    async fn user_orders(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<emporium_serving::store::OrderPage> {
        self.inner.user_orders(user, after, limit).await
    }
}

/// The pipeline as a supervised part (`emporium run` does the same, with a time limit on stop).
struct Supervised(RunningPipeline);

#[async_trait::async_trait]
impl emporium_ops::supervisor::Part for Supervised {
    async fn ended(&self) {
        self.0.ended().await
    }
    async fn stop(self: Box<Self>) -> anyhow::Result<()> {
        let pipeline = self.0;
        Ok(tokio::task::spawn_blocking(move || pipeline.stop()).await??)
    }
}

/// The store refuses writes mid-run: the dataflow stops, is reported down and is started again
/// with backoff, from its checkpoint, until the store takes writes again; then it catches up, and
/// the store and the log's decisions are exactly the reference's (nothing lost, nothing twice).
#[test]
fn a_dataflow_stopped_by_store_failures_restarts_from_its_checkpoint_and_converges() {
    use emporium_ops::supervisor::{Backoff, Health, Part, supervise};

    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let events = shop_events(14_000);
    let log = shop_log(&rt, dir.path(), 0);
    append(&rt, &log, &events[..8_000]);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Breakable {
        inner: EmbeddedStore::open(store_dir.path()).expect("store"),
        broken: std::sync::atomic::AtomicBool::new(false),
    });
    let checkpoints = tempfile::tempdir().expect("tempdir");
    let config = PipelineConfig {
        workers: 2,
        checkpoint: Some(CheckpointConfig {
            dir: checkpoints.path().to_owned(),
            interval: Duration::from_millis(200),
        }),
        ..PipelineConfig::default()
    };
    let health = Arc::new(Health::new("dataflow"));
    let cancel = emporium_ops::CancellationToken::new();
    let runs: Arc<std::sync::Mutex<Vec<Arc<PipelineStats>>>> = Arc::default();
    let supervisor = {
        let (log, store, health, cancel, runs) = (
            Arc::clone(&log),
            Arc::clone(&store),
            Arc::clone(&health),
            cancel.clone(),
            Arc::clone(&runs),
        );
        let handle = rt.handle().clone();
        let backoff = Backoff {
            first: Duration::from_millis(50),
            max: Duration::from_millis(400),
            reset_after: Duration::from_secs(60),
        };
        rt.spawn(async move {
            supervise(&health, &cancel, &backoff, || {
                let pipeline = RunningPipeline::start(
                    Arc::clone(&log),
                    Some(Arc::clone(&store) as Arc<dyn Store>),
                    handle.clone(),
                    config.clone(),
                )
                .map_err(anyhow::Error::from)
                .map(|p| {
                    runs.lock().expect("runs").push(Arc::clone(&p.stats));
                    Box::new(Supervised(p)) as Box<dyn Part>
                });
                std::future::ready(pipeline)
            })
            .await
        })
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let written = || {
        rt.block_on(store.positions())
            .expect("positions")
            .is_some_and(|p| p.iter().sum::<u64>() > 0)
    };
    wait("the first documents", &written);
    wait("a checkpoint", &|| {
        runs.lock().expect("runs")[0]
            .checkpoints
            .load(Ordering::Relaxed)
            > 0
    });
    store.broken.store(true, Ordering::SeqCst);
    append(&rt, &log, &events[8_000..]);
    wait("the dataflow reported down", &|| {
        health
            .down()
            .is_some_and(|why| why.contains("disk is full"))
    });
    // Down for a while: several attempts fail the same way.
    wait("restarts", &|| runs.lock().expect("runs").len() >= 3);
    store.broken.store(false, Ordering::SeqCst);
    let caught_up = || {
        let ends = rt.block_on(log.end_offsets(EVENTS_TOPIC)).expect("ends");
        health.down().is_none()
            && rt
                .block_on(store.positions())
                .expect("positions")
                .as_deref()
                == Some(&ends[..])
    };
    wait("catching up after the repair", &caught_up);
    std::thread::sleep(Duration::from_millis(500));
    wait("catching up with its own decisions", &caught_up);
    cancel.cancel();
    rt.block_on(supervisor)
        .expect("joined")
        .expect("a clean stop");

    let runs = runs.lock().expect("runs").clone();
    assert!(
        runs.iter()
            .skip(1)
            .any(|s| s.resumed_from_seq.load(Ordering::Relaxed) > 0),
        "a restart resumed from a checkpoint"
    );
    check_store(&rt, &log, &store.inner);
    check_against_reference(
        &rt,
        &log,
        runs.iter()
            .map(|s| s.decisions_appended.load(Ordering::Relaxed))
            .sum(),
    );
}

/// A quiet shop, now: a product, its stock and one order of it (on 2 of the 4 partitions).
fn quiet_shop() -> Vec<Event> {
    quiet_shop_at(chrono::Utc::now())
}

/// [`quiet_shop`] with its events from `now` on.
fn quiet_shop_at(now: chrono::DateTime<chrono::Utc>) -> Vec<Event> {
    use emporium_schemas::examples::example;
    [
        EventKind::ProductUpserted,
        EventKind::StockReceived,
        EventKind::OrderPlaced,
    ]
    .into_iter()
    .enumerate()
    .map(|(n, kind)| {
        let mut e = example(kind, n as u64);
        e.occurred_at = now + chrono::Duration::milliseconds(n as i64);
        e
    })
    .collect()
}

/// A record of `event`, keyed as the log keys it.
fn record_of(event: &Event) -> Record {
    Record::new(event.partition_key().as_bytes().to_vec(), event.to_json())
}

/// An order's status and its last transition, in the store.
fn order_status(
    rt: &tokio::runtime::Runtime,
    store: &dyn Store,
    id: &str,
) -> Option<(String, String)> {
    let doc = rt.block_on(store.order(id)).expect("read")?;
    let v: serde_json::Value = serde_json::from_slice(&doc.json).expect("json");
    let last = v["history"].as_array()?.last()?.clone();
    Some((
        v["status"].as_str()?.to_owned(),
        last["at"].as_str()?.to_owned(),
    ))
}

/// Traffic stops with a reservation open, and the process restarts (from its checkpoint, so it
/// reads no record): heartbeats still move time once the start's grace has passed, and the
/// reservation expires at its deadline. Before, a restart that read nothing never sent one.
#[test]
fn a_restart_after_traffic_stopped_still_expires_open_reservations() {
    let rt = runtime();
    let events = quiet_shop();
    let Payload::OrderPlaced(order) = &events[2].payload else {
        panic!("an order");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let log = shop_log(&rt, dir.path(), 0);
    append(&rt, &log, &events.iter().map(record_of).collect::<Vec<_>>());
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(store_dir.path()).expect("store"));
    let checkpoints = tempfile::tempdir().expect("tempdir");
    let ttl = chrono::Duration::seconds(4);
    let mut config = PipelineConfig {
        idle_heartbeat: Some(Duration::from_millis(100)),
        heartbeat_grace: Duration::from_millis(300),
        checkpoint: Some(CheckpointConfig {
            dir: checkpoints.path().to_owned(),
            interval: Duration::from_secs(3600),
        }),
        ..PipelineConfig::default()
    };
    config.inventory.reservation_ttl = ttl;
    let wait_for = |status: &str, within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            let got = order_status(&rt, store.as_ref(), &order.order_id);
            if got.as_ref().is_some_and(|(s, _)| s == status) {
                return got.expect("status").1;
            }
            assert!(Instant::now() < deadline, "never {status}: {got:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let one = RunningPipeline::start(
        Arc::clone(&log),
        Some(Arc::clone(&store)),
        rt.handle().clone(),
        config.clone(),
    )
    .expect("start");
    wait_for("reserved", Duration::from_secs(3));
    one.stop().expect("a clean stop checkpoints");

    let two = RunningPipeline::start(
        Arc::clone(&log),
        Some(Arc::clone(&store)),
        rt.handle().clone(),
        config,
    )
    .expect("restart");
    let expired_at = wait_for("expired", Duration::from_secs(30));
    let read = two.stats.records_read.load(Ordering::Relaxed);
    two.stop().expect("stop");
    let deadline =
        (events[2].occurred_at + ttl).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        expired_at, deadline,
        "expired at its deadline, in event time"
    );
    assert!(
        read > 0,
        "read only what it appended itself (heartbeats, the release)"
    );
}

/// A process killed while producers are sending restarts; the producers, backing off, resend a
/// few seconds later the events they made during the outage, at the times they occurred. Within
/// the start's grace no heartbeat moves a partition's clock past them: none is late, and the
/// decisions are those of the log without any heartbeat (as an uninterrupted run decides).
#[test]
fn events_resent_after_a_restart_are_not_made_late_by_heartbeats() {
    use emporium_schemas::Money;
    use emporium_schemas::orders::{OrderLine, OrderPlaced};
    use emporium_schemas::stock::StockReceived;
    let order = |i: usize, at: chrono::DateTime<chrono::Utc>| {
        Event::new(
            uuid::Uuid::new_v4(),
            at,
            OrderPlaced {
                order_id: format!("o-{i}"),
                user_id: "u-1".into(),
                lines: vec![OrderLine {
                    sku: "sku-1".into(),
                    qty: 1,
                    unit_price: Money::new(100, "USD"),
                }],
                shipping_region: "eu-west".into(),
                payment_token: "tok_abc".into(),
            },
        )
    };
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = shop_log(&rt, dir.path(), 0);
    // Stock, and orders on every partition, made a moment ago and appended now.
    let t0 = chrono::Utc::now() - chrono::Duration::milliseconds(200);
    let mut first = vec![Event::new(
        uuid::Uuid::new_v4(),
        t0,
        StockReceived {
            sku: "sku-1".into(),
            warehouse: "wh-1".into(),
            quantity: 1_000,
            reason: "po".into(),
        },
    )];
    first.extend((0..40).map(|i| order(i, t0 + chrono::Duration::milliseconds(i as i64))));
    append(&rt, &log, &first.iter().map(record_of).collect::<Vec<_>>());
    let config = PipelineConfig {
        idle_heartbeat: Some(Duration::from_millis(100)),
        heartbeat_grace: Duration::from_secs(4),
        // No checkpoint: the restart replays, as after a kill -9 before the first checkpoint.
        checkpoint: None,
        ..PipelineConfig::default()
    };
    let one = run_with(&rt, &log, None, config.clone());
    // Down for a second and a half; producers keep making orders and back off.
    let outage = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(1_500));
    let resent: Vec<Event> = (40..80)
        .map(|i| order(i, outage + chrono::Duration::milliseconds(i as i64)))
        .collect();
    let two = RunningPipeline::start(Arc::clone(&log), None, rt.handle().clone(), config.clone())
        .expect("restart");
    // The producers' back-off ends a second after the restart.
    std::thread::sleep(Duration::from_secs(1));
    append(&rt, &log, &resent.iter().map(record_of).collect::<Vec<_>>());
    let ends = rt.block_on(log.end_offsets(EVENTS_TOPIC)).expect("ends");
    let deadline = Instant::now() + Duration::from_secs(60);
    while {
        let read = two.stats.read_positions.lock().expect("positions").clone();
        read.iter().zip(&ends).any(|(r, e)| r < e)
    } {
        assert!(Instant::now() < deadline, "the restart did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Once the grace has passed, heartbeats let everything be decided (the last orders are
    // held back by the allowed lateness until then).
    while two.stats.decisions_appended.load(Ordering::Relaxed) < 80 {
        assert!(
            Instant::now() < deadline,
            "not every order decided: {}",
            two.stats.decisions_appended.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let late = two.stats.late_events.load(Ordering::Relaxed);
    let appended = two.stats.decisions_appended.load(Ordering::Relaxed);
    two.stop().expect("stop");
    assert_eq!(late, 0, "no resent event was made late");
    let (partitions, decisions) = split_log(&rt, &log);
    let without_heartbeats: Vec<Vec<Event>> = partitions
        .iter()
        .map(|p| {
            p.iter()
                .filter(|e| e.kind() != EventKind::PartitionHeartbeat)
                .cloned()
                .collect()
        })
        .collect();
    let defaults = PipelineConfig::default();
    let (reference, _) = decide_all(
        &without_heartbeats,
        defaults.allowed_lateness,
        defaults.inventory,
    );
    let text = |e: Event| String::from_utf8(e.to_json()).expect("utf-8");
    let reference: Vec<String> = decision_events(reference).map(text).collect();
    // The log holds them partition by partition: as sets, the reference's first n.
    let got: BTreeSet<String> = decisions.into_iter().map(text).collect();
    let n = got.len();
    assert_eq!(n, 80, "every order decided once the grace passed");
    let want: BTreeSet<String> = reference.into_iter().take(n).collect();
    let differ: Vec<&String> = got.symmetric_difference(&want).take(2).collect();
    assert!(
        differ.is_empty(),
        "the decisions are not those of the log without heartbeats: {differ:?}"
    );
    assert_eq!(
        one.decisions_appended.load(Ordering::Relaxed) + appended,
        n as u64
    );
}

/// The decision events in the log, as (type, order id), in log order per partition.
fn decisions_in(rt: &tokio::runtime::Runtime, log: &Arc<dyn EventLog>) -> Vec<(String, String)> {
    split_log(rt, log)
        .1
        .into_iter()
        .map(|e| (e.kind().to_string(), e.partition_key().to_owned()))
        .collect()
}

/// Two deciders over one log and store, as in an overlapping redeploy with another reservation
/// TTL. The second claims the writer role: the first is fenced (it stops with that error, and
/// appends and writes nothing more); the second's different answer for an order the first had
/// already decided is not appended (the log's answer stands); no decision is in the log twice.
/// Before fencing, both appended every new decision, and the order got both answers.
#[test]
fn a_second_decider_fences_the_first_and_no_order_gets_two_answers() {
    use emporium_schemas::examples::example;
    let rt = runtime();
    // 100 in stock; o-1 takes 2 at t, o-2 wants 99 at t + 2 min: rejected while o-1's
    // reservation holds (TTL 15 min), reserved once it has expired (TTL 1 min).
    let t = chrono::Utc::now() - chrono::Duration::minutes(10);
    let mut events = quiet_shop_at(t);
    let order = |id: &str, qty: u32, at: chrono::DateTime<chrono::Utc>, n: u64| {
        let mut e = example(EventKind::OrderPlaced, n);
        let Payload::OrderPlaced(o) = &mut e.payload else {
            panic!("an order");
        };
        o.order_id = id.into();
        o.lines[0].qty = i64::from(qty);
        e.occurred_at = at;
        e
    };
    events.push(order("o-2", 99, t + chrono::Duration::minutes(2), 10));
    let dir = tempfile::tempdir().expect("tempdir");
    let log = shop_log(&rt, dir.path(), 0);
    append(&rt, &log, &events.iter().map(record_of).collect::<Vec<_>>());
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(store_dir.path()).expect("store"));
    let config = |ttl_minutes: i64| {
        let mut config = PipelineConfig {
            idle_heartbeat: Some(Duration::from_millis(100)),
            heartbeat_grace: Duration::from_millis(200),
            ..PipelineConfig::default()
        };
        config.inventory.reservation_ttl = chrono::Duration::minutes(ttl_minutes);
        config
    };
    let wait_for = |what: &str, decision: (&str, &str)| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let want = (decision.0.to_owned(), decision.1.to_owned());
        while !decisions_in(&rt, &log).contains(&want) {
            assert!(Instant::now() < deadline, "{what}: never {decision:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let first_config = config(15);
    let first = RunningPipeline::start(
        Arc::clone(&log),
        Some(Arc::clone(&store)),
        rt.handle().clone(),
        first_config.clone(),
    )
    .expect("start the first");
    wait_for("the first decider", ("order_rejected", "o-2"));

    let second = RunningPipeline::start(
        Arc::clone(&log),
        Some(Arc::clone(&store)),
        rt.handle().clone(),
        config(1),
    )
    .expect("start the second");
    // o-1's reservation expires under the second's TTL: its release is new, and o-2's
    // reservation conflicts with the rejection in the log.
    wait_for("the second decider", ("reservation_released", "o-1"));
    // A new order: both would decide it.
    let o3 = order("o-3", 1, chrono::Utc::now(), 11);
    append(&rt, &log, &[record_of(&o3)]);
    wait_for("the second decider", ("inventory_reserved", "o-3"));

    let deadline = Instant::now() + Duration::from_secs(30);
    while !first.stats.failed.load(Ordering::Relaxed) {
        assert!(Instant::now() < deadline, "the first decider never noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let fenced = first.stop().expect_err("the first decider is fenced");
    assert!(fenced.is_fenced(), "stopped as fenced: {fenced}");
    assert!(fenced.to_string().contains("fenced"), "says so: {fenced}");
    // Restarted (as a supervisor would after any error), it finds the newer claim and stops
    // again rather than take the role back.
    let restarted = RunningPipeline::start(
        Arc::clone(&log),
        Some(Arc::clone(&store)),
        rt.handle().clone(),
        first_config,
    )
    .expect("restart the first");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !restarted.stats.failed.load(Ordering::Relaxed) {
        assert!(Instant::now() < deadline, "the restart went on deciding");
        std::thread::sleep(Duration::from_millis(20));
    }
    let restart = restarted
        .stop()
        .expect_err("the restart finds itself fenced");
    assert!(restart.is_fenced(), "{restart}");
    // Settle, so anything either appended late is in the log.
    std::thread::sleep(Duration::from_millis(500));
    let conflicts = second.stats.decisions_conflicting.load(Ordering::Relaxed);
    second.stop().expect("the second stops cleanly");

    let decisions = decisions_in(&rt, &log);
    let mut seen = BTreeSet::new();
    for d in &decisions {
        assert!(
            seen.insert(d.clone()),
            "{d:?} appended twice: {decisions:?}"
        );
    }
    for (kind, id) in &decisions {
        if kind == "inventory_reserved" {
            assert!(
                !seen.contains(&("order_rejected".to_owned(), id.clone())),
                "{id} both reserved and rejected: {decisions:?}"
            );
        }
    }
    assert!(seen.contains(&("order_rejected".to_owned(), "o-2".to_owned())));
    assert!(
        !seen.contains(&("reservation_released".to_owned(), "o-2".to_owned())),
        "no release of a reservation the log never held: {decisions:?}"
    );
    assert_eq!(
        conflicts, 2,
        "o-2's reservation (under the 1 min TTL) and its release were not appended"
    );
}

/// The search index holds exactly the store's search documents with the store's popularity,
/// and the store's products' availability; its last commit reflects the store's positions.
fn check_search(
    rt: &tokio::runtime::Runtime,
    store: &dyn Store,
    index: &emporium_search::SearchIndex,
) -> u64 {
    use emporium_pipeline::search::{POPULARITY_VIEW, SEARCH_VIEW, SearchPosition, in_stock};
    let mut listed = 0u64;
    let mut after: Option<String> = None;
    loop {
        let page = rt
            .block_on(store.scan_view(SEARCH_VIEW, after.as_deref(), 100))
            .expect("scan");
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (key, doc) in page {
            let indexed = index.get(&key).expect("get");
            if doc.json.as_ref() == b"null" {
                assert_eq!(indexed, None, "{key} left the view");
            } else {
                let mut stored: emporium_search::SearchDocument =
                    serde_json::from_slice(&doc.json).expect("a search document");
                // Its popularity is the popularity view's.
                let popularity = rt
                    .block_on(store.view(POPULARITY_VIEW, &key))
                    .expect("read")
                    .map(|d| serde_json::from_slice::<serde_json::Value>(&d.json).expect("json"));
                stored.popularity = popularity
                    .and_then(|p| p["popularity"].as_f64())
                    .unwrap_or(0.0);
                assert_eq!(indexed.as_ref(), Some(&stored), "{key}");
                listed += 1;
            }
        }
    }
    assert_eq!(index.stats().documents, listed, "nothing else in the index");
    let products = rt
        .block_on(store.scan_products(None, 100_000))
        .expect("scan");
    assert!(!products.is_empty());
    for (id, doc) in products {
        let product: ProductView = serde_json::from_slice(&doc.json).expect("a product");
        assert_eq!(
            index.availability().in_stock(&id),
            in_stock(&product),
            "{id}: availability of {}",
            String::from_utf8_lossy(&doc.json)
        );
    }
    let at = SearchPosition::of(index).expect("committed");
    assert_eq!(
        Some(at.positions),
        rt.block_on(store.positions()).expect("positions"),
        "the index's commit reflects what the store holds"
    );
    listed
}

/// Search (issue 24, ADR 0013): the pipeline feeds the index what it writes to the store; a
/// restart resumes the index from its commit (no rebuild) and converges; an index deleted
/// while the pipeline was down is rebuilt from the store to the same documents.
#[test]
fn the_search_index_follows_the_store_across_a_restart_and_a_deleted_index() {
    use emporium_pipeline::search::SearchSink;
    use emporium_search::SearchIndex;
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let events = shop_events(16_000);
    let (first, later) = events.split_at(10_000);
    let log = embedded_log(&rt, dir.path());
    append(&rt, &log, first);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(store_dir.path()).expect("store"));
    let checkpoints = tempfile::tempdir().expect("tempdir");
    let search_dir = tempfile::tempdir().expect("tempdir");
    let search_path = search_dir.path().join("search");
    // A run with the index opened from its directory (and closed after: one writer at a time).
    let run = |store: &Arc<dyn Store>| {
        let index = Arc::new(SearchIndex::open(&search_path).expect("open the index"));
        let config = PipelineConfig {
            workers: 2,
            checkpoint: Some(CheckpointConfig {
                dir: checkpoints.path().to_owned(),
                interval: Duration::from_millis(200),
            }),
            search: Some(SearchSink {
                index: Arc::clone(&index),
                refresh: Duration::from_millis(50),
            }),
            ..PipelineConfig::default()
        };
        let stats = run_with(&rt, &log, Some(Arc::clone(store)), config);
        (stats, index)
    };
    let (one, index) = run(&store);
    assert!(!one.search_rebuilt.load(Ordering::Relaxed), "a new index");
    assert!(one.search_commits.load(Ordering::Relaxed) > 0);
    let listed = check_search(&rt, store.as_ref(), &index);
    assert!(listed > 100, "{listed} products listed");
    drop(index);

    append(&rt, &log, later);
    let (two, index) = run(&store);
    assert!(two.resumed_from_seq.load(Ordering::Relaxed) > 0);
    assert!(
        !two.search_rebuilt.load(Ordering::Relaxed),
        "the index was at or past the checkpoint: resumed, not rebuilt"
    );
    let listed = check_search(&rt, store.as_ref(), &index);
    // A shopper finds an in-stock product by its title with a letter dropped, and a query for
    // in-stock products only returns those the store says are in stock.
    let products = rt
        .block_on(store.scan_products(None, 100_000))
        .expect("scan");
    let (id, title) = products
        .iter()
        .filter_map(|(id, doc)| {
            let p: ProductView = serde_json::from_slice(&doc.json).ok()?;
            emporium_pipeline::search::in_stock(&p).then_some((id.clone(), p.title))
        })
        .find(|(_, title)| title.split(' ').any(|w| w.len() >= 6))
        .expect("an in-stock product with a long word in its title");
    let misspelt: Vec<String> = title
        .split(' ')
        .map(|w| match w.len() >= 6 {
            true => format!("{}{}", &w[..2], &w[3..]),
            false => w.to_owned(),
        })
        .collect();
    let found = index
        .search(&emporium_search::SearchRequest {
            q: Some(misspelt.join(" ")),
            in_stock: Some(true),
            ..Default::default()
        })
        .expect("search");
    assert!(
        found.hits.iter().take(3).any(|h| h.product_id == id),
        "{title:?} misspelt as {misspelt:?}: {:?}",
        found.hits.iter().map(|h| &h.title).collect::<Vec<_>>()
    );
    assert!(found.hits.iter().all(|h| h.in_stock));
    drop(index);

    std::fs::remove_dir_all(&search_path).expect("delete the index");
    let (three, index) = run(&store);
    assert!(
        three.search_rebuilt.load(Ordering::Relaxed),
        "rebuilt from the store"
    );
    assert_eq!(check_search(&rt, store.as_ref(), &index), listed);
    drop(index);

    // The index kept while the store is replaced by an empty one (a new keyspace): its commit
    // is ahead of the new store's positions, so it is rebuilt (to nothing), then fed again.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other: Arc<dyn Store> = Arc::new(EmbeddedStore::open(other_dir.path()).expect("store"));
    std::fs::remove_dir_all(checkpoints.path()).expect("no checkpoint of the new store");
    let (four, index) = run(&other);
    assert!(
        four.search_rebuilt.load(Ordering::Relaxed),
        "an index of another store is not kept"
    );
    assert_eq!(check_search(&rt, other.as_ref(), &index), listed);
}

/// An index kept at start (not behind) holds each product's values as of its last re-index; the
/// store's search documents and popularity are newer (values change without a re-index: ADR
/// 0013, 0014). `prepare` sets the live values from the store, and leaves the indexed text alone.
#[test]
fn a_kept_index_takes_its_live_values_from_the_store_at_start() {
    use emporium_pipeline::search::{POPULARITY_VIEW, SEARCH_VIEW, SearchPosition, prepare};
    use emporium_search::{SearchDocument, SearchIndex, SearchRequest};
    use emporium_serving::views::WriteBatch;
    let rt = runtime();
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(store_dir.path()).expect("store");
    let listed = |price_minor: i64, popularity: f64| SearchDocument {
        product_id: "p-1".into(),
        title: "Brass reading lamp".into(),
        brand: "Lumina".into(),
        category_path: vec!["Home".into(), "Lighting".into()],
        description: "A lamp".into(),
        price_minor,
        currency: "USD".into(),
        reviews: 0,
        mean_rating: 0.0,
        popularity,
        listed_ms: 1,
    };
    // What the store holds: the newer values (popularity in a view of its own).
    rt.block_on(store.apply(WriteBatch {
        upserts: vec![
            Upsert::View {
                view: SEARCH_VIEW.into(),
                key: "p-1".into(),
                seq: 9,
                json: serde_json::to_vec(&listed(1_999, 0.0)).expect("json").into(),
            },
            Upsert::View {
                view: POPULARITY_VIEW.into(),
                key: "p-1".into(),
                seq: 8,
                json: br#"{"product_id":"p-1","popularity":5.5}"#.to_vec().into(),
            },
        ],
        positions: vec![12],
        seq: 9,
        writer: 0,
    }))
    .expect("write");
    // The index, committed at the same position with the values of an earlier re-index.
    let index_dir = tempfile::tempdir().expect("tempdir");
    {
        let index = SearchIndex::open(index_dir.path()).expect("open");
        index.upsert(&listed(4_999, 3.0)).expect("upsert");
        let at = SearchPosition {
            seq: 9,
            positions: vec![12],
        };
        index
            .commit(&serde_json::to_string(&at).expect("json"))
            .expect("commit");
    }
    let index = SearchIndex::open(index_dir.path()).expect("reopen");
    assert_eq!(
        index.values("p-1").map(|v| (v.price_minor, v.popularity)),
        Some((4_999, 3.0))
    );
    let prepared = prepare(&index, &store, rt.handle(), 9, &mut |_| {}).expect("prepare");
    assert!(!prepared.rebuilt, "at the checkpoint: kept");
    let values = index.values("p-1").expect("values");
    assert_eq!((values.price_minor, values.popularity), (1_999, 5.5));
    let found = index
        .search(&SearchRequest {
            q: Some("lamp".into()),
            price_max: Some(2_000),
            ..SearchRequest::default()
        })
        .expect("search");
    assert_eq!(found.hits.len(), 1, "the live price filters");
    assert_eq!(found.hits[0].price_minor, 1_999);
}
