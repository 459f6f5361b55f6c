//! The plain-fold reference for everything the pipeline writes besides the views' documents
//! (each view has its own fold in its tests), and [`documents_of`], the products dataflow run once
//! on one thread: what tests compare a pipeline's store with.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use chrono::Duration;
use differential_dataflow::input::InputSession;
use emporium_schemas::Event;
use timely::dataflow::operators::probe::Handle as ProbeHandle;

use crate::changes::{Change, Product, SkuAvailable, SkuStock};
use crate::decider::Decider;
use crate::inventory::InventoryConfig;
use crate::products::{Latest, ProductInputs, documents, product, stock};

/// Runs [`documents`] once over `changes` (on this thread) and returns every product document
/// with the `seq` of its last change, made by `decider` (which made the changes): what a
/// pipeline fed the same changes writes, over all its rounds, besides the inventory documents.
pub fn documents_of(changes: ProductInputs, decider: &Decider) -> Vec<Change> {
    let outputs = timely::execute_directly(move |worker| {
        let mut available = InputSession::new();
        let mut listings = InputSession::new();
        let outputs: Rc<RefCell<Latest>> = Rc::default();
        let probe: ProbeHandle<u64> = worker.dataflow(|scope| {
            let outputs = Rc::clone(&outputs);
            documents(
                available.to_collection(scope),
                listings.to_collection(scope),
            )
            .inspect(move |((product, skus), time, diff)| {
                outputs
                    .borrow_mut()
                    .add(*product, skus.clone(), *time, *diff)
            })
            .probe()
            .0
        });
        let mut end = 0;
        for (row, seq, diff) in changes.available {
            end = end.max(seq);
            available.update_at(row, seq, diff);
        }
        for (row, seq, diff) in changes.listings {
            end = end.max(seq);
            listings.update_at(row, seq, diff);
        }
        available.advance_to(end + 1);
        listings.advance_to(end + 1);
        available.flush();
        listings.flush();
        worker.step_while(|| probe.less_than(&(end + 1)));
        crate::products::present(outputs.borrow_mut().take())
    });
    decider.product_documents(outputs)
}

/// A document of the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Document {
    Inventory(SkuStock),
    Product(Product),
}

impl Document {
    /// Its kind and id: one document per key.
    fn key(&self) -> (u8, &str) {
        match self {
            Document::Inventory(v) => (1, &v.sku),
            Document::Product(v) => (0, &v.product_id),
        }
    }

    fn into_change(self, seq: u64) -> Change {
        match self {
            Document::Inventory(stock) => Change::Inventory { seq, stock },
            Document::Product(product) => Change::Product { seq, product },
        }
    }
}

