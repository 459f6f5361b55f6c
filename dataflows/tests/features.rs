//! The feature dataflows against plain folds of the same events (issue 26, ADR 0016).

use std::collections::{HashMap, HashSet};

use chrono::{TimeZone, Utc};
use emporium_dataflows::features::DAY_MS;
use emporium_dataflows::features::user_activity::{Activity, UserActivity};
use emporium_dataflows::view::evaluate_with_ids;
use emporium_schemas::accounts::UserErased;
use emporium_schemas::money::Money;
use emporium_schemas::orders::{
    OrderCancelled, OrderLine, OrderPlaced, PaymentAuthorized, ReturnLine, ReturnRequested,
};
use emporium_schemas::{Event, Payload};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Place { order: u8, user: u8 },
    Pay { order: u8, cents: i64 },
    Cancel(u8),
    Return(u8),
    Erase(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..10, 0u8..4).prop_map(|(order, user)| Op::Place { order, user }),
        4 => (0u8..10, 1i64..10_000).prop_map(|(order, cents)| Op::Pay { order, cents }),
        1 => (0u8..10).prop_map(Op::Cancel),
        2 => (0u8..10).prop_map(Op::Return),
        1 => (0u8..4).prop_map(Op::Erase),
    ]
}

fn usd(cents: i64) -> Money {
    Money {
        amount_minor: cents,
        currency: "USD".into(),
    }
}

