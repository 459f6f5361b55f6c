//! What the recommendations are worth, offline (issue 25, ADR 0015): a temporal split of a
//! generated history — the views maintained over its first weeks, their recommendations judged
//! against what each shopper bought in the last weeks — beside a popularity baseline and beside
//! ALS (PyPI `implicit`) trained on the same split.
//!
//! - **History**: a shop with taste (`emporium_generator::taste`: drifting category and brand
//!   preferences, complements); the recommenders never read the model, only the events.
//! - **Split**: train on events before `start + TRAIN_DAYS`, test on the purchases paid after it:
//!   orders placed in the test weeks, paid, not cancelled (returns ignored), their skus credited
//!   to the products listing them. Judged: every user with a purchase in both (warm users); a
//!   product the user bought in training is neither recommended nor a hit.
//! - **Ranked over the whole catalogue**: each method's 10 best products out of all of them
//!   (not a sample of negatives); a method with fewer than 10 candidates is topped up with the
//!   popularity ranking, so every method answers 10.
//! - **Methods**: `popularity` (most bought in training); each item-to-item list alone —
//!   `also_bought` walked from the user's recent purchases, `similar` and `also_viewed` from
//!   their recent views —; `content`, content-based over the shopper (ADR 0015, option P2): the
//!   `trending` lists of the leaf categories of their recent views and purchases (the route's
//!   `category` walk), with the whole catalogue's trending list as one more walk (its prior,
//!   weight [`CONTENT_PRIOR`]); and `served` (as `GET /v1/users/{id}/recommendations` walks
//!   them: `USER_WALKS`), each composed by `emporium_serving::recommendations::compose` and then
//!   `rerank`ed by the `product_popularity` view, as the route does, over the views the pipeline
//!   maintains (`emporium_dataflows::recs`, `popularity`) run over the training events. Measured
//!   alternatives (not the targets' methods): `served, not reranked`; `similar, from purchases`
//!   (as before its vectors held views); `content` without its prior; the `content` lists
//!   walked from the views (the `content` method until 2026-12-06, option P1); the served walks
//!   with those lists (weight ½) for the category lists (the route until then); the served
//!   ranking walking 20 and 5 recent products. `als`: `scripts/recs_als.py`
//!   in a venv with `implicit` (`$EMPORIUM_RECS_VENV`, default `~/.cache/emporium/recs-venv`;
//!   `scripts/test` makes it), on the same training purchases (skipped, and the target not
//!   measured, without it).
//! - **Metrics**: precision@10, recall@10 (hits over the user's test products) and nDCG@10
//!   (binary relevance), averaged over the judged users.
//!
//! Targets (issue 25): every personalised method of ours beats popularity on nDCG@10; the best
//! of ours reaches at least ALS's.
//!
//! Run: `cargo bench --bench recs_evaluate` (add `-- --quick` for a smoke run). Writes
//! `<target dir>/bench-results/recs_evaluate.json`.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write as _;
use std::time::Instant;

use chrono::Duration;
use emporium_dataflows::popularity::POPULARITY_STEP;
use emporium_dataflows::popularity::ProductPopularity;
use emporium_dataflows::recs::also_bought::AlsoBought;
use emporium_dataflows::recs::also_viewed::AlsoViewed;
use emporium_dataflows::recs::content::Content;
use emporium_dataflows::recs::similar::Similar;
use emporium_dataflows::recs::trending::{ALL, Trending};
use emporium_dataflows::recs::user_purchases::UserPurchases;
use emporium_dataflows::recs::user_views::UserViews;
use emporium_dataflows::view::evaluate_in_rounds;
use emporium_generator::{Generator, GeneratorConfig};
use emporium_schemas::{Event, Payload};
use emporium_serving::lists::{CATEGORY, interest_shares};
use emporium_serving::recommendations::{
    Basis, RERANK_CANDIDATES, USER_BASIS, USER_WALKS, Walk, compose, rerank,
};
use support::*;

const K: usize = 10;
const TRAIN_DAYS: i64 = 42;
const TEST_DAYS: i64 = 14;
/// The weight of the whole catalogue's trending list in the `content` method: its prior.
const CONTENT_PRIOR: f64 = 1.0;
const SOURCE_BEAT: &str =
    "issue 25, offline evaluation: every personalised method beats popularity (nDCG@10)";
const SOURCE_ALS: &str =
    "issue 25, offline evaluation: the best of ours reaches at least ALS's nDCG@10";

