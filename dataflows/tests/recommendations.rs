//! The recommendation views against plain folds of the same events (issue 25), and erasure
//! against a recomputation without the erased user.
//!
//! The fold is written from the rules, not from the views' code: an order counts when it has
//! been paid and not cancelled; its basket is the skus its `order_placed` events named, less the
//! returned ones, credited to each sku's owner at the end (among the products' latest listings
//! naming it, the latest), once per product, the first 20 products by id; a user's orders never
//! count once the user is erased; each product's partners are the other products of its baskets,
//! counted per order, best 30 by count then id.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{TimeZone, Utc};
use emporium_dataflows::recs::also_bought::{AlsoBought, MAX_BASKET, Partners, TOP_K};
use emporium_dataflows::recs::erased_users::ErasedUsers;
use emporium_dataflows::recs::user_purchases::{Purchases, RECENT, UserPurchases};
use emporium_dataflows::view::evaluate;
use emporium_generator::{Generator, GeneratorConfig};
use emporium_schemas::accounts::UserErased;
use emporium_schemas::catalog::ProductUpserted;
use emporium_schemas::money::Money;
use emporium_schemas::orders::{
    OrderCancelled, OrderLine, OrderPlaced, PaymentAuthorized, ReturnLine, ReturnRequested,
};
use emporium_schemas::{Event, Payload};
use proptest::prelude::*;

/// The purchases that count, by the rules above: `(order, user, product, seq of the order's first
/// payment)`, each once.
fn counted(events: &[Event]) -> BTreeSet<(String, String, String, usize)> {
    let mut listing: HashMap<String, (usize, Vec<String>)> = HashMap::new();
    let mut lines: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut paid: HashMap<String, usize> = HashMap::new();
    let (mut cancelled, mut erased) = (HashSet::new(), HashSet::new());
    let mut returned: HashSet<(String, String)> = HashSet::new();
    for (i, e) in events.iter().enumerate() {
        match &e.payload {
            Payload::ProductUpserted(p) => {
                listing.insert(p.product_id.clone(), (i, p.skus.clone()));
            }
            Payload::OrderPlaced(o) => {
                let basket = lines.entry(o.order_id.clone()).or_default();
                for line in &o.lines {
                    basket.insert((o.user_id.clone(), line.sku.clone()));
                }
            }
            Payload::PaymentAuthorized(p) => {
                paid.entry(p.order_id.clone()).or_insert(i + 1);
            }
            Payload::OrderCancelled(c) => {
                cancelled.insert(c.order_id.clone());
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
    }
    let mut owner: HashMap<&str, (usize, &str)> = HashMap::new();
    for (product, (at, skus)) in &listing {
        for sku in skus {
            let o = owner.entry(sku).or_insert((*at, product));
            if *at > o.0 {
                *o = (*at, product);
            }
        }
    }
    let mut out = BTreeSet::new();
    for (order, basket) in &lines {
        let Some(seq) = paid.get(order) else { continue };
        if cancelled.contains(order) {
            continue;
        }
        for (user, sku) in basket {
            if erased.contains(user) || returned.contains(&(order.clone(), sku.clone())) {
                continue;
            }
            if let Some((_, product)) = owner.get(sku.as_str()) {
                out.insert((order.clone(), user.clone(), product.to_string(), *seq));
            }
        }
    }
    out
}

/// The expected partners of every product with any.
fn fold(events: &[Event]) -> HashMap<String, Partners> {
    let mut baskets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (order, _, product, _) in counted(events) {
        baskets.entry(order).or_default().insert(product);
    }
    let mut pairs: HashMap<(String, String), u64> = HashMap::new();
    for products in baskets.values() {
        let products: Vec<&String> = products.iter().take(MAX_BASKET).collect();
        for a in &products {
            for b in products.iter().filter(|b| *b != a) {
                *pairs.entry(((*a).clone(), (*b).clone())).or_default() += 1;
            }
        }
    }
    let mut partners: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    for ((a, b), n) in pairs {
        partners.entry(a).or_default().push((b, n));
    }
    for list in partners.values_mut() {
        list.sort_by(|(b1, n1), (b2, n2)| n2.cmp(n1).then(b1.cmp(b2)));
        list.truncate(TOP_K);
    }
    partners
}

/// The expected recent purchases of every user with any (none for the erased): the products of
/// their counted orders, by when the order was first paid, latest first (ties: the larger product
/// id first), each once, at most 20.
fn fold_users(events: &[Event]) -> HashMap<String, Purchases> {
    let mut latest: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for (_, user, product, seq) in counted(events) {
        let at = latest.entry(user).or_default().entry(product).or_insert(0);
        *at = (*at).max(seq);
    }
    latest
        .into_iter()
        .map(|(user, products)| {
            let mut products: Vec<(usize, String)> =
                products.into_iter().map(|(p, seq)| (seq, p)).collect();
            products.sort_by(|a, b| b.cmp(a));
            let recent = products.into_iter().take(RECENT).map(|(_, p)| p);
            (user, Purchases(recent.collect()))
        })
        .collect()
}

fn assert_same(events: &[Event]) {
    assert_eq!(
        evaluate::<UserPurchases>(events),
        fold_users(events),
        "user purchases"
    );
    let erased: HashMap<String, ()> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::UserErased(u) => Some((u.user_id.clone(), ())),
            _ => None,
        })
        .collect();
    assert_eq!(evaluate::<ErasedUsers>(events), erased, "erased users");
    let got = evaluate::<AlsoBought>(events);
    let want = fold(events);
    for (product, partners) in &want {
        assert_eq!(got.get(product), Some(partners), "partners of {product}");
    }
    for product in got.keys() {
        assert!(want.contains_key(product), "{product} has no partners");
    }
}

