//! Golden tests of parsing and validation: every rule gives a field-level error naming the JSON
//! path and what was expected.

use chrono::Duration;
use emporium_schemas::examples::{example, example_time};
use emporium_schemas::{Event, EventKind, RejectReason, ValidationContext};
use serde_json::{Value, json};

fn ctx() -> ValidationContext {
    ValidationContext::at(example_time() + Duration::hours(1))
}

fn example_value(kind: EventKind) -> Value {
    serde_json::from_slice(&example(kind, 1).to_json()).expect("examples serialize to JSON")
}

/// Parses `value` and returns its errors as `(path, reason, message)`.
fn errors_of(value: &Value) -> Vec<(String, RejectReason, String)> {
    errors_of_text(&serde_json::to_string(value).expect("test values serialize"))
}

#[test]
fn every_example_round_trips_through_the_wire_format() {
    for &kind in EventKind::ALL {
        let event = example(kind, 7);
        let parsed = Event::parse(&event.to_json(), &ctx())
            .unwrap_or_else(|e| panic!("{kind} example rejected: {e}"));
        assert_eq!(parsed, event);
        assert_eq!(parsed.kind(), kind);
        assert!(!parsed.partition_key().is_empty());
    }
}

#[test]
fn the_head_of_every_example_is_its_type_and_time() {
    for &kind in EventKind::ALL {
        let mut event = example(kind, 7);
        // Sub-millisecond precision is kept, as `decode` keeps it.
        event.occurred_at += Duration::nanoseconds(123_456);
        let mut v: Value = serde_json::from_slice(&event.to_json()).expect("json");
        v["occurred_at"] = json!(
            event
                .occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        );
        let bytes = serde_json::to_vec(&v).expect("json");
        assert_eq!(
            Event::decode_head(&bytes).expect("head"),
            (kind, event.occurred_at),
            "{kind}"
        );
    }
    let mut v = example_value(EventKind::OrderPlaced);
    v["type"] = json!("order_teleported");
    let e = Event::decode_head(&serde_json::to_vec(&v).expect("json")).expect_err("unknown type");
    assert_eq!(e.errors[0].path, "type");
    v["type"] = json!("order_placed");
    v["occurred_at"] = json!("yesterday");
    let e = Event::decode_head(&serde_json::to_vec(&v).expect("json")).expect_err("bad time");
    assert_eq!(e.errors[0].path, "occurred_at");
    let e = Event::decode_head(b"{\"event_id\":").expect_err("truncated");
    assert_eq!(e.errors[0].reason, RejectReason::MalformedJson);
}

/// What a reader that counts events per product decodes is the decoded event's product, for
/// every type that names one; a type without one is refused, naming the field.
#[test]
fn the_product_of_every_example_that_names_one_decodes_alone() {
    let mut named = 0;
    for &kind in EventKind::ALL {
        let event = example(kind, 3);
        let bytes = event.to_json();
        match event.product_id() {
            Some(product) => {
                named += 1;
                assert_eq!(
                    Event::decode_product(&bytes).expect("product"),
                    (kind, event.occurred_at, product.to_owned()),
                    "{kind}"
                );
            }
            None => {
                let e = Event::decode_product(&bytes).expect_err("no product");
                assert_eq!(e.errors[0].path, "payload.product_id", "{kind}");
            }
        }
    }
    assert_eq!(named, 5, "catalog events, reviews and views name a product");
    // An escaped id is unescaped, as `decode` does.
    let mut v = example_value(EventKind::ProductViewed);
    v["payload"]["product_id"] = json!("p-\"1\"\u{e9}");
    let bytes = serde_json::to_vec(&v).expect("json");
    let (_, _, product) = Event::decode_product(&bytes).expect("escaped");
    assert_eq!(product, "p-\"1\"é");
    let decoded = Event::decode(&bytes).expect("decode");
    assert_eq!(decoded.product_id(), Some(product.as_str()));
}

#[test]
fn unknown_type_lists_the_known_types() {
    let mut v = example_value(EventKind::OrderPlaced);
    v["type"] = json!("order_teleported");
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "type");
    assert_eq!(errors[0].1, RejectReason::UnknownType);
    assert!(errors[0].2.contains("order_placed"), "{}", errors[0].2);
}

