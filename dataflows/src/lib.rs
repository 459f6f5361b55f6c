//! Emporium's computations over events, as pure functions: no sockets, files or clocks, no API
//! types, so a test can run them on a `Vec` of events. `emporium-pipeline` feeds them from the
//! event log and hands their [`changes`] to the sinks.
//!
//! - [`event_time`]: the decision time of each event, a pure function of its partition's contents;
//! - [`inventory`]: the inventory decider — stock per (sku, warehouse), all-or-nothing reservations,
//!   releases and shipments, in decision-time order;
//! - [`orders`]: every order's status, lines and transition times, with anomalies;
//! - [`catalog`]: every product's listing;
//! - [`decider`]: the streaming driver that buffers events from every partition and applies them
//!   once the watermark has passed them, so decisions do not depend on how partitions interleave;
//! - [`products`]: the differential dataflow that derives each product's skus and availability
//!   from the availability and listings the decider changes; [`reference`]: the plain-fold
//!   reference for what the pipeline writes, for tests;
//! - [`decisions`]: the decision events of the decider's outputs, with deterministic ids;
//! - [`view`]: the one shape of a maintained view (events read, input rows, the differential
//!   collection, its documents), and [`ratings`], the example: reviews per product;
//! - [`search`]: the search documents view — each product's text, price and reviews, what the
//!   search index keeps; [`popularity`]: each product's views and ordered units, decayed in
//!   event time, which the index sorts by (views counted, not read: ADR 0014);
//! - [`recs`]: recommendations as views — [`recs::also_bought`], products bought in the same
//!   paid orders, with exact retractions (cancellations, returns, erased users: ADR 0015);
//! - [`ids`]: dense integer ids for the names a view's rows carry, so its dataflow works on
//!   integers;
//! - [`owners`]: which product owns a sku, as a collection, for the views that read orders;
//! - `piece`: which keys each fold changed since its last checkpoint piece (incremental
//!   checkpoints);
//! - [`changes`]: what they emit — full values with the `seq` of their last change.
//!
//! The decision rule is specified in `specs/adr/0005-inventory-decisions.md`, the documents and the
//! checkpoints in `specs/adr/0006-store-documents-and-engines.md` and
//! `specs/adr/0008-differential-documents-and-checkpoints.md`.

pub mod catalog;
pub mod changes;
pub mod decider;
pub mod decisions;
pub mod event_time;
pub mod features;
pub mod ids;
pub mod inventory;
pub mod latest;
pub mod orders;
pub mod owners;
pub(crate) mod piece;
pub mod popularity;
pub mod products;
pub mod ratings;
pub mod recs;
pub mod reference;
pub mod search;
pub mod view;

/// The maintained views the pipeline runs ([`view`]), in the order their dataflows are built
/// (every worker builds the same, in the same order). A new view is one line here.
pub fn views() -> Vec<view::Spec> {
    vec![
        view::Spec::of::<ratings::ProductRatings>(),
        view::Spec::of::<search::SearchDocuments>(),
        view::Spec::of::<popularity::ProductPopularity>(),
        view::Spec::of::<recs::also_bought::AlsoBought>(),
        view::Spec::of::<recs::user_purchases::UserPurchases>(),
        view::Spec::of::<recs::similar::Similar>(),
        view::Spec::of::<recs::trending::Trending>(),
        view::Spec::of::<recs::also_viewed::AlsoViewed>(),
        view::Spec::of::<recs::user_views::UserViews>(),
        view::Spec::of::<recs::content::Content>(),
        view::Spec::of::<recs::erased_users::ErasedUsers>(),
        view::Spec::of::<features::user_activity::UserActivity>(),
    ]
}
