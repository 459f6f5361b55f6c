//! The traffic generator: deterministic, valid by construction (or invalid exactly where asked),
//! and shaped like a shop: a catalog first, a funnel, orders that move through their life.

use std::collections::{HashMap, HashSet};

use emporium_generator::{Generated, Generator, GeneratorConfig, taste};
use emporium_schemas::{Event, EventKind, Payload, ValidationContext};

fn config(seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        seed,
        products: 300,
        users: 2_000,
        events_per_day: 15_000.0,
        ..GeneratorConfig::default()
    }
}

fn bytes(seed: u64, n: usize, invalid: f64) -> Vec<u8> {
    let mut g = Generator::new(GeneratorConfig {
        invalid_fraction: invalid,
        ..config(seed)
    })
    .expect("generator");
    let mut out = Vec::new();
    for _ in 0..n {
        g.next_generated().write_line(&mut out);
    }
    out
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    assert_eq!(bytes(7, 5_000, 0.01), bytes(7, 5_000, 0.01));
    assert_ne!(bytes(7, 5_000, 0.01), bytes(8, 5_000, 0.01));
}

#[test]
fn every_generated_event_is_valid_and_ids_are_unique() {
    let ctx = ValidationContext::now();
    let mut ids = HashSet::new();
    let mut kinds = HashMap::new();
    let mut last_time = None;
    let mut g = Generator::new(config(3)).expect("generator");
    for _ in 0..60_000 {
        let Generated::Valid(event) = g.next_generated() else {
            panic!("invalid_fraction is 0")
        };
        let parsed = Event::parse(&event.to_json(), &ctx)
            .unwrap_or_else(|e| panic!("generated event rejected: {e}"));
        assert_eq!(parsed, event);
        assert!(ids.insert(event.event_id), "event ids are unique");
        if let Some(t) = last_time {
            assert!(event.occurred_at >= t, "event time never goes back");
        }
        last_time = Some(event.occurred_at);
        *kinds.entry(event.kind()).or_insert(0usize) += 1;
    }
    // The whole shop shows up within three simulated days.
    for kind in [
        EventKind::ProductUpserted,
        EventKind::StockReceived,
        EventKind::ProductViewed,
        EventKind::SearchPerformed,
        EventKind::CartItemAdded,
        EventKind::CartItemRemoved,
        EventKind::OrderPlaced,
        EventKind::PaymentAuthorized,
        EventKind::PaymentFailed,
        EventKind::OrderShipped,
        EventKind::OrderDelivered,
        EventKind::PriceChanged,
        EventKind::StockAdjusted,
    ] {
        assert!(
            kinds.get(&kind).copied().unwrap_or(0) > 0,
            "no {kind} generated: {kinds:?}"
        );
    }
    assert!(kinds[&EventKind::ProductViewed] > kinds[&EventKind::CartItemAdded]);
    assert!(kinds[&EventKind::CartItemAdded] > kinds[&EventKind::OrderPlaced]);
}

#[test]
fn the_catalog_comes_first_and_orders_follow_their_lifecycle() {
    let mut g = Generator::new(config(5)).expect("generator");
    // Two weeks of event time: with taste, demand spreads over subcategories, and the first
    // skus run out after a few days.
    let events: Vec<Event> = (0..200_000).map(|_| g.next_event()).collect();
    let first_traffic = events
        .iter()
        .position(|e| {
            !matches!(
                e.kind(),
                EventKind::ProductUpserted | EventKind::StockReceived
            )
        })
        .expect("traffic starts");
    let catalog = events[..first_traffic]
        .iter()
        .filter(|e| e.kind() == EventKind::ProductUpserted)
        .count();
    assert_eq!(
        catalog, 300,
        "every product is upserted before traffic starts"
    );

    let mut stage: HashMap<String, &str> = HashMap::new();
    for e in &events {
        let (order, next) = match &e.payload {
            Payload::OrderPlaced(p) => (&p.order_id, "placed"),
            Payload::PaymentAuthorized(p) => (&p.order_id, "paid"),
            Payload::PaymentFailed(p) => (&p.order_id, "failed"),
            Payload::OrderShipped(p) => (&p.order_id, "shipped"),
            Payload::OrderDelivered(p) => (&p.order_id, "delivered"),
            Payload::OrderCancelled(p) => (&p.order_id, "cancelled"),
            _ => continue,
        };
        let before = stage.get(order).copied();
        let allowed = match next {
            "placed" => before.is_none(),
            "paid" | "failed" => before == Some("placed"),
            "shipped" | "cancelled" => before == Some("paid"),
            "delivered" => before == Some("shipped"),
            _ => false,
        };
        assert!(allowed, "order {order}: {before:?} -> {next}");
        stage.insert(order.clone(), next);
    }
    let placed = stage.len();
    let rejected_by_stock = stage.values().filter(|s| **s == "placed").count();
    assert!(placed > 100, "orders were placed: {placed}");
    assert!(
        rejected_by_stock > 0,
        "some orders ask for more than is in stock"
    );
}

