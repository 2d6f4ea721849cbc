//! RFC 9457 problem documents: every HTTP error Axon returns is one of these, with a
//! stable `type` that clients can match on.

use serde::{Deserialize, Serialize};

/// The media type of a problem document.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// Every kind of error the admin API returns. The `type` URI of each is stable: clients
/// match on it, so a variant is never renamed, only added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProblemType {
    /// The request body is not valid JSON or does not match the expected shape.
    MalformedRequest,
    /// The request body's content type is not the one the route takes.
    UnsupportedMediaType,
    /// The request body is larger than `http.max_body_bytes`.
    PayloadTooLarge,
    /// No route matches the path.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// A mutating route was called without a bearer token.
    Unauthenticated,
    /// The bearer token is not the admin token.
    InvalidToken,
    /// The named actor is not in the supervision tree.
    UnknownActor,
    /// The actor's mailbox is full: try again after `Retry-After`.
    Overloaded,
    /// The actor is restarting (backoff) or stopped: try again after `Retry-After`.
    Unavailable,
    /// The actor did not answer within the request deadline.
    Timeout,
    /// The actor failed (an error or a panic) while handling this request.
    ActorFailed,
    /// The actor refused the request itself (the request, not the actor, is at fault).
    Rejected,
    /// The node is not ready: some part of the supervision tree is not running.
    NotReady,
    /// The node is shutting down.
    ShuttingDown,
    /// A header carries a value the node refuses (for example a bad correlation id).
    BadHeader,
    /// A query parameter is missing or out of range.
    InvalidParameter,
    /// The journal holds no such entry.
    NoSuchEntry,
    /// A link names no earlier journal entry.
    BadLink,
    /// The journal stopped taking writes after a failed write; the node needs an operator.
    JournalHalted,
    /// A stored journal entry no longer matches its hash.
    JournalDamaged,
    /// A write failed after it was handed to the disk: whether the entry is in the
    /// journal is unknown until a restart (then it is there in full or not at all).
    OutcomeUnknown,
    /// A JSON value breaks the canonical-JSON rule the journal stores by (an integer no
    /// double holds, nesting too deep, a member name twice): the `path` member names where.
    NotCanonical,
    /// The intent's arguments or the intent itself break the chosen driver's obligations
    /// (its `args` or `precondition` schema, its payload limit): the `path` member names
    /// where.
    ObligationViolated,
    /// An intent id already names an action of this caller with other arguments.
    IntentConflict,
    /// No driver of this name is loaded.
    UnknownDriver,
    /// The lane move is not one of the legal moves (the detail names them).
    IllegalLaneMove,
    /// No action has this id.
    NoSuchAction,
    /// The action is not in doubt, so there is nothing to resolve.
    NotInDoubt,
    /// The driver ran but its outcome could not be journaled: the action is in doubt.
    ActionUnrecorded,
    /// The action cannot be undone (not `ok`, its driver cannot roll back, or the world
    /// moved on since: the detail says which).
    RollbackRefused,
    /// The driver build failed a gate of its promotion (its red-team suite, its shadow
    /// period): the detail names the gate, the failing check and the value or figures.
    PromotionGateFailed,
    /// No driver manifest can be grown from the OpenAPI operation asked for: the detail
    /// says what of the document or the operation stops it.
    SynthesisRefused,
    /// A driver of that name is already loaded, or its manifest file already exists.
    DriverExists,
    /// The room for drivers added while the node runs (`drivers.max_added_workers`) is
    /// taken; a restart loads the rest from the data directory.
    DriverLimit,
    /// Anything else the node did not expect; always logged with the correlation id.
    Internal,
}

impl ProblemType {
    /// Every variant, for documentation and tests.
    pub const ALL: [ProblemType; 36] = [
        Self::MalformedRequest,
        Self::UnsupportedMediaType,
        Self::PayloadTooLarge,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Unauthenticated,
        Self::InvalidToken,
        Self::UnknownActor,
        Self::Overloaded,
        Self::Unavailable,
        Self::Timeout,
        Self::ActorFailed,
        Self::Rejected,
        Self::NotReady,
        Self::ShuttingDown,
        Self::BadHeader,
        Self::InvalidParameter,
        Self::NoSuchEntry,
        Self::BadLink,
        Self::JournalHalted,
        Self::JournalDamaged,
        Self::NotCanonical,
        Self::OutcomeUnknown,
        Self::ObligationViolated,
        Self::IntentConflict,
        Self::UnknownDriver,
        Self::IllegalLaneMove,
        Self::NoSuchAction,
        Self::NotInDoubt,
        Self::ActionUnrecorded,
        Self::RollbackRefused,
        Self::PromotionGateFailed,
        Self::SynthesisRefused,
        Self::DriverExists,
        Self::DriverLimit,
        Self::Internal,
    ];