/// The shop: products, users and events of the history (8 weeks of event time).
fn shop() -> (GeneratorConfig, u64) {
    let (products, users, events) = if quick() {
        (500, 500, 150_000)
    } else {
        (5_000, 5_000, 3_000_000)
    };
    let days = (TRAIN_DAYS + TEST_DAYS) as f64;
    let config = GeneratorConfig {
        products,
        users,
        events_per_day: events as f64 / days,
        fulfilment_scale: 0.05,
        ..GeneratorConfig::default()
    };
    (config, events)
}

/// The purchases that count by the split's rule, per user: `(user, product)` of orders placed
/// in `[from, to)`, paid, not cancelled.
fn purchases(
    events: &[Event],
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> HashMap<String, BTreeSet<String>> {
    let mut owner: HashMap<&str, &str> = HashMap::new();
    let mut placed: HashMap<&str, (&str, Vec<&str>)> = HashMap::new();
    let (mut paid, mut cancelled) = (HashSet::new(), HashSet::new());
    for e in events {
        match &e.payload {
            Payload::ProductUpserted(p) => {
                for sku in &p.skus {
                    owner.insert(sku, &p.product_id);
                }
            }
            Payload::OrderPlaced(o) if e.occurred_at >= from && e.occurred_at < to => {
                let skus = o.lines.iter().map(|l| l.sku.as_str()).collect();
                placed.insert(&o.order_id, (&o.user_id, skus));
            }
            Payload::PaymentAuthorized(p) => {
                paid.insert(p.order_id.as_str());
            }
            Payload::OrderCancelled(c) => {
                cancelled.insert(c.order_id.as_str());
            }
            _ => {}
        }
    }
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (order, (user, skus)) in placed {
        if !paid.contains(order) || cancelled.contains(order) {
            continue;
        }
        for sku in skus {
            if let Some(product) = owner.get(sku) {
                out.entry(user.to_owned())
                    .or_default()
                    .insert((*product).to_owned());
            }
        }
    }
    out
}

/// A walk of a user's recommendations: (basis, kind of list, weight), as `USER_WALKS`.
type UserWalk = (Basis, &'static str, f64);

/// Precision, recall and nDCG at [`K`] of one ranking against the products bought.
fn judge(ranked: &[String], truth: &BTreeSet<String>) -> [f64; 3] {
    let hits: Vec<bool> = ranked.iter().take(K).map(|p| truth.contains(p)).collect();
    let n = hits.iter().filter(|h| **h).count() as f64;
    let dcg: f64 = hits
        .iter()
        .enumerate()
        .filter(|(_, h)| **h)
        .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let ideal: f64 = (0..truth.len().min(K))
        .map(|i| 1.0 / ((i + 2) as f64).log2())
        .sum();
    [n / K as f64, n / truth.len() as f64, dcg / ideal]
}

/// `ranked`, less what `exclude` holds, topped up from `fallback` to [`K`].
fn top_up(ranked: Vec<String>, exclude: &BTreeSet<String>, fallback: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(K);
    for p in ranked.into_iter().chain(fallback.iter().cloned()) {
        if out.len() == K {
            break;
        }
        if !exclude.contains(&p) && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Every view's final lists over `events`, by product (or user) name.
fn lists<V>(
    events: &[Event],
    entries: impl Fn(&V::Value) -> Vec<(u32, f64)>,
) -> HashMap<String, Vec<(String, f64)>>
where
    V: emporium_dataflows::view::View<Key = u32>,
{
    let (got, ids) = evaluate_in_rounds::<V>(events, 10_000);
    got.iter()
        .map(|(k, v)| {
            let named = entries(v)
                .into_iter()
                .map(|(p, s)| (ids.name(p).to_owned(), s))
                .collect();
            (ids.name(*k).to_owned(), named)
        })
        .collect()
}

/// ALS's 10 for each of `users`, from `scripts/recs_als.py` over the training purchases; `None`
/// (with the reason printed) without its venv.
fn als(
    train: &HashMap<String, BTreeSet<String>>,
    users: &[String],
) -> Option<HashMap<String, Vec<String>>> {
    let venv = std::env::var("EMPORIUM_RECS_VENV").unwrap_or_else(|_| {
        format!(
            "{}/.cache/emporium/recs-venv",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let python = std::path::Path::new(&venv).join("bin/python");
    if !python.exists() {
        println!(
            "   als: skipped (no venv at {venv}; scripts/test makes it: pip install implicit)"
        );
        return None;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (train_csv, users_csv, out_csv) = (
        dir.path().join("train.csv"),
        dir.path().join("users.csv"),
        dir.path().join("als.csv"),
    );
    let mut f = std::io::BufWriter::new(std::fs::File::create(&train_csv).expect("train.csv"));
    for (user, products) in train {
        for p in products {
            writeln!(f, "{user},{p}").expect("write train.csv");
        }
    }
    drop(f);
    std::fs::write(&users_csv, users.join("\n")).expect("users.csv");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/recs_als.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .args([&train_csv, &users_csv, &out_csv])
        .arg(K.to_string())
        .output()
        .expect("run python");
    if !out.status.success() {
        println!(
            "   als: failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let text = std::fs::read_to_string(&out_csv).expect("als.csv");
    let mut recs: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines() {
        if let Some((user, product)) = line.split_once(',') {
            recs.entry(user.to_owned())
                .or_default()
                .push(product.to_owned());
        }
    }
    Some(recs)
}

fn main() {
    let (config, n) = shop();
    let started = Instant::now();
    let mut generator = Generator::new(config.clone()).expect("generator");
    let events: Vec<Event> = (0..n).map(|_| generator.next_event()).collect();
    let split = config.start + Duration::days(TRAIN_DAYS);
    let end = events.last().map_or(split, |e| e.occurred_at) + Duration::days(1);
    let train_events: Vec<Event> = events
        .iter()
        .filter(|e| e.occurred_at < split)
        .cloned()
        .collect();
    let train = purchases(&events, config.start, split);
    let test = purchases(&events, split, end);
    let mut report = Report::start(
        "recommendations offline: temporal split, ranked over the whole catalogue",
        &format!(
            "{n} generated events ({} products, {} users, taste on) over {} days; train on the first {TRAIN_DAYS} days ({} events), test on the purchases of the rest; generated in {:.1} s",
            config.products,
            config.users,
            TRAIN_DAYS + TEST_DAYS,
            train_events.len(),
            started.elapsed().as_secs_f64()
        ),
    );
    // Judged: warm users with something new in the test weeks.
    let mut judged: Vec<(String, BTreeSet<String>)> = test
        .iter()
        .filter_map(|(user, bought)| {
            let before = train.get(user)?;
            let new: BTreeSet<String> = bought.difference(before).cloned().collect();
            (!new.is_empty()).then(|| (user.clone(), new))
        })
        .collect();
    judged.sort();
    let users: Vec<String> = judged.iter().map(|(u, _)| u.clone()).collect();

    // The views over the training events, as the pipeline maintains them.
    let began = Instant::now();
    let also_bought = lists::<AlsoBought>(&train_events, |v| {
        v.iter().map(|(p, n)| (*p, *n as f64)).collect()
    });
    let similar = lists::<Similar>(&train_events, |v| {
        v.iter().map(|(p, s)| (*p, *s as f64)).collect()
    });
    let also_viewed = lists::<AlsoViewed>(&train_events, |v| {
        v.iter().map(|(p, n)| (*p, *n as f64)).collect()
    });
    let content_lists = lists::<Content>(&train_events, |v| {
        v.iter().map(|(p, s)| (*p, *s as f64)).collect()
    });
    // The `category` walk's lists: each product's leaf category's trending list (a day's
    // half-life), as `GET /v1/users/{id}/recommendations` reads them (`CATEGORY`); and the
    // whole catalogue's, the `content` method's prior.
    let trending = lists::<Trending>(&train_events, |v| {
        v.get(1)
            .map(|day| {
                day.iter()
                    .map(|(p, s)| (*p, *s as f64 / POPULARITY_STEP))
                    .collect()
            })
            .unwrap_or_default()
    });
    let shares = |list: &Vec<(String, f64)>| -> Vec<(String, f64)> {
        interest_shares(list.iter().map(|(p, s)| (p.as_str(), *s)))
            .into_iter()
            .map(|(p, s)| (p.to_owned(), s))
            .collect()
    };
    let mut leaves: HashMap<&str, String> = HashMap::new();
    for e in &train_events {
        if let Payload::ProductUpserted(p) = &e.payload {
            leaves.insert(p.product_id.as_str(), p.category_path.join("/"));
        }
    }
    let category: HashMap<String, Vec<(String, f64)>> = leaves
        .iter()
        .filter_map(|(p, leaf)| Some(((*p).to_owned(), shares(trending.get(leaf)?))))
        .collect();
    let catalogue_trending = trending.get(ALL).map(shares).unwrap_or_default();
    let recent = lists::<UserPurchases>(&train_events, |v| v.0.iter().map(|p| (*p, 0.0)).collect());
    let viewed = lists::<UserViews>(&train_events, |v| v.0.iter().map(|p| (*p, 0.0)).collect());
    let (popularity, _) = evaluate_in_rounds::<ProductPopularity>(&train_events, 10_000);
    let popularity: HashMap<String, f64> = popularity
        .into_iter()
        .map(|(p, score)| (p, score.score()))
        .collect();
    let maintained_s = began.elapsed().as_secs_f64();

    let mut counts: HashMap<&str, usize> = HashMap::new();
    for products in train.values() {
        for p in products {
            *counts.entry(p).or_default() += 1;
        }
    }
    let mut popular: Vec<(&str, usize)> = counts.into_iter().collect();
    popular.sort_by(|(a, x), (b, y)| y.cmp(x).then(a.cmp(b)));
    let popular: Vec<String> = popular.iter().map(|(p, _)| (*p).to_owned()).collect();

    // For exploring other rankings outside the harness: everything it judges with, as JSON.
    if let Ok(path) = std::env::var("EMPORIUM_RECS_DUMP") {
        let catalog: HashMap<&str, (&Vec<String>, &str)> = events
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::ProductUpserted(p) => {
                    Some((p.product_id.as_str(), (&p.category_path, p.brand.as_str())))
                }
                _ => None,
            })
            .collect();
        let dump = serde_json::json!({
            "train": train, "judged": judged, "popular": popular, "also_bought": also_bought,
            "similar": similar, "recent": recent, "catalog": catalog,
            "also_viewed": also_viewed, "content": content_lists, "viewed": viewed,
            "category": trending,
        });
        std::fs::write(&path, dump.to_string()).expect("write the dump");
    }
    let began = Instant::now();
    let als = als(&train, &users);
    let als_s = began.elapsed().as_secs_f64();

    let empty = BTreeSet::new();
    let walk = |kind: &str| {
        USER_WALKS
            .iter()
            .filter(|(_, k, _)| *k == kind)
            .map(|(basis, k, _)| (*basis, *k, 1.0))
            .collect::<Vec<_>>()
    };
    let served_with = |kind: &'static str, weight: f64| {
        let mut walks: Vec<UserWalk> = USER_WALKS
            .iter()
            .filter(|(_, k, _)| *k != CATEGORY)
            .copied()
            .collect();
        walks.push((Basis::Views, kind, weight));
        walks
    };
    let content = vec![
        (Basis::Views, CATEGORY, 1.0),
        (Basis::Purchases, CATEGORY, 1.0),
    ];
    // (name, walks, reranked by popularity, recent purchases and views walked, the weight of
    // the catalogue's trending list as one more walk). The served ranking with fewer recent
    // products too: what a shorter walk (fewer lists read per request) would cost.
    let methods: Vec<(&str, Vec<UserWalk>, bool, usize, f64)> = vec![
        ("popularity", Vec::new(), false, USER_BASIS, 0.0),
        ("also_bought", walk("also_bought"), true, USER_BASIS, 0.0),
        ("similar", walk("similar"), true, USER_BASIS, 0.0),
        ("also_viewed", walk("also_viewed"), true, USER_BASIS, 0.0),
        ("content", content.clone(), true, USER_BASIS, CONTENT_PRIOR),
        ("served", USER_WALKS.to_vec(), true, USER_BASIS, 0.0),
        (
            "served, not reranked",
            USER_WALKS.to_vec(),
            false,
            USER_BASIS,
            0.0,
        ),
        (
            "similar, from purchases",
            vec![(Basis::Purchases, "similar", 1.0)],
            true,
            USER_BASIS,
            0.0,
        ),
        ("content, without the prior", content, true, USER_BASIS, 0.0),
        (
            "content, the content lists",
            vec![(Basis::Views, "content", 1.0)],
            true,
            USER_BASIS,
            0.0,
        ),
        (
            "served, the content lists for category",
            served_with("content", 0.5),
            true,
            USER_BASIS,
            0.0,
        ),
        (
            "served, 20 recent of each",
            USER_WALKS.to_vec(),
            true,
            20,
            0.0,
        ),
        (
            "served, 5 recent of each",
            USER_WALKS.to_vec(),
            true,
            5,
            0.0,
        ),
    ];
    let mut scores: Vec<(&str, [f64; 3], usize)> = Vec::new();
    for (name, walks, reranked, basis, prior) in &methods {
        let mut sum = [0.0; 3];
        let mut personal = 0;
        for (user, truth) in &judged {
            let bought = train.get(user).unwrap_or(&empty);
            let history = |table: &HashMap<String, Vec<(String, f64)>>| -> Vec<String> {
                table
                    .get(user)
                    .map(|r| r.iter().take(*basis).map(|(p, _)| p.clone()).collect())
                    .unwrap_or_default()
            };
            let (purchased, seen) = (history(&recent), history(&viewed));
            let mut walks: Vec<Walk<Vec<(String, f64)>>> = walks
                .iter()
                .map(|(basis, kind, weight)| {
                    let table = match *kind {
                        "also_bought" => &also_bought,
                        "similar" => &similar,
                        "also_viewed" => &also_viewed,
                        "content" => &content_lists,
                        CATEGORY => &category,
                        other => panic!("no lists of kind {other}"),
                    };
                    let basis = match basis {
                        Basis::Purchases => &purchased,
                        Basis::Views => &seen,
                    };
                    Walk {
                        weight: *weight,
                        lists: basis
                            .iter()
                            .map(|p| table.get(p).cloned().unwrap_or_default())
                            .collect(),
                    }
                })
                .collect();
            if *prior > 0.0 {
                walks.push(Walk {
                    weight: *prior,
                    lists: vec![catalogue_trending.clone()],
                });
            }
            let limit = if *reranked {
                RERANK_CANDIDATES
            } else {
                usize::MAX
            };
            let mut ranked: Vec<(String, f64)> = compose(&walks, &purchased, limit)
                .into_iter()
                .map(|(p, s)| (p.to_owned(), s))
                .collect();
            if *reranked {
                let prior: Vec<Option<f64>> = ranked
                    .iter()
                    .map(|(p, _)| popularity.get(p).copied())
                    .collect();
                ranked = rerank(ranked, &prior);
            }
            let ranked: Vec<String> = ranked
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| !bought.contains(p))
                .collect();
            if !ranked.is_empty() {
                personal += 1;
            }
            let top = top_up(ranked, bought, &popular);
            for (s, x) in sum.iter_mut().zip(judge(&top, truth)) {
                *s += x;
            }
        }
        scores.push((name, sum.map(|s| s / judged.len().max(1) as f64), personal));
    }
    if let Some(als) = &als {
        let mut sum = [0.0; 3];
        for (user, truth) in &judged {
            let bought = train.get(user).unwrap_or(&empty);
            let top = top_up(als.get(user).cloned().unwrap_or_default(), bought, &popular);
            for (s, x) in sum.iter_mut().zip(judge(&top, truth)) {
                *s += x;
            }
        }
        scores.push((
            "als",
            sum.map(|s| s / judged.len().max(1) as f64),
            judged.len(),
        ));
    }

    println!(
        "   judged: {} warm users with new purchases in the test weeks; views maintained over the training events in {maintained_s:.1} s; ALS in {als_s:.1} s",
        judged.len()
    );
    row(&[
        "method".into(),
        "precision@10".into(),
        "recall@10".into(),
        "nDCG@10".into(),
        "users with own candidates".into(),
    ]);
    for (name, [p, r, ndcg], personal) in &scores {
        row(&[
            (*name).into(),
            format!("{p:.4}"),
            format!("{r:.4}"),
            format!("{ndcg:.4}"),
            format!("{personal}"),
        ]);
        report.row(serde_json::json!({
            "method": name, "precision_at_10": p, "recall_at_10": r, "ndcg_at_10": ndcg,
            "users_with_candidates": personal,
        }));
        report.figure(format!("{name}_ndcg_at_10"), *ndcg, "");
    }
    let ndcg = |name: &str| {
        scores
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or(f64::NAN, |(_, s, _)| s[2])
    };
    let ours = ["also_bought", "similar", "also_viewed", "content", "served"];
    let weakest = ours.iter().map(|m| ndcg(m)).fold(f64::INFINITY, f64::min);
    let best = ours
        .iter()
        .map(|m| ndcg(m))
        .fold(f64::NEG_INFINITY, f64::max);
    report.target(
        "weakest_of_ours_ndcg_over_popularity",
        weakest / ndcg("popularity"),
        "x",
        Op::AtLeast,
        1.0,
        SOURCE_BEAT,
    );
    report.target(
        "best_of_ours_ndcg_over_als",
        best / ndcg("als"),
        "x",
        Op::AtLeast,
        1.0,
        SOURCE_ALS,
    );
    report.finish();
}
