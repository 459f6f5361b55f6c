//! The search documents and product popularity views against a plain fold of the same events
//! (issue 24, item 1): for
//! any sequence of listings (skus moving between products), price changes (before and after a
//! listing), discontinuations and relistings, reviews (in and out of range), views and orders
//! over hours of event time, the dataflows run incrementally end with the fold's document for
//! every product, and with no document for a product never listed or discontinued since; and
//! with the fold's popularity for every product with interest. Then the same over a generated
//! shop.
//!
//! The fold is written from the rules, not from the view's code: the latest `product_upserted`
//! is the listing, a later price change its price, a later discontinuation removes it; ordered
//! units count for the sku's owner at the end (among the products' latest listings naming it,
//! the latest); a view counts for the product it names; popularity is
//! `log2` of Σ weight · 2^((hour − epoch) / half-life), summed directly, over views and ordered
//! units. Views reach the dataflow counted ([`View::counts`]), as the pipeline feeds them.

use std::collections::{BTreeMap, HashMap};

use chrono::{TimeZone, Utc};
use emporium_dataflows::popularity::{
    DECAY_EPOCH_HOUR, FINE_SUPPORT, HALF_LIFE_HOURS, MIN_SUPPORT, ORDER_WEIGHT, POPULARITY_STEP,
    Popularity, ProductPopularity, VIEW_WEIGHT,
};
use emporium_dataflows::search::{SearchDocuments, SearchFields};
use emporium_dataflows::view::{Ids, View, evaluate};
use emporium_generator::{Generator, GeneratorConfig};
use emporium_schemas::catalog::{PriceChanged, ProductDiscontinued, ProductUpserted};
use emporium_schemas::money::Money;
use emporium_schemas::orders::{OrderLine, OrderPlaced};
use emporium_schemas::reviews::ReviewPosted;
use emporium_schemas::shopper::ProductViewed;
use emporium_schemas::{Event, Payload};
use proptest::prelude::*;

/// What the fold keeps of a product.
#[derive(Default)]
struct Folded {
    /// (seq, the upsert) of the latest listing, and the event time of the first.
    listed: Option<(usize, ProductUpserted)>,
    first_ms: Option<i64>,
    price: Option<(usize, Money)>,
    discontinued: Option<usize>,
    stars: Vec<i64>,
    interest: BTreeMap<i64, i64>,
}

/// The expected documents and popularity: seq is the event's index + 1, as [`evaluate`] feeds
/// them.
fn fold(events: &[Event]) -> (HashMap<String, SearchFields>, HashMap<String, i64>) {
    let mut products: HashMap<String, Folded> = HashMap::new();
    let mut owner: HashMap<String, (usize, String)> = HashMap::new();
    let mut ordered: Vec<(String, i64, i64)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let seq = i + 1;
        let hour = e.occurred_at.timestamp_millis().div_euclid(3_600_000);
        match &e.payload {
            Payload::ProductUpserted(p) => {
                let f = products.entry(p.product_id.clone()).or_default();
                f.first_ms.get_or_insert(e.occurred_at.timestamp_millis());
                f.listed = Some((seq, p.clone()));
            }
            Payload::PriceChanged(p) => {
                products.entry(p.product_id.clone()).or_default().price =
                    Some((seq, p.price.clone()));
            }
            Payload::ProductDiscontinued(p) => {
                products
                    .entry(p.product_id.clone())
                    .or_default()
                    .discontinued = Some(seq);
            }
            Payload::ReviewPosted(r) if (1..=5).contains(&r.rating) => {
                products
                    .entry(r.product_id.clone())
                    .or_default()
                    .stars
                    .push(r.rating);
            }
            Payload::OrderPlaced(o) => {
                for line in o.lines.iter().filter(|l| l.qty > 0) {
                    ordered.push((line.sku.clone(), hour, line.qty));
                }
            }
            Payload::ProductViewed(v) => {
                *products
                    .entry(v.product_id.clone())
                    .or_default()
                    .interest
                    .entry(hour)
                    .or_default() += VIEW_WEIGHT;
            }
            _ => {}
        }
    }
    // A sku's owner: among the products' current (latest) listings naming it, the latest.
    for (id, f) in &products {
        if let Some((seq, listing)) = &f.listed {
            for sku in &listing.skus {
                if owner.get(sku).is_none_or(|(s, _)| s < seq) {
                    owner.insert(sku.clone(), (*seq, id.clone()));
                }
            }
        }
    }
    for (sku, hour, qty) in ordered {
        if let Some((_, product)) = owner.get(&sku) {
            *products
                .entry(product.clone())
                .or_default()
                .interest
                .entry(hour)
                .or_default() += qty * ORDER_WEIGHT;
        }
    }
    let popularity = products
        .iter()
        .filter_map(|(id, f)| Some((id.clone(), popularity_of(&f.interest)?)))
        .collect();
    let documents = products
        .into_iter()
        .filter_map(|(id, f)| {
            let (listed_seq, listing) = f.listed?;
            if f.discontinued.is_some_and(|d| d > listed_seq) {
                return None;
            }
            let price = match f.price {
                Some((seq, price)) if seq > listed_seq => price,
                _ => listing.price.clone(),
            };
            Some((
                id,
                SearchFields {
                    title: listing.title,
                    brand: listing.brand,
                    category_path: listing.category_path,
                    description: listing.description,
                    price,
                    listed_ms: f.first_ms.unwrap_or(0),
                    reviews: f.stars.len() as u64,
                    stars: f.stars.iter().sum::<i64>() as u64,
                },
            ))
        })
        .collect();
    (documents, popularity)
}

