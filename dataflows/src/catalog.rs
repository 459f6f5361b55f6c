//! The catalog: every product's latest listing and price.
//!
//! Input: catalog events (`product_upserted`, `price_changed`, `product_discontinued`) in
//! decision-time order, each with its `seq`. Output: each product's [`Listing`] and, per event,
//! the listings it changed (old and new value) for the document dataflow ([`crate::views`]), which
//! joins them with stock. Invariant: a `product_upserted` replaces the whole listing (it is a full
//! value) and stamps it with its `seq`; a price change or discontinuation of an unknown product is
//! an anomaly. Which product a sku belongs to is not kept here: it is derived in the document
//! dataflow (the listing with the highest `listed_seq` among those naming the sku).

use std::borrow::Cow;
use std::collections::HashMap;

use emporium_schemas::money::Money;
use emporium_schemas::{Event, Payload};
use serde::{Deserialize, Serialize};

use crate::piece::{self, Dirty, Entries};

/// What the product document needs of a product's catalog entry (description and attributes are
/// not served, so not kept).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Listing {
    /// The `seq` of the `product_upserted` that listed it last: a sku named by several listings
    /// belongs to the one with the highest.
    pub listed_seq: u64,
    pub skus: Vec<String>,
    pub title: String,
    pub brand: String,
    pub category_path: Vec<String>,
    pub price: Money,
    pub discontinued: bool,
    /// Counts the changes of the served fields other than the skus (title, brand, category,
    /// price, discontinued) in this process: the documents dataflow sees a listing's revision,
    /// not those fields ([`crate::views`]). Not kept in checkpoints (0 when resumed): only a
    /// change of it matters.
    #[serde(skip)]
    pub revision: u32,
}

impl Listing {
    /// Whether the served fields other than the skus are the same.
    fn same_served_fields(&self, other: &Listing) -> bool {
        self.title == other.title
            && self.brand == other.brand
            && self.category_path == other.category_path
            && self.price == other.price
            && self.discontinued == other.discontinued
    }
}

/// A listing changed by one event: its value before (`None`: new product) and after.
pub type ListingChange = (String, Option<Listing>, Listing);

/// Every product, folded from the log.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    products: HashMap<String, Listing>,
    changed: Vec<ListingChange>,
    /// Products changed since the last checkpoint piece.
    dirty: Dirty<String>,
}

/// [`CatalogPiece`] as written, borrowed from the fold.
#[derive(Serialize)]
pub(crate) struct CatalogPieceRef<'a> {
    products: Vec<(Cow<'a, str>, Option<&'a Listing>)>,
}

/// The catalog of a checkpoint piece ([`crate::piece`]): every listing (a full piece), or those
/// changed since the previous piece (a listing is never removed; the `Option` keeps the shape of
/// the other folds' pieces).
#[derive(Deserialize)]
pub(crate) struct CatalogPiece {
    products: Vec<(String, Option<Listing>)>,
}

impl Catalog {
    pub fn get(&self, product_id: &str) -> Option<&Listing> {
        self.products.get(product_id)
    }

    pub fn products(&self) -> impl Iterator<Item = (&str, &Listing)> {
        self.products.iter().map(|(id, l)| (id.as_str(), l))
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Marks changed listings for checkpoint deltas from now on ([`crate::piece`]).
    pub(crate) fn track_pieces(&mut self) {
        self.dirty.track();
    }

    /// Every listing, for a full checkpoint piece.
    pub(crate) fn full_piece(&self) -> CatalogPieceRef<'_> {
        CatalogPieceRef {
            products: self
                .products
                .iter()
                .map(|(id, l)| (Cow::Borrowed(id.as_str()), Some(l)))
                .collect(),
        }
    }

    /// The listings changed since the last piece; the next delta starts from here.
    pub(crate) fn delta_piece(&mut self) -> CatalogPieceRef<'_> {
        let products = &self.products;
        CatalogPieceRef {
            products: piece::changed(self.dirty.take(), |id: &str| products.get(id)),
        }
    }

    /// Forgets the changes marked so far: a full piece was taken.
    pub(crate) fn clear_dirty(&mut self) {
        self.dirty.clear();
    }

    /// Applies a piece's listings (a full piece to an empty catalog, then each delta in order).
    pub(crate) fn apply_piece(&mut self, piece: CatalogPiece) {
        for (id, listing) in piece.products {
            self.products.set(id, listing);
        }
    }

    /// Listings changed since the last call, in the order they changed (a product may repeat).
    pub fn take_changed(&mut self) -> Vec<ListingChange> {
        std::mem::take(&mut self.changed)
    }

    /// Applies one event, the `seq`-th; returns an anomaly kind when it made no sense.
    pub fn apply(&mut self, seq: u64, event: &Event) -> Option<&'static str> {
        match &event.payload {
            Payload::ProductUpserted(e) => {
                let mut listing = Listing {
                    listed_seq: seq,
                    skus: e.skus.clone(),
                    title: e.title.clone(),
                    brand: e.brand.clone(),
                    category_path: e.category_path.clone(),
                    price: e.price.clone(),
                    discontinued: false,
                    revision: 0,
                };
                if let Some(old) = self.products.get(&e.product_id) {
                    listing.revision = old
                        .revision
                        .wrapping_add(u32::from(!old.same_served_fields(&listing)));
                }
                let old = self.products.insert(e.product_id.clone(), listing.clone());
                self.dirty.mark(e.product_id.as_str());
                self.changed.push((e.product_id.clone(), old, listing));
                None
            }
            Payload::PriceChanged(e) => self
                .modify(&e.product_id, |l| l.price = e.price.clone())
                .then_some("price_of_unknown_product"),
            Payload::ProductDiscontinued(e) => self
                .modify(&e.product_id, |l| l.discontinued = true)
                .then_some("discontinued_unknown_product"),
            _ => None,
        }
    }

    /// Changes a listed product; `true` if it was never listed.
    fn modify(&mut self, product_id: &str, change: impl FnOnce(&mut Listing)) -> bool {
        let Some(listing) = self.products.get_mut(product_id) else {
            return true;
        };
        let old = listing.clone();
        change(listing);
        self.dirty.mark(product_id);
        if !old.same_served_fields(listing) {
            listing.revision = listing.revision.wrapping_add(1);
        }
        self.changed
            .push((product_id.to_owned(), Some(old), listing.clone()));
        false
    }
}
