//! The supervision tree as served at `GET /v1/supervision`, and the words of the
//! supervision contract (`SUPERVISION.md`): strategies, restart types, statuses.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Which children restart when one fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

/// When a child is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartType {
    /// Always restarted, whatever the exit.
    Permanent,
    /// Restarted only after an abnormal exit (a failure or a panic).
    Transient,
    /// Never restarted; leaves the tree when it stops.
    Temporary,
}

/// A worker does the work; a supervisor supervises other children.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildKind {
    Worker,
    Supervisor,
}

/// A node's life-cycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Starting,
    Running,
    /// Failed and waiting out its backoff before the restart.
    Restarting,
    Stopping,
    /// Stopped and not coming back on its own (a normal exit, or shut down).
    Stopped,
    /// Failed for good: its restart type or its supervisor's intensity forbids a restart.
    Failed,
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        };
        f.write_str(s)
    }
}

/// The last failure of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureSnapshot {
    pub reason: String,
    /// RFC 3339 UTC time of the failure.
    pub at: String,
}

/// A node's mailbox: queued messages now, and the bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxSnapshot {
    pub depth: u64,
    pub capacity: u64,
}

/// One node of the supervision tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    pub id: String,
    pub kind: ChildKind,
    /// Supervisors only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// The restart type the parent applies; absent on the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartType>,
    pub status: NodeStatus,
    /// Restarts of this node inside its parent's current intensity window.
    pub restarts_in_window: u64,
    pub restarts_total: u64,
    #[serde(default)]
    pub last_failure: Option<FailureSnapshot>,
    /// Workers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<MailboxSnapshot>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<NodeSnapshot>,
}

impl NodeSnapshot {
    /// Finds a node by id anywhere below (and including) this one.
    pub fn find(&self, id: &str) -> Option<&NodeSnapshot> {
        if self.id == id {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(id))
    }

    /// Every node, this one first, depth first.
    pub fn walk(&self) -> Vec<&NodeSnapshot> {
        let mut out = vec![self];
        for c in &self.children {
            out.extend(c.walk());
        }
        out
    }
}
