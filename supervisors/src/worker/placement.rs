//! Where an incarnation runs — on its supervisor's thread, or on a fresh thread of its
//! own — and how a worker becomes a child spec with a stable address.

use super::caller::{WorkerRef, WorkerShared};
use super::host::{Host, HostParts, WorkerControl};
use super::{panic_message, Worker, WorkerSpec};
use crate::metrics::Metrics;
use crate::supervisor::{ChildSpec, Running, StartError, StopLevel};
use crate::tree::{Mailbox, TreeNode};
use crate::Env;
use actix::prelude::*;
use axon_protocols::ChildKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use tokio::sync::{oneshot, watch};

/// Calls a worker factory, turning a panic into a start failure.
fn build<W>(factory: &dyn Fn() -> Result<W, String>) -> Result<W, StartError> {
    match catch_unwind(AssertUnwindSafe(factory)) {
        Ok(r) => r.map_err(StartError::Refused),
        Err(p) => Err(StartError::Panicked(panic_message(&*p))),
    }
}

/// Builds the worker of one incarnation and starts its host somewhere; completes with the
/// host's address.
type Place<W> = Rc<
    dyn Fn(
        HostParts<W>,
    ) -> futures::future::LocalBoxFuture<'static, Result<Addr<Host<W>>, StartError>>,
>;

/// Builds the child spec of a worker and the stable address callers use. The worker runs
/// on its supervisor's thread, so its handler must not block.
pub fn worker<W, F>(env: &Env, spec: WorkerSpec<F>) -> (ChildSpec, WorkerRef<W>)
where
    W: Worker,
    F: Fn() -> Result<W, String> + 'static,
{
    let (spec, factory) = spec.split();
    let factory = Rc::new(factory);
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
    let (spec, factory) = spec.split();
    let factory = Arc::new(factory);
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
                    return Err(StartError::ThreadLost);
                }
                rx.await.unwrap_or(Err(StartError::ThreadLost))
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
        installed: Default::default(),
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
                handler_times: env.metrics.handler_seconds.for_actor(a),
            };
            let addr = place(parts).await?;
            // The new incarnation's mailbox count starts at zero and its address goes up
            // together, under the lock every sender holds while it takes a slot and sends.
            let mut slot = shared.addr.write().unwrap_or_else(|e| e.into_inner());
            // A start that finishes after a newer incarnation went up (one begun by a
            // supervisor that has itself been given up on) never replaces it: its host,
            // left without an address, stops.
            if shared.installed.load(Ordering::Acquire) > incarnation {
                return Err(StartError::Refused(format!(
                    "incarnation {incarnation} finished starting after a newer one"
                )));
            }
            shared.installed.store(incarnation, Ordering::Release);
            shared.mailbox.next_generation();
            *slot = Some((incarnation, addr.clone()));
            drop(slot);
            Ok(Running {
                control: Box::new(WorkerControl {
                    stop_tx,
                    addr,
                    shared: shared.clone(),
                    incarnation,
                }),
                exit: exit_rx,
            })
        }) as futures::future::LocalBoxFuture<'static, Result<Running, StartError>>
    });
    let child = ChildSpec {
        id: spec.id,
        restart: spec.restart,
        shutdown: spec.shutdown,
        kind: ChildKind::Worker,
        node,
        start,
        isolation: None,
    };
    (child, WorkerRef { shared })
}
