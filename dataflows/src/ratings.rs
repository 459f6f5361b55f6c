//! Reviews per product: how many, the mean rating and how many of each star — the example of a
//! maintained view ([`crate::view`]), and what search and recommendations read of reviews.
//! Tested against a plain fold in `dataflows/tests/ratings.rs`; served at
//! `GET /v1/views/product_ratings/{product_id}`.

use differential_dataflow::VecCollection;
use emporium_schemas::{Event, EventKind, Payload};
use serde_json::json;

use crate::view::{Ids, View};

/// The product ratings view.
pub struct ProductRatings;

/// One product's reviews: how many gave 1, 2, 3, 4 and 5 stars.
pub type Stars = [u64; 5];

impl View for ProductRatings {
    const NAME: &'static str = "product_ratings";
    /// `(product_id, stars)`, one per review.
    type Row = (String, u8);
    type Key = String;
    type Value = Stars;

    fn reads(kind: EventKind) -> bool {
        kind == EventKind::ReviewPosted
    }

    fn rows(_seq: u64, event: &Event, _ids: &mut Ids, out: &mut Vec<(Self::Row, isize)>) {
        if let Payload::ReviewPosted(r) = &event.payload
            && let Ok(stars @ 1..=5) = u8::try_from(r.rating)
        {
            out.push(((r.product_id.clone(), stars), 1));
        }
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, Self::Row>,
    ) -> VecCollection<'s, u64, (String, Stars)> {
        rows.reduce_named(
            "ProductRatings",
            |_product: &String, reviews: &[(&u8, isize)], out: &mut Vec<(Stars, isize)>| {
                let mut stars = [0u64; 5];
                for (n, count) in reviews {
                    if let Some(slot) = stars.get_mut(usize::from(**n).wrapping_sub(1)) {
                        *slot += (*count).max(0) as u64;
                    }
                }
                out.push((stars, 1));
            },
        )
    }

    fn document(product_id: &String, stars: &Stars, _ids: &Ids) -> serde_json::Value {
        let reviews: u64 = stars.iter().sum();
        let total: u64 = stars.iter().zip(1u64..).map(|(n, s)| n * s).sum();
        json!({
            "product_id": product_id,
            "reviews": reviews,
            "mean_rating": if reviews == 0 { 0.0 } else { total as f64 / reviews as f64 },
            "stars": stars,
        })
    }
}
