//! The caller's side of a worker: the stable address, the bounded mailbox count, and the
//! envelope that carries one request to the host. Never blocks and never queues past the
//! mailbox's capacity.

use super::deadline::WithDeadline;
use super::host::Host;
use super::Worker;
use crate::tree::{Mailbox, TreeNode};
use actix::prelude::*;
use axon_protocols::NodeStatus;
use prometheus::IntCounter;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::oneshot;

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
    pub(super) shared: Arc<WorkerShared<W>>,
}

impl<W: Worker> Clone for WorkerRef<W> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

pub(super) struct WorkerShared<W: Worker> {
    pub(super) id: Arc<str>,
    pub(super) node: Arc<TreeNode>,
    pub(super) mailbox: Arc<Mailbox>,
    /// The running incarnation's number and address: an incarnation only ever clears its
    /// own, so a stale one (abandoned, ending late) can never blank its successor's.
    pub(super) addr: RwLock<Option<(u64, Addr<Host<W>>)>>,
    /// Incarnations started so far.
    pub(super) incarnations: std::sync::atomic::AtomicU64,
    /// The newest incarnation whose address went up.
    pub(super) installed: std::sync::atomic::AtomicU64,
    pub(super) overloaded: IntCounter,
    pub(super) unavailable: IntCounter,
    pub(super) timeouts: IntCounter,
}

