//! The products dataflow: every product's listing with the skus it owns and their availability,
//! maintained by differential dataflow.
//!
//! A product document is its listing (title, brand, category, price) and the skus it owns with
//! the units of each available to order. Which product owns a sku, and so which availability
//! counts where, is relational: among the listings naming a sku, the one listed last owns it.
//! That part is a differential dataflow. The decider (a fold: each decision depends on every one
//! before it) emits, for each step that changes them, two small collections, at the step's `seq`
//! as the differential timestamp, with skus and products as dense integer ids
//! ([`Names`], assigned by the decider as it first sees them):
//! - `available`: one row per sku with units available: `(sku, units)` (absent: 0);
//! - `listings`: one row per product: `(product, ListingKey)`: when it was listed, the revision
//!   of its served fields, its skus in listing order.
//!
//! [`documents`] derives, incrementally:
//! - which product each sku belongs to: among the listings naming it, the one with the highest
//!   `listed_seq` (`reduce` by sku);
//! - per product, its revision and the skus it owns in listing order with their availability
//!   (`join` of owners with `available`, then `reduce` by product).
//!
//! Worker 0 turns each product's output into its document with the listing of that revision
//! ([`crate::decider::Decider::product_documents`]). Inventory documents need no dataflow: each
//! is one sku's rows of the decider's stock, written at the `seq` of the last step that changed
//! them ([`crate::decider::Decider::take_inventory_changes`]).
//!
//! The output changes at time `t` are the products whose document changed at the `t`-th step:
//! a document's `seq` is its time, so equal logs give equal `(seq, document)` pairs whatever the
//! workers, processes or interleaving (ADR 0005, ADR 0006). [`reference_documents`] computes the
//! same documents with a plain fold, for tests.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use chrono::Duration;
use differential_dataflow::VecCollection;
use differential_dataflow::input::InputSession;
use emporium_schemas::Event;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::probe::Handle as ProbeHandle;

use crate::catalog::Listing;
use crate::changes::{Change, Product, SkuAvailable, SkuStock, WarehouseStock};
use crate::decider::Decider;
use crate::inventory::{Inventory, InventoryConfig};

/// A sku's or a product's id in the documents dataflow (see [`Names`]).
pub type Id = u32;
/// A row of the available collection: `(sku, units available over its warehouses)`; a sku with
/// none available has no row.
pub type AvailableRow = (Id, i64);
/// A row of the listings collection: `(product, what the dataflow needs of its listing)`.
pub type ListingRow = (Id, ListingKey);
/// An update of a collection: the row, the `seq` it happened at, +1 (inserted) or −1 (removed).
pub type Update<D> = (D, u64, isize);
/// What the dataflow gives per product: the revision of its served fields, and the skus it owns
/// in listing order with the units of each available.
pub type ProductSkus = (u32, Vec<(Id, i64)>);

/// What the documents dataflow needs of a listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ListingKey {
    /// The `seq` of the `product_upserted` that listed it last: a sku named by several listings
    /// belongs to the one with the highest.
    pub listed_seq: u64,
    /// [`Listing::revision`]: changes whenever a served field other than the skus does.
    pub revision: u32,
    pub skus: Vec<Id>,
}

/// Dense ids for strings, in the order they were first seen: the documents dataflow compares,
/// hashes and moves 4-byte ids rather than strings. Ids never leave the process and are not
/// checkpointed: a resumed pipeline loads its dataflow with ids it assigns again.
#[derive(Debug, Default)]
pub struct Names {
    ids: HashMap<Arc<str>, Id>,
    names: Vec<Arc<str>>,
}

impl Names {
    /// The id of `name`, assigned now if it has none.
    pub fn id(&mut self, name: &str) -> Id {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = Id::try_from(self.names.len()).expect("fewer than 2^32 names");
        let name: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&name));
        self.ids.insert(name, id);
        id
    }

    /// The name of an id this assigned.
    pub fn name(&self, id: Id) -> Option<&str> {
        self.names.get(id as usize).map(|n| &**n)
    }
}

/// Changes to the document dataflow's inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductInputs {
    pub available: Vec<Update<AvailableRow>>,
    pub listings: Vec<Update<ListingRow>>,
}

impl ProductInputs {
    pub fn extend(&mut self, other: ProductInputs) {
        self.available.extend(other.available);
        self.listings.extend(other.listings);
    }
}

