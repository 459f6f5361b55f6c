//! *User activity*, a feature dataflow (issue 26, ADR 0016): per user, their orders, spend and
//! return requests over the last 7 and 30 days of event time. Tested against a plain fold in
//! `dataflows/tests/features.rs`.
//!
//! - **An order** counts once paid (its first `payment_authorized`), unless cancelled, at the
//!   time it was placed (its first `order_placed`, which names the user); its spend is the
//!   amount paid, in minor units (the shop's one currency).
//! - **A return** is a `return_requested` for one of the user's orders, at its own time.
//! - **The value's event time** is the latest event time among the user's events the view read
//!   (placements, payments, cancellations, returns); each window ends there, its start excluded:
//!   `(t − N days, t]`. A late event moves the windows only if it is the latest.
//! - **`user_erased`** withdraws every contribution of the user, before and after: no value.

use differential_dataflow::VecCollection;
use emporium_schemas::{Event, EventKind, Payload};
use serde::{Deserialize, Serialize};

use super::{Computed, DAY_MS, Entity, FeatureDataflow, FeatureType};
use crate::view::{Ids, View};

/// The view's name, and the dataflow's in a declaration.
pub const NAME: &str = "user_activity";

/// The windows, in days.
pub const WINDOWS: [i64; 2] = [7, 30];

/// What the dataflow computes.
pub const DATAFLOW: FeatureDataflow = FeatureDataflow {
    name: NAME,
    entity: Entity::User,
    computes: &[
        Computed {
            name: "orders_7d",
            ty: FeatureType::Int64,
            description: "paid, not cancelled orders placed in the 7 days up to the value's event time",
        },
        Computed {
            name: "orders_30d",
            ty: FeatureType::Int64,
            description: "paid, not cancelled orders placed in the 30 days up to the value's event time",
        },
        Computed {
            name: "spend_7d_minor",
            ty: FeatureType::Int64,
            description: "the amount paid for those orders of 7 days, in minor units",
        },
        Computed {
            name: "spend_30d_minor",
            ty: FeatureType::Int64,
            description: "the amount paid for those orders of 30 days, in minor units",
        },
        Computed {
            name: "returns_7d",
            ty: FeatureType::Int64,
            description: "return requests for the user's orders in the 7 days up to the value's event time",
        },
        Computed {
            name: "returns_30d",
            ty: FeatureType::Int64,
            description: "return requests for the user's orders in the 30 days up to the value's event time",
        },
    ],
};

/// The user-activity view.
pub struct UserActivity;

/// A row of the view's input, names as their [`Ids`], times in ms of event time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ActivityRow {
    /// An `order_placed`, the `seq`-th step.
    Placed {
        order: u32,
        seq: u64,
        user: u32,
        at: i64,
    },
    /// A `payment_authorized`, the `seq`-th step.
    Paid {
        order: u32,
        seq: u64,
        at: i64,
        amount: i64,
    },
    Cancelled {
        order: u32,
        at: i64,
    },
    Returned {
        order: u32,
        at: i64,
    },
    Erased {
        user: u32,
    },
}

/// A user's activity: the features of [`DATAFLOW`], in its order, at event time `at` (ms).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Activity {
    pub at: i64,
    pub orders: [i64; 2],
    pub spend: [i64; 2],
    pub returns: [i64; 2],
}

impl Activity {
    /// The values of [`DATAFLOW`]'s features, in its order.
    pub fn values(&self) -> [i64; 6] {
        [
            self.orders[0],
            self.orders[1],
            self.spend[0],
            self.spend[1],
            self.returns[0],
            self.returns[1],
        ]
    }
}

/// What one user's events say, for the reduce.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Fact {
    /// An event of the user at this time.
    Touched(i64),
    /// A counted order placed at this time, with its amount.
    Order(i64, i64),
    /// A return request at this time.
    Return(i64),
}

/// Whether `at` is in the window of `days` ending at `end`: `(end − days, end]`.
pub fn in_window(at: i64, end: i64, days: i64) -> bool {
    at > end - days * DAY_MS && at <= end
}

impl View for UserActivity {
    const NAME: &'static str = NAME;
    type Row = ActivityRow;
    /// The user's id.
    type Key = u32;
    type Value = Activity;

    fn reads(kind: EventKind) -> bool {
        matches!(
            kind,
            EventKind::OrderPlaced
                | EventKind::PaymentAuthorized
                | EventKind::OrderCancelled
                | EventKind::ReturnRequested
                | EventKind::UserErased
        )
    }