/// A product's popularity from its interest per hour, by the rule (`dataflows/src/popularity.rs`):
/// the decayed sum `d` summed directly; the evidence, the undecayed sum of weights (in views):
/// none below 5, whole doublings of `log2 d` (rounded down) below 32, else steps of 1/16.
fn popularity_of(interest: &BTreeMap<i64, i64>) -> Option<i64> {
    let positive = || interest.iter().filter(|(_, w)| **w > 0);
    let evidence: i64 = positive().map(|(_, w)| *w).sum();
    let weight = |h: i64| ((h - DECAY_EPOCH_HOUR) as f64 / HALF_LIFE_HOURS).exp2();
    let log = positive()
        .map(|(h, w)| *w as f64 * weight(*h))
        .sum::<f64>()
        .log2();
    if evidence < MIN_SUPPORT {
        None
    } else if evidence < FINE_SUPPORT {
        Some((log + 1e-9).floor() as i64 * POPULARITY_STEP as i64)
    } else {
        Some((log * POPULARITY_STEP).round() as i64)
    }
}

/// The dataflows' documents and popularity equal the fold's; popularity may differ by one step
/// of rounding (two float sums of the same terms).
fn assert_same(events: &[Event]) {
    let got = evaluate::<SearchDocuments>(events);
    let (want, popular) = fold(events);
    let mut ids: Vec<&String> = want.keys().chain(got.keys()).collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        assert_eq!(got.get(id), want.get(id), "{id}");
    }
    let got = evaluate::<ProductPopularity>(events);
    let mut ids: Vec<&String> = popular.keys().chain(got.keys()).collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        match (got.get(id), popular.get(id)) {
            (Some(Popularity(g)), Some(w)) => {
                assert!(g.abs_diff(*w) <= 1, "{id}: popularity {g} against {w}")
            }
            (g, w) => assert_eq!(g.map(|p| p.0), w.copied(), "{id}: present in one only"),
        }
    }
    // The documents the read API serves say the same.
    for (id, fields) in &want {
        let doc = SearchDocuments::document(id, fields, &Ids::default());
        assert_eq!(doc["price_minor"], fields.price.amount_minor);
        assert_eq!(doc["reviews"], fields.reviews);
    }
}

