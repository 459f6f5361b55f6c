//! The simulation behind the generator: catalog, stock, sessions and order follow-ups.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use emporium_schemas::accounts::UserErased;
use emporium_schemas::catalog::{PriceChanged, ProductDiscontinued, ProductUpserted};
use emporium_schemas::orders::{
    OrderCancelled, OrderDelivered, OrderLine, OrderPlaced, OrderShipped, PaymentAuthorized,
    PaymentFailed, ReturnLine, ReturnRequested,
};
use emporium_schemas::reviews::ReviewPosted;
use emporium_schemas::shopper::{CartItemAdded, CartItemRemoved, ProductViewed, SearchPerformed};
use emporium_schemas::stock::{StockAdjusted, StockReceived};
use emporium_schemas::{Event, Money, Payload};

use super::catalog::{self as names, CATEGORIES};

mod followups;
use super::corrupt::corrupt;
use super::popularity::ZipfTable;
use super::taste::{self, SUBCATEGORIES, Taste};
use super::{Generated, GeneratorConfig, GeneratorError};

const CURRENCY: &str = "USD";
const RESTOCK_BELOW: i64 = 5;

/// A deterministic iterator of generated lines.
pub struct Generator {
    config: GeneratorConfig,
    rng: ChaCha8Rng,
    zipf: ZipfTable,
    /// Multiplier mapping popularity rank to product index (coprime with `products`).
    spread: usize,
    /// Popularity within one subcategory (ranks up to the largest one's size), and its
    /// multiplier (coprime with every subcategory's size).
    sub_zipf: ZipfTable,
    sub_spread: usize,
    taste: Taste,
    /// Each product's brand (an index of [`names::BRANDS`]), set as it is listed.
    brands: Vec<u8>,
    /// Users who asked to be forgotten: they never shop again.
    erased: Vec<bool>,
    erased_count: usize,
    /// Event time of the next event, in ms since the epoch, and the step between events.
    clock_ms: f64,
    step_ms: f64,
    /// First sku index of each product (skus of product i are `sku_base[i]..sku_base[i+1]`).
    sku_base: Vec<u32>,
    prices: Vec<i64>,
    discontinued: Vec<bool>,
    /// The generator's own view of stock per (sku, warehouse): `sku * warehouses + w`.
    stock: Vec<i64>,
    restock_pending: Vec<bool>,
    phase: Phase,
    sessions: Vec<Session>,
    next_session: u64,
    next_order: u64,
    timeline: BinaryHeap<Reverse<(u64, u64)>>,
    followups: std::collections::HashMap<u64, FollowUp>,
    followup_seq: u64,
    /// Events decided but not yet emitted (a session step may produce several).
    queue: VecDeque<Payload>,
    ids: Ids,
}

/// Every product, sku and user id, formatted once.
struct Ids {
    products: Vec<String>,
    skus: Vec<String>,
    users: Vec<String>,
}

enum Phase {
    Catalog(usize),
    Stock(usize),
    Traffic,
}

struct Session {
    user: usize,
    /// The taste slot this session browses ([`taste`]).
    slot: usize,
    id: String,
    views_left: u32,
    searched: bool,
    cart: Vec<(usize, i64)>,
}

#[derive(Clone)]
struct OrderInfo {
    id: String,
    user: usize,
    lines: Vec<(usize, i64, i64)>,
    token: String,
}

impl OrderInfo {
    fn total(&self) -> i64 {
        self.lines.iter().map(|(_, q, p)| q * p).sum()
    }
}

enum FollowUp {
    Pay(OrderInfo),
    Cancel(OrderInfo),
    Ship(OrderInfo),
    Deliver(OrderInfo),
    Return(OrderInfo),
    Review(OrderInfo),
    Restock { sku: usize, warehouse: usize },
}

