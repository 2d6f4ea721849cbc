//! Property: for random failure schedules, the supervisors stop and restart exactly the
//! children `SUPERVISION.md` says, in the order it says, at the times it says, and escalate
//! exactly when a restart intensity is exceeded. The schedules cover failures that arrive
//! while earlier restarts wait out their backoff, children whose restart fails to start,
//! children that do not stop when asked (killed after their shutdown timeout, or abandoned
//! when even a kill does not reach them), operator restarts, and a nested supervisor whose
//! own escalation is a failure of a child of the root.
//!
//! Time is a `ManualClock`: the test moves it by hand, and only to the next moment the
//! model says something is due (a backoff running out, a shutdown timeout, a kill bound).
//! The model is written from the contract alone; the only things it learns from the runtime
//! are the random draws it cannot know: each backoff's jitter, seen when the restart comes.

mod common;

use axon_supervisors::*;
use common::wait_until;
use quickcheck::{Arbitrary, Gen, QuickCheck};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

// ---------------------------------------------------------------------------------------
// The children: workers that write what happens to them in one shared log.
// ---------------------------------------------------------------------------------------

/// What a worker writes in the log, by worker number.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Start(usize),
    /// The factory refused to build the worker (an `Err` or a panic).
    StartFailed(usize),
    Stop(usize),
}

type Log = Arc<Mutex<Vec<Ev>>>;

/// How the next start of a worker fails, once armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StartFailure {
    Err,
    Panic,
}

/// The start failure armed for a worker's next start, if any.
type Armed = Arc<Mutex<Option<StartFailure>>>;

/// When it holds a receiver, the next request blocks the worker's thread until the sender
/// is dropped: no stop request, not even a kill, reaches it meanwhile.
type Block = Arc<Mutex<Option<mpsc::Receiver<()>>>>;

struct Probe {
    w: usize,
    log: Log,
    block: Block,
    /// This incarnation blocked its thread and was abandoned: whatever it does once let
    /// go is no longer part of the tree's story.
    stuck: bool,
}