#[derive(Debug, Clone)]
enum Op {
    List { product: u8, skus: Vec<u8> },
    Order { user: u8, skus: Vec<u8> },
    Pay(u8),
    Cancel(u8),
    Return { order: u8, sku: u8 },
    Erase(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..6, prop::collection::vec(0u8..8, 0..3))
            .prop_map(|(product, skus)| Op::List { product, skus }),
        4 => (0u8..4, prop::collection::vec(0u8..9, 1..5))
            .prop_map(|(user, skus)| Op::Order { user, skus }),
        4 => (0u8..12).prop_map(Op::Pay),
        1 => (0u8..12).prop_map(Op::Cancel),
        1 => (0u8..12, 0u8..9).prop_map(|(order, sku)| Op::Return { order, sku }),
        1 => (0u8..4).prop_map(Op::Erase),
    ]
}

fn usd(cents: i64) -> Money {
    Money {
        amount_minor: cents,
        currency: "USD".into(),
    }
}

/// The `i`-th event. Orders are numbered by `i` modulo 12, so payments, cancellations and
/// returns find them, and an order id can be placed twice.
fn event(i: usize, op: Op) -> Event {
    let payload = match op {
        Op::List { product, skus } => Payload::ProductUpserted(ProductUpserted {
            product_id: format!("p-{product}"),
            skus: skus.iter().map(|s| format!("s-{s}")).collect(),
            title: "Thing".into(),
            description: "A thing".into(),
            brand: "Acme".into(),
            category_path: vec!["Home".into()],
            attributes: Default::default(),
            price: usd(100),
        }),
        Op::Order { user, skus } => Payload::OrderPlaced(OrderPlaced {
            order_id: format!("o-{}", i % 12),
            user_id: format!("u-{user}"),
            lines: skus
                .iter()
                .map(|s| OrderLine {
                    sku: format!("s-{s}"),
                    qty: 1,
                    unit_price: usd(100),
                })
                .collect(),
            shipping_region: "eu-west".into(),
            payment_token: "tok".into(),
        }),
        Op::Pay(order) => Payload::PaymentAuthorized(PaymentAuthorized {
            order_id: format!("o-{order}"),
            amount: usd(100),
            payment_token: "tok".into(),
        }),
        Op::Cancel(order) => Payload::OrderCancelled(OrderCancelled {
            order_id: format!("o-{order}"),
            reason: "changed_mind".into(),
        }),
        Op::Return { order, sku } => Payload::ReturnRequested(ReturnRequested {
            order_id: format!("o-{order}"),
            lines: vec![ReturnLine {
                sku: format!("s-{sku}"),
                qty: 1,
            }],
            reason: "too_small".into(),
        }),
        Op::Erase(user) => Payload::UserErased(UserErased {
            user_id: format!("u-{user}"),
            reason: "gdpr_request".into(),
        }),
    };
    Event::new(
        uuid::Uuid::from_u128(i as u128 + 1),
        Utc.timestamp_opt(1_767_225_600 + i as i64, 0)
            .single()
            .expect("time"),
        payload,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn also_bought_is_the_fold_of_any_small_shop(ops in prop::collection::vec(op(), 1..120)) {
        let events: Vec<Event> = ops.into_iter().enumerate().map(|(i, op)| event(i, op)).collect();
        assert_same(&events);
    }
}

/// A generated shop with cancellations, returns and erasures within its span.
fn generated() -> Vec<Event> {
    let mut generator = Generator::new(GeneratorConfig {
        products: 300,
        users: 400,
        events_per_day: 20_000.0,
        fulfilment_scale: 0.02,
        erasure_rate: 0.000_3,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    (0..60_000).map(|_| generator.next_event()).collect()
}

#[test]
fn also_bought_is_the_fold_of_a_generated_shop() {
    let events = generated();
    let kinds = |p: fn(&Payload) -> bool| events.iter().filter(|e| p(&e.payload)).count();
    // The shop exercises every retraction.
    assert!(
        kinds(|p| matches!(p, Payload::OrderCancelled(_))) > 5,
        "cancellations"
    );
    assert!(
        kinds(|p| matches!(p, Payload::ReturnRequested(_))) > 5,
        "returns"
    );
    assert!(
        kinds(|p| matches!(p, Payload::UserErased(_))) > 5,
        "erasures"
    );
    let want = fold(&events);
    assert!(want.len() > 100, "{} products with partners", want.len());
    assert!(
        want.values().any(|p| p.len() == TOP_K),
        "some product has more partners than kept"
    );
    assert_same(&events);
}

#[test]
fn after_an_erasure_the_state_is_a_recomputation_without_the_user() {
    let events = generated();
    let erased: HashSet<String> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::UserErased(u) => Some(u.user_id.clone()),
            _ => None,
        })
        .collect();
    // Users who bought something before they were erased.
    let buyers: HashSet<&str> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::OrderPlaced(o) => Some(o.user_id.as_str()),
            _ => None,
        })
        .filter(|u| erased.contains(*u))
        .collect();
    assert!(buyers.len() > 3, "{} erased buyers", buyers.len());
    // The log without the erased users: their events and their erasures gone.
    let without: Vec<Event> = events
        .iter()
        .filter(|e| match &e.payload {
            Payload::OrderPlaced(o) => !erased.contains(&o.user_id),
            Payload::UserErased(_) => false,
            _ => true,
        })
        .cloned()
        .collect();
    assert_eq!(
        evaluate::<AlsoBought>(&events),
        evaluate::<AlsoBought>(&without)
    );
    assert_ne!(
        evaluate::<AlsoBought>(&events),
        evaluate::<AlsoBought>(
            &events
                .iter()
                .filter(|e| !matches!(e.payload, Payload::UserErased(_)))
                .cloned()
                .collect::<Vec<_>>()
        ),
        "the erased users' orders counted before their erasure"
    );
}

#[test]
fn a_cancellation_takes_the_purchase_back() {
    let list = |i, product: u8, sku: u8| {
        event(
            i,
            Op::List {
                product,
                skus: vec![sku],
            },
        )
    };
    let mut events = vec![list(0, 1, 1), list(1, 2, 2), list(2, 3, 3)];
    events.push(event(
        3,
        Op::Order {
            user: 1,
            skus: vec![1, 2, 3],
        },
    ));
    // Placed, not paid: nothing.
    assert!(evaluate::<AlsoBought>(&events).is_empty());
    events.push(event(4, Op::Pay(3)));
    let paid = evaluate::<AlsoBought>(&events);
    assert_eq!(paid["p-1"], vec![("p-2".into(), 1), ("p-3".into(), 1)]);
    // The second sku returned: the rest still counts.
    events.push(event(5, Op::Return { order: 3, sku: 2 }));
    let returned = evaluate::<AlsoBought>(&events);
    assert_eq!(returned["p-1"], vec![("p-3".into(), 1)]);
    assert!(!returned.contains_key("p-2"));
    events.push(event(6, Op::Cancel(3)));
    assert!(evaluate::<AlsoBought>(&events).is_empty());
}
