//! The echo driver: answers each request with the request itself.

use crate::driver::{Outcome, Prediction};
use axon_protocols::intent::AxonIntent;
use axon_supervisors::{Worker, WorkerContext, WorkerError};
use serde_json::Value;

/// Answers every JSON request with the same JSON.
#[derive(Debug, Default)]
pub struct Echo {
    handled: u64,
}

impl Echo {
    /// Requests this incarnation has answered.
    pub fn handled(&self) -> u64 {
        self.handled
    }
}

impl Worker for Echo {
    type Request = Value;
    type Response = Value;

    fn handle(&mut self, request: Value, _cx: &mut WorkerContext) -> Result<Value, WorkerError> {
        self.handled += 1;
        Ok(request)
    }
}

/// The descriptor of `echo`, from its compiled-in manifest.
pub fn descriptor() -> &'static crate::descriptor::DriverDescriptor {
    static DESCRIPTOR: std::sync::LazyLock<crate::descriptor::DriverDescriptor> =
        std::sync::LazyLock::new(|| {
            crate::builtin_manifest("echo")
                .expect("echo is built in")
                .descriptor()
        });
    &DESCRIPTOR
}

impl crate::driver::Driver for Echo {
    fn describe(&self) -> crate::descriptor::DriverDescriptor {
        descriptor().clone()
    }

    /// Exact: a push answers the arguments, whatever they are.
    fn predict(&mut self, intent: &AxonIntent) -> Prediction {
        Prediction::Expected {
            output: intent.args.clone(),
            utility: 1.0,
        }
    }

    fn push(&mut self, intent: &AxonIntent) -> Outcome {
        self.handled += 1;
        Outcome::ok(intent.args.clone())
    }

    fn pull(&mut self, query: &Value) -> Outcome {
        Outcome::ok(query.clone())
    }
}