impl Worker for Probe {
    type Request = ();
    type Response = ();
    fn handle(&mut self, _: (), _: &mut WorkerContext) -> Result<(), WorkerError> {
        let block = lock(&self.block).take();
        if let Some(rx) = block {
            self.stuck = true;
            let _ = rx.recv();
        }
        Ok(())
    }
    fn stopped(&mut self) {
        if !self.stuck {
            lock(&self.log).push(Ev::Stop(self.w));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// The generated cases.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct WorkerDef {
    restart: RestartType,
    shutdown: Shutdown,
    /// Runs on a thread of its own (so that it can block that thread).
    own_thread: bool,
}

#[derive(Clone, Debug)]
struct NestedDef {
    restart: RestartType,
    strategy: Strategy,
    max_restarts: u32,
    children: Vec<WorkerDef>,
}

#[derive(Clone, Debug)]
enum ChildDef {
    Worker(WorkerDef),
    /// A supervisor under the root. It restarts its workers without backoff and its
    /// workers never hang, so that the only timers on the clock are the root's: its one
    /// backoff timer between steps, and one stop's timeout at a time while it handles a
    /// failure. That is what lets the test tell which of them the runtime waits on.
    Nested(NestedDef),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Panic,
    Error,
    NormalExit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// A running worker fails (or exits normally).
    Fail(Kind),
    /// A running worker fails, and the start of its next incarnation fails too.
    FailThenStartFail(Kind, StartFailure),
    /// A worker of the root hangs in a request: a graceful stop cannot end it, a kill can.
    Hang,
    /// A worker of the root on its own thread blocks that thread: not even a kill ends it.
    Stuck,
    /// A child of the root waiting out its backoff will fail to start when its time comes
    /// (for a nested supervisor: one of its workers will).
    StartFailWhilePending(StartFailure),
    /// An operator restarts a child (`POST /v1/supervision/{actor}/restart`).
    OpRestart,
    /// An operator restarts a child, and the new start fails.
    OpRestartStartFail(StartFailure),
}

#[derive(Clone, Debug)]
struct Step {
    action: Action,
    /// Which child: this node if the action applies to it, else one of those it applies
    /// to, chosen by this number.
    pick: usize,
    /// How long the clock moves on after the step (restarts that fall due meanwhile
    /// happen in their order).
    gap_ms: u64,
}

#[derive(Clone, Debug)]
struct Case {
    strategy: Strategy,
    max_restarts: u32,
    children: Vec<ChildDef>,
    steps: Vec<Step>,
    /// Let every pending restart happen before the final shutdown (otherwise the shutdown
    /// may come while restarts still wait out their backoff).
    settle_before_shutdown: bool,
}

fn restart_type(g: &mut Gen) -> RestartType {
    *g.choose(&[
        RestartType::Permanent,
        RestartType::Permanent,
        RestartType::Transient,
        RestartType::Temporary,
    ])
    .unwrap()
}

fn strategy(g: &mut Gen) -> Strategy {
    *g.choose(&[
        Strategy::OneForOne,
        Strategy::OneForAll,
        Strategy::RestForOne,
    ])
    .unwrap()
}

fn worker_def(g: &mut Gen, own_thread: bool) -> WorkerDef {
    WorkerDef {
        restart: restart_type(g),
        shutdown: *g
            .choose(&[
                Shutdown::Timeout(Duration::from_secs(1)),
                Shutdown::Timeout(Duration::from_secs(2)),
                Shutdown::Timeout(Duration::from_secs(5)),
                Shutdown::Timeout(Duration::from_secs(5)),
                Shutdown::BrutalKill,
            ])
            .unwrap(),
        own_thread: own_thread && u8::arbitrary(g) % 3 == 0,
    }
}

impl Arbitrary for Case {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = 1 + usize::arbitrary(g) % 5;
        let mut nested = 0;
        let children = (0..n)
            .map(|_| {
                if nested < 2 && u8::arbitrary(g) % 5 == 0 {
                    nested += 1;
                    ChildDef::Nested(NestedDef {
                        restart: restart_type(g),
                        strategy: strategy(g),
                        max_restarts: u32::arbitrary(g) % 4,
                        children: (0..1 + usize::arbitrary(g) % 3)
                            .map(|_| worker_def(g, false))
                            .collect(),
                    })
                } else {
                    ChildDef::Worker(worker_def(g, true))
                }
            })
            .collect();
        let sf = |g: &mut Gen| *g.choose(&[StartFailure::Err, StartFailure::Panic]).unwrap();
        let steps = (0..1 + usize::arbitrary(g) % 16)
            .map(|_| {
                let action = match u8::arbitrary(g) % 22 {
                    0..=6 => Action::Fail(Kind::Panic),
                    7..=8 => Action::Fail(Kind::Error),
                    9..=10 => Action::Fail(Kind::NormalExit),
                    11..=12 => Action::FailThenStartFail(
                        *g.choose(&[Kind::Panic, Kind::Error]).unwrap(),
                        sf(g),
                    ),
                    13 => Action::Hang,
                    14 => Action::Stuck,
                    15..=17 => Action::StartFailWhilePending(sf(g)),
                    18..=19 => Action::OpRestart,
                    _ => Action::OpRestartStartFail(sf(g)),
                };
                Step {
                    action,
                    pick: usize::arbitrary(g),
                    // Short gaps keep restarts pending (the backoff is 10 to 60 ms), so the
                    // next step often comes during a backoff.
                    gap_ms: *g
                        .choose(&[0, 0, 0, 2, 5, 8, 20, 100, 700, 1500, 2600, 6000])
                        .unwrap(),
                }
            })
            .collect();
        Case {
            strategy: strategy(g),
            max_restarts: *g.choose(&[0, 1, 2, 3, 5, 8, 12]).unwrap(),
            children,
            steps,
            settle_before_shutdown: bool::arbitrary(g),
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let case = self.clone();
        Box::new((0..self.steps.len()).rev().map(move |i| {
            let mut c = case.clone();
            c.steps.remove(i);
            c
        }))
    }
}

// ---------------------------------------------------------------------------------------
// The model, written from SUPERVISION.md alone.
// ---------------------------------------------------------------------------------------

const PERIOD: Duration = Duration::from_secs(5);

/// Jitter of up to half the delay: the model checks each delay lies within it (and that
/// there is jitter at all), and learns the delay drawn when the restart comes.
const RANDOM_FACTOR: f64 = 0.5;

/// How long a kill may take before the child is abandoned: the bound the test configures
/// (not the default, so that the configured one is seen to apply).
const KILL_BOUND: Duration = Duration::from_secs(2);

fn policy() -> BackoffPolicy {
    BackoffPolicy::new(
        Duration::from_millis(10),
        Duration::from_millis(40),
        RANDOM_FACTOR,
    )
}

/// The contract's backoff before jitter: `min(max, min × 2^n)`.
fn model_delay(n: u32) -> Duration {
    let p = policy();
    let mut d = p.min;
    for _ in 0..n {
        d = (d * 2).min(p.max);
    }
    d.min(p.max)
}

/// What the test expects, in order: log entries, and moments where the runtime must be
/// waiting on the clock (for this long) before anything else can happen.
#[derive(Clone, Debug)]
enum Expect {
    Ev(Ev),
    /// The stop of this child waits this long on the clock: its shutdown timeout, or a
    /// kill's bound.
    Wait(usize, Duration),
    /// The graceful stop of this child waits for the request it is busy with (which
    /// sleeps this long on the clock), within its shutdown timeout.
    WaitHeld(usize, Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Running,
    /// Down, with its restart in its supervisor's pending list.
    Pending,
    /// Down and staying down (a transient child that exited normally).
    Down,
    /// A temporary child that ended: gone from the tree.
    Removed,
    /// Its supervisor is not running.
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hung {
    No,
    /// Busy in a request no graceful stop interrupts; a kill ends it.
    Hang,
    /// Its thread is blocked: a kill does not end it either.
    Stuck,
    /// Busy for a second in a request at the final shutdown.
    Slow,
}

#[derive(Clone, Debug)]
struct MNode {
    id: String,
    /// The supervisor it is a child of.
    sup: usize,
    /// Some(k): this child is the nested supervisor `k`.
    nested: Option<usize>,
    /// Some(w): this child is worker `w`.
    worker: Option<usize>,
    own_thread: bool,
    restart: RestartType,
    shutdown: Shutdown,
    state: St,
    hung: Hung,
    start_fail: Option<StartFailure>,
    /// Consecutive failures (the backoff's `n`).
    failures: u32,
    /// When the current run started, while it runs.
    run_from: Option<Duration>,
    /// How long the last run lasted, once stopped without failing (zero after a failure).
    ran: Duration,
    /// Its last event was a failure (or a failed start), not a start.
    failed: bool,
    restarts_total: u64,
    /// When each restart counted in the intensity window was decided.
    counted: Vec<Duration>,
}

/// A restart waiting out its backoff.
#[derive(Clone, Debug)]
struct Pending {
    children: Vec<usize>,
    /// The failure time plus the delay before jitter: the restart comes at or after it.
    base_at: Duration,
    /// The restart is due at some time in `lo..=hi` (`lo` rises as the runtime shows it
    /// has not come yet).
    lo: Duration,
    hi: Duration,
}

#[derive(Clone, Debug)]
struct MSup {
    id: String,
    /// Its node among the root's children (nested supervisors only).
    node: Option<usize>,
    strategy: Strategy,
    max_restarts: u32,
    /// The root restarts after a backoff; a nested supervisor restarts at once.
    backoff: bool,
    children: Vec<usize>,
    history: VecDeque<Duration>,
    pending: Vec<Pending>,
    running: bool,
}

#[derive(Clone, Debug)]
struct Model {
    nodes: Vec<MNode>,
    /// The root is 0.
    sups: Vec<MSup>,
    now: Duration,
    script: Vec<Expect>,
    /// Exits each supervisor saw, by child and kind.
    exits: BTreeMap<Vec<String>, u64>,
    abandoned: BTreeMap<Vec<String>, u64>,
    escalations: BTreeMap<Vec<String>, u64>,
    root_failed: bool,
    /// Backoff delays seen, with jitter and without.
    jittered: u32,
    unjittered: u32,
}

fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::Panic => "panicked",
        Kind::Error => "failed",
        Kind::NormalExit => "normal",
    }
}

impl MNode {
    /// The child stops without failing at `now`: its run ends. The contract resets the
    /// failure count once the child has run `reset_after` since its last restart, so a
    /// run that long has earned the reset whatever comes after; time spent stopped never
    /// counts as running.
    fn run_ends(&mut self, now: Duration) {
        if let Some(t) = self.run_from.take() {
            self.ran = now - t;
            if self.ran >= policy().reset_after {
                self.failures = 0;
            }
        }
    }

    fn new(id: String, sup: usize, restart: RestartType) -> Self {
        MNode {
            id,
            sup,
            nested: None,
            worker: None,
            own_thread: false,
            restart,
            shutdown: Shutdown::Infinity,
            state: St::Off,
            hung: Hung::No,
            start_fail: None,
            failures: 0,
            run_from: None,
            ran: Duration::ZERO,
            failed: false,
            restarts_total: 0,
            counted: Vec::new(),
        }
    }
}

impl Model {
    /// The tree of `case`: the root's children are nodes `0..n` in order, the nested
    /// supervisors' workers follow; workers are numbered in node order.
    fn new(case: &Case) -> Self {
        let n = case.children.len();
        let mut sups = vec![MSup {
            id: "sup".into(),
            node: None,
            strategy: case.strategy,
            max_restarts: case.max_restarts,
            backoff: true,
            children: (0..n).collect(),
            history: VecDeque::new(),
            pending: Vec::new(),
            running: true,
        }];
        let mut nodes = Vec::new();
        let mut defs = Vec::new();
        for (i, child) in case.children.iter().enumerate() {
            match child {
                ChildDef::Worker(d) => {
                    let mut node = MNode::new(String::new(), 0, d.restart);
                    node.shutdown = d.shutdown;
                    node.own_thread = d.own_thread;
                    nodes.push(node);
                }
                ChildDef::Nested(d) => {
                    let k = sups.len();
                    sups.push(MSup {
                        id: format!("n{k}"),
                        node: Some(i),
                        strategy: d.strategy,
                        max_restarts: d.max_restarts,
                        backoff: false,
                        children: Vec::new(),
                        history: VecDeque::new(),
                        pending: Vec::new(),
                        running: false,
                    });
                    let mut node = MNode::new(format!("n{k}"), 0, d.restart);
                    node.nested = Some(k);
                    nodes.push(node);
                    defs.push((k, d.children.clone()));
                }
            }
        }
        for (k, children) in defs {
            for d in children {
                sups[k].children.push(nodes.len());
                let mut node = MNode::new(String::new(), k, d.restart);
                node.shutdown = d.shutdown;
                node.own_thread = d.own_thread;
                nodes.push(node);
            }
        }
        let mut w = 0;
        for node in &mut nodes {
            if node.nested.is_none() {
                node.worker = Some(w);
                node.id = format!("w{w}");
                w += 1;
            }
        }
        Model {
            nodes,
            sups,
            now: Duration::ZERO,
            script: Vec::new(),
            exits: BTreeMap::new(),
            abandoned: BTreeMap::new(),
            escalations: BTreeMap::new(),
            root_failed: false,
            jittered: 0,
            unjittered: 0,
        }
    }

    fn ev(&mut self, e: Ev) {
        self.script.push(Expect::Ev(e));
    }

    fn wait(&mut self, c: usize, d: Duration) {
        self.script.push(Expect::Wait(c, d));
        self.now += d;
    }

    fn count(map: &mut BTreeMap<Vec<String>, u64>, key: Vec<String>) {
        *map.entry(key).or_default() += 1;
    }

    fn exit(&mut self, s: usize, c: usize, kind: &str) {
        let key = vec![
            self.sups[s].id.clone(),
            self.nodes[c].id.clone(),
            kind.to_owned(),
        ];
        Self::count(&mut self.exits, key);
    }

    fn children(&self, s: usize) -> Vec<usize> {
        self.sups[s].children.clone()
    }

    /// Stops running child `c` of `s`: ask, wait up to its shutdown timeout, then kill; a
    /// child a kill does not end either is abandoned after the kill's bound.
    fn stop_child(&mut self, s: usize, c: usize) {
        if let Some(k) = self.nodes[c].nested {
            // A supervisor stops its own children, last started first.
            self.stop_all(k);
            self.sups[k].running = false;
            self.exit(s, c, "shutdown");
        } else {
            let w = self.nodes[c].worker.unwrap();
            let kind = match (self.nodes[c].shutdown, self.nodes[c].hung) {
                (Shutdown::BrutalKill, Hung::No | Hung::Hang) => {
                    self.ev(Ev::Stop(w));
                    "killed"
                }
                (_, Hung::No) => {
                    self.ev(Ev::Stop(w));
                    "shutdown"
                }
                (Shutdown::Timeout(d), Hung::Hang) => {
                    self.wait(c, d);
                    self.ev(Ev::Stop(w));
                    "killed"
                }
                (shutdown, Hung::Stuck) => {
                    if let Shutdown::Timeout(d) = shutdown {
                        self.wait(c, d);
                    }
                    self.wait(c, KILL_BOUND);
                    let key = vec![self.sups[s].id.clone(), self.nodes[c].id.clone()];
                    Self::count(&mut self.abandoned, key);
                    "killed"
                }
                (Shutdown::Timeout(_), Hung::Slow) => {
                    let busy = Duration::from_secs(1);
                    self.script.push(Expect::WaitHeld(c, busy));
                    self.now += busy;
                    self.ev(Ev::Stop(w));
                    "shutdown"
                }
                other => unreachable!("no such child in the generated cases: {other:?}"),
            };
            self.nodes[c].hung = Hung::No;
            self.exit(s, c, kind);
        }
        let now = self.now;
        self.nodes[c].run_ends(now);
    }

    /// Drops the pending restarts of `s` and stops its running children, last first.
    fn stop_all(&mut self, s: usize) {
        self.sups[s].pending.clear();
        for c in self.children(s).into_iter().rev() {
            if self.nodes[c].state == St::Running {
                self.stop_child(s, c);
            }
            if self.nodes[c].state != St::Removed {
                self.nodes[c].state = St::Off;
            }
        }
    }

    /// One start of child `c`; false when it fails.
    fn start_child(&mut self, c: usize) -> bool {
        let ok = match self.nodes[c].nested {
            Some(k) => self.start_sup(k),
            None => {
                let w = self.nodes[c].worker.unwrap();
                if self.nodes[c].start_fail.take().is_some() {
                    self.ev(Ev::StartFailed(w));
                    false
                } else {
                    self.ev(Ev::Start(w));
                    true
                }
            }
        };
        if ok {
            let now = self.now;
            let node = &mut self.nodes[c];
            node.state = St::Running;
            node.run_from = Some(now);
            node.ran = Duration::ZERO;
            node.failed = false;
            node.hung = Hung::No;
        }
        ok
    }

    /// A fresh incarnation of nested supervisor `k`: all its children start in order (as
    /// OTP's `init` gives them); if one fails to start, those started are stopped again
    /// (last first) and the supervisor fails to start.
    fn start_sup(&mut self, k: usize) -> bool {
        self.sups[k].history.clear();
        self.sups[k].pending.clear();
        let kids = self.children(k);
        for (i, &g) in kids.iter().enumerate() {
            if !self.start_child(g) {
                for &h in kids[..i].iter().rev() {
                    self.stop_child(k, h);
                }
                for &h in &kids {
                    self.nodes[h].state = St::Off;
                }
                return false;
            }
        }
        self.sups[k].running = true;
        true
    }

    /// The strategy of `s` applied to the failure of its child `c` (already down). True
    /// when `s` escalates instead.
    fn restart_after_failure(&mut self, s: usize, c: usize) -> bool {
        let now = self.now;
        let sup = &mut self.sups[s];
        sup.history.retain(|t| now - *t < PERIOD);
        if sup.history.len() + 1 > sup.max_restarts as usize {
            Self::count(&mut self.escalations, vec![sup.id.clone()]);
            self.nodes[c].state = St::Off;
            self.stop_all(s);
            if s != 0 {
                self.sups[s].running = false;
            }
            return true;
        }
        sup.history.push_back(now);
        let kids = self.children(s);
        let pos = kids.iter().position(|&x| x == c).unwrap();
        let affected: Vec<usize> = match self.sups[s].strategy {
            Strategy::OneForOne => vec![c],
            Strategy::OneForAll => kids.clone(),
            Strategy::RestForOne => kids[pos..].to_vec(),
        }
        .into_iter()
        .filter(|&j| self.nodes[j].state != St::Removed)
        .collect();
        for &j in affected.iter().rev() {
            if j != c && self.nodes[j].state == St::Running {
                self.stop_child(s, j);
                self.nodes[j].state = St::Pending;
            }
        }
        let mut set = Vec::new();
        for &j in &affected {
            if j == c {
                set.push(j);
            } else if self.nodes[j].state == St::Pending {
                // Stopped just now, or already waiting for a restart of its own.
                if self.nodes[j].restart == RestartType::Temporary {
                    self.nodes[j].state = St::Removed;
                } else {
                    set.push(j);
                }
            }
            // A transient child that exited normally stays down.
        }
        // A child restarts once: a restart already pending for one of these children is
        // taken over by this one.
        for p in &mut self.sups[s].pending {
            p.children.retain(|j| !set.contains(j));
        }
        self.sups[s].pending.retain(|p| !p.children.is_empty());
        for &j in &set {
            let node = &mut self.nodes[j];
            node.state = St::Pending;
            node.restarts_total += 1;
            node.counted.push(now);
        }
        // The failing child's backoff: its count resets once it has run `reset_after`
        // since its last restart (time spent down never counts).
        let node = &mut self.nodes[c];
        let run = node.run_from.map_or(node.ran, |t| now - t);
        if run >= policy().reset_after {
            node.failures = 0;
        }
        let base = model_delay(node.failures);
        node.failures += 1;
        node.run_from = None;
        node.ran = Duration::ZERO;
        node.failed = true;
        if self.sups[s].backoff {
            self.sups[s].pending.push(Pending {
                children: set,
                base_at: now + base,
                lo: now + base,
                hi: now + base.mul_f64(1.0 + RANDOM_FACTOR),
            });
            false
        } else {
            self.restart_now(s, set)
        }
    }

    /// Starts the pending children `set` of `s` in start order. A start failure is a
    /// failure of that child; the children not reached yet are due at once.
    fn restart_now(&mut self, s: usize, mut set: Vec<usize>) -> bool {
        set.sort_unstable();
        set.dedup();
        for (k, &j) in set.iter().enumerate() {
            if self.nodes[j].state != St::Pending {
                continue;
            }
            if !self.start_child(j) {
                let rest = set[k + 1..].to_vec();
                if !rest.is_empty() {
                    let now = self.now;
                    self.sups[s].pending.push(Pending {
                        children: rest,
                        base_at: now,
                        lo: now,
                        hi: now,
                    });
                }
                self.nodes[j].state = St::Down;
                return self.restart_after_failure(s, j);
            }
        }
        false
    }

    /// Runs the restarts of `s` that are due now, all together in start order.
    fn fire_due(&mut self, s: usize) -> bool {
        loop {
            let now = self.now;
            let pending = std::mem::take(&mut self.sups[s].pending);
            assert!(
                pending.iter().all(|p| p.hi <= now || p.lo > now),
                "the model cannot tell whether a restart is due at {now:?}: {pending:?}"
            );
            let (due, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|p| p.hi <= now);
            self.sups[s].pending = later;
            if due.is_empty() {
                return false;
            }
            if self.restart_now(s, due.into_iter().flat_map(|p| p.children).collect()) {
                return true;
            }
        }
    }

    /// What `s` does once it has handled an event: restarts now due, and, when it gave
    /// up, its own failure as a child of its parent.
    fn after_handling(&mut self, s: usize, escalated: bool) {
        let escalated = escalated || self.fire_due(s);
        if !escalated {
            return;
        }
        if s == 0 {
            self.root_failed = true;
            return;
        }
        // Escalation: the nested supervisor exits failed, and the root restarts even a
        // transient one.
        let n = self.sups[s].node.unwrap();
        self.exit(0, n, "failed");
        let escalated = self.child_down(0, n, true);
        self.after_handling(0, escalated);
    }

    /// Child `c` of `s` ended by itself.
    fn child_down(&mut self, s: usize, c: usize, abnormal: bool) -> bool {
        match (self.nodes[c].restart, abnormal) {
            (RestartType::Temporary, _) => {
                self.nodes[c].state = St::Removed;
                false
            }
            (RestartType::Transient, false) => {
                let now = self.now;
                let node = &mut self.nodes[c];
                node.state = St::Down;
                node.run_ends(now);
                false
            }
            _ => {
                self.nodes[c].state = St::Down;
                self.restart_after_failure(s, c)
            }
        }
    }

    fn worker_fails(&mut self, c: usize, kind: Kind) {
        let s = self.nodes[c].sup;
        self.ev(Ev::Stop(self.nodes[c].worker.unwrap()));
        self.exit(s, c, label(kind));
        let escalated = self.child_down(s, c, kind != Kind::NormalExit);
        self.after_handling(s, escalated);
    }

    /// An operator's restart of `c`: stopped and started again at once, whatever the
    /// strategy; its restarts count one more, outside the intensity window. A failed start
    /// is a failure of the child (a temporary one leaves the tree). True when it started.
    fn op_restart(&mut self, c: usize) -> bool {
        let s = self.nodes[c].sup;
        for p in &mut self.sups[s].pending {
            p.children.retain(|&j| j != c);
        }
        self.sups[s].pending.retain(|p| !p.children.is_empty());
        if self.nodes[c].state == St::Running {
            self.stop_child(s, c);
        }
        self.nodes[c].restarts_total += 1;
        if self.start_child(c) {
            self.after_handling(s, false);
            return true;
        }
        let escalated = if self.nodes[c].restart == RestartType::Temporary {
            self.nodes[c].state = St::Removed;
            false
        } else {
            self.nodes[c].state = St::Down;
            self.restart_after_failure(s, c)
        };
        self.after_handling(s, escalated);
        false
    }

    fn shutdown(&mut self) {
        self.stop_all(0);
    }

    /// The root's pending restarts that may be the one the runtime makes at `at`.
    fn candidates(&self, at: Duration) -> Result<Vec<usize>, String> {
        let pending = &self.sups[0].pending;
        if let Some(p) = pending.iter().find(|p| p.hi < at) {
            return Err(format!(
                "the restart of {:?} was due by {:?}, but the first restart comes at {at:?}",
                p.children, p.hi
            ));
        }
        let found: Vec<usize> = (0..pending.len())
            .filter(|&i| pending[i].lo <= at && at <= pending[i].hi)
            .collect();
        if found.is_empty() {
            return Err(format!(
                "a restart comes at {at:?}, when none of the pending restarts is due: {pending:?}"
            ));
        }
        Ok(found)
    }

    /// The root's pending restart `i` comes at `at`.
    fn fire(&mut self, i: usize, at: Duration) {
        self.now = at;
        let p = self.sups[0].pending.remove(i);
        if at == p.base_at {
            self.unjittered += 1;
        } else {
            self.jittered += 1;
        }
        self.not_before(at);
        let escalated = self.restart_now(0, p.children);
        self.after_handling(0, escalated);
    }

    /// The runtime shows none of the root's pending restarts comes at or before `t`.
    fn not_before(&mut self, t: Duration) {
        for p in &mut self.sups[0].pending {
            p.lo = p.lo.max(t + Duration::from_nanos(1));
        }
    }

    fn parent_running(&self, c: usize) -> bool {
        let s = self.nodes[c].sup;
        !self.root_failed && (s == 0 || self.sups[s].running)
    }

    /// The children whose status the tree must show: those whose supervisor runs.
    fn watched(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&c| self.parent_running(c) && self.nodes[c].state != St::Off)
            .collect()
    }

    fn statuses(&self) -> Vec<(String, Option<NodeStatus>)> {
        self.watched()
            .into_iter()
            .map(|c| {
                let status = match self.nodes[c].state {
                    St::Running => Some(NodeStatus::Running),
                    St::Pending => Some(NodeStatus::Restarting),
                    St::Down => Some(NodeStatus::Stopped),
                    St::Removed | St::Off => None,
                };
                (self.nodes[c].id.clone(), status)
            })
            .collect()
    }

    fn in_window(&self, c: usize) -> u64 {
        let now = self.now;
        self.nodes[c]
            .counted
            .iter()
            .filter(|t| now - **t < PERIOD)
            .count() as u64
    }

    /// Running workers a request reaches (not hung), at any level.
    fn failable(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&c| {
                let n = &self.nodes[c];
                n.worker.is_some()
                    && n.state == St::Running
                    && n.hung == Hung::No
                    && self.parent_running(c)
            })
            .collect()
    }

