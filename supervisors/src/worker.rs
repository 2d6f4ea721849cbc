//! Workers: the actors that do the work, each hosted in an actix actor that bounds its
//! mailbox, catches every panic, applies injected faults, measures itself and tells its
//! supervisor exactly once how it exited.

use crate::clock::SharedClock;
use crate::fault::{Fault, FaultInjector};
use crate::metrics::Metrics;
use crate::supervisor::{ChildControl, ChildSpec, Exit, Running, Shutdown, StopLevel};
use crate::tree::{Mailbox, TreeNode};
use crate::Env;
use actix::prelude::*;
use axon_protocols::{ChildKind, NodeStatus, RestartType};
use futures::future::{self, Either};
use prometheus::{Histogram, IntCounter};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

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

/// Why a call did not get an answer from the worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("actor {actor} is overloaded: its mailbox holds its limit of {capacity} messages")]
    Overloaded { actor: String, capacity: u64 },
    #[error("actor {actor} is {status}, not running")]
    Unavailable { actor: String, status: NodeStatus },
    #[error("actor {actor} did not answer within {after:?}")]
    Timeout { actor: String, after: Duration },
    #[error("actor {actor} failed: {reason}")]
    Failed { actor: String, reason: String },
    #[error("actor {actor} refused the request: {reason}")]
    Rejected { actor: String, reason: String },
}

/// Per-call options.
#[derive(Clone, Debug)]
pub struct CallOptions {
    /// How long the caller waits for the answer.
    pub deadline: Duration,
    pub correlation_id: Option<Arc<str>>,
}

/// The address of a supervised worker, stable across its restarts.
pub struct WorkerRef<W: Worker> {
    shared: Arc<WorkerShared<W>>,
}

impl<W: Worker> Clone for WorkerRef<W> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct WorkerShared<W: Worker> {
    id: Arc<str>,
    node: Arc<TreeNode>,
    mailbox: Arc<Mailbox>,
    /// The running incarnation's number and address: an incarnation only ever clears its
    /// own, so a stale one (abandoned, ending late) can never blank its successor's.
    addr: RwLock<Option<(u64, Addr<Host<W>>)>>,
    /// Incarnations started so far.
    incarnations: std::sync::atomic::AtomicU64,
    overloaded: IntCounter,
    unavailable: IntCounter,
    timeouts: IntCounter,
}

impl<W: Worker> WorkerRef<W> {
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The live tree node of this worker.
    pub fn node(&self) -> &Arc<TreeNode> {
        &self.shared.node
    }

    /// Sends `request` and waits for the answer until the deadline. Never queues beyond
    /// the mailbox's capacity: a full mailbox is [`CallError::Overloaded`] at once.
    pub async fn call(
        &self,
        request: W::Request,
        opts: &CallOptions,
    ) -> Result<W::Response, CallError> {
        let s = &self.shared;
        let rx = self.enqueue(request, opts)?;
        match tokio::time::timeout(opts.deadline, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(CallError::Failed {
                actor: s.id.to_string(),
                reason: "the actor stopped before answering this request".into(),
            }),
            Err(_) => {
                s.timeouts.inc();
                Err(CallError::Timeout {
                    actor: s.id.to_string(),
                    after: opts.deadline,
                })
            }
        }
    }

