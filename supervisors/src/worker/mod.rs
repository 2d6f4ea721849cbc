//! Workers: the actors that do the work, each hosted in an actix actor that bounds its
//! mailbox, catches every panic, applies injected faults, measures itself and tells its
//! supervisor exactly once how it exited.

//!
//! The parts, each in its own file:
//! - [`caller`]: what callers hold — the stable [`WorkerRef`], the bounded mailbox count,
//!   the envelope and its ticket, the call's deadline;
//! - `host`: the actix actor that hosts one incarnation, catches every panic, applies
//!   injected faults, sees stops and turns each outcome into a reply;
//! - `batching`: group commit for workers that take requests in batches;
//! - `placement`: where an incarnation runs (its supervisor's thread, or a fresh thread
//!   of its own) and how a worker becomes a child spec.

mod batching;
pub mod caller;
mod deadline;
mod host;
mod placement;

pub use caller::{CallError, CallOptions, Permit, Sent, WorkerRef};
pub use placement::{worker, worker_on_own_thread};

use axon_protocols::RestartType;
use std::sync::Arc;
use std::time::Duration;

use crate::supervisor::Shutdown;

/// What a worker's handler returns when it does not answer normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The request is at fault: the caller gets the reason, the worker keeps running.
    #[error("{0}")]
    Rejected(String),
    /// The worker is at fault: the caller gets an error and the worker's supervisor
    /// handles it as a failure.
    #[error("{0}")]
    Fatal(String),
}

/// What a handler can see and ask for while it handles one request.
pub struct WorkerContext<'a> {
    actor: &'a str,
    correlation_id: Option<Arc<str>>,
    stop: bool,
}

impl<'a> WorkerContext<'a> {
    /// A context for calling a worker's handler directly, as a unit test does.
    pub fn new(actor: &'a str, correlation_id: Option<Arc<str>>) -> Self {
        Self {
            actor,
            correlation_id,
            stop: false,
        }
    }

    pub fn actor(&self) -> &str {
        self.actor
    }
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }
    /// Stops this worker normally once the current request is answered.
    pub fn stop(&mut self) {
        self.stop = true;
    }
}

/// A unit of supervised work. One value lives per incarnation: a restart builds a new one
/// from the factory, so no state survives a failure.
pub trait Worker: Unpin + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;

    /// Handles one request. Runs under `catch_unwind`: a panic is a failure of this worker.
    fn handle(
        &mut self,
        request: Self::Request,
        cx: &mut WorkerContext<'_>,
    ) -> Result<Self::Response, WorkerError>;

    /// Called once when this incarnation stops, for whatever reason.
    fn stopped(&mut self) {}

    /// Group commit: `Some(max)` hands the requests that queue up while one batch is being
    /// handled to [`handle_batch`](Self::handle_batch) together, at most `max` at a time.
    /// Asked once per incarnation, at its first request.
    fn batch_limit(&self) -> Option<usize> {
        None
    }

    /// Group commit: how long the first request of a batch may wait for more to join it
    /// (on the node's clock). Zero hands over what queued up as soon as the mailbox is
    /// drained.
    fn batch_wait(&self) -> Duration {
        Duration::ZERO
    }

    /// Handles several requests at once and answers each, in order: `Err` answers that
    /// one request with a rejection. A `WorkerError::Fatal` fails every request of the
    /// batch and the worker. The default handles them one by one.
    fn handle_batch(
        &mut self,
        requests: Vec<Self::Request>,
        cx: &mut WorkerContext<'_>,
    ) -> Result<Vec<Result<Self::Response, String>>, WorkerError> {
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            out.push(match self.handle(r, cx) {
                Ok(v) => Ok(v),
                Err(WorkerError::Rejected(reason)) => Err(reason),
                Err(fatal) => return Err(fatal),
            });
        }
        Ok(out)
    }
}

/// The text of a caught panic.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}

/// How to run one worker under a supervisor.
pub struct WorkerSpec<F> {
    pub id: String,
    pub restart: RestartType,
    /// How long a graceful stop may take before the worker is killed.
    pub shutdown: Shutdown,
    pub mailbox_capacity: u64,
    /// Builds the worker of each incarnation. An `Err` (or a panic) is a start failure.
    pub factory: F,
}

impl<F> WorkerSpec<F> {
    /// The spec without its factory, and the factory.
    pub(crate) fn split(self) -> (WorkerSpec<()>, F) {
        let spec = WorkerSpec {
            id: self.id,
            restart: self.restart,
            shutdown: self.shutdown,
            mailbox_capacity: self.mailbox_capacity,
            factory: (),
        };
        (spec, self.factory)
    }
}
