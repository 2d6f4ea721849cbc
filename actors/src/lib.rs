//! `axon-actors`: Axon's subsystem actors, one module each. A subsystem joins this crate,
//! and the node's supervision tree, in the change that makes it do real work.
//!
//! - [`journal`]: the source of truth — durable, tamper-evident, with proofs.
//! - [`act`]: the one path an intent takes to a driver (`POST /v1/act`).
//! - [`lanes`]: which lane each loaded driver build is in; every change journaled.
//! - [`scorecards`]: the drivers' scorecards as metrics.
//!
//! Architecture invariant: no HTTP here. Actors take typed messages; the binary maps
//! routes onto them. Dependencies point down only: `actors` → `drivers` → `supervisors`
//! → `protocols`.

pub mod act;
pub mod durable;
pub mod journal;
pub mod lanes;
pub mod scorecards;

pub use axon_drivers as drivers;
