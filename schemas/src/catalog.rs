//! Catalog events: what is sold, under which skus, at what price. Keyed by `product_id`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::validate::{TextSize, Validator};

/// A product was created or replaced as a whole (full value, not a patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductUpserted {
    pub product_id: String,
    /// Stock-keeping units of the variants of this product (at least one).
    pub skus: Vec<String>,
    pub title: String,
    pub description: String,
    pub brand: String,
    /// From the root down, e.g. `["Electronics", "Audio", "Headphones"]`.
    pub category_path: Vec<String>,
    /// Free-form attributes (colour, size, material...); each key at most once.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_keys"
    )]
    pub attributes: BTreeMap<String, String>,
    pub price: Money,
}

impl ProductUpserted {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("product_id", &self.product_id);
        v.id_list("skus", &self.skus);
        v.text("title", &self.title, TextSize::Short);
        v.text("description", &self.description, TextSize::Long);
        v.text("brand", &self.brand, TextSize::Short);
        v.id_list("category_path", &self.category_path);
        v.string_map("attributes", self.attributes.iter());
        v.price("price", &self.price);
    }
}

/// The price of a product changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceChanged {
    pub product_id: String,
    pub price: Money,
}

impl PriceChanged {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("product_id", &self.product_id);
        v.price("price", &self.price);
    }
}

/// A product is no longer sold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductDiscontinued {
    pub product_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ProductDiscontinued {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("product_id", &self.product_id);
        v.optional_text("reason", self.reason.as_deref(), TextSize::Short);
    }
}

/// A JSON object into a map, refusing a repeated key: with the last one silently winning, a value
/// could hide from validation while the producer's raw bytes, still holding it, are stored.
fn unique_keys<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of strings with distinct keys")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                if out.contains_key(&key) {
                    let key = crate::pci::mask_card_numbers(&key).into_owned();
                    return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Visitor)
}