/// What the product reduce sees of one product.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Part {
    /// Its listing's revision and skus (not `listed_seq`: a listing listed again unchanged
    /// changes nothing here).
    Listing(u32, Vec<Id>),
    /// A sku this product owns.
    Owns(Id),
    /// Units available of a sku it owns.
    Available(Id, i64),
}

/// Per product, its [`ProductSkus`] (see the module docs).
pub fn documents<'scope>(
    available: VecCollection<'scope, u64, AvailableRow>,
    listings: VecCollection<'scope, u64, ListingRow>,
) -> VecCollection<'scope, u64, (Id, ProductSkus)> {
    let owners = listings
        .clone()
        .flat_map(|(product, listing)| {
            let at = listing.listed_seq;
            listing
                .skus
                .into_iter()
                .map(move |sku| (sku, (at, product)))
        })
        .reduce_named(
            "SkuOwner",
            |_sku: &Id, listers: &[(&(u64, Id), isize)], out| {
                // In (listed_seq, product) order: the last listed it last (seqs are unique).
                if let Some(((_, owner), _)) = listers.last() {
                    out.push((*owner, 1));
                }
            },
        );
    let owned_available = owners.clone().join_map(available, |sku, owner, available| {
        (*owner, Part::Available(*sku, *available))
    });
    listings
        .map(|(product, listing)| (product, Part::Listing(listing.revision, listing.skus)))
        .concat(owners.map(|(sku, owner)| (owner, Part::Owns(sku))))
        .concat(owned_available)
        .reduce_named("ProductSkus", |_product: &Id, parts, out| {
            // A product owns a few skus: small vectors beat hash maps here.
            let mut listing = None;
            let mut owns = Vec::new();
            let mut available = Vec::new();
            for (part, _) in parts {
                match *part {
                    Part::Listing(revision, skus) => listing = Some((*revision, skus)),
                    Part::Owns(sku) => owns.push(*sku),
                    Part::Available(sku, n) => available.push((*sku, *n)),
                }
            }
            if let Some((revision, skus)) = listing {
                let owned = skus
                    .iter()
                    .filter(|sku| owns.contains(sku))
                    .map(|sku| {
                        let n = available.iter().find(|(s, _)| s == sku).map_or(0, |a| a.1);
                        (*sku, n)
                    })
                    .collect();
                out.push(((revision, owned), 1));
            }
        })
}

/// A product from its listing and the skus it owns with their availability.
pub fn product(product_id: &str, listing: &Listing, skus: Vec<SkuAvailable>) -> Product {
    Product {
        product_id: product_id.to_owned(),
        title: listing.title.clone(),
        brand: listing.brand.clone(),
        category_path: listing.category_path.clone(),
        price: listing.price.clone(),
        discontinued: listing.discontinued,
        skus,
    }
}

/// The latest output of each product among output changes: per product, the value inserted at
/// the highest time. Changes may come in any order.
#[derive(Debug, Default)]
pub struct Latest {
    products: HashMap<Id, (u64, Option<ProductSkus>)>,
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

    pub fn add(&mut self, ((product, skus), time, diff): Update<(Id, ProductSkus)>) {
        if time <= self.floor && self.floor > 0 {
            return;
        }
        let inserted = diff > 0;
        match self.products.get_mut(&product) {
            Some((at, _)) if *at > time => {}
            // At one time a document is retracted (its old value) and inserted (its new one).
            Some((at, latest)) if *at == time => {
                if inserted {
                    *latest = Some(skus);
                }
            }
            _ => {
                self.products
                    .insert(product, (time, inserted.then_some(skus)));
            }
        }
    }

    /// Each product's latest output with its time, and empties the set.
    pub fn take(&mut self) -> Vec<(Id, u64, ProductSkus)> {
        self.products
            .drain()
            .filter_map(|(product, (seq, skus))| Some((product, seq, skus?)))
            .collect()
    }
}

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
            .inspect(move |update| outputs.borrow_mut().add(update.clone()))
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
        outputs.borrow_mut().take()
    });
    decider.product_documents(outputs)
}

/// The stock of `sku` in every warehouse.
pub fn stock(inventory: &Inventory, sku: &str) -> SkuStock {
    let warehouses = inventory
        .stock_of(sku)
        .map(|(warehouse, s)| WarehouseStock {
            warehouse: warehouse.to_owned(),
            on_hand: s.on_hand,
            reserved: s.reserved,
            available: s.available(),
        })
        .collect();
    SkuStock {
        sku: sku.to_owned(),
        warehouses,
    }
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
        .feeding_views(|kind| crate::view::any_reads(views, kind))
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
