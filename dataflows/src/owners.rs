//! Which product owns a sku, as a differential collection: what views that read orders (which
//! name skus) use to credit products. The rule is [`crate::products`]'s: among the products'
//! current listings naming a sku, the one listed last owns it (a product's earlier listings name
//! skus it may no longer have).

use differential_dataflow::{ExchangeData, Hashable, VecCollection};

/// `(sku, product)` for every sku some current listing names, from `listings`: `(product, (seq,
/// skus))`, one per `product_upserted` (the latest per product is its current listing).
/// Products and skus by name, or by [`crate::ids::Ids`].
pub fn sku_owners<'s, P, S>(
    listings: VecCollection<'s, u64, (P, (u64, Vec<S>))>,
) -> VecCollection<'s, u64, (S, P)>
where
    P: ExchangeData + Hashable,
    S: ExchangeData + Hashable,
{
    listings
        .reduce_named(
            "CurrentListing",
            |_product: &P, listings: &[(&(u64, Vec<S>), isize)], out| {
                // In (seq, skus) order: the last is the latest listing.
                if let Some((latest, _)) = listings.last() {
                    out.push(((*latest).clone(), 1isize));
                }
            },
        )
        .flat_map(|(product, (seq, skus))| {
            skus.into_iter()
                .map(move |sku| (sku, (seq, product.clone())))
                .collect::<Vec<_>>()
        })
        .reduce_named(
            "SkuOwner",
            |_sku: &S, listers: &[(&(u64, P), isize)], out| {
                if let Some(((_, owner), _)) = listers.last() {
                    out.push((owner.clone(), 1isize));
                }
            },
        )
}
