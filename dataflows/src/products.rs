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
//! workers, processes or interleaving (ADR 0005, ADR 0006). [`crate::reference`] computes the
//! same documents with a plain fold, for tests.

use std::collections::HashMap;
use std::sync::Arc;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use crate::catalog::Listing;
use crate::changes::{Product, SkuAvailable, SkuStock, WarehouseStock};
use crate::inventory::Inventory;

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

/// The latest output of each product after a round ([`crate::latest::Latest`]).
pub type Latest = crate::latest::Latest<Id, ProductSkus>;

/// The products of a round's outputs that have a value (documents are never deleted), with the
/// `seq` of their last change.
pub fn present(outputs: Vec<(Id, u64, Option<ProductSkus>)>) -> Vec<(Id, u64, ProductSkus)> {
    outputs
        .into_iter()
        .filter_map(|(product, seq, skus)| Some((product, seq, skus?)))
        .collect()
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
