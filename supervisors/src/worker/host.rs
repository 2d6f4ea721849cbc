//! The host of one incarnation: the actix actor that owns the worker value, sees its
//! supervisor's stops at the next message, runs every hook and handler under
//! `catch_unwind`, applies injected faults, and tells its supervisor exactly once how it
//! exited.

use super::caller::{Envelope, Reply, WorkerShared};
use super::{panic_message, Worker, WorkerContext, WorkerError};
use crate::clock::SharedClock;
use crate::fault::{Fault, FaultInjector};
use crate::metrics::{ActorHandlerTimes, LocalHandlerTimes};
use crate::supervisor::{kill_requested, ChildControl, Exit, StopLevel};
use crate::CallError;
use actix::prelude::*;
use futures::future::{self, Either};
use prometheus::IntCounter;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// What became of one request the worker was handed.
pub(super) enum Outcome<R> {
    /// Never handled, and counted as dropped here.
    Dropped(String),
    /// Never handled, and already counted as dropped when its mailbox generation ended.
    Unhandled(String),
    Answered(R),
    Rejected(String),
    Failed(String),
}

pub(super) struct Host<W: Worker> {
    pub(super) worker: W,
    /// Which incarnation of the child this host is.
    pub(super) incarnation: u64,
    pub(super) shared: Arc<WorkerShared<W>>,
    pub(super) exit_tx: Option<oneshot::Sender<Exit>>,
    pub(super) exit: Exit,
    pub(super) failed: bool,
    pub(super) stop_rx: watch::Receiver<StopLevel>,
    pub(super) clock: SharedClock,
    pub(super) faults: FaultInjector,
    pub(super) ok: IntCounter,
    pub(super) rejected: IntCounter,
    pub(super) failures: IntCounter,
    pub(super) handler_times: std::rc::Rc<LocalHandlerTimes>,
    /// Requests waiting for the next group commit (batching workers only).
    pub(super) batch: Vec<Envelope<W>>,
    pub(super) flush_scheduled: bool,
    /// The worker's `batch_limit()`, asked at this incarnation's first request.
    pub(super) batch_limit: Option<Option<usize>>,
}

impl<W: Worker> Actor for Host<W> {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        // Handler times are counted on this thread and added to the actor's shared counts
        // every second and at the end, so a message pays no atomic update for them. The
        // flush runs as a task of its own beside the actor: a timer among the actor's own
        // futures would be polled at every message.
        let histogram = std::rc::Rc::downgrade(&self.handler_times);
        actix::spawn(async move {
            loop {
                tokio::time::sleep(HISTOGRAM_FLUSH).await;
                match histogram.upgrade() {
                    Some(h) => h.flush(),
                    None => return,
                }
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // A batch still waiting (the arbiter is going away without a stop) is answered.
        self.drop_batch("the actor stopped before committing this request");
        self.handler_times.flush();
        let worker = &mut self.worker;
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| worker.stopped())) {
            if !self.exit.is_abnormal() {
                self.exit = Exit::Panicked(format!("in stopped(): {}", panic_message(&*p)));
            }
        }
        // Callers see `Unavailable` from here on, until the next incarnation is up; what
        // is still queued for it will never be handled and is counted as dropped.
        self.shared.retire(self.incarnation);
        if let Some(tx) = self.exit_tx.take() {
            let _ = tx.send(self.exit.clone());
        }
    }
}

/// How often a host adds its handler times to the shared histogram.
const HISTOGRAM_FLUSH: Duration = Duration::from_secs(1);

/// The supervisor's stop, delivered as a message so that an idle host sees it without a
/// watcher polled on every wake-up; a busy one sees it sooner, at its next message.
pub(super) struct Stop(pub(super) StopLevel);

impl Message for Stop {
    type Result = ();
}

impl<W: Worker> Handler<Stop> for Host<W> {
    type Result = ();
    fn handle(&mut self, Stop(level): Stop, ctx: &mut Self::Context) {
        // Messages can be overtaken by a later, stronger stop (a kill after a graceful
        // stop): the level set last is the one that holds.
        let now = *self.stop_rx.borrow();
        let level = if now == StopLevel::Kill { now } else { level };
        self.stop_for(level, ctx);
    }
}

