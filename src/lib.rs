//! `axon`: the node binary's library half — configuration, node assembly (wiring the
//! supervision tree), the admin HTTP routes, and telemetry set-up. `src/main.rs` is the
//! command line on top; the test harness (`tests/harness`) starts nodes through here.
//!
//! Architecture invariant: no logic that belongs to a crate below. Routes translate HTTP
//! into actor calls and problem documents; supervision, actors and drivers live in their
//! crates.

pub mod act_routes;
pub mod admin_token;
pub mod api;
pub mod bench;
pub mod bench_act;
pub mod bench_demotion;
pub mod bench_mirroring;
pub mod config;
pub mod data_dir;
pub mod driver_load;
pub mod drivers_cli;
pub mod http;
pub mod journal_routes;
pub mod node;
pub mod openapi;
pub mod replay;
pub mod routes;
pub mod telemetry;
pub mod verify;

pub use config::Config;
pub use node::{start, Node, NodeOptions};
