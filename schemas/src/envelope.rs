//! The envelope every event travels in, and parsing of raw bytes into a validated [`Event`].
//!
//! Wire format (JSON, one object per event; NDJSON for batches):
//!
//! ```json
//! {"event_id":"0b5f8a2e-7c1d-4e9a-9f3b-2d6c8e1a4b7f","type":"order_placed","schema_version":1,
//!  "occurred_at":"2026-01-01T00:00:00.000Z","payload":{"order_id":"o-1", ...}}
//! ```
//!
//! `event_id` is the idempotency key. The entity keys (order, user, sku, product) live in the
//! typed payload; [`Event::partition_key`] names the one whose order matters (ADR 0002).
//! See `specs/adr/0001-event-envelope-and-evolution.md`.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::accounts::UserErased;
use crate::catalog::{PriceChanged, ProductDiscontinued, ProductUpserted};
use crate::decisions::{InventoryReserved, OrderRejected, PartitionHeartbeat, ReservationReleased};
use crate::orders::{
    OrderCancelled, OrderDelivered, OrderPlaced, OrderShipped, PaymentAuthorized, PaymentFailed,
    ReturnRequested,
};
use crate::reviews::ReviewPosted;
use crate::serde_errors::{clip, serde_error, without_position};
use crate::shopper::{CartItemAdded, CartItemRemoved, ProductViewed, SearchPerformed};
use crate::stock::{StockAdjusted, StockReceived};
use crate::validate::{FieldError, RejectReason, ValidationContext, ValidationError, Validator};

/// Declares every event type once: its variant, payload struct, wire name, current schema
/// version and partition-key field. Everything that must list all types is generated from here.
macro_rules! event_types {
    ($( $variant:ident = $name:literal, version $version:literal, key $key:ident; )*) => {
        /// The type of an event (its `type` field on the wire).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind { $($variant,)* }

        impl EventKind {
            /// Every event type, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The name on the wire, e.g. `order_placed`.
            pub fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $name,)* }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(EventKind::$variant),)* _ => None }
            }

            /// The schema version producers should send and the newest this build reads.
            pub fn current_version(self) -> u16 {
                match self { $(EventKind::$variant => $version,)* }
            }

            /// The payload field whose value is the partition key (ADR 0002).
            pub fn partition_key_field(self) -> &'static str {
                match self { $(EventKind::$variant => stringify!($key),)* }
            }

            pub(crate) fn payload_schema(self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                match self { $(EventKind::$variant => generator.subschema_for::<$variant>(),)* }
            }
        }

        /// The typed payload of an event.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Payload { $($variant($variant),)* }

        impl Payload {
            pub fn kind(&self) -> EventKind {
                match self { $(Payload::$variant(_) => EventKind::$variant,)* }
            }

            /// The value of the entity key whose order matters for this type (ADR 0002).
            pub fn partition_key(&self) -> &str {
                match self { $(Payload::$variant(p) => &p.$key,)* }
            }

            pub(crate) fn validate(&self, v: &mut Validator) {
                match self { $(Payload::$variant(p) => p.validate(v),)* }
            }

            fn from_json(kind: EventKind, json: &str) -> Result<Self, serde_path_to_error::Error<serde_json::Error>> {
                match kind {
                    $(EventKind::$variant => tracked(json.as_bytes()).map(Payload::$variant),)*
                }
            }
        }

        impl Serialize for Payload {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $(Payload::$variant(p) => p.serialize(s),)* }
            }
        }

        $(impl From<$variant> for Payload {
            fn from(p: $variant) -> Self { Payload::$variant(p) }
        })*
    };
}