impl<W: Worker> Host<W> {
    pub(super) fn stop_for(&mut self, level: StopLevel, ctx: &mut Context<Self>) {
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
            self.drop_batch("the actor was killed before committing this request");
        } else {
            // A graceful stop answers the batch in progress before the worker stops.
            self.flush_batch(ctx);
        }
        ctx.stop();
    }

    /// Answers every request of the batch waiting for its commit with `reason`, counted
    /// as dropped: never left for its callers to find gone.
    pub(super) fn drop_batch(&mut self, reason: &str) {
        for mut env in std::mem::take(&mut self.batch) {
            if let Some(reply) = env.reply.take() {
                self.reply(reply, Outcome::Dropped(reason.to_owned()));
            }
        }
    }

    /// Answers one request with what became of it, and counts it: the one place an
    /// outcome turns into a reply, for single requests and batches alike.
    pub(super) fn reply(&self, reply: Reply<W>, outcome: Outcome<W::Response>) {
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
            Outcome::Dropped(reason) => {
                self.shared.mailbox.dropped.inc();
                Err(CallError::Failed {
                    actor: actor(),
                    reason,
                })
            }
            Outcome::Unhandled(reason) => Err(CallError::Failed {
                actor: actor(),
                reason,
            }),
        };
        let _ = reply.send(answer);
    }

    /// A kill ended the wait of a request the worker held (an injected delay or hang):
    /// it is answered with the error and counted as dropped, never handled.
    fn killed_holding(&mut self, mut env: Envelope<W>) {
        if let Some(reply) = env.reply.take() {
            self.reply(
                reply,
                Outcome::Dropped("the actor was killed before handling this request".into()),
            );
        }
    }

    /// Calls one of the worker's hooks under `catch_unwind`. A panic is a failure of the
    /// worker: the requests it holds are answered with the error, and it stops.
    pub(super) fn hook<T>(
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

    /// The worker's `batch_limit()`, asked once per incarnation under `catch_unwind`.
    fn batch_limit(&mut self, ctx: &mut Context<Self>) -> Result<Option<usize>, String> {
        if let Some(limit) = self.batch_limit {
            return Ok(limit);
        }
        let limit = self.hook("batch_limit()", |w| w.batch_limit(), ctx)?;
        self.batch_limit = Some(limit);
        Ok(limit)
    }

    pub(super) fn fail(&mut self, exit: Exit, ctx: &mut Context<Self>) {
        self.failed = true;
        self.exit = exit;
        ctx.stop();
    }
}

impl<W: Worker> Host<W> {
    /// Handles `env` under `fault`; a `SlowAnswer` holds the answer until `taken_at` (when
    /// the fault was taken, on the supervision clock) plus its wait.
    pub(super) fn process(
        &mut self,
        mut env: Envelope<W>,
        fault: Option<Fault>,
        taken_at: Duration,
        ctx: &mut Context<Self>,
    ) {
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
            self.reply(
                reply,
                Outcome::Dropped("the actor failed before handling this request".into()),
            );
            return;
        }
        // A span costs even when nothing records it: made only when one would be.
        let span = tracing::level_enabled!(tracing::Level::INFO).then(|| {
            tracing::info_span!(
                parent: env.parent.as_ref().and_then(|p| p.id()),
                "actor",
                actor = %self.shared.id,
                correlation_id = env.correlation_id.as_deref().unwrap_or("")
            )
        });
        let _entered = span.as_ref().map(|s| s.enter());
        let mut cx = WorkerContext {
            actor: &self.shared.id,
            correlation_id: env.correlation_id.take(),
            stop: fault == Some(Fault::Exit),
        };
        let started = self.handler_times.now();
        let worker = &mut self.worker;
        let id = &self.shared.id;
        let outcome = catch_unwind(AssertUnwindSafe(|| match fault {
            Some(Fault::Panic) => panic!("injected panic in {id}"),
            Some(Fault::Error) => Err(WorkerError::Fatal(format!("injected error in {id}"))),
            _ => worker.handle(request, &mut cx),
        }));
        self.handler_times
            .observe(started, self.handler_times.now());
        let slow_answer = match fault {
            Some(Fault::SlowAnswer(d)) => Some(d),
            _ => None,
        };
        match (outcome, slow_answer) {
            (Ok(Ok(answer)), Some(d)) => {
                let wait = future::select(
                    self.clock.sleep_until(taken_at + d),
                    Box::pin(kill_requested(self.stop_rx.clone())),
                );
                ctx.wait(wait.into_actor(self).map(move |r, act, _| match r {
                    Either::Left(_) => act.reply(reply, Outcome::Answered(answer)),
                    Either::Right(_) => act.reply(
                        reply,
                        Outcome::Failed("the actor was killed before sending its answer".into()),
                    ),
                }));
            }
            (Ok(Ok(answer)), None) => {
                self.reply(reply, Outcome::Answered(answer));
                if cx.stop {
                    self.exit = Exit::Normal;
                    ctx.stop();
                }
            }
            (Ok(Err(WorkerError::Rejected(reason))), _) => {
                self.reply(reply, Outcome::Rejected(reason));
            }
            (Ok(Err(WorkerError::Fatal(reason))), _) => {
                tracing::warn!(%reason, "actor failed");
                self.reply(reply, Outcome::Failed(reason.clone()));
                self.fail(Exit::Failed(reason), ctx);
            }
            (Err(p), _) => {
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
            // Never handled: counted as dropped, unless its generation has already ended
            // and counted it.
            let counted_here = self.shared.mailbox.give_back(env.generation);
            if let Some(reply) = env.reply.take() {
                let reason = "the actor is stopping".to_owned();
                self.reply(
                    reply,
                    if counted_here {
                        Outcome::Dropped(reason)
                    } else {
                        Outcome::Unhandled(reason)
                    },
                );
            }
            drop(env);
            self.stop_for(level, ctx);
            return;
        }
        // A timed fault counts from before it was taken, and ends at that start plus its
        // wait (`sleep_until`): whoever sees it taken, or this message leave the mailbox,
        // and moves the clock on has moved it past the start of the wait, whenever this
        // thread gets to start it. So the fault is taken before the message's place in
        // the mailbox is given back.
        let taken_at = self.clock.now();
        let fault = if self.failed {
            None
        } else {
            self.faults.take(&self.shared.id)
        };
        self.shared.mailbox.give_back(env.generation);
        match fault {
            Some(Fault::Delay(d)) => {
                // The mailbox is not read while the handler is "busy".
                let wait = future::select(
                    self.clock.sleep_until(taken_at + d),
                    Box::pin(kill_requested(self.stop_rx.clone())),
                );
                ctx.wait(wait.into_actor(self).map(move |r, act, ctx| match r {
                    Either::Left(_) => act.process(env, None, taken_at, ctx),
                    Either::Right(_) => act.killed_holding(env),
                }));
            }
            Some(Fault::Hang) => {
                ctx.wait(
                    kill_requested(self.stop_rx.clone())
                        .into_actor(self)
                        .map(move |_, act, _| act.killed_holding(env)),
                );
            }
            other => match self.batch_limit(ctx) {
                Err(msg) => {
                    if let Some(reply) = env.reply.take() {
                        self.reply(reply, Outcome::Failed(format!("panicked: {msg}")));
                    }
                }
                Ok(Some(max)) if other.is_none() && !self.failed => {
                    self.add_to_batch(env, max, ctx);
                }
                Ok(_) => {
                    self.flush_batch(ctx);
                    self.process(env, other, taken_at, ctx)
                }
            },
        }
    }
}

