//! Replay capsules: everything needed to re-run one driver call offline and compare its
//! output bit for bit. A capsule is the body of a `capsule` journal entry.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// What a driver call ran in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// The `axon` binary's version.
    pub binary_version: String,
    /// BLAKE3 (hex) of the canonical JSON of the node's effective configuration.
    pub config_hash: String,
    /// BLAKE3 (hex) of the driver's artifact: its manifest, and for a kind built into the
    /// binary that code's identity.
    pub driver_artifact_hash: String,
    /// The driver's manifest as it ran (its canonical JSON, parsed), so a replay rebuilds
    /// the same driver without the node's configuration. Secrets are named in it by
    /// reference, never held. The journal holds it once, on the build's first lane change
    /// ([`LaneChange::manifest`](crate::lane::LaneChange::manifest)), and a stored capsule
    /// names it by `driver_artifact_hash` alone; it is here in a capsule a reader has
    /// completed from there, and in the stored capsules of a build whose first lane change
    /// does not hold it (journaled by an older Axon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Arc<Value>>,
}

/// The recorded clock of a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedClock {
    /// RFC 3339 times from the node's clock.
    pub started: String,
    pub finished: String,
    pub duration_us: u64,
}

/// One driver call, recorded so that it can be replayed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayCapsule {
    /// The action's id: 32 lowercase hex digits.
    pub action_id: String,
    pub driver: String,
    pub environment: Environment,
    pub input: Value,
    pub output: Value,
    /// The seeds the driver's randomness came from.
    pub seeds: Vec<u64>,
    /// What the driver saw of the world when it acted, as far as its output depends on it
    /// (a file's length before an append, an http exchange): a replay starts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    pub clock: RecordedClock,
}

impl ReplayCapsule {
    /// True for text shaped like an action id.
    pub fn is_action_id(s: &str) -> bool {
        s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}
