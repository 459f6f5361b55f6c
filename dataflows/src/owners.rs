//! Which product owns a sku, as a differential collection: what views that read orders (which
//! name skus) use to credit products. The rule is [`crate::products`]'s: among the products'
//! current listings naming a sku, the one listed last owns it (a product's earlier listings name
//! skus it may no longer have).

use differential_dataflow::VecCollection;

/// `(sku, product)` for every sku some current listing names, from `listings`: `(product, (seq,
/// skus))`, one per `product_upserted` (the latest per product is its current listing).
pub fn sku_owners<'s>(
    listings: VecCollection<'s, u64, (String, (u64, Vec<String>))>,
) -> VecCollection<'s, u64, (String, String)> {
    listings
        .reduce_named(
            "CurrentListing",
            |_product: &String, listings: &[(&(u64, Vec<String>), isize)], out| {
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
            |_sku: &String, listers: &[(&(u64, String), isize)], out| {
                if let Some(((_, owner), _)) = listers.last() {
                    out.push((owner.clone(), 1isize));
                }
            },
        )
}
