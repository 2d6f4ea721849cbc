//! The live supervision tree: one shared [`TreeNode`] per child, updated by its supervisor
//! and read (without messaging anyone) by `GET /v1/supervision` and readiness checks.

use crate::clock::SharedClock;
use axon_protocols::supervision::{FailureSnapshot, MailboxSnapshot};
use axon_protocols::{ChildKind, NodeSnapshot, NodeStatus, RestartType, Strategy};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

use crate::supervisor::Command;

/// A mailbox's depth counter and its bound, shared by the callers that enqueue and the
/// actor that dequeues.
#[derive(Debug)]
pub struct Mailbox {
    /// The incarnation's generation (high bits) and the messages queued for it (low
    /// bits), in one word so that a slot is always taken for the generation it counts in.
    slots: AtomicU64,
    /// How many of the taken slots are reserved for requests not sent yet
    /// ([`reserve`](Self::reserve)): not messages, so never counted as dropped. Changed
    /// only under the worker's address lock (read for a reservation's own changes, write
    /// when the generation ends), so a generation ends with it exact.
    reserved: AtomicU64,
    pub capacity: u64,
    /// Counts messages dropped from this mailbox because their actor stopped.
    pub dropped: prometheus::IntCounter,
    /// Counts messages skipped because their caller had already gone (timed out or
    /// dropped the call): never executed, since nobody waits for their effect.
    pub abandoned: prometheus::IntCounter,
}

/// Bits of [`Mailbox`]'s word that count queued messages.
const DEPTH_BITS: u32 = 40;
const DEPTH_MASK: u64 = (1 << DEPTH_BITS) - 1;

impl Mailbox {
    pub fn new(
        capacity: u64,
        dropped: prometheus::IntCounter,
        abandoned: prometheus::IntCounter,
    ) -> Self {
        Self {
            slots: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            capacity,
            dropped,
            abandoned,
        }
    }

    /// Messages queued for the current incarnation.
    pub fn depth(&self) -> u64 {
        self.slots.load(Ordering::Acquire) & DEPTH_MASK
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.slots.load(Ordering::Acquire) >> DEPTH_BITS
    }

    /// Takes a slot if there is room; returns the generation it counts in.
    pub fn try_take(&self) -> Option<u64> {
        self.try_take_n(1)
    }

    /// Takes `n` slots at once for requests sent later, if there is room for all of them;
    /// returns the generation they count in. Each is later either sent
    /// ([`send_reserved`](Self::send_reserved)) or freed
    /// ([`release_reserved`](Self::release_reserved)), or ends with its generation.
    pub fn reserve(&self, n: u64) -> Option<u64> {
        let generation = self.try_take_n(n)?;
        self.reserved.fetch_add(n, Ordering::AcqRel);
        Some(generation)
    }

    /// A reserved slot of the current generation now carries a message.
    pub fn send_reserved(&self) {
        self.reserved.fetch_sub(1, Ordering::AcqRel);
    }

    /// Frees `n` reserved slots of `generation`, if it is still the current one (an
    /// ended generation took them along, uncounted).
    pub fn release_reserved(&self, generation: u64, n: u64) {
        if n == 0 || self.generation() != generation {
            return;
        }
        self.reserved.fetch_sub(n, Ordering::AcqRel);
        for _ in 0..n {
            self.give_back(generation);
        }
    }

    fn try_take_n(&self, n: u64) -> Option<u64> {
        // Taken only while there is room: the count never goes past the bound, even for
        // a moment, so a caller is refused exactly when the mailbox is full.
        let mut v = self.slots.load(Ordering::Acquire);
        loop {
            if (v & DEPTH_MASK) + n > self.capacity {
                return None;
            }
            match self
                .slots
                .compare_exchange_weak(v, v + n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(v >> DEPTH_BITS),
                Err(now) => v = now,
            }
        }
    }

