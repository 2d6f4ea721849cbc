//! A driver as a supervised worker: one [`DriverHost`] per driver instance, built from its
//! manifest, answering the calls of the act pipeline. The host is where a driver's
//! obligations are held around each action ([`act_checked`]: a push for a driver that
//! writes, a pull for one that reads), so no call reaches a driver any other way.

use crate::driver::{act_checked, Call, Driver, Outcome, Prediction, Recorded};
use crate::manifest::{Kind, Manifest};
use crate::obligations::{Obligations, Violation};
use axon_protocols::intent::AxonIntent;
use axon_supervisors::{Worker, WorkerContext, WorkerError};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// What an action asks of its driver.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    pub action_id: String,
    pub intent: AxonIntent,
}

impl Action {
    fn call(&self) -> Call<'_> {
        Call {
            action_id: &self.action_id,
            intent: &self.intent,
        }
    }
}

/// One call to a driver.
#[derive(Clone, Debug)]
pub enum DriverCall {
    /// The twin: what a push would do, with no side effect.
    Predict(Arc<Action>),
    /// The action itself: a push for a driver that writes, a pull for one that reads.
    /// The ticket settles, once, whether it started or was withdrawn by its caller
    /// before it started.
    Act(Arc<Action>, Arc<Ticket>),
    /// Undoes a recorded action.
    Rollback(Box<Recorded>),
}

/// What a driver answered.
#[derive(Clone, Debug, PartialEq)]
pub enum DriverAnswer {
    Prediction(Prediction),
    Outcome(Outcome),
    /// The intent broke the driver's obligations; the driver was not called.
    Refused(Violation),
    /// The caller withdrew the push before it started; the driver was not called.
    Withdrawn,
}

/// Whether a push started: settled once, either by the host as it starts the push or by
/// the caller as it gives up waiting. So a caller whose deadline passed knows for certain
/// whether the side effect can still happen.
#[derive(Debug, Default)]
pub struct Ticket(AtomicU8);

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const WITHDRAWN: u8 = 2;

impl Ticket {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Withdraws the push if it has not started: true when it never will.
    pub fn withdraw(&self) -> bool {
        self.settle(WITHDRAWN) == WITHDRAWN
    }

    /// Starts the push if it was not withdrawn: true when it may run.
    fn start(&self) -> bool {
        self.settle(STARTED) == STARTED
    }

    /// Settles the ticket as `to` unless it is settled already; answers how it is settled.
    fn settle(&self, to: u8) -> u8 {
        match self
            .0
            .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => to,
            Err(now) => now,
        }
    }
}

/// Hosts one driver instance.
pub struct DriverHost {
    driver: Box<dyn Driver>,
    obligations: Obligations,
}

impl DriverHost {
    /// The host of `manifest`'s driver, prepared for it alone (see [`Prepared`]).
    pub fn new(manifest: &Manifest) -> Result<Self, String> {
        Prepared::new(Arc::new(manifest.clone()), 1)?.host()
    }
}

/// What every instance of one driver is made from: its manifest, and what is done once
/// when the manifest is loaded rather than at each start (a wasm module is read, checked
/// against its pinned hash and compiled here, so a module that does not compile stops the
/// load, and a restart starts at once).
#[derive(Debug)]
pub struct Prepared {
    manifest: Arc<Manifest>,
    wasm: Option<crate::wasm::Compiled>,
}

impl Prepared {
    /// Prepares `manifest`'s driver for `instances` instances.
    pub fn new(manifest: Arc<Manifest>, instances: u32) -> Result<Self, String> {
        let wasm = match (manifest.kind, &manifest.wasm_settings) {
            (Kind::Wasm, Some(settings)) => Some(crate::wasm::Compiled::load(
                settings,
                manifest.folder(),
                instances,
            )?),
            (Kind::Wasm, None) => return Err("a wasm driver's manifest has no [wasm]".into()),
            _ => None,
        };
        Ok(Self { manifest, wasm })
    }

