//! Supervisors: OTP's `supervisor` behaviour on actix's runtime, to the contract in
//! `SUPERVISION.md`. A supervisor is a task on the actix arbiter that owns its children's
//! handles; it reacts to child exits, parent stop requests, admin commands and backoff
//! timers one at a time, so every restart sequence runs to its end before the next event.

use crate::backoff::{BackoffPolicy, BackoffState};
use crate::tree::TreeNode;
use crate::worker::panic_message;
use crate::Env;
use axon_protocols::{ChildKind, NodeStatus, RestartType, Strategy};
use futures::future::{self, Either, LocalBoxFuture};
use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How a child ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It stopped on its own, its work done.
    Normal,
    /// It stopped because its supervisor asked.
    Shutdown,
    /// A handler returned a fatal error, a start failed, or a supervisor gave up.
    Failed(String),
    /// A panic was caught.
    Panicked(String),
    /// It did not stop in time and was killed (or its exit was lost).
    Killed,
}

impl Exit {
    /// A failure, a panic or a kill: what `transient` children are restarted after.
    pub fn is_abnormal(&self) -> bool {
        matches!(self, Self::Failed(_) | Self::Panicked(_) | Self::Killed)
    }

    /// The label used in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Shutdown => "shutdown",
            Self::Failed(_) => "failed",
            Self::Panicked(_) => "panicked",
            Self::Killed => "killed",
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal => f.write_str("exited normally"),
            Self::Shutdown => f.write_str("was shut down"),
            Self::Failed(r) => write!(f, "failed: {r}"),
            Self::Panicked(r) => write!(f, "panicked: {r}"),
            Self::Killed => f.write_str("was killed"),
        }
    }
}

/// How hard a stop request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopLevel {
    Run,
    /// Finish what is in hand, then stop.
    Graceful,
    /// Stop now.
    Kill,
}

/// How a child is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Ask, wait this long, then kill.
    Timeout(Duration),
    /// Ask and wait for as long as it takes (supervisors: they stop their own children).
    Infinity,
    /// Kill at once.
    BrutalKill,
}

/// Asks a running child to stop.
pub trait ChildControl {
    fn stop(&self, level: StopLevel);

    /// The supervisor gives up on this incarnation (it did not stop within the bound
    /// after a kill): whatever it still holds that callers reach (a worker's address and
    /// mailbox count) is taken from it, so callers see `Unavailable` at once instead of
    /// queueing to it.
    fn abandon(&self) {}
}

/// A started child: how to stop it, and where its one exit arrives.
pub struct Running {
    pub control: Box<dyn ChildControl>,
    pub exit: oneshot::Receiver<Exit>,
}

/// Starts one incarnation of a child; completes when the child is up.
pub type StartFn = Rc<dyn Fn() -> LocalBoxFuture<'static, Result<Running, StartError>>>;

/// Why one start of a child did not bring it up. A start failure is a failure of the
/// child: it counts toward its supervisor's intensity like any other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The child's own start refused, with its reason (a worker's factory returned `Err`,
    /// a port could not be bound, a lock could not be taken).
    #[error("{0}")]
    Refused(String),
    #[error("panicked while starting: {0}")]
    Panicked(String),
    #[error("did not start within {0:?}")]
    TimedOut(Duration),
    /// A kill was asked of the supervisor while this child started: the start was given
    /// up, and the child stays down (not a failure of the child).
    #[error("a kill was asked while it started")]
    Interrupted,
    /// The thread of a worker that runs on its own ended or refused the start.
    #[error("its thread ended before the worker started")]
    ThreadLost,
    /// A supervisor's child failed to start, so the supervisor did not start either.
    #[error("{supervisor}: child {child} failed to start: {cause}")]
    Child {
        supervisor: String,
        child: String,
        cause: Box<StartError>,
    },
}

/// A child of a supervisor.
#[derive(Clone)]
pub struct ChildSpec {
    pub id: String,
    pub restart: RestartType,
    pub shutdown: Shutdown,
    pub kind: ChildKind,
    pub node: Arc<TreeNode>,
    pub start: StartFn,
    /// `Some` for a child whose failures stay its own (a driver): see [`Isolation`].
    pub isolation: Option<Isolation>,
}

/// A child whose failures never count against its supervisor's restart intensity and
/// never escalate — Axon's departure from OTP for drivers, so that one bad plugin never
/// takes the node down. The child has an intensity of its own and restarts alone (its
/// supervisor's strategy touches no sibling for it). Past its intensity, `exceeded` is
/// told why (it moves the child out of service: a driver is demoted) and the child is
/// restarted once `cool_down` has passed, with its own count cleared.
#[derive(Clone)]
pub struct Isolation {
    pub intensity: Intensity,
    pub cool_down: Duration,
    pub exceeded: Rc<dyn Fn(&str)>,
}

impl std::fmt::Debug for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Isolation")
            .field("intensity", &self.intensity)
            .field("cool_down", &self.cool_down)
            .finish()
    }
}

/// Restart intensity: more than `max_restarts` restarts within `period` escalates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intensity {
    pub max_restarts: u32,
    pub period: Duration,
}

/// Forgets the restarts in `history` that left `intensity`'s window at `now`; true if one
/// more fits in it.
fn fits(history: &mut VecDeque<Duration>, intensity: Intensity, now: Duration) -> bool {
    while history
        .front()
        .is_some_and(|t| now.saturating_sub(*t) >= intensity.period)
    {
        history.pop_front();
    }
    history.len() < intensity.max_restarts as usize
}

/// A supervisor: its strategy, limits and children (started in this order).
pub struct SupervisorSpec {
    pub id: String,
    pub strategy: Strategy,
    pub intensity: Intensity,
    pub backoff: BackoffPolicy,
    /// The bound of its admin command queue.
    pub command_capacity: usize,
    pub children: Vec<ChildSpec>,
}

/// An admin command to a supervisor.
pub enum Command {
    /// Stop and start one child now, whatever the strategy (not counted in the intensity
    /// window).
    Restart {
        id: String,
        reply: oneshot::Sender<Result<(), RestartError>>,
    },
    /// Kill one running child as failed (it hangs: it answers nothing within its
    /// deadlines): handled like any failure of it — its strategy, its intensity (an
    /// isolated child's own), its backoff.
    Fail { id: String, reason: String },
    /// Add the children `build` makes (on the supervisor's own thread: a child's spec is
    /// not `Send`) after the others, and start them, in order. They stay children across
    /// restarts of the supervisor. Each one's stop bound is taken from the room the
    /// supervisor was defined with ([`supervisor_with_room`]), so that its own stop
    /// bound still holds.
    Add {
        build: BuildChildren,
        reply: oneshot::Sender<Result<(), AddError>>,
    },
}

