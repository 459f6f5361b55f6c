//! *Similar by content*: per product, the products most alike in the catalogue — same category,
//! same brand, title terms in common, a price near theirs — with no interactions needed: the
//! answer for a product nobody has bought or viewed yet (cold start), and the list
//! `GET /v1/users/{id}/recommendations` walks for a shopper's viewed products beside the
//! item-to-item ones. Served at `GET /v1/products/{id}/recommendations?kind=content`; tested
//! against a plain fold in `dataflows/tests/recommendations.rs`.
//!
//! **Attributes.** A product's latest `product_upserted`: its category path (the *leaf*, the
//! whole path), its brand, its title's terms (lower-cased runs of letters and digits, each once)
//! and its price band (`⌊2 · log2(price in minor units)⌋`: a band is a factor of √2).
//!
//! **Score** (in thousandths) of two products of one leaf category: [`SAME_LEAF`], plus
//! [`SAME_BRAND`] when their brands are equal, plus [`TERMS`] times the Jaccard similarity of
//! their title terms (rounded down to a thousandth of it), plus [`SAME_BAND`] in one price band
//! or [`NEAR_BAND`] in adjacent ones. Brand, terms and price weigh in the order shoppers filter
//! by. Best [`TOP_K`], ties to the product listed first.
//!
//! **Blocking, and its bound.** Only products of the same leaf category are compared (one
//! category is the minimum content similarity worth showing), and each leaf compares its
//! [`BLOCK_CAP`] most recently listed products — the new ones, which need this list most. The
//! work of one listing is one leaf's `BLOCK_CAP²` scores in one reduce, its state the listings
//! and the lists: no pairs are kept, so memory grows with the catalogue, not its square.
//! Products of a leaf beyond the cap get no list.

use crate::changes::Json;
use differential_dataflow::VecCollection;
use differential_dataflow::hashable::Hashable;
use emporium_schemas::{Event, EventKind, Payload};
use serde::{Deserialize, Serialize};

use crate::view::{Ids, View};

/// Products compared per leaf category: its most recently listed.
pub const BLOCK_CAP: usize = 200;
/// Neighbours kept per product.
pub const TOP_K: usize = 30;
/// Points of two products of one leaf category.
pub const SAME_LEAF: u64 = 1_000;
/// Points of one brand.
pub const SAME_BRAND: u64 = 3_000;
/// Points of identical title terms (times the Jaccard similarity).
pub const TERMS: u64 = 2_000;
/// Points of one price band.
pub const SAME_BAND: u64 = 1_000;
/// Points of adjacent price bands.
pub const NEAR_BAND: u64 = 500;
/// Scores are in thousandths.
pub const SCALE: f64 = 1_000.0;

/// The content-similarity view.
pub struct Content;

/// What is compared of a product.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attributes {
    pub brand: u32,
    /// Hashes of its title's terms, sorted, each once.
    pub terms: Vec<u64>,
    pub band: i32,
}

/// A row of the view's input: a listing, the `seq`-th step, names as their [`Ids`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ListedRow {
    pub product: u32,
    pub seq: u64,
    /// The whole category path's id.
    pub leaf: u32,
    pub attributes: Attributes,
}

/// A member of a leaf category's block: (newest first, product, its attributes).
type Member = (std::cmp::Reverse<u64>, u32, Attributes);

/// A product's neighbours, best first: (product id, score in thousandths).
pub type Neighbours = Vec<(u32, u64)>;

/// The terms of a title: lower-cased runs of letters and digits, each once, hashed, sorted.
pub fn terms(title: &str) -> Vec<u64> {
    let mut terms: Vec<u64> = title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| t.to_lowercase().hashed())
        .collect();
    terms.sort_unstable();
    terms.dedup();
    terms
}

/// The price band of `amount_minor`: `⌊2 · log2⌋` of it (0 for prices under 2).
pub fn band(amount_minor: i64) -> i32 {
    if amount_minor < 2 {
        0
    } else {
        (2.0 * (amount_minor as f64).log2()).floor() as i32
    }
}