/// The reference for the store, by a plain fold: every document, with the `seq` of the last
/// event that changed its content, after deciding the whole log at once (every partition's events
/// in log order) up to the watermark those events give — what a pipeline that has read all of
/// them must have written.
///
/// After each event it recomputes, from the folds' state, every document the event may have
/// changed, and keeps those that differ. At the end it recomputes every document and panics if
/// one differs from what it kept (a change the decider failed to report).
///
/// `views`: the maintained views the pipeline runs with (their events are steps too, so they
/// move the `seq`s; their own documents are checked against their own folds).
pub fn reference_documents(
    partitions: &[Vec<Event>],
    allowed_lateness: Duration,
    config: InventoryConfig,
    views: &[crate::view::Spec],
) -> Vec<Change> {
    let mut decider = Decider::new(partitions.len(), allowed_lateness, config)
        .feeding(views)
        .reporting_steps();
    for (p, events) in partitions.iter().enumerate() {
        for e in events {
            decider.push(p, e.clone());
        }
    }
    let mut kept: HashMap<(u8, String), (u64, Document)> = HashMap::new();
    // Per sku, the listings naming it, as (listed_seq, product_id); per product, its skus.
    let mut listers: HashMap<String, BTreeSet<(u64, String)>> = HashMap::new();
    let mut listed: HashMap<String, (u64, Vec<String>)> = HashMap::new();
    let mut out = Vec::new();
    while decider.decide_next(&mut out) {
        let seq = decider.seq();
        // The skus whose stock changed (their documents are the decider's own; the reference
        // recomputes them below) and the products relisted.
        let mut skus: BTreeSet<String> = decider
            .take_inventory_changes()
            .into_iter()
            .filter_map(|upsert| match upsert {
                Change::Inventory { stock, .. } => Some(stock.sku),
                _ => None,
            })
            .collect();
        decider.take_product_inputs();
        decider.take_view_events();
        decider.take_view_counts();
        let relisted = decider.take_relisted();
        let mut products = BTreeSet::new();
        for product_id in relisted {
            let Some(listing) = decider.catalog().get(&product_id) else {
                continue;
            };
            if let Some((at, old)) = listed.remove(&product_id) {
                for sku in old {
                    products.extend(listers.get(&sku).into_iter().flatten().map(|l| l.1.clone()));
                    if let Some(l) = listers.get_mut(&sku) {
                        l.remove(&(at, product_id.clone()));
                    }
                }
            }
            for sku in &listing.skus {
                listers
                    .entry(sku.clone())
                    .or_default()
                    .insert((listing.listed_seq, product_id.clone()));
            }
            listed.insert(
                product_id.clone(),
                (listing.listed_seq, listing.skus.clone()),
            );
            skus.extend(listing.skus.iter().cloned());
            products.insert(product_id);
        }
        for sku in &skus {
            products.extend(listers.get(sku).into_iter().flatten().map(|l| l.1.clone()));
        }
        let documents = skus
            .iter()
            .filter(|sku| decider.inventory().stock_of(sku).next().is_some())
            .map(|sku| Document::Inventory(stock(decider.inventory(), sku)))
            .chain(
                products
                    .iter()
                    .filter_map(|p| reference_product(&decider, &listers, p))
                    .map(Document::Product),
            );
        for document in documents {
            let (kind, id) = document.key();
            let key = (kind, id.to_owned());
            if kept.get(&key).is_none_or(|(_, d)| *d != document) {
                kept.insert(key, (seq, document));
            }
        }
    }
    // Every document, from the final state: each must be what was kept.
    let skus: BTreeSet<&str> = decider
        .inventory()
        .all_stock()
        .map(|((sku, _), _)| sku.as_str())
        .collect();
    let all = skus
        .into_iter()
        .map(|sku| Document::Inventory(stock(decider.inventory(), sku)))
        .chain(
            decider
                .catalog()
                .products()
                .filter_map(|(p, _)| reference_product(&decider, &listers, p))
                .map(Document::Product),
        );
    let mut count = 0;
    for document in all {
        count += 1;
        let (kind, id) = document.key();
        let kept = kept.get(&(kind, id.to_owned())).map(|(_, d)| d);
        assert_eq!(
            kept,
            Some(&document),
            "the decider did not report a change of document {id}"
        );
    }
    assert_eq!(count, kept.len(), "a kept document no longer exists");
    kept.into_values()
        .map(|(seq, document)| document.into_change(seq))
        .chain(decider.take_order_changes())
        .collect()
}

fn reference_product(
    decider: &Decider,
    listers: &HashMap<String, BTreeSet<(u64, String)>>,
    product_id: &str,
) -> Option<Product> {
    let listing = decider.catalog().get(product_id)?;
    let owner = |sku: &str| listers.get(sku)?.last().map(|l| l.1.as_str());
    let skus = listing
        .skus
        .iter()
        .filter(|sku| owner(sku) == Some(product_id))
        .map(|sku| SkuAvailable {
            sku: sku.clone(),
            available: stock(decider.inventory(), sku).available(),
        })
        .collect();
    Some(product(product_id, listing, skus))
}