    /// The short stable name, the last part of the `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed-request",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::PayloadTooLarge => "payload-too-large",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidToken => "invalid-token",
            Self::UnknownActor => "unknown-actor",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::ActorFailed => "actor-failed",
            Self::Rejected => "rejected",
            Self::NotReady => "not-ready",
            Self::ShuttingDown => "shutting-down",
            Self::BadHeader => "bad-header",
            Self::InvalidParameter => "invalid-parameter",
            Self::NoSuchEntry => "no-such-entry",
            Self::BadLink => "bad-link",
            Self::JournalHalted => "journal-halted",
            Self::JournalDamaged => "journal-damaged",
            Self::NotCanonical => "not-canonical",
            Self::OutcomeUnknown => "outcome-unknown",
            Self::ObligationViolated => "obligation-violated",
            Self::IntentConflict => "intent-conflict",
            Self::UnknownDriver => "unknown-driver",
            Self::IllegalLaneMove => "illegal-lane-move",
            Self::NoSuchAction => "no-such-action",
            Self::NotInDoubt => "not-in-doubt",
            Self::ActionUnrecorded => "action-unrecorded",
            Self::RollbackRefused => "rollback-refused",
            Self::PromotionGateFailed => "promotion-gate-failed",
            Self::SynthesisRefused => "synthesis-refused",
            Self::DriverExists => "driver-exists",
            Self::DriverLimit => "driver-limit",
            Self::Internal => "internal",
        }
    }

    /// The `type` member: `urn:axon:problem:<slug>`.
    pub fn uri(self) -> String {
        format!("urn:axon:problem:{}", self.slug())
    }

    /// The HTTP status this problem is sent with.
    pub fn status(self) -> u16 {
        match self {
            Self::MalformedRequest | Self::BadHeader | Self::InvalidParameter => 400,
            Self::NoSuchEntry => 404,
            Self::BadLink | Self::NotCanonical => 422,
            Self::JournalHalted => 503,
            Self::JournalDamaged => 500,
            Self::Unauthenticated | Self::InvalidToken => 401,
            Self::NotFound | Self::UnknownActor => 404,
            Self::MethodNotAllowed => 405,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Rejected => 422,
            Self::Overloaded => 429,
            Self::Internal | Self::ActorFailed | Self::OutcomeUnknown => 500,
            Self::Unavailable | Self::NotReady | Self::ShuttingDown => 503,
            Self::Timeout => 504,
            Self::ObligationViolated => 422,
            Self::IntentConflict
            | Self::IllegalLaneMove
            | Self::NotInDoubt
            | Self::RollbackRefused
            | Self::PromotionGateFailed
            | Self::DriverExists
            | Self::DriverLimit => 409,
            Self::SynthesisRefused => 422,
            Self::UnknownDriver | Self::NoSuchAction => 404,
            Self::ActionUnrecorded => 500,
        }
    }

    /// The short human summary (`title`), the same for every occurrence.
    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedRequest => "The request is malformed",
            Self::UnsupportedMediaType => "Unsupported content type",
            Self::PayloadTooLarge => "The request body is too large",
            Self::NotFound => "No such route",
            Self::MethodNotAllowed => "Method not allowed on this route",
            Self::Unauthenticated => "A bearer token is required",
            Self::InvalidToken => "The bearer token is not valid",
            Self::UnknownActor => "No such actor",
            Self::Overloaded => "The actor's mailbox is full",
            Self::Unavailable => "The actor is not running",
            Self::Timeout => "The actor did not answer in time",
            Self::ActorFailed => "The actor failed while handling the request",
            Self::Rejected => "The actor refused the request",
            Self::NotReady => "The node is not ready",
            Self::ShuttingDown => "The node is shutting down",
            Self::BadHeader => "A request header is not acceptable",
            Self::InvalidParameter => "A query parameter is not acceptable",
            Self::NoSuchEntry => "No such journal entry",
            Self::BadLink => "A link names no earlier entry",
            Self::JournalHalted => "The journal takes no writes",
            Self::JournalDamaged => "The journal is damaged",
            Self::NotCanonical => "The JSON has no canonical form",
            Self::OutcomeUnknown => "The write failed: its outcome is unknown",
            Self::ObligationViolated => "The intent breaks the driver's obligations",
            Self::IntentConflict => "The intent id names another request",
            Self::UnknownDriver => "No such driver",
            Self::IllegalLaneMove => "The lane move is not allowed",
            Self::NoSuchAction => "No such action",
            Self::NotInDoubt => "The action is not in doubt",
            Self::ActionUnrecorded => "The action ran and was not recorded",
            Self::RollbackRefused => "The action cannot be rolled back",
            Self::PromotionGateFailed => "The driver failed a promotion gate",
            Self::SynthesisRefused => "No driver can be grown from the operation",
            Self::DriverExists => "A driver of that name exists",
            Self::DriverLimit => "No more drivers can be added while the node runs",
            Self::Internal => "Internal error",
        }
    }
}

/// An RFC 9457 problem document, with Axon's `correlation_id` extension member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Seconds to wait before retrying, for 429 and 503 (also sent as `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// Where in the request body the problem is, as a JSON Pointer (RFC 6901; `""` is
    /// the whole body), for `not-canonical` and `obligation-violated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Problem {
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            type_uri: kind.uri(),
            title: kind.title().to_owned(),
            status: kind.status(),
            detail: Some(detail.into()),
            instance: None,
            correlation_id: None,
            retry_after_seconds: None,
            path: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn slugs_are_unique_and_statuses_are_errors() {
        let slugs: HashSet<_> = ProblemType::ALL.iter().map(|p| p.slug()).collect();
        assert_eq!(slugs.len(), ProblemType::ALL.len());
        for p in ProblemType::ALL {
            assert!((400..600).contains(&p.status()), "{p:?}");
        }
    }

    #[test]
    fn serializes_with_rfc9457_member_names() {
        let p = Problem::new(ProblemType::Overloaded, "echo is full");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:axon:problem:overloaded");
        assert_eq!(v["status"], 429);
        assert_eq!(v["detail"], "echo is full");
        assert!(v.get("instance").is_none());
    }
}