    fn armed(&self, c: usize) -> bool {
        match self.nodes[c].nested {
            Some(k) => self.sups[k]
                .children
                .iter()
                .any(|&g| self.nodes[g].start_fail.is_some()),
            None => self.nodes[c].start_fail.is_some(),
        }
    }

    /// Children an operator can restart: in the tree, under a running supervisor.
    fn restartable(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&c| {
                self.parent_running(c) && !matches!(self.nodes[c].state, St::Removed | St::Off)
            })
            .collect()
    }

    /// The worker to arm for a start failure of `c` (for a nested supervisor, one of its
    /// workers, chosen by `pick`).
    fn arm_target(&self, c: usize, pick: usize) -> usize {
        match self.nodes[c].nested {
            Some(k) => {
                let kids = &self.sups[k].children;
                kids[pick % kids.len()]
            }
            None => c,
        }
    }
}

/// The child `pick` names if the step applies to it, else one of `options` by number.
fn choose(options: Vec<usize>, pick: usize) -> Option<usize> {
    if options.is_empty() {
        None
    } else if options.contains(&pick) {
        Some(pick)
    } else {
        Some(options[pick % options.len()])
    }
}

// ---------------------------------------------------------------------------------------
// The runtime, driven step by step and compared with the model.
// ---------------------------------------------------------------------------------------

