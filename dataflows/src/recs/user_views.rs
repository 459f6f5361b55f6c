//! What each user viewed lately: per user, the products they viewed, most recently first (by the
//! step of the span their latest view was counted in; ties: the product listed last first), at
//! most [`RECENT`]. The read API's `GET /v1/users/{id}/recommendations` walks them through the
//! item-to-item lists, beside [`super::user_purchases`]. Personal: served only by that route, with
//! the shopper's own token or the operator key, never at `/v1/views`.
//!
//! Views are counted per session ([`View::counts_sessions`], as [`super::also_viewed`]): a row per
//! (user, product, span), never a step per view. An erased user has no document, before or after
//! the erasure.

use crate::changes::Json;
use differential_dataflow::VecCollection;
use emporium_schemas::{Event, EventKind, Payload};
use serde::{Deserialize, Serialize};

use crate::view::{Count, Ids, View};

/// Products listed per user.
pub const RECENT: usize = 20;

/// The user-views view.
pub struct UserViews;

/// A row of the view's input, names as their [`Ids`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RecentRow {
    /// `user` viewed `product` in the span applied as the `seq`-th step.
    Viewed {
        user: u32,
        product: u32,
        seq: u64,
    },
    Erased {
        user: u32,
    },
}

/// A user's recent views: product ids, most recent first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Viewed(pub Vec<u32>);

impl View for UserViews {
    const NAME: &'static str = "user_views";
    type Row = RecentRow;
    /// The user's id.
    type Key = u32;
    type Value = Viewed;

    /// Erasures; and listings, which add no row but give products their ids in listing order
    /// (ties go to the product listed first, as in every list).
    fn reads(kind: EventKind) -> bool {
        matches!(kind, EventKind::UserErased | EventKind::ProductUpserted)
    }

    fn counts(kind: EventKind) -> bool {
        kind == EventKind::ProductViewed
    }

    fn counts_sessions(kind: EventKind) -> bool {
        kind == EventKind::ProductViewed
    }

    fn counted(seq: u64, count: &Count, ids: &mut Ids) -> Option<RecentRow> {
        let session = count.session.as_ref()?;
        Some(RecentRow::Viewed {
            user: ids.id(&session.user),
            product: ids.id(&count.product),
            seq,
        })
    }

    fn rows(_seq: u64, event: &Event, ids: &mut Ids, out: &mut Vec<(RecentRow, isize)>) {
        match &event.payload {
            Payload::ProductUpserted(p) => {
                ids.id(&p.product_id);
            }
            Payload::UserErased(u) => out.push((
                RecentRow::Erased {
                    user: ids.id(&u.user_id),
                },
                1,
            )),
            _ => {}
        }
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, RecentRow>,
    ) -> VecCollection<'s, u64, (u32, Viewed)> {
        super::sessions::latest_viewed(rows, RECENT)
    }

    fn document(user: &u32, viewed: &Viewed, ids: &Ids) -> serde_json::Value {
        Self::json(user, viewed, ids).value()
    }

    /// `{"recent_views": [ids…], "user_id": …}`.
    fn json(user: &u32, viewed: &Viewed, ids: &Ids) -> Json {
        let products = viewed.0.iter().map(|p| ids.name(*p));
        super::recent_json(ids.name(*user), "recent_views", products)
    }

    fn key_name(user: &u32, ids: &Ids) -> String {
        ids.name(*user).to_owned()
    }
}