    /// Puts `request` in the mailbox if there is room; returns where the answer arrives.
    #[allow(clippy::type_complexity)]
    fn enqueue(
        &self,
        request: W::Request,
        opts: &CallOptions,
    ) -> Result<oneshot::Receiver<Result<W::Response, CallError>>, CallError> {
        let s = &self.shared;
        let addr_guard = s.addr.read().unwrap_or_else(|e| e.into_inner());
        let Some((_, addr)) = addr_guard.as_ref() else {
            drop(addr_guard);
            return Err(self.unavailable());
        };
        let Some(generation) = s.mailbox.try_take() else {
            drop(addr_guard);
            s.overloaded.inc();
            return Err(CallError::Overloaded {
                actor: s.id.to_string(),
                capacity: s.mailbox.capacity,
            });
        };
        let (tx, rx) = oneshot::channel();
        let env = Envelope {
            request: Some(request),
            reply: Some(tx),
            correlation_id: opts.correlation_id.clone(),
            parent: tracing::Span::current(),
            ticket: Ticket {
                mailbox: s.mailbox.clone(),
                generation,
                taken: false,
            },
        };
        let sent = addr.try_send(env);
        drop(addr_guard);
        if let Err(e) = sent {
            // The envelope comes back inside the error and is dropped here, which returns
            // its mailbox slot; it was never accepted, so it is not counted as dropped.
            let mut env = match e {
                SendError::Full(env) | SendError::Closed(env) => env,
            };
            env.ticket.take();
            let full = s.mailbox.depth() >= s.mailbox.capacity;
            return Err(if full {
                s.overloaded.inc();
                CallError::Overloaded {
                    actor: s.id.to_string(),
                    capacity: s.mailbox.capacity,
                }
            } else {
                self.unavailable()
            });
        }
        Ok(rx)
    }

    fn unavailable(&self) -> CallError {
        self.shared.unavailable.inc();
        CallError::Unavailable {
            actor: self.shared.id.to_string(),
            status: self.shared.node.status(),
        }
    }
}

/// Where one request's answer goes.
type Reply<W> = oneshot::Sender<Result<<W as Worker>::Response, CallError>>;

/// What became of one request the worker was handed.
enum Outcome<R> {
    Answered(R),
    Rejected(String),
    Failed(String),
}

/// One queued request. Its ticket holds a mailbox slot until the host takes it.
struct Envelope<W: Worker> {
    request: Option<W::Request>,
    reply: Option<oneshot::Sender<Result<W::Response, CallError>>>,
    correlation_id: Option<Arc<str>>,
    /// The caller's span: the actor's span is its child.
    parent: tracing::Span,
    ticket: Ticket,
}

// Envelopes are moved, never pinned in place.
impl<W: Worker> Unpin for Envelope<W> {}

impl<W: Worker> Message for Envelope<W> {
    type Result = ();
}

/// A mailbox slot. Taken when the host starts on the message; a ticket dropped untaken
/// (its actor stopped with it queued) frees the slot and counts the message as dropped.
struct Ticket {
    mailbox: Arc<Mailbox>,
    /// The incarnation's generation the slot counts in.
    generation: u64,
    taken: bool,
}

impl Ticket {
    fn take(&mut self) {
        if !self.taken {
            self.taken = true;
            self.mailbox.give_back(self.generation);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.taken {
            self.take();
            self.mailbox.dropped.inc();
        }
    }
}

struct Host<W: Worker> {
    worker: W,
    /// Which incarnation of the child this host is.
    incarnation: u64,
    shared: Arc<WorkerShared<W>>,
    exit_tx: Option<oneshot::Sender<Exit>>,
    exit: Exit,
    failed: bool,
    stop_rx: watch::Receiver<StopLevel>,
    clock: SharedClock,
    faults: FaultInjector,
    ok: IntCounter,
    rejected: IntCounter,
    failures: IntCounter,
    handler_seconds: Histogram,
    /// Requests waiting for the next group commit (batching workers only).
    batch: Vec<Envelope<W>>,
    flush_scheduled: bool,
}

impl<W: Worker> Actor for Host<W> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let mut rx = self.stop_rx.clone();
        let wait_for_stop = async move {
            loop {
                let level = *rx.borrow_and_update();
                if level != StopLevel::Run {
                    return level;
                }
                if rx.changed().await.is_err() {
                    // The supervisor is gone: nobody will ever ask nicely.
                    return StopLevel::Kill;
                }
            }
        };
        ctx.spawn(
            wait_for_stop
                .into_actor(self)
                .map(|level, act, ctx| act.stop_for(level, ctx)),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        let worker = &mut self.worker;
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| worker.stopped())) {
            if !self.exit.is_abnormal() {
                self.exit = Exit::Panicked(format!("in stopped(): {}", panic_message(&*p)));
            }
        }
        // Callers see `Unavailable` from here on, until the next incarnation is up; an
        // incarnation that is no longer the current one leaves its successor alone.
        let mut addr = self.shared.addr.write().unwrap_or_else(|e| e.into_inner());
        if addr.as_ref().is_some_and(|(n, _)| *n == self.incarnation) {
            *addr = None;
        }
        drop(addr);
        if let Some(tx) = self.exit_tx.take() {
            let _ = tx.send(self.exit.clone());
        }
    }
}