/// Prints what was observed when a wait times out or an assertion fails.
struct Explain<F: Fn() -> String>(F);

impl<F: Fn() -> String> Drop for Explain<F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", (self.0)());
        }
    }
}

fn probe(
    env: &Env,
    node: &MNode,
    log: &Log,
    armed: &Armed,
    block: &Block,
) -> (ChildSpec, WorkerRef<Probe>) {
    let w = node.worker.unwrap();
    let (log, armed, block) = (log.clone(), armed.clone(), block.clone());
    let factory = move || {
        let failure = lock(&armed).take();
        match failure {
            None => {
                lock(&log).push(Ev::Start(w));
                Ok(Probe {
                    w,
                    log: log.clone(),
                    block: block.clone(),
                    stuck: false,
                })
            }
            Some(f) => {
                lock(&log).push(Ev::StartFailed(w));
                match f {
                    StartFailure::Err => Err(format!("w{w} cannot start")),
                    StartFailure::Panic => panic!("w{w} panics while starting"),
                }
            }
        }
    };
    let spec = WorkerSpec {
        id: node.id.clone(),
        restart: node.restart,
        shutdown: node.shutdown,
        mailbox_capacity: 4,
        factory,
    };
    if node.own_thread {
        worker_on_own_thread(env, spec)
    } else {
        worker(env, spec)
    }
}

