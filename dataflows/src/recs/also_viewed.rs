//! *Customers who viewed this also viewed*: per product, the products viewed in the same
//! sessions, by how many sessions viewed both (co-view count; ties: the product listed first).
//! Served at `GET /v1/products/{id}/recommendations?kind=also_viewed` and used by
//! `GET /v1/users/{id}/recommendations` for the products a shopper viewed; tested against a plain
//! fold, and against a recomputation without an erased user, in
//! `dataflows/tests/recommendations.rs`.
//!
//! **Sessions without a step per view.** Product views are four events in five: the pipeline
//! never applies them one by one but counts them per span of decision time (ADR 0014). This view
//! counts them *per session* ([`View::counts_sessions`]): the decider's sums for it are per
//! (session, product, hour) of the span, each naming its shopper and session — a cost per
//! distinct (session, product) of the span, and still one step per second of views.
//!
//! **What counts.** A session is a shopper's `session_id`, per user (two users' sessions never
//! mix). A product counts once per session however often it was viewed, and a session counts
//! its first [`MAX_SESSION`] products (by id: the ones listed first) so that a shopper who opens
//! hundreds of pages adds a bounded number of pairs. A `user_erased` withdraws every session of
//! that user, past and future: the derived state equals a recomputation over the log without
//! them (ADR 0015).
//!
//! Session ids are not given [`Ids`] (there are as many as visits): a session is its user's id
//! and a 64-bit hash of its `session_id` — the same in every run.

use crate::changes::Json;
use differential_dataflow::VecCollection;
use differential_dataflow::hashable::Hashable;
use emporium_schemas::{Event, EventKind, Payload};
use serde::{Deserialize, Serialize};

use crate::view::{Count, Ids, View};

/// Products of one session that count (the first by id).
pub const MAX_SESSION: usize = 20;
/// Partners kept per product.
pub const TOP_K: usize = 30;

/// The also-viewed view.
pub struct AlsoViewed;

/// A row of the view's input, names as their [`Ids`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SessionRow {
    /// Views of `product` in one of `user`'s sessions (the diff: how many).
    Viewed {
        user: u32,
        session: u64,
        product: u32,
    },
    Erased {
        user: u32,
    },
}

/// A product's partners, best first: (product id, sessions that viewed both).
pub type Partners = Vec<(u32, u64)>;

impl View for AlsoViewed {
    const NAME: &'static str = "also_viewed";
    type Row = SessionRow;
    /// The product's id.
    type Key = u32;
    type Value = Partners;

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

    fn counted(_seq: u64, count: &Count, ids: &mut Ids) -> Option<SessionRow> {
        let session = count.session.as_ref()?;
        Some(SessionRow::Viewed {
            user: ids.id(&session.user),
            session: session.id.hashed(),
            product: ids.id(&count.product),
        })
    }

    fn rows(_seq: u64, event: &Event, ids: &mut Ids, out: &mut Vec<(SessionRow, isize)>) {
        match &event.payload {
            Payload::ProductUpserted(p) => {
                ids.id(&p.product_id);
            }
            Payload::UserErased(u) => out.push((
                SessionRow::Erased {
                    user: ids.id(&u.user_id),
                },
                1,
            )),
            _ => {}
        }
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, SessionRow>,
    ) -> VecCollection<'s, u64, (u32, Partners)> {
        super::top_k_counted(super::sessions::co_viewed_pairs(rows, MAX_SESSION), TOP_K)
    }

    fn document(product: &u32, partners: &Partners, ids: &Ids) -> serde_json::Value {
        Self::json(product, partners, ids).value()
    }

    /// `{"also_viewed": [{"product_id": …, "sessions": n}, …], "product_id": …}`.
    fn json(product: &u32, partners: &Partners, ids: &Ids) -> Json {
        super::list_json(
            ids.name(*product),
            "also_viewed",
            "sessions",
            partners
                .iter()
                .map(|(p, sessions)| (ids.name(*p), *sessions)),
        )
    }

    fn key_name(product: &u32, ids: &Ids) -> String {
        ids.name(*product).to_owned()
    }
}