/// Completes when the supervisor asks for a kill (or is gone).
async fn killed(mut rx: watch::Receiver<StopLevel>) {
    loop {
        if *rx.borrow_and_update() == StopLevel::Kill {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl<W: Worker> Host<W> {
    fn stop_for(&mut self, level: StopLevel, ctx: &mut Context<Self>) {
        if !self.exit.is_abnormal() {
            self.exit = if level == StopLevel::Kill {
                Exit::Killed
            } else {
                Exit::Shutdown
            };
        }
        if level == StopLevel::Kill {
            // Killed: the batch waiting for its commit is answered with the error and
            // counted, never left for its callers to find dropped.
            for mut env in std::mem::take(&mut self.batch) {
                if let Some(reply) = env.reply.take() {
                    self.shared.mailbox.dropped.inc();
                    let _ = reply.send(Err(CallError::Failed {
                        actor: self.shared.id.to_string(),
                        reason: "the actor was killed before committing this request".into(),
                    }));
                }
            }
        } else {
            // A graceful stop answers the batch in progress before the worker stops.
            self.flush_batch(ctx);
        }
        ctx.stop();
    }

    /// Answers one request with what became of it, and counts it: the one place an
    /// outcome turns into a reply, for single requests and batches alike.
    fn reply(&self, reply: Reply<W>, outcome: Outcome<W::Response>) {
        let actor = || self.shared.id.to_string();
        let answer = match outcome {
            Outcome::Answered(v) => {
                self.ok.inc();
                Ok(v)
            }
            Outcome::Rejected(reason) => {
                self.rejected.inc();
                Err(CallError::Rejected {
                    actor: actor(),
                    reason,
                })
            }
            Outcome::Failed(reason) => {
                self.failures.inc();
                Err(CallError::Failed {
                    actor: actor(),
                    reason,
                })
            }
        };
        let _ = reply.send(answer);
    }

    /// Calls one of the worker's hooks under `catch_unwind`. A panic is a failure of the
    /// worker: the requests it holds are answered with the error, and it stops.
    fn hook<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&W) -> T,
        ctx: &mut Context<Self>,
    ) -> Result<T, String> {
        let worker = &self.worker;
        match catch_unwind(AssertUnwindSafe(|| f(worker))) {
            Ok(v) => Ok(v),
            Err(p) => {
                let msg = format!("in {name}: {}", panic_message(&*p));
                tracing::warn!(actor = %self.shared.id, panic = %msg, "actor panicked");
                for mut env in std::mem::take(&mut self.batch) {
                    if let Some(reply) = env.reply.take() {
                        self.reply(reply, Outcome::Failed(format!("panicked: {msg}")));
                    }
                }
                self.fail(Exit::Panicked(msg.clone()), ctx);
                Err(msg)
            }
        }
    }

    fn fail(&mut self, exit: Exit, ctx: &mut Context<Self>) {
        self.failed = true;
        self.exit = exit;
        ctx.stop();
    }

    /// Hands the queued batch to the worker and answers every request of it.
    fn flush_batch(&mut self, ctx: &mut Context<Self>) {
        if self.batch.is_empty() {
            return;
        }
        let envs = std::mem::take(&mut self.batch);
        let mut replies = Vec::with_capacity(envs.len());
        let mut requests = Vec::with_capacity(envs.len());
        let mut spans = Vec::with_capacity(envs.len());
        for mut env in envs {
            if env.reply.as_ref().is_some_and(|r| r.is_closed()) {
                // The caller has gone: nobody waits for this request's effect.
                self.shared.mailbox.abandoned.inc();
                continue;
            }
            if let (Some(req), Some(reply)) = (env.request.take(), env.reply.take()) {
                spans.push(tracing::info_span!(
                    parent: &env.parent,
                    "actor",
                    actor = %self.shared.id,
                    correlation_id = env.correlation_id.as_deref().unwrap_or(""),
                    batch = tracing::field::Empty
                ));
                requests.push(req);
                replies.push(reply);
            }
        }
        let n = requests.len();
        if n == 0 {
            return;
        }
        for span in &spans {
            span.record("batch", n);
        }
        let mut cx = WorkerContext {
            actor: &self.shared.id,
            correlation_id: None,
            stop: false,
        };
        let started = Instant::now();
        let worker = &mut self.worker;
        let outcome = catch_unwind(AssertUnwindSafe(|| worker.handle_batch(requests, &mut cx)));
        self.handler_seconds
            .observe(started.elapsed().as_secs_f64());
        let stop = cx.stop;
        let failure = match outcome {
            Ok(Ok(answers)) if answers.len() == n => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let outcome = match answer {
                        Ok(v) => Outcome::Answered(v),
                        Err(reason) => Outcome::Rejected(reason),
                    };
                    self.reply(reply, outcome);
                }
                if stop {
                    self.exit = Exit::Normal;
                    ctx.stop();
                }
                return;
            }
            Ok(Ok(answers)) => Exit::Failed(format!(
                "handle_batch answered {} of {n} requests",
                answers.len()
            )),
            Ok(Err(e)) => Exit::Failed(e.to_string()),
            Err(p) => Exit::Panicked(panic_message(&*p)),
        };
        tracing::warn!(actor = %self.shared.id, exit = %failure, "actor failed");
        for reply in replies {
            self.reply(reply, Outcome::Failed(failure.to_string()));
        }
        self.fail(failure, ctx);
    }

    fn process(&mut self, mut env: Envelope<W>, fault: Option<Fault>, ctx: &mut Context<Self>) {
        let (Some(request), Some(reply)) = (env.request.take(), env.reply.take()) else {
            return;
        };
        if reply.is_closed() {
            // The caller has gone (its deadline passed, or it dropped the call): skipped
            // and counted, never executed, since nobody waits for its effect.
            self.shared.mailbox.abandoned.inc();
            return;
        }
        if self.failed {
            // Queued behind a failure: answered with an error, never replayed.
            self.shared.mailbox.dropped.inc();
            let _ = reply.send(Err(CallError::Failed {
                actor: self.shared.id.to_string(),
                reason: "the actor failed before handling this request".into(),
            }));
            return;
        }
        let span = tracing::info_span!(
            parent: &env.parent,
            "actor",
            actor = %self.shared.id,
            correlation_id = env.correlation_id.as_deref().unwrap_or("")
        );
        let _entered = span.enter();
        let mut cx = WorkerContext {
            actor: &self.shared.id,
            correlation_id: env.correlation_id.take(),
            stop: fault == Some(Fault::Exit),
        };
        let started = Instant::now();
        let worker = &mut self.worker;
        let id = &self.shared.id;
        let outcome = catch_unwind(AssertUnwindSafe(|| match fault {
            Some(Fault::Panic) => panic!("injected panic in {id}"),
            Some(Fault::Error) => Err(WorkerError::Fatal(format!("injected error in {id}"))),
            _ => worker.handle(request, &mut cx),
        }));
        self.handler_seconds
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok(answer)) => {
                self.reply(reply, Outcome::Answered(answer));
                if cx.stop {
                    self.exit = Exit::Normal;
                    ctx.stop();
                }
            }
            Ok(Err(WorkerError::Rejected(reason))) => {
                self.reply(reply, Outcome::Rejected(reason));
            }
            Ok(Err(WorkerError::Fatal(reason))) => {
                tracing::warn!(%reason, "actor failed");
                self.reply(reply, Outcome::Failed(reason.clone()));
                self.fail(Exit::Failed(reason), ctx);
            }
            Err(p) => {
                let msg = panic_message(&*p);
                tracing::warn!(panic = %msg, "actor panicked");
                self.reply(reply, Outcome::Failed(format!("panicked: {msg}")));
                self.fail(Exit::Panicked(msg), ctx);
            }
        }
    }
}