/// Makes children to add to a running supervisor, on that supervisor's thread.
pub type BuildChildren = Box<dyn FnOnce(&Env) -> Vec<ChildSpec> + Send>;

/// Why children were not added to a running supervisor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    #[error("no supervisor named {0} in the supervision tree")]
    UnknownSupervisor(String),
    #[error("supervisor {0} has too many commands queued")]
    Overloaded(String),
    #[error("supervisor {0} is not running")]
    Unavailable(String),
    #[error("supervisor {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("supervisor {supervisor} already has a child named {child}")]
    Taken { supervisor: String, child: String },
    #[error("supervisor {supervisor} has no room left in its stop bound: the children need {needed:?} and {left:?} is left")]
    NoRoom {
        supervisor: String,
        needed: Duration,
        left: Duration,
    },
    #[error("building the children panicked: {0}")]
    Panicked(String),
    /// A child did not start: none of the children were added.
    #[error("child {child} did not start: {cause}")]
    Failed { child: String, cause: StartError },
}

struct SupervisorDef {
    env: Env,
    id: String,
    strategy: Strategy,
    intensity: Intensity,
    backoff: BackoffPolicy,
    command_capacity: usize,
    /// Its children, those added while it runs ([`Command::Add`]) after the others.
    children: std::cell::RefCell<Vec<ChildSpec>>,
    node: Arc<TreeNode>,
    /// The time kept in its stop bound for children added while it runs, and how much
    /// of it they take.
    room: Duration,
    room_used: std::cell::Cell<Duration>,
}

/// Builds the child spec of a supervisor, to place under another supervisor.
pub fn supervisor(env: &Env, spec: SupervisorSpec, restart: RestartType) -> ChildSpec {
    supervisor_with_room(env, spec, restart, Duration::ZERO)
}

/// Builds the child spec of a supervisor to which children may be added while it runs
/// ([`Command::Add`]), with `room` kept in its stop bound for their stops.
pub fn supervisor_with_room(
    env: &Env,
    spec: SupervisorSpec,
    restart: RestartType,
    room: Duration,
) -> ChildSpec {
    // A supervisor's stop is bounded by its children's: each one's shutdown timeout and
    // the wait for its kill, one after the other.
    let kill_wait = env.bounds.kill_wait;
    let bound = spec
        .children
        .iter()
        .map(|c| stop_bound(c, kill_wait))
        .sum::<Duration>()
        + room;
    let def = define(env, spec, Some(restart), room);
    ChildSpec {
        id: def.id.clone(),
        restart,
        shutdown: Shutdown::Timeout(bound),
        kind: ChildKind::Supervisor,
        node: def.node.clone(),
        start: Rc::new(move || start_incarnation(def.clone())),
        isolation: None,
    }
}

fn new_node(spec: &SupervisorSpec, restart: Option<RestartType>) -> Arc<TreeNode> {
    let node = TreeNode::new(
        spec.id.clone(),
        ChildKind::Supervisor,
        Some(spec.strategy),
        restart,
        None,
    );
    node.set_children(spec.children.iter().map(|c| c.node.clone()).collect());
    node
}

fn define(
    env: &Env,
    spec: SupervisorSpec,
    restart: Option<RestartType>,
    room: Duration,
) -> Rc<SupervisorDef> {
    let node = new_node(&spec, restart);
    define_with_node(env, spec, node, room)
}

fn define_with_node(
    env: &Env,
    spec: SupervisorSpec,
    node: Arc<TreeNode>,
    room: Duration,
) -> Rc<SupervisorDef> {
    // Series that start at zero, so dashboards and alerts see them before the first event.
    env.metrics.escalations.with_label_values(&[&spec.id]);
    for c in &spec.children {
        env.metrics.restarts.with_label_values(&[&spec.id, &c.id]);
    }
    Rc::new(SupervisorDef {
        env: env.clone(),
        id: spec.id,
        strategy: spec.strategy,
        intensity: spec.intensity,
        backoff: spec.backoff,
        command_capacity: spec.command_capacity.max(1),
        children: std::cell::RefCell::new(spec.children),
        node,
        room,
        room_used: std::cell::Cell::new(Duration::ZERO),
    })
}

struct SupervisorControl {
    stop_tx: watch::Sender<StopLevel>,
}

impl ChildControl for SupervisorControl {
    fn stop(&self, level: StopLevel) {
        let _ = self.stop_tx.send(level);
    }
}

fn start_incarnation(
    def: Rc<SupervisorDef>,
) -> LocalBoxFuture<'static, Result<Running, StartError>> {
    Box::pin(async move {
        let (stop_tx, stop_rx) = watch::channel(StopLevel::Run);
        let (exit_tx, exit_rx) = oneshot::channel();
        let (started_tx, started_rx) = oneshot::channel();
        let (cmd_tx, cmd_rx) = mpsc::channel(def.command_capacity);
        let children = def.children.borrow().clone();
        def.node
            .set_children(children.iter().map(|c| c.node.clone()).collect());
        def.node.set_commands(Some(cmd_tx));
        let seed = def.env.seed ^ fnv1a(def.id.as_bytes());
        let sup = Supervisor {
            slots: children
                .iter()
                .map(|spec| Slot {
                    spec: spec.clone(),
                    run: None,
                    state: SlotState::Stopped,
                    backoff: BackoffState::default(),
                    own_history: VecDeque::new(),
                })
                .collect(),
            def: def.clone(),
            history: VecDeque::new(),
            pending: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            stop_rx,
            cmd_rx,
        };
        let node = def.node.clone();
        actix::spawn(async move {
            let mut sup = sup;
            // Kept out here so that a panic during the start is reported only once the
            // children already started have been stopped.
            let mut started = Some(started_tx);
            let ran = AssertUnwindSafe(sup.run(&mut started)).catch_unwind().await;
            let exit = match ran {
                Ok(exit) => exit,
                Err(p) => {
                    // A panic is a failure of this supervisor: its children are stopped in
                    // order (each within its shutdown bound) before it exits as failed,
                    // never dropped to die unordered and unawaited.
                    let msg = panic_message(&*p);
                    tracing::error!(supervisor = %sup.def.id, panic = %msg, "supervisor panicked; stopping its children");
                    sup.def.node.set_status(NodeStatus::Stopping);
                    let _ = AssertUnwindSafe(sup.stop_all(StopLevel::Graceful))
                        .catch_unwind()
                        .await;
                    sup.def
                        .node
                        .record_failure(format!("panicked: {msg}"), sup.def.env.clock.wall());
                    if let Some(tx) = started.take() {
                        let _ = tx.send(Err(StartError::Panicked(format!(
                            "supervisor {}: {msg}",
                            sup.def.id
                        ))));
                    }
                    Exit::Panicked(msg)
                }
            };
            node.set_commands(None);
            if exit.is_abnormal() {
                node.set_status(NodeStatus::Failed);
            }
            let _ = exit_tx.send(exit);
        });
        match started_rx.await {
            Ok(Ok(())) => Ok(Running {
                control: Box::new(SupervisorControl { stop_tx }),
                exit: exit_rx,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StartError::Panicked(format!("supervisor {}", def.id))),
        }
    })
}