    fn rows(seq: u64, event: &Event, ids: &mut Ids, out: &mut Vec<(ActivityRow, isize)>) {
        let at = event.occurred_at.timestamp_millis();
        let row = match &event.payload {
            Payload::OrderPlaced(o) => ActivityRow::Placed {
                order: ids.id(&o.order_id),
                seq,
                user: ids.id(&o.user_id),
                at,
            },
            Payload::PaymentAuthorized(p) => ActivityRow::Paid {
                order: ids.id(&p.order_id),
                seq,
                at,
                amount: p.amount.amount_minor,
            },
            Payload::OrderCancelled(c) => ActivityRow::Cancelled {
                order: ids.id(&c.order_id),
                at,
            },
            Payload::ReturnRequested(r) => ActivityRow::Returned {
                order: ids.id(&r.order_id),
                at,
            },
            Payload::UserErased(e) => ActivityRow::Erased {
                user: ids.id(&e.user_id),
            },
            _ => return,
        };
        out.push((row, 1));
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, ActivityRow>,
    ) -> VecCollection<'s, u64, (u32, Activity)> {
        // Each order's first placement (its user and time) and first payment.
        let placed = rows
            .clone()
            .flat_map(|r| match r {
                ActivityRow::Placed {
                    order,
                    seq,
                    user,
                    at,
                } => Some((order, (seq, user, at))),
                _ => None,
            })
            .reduce_named("FirstPlaced", |_order, input, out| {
                let (_, user, at) = *input[0].0;
                out.push(((user, at), 1isize));
            });
        let paid = rows
            .clone()
            .flat_map(|r| match r {
                ActivityRow::Paid {
                    order,
                    seq,
                    at,
                    amount,
                } => Some((order, (seq, at, amount))),
                _ => None,
            })
            .reduce_named("FirstPaid", |_order, input, out| {
                let (_, at, amount) = *input[0].0;
                out.push(((at, amount), 1isize));
            });
        let cancelled = rows.clone().flat_map(|r| match r {
            ActivityRow::Cancelled { order, at } => Some((order, at)),
            _ => None,
        });
        let returned = rows.clone().flat_map(|r| match r {
            ActivityRow::Returned { order, at } => Some((order, at)),
            _ => None,
        });
        let erased = rows
            .flat_map(|r| match r {
                ActivityRow::Erased { user } => Some(user),
                _ => None,
            })
            .distinct();
        let orders = placed.clone().join(paid);
        let counted = orders
            .clone()
            .antijoin(cancelled.clone().map(|(order, _)| order).distinct())
            .map(|(_order, ((user, at), (_, amount)))| (user, Fact::Order(at, amount)));
        let facts = placed
            .clone()
            .map(|(_order, (user, at))| (user, Fact::Touched(at)))
            .concat(orders.map(|(_order, ((user, _), (at, _)))| (user, Fact::Touched(at))))
            .concat(placed.clone().join_map(cancelled, |_order, (user, _), at| {
                (*user, Fact::Touched(*at))
            }))
            .concat(placed.join_map(returned, |_order, (user, _), at| (*user, Fact::Return(*at))))
            .concat(counted)
            .antijoin(erased);
        facts.reduce_named("UserActivity", |_user, input, out| {
            let end = input
                .iter()
                .map(|(fact, _)| match fact {
                    Fact::Touched(at) | Fact::Order(at, _) | Fact::Return(at) => *at,
                })
                .max()
                .unwrap_or_default();
            let mut activity = Activity {
                at: end,
                ..Activity::default()
            };
            for (fact, n) in input {
                let n = *n as i64;
                for (w, days) in WINDOWS.iter().enumerate() {
                    match fact {
                        Fact::Order(at, amount) if in_window(*at, end, *days) => {
                            activity.orders[w] += n;
                            activity.spend[w] += n * amount;
                        }
                        Fact::Return(at) if in_window(*at, end, *days) => {
                            activity.returns[w] += n;
                        }
                        _ => {}
                    }
                }
            }
            out.push((activity, 1isize));
        })
    }

    fn document(user: &u32, activity: &Activity, ids: &Ids) -> serde_json::Value {
        let mut features = serde_json::Map::new();
        for (computed, value) in DATAFLOW.computes.iter().zip(activity.values()) {
            features.insert(computed.name.into(), value.into());
        }
        let at = chrono::DateTime::from_timestamp_millis(activity.at)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        serde_json::json!({
            "user_id": ids.name(*user),
            "event_time": at,
            "features": features,
        })
    }

    fn key_name(user: &u32, ids: &Ids) -> String {
        ids.name(*user).to_owned()
    }
}