event_types! {
    ProductUpserted = "product_upserted", version 1, key product_id;
    PriceChanged = "price_changed", version 1, key product_id;
    ProductDiscontinued = "product_discontinued", version 1, key product_id;
    StockReceived = "stock_received", version 1, key sku;
    StockAdjusted = "stock_adjusted", version 1, key sku;
    ProductViewed = "product_viewed", version 1, key user_id;
    SearchPerformed = "search_performed", version 1, key user_id;
    CartItemAdded = "cart_item_added", version 1, key user_id;
    CartItemRemoved = "cart_item_removed", version 1, key user_id;
    OrderPlaced = "order_placed", version 1, key order_id;
    OrderCancelled = "order_cancelled", version 1, key order_id;
    PaymentAuthorized = "payment_authorized", version 1, key order_id;
    PaymentFailed = "payment_failed", version 1, key order_id;
    OrderShipped = "order_shipped", version 1, key order_id;
    OrderDelivered = "order_delivered", version 1, key order_id;
    ReturnRequested = "return_requested", version 1, key order_id;
    ReviewPosted = "review_posted", version 1, key product_id;
    UserErased = "user_erased", version 1, key user_id;
    InventoryReserved = "inventory_reserved", version 1, key order_id;
    OrderRejected = "order_rejected", version 1, key order_id;
    ReservationReleased = "reservation_released", version 1, key order_id;
    PartitionHeartbeat = "partition_heartbeat", version 1, key routing_key;
}

impl EventKind {
    /// Types only the platform writes (decisions and heartbeats); ingest refuses them from
    /// producers.
    pub fn is_system(self) -> bool {
        matches!(
            self,
            EventKind::InventoryReserved
                | EventKind::OrderRejected
                | EventKind::ReservationReleased
                | EventKind::PartitionHeartbeat
        )
    }

    /// The decisions: the decider's outputs, which it never reads back (where one lands in the
    /// log depends on when it was appended). Every other type moves its partition's clock,
    /// heartbeats included.
    pub fn is_decision(self) -> bool {
        matches!(
            self,
            EventKind::InventoryReserved
                | EventKind::OrderRejected
                | EventKind::ReservationReleased
        )
    }
}

/// A set of event types, one bit each: a constant-time "does this reader take this type" for the
/// paths every record goes through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventKinds(u64);

impl EventKinds {
    /// The types for which `pred` holds.
    pub fn matching(pred: impl Fn(EventKind) -> bool) -> Self {
        Self(
            EventKind::ALL
                .iter()
                .filter(|k| pred(**k))
                .fold(0, |mask, k| mask | Self::bit(*k)),
        )
    }

    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    fn bit(kind: EventKind) -> u64 {
        1 << (kind as u32)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated event.
/// What [`Event::decode_product_in_session`] reads of an event: its type, `occurred_at`, product,
/// shopper and session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInSession {
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    pub product: String,
    pub user: String,
    pub session: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_id: Uuid,
    pub schema_version: u16,
    pub occurred_at: DateTime<Utc>,
    pub payload: Payload,
}

impl Event {
    /// A new event of the payload's current schema version.
    pub fn new(event_id: Uuid, occurred_at: DateTime<Utc>, payload: impl Into<Payload>) -> Self {
        let payload = payload.into();
        Self {
            event_id,
            schema_version: payload.kind().current_version(),
            occurred_at,
            payload,
        }
    }

    pub fn kind(&self) -> EventKind {
        self.payload.kind()
    }

    /// The entity key that decides the partition (ADR 0002).
    pub fn partition_key(&self) -> &str {
        self.payload.partition_key()
    }

    /// The product the event is about, for the types that name one (catalog events, reviews,
    /// product views); `None` for the others (an order names skus).
    pub fn product_id(&self) -> Option<&str> {
        match &self.payload {
            Payload::ProductUpserted(p) => Some(&p.product_id),
            Payload::PriceChanged(p) => Some(&p.product_id),
            Payload::ProductDiscontinued(p) => Some(&p.product_id),
            Payload::ReviewPosted(p) => Some(&p.product_id),
            Payload::ProductViewed(p) => Some(&p.product_id),
            _ => None,
        }
    }