/// The bounds every stop and start of one tree keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// How long a kill may take (on the node's clock) before the child is abandoned.
    pub kill_wait: Duration,
    /// How long one start of a child may take (real time: a start is real work, like
    /// opening and checking a large journal); a start that takes longer is a start
    /// failure.
    pub start_timeout: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            kill_wait: Duration::from_secs(1),
            start_timeout: Duration::from_secs(120),
        }
    }
}

/// The longest a stop of `child` may take: its shutdown timeout, then the wait for its
/// kill.
fn stop_bound(child: &ChildSpec, kill_wait: Duration) -> Duration {
    match child.shutdown {
        Shutdown::Timeout(d) => d + kill_wait,
        Shutdown::BrutalKill | Shutdown::Infinity => kill_wait,
    }
}

/// Completes once a stop request at `Kill` level arrives (or the requester is gone).
pub(crate) async fn kill_requested(mut rx: watch::Receiver<StopLevel>) {
    loop {
        if *rx.borrow_and_update() == StopLevel::Kill {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn env_abandoned(env: &Env, supervisor: &str, child: &str) -> prometheus::IntCounter {
    env.metrics
        .abandoned
        .with_label_values(&[supervisor, child])
}

/// The top of a tree, held by whoever runs the node.
pub struct Root {
    pub node: Arc<TreeNode>,
    control: Box<dyn ChildControl>,
    /// Completes with the root's exit: `Shutdown` after a stop request, `Failed` when the
    /// whole tree gave up.
    pub exit: oneshot::Receiver<Exit>,
}

impl Root {
    /// Asks the whole tree to stop (children in reverse start order).
    pub fn stop(&self, level: StopLevel) {
        self.control.stop(level);
    }
}

/// The top of a tree before it starts: its node exists (so routes can hold it) and more
/// children can still be added.
pub struct RootSpec {
    env: Env,
    spec: SupervisorSpec,
    node: Arc<TreeNode>,
}

impl RootSpec {
    pub fn new(env: &Env, spec: SupervisorSpec) -> Self {
        let node = new_node(&spec, None);
        Self {
            env: env.clone(),
            spec,
            node,
        }
    }

    /// The live node of the root, valid before and after the start.
    pub fn node(&self) -> &Arc<TreeNode> {
        &self.node
    }

    /// Adds a child after the others (started last, stopped first).
    pub fn push_child(&mut self, child: ChildSpec) {
        self.spec.children.push(child);
        self.node
            .set_children(self.spec.children.iter().map(|c| c.node.clone()).collect());
    }

    /// Starts the tree. Fails if any child fails to start; the children already started
    /// are stopped again first.
    pub async fn start(self) -> Result<Root, StartError> {
        let def = define_with_node(&self.env, self.spec, self.node, Duration::ZERO);
        let node = def.node.clone();
        let running = start_incarnation(def).await?;
        Ok(Root {
            node,
            control: running.control,
            exit: running.exit,
        })
    }
}

/// Starts a tree whose top is `spec`.
pub async fn start_root(env: &Env, spec: SupervisorSpec) -> Result<Root, StartError> {
    RootSpec::new(env, spec).start().await
}

/// Why an admin restart was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartError {
    #[error("no actor named {0} in the supervision tree")]
    UnknownActor(String),
    #[error("{0} is the root of the tree; restart the node instead")]
    IsRoot(String),
    #[error("the supervisor of {0} has too many commands queued")]
    Overloaded(String),
    #[error("the supervisor of {0} is not running")]
    Unavailable(String),
    #[error("the supervisor of {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("restart of {actor} failed: {cause}")]
    Failed { actor: String, cause: StartError },
}

/// Queues a restart of the actor `id` anywhere below `root` with its supervisor; the
/// receiver gets the outcome once the supervisor has done it.
pub fn request_restart(
    root: &Arc<TreeNode>,
    id: &str,
) -> Result<oneshot::Receiver<Result<(), RestartError>>, RestartError> {
    if root.id == id {
        return Err(RestartError::IsRoot(id.to_owned()));
    }
    let (parent, _) = root
        .find_with_parent(id)
        .ok_or_else(|| RestartError::UnknownActor(id.to_owned()))?;
    let tx = parent
        .commands()
        .ok_or_else(|| RestartError::Unavailable(id.to_owned()))?;
    let (reply, rx) = oneshot::channel();
    tx.try_send(Command::Restart {
        id: id.to_owned(),
        reply,
    })
    .map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => RestartError::Overloaded(id.to_owned()),
        mpsc::error::TrySendError::Closed(_) => RestartError::Unavailable(id.to_owned()),
    })?;
    Ok(rx)
}

/// Asks the supervisor of the actor `id` anywhere below `root` to kill it as failed (it
/// hangs), for `reason`: its supervisor handles it like any failure of it.
pub fn request_failure(root: &Arc<TreeNode>, id: &str, reason: &str) -> Result<(), RestartError> {
    if root.id == id {
        return Err(RestartError::IsRoot(id.to_owned()));
    }
    let (parent, _) = root
        .find_with_parent(id)
        .ok_or_else(|| RestartError::UnknownActor(id.to_owned()))?;
    let tx = parent
        .commands()
        .ok_or_else(|| RestartError::Unavailable(id.to_owned()))?;
    tx.try_send(Command::Fail {
        id: id.to_owned(),
        reason: reason.to_owned(),
    })
    .map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => RestartError::Overloaded(id.to_owned()),
        mpsc::error::TrySendError::Closed(_) => RestartError::Unavailable(id.to_owned()),
    })
}

