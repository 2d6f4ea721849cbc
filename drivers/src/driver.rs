//! The driver ABI: what every driver does, whatever it touches. A driver only does what
//! it is asked: whether it may act is decided before a call reaches it, and the checks of
//! its obligations around the call are made by [`act_checked`], the one way a driver acts
//! on an action: a driver whose effect is `write` is pushed, one whose effect is `read`
//! is pulled.

use crate::descriptor::{DriverDescriptor, Effect};
use crate::obligations::{Obligations, Violation};
use axon_protocols::intent::AxonIntent;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What the twin expects a push to do, found without any side effect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Prediction {
    /// What a push would answer, and how much it is worth (0 to 1).
    Expected { output: Value, utility: f64 },
    /// The driver cannot tell without acting; it never makes a number up.
    Inconclusive { reason: String },
}

/// How a call went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// The call was made and did not do what was asked (the endpoint answered 500, a
    /// postcondition failed): an outcome, not a failure of the driver's actor.
    Failed,
    /// The call may have acted and the driver cannot tell (a request sent and never
    /// answered, a write that failed half-way and could not be undone): the action is in
    /// doubt.
    Unknown,
}

/// What a call answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub status: Status,
    pub output: Value,
    /// Why it was not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What a replay needs to set the driver up as it was when it acted (a file's length
    /// before the append, an http exchange), recorded in the capsule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Value>,
}

impl Outcome {
    pub fn ok(output: Value) -> Self {
        Self {
            status: Status::Ok,
            output,
            reason: None,
            replay: None,
        }
    }

    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            output: Value::Null,
            reason: Some(reason.into()),
            replay: None,
        }
    }

    /// This outcome, recording what its replay needs.
    pub fn with_replay(mut self, state: Value) -> Self {
        self.replay = Some(state);
        self
    }
}

/// What an endpoint or a module answered, read as JSON.
pub enum Answer {
    Json(Value),
    /// JSON without a canonical form (an integer beyond 2^53, say): kept as text and
    /// flagged, never refused after the fact.
    NotCanonical {
        text: String,
        reason: String,
    },
    NotJson,
}

/// Reads `bytes` as an answer.
pub fn answer_json(bytes: &[u8]) -> Answer {
    match axon_protocols::canonical::parse(bytes, axon_protocols::canonical::MAX_DEPTH - 8) {
        Ok(v) => Answer::Json(v),
        Err(e) if e.is_syntax() => Answer::NotJson,
        Err(e) => Answer::NotCanonical {
            text: String::from_utf8_lossy(bytes).into_owned(),
            reason: e.to_string(),
        },
    }
}

/// One call of a driver: the action it belongs to, and what was asked.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub action_id: &'a str,
    pub intent: &'a AxonIntent,
}

/// An action as recorded, for a rollback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    pub action_id: String,
    pub intent: AxonIntent,
    pub output: Value,
}

/// A plugin through which Axon touches the world.
pub trait Driver: Send + 'static {
    /// What the driver is, what it risks and what it costs.
    fn describe(&self) -> DriverDescriptor;

    /// Whether the driver changes the world (its descriptor's `effect`), asked at every
    /// call: a driver answers it without building its whole descriptor.
    fn effect(&self) -> Effect {
        self.describe().effect
    }

    /// The twin: what a push of `call` would do, with no side effect.
    fn predict(&mut self, call: &Call) -> Prediction;

    /// The side effect, for a driver whose effect is `write`.
    fn push(&mut self, call: &Call) -> Outcome;

    /// A read, for a driver whose effect is `read`: the intent's arguments are the query.
    fn pull(&mut self, call: &Call) -> Outcome;

    /// Undoes a recorded action, where the descriptor says the driver can.
    fn rollback(&mut self, action: &Recorded) -> Outcome {
        Outcome::failed(format!(
            "{} cannot roll back action {}",
            self.describe().name,
            action.action_id
        ))
    }
}

/// Acts on `call` through `driver` within its obligations — a push for a driver that
/// writes, a pull for one that reads: the arguments and the intent are checked first (a
/// violation is returned and the driver is never called), and an outcome that breaks the
/// postcondition becomes `failed`, with the reason. A read changes nothing, so a read
/// whose outcome the driver cannot tell (an unanswered request) is `failed`, never in
/// doubt.
pub fn act_checked(
    driver: &mut dyn Driver,
    obligations: &Obligations,
    call: &Call,
) -> Result<Outcome, Violation> {
    obligations.check_args(&call.intent.args)?;
    obligations.check_precondition(call.intent)?;
    let outcome = match driver.effect() {
        Effect::Write => driver.push(call),
        Effect::Read => {
            let mut o = driver.pull(call);
            if o.status == Status::Unknown {
                o.status = Status::Failed;
                o.reason = Some(format!(
                    "{}; a read changes nothing, so nothing is in doubt",
                    o.reason
                        .as_deref()
                        .unwrap_or("the read's outcome is unknown")
                ));
            }
            o
        }
    };
    if outcome.status == Status::Ok {
        let answered = json!({"status": outcome.status, "output": outcome.output});
        if let Err(v) = obligations.check_postcondition(&answered) {
            return Ok(Outcome {
                status: Status::Failed,
                reason: Some(v.to_string()),
                ..outcome
            });
        }
    }
    Ok(outcome)
}