#[test]
fn invalid_lines_are_rejected_with_the_defect_they_carry() {
    let ctx = ValidationContext::now();
    let mut g = Generator::new(GeneratorConfig {
        invalid_fraction: 0.2,
        ..config(9)
    })
    .expect("generator");
    let mut defects = HashSet::new();
    for _ in 0..5_000 {
        match g.next_generated() {
            Generated::Valid(e) => assert!(Event::parse(&e.to_json(), &ctx).is_ok()),
            Generated::Invalid { line, defect } => {
                let err = Event::parse(&line, &ctx).expect_err("a defect is rejected");
                assert!(
                    err.errors.iter().any(|e| e.reason.as_str() == defect)
                        || defect == "invalid_value",
                    "defect {defect} gave {err}"
                );
                defects.insert(defect);
            }
        }
    }
    assert_eq!(defects.len(), emporium_generator::corrupt::DEFECTS.len());
}

#[test]
fn settings_are_checked() {
    let bad = GeneratorConfig {
        invalid_fraction: 1.5,
        ..GeneratorConfig::default()
    };
    let err = Generator::new(bad).err().expect("rejected");
    assert_eq!(
        err.to_string(),
        "invalid_fraction: a share from 0.0 to 1.0, got 1.5"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn straight_to_kafka_every_event_lands_on_its_keys_partition() {
    use emporium_generator::output::{Limits, Progress, send_to_log};
    use emporium_log::kafka::{KafkaConfig, KafkaLog};
    use emporium_log::{EVENTS_TOPIC, partition_for, read_all};
    use std::sync::Arc;

    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(EVENTS_TOPIC, 4, 1).expect("topic");
    let log = KafkaLog::connect(KafkaConfig::new(cluster.bootstrap_servers())).expect("connect");
    let mut g = Generator::new(config(11)).expect("generator");
    let limits = Limits {
        events: Some(3_000),
        ..Limits::default()
    };
    let progress = Arc::new(Progress::default());
    send_to_log(&mut g, &log, 500, limits, Arc::clone(&progress))
        .await
        .expect("send");
    let records = read_all(&log, EVENTS_TOPIC).await.expect("read");
    assert_eq!(records.len(), 3_000);
    for r in &records {
        let event = Event::decode(&r.value).expect("a stored event decodes");
        assert_eq!(r.key.as_ref(), event.partition_key().as_bytes());
        assert_eq!(r.partition, partition_for(&r.key, 4));
    }

    // Straight to the log skips validation, so deliberately invalid lines are refused up front.
    let mut invalid = Generator::new(GeneratorConfig {
        invalid_fraction: 0.1,
        ..config(12)
    })
    .expect("generator");
    let err = send_to_log(&mut invalid, &log, 500, limits, progress)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("--invalid-fraction"), "{err}");
}

#[test]
fn tiny_shops_work_and_popularity_reaches_every_product() {
    // 7919 products: a popularity spread by 7919 would send every view to one product.
    for products in [1, 2, 7_919] {
        let mut g = Generator::new(GeneratorConfig {
            products,
            users: 1,
            warehouses: 1,
            ..GeneratorConfig::default()
        })
        .expect("generator");
        let mut viewed = HashSet::new();
        for _ in 0..40_000 {
            if let Payload::ProductViewed(v) = g.next_event().payload {
                viewed.insert(v.product_id);
            }
        }
        let expected = products.min(20);
        assert!(
            viewed.len() >= expected,
            "{products} products: only {} viewed",
            viewed.len()
        );
    }
}

/// Each user's product views, by subcategory (product `i` is in subcategory `i % 40`).
fn views_by_user(config: GeneratorConfig, n: usize) -> HashMap<String, Vec<usize>> {
    let mut g = Generator::new(config).expect("generator");
    let mut views: HashMap<String, Vec<usize>> = HashMap::new();
    for _ in 0..n {
        if let Payload::ProductViewed(v) = g.next_event().payload {
            let i: usize = v.product_id[2..].parse().expect("generated product id");
            views
                .entry(v.user_id)
                .or_default()
                .push(i % taste::SUBCATEGORIES);
        }
    }
    views
}

/// The mean share of a user's views in their three most viewed subcategories, over users with
/// at least 20 views.
fn concentration(views: &HashMap<String, Vec<usize>>) -> f64 {
    let shares: Vec<f64> = views
        .values()
        .filter(|v| v.len() >= 20)
        .map(|v| {
            let mut counts = [0usize; taste::SUBCATEGORIES];
            v.iter().for_each(|c| counts[*c] += 1);
            counts.sort_unstable_by(|a, b| b.cmp(a));
            counts[..3].iter().sum::<usize>() as f64 / v.len() as f64
        })
        .collect();
    assert!(shares.len() > 50, "too few active users: {}", shares.len());
    shares.iter().sum::<f64>() / shares.len() as f64
}

#[test]
fn shoppers_have_taste_and_the_control_has_none() {
    let shop = |taste_share| GeneratorConfig {
        products: 2_000,
        users: 300,
        taste_share,
        ..config(11)
    };
    let with = concentration(&views_by_user(shop(0.7), 150_000));
    let control = concentration(&views_by_user(shop(0.0), 150_000));
    assert!(
        with > control + 0.2,
        "taste: {with:.2} of a user's views in their top 3 subcategories, control {control:.2}"
    );
}

#[test]
fn complements_are_bought_together() {
    let mut g = Generator::new(GeneratorConfig {
        products: 2_000,
        ..config(12)
    })
    .expect("generator");
    let (mut pairs, mut complementary) = (0usize, 0usize);
    for _ in 0..150_000 {
        let Payload::OrderPlaced(o) = g.next_event().payload else {
            continue;
        };
        let subs: Vec<usize> = o
            .lines
            .iter()
            .map(|l| l.sku[2..9].parse::<usize>().expect("generated sku") % taste::SUBCATEGORIES)
            .collect();
        for (i, a) in subs.iter().enumerate() {
            for b in &subs[i + 1..] {
                pairs += 1;
                if taste::complement_subcategory(*a) == *b
                    || taste::complement_subcategory(*b) == *a
                {
                    complementary += 1;
                }
            }
        }
    }
    // Without complements, 2 of 40 subcategories would be complementary to a line's: 5%.
    let share = complementary as f64 / pairs.max(1) as f64;
    assert!(
        pairs > 500 && share > 0.2,
        "{complementary} of {pairs} pairs complementary"
    );
}

#[test]
fn an_erased_user_never_shops_again() {
    let mut g = Generator::new(GeneratorConfig {
        erasure_rate: 0.002,
        ..config(13)
    })
    .expect("generator");
    let mut erased = HashSet::new();
    for _ in 0..100_000 {
        let e = g.next_event();
        let user = match &e.payload {
            Payload::UserErased(u) => {
                assert!(erased.insert(u.user_id.clone()), "erased twice");
                continue;
            }
            Payload::OrderPlaced(o) => &o.user_id,
            Payload::ProductViewed(v) => &v.user_id,
            Payload::CartItemAdded(c) => &c.user_id,
            Payload::SearchPerformed(s) => &s.user_id,
            Payload::ReviewPosted(r) => &r.user_id,
            _ => continue,
        };
        assert!(
            !erased.contains(user),
            "{user} acted after their erasure: {e:?}"
        );
    }
    assert!(erased.len() > 20, "{} users erased", erased.len());
}
