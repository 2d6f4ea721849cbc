//! `axon-actors`: Axon's subsystem actors, one module each (`journal`, `reflex`,
//! `guardian`, `market`, `awareness`, `dream`, `escalation`, `cycle`).
//!
//! A subsystem joins this crate, and the node's supervision tree, in the change that makes
//! it do real work; none is here yet. Until then the crate only fixes the dependency
//! direction `axon` → `actors` → `drivers` → `supervisors` → `protocols`, and re-exports
//! the drivers the node wires in.
//!
//! Architecture invariant: no HTTP here. Actors take typed messages; the binary maps
//! routes onto them.

pub use axon_drivers as drivers;
