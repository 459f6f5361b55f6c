//! The search document: what the index keeps of one product. Text for matching (title, brand,
//! category path, description), values for filters, sorts and facets (price, rating,
//! popularity, when it was listed). The pipeline builds it from the `search_documents` view and
//! sets popularity from the `product_popularity` view (ADR 0014). Availability is not in it: it changes with every reservation
//! and lives beside the index ([`crate::availability`]).

use emporium_schemas::catalog::ProductUpserted;
use serde::{Deserialize, Serialize};

/// One product as the index keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchDocument {
    pub product_id: String,
    pub title: String,
    pub brand: String,
    /// From the root down, e.g. `["Electronics", "Audio"]`.
    pub category_path: Vec<String>,
    pub description: String,
    /// The price in minor units (cents), and its currency.
    pub price_minor: i64,
    pub currency: String,
    /// How many reviews, and their mean rating (0 with none).
    pub reviews: u64,
    pub mean_rating: f64,
    /// Views and orders, decayed in event time: higher is more popular. Not in the
    /// `search_documents` view's documents (0 when absent): the pipeline's sink takes it from the
    /// `product_popularity` view ([`crate::SearchIndex::set_popularity`]).
    #[serde(default)]
    pub popularity: f64,
    /// When the product was first listed (ms since the epoch): the `newest` sort.
    pub listed_ms: i64,
}

impl SearchDocument {
    /// A listed product's document, before any review or interest: its text and price from
    /// the `product_upserted` event, listed at `listed_ms`.
    pub fn listed(p: &ProductUpserted, listed_ms: i64) -> Self {
        Self {
            product_id: p.product_id.clone(),
            title: p.title.clone(),
            brand: p.brand.clone(),
            category_path: p.category_path.clone(),
            description: p.description.clone(),
            price_minor: p.price.amount_minor,
            currency: p.price.currency.clone(),
            reviews: 0,
            mean_rating: 0.0,
            popularity: 0.0,
            listed_ms,
        }
    }

    /// The category path's prefixes, each a filter and facet value: `Electronics`,
    /// `Electronics/Audio`.
    pub fn category_prefixes(&self) -> Vec<String> {
        let mut prefixes = Vec::with_capacity(self.category_path.len());
        let mut path = String::new();
        for level in &self.category_path {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(level);
            prefixes.push(path.clone());
        }
        prefixes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_of_the_category_path_is_a_value() {
        let doc = SearchDocument {
            product_id: "p-1".into(),
            title: "t".into(),
            brand: "b".into(),
            category_path: vec!["Electronics".into(), "Audio".into(), "Headphones".into()],
            description: String::new(),
            price_minor: 1,
            currency: "USD".into(),
            reviews: 0,
            mean_rating: 0.0,
            popularity: 0.0,
            listed_ms: 0,
        };
        assert_eq!(
            doc.category_prefixes(),
            [
                "Electronics",
                "Electronics/Audio",
                "Electronics/Audio/Headphones"
            ]
        );
    }
}
