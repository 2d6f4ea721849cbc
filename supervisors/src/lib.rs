//! `axon-supervisors`: Axon's OTP-style supervision runtime on actix.
//!
//! What is here: child specs with restart types and shutdown timeouts; the strategies
//! `one_for_one`, `one_for_all` and `rest_for_one`; restart intensity with escalation;
//! exponential backoff with jitter; workers hosted in actix actors with bounded mailboxes,
//! every handler under `catch_unwind`; fault injection; the live tree and its metrics.
//! The contract it implements is `SUPERVISION.md`.
//!
//! Architecture invariant: this crate knows children and their health, never what a child
//! does — no business rules, no HTTP, no drivers. Time comes from an injected [`Clock`] and
//! randomness from a seed, so every decision can be replayed in a test.
//!
//! ```
//! use axon_supervisors::*;
//! use std::time::Duration;
//!
//! struct Echo;
//! impl Worker for Echo {
//!     type Request = String;
//!     type Response = String;
//!     fn handle(&mut self, r: String, _: &mut WorkerContext) -> Result<String, WorkerError> {
//!         Ok(r)
//!     }
//! }
//!
//! actix::System::new().block_on(async {
//!     let env = Env::new(&prometheus::Registry::new(), SystemClock::shared(), 7).unwrap();
//!     let (child, echo) = worker(&env, WorkerSpec {
//!         id: "echo".into(),
//!         restart: RestartType::Permanent,
//!         shutdown: Shutdown::Timeout(Duration::from_secs(5)),
//!         mailbox_capacity: 16,
//!         factory: || Ok(Echo),
//!     });
//!     let root = start_root(&env, SupervisorSpec {
//!         id: "root".into(),
//!         strategy: Strategy::OneForOne,
//!         intensity: Intensity { max_restarts: 3, period: Duration::from_secs(5) },
//!         backoff: BackoffPolicy::none(),
//!         command_capacity: 8,
//!         children: vec![child],
//!     }).await.unwrap();
//!     let opts = CallOptions { deadline: Duration::from_secs(1), correlation_id: None };
//!     assert_eq!(echo.call("hi".into(), &opts).await.unwrap(), "hi");
//!     root.stop(StopLevel::Graceful);
//!     assert_eq!(root.exit.await.unwrap(), Exit::Shutdown);
//! });
//! ```

pub mod backoff;
pub mod clock;
pub mod fault;
pub mod health;
pub mod metrics;
pub mod scorecard;
pub mod supervisor;
pub mod tree;
pub mod trial;
pub mod uplift;
pub mod worker;

pub use axon_protocols::{ChildKind, NodeStatus, RestartType, Strategy};
pub use backoff::{BackoffPolicy, BackoffState};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use fault::{Fault, FaultInjector};
pub use health::{Check, CheckSettings, CheckState, HealthWatch, Slo, Trip, Verdict};
pub use metrics::Metrics;
pub use scorecard::{Agreement, Mirrored, Sample, Scorecard, ScorecardConfig, ScorecardReport};
pub use supervisor::{
    add_children, request_failure, request_restart, restart_actor, start_root, supervisor,
    supervisor_with_room, AddError, Bounds, BuildChildren, ChildControl, ChildSpec, Command, Exit,
    Intensity, Isolation, RestartError, Root, RootSpec, Running, Shutdown, StartError, StartFn,
    StopLevel, SupervisorSpec,
};
pub use tree::{Mailbox, TreeNode};
pub use trial::{Breaker, Placement, TrialEvent, TrialPolicy};
pub use uplift::Uplift;
pub use worker::{
    worker, worker_on_own_thread, CallError, CallOptions, Permit, Sent, Worker, WorkerContext,
    WorkerError, WorkerRef, WorkerSpec,
};

/// What every supervisor and worker of one node shares: the clock, the metrics, the
/// armed faults and the seed of backoff jitter.
#[derive(Clone)]
pub struct Env {
    pub clock: SharedClock,
    pub metrics: Metrics,
    pub faults: FaultInjector,
    pub seed: u64,
    /// How long kills and starts may take.
    pub bounds: Bounds,
}

impl Env {
    /// An environment whose metrics are registered in `registry`.
    pub fn new(
        registry: &prometheus::Registry,
        clock: SharedClock,
        seed: u64,
    ) -> prometheus::Result<Self> {
        Ok(Self {
            clock,
            metrics: Metrics::new(registry)?,
            faults: FaultInjector::new(),
            seed,
            bounds: Bounds::default(),
        })
    }
}
