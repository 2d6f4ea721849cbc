//! The echo driver: answers each request with the request itself.

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