impl<W: Worker> Handler<Envelope<W>> for Host<W> {
    type Result = ();

    fn handle(&mut self, mut env: Envelope<W>, ctx: &mut Self::Context) {
        // A stop is seen at the next message, not once the mailbox is empty: what is
        // still queued is answered with an error and counted (dropped), never executed.
        // `has_changed` is one atomic load: this receiver has seen only `Run`, so any
        // change is a stop (and a gone supervisor is a kill).
        let level = match self.stop_rx.has_changed() {
            Ok(false) => StopLevel::Run,
            Ok(true) => *self.stop_rx.borrow(),
            Err(_) => StopLevel::Kill,
        };
        if level != StopLevel::Run {
            if let Some(reply) = env.reply.take() {
                let _ = reply.send(Err(CallError::Failed {
                    actor: self.shared.id.to_string(),
                    reason: "the actor is stopping".into(),
                }));
            }
            drop(env);
            self.stop_for(level, ctx);
            return;
        }
        env.ticket.take();
        let fault = if self.failed {
            None
        } else {
            self.faults.take(&self.shared.id)
        };
        match fault {
            Some(Fault::Delay(d)) => {
                // The mailbox is not read while the handler is "busy".
                let wait =
                    future::select(self.clock.sleep(d), Box::pin(killed(self.stop_rx.clone())));
                ctx.wait(wait.into_actor(self).map(move |r, act, ctx| {
                    if let Either::Left(_) = r {
                        act.process(env, None, ctx);
                    }
                    // Killed: the envelope drops and its caller gets an error.
                }));
            }
            Some(Fault::Hang) => {
                ctx.wait(
                    killed(self.stop_rx.clone())
                        .into_actor(self)
                        .map(move |_, _, _| drop(env)),
                );
            }
            other => match self.hook("batch_limit()", |w| w.batch_limit(), ctx) {
                Err(msg) => {
                    if let Some(reply) = env.reply.take() {
                        self.reply(reply, Outcome::Failed(format!("panicked: {msg}")));
                    }
                }
                Ok(Some(max)) if other.is_none() && !self.failed => {
                    self.batch.push(env);
                    if self.batch.len() >= max.max(1) {
                        self.flush_batch(ctx);
                    } else if !self.flush_scheduled {
                        // Runs once the mailbox is drained (and the batch wait is over):
                        // what queued meanwhile commits together.
                        let Ok(wait) = self.hook("batch_wait()", |w| w.batch_wait(), ctx) else {
                            return;
                        };
                        self.flush_scheduled = true;
                        let ready = if wait.is_zero() {
                            Box::pin(future::ready(())) as futures::future::BoxFuture<'static, ()>
                        } else {
                            self.clock.sleep(wait)
                        };
                        ctx.spawn(ready.into_actor(self).map(|_, act: &mut Self, ctx| {
                            act.flush_scheduled = false;
                            act.flush_batch(ctx);
                        }));
                    }
                }
                Ok(_) => {
                    self.flush_batch(ctx);
                    self.process(env, other, ctx)
                }
            },
        }
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

struct WorkerControl {
    stop_tx: watch::Sender<StopLevel>,
}

impl ChildControl for WorkerControl {
    fn stop(&self, level: StopLevel) {
        let _ = self.stop_tx.send(level);
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

/// Everything one incarnation's host holds but the worker itself.
struct HostParts<W: Worker> {
    incarnation: u64,
    shared: Arc<WorkerShared<W>>,
    exit_tx: oneshot::Sender<Exit>,
    stop_rx: watch::Receiver<StopLevel>,
    clock: SharedClock,
    faults: FaultInjector,
    ok: IntCounter,
    rejected: IntCounter,
    failures: IntCounter,
    handler_seconds: Histogram,
}

/// The capacity of actix's own queue: far beyond any Axon mailbox bound (at most 2^20 in
/// config), so that the bound is Axon's counter alone and actix never refuses or parks a
/// sender. Set before the address exists, so no message ever meets actix's default of 16.
const ACTIX_QUEUE: usize = 1 << 40;

impl<W: Worker> Host<W> {
    /// Starts the host in the current arbiter with actix's queue out of the way.
    fn spawn(self) -> Addr<Self> {
        let mut ctx = Context::new();
        ctx.set_mailbox_capacity(ACTIX_QUEUE);
        ctx.run(self)
    }
}

impl<W: Worker> HostParts<W> {
    fn with(self, worker: W) -> Host<W> {
        Host {
            worker,
            incarnation: self.incarnation,
            shared: self.shared,
            exit_tx: Some(self.exit_tx),
            exit: Exit::Shutdown,
            failed: false,
            stop_rx: self.stop_rx,
            clock: self.clock,
            faults: self.faults,
            ok: self.ok,
            rejected: self.rejected,
            failures: self.failures,
            handler_seconds: self.handler_seconds,
            batch: Vec::new(),
            flush_scheduled: false,
        }
    }
}

/// Calls a worker factory, turning a panic into a start failure.
fn build<W>(factory: &dyn Fn() -> Result<W, String>) -> Result<W, String> {
    match catch_unwind(AssertUnwindSafe(factory)) {
        Ok(r) => r,
        Err(p) => Err(format!("panicked while starting: {}", panic_message(&*p))),
    }
}

/// Builds the worker of one incarnation and starts its host somewhere; completes with the
/// host's address.
type Place<W> = Rc<
    dyn Fn(HostParts<W>) -> futures::future::LocalBoxFuture<'static, Result<Addr<Host<W>>, String>>,
>;

/// Builds the child spec of a worker and the stable address callers use. The worker runs
/// on its supervisor's thread, so its handler must not block.
pub fn worker<W, F>(env: &Env, spec: WorkerSpec<F>) -> (ChildSpec, WorkerRef<W>)
where
    W: Worker,
    F: Fn() -> Result<W, String> + 'static,
{
    let factory = Rc::new(spec.factory);
    let spec = WorkerSpec {
        id: spec.id,
        restart: spec.restart,
        shutdown: spec.shutdown,
        mailbox_capacity: spec.mailbox_capacity,
        factory: (),
    };
    worker_placed(
        env,
        spec,
        Rc::new(move |parts: HostParts<W>| {
            let started = build(&*factory).map(|w| parts.with(w).spawn());
            Box::pin(futures::future::ready(started))
        }),
    )
}

/// Stops an arbiter's thread when the last incarnation's spec is gone.
struct OwnThread(actix::Arbiter);

impl Drop for OwnThread {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Like [`worker`], but the worker is built and runs on a thread of its own (kept across
/// restarts), so its factory and its handler may block — opening and checking a large
/// file, waiting on `fdatasync` — without holding up the rest of the tree.
pub fn worker_on_own_thread<W, F>(env: &Env, spec: WorkerSpec<F>) -> (ChildSpec, WorkerRef<W>)
where
    W: Worker + Send,
    W::Response: Send,
    F: Fn() -> Result<W, String> + Send + Sync + 'static,
{
    let factory = Arc::new(spec.factory);
    let spec = WorkerSpec {
        id: spec.id,
        restart: spec.restart,
        shutdown: spec.shutdown,
        mailbox_capacity: spec.mailbox_capacity,
        factory: (),
    };
    let thread: Rc<std::cell::RefCell<Option<OwnThread>>> = Rc::default();
    worker_placed(
        env,
        spec,
        Rc::new(move |parts: HostParts<W>| {
            // A fresh thread for each incarnation: one abandoned while stuck in its handler
            // keeps its own thread, and the successor never waits behind it.
            let mut t = thread.borrow_mut();
            let arbiter = t.insert(OwnThread(actix::Arbiter::new()));
            let factory = factory.clone();
            let (tx, rx) = oneshot::channel();
            let sent = arbiter.0.spawn(async move {
                let started = build(&*factory).map(|w| parts.with(w).spawn());
                let _ = tx.send(started);
            });
            Box::pin(async move {
                if !sent {
                    return Err("the worker's thread is gone".to_owned());
                }
                rx.await.unwrap_or_else(|_| {
                    Err("the worker's thread ended while starting it".to_owned())
                })
            })
        }),
    )
}

fn worker_placed<W>(env: &Env, spec: WorkerSpec<()>, place: Place<W>) -> (ChildSpec, WorkerRef<W>)
where
    W: Worker,
{
    let m: &Metrics = &env.metrics;
    let id: Arc<str> = Arc::from(spec.id.as_str());
    let mailbox = Arc::new(Mailbox::new(
        spec.mailbox_capacity,
        m.messages.with_label_values(&[&spec.id, "dropped"]),
        m.messages.with_label_values(&[&spec.id, "abandoned"]),
    ));
    m.mailbox_depth.add(&spec.id, mailbox.clone());
    let node = TreeNode::new(
        spec.id.clone(),
        ChildKind::Worker,
        None,
        Some(spec.restart),
        Some(mailbox.clone()),
    );
    m.mailbox_capacity
        .with_label_values(&[&spec.id])
        .set(spec.mailbox_capacity as i64);
    let shared = Arc::new(WorkerShared {
        id: id.clone(),
        node: node.clone(),
        mailbox,
        addr: RwLock::new(None),
        incarnations: Default::default(),
        overloaded: m.rejections.with_label_values(&[&spec.id, "overloaded"]),
        unavailable: m.rejections.with_label_values(&[&spec.id, "unavailable"]),
        timeouts: m.call_timeouts.with_label_values(&[&spec.id]),
    });
    let env2 = env.clone();
    let shared2 = shared.clone();
    let start = Rc::new(move || {
        let shared = shared2.clone();
        let env = env2.clone();
        let place = place.clone();
        Box::pin(async move {
            let (exit_tx, exit_rx) = oneshot::channel();
            let (stop_tx, stop_rx) = watch::channel(StopLevel::Run);
            let a = shared.id.as_ref();
            let incarnation = shared.incarnations.fetch_add(1, Ordering::AcqRel) + 1;
            let parts = HostParts {
                incarnation,
                shared: shared.clone(),
                exit_tx,
                stop_rx,
                clock: env.clock.clone(),
                faults: env.faults.clone(),
                ok: env.metrics.messages.with_label_values(&[a, "ok"]),
                rejected: env.metrics.messages.with_label_values(&[a, "rejected"]),
                failures: env.metrics.messages.with_label_values(&[a, "failed"]),
                handler_seconds: env.metrics.handler_seconds.with_label_values(&[a]),
            };
            let addr = place(parts).await?;
            // The new incarnation's mailbox count starts at zero and its address goes up
            // together, under the lock every sender holds while it takes a slot and sends.
            let mut slot = shared.addr.write().unwrap_or_else(|e| e.into_inner());
            shared.mailbox.next_generation();
            *slot = Some((incarnation, addr));
            drop(slot);
            Ok(Running {
                control: Box::new(WorkerControl { stop_tx }),
                exit: exit_rx,
            })
        }) as futures::future::LocalBoxFuture<'static, Result<Running, String>>
    });
    let child = ChildSpec {
        id: spec.id,
        restart: spec.restart,
        shutdown: spec.shutdown,
        kind: ChildKind::Worker,
        node,
        start,
    };
    (child, WorkerRef { shared })
}
