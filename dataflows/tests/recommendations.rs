//! The recommendation views against plain folds of the same events (issue 25), and erasure
//! against a recomputation without the erased user.
//!
//! The fold is written from the rules, not from the views' code: an order counts when it has
//! been paid and not cancelled; its basket is the skus its `order_placed` events named, less the
//! returned ones, credited to each sku's owner at the end (among the products' latest listings
//! naming it, the latest), once per product, the first 20 products listed; a user's orders never
//! count once the user is erased; each product's partners are the other products of its baskets,
//! counted per order, best 30 by count then the one listed first.
//!
//! The views name things by integer ids inside (given in log order); their outputs are read
//! here with the names again, and "listed first" is the order of each product's first
//! `product_upserted`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{TimeZone, Utc};
use emporium_dataflows::recs::also_bought::{AlsoBought, MAX_BASKET, TOP_K};
use emporium_dataflows::recs::also_viewed::{self, AlsoViewed, MAX_SESSION};
use emporium_dataflows::recs::content::{self, BLOCK_CAP, Content};
use emporium_dataflows::recs::erased_users::ErasedUsers;
use emporium_dataflows::recs::similar::{self, ITEM_CAP, MIN_BUYERS, Similar, USER_CAP};
use emporium_dataflows::recs::trending::Trending;
use emporium_dataflows::recs::user_purchases::{RECENT, UserPurchases};
use emporium_dataflows::recs::user_views::{self, UserViews};
use emporium_dataflows::view::{View, evaluate, evaluate_with_ids};
use emporium_generator::{Generator, GeneratorConfig};
use emporium_schemas::accounts::UserErased;
use emporium_schemas::catalog::ProductUpserted;
use emporium_schemas::money::Money;
use emporium_schemas::orders::{
    OrderCancelled, OrderLine, OrderPlaced, PaymentAuthorized, ReturnLine, ReturnRequested,
};
use emporium_schemas::shopper::ProductViewed;
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

/// A product's partners by name: (product, orders holding both), best first.
type Partners = Vec<(String, u64)>;

/// Each product's place in the order of first listings.
fn listed(events: &[Event]) -> HashMap<String, usize> {
    let mut first = HashMap::new();
    for e in events {
        if let Payload::ProductUpserted(p) = &e.payload {
            let n = first.len();
            first.entry(p.product_id.clone()).or_insert(n);
        }
    }
    first
}

/// A product-list view (values: `(product id, score)`, best first) over `events`, with names.
fn named_lists<V>(events: &[Event]) -> HashMap<String, Partners>
where
    V: View<Key = u32, Value = Vec<(u32, u64)>>,
{
    let (got, ids) = evaluate_with_ids::<V>(events);
    got.into_iter()
        .map(|(product, list)| {
            let named = list.into_iter().map(|(p, n)| (ids.name(p).to_owned(), n));
            (ids.name(product).to_owned(), named.collect())
        })
        .collect()
}

/// The also-bought view over `events`, with names.
fn also_bought(events: &[Event]) -> HashMap<String, Partners> {
    named_lists::<AlsoBought>(events)
}

/// The similar-products view over `events`, with names.
fn similar(events: &[Event]) -> HashMap<String, Partners> {
    named_lists::<Similar>(events)
}

