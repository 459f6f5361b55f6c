//! What each step changed, kept for the pipeline when the decider tracks changes: the orders and
//! skus whose documents changed, the products dataflow's input rows, the events the views read.

use super::*;

impl Decider {
    pub(super) fn orders_see(&mut self, outputs: &[Output]) {
        for output in outputs {
            if let Output::Decision { at, payload } = output {
                let decision = Event::new(uuid::Uuid::nil(), *at, payload.clone());
                self.orders.apply(&decision, &mut self.anomalies);
            }
        }
    }

    /// Takes what the step changed; `appended_ms`: when its event was appended to the log (an
    /// expiry has none).
    pub(super) fn mark_changes(&mut self, appended_ms: Option<i64>) {
        let (orders, stock, listings) = (
            self.orders.take_touched(),
            self.inventory.take_touched(),
            self.catalog.take_changed(),
        );
        if !self.track_changes {
            return;
        }
        self.applied_appended_ms.extend(appended_ms);
        let seq = self.seq;
        self.changed_orders
            .extend(orders.into_iter().map(|k| (k, seq)));
        // Stock: each sku whose rows (as served: on hand, reserved) changed has a new inventory
        // document; one whose availability changed, a new row in the documents dataflow.
        let mut skus: Vec<(String, i64)> = Vec::new();
        for (sku, warehouse, before) in stock {
            let key = (sku, warehouse);
            let after = self.inventory.stock_at(&key);
            let served = |s: &crate::inventory::Stock| (s.on_hand, s.reserved);
            if before.as_ref().map(served) == Some(served(&after)) {
                continue;
            }
            let (sku, _) = key;
            let delta = after.available().max(0) - before.map_or(0, |b| b.available().max(0));
            match skus.iter_mut().find(|(s, _)| *s == sku) {
                Some(entry) => entry.1 += delta,
                None => skus.push((sku, delta)),
            }
        }
        for (sku, delta) in skus {
            if delta != 0 {
                let now = available(&self.inventory, &sku);
                let id = self.sku_names.id(&sku);
                let changes = &mut self.product_inputs.available;
                if now - delta != 0 {
                    changes.push(((id, now - delta), seq, -1));
                }
                if now != 0 {
                    changes.push(((id, now), seq, 1));
                }
            }
            self.changed_skus.insert(sku, seq);
        }
        for (product_id, before, after) in listings {
            if before.as_ref() == Some(&after) {
                continue;
            }
            if self.report_steps {
                self.relisted.push(product_id.clone());
            }
            let id = self.product_names.id(&product_id);
            let after_key = listing_key(&mut self.sku_names, &after);
            if let Some(before) = before {
                let before_key = listing_key(&mut self.sku_names, &before);
                if before.revision != after.revision {
                    self.superseded.insert((id, before.revision), (seq, before));
                }
                self.product_inputs
                    .listings
                    .push(((id, before_key), seq, -1));
            }
            self.product_inputs.listings.push(((id, after_key), seq, 1));
        }
    }

    /// The products whose listing changed in the steps since the last call (needs
    /// [`Decider::reporting_steps`]).
    pub fn take_relisted(&mut self) -> Vec<String> {
        std::mem::take(&mut self.relisted)
    }

    /// The inventory documents changed since the last call, as full values with the `seq` of
    /// their last change (needs [`Decider::tracking_changes`]).
    pub fn take_inventory_changes(&mut self) -> Vec<Change> {
        let changed = std::mem::take(&mut self.changed_skus);
        changed
            .into_iter()
            .map(|(sku, seq)| Change::Inventory {
                seq,
                stock: products::stock(&self.inventory, &sku),
            })
            .collect()
    }

    /// The product documents of the documents dataflow's outputs (product, seq, skus): each
    /// with the listing of its revision, which is this decider's catalog entry unless the
    /// decider has moved past it since.
    pub fn product_documents(&self, products: Vec<(Id, u64, ProductSkus)>) -> Vec<Change> {
        let mut documents = Vec::with_capacity(products.len());
        for (id, seq, (revision, skus)) in products {
            let Some(product_id) = self.product_names.name(id) else {
                tracing::error!(
                    id,
                    "the documents dataflow gave a product id never assigned"
                );
                continue;
            };
            let listing = self
                .catalog
                .get(product_id)
                .filter(|l| l.revision == revision)
                .or_else(|| self.superseded.get(&(id, revision)).map(|(_, l)| l));
            let Some(listing) = listing else {
                tracing::error!(product_id, revision, "no listing of this revision");
                continue;
            };
            let skus = skus
                .into_iter()
                .filter_map(|(sku, available)| {
                    Some(SkuAvailable {
                        sku: self.sku_names.name(sku)?.to_owned(),
                        available,
                    })
                })
                .collect();
            documents.push(Change::Product {
                seq,
                product: products::product(product_id, listing, skus),
            });
        }
        documents
    }

    /// Forgets the listings replaced at or before `seq`: the documents dataflow has given every
    /// product up to `seq`, and gives later ones at revisions current after it.
    pub fn forget_superseded(&mut self, seq: u64) {
        self.superseded.retain(|_, (replaced, _)| *replaced > seq);
    }

    /// The order documents changed since the last call, as full values with the `seq` of their
    /// last change (needs [`Decider::tracking_changes`]).
    pub fn take_order_changes(&mut self) -> Vec<Change> {
        let changed = std::mem::take(&mut self.changed_orders);
        let mut changes = std::mem::take(&mut self.forgotten);
        changes.extend(changed.into_iter().filter_map(|(order_id, seq)| {
            let order = self.orders.get(&order_id)?.clone();
            Some(Change::Order { seq, order })
        }));
        changes
    }

    /// The changes to the document dataflow's inputs since the last call, each at the `seq` of
    /// the event that made it (needs [`Decider::tracking_changes`]).
    pub fn take_product_inputs(&mut self) -> ProductInputs {
        std::mem::take(&mut self.product_inputs)
    }

    /// Append times of the events applied since the last call (needs
    /// [`Decider::tracking_changes`]).
    pub fn take_applied_append_times(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.applied_appended_ms)
    }

    /// Every order's state, in decision-time order up to the watermark.
    pub fn orders(&self) -> &Orders {
        &self.orders
    }

    /// Order and catalog anomalies found since the last call.
    pub fn take_anomalies(&mut self) -> Vec<Anomaly> {
        std::mem::take(&mut self.anomalies)
    }
}
