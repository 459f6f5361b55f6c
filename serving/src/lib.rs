//! Emporium's read side: the store the dataflows keep up to date, and the HTTP API that answers
//! shoppers and operators from it.
//!
//! - [`views`]: the documents, one per read path, as the API returns them;
//! - [`store`]: the [`store::Store`] trait and its backends, [`store::embedded`] (the one-machine
//!   default) and [`store::scylla`] (ScyllaDB, for the distributed deployment);
//! - [`auth`]: bearer tokens for shoppers and the operator key (the `emporium-auth` crate,
//!   shared with ingest's producer tokens);
//! - [`api`]: the read routes and `/openapi.json`;
//! - `reply`: what the route modules share (state, caller, error envelope, erasure check);
//! - [`recommendations`]: `GET /v1/products/{id}/recommendations` from the recommendation
//!   views (ADR 0015);
//! - [`search`]: `GET /v1/search` and `GET /v1/suggest` over the search index (ADR 0013).
//!
//! The store's contract (idempotent upserts by `seq`, positions after documents) and the choice
//! of engines are in ADR 0006; the API and its auth in ADR 0007.

pub mod api;
pub mod features;
pub use emporium_auth as auth;
pub mod lists;
pub mod metrics;
pub mod popularity;
mod recent;
pub mod recommendations;
mod reply;
pub mod search;
pub mod store;
pub mod views;
