//! Emporium's feature store (issue 26, ADR 0016). So far: the declared feature views
//! ([`declaration`]: `features/features.toml`, checked against the feature dataflows of
//! `emporium_dataflows::features`).

pub mod declaration;

pub use declaration::{DeclarationError, Declarations, Feature, FeatureView};