/// How a supervisor stops one incarnation: the level is set where the host reads it at
/// each message, and a [`Stop`] message reaches a host whose mailbox is empty.
pub(super) struct WorkerControl<W: Worker> {
    pub(super) stop_tx: watch::Sender<StopLevel>,
    pub(super) addr: Addr<Host<W>>,
    pub(super) shared: Arc<WorkerShared<W>>,
    pub(super) incarnation: u64,
}

impl<W: Worker> ChildControl for WorkerControl<W> {
    fn stop(&self, level: StopLevel) {
        let _ = self.stop_tx.send(level);
        // actix's queue is far larger than any mailbox bound, so this is never refused
        // while the host runs; once it has stopped there is nothing to tell.
        let _ = self.addr.try_send(Stop(level));
    }

    fn abandon(&self) {
        self.shared.retire(self.incarnation);
    }
}

impl<W: Worker> Drop for WorkerControl<W> {
    /// A supervisor that lets go of a running child (it is gone, or gave up on the child)
    /// kills it and fences it off: nobody would ever ask it nicely again.
    fn drop(&mut self) {
        let _ = self.addr.try_send(Stop(StopLevel::Kill));
        self.shared.retire(self.incarnation);
    }
}

/// Everything one incarnation's host holds but the worker itself.
pub(super) struct HostParts<W: Worker> {
    pub(super) incarnation: u64,
    pub(super) shared: Arc<WorkerShared<W>>,
    pub(super) exit_tx: oneshot::Sender<Exit>,
    pub(super) stop_rx: watch::Receiver<StopLevel>,
    pub(super) clock: SharedClock,
    pub(super) faults: FaultInjector,
    pub(super) ok: IntCounter,
    pub(super) rejected: IntCounter,
    pub(super) failures: IntCounter,
    pub(super) handler_times: Arc<ActorHandlerTimes>,
}

/// The capacity of actix's own queue: far beyond any Axon mailbox bound (at most 2^20 in
/// config), so that the bound is Axon's counter alone and actix never refuses or parks a
/// sender. Set before the address exists, so no message ever meets actix's default of 16.
const ACTIX_QUEUE: usize = 1 << 40;

impl<W: Worker> Host<W> {
    /// Starts the host in the current arbiter with actix's queue out of the way.
    pub(super) fn spawn(self) -> Addr<Self> {
        let mut ctx = Context::new();
        ctx.set_mailbox_capacity(ACTIX_QUEUE);
        ctx.run(self)
    }
}

impl<W: Worker> HostParts<W> {
    pub(super) fn with(self, worker: W) -> Host<W> {
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
            handler_times: std::rc::Rc::new(LocalHandlerTimes::new(self.handler_times)),
            batch: Vec::new(),
            flush_scheduled: false,
            batch_limit: None,
        }
    }
}
