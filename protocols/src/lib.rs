//! `axon-protocols`: the v1 wire types that clients, verifiers and the node share.
//!
//! What is here: the shapes that cross Axon's boundary — the RFC 9457 problem document
//! and its stable `type` identifiers, the supervision-tree snapshot served at
//! `GET /v1/supervision`, correlation ids, intents (`AxonIntent` v1), replay capsules,
//! the journal record format, Merkle proofs and signed checkpoints.
//!
//! Architecture invariant: this crate does no IO, starts no actors and depends on no other
//! crate of the workspace. Everything here is plain data with its validation.

pub mod action;
pub mod canonical;
pub mod capsule;
pub mod checkpoint;
pub mod correlation;
pub mod intent;
pub mod journal;
pub mod lane;
pub mod merkle;
pub mod problem;
pub mod supervision;
pub mod time;

pub use correlation::{CorrelationId, CorrelationIdError};
pub use problem::{Problem, ProblemType};
pub use supervision::{ChildKind, NodeSnapshot, NodeStatus, RestartType, Strategy};