impl<W: Worker> WorkerShared<W> {
    /// Takes `incarnation`'s address down and ends its mailbox count, if they are still
    /// its own (a stale incarnation leaves its successor alone): callers get
    /// `Unavailable` at once, and what it holds queued is counted as dropped.
    pub(super) fn retire(&self, incarnation: u64) {
        let mut addr = self.addr.write().unwrap_or_else(|e| e.into_inner());
        if addr.as_ref().is_some_and(|(n, _)| *n == incarnation) {
            *addr = None;
            self.mailbox.next_generation();
        }
    }
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
        let rx = self.enqueue(request, opts)?;
        self.answer(rx, opts).await
    }

    /// Puts `request` in the mailbox if there is room; returns where the answer arrives.
    fn enqueue(&self, request: W::Request, opts: &CallOptions) -> Result<Answer<W>, CallError> {
        let s = &self.shared;
        let addr_guard = s.addr.read().unwrap_or_else(|e| e.into_inner());
        let Some((_, addr)) = addr_guard.as_ref() else {
            drop(addr_guard);
            return Err(self.unavailable());
        };
        let Some(generation) = s.mailbox.try_take() else {
            drop(addr_guard);
            return Err(self.overloaded());
        };
        self.send(addr, request, opts, generation)
    }

    /// Sends `request` in the slot taken in `generation`, with the address lock held (so
    /// the generation cannot end meanwhile).
    fn send(
        &self,
        addr: &Addr<Host<W>>,
        request: W::Request,
        opts: &CallOptions,
        generation: u64,
    ) -> Result<Answer<W>, CallError> {
        let s = &self.shared;
        let (tx, rx) = oneshot::channel();
        let env = Envelope {
            request: Some(request),
            reply: Some(tx),
            correlation_id: opts.correlation_id.clone(),
            parent: tracing::level_enabled!(tracing::Level::INFO).then(tracing::Span::current),
            generation,
        };
        let sent = addr.try_send(env);
        if let Err(e) = sent {
            // The envelope comes back inside the error: its slot is freed (before the
            // address may change, so no generation can end with it still taken), and
            // since it was never accepted it is not counted as dropped.
            let env = match e {
                SendError::Full(env) | SendError::Closed(env) => env,
            };
            s.mailbox.give_back(env.generation);
            let full = s.mailbox.depth() >= s.mailbox.capacity;
            return Err(if full {
                self.overloaded()
            } else {
                self.unavailable()
            });
        }
        Ok(rx)
    }

    /// Takes `n` slots of the mailbox at once, for `n` requests sent later with
    /// [`Permit::call`]: a caller that must not start what it cannot finish (a prediction
    /// whose action would then find the mailbox full) reserves for both first. A mailbox
    /// without room for all `n` is [`CallError::Overloaded`] at once. A permit dropped
    /// frees the slots it has not used.
    pub fn reserve(&self, n: u64) -> Result<Permit<W>, CallError> {
        let s = &self.shared;
        let addr_guard = s.addr.read().unwrap_or_else(|e| e.into_inner());
        if addr_guard.is_none() {
            drop(addr_guard);
            return Err(self.unavailable());
        }
        let Some(generation) = s.mailbox.reserve(n) else {
            drop(addr_guard);
            return Err(self.overloaded());
        };
        Ok(Permit {
            worker: self.clone(),
            generation,
            left: n,
        })
    }

    fn overloaded(&self) -> CallError {
        self.shared.overloaded.inc();
        CallError::Overloaded {
            actor: self.shared.id.to_string(),
            capacity: self.shared.mailbox.capacity,
        }
    }

    /// Waits for the answer on `rx` until the deadline.
    async fn answer(&self, rx: Answer<W>, opts: &CallOptions) -> Result<W::Response, CallError> {
        let s = &self.shared;
        match WithDeadline::new(rx, opts.deadline).await {
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

    fn unavailable(&self) -> CallError {
        self.shared.unavailable.inc();
        CallError::Unavailable {
            actor: self.shared.id.to_string(),
            status: self.shared.node.status(),
        }
    }
}

/// Where one request's answer arrives.
type Answer<W> = oneshot::Receiver<Result<<W as Worker>::Response, CallError>>;

/// Mailbox slots taken ahead of their requests ([`WorkerRef::reserve`]).
pub struct Permit<W: Worker> {
    worker: WorkerRef<W>,
    /// The generation the slots count in.
    generation: u64,
    /// Slots not used yet.
    left: u64,
}

impl<W: Worker> Permit<W> {
    /// The id of the worker the slots are in.
    pub fn worker_id(&self) -> &str {
        self.worker.id()
    }

    /// Sends `request` in one of the reserved slots and waits for the answer until the
    /// deadline. With no slot left, or if the incarnation the slots were taken for has
    /// ended meanwhile (a restart), the request is not sent: [`CallError::Unavailable`].
    pub async fn call(
        &mut self,
        request: W::Request,
        opts: &CallOptions,
    ) -> Result<W::Response, CallError> {
        self.send(request, opts)?.answer(opts).await
    }

    /// Sends `request` in one of the reserved slots now, as [`call`](Self::call) does,
    /// and leaves the wait for its answer to whoever holds the [`Sent`] (another task, on
    /// another thread): the request is in the mailbox when this returns.
    pub fn send(&mut self, request: W::Request, opts: &CallOptions) -> Result<Sent<W>, CallError> {
        let generation = self.generation;
        let w = &self.worker;
        if self.left == 0 {
            return Err(w.unavailable());
        }
        self.left -= 1;
        let s = &w.shared;
        let addr_guard = s.addr.read().unwrap_or_else(|e| e.into_inner());
        let rx = match addr_guard.as_ref() {
            // The generation ends only under the write lock: while this read lock is
            // held, a current slot stays current until it is sent.
            Some((_, addr)) if s.mailbox.generation() == generation => {
                s.mailbox.send_reserved();
                w.send(addr, request, opts, generation)
            }
            // The slot's generation ended and took it along (uncounted: it held no
            // message): nothing to free; the caller hears that nothing was sent.
            _ => {
                drop(addr_guard);
                Err(w.unavailable())
            }
        }?;
        Ok(Sent {
            worker: w.clone(),
            rx,
        })
    }
}

/// A request sent by [`Permit::send`], its answer not waited for yet.
pub struct Sent<W: Worker> {
    worker: WorkerRef<W>,
    rx: Answer<W>,
}

impl<W: Worker> Sent<W> {
    /// Waits for the answer until the deadline of `opts`, counted from this call.
    pub async fn answer(self, opts: &CallOptions) -> Result<W::Response, CallError> {
        self.worker.answer(self.rx, opts).await
    }
}

impl<W: Worker> Drop for Permit<W> {
    fn drop(&mut self) {
        if self.left == 0 {
            return;
        }
        let s = &self.worker.shared;
        // Under the address lock, like every change to the reserved count.
        let _addr = s.addr.read().unwrap_or_else(|e| e.into_inner());
        s.mailbox.release_reserved(self.generation, self.left);
    }
}

/// Where one request's answer goes.
pub(super) type Reply<W> = oneshot::Sender<Result<<W as Worker>::Response, CallError>>;

/// One queued request. It holds a slot of its incarnation's mailbox count until the host
/// takes it; one still queued when its incarnation ends is counted as dropped when the
/// count moves to the next generation.
pub(super) struct Envelope<W: Worker> {
    pub(super) request: Option<W::Request>,
    pub(super) reply: Option<oneshot::Sender<Result<W::Response, CallError>>>,
    pub(super) correlation_id: Option<Arc<str>>,
    /// The caller's span, taken only when spans are recorded: the actor's span is its
    /// child.
    pub(super) parent: Option<tracing::Span>,
    /// The generation of the mailbox count its slot was taken in.
    pub(super) generation: u64,
}

// Envelopes are moved, never pinned in place.
impl<W: Worker> Unpin for Envelope<W> {}

impl<W: Worker> Message for Envelope<W> {
    type Result = ();
}
