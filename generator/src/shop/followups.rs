//! What happens after an order is placed, as follow-ups due at later event times: payment,
//! shipping, delivery, cancellations, returns and reviews.

use super::*;

impl Generator {
    pub(super) fn run_followup(&mut self, f: FollowUp) {
        let payload = match f {
            FollowUp::Pay(order) => {
                if self.rng.random_bool(self.config.payment_failure_rate) {
                    Payload::PaymentFailed(PaymentFailed {
                        order_id: order.id.clone(),
                        amount: Money::new(order.total(), CURRENCY),
                        payment_token: order.token.clone(),
                        reason: "insufficient_funds".into(),
                    })
                } else {
                    let p = Payload::PaymentAuthorized(PaymentAuthorized {
                        order_id: order.id.clone(),
                        amount: Money::new(order.total(), CURRENCY),
                        payment_token: order.token.clone(),
                    });
                    if self.rng.random_bool(0.03) {
                        let delay = Duration::minutes(self.rng.random_range(1..60));
                        let after = self.fulfilment(delay);
                        self.schedule(after, FollowUp::Cancel(order));
                    } else {
                        let delay = Duration::hours(self.rng.random_range(1..24));
                        let after = self.fulfilment(delay);
                        self.schedule(after, FollowUp::Ship(order));
                    }
                    p
                }
            }
            FollowUp::Cancel(order) => Payload::OrderCancelled(OrderCancelled {
                order_id: order.id,
                reason: "changed_mind".into(),
            }),
            FollowUp::Ship(order) => {
                let carrier = names::CARRIERS[self.rng.random_range(0..names::CARRIERS.len())];
                let tracking = format!(
                    "{}{:012X}",
                    carrier.to_uppercase(),
                    self.rng.random::<u64>() >> 16
                );
                let delay = Duration::hours(self.rng.random_range(24..96));
                let after = self.fulfilment(delay);
                let p = Payload::OrderShipped(OrderShipped {
                    order_id: order.id.clone(),
                    carrier: carrier.into(),
                    tracking_number: tracking,
                });
                self.schedule(after, FollowUp::Deliver(order));
                p
            }
            FollowUp::Deliver(order) => {
                let p = Payload::OrderDelivered(OrderDelivered {
                    order_id: order.id.clone(),
                });
                if self.rng.random_bool(0.03) {
                    let delay = Duration::days(self.rng.random_range(1..10));
                    let after = self.fulfilment(delay);
                    self.schedule(after, FollowUp::Return(order));
                } else if self.rng.random_bool(0.15) {
                    let delay = Duration::days(self.rng.random_range(1..7));
                    let after = self.fulfilment(delay);
                    self.schedule(after, FollowUp::Review(order));
                }
                p
            }
            FollowUp::Return(order) => {
                let (sku, qty, _) = order.lines[0];
                Payload::ReturnRequested(ReturnRequested {
                    order_id: order.id,
                    lines: vec![ReturnLine {
                        sku: self.sku_name(sku),
                        qty,
                    }],
                    reason: "not_as_described".into(),
                })
            }
            // An erased user posts nothing more.
            FollowUp::Review(order) if self.erased[order.user] => return,
            FollowUp::Review(order) => {
                let (sku, _, _) = order.lines[0];
                let product = self.product_of_sku(sku);
                let rating = [1, 2, 3, 4, 4, 5, 5, 5][self.rng.random_range(0..8)];
                Payload::ReviewPosted(ReviewPosted {
                    review_id: format!("r-{}", order.id.trim_start_matches("o-")),
                    product_id: self.product_id(product),
                    user_id: self.user_id(order.user),
                    rating,
                    text: names::REVIEW_TEXTS[self.rng.random_range(0..names::REVIEW_TEXTS.len())]
                        .into(),
                })
            }
            FollowUp::Restock { sku, warehouse } => {
                let slot = sku * self.config.warehouses + warehouse;
                self.restock_pending[slot] = false;
                let qty = self.rng.random_range(20..=200);
                self.stock[slot] += qty;
                Payload::StockReceived(StockReceived {
                    sku: self.sku_name(sku),
                    warehouse: names::warehouse_id(warehouse),
                    quantity: qty,
                    reason: "purchase_order".into(),
                })
            }
        };
        self.queue.push_back(payload);
    }
}