/// The expected similar products: each user's purchases at their latest payment, the user's
/// latest 100 (ties: the product listed last first), each product's latest 500 buyers among
/// those; per pair with at least 2 common buyers `k`, the cosine `k / √(n_a n_b)` in
/// millionths, rounded; best 30 by score then the product listed first.
fn fold_similar(events: &[Event]) -> HashMap<String, Partners> {
    let rank = listed(events);
    let mut latest: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for (_, user, product, seq) in counted(events) {
        let at = latest.entry(user).or_default().entry(product).or_insert(0);
        *at = (*at).max(seq);
    }
    let mut buyers: HashMap<String, Vec<(usize, String)>> = HashMap::new();
    for (user, products) in latest {
        let mut products: Vec<(usize, usize, String)> = products
            .into_iter()
            .map(|(p, seq)| (seq, rank[&p], p))
            .collect();
        products.sort_by(|a, b| b.cmp(a));
        for (seq, _, product) in products.into_iter().take(USER_CAP) {
            buyers.entry(product).or_default().push((seq, user.clone()));
        }
    }
    let mut kept: HashMap<String, Vec<String>> = HashMap::new();
    let mut n: HashMap<String, u64> = HashMap::new();
    for (product, mut users) in buyers {
        users.sort_by_key(|u| std::cmp::Reverse(u.0));
        for (_, user) in users.into_iter().take(ITEM_CAP) {
            kept.entry(user).or_default().push(product.clone());
            *n.entry(product.clone()).or_default() += 1;
        }
    }
    let mut common: HashMap<(String, String), u64> = HashMap::new();
    for products in kept.values() {
        for a in products {
            for b in products.iter().filter(|b| *b != a) {
                *common.entry((a.clone(), b.clone())).or_default() += 1;
            }
        }
    }
    let mut out: HashMap<String, Partners> = HashMap::new();
    for ((a, b), k) in common.into_iter().filter(|(_, k)| *k >= MIN_BUYERS) {
        let cosine = k as f64 / ((n[&a] * n[&b]) as f64).sqrt();
        let score = (cosine * similar::SCALE).round() as u64;
        out.entry(a).or_default().push((b, score));
    }
    for list in out.values_mut() {
        list.sort_by(|(b1, s1), (b2, s2)| s2.cmp(s1).then(rank[b1].cmp(&rank[b2])));
        list.truncate(similar::TOP_K);
    }
    out
}

/// The trending view over `events`, with names: per category, per window, (product, score).
fn trending(events: &[Event]) -> HashMap<String, Vec<Partners>> {
    let (got, ids) = evaluate_with_ids::<Trending>(events);
    got.into_iter()
        .map(|(category, lists)| {
            let named = lists
                .into_iter()
                .map(|l| {
                    l.into_iter()
                        .map(|(p, s)| (ids.name(p).to_owned(), s))
                        .collect()
                })
                .collect();
            (ids.name(category).to_owned(), named)
        })
        .collect()
}

/// The expected trending lists: per product and hour of event time, its views plus 10 per unit
/// ordered of a sku it owns (at the end: the latest listing naming the sku); per window of
/// half-life H, `log2 Σ w · 2^((h − E)/H)` in sixteenths, rounded; the product in `*` and in
/// each prefix of its latest listing's category path; best 50 per category and window, ties to
/// the product listed first.
fn fold_trending(events: &[Event]) -> HashMap<String, Vec<Partners>> {
    let rank = listed(events);
    let mut listing: HashMap<String, (usize, Vec<String>, Vec<String>)> = HashMap::new();
    let mut interest: HashMap<String, BTreeMap<i64, i64>> = HashMap::new();
    let mut ordered: Vec<(String, i64, i64)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let hour = e.occurred_at.timestamp_millis().div_euclid(3_600_000);
        match &e.payload {
            Payload::ProductUpserted(p) => {
                listing.insert(
                    p.product_id.clone(),
                    (i, p.skus.clone(), p.category_path.clone()),
                );
            }
            Payload::ProductViewed(v) => {
                *interest
                    .entry(v.product_id.clone())
                    .or_default()
                    .entry(hour)
                    .or_default() += 1;
            }
            Payload::OrderPlaced(o) => {
                for line in &o.lines {
                    ordered.push((line.sku.clone(), hour, line.qty * 10));
                }
            }
            _ => {}
        }
    }
    let mut owner: HashMap<&str, (usize, &str)> = HashMap::new();
    for (product, (at, skus, _)) in &listing {
        for sku in skus {
            let o = owner.entry(sku).or_insert((*at, product));
            if *at > o.0 {
                *o = (*at, product);
            }
        }
    }
    for (sku, hour, units) in &ordered {
        if let Some((_, product)) = owner.get(sku.as_str()) {
            *interest
                .entry((*product).to_owned())
                .or_default()
                .entry(*hour)
                .or_default() += units;
        }
    }
    let epoch = 438_288i64;
    let mut lists: HashMap<String, Vec<Partners>> = HashMap::new();
    for (product, hours) in &interest {
        let Some((_, _, path)) = listing.get(product) else {
            continue;
        };
        let mut categories = vec!["*".to_owned()];
        for i in 1..=path.len() {
            categories.push(path[..i].join("/"));
        }
        for (window, half_life) in [1.0f64, 24.0].into_iter().enumerate() {
            let logs: Vec<f64> = hours
                .iter()
                .filter(|(_, w)| **w > 0)
                .map(|(h, w)| (h - epoch) as f64 / half_life + (*w as f64).log2())
                .collect();
            let Some(top) = logs.iter().copied().reduce(f64::max) else {
                continue;
            };
            let log = top + logs.iter().map(|l| (l - top).exp2()).sum::<f64>().log2();
            let score = (log * 16.0).round().max(0.0) as u64;
            for c in &categories {
                let per_window = lists
                    .entry(c.clone())
                    .or_insert_with(|| vec![vec![], vec![]]);
                per_window[window].push((product.clone(), score));
            }
        }
    }
    for per_window in lists.values_mut() {
        for list in per_window.iter_mut() {
            list.sort_by(|(a, x), (b, y)| y.cmp(x).then(rank[a].cmp(&rank[b])));
            list.truncate(50);
        }
    }
    lists
}

