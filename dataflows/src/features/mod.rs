//! Feature views for the feature store (issue 26, ADR 0016): maintained views whose values are
//! features of an entity (a user, a product, a sku in a warehouse), each value with the event
//! time it holds at and the step (`seq`) at which it became known.
//!
//! [`DATAFLOWS`] is what a declaration (`features/features.toml`) may name: each feature
//! dataflow's entity and the features it computes, with their types. The declaration chooses
//! which of them a feature view serves, under which name, and for how long a value stays fresh.
//!
//! **Event time of a value.** A feature value holds at the event time of the latest event of its
//! entity the dataflow read (late events included: the latest by event time, not by arrival),
//! and its windows ("orders over 7 days") end there: a value is the entity's state as of its
//! own latest event, the way Feast's rows are materialized, so the same events give the same
//! value in every run and a point-in-time join over the values needs no clock.

pub mod user_activity;

/// What a feature describes, and the columns that name one (Feast's join keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entity {
    User,
    Product,
    SkuWarehouse,
}

impl Entity {
    pub const ALL: [Entity; 3] = [Entity::User, Entity::Product, Entity::SkuWarehouse];

    /// Its name in a declaration.
    pub fn name(self) -> &'static str {
        match self {
            Entity::User => "user",
            Entity::Product => "product",
            Entity::SkuWarehouse => "sku_warehouse",
        }
    }

    /// Its join keys: the columns of an entity row that name one.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Entity::User => &["user_id"],
            Entity::Product => &["product_id"],
            Entity::SkuWarehouse => &["sku", "warehouse"],
        }
    }

    pub fn parse(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// The type of a feature's values (Feast's `Int64`, `Float64`, `Bool`, `String`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FeatureType {
    Int64,
    Float64,
    Bool,
    String,
}

impl FeatureType {
    pub const ALL: [FeatureType; 4] = [
        FeatureType::Int64,
        FeatureType::Float64,
        FeatureType::Bool,
        FeatureType::String,
    ];

    /// Its name in a declaration.
    pub fn name(self) -> &'static str {
        match self {
            FeatureType::Int64 => "int64",
            FeatureType::Float64 => "float64",
            FeatureType::Bool => "bool",
            FeatureType::String => "string",
        }
    }

    pub fn parse(name: &str) -> Option<FeatureType> {
        FeatureType::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// A feature a dataflow computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Computed {
    pub name: &'static str,
    pub ty: FeatureType,
    pub description: &'static str,
}

/// A feature dataflow: the maintained view (its [`crate::view::View::NAME`]) and what it
/// computes for each entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureDataflow {
    pub name: &'static str,
    pub entity: Entity,
    pub computes: &'static [Computed],
}

impl FeatureDataflow {
    pub fn computed(&self, feature: &str) -> Option<&'static Computed> {
        self.computes.iter().find(|c| c.name == feature)
    }
}

/// The feature dataflows a declaration may name.
pub const DATAFLOWS: &[FeatureDataflow] = &[user_activity::DATAFLOW];

/// The dataflow named `name`.
pub fn dataflow(name: &str) -> Option<&'static FeatureDataflow> {
    DATAFLOWS.iter().find(|d| d.name == name)
}

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;