#[test]
fn missing_field_names_its_full_path() {
    let mut v = example_value(EventKind::OrderPlaced);
    v["payload"]["lines"][0]
        .as_object_mut()
        .expect("a line is an object")
        .remove("qty");
    let errors = errors_of(&v);
    assert_eq!(
        errors,
        vec![(
            "payload.lines[0].qty".to_owned(),
            RejectReason::MissingField,
            "missing required field".to_owned()
        )]
    );
}

#[test]
fn missing_envelope_field_is_reported() {
    let mut v = example_value(EventKind::OrderPlaced);
    v.as_object_mut().expect("object").remove("occurred_at");
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "occurred_at");
    assert_eq!(errors[0].1, RejectReason::MissingField);
}

#[test]
fn extra_fields_are_rejected_in_envelope_and_payload() {
    let mut v = example_value(EventKind::CartItemAdded);
    v["payload"]["coupon"] = json!("SAVE10");
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "payload.coupon");
    assert_eq!(errors[0].1, RejectReason::UnknownField);
    assert!(errors[0].2.contains("`qty`"), "{}", errors[0].2);

    let mut v = example_value(EventKind::CartItemAdded);
    v["trace"] = json!(1);
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "trace");
    assert_eq!(errors[0].1, RejectReason::UnknownField);
}

#[test]
fn bad_uuid_is_rejected() {
    let mut v = example_value(EventKind::ProductViewed);
    v["event_id"] = json!("not-a-uuid");
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "event_id");
    assert_eq!(errors[0].1, RejectReason::InvalidUuid);
    assert!(errors[0].2.contains("\"not-a-uuid\""));
}

#[test]
fn non_positive_quantities_are_rejected() {
    let mut v = example_value(EventKind::OrderPlaced);
    v["payload"]["lines"][0]["qty"] = json!(0);
    assert_eq!(
        errors_of(&v),
        vec![(
            "payload.lines[0].qty".to_owned(),
            RejectReason::InvalidValue,
            "expected a positive integer, got 0".to_owned()
        )]
    );
    let mut v = example_value(EventKind::StockReceived);
    v["payload"]["quantity"] = json!(-5);
    assert_eq!(errors_of(&v)[0].0, "payload.quantity");
}

#[test]
fn wrong_json_type_names_the_field() {
    let mut v = example_value(EventKind::CartItemAdded);
    v["payload"]["qty"] = json!("two");
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "payload.qty");
    assert_eq!(errors[0].1, RejectReason::InvalidValue);
    assert!(errors[0].2.contains("expected i64"), "{}", errors[0].2);
}

#[test]
fn negative_price_is_rejected() {
    let mut v = example_value(EventKind::PriceChanged);
    v["payload"]["price"]["amount_minor"] = json!(-1);
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "payload.price.amount_minor");
    assert!(errors[0].2.contains("non-negative"));

    let mut v = example_value(EventKind::PriceChanged);
    v["payload"]["price"]["currency"] = json!("usd");
    assert_eq!(errors_of(&v)[0].0, "payload.price.currency");
}

#[test]
fn timestamps_must_be_utc_and_not_in_the_future() {
    let mut v = example_value(EventKind::ProductViewed);
    v["occurred_at"] = json!("2026-01-01T13:00:00+02:00");
    assert_eq!(errors_of(&v)[0].1, RejectReason::InvalidTimestamp);

    v["occurred_at"] = json!("yesterday");
    assert_eq!(errors_of(&v)[0].1, RejectReason::InvalidTimestamp);

    // ctx() is one hour after the example time; 5 minutes of skew are allowed.
    v["occurred_at"] = json!("2026-01-01T13:04:00Z");
    assert!(Event::parse(&serde_json::to_vec(&v).expect("json"), &ctx()).is_ok());
    v["occurred_at"] = json!("2026-01-01T13:06:00Z");
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "occurred_at");
    assert_eq!(errors[0].1, RejectReason::FutureTimestamp);
}