/// One event of a small shop.
#[derive(Debug, Clone)]
enum Op {
    Upsert {
        product: u8,
        skus: Vec<u8>,
        title: u8,
        cents: i64,
    },
    Price {
        product: u8,
        cents: i64,
    },
    Discontinue(u8),
    Review {
        product: u8,
        rating: i64,
    },
    View(u8),
    Order(Vec<(u8, i64)>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..5, prop::collection::vec(0u8..6, 0..3), 0u8..4, 1i64..10_000).prop_map(
            |(product, skus, title, cents)| Op::Upsert { product, skus, title, cents }
        ),
        1 => (0u8..6, 1i64..10_000).prop_map(|(product, cents)| Op::Price { product, cents }),
        1 => (0u8..6).prop_map(Op::Discontinue),
        2 => (0u8..6, -1i64..7).prop_map(|(product, rating)| Op::Review { product, rating }),
        4 => (0u8..6).prop_map(Op::View),
        2 => prop::collection::vec((0u8..7, -1i64..4), 1..3).prop_map(Op::Order),
    ]
}

fn usd(cents: i64) -> Money {
    Money {
        amount_minor: cents,
        currency: "USD".into(),
    }
}

/// The `i`-th event, `hours` hours after the start (event time can go backwards).
fn event(i: usize, hours: i64, op: Op) -> Event {
    let payload = match op {
        Op::Upsert {
            product,
            skus,
            title,
            cents,
        } => Payload::ProductUpserted(ProductUpserted {
            product_id: format!("p-{product}"),
            skus: skus.iter().map(|s| format!("s-{s}")).collect(),
            title: format!("Title {title}"),
            description: format!("About {title}"),
            brand: format!("Brand {}", title % 2),
            category_path: vec!["Home".into(), format!("Kind {title}")],
            attributes: Default::default(),
            price: usd(cents),
        }),
        Op::Price { product, cents } => Payload::PriceChanged(PriceChanged {
            product_id: format!("p-{product}"),
            price: usd(cents),
        }),
        Op::Discontinue(product) => Payload::ProductDiscontinued(ProductDiscontinued {
            product_id: format!("p-{product}"),
            reason: None,
        }),
        Op::Review { product, rating } => Payload::ReviewPosted(ReviewPosted {
            review_id: format!("r-{i}"),
            product_id: format!("p-{product}"),
            user_id: "u-1".into(),
            rating,
            text: "ok".into(),
        }),
        Op::View(product) => Payload::ProductViewed(ProductViewed {
            user_id: "u-1".into(),
            session_id: "s-1".into(),
            product_id: format!("p-{product}"),
        }),
        Op::Order(lines) => Payload::OrderPlaced(OrderPlaced {
            order_id: format!("o-{i}"),
            user_id: "u-1".into(),
            lines: lines
                .into_iter()
                .map(|(sku, qty)| OrderLine {
                    sku: format!("s-{sku}"),
                    qty,
                    unit_price: usd(100),
                })
                .collect(),
            shipping_region: "eu-west".into(),
            payment_token: "tok".into(),
        }),
    };
    Event::new(
        uuid::Uuid::from_u128(i as u128 + 1),
        Utc.timestamp_opt(1_767_225_600 + hours * 3_600, 0)
            .single()
            .expect("time"),
        payload,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_view_is_the_fold_of_any_small_shop(
        ops in prop::collection::vec((op(), -48i64..2_000), 1..120)
    ) {
        let events: Vec<Event> = ops
            .into_iter()
            .enumerate()
            .map(|(i, (op, hours))| event(i, hours, op))
            .collect();
        assert_same(&events);
    }
}

#[test]
fn the_view_is_the_fold_of_a_generated_shop() {
    let mut generator = Generator::new(GeneratorConfig {
        products: 200,
        users: 2_000,
        events_per_day: 20_000.0,
        fulfilment_scale: 0.1,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let events: Vec<Event> = (0..40_000).map(|_| generator.next_event()).collect();
    let kinds = |p: fn(&Payload) -> bool| events.iter().filter(|e| p(&e.payload)).count();
    // The shop exercises every input of the view.
    assert!(
        kinds(|p| matches!(p, Payload::ReviewPosted(_))) > 0,
        "reviews"
    );
    assert!(
        kinds(|p| matches!(p, Payload::PriceChanged(_))) > 0,
        "price changes"
    );
    assert!(
        kinds(|p| matches!(p, Payload::OrderPlaced(_))) > 100,
        "orders"
    );
    assert!(
        kinds(|p| matches!(p, Payload::ProductViewed(_))) > 10_000,
        "views"
    );
    let (want, popular) = fold(&events);
    assert!(want.len() > 150, "{} products listed", want.len());
    assert!(
        want.values().any(|f| f.reviews > 0),
        "some products reviewed"
    );
    assert!(popular.len() > 100, "many products viewed or ordered");
    assert_same(&events);
}

#[test]
fn a_discontinued_product_leaves_and_a_relisting_brings_it_back() {
    let up = |i, title| {
        event(
            i,
            i as i64,
            Op::Upsert {
                product: 1,
                skus: vec![1],
                title,
                cents: 500,
            },
        )
    };
    let mut events = vec![up(0, 1), event(1, 1, Op::Discontinue(1))];
    assert!(evaluate::<SearchDocuments>(&events).is_empty());
    events.push(up(2, 2));
    events.push(event(
        3,
        3,
        Op::Price {
            product: 1,
            cents: 700,
        },
    ));
    let got = evaluate::<SearchDocuments>(&events);
    let doc = got.get("p-1").expect("listed again");
    assert_eq!(doc.title, "Title 2");
    assert_eq!(doc.price.amount_minor, 700);
    // First listed at the first listing's time, not the relisting's.
    assert_eq!(doc.listed_ms, events[0].occurred_at.timestamp_millis());
}

#[test]
fn interest_decays_ten_views_weigh_an_ordered_unit_and_precision_follows_evidence() {
    let listed = event(
        0,
        0,
        Op::Upsert {
            product: 1,
            skus: vec![1],
            title: 1,
            cents: 500,
        },
    );
    let score = |events: &[Event]| {
        evaluate::<ProductPopularity>(events)
            .get("p-1")
            .map(|p| p.0)
    };
    let one_now = score(&[listed.clone(), event(1, 0, Op::Order(vec![(1, 1)]))]);
    let two_now = score(&[listed.clone(), event(1, 0, Op::Order(vec![(1, 2)]))]);
    let one_later = score(&[listed.clone(), event(1, 168, Op::Order(vec![(1, 1)]))]);
    let (one_now, two_now, one_later) = (
        one_now.expect("ordered"),
        two_now.expect("ordered"),
        one_later.expect("ordered"),
    );
    // One step of log2 is 16: two units weigh twice one, and one unit a half-life later weighs
    // twice one now.
    assert_eq!(two_now - one_now, POPULARITY_STEP as i64);
    assert_eq!(one_later - one_now, POPULARITY_STEP as i64);
    let viewed: Vec<Event> = std::iter::once(listed.clone())
        .chain((1..=10).map(|i| event(i, 0, Op::View(1))))
        .collect();
    assert_eq!(
        score(&viewed),
        Some(one_now),
        "ten views weigh one ordered unit"
    );
    // Too little evidence is no popularity; little is known to whole doublings only.
    let views = |n: usize| -> Vec<Event> {
        std::iter::once(listed.clone())
            .chain((1..=n).map(|i| event(i, 0, Op::View(1))))
            .collect()
    };
    assert_eq!(score(&views(4)), None, "four views");
    let coarse = score(&views(5)).expect("five views");
    assert_eq!(coarse % POPULARITY_STEP as i64, 0, "whole doublings");
    assert_eq!(
        score(&views(31)).map(|p| p % POPULARITY_STEP as i64),
        Some(0)
    );
    // From 32 views on, steps of 1/16: 40 views are more than 33.
    assert!(score(&views(40)) > score(&views(33)));
    // Evidence is not decayed: 40 views five weeks ago and one now keep a popularity, and it
    // only grows.
    let old_and_new: Vec<Event> = std::iter::once(listed.clone())
        .chain((1..=40).map(|i| event(i, 0, Op::View(1))))
        .collect();
    let before = score(&old_and_new).expect("forty views");
    let mut later = old_and_new.clone();
    later.push(event(41, 5 * 168, Op::View(1)));
    let after = score(&later).expect("still popular");
    assert!(after >= before, "{after} < {before}");
    // A view of another product is no interest in this one.
    let elsewhere = [listed, event(1, 0, Op::View(2))];
    assert_eq!(score(&elsewhere), None);
}