    /// The shopper and session the event happened in, for the types that name them (the funnel:
    /// views, searches, cart changes); `None` for the others.
    pub fn session(&self) -> Option<(&str, &str)> {
        match &self.payload {
            Payload::ProductViewed(p) => Some((&p.user_id, &p.session_id)),
            Payload::SearchPerformed(p) => Some((&p.user_id, &p.session_id)),
            Payload::CartItemAdded(p) => Some((&p.user_id, &p.session_id)),
            Payload::CartItemRemoved(p) => Some((&p.user_id, &p.session_id)),
            _ => None,
        }
    }

    /// Parses and fully validates one event (one NDJSON line, without its newline).
    pub fn parse(bytes: &[u8], ctx: &ValidationContext) -> Result<Event, ValidationError> {
        parse(bytes, Some(ctx))
    }

    /// Parses an event already accepted into the log: structure only, no clock or size rules.
    pub fn decode(bytes: &[u8]) -> Result<Event, ValidationError> {
        parse(bytes, None)
    }

    /// The type and time of an event already accepted into the log, without decoding its
    /// payload (it is only scanned): what a reader that routes events by type needs, for a
    /// fraction of [`Event::decode`]'s cost. Fails where `decode` would on the envelope; a
    /// payload that does not decode is only found by `decode`.
    pub fn decode_head(bytes: &[u8]) -> Result<(EventKind, DateTime<Utc>), ValidationError> {
        let raw: RawEnvelope<'_> = serde_json::from_slice(bytes).map_err(|e| {
            ValidationError::single("$", RejectReason::MalformedJson, without_position(&e))
        })?;
        Self::head_of(&raw)
    }

    fn head_of(raw: &RawEnvelope<'_>) -> Result<(EventKind, DateTime<Utc>), ValidationError> {
        let mut errors = Vec::new();
        let occurred_at = parse_timestamp(&raw.occurred_at, None, &mut errors);
        match (EventKind::from_name(&raw.kind), occurred_at) {
            (Some(kind), Some(at)) => Ok((kind, at)),
            (None, _) => Err(ValidationError::single(
                "type",
                RejectReason::UnknownType,
                format!("unknown event type {:?}", clip(&raw.kind)),
            )),
            (Some(_), None) => Err(ValidationError { errors }),
        }
    }

    /// [`Event::decode_head`] and the payload's `product_id`, its other fields skipped: what a
    /// reader that only counts an event per product needs ([`Event::product_id`] of the decoded
    /// event, for a fraction of the cost). Fails when the payload has no string `product_id`.
    pub fn decode_product(
        bytes: &[u8],
    ) -> Result<(EventKind, DateTime<Utc>, String), ValidationError> {
        #[derive(Deserialize)]
        struct Named<'a> {
            #[serde(borrow)]
            product_id: Cow<'a, str>,
        }
        let raw: RawEnvelope<'_> = serde_json::from_slice(bytes).map_err(|e| {
            ValidationError::single("$", RejectReason::MalformedJson, without_position(&e))
        })?;
        let (kind, at) = Self::head_of(&raw)?;
        let named: Named<'_> = serde_json::from_str(raw.payload.get()).map_err(|e| {
            ValidationError::single(
                "payload.product_id",
                RejectReason::MissingField,
                without_position(&e),
            )
        })?;
        Ok((kind, at, named.product_id.into_owned()))
    }

    /// [`Event::decode_product`] and the payload's `user_id` and `session_id` ([`Event::session`]
    /// of the decoded event): what a reader that counts an event per product *and session*
    /// needs. Fails when the payload lacks any of the three.
    pub fn decode_product_in_session(bytes: &[u8]) -> Result<ProductInSession, ValidationError> {
        #[derive(Deserialize)]
        struct Named<'a> {
            #[serde(borrow)]
            product_id: Cow<'a, str>,
            #[serde(borrow)]
            user_id: Cow<'a, str>,
            #[serde(borrow)]
            session_id: Cow<'a, str>,
        }
        let raw: RawEnvelope<'_> = serde_json::from_slice(bytes).map_err(|e| {
            ValidationError::single("$", RejectReason::MalformedJson, without_position(&e))
        })?;
        let (kind, at) = Self::head_of(&raw)?;
        let named: Named<'_> = serde_json::from_str(raw.payload.get()).map_err(|e| {
            ValidationError::single("payload", RejectReason::MissingField, without_position(&e))
        })?;
        Ok(ProductInSession {
            kind,
            at,
            product: named.product_id.into_owned(),
            user: named.user_id.into_owned(),
            session: named.session_id.into_owned(),
        })
    }

    /// The wire form (one JSON object, no trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        self.write_json(&mut out);
        out
    }

    /// Appends the wire form to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serializing plain structs of strings and integers into a Vec cannot fail.
        serde_json::to_writer(&mut *out, self).expect("events serialize infallibly");
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Event", 5)?;
        st.serialize_field(
            "event_id",
            self.event_id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer()),
        )?;
        st.serialize_field("type", self.kind().as_str())?;
        st.serialize_field("schema_version", &self.schema_version)?;
        st.serialize_field(
            "occurred_at",
            &self
                .occurred_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        )?;
        st.serialize_field("payload", &self.payload)?;
        st.end()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    schema_version: u16,
    #[serde(borrow)]
    occurred_at: Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// Deserializes `json`; on failure, says where (the JSON path). Valid input, by far the most