impl Generator {
    pub fn new(config: GeneratorConfig) -> Result<Self, GeneratorError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let zipf = ZipfTable::new(config.products, config.zipf_exponent);
        let spread = (7_919..)
            .find(|m| gcd(*m, config.products) == 1)
            .expect("some multiplier is coprime with any product count");
        let per_sub = config.products.div_ceil(SUBCATEGORIES);
        let sub_zipf = ZipfTable::new(per_sub, config.zipf_exponent);
        let sub_spread = (7_919..)
            .find(|m| {
                gcd(*m, per_sub) == 1 && gcd(*m, (config.products / SUBCATEGORIES).max(1)) == 1
            })
            .expect("some multiplier is coprime with any two sizes");
        let taste = Taste::new(
            config.seed,
            config.products,
            names::BRANDS.len(),
            config.start.timestamp_millis(),
        );
        let mut sku_base = Vec::with_capacity(config.products + 1);
        let mut total = 0u32;
        for i in 0..config.products {
            sku_base.push(total);
            total += names::variant_count(i) as u32;
        }
        sku_base.push(total);
        let prices = (0..config.products)
            .map(|_| {
                // Log-uniform from $1 to $2,000, in cents, ending in 99.
                let dollars = 10f64.powf(rng.random_range(0.0..3.3));
                (dollars as i64).max(1) * 100 - 1
            })
            .collect();
        let ids = Ids {
            products: (0..config.products).map(names::product_id).collect(),
            skus: (0..config.products)
                .flat_map(|p| (0..names::variant_count(p)).map(move |v| names::sku_id(p, v)))
                .collect(),
            users: (0..config.users).map(names::user_id).collect(),
        };
        let w = config.warehouses;
        let clock_ms = config.start.timestamp_millis() as f64;
        let step_ms = 86_400_000.0 / config.events_per_day;
        Ok(Self {
            rng,
            zipf,
            spread,
            sub_zipf,
            sub_spread,
            taste,
            brands: vec![0; config.products],
            erased: vec![false; config.users],
            erased_count: 0,
            clock_ms,
            step_ms,
            prices,
            discontinued: vec![false; config.products],
            stock: vec![0; total as usize * w],
            restock_pending: vec![false; total as usize * w],
            sku_base,
            phase: Phase::Catalog(0),
            sessions: Vec::new(),
            next_session: 0,
            next_order: config.first_order,
            timeline: BinaryHeap::new(),
            followups: std::collections::HashMap::new(),
            followup_seq: 0,
            queue: VecDeque::new(),
            ids,
            config,
        })
    }

    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.clock_ms as i64).unwrap_or(self.config.start)
    }

    fn event(&mut self, payload: Payload) -> Event {
        let id = uuid::Builder::from_random_bytes(self.rng.random()).into_uuid();
        let event = Event::new(id, self.now(), payload);
        self.clock_ms += self.step_ms;
        event
    }

    /// A fulfilment delay scaled by `fulfilment_scale` (1.0: as in a real shop).
    fn fulfilment(&self, delay: Duration) -> Duration {
        Duration::milliseconds(
            (delay.num_milliseconds() as f64 * self.config.fulfilment_scale) as i64,
        )
    }

    fn schedule(&mut self, after: Duration, followup: FollowUp) {
        let due = (self.clock_ms as i64 + after.num_milliseconds()).max(0) as u64;
        self.followup_seq += 1;
        self.timeline.push(Reverse((due, self.followup_seq)));
        self.followups.insert(self.followup_seq, followup);
    }

    fn skus_of(&self, product: usize) -> std::ops::Range<usize> {
        self.sku_base[product] as usize..self.sku_base[product + 1] as usize
    }

    // Ids are formatted once and cloned: formatting them per event was a hot spot.
    fn sku_name(&self, sku: usize) -> String {
        self.ids.skus[sku].clone()
    }

    fn product_id(&self, product: usize) -> String {
        self.ids.products[product].clone()
    }

    fn user_id(&self, user: usize) -> String {
        self.ids.users[user].clone()
    }

    fn popular_product(&mut self) -> usize {
        let rank = self.zipf.sample(&mut self.rng);
        // Spread popularity over the id space so popular products are not all low ids; the
        // multiplier is coprime with the product count, so this is a permutation of ranks.
        rank.wrapping_mul(self.spread) % self.config.products
    }

    fn next_payload(&mut self) -> Payload {
        loop {
            if let Some(p) = self.queue.pop_front() {
                return p;
            }
            match self.phase {
                Phase::Catalog(i) if i < self.config.products => {
                    self.phase = Phase::Catalog(i + 1);
                    return self.product_upserted(i);
                }
                Phase::Catalog(_) => self.phase = Phase::Stock(0),
                Phase::Stock(slot) if slot < self.stock.len() => {
                    self.phase = Phase::Stock(slot + 1);
                    let w = self.config.warehouses;
                    let (sku, warehouse) = (slot / w, slot % w);
                    // Not every warehouse carries every sku.
                    if warehouse > 0 && self.rng.random_bool(0.4) {
                        continue;
                    }
                    let qty = self.rng.random_range(20..=300);
                    self.stock[slot] += qty;
                    return Payload::StockReceived(StockReceived {
                        sku: self.sku_name(sku),
                        warehouse: names::warehouse_id(warehouse),
                        quantity: qty,
                        reason: "initial_stock".into(),
                    });
                }
                Phase::Stock(_) => self.phase = Phase::Traffic,
                Phase::Traffic => self.traffic_step(),
            }
        }
    }

    fn product_upserted(&mut self, i: usize) -> Payload {
        let (top, subs) = CATEGORIES[i % CATEGORIES.len()];
        let sub = subs[(i / CATEGORIES.len()) % subs.len()];
        let adjective = names::ADJECTIVES[self.rng.random_range(0..names::ADJECTIVES.len())];
        let brand_index = self.rng.random_range(0..names::BRANDS.len());
        self.brands[i] = brand_index as u8;
        let brand = names::BRANDS[brand_index];
        let title = format!("{adjective} {} {}", sub.to_lowercase(), i);
        let skus = self.skus_of(i).map(|sku| self.sku_name(sku)).collect();
        let mut attributes = std::collections::BTreeMap::new();
        attributes.insert(
            "material".to_owned(),
            ["cotton", "steel", "plastic", "wood"][i % 4].to_owned(),
        );
        Payload::ProductUpserted(ProductUpserted {
            product_id: self.product_id(i),
            skus,
            title,
            description: format!(
                "{brand} {adjective} {sub}: a generated product for demos and tests."
            ),
            brand: brand.to_owned(),
            category_path: vec![top.to_owned(), sub.to_owned()],
            attributes,
            price: Money::new(self.prices[i], CURRENCY),
        })
    }

    /// One step of the running shop: a due follow-up, catalog churn, or a session's next move.
    fn traffic_step(&mut self) {
        if let Some(&Reverse((due, seq))) = self.timeline.peek()
            && due as f64 <= self.clock_ms
        {
            self.timeline.pop();
            if let Some(f) = self.followups.remove(&seq) {
                self.run_followup(f);
            }
            return;
        }
        let roll: f64 = self.rng.random();
        if roll < 0.002 {
            let p = self.popular_product();
            let old = self.prices[p];
            let new = (old as f64 * self.rng.random_range(0.8..1.2)) as i64 / 100 * 100 + 99;
            self.prices[p] = new.max(99);
            self.queue.push_back(Payload::PriceChanged(PriceChanged {
                product_id: self.product_id(p),
                price: Money::new(self.prices[p], CURRENCY),
            }));
            return;
        }
        if roll < 0.0022 {
            let p = self.rng.random_range(0..self.config.products);
            if !self.discontinued[p] {
                self.discontinued[p] = true;
                self.queue
                    .push_back(Payload::ProductDiscontinued(ProductDiscontinued {
                        product_id: self.product_id(p),
                        reason: Some("end of line".into()),
                    }));
                return;
            }
        }
        if roll < 0.004 {
            let p = self.popular_product();
            let sku = self.skus_of(p).start;
            let w = self.rng.random_range(0..self.config.warehouses);
            let slot = sku * self.config.warehouses + w;
            let delta = if self.stock[slot] > 0 {
                -self.rng.random_range(1..=2)
            } else {
                1
            };
            self.stock[slot] += delta;
            self.queue.push_back(Payload::StockAdjusted(StockAdjusted {
                sku: self.sku_name(sku),
                warehouse: names::warehouse_id(w),
                delta,
                reason: if delta < 0 { "damaged" } else { "cycle_count" }.into(),
            }));
            return;
        }
        if roll < 0.004 + self.config.erasure_rate && self.erased_count + 1 < self.config.users {
            let user = self.rng.random_range(0..self.config.users);
            if !self.erased[user] {
                self.erase(user);
                return;
            }
        }
        if self.sessions.len() < self.config.concurrent_sessions {
            let mut user = self.rng.random_range(0..self.config.users);
            while self.erased[user] {
                user = (user + 1) % self.config.users;
            }
            self.next_session += 1;
            let views = self.rng.random_range(1..=6);
            let pick: f64 = self.rng.random();
            let mut slot = 0;
            let mut below = taste::SLOT_WEIGHTS[0];
            while pick >= below && slot + 1 < taste::SLOTS {
                slot += 1;
                below += taste::SLOT_WEIGHTS[slot];
            }
            self.sessions.push(Session {
                user,
                slot,
                id: format!("s-{:09}", self.next_session),
                views_left: views,
                searched: false,
                cart: Vec::new(),
            });
        }
        let i = self.rng.random_range(0..self.sessions.len());
        self.session_step(i);
    }

    fn session_step(&mut self, i: usize) {
        let user_id = self.user_id(self.sessions[i].user);
        let session_id = self.sessions[i].id.clone();
        if !self.sessions[i].searched {
            self.sessions[i].searched = true;
            if self.rng.random_bool(0.4) {
                let query = names::QUERIES[self.rng.random_range(0..names::QUERIES.len())];
                let result_count = self.rng.random_range(0..500);
                self.queue
                    .push_back(Payload::SearchPerformed(SearchPerformed {
                        user_id,
                        session_id,
                        query: query.into(),
                        result_count,
                    }));
                return;
            }
        }
        if self.sessions[i].views_left > 0 {
            self.sessions[i].views_left -= 1;
            let product = self.viewed_product(i);
            self.queue.push_back(Payload::ProductViewed(ProductViewed {
                user_id: user_id.clone(),
                session_id: session_id.clone(),
                product_id: self.product_id(product),
            }));
            if !self.discontinued[product] && self.rng.random_bool(0.25) {
                let skus = self.skus_of(product);
                let sku = self.rng.random_range(skus);
                let qty = if self.rng.random_bool(0.8) {
                    1
                } else {
                    self.rng.random_range(2..=3)
                };
                self.queue.push_back(Payload::CartItemAdded(CartItemAdded {
                    user_id: user_id.clone(),
                    session_id: session_id.clone(),
                    sku: self.sku_name(sku),
                    qty,
                }));
                if self.rng.random_bool(0.1) {
                    self.queue
                        .push_back(Payload::CartItemRemoved(CartItemRemoved {
                            user_id,
                            session_id,
                            sku: self.sku_name(sku),
                            qty,
                        }));
                } else {
                    self.sessions[i].cart.push((sku, qty));
                    if self.rng.random_bool(taste::COMPLEMENT_SHARE) {
                        self.add_complement(i, product);
                    }
                }
            }
            return;
        }
        // The session ends: an order from the cart, or an abandoned cart.
        let session = self.sessions.swap_remove(i);
        if session.cart.is_empty() || !self.rng.random_bool(0.45) {
            return;
        }
        self.place_order(session);
    }

    /// The product session `i` views next: from its taste slot's subcategory (preferring the
    /// slot's brand) with probability `taste_share`, else by popularity alone ([`taste`]).
    fn viewed_product(&mut self, i: usize) -> usize {
        if self.config.taste_share == 0.0 || !self.rng.random_bool(self.config.taste_share) {
            return self.popular_product();
        }
        let session = &self.sessions[i];
        let slot = self
            .taste
            .slot(session.user, session.slot, self.clock_ms as i64);
        let first = self.popular_in(slot.subcategory);
        if self.brands[first] as usize == slot.brand {
            return first;
        }
        for _ in 1..taste::BRAND_DRAWS {
            let other = self.popular_in(slot.subcategory);
            if self.brands[other] as usize == slot.brand {
                return other;
            }
        }
        first
    }

    /// Products in subcategory `c`: `c`, `c + 40`, `c + 80`, …
    fn subcategory_size(&self, c: usize) -> usize {
        (self.config.products + SUBCATEGORIES - 1 - c) / SUBCATEGORIES
    }

    /// A product of subcategory `c` (which has one), drawn by popularity within it.
    fn popular_in(&mut self, c: usize) -> usize {
        let size = self.subcategory_size(c).max(1);
        let rank = self.sub_zipf.sample(&mut self.rng) % size;
        c + SUBCATEGORIES * (rank.wrapping_mul(self.sub_spread) % size)
    }

    /// One of `product`'s complements, viewed and put in session `i`'s cart.
    fn add_complement(&mut self, i: usize, product: usize) {
        let c = taste::complement_subcategory(product % SUBCATEGORIES);
        let size = self.subcategory_size(c);
        if size == 0 {
            return;
        }
        let k = self.rng.random_range(0..taste::COMPLEMENTS);
        let complement =
            c + SUBCATEGORIES * (self.taste.complement_draw(product, k) as usize % size);
        if self.discontinued[complement] {
            return;
        }
        let sku = self.skus_of(complement).start;
        let (user_id, session_id) = (
            self.user_id(self.sessions[i].user),
            self.sessions[i].id.clone(),
        );
        self.queue.push_back(Payload::ProductViewed(ProductViewed {
            user_id: user_id.clone(),
            session_id: session_id.clone(),
            product_id: self.product_id(complement),
        }));
        self.queue.push_back(Payload::CartItemAdded(CartItemAdded {
            user_id,
            session_id,
            sku: self.sku_name(sku),
            qty: 1,
        }));
        self.sessions[i].cart.push((sku, 1));
    }

    /// `user` asks to be forgotten: their open sessions end (carts and all) and they never shop
    /// again.
    fn erase(&mut self, user: usize) {
        self.erased[user] = true;
        self.erased_count += 1;
        self.sessions.retain(|s| s.user != user);
        self.queue.push_back(Payload::UserErased(UserErased {
            user_id: self.user_id(user),
            reason: "gdpr_request".into(),
        }));
    }

    fn product_of_sku(&self, sku: usize) -> usize {
        self.sku_base.partition_point(|&b| b as usize <= sku) - 1
    }

    /// An opaque provider token; letters only, so it can never look like a card number.
    fn payment_token(&mut self) -> String {
        let mut token = String::with_capacity(20);
        token.push_str("tok_");
        for _ in 0..16 {
            token.push(char::from(b'a' + self.rng.random_range(0..26u8)));
        }
        token
    }

    fn place_order(&mut self, session: Session) {
        self.next_order += 1;
        let order = OrderInfo {
            id: format!("o-{:010}", self.next_order),
            user: session.user,
            lines: session
                .cart
                .iter()
                .map(|&(sku, qty)| (sku, qty, self.prices[self.product_of_sku(sku)]))
                .collect(),
            token: self.payment_token(),
        };
        // The generator's own guess at the inventory decision: all lines from stock, or rejected.
        let w = self.config.warehouses;
        let mut picks: Vec<(usize, i64)> = Vec::new();
        for &(sku, qty, _) in &order.lines {
            // Units an earlier line of this order already took count as gone.
            let left = |slot: usize, picks: &[(usize, i64)]| {
                self.stock[slot]
                    - picks
                        .iter()
                        .filter(|(s, _)| *s == slot)
                        .map(|(_, q)| q)
                        .sum::<i64>()
            };
            match (0..w).find(|&wh| left(sku * w + wh, &picks) >= qty) {
                Some(wh) => picks.push((sku * w + wh, qty)),
                None => break,
            }
        }
        let in_stock = picks.len() == order.lines.len();
        self.queue.push_back(Payload::OrderPlaced(OrderPlaced {
            order_id: order.id.clone(),
            user_id: self.user_id(order.user),
            lines: order
                .lines
                .iter()
                .map(|&(sku, qty, price)| OrderLine {
                    sku: self.sku_name(sku),
                    qty,
                    unit_price: Money::new(price, CURRENCY),
                })
                .collect(),
            shipping_region: names::REGIONS[self.rng.random_range(0..names::REGIONS.len())].into(),
            payment_token: order.token.clone(),
        }));
        if !in_stock {
            // Expected to be rejected by inventory: nothing follows.
            return;
        }
        for (slot, qty) in picks {
            self.stock[slot] -= qty;
            if self.stock[slot] < RESTOCK_BELOW && !self.restock_pending[slot] {
                self.restock_pending[slot] = true;
                let delay = Duration::hours(self.rng.random_range(1..12));
                let after = self.fulfilment(delay);
                self.schedule(
                    after,
                    FollowUp::Restock {
                        sku: slot / w,
                        warehouse: slot % w,
                    },
                );
            }
        }
        let after = Duration::seconds(self.rng.random_range(2..30));
        self.schedule(after, FollowUp::Pay(order));
    }

    /// The next line: a valid event, or (with `invalid_fraction`) a deliberately broken one.
    pub fn next_generated(&mut self) -> Generated {
        let payload = self.next_payload();
        let event = self.event(payload);
        if self.config.invalid_fraction > 0.0 && self.rng.random_bool(self.config.invalid_fraction)
        {
            let (line, defect) = corrupt(&event.to_json(), &mut self.rng);
            return Generated::Invalid { line, defect };
        }
        Generated::Valid(event)
    }

    /// The next valid event (ignores `invalid_fraction`).
    pub fn next_event(&mut self) -> Event {
        let payload = self.next_payload();
        self.event(payload)
    }
}

impl Iterator for Generator {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        Some(self.next_generated())
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
