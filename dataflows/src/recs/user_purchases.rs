//! What each user bought lately: per user, the products of their counted purchases (the rule of
//! [`super::also_bought`]: paid, not cancelled, not returned), most recently paid first, at most
//! [`RECENT`]. The read API's `GET /v1/users/{id}/recommendations` walks them through the
//! item-to-item lists and leaves them out of the answer. Personal: served only by that route,
//! with the shopper's own token or the operator key, never at `/v1/views`.
//!
//! An erased user (`user_erased`) has no document: nothing they bought is listed, before or after
//! the erasure; their tombstone is [`super::erased_users`]'s (ADR 0015).

use differential_dataflow::VecCollection;
use emporium_schemas::{Event, EventKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::also_bought::{AlsoBought, BoughtRow, purchases};
use crate::view::View;

/// Products listed per user.
pub const RECENT: usize = 20;

/// The user-purchases view.
pub struct UserPurchases;

/// A user's recent purchases: products, most recently paid first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Purchases(pub Vec<String>);

impl View for UserPurchases {
    const NAME: &'static str = "user_purchases";
    type Row = BoughtRow;
    type Key = String;
    type Value = Purchases;

    fn reads(kind: EventKind) -> bool {
        AlsoBought::reads(kind)
    }

    fn rows(seq: u64, event: &Event, out: &mut Vec<(BoughtRow, isize)>) {
        AlsoBought::rows(seq, event, out)
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, BoughtRow>,
    ) -> VecCollection<'s, u64, (String, Purchases)> {
        // When each order was paid (its first payment's step).
        let paid_at = rows
            .clone()
            .flat_map(|row| match row {
                BoughtRow::Paid { order, seq } => Some((order, seq)),
                _ => None,
            })
            .reduce_named("PaidAt", |_order, seqs: &[(&u64, isize)], out| {
                if let Some((first, _)) = seqs.first() {
                    out.push((**first, 1isize));
                }
            });
        purchases(rows)
            .join_map(paid_at, |_order, (user, product), seq| {
                (user.clone(), (*seq, product.clone()))
            })
            .reduce_named(
                "UserPurchases",
                |_user, items: &[(&(u64, String), isize)], out| {
                    // In (seq, product) order: the latest last.
                    let mut list: Vec<String> = Vec::with_capacity(RECENT);
                    for ((_, product), _) in items.iter().rev() {
                        if !list.contains(product) {
                            list.push(product.clone());
                            if list.len() == RECENT {
                                break;
                            }
                        }
                    }
                    out.push((Purchases(list), 1isize));
                },
            )
    }

    fn document(user_id: &String, purchases: &Purchases) -> serde_json::Value {
        json!({"user_id": user_id, "recent_purchases": purchases.0})
    }
}