/// The score of `a` and `b`, two products of one leaf category.
pub fn score(a: &Attributes, b: &Attributes) -> u64 {
    let mut score = SAME_LEAF;
    if a.brand == b.brand {
        score += SAME_BRAND;
    }
    let common = a
        .terms
        .iter()
        .filter(|t| b.terms.binary_search(t).is_ok())
        .count() as u64;
    let union = (a.terms.len() + b.terms.len()) as u64 - common;
    score += (TERMS * common).checked_div(union).unwrap_or(0);
    match (a.band - b.band).abs() {
        0 => score += SAME_BAND,
        1 => score += NEAR_BAND,
        _ => {}
    }
    score
}

impl View for Content {
    const NAME: &'static str = "content";
    type Row = ListedRow;
    /// The product's id.
    type Key = u32;
    type Value = Neighbours;

    fn reads(kind: EventKind) -> bool {
        kind == EventKind::ProductUpserted
    }

    fn rows(seq: u64, event: &Event, ids: &mut Ids, out: &mut Vec<(ListedRow, isize)>) {
        if let Payload::ProductUpserted(p) = &event.payload {
            let row = ListedRow {
                product: ids.id(&p.product_id),
                seq,
                leaf: ids.id(&p.category_path.join("/")),
                attributes: Attributes {
                    brand: ids.id(&p.brand),
                    terms: terms(&p.title),
                    band: band(p.price.amount_minor),
                },
            };
            out.push((row, 1));
        }
    }

    fn maintain<'s>(
        rows: VecCollection<'s, u64, ListedRow>,
    ) -> VecCollection<'s, u64, (u32, Neighbours)> {
        rows.map(|row| (row.product, (row.seq, row.leaf, row.attributes)))
            // Each product's latest listing.
            .reduce_named(
                "Listing",
                |_product, listings: &[(&(u64, u32, Attributes), isize)], out| {
                    if let Some((latest, _)) = listings.iter().rev().find(|(_, n)| *n > 0) {
                        out.push(((*latest).clone(), 1isize));
                    }
                },
            )
            .map(|(product, (seq, leaf, attributes))| {
                (leaf, (std::cmp::Reverse(seq), product, attributes))
            })
            .reduce_named("Block", |_leaf, members: &[(&Member, isize)], out| {
                // Newest first already: the first BLOCK_CAP are the block.
                let block: Vec<&Member> = members
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .take(BLOCK_CAP)
                    .map(|(m, _)| *m)
                    .collect();
                for (_, a, attributes_a) in &block {
                    let mut best: Neighbours = block
                        .iter()
                        .filter(|(_, b, _)| b != a)
                        .map(|(_, b, attributes_b)| (*b, score(attributes_a, attributes_b)))
                        .collect();
                    best.sort_unstable_by(|(b1, s1), (b2, s2)| s2.cmp(s1).then(b1.cmp(b2)));
                    best.truncate(TOP_K);
                    if !best.is_empty() {
                        out.push(((*a, best), 1isize));
                    }
                }
            })
            .map(|(_leaf, (product, best))| (product, best))
            // One list per product at any time, also when a relisting moves it to another leaf.
            .reduce_named(
                "Neighbours",
                |_product, lists: &[(&Neighbours, isize)], out| {
                    if let Some((list, _)) = lists.iter().find(|(_, n)| *n > 0) {
                        out.push(((*list).clone(), 1isize));
                    }
                },
            )
    }

    fn document(product: &u32, neighbours: &Neighbours, ids: &Ids) -> serde_json::Value {
        Self::json(product, neighbours, ids).value()
    }

    /// `{"content": [{"product_id": …, "score": s}, …], "product_id": …}` (keys sorted).
    fn json(product: &u32, neighbours: &Neighbours, ids: &Ids) -> Json {
        super::list_json(
            ids.name(*product),
            "content",
            "score",
            neighbours
                .iter()
                .map(|(p, s)| (ids.name(*p), *s as f64 / SCALE)),
        )
    }

    fn key_name(product: &u32, ids: &Ids) -> String {
        ids.name(*product).to_owned()
    }
}