/// common, takes plain serde_json; only a failure is parsed again with path tracking, which
/// costs about as much as the parse itself.
fn tracked<'de, T: Deserialize<'de>>(
    json: &'de [u8],
) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
    let mut de = serde_json::Deserializer::from_slice(json);
    if let Ok(value) = T::deserialize(&mut de) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    serde_path_to_error::deserialize(&mut de)
}

fn parse(bytes: &[u8], ctx: Option<&ValidationContext>) -> Result<Event, ValidationError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw = match RawEnvelope::deserialize(&mut de) {
        Ok(raw) => raw,
        // Parse again with path tracking, to say where it went wrong.
        Err(plain) => {
            let error = match tracked::<RawEnvelope>(bytes) {
                Err(e) => serde_error("", e),
                Ok(_) => FieldError {
                    path: "$".into(),
                    message: format!("malformed JSON: {}", without_position(&plain)),
                    reason: RejectReason::MalformedJson,
                },
            };
            return Err(ValidationError {
                errors: vec![error],
            });
        }
    };
    de.end().map_err(|e| {
        ValidationError::single("$", RejectReason::MalformedJson, without_position(&e))
    })?;

    let mut errors = Vec::new();
    if ctx.is_some() && !raw.payload.get().starts_with('{') {
        errors.push(FieldError {
            path: "payload".into(),
            message: "expected a JSON object, got an array or a scalar".into(),
            reason: RejectReason::MalformedJson,
        });
    }
    // Only the hyphenated form (36 characters), as the JSON Schema's `uuid` format says: the
    // simple, braced and URN forms that `Uuid::parse_str` also reads are refused.
    let event_id = match Uuid::parse_str(&raw.event_id)
        .ok()
        .filter(|_| raw.event_id.len() == 36)
    {
        Some(id) => Some(id),
        None => {
            errors.push(FieldError {
                path: "event_id".into(),
                message: format!(
                    "expected a UUID like \"0b5f8a2e-7c1d-4e9a-9f3b-2d6c8e1a4b7f\", got {:?}",
                    clip(&raw.event_id)
                ),
                reason: RejectReason::InvalidUuid,
            });
            None
        }
    };
    let occurred_at = parse_timestamp(&raw.occurred_at, ctx, &mut errors);
    let kind = EventKind::from_name(&raw.kind);
    let Some(kind) = kind else {
        errors.push(FieldError {
            path: "type".into(),
            message: format!(
                "unknown event type {:?}; expected one of: {}",
                clip(&raw.kind),
                EventKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            reason: RejectReason::UnknownType,
        });
        return Err(ValidationError { errors });
    };
    let current = kind.current_version();
    if raw.schema_version == 0 || raw.schema_version > current {
        errors.push(FieldError {
            path: "schema_version".into(),
            message: format!(
                "expected a schema_version from 1 to {current} for {kind}, got {}",
                raw.schema_version
            ),
            reason: RejectReason::UnsupportedVersion,
        });
    }
    let payload = match Payload::from_json(kind, raw.payload.get()) {
        Ok(payload) => Some(payload),
        Err(e) => {
            errors.push(serde_error("payload", e));
            None
        }
    };
    if let (Some(payload), Some(ctx)) = (&payload, ctx) {
        let mut v = Validator::new(&ctx.limits, "payload");
        payload.validate(&mut v);
        errors.extend(v.into_errors());
    }
    match (event_id, occurred_at, payload) {
        (Some(event_id), Some(occurred_at), Some(payload)) if errors.is_empty() => {
            // Checked last: a line that is wrong in other ways gets the more precise errors.
            if ctx.is_some() {
                canonical_shape(bytes)?;
            }
            Ok(Event {
                event_id,
                schema_version: raw.schema_version,
                occurred_at,
                payload,
            })
        }
        _ => Err(ValidationError { errors }),
    }
}