#[test]
fn oversize_strings_are_rejected() {
    let mut v = example_value(EventKind::ReviewPosted);
    v["payload"]["text"] = json!("a".repeat(20_000));
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "payload.text");
    assert_eq!(errors[0].1, RejectReason::Oversize);

    let mut v = example_value(EventKind::ProductViewed);
    v["payload"]["user_id"] = json!("u".repeat(200));
    assert_eq!(errors_of(&v)[0].1, RejectReason::Oversize);
}

#[test]
fn card_numbers_are_rejected_anywhere() {
    let mut v = example_value(EventKind::ReviewPosted);
    v["payload"]["text"] = json!("paid with 4111-1111-1111-1111, fast delivery");
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "payload.text");
    assert_eq!(errors[0].1, RejectReason::CardNumber);

    let mut v = example_value(EventKind::PaymentAuthorized);
    v["payload"]["payment_token"] = json!("5500000000000004");
    assert_eq!(errors_of(&v)[0].1, RejectReason::CardNumber);
}

#[test]
fn malformed_json_and_unsupported_versions() {
    let errors = Event::parse(b"{\"event_id\": ", &ctx()).expect_err("truncated JSON");
    assert_eq!(errors.errors[0].reason, RejectReason::MalformedJson);
    assert_eq!(errors.errors[0].path, "$");

    let mut v = example_value(EventKind::OrderDelivered);
    v["schema_version"] = json!(9);
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "schema_version");
    assert_eq!(errors[0].1, RejectReason::UnsupportedVersion);
}

#[test]
fn several_errors_are_reported_together() {
    let mut v = example_value(EventKind::OrderPlaced);
    v["event_id"] = json!("x");
    v["payload"]["lines"][0]["qty"] = json!(-1);
    v["payload"]["lines"][0]["unit_price"]["amount_minor"] = json!(-5);
    let paths: Vec<String> = errors_of(&v).into_iter().map(|e| e.0).collect();
    assert_eq!(
        paths,
        vec![
            "event_id",
            "payload.lines[0].qty",
            "payload.lines[0].unit_price.amount_minor"
        ]
    );
}

#[test]
fn committed_json_schema_matches_the_types() {
    let generated = emporium_schemas::json_schema::event_json_schema();
    // The checkout the test runs in (cargo sets the variable when it runs a test), not the one it
    // was compiled in: a shared target directory can hold a build from another clone.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let path = dir.join("event.schema.json");
    let pretty = serde_json::to_string_pretty(&generated).expect("schema serializes") + "\n";
    if std::env::var_os("EMPORIUM_BLESS").is_some() {
        std::fs::write(&path, &pretty).expect("write schema");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == pretty,
        "schemas/event.schema.json is stale: run `EMPORIUM_BLESS=1 cargo test -p emporium-schemas` \
         or `emporium schema json > schemas/event.schema.json`"
    );
}

#[test]
fn attribute_maps_refuse_repeated_keys_and_card_number_keys() {
    let v = example_value(EventKind::ProductUpserted);
    // A repeated key could hide a value from validation: the whole map is refused.
    let text = serde_json::to_string(&v).expect("json").replace(
        "\"attributes\":{\"color\":\"black\"}",
        "\"attributes\":{\"note\":\"4111 1111 1111 1111\",\"note\":\"x\"}",
    );
    let errors = Event::parse(text.as_bytes(), &ctx()).expect_err("repeated key");
    assert_eq!(errors.errors[0].path, "payload.attributes");
    assert!(
        errors.errors[0].message.contains("duplicate key"),
        "{errors}"
    );

    let mut v = example_value(EventKind::ProductUpserted);
    v["payload"]["attributes"] = json!({"4111111111111111": "x"});
    let errors = errors_of(&v);
    assert_eq!(errors[0].1, RejectReason::CardNumber);
    assert!(
        !errors[0].0.contains("4111111111111111"),
        "path masked: {}",
        errors[0].0
    );
}