/// The user-purchases view over `events`, with names.
fn user_purchases(events: &[Event]) -> HashMap<String, Vec<String>> {
    let (got, ids) = evaluate_with_ids::<UserPurchases>(events);
    got.into_iter()
        .map(|(user, products)| {
            let named = products.0.iter().map(|p| ids.name(*p).to_owned()).collect();
            (ids.name(user).to_owned(), named)
        })
        .collect()
}

/// The also-viewed view over `events`, with names.
fn also_viewed(events: &[Event]) -> HashMap<String, Partners> {
    named_lists::<AlsoViewed>(events)
}

/// The user-views view over `events`, with names.
fn user_views(events: &[Event]) -> HashMap<String, Vec<String>> {
    let (got, ids) = evaluate_with_ids::<UserViews>(events);
    got.into_iter()
        .map(|(user, products)| {
            let named = products.0.iter().map(|p| ids.name(*p).to_owned()).collect();
            (ids.name(user).to_owned(), named)
        })
        .collect()
}

/// Each product's place in the order of the events first naming it: its listing, or a view of
/// it before any listing.
fn named(events: &[Event]) -> HashMap<String, usize> {
    let mut first = HashMap::new();
    for e in events {
        let product = match &e.payload {
            Payload::ProductUpserted(p) => &p.product_id,
            Payload::ProductViewed(v) => &v.product_id,
            _ => continue,
        };
        let n = first.len();
        first.entry(product.clone()).or_insert(n);
    }
    first
}

/// The users erased anywhere in `events`.
fn erased_in(events: &[Event]) -> HashSet<String> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::UserErased(u) => Some(u.user_id.clone()),
            _ => None,
        })
        .collect()
}

/// The expected co-viewed partners of every product with any: per (user, session) of a user
/// never erased, the products viewed, each once, the first 20 named; per pair, the sessions
/// holding both; best 30 by count then the product named first.
fn fold_also_viewed(events: &[Event]) -> HashMap<String, Partners> {
    let rank = named(events);
    let erased = erased_in(events);
    let mut sessions: BTreeMap<(String, String), BTreeSet<(usize, String)>> = BTreeMap::new();
    for e in events {
        if let Payload::ProductViewed(v) = &e.payload
            && !erased.contains(&v.user_id)
        {
            sessions
                .entry((v.user_id.clone(), v.session_id.clone()))
                .or_default()
                .insert((rank[&v.product_id], v.product_id.clone()));
        }
    }
    let mut pairs: HashMap<(String, String), u64> = HashMap::new();
    for products in sessions.values() {
        let products: Vec<&String> = products.iter().take(MAX_SESSION).map(|(_, p)| p).collect();
        for a in &products {
            for b in products.iter().filter(|b| *b != a) {
                *pairs.entry(((*a).clone(), (*b).clone())).or_default() += 1;
            }
        }
    }
    let mut partners: HashMap<String, Partners> = HashMap::new();
    for ((a, b), n) in pairs {
        partners.entry(a).or_default().push((b, n));
    }
    for list in partners.values_mut() {
        list.sort_by(|(b1, n1), (b2, n2)| n2.cmp(n1).then(rank[b1].cmp(&rank[b2])));
        list.truncate(also_viewed::TOP_K);
    }
    partners
}