/// Events are JSON objects, and so is every record inside them: serde would also read a record
/// written as an array of its field values (`["0b5f…", "cart_item_added", 1, …]`), which then
/// reaches the log in a form no other reader expects and whose `event_id` the idempotency window
/// cannot find after a restart. Every array in an event holds strings or records (objects) only —
/// and every record nested in another has a field that is not a string — so a record written as
/// an array always shows up as an array holding a number, a boolean, null or an array.
fn canonical_shape(bytes: &[u8]) -> Result<(), ValidationError> {
    let refuse = |message: String| {
        Err(ValidationError::single(
            "$",
            RejectReason::MalformedJson,
            message,
        ))
    };
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => return refuse("expected an event as one JSON object".into()),
        // An empty line: the parser says so.
        None => return Ok(()),
    }
    if !bytes.contains(&b'[') {
        return Ok(());
    }
    let mut open: Vec<u8> = Vec::new();
    // Just after `[` or after a `,` inside an array: the next token starts an element.
    let mut element_next = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if element_next && !matches!(b, b'"' | b'{' | b']') {
            return refuse(format!(
                "expected a record as a JSON object and lists of strings or objects only; byte {i} \
                 starts a list element that is neither (a record written as an array?)"
            ));
        }
        element_next = false;
        match b {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' => open.push(b'{'),
            b'[' => {
                open.push(b'[');
                element_next = true;
            }
            b'}' | b']' => {
                open.pop();
            }
            b',' => element_next = open.last() == Some(&b'['),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn parse_timestamp(
    s: &str,
    ctx: Option<&ValidationContext>,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let mut fail = |reason, message| {
        errors.push(FieldError {
            path: "occurred_at".into(),
            message,
            reason,
        })
    };
    let parsed = match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t,
        Err(_) => {
            fail(
                RejectReason::InvalidTimestamp,
                format!(
                    "expected an RFC 3339 UTC timestamp like \"2026-01-01T12:00:00Z\", got {:?}",
                    clip(s)
                ),
            );
            return None;
        }
    };
    if parsed.offset().local_minus_utc() != 0 {
        fail(
            RejectReason::InvalidTimestamp,
            format!(
                "expected a UTC timestamp (ending in Z or +00:00), got {:?}",
                clip(s)
            ),
        );
        return None;
    }
    let t = parsed.with_timezone(&Utc);
    if let Some(ctx) = ctx {
        let latest = ctx.now + ctx.limits.max_future_skew;
        if t > latest {
            fail(
                RejectReason::FutureTimestamp,
                format!(
                    "expected a time no later than {} (now plus {} s of allowed clock skew), got {}",
                    latest.to_rfc3339_opts(SecondsFormat::Secs, true),
                    ctx.limits.max_future_skew.num_seconds(),
                    t.to_rfc3339_opts(SecondsFormat::Millis, true)
                ),
            );
            return None;
        }
    }
    Some(t)
}
