//! Validation: every rule an event must satisfy beyond its JSON shape, reported as field-level
//! errors (a JSON path, what was expected, what was found) so a producer can fix the exact field.
//!
//! Rules (see `specs/adr/0001-event-envelope-and-evolution.md`): ids are non-empty and short,
//! quantities are positive, prices are non-negative integer minor units with an ISO 4217
//! currency, strings are bounded, timestamps are RFC 3339 UTC and not in the future beyond a skew,
//! and no string may carry a payment card number ([`crate::pci`]).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::money::Money;
use crate::pci;

/// The largest quantity one event may carry (units ordered, received, adjusted, returned; a
/// count of search results). Folds add quantities with checked arithmetic all the same: events
/// that reached the log by another road than this validator are never trusted to be small.
pub const MAX_QUANTITY: i64 = 1_000_000_000;

/// The largest amount of money, in minor units: twelve digits, so that no number in an event can
/// hold a 13-digit card number.
pub const MAX_AMOUNT_MINOR: i64 = 999_999_999_999;

/// Why an event was rejected: the label used in metrics and the dead-letter log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    MalformedJson,
    UnknownType,
    UnsupportedVersion,
    MissingField,
    UnknownField,
    InvalidUuid,
    InvalidTimestamp,
    FutureTimestamp,
    InvalidValue,
    Oversize,
    CardNumber,
    /// A decision type that only the platform writes.
    SystemType,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::MissingField => "missing_field",
            RejectReason::UnknownField => "unknown_field",
            RejectReason::InvalidUuid => "invalid_uuid",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::InvalidValue => "invalid_value",
            RejectReason::Oversize => "oversize",
            RejectReason::CardNumber => "card_number",
            RejectReason::SystemType => "system_type",
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON path of the field, e.g. `payload.lines[2].qty`; `$` for the whole document.
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
    pub reason: RejectReason,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one event (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub errors: Vec<FieldError>,
}

impl ValidationError {
    pub(crate) fn single(path: impl Into<String>, reason: RejectReason, message: String) -> Self {
        Self {
            errors: vec![FieldError {
                path: path.into(),
                message,
                reason,
            }],
        }
    }

    /// The reason of the first error: the label this rejection is counted under.
    pub fn reason(&self) -> RejectReason {
        self.errors
            .first()
            .map(|e| e.reason)
            .unwrap_or(RejectReason::InvalidValue)
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Size limits, in characters (Unicode code points, as JSON Schema counts them) unless said
/// otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How far `occurred_at` may be ahead of the validator's clock (clock skew allowance).
    pub max_future_skew: chrono::Duration,
    pub max_id_chars: usize,
    pub max_short_text_chars: usize,
    pub max_long_text_chars: usize,
    /// Items in any list (order lines, skus, category path) and entries in attribute maps.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_future_skew: chrono::Duration::minutes(5),
            max_id_chars: 128,
            max_short_text_chars: 1024,
            max_long_text_chars: 16 * 1024,
            max_items: 500,
        }
    }
}

/// What validation needs from the outside world: the current time and the limits.
#[derive(Debug, Clone)]
pub struct ValidationContext {
    pub now: DateTime<Utc>,
    pub limits: Limits,
}

impl ValidationContext {
    pub fn now() -> Self {
        Self {
            now: Utc::now(),
            limits: Limits::default(),
        }
    }

    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now,
            limits: Limits::default(),
        }
    }
}

/// Input echoed in an error message: card numbers masked (before the cut, so a number the cut
/// splits shows no more digits than a whole one), then the first `n` characters.
pub(crate) fn echo(s: &str, n: usize) -> String {
    let masked = pci::mask_card_numbers(s);
    match masked.char_indices().nth(n) {
        Some((i, _)) => masked[..i].to_owned(),
        None => masked.into_owned(),
    }
}

/// How long a string may be.
#[derive(Debug, Clone, Copy)]
pub enum TextSize {
    Short,
    Long,
}

enum Segment {
    Field(&'static str),
    Index(usize),
    Key(String),
}

/// A rule the validator applied at a path, as the JSON Schema says it (`json_schema.rs` asks
/// the validator, so the two cannot drift apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Non-empty, no control characters, at most this many characters.
    Id(usize),
    /// At most this many characters.
    Text(usize),
    /// From 1 to this many items.
    List(usize),
    /// At most this many entries, keys at most `.1` characters, values at most `.2`.
    Map(usize, usize, usize),
}

/// Walks a payload, tracking the JSON path, collecting errors.
pub struct Validator<'c> {
    limits: &'c Limits,
    path: Vec<Segment>,
    errors: Vec<FieldError>,
    /// Where each rule applied, when asked for (`json_schema.rs`): paths as segments.
    rules: Option<Vec<(Vec<PathPart>, Rule)>>,
}

/// One step of a recorded path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathPart {
    Field(&'static str),
    Item,
    Value,
}