/// The expected recent views of every user with any (none for the erased): the products viewed,
/// by their latest view, latest first (ties: the product named last first), at most 20.
fn fold_user_views(events: &[Event]) -> HashMap<String, Vec<String>> {
    let rank = named(events);
    let erased = erased_in(events);
    let mut latest: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Payload::ProductViewed(v) = &e.payload
            && !erased.contains(&v.user_id)
        {
            latest
                .entry(v.user_id.clone())
                .or_default()
                .insert(v.product_id.clone(), i);
        }
    }
    latest
        .into_iter()
        .map(|(user, products)| {
            let mut products: Vec<(usize, usize, String)> = products
                .into_iter()
                .map(|(p, i)| (i, rank[&p], p))
                .collect();
            products.sort_by(|a, b| b.cmp(a));
            let recent = products.into_iter().take(user_views::RECENT);
            (user, recent.map(|(_, _, p)| p).collect())
        })
        .collect()
}

/// The content view over `events`, with names.
fn content(events: &[Event]) -> HashMap<String, Partners> {
    named_lists::<Content>(events)
}

/// The expected content neighbours: each product's latest listing; per leaf category (the
/// whole path), its 200 latest listed products; for each of them the others, scored 1000, +3000
/// for one brand, +⌊2000 · common title words / all title words⌋ (lower-cased, split on what is
/// not a letter or digit), +1000 for prices within a factor of √2 in the same band
/// `⌊2 log2 cents⌋`, +500 in adjacent bands; best 30, ties to the product listed first.
fn fold_content(events: &[Event]) -> HashMap<String, Partners> {
    let rank = listed(events);
    // product → (when listed last, leaf, brand, words, band)
    let mut latest: HashMap<String, (usize, String, String, BTreeSet<String>, i64)> =
        HashMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Payload::ProductUpserted(p) = &e.payload {
            let words: BTreeSet<String> = p
                .title
                .to_lowercase()
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect();
            let cents = p.price.amount_minor;
            let band = if cents < 2 {
                0
            } else {
                (2.0 * (cents as f64).log2()).floor() as i64
            };
            let leaf = p.category_path.join("/");
            latest.insert(
                p.product_id.clone(),
                (i, leaf, p.brand.clone(), words, band),
            );
        }
    }
    let mut leaves: BTreeMap<&str, Vec<(usize, &String)>> = BTreeMap::new();
    for (product, (at, leaf, ..)) in &latest {
        leaves.entry(leaf).or_default().push((*at, product));
    }
    let mut out = HashMap::new();
    for members in leaves.values_mut() {
        members.sort_by(|a, b| b.cmp(a));
        members.truncate(BLOCK_CAP);
        for (_, a) in members.iter() {
            let (_, _, brand_a, words_a, band_a) = &latest[*a];
            let mut scored: Partners = members
                .iter()
                .filter(|(_, b)| b != a)
                .map(|(_, b)| {
                    let (_, _, brand_b, words_b, band_b) = &latest[*b];
                    let mut score = 1000;
                    if brand_a == brand_b {
                        score += 3000;
                    }
                    let common = words_a.intersection(words_b).count() as u64;
                    let all = words_a.union(words_b).count() as u64;
                    score += (2000 * common).checked_div(all).unwrap_or(0);
                    score += match (band_a - band_b).abs() {
                        0 => 1000,
                        1 => 500,
                        _ => 0,
                    };
                    ((*b).clone(), score)
                })
                .collect();
            scored.sort_by(|(b1, s1), (b2, s2)| s2.cmp(s1).then(rank[b1].cmp(&rank[b2])));
            scored.truncate(content::TOP_K);
            if !scored.is_empty() {
                out.insert((*a).clone(), scored);
            }
        }
    }
    out
}