/// The `i`-th event, at `hours` after the start: events arrive in any order of event time.
fn event(i: usize, hours: i64, op: Op) -> Event {
    let payload = match op {
        Op::Place { order, user } => Payload::OrderPlaced(OrderPlaced {
            order_id: format!("o-{order}"),
            user_id: format!("u-{user}"),
            lines: vec![OrderLine {
                sku: "s-1".into(),
                qty: 1,
                unit_price: usd(100),
            }],
            shipping_region: "eu-west".into(),
            payment_token: "tok".into(),
        }),
        Op::Pay { order, cents } => Payload::PaymentAuthorized(PaymentAuthorized {
            order_id: format!("o-{order}"),
            amount: usd(cents),
            payment_token: "tok".into(),
        }),
        Op::Cancel(order) => Payload::OrderCancelled(OrderCancelled {
            order_id: format!("o-{order}"),
            reason: "changed_mind".into(),
        }),
        Op::Return(order) => Payload::ReturnRequested(ReturnRequested {
            order_id: format!("o-{order}"),
            lines: vec![ReturnLine {
                sku: "s-1".into(),
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
        Utc.timestamp_opt(1_767_225_600 + hours * 3_600, 0)
            .single()
            .expect("time"),
        payload,
    )
}

/// The view, by user name.
fn user_activity(events: &[Event]) -> HashMap<String, Activity> {
    let (got, ids) = evaluate_with_ids::<UserActivity>(events);
    got.into_iter()
        .map(|(user, activity)| (ids.name(user).to_owned(), activity))
        .collect()
}

/// The same by hand: a pass over the events in log order, then the windows per user.
fn fold_user_activity(events: &[Event]) -> HashMap<String, Activity> {
    // Each order's first placement (user, time) and first payment (time, amount).
    let mut placed: HashMap<&str, (&str, i64)> = HashMap::new();
    let mut paid: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut cancelled: Vec<(&str, i64)> = Vec::new();
    let mut returned: Vec<(&str, i64)> = Vec::new();
    let mut erased: HashSet<&str> = HashSet::new();
    for e in events {
        let at = e.occurred_at.timestamp_millis();
        match &e.payload {
            Payload::OrderPlaced(o) => {
                placed
                    .entry(o.order_id.as_str())
                    .or_insert((o.user_id.as_str(), at));
            }
            Payload::PaymentAuthorized(p) => {
                paid.entry(p.order_id.as_str())
                    .or_insert((at, p.amount.amount_minor));
            }
            Payload::OrderCancelled(c) => cancelled.push((c.order_id.as_str(), at)),
            Payload::ReturnRequested(r) => returned.push((r.order_id.as_str(), at)),
            Payload::UserErased(u) => {
                erased.insert(u.user_id.as_str());
            }
            _ => {}
        }
    }
    // Per user: every time they were touched, their counted orders, their returns.
    let mut touched: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut orders: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
    let mut returns: HashMap<&str, Vec<i64>> = HashMap::new();
    let is_cancelled = |order: &str| cancelled.iter().any(|(o, _)| *o == order);
    for (order, (user, at)) in &placed {
        touched.entry(user).or_default().push(*at);
        if let Some((paid_at, amount)) = paid.get(order) {
            touched.entry(user).or_default().push(*paid_at);
            if !is_cancelled(order) {
                orders.entry(user).or_default().push((*at, *amount));
            }
        }
    }
    for (order, at) in &cancelled {
        if let Some((user, _)) = placed.get(order) {
            touched.entry(user).or_default().push(*at);
        }
    }
    for (order, at) in &returned {
        if let Some((user, _)) = placed.get(order) {
            touched.entry(user).or_default().push(*at);
            returns.entry(user).or_default().push(*at);
        }
    }
    let mut out = HashMap::new();
    for (user, times) in touched {
        if erased.contains(user) {
            continue;
        }
        let end = times.iter().copied().max().unwrap_or_default();
        let mut activity = Activity {
            at: end,
            ..Activity::default()
        };
        for (w, days) in [7, 30].into_iter().enumerate() {
            let start = end - days * DAY_MS;
            for (at, amount) in orders.get(user).into_iter().flatten() {
                if *at > start {
                    activity.orders[w] += 1;
                    activity.spend[w] += amount;
                }
            }
            activity.returns[w] = returns
                .get(user)
                .into_iter()
                .flatten()
                .filter(|at| **at > start)
                .count() as i64;
        }
        out.insert(user.to_owned(), activity);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Orders, payments, cancellations, returns and erasures over 60 days, in any order of
    /// event time (late events among them), give the fold's activity. Times on a grid of half
    /// days, so that events fall on the windows' edges.
    #[test]
    fn user_activity_is_the_fold_of_any_small_shop(
        ops in prop::collection::vec((op(), (0i64..120).prop_map(|half_days| half_days * 12)), 1..80)
    ) {
        let events: Vec<Event> = ops
            .into_iter()
            .enumerate()
            .map(|(i, (op, hours))| event(i, hours, op))
            .collect();
        prop_assert_eq!(user_activity(&events), fold_user_activity(&events));
    }
}

#[test]
fn the_windows_end_at_the_users_latest_event_and_exclude_their_start() {
    let day = 24;
    let events = vec![
        event(0, 0, Op::Place { order: 1, user: 1 }),
        event(
            1,
            1,
            Op::Pay {
                order: 1,
                cents: 500,
            },
        ),
        event(2, 20 * day, Op::Place { order: 2, user: 1 }),
        event(
            3,
            20 * day + 1,
            Op::Pay {
                order: 2,
                cents: 700,
            },
        ),
        event(4, 25 * day, Op::Return(2)),
        // A cancellation of an order nobody placed touches nobody: u-1's windows end at day 25.
        event(5, 30 * day, Op::Cancel(9)),
    ];
    let got = user_activity(&events);
    let u1 = got.get("u-1").copied().unwrap_or_default();
    assert_eq!(
        u1.at,
        Utc.timestamp_opt(1_767_225_600 + 25 * day * 3_600, 0)
            .single()
            .map_or(0, |t| t.timestamp_millis())
    );
    assert_eq!(
        (u1.orders, u1.spend, u1.returns),
        ([1, 2], [700, 1_200], [1, 1])
    );
    // An event exactly 30 days after the first placement ends the windows there: order 1 (the
    // window's excluded start) leaves, order 2 leaves the 7 days, the return at day 25 stays.
    let mut later = events.clone();
    later.push(event(6, 30 * day, Op::Place { order: 3, user: 1 }));
    let u1 = user_activity(&later)
        .get("u-1")
        .copied()
        .unwrap_or_default();
    assert_eq!(
        (u1.orders, u1.spend, u1.returns),
        ([0, 1], [0, 700], [1, 1])
    );
    // Erased: no value at all.
    later.push(event(7, 31 * day, Op::Erase(1)));
    assert!(!user_activity(&later).contains_key("u-1"));
}