impl<'c> Validator<'c> {
    pub(crate) fn new(limits: &'c Limits, root: &'static str) -> Self {
        Self {
            limits,
            path: vec![Segment::Field(root)],
            errors: Vec::new(),
            rules: None,
        }
    }

    /// A validator that also records the rules it applies, and where.
    pub(crate) fn recording(limits: &'c Limits, root: &'static str) -> Self {
        Self {
            rules: Some(Vec::new()),
            ..Self::new(limits, root)
        }
    }

    pub(crate) fn into_rules(self) -> Vec<(Vec<PathPart>, Rule)> {
        self.rules.unwrap_or_default()
    }

    fn record(&mut self, rule: Rule) {
        let parts: Vec<PathPart> = self
            .path
            .iter()
            .skip(1)
            .map(|s| match s {
                Segment::Field(name) => PathPart::Field(name),
                Segment::Index(_) => PathPart::Item,
                Segment::Key(_) => PathPart::Value,
            })
            .collect();
        if let Some(rules) = &mut self.rules {
            rules.push((parts, rule));
        }
    }

    pub(crate) fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }

    /// Runs `check` with `name` appended to the path.
    pub fn field(&mut self, name: &'static str, check: impl FnOnce(&mut Self)) {
        self.path.push(Segment::Field(name));
        check(self);
        self.path.pop();
    }

    fn index(&mut self, i: usize, check: impl FnOnce(&mut Self)) {
        self.path.push(Segment::Index(i));
        check(self);
        self.path.pop();
    }

    fn key(&mut self, key: &str, check: impl FnOnce(&mut Self)) {
        // Paths are echoed in answers and dead letters: never with a card number in them.
        self.path
            .push(Segment::Key(pci::mask_card_numbers(key).into_owned()));
        check(self);
        self.path.pop();
    }

    fn path_string(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Segment::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
                Segment::Key(k) => out.push_str(&format!("[{k:?}]")),
            }
        }
        out
    }

    pub fn error(&mut self, reason: RejectReason, message: String) {
        let path = self.path_string();
        self.errors.push(FieldError {
            path,
            message,
            reason,
        });
    }

    pub fn invalid(&mut self, message: String) {
        self.error(RejectReason::InvalidValue, message);
    }

    fn check_string(&mut self, value: &str, max: usize) {
        // Characters (Unicode code points), as JSON Schema's maxLength counts them; a string of
        // at most `max` bytes has at most `max` characters, so only longer ones are counted.
        let chars = if value.len() > max {
            value.chars().count()
        } else {
            0
        };
        if chars > max {
            self.error(
                RejectReason::Oversize,
                format!("expected at most {max} characters, got {chars}"),
            );
        } else if pci::contains_card_number(value) {
            self.error(
                RejectReason::CardNumber,
                "looks like a payment card number (a 13-19 digit run passing the Luhn check); \
                 send a payment token, never card data"
                    .to_owned(),
            );
        }
    }

    /// An identifier: non-empty, no control characters, at most `max_id_chars` characters.
    pub fn id(&mut self, name: &'static str, value: &str) {
        self.field(name, |v| v.check_id(value));
    }

    fn check_id(&mut self, value: &str) {
        let max = self.limits.max_id_chars;
        self.record(Rule::Id(max));
        if value.is_empty() {
            self.invalid("expected a non-empty identifier".to_owned());
        } else if value.chars().any(char::is_control) {
            self.invalid("expected an identifier without control characters".to_owned());
        } else {
            self.check_string(value, max);
        }
    }

    pub fn text(&mut self, name: &'static str, value: &str, size: TextSize) {
        let max = self.max_text(size);
        self.field(name, |v| {
            v.record(Rule::Text(max));
            v.check_string(value, max)
        });
    }

    pub fn optional_text(&mut self, name: &'static str, value: Option<&str>, size: TextSize) {
        if let Some(value) = value {
            self.text(name, value, size);
        }
    }

    fn max_text(&self, size: TextSize) -> usize {
        match size {
            TextSize::Short => self.limits.max_short_text_chars,
            TextSize::Long => self.limits.max_long_text_chars,
        }
    }

    /// A quantity: from 1 to [`MAX_QUANTITY`].
    pub fn positive(&mut self, name: &'static str, n: i64) {
        self.field(name, |v| {
            if n <= 0 {
                v.invalid(format!("expected a positive integer, got {n}"));
            } else if n > MAX_QUANTITY {
                v.invalid(format!(
                    "expected a quantity of at most {MAX_QUANTITY}, got {n}"
                ));
            }
        });
    }

    /// A count: from 0 to [`MAX_QUANTITY`].
    pub fn non_negative(&mut self, name: &'static str, n: i64) {
        self.field(name, |v| {
            if n < 0 {
                v.invalid(format!("expected a non-negative integer, got {n}"));
            } else if n > MAX_QUANTITY {
                v.invalid(format!("expected at most {MAX_QUANTITY}, got {n}"));
            }
        });
    }

    pub fn price(&mut self, name: &'static str, money: &Money) {
        self.field(name, |v| non_negative_money(money, v));
    }

    /// A non-empty list of at most `max_items`, each item checked by `each`.
    pub fn list<T>(
        &mut self,
        name: &'static str,
        items: &[T],
        mut each: impl FnMut(&mut Self, &T),
    ) {
        let max = self.limits.max_items;
        self.field(name, |v| {
            v.record(Rule::List(max));
            if items.is_empty() {
                v.invalid("expected at least one item".to_owned());
            } else if items.len() > max {
                v.error(
                    RejectReason::Oversize,
                    format!("expected at most {max} items, got {}", items.len()),
                );
            } else {
                for (i, item) in items.iter().enumerate() {
                    v.index(i, |v| each(v, item));
                }
            }
        });
    }

    /// A list of identifiers (skus, category levels), each checked as [`Validator::id`], and
    /// all of them together: a card number split across items is a card number all the same.
    pub fn id_list(&mut self, name: &'static str, items: &[String]) {
        self.list(name, items, |v, s| v.check_id(s));
        if items.len() > 1 && pci::contains_card_number(&items.join(" ")) {
            self.field(name, |v| {
                v.error(
                    RejectReason::CardNumber,
                    "the items together look like a payment card number; send a payment token, \
                     never card data"
                        .to_owned(),
                )
            });
        }
    }

    /// A string-to-string map with bounded keys and values.
    pub fn string_map<'m>(
        &mut self,
        name: &'static str,
        entries: impl ExactSizeIterator<Item = (&'m String, &'m String)>,
    ) {
        let max_items = self.limits.max_items;
        let max_key = self.limits.max_id_chars;
        let max_value = self.limits.max_short_text_chars;
        self.field(name, |v| {
            v.record(Rule::Map(max_items, max_key, max_value));
            if entries.len() > max_items {
                v.error(
                    RejectReason::Oversize,
                    format!(
                        "expected at most {max_items} entries, got {}",
                        entries.len()
                    ),
                );
                return;
            }
            for (key, value) in entries {
                let key_chars = key.chars().count();
                if key_chars > max_key {
                    v.error(
                        RejectReason::Oversize,
                        format!("expected keys of at most {max_key} characters, got {key_chars}"),
                    );
                    continue;
                }
                // A number split between a key and its value counts too; then the key's digits
                // are not shown in the path either.
                let split = !pci::contains_card_number(key)
                    && pci::contains_card_number(&format!("{key} {value}"));
                let shown: String = if split {
                    key.chars()
                        .map(|c| if c.is_numeric() { '*' } else { c })
                        .collect()
                } else {
                    key.clone()
                };
                v.key(&shown, |v| {
                    if split || pci::contains_card_number(key) {
                        v.error(
                            RejectReason::CardNumber,
                            "the key (or the key with its value) looks like a payment card number"
                                .to_owned(),
                        );
                    } else {
                        v.check_string(value, max_value);
                    }
                });
            }
        });
    }
}

