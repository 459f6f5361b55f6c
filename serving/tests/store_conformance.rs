//! One conformance suite for every store backend: the embedded store always, ScyllaDB when
//! `EMPORIUM_SCYLLA_URI` names a node (skipped, saying so, otherwise). A backend that passes is
//! interchangeable with the others: idempotent upserts by seq, positions after documents, users'
//! orders newest first with stable cursors.

use chrono::{DateTime, TimeZone, Utc};
use emporium_schemas::money::Money;
use emporium_schemas::orders::OrderLine;
use emporium_serving::store::embedded::EmbeddedStore;
use emporium_serving::store::scylla::{ScyllaConfig, ScyllaStore};
use emporium_serving::store::{Store, StoreError};
use emporium_serving::views::{
    InventoryView, OrderStatus, OrderView, ProductView, SkuAvailability, Transition, Upsert,
    WarehouseStock, WriteBatch,
};

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_600 + s, 0)
        .single()
        .expect("valid")
}

fn order(id: &str, user: &str, placed: i64, status: OrderStatus) -> OrderView {
    let mut history = vec![Transition {
        status: OrderStatus::Placed,
        at: t(placed),
    }];
    if status != OrderStatus::Placed {
        history.push(Transition {
            status,
            at: t(placed + 1),
        });
    }
    OrderView {
        order_id: id.into(),
        user_id: user.into(),
        lines: vec![OrderLine {
            sku: "sku-1".into(),
            qty: 2,
            unit_price: Money::new(1_250, "EUR"),
        }],
        status,
        history,
    }
}

fn product(title: &str, available: i64) -> ProductView {
    ProductView {
        product_id: "p-1".into(),
        title: title.into(),
        brand: "Acme".into(),
        category_path: vec!["Home".into(), "Kitchen".into()],
        price: Money::new(1_250, "EUR"),
        discontinued: false,
        available,
        skus: vec![SkuAvailability {
            sku: "sku-1".into(),
            available,
        }],
    }
}

fn stock(on_hand: i64, reserved: i64) -> InventoryView {
    InventoryView::new(
        "sku-1".into(),
        vec![WarehouseStock {
            warehouse: "w-1".into(),
            on_hand,
            reserved,
            available: on_hand - reserved,
        }],
    )
}

fn batch(seq: u64, positions: Vec<u64>, upserts: Vec<Upsert>) -> WriteBatch {
    WriteBatch {
        upserts,
        positions,
        seq,
        writer: 0,
    }
}