/// Adds the children `build` makes to the running supervisor `supervisor` anywhere below
/// `root` (or `root` itself) and starts them, waiting at most `deadline` for it.
pub async fn add_children(
    root: &Arc<TreeNode>,
    supervisor: &str,
    build: BuildChildren,
    deadline: Duration,
) -> Result<(), AddError> {
    let node = if root.id == supervisor {
        root.clone()
    } else {
        root.find_with_parent(supervisor)
            .map(|(_, n)| n)
            .filter(|n| n.kind == ChildKind::Supervisor)
            .ok_or_else(|| AddError::UnknownSupervisor(supervisor.to_owned()))?
    };
    let tx = node
        .commands()
        .ok_or_else(|| AddError::Unavailable(supervisor.to_owned()))?;
    let (reply, mut rx) = oneshot::channel();
    tx.try_send(Command::Add { build, reply })
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AddError::Overloaded(supervisor.to_owned()),
            mpsc::error::TrySendError::Closed(_) => AddError::Unavailable(supervisor.to_owned()),
        })?;
    match tokio::time::timeout(deadline, &mut rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(AddError::Unavailable(supervisor.to_owned())),
        Err(_) => {
            // Closed first, then read: an answer sent just before is taken as the answer
            // (the children were added); any later one cannot be sent, and the
            // supervisor takes its children back.
            rx.close();
            match rx.try_recv() {
                Ok(r) => r,
                Err(_) => Err(AddError::Timeout(supervisor.to_owned(), deadline)),
            }
        }
    }
}

/// Restarts the actor `id` anywhere below `root` and waits until it is done.
pub async fn restart_actor(
    root: &Arc<TreeNode>,
    id: &str,
    deadline: Duration,
) -> Result<(), RestartError> {
    let rx = request_restart(root, id)?;
    match tokio::time::timeout(deadline, rx).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(_)) => Err(RestartError::Unavailable(id.to_owned())),
        Err(_) => Err(RestartError::Timeout(id.to_owned(), deadline)),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Running,
    /// Waiting out its backoff before a restart.
    Pending,
    /// Down and staying down until something restarts it.
    Stopped,
    /// A temporary child that ended: gone from the tree.
    Removed,
}

struct Slot {
    spec: ChildSpec,
    run: Option<RunningChild>,
    state: SlotState,
    backoff: BackoffState,
    /// The restarts of an isolated child, in its own intensity window.
    own_history: VecDeque<Duration>,
}

struct RunningChild {
    control: Box<dyn ChildControl>,
    exit: Option<oneshot::Receiver<Exit>>,
}

struct PendingRestart {
    at: Duration,
    children: Vec<usize>,
}

/// One step of handling a failure (see [`Supervisor::recover`]).
enum Recovery {
    /// Child `i` is down with this exit: apply the intensity, then the strategy.
    Failed(usize, Exit),
    /// Start these children now, in start order.
    StartNow(Vec<usize>),
}

enum Event {
    Stop(StopLevel),
    Exit(usize, Exit),
    Command(Command),
    Timer,
}

struct Supervisor {
    def: Rc<SupervisorDef>,
    slots: Vec<Slot>,
    /// Times of the restarts inside the intensity window.
    history: VecDeque<Duration>,
    pending: Vec<PendingRestart>,
    rng: StdRng,
    stop_rx: watch::Receiver<StopLevel>,
    cmd_rx: mpsc::Receiver<Command>,
}

impl Supervisor {
    async fn run(&mut self, started: &mut Option<oneshot::Sender<Result<(), StartError>>>) -> Exit {
        self.def.node.set_status(NodeStatus::Starting);
        for i in 0..self.slots.len() {
            if let Err(e) = self.start_slot(i).await {
                if e == StartError::Interrupted {
                    // Killed while starting: what started is killed, and so is this.
                    self.stop_all(StopLevel::Kill).await;
                    self.def.node.set_status(NodeStatus::Stopped);
                    if let Some(tx) = started.take() {
                        let _ = tx.send(Err(e));
                    }
                    return Exit::Killed;
                }
                let e = StartError::Child {
                    supervisor: self.def.id.clone(),
                    child: self.slots[i].spec.id.clone(),
                    cause: Box::new(e),
                };
                let reason = e.to_string();
                self.slots[i].spec.node.set_status(NodeStatus::Failed);
                self.stop_all(StopLevel::Graceful).await;
                self.def.node.set_status(NodeStatus::Failed);
                self.def
                    .node
                    .record_failure(reason.clone(), self.def.env.clock.wall());
                if let Some(tx) = started.take() {
                    let _ = tx.send(Err(e));
                }
                return Exit::Failed(reason);
            }
        }
        self.def.node.set_status(NodeStatus::Running);
        if let Some(tx) = started.take() {
            let _ = tx.send(Ok(()));
        }
        loop {
            let exit = match self.next_event().await {
                Event::Stop(level) => {
                    self.def.node.set_status(NodeStatus::Stopping);
                    self.stop_all(level).await;
                    self.def.node.set_status(NodeStatus::Stopped);
                    return if level == StopLevel::Kill {
                        Exit::Killed
                    } else {
                        Exit::Shutdown
                    };
                }
                Event::Exit(i, exit) => self.on_child_exit(i, exit).await,
                Event::Command(c) => self.on_command(c).await,
                Event::Timer => self.run_due().await,
            };
            if let Some(exit) = exit {
                return exit;
            }
        }
    }

