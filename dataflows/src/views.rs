//! The store's inventory and product documents, maintained by differential dataflow.
//!
//! The decider (a fold: each decision depends on every one before it) emits, for each event it
//! applies, what the event changed in two collections, at the event's `seq` as the differential
//! timestamp:
//! - `stock`: one row per (sku, warehouse): `(sku, (warehouse, on_hand, reserved))`;
//! - `listings`: one row per product: `(product_id, Listing)`.
//!
//! [`documents`] derives the documents from them, incrementally:
//! - an inventory document per sku: its rows, summed (`reduce` by sku);
//! - which product each sku belongs to: among the listings naming it, the one with the highest
//!   `listed_seq` (`reduce` by sku);
//! - a product document per listing: its entry, the skus it owns and their availability (`join`
//!   of owners with inventory, then `reduce` by product).
//!
//! The output changes at time `t` are the documents whose content changed at the `t`-th event:
//! a document's `seq` is its time, so equal logs give equal `(seq, document)` pairs whatever the
//! workers, processes or interleaving (ADR 0005, ADR 0006). [`reference_documents`] computes the
//! same documents with a plain fold, for tests.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use chrono::Duration;
use differential_dataflow::VecCollection;
use differential_dataflow::input::InputSession;
use emporium_schemas::Event;
use emporium_serving::views::{
    InventoryView, ProductView, SkuAvailability, Upsert, WarehouseStock,
};
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::probe::Handle as ProbeHandle;

use crate::catalog::Listing;
use crate::decider::Decider;
use crate::inventory::{Inventory, InventoryConfig};

/// A (sku, warehouse) row of the stock collection: `(sku, (warehouse, on_hand, reserved))`.
pub type StockRow = (String, (String, i64, i64));
/// A row of the listings collection: `(product_id, listing)`.
pub type ListingRow = (String, Listing);
/// An update of a collection: the row, the `seq` it happened at, +1 (inserted) or −1 (removed).
pub type Update<D> = (D, u64, isize);

/// Changes to the document dataflow's inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewChanges {
    pub stock: Vec<Update<StockRow>>,
    pub listings: Vec<Update<ListingRow>>,
}

impl ViewChanges {
    pub fn extend(&mut self, other: ViewChanges) {
        self.stock.extend(other.stock);
        self.listings.extend(other.listings);
    }
}

/// A document the dataflow maintains.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Document {
    Inventory(InventoryView),
    Product(ProductView),
}

impl Document {
    /// Its kind and id: one document per key.
    pub fn key(&self) -> (u8, &str) {
        match self {
            Document::Inventory(v) => (1, &v.sku),
            Document::Product(v) => (0, &v.product_id),
        }
    }

    pub fn into_upsert(self, seq: u64) -> Upsert {
        match self {
            Document::Inventory(view) => Upsert::Inventory { seq, view },
            Document::Product(view) => Upsert::Product { seq, view },
        }
    }
}

/// What the product reduce sees of one product.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Part {
    Listing(Listing),
    /// A sku this product owns.
    Owns(String),
    /// Units available of a sku it owns.
    Available(String, i64),
}

/// The documents of the stock and listings collections (see the module docs).
pub fn documents<'scope>(
    stock: VecCollection<'scope, u64, StockRow>,
    listings: VecCollection<'scope, u64, ListingRow>,
) -> VecCollection<'scope, u64, Document> {
    let inventory = stock.reduce_named("InventoryDocument", |sku: &String, rows, out| {
        // Rows come in value order, so warehouses in id order.
        let warehouses = rows
            .iter()
            .map(|((warehouse, on_hand, reserved), _)| WarehouseStock {
                warehouse: warehouse.clone(),
                on_hand: *on_hand,
                reserved: *reserved,
                available: on_hand - reserved,
            })
            .collect();
        out.push((InventoryView::new(sku.clone(), warehouses), 1));
    });
    let owners = listings
        .clone()
        .flat_map(|(product_id, listing)| {
            let at = listing.listed_seq;
            listing
                .skus
                .into_iter()
                .map(move |sku| (sku, (at, product_id.clone())))
        })
        .reduce_named(
            "SkuOwner",
            |_sku: &String, listers: &[(&(u64, String), isize)], out| {
                // In (listed_seq, product_id) order: the last listed it last.
                if let Some(((_, owner), _)) = listers.last() {
                    out.push((owner.clone(), 1));
                }
            },
        );
    let available = inventory.clone().map(|(sku, v)| (sku, v.available));
    let owned_available = owners.clone().join_map(available, |sku, owner, available| {
        (owner.clone(), Part::Available(sku.clone(), *available))
    });
    let products = listings
        .map(|(product_id, listing)| (product_id, Part::Listing(listing)))
        .concat(owners.map(|(sku, owner)| (owner, Part::Owns(sku))))
        .concat(owned_available)
        .reduce_named("ProductDocument", |product_id: &String, parts, out| {
            let mut listing = None;
            let mut owns = HashSet::new();
            let mut available = HashMap::new();
            for (part, _) in parts {
                match *part {
                    Part::Listing(l) => listing = Some(l),
                    Part::Owns(sku) => {
                        owns.insert(sku.as_str());
                    }
                    Part::Available(sku, n) => {
                        available.insert(sku.as_str(), *n);
                    }
                }
            }
            if let Some(listing) = listing {
                let skus = listing
                    .skus
                    .iter()
                    .filter(|sku| owns.contains(sku.as_str()))
                    .map(|sku| SkuAvailability {
                        sku: sku.clone(),
                        available: available.get(sku.as_str()).copied().unwrap_or(0),
                    })
                    .collect();
                out.push((product_view(product_id, listing, skus), 1));
            }
        });
    inventory
        .map(|(_, view)| Document::Inventory(view))
        .concat(products.map(|(_, view)| Document::Product(view)))
}

