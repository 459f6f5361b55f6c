//! The PCI guard end to end: a Luhn-valid 13–19-digit number, written in any digit form, grouped
//! by any separators (invisible ones included), or as JSON `\u` escapes, in any string field of
//! any producer event type, is refused by the validator — so it never reaches the log, the store
//! or the lakehouse — and the dead letter that keeps the line shows at most its last four digits.
//!
//! The reference that decides what is "readable" is independent of the guard: NFKC from the
//! `unicode-normalization` crate, two scripts' digits by code-point arithmetic, and JSON and Rust
//! escapes decoded by hand.

use std::sync::Arc;

use chrono::Utc;
use emporium_ingest::api;
use emporium_ingest::dead_letter::DeadLetter;
use emporium_ingest::intake::{Intake, IntakeConfig};
use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{DEAD_LETTER_TOPIC, EVENTS_TOPIC, EventLog, read_all};
use emporium_schemas::examples::{example, example_time};
use emporium_schemas::{Event, EventKind, ValidationContext};
use proptest::prelude::*;
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

/// A digit written in one of several forms.
fn render_digit(d: u8, form: usize) -> char {
    let d32 = u32::from(d);
    let cp = match form {
        0 => u32::from(b'0') + d32,
        1 => 0xFF10 + d32,  // fullwidth
        2 => 0x0660 + d32,  // Arabic-Indic
        3 => 0x0966 + d32,  // Devanagari
        4 => 0x1D7CE + d32, // mathematical bold
        5 => 0x1D7F6 + d32, // mathematical monospace
        6 => ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'][d as usize] as u32,
        _ => {
            if d == 0 {
                0x24EA // circled zero
            } else {
                0x2460 + d32 - 1 // circled one to nine
            }
        }
    };
    char::from_u32(cp).expect("a digit form")
}

const FORMS: usize = 8;

const SEPARATORS: [&str; 14] = [
    " ", "-", ".", "/", "_", "\t", "  ", " - ", ", ", "\u{200b}", "\u{ad}", "\u{2060}", "\u{feff}",
    "\u{200d}",
];

/// A Luhn-valid number of `len` digits from the first `len - 1` of `seed`.
fn card(seed: &[u8], len: usize) -> Vec<u8> {
    let mut digits = seed[..len - 1].to_vec();
    // The check digit: the sum with it must be a multiple of ten. Positions are counted from the
    // right, the check digit being position 0 (not doubled).
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let dd = d * 2;
                if dd > 9 { dd - 9 } else { dd }
            } else {
                d
            }
        })
        .sum();
    digits.push(((10 - sum % 10) % 10) as u8);
    digits
}

/// How one test case writes its number.
#[derive(Debug, Clone)]
struct Rendering {
    digits: Vec<u8>,
    forms: Vec<usize>,
    /// Separator index before each digit but the first (`None`: no separator).
    separators: Vec<Option<usize>>,
    escaped: bool,
    prefix: &'static str,
    suffix: &'static str,
}

impl Rendering {
    /// The number as a JSON string's contents (without the quotes).
    fn json_contents(&self) -> String {
        let mut out = json_escape(self.prefix);
        for (i, &d) in self.digits.iter().enumerate() {
            if i > 0
                && let Some(s) = self.separators[i - 1]
            {
                out.push_str(&json_escape(SEPARATORS[s]));
            }
            let c = render_digit(d, self.forms[i]);
            if self.escaped {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            } else {
                out.push_str(&json_escape(&c.to_string()));
            }
        }
        out.push_str(&json_escape(self.suffix));
        out
    }

    /// The digits that must never be readable: all but the last four.
    fn secret(&self) -> String {
        let keep = self.digits.len() - 4;
        self.digits[..keep]
            .iter()
            .map(|d| char::from(b'0' + d))
            .collect()
    }
}

fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).expect("a string serializes");
    quoted[1..quoted.len() - 1].to_owned()
}