    async fn next_event(&mut self) -> Event {
        let clock = self.def.env.clock.clone();
        let next_at = self.pending.iter().map(|p| p.at).min();
        let timer = async move {
            match next_at {
                Some(at) => {
                    let now = clock.now();
                    if at > now {
                        clock.sleep(at - now).await;
                    }
                }
                None => future::pending::<()>().await,
            }
        };
        let Self {
            slots,
            stop_rx,
            cmd_rx,
            ..
        } = self;
        let exits = future::poll_fn(|cx| {
            for (i, slot) in slots.iter_mut().enumerate() {
                let Some(run) = slot.run.as_mut() else {
                    continue;
                };
                let Some(rx) = run.exit.as_mut() else {
                    continue;
                };
                if let Poll::Ready(r) = Pin::new(rx).poll(cx) {
                    run.exit = None;
                    return Poll::Ready((i, r.unwrap_or(Exit::Killed)));
                }
            }
            Poll::Pending
        });
        tokio::select! {
            biased;
            changed = stop_rx.changed() => match changed {
                Ok(()) => match *stop_rx.borrow_and_update() {
                    StopLevel::Run => Event::Timer,
                    level => Event::Stop(level),
                },
                // The parent is gone without a word: stop everything now.
                Err(_) => Event::Stop(StopLevel::Kill),
            },
            (i, exit) = exits => Event::Exit(i, exit),
            Some(cmd) = cmd_rx.recv() => Event::Command(cmd),
            _ = timer => Event::Timer,
        }
    }

    fn child_id(&self, i: usize) -> &str {
        &self.slots[i].spec.id
    }

    async fn on_child_exit(&mut self, i: usize, exit: Exit) -> Option<Exit> {
        let env = self.def.env.clone();
        let slot = &mut self.slots[i];
        slot.run = None;
        env.metrics
            .exits
            .with_label_values(&[&self.def.id, &slot.spec.id, exit.kind()])
            .inc();
        if exit.is_abnormal() {
            slot.spec
                .node
                .record_failure(exit.to_string(), env.clock.wall());
        }
        match (slot.spec.restart, exit.is_abnormal()) {
            (RestartType::Temporary, _) => {
                tracing::info!(supervisor = %self.def.id, child = %slot.spec.id, %exit, "temporary child ended; it leaves the tree");
                slot.state = SlotState::Removed;
                slot.spec.node.set_status(if exit.is_abnormal() {
                    NodeStatus::Failed
                } else {
                    NodeStatus::Stopped
                });
                self.def.node.remove_child(&slot.spec.id);
                None
            }
            (RestartType::Transient, false) => {
                tracing::info!(supervisor = %self.def.id, child = %slot.spec.id, %exit, "transient child ended normally; not restarted");
                slot.backoff.stopped(&self.def.backoff, env.clock.now());
                slot.state = SlotState::Stopped;
                slot.spec.node.set_status(NodeStatus::Stopped);
                None
            }
            _ => {
                slot.state = SlotState::Stopped;
                slot.spec.node.set_status(NodeStatus::Restarting);
                self.recover(Recovery::Failed(i, exit)).await
            }
        }
    }

    /// Handles a failure, or a due restart, to its end: one planning step at a time, each
    /// of which may leave another (a restart whose start fails is a new failure), until
    /// none is left. Returns the supervisor's own exit when the intensity is exceeded.
    async fn recover(&mut self, first: Recovery) -> Option<Exit> {
        let mut next = Some(first);
        while let Some(step) = next.take() {
            next = match step {
                Recovery::Failed(i, exit) if self.slots[i].spec.isolation.is_some() => {
                    self.recover_isolated(i, exit)
                }
                Recovery::Failed(i, exit) => {
                    let now = self.def.env.clock.now();
                    if !self.within_intensity(now) {
                        return Some(self.escalate(i, &exit).await);
                    }
                    self.history.push_back(now);
                    let affected = self.affected_by(i);
                    self.stop_siblings(i, &affected).await;
                    let to_restart = self.restart_set(i, &affected);
                    self.prune_pending(&to_restart);
                    self.mark_restarting(&to_restart, now);
                    let delay = self.backoff_delay(i, now);
                    let names: Vec<&str> = to_restart.iter().map(|j| self.child_id(*j)).collect();
                    tracing::warn!(
                        supervisor = %self.def.id,
                        child = %self.child_id(i),
                        %exit,
                        restarting = ?names,
                        delay_ms = delay.as_millis() as u64,
                        "child exited; restarting"
                    );
                    if delay.is_zero() {
                        Some(Recovery::StartNow(to_restart))
                    } else {
                        self.pending.push(PendingRestart {
                            at: now + delay,
                            children: to_restart,
                        });
                        None
                    }
                }
                Recovery::StartNow(children) => match self.start_in_order(children).await {
                    // Being killed: the stop comes next, nothing more is restarted.
                    Some((_, StartError::Interrupted)) => None,
                    Some((j, e)) => Some(Recovery::Failed(
                        j,
                        Exit::Failed(format!("restart failed: {e}")),
                    )),
                    None => None,
                },
            };
        }
        None
    }

    /// Forgets the restarts that left the intensity window; true if one more fits in it.
    fn within_intensity(&mut self, now: Duration) -> bool {
        fits(&mut self.history, self.def.intensity, now)
    }

    /// The failure of an isolated child: restarted alone after its backoff while within
    /// its own intensity; past it, taken out of service and restarted after its
    /// cool-down. Never counted against this supervisor, never escalated.
    fn recover_isolated(&mut self, i: usize, exit: Exit) -> Option<Recovery> {
        let now = self.def.env.clock.now();
        let iso = self.slots[i]
            .spec
            .isolation
            .clone()
            .expect("called for an isolated child");
        let within = fits(&mut self.slots[i].own_history, iso.intensity, now);
        let delay = if within {
            self.slots[i].own_history.push_back(now);
            self.backoff_delay(i, now)
        } else {
            self.slots[i].own_history.clear();
            let reason = format!(
                "{}: child {} {exit}; its own restart intensity exceeded (more than {} restarts within {}s): restarted after a cool-down of {}s",
                self.def.id,
                self.child_id(i),
                iso.intensity.max_restarts,
                iso.intensity.period.as_secs_f64(),
                iso.cool_down.as_secs_f64()
            );
            tracing::error!(supervisor = %self.def.id, child = %self.child_id(i), %reason, "isolated child over its intensity: taken out of service");
            self.def
                .env
                .metrics
                .isolated_exceeded
                .with_label_values(&[&self.def.id, self.child_id(i)])
                .inc();
            (iso.exceeded)(&reason);
            iso.cool_down
        };
        self.prune_pending(&[i]);
        self.mark_restarting(&[i], now);
        tracing::warn!(
            supervisor = %self.def.id,
            child = %self.child_id(i),
            %exit,
            delay_ms = delay.as_millis() as u64,
            "isolated child exited; restarting it alone"
        );
        if delay.is_zero() {
            return Some(Recovery::StartNow(vec![i]));
        }
        self.pending.push(PendingRestart {
            at: now + delay,
            children: vec![i],
        });
        None
    }

