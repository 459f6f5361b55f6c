//! Shoppers' taste: the latent preferences behind the generated traffic, and the ground truth the
//! recommenders are evaluated against (`emporium recs evaluate`). The recommenders never read
//! this module: they see only the events it shapes.
//!
//! **The model.** The catalog has 40 subcategories (8 top categories × 5; product `i` is in
//! subcategory `i % 40`) and 16 brands.
//! - Each user has [`SLOTS`] taste slots, weighted [`SLOT_WEIGHTS`] (0.5, 0.3, 0.2). A slot is a
//!   (subcategory, brand) pair, a pure function of (seed, user, slot, era) — subcategories are
//!   themselves Zipf-popular (exponent 1, so the favourite of most shoppers is one of a few) and
//!   brands uniform —, where a slot's era
//!   advances every [`DRIFT_DAYS`] days of event time at a phase of its own: a user's taste
//!   drifts, one slot at a time, about every nine days, and is the same in every run.
//! - A session picks one slot (by weight) as its focus. Each product view is, with probability
//!   `taste_share` (0.7 by default), a product of the slot's subcategory — drawn by popularity
//!   within the subcategory, preferring the slot's brand among three draws — and otherwise a
//!   product drawn by popularity over the whole catalog, as before taste existed.
//! - Products come in complementary groups (a phone and its case): every product has
//!   [`COMPLEMENTS`] complements in the next subcategory of its top category, a pure function of
//!   (seed, product). A product put in a cart brings, with probability [`COMPLEMENT_SHARE`], a
//!   view of one of its complements and that complement into the same cart.
//!
//! With `taste_share` 0 and no complements a shopper wants what everyone wants, and no
//! personalised recommender can beat "most popular": the evaluation's control.

/// Subcategories in the catalog: 8 top categories × 5 (see [`crate::catalog::CATEGORIES`]).
pub const SUBCATEGORIES: usize = 40;
/// Taste slots per user.
pub const SLOTS: usize = 3;
/// How likely a session focuses on each slot.
pub const SLOT_WEIGHTS: [f64; SLOTS] = [0.5, 0.3, 0.2];
/// Days of event time between two redraws of one slot.
pub const DRIFT_DAYS: i64 = 28;
/// Complements per product.
pub const COMPLEMENTS: u64 = 2;
/// How likely a product put in a cart brings one of its complements along.
pub const COMPLEMENT_SHARE: f64 = 0.3;
/// Draws within a subcategory among which the slot's brand is preferred.
pub const BRAND_DRAWS: usize = 3;

const DAY_MS: i64 = 86_400_000;

/// One taste slot: what a user likes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub subcategory: usize,
    pub brand: usize,
}

/// The taste of every user, as pure functions of the seed.
#[derive(Debug, Clone)]
pub struct Taste {
    seed: u64,
    /// Cumulative Zipf weights over the subcategories with at least one product (all 40 once
    /// there are 40 products), in rank order; rank `r` is subcategory `r * 7 % 40`.
    cumulative: Vec<f64>,
    brands: usize,
    start_ms: i64,
}

impl Taste {
    pub fn new(seed: u64, products: usize, brands: usize, start_ms: i64) -> Self {
        let subcategories = products.clamp(1, SUBCATEGORIES);
        let mut total = 0.0;
        let mut cumulative: Vec<f64> = (1..=subcategories)
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        cumulative.iter_mut().for_each(|c| *c /= total);
        Self {
            seed,
            cumulative,
            brands: brands.max(1),
            start_ms,
        }
    }

    /// `user`'s slot `slot` at event time `now_ms`.
    pub fn slot(&self, user: usize, slot: usize, now_ms: i64) -> Slot {
        let drift = DRIFT_DAYS * DAY_MS;
        let phase = (mix(self.seed ^ 0x7a57e, user as u64, slot as u64, 0) % drift as u64) as i64;
        let era = (now_ms - self.start_ms + phase).div_euclid(drift);
        let h = mix(self.seed, user as u64, slot as u64, era as u64 + 1);
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        let rank = self
            .cumulative
            .partition_point(|c| *c <= u)
            .min(self.cumulative.len() - 1);
        let n = self.cumulative.len();
        Slot {
            // 7 is coprime with 40, so ranks spread over the top categories; below 40 products
            // the ranks are the subcategories themselves.
            subcategory: if n == SUBCATEGORIES {
                rank * 7 % n
            } else {
                rank
            },
            brand: (mix(h, 1, 2, 3) % self.brands as u64) as usize,
        }
    }

    /// The `k`-th complement's draw for `product`: a number the shop maps into the next
    /// subcategory ([`complement_subcategory`]).
    pub fn complement_draw(&self, product: usize, k: u64) -> u64 {
        mix(self.seed ^ 0xc0_1ab, product as u64, k, 0)
    }
}

/// The subcategory a product of `subcategory` finds its complements in: the next one of the same
/// top category (phones → cases, tents → camping stoves).
pub fn complement_subcategory(subcategory: usize) -> usize {
    let tops = SUBCATEGORIES / 5;
    let (top, sub) = (subcategory % tops, subcategory / tops);
    top + tops * ((sub + 1) % 5)
}

/// A 64-bit mix of four words (splitmix64's finaliser over a running sum): cheap, and good enough
/// that neighbouring users and eras get unrelated draws.
fn mix(a: u64, b: u64, c: u64, d: u64) -> u64 {
    let mut h = a;
    for w in [b, c, d] {
        h = h.wrapping_add(w).wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_holds_for_weeks_and_then_drifts() {
        let taste = Taste::new(9, 1_000, 16, 0);
        let mut changes = 0;
        let mut last = taste.slot(17, 0, 0);
        for day in 1..=(4 * DRIFT_DAYS) {
            let now = taste.slot(17, 0, day * DAY_MS);
            if now != last {
                changes += 1;
            }
            last = now;
        }
        // One redraw per era (a redraw can land on the same slot, rarely).
        assert!((3..=4).contains(&changes), "{changes} changes in four eras");
    }

    #[test]
    fn users_differ_and_cover_the_catalog() {
        let taste = Taste::new(9, 1_000, 16, 0);
        let subs: std::collections::HashSet<usize> = (0..20_000)
            .map(|u| taste.slot(u, 0, 0).subcategory)
            .collect();
        assert_eq!(subs.len(), SUBCATEGORIES);
        assert!((0..SUBCATEGORIES).all(|c| complement_subcategory(c) != c));
        assert_eq!(complement_subcategory(0) % 8, 0, "same top category");
    }
}