/// A price: a non-negative amount within bounds and an ISO 4217 currency.
fn non_negative_money(money: &Money, v: &mut Validator) {
    v.field("amount_minor", |v| {
        if money.amount_minor < 0 {
            v.invalid(format!(
                "expected a non-negative amount in minor units, got {}",
                money.amount_minor
            ));
        } else if money.amount_minor > MAX_AMOUNT_MINOR {
            v.invalid(format!(
                "expected an amount of at most {} minor units, got {}",
                MAX_AMOUNT_MINOR, money.amount_minor
            ));
        }
    });
    v.field("currency", |v| {
        let ok =
            money.currency.len() == 3 && money.currency.bytes().all(|b| b.is_ascii_uppercase());
        if !ok {
            v.invalid(format!(
                "expected an ISO 4217 code of three upper-case letters, got {:?}",
                echo(&money.currency, 16)
            ));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_json_paths() {
        let limits = Limits::default();
        let mut v = Validator::new(&limits, "payload");
        let lines = [1_i64, 0];
        v.list("lines", &lines, |v, qty| v.positive("qty", *qty));
        let errors = v.into_errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "payload.lines[1].qty");
        assert_eq!(errors[0].message, "expected a positive integer, got 0");
        assert_eq!(
            errors[0].to_string(),
            "payload.lines[1].qty: expected a positive integer, got 0"
        );
    }

    #[test]
    fn oversize_and_card_numbers_are_caught_in_maps() {
        let limits = Limits::default();
        let mut v = Validator::new(&limits, "payload");
        let mut map = std::collections::BTreeMap::new();
        map.insert(
            "note".to_owned(),
            "card 4111 1111 1111 1111 thanks".to_owned(),
        );
        map.insert("color".to_owned(), "x".repeat(2000));
        v.string_map("attributes", map.iter());
        let errors = v.into_errors();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].path, "payload.attributes[\"color\"]");
        assert_eq!(errors[0].reason, RejectReason::Oversize);
        assert_eq!(errors[1].path, "payload.attributes[\"note\"]");
        assert_eq!(errors[1].reason, RejectReason::CardNumber);
    }
}