/// Reads a counter family as `labels → value`, leaving out zeros.
fn counters(
    registry: &prometheus::Registry,
    name: &str,
    labels: &[&str],
) -> BTreeMap<Vec<String>, u64> {
    let mut out = BTreeMap::new();
    for family in registry.gather() {
        if family.name() != name {
            continue;
        }
        for m in family.get_metric() {
            let value = m.get_counter().get_value() as u64;
            if value == 0 {
                continue;
            }
            let key = labels
                .iter()
                .map(|l| {
                    m.get_label()
                        .iter()
                        .find(|p| p.name() == *l)
                        .map(|p| p.value().to_owned())
                        .unwrap_or_default()
                })
                .collect();
            out.insert(key, value);
        }
    }
    out
}

struct Run {
    case: Case,
    clock: ManualClock,
    shared: SharedClock,
    registry: prometheus::Registry,
    env: Env,
    log: Log,
    expected: Vec<Ev>,
    refs: Vec<WorkerRef<Probe>>,
    /// The live tree node of each model node.
    tree: Vec<Arc<TreeNode>>,
    armed: Vec<Armed>,
    blocks: Vec<Block>,
    /// Dropping these lets blocked threads go.
    releases: Vec<mpsc::Sender<()>>,
    model: Model,
    root: Root,
    opts: CallOptions,
}

impl Run {
    async fn start(case: Case) -> Self {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let shared: SharedClock = Arc::new(clock.clone());
        let registry = prometheus::Registry::new();
        let mut env = Env::new(&registry, shared.clone(), 1).unwrap();
        env.bounds.kill_wait = KILL_BOUND;
        let log: Log = Arc::default();
        let mut model = Model::new(&case);
        let workers = model.nodes.iter().filter(|n| n.worker.is_some()).count();
        let armed: Vec<Armed> = (0..workers).map(|_| Armed::default()).collect();
        let blocks: Vec<Block> = (0..workers).map(|_| Block::default()).collect();
        let mut refs = Vec::new();
        let mut specs: Vec<Option<ChildSpec>> = model.nodes.iter().map(|_| None).collect();
        let mut tree: Vec<Option<Arc<TreeNode>>> = model.nodes.iter().map(|_| None).collect();
        for (c, node) in model.nodes.iter().enumerate() {
            if let Some(w) = node.worker {
                let (spec, r) = probe(&env, node, &log, &armed[w], &blocks[w]);
                tree[c] = Some(r.node().clone());
                specs[c] = Some(spec);
                refs.push(r);
            }
        }
        for sup in &model.sups[1..] {
            let n = sup.node.unwrap();
            let children = sup
                .children
                .iter()
                .map(|&g| specs[g].take().unwrap())
                .collect();
            let spec = supervisor(
                &env,
                SupervisorSpec {
                    id: sup.id.clone(),
                    strategy: sup.strategy,
                    intensity: Intensity {
                        max_restarts: sup.max_restarts,
                        period: PERIOD,
                    },
                    backoff: BackoffPolicy::none(),
                    command_capacity: 4,
                    children,
                },
                model.nodes[n].restart,
            );
            tree[n] = Some(spec.node.clone());
            specs[n] = Some(spec);
        }
        let children = model.sups[0]
            .children
            .iter()
            .map(|&c| specs[c].take().unwrap())
            .collect();
        let root = start_root(
            &env,
            SupervisorSpec {
                id: "sup".into(),
                strategy: case.strategy,
                intensity: Intensity {
                    max_restarts: case.max_restarts,
                    period: PERIOD,
                },
                backoff: policy(),
                command_capacity: 4,
                children,
            },
        )
        .await
        .unwrap();
        for c in model.children(0) {
            assert!(model.start_child(c));
        }
        let mut run = Run {
            case,
            clock,
            shared,
            registry,
            env,
            log,
            expected: Vec::new(),
            refs,
            tree: tree.into_iter().map(Option::unwrap).collect(),
            armed,
            blocks,
            releases: Vec::new(),
            model,
            root,
            opts: CallOptions {
                deadline: Duration::from_secs(5),
                correlation_id: None,
            },
        };
        run.drive().await;
        run.settle("the tree has started").await;
        run
    }