/// The expected partners of every product with any.
fn fold(events: &[Event]) -> HashMap<String, Partners> {
    let rank = listed(events);
    let mut baskets: BTreeMap<String, BTreeSet<(usize, String)>> = BTreeMap::new();
    for (order, _, product, _) in counted(events) {
        baskets
            .entry(order)
            .or_default()
            .insert((rank[&product], product));
    }
    let mut pairs: HashMap<(String, String), u64> = HashMap::new();
    for products in baskets.values() {
        let products: Vec<&String> = products.iter().take(MAX_BASKET).map(|(_, p)| p).collect();
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
        list.sort_by(|(b1, n1), (b2, n2)| n2.cmp(n1).then(rank[b1].cmp(&rank[b2])));
        list.truncate(TOP_K);
    }
    partners
}

/// The expected recent purchases of every user with any (none for the erased): the products of
/// their counted orders, by when the order was first paid, latest first (ties: the product listed
/// last first), each once, at most 20.
fn fold_users(events: &[Event]) -> HashMap<String, Vec<String>> {
    let rank = listed(events);
    let mut latest: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for (_, user, product, seq) in counted(events) {
        let at = latest.entry(user).or_default().entry(product).or_insert(0);
        *at = (*at).max(seq);
    }
    latest
        .into_iter()
        .map(|(user, products)| {
            let mut products: Vec<(usize, usize, String)> = products
                .into_iter()
                .map(|(p, seq)| (seq, rank[&p], p))
                .collect();
            products.sort_by(|a, b| b.cmp(a));
            let recent = products.into_iter().take(RECENT).map(|(_, _, p)| p);
            (user, recent.collect())
        })
        .collect()
}