    /// The same preparation, a wasm driver's run in `node` (its stops counted there, on
    /// its clock).
    pub fn in_node(mut self, node: &crate::wasm::InNode) -> Self {
        self.wasm = self.wasm.map(|c| c.in_node(node));
        self
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// A fresh host of the driver (each incarnation starts clean).
    pub fn host(&self) -> Result<DriverHost, String> {
        Ok(DriverHost {
            driver: self.driver()?,
            obligations: self.manifest.obligations.clone(),
        })
    }

    /// A fresh instance of the driver.
    pub fn driver(&self) -> Result<Box<dyn Driver>, String> {
        let manifest = &*self.manifest;
        Ok(match (manifest.kind, &manifest.file_settings) {
            (Kind::Echo, _) => Box::new(crate::echo::Echo::new(manifest.descriptor())),
            (Kind::File, Some(settings)) => Box::new(crate::file::FileDriver::open(
                manifest.descriptor(),
                settings,
                manifest.folder(),
            )?),
            (Kind::File, None) => return Err("a file driver's manifest has no [file]".into()),
            (Kind::Http, _) => match &manifest.http_settings {
                Some(settings) => Box::new(crate::http::HttpDriver::new(
                    manifest.descriptor(),
                    settings,
                    manifest.folder(),
                )?),
                None => return Err("an http driver's manifest has no [http]".into()),
            },
            (Kind::Wasm, _) => match &self.wasm {
                Some(compiled) => Box::new(crate::wasm::WasmDriver::new(
                    manifest.descriptor(),
                    compiled,
                )?),
                None => return Err("a wasm driver's manifest has no [wasm]".into()),
            },
        })
    }
}

/// The driver `manifest` describes, prepared for it alone.
pub fn build(manifest: &Manifest) -> Result<Box<dyn Driver>, String> {
    Prepared::new(Arc::new(manifest.clone()), 1)?.driver()
}

impl Worker for DriverHost {
    type Request = DriverCall;
    type Response = DriverAnswer;

    fn handle(
        &mut self,
        call: DriverCall,
        _cx: &mut WorkerContext,
    ) -> Result<DriverAnswer, WorkerError> {
        Ok(match call {
            DriverCall::Predict(action) => {
                DriverAnswer::Prediction(self.driver.predict(&action.call()))
            }
            DriverCall::Act(_, ticket) if !ticket.start() => DriverAnswer::Withdrawn,
            DriverCall::Act(action, _) => {
                match act_checked(&mut *self.driver, &self.obligations, &action.call()) {
                    Ok(outcome) => DriverAnswer::Outcome(outcome),
                    Err(v) => DriverAnswer::Refused(v),
                }
            }
            DriverCall::Rollback(recorded) => {
                DriverAnswer::Outcome(self.driver.rollback(&recorded))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn intent(args: Value) -> Arc<Action> {
        Arc::new(Action {
            action_id: "0".repeat(32),
            intent: serde_json::from_value(
                json!({"capability": "urn:axon:cap:echo", "args": args}),
            )
            .unwrap(),
        })
    }

    #[test]
    fn the_echo_host_predicts_and_pushes_the_arguments() {
        let mut host = DriverHost::new(crate::builtin_manifest("echo").unwrap()).unwrap();
        let mut cx = WorkerContext::new("echo", None);
        let args = json!({"a": [1, 2]});
        let p = host
            .handle(DriverCall::Predict(intent(args.clone())), &mut cx)
            .unwrap();
        assert_eq!(
            p,
            DriverAnswer::Prediction(Prediction::Expected {
                output: args.clone(),
                utility: 1.0
            })
        );
        let ticket = Ticket::new();
        let o = host
            .handle(
                DriverCall::Act(intent(args.clone()), ticket.clone()),
                &mut cx,
            )
            .unwrap();
        assert_eq!(o, DriverAnswer::Outcome(Outcome::ok(args.clone())));
        assert!(!ticket.withdraw(), "a started push cannot be withdrawn");
    }

    #[test]
    fn a_withdrawn_push_never_reaches_the_driver() {
        let mut host = DriverHost::new(crate::builtin_manifest("echo").unwrap()).unwrap();
        let mut cx = WorkerContext::new("echo", None);
        let ticket = Ticket::new();
        assert!(ticket.withdraw());
        assert!(
            ticket.withdraw(),
            "withdrawing twice still says it never runs"
        );
        let a = host
            .handle(DriverCall::Act(intent(json!(1)), ticket), &mut cx)
            .unwrap();
        assert_eq!(a, DriverAnswer::Withdrawn);
    }
}
