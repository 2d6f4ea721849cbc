//! What a driver says about itself: what it can do, what it risks and what it costs. The
//! node reads risk and effect from here, never from a caller.

use serde::{Deserialize, Serialize};

/// Whether a driver changes the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Read,
    Write,
}

/// How much harm a wrong action of the driver can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
}

/// Where a driver build stands in its rollout, and the legal moves between lanes.
pub use axon_protocols::lane::{IllegalMove, Lane};

/// What one call is expected to cost.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    /// Expected time of one call, in milliseconds.
    pub expected_ms: u64,
    /// Budget units one call consumes.
    pub units: f64,
}

/// A driver's description of itself (served by `GET /v1/drivers`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverDescriptor {
    pub name: String,
    pub version: String,
    /// The capability it serves, e.g. `urn:axon:cap:webhook.post`.
    pub capability: String,
    pub effect: Effect,
    pub risk: Risk,
    /// The most objects one action can touch.
    pub max_blast_radius: u64,
    pub cost: Cost,
    /// BLAKE3 (hex) of what actually runs (see [`crate::manifest::artifact_hash`]).
    pub artifact_hash: String,
    /// The JSON Schemas every call is checked against (`args`, `precondition`,
    /// `postcondition`), as given in the manifest.
    pub obligations: serde_json::Value,
    /// Whether repeating a call has the effect of one call.
    pub idempotent: bool,
    /// Whether an action can be undone through the driver.
    pub can_rollback: bool,
    /// Its service-level objective: required to be `live`; its supervisor takes a live
    /// driver that stops meeting it out of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<axon_supervisors::Slo>,
}
