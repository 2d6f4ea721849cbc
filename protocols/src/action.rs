//! `ActionResult` v1: what `POST /v1/act` answers, and the ids and digests that tie an
//! intent to its one action. An action's id is derived from who asked and the intent's
//! id, so a repeated intent finds its first action, in memory or in the journal's index.

use crate::intent::AxonIntent;
use crate::lane::Lane;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How an action ended, or where it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// The driver did what was asked.
    Ok,
    /// The driver was called and did not do what was asked.
    Failed,
    /// Nothing acted: no stage let the intent through (no live driver, a refusal).
    Blocked,
    /// The driver may have acted and the node does not know whether it did: its deadline
    /// passed, or the node stopped between the dispatch and the outcome. Never re-run on
    /// its own.
    InDoubt,
    /// The driver was never called: the dispatch was skipped because its caller had gone.
    NotRun,
    /// An operator recorded whether an action in doubt ran.
    Resolved,
    /// The action was undone through its driver's rollback.
    RolledBack,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Blocked => "blocked",
            Self::InDoubt => "in_doubt",
            Self::NotRun => "not_run",
            Self::Resolved => "resolved",
            Self::RolledBack => "rolled_back",
        }
    }

    /// Every status, in declaration order.
    pub const ALL: [ActionStatus; 7] = [
        Self::Ok,
        Self::Failed,
        Self::Blocked,
        Self::InDoubt,
        Self::NotRun,
        Self::Resolved,
        Self::RolledBack,
    ];

    /// True when nothing of the action acted (`blocked`, `not_run`): a repeat of its
    /// intent runs it, since that cannot act twice.
    pub fn nothing_acted(self) -> bool {
        matches!(self, Self::Blocked | Self::NotRun)
    }

    /// The HTTP status an answer with this status has: the request was handled (200),
    /// except when the node cannot say what happened (500).
    pub fn http_status(self) -> u16 {
        match self {
            Self::InDoubt => 500,
            _ => 200,
        }
    }
}

/// What one intent came to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionResult {
    /// 32 lowercase hex digits.
    pub action_id: String,
    pub intent_id: String,
    pub status: ActionStatus,
    /// What the driver answered (`null` when it did not answer).
    pub output: Value,
    /// The driver chosen, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<Lane>,
    /// The journal entry that records this status.
    pub barcode: String,
    pub index: u64,
    /// Why it is not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// True when this answers a repeat of an intent that already has its action.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
}

/// An operator's finding about an action in doubt (`POST /v1/actions/{id}/resolve`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// Whether the side effect happened.
    pub ran: bool,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Value>,
}

/// The body of a `dispatch` entry: an action handed to its driver. Journaled durably
/// before the driver is called, so a node that dies before the outcome knows the action
/// may have run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dispatch {
    pub action_id: String,
    /// The authenticated principal that sent the intent.
    pub caller: String,
    pub intent_id: String,
    /// See [`intent_digest`].
    pub intent_digest: String,
    pub intent: AxonIntent,
    pub driver: String,
    /// The driver build (see the drivers' artifact hash).
    pub artifact_hash: String,
    pub lane: Lane,
    /// What the twin predicted, as the driver answered it (`null` for an undo).
    pub prediction: Value,
    /// Set when this dispatch undoes the action (`POST /v1/actions/{id}/rollback`)
    /// rather than performing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Undo>,
    /// Set when the capability had a driver on trial: how the build that serves it was
    /// drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_draw: Option<TrialDraw>,
}

/// How an intent was routed while its capability had a driver on trial: `draw`, a
/// fraction in `[0, 1)` drawn once from the node's seed and the action id; the driver on
/// trial serves it when `draw < share`, and the live driver otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialDraw {
    pub draw: f64,
    pub share: f64,
    /// The driver on trial.
    pub trial: String,
}

/// Why an action is undone, and which of its results is undone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Undo {
    pub reason: String,
    /// The id of the `result` entry whose outcome is undone.
    pub result: String,
}

/// The body of a `result` entry: where one action stands. An action's newest result is
/// its state; a `dispatch` without one is in doubt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRecord {
    pub action_id: String,
    pub caller: String,
    pub intent_id: String,
    pub intent_digest: String,
    pub status: ActionStatus,
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<Lane>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The intent, for an action that has no dispatch (one that was blocked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<AxonIntent>,
    /// The replay capsule of the driver call, when the driver answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capsule: Option<crate::capsule::ReplayCapsule>,
    /// An operator's finding, for a `resolved` action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// True for an outcome that arrived after the action was journaled in doubt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
}

impl ActionRecord {
    /// The answer for this record, journaled at `index` with `barcode`.
    pub fn answer(&self, index: u64, barcode: &str) -> ActionResult {
        ActionResult {
            action_id: self.action_id.clone(),
            intent_id: self.intent_id.clone(),
            status: self.status,
            output: self.output.clone(),
            driver: self.driver.clone(),
            lane: self.lane,
            barcode: barcode.to_owned(),
            index,
            reason: self.reason.clone(),
            repeat: false,
        }
    }
}

/// The action id of the intent `intent_id` sent by `caller`: the first 16 bytes of a
/// BLAKE3 hash, in hex. The same caller and id always make the same action id.
pub fn action_id(caller: &str, intent_id: &str) -> String {
    let mut h = blake3::Hasher::new_derive_key("axon 2026 action id v1");
    h.update(&(caller.len() as u64).to_le_bytes());
    h.update(caller.as_bytes());
    h.update(intent_id.as_bytes());
    crate::journal::hex(&h.finalize().as_bytes()[..16])
}

/// What makes two intents the same request: BLAKE3 (hex) of the canonical JSON of the
/// intent without its `intent_id` and `correlation_id` (which name and trace it, not what
/// it asks). An error when the intent has no canonical encoding.
pub fn intent_digest(intent: &AxonIntent) -> Result<String, crate::canonical::CanonicalError> {
    let mut asked = intent.clone();
    asked.intent_id = None;
    asked.correlation_id = None;
    let value = serde_json::to_value(&asked).expect("an intent is plain data");
    let bytes = crate::canonical::to_vec(&value)?;
    Ok(crate::journal::hex(blake3::hash(&bytes).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn intent(v: Value) -> AxonIntent {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_action_id_depends_on_the_caller_and_the_intent_id_alone() {
        let a = action_id("admin", "x-1");
        assert_eq!(a, action_id("admin", "x-1"));
        assert!(crate::capsule::ReplayCapsule::is_action_id(&a));
        assert_ne!(a, action_id("admin", "x-2"));
        assert_ne!(a, action_id("other", "x-1"));
        // The caller's length is hashed: moving bytes between the two parts changes it.
        assert_ne!(action_id("ab", "c"), action_id("a", "bc"));
    }

    #[test]
    fn the_digest_ignores_the_ids_and_sees_everything_asked() {
        let base = json!({"capability": "urn:axon:cap:echo", "args": {"a": 1}});
        let d = intent_digest(&intent(base.clone())).unwrap();
        let mut named = base.clone();
        named["intent_id"] = json!("i");
        named["correlation_id"] = json!("c");
        assert_eq!(intent_digest(&intent(named)).unwrap(), d);
        for (k, v) in [
            ("args", json!({"a": 2})),
            ("budget_ms", json!(5)),
            ("purpose", json!("p")),
            ("consent", json!({})),
        ] {
            let mut other = base.clone();
            other[k] = v;
            assert_ne!(intent_digest(&intent(other)).unwrap(), d, "{k}");
        }
    }

    #[test]
    fn statuses_serialize_as_their_names() {
        for s in ActionStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }
}