/// The fields of a JSON object's text, in the order they are written, as raw JSON texts (a
/// `Value` does not keep the order of its keys, and a record read from an array needs it).
fn fields(text: &str) -> Vec<(String, String)> {
    let map: Vec<(String, Box<serde_json::value::RawValue>)> = {
        struct InOrder(Vec<(String, Box<serde_json::value::RawValue>)>);
        impl<'de> serde::Deserialize<'de> for InOrder {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Entries;
                impl<'de> serde::de::Visitor<'de> for Entries {
                    type Value = InOrder;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<InOrder, A::Error> {
                        let mut entries = Vec::new();
                        while let Some(entry) = map.next_entry()? {
                            entries.push(entry);
                        }
                        Ok(InOrder(entries))
                    }
                }
                d.deserialize_map(Entries)
            }
        }
        serde_json::from_str::<InOrder>(text).expect("an object").0
    };
    map.into_iter()
        .map(|(k, v)| (k, v.get().to_owned()))
        .collect()
}

/// The record `text` written as the array of its field values, in order.
fn as_array(text: &str) -> String {
    let values: Vec<String> = fields(text).into_iter().map(|(_, v)| v).collect();
    format!("[{}]", values.join(","))
}

/// `text` with field `key` replaced by `f` of its value.
fn with_field(text: &str, key: &str, f: impl FnOnce(&str) -> String) -> String {
    let mut f = Some(f);
    let entries: Vec<String> = fields(text)
        .into_iter()
        .map(|(k, v)| {
            let v = if k == key {
                (f.take().expect("one key"))(&v)
            } else {
                v
            };
            format!("{}:{v}", Value::String(k))
        })
        .collect();
    format!("{{{}}}", entries.join(","))
}

/// `list`'s first element replaced by `f` of it.
fn with_first(list: &str, f: impl FnOnce(&str) -> String) -> String {
    let mut items: Vec<Box<serde_json::value::RawValue>> =
        serde_json::from_str(list).expect("a list");
    let first = f(items[0].get());
    items[0] = serde_json::value::RawValue::from_string(first).expect("json");
    serde_json::to_string(&items).expect("json")
}

fn errors_of_text(text: &str) -> Vec<(String, RejectReason, String)> {
    match Event::parse(text.as_bytes(), &ctx()) {
        Ok(event) => panic!("expected a rejection of {text}, got {event:?}"),
        Err(e) => e
            .errors
            .into_iter()
            .map(|e| (e.path, e.reason, e.message))
            .collect(),
    }
}

#[test]
fn records_written_as_arrays_are_refused() {
    for &kind in EventKind::ALL {
        let text = String::from_utf8(example(kind, 1).to_json()).expect("utf-8");
        // The whole event, and its payload, as arrays of their field values.
        let errors = errors_of_text(&as_array(&text));
        assert_eq!(
            errors[0].1,
            RejectReason::MalformedJson,
            "{kind}: {errors:?}"
        );
        let errors = errors_of_text(&with_field(&text, "payload", as_array));
        assert_eq!(errors[0].0, "payload", "{kind}: {errors:?}");
        assert_eq!(
            errors[0].1,
            RejectReason::MalformedJson,
            "{kind}: {errors:?}"
        );
    }
    // Records nested in the payload: an order line, a price.
    let text = String::from_utf8(example(EventKind::OrderPlaced, 1).to_json()).expect("utf-8");
    let line = with_field(&text, "payload", |p| {
        with_field(p, "lines", |lines| with_first(lines, as_array))
    });
    assert_eq!(errors_of_text(&line)[0].1, RejectReason::MalformedJson);
    let price = with_field(&text, "payload", |p| {
        with_field(p, "lines", |lines| {
            with_first(lines, |l| with_field(l, "unit_price", as_array))
        })
    });
    let errors = errors_of_text(&price);
    assert_eq!(errors[0].0, "$", "{errors:?}");
    assert!(
        errors[0].2.contains("record written as an array"),
        "{errors:?}"
    );
    // The canonical form still parses, whatever its spacing and key order.
    let v = example_value(EventKind::OrderPlaced);
    let reordered = format!(
        "{{ \"payload\" : {} ,\n \"occurred_at\":{}, \"schema_version\":1, \"type\":\"order_placed\", \"event_id\":{} }}",
        v["payload"], v["occurred_at"], v["event_id"]
    );
    Event::parse(reordered.as_bytes(), &ctx()).expect("reordered object");
    // The helpers keep a record intact when nothing is replaced.
    assert_eq!(with_field(&text, "none", as_array), text);
}

