//! Replay capsules: everything needed to re-run one driver call offline and compare its
//! output bit for bit. A capsule is the body of a `capsule` journal entry.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a driver call ran in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// The `axon` binary's version.
    pub binary_version: String,
    /// BLAKE3 (hex) of the canonical JSON of the node's effective configuration.
    pub config_hash: String,
    /// BLAKE3 (hex) of the driver's artifact (for a built-in driver, of its name and
    /// version).
    pub driver_artifact_hash: String,
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
    pub clock: RecordedClock,
}

impl ReplayCapsule {
    /// True for text shaped like an action id.
    pub fn is_action_id(s: &str) -> bool {
        s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}