    /// A copy of the log (no lock is held while an assertion about it fails).
    fn log(&self) -> Vec<Ev> {
        lock(&self.log).clone()
    }

    fn observed(&self) -> Vec<(String, Option<NodeStatus>)> {
        self.model
            .watched()
            .into_iter()
            .map(|c| {
                let node = &self.model.nodes[c];
                let parent = match node.sup {
                    0 => &self.root.node,
                    s => &self.tree[self.model.sups[s].node.unwrap()],
                };
                let present = parent.children().iter().any(|x| x.id == node.id);
                (node.id.clone(), present.then(|| self.tree[c].status()))
            })
            .collect()
    }

    fn explain(&self, what: &str) -> impl Fn() -> String + '_ {
        let what = what.to_owned();
        move || {
            format!(
                "while waiting until {what}:\n  log      {:?}\n  expected {:?}\n  statuses {:?}\n  expected {:?}\n  clock at {:?}, next deadline {:?}, sleepers {}\n  pending  {:?}\n  case     {:?}",
                lock(&self.log),
                self.expected,
                self.observed(),
                self.model.statuses(),
                self.clock.now(),
                self.clock.next_deadline(),
                self.clock.sleepers(),
                self.model.sups[0].pending,
                self.case
            )
        }
    }

    /// Waits until the log is the one expected and `cond` holds, or the log has left the
    /// expected course (it went past it, or another way), which fails at once.
    async fn settle_log(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let _explain = Explain(self.explain(what));
        wait_until(what, || {
            let log = self.log();
            !self.expected.starts_with(&log) || (log == self.expected && cond())
        })
        .await;
        assert_eq!(self.log(), self.expected, "{what}");
    }

    /// Takes the model's script: log entries join the expected log, and at each wait the
    /// runtime must be sleeping on the clock until then before the clock moves.
    async fn drive(&mut self) {
        let script = std::mem::take(&mut self.model.script);
        for item in script {
            let (c, d, sleepers) = match item {
                Expect::Ev(e) => {
                    self.expected.push(e);
                    continue;
                }
                Expect::Wait(c, d) => (c, d, 1),
                // The request's sleep, and the shutdown timeout.
                Expect::WaitHeld(c, d) => (c, d, 2),
            };
            // The supervisor stops one child at a time: while this one shows `stopping`,
            // the timer of the one stopped before it is gone (it may have had the same
            // deadline), and this stop's own timer is the only one.
            let at = self.clock.now() + d;
            let node = self.tree[c].clone();
            let what = format!(
                "the stop of {} waits {d:?} on the clock",
                self.model.nodes[c].id
            );
            self.settle_log(&what, || {
                node.status() == NodeStatus::Stopping
                    && self.clock.sleepers() == sleepers
                    && self.clock.next_deadline() == Some(at)
            })
            .await;
            self.clock.advance(d);
        }
        assert_eq!(self.clock.now(), self.model.now, "the clock and the model");
    }

    /// Waits until the runtime is where the model is: the log, every status, and the
    /// root's backoff timer armed exactly when a restart is pending. Then checks the
    /// restart counts.
    async fn settle(&self, what: &str) {
        let statuses = self.model.statuses();
        let timers = usize::from(!self.model.sups[0].pending.is_empty());
        {
            let _explain = Explain(self.explain(what));
            wait_until(what, || {
                let log = self.log();
                !self.expected.starts_with(&log)
                    || (log == self.expected
                        && self.observed() == statuses
                        && self.clock.sleepers() == timers)
            })
            .await;
            assert_eq!(self.log(), self.expected, "{what}");
        }
        let case = &self.case;
        assert_eq!(self.observed(), statuses, "{what} in {case:?}");
        assert_eq!(
            self.clock.sleepers(),
            timers,
            "backoff timers when {what} in {case:?}"
        );
        for (c, node) in self.model.nodes.iter().enumerate() {
            assert_eq!(
                self.tree[c].restarts_total(),
                node.restarts_total,
                "restarts of {} when {what} in {case:?}",
                node.id
            );
            assert_eq!(
                self.tree[c].snapshot(&self.shared).restarts_in_window,
                self.model.in_window(c),
                "restarts of {} in the window when {what} in {case:?}",
                node.id
            );
        }
    }

    async fn after(&mut self, what: &str) {
        self.drive().await;
        if !self.model.root_failed {
            self.settle(what).await;
        }
    }

    fn arm(&mut self, c: usize, failure: StartFailure, pick: usize) {
        let g = self.model.arm_target(c, pick);
        let w = self.model.nodes[g].worker.unwrap();
        *lock(&self.armed[w]) = Some(failure);
        self.model.nodes[g].start_fail = Some(failure);
    }

    async fn fail(&mut self, c: usize, kind: Kind) {
        let w = self.model.nodes[c].worker.unwrap();
        let fault = match kind {
            Kind::Panic => Fault::Panic,
            Kind::Error => Fault::Error,
            Kind::NormalExit => Fault::Exit,
        };
        self.env
            .faults
            .inject(&self.model.nodes[c].id, fault, Some(1));
        let answer = self.refs[w].call((), &self.opts).await;
        assert_eq!(answer.is_ok(), kind == Kind::NormalExit, "{answer:?}");
        self.model.worker_fails(c, kind);
        self.after(&format!("w{w} has {kind:?}")).await;
    }

    /// Sends a request the worker will not finish; returns once it is busy with it.
    async fn hold(&mut self, c: usize, stuck: bool) {
        let w = self.model.nodes[c].worker.unwrap();
        let id = self.model.nodes[c].id.clone();
        if stuck {
            let (tx, rx) = mpsc::channel();
            *lock(&self.blocks[w]) = Some(rx);
            self.releases.push(tx);
        } else {
            self.env.faults.inject(&id, Fault::Hang, Some(1));
        }
        let r = self.refs[w].clone();
        let opts = CallOptions {
            deadline: Duration::from_secs(600),
            correlation_id: None,
        };
        actix::spawn(async move {
            let _ = r.call((), &opts).await;
        });
        let (faults, block) = (self.env.faults.clone(), self.blocks[w].clone());
        wait_until(
            "the worker is busy with a request it will not finish",
            || {
                if stuck {
                    lock(&block).is_none()
                } else {
                    !faults.is_armed(&id)
                }
            },
        )
        .await;
        self.model.nodes[c].hung = if stuck { Hung::Stuck } else { Hung::Hang };
    }

    async fn op_restart(&mut self, c: usize) {
        let id = self.model.nodes[c].id.clone();
        let node = self.root.node.clone();
        let what = format!("an operator has restarted {id}");
        let done = actix::spawn(async move {
            supervisor::restart_actor(&node, &id, Duration::from_secs(60)).await
        });
        let started = self.model.op_restart(c);
        self.drive().await;
        let answer = done.await.unwrap();
        assert_eq!(answer.is_ok(), started, "{what}: {answer:?}");
        if !self.model.root_failed {
            self.settle(&what).await;
        }
    }

    async fn step(&mut self, step: &Step) {
        let m = &self.model;
        match step.action {
            Action::Fail(kind) => {
                if let Some(c) = choose(m.failable(), step.pick) {
                    self.fail(c, kind).await;
                }
            }
            Action::FailThenStartFail(kind, failure) => {
                let options = m
                    .failable()
                    .into_iter()
                    .filter(|&c| m.nodes[c].restart != RestartType::Temporary && !m.armed(c))
                    .collect();
                if let Some(c) = choose(options, step.pick) {
                    self.arm(c, failure, step.pick);
                    self.fail(c, kind).await;
                }
            }
            Action::Hang | Action::Stuck => {
                let stuck = step.action == Action::Stuck;
                let options = m
                    .failable()
                    .into_iter()
                    .filter(|&c| m.nodes[c].sup == 0 && (!stuck || m.nodes[c].own_thread))
                    .collect();
                if let Some(c) = choose(options, step.pick) {
                    self.hold(c, stuck).await;
                }
            }
            Action::StartFailWhilePending(failure) => {
                let options = (0..m.nodes.len())
                    .filter(|&c| {
                        m.nodes[c].sup == 0 && m.nodes[c].state == St::Pending && !m.armed(c)
                    })
                    .collect();
                if let Some(c) = choose(options, step.pick) {
                    self.arm(c, failure, step.pick);
                }
            }
            Action::OpRestart => {
                if let Some(c) = choose(m.restartable(), step.pick) {
                    self.op_restart(c).await;
                }
            }
            Action::OpRestartStartFail(failure) => {
                let options = m
                    .restartable()
                    .into_iter()
                    .filter(|&c| !m.armed(c))
                    .collect();
                if let Some(c) = choose(options, step.pick) {
                    self.arm(c, failure, step.pick);
                    self.op_restart(c).await;
                }
            }
        }
    }

    /// Moves the clock on by `gap`, stopping at each restart the runtime makes meanwhile
    /// (a restart that waits on the clock itself, stopping a hung child, may take it past).
    async fn advance_by(&mut self, gap: Duration) {
        let target = self.clock.now() + gap;
        while !self.model.root_failed && self.clock.now() < target {
            let next = self.clock.next_deadline().filter(|at| *at <= target);
            let Some(at) = next else {
                if let Some(p) = self.model.sups[0].pending.iter().find(|p| p.hi <= target) {
                    panic!(
                        "the restart of {:?} was due by {:?}; by {target:?} it has not come, in {:?}",
                        p.children, p.hi, self.case
                    );
                }
                self.clock.advance(target - self.clock.now());
                self.model.now = target;
                self.model.not_before(target);
                return;
            };
            self.clock.advance(at - self.clock.now());
            let candidates = self
                .model
                .candidates(at)
                .unwrap_or_else(|e| panic!("{e}, in {:?}", self.case));
            let chosen = if candidates.len() == 1 {
                candidates[0]
            } else {
                // Restarts whose jitter decides which comes first: the first child the
                // runtime starts (or fails to) says which one it is.
                let base = self.expected.len();
                let log = self.log.clone();
                wait_until("one of the restarts due begins", || lock(&log).len() > base).await;
                let first = lock(&self.log)[base].clone();
                *candidates
                    .iter()
                    .find(|&&i| {
                        let mut m = self.model.clone();
                        m.script.clear();
                        m.fire(i, at);
                        matches!(m.script.first(), Some(Expect::Ev(e)) if *e == first)
                    })
                    .unwrap_or_else(|| {
                        panic!(
                            "{first:?} at {at:?} begins none of the restarts due, in {:?}",
                            self.case
                        )
                    })
            };
            self.model.fire(chosen, at);
            self.after(&format!("the restart due at {at:?} has run"))
                .await;
        }
    }

    fn check_counters(&self) {
        let case = &self.case;
        let exits = counters(
            &self.registry,
            "axon_supervisor_child_exits_total",
            &["supervisor", "child", "exit"],
        );
        assert_eq!(exits, self.model.exits, "child exits in {case:?}");
        let abandoned = counters(
            &self.registry,
            "axon_supervisor_abandoned_total",
            &["supervisor", "child"],
        );
        assert_eq!(
            abandoned, self.model.abandoned,
            "abandoned children in {case:?}"
        );
        let escalations = counters(
            &self.registry,
            "axon_supervisor_escalations_total",
            &["supervisor"],
        );
        assert_eq!(
            escalations, self.model.escalations,
            "escalations in {case:?}"
        );
        // r is 0 with probability nil: two delays without any jitter mean there is none.
        let (jittered, plain) = (self.model.jittered, self.model.unjittered);
        assert!(
            jittered > 0 || plain < 2,
            "{plain} backoff delays, none with jitter, in {case:?}"
        );
    }

    async fn escalated(&mut self) {
        let exit = actix_rt::time::timeout(Duration::from_secs(5), &mut self.root.exit)
            .await
            .unwrap_or_else(|_| panic!("no escalation in {:?}; log {:?}", self.case, self.log()))
            .unwrap();
        match exit {
            Exit::Failed(reason) => {
                assert!(reason.contains("restart intensity exceeded"), "{reason}")
            }
            other => panic!("expected escalation, got {other:?}"),
        }
        assert_eq!(self.log(), self.expected, "escalation in {:?}", self.case);
        assert_eq!(self.root.node.status(), NodeStatus::Failed);
        self.check_counters();
    }

    async fn shutdown(&mut self) {
        // A slow child at shutdown: the graceful stop waits (within its shutdown timeout)
        // for the request it is handling, which is answered, not killed.
        let last = self.model.sups[0].children.len() - 1;
        let node = &self.model.nodes[last];
        let slow = node.worker.is_some()
            && node.state == St::Running
            && node.hung == Hung::No
            && matches!(node.shutdown, Shutdown::Timeout(d) if d > Duration::from_secs(1));
        let in_flight = if slow {
            let w = node.worker.unwrap();
            let before = self.clock.sleepers();
            self.env
                .faults
                .inject(&node.id, Fault::Delay(Duration::from_secs(1)), Some(1));
            let (r, o) = (self.refs[w].clone(), self.opts.clone());
            let call = actix::spawn(async move { r.call((), &o).await });
            let c = self.clock.clone();
            wait_until("the slow child holds its request", || {
                c.sleepers() == before + 1
            })
            .await;
            self.model.nodes[last].hung = Hung::Slow;
            Some(call)
        } else {
            None
        };
        self.root.stop(StopLevel::Graceful);
        self.model.shutdown();
        self.drive().await;
        let exit = actix_rt::time::timeout(Duration::from_secs(5), &mut self.root.exit)
            .await
            .expect("the tree stops")
            .unwrap();
        assert_eq!(exit, Exit::Shutdown);
        assert_eq!(
            self.log(),
            self.expected,
            "shutdown order in {:?}",
            self.case
        );
        if let Some(call) = in_flight {
            assert_eq!(
                call.await.unwrap(),
                Ok(()),
                "the request in flight at a graceful stop in {:?}",
                self.case
            );
        }
        self.check_counters();
    }
}

