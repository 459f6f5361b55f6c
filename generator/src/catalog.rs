//! Names for the generated catalog: deterministic functions of an index, so any product, sku,
//! user or warehouse id can be recomputed without storing it.

pub const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "Electronics",
        &["Audio", "Phones", "Laptops", "Cameras", "Wearables"],
    ),
    (
        "Home",
        &["Kitchen", "Furniture", "Lighting", "Bedding", "Storage"],
    ),
    (
        "Fashion",
        &["Shoes", "Jackets", "Shirts", "Bags", "Watches"],
    ),
    (
        "Sports",
        &["Running", "Cycling", "Camping", "Fitness", "Swimming"],
    ),
    (
        "Books",
        &["Fiction", "Science", "History", "Children", "Cooking"],
    ),
    (
        "Toys",
        &["Puzzles", "Building", "Dolls", "Outdoor", "Games"],
    ),
    (
        "Beauty",
        &["Skincare", "Haircare", "Fragrance", "Makeup", "Bath"],
    ),
    (
        "Garden",
        &["Tools", "Plants", "Watering", "Grills", "Decor"],
    ),
];

pub const BRANDS: &[&str] = &[
    "Acme",
    "Northwind",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Hooli",
    "Vandelay",
    "Wonka",
    "Gringotts",
    "Oscorp",
    "Aperture",
];

pub const ADJECTIVES: &[&str] = &[
    "Wireless",
    "Compact",
    "Deluxe",
    "Classic",
    "Smart",
    "Ultra",
    "Eco",
    "Pro",
    "Portable",
    "Vintage",
    "Rugged",
    "Silent",
    "Premium",
    "Essential",
    "Modular",
    "Lightweight",
];

pub const VARIANTS: &[&str] = &["black", "white", "red", "blue", "green", "s", "m", "l"];

pub const REGIONS: &[&str] = &[
    "us-east",
    "us-west",
    "eu-west",
    "eu-central",
    "ap-south",
    "ap-northeast",
];

pub const CARRIERS: &[&str] = &["ups", "dhl", "fedex", "usps", "postnl"];

pub const QUERIES: &[&str] = &[
    "headphones",
    "running shoes",
    "coffee grinder",
    "tent",
    "lamp",
    "jacket",
    "yoga mat",
    "novel",
    "lego",
    "moisturizer",
    "garden hose",
    "smart watch",
    "backpack",
    "desk chair",
];

pub const REVIEW_TEXTS: &[&str] = &[
    "Exactly as described.",
    "Great value for the price.",
    "Stopped working after a week.",
    "Fast delivery, well packed.",
    "Would buy again.",
    "Smaller than expected.",
    "Five stars, my kids love it.",
];

pub fn product_id(i: usize) -> String {
    format!("p-{i:07}")
}

pub fn sku_id(product: usize, variant: usize) -> String {
    format!("p-{product:07}-{}", VARIANTS[variant % VARIANTS.len()])
}

pub fn user_id(i: usize) -> String {
    format!("u-{i:08}")
}

pub fn warehouse_id(i: usize) -> String {
    format!("wh-{}", i + 1)
}

/// How many variants (skus) product `i` has: 1 to 3.
pub fn variant_count(i: usize) -> usize {
    1 + (i.wrapping_mul(2_654_435_761) >> 7) % 3
}
