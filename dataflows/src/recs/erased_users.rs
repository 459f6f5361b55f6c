//! The users who asked to be forgotten (`user_erased`): one tombstone each,
//! `{"user_id", "erased": true}`. The read API answers 404 on every per-user route for a user
//! with one (`/v1/users/{id}/orders`, `/v1/users/{id}/recommendations`, their orders), with one
//! point read that, for everyone else, finds nothing (ADR 0015). Not served at `/v1/views`.

use differential_dataflow::VecCollection;
use emporium_schemas::{Event, EventKind, Payload};
use serde_json::json;

use crate::view::{Ids, View};

/// The erased-users view.
pub struct ErasedUsers;

impl View for ErasedUsers {
    const NAME: &'static str = "erased_users";
    /// The user erased.
    type Row = String;
    type Key = String;
    type Value = ();

    fn reads(kind: EventKind) -> bool {
        kind == EventKind::UserErased
    }

    fn rows(_seq: u64, event: &Event, _ids: &mut Ids, out: &mut Vec<(String, isize)>) {
        if let Payload::UserErased(u) = &event.payload {
            out.push((u.user_id.clone(), 1));
        }
    }

    fn maintain<'s>(rows: VecCollection<'s, u64, String>) -> VecCollection<'s, u64, (String, ())> {
        rows.map(|user| (user, ()))
            .reduce_named("Erased", |_user, _erasures, out| out.push(((), 1isize)))
    }

    fn document(user_id: &String, _: &(), _ids: &Ids) -> serde_json::Value {
        json!({"user_id": user_id, "erased": true})
    }
}