fn run_case(case: Case) -> bool {
    check(case);
    true
}

/// Runs `case` against the runtime and the model; returns the model as it ended.
fn check(case: Case) -> Model {
    actix::System::new().block_on(async move {
        let mut run = Run::start(case.clone()).await;
        for step in &case.steps {
            run.step(step).await;
            if !run.model.root_failed {
                run.advance_by(Duration::from_millis(step.gap_ms)).await;
            }
            if run.model.root_failed {
                run.escalated().await;
                return run.model;
            }
        }
        if case.settle_before_shutdown {
            run.advance_by(Duration::from_secs(1)).await;
            if run.model.root_failed {
                run.escalated().await;
                return run.model;
            }
        }
        run.shutdown().await;
        run.model
    })
}

#[test]
fn restarts_follow_the_contract() {
    QuickCheck::new()
        .tests(1000)
        .quickcheck(run_case as fn(Case) -> bool);
}

fn permanent(shutdown_s: u64) -> ChildDef {
    ChildDef::Worker(WorkerDef {
        restart: RestartType::Permanent,
        shutdown: Shutdown::Timeout(Duration::from_secs(shutdown_s)),
        own_thread: false,
    })
}

fn step(action: Action, pick: usize, gap_ms: u64) -> Step {
    Step {
        action,
        pick,
        gap_ms,
    }
}

