//! Which producer may append which event types: each producer token carries scopes (one per
//! service upstream of Emporium), and each event type belongs to exactly one scope — or to none,
//! for the types only the platform writes (decisions, heartbeats). Checked for every line of a
//! request — the type validation read, or for a line validation refuses its type read alone — and
//! one line out of scope refuses the whole request (403): nothing of it is appended, not even to
//! the dead-letter log.
//! See `specs/adr/0004-ingest-durability-and-idempotency.md` ("Producer credentials").

use std::borrow::Cow;

use emporium_auth::Scope;
use emporium_schemas::EventKind;
use serde::Deserialize;

/// The scope a producer needs to append `kind`; `None`: no producer may.
pub fn scope_of(kind: EventKind) -> Option<Scope> {
    use EventKind::*;
    // Exhaustive on purpose: a new event type must be given a scope (or none) here.
    match kind {
        ProductViewed | SearchPerformed | CartItemAdded | CartItemRemoved | ReviewPosted => {
            Some(Scope::Storefront)
        }
        OrderPlaced | OrderCancelled | PaymentAuthorized | PaymentFailed | OrderShipped
        | OrderDelivered | ReturnRequested => Some(Scope::Orders),
        ProductUpserted | PriceChanged | ProductDiscontinued | StockReceived | StockAdjusted => {
            Some(Scope::Catalog)
        }
        UserErased => Some(Scope::Accounts),
        InventoryReserved | OrderRejected | ReservationReleased | PartitionHeartbeat => None,
    }
}

/// What one request's producer may append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who, for error messages and the dead-letter log's `source`.
    pub producer: String,
    pub scopes: Vec<Scope>,
}

impl Grant {
    /// A grant of every producer scope (tests, benchmarks, the demo's generator).
    pub fn all(producer: &str) -> Self {
        Self {
            producer: producer.to_owned(),
            scopes: Scope::ALL.to_vec(),
        }
    }

    /// `Err(why)` when `kind` is outside this grant.
    pub fn check(&self, kind: EventKind) -> Result<(), String> {
        match scope_of(kind) {
            Some(scope) if self.scopes.contains(&scope) => Ok(()),
            Some(scope) => Err(format!(
                "producer {:?} may not send {kind}: that needs the {scope} scope; its token has {}",
                self.producer,
                self.describe_scopes()
            )),
            None => Err(format!(
                "no producer may send {kind}: it is written only by Emporium's dataflows"
            )),
        }
    }

    fn describe_scopes(&self) -> String {
        if self.scopes.is_empty() {
            return "none".into();
        }
        self.scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The `type` of a line, read without the rest of it; `None` when the line is not a JSON object
/// with a known type (validation then says what is wrong, and the line is dead-lettered).
pub fn peek_kind(line: &[u8]) -> Option<EventKind> {
    #[derive(Deserialize)]
    struct TypeOnly<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Cow<'a, str>>,
    }
    let head: TypeOnly<'_> = serde_json::from_slice(line).ok()?;
    EventKind::from_name(&head.kind?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_producer_type_has_one_scope_and_platform_types_none() {
        for &kind in EventKind::ALL {
            assert_eq!(scope_of(kind).is_none(), kind.is_system(), "{kind}");
        }
        let storefront = Grant {
            producer: "web".into(),
            scopes: vec![Scope::Storefront],
        };
        assert!(storefront.check(EventKind::CartItemAdded).is_ok());
        let refused = storefront
            .check(EventKind::OrderCancelled)
            .expect_err("orders");
        assert!(refused.contains("needs the orders scope"), "{refused}");
        assert!(Grant::all("x").check(EventKind::InventoryReserved).is_err());
    }

    #[test]
    fn the_type_is_read_from_objects_only() {
        assert_eq!(
            peek_kind(br#"{"payload":{},"type":"order_placed"}"#),
            Some(EventKind::OrderPlaced)
        );
        assert_eq!(peek_kind(br#"["x","order_placed"]"#), None);
        assert_eq!(peek_kind(br#"{"type":"nope"}"#), None);
        assert_eq!(peek_kind(b"not json"), None);
    }
}