fn assert_same(events: &[Event]) {
    assert_eq!(content(events), fold_content(events), "content");
    assert_eq!(also_viewed(events), fold_also_viewed(events), "also viewed");
    assert_eq!(user_views(events), fold_user_views(events), "user views");
    assert_eq!(user_purchases(events), fold_users(events), "user purchases");
    assert_eq!(similar(events), fold_similar(events), "similar");
    let erased: HashMap<String, ()> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::UserErased(u) => Some((u.user_id.clone(), ())),
            _ => None,
        })
        .collect();
    assert_eq!(evaluate::<ErasedUsers>(events), erased, "erased users");
    let got = also_bought(events);
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
    View { user: u8, session: u8, product: u8 },
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
        6 => (0u8..4, 0u8..3, 0u8..8)
            .prop_map(|(user, session, product)| Op::View { user, session, product }),
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
            // Attributes that vary with the listing, so a relisting can move a product to
            // another brand, leaf, title or price band.
            title: format!(
                "{} Thing-{}",
                ["Red", "Blue"][product as usize % 2],
                skus.len()
            ),
            description: "A thing".into(),
            brand: ["Acme", "Globex", "Hooli"][(product as usize + skus.len()) % 3].into(),
            category_path: vec!["Home".into(), ["Kitchen", "Garden"][skus.len() % 2].into()],
            attributes: Default::default(),
            price: usd(100 + 60 * skus.len() as i64),
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
        // Session ids repeat across users: sessions are per user.
        Op::View {
            user,
            session,
            product,
        } => Payload::ProductViewed(ProductViewed {
            user_id: format!("u-{user}"),
            session_id: format!("v-{session}"),
            product_id: format!("p-{product}"),
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

/// Views crowding a few sessions with many products (more than a session keeps, more than a
/// user's recent list holds), listed in any order, with erasures among them.
fn crowded_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..40).prop_map(|product| Op::List { product, skus: vec![] }),
        1 => (0u8..6).prop_map(Op::Erase),
        30 => (0u8..3, 0u8..2, 0u8..40)
            .prop_map(|(user, session, product)| Op::View { user, session, product }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_session_views_are_the_folds_of_crowded_sessions(
        ops in prop::collection::vec(crowded_op(), 1..250)
    ) {
        let events: Vec<Event> = ops.into_iter().enumerate().map(|(i, op)| event(i, op)).collect();
        prop_assert_eq!(also_viewed(&events), fold_also_viewed(&events), "also viewed");
        prop_assert_eq!(user_views(&events), fold_user_views(&events), "user views");
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
    let similar = fold_similar(&events);
    assert!(
        similar.len() > 50,
        "{} products with similar ones",
        similar.len()
    );
    let trends = fold_trending(&events);
    assert!(trends.len() > 10, "{} categories trending", trends.len());
    assert!(
        trends["*"][0].len() == 50,
        "the whole catalogue's list is full"
    );
    assert_eq!(trending(&events), trends, "trending");
    let viewed = fold_also_viewed(&events);
    assert!(viewed.len() > 100, "{} products co-viewed", viewed.len());
    assert!(
        viewed.values().any(|p| p.len() == also_viewed::TOP_K),
        "some product has more co-viewed partners than kept"
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
            Payload::ProductViewed(v) => !erased.contains(&v.user_id),
            Payload::UserErased(_) => false,
            _ => true,
        })
        .cloned()
        .collect();
    assert_eq!(also_bought(&events), also_bought(&without));
    assert_eq!(user_purchases(&events), user_purchases(&without));
    assert_eq!(similar(&events), similar(&without));
    assert_eq!(also_viewed(&events), also_viewed(&without));
    assert_eq!(user_views(&events), user_views(&without));
    assert_ne!(
        also_bought(&events),
        also_bought(
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
    assert!(also_bought(&events).is_empty());
    events.push(event(4, Op::Pay(3)));
    let paid = also_bought(&events);
    assert_eq!(paid["p-1"], vec![("p-2".into(), 1), ("p-3".into(), 1)]);
    // The second sku returned: the rest still counts.
    events.push(event(5, Op::Return { order: 3, sku: 2 }));
    let returned = also_bought(&events);
    assert_eq!(returned["p-1"], vec![("p-3".into(), 1)]);
    assert!(!returned.contains_key("p-2"));
    events.push(event(6, Op::Cancel(3)));
    assert!(also_bought(&events).is_empty());
}

/// Lists product `p-{i}` with sku `s-{i}`, the `at`-th event.
fn listing(at: usize, i: usize) -> Event {
    let mut e = event(
        at,
        Op::List {
            product: 0,
            skus: vec![],
        },
    );
    if let Payload::ProductUpserted(p) = &mut e.payload {
        p.product_id = format!("p-{i}");
        p.skus = vec![format!("s-{i}")];
    }
    e
}

/// An order of `user` for skus `s-{i}`, paid: two events from `at`.
fn paid_order(at: usize, order: usize, user: usize, skus: &[usize]) -> [Event; 2] {
    let mut placed = event(
        at,
        Op::Order {
            user: 0,
            skus: vec![0],
        },
    );
    if let Payload::OrderPlaced(o) = &mut placed.payload {
        o.order_id = format!("o-{order}");
        o.user_id = format!("u-{user}");
        o.lines = skus
            .iter()
            .map(|s| OrderLine {
                sku: format!("s-{s}"),
                qty: 1,
                unit_price: usd(100),
            })
            .collect();
    }
    let mut paid = event(at + 1, Op::Pay(0));
    if let Payload::PaymentAuthorized(p) = &mut paid.payload {
        p.order_id = format!("o-{order}");
    }
    [placed, paid]
}

#[test]
fn similar_keeps_a_users_latest_products_and_a_products_latest_buyers() {
    // Product 0 is bought by ITEM_CAP + 50 users, each also buying product 1 or 2 (the later
    // buyers product 2); user 0 buys USER_CAP + 20 products, one per order.
    let products = USER_CAP + 30;
    let mut events: Vec<Event> = (0..products).map(|i| listing(i, i)).collect();
    let mut order = 0;
    for user in 1..=ITEM_CAP + 50 {
        let other = if user <= 100 { 1 } else { 2 };
        events.extend(paid_order(events.len(), order, user, &[0, other]));
        order += 1;
    }
    for p in 3..USER_CAP + 23 {
        events.extend(paid_order(events.len(), order, 0, &[p, 0]));
        order += 1;
    }
    // Someone else shares two of user 0's earliest and latest products.
    events.extend(paid_order(events.len(), order, 9_000, &[3, 4]));
    events.extend(paid_order(events.len(), order + 1, 9_001, &[3, 4]));
    events.extend(paid_order(
        events.len(),
        order + 2,
        9_002,
        &[USER_CAP + 21, USER_CAP + 22],
    ));
    events.extend(paid_order(
        events.len(),
        order + 3,
        9_003,
        &[USER_CAP + 21, USER_CAP + 22],
    ));
    // And one of each pair alone.
    events.extend(paid_order(events.len(), order + 4, 9_004, &[3]));
    events.extend(paid_order(events.len(), order + 5, 9_005, &[USER_CAP + 21]));
    let want = fold_similar(&events);
    let got = similar(&events);
    assert_eq!(got, want);
    // Product 1's early buyers fell out of product 0's latest ITEM_CAP: product 0 and 1 share
    // fewer buyers than they had.
    let of = |p: &str, q: &str| got.get(p).and_then(|l| l.iter().find(|(x, _)| x == q));
    let with_2 = of("p-0", "p-2").expect("p-2 is similar to p-0").1;
    assert!(of("p-0", "p-1").is_none_or(|(_, s)| *s < with_2));
    // User 0's earliest products are out of their latest USER_CAP: 3 and 4 have 2 common buyers
    // of 3 and 2 (2/√6), the latest two 3 of 4 and 3 (3/√12), user 0 being one of them.
    let early = of("p-3", "p-4").expect("p-4 is similar to p-3").1;
    let late = of(
        &format!("p-{}", USER_CAP + 21),
        &format!("p-{}", USER_CAP + 22),
    )
    .expect("the latest two are similar")
    .1;
    assert!(late > early, "{late} > {early}");
}

#[test]
fn content_compares_a_leafs_latest_listed_products() {
    // One leaf with more products than a block holds, the first few relisted (so newest) last.
    let n = BLOCK_CAP + 10;
    let mut events: Vec<Event> = (0..n)
        .map(|i| {
            let mut e = listing(i, i);
            if let Payload::ProductUpserted(p) = &mut e.payload {
                p.brand = ["Acme", "Globex"][i % 2].into();
                p.title = format!("{} lamp {}", ["Red", "Blue", "Green"][i % 3], i);
                p.price = usd(1_000 + 37 * i as i64);
            }
            e
        })
        .collect();
    let mut relisted = events[3].clone();
    relisted.event_id = uuid::Uuid::from_u128(10_000);
    events.push(relisted);
    let want = fold_content(&events);
    assert_eq!(content(&events), want);
    assert_eq!(want.len(), BLOCK_CAP, "the block's products have lists");
    // The oldest listings fell out of the block; the relisted one came back in.
    assert!(!want.contains_key("p-0") && !want.contains_key("p-10"));
    assert!(want.contains_key("p-3") && want.contains_key("p-11"));
    assert!(want.values().flatten().all(|(p, _)| p != "p-0"));
    // The best neighbours share the brand.
    let (best, score) = &want["p-100"][0];
    assert!(*score >= 4_000, "{best} scores {score}");
    assert_eq!(
        best.trim_start_matches("p-")
            .parse::<usize>()
            .map(|i| i % 2),
        Ok(0)
    );
}
