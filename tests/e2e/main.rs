//! Axon's end-to-end tests: the node and the binary seen from outside, each file a
//! module of one test binary, so that the node and its dependencies are linked once.
//! (`tests/overload_memory.rs` measures the memory of its own process and keeps a binary
//! of its own.)

#[path = "../common/mod.rs"]
mod common;
use axon_drivers::loopback;

mod act;
mod admin_token;
mod audit;
mod bad_input;
mod binary;
mod canonical_door;
mod dashboards;
mod every_entry_reads_back;
mod gates;
mod journal_crash;
mod journal_http;
mod journal_index;
mod otlp;
mod overload;
mod probecraft;
mod replay;
mod retry_after;
mod supervision;
mod verify_proof;
mod wasm;
