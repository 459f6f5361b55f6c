//! What each user bought lately: per user, the products of their counted purchases (the rule of
//! [`super::also_bought`]: paid, not cancelled, not returned), most recently paid first (ties:
//! the product listed last first), at most [`RECENT`]. The read API's `GET /v1/users/{id}/recommendations` walks them through the
//! item-to-item lists and leaves them out of the answer. Personal: served only by that route,
//! with the shopper's own token or the operator key, never at `/v1/views`.
//!
//! An erased user (`user_erased`) has no document: nothing they bought is listed, before or after
//! the erasure; their tombstone is [`super::erased_users`]'s (ADR 0015).

use crate::changes::Json;
use differential_dataflow::VecCollection;
use emporium_schemas::{Event, EventKind};
use serde::{Deserialize, Serialize};

use super::also_bought::{AlsoBought, BoughtRow, paid_at, purchases};
use crate::view::{Ids, View};

/// Products listed per user.
pub const RECENT: usize = 20;

/// The user-purchases view.
pub struct UserPurchases;

/// A user's recent purchases: product ids, most recently paid first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Purchases(pub Vec<u32>);

impl View for UserPurchases {
    const NAME: &'static str = "user_purchases";
    type Row = BoughtRow;
    /// The user's id.
    type Key = u32;
    type Value = Purchases;

    fn reads(kind: EventKind) -> bool {
        AlsoBought::reads(kind)
    }

    fn rows(seq: u64, event: &Event, ids: &mut Ids, out: &mut Vec<(BoughtRow, isize)>) {
        AlsoBought::rows(seq, event, ids, out)
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, BoughtRow>,
    ) -> VecCollection<'s, u64, (u32, Purchases)> {
        let paid = paid_at(rows.clone());
        purchases(rows)
            .join_map(paid, |_order, (user, product), seq| {
                (*user, (*seq, *product))
            })
            .reduce_named(
                "UserPurchases",
                |_user, items: &[(&(u64, u32), isize)], out| {
                    // In (seq, product) order: the latest last.
                    let mut list: Vec<u32> = Vec::with_capacity(RECENT);
                    for ((_, product), _) in items.iter().rev() {
                        if !list.contains(product) {
                            list.push(*product);
                            if list.len() == RECENT {
                                break;
                            }
                        }
                    }
                    out.push((Purchases(list), 1isize));
                },
            )
    }

    fn document(user: &u32, purchases: &Purchases, ids: &Ids) -> serde_json::Value {
        Self::json(user, purchases, ids).value()
    }

    /// `{"recent_purchases": [ids…], "user_id": …}`.
    fn json(user: &u32, purchases: &Purchases, ids: &Ids) -> Json {
        let products = purchases.0.iter().map(|p| ids.name(*p));
        super::recent_json(ids.name(*user), "recent_purchases", products)
    }

    fn key_name(user: &u32, ids: &Ids) -> String {
        ids.name(*user).to_owned()
    }
}