#[test]
fn event_ids_are_accepted_in_the_hyphenated_form_only() {
    let v = example_value(EventKind::ProductViewed);
    let id = v["event_id"].as_str().expect("id").to_owned();
    let simple = id.replace('-', "");
    for other in [
        simple.clone(),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
    ] {
        let mut w = v.clone();
        w["event_id"] = json!(other);
        assert_eq!(errors_of(&w)[0].1, RejectReason::InvalidUuid, "{other}");
    }
    let mut upper = v.clone();
    upper["event_id"] = json!(id.to_uppercase());
    let bytes = serde_json::to_vec(&upper).expect("json");
    let parsed = Event::parse(&bytes, &ctx()).expect("upper-case hex is a UUID");
    assert_eq!(parsed.event_id.to_string(), id);
}

#[test]
fn quantities_and_amounts_are_bounded() {
    let max = emporium_schemas::validate::MAX_QUANTITY;
    let mut v = example_value(EventKind::StockReceived);
    v["payload"]["quantity"] = json!(max);
    Event::parse(&serde_json::to_vec(&v).expect("json"), &ctx()).expect("the bound itself");
    for too_much in [max + 1, i64::MAX] {
        v["payload"]["quantity"] = json!(too_much);
        let errors = errors_of(&v);
        assert_eq!(errors[0].0, "payload.quantity");
        assert!(errors[0].2.contains("at most 1000000000"), "{errors:?}");
    }
    let mut v = example_value(EventKind::StockAdjusted);
    for delta in [i64::MIN, -max - 1, max + 1] {
        v["payload"]["delta"] = json!(delta);
        assert_eq!(errors_of(&v)[0].0, "payload.delta", "{delta}");
    }
    let mut v = example_value(EventKind::OrderPlaced);
    v["payload"]["lines"][0]["qty"] = json!(max + 1);
    assert_eq!(errors_of(&v)[0].0, "payload.lines[0].qty");
    let mut v = example_value(EventKind::PriceChanged);
    v["payload"]["price"]["amount_minor"] = json!(1_000_000_000_000_i64);
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "payload.price.amount_minor");
    assert!(errors[0].2.contains("at most 999999999999"), "{errors:?}");
    let mut v = example_value(EventKind::SearchPerformed);
    v["payload"]["result_count"] = json!(max + 1);
    assert_eq!(errors_of(&v)[0].0, "payload.result_count");
}

#[test]
fn a_card_number_split_across_items_or_a_key_and_its_value_is_refused() {
    let mut v = example_value(EventKind::ProductUpserted);
    v["payload"]["skus"] = json!(["4111", "1111", "1111", "1111"]);
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "payload.skus", "{errors:?}");
    assert_eq!(errors[0].1, RejectReason::CardNumber);
    let mut v = example_value(EventKind::ProductUpserted);
    v["payload"]["attributes"] = json!({"4111 1111": "1111 1111"});
    let errors = errors_of(&v);
    assert_eq!(errors[0].1, RejectReason::CardNumber, "{errors:?}");
    assert!(
        !errors[0].0.contains("4111 1111"),
        "the path is masked: {errors:?}"
    );
}

#[test]
fn answers_that_echo_input_mask_card_numbers() {
    let mut v = example_value(EventKind::CartItemAdded);
    v["payload"]["qty"] = json!("4111 1111 1111 1111");
    let errors = errors_of(&v);
    assert_eq!(errors[0].0, "payload.qty");
    assert!(!errors[0].2.contains("4111 1111"), "{errors:?}");
    let mut v = example_value(EventKind::CartItemAdded);
    v["payload"]["4111111111111111"] = json!(1);
    let errors = errors_of(&v);
    assert!(!errors[0].0.contains("4111111111111111"), "{errors:?}");
}