    /// Frees a slot taken in `generation`; one of an earlier incarnation's no longer
    /// counts, and is left alone. True when the slot was freed here.
    pub fn give_back(&self, generation: u64) -> bool {
        let mut v = self.slots.load(Ordering::Acquire);
        while v >> DEPTH_BITS == generation && v & DEPTH_MASK > 0 {
            match self
                .slots
                .compare_exchange_weak(v, v - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    /// Ends the current generation: the next counts from zero, so what an earlier
    /// incarnation (an abandoned one still holding queued messages) took never counts
    /// against it. The slots still taken are messages that were queued and will never be
    /// handled: they are counted as dropped here, each exactly once (a slot is either
    /// freed by [`give_back`](Self::give_back) or swept here, never both). Slots reserved
    /// for requests never sent are not messages, and are not counted.
    pub fn next_generation(&self) {
        let mut v = self.slots.load(Ordering::Acquire);
        loop {
            let next = ((v >> DEPTH_BITS) + 1) << DEPTH_BITS;
            match self
                .slots
                .compare_exchange_weak(v, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        let reserved = self.reserved.swap(0, Ordering::AcqRel);
        self.dropped
            .inc_by((v & DEPTH_MASK).saturating_sub(reserved));
    }
}

/// One node of the live tree.
pub struct TreeNode {
    pub id: String,
    pub kind: ChildKind,
    pub strategy: Option<Strategy>,
    pub restart: Option<RestartType>,
    pub mailbox: Option<Arc<Mailbox>>,
    state: Mutex<NodeState>,
    children: Mutex<Vec<Arc<TreeNode>>>,
    /// A supervisor's command queue, present while an incarnation runs.
    commands: Mutex<Option<mpsc::Sender<Command>>>,
}

struct NodeState {
    status: NodeStatus,
    restarts_total: u64,
    /// Times (on the supervision clock) of restarts inside the parent's window.
    recent_restarts: VecDeque<Duration>,
    window: Duration,
    last_failure: Option<(String, SystemTime)>,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only plain data sits behind these locks; a panic elsewhere leaves it consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TreeNode {
    pub fn new(
        id: impl Into<String>,
        kind: ChildKind,
        strategy: Option<Strategy>,
        restart: Option<RestartType>,
        mailbox: Option<Arc<Mailbox>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            id: id.into(),
            kind,
            strategy,
            restart,
            mailbox,
            state: Mutex::new(NodeState {
                status: NodeStatus::Stopped,
                restarts_total: 0,
                recent_restarts: VecDeque::new(),
                window: Duration::ZERO,
                last_failure: None,
            }),
            children: Mutex::new(Vec::new()),
            commands: Mutex::new(None),
        })
    }

    pub fn status(&self) -> NodeStatus {
        guard(&self.state).status
    }

    pub fn set_status(&self, s: NodeStatus) {
        guard(&self.state).status = s;
    }

    pub fn restarts_total(&self) -> u64 {
        guard(&self.state).restarts_total
    }

    pub(crate) fn record_failure(&self, reason: String, at: SystemTime) {
        guard(&self.state).last_failure = Some((reason, at));
    }

    /// Records one restart at `now`, keeping only those inside `window`.
    pub(crate) fn record_restart(&self, now: Duration, window: Duration, counted: bool) {
        let mut st = guard(&self.state);
        st.restarts_total += 1;
        st.window = window;
        if counted {
            st.recent_restarts.push_back(now);
        }
        while st
            .recent_restarts
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= window)
        {
            st.recent_restarts.pop_front();
        }
        // The window never holds more than the intensity allows plus the one that broke it.
        while st.recent_restarts.len() > 1024 {
            st.recent_restarts.pop_front();
        }
    }

    pub fn children(&self) -> Vec<Arc<TreeNode>> {
        guard(&self.children).clone()
    }

    pub(crate) fn set_children(&self, c: Vec<Arc<TreeNode>>) {
        *guard(&self.children) = c;
    }

    pub(crate) fn remove_child(&self, id: &str) {
        guard(&self.children).retain(|c| c.id != id);
    }

    pub(crate) fn set_commands(&self, tx: Option<mpsc::Sender<Command>>) {
        *guard(&self.commands) = tx;
    }

    pub(crate) fn commands(&self) -> Option<mpsc::Sender<Command>> {
        guard(&self.commands).clone()
    }

    /// Finds the node `id` below this one and its parent.
    pub fn find_with_parent(self: &Arc<Self>, id: &str) -> Option<(Arc<TreeNode>, Arc<TreeNode>)> {
        for c in self.children() {
            if c.id == id {
                return Some((self.clone(), c));
            }
            if let Some(found) = c.find_with_parent(id) {
                return Some(found);
            }
        }
        None
    }

    /// True when this node and every node below it is running. Children that stopped
    /// for good after a normal exit (a transient child's normal exit) do not count against it.
    pub fn all_running(&self) -> bool {
        if self.status() != NodeStatus::Running {
            return false;
        }
        self.children().iter().all(|c| match c.status() {
            NodeStatus::Stopped => c.restart == Some(RestartType::Transient),
            _ => c.all_running(),
        })
    }

    /// The node and everything below it, as served by `GET /v1/supervision`.
    pub fn snapshot(&self, clock: &SharedClock) -> NodeSnapshot {
        let now = clock.now();
        let (status, total, in_window, last_failure) = {
            let st = guard(&self.state);
            let in_window = st
                .recent_restarts
                .iter()
                .filter(|t| now.saturating_sub(**t) < st.window)
                .count() as u64;
            let lf = st
                .last_failure
                .as_ref()
                .map(|(reason, at)| FailureSnapshot {
                    reason: reason.clone(),
                    at: axon_protocols::time::rfc3339(*at),
                });
            (st.status, st.restarts_total, in_window, lf)
        };
        NodeSnapshot {
            id: self.id.clone(),
            kind: self.kind,
            strategy: self.strategy,
            restart: self.restart,
            status,
            restarts_in_window: in_window,
            restarts_total: total,
            last_failure,
            mailbox: self.mailbox.as_ref().map(|m| MailboxSnapshot {
                depth: m.depth(),
                capacity: m.capacity,
            }),
            children: self.children().iter().map(|c| c.snapshot(clock)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(capacity: u64) -> Mailbox {
        let counter = |name: &str| prometheus::IntCounter::new(name, "test").unwrap();
        Mailbox::new(capacity, counter("dropped"), counter("abandoned"))
    }

    #[test]
    fn slots_are_taken_up_to_the_bound_and_each_is_counted_once() {
        let m = mailbox(3);
        let taken: Vec<u64> = (0..3).map(|_| m.try_take().unwrap()).collect();
        assert_eq!(m.try_take(), None, "a full mailbox refuses");
        assert!(m.give_back(taken[0]));
        let again = m.try_take().unwrap();
        assert_eq!(m.depth(), 3);
        // The generation ends with three slots taken: they are counted as dropped, and
        // their late give-backs free nothing in the next generation.
        m.next_generation();
        assert_eq!(m.dropped.get(), 3);
        assert_eq!(m.depth(), 0);
        assert!(!m.give_back(again));
        assert!(!m.give_back(taken[1]));
        assert_eq!(m.depth(), 0);
        let fresh = m.try_take().unwrap();
        assert_ne!(fresh, again);
        assert!(m.give_back(fresh));
        assert_eq!(m.dropped.get(), 3);
    }

    #[test]
    fn under_contention_the_count_never_passes_the_bound() {
        // More callers than slots: some are refused, and the count seen by anyone (the
        // depth metric, the next caller) never goes past the bound, not even for a moment.
        const CAPACITY: u64 = 4;
        let m = std::sync::Arc::new(mailbox(CAPACITY));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    let mut most = 0;
                    for _ in 0..50_000 {
                        most = most.max(m.depth());
                        if let Some(g) = m.try_take() {
                            assert!(m.give_back(g));
                        }
                    }
                    most
                })
            })
            .collect();
        let most = threads.into_iter().map(|t| t.join().unwrap()).max();
        assert!(most <= Some(CAPACITY), "the count reached {most:?}");
        assert_eq!(m.depth(), 0);
        assert_eq!(m.dropped.get(), 0);
    }
}
