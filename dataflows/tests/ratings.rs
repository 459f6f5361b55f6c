//! The example view, reviews per product, against a plain fold of the same events: for any
//! sequence of reviews (valid and out-of-range ratings, several per product, other events in
//! between), the dataflow run incrementally ends with the fold's counts for every product.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use emporium_dataflows::ratings::ProductRatings;
use emporium_dataflows::view::{Ids, View, evaluate};
use emporium_schemas::reviews::ReviewPosted;
use emporium_schemas::shopper::ProductViewed;
use emporium_schemas::{Event, Payload};
use proptest::prelude::*;

/// The `i`-th event of a test log.
fn event(i: usize, payload: Payload) -> Event {
    Event::new(
        uuid::Uuid::from_u128(i as u128 + 1),
        Utc.timestamp_opt(1_767_225_600 + i as i64, 0)
            .single()
            .expect("time"),
        payload,
    )
}

fn review(i: usize, product: u8, rating: i64) -> Event {
    event(
        i,
        Payload::ReviewPosted(ReviewPosted {
            review_id: format!("r-{i}"),
            product_id: format!("p-{product}"),
            user_id: format!("u-{i}"),
            rating,
            text: "fine".into(),
        }),
    )
}

fn view(i: usize, product: u8) -> Event {
    event(
        i,
        Payload::ProductViewed(ProductViewed {
            user_id: format!("u-{i}"),
            product_id: format!("p-{product}"),
            session_id: "s".into(),
        }),
    )
}

/// The reference: count each in-range rating per product.
fn fold(events: &[Event]) -> HashMap<String, [u64; 5]> {
    let mut out: HashMap<String, [u64; 5]> = HashMap::new();
    for e in events {
        if let Payload::ReviewPosted(r) = &e.payload
            && (1..=5).contains(&r.rating)
        {
            out.entry(r.product_id.clone()).or_default()[(r.rating - 1) as usize] += 1;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn the_view_equals_the_fold(steps in prop::collection::vec((0u8..6, 0i64..8, any::<bool>()), 0..200)) {
        let events: Vec<Event> = steps
            .iter()
            .enumerate()
            .map(|(i, (p, r, is_review))| if *is_review { review(i, *p, *r) } else { view(i, *p) })
            .collect();
        prop_assert_eq!(evaluate::<ProductRatings>(&events), fold(&events));
    }
}

#[test]
fn the_document_gives_the_count_and_the_mean() {
    let doc = ProductRatings::document(&"p-1".to_owned(), &[1, 0, 0, 0, 3], &Ids::default());
    assert_eq!(
        doc,
        serde_json::json!({"product_id": "p-1", "reviews": 4, "mean_rating": 4.0, "stars": [1, 0, 0, 0, 3]})
    );
}