fn product_view(product_id: &str, listing: &Listing, skus: Vec<SkuAvailability>) -> ProductView {
    ProductView {
        product_id: product_id.to_owned(),
        title: listing.title.clone(),
        brand: listing.brand.clone(),
        category_path: listing.category_path.clone(),
        price: listing.price.clone(),
        discontinued: listing.discontinued,
        available: skus.iter().map(|s| s.available).sum(),
        skus,
    }
}

/// The latest value of each document among output changes: per key, the document inserted at
/// the highest time. Changes may come in any order.
#[derive(Debug, Default)]
pub struct Latest {
    documents: HashMap<(u8, String), (u64, Option<Document>)>,
    /// Changes at or before this time are ignored (see [`Latest::after`]).
    floor: u64,
}

impl Latest {
    /// Keeps only changes after `seq`: the documents a dataflow loaded with a checkpoint's rows
    /// at its `seq` outputs then are in the store already, and must not be rewritten with that
    /// `seq` (it is not the seq of their last change).
    pub fn after(seq: u64) -> Self {
        Self {
            floor: seq,
            ..Self::default()
        }
    }

    pub fn add(&mut self, (document, time, diff): Update<Document>) {
        if time <= self.floor && self.floor > 0 {
            return;
        }
        let (kind, id) = document.key();
        let key = (kind, id.to_owned());
        let inserted = diff > 0;
        match self.documents.get_mut(&key) {
            Some((at, _)) if *at > time => {}
            // At one time a document is retracted (its old value) and inserted (its new one).
            Some((at, latest)) if *at == time => {
                if inserted {
                    *latest = Some(document);
                }
            }
            _ => {
                self.documents
                    .insert(key, (time, inserted.then_some(document)));
            }
        }
    }

    /// The documents, each with its `seq`, and empties the set.
    pub fn take_upserts(&mut self) -> Vec<Upsert> {
        self.documents
            .drain()
            .filter_map(|(_, (seq, document))| Some(document?.into_upsert(seq)))
            .collect()
    }
}

/// Runs [`documents`] once over `changes` (on this thread) and returns every document with the
/// `seq` of its last change: what a pipeline fed the same changes writes, over all its rounds.
pub fn documents_of(changes: ViewChanges) -> Vec<Upsert> {
    timely::execute_directly(move |worker| {
        let mut stock = InputSession::new();
        let mut listings = InputSession::new();
        let outputs: Rc<RefCell<Latest>> = Rc::default();
        let probe: ProbeHandle<u64> = worker.dataflow(|scope| {
            let outputs = Rc::clone(&outputs);
            documents(stock.to_collection(scope), listings.to_collection(scope))
                .inspect(move |update| outputs.borrow_mut().add(update.clone()))
                .probe()
                .0
        });
        let mut end = 0;
        for (row, seq, diff) in changes.stock {
            end = end.max(seq);
            stock.update_at(row, seq, diff);
        }
        for (row, seq, diff) in changes.listings {
            end = end.max(seq);
            listings.update_at(row, seq, diff);
        }
        stock.advance_to(end + 1);
        listings.advance_to(end + 1);
        stock.flush();
        listings.flush();
        worker.step_while(|| probe.less_than(&(end + 1)));
        outputs.borrow_mut().take_upserts()
    })
}

/// The inventory document of `sku`.
pub fn inventory(inventory: &Inventory, sku: &str) -> InventoryView {
    let warehouses = inventory
        .stock_of(sku)
        .map(|(warehouse, s)| WarehouseStock {
            warehouse: warehouse.to_owned(),
            on_hand: s.on_hand,
            reserved: s.reserved,
            available: s.available(),
        })
        .collect();
    InventoryView::new(sku.to_owned(), warehouses)
}

/// The reference for the store, by a plain fold: every document, with the `seq` of the last
/// event that changed its content, after deciding the whole log at once (every partition's events
/// in log order) up to the watermark those events give — what a pipeline that has read all of
/// them must have written.
///
/// After each event it recomputes, from the folds' state, every document the event may have
/// changed, and keeps those that differ. At the end it recomputes every document and panics if
/// one differs from what it kept (a change the decider failed to report).
pub fn reference_documents(
    partitions: &[Vec<Event>],
    allowed_lateness: Duration,
    config: InventoryConfig,
) -> Vec<Upsert> {
    let mut decider = Decider::new(partitions.len(), allowed_lateness, config).tracking_changes();
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
        let changes = decider.take_view_changes();
        let mut skus: BTreeSet<String> = changes.stock.into_iter().map(|(r, ..)| r.0).collect();
        let mut products = BTreeSet::new();
        for ((product_id, _), ..) in changes.listings {
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
            .map(|sku| Document::Inventory(inventory(decider.inventory(), sku)))
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
        .map(|sku| Document::Inventory(inventory(decider.inventory(), sku)))
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
        .map(|(seq, document)| document.into_upsert(seq))
        .chain(decider.take_order_changes())
        .collect()
}

fn reference_product(
    decider: &Decider,
    listers: &HashMap<String, BTreeSet<(u64, String)>>,
    product_id: &str,
) -> Option<ProductView> {
    let listing = decider.catalog().get(product_id)?;
    let owner = |sku: &str| listers.get(sku)?.last().map(|l| l.1.as_str());
    let skus = listing
        .skus
        .iter()
        .filter(|sku| owner(sku) == Some(product_id))
        .map(|sku| SkuAvailability {
            sku: sku.clone(),
            available: inventory(decider.inventory(), sku).available,
        })
        .collect();
    Some(product_view(product_id, listing, skus))
}