    /// Gives up: stops every child and returns this supervisor's failure, which its own
    /// supervisor handles as the failure of a child.
    async fn escalate(&mut self, i: usize, exit: &Exit) -> Exit {
        let env = self.def.env.clone();
        let Intensity {
            max_restarts,
            period,
        } = self.def.intensity;
        let reason = format!(
            "{}: child {} {exit}; restart intensity exceeded (more than {max_restarts} restarts within {}s)",
            self.def.id,
            self.child_id(i),
            period.as_secs_f64()
        );
        tracing::error!(supervisor = %self.def.id, %reason, "supervisor gives up and escalates");
        env.metrics
            .escalations
            .with_label_values(&[&self.def.id])
            .inc();
        self.slots[i].spec.node.set_status(NodeStatus::Failed);
        self.def.node.set_status(NodeStatus::Stopping);
        self.stop_all(StopLevel::Graceful).await;
        self.slots[i].spec.node.set_status(NodeStatus::Failed);
        self.def
            .node
            .record_failure(reason.clone(), env.clock.wall());
        self.def.node.set_status(NodeStatus::Failed);
        Exit::Failed(reason)
    }

    /// The children the strategy restarts when child `i` fails, in start order.
    /// (An isolated child restarts alone: see [`Self::recover_isolated`].)
    fn affected_by(&self, i: usize) -> Vec<usize> {
        let n = self.slots.len();
        match self.def.strategy {
            Strategy::OneForOne => i..i + 1,
            Strategy::OneForAll => 0..n,
            Strategy::RestForOne => i..n,
        }
        .filter(|j| self.slots[*j].state != SlotState::Removed)
        .collect()
    }

    /// Stops the running siblings among `affected`, in reverse start order, to be
    /// restarted with `i`.
    async fn stop_siblings(&mut self, i: usize, affected: &[usize]) {
        for &j in affected.iter().rev() {
            if j != i && self.slots[j].state == SlotState::Running {
                self.stop_slot(j, StopLevel::Graceful).await;
                // Stopped to be restarted, not a final stop.
                self.slots[j].state = SlotState::Pending;
            }
        }
    }

    /// Which of `affected` come back: the failed child and the siblings stopped for it;
    /// a temporary sibling leaves the tree instead, and a sibling that had ended normally
    /// (a transient child) stays down.
    fn restart_set(&mut self, i: usize, affected: &[usize]) -> Vec<usize> {
        let mut to_restart = Vec::new();
        for &j in affected {
            let slot = &mut self.slots[j];
            if j == i {
                to_restart.push(j);
            } else if slot.state == SlotState::Pending {
                if slot.spec.restart == RestartType::Temporary {
                    slot.state = SlotState::Removed;
                    slot.spec.node.set_status(NodeStatus::Stopped);
                    self.def.node.remove_child(&slot.spec.id);
                } else {
                    to_restart.push(j);
                }
            }
        }
        to_restart
    }

    /// Takes `children` out of the restarts already waiting: each starts once, with the
    /// newest plan.
    fn prune_pending(&mut self, children: &[usize]) {
        for p in &mut self.pending {
            p.children.retain(|c| !children.contains(c));
        }
        self.pending.retain(|p| !p.children.is_empty());
    }

    /// Counts and shows the restart of `children`.
    fn mark_restarting(&mut self, children: &[usize], now: Duration) {
        let env = &self.def.env;
        for &j in children {
            let slot = &mut self.slots[j];
            slot.state = SlotState::Pending;
            slot.spec.node.set_status(NodeStatus::Restarting);
            slot.spec
                .node
                .record_restart(now, self.def.intensity.period, true);
            env.metrics
                .restarts
                .with_label_values(&[&self.def.id, &slot.spec.id])
                .inc();
        }
    }

    /// How long the restart after child `i`'s failure waits.
    fn backoff_delay(&mut self, i: usize, now: Duration) -> Duration {
        let unit: f64 = self.rng.random();
        self.slots[i]
            .backoff
            .next_delay(&self.def.backoff, now, unit)
    }

    /// Starts `children` in start order. On a start failure, the children not reached
    /// yet are queued to start right after, and the failed child and its error are
    /// returned: the failure is handled like any other.
    async fn start_in_order(&mut self, mut children: Vec<usize>) -> Option<(usize, StartError)> {
        children.sort_unstable();
        children.dedup();
        for (k, &j) in children.iter().enumerate() {
            if self.slots[j].state != SlotState::Pending {
                continue;
            }
            if let Err(e) = self.start_slot(j).await {
                let rest: Vec<usize> = children[k + 1..].to_vec();
                if !rest.is_empty() {
                    self.pending.push(PendingRestart {
                        at: self.def.env.clock.now(),
                        children: rest,
                    });
                }
                self.slots[j].state = SlotState::Stopped;
                return Some((j, e));
            }
        }
        None
    }