fn fixed(strategy: Strategy, max_restarts: u32, children: Vec<ChildDef>, steps: Vec<Step>) -> Case {
    Case {
        strategy,
        max_restarts,
        children,
        steps,
        settle_before_shutdown: true,
    }
}

const PANIC: Action = Action::Fail(Kind::Panic);

#[test]
fn backoff_delays_grow_and_intensity_still_applies() {
    // One permanent child failing soon after each restart: delays of 10, 20, 40 ms (each
    // with up to half again of jitter), then escalation.
    let model = check(fixed(
        Strategy::OneForOne,
        3,
        vec![permanent(5)],
        vec![
            step(PANIC, 0, 15),
            step(PANIC, 0, 30),
            step(PANIC, 0, 60),
            step(PANIC, 0, 0),
        ],
    ));
    assert!(model.root_failed);
    assert_eq!(model.nodes[0].restarts_total, 3);
}

#[test]
fn a_failure_during_a_backoff_takes_over_the_pending_restart() {
    // rest_for_one over c0, c1, c2. c1 fails: c1 and c2 wait 10 to 15 ms. 5 ms later c0
    // fails (its second failure in a short run: 20 to 30 ms): c0, c1 and c2 restart once,
    // together, when c0's backoff ends, not when c1's did.
    let model = check(fixed(
        Strategy::RestForOne,
        10,
        vec![permanent(5), permanent(5), permanent(5)],
        vec![step(PANIC, 0, 20), step(PANIC, 1, 5), step(PANIC, 0, 40)],
    ));
    let totals: Vec<u64> = model.nodes.iter().map(|n| n.restarts_total).collect();
    assert_eq!(totals, vec![2, 3, 3]);
}

#[test]
fn a_start_failure_is_a_failure_of_that_child() {
    // one_for_all over c0, c1, c2: c0 fails, and c1 will not start when the restart comes:
    // c0 is stopped again, and all three restart after c1's own backoff.
    let model = check(fixed(
        Strategy::OneForAll,
        10,
        vec![permanent(5), permanent(5), permanent(5)],
        vec![
            step(PANIC, 0, 0),
            step(Action::StartFailWhilePending(StartFailure::Err), 1, 100),
            step(Action::OpRestartStartFail(StartFailure::Panic), 2, 100),
        ],
    ));
    let totals: Vec<u64> = model.nodes.iter().map(|n| n.restarts_total).collect();
    assert_eq!(totals, vec![3, 3, 4]);
}

#[test]
fn a_hung_child_is_killed_after_its_shutdown_timeout_and_a_stuck_one_abandoned() {
    // one_for_all: w0 hangs in a request, w1 blocks its thread; w2 fails. w1 is asked to
    // stop, killed after 1 s and abandoned 1 s later; w0 is killed after its 2 s.
    let stuck = ChildDef::Worker(WorkerDef {
        restart: RestartType::Permanent,
        shutdown: Shutdown::Timeout(Duration::from_secs(1)),
        own_thread: true,
    });
    let model = check(fixed(
        Strategy::OneForAll,
        3,
        vec![permanent(2), stuck, permanent(5)],
        vec![
            step(Action::Hang, 0, 0),
            step(Action::Stuck, 1, 0),
            step(PANIC, 2, 100),
        ],
    ));
    assert_eq!(model.abandoned.values().sum::<u64>(), 1);
    let killed = vec!["sup".to_owned(), "w0".to_owned(), "killed".to_owned()];
    assert_eq!(model.exits.get(&killed), Some(&1));
}

#[test]
fn a_nested_supervisor_over_its_intensity_fails_as_a_child_of_the_root() {
    // The root (one_for_all) over w0 and n1 (one_for_one, 1 restart in 5 s, over w1 and
    // w2). w1 fails twice: n1 gives up, and the root restarts w0 and n1 after a backoff.
    let nested = ChildDef::Nested(NestedDef {
        restart: RestartType::Transient,
        strategy: Strategy::OneForOne,
        max_restarts: 1,
        children: vec![
            WorkerDef {
                restart: RestartType::Permanent,
                shutdown: Shutdown::Timeout(Duration::from_secs(5)),
                own_thread: false,
            },
            WorkerDef {
                restart: RestartType::Permanent,
                shutdown: Shutdown::BrutalKill,
                own_thread: false,
            },
        ],
    });
    let model = check(fixed(
        Strategy::OneForAll,
        3,
        vec![permanent(5), nested],
        vec![step(PANIC, 2, 0), step(PANIC, 2, 100)],
    ));
    let n1 = vec!["n1".to_owned()];
    assert_eq!(model.escalations.get(&n1), Some(&1));
    assert_eq!(model.nodes[1].restarts_total, 1);
}

#[test]
fn a_start_failure_after_a_short_run_keeps_the_failure_count() {
    // rest_for_one over c0, c1. c1 fails (count 1) and is restarted. c0 fails twice, each
    // after a run of under 10 ms; each failure stops c1 after a run of under 10 ms. c1 is
    // then down for c0's backoff (over 20 ms), and its next start fails. c1 has never run
    // `reset_after` (25 ms) since its last restart, so its count stays 1 and its backoff
    // is 20 to 30 ms. (The runtime once measured from c1's last start, the time c1
    // spent stopped included, reset the count and waited 10 to 15 ms.)
    check(fixed(
        Strategy::RestForOne,
        10,
        vec![permanent(5), permanent(5)],
        vec![
            step(PANIC, 1, 20),
            step(PANIC, 0, 20),
            step(PANIC, 0, 0),
            step(Action::StartFailWhilePending(StartFailure::Err), 1, 100),
        ],
    ));
}