async fn conformance(store: &dyn Store) {
    // An empty store knows nothing.
    assert_eq!(store.positions().await.expect("positions"), None);
    assert_eq!(store.product("p-1").await.expect("read"), None);
    assert_eq!(store.inventory("sku-1").await.expect("read"), None);
    assert_eq!(store.order("o-1").await.expect("read"), None);
    let page = store.user_orders("u-1", None, 10).await.expect("page");
    assert!(page.orders.is_empty() && page.next.is_none());

    // Documents and positions land together.
    let o1 = order("o-1", "u-1", 10, OrderStatus::Placed);
    store
        .apply(batch(
            5,
            vec![3, 0, 7],
            vec![
                Upsert::Product {
                    seq: 4,
                    view: product("Kettle", 8),
                },
                Upsert::Inventory {
                    seq: 4,
                    view: stock(10, 2),
                },
                Upsert::Order {
                    seq: 5,
                    view: o1.clone(),
                },
            ],
        ))
        .await
        .expect("apply");
    assert_eq!(
        store.positions().await.expect("positions"),
        Some(vec![3, 0, 7])
    );
    let p = store.product("p-1").await.expect("read").expect("stored");
    assert_eq!(p.seq, 4);
    let got: ProductView = serde_json::from_slice(&p.json).expect("json");
    assert_eq!(got, product("Kettle", 8));
    let i = store
        .inventory("sku-1")
        .await
        .expect("read")
        .expect("stored");
    let got: InventoryView = serde_json::from_slice(&i.json).expect("json");
    assert_eq!((i.seq, got), (4, stock(10, 2)));
    let o = store.order("o-1").await.expect("read").expect("stored");
    assert_eq!((o.seq, o.user_id.as_str()), (5, "u-1"));
    let got: OrderView = serde_json::from_slice(&o.json).expect("json");
    assert_eq!(got, o1);

    // A replayed (lower seq) write changes nothing; an equal one rewrites the same value.
    store
        .apply(batch(
            2,
            vec![1, 0, 0],
            vec![
                Upsert::Product {
                    seq: 2,
                    view: product("Old kettle", 1),
                },
                Upsert::Order {
                    seq: 3,
                    view: order("o-1", "u-1", 10, OrderStatus::Placed),
                },
            ],
        ))
        .await
        .expect("apply");
    let p = store.product("p-1").await.expect("read").expect("stored");
    let got: ProductView = serde_json::from_slice(&p.json).expect("json");
    assert_eq!(
        (p.seq, got.title.as_str()),
        (4, "Kettle"),
        "never backwards"
    );
    assert_eq!(
        store.positions().await.expect("positions"),
        Some(vec![3, 0, 7]),
        "positions of a replay never replace newer ones"
    );
    store
        .apply(batch(
            5,
            vec![3, 0, 7],
            vec![Upsert::Product {
                seq: 4,
                view: product("Kettle", 8),
            }],
        ))
        .await
        .expect("idempotent");
    let p = store.product("p-1").await.expect("read").expect("stored");
    assert_eq!(p.seq, 4);

    // A higher seq replaces: the order moved on; its summary in the user's list too.
    let o1_paid = order("o-1", "u-1", 10, OrderStatus::Paid);
    store
        .apply(batch(
            9,
            vec![4, 2, 7],
            vec![
                Upsert::Order {
                    seq: 9,
                    view: o1_paid.clone(),
                },
                Upsert::Order {
                    seq: 7,
                    view: order("o-2", "u-1", 30, OrderStatus::Reserved),
                },
                Upsert::Order {
                    seq: 8,
                    view: order("o-3", "u-1", 20, OrderStatus::Placed),
                },
                Upsert::Order {
                    seq: 8,
                    view: order("o-4", "u-1", 20, OrderStatus::Placed),
                },
                Upsert::Order {
                    seq: 6,
                    view: order("o-9", "u-2", 40, OrderStatus::Placed),
                },
            ],
        ))
        .await
        .expect("apply");
    let o = store.order("o-1").await.expect("read").expect("stored");
    let got: OrderView = serde_json::from_slice(&o.json).expect("json");
    assert_eq!((o.seq, got), (9, o1_paid));
    assert_eq!(
        store.positions().await.expect("positions"),
        Some(vec![4, 2, 7])
    );

    // Newest first; same instant: larger order id first; pages chain through cursors.
    let first = store.user_orders("u-1", None, 2).await.expect("page");
    let ids: Vec<&str> = first.orders.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(ids, ["o-2", "o-4"]);
    assert_eq!(first.orders[0].total, Money::new(2_500, "EUR"));
    assert_eq!(first.orders[0].status, OrderStatus::Reserved);
    let next = first.next.expect("more pages");
    let second = store
        .user_orders("u-1", Some(&next), 2)
        .await
        .expect("page");
    let ids: Vec<&str> = second.orders.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(ids, ["o-3", "o-1"]);
    assert_eq!(
        second.orders[1].status,
        OrderStatus::Paid,
        "summary follows the order"
    );
    assert_eq!(second.next, None, "exactly four orders: no third page");
    let all = store.user_orders("u-1", None, 100).await.expect("page");
    assert_eq!(all.orders.len(), 4);
    assert_eq!(all.next, None);
    let other = store.user_orders("u-2", None, 100).await.expect("page");
    assert_eq!(
        other.orders.len(),
        1,
        "users do not see each other's orders"
    );

    assert!(matches!(
        store.user_orders("u-1", Some("not a cursor"), 2).await,
        Err(StoreError::BadCursor(_))
    ));

    // A scan of every inventory document, page by page, sees each exactly once.
    let skus: Vec<String> = (0..7).map(|i| format!("sku-scan-{i}")).collect();
    store
        .apply(batch(
            20,
            vec![9, 9, 9],
            skus.iter()
                .map(|sku| Upsert::Inventory {
                    seq: 20,
                    view: InventoryView::new(sku.clone(), stock(3, 1).warehouses),
                })
                .collect(),
        ))
        .await
        .expect("apply");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .scan_inventory(after.as_deref(), 3)
            .await
            .expect("scan");
        assert!(page.len() <= 3);
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        seen.extend(page);
    }
    let mut seen_skus: Vec<&str> = seen.iter().map(|(sku, _)| sku.as_str()).collect();
    seen_skus.sort_unstable();
    let mut expected: Vec<&str> = skus.iter().map(String::as_str).collect();
    expected.push("sku-1");
    expected.sort_unstable();
    assert_eq!(seen_skus, expected, "every sku once");
    let (_, doc) = seen
        .iter()
        .find(|(sku, _)| sku == "sku-scan-3")
        .expect("scanned");
    assert_eq!(doc.seq, 20);
    let view: InventoryView = serde_json::from_slice(&doc.json).expect("an inventory document");
    assert_eq!(view.sku, "sku-scan-3");

    // Products page the same way.
    store
        .apply(batch(
            21,
            vec![9, 9, 9],
            (0..5)
                .map(|i| Upsert::Product {
                    seq: 21,
                    view: ProductView {
                        product_id: format!("p-scan-{i}"),
                        ..product("scanned", i)
                    },
                })
                .collect(),
        ))
        .await
        .expect("apply");
    let mut products = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .scan_products(after.as_deref(), 2)
            .await
            .expect("scan");
        assert!(page.len() <= 2);
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        products.extend(page);
    }
    let mut ids: Vec<&str> = products.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "p-1", "p-scan-0", "p-scan-1", "p-scan-2", "p-scan-3", "p-scan-4"
        ],
        "every product once"
    );
    let (_, doc) = products
        .iter()
        .find(|(id, _)| id == "p-scan-3")
        .expect("scanned");
    let scanned: ProductView = serde_json::from_slice(&doc.json).expect("a product document");
    assert_eq!((doc.seq, scanned.available), (21, 3));

    // A maintained view's documents keep the contract: by (view, key), the highest seq wins,
    // ties replace; another view's key is another document.
    let view_doc = |seq: u64, view: &str, key: &str, json: &str| Upsert::View {
        view: view.into(),
        key: key.into(),
        seq,
        json: bytes::Bytes::copy_from_slice(json.as_bytes()),
    };
    assert_eq!(
        store.view("product_ratings", "p-1").await.expect("read"),
        None
    );
    let pos = store
        .positions()
        .await
        .expect("positions")
        .unwrap_or_default();
    store
        .apply(batch(
            30,
            pos.clone(),
            vec![
                view_doc(30, "product_ratings", "p-1", r#"{"reviews":2}"#),
                view_doc(30, "other_view", "p-1", r#"{"n":1}"#),
            ],
        ))
        .await
        .expect("apply");
    // Writes one view document at `seq`, then reads ("product_ratings", "p-1") back.
    let write_then_read = |seq: u64, json: &'static str| {
        let pos = pos.clone();
        async move {
            let upsert = view_doc(seq, "product_ratings", "p-1", json);
            store
                .apply(batch(seq, pos, vec![upsert]))
                .await
                .expect("apply");
            let doc = store.view("product_ratings", "p-1").await.expect("read");
            let doc = doc.expect("stored");
            (doc.seq, String::from_utf8_lossy(&doc.json).into_owned())
        }
    };
    assert_eq!(
        write_then_read(29, r#"{"reviews":1}"#).await,
        (30, r#"{"reviews":2}"#.to_owned()),
        "an older seq is a no-op"
    );
    assert_eq!(
        write_then_read(31, "null").await,
        (31, "null".to_owned()),
        "a key that left the view"
    );
    let other = store
        .view("other_view", "p-1")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(&other.json[..], br#"{"n":1}"#);

    // A view's documents page by key, and only that view's (another view's and another table's
    // keys are not in it); a key that left the view is there with `null`.
    for i in 0..7 {
        let key = format!("p-scan-{i}");
        store
            .apply(batch(
                32 + i,
                pos.clone(),
                vec![
                    view_doc(32 + i, "product_ratings", &key, r#"{"reviews":1}"#),
                    view_doc(32 + i, "other_view", &format!("o-{i}"), "{}"),
                ],
            ))
            .await
            .expect("apply");
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .scan_view("product_ratings", after.as_deref(), 3)
            .await
            .expect("scan");
        assert!(page.len() <= 3);
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        seen.extend(page);
    }
    let mut keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    let mut expected: Vec<String> = (0..7).map(|i| format!("p-scan-{i}")).collect();
    expected.push("p-1".into());
    expected.sort_unstable();
    assert_eq!(keys, expected, "every key of the view once");
    let (_, left) = seen.iter().find(|(k, _)| k == "p-1").expect("p-1");
    assert_eq!((left.seq, &left.json[..]), (31, &b"null"[..]));
    assert!(
        store
            .scan_view("no_such_view", None, 10)
            .await
            .expect("scan")
            .is_empty()
    );

    // The checkpoint slot: empty, then the last one put, whole (several chunks in ScyllaDB).
    assert_eq!(store.checkpoint().await.expect("checkpoint"), None);
    let big: Vec<u8> = (0..1_300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    store.put_checkpoint(&big, 0).await.expect("put");
    assert_eq!(store.checkpoint().await.expect("checkpoint"), Some(big));
    store.put_checkpoint(b"smaller", 0).await.expect("replace");
    assert_eq!(
        store.checkpoint().await.expect("checkpoint").as_deref(),
        Some(&b"smaller"[..])
    );

    // Checkpoint pieces (incremental checkpoints): kept by name, whole, until a delete keeps
    // only the chain named. Names start with the writer's claim in hex.
    assert_eq!(store.checkpoint_piece("0-1-0").await.expect("piece"), None);
    let full: Vec<u8> = (0..1_100_000u32).map(|i| (i * 13 % 241) as u8).collect();
    store
        .put_checkpoint_piece("0-1-0", &full, 0)
        .await
        .expect("put");
    store
        .put_checkpoint_piece("0-1-1", b"delta", 0)
        .await
        .expect("put");
    store
        .put_checkpoint_piece("0-2-0", b"next chain", 0)
        .await
        .expect("put");
    assert_eq!(
        store.checkpoint_piece("0-1-0").await.expect("piece"),
        Some(full)
    );
    assert_eq!(
        store
            .checkpoint_piece("0-1-1")
            .await
            .expect("piece")
            .as_deref(),
        Some(&b"delta"[..])
    );
    store
        .delete_checkpoint_pieces_except(&["0-2-0".into()], 0)
        .await
        .expect("delete");
    assert_eq!(store.checkpoint_piece("0-1-0").await.expect("piece"), None);
    assert_eq!(store.checkpoint_piece("0-1-1").await.expect("piece"), None);
    assert_eq!(
        store
            .checkpoint_piece("0-2-0")
            .await
            .expect("piece")
            .as_deref(),
        Some(&b"next chain"[..])
    );

    // One writer at a time (ADR 0012): each claim fences every earlier one, the unclaimed
    // writer (0) included, for batches and checkpoints alike; nothing of a refused batch lands.
    assert_eq!(
        store.writer_claim().await.expect("claim"),
        0,
        "never claimed"
    );
    let first = store.claim_writer().await.expect("claim");
    assert_eq!(store.writer_claim().await.expect("claim"), first);
    let mut fenced_batch = batch(
        1_000,
        vec![9_000, 9_000],
        vec![Upsert::Product {
            seq: 1_000,
            view: product("Written by a fenced writer", 1),
        }],
    );
    fenced_batch.writer = 0;
    assert!(
        matches!(
            store.apply(fenced_batch.clone()).await,
            Err(StoreError::Fenced { epoch: 0, current }) if current == first
        ),
        "the unclaimed writer is fenced by the first claim"
    );
    let mut ours = batch(40, vec![40, 40], vec![]);
    ours.writer = first;
    store.apply(ours).await.expect("the current claim writes");
    store
        .put_checkpoint(b"first's", first)
        .await
        .expect("the current claim checkpoints");
    let second = store.claim_writer().await.expect("claim again");
    assert!(second > first, "claims grow: {first} then {second}");
    fenced_batch.writer = first;
    assert!(matches!(
        store.apply(fenced_batch).await,
        Err(StoreError::Fenced { epoch, current }) if epoch == first && current == second
    ));
    assert!(matches!(
        store.put_checkpoint(b"stale", first).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        store.put_checkpoint_piece("0-3-0", b"stale", first).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        store.delete_checkpoint_pieces_except(&[], first).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(
        store
            .checkpoint_piece("0-2-0")
            .await
            .expect("piece")
            .as_deref(),
        Some(&b"next chain"[..]),
        "a fenced writer deletes no piece"
    );
    assert_eq!(store.checkpoint_piece("0-3-0").await.expect("piece"), None);
    assert_eq!(
        store.checkpoint().await.expect("checkpoint").as_deref(),
        Some(&b"first's"[..]),
        "a fenced checkpoint leaves the one before"
    );
    assert_eq!(
        store.positions().await.expect("positions"),
        Some(vec![40, 40]),
        "a fenced batch records no positions"
    );
    let p1 = store.product("p-1").await.expect("read");
    assert!(
        p1.is_none_or(|d| !String::from_utf8_lossy(&d.json).contains("fenced writer")),
        "a fenced batch writes no document"
    );
    let mut next = batch(41, vec![41, 41], vec![]);
    next.writer = second;
    store.apply(next).await.expect("the newest claim writes");
}

#[tokio::test]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    conformance(&store).await;
    // Durable: a reopened store holds the same documents.
    drop(store);
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    assert!(store.order("o-4").await.expect("read").is_some());
    assert_eq!(
        store.checkpoint().await.expect("checkpoint").as_deref(),
        Some(&b"first's"[..]),
        "the checkpoint is durable too"
    );
    assert_eq!(store.counts().expect("counts"), (6, 8, 5));
}

#[test]
fn embedded_store_refuses_a_second_opener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = EmbeddedStore::open(dir.path()).expect("open");
    let err = EmbeddedStore::open(dir.path())
        .err()
        .expect("second open fails");
    assert!(err.to_string().contains("another process"), "{err}");
}

#[tokio::test]
#[ignore = "needs a ScyllaDB node: EMPORIUM_SCYLLA_URI=host:port, then --ignored (scripts/test does both when the variable is set)"]
async fn scylla_store_conforms() {
    let nodes = std::env::var("EMPORIUM_SCYLLA_URI").expect(
        "EMPORIUM_SCYLLA_URI=host:port names the ScyllaDB node to run the store conformance suite against",
    );
    let config = ScyllaConfig {
        keyspace: format!("emporium_test_{}", std::process::id()),
        replication_factor: 1,
        ..ScyllaConfig::new(&nodes)
    };
    let store = ScyllaStore::connect(config).await.expect("connect");
    conformance(&store).await;
}