fn rendering() -> impl Strategy<Value = Rendering> {
    (
        13usize..=19,
        proptest::collection::vec(0u8..10, 19),
        proptest::collection::vec(0..FORMS, 19),
        proptest::collection::vec(proptest::option::weighted(0.4, 0..SEPARATORS.len()), 18),
        any::<bool>(),
        prop::sample::select(vec!["", "paid with ", "card: ", "qty 2 "]),
        prop::sample::select(vec!["", " thanks", " exp 12/29", "!"]),
    )
        .prop_map(
            |(len, seed, forms, separators, escaped, prefix, suffix)| Rendering {
                digits: card(&seed, len),
                forms: forms[..len].to_vec(),
                separators: separators[..len - 1].to_vec(),
                escaped,
                prefix,
                suffix,
            },
        )
}

/// Paths to every string in `v`.
fn string_paths(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::String(_) => out.push(path.clone()),
        Value::Object(map) => {
            for (k, child) in map {
                path.push(k.clone());
                string_paths(child, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(i.to_string());
                string_paths(child, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'v>(v: &'v mut Value, path: &[String]) -> &'v mut Value {
    path.iter().fold(v, |v, key| match v {
        Value::Array(items) => &mut items[key.parse::<usize>().expect("an index")],
        other => &mut other[key.as_str()],
    })
}

const SLOT: &str = "CARD-SLOT";

/// The raw line of `kind`'s example with the string at `field` (an index into its strings)
/// replaced by the rendered number.
fn line_with_card(kind: EventKind, field: usize, r: &Rendering) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&example(kind, 1).to_json()).expect("json");
    let mut paths = Vec::new();
    string_paths(&v, &mut Vec::new(), &mut paths);
    let path = &paths[field % paths.len()];
    *at_path(&mut v, path) = Value::String(SLOT.into());
    serde_json::to_string(&v)
        .expect("json")
        .replace(SLOT, &r.json_contents())
        .into_bytes()
}

/// Decodes JSON `\uXXXX` (with surrogate pairs) and Rust `\u{X}` escapes; other text as is.
fn unescape(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let hex = |from: usize, to: usize| -> Option<u32> {
        let text: String = chars.get(from..to)?.iter().collect();
        u32::from_str_radix(&text, 16).ok()
    };
    while i < chars.len() {
        if chars[i] == '\\' && chars.get(i + 1) == Some(&'u') {
            if chars.get(i + 2) == Some(&'{')
                && let Some(end) = chars[i + 3..].iter().position(|&c| c == '}')
                && let Some(c) = hex(i + 3, i + 3 + end).and_then(char::from_u32)
            {
                out.push(c);
                i += 4 + end;
                continue;
            }
            if let Some(unit) = hex(i + 2, i + 6) {
                if (0xD800..0xDC00).contains(&unit)
                    && chars.get(i + 6) == Some(&'\\')
                    && let Some(low) = hex(i + 8, i + 12)
                    && let Some(c) =
                        char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                {
                    out.push(c);
                    i += 12;
                    continue;
                }
                if let Some(c) = char::from_u32(unit) {
                    out.push(c);
                    i += 6;
                    continue;
                }
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Every digit a reader could make out of `s`, in order, whatever separates them.
fn readable_digits(s: &str) -> String {
    unescape(s)
        .nfkc()
        .filter_map(|c| match u32::from(c) {
            0x30..=0x39 => Some(c),
            cp @ 0x0660..=0x0669 => char::from_u32(0x30 + cp - 0x0660),
            cp @ 0x0966..=0x096F => char::from_u32(0x30 + cp - 0x0966),
            _ => None,
        })
        .collect()
}

/// Every string in a stored dead letter, its raw line's decoded strings included.
fn dead_letter_texts(letter: &DeadLetter) -> Vec<String> {
    let mut texts = Vec::new();
    for e in &letter.errors {
        texts.push(e.path.clone());
        texts.push(e.message.clone());
    }
    if let Some(raw) = &letter.raw {
        texts.push(raw.clone());
    }
    if let Some(b64) = &letter.raw_base64 {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        texts.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    texts
}

fn producer_kinds() -> Vec<EventKind> {
    EventKind::ALL
        .iter()
        .copied()
        .filter(|k| !k.is_system())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_card_number_in_any_form_in_any_field_is_refused_and_never_readable(
        r in rendering(),
        kind in 0usize..64,
        field in 0usize..64,
    ) {
        let kinds = producer_kinds();
        let kind = kinds[kind % kinds.len()];
        let raw = line_with_card(kind, field, &r);
        let ctx = ValidationContext::at(example_time() + chrono::Duration::hours(1));
        let text = String::from_utf8_lossy(&raw).into_owned();
        let error = match Event::parse(&raw, &ctx) {
            Ok(_) => return Err(TestCaseError::fail(format!("accepted: {text}"))),
            Err(e) => e,
        };
        let letter = DeadLetter::new(Utc::now(), "test", 0, error.reason(), &error.errors, &raw);
        let secret = r.secret();
        // The rest of the line has digits of its own (ids, times): a number made only of what
        // they already hold proves nothing either way.
        let without = line_with_card(kind, field, &Rendering { digits: vec![], ..r.clone() });
        prop_assume!(!readable_digits(&String::from_utf8_lossy(&without)).contains(&secret));
        for t in dead_letter_texts(&letter) {
            prop_assert!(
                !readable_digits(&t).contains(&secret),
                "{secret} readable in {t:?} (line {text})"
            );
        }
    }
}

/// The reference itself: it reads the forms the test writes.
#[test]
fn the_reference_reads_every_form() {
    let r = Rendering {
        digits: card(
            &[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            16,
        ),
        forms: (0..16).map(|i| i % FORMS).collect(),
        separators: (0..15).map(|i| Some(i % SEPARATORS.len())).collect(),
        escaped: true,
        prefix: "",
        suffix: "",
    };
    assert_eq!(r.digits, [4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    let line = format!("\"{}\"", r.json_contents());
    assert_eq!(readable_digits(&line), "4111111111111111");
    let debug = format!("{:?}", "4\u{200b}1\u{2060}1");
    assert_eq!(readable_digits(&debug), "411");
}

/// Over HTTP: the line is answered 422, nothing reaches the events topic, and the dead letter
/// served back masks the number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_a_disguised_card_number_is_refused_and_masked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open"));
    let intake = Intake::start(Arc::clone(&log), IntakeConfig::default())
        .await
        .expect("intake");
    let auth = emporium_auth::Authenticator::new(
        &emporium_auth::KeySet::single("test", "a-test-secret-of-enough-bytes"),
        "the-operator-key-of-these-tests",
    )
    .expect("keys");
    let token = auth.producer_token(
        "tests",
        &[emporium_auth::Scope::Orders],
        std::time::Duration::from_secs(60),
    );
    let server = api::LocalServer::start(intake, auth).await.expect("server");
    // Fullwidth digits split by zero-width spaces, in the payment token, written as escapes.
    let r = Rendering {
        digits: vec![4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        forms: vec![1; 16],
        separators: (0..15).map(|i| (i % 4 == 3).then_some(9)).collect(),
        escaped: true,
        prefix: "",
        suffix: "",
    };
    let mut v: Value =
        serde_json::from_slice(&example(EventKind::PaymentAuthorized, 1).to_json()).expect("json");
    v["occurred_at"] = Value::String(Utc::now().to_rfc3339());
    v["payload"]["payment_token"] = Value::String(SLOT.into());
    let line = serde_json::to_string(&v)
        .expect("json")
        .replace(SLOT, &r.json_contents());
    let response = reqwest::Client::new()
        .post(format!("{}/v1/events", server.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(line)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 422);
    let report: Value = response.json().await.expect("json");
    assert_eq!(
        report["rejected"][0]["errors"][0]["reason"], "card_number",
        "{report}"
    );
    let events = read_all(log.as_ref(), EVENTS_TOPIC).await.expect("read");
    assert!(events.is_empty(), "nothing reaches the log");
    let letters = read_all(log.as_ref(), DEAD_LETTER_TOPIC)
        .await
        .expect("read");
    assert_eq!(letters.len(), 1);
    let stored = String::from_utf8(letters[0].value.to_vec()).expect("utf-8");
    let letter: DeadLetter = serde_json::from_str(&stored).expect("a dead letter");
    for t in dead_letter_texts(&letter) {
        assert!(
            !readable_digits(&t).contains("411111111111"),
            "readable in {t:?}"
        );
    }
    assert!(
        readable_digits(letter.raw.as_deref().unwrap_or_default()).contains("1111"),
        "the last four stay: {stored}"
    );
}