    async fn run_due(&mut self) -> Option<Exit> {
        let now = self.def.env.clock.now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.at <= now);
        self.pending = later;
        let children: Vec<usize> = due.into_iter().flat_map(|p| p.children).collect();
        if children.is_empty() {
            return None;
        }
        self.recover(Recovery::StartNow(children)).await
    }

    /// Kills running child `id` and handles it as failed, for `reason`.
    async fn on_fail(&mut self, id: &str, reason: String) -> Option<Exit> {
        let j = self
            .slots
            .iter()
            .position(|s| s.spec.id == id && s.state == SlotState::Running)?;
        tracing::warn!(supervisor = %self.def.id, child = %id, %reason, "child killed as failed");
        self.stop_slot(j, StopLevel::Kill).await;
        let exit = Exit::Failed(reason);
        let env = self.def.env.clone();
        let slot = &mut self.slots[j];
        slot.spec
            .node
            .record_failure(exit.to_string(), env.clock.wall());
        slot.state = SlotState::Stopped;
        slot.spec.node.set_status(NodeStatus::Restarting);
        self.recover(Recovery::Failed(j, exit)).await
    }

    async fn on_command(&mut self, cmd: Command) -> Option<Exit> {
        let (id, reply) = match cmd {
            Command::Restart { id, reply } => (id, reply),
            Command::Fail { id, reason } => return self.on_fail(&id, reason).await,
            Command::Add { build, reply } => {
                self.on_add(build, reply).await;
                return None;
            }
        };
        let Some(j) = self
            .slots
            .iter()
            .position(|s| s.spec.id == id && s.state != SlotState::Removed)
        else {
            let _ = reply.send(Err(RestartError::UnknownActor(id)));
            return None;
        };
        tracing::info!(supervisor = %self.def.id, child = %id, "restart requested by an operator");
        for p in &mut self.pending {
            p.children.retain(|c| *c != j);
        }
        self.pending.retain(|p| !p.children.is_empty());
        self.stop_slot(j, StopLevel::Graceful).await;
        let env = self.def.env.clone();
        self.slots[j]
            .spec
            .node
            .record_restart(env.clock.now(), self.def.intensity.period, false);
        env.metrics
            .restarts
            .with_label_values(&[&self.def.id, &id])
            .inc();
        match self.start_slot(j).await {
            Ok(()) => {
                let _ = reply.send(Ok(()));
                None
            }
            Err(e) => {
                let interrupted = e == StartError::Interrupted;
                let _ = reply.send(Err(RestartError::Failed {
                    actor: id.clone(),
                    cause: e.clone(),
                }));
                if interrupted {
                    // Being killed: the stop comes next.
                    return None;
                }
                let exit = Exit::Failed(format!("restart failed: {e}"));
                if self.slots[j].spec.restart == RestartType::Temporary {
                    // A temporary child is never restarted after a failure, an operator's
                    // restart included: it leaves the tree.
                    tracing::info!(supervisor = %self.def.id, child = %id, %exit, "temporary child failed to restart; it leaves the tree");
                    let slot = &mut self.slots[j];
                    slot.state = SlotState::Removed;
                    slot.spec.node.set_status(NodeStatus::Failed);
                    self.def.node.remove_child(&id);
                    return None;
                }
                self.recover(Recovery::Failed(j, exit)).await
            }
        }
    }

    /// Adds the children `build` makes and starts them, and answers on `reply`; when one
    /// does not start, those started are stopped again and none is added. Whoever asked
    /// must still be waiting: an addition whose caller has gone (its deadline passed) is
    /// not made, and one it cannot hear of is taken back, so that nothing is added that
    /// its caller has already given up on.
    async fn on_add(&mut self, build: BuildChildren, reply: oneshot::Sender<Result<(), AddError>>) {
        if reply.is_closed() {
            tracing::info!(supervisor = %self.def.id, "an addition whose caller has gone is not made");
            return;
        }
        let first = self.slots.len();
        let added = self.add(build).await;
        let needed = added.as_ref().copied().unwrap_or_default();
        if reply.send(added.map(|_| ())).is_err() && first < self.slots.len() {
            tracing::warn!(supervisor = %self.def.id, "the caller of an addition gave up meanwhile; the children are taken back");
            self.take_back(first, needed).await;
        }
    }

    /// Stops the children from slot `first` on and forgets them, and gives back the room
    /// they took (`room`: none, while they were not yet kept in the definition).
    async fn take_back(&mut self, first: usize, room: Duration) {
        for k in (first..self.slots.len()).rev() {
            self.stop_slot(k, StopLevel::Graceful).await;
        }
        self.slots.truncate(first);
        self.def.children.borrow_mut().truncate(first);
        self.def
            .room_used
            .set(self.def.room_used.get().saturating_sub(room));
        self.show_children();
    }

    /// Shows the children that are not gone in the tree.
    fn show_children(&self) {
        self.def.node.set_children(
            self.slots
                .iter()
                .filter(|s| s.state != SlotState::Removed)
                .map(|s| s.spec.node.clone())
                .collect(),
        )
    }

    /// Adds and starts the children `build` makes; answers the room they took.
    async fn add(&mut self, build: BuildChildren) -> Result<Duration, AddError> {
        let def = self.def.clone();
        let specs = std::panic::catch_unwind(AssertUnwindSafe(|| build(&def.env)))
            .map_err(|p| AddError::Panicked(panic_message(&*p)))?;
        for (k, spec) in specs.iter().enumerate() {
            // A temporary child that left the tree keeps its id: it comes back with the
            // supervisor's next incarnation.
            let taken = self.slots.iter().any(|s| s.spec.id == spec.id)
                || specs[..k].iter().any(|o| o.id == spec.id);
            if taken {
                return Err(AddError::Taken {
                    supervisor: def.id.clone(),
                    child: spec.id.clone(),
                });
            }
        }
        let kill_wait = def.env.bounds.kill_wait;
        let needed: Duration = specs.iter().map(|c| stop_bound(c, kill_wait)).sum();
        let left = def.room.saturating_sub(def.room_used.get());
        if needed > left {
            return Err(AddError::NoRoom {
                supervisor: def.id.clone(),
                needed,
                left,
            });
        }
        let first = self.slots.len();
        for spec in &specs {
            def.env
                .metrics
                .restarts
                .with_label_values(&[&def.id, &spec.id]);
            self.slots.push(Slot {
                spec: spec.clone(),
                run: None,
                state: SlotState::Stopped,
                backoff: BackoffState::default(),
                own_history: VecDeque::new(),
            });
        }
        self.show_children();
        for j in first..self.slots.len() {
            if let Err(cause) = self.start_slot(j).await {
                tracing::warn!(supervisor = %def.id, child = %self.child_id(j), %cause, "an added child did not start; the children are not added");
                let child = self.child_id(j).to_owned();
                self.take_back(first, Duration::ZERO).await;
                return Err(AddError::Failed { child, cause });
            }
            tracing::info!(supervisor = %def.id, child = %self.child_id(j), "child added");
        }
        // Kept in the definition (and so in the next incarnation) only once all started:
        // a supervisor that panics meanwhile never brings them back.
        def.room_used.set(def.room_used.get() + needed);
        def.children.borrow_mut().extend(specs);
        Ok(needed)
    }

    async fn start_slot(&mut self, j: usize) -> Result<(), StartError> {
        let slot = &mut self.slots[j];
        slot.spec.node.set_status(NodeStatus::Starting);
        let start = slot.spec.start.clone();
        let start_timeout = self.def.env.bounds.start_timeout;
        let bounded = tokio::time::timeout(
            start_timeout,
            AssertUnwindSafe(async move { start().await }).catch_unwind(),
        );
        // A kill asked of this supervisor meanwhile ends the wait for the start at once.
        let killed = kill_requested(self.stop_rx.clone());
        let started = match future::select(Box::pin(bounded), Box::pin(killed)).await {
            Either::Left((started, _)) => started
                .unwrap_or(Ok(Err(StartError::TimedOut(start_timeout))))
                .unwrap_or_else(|p| Err(StartError::Panicked(panic_message(&*p)))),
            Either::Right(_) => Err(StartError::Interrupted),
        };
        let slot = &mut self.slots[j];
        match started {
            Ok(running) => {
                slot.run = Some(RunningChild {
                    control: running.control,
                    exit: Some(running.exit),
                });
                slot.backoff.started(self.def.env.clock.now());
                slot.state = SlotState::Running;
                slot.spec.node.set_status(NodeStatus::Running);
                Ok(())
            }
            Err(e) => {
                slot.spec
                    .node
                    .record_failure(format!("failed to start: {e}"), self.def.env.clock.wall());
                slot.spec.node.set_status(NodeStatus::Failed);
                Err(e)
            }
        }
    }

    /// Stops child `j`: ask, wait up to its shutdown timeout, then kill, and wait a bound
    /// for the kill to take; a child still running then is abandoned (counted). Its
    /// successor can never be touched by it: a worker's address is fenced by incarnation,
    /// one on its own thread gets a fresh thread, and a child that owns files holds a lock.
    async fn stop_slot(&mut self, j: usize, level: StopLevel) {
        let clock = self.def.env.clock.clone();
        let kill_wait = self.def.env.bounds.kill_wait;
        let sup_id = self.def.id.clone();
        // A kill asked of this supervisor while it stops a child gracefully passes down
        // to that child at once.
        let level = if *self.stop_rx.borrow() == StopLevel::Kill {
            StopLevel::Kill
        } else {
            level
        };
        let kill_rx = self.stop_rx.clone();
        let slot = &mut self.slots[j];
        let Some(mut run) = slot.run.take() else {
            return;
        };
        slot.spec.node.set_status(NodeStatus::Stopping);
        let timeout = match (level, slot.spec.shutdown) {
            (StopLevel::Kill, _) | (_, Shutdown::BrutalKill) => Some(Duration::ZERO),
            (_, Shutdown::Timeout(d)) => Some(d),
            (_, Shutdown::Infinity) => None,
        };
        let abandoned = env_abandoned(&self.def.env, &sup_id, &slot.spec.id);
        let exit = match run.exit.take() {
            None => Exit::Killed,
            Some(rx) => {
                let rx = rx.map(|r| r.unwrap_or(Exit::Killed));
                match timeout {
                    Some(d) if d.is_zero() => {
                        run.control.stop(StopLevel::Kill);
                        // A kill is bounded too: a child stuck where no kill reaches it
                        // is abandoned, never waited on for ever. A supervisor kills its
                        // children one after the other, each within its own bound.
                        let grace = match (slot.spec.kind, slot.spec.shutdown) {
                            (ChildKind::Supervisor, Shutdown::Timeout(bound)) => bound,
                            _ => kill_wait,
                        };
                        match future::select(Box::pin(rx), clock.sleep(grace)).await {
                            Either::Left((exit, _)) => exit,
                            Either::Right(_) => {
                                tracing::error!(supervisor = %sup_id, child = %slot.spec.id, "child did not stop after a kill; abandoning it");
                                abandoned.inc();
                                run.control.abandon();
                                Exit::Killed
                            }
                        }
                    }
                    Some(d) => {
                        run.control.stop(StopLevel::Graceful);
                        let give_up =
                            future::select(clock.sleep(d), Box::pin(kill_requested(kill_rx)));
                        match future::select(Box::pin(rx), give_up).await {
                            Either::Left((exit, _)) => exit,
                            Either::Right((_, rx)) => {
                                tracing::warn!(supervisor = %sup_id, child = %slot.spec.id, timeout_ms = d.as_millis() as u64, "child did not stop in time, or a kill was asked; killing it");
                                run.control.stop(StopLevel::Kill);
                                // A worker's kill takes at once or not at all; a supervisor
                                // passes it down and kills its children in turn.
                                let grace = clock.sleep(match slot.spec.kind {
                                    ChildKind::Supervisor => d,
                                    ChildKind::Worker => kill_wait,
                                });
                                match future::select(rx, grace).await {
                                    Either::Left((_, _)) => Exit::Killed,
                                    Either::Right(_) => {
                                        tracing::error!(supervisor = %sup_id, child = %slot.spec.id, "child did not stop after a kill; abandoning it");
                                        abandoned.inc();
                                        run.control.abandon();
                                        Exit::Killed
                                    }
                                }
                            }
                        }
                    }
                    None => {
                        // No shutdown timeout: the stop waits as long as the child takes,
                        // unless a kill is asked meanwhile, which is bounded as always.
                        run.control.stop(StopLevel::Graceful);
                        match future::select(Box::pin(rx), Box::pin(kill_requested(kill_rx))).await
                        {
                            Either::Left((exit, _)) => exit,
                            Either::Right((_, rx)) => {
                                run.control.stop(StopLevel::Kill);
                                match future::select(rx, clock.sleep(kill_wait)).await {
                                    Either::Left((_, _)) => Exit::Killed,
                                    Either::Right(_) => {
                                        tracing::error!(supervisor = %sup_id, child = %slot.spec.id, "child did not stop after a kill; abandoning it");
                                        abandoned.inc();
                                        run.control.abandon();
                                        Exit::Killed
                                    }
                                }
                            }
                        }
                    }
                }
            }
        };
        self.def
            .env
            .metrics
            .exits
            .with_label_values(&[&sup_id, &slot.spec.id, exit.kind()])
            .inc();
        // Its run ends here: the time it now spends stopped never counts as running.
        slot.backoff
            .stopped(&self.def.backoff, self.def.env.clock.now());
        slot.state = SlotState::Stopped;
        slot.spec.node.set_status(NodeStatus::Stopped);
    }

    /// Stops every child, last started first, and drops pending restarts.
    async fn stop_all(&mut self, level: StopLevel) {
        self.pending.clear();
        for j in (0..self.slots.len()).rev() {
            self.stop_slot(j, level).await;
            let slot = &mut self.slots[j];
            if slot.state == SlotState::Pending {
                slot.state = SlotState::Stopped;
            }
            if slot.state != SlotState::Removed && slot.spec.node.status() != NodeStatus::Failed {
                slot.spec.node.set_status(NodeStatus::Stopped);
            }
        }
    }
}
