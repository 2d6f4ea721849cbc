//! The act pipeline: the one path an intent takes to a driver, in named stages —
//! `validate` → `dedup` → `route` (the capability's live driver) → `obligations` →
//! `predict` (the twin) → `dispatch` (journaled durably before the driver is called) →
//! `push` (under the driver's deadline) → `record` (the outcome and its replay capsule,
//! linked to the dispatch). Later stages of the safety chain join in their place.
//!
//! From the dispatch on, the pipeline runs detached from its caller: a caller that goes
//! away does not cancel a side effect half-way, and the outcome is still journaled.
//! A repeated intent never acts twice: an action's id is derived from (caller, intent
//! id), the same digest answers the first action's result, another digest is a
//! conflict. An action whose driver may have acted without the node knowing the outcome
//! is `in_doubt` and is never re-run on its own; an operator resolves it.
//!
//! Must never: call a driver without a durable dispatch entry, or run a push whose caller
//! withdrew it.

use crate::journal::{Appended, JournalClient, NewEntry, Refusal, StoredEntry};
use crate::lanes::{DriverInstance, Lanes, ShadowLog};
use axon_drivers::driver::{Prediction, Recorded, Status};
use axon_drivers::host::DriverHost;
use axon_drivers::host::{Action, DriverAnswer, DriverCall, Ticket};
use axon_drivers::obligations::Violation;
use axon_protocols::action::{
    action_id, intent_digest, ActionRecord, ActionResult, ActionStatus, Dispatch, Resolution,
    TrialDraw, Undo,
};
use axon_protocols::capsule::{Environment, RecordedClock, ReplayCapsule};
use axon_protocols::intent::AxonIntent;
use axon_protocols::journal::{ActionId, Entry, EntryKind};
use axon_protocols::lane::Lane;
use axon_supervisors::{
    Agreement, Breaker, CallError, CallOptions, Check, Mirrored, Permit, Sample, Sent, SharedClock,
    TrialPolicy, Verdict,
};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// The pipeline's limits.
#[derive(Clone, Debug)]
pub struct ActConfig {
    /// Actions that may be between their claim and their answer at once.
    pub max_in_flight: usize,
    /// Finished actions kept in memory to answer repeats without reading the journal.
    pub remembered_actions: usize,
    /// The deadline of each journal call the pipeline makes.
    pub journal_deadline: Duration,
    /// How long past its deadline a push's late outcome is still waited for and journaled.
    pub late_outcome: Duration,
    /// Entries read per journal page at start.
    pub page: usize,
    /// The threads the pipeline's detached work runs on.
    pub runners: usize,
    /// Mirrored calls one shadow driver may be predicting at once; more are skipped.
    pub shadow_concurrency: usize,
    /// The `axon` binary's version and the configuration's hash, for capsules.
    pub binary_version: String,
    pub config_hash: String,
}

/// How a live push ended, as its shadows are compared with it.
#[derive(Clone, Debug)]
pub(crate) enum LiveOutcome {
    /// It ended `ok` or `failed`, with this output.
    Known { ok: bool, output: Value },
    /// It is in doubt, or did not run: there is nothing to compare with.
    Unknown,
}

/// Disagreements of one shadow journaled in full per window; the rest are in its summary.
const SHADOW_DISAGREEMENTS_IN_FULL: u32 = 3;

/// Why an intent got no action (nothing was recorded, nothing ran).
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("the intent is malformed: {0}")]
    Malformed(String),
    #[error("the intent breaks the obligations of driver {driver}: {violation}")]
    Violation {
        driver: String,
        violation: Violation,
    },
    #[error("intent id {intent_id:?} already names action {action_id} of this caller, with other arguments")]
    Conflict {
        intent_id: String,
        action_id: String,
    },
    #[error("{in_flight} actions are in flight, the limit (act.max_in_flight)")]
    Busy { in_flight: usize },
    #[error("driver {driver} is at its rate of {rate} calls per second (limits.rate_per_second)")]
    Rate { driver: String, rate: f64 },
    #[error(transparent)]
    Driver(CallError),
    /// The action was dispatched and its driver never started the push (it failed or
    /// restarted first): recorded `not_run`; the same intent id runs it on a retry.
    #[error("action {action_id} did not run: {reason}; send the intent again (same intent_id) to run it")]
    NotRun { action_id: String, reason: String },
    #[error(transparent)]
    Journal(Refusal),
    /// The driver ran and its outcome could not be journaled: the action is in doubt.
    #[error("action {action_id} ran and its outcome was not recorded ({reason}); it is in doubt")]
    Unrecorded { action_id: String, reason: String },
}

/// Why a resolution was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no action has id {0}")]
    NoSuchAction(String),
    #[error("action {action_id} is {status}, not in doubt")]
    NotInDoubt {
        action_id: String,
        status: &'static str,
    },
    #[error("a resolution needs a reason: 1 to {MAX_REASON_BYTES} bytes")]
    Reason,
    #[error(transparent)]
    Journal(Refusal),
}

/// Why an action was not rolled back.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("no action has id {0}")]
    NoSuchAction(String),
    #[error("a rollback needs a reason: 1 to {MAX_REASON_BYTES} bytes")]
    Reason,
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Driver(CallError),
    #[error(transparent)]
    Journal(Refusal),
}

/// The longest reason a resolution takes.
pub const MAX_REASON_BYTES: usize = 4096;

/// What the pipeline counts.
#[derive(Clone)]
struct ActMetrics {
    actions: IntCounterVec,
    refused: IntCounterVec,
    repeats: prometheus::IntCounter,
    in_doubt: IntGauge,
    hung: IntCounterVec,
    demotions: IntCounterVec,
    dry_run_findings: IntCounterVec,
    mirrored: IntCounterVec,
    shadow_events_refused: IntCounterVec,
    trials: IntCounterVec,
    /// `axon_act_stage_seconds`, one series per [`Stage`], looked up once.
    stages: [Histogram; Stage::ALL.len()],
}

/// The stages of an action that `axon_act_stage_seconds` times, in their order.
#[derive(Clone, Copy)]
pub enum Stage {
    /// From the request's thread to the pipeline's own, where the action goes on.
    Handoff,
    /// The driver's twin predicting the push: from its request, sent from the request's
    /// thread, to its answer on the pipeline's (it overlaps the hand-off).
    Twin,
    /// The lane check and the dispatch entry made durable.
    Dispatch,
    /// The driver's push, up to its answer or its deadline.
    Push,
    /// The result entry made durable.
    Outcome,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Handoff,
        Stage::Twin,
        Stage::Dispatch,
        Stage::Push,
        Stage::Outcome,
    ];

    /// Its `stage` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Twin => "twin",
            Stage::Handoff => "handoff",
            Stage::Dispatch => "dispatch",
            Stage::Push => "push",
            Stage::Outcome => "outcome",
        }
    }
}

impl ActMetrics {
    /// Every driver's demotion and finding counters show from its load, at 0.
    fn start_at_zero(&self, d: &DriverInstance) {
        let rules = Check::ALL.map(|c| c.rule());
        for rule in rules.iter().chain([&"restart_intensity"]) {
            self.demotions.with_label_values(&[d.name(), rule]);
        }
        for rule in rules {
            self.dry_run_findings.with_label_values(&[d.name(), rule]);
        }
        for outcome in Mirrored::ALL {
            self.mirrored
                .with_label_values(&[d.name(), outcome.as_str()]);
        }
        for outcome in ["started", "passed", "failed"] {
            self.trials.with_label_values(&[d.name(), outcome]);
        }
        self.shadow_events_refused.with_label_values(&[d.name()]);
    }

    /// Counts `since.elapsed()` as the time of `stage`.
    fn stage(&self, stage: Stage, since: Instant) {
        self.stages[stage as usize].observe(since.elapsed().as_secs_f64());
    }

    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let stages = HistogramVec::new(
            HistogramOpts::new(
                "axon_act_stage_seconds",
                "Time an action spends in each stage of the act pipeline (handoff, twin, dispatch, push, outcome)",
            )
            .buckets(prometheus::exponential_buckets(25e-6, 2.0, 18)?),
            &["stage"],
        )?;
        registry.register(Box::new(stages.clone()))?;
        let m = Self {
            stages: Stage::ALL.map(|s| stages.with_label_values(&[s.as_str()])),
            actions: IntCounterVec::new(
                Opts::new(
                    "axon_actions_total",
                    "Actions recorded by the act pipeline, by status",
                ),
                &["status"],
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "axon_act_refused_total",
                    "Intents refused before any action was recorded, by reason",
                ),
                &["reason"],
            )?,
            repeats: prometheus::IntCounter::new(
                "axon_act_repeats_total",
                "Repeated intents answered with their first action's result",
            )?,

            in_doubt: IntGauge::new("axon_actions_in_doubt", "Actions in doubt, not resolved")?,
            demotions: IntCounterVec::new(
                Opts::new(
                    "axon_driver_demotions_total",
                    "Live drivers its supervisor moved to shadow, by rule (restart_intensity, slo.latency, slo.errors, slo.uplift)",
                ),
                &["driver", "rule"],
            )?,
            dry_run_findings: IntCounterVec::new(
                Opts::new(
                    "axon_driver_dry_run_findings_total",
                    "Checks in dry run that failed against a live driver's objective (journaled, not acted on), by rule",
                ),
                &["driver", "rule"],
            )?,
            mirrored: IntCounterVec::new(
                Opts::new(
                    "axon_shadow_calls_total",
                    "Live calls mirrored to a shadow driver's prediction, by how its prediction compared (agreed, disagreed, inconclusive, failed, skipped: its queue or concurrency was full)",
                ),
                &["driver", "outcome"],
            )?,
            shadow_events_refused: IntCounterVec::new(
                Opts::new(
                    "axon_shadow_events_refused_total",
                    "A shadow's disagreements and window summaries the journal refused to append (logged; its counts stay in its scorecard and axon_shadow_calls_total)",
                ),
                &["driver"],
            )?,
            trials: IntCounterVec::new(
                Opts::new(
                    "axon_driver_trials_total",
                    "Half-open trials of drivers their checks took out of service, by how they went (started, passed, failed)",
                ),
                &["driver", "outcome"],
            )?,
            hung: IntCounterVec::new(
                Opts::new(
                    "axon_act_driver_hung_total",
                    "Driver calls that got no answer within their deadline, after which the driver was restarted",
                ),
                &["driver"],
            )?,
        };
        registry.register(Box::new(m.actions.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.repeats.clone()))?;
        registry.register(Box::new(m.in_doubt.clone()))?;
        registry.register(Box::new(m.hung.clone()))?;
        registry.register(Box::new(m.demotions.clone()))?;
        registry.register(Box::new(m.dry_run_findings.clone()))?;
        registry.register(Box::new(m.mirrored.clone()))?;
        registry.register(Box::new(m.trials.clone()))?;
        registry.register(Box::new(m.shadow_events_refused.clone()))?;
        for s in ActionStatus::ALL {
            m.actions.with_label_values(&[s.as_str()]);
        }
        for r in REFUSALS {
            m.refused.with_label_values(&[r]);
        }
        Ok(m)
    }
}

const REFUSALS: [&str; 8] = [
    "malformed",
    "obligation",
    "conflict",
    "busy",
    "driver",
    "journal",
    "rate",
    CALLER_GONE,
];

/// An intent whose caller had gone before it was dispatched: nothing was journaled.
const CALLER_GONE: &str = "caller_gone";

impl ActError {
    fn metric_reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => REFUSALS[0],
            Self::Violation { .. } => REFUSALS[1],
            Self::Conflict { .. } => REFUSALS[2],
            Self::Busy { .. } => REFUSALS[3],
            Self::Driver(_) | Self::NotRun { .. } => REFUSALS[4],
            Self::Journal(_) | Self::Unrecorded { .. } => REFUSALS[5],
            Self::Rate { .. } => REFUSALS[6],
        }
    }
}

/// What the pipeline knows of one finished action.
#[derive(Clone, Debug)]
struct Known {
    digest: String,
    result: ActionResult,
    /// The id of the entry that records its status.
    entry_id: String,
    /// The record as journaled (shared: a finished action's is handed to the book, to the
    /// repeats that wait on it and to the set in doubt, and it carries the capsule).
    record: Arc<ActionRecord>,
}

enum Slot {
    /// Claimed, not answered yet; a repeat waits for the answer.
    Running {
        digest: String,
        done: watch::Receiver<Option<Known>>,
    },
    Done(Box<Known>),
    /// Not in memory, and being looked up in the journal by a claim: every other claim of
    /// it waits, then looks again (a lookup that raced a new claim of the id would find
    /// its dispatch without its outcome, and take it for in doubt).
    Looking(watch::Receiver<Option<Known>>),
}

/// Holds an action id as [`Slot::Looking`] while a claim asks the journal about it; let go
/// of (answered, failed, or the caller gone), it frees the id if it still holds it and
/// wakes whoever waits on it.
struct Lookup<'a> {
    act: &'a Act,
    action: &'a str,
    /// Which `Looking` slot is this lookup's own.
    mine: watch::Receiver<Option<Known>>,
    _woken: watch::Sender<Option<Known>>,
}

impl Lookup<'_> {
    /// True while the id's slot is still this lookup's (nothing settled it meanwhile).
    fn holds(&self, book: &Book) -> bool {
        matches!(book.slots.get(self.action), Some(Slot::Looking(rx)) if rx.same_channel(&self.mine))
    }
}

impl Drop for Lookup<'_> {
    fn drop(&mut self) {
        let mut book = lock(&self.act.book);
        if self.holds(&book) {
            book.slots.remove(self.action);
        }
    }
}

#[derive(Default)]
struct Book {
    slots: HashMap<String, Slot>,
    /// Finished actions, oldest first, to forget the oldest beyond the bound.
    finished: VecDeque<String>,
    running: usize,
    /// True while every action in the journal is in `slots`: then a miss is certain and
    /// the journal need not be asked.
    complete: bool,
}

/// The act pipeline of one node.
pub struct Act {
    /// The threads detached work runs on, in turn: from a dispatch to its outcome,
    /// whatever happens to the request (or the HTTP server) that began it.
    runners: Vec<actix::Arbiter>,
    next_runner: std::sync::atomic::AtomicUsize,
    /// The node's supervision tree, to restart a driver that hangs.
    tree: std::sync::OnceLock<Arc<axon_supervisors::TreeNode>>,
    lanes: Arc<Lanes>,
    journal: JournalClient,
    clock: SharedClock,
    cfg: ActConfig,
    book: Mutex<Book>,
    /// Actions in doubt, by id: complete (rebuilt from the journal at start).
    in_doubt: Mutex<BTreeMap<String, Known>>,
    /// Seeds the intent ids the node makes up.
    seed: u64,
    made_up: AtomicU64,
    metrics: ActMetrics,
}

/// How a claim on an action id came out.
enum Claim {
    /// The action exists: its answer.
    Answer(Box<Known>),
    /// This call owns the new action.
    Mine(Owner),
}

/// The owner of a claimed action: answers the repeats waiting on it, or, dropped without
/// an answer, gives the claim up so a retry can make it.
struct Owner {
    act: Arc<Act>,
    action_id: String,
    done: Option<watch::Sender<Option<Known>>>,
    /// What the action was before this claim (one held to be undone): put back if the
    /// claim is given up.
    restore: Option<Box<Known>>,
    /// Set once the action's dispatch is journaled: a claim dropped after it (its task
    /// ended before the outcome) leaves the action in doubt, never free to run again.
    dispatched: Option<Box<(Appended, ActionRecord)>>,
}

impl Owner {
    fn finish(mut self, known: Known) {
        let tx = self.done.take().expect("finished once");
        self.act.settle(&self.action_id, Some(known.clone()));
        let _ = tx.send(Some(known));
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(tx) = self.done.take() {
            if let Some((dispatched, mut record)) = self.dispatched.take().map(|d| *d) {
                record.status = ActionStatus::InDoubt;
                record.reason = Some(
                    "the pipeline stopped between the dispatch and the outcome: the driver may have acted"
                        .into(),
                );
                let known = known(&dispatched, record);
                self.act.track_in_doubt(&known);
                self.act.settle(&self.action_id, Some(known.clone()));
                let _ = tx.send(Some(known));
                return;
            }
            let before = self.restore.take().map(|k| *k);
            self.act.settle(&self.action_id, before.clone());
            if before.is_some() {
                let _ = tx.send(before);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Act {
    pub fn new(
        lanes: Arc<Lanes>,
        journal: JournalClient,
        clock: SharedClock,
        cfg: ActConfig,
        seed: u64,
        registry: &Registry,
    ) -> prometheus::Result<Arc<Self>> {
        crate::scorecards::ScorecardMetrics::register(lanes.clone(), clock.clone(), registry)?;
        let metrics = ActMetrics::new(registry)?;
        for d in lanes.drivers() {
            metrics.start_at_zero(&d);
        }
        let runners = (0..cfg.runners.max(1))
            .map(|_| actix::Arbiter::new())
            .collect();
        Ok(Arc::new(Self {
            runners,
            next_runner: std::sync::atomic::AtomicUsize::new(0),
            tree: std::sync::OnceLock::new(),
            lanes,
            journal,
            clock,
            cfg,
            book: Mutex::new(Book::default()),
            in_doubt: Mutex::default(),
            seed,
            made_up: AtomicU64::new(0),
            metrics,
        }))
    }

    pub fn lanes(&self) -> &Arc<Lanes> {
        &self.lanes
    }

    /// `capsule` (a result's replay capsule, as JSON) ready to replay: when it names its
    /// build's manifest by artifact hash only, with that manifest put in
    /// (`environment.manifest`), from the loaded build or its first lane change.
    pub async fn with_manifest(&self, capsule: &mut serde_json::Value) -> Result<(), Refusal> {
        let Some(env) = capsule
            .get_mut("environment")
            .and_then(|e| e.as_object_mut())
        else {
            return Ok(());
        };
        if env.contains_key("manifest") {
            return Ok(());
        }
        let Some(hash) = env.get("driver_artifact_hash").and_then(|h| h.as_str()) else {
            return Ok(());
        };
        let hash = hash.to_owned();
        if let Some(m) = self
            .lanes
            .manifest_of_build(&hash, &self.journal, self.cfg.page, &self.journal_opts())
            .await?
        {
            env.insert("manifest".into(), (*m).clone());
        }
        Ok(())
    }

    /// Adds driver `d`, whose workers its supervisor has just started, while the node
    /// runs: its series show at 0, it is placed in its lane ([`Lanes::add`]), and a
    /// build its checks had taken out of service before is set on its way to a trial.
    pub async fn add_driver(
        self: &Arc<Self>,
        d: Arc<DriverInstance>,
    ) -> Result<axon_protocols::lane::Lane, crate::lanes::LaneError> {
        self.metrics.start_at_zero(&d);
        let lane = self
            .lanes
            .add(
                d.clone(),
                &self.journal,
                self.cfg.page,
                &self.journal_opts(),
            )
            .await?;
        self.schedule_trial(&d);
        Ok(lane)
    }

    /// Runs `work` to its end on one of the pipeline's own threads (which outlive the
    /// HTTP server's), whether or not anyone waits for it; its result arrives on the
    /// receiver answered (closed if the node stops first).
    pub fn detach<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        self.runner().spawn(async move {
            let _ = tx.send(work.await);
        });
        rx
    }

    /// The next of the pipeline's own threads, in turn.
    fn runner(&self) -> &actix::Arbiter {
        let n = self.next_runner.fetch_add(1, Ordering::Relaxed);
        &self.runners[n % self.runners.len()]
    }

    /// The supervision tree the drivers run in, once it exists.
    pub fn set_tree(&self, root: Arc<axon_supervisors::TreeNode>) {
        let _ = self.tree.set(root);
    }

    /// Has the supervisor restart driver worker `name`, which did not answer a call
    /// within its deadline (`why`): a hung driver is stopped (killed, abandoned if it
    /// must be) and started afresh, so it never holds its capability for ever.
    fn restart_hung(&self, name: &str, why: &str) {
        let Some(root) = self.tree.get() else { return };
        tracing::warn!(driver = %name, %why, "driver did not answer in time: restarting it");
        self.metrics.hung.with_label_values(&[name]).inc();
        // A failure of the driver, so that one that keeps hanging goes past its own
        // restart intensity and out of live service like one that keeps crashing.
        if let Err(e) = axon_supervisors::request_failure(root, name, &format!("hung: {why}")) {
            tracing::warn!(driver = %name, error = %e, "the restart of a hung driver was not queued");
        }
    }

    fn journal_opts(&self) -> CallOptions {
        CallOptions {
            deadline: self.cfg.journal_deadline,
            correlation_id: None,
        }
    }

    async fn append<T: serde::Serialize + ?Sized>(
        &self,
        kind: EntryKind,
        links: Vec<String>,
        body: &T,
    ) -> Result<Appended, Refusal> {
        self.journal
            .append(NewEntry::new(kind, links, body), &self.journal_opts())
            .await
    }

    /// Journals an `event` entry with `body` (a record of something the node did that is
    /// no action of a driver: a driver grown, say).
    pub async fn record_event(&self, body: Value) -> Result<Appended, Refusal> {
        self.append(EntryKind::Event, vec![], &body).await
    }

    /// A number drawn from the node's seed, `purpose` and action `action`: the same on
    /// every run of a node with the same seed.
    fn draw(&self, purpose: &str, action: &str) -> u64 {
        let mut h = blake3::Hasher::new();
        h.update(&self.seed.to_le_bytes());
        h.update(purpose.as_bytes());
        h.update(&[0]);
        h.update(action.as_bytes());
        u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
    }

    /// An intent id for an intent that came without one: from the node's seed and a
    /// counter, so no two are alike and a seeded node makes the same ones.
    fn make_intent_id(&self) -> String {
        let n = self.made_up.fetch_add(1, Ordering::Relaxed);
        let mut h = blake3::Hasher::new_derive_key("axon 2026 made-up intent id v1");
        h.update(&self.seed.to_le_bytes());
        h.update(&n.to_le_bytes());
        h.update(axon_protocols::time::rfc3339(self.clock.wall()).as_bytes());
        format!(
            "{}{}",
            axon_protocols::intent::MADE_UP_PREFIX,
            axon_protocols::journal::hex(&h.finalize().as_bytes()[..12])
        )
    }

    /// Lanes, actions and actions in doubt from the journal; then every dispatch without
    /// an outcome is journaled `in_doubt`. Runs once, before the node serves.
    pub async fn rebuild(&self) -> Result<RebuildReport, Refusal> {
        let opts = self.journal_opts();
        self.lanes
            .rebuild(&self.journal, self.cfg.page, &opts)
            .await?;
        let mut dispatches: HashMap<String, (u64, String, Dispatch)> = HashMap::new();
        crate::lanes::scan(
            &self.journal,
            EntryKind::Dispatch,
            self.cfg.page,
            &opts,
            |stored, body| {
                let d: Dispatch = serde_json::from_value(body).map_err(|e| {
                    Refusal::Internal(format!("entry {} is not a dispatch: {e}", stored.index))
                })?;
                dispatches.insert(d.action_id.clone(), (stored.index, stored.id.clone(), d));
                Ok(())
            },
        )
        .await?;
        let mut results: HashMap<String, (u64, Known)> = HashMap::new();
        crate::lanes::scan(
            &self.journal,
            EntryKind::Result,
            self.cfg.page,
            &opts,
            |stored, body| {
                let record: ActionRecord = serde_json::from_value(body).map_err(|e| {
                    Refusal::Internal(format!(
                        "entry {} is not an action result: {e}",
                        stored.index
                    ))
                })?;
                let known = known(stored, record);
                results.insert(known.result.action_id.clone(), (stored.index, known));
                Ok(())
            },
        )
        .await?;
        let mut report = RebuildReport::default();
        for (id, (index, entry_id, d)) in dispatches {
            // A dispatch followed by a result has its outcome (an action run again after
            // a `not_run` has a dispatch per run).
            if results.get(&id).is_some_and(|(r, _)| *r > index) {
                continue;
            }
            let record = in_doubt_after(
                d,
                format!(
                    "the node stopped between the dispatch (entry {index}) and the outcome: the driver may have acted"
                ),
            );
            let appended = self
                .append(EntryKind::Result, vec![entry_id], &record)
                .await?;
            self.metrics.actions.with_label_values(&["in_doubt"]).inc();
            report.marked_in_doubt += 1;
            results.insert(id, (appended.index, known(&appended, record)));
        }
        let mut all: Vec<(u64, Known)> = results.into_values().collect();
        all.sort_by_key(|(index, _)| *index);
        report.actions = all.len();
        let mut book = lock(&self.book);
        let mut in_doubt = lock(&self.in_doubt);
        let skip = all.len().saturating_sub(self.cfg.remembered_actions);
        book.complete = skip == 0;
        for (n, (_, k)) in all.into_iter().enumerate() {
            if k.result.status == ActionStatus::InDoubt {
                in_doubt.insert(k.result.action_id.clone(), k.clone());
            }
            if n >= skip {
                book.finished.push_back(k.result.action_id.clone());
                book.slots
                    .insert(k.result.action_id.clone(), Slot::Done(Box::new(k)));
            }
        }
        report.in_doubt = in_doubt.len();
        self.metrics.in_doubt.set(in_doubt.len() as i64);
        Ok(report)
    }

    /// Runs `intent` from `caller` through the pipeline.
    pub async fn act(
        self: &Arc<Self>,
        intent: AxonIntent,
        caller: &str,
    ) -> Result<ActionResult, ActError> {
        let r = self.act_inner(intent, caller).await;
        if let Err(e) = &r {
            self.metrics
                .refused
                .with_label_values(&[e.metric_reason()])
                .inc();
        }
        r
    }

    async fn act_inner(
        self: &Arc<Self>,
        mut intent: AxonIntent,
        caller: &str,
    ) -> Result<ActionResult, ActError> {
        // validate
        intent
            .validate()
            .map_err(|e| ActError::Malformed(e.to_string()))?;
        let intent_id = match &intent.intent_id {
            Some(id) => id.clone(),
            None => self.make_intent_id(),
        };
        intent.intent_id = Some(intent_id.clone());
        let digest = intent_digest(&intent).map_err(|e| ActError::Malformed(e.to_string()))?;
        let action = action_id(caller, &intent_id);

        // dedup
        let owner = match self.claim(&action, &intent_id, &digest).await? {
            Claim::Answer(k) => {
                self.metrics.repeats.inc();
                let mut r = k.result;
                r.repeat = true;
                return Ok(r);
            }
            Claim::Mine(owner) => owner,
        };
        let record = |status: ActionStatus, reason: Option<String>| ActionRecord {
            action_id: action.clone(),
            caller: caller.to_owned(),
            intent_id: intent_id.clone(),
            intent_digest: digest.clone(),
            status,
            output: Value::Null,
            driver: None,
            lane: None,
            reason,
            intent: None,
            capsule: None,
            resolution: None,
            late: false,
        };

        // route: to the live driver, or, while one is on trial, to whichever of the two
        // the action's draw picks.
        let live = self.lanes.live(&intent.capability);
        let (routed, trial_draw) = match self.lanes.trial(&intent.capability) {
            Some(trial) => {
                let draw = self.draw("route", &action);
                let policy = self.lanes.trials();
                let d = TrialDraw {
                    draw: TrialPolicy::fraction(draw),
                    share: policy.share,
                    trial: trial.name().to_owned(),
                };
                let routed = if policy.serves_trial(draw) {
                    Some((trial, Lane::Trial))
                } else {
                    live.map(|l| (l, Lane::Live))
                };
                (routed, Some(d))
            }
            None => (live.map(|l| (l, Lane::Live)), None),
        };
        let Some((driver, lane)) = routed else {
            let reason = match &trial_draw {
                Some(d) => format!(
                    "no driver is live for {}: {} is on trial for {} of its intents, and this one was drawn ({:.6}) for the rest",
                    intent.capability, d.trial, d.share, d.draw
                ),
                None => format!("no driver is live for {}", intent.capability),
            };
            let mut r = record(ActionStatus::Blocked, Some(reason));
            r.intent = Some(intent);
            return self.record_without_dispatch(owner, r).await;
        };

        // obligations
        let name = driver.name().to_owned();
        let violation = |violation| ActError::Violation {
            driver: name.clone(),
            violation,
        };
        check_payload(&driver, &intent.args).map_err(violation)?;
        if !driver.rate.take(self.clock.now()) {
            return Err(ActError::Rate {
                driver: name.clone(),
                rate: driver.rate.rate(),
            });
        }
        let obligations = &driver.manifest.obligations;
        obligations.check_args(&intent.args).map_err(violation)?;
        obligations.check_precondition(&intent).map_err(violation)?;

        // From here on the pipeline runs on its own thread (which outlives the HTTP
        // server's): the twin is asked from there, so its answer comes back to the thread
        // that goes on with the action. Until the dispatch, a caller that has gone stops
        // the action; from the dispatch on, it runs to its end whether or not anyone waits.
        let intent = Arc::new(Action {
            action_id: action.clone(),
            intent,
        });
        let deadline = Duration::from_millis(match intent.intent.budget_ms {
            Some(b) => b.min(driver.manifest.limits.deadline_ms),
            None => driver.manifest.limits.deadline_ms,
        });
        let asked_at = Instant::now();
        let opts = CallOptions {
            deadline,
            correlation_id: intent.intent.correlation_id.as_deref().map(Arc::from),
        };
        // The places of the prediction and of the push in the driver's mailbox are
        // taken together, so an action that is dispatched always gets to its driver: a
        // full mailbox refuses the intent here, before anything is journaled.
        let mut permit = driver.reserve(2).map_err(ActError::Driver)?;
        // The prediction is sent from here, so it is in the driver's mailbox, in the order
        // the intents came, before the pipeline's thread waits for its answer.
        let twin_asked = Instant::now();
        let twin = permit.send(DriverCall::Predict(intent.clone()), &opts);
        let blank = record(ActionStatus::Ok, None);
        let caller = caller.to_owned();
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        self.runner().spawn(async move {
            this.metrics.stage(Stage::Handoff, asked_at);
            this.predict_and_dispatch(
                driver, permit, twin, twin_asked, intent, opts, asked_at, blank, caller, owner,
                lane, trial_draw, tx,
            )
            .await;
        });
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(ActError::Unrecorded {
                action_id: action,
                reason: "the pipeline's task ended without an answer".into(),
            }),
        }
    }

    /// The pipeline's part on its own thread, up to the dispatch: the twin's answer (its
    /// request `twin` was sent from the caller's thread), the budget it left, the caller
    /// still waiting; then the dispatch and the push (see
    /// [`push_and_record`](Self::push_and_record)). The answer goes to `tx`.
    #[allow(clippy::too_many_arguments)]
    async fn predict_and_dispatch(
        self: Arc<Self>,
        driver: Arc<DriverInstance>,
        permit: Permit<DriverHost>,
        twin: Result<Sent<DriverHost>, CallError>,
        twin_asked: Instant,
        intent: Arc<Action>,
        opts: CallOptions,
        asked_at: Instant,
        blank: ActionRecord,
        caller: String,
        owner: Owner,
        lane: Lane,
        trial_draw: Option<TrialDraw>,
        tx: oneshot::Sender<Result<ActionResult, ActError>>,
    ) {
        let name = driver.name().to_owned();
        let deadline = opts.deadline;
        let record = |status: ActionStatus, reason: Option<String>| {
            let mut r = blank.clone();
            r.status = status;
            r.reason = reason;
            r
        };
        let answer = match twin {
            Ok(sent) => sent.answer(&opts).await,
            Err(e) => Err(e),
        };
        let prediction = match answer {
            Ok(DriverAnswer::Prediction(p)) => p,
            Ok(other) => Prediction::Inconclusive {
                reason: format!("the driver answered {other:?} to a prediction"),
            },
            Err(e @ (CallError::Overloaded { .. } | CallError::Unavailable { .. })) => {
                let _ = tx.send(Err(ActError::Driver(e)));
                return;
            }
            Err(e) => {
                if matches!(e, CallError::Timeout { .. }) {
                    self.restart_hung(permit.worker_id(), "its twin did not answer");
                }
                let mut r = record(
                    ActionStatus::Blocked,
                    Some(format!("the twin of {name} failed: {e}")),
                );
                r.intent = Some(intent.intent.clone());
                r.driver = Some(name);
                let _ = tx.send(self.record_without_dispatch(owner, r).await);
                return;
            }
        };

        self.metrics.stage(Stage::Twin, twin_asked);
        // What the twin expected the push to be worth: set against what it delivers in the
        // driver's scorecard; an inconclusive prediction is never compared.
        let predicted = match &prediction {
            Prediction::Expected { utility, .. } => Some(*utility),
            Prediction::Inconclusive { .. } => None,
        };

        // dispatch
        // The caller's budget covers the whole action: the push gets what the prediction
        // left of it.
        let mut opts = opts;
        if intent.intent.budget_ms.is_some() {
            let left = deadline.saturating_sub(asked_at.elapsed());
            if left.is_zero() {
                let mut r = record(
                    ActionStatus::Blocked,
                    Some(format!(
                        "the budget of {deadline:?} was spent before the driver could act"
                    )),
                );
                r.intent = Some(intent.intent.clone());
                r.driver = Some(name);
                let _ = tx.send(self.record_without_dispatch(owner, r).await);
                return;
            }
            opts.deadline = left;
        }
        // The lane it was routed in: checked again as the dispatch is journaled.
        let dispatch = Dispatch {
            action_id: blank.action_id.clone(),
            caller,
            intent_id: blank.intent_id.clone(),
            intent_digest: blank.intent_digest.clone(),
            intent: intent.intent.clone(),
            driver: name.clone(),
            artifact_hash: driver.descriptor.artifact_hash.clone(),
            lane,
            prediction: serde_json::to_value(&prediction).expect("a prediction is plain data"),
            undo: None,
            trial_draw,
        };
        let mut base = record(ActionStatus::Ok, None);
        base.driver = Some(name);
        base.lane = Some(lane);
        // A caller that has gone by now is not acted for: nothing was journaled, and the
        // claim is given up (a retry with the same intent id runs the action).
        if tx.is_closed() {
            self.metrics.refused.with_label_values(&[CALLER_GONE]).inc();
            return;
        }
        let mut owner = owner;
        let dispatching = Instant::now();
        // The driver is still in the lane it was routed in, at the dispatch's place
        // in the log: one moved out of service meanwhile never gets the action.
        let gate = self.lanes.hold_for_dispatch().await;
        let now = self.lanes.lane(driver.name());
        if now != Some(dispatch.lane) {
            drop(gate);
            let mut r = base.clone();
            r.status = ActionStatus::Blocked;
            r.reason = Some(format!(
                "{} was moved from {} to {} before the action was dispatched: nothing ran",
                dispatch.driver,
                dispatch.lane,
                now.map_or("no lane", |l| l.as_str())
            ));
            r.intent = Some(intent.intent.clone());
            let _ = tx.send(self.record_without_dispatch(owner, r).await);
            return;
        }
        let appended = self.append(EntryKind::Dispatch, vec![], &dispatch).await;
        drop(gate);
        self.metrics.stage(Stage::Dispatch, dispatching);
        let dispatched = match appended {
            Ok(d) => d,
            Err(refusal) => {
                // Not dispatched: nothing ran; the claim is given up.
                let _ = tx.send(Err(ActError::Journal(refusal)));
                return;
            }
        };
        owner.dispatched = Some(Box::new((dispatched.clone(), base.clone())));
        // The capability's shadows predict the same intent beside the live push;
        // they hear its outcome once it is known, and nothing waits for them.
        let (outcome_tx, outcome_rx) = tokio::sync::watch::channel(None);
        self.mirror(&driver, &intent, &opts, outcome_rx).await;
        self.push_and_record(
            driver, permit, intent, opts, predicted, base, dispatched, owner, tx, outcome_tx,
        )
        .await;
    }

    /// Journals the end of an action that never reached a driver, and answers it.
    async fn record_without_dispatch(
        &self,
        owner: Owner,
        record: ActionRecord,
    ) -> Result<ActionResult, ActError> {
        let appended = self
            .append(EntryKind::Result, vec![], &record)
            .await
            .map_err(ActError::Journal)?;
        Ok(self.finished(owner, record, appended))
    }

    /// Counts and remembers a journaled end of an action, and answers it.
    fn finished(&self, owner: Owner, record: ActionRecord, appended: Appended) -> ActionResult {
        self.metrics
            .actions
            .with_label_values(&[record.status.as_str()])
            .inc();
        let known = known(&appended, record);
        let result = known.result.clone();
        self.track_in_doubt(&known);
        owner.finish(known);
        result
    }

    /// Keeps the set of actions in doubt in step with an action's newest state.
    fn track_in_doubt(&self, known: &Known) {
        let mut in_doubt = lock(&self.in_doubt);
        if known.result.status == ActionStatus::InDoubt {
            in_doubt.insert(known.result.action_id.clone(), known.clone());
        } else {
            in_doubt.remove(&known.result.action_id);
        }
        self.metrics.in_doubt.set(in_doubt.len() as i64);
    }

    /// The detached part: push under the deadline, record the outcome, answer `tx` (if
    /// anyone still listens), and journal a late outcome of a push that overran.
    #[allow(clippy::too_many_arguments)]
    async fn push_and_record(
        self: Arc<Self>,
        driver: Arc<DriverInstance>,
        mut permit: Permit<DriverHost>,
        intent: Arc<Action>,
        opts: CallOptions,
        predicted: Option<f64>,
        base: ActionRecord,
        dispatched: Appended,
        owner: Owner,
        tx: oneshot::Sender<Result<ActionResult, ActError>>,
        outcome: tokio::sync::watch::Sender<Option<LiveOutcome>>,
    ) {
        let ticket = Ticket::new();
        // A read changes nothing: one that fails to answer in time has failed, and is
        // never in doubt.
        let reads = driver.descriptor.effect == axon_drivers::descriptor::Effect::Read;
        let started_wall = axon_protocols::time::rfc3339(self.clock.wall());
        let started = Instant::now();
        // The push's latency in its driver's scorecard, on the node's clock.
        let began = self.clock.now();
        let deadline = opts.deadline;
        let mut long = opts.clone();
        long.deadline = deadline + self.cfg.late_outcome;
        let worker_id = permit.worker_id().to_owned();
        let call = permit.call(DriverCall::Act(intent.clone(), ticket.clone()), &long);
        tokio::pin!(call);
        let overdue = tokio::time::sleep(deadline);
        tokio::pin!(overdue);
        // A push still running past its driver's p99 objective counts as a slow call at
        // that moment, so a driver that hangs is judged as it hangs, not once it answers.
        let slow_after = driver
            .descriptor
            .slo
            .as_ref()
            .map(|s| Duration::from_millis(s.p99_ms))
            .filter(|d| *d < deadline);
        let mut slow_mark = match slow_after {
            Some(d) => self.clock.sleep(d),
            None => Box::pin(std::future::pending()),
        };
        let mut judged_slow = false;
        let timely = loop {
            tokio::select! {
                answer = &mut call => break Some(answer),
                _ = &mut overdue => break None,
                _ = &mut slow_mark, if !judged_slow => {
                    judged_slow = true;
                    // Slow is all that is known yet: no error, nothing to compare.
                    let d = slow_after.unwrap_or_default();
                    self.watch_health(&driver, &Sample {
                        latency: d + Duration::from_millis(1),
                        error: None,
                        predicted: None,
                        realized: 0.0,
                    });
                }
            }
        };
        self.metrics.stage(Stage::Push, started);
        let capsule = |output: &Value, state: Option<Value>, started: Instant| ReplayCapsule {
            action_id: base.action_id.clone(),
            driver: driver.name().to_owned(),
            environment: Environment {
                binary_version: self.cfg.binary_version.clone(),
                config_hash: self.cfg.config_hash.clone(),
                driver_artifact_hash: driver.descriptor.artifact_hash.clone(),
                manifest: driver.capsule_manifest(),
            },
            input: serde_json::to_value(&intent.intent).expect("an intent is plain data"),
            output: output.clone(),
            seeds: vec![],
            state,
            clock: RecordedClock {
                started: started_wall.clone(),
                finished: axon_protocols::time::rfc3339(self.clock.wall()),
                duration_us: started.elapsed().as_micros() as u64,
            },
        };
        let ended = |answer: Result<DriverAnswer, CallError>, ticket: &Ticket| {
            let mut r = base.clone();
            match answer {
                Ok(DriverAnswer::Outcome(o)) => {
                    r.status = match o.status {
                        Status::Ok => ActionStatus::Ok,
                        Status::Failed => ActionStatus::Failed,
                        Status::Unknown => ActionStatus::InDoubt,
                    };
                    r.capsule = Some(capsule(&o.output, o.replay.clone(), started));
                    r.output = o.output;
                    r.reason = o.reason;
                }
                Ok(DriverAnswer::Refused(v)) => {
                    r.status = ActionStatus::Failed;
                    r.reason = Some(format!("the driver refused the intent: {v}"));
                }
                Ok(DriverAnswer::Withdrawn) => {
                    r.status = ActionStatus::NotRun;
                    r.reason = Some("the push was withdrawn before it started".into());
                }
                Ok(DriverAnswer::Prediction(_)) => {
                    r.status = ActionStatus::Failed;
                    r.reason = Some("the driver answered a push with a prediction".into());
                }
                Err(e) if ticket.withdraw() => {
                    r.status = ActionStatus::NotRun;
                    r.reason = Some(format!("the driver never started the push: {e}"));
                }
                Err(e) if reads => {
                    r.status = ActionStatus::Failed;
                    r.reason = Some(format!(
                        "the driver started the read and did not answer: {e}; a read changes nothing"
                    ));
                }
                Err(e) => {
                    r.status = ActionStatus::InDoubt;
                    r.reason = Some(format!(
                        "the driver started the push and did not answer: {e}"
                    ));
                }
            }
            r
        };
        let overran = timely.is_none();
        let first = match timely {
            Some(answer) => ended(answer, &ticket),
            None if ticket.withdraw() => {
                let mut r = base.clone();
                r.status = ActionStatus::NotRun;
                r.reason = Some(format!(
                    "the deadline of {deadline:?} passed before the driver started the push"
                ));
                r
            }
            None if reads => {
                let mut r = base.clone();
                r.status = ActionStatus::Failed;
                r.reason = Some(format!(
                    "the deadline of {deadline:?} passed while the driver ran the read; a read changes nothing"
                ));
                r
            }
            None => {
                let mut r = base.clone();
                r.status = ActionStatus::InDoubt;
                r.reason = Some(format!(
                    "the deadline of {deadline:?} passed while the driver ran the push: it may still act"
                ));
                r
            }
        };
        // The push's sample, taken as its first answer (or its deadline) is known: a push
        // that overran counts at its deadline, so a hung driver shows at once. Its
        // utility is what the output reports where the manifest says it does, and
        // otherwise 1 for an ok push and 0 for any other.
        let measured = self.clock.now().saturating_sub(began);
        let sample = Sample {
            // A push that ran past its deadline took at least that long, whatever the
            // node's clock says (the deadline is kept in real time).
            latency: if overran {
                measured.max(deadline + Duration::from_millis(1))
            } else {
                measured
            },
            // The kinds are the statuses' own names: a fixed set.
            error: (first.status != ActionStatus::Ok).then(|| first.status.as_str()),
            predicted,
            realized: driver
                .manifest
                .realized_utility(first.status == ActionStatus::Ok, &first.output),
        };
        let now = self.clock.now();
        driver.scorecard.record(now, sample);
        driver.record_utility(now, sample.realized);
        let _ = outcome.send(Some(match first.status {
            ActionStatus::Ok | ActionStatus::Failed => LiveOutcome::Known {
                ok: first.status == ActionStatus::Ok,
                output: first.output.clone(),
            },
            _ => LiveOutcome::Unknown,
        }));
        // A push judged slow while it ran has had its turn with the checks.
        if !judged_slow {
            self.watch_health(&driver, &sample);
        }
        // A read that overran settles nothing late; its driver is still watched for a
        // hang below.
        let read_overran = overran && reads && first.status == ActionStatus::Failed;
        let overran = overran && first.status == ActionStatus::InDoubt;
        let recording = Instant::now();
        let recorded = self
            .append(EntryKind::Result, vec![dispatched.id.clone()], &first)
            .await;
        self.metrics.stage(Stage::Outcome, recording);
        let answer = match recorded {
            Ok(appended) => {
                let r = self.finished(owner, first, appended);
                // Nothing ran: the caller hears it as a driver not available (503), and a
                // retry with the same intent id runs the action.
                match r.status {
                    ActionStatus::NotRun => Err(ActError::NotRun {
                        action_id: r.action_id,
                        reason: r.reason.unwrap_or_default(),
                    }),
                    _ => Ok(r),
                }
            }
            Err(refusal) => {
                tracing::error!(
                    critical = true,
                    action_id = %base.action_id,
                    %refusal,
                    "CRITICAL: action {} ran and its outcome was not recorded; it is in doubt",
                    base.action_id
                );
                // What the node knows now: in doubt, recorded only by its dispatch.
                let mut r = first;
                r.status = ActionStatus::InDoubt;
                let _ = self.finished(owner, r, dispatched.clone());
                Err(ActError::Unrecorded {
                    action_id: base.action_id.clone(),
                    reason: refusal.to_string(),
                })
            }
        };
        let _ = tx.send(answer);
        if read_overran {
            if matches!(call.await, Err(CallError::Timeout { .. })) {
                self.restart_hung(
                    &worker_id,
                    "a read did not answer within its deadline and the late-outcome window",
                );
            }
            return;
        }
        if !overran {
            return;
        }
        // The push overran its deadline: its outcome, if it comes in time, is journaled
        // late and settles the action.
        let answer = call.await;
        if matches!(answer, Err(CallError::Timeout { .. })) {
            self.restart_hung(
                &worker_id,
                "a push did not answer within its deadline and the late-outcome window",
            );
        }
        let late = ended(answer, &ticket);
        if late.status == ActionStatus::InDoubt {
            return;
        }
        let mut late = late;
        late.late = true;
        // Taken out of the set in doubt first, as a resolution does: whichever comes
        // first settles the action, and the other finds it settled.
        let Some(doubt) = lock(&self.in_doubt).remove(&base.action_id) else {
            tracing::info!(action_id = %base.action_id, "a late outcome arrived for an action already resolved; not journaled");
            return;
        };
        let links = vec![dispatched.id.clone()];
        match self.append(EntryKind::Result, links, &late).await {
            Ok(appended) => {
                self.metrics
                    .actions
                    .with_label_values(&[late.status.as_str()])
                    .inc();
                let known = known(&appended, late);
                self.track_in_doubt(&known);
                self.settle(&known.result.action_id.clone(), Some(known));
            }
            Err(refusal) => {
                lock(&self.in_doubt).insert(base.action_id.clone(), doubt);
                tracing::warn!(
                    action_id = %base.action_id,
                    %refusal,
                    "the late outcome of an action in doubt could not be journaled; it stays in doubt"
                )
            }
        }
    }

    /// Claims `action` for this call, or finds its answer.
    async fn claim(
        self: &Arc<Self>,
        action: &str,
        intent_id: &str,
        digest: &str,
    ) -> Result<Claim, ActError> {
        let conflict = || ActError::Conflict {
            intent_id: intent_id.to_owned(),
            action_id: action.to_owned(),
        };
        enum Next {
            Wait(watch::Receiver<Option<Known>>),
            /// Someone else looks the id up: look again once they are done.
            LookAgain(watch::Receiver<Option<Known>>),
            AskJournal(watch::Sender<Option<Known>>, watch::Receiver<Option<Known>>),
        }
        loop {
            let next = {
                let mut book = lock(&self.book);
                match book.slots.get(action) {
                    // Nothing of it ran: a repeat runs it.
                    Some(Slot::Done(k))
                        if k.digest == digest && k.result.status.nothing_acted() =>
                    {
                        return self.open(&mut book, action, digest);
                    }
                    Some(Slot::Done(k)) if k.digest == digest => {
                        return Ok(Claim::Answer(k.clone()))
                    }
                    Some(Slot::Done(_)) => return Err(conflict()),
                    Some(Slot::Running { digest: d, .. }) if d != digest => return Err(conflict()),
                    Some(Slot::Running { done, .. }) => Next::Wait(done.clone()),
                    Some(Slot::Looking(rx)) => Next::LookAgain(rx.clone()),
                    None if book.complete && !lock(&self.in_doubt).contains_key(action) => {
                        return self.open(&mut book, action, digest);
                    }
                    None => {
                        let (tx, rx) = watch::channel(None);
                        book.slots
                            .insert(action.to_owned(), Slot::Looking(rx.clone()));
                        Next::AskJournal(tx, rx)
                    }
                }
            };
            match next {
                Next::Wait(mut done) => {
                    // A repeat of a running action waits for its answer; an owner that
                    // gives up without one lets the repeat try again.
                    let answer = done
                        .wait_for(|k| k.is_some())
                        .await
                        .ok()
                        .and_then(|k| k.clone());
                    if let Some(k) = answer {
                        return Ok(Claim::Answer(Box::new(k)));
                    }
                }
                Next::LookAgain(mut looked) => {
                    // Woken when the lookup is over, however it ended.
                    let _ = looked.changed().await;
                }
                Next::AskJournal(woken, mine) => {
                    // Not in memory and memory is not complete: the journal knows. The id
                    // is held meanwhile, so no claim of it can start and race the lookup.
                    let lookup = Lookup {
                        act: self,
                        action,
                        mine,
                        _woken: woken,
                    };
                    let found = self.journaled_state(action).await?;
                    let mut book = lock(&self.book);
                    if !lookup.holds(&book) {
                        // Settled meanwhile (a resolution, a late outcome): memory is newer
                        // than what was read. Look again.
                        drop(book);
                        drop(lookup);
                        continue;
                    }
                    book.slots.remove(action);
                    let claim = match found {
                        None => self.open(&mut book, action, digest),
                        Some(k) => {
                            book.slots
                                .insert(action.to_owned(), Slot::Done(Box::new(k.clone())));
                            book.finished.push_back(action.to_owned());
                            forget_oldest(&mut book, self.cfg.remembered_actions);
                            if k.digest != digest {
                                Err(conflict())
                            } else if !k.result.status.nothing_acted() {
                                Ok(Claim::Answer(Box::new(k)))
                            } else {
                                // Nothing of it ran: it is claimed anew.
                                self.open(&mut book, action, digest)
                            }
                        }
                    };
                    drop(book);
                    drop(lookup);
                    return claim;
                }
            }
        }
    }

    /// Makes a new claim on `action`, within the in-flight bound.
    fn open(
        self: &Arc<Self>,
        book: &mut Book,
        action: &str,
        digest: &str,
    ) -> Result<Claim, ActError> {
        if book.running >= self.cfg.max_in_flight {
            return Err(ActError::Busy {
                in_flight: book.running,
            });
        }
        Ok(Claim::Mine(self.run(book, action, digest, None)))
    }

    /// Marks `action` running under a new owner; `restore` is what it was before (put
    /// back if the claim is given up).
    fn run(
        self: &Arc<Self>,
        book: &mut Book,
        action: &str,
        digest: &str,
        restore: Option<Known>,
    ) -> Owner {
        let (tx, rx) = watch::channel(None);
        book.slots.insert(
            action.to_owned(),
            Slot::Running {
                digest: digest.to_owned(),
                done: rx,
            },
        );
        book.running += 1;
        Owner {
            act: self.clone(),
            action_id: action.to_owned(),
            done: Some(tx),
            restore: restore.map(Box::new),
            dispatched: None,
        }
    }

    /// Holds the finished action `action` (as a running one, so nothing else claims it
    /// meanwhile) and answers what it was.
    async fn hold(self: &Arc<Self>, action: &str) -> Result<(Known, Owner), RollbackError> {
        let journaled = {
            let book = lock(&self.book);
            match book.slots.get(action) {
                Some(Slot::Running { .. }) => {
                    return Err(RollbackError::Refused(format!(
                        "action {action} has not finished yet"
                    )))
                }
                Some(Slot::Done(_)) => None,
                Some(Slot::Looking(_)) => {
                    return Err(RollbackError::Refused(format!(
                        "action {action} is being looked up by another request; try again"
                    )))
                }
                None if book.complete => {
                    return Err(RollbackError::NoSuchAction(action.to_owned()))
                }
                None => Some(()),
            }
        };
        let from_journal = match journaled {
            Some(()) => Some(
                self.journaled_state(action)
                    .await
                    .map_err(|e| match e {
                        ActError::Journal(r) => RollbackError::Journal(r),
                        other => RollbackError::Refused(other.to_string()),
                    })?
                    .ok_or_else(|| RollbackError::NoSuchAction(action.to_owned()))?,
            ),
            None => None,
        };
        let mut book = lock(&self.book);
        let known = match (book.slots.remove(action), from_journal) {
            (Some(Slot::Done(k)), _) => *k,
            (None, Some(k)) => {
                book.finished.push_back(action.to_owned());
                k
            }
            (Some(busy @ (Slot::Running { .. } | Slot::Looking(_))), _) => {
                book.slots.insert(action.to_owned(), busy);
                return Err(RollbackError::Refused(format!(
                    "action {action} is busy (running, or being looked up); try again"
                )));
            }
            (None, None) => return Err(RollbackError::NoSuchAction(action.to_owned())),
        };
        let owner = self.run(&mut book, action, &known.digest, Some(known.clone()));
        Ok((known, owner))
    }

    /// Undoes action `action` through its driver's rollback, for `reason`: only an
    /// action that is `ok`, through the build of the driver that acted, where that driver
    /// can roll back. The undo is a dispatch of its own, journaled before the driver is
    /// called; its result is the action's new state (`rolled_back`), or, refused by the
    /// driver (the world moved on since), the action stands and the refusal says why.
    pub async fn rollback(
        self: &Arc<Self>,
        action: &str,
        reason: &str,
    ) -> Result<ActionResult, RollbackError> {
        if reason.trim().is_empty() || reason.len() > MAX_REASON_BYTES {
            return Err(RollbackError::Reason);
        }
        let (known, owner) = self.hold(action).await?;
        let refuse = |why: String| Err(RollbackError::Refused(why));
        if known.result.status != ActionStatus::Ok {
            return refuse(format!(
                "action {action} is {}: only an action that acted (ok) can be rolled back",
                known.result.status.as_str()
            ));
        }
        let (Some(capsule), Some(name)) = (&known.record.capsule, &known.record.driver) else {
            return refuse(format!("action {action} has no capsule to undo"));
        };
        let Some(driver) = self.lanes.driver(name) else {
            return refuse(format!("driver {name}, which acted, is not loaded"));
        };
        let acted = &capsule.environment.driver_artifact_hash;
        if &driver.descriptor.artifact_hash != acted {
            return refuse(format!(
                "the build of {name} that acted ({acted}) is not the one loaded ({})",
                driver.descriptor.artifact_hash
            ));
        }
        if !driver.descriptor.can_rollback {
            return refuse(format!("driver {name} cannot roll back"));
        }
        let intent: AxonIntent = match serde_json::from_value(capsule.input.clone()) {
            Ok(i) => i,
            Err(e) => return refuse(format!("the capsule's input is not an intent: {e}")),
        };
        let dispatch = Dispatch {
            action_id: action.to_owned(),
            caller: known.record.caller.clone(),
            intent_id: known.record.intent_id.clone(),
            intent_digest: known.digest.clone(),
            intent: intent.clone(),
            driver: name.clone(),
            artifact_hash: acted.clone(),
            lane: self
                .lanes
                .lane(name)
                .unwrap_or(axon_protocols::lane::Lane::Live),
            prediction: Value::Null,
            undo: Some(Undo {
                reason: reason.to_owned(),
                result: known.entry_id.clone(),
            }),
            trial_draw: None,
        };
        let dispatched = self
            .append(EntryKind::Dispatch, vec![known.entry_id.clone()], &dispatch)
            .await
            .map_err(RollbackError::Journal)?;
        // From here on the undo runs to its end whether or not anyone waits for it.
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        let reason = reason.to_owned();
        let mut owner = owner;
        owner.dispatched = Some(Box::new((dispatched.clone(), (*known.record).clone())));
        self.runner().spawn(async move {
            let opts = CallOptions {
                deadline: Duration::from_millis(driver.manifest.limits.deadline_ms),
                correlation_id: None,
            };
            let recorded = Recorded {
                action_id: known.result.action_id.clone(),
                intent,
                output: known.result.output.clone(),
            };
            let answer = match driver.reserve(1) {
                Ok(mut permit) => {
                    permit
                        .call(DriverCall::Rollback(Box::new(recorded)), &opts)
                        .await
                }
                Err(e) => Err(e),
            };
            // The new state keeps the capsule of the push it is about.
            let mut r = (*known.record).clone();
            r.late = false;
            r.resolution = None;
            let mut refused = None;
            match answer {
                Ok(DriverAnswer::Outcome(o)) if o.status == Status::Ok => {
                    r.status = ActionStatus::RolledBack;
                    r.output = o.output;
                    r.reason = Some(format!("rolled back: {reason}"));
                }
                Ok(DriverAnswer::Outcome(o)) => {
                    let why = o.reason.unwrap_or_else(|| "no reason given".into());
                    r.reason = Some(format!("a rollback was refused: {why}"));
                    refused = Some(RollbackError::Refused(why));
                }
                Ok(other) => {
                    let why = format!("the driver answered {other:?} to a rollback");
                    r.reason = Some(why.clone());
                    refused = Some(RollbackError::Refused(why));
                }
                Err(e @ (CallError::Overloaded { .. } | CallError::Unavailable { .. })) => {
                    r.reason = Some(format!("a rollback never reached the driver: {e}"));
                    refused = Some(RollbackError::Driver(e));
                }
                Err(e) => {
                    r.status = ActionStatus::InDoubt;
                    r.reason = Some(format!(
                        "a rollback started and did not answer: {e}; whether it undid the action is unknown"
                    ));
                }
            }
            let answer = match this
                .append(EntryKind::Result, vec![dispatched.id.clone()], &r)
                .await
            {
                Ok(appended) => {
                    let result = this.finished(owner, r, appended);
                    match refused {
                        Some(e) => Err(e),
                        None => Ok(result),
                    }
                }
                Err(refusal) => {
                    tracing::error!(critical = true, action_id = %known.result.action_id, %refusal, "CRITICAL: the rollback of action {} ran and its outcome was not recorded; it is in doubt", known.result.action_id);
                    let mut r = r;
                    r.status = ActionStatus::InDoubt;
                    let _ = this.finished(owner, r, dispatched);
                    Err(RollbackError::Journal(refusal))
                }
            };
            let _ = tx.send(answer);
        });
        rx.await.unwrap_or_else(|_| {
            Err(RollbackError::Refused(
                "the rollback's task ended without an answer".into(),
            ))
        })
    }

    /// Ends a claim: with the action's newest state, or (`None`) given up.
    fn settle(&self, action: &str, known: Option<Known>) {
        let mut book = lock(&self.book);
        let was_running = matches!(book.slots.get(action), Some(Slot::Running { .. }));
        if was_running {
            book.running -= 1;
        }
        match known {
            Some(k) => {
                // Listed once among the finished, to be forgotten in its turn.
                let before = book
                    .slots
                    .insert(action.to_owned(), Slot::Done(Box::new(k)));
                if !matches!(before, Some(Slot::Done(_))) {
                    book.finished.push_back(action.to_owned());
                }
                forget_oldest(&mut book, self.cfg.remembered_actions);
            }
            None => {
                if was_running {
                    book.slots.remove(action);
                }
            }
        }
    }

    /// The newest state of `action` from the journal.
    /// The newest state of `action`: in memory while it is in doubt, else from the
    /// journal, where a dispatch newer than its newest result leaves it in doubt (its
    /// outcome was never recorded).
    async fn journaled_state(&self, action: &str) -> Result<Option<Known>, ActError> {
        if let Some(k) = lock(&self.in_doubt).get(action) {
            return Ok(Some(k.clone()));
        }
        let id: ActionId = action.parse().map_err(ActError::Malformed)?;
        let entries = match self.journal.by_action(id, &self.journal_opts()).await {
            Ok(entries) => entries,
            Err(Refusal::NotFound(_)) => return Ok(None),
            Err(r) => return Err(ActError::Journal(r)),
        };
        let Some(last) = entries
            .iter()
            .rev()
            .find(|e| matches!(e.kind, EntryKind::Result | EntryKind::Dispatch))
        else {
            return Ok(None);
        };
        if last.kind == EntryKind::Result {
            let record: ActionRecord = body(last).map_err(ActError::Journal)?;
            return Ok(Some(known(&place_of(last), record)));
        }
        let d: Dispatch = body(last).map_err(ActError::Journal)?;
        let record = in_doubt_after(
            d,
            format!(
                "dispatched (entry {}) with no outcome recorded: the driver may have acted",
                last.index
            ),
        );
        Ok(Some(known(&place_of(last), record)))
    }

    /// Mirrors one dispatched intent to the shadows of `live`'s capability: each predicts
    /// it (no side effect) on its own workers, in an order drawn from the node's seed and
    /// the action, among themselves and against the live push (each is sent before or
    /// after it), and its prediction is compared with the live outcome by its manifest's
    /// `[shadow] compare`. A shadow's errors and panics are swallowed and counted; one whose
    /// queue or concurrency is full is skipped and counted, never queued beyond it. It
    /// awaits only the sending of the shadows drawn to go first, never an answer.
    async fn mirror(
        self: &Arc<Self>,
        live: &Arc<DriverInstance>,
        intent: &Arc<Action>,
        opts: &CallOptions,
        outcome: tokio::sync::watch::Receiver<Option<LiveOutcome>>,
    ) {
        let mut shadows = self.lanes.shadows(&live.descriptor.capability);
        if shadows.is_empty() {
            return;
        }
        let mut draw = self.draw("shadow order", &intent.action_id);
        // Fisher–Yates with the draw's bits.
        for i in (1..shadows.len()).rev() {
            let j = (draw % (i as u64 + 1)) as usize;
            draw = draw.rotate_right(7) ^ 0x9e37_79b9_7f4a_7c15;
            shadows.swap(i, j);
        }
        for s in shadows {
            let in_flight = s.shadow_in_flight.fetch_add(1, Ordering::AcqRel);
            if in_flight >= self.cfg.shadow_concurrency {
                s.shadow_in_flight.fetch_sub(1, Ordering::AcqRel);
                self.mirrored(&s, Mirrored::Skipped);
                continue;
            }
            let Ok(mut permit) = s.reserve(1) else {
                s.shadow_in_flight.fetch_sub(1, Ordering::AcqRel);
                self.mirrored(&s, Mirrored::Skipped);
                continue;
            };
            // The live call's deadline, within the shadow's own.
            let own = Duration::from_millis(s.manifest.limits.deadline_ms);
            let mut opts = opts.clone();
            let own_limit = own <= opts.deadline;
            opts.deadline = opts.deadline.min(own);
            let (intent, mut outcome) = (intent.clone(), outcome.clone());
            let this = self.clone();
            let task = async move {
                let worker = permit.worker_id().to_owned();
                let began = this.clock.now();
                let answer = permit
                    .call(DriverCall::Predict(intent.clone()), &opts)
                    .await;
                s.shadow_in_flight.fetch_sub(1, Ordering::AcqRel);
                if answer.is_ok() {
                    s.record_prediction(this.clock.now().saturating_sub(began));
                }
                let (m, predicted) = match answer {
                    Ok(DriverAnswer::Prediction(Prediction::Expected { output, .. })) => {
                        // The live outcome, once it is known (none: the live push ended
                        // without one, and there is nothing to compare).
                        let live = match outcome.wait_for(Option::is_some).await {
                            Ok(v) => v.clone(),
                            Err(_) => None,
                        };
                        match live {
                            Some(LiveOutcome::Known { ok, output: l })
                                if s.manifest.shadow.agrees(&output, ok, &l) =>
                            {
                                (Mirrored::Agreed, None)
                            }
                            Some(LiveOutcome::Known { ok, output: l }) => {
                                (Mirrored::Disagreed, Some((output, ok, l)))
                            }
                            // In doubt, not run: nothing to compare with.
                            Some(LiveOutcome::Unknown) | None => (Mirrored::Inconclusive, None),
                        }
                    }
                    Ok(DriverAnswer::Prediction(Prediction::Inconclusive { .. })) => {
                        (Mirrored::Inconclusive, None)
                    }
                    // Restarting or full by the time the call reached it: not mirrored.
                    Err(CallError::Unavailable { .. } | CallError::Overloaded { .. }) => {
                        (Mirrored::Skipped, None)
                    }
                    // A shadow that holds a prediction past its own deadline is hung: it
                    // is restarted like a hung live driver, so it never holds its queue.
                    // One cut short by the caller's budget has only failed.
                    Err(CallError::Timeout { .. }) => {
                        if own_limit {
                            this.restart_hung(&worker, "its mirrored prediction did not answer");
                        }
                        (Mirrored::Failed, None)
                    }
                    Ok(_) | Err(_) => (Mirrored::Failed, None),
                };
                let in_full = this.mirrored(&s, m);
                if let (true, Some((output, ok, l))) = (in_full, predicted) {
                    this.journal_event(
                        &s,
                        serde_json::json!({
                            "shadow_disagreement": {
                                "driver": s.name(),
                                "action_id": intent.action_id,
                                "predicted": output,
                                "live_ok": ok,
                                "live_output": l,
                            }
                        }),
                    );
                }
            };
            // Before the live push or after it, as the draw says: a shadow sent first has
            // its call in its own mailbox before the live one is sent (its first poll
            // sends it), and goes on by itself; nothing waits for its answer.
            let first = draw & 1 == 1;
            draw = draw.rotate_right(1);
            if first {
                let mut task = Box::pin(task);
                let done = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(std::future::Future::poll(task.as_mut(), cx).is_ready())
                })
                .await;
                if !done {
                    actix::spawn(task);
                }
            } else {
                actix::spawn(task);
            }
        }
    }

    /// Counts one mirrored call of shadow `s` in its scorecard, its metric and its
    /// window's journal summary; answers, for a disagreement, whether it is one of the
    /// window's first few, journaled in full. The window's summary is journaled once, at
    /// its end (a timer set by its first call) or by the first call of a later window,
    /// whichever comes first.
    fn mirrored(self: &Arc<Self>, s: &Arc<DriverInstance>, m: Mirrored) -> bool {
        self.metrics
            .mirrored
            .with_label_values(&[s.name(), m.as_str()])
            .inc();
        let length = s.scorecard.config().window.max(Duration::from_secs(1));
        let (finished, opened, in_full) = {
            let mut log = s.shadow_log.lock().unwrap_or_else(|e| e.into_inner());
            // Read under the lock, so that windows only move forward.
            let now = self.clock.now();
            s.scorecard.record_mirrored(now, m);
            let window = (now.as_nanos() / length.as_nanos()) as u64;
            let mut finished = None;
            let mut opened = false;
            if window > log.window || !log.started {
                finished = log.take_summary();
                *log = ShadowLog {
                    window,
                    started: true,
                    ..ShadowLog::default()
                };
                opened = true;
            }
            log.counts.count(m);
            let in_full = m == Mirrored::Disagreed && log.in_full < SHADOW_DISAGREEMENTS_IN_FULL;
            if in_full {
                log.in_full += 1;
            }
            (finished, opened.then_some(window), in_full)
        };
        if let Some((w, counts)) = finished {
            self.journal_summary(s, w, length, counts);
        }
        if let Some(w) = opened {
            // The summary of this window once it has ended, if no later call wrote it.
            let (this, s) = (self.clone(), s.clone());
            let ends = Duration::from_nanos(((w + 1) as u128 * length.as_nanos()) as u64);
            actix::spawn(async move {
                let wait = ends.saturating_sub(this.clock.now());
                this.clock.sleep(wait).await;
                let finished = {
                    let mut log = s.shadow_log.lock().unwrap_or_else(|e| e.into_inner());
                    if log.window == w {
                        log.take_summary()
                    } else {
                        None
                    }
                };
                if let Some((w, counts)) = finished {
                    this.journal_summary(&s, w, length, counts);
                }
            });
        }
        in_full
    }

    /// Journals the summary of window `w` (of `length`) of shadow `s`.
    fn journal_summary(
        self: &Arc<Self>,
        s: &Arc<DriverInstance>,
        w: u64,
        length: Duration,
        counts: Agreement,
    ) {
        self.journal_event(
            s,
            serde_json::json!({
                "shadow_summary": {
                    "driver": s.name(),
                    "window_start_s": (w as u128 * length.as_nanos()) as f64 / 1e9,
                    "window_seconds": length.as_secs_f64(),
                    "agreed": counts.agreed,
                    "disagreed": counts.disagreed,
                    "inconclusive": counts.inconclusive,
                    "failed": counts.failed,
                    "skipped": counts.skipped,
                }
            }),
        );
    }

    /// Appends a shadow's `event` entry beside the work that made it; a refusal is
    /// logged and counted.
    fn journal_event(self: &Arc<Self>, s: &Arc<DriverInstance>, body: Value) {
        let (this, name) = (self.clone(), s.name().to_owned());
        actix::spawn(async move {
            if let Err(e) = this.append(EntryKind::Event, vec![], &body).await {
                this.metrics
                    .shadow_events_refused
                    .with_label_values(&[&name])
                    .inc();
                tracing::error!(driver = %name, error = %e, "a shadow's event was not journaled");
            }
        });
    }

    /// Hands a live driver's push, or one on trial, to its health checks, and acts on a
    /// check that trips: one in dry run is journaled as a `decision` and changes nothing;
    /// any other takes the driver out of service, journaled with its rule and figures. A
    /// driver on trial whose every check has passed goes back live. All of it runs beside
    /// the push's own answer, never delaying it.
    fn watch_health(self: &Arc<Self>, driver: &Arc<DriverInstance>, sample: &Sample) {
        let name = driver.name();
        let lane = self.lanes.lane(name);
        if !matches!(lane, Some(Lane::Live | Lane::Trial)) {
            return;
        }
        let Some((trips, passed)) = driver.health().map(|mut h| {
            let trips = h.observe(sample);
            (trips, TrialPolicy::passed(&h.states()))
        }) else {
            return;
        };
        let tripped = trips.iter().any(|t| !t.dry_run);
        for trip in trips {
            let evidence = serde_json::json!({
                "check": trip.check,
                "window_calls": trip.window_calls,
                "figures": trip.figures,
                "slo": driver.descriptor.slo,
            });
            let this = self.clone();
            let name = name.to_owned();
            if trip.dry_run {
                tracing::warn!(driver = %name, rule = trip.rule, "a dry-run check failed; the driver stays in service");
                self.metrics
                    .dry_run_findings
                    .with_label_values(&[&name, trip.rule])
                    .inc();
                let body = serde_json::json!({
                    "driver": name,
                    "rule": trip.rule,
                    "verdict": Verdict::Fail,
                    "dry_run": true,
                    "evidence": evidence,
                });
                actix::spawn(async move {
                    if let Err(e) = this.append(EntryKind::Decision, vec![], &body).await {
                        tracing::error!(driver = %name, error = %e, "a dry-run check's finding was not journaled");
                    }
                });
            } else {
                let reason = format!(
                    "its {} check failed against its service-level objective",
                    trip.check.rule()
                );
                let driver = driver.clone();
                actix::spawn(async move {
                    let demoted = this
                        .take_out_of_service(&name, &reason, trip.rule, evidence)
                        .await;
                    // Not demoted (the move was not journaled): its checks go on, so the
                    // next failing evaluation tries again.
                    if !demoted {
                        if let Some(mut h) = driver.health() {
                            h.untrip();
                        }
                    }
                });
            }
        }
        if lane == Some(Lane::Trial) && passed && !tripped {
            self.conclude_passed_trial(driver);
        }
    }

    /// Puts a driver whose trial passed back live, once, journaled with its checks.
    fn conclude_passed_trial(self: &Arc<Self>, driver: &Arc<DriverInstance>) {
        if driver.concluding.swap(true, Ordering::AcqRel) {
            return;
        }
        let checks = driver.health().map(|h| h.states());
        // Where a live driver serves the same capability, the trial passes only if the
        // utility it realized is not worse than the live driver's over the same span:
        // the live driver's since the oldest of the trial's kept.
        let live = self
            .lanes
            .live(&driver.descriptor.capability)
            .filter(|l| l.name() != driver.name());
        let uplift = match &live {
            None => None,
            Some(live) => {
                // Over the span both kept: from the later of their oldest utilities.
                let since = driver
                    .oldest_utility()
                    .max(live.oldest_utility())
                    .unwrap_or(Duration::ZERO);
                let candidate = driver.utilities_since(since);
                let incumbent = live.utilities_since(since);
                let need = self.lanes.promotion().min_trial_calls;
                if candidate.len() < need || incumbent.len() < need {
                    // Too little to compare yet: asked again at its next passing push.
                    driver.concluding.store(false, Ordering::Release);
                    return;
                }
                Some(axon_supervisors::uplift::compare(
                    &candidate,
                    &incumbent,
                    driver.promotion_confidence(self.lanes.promotion().confidence),
                ))
            }
        };
        let (this, driver) = (self.clone(), driver.clone());
        actix::spawn(async move {
            // The uplift gate's run is journaled (and counted) before the move it decides;
            // not journaled, nothing moves, and the next passing push concludes again.
            if let Some(u) = &uplift {
                let body = serde_json::json!({
                    "gate_run": {
                        "gate": "uplift",
                        "into": Lane::Live,
                        "driver": driver.name(),
                        "artifact_hash": driver.descriptor.artifact_hash,
                        "live": live.as_ref().map(|l| l.name()),
                        "passed": !u.worse,
                        "figures": u,
                    }
                });
                let opts = this.journal_opts();
                if let Err(e) = this
                    .lanes
                    .gate_run(&driver, "uplift", !u.worse, body, &this.journal, &opts)
                    .await
                {
                    driver.concluding.store(false, Ordering::Release);
                    tracing::error!(driver = %driver.name(), error = %e, "a trial's uplift gate run was not journaled; the driver stays on trial");
                    return;
                }
            }
            if let Some(u) = uplift.as_ref().filter(|u| u.worse) {
                let evidence = serde_json::json!({ "checks": checks, "uplift": u });
                let reason = format!(
                    "its trial delivered less than the live driver: mean utility {:.4} against {:.4} over {} and {} pushes (one-sided Mann-Whitney U, p = {:.4}, below {:.4})",
                    u.candidate_mean.unwrap_or(0.0),
                    u.incumbent_mean.unwrap_or(0.0),
                    u.candidate_calls,
                    u.incumbent_calls,
                    u.p_value.unwrap_or(0.0),
                    1.0 - u.confidence
                );
                // Taken out of service with the conclusion it holds (let go of if the
                // move is not journaled, so the next passing push concludes again).
                this.take_out(
                    driver.name(),
                    &reason,
                    crate::lanes::TRIAL_UPLIFT,
                    evidence,
                    true,
                )
                .await;
                return;
            }
            let why = crate::lanes::Why {
                reason: "every check passed on its trial: back in live service".into(),
                rule: Some(crate::lanes::TRIAL_PASSED.into()),
                evidence: Some(serde_json::json!({ "checks": checks, "uplift": uplift })),
            };
            match this.supervisor_move(driver.name(), Lane::Live, why).await {
                Ok(_) => {
                    this.metrics
                        .trials
                        .with_label_values(&[driver.name(), "passed"])
                        .inc();
                    tracing::info!(driver = %driver.name(), "driver passed its trial: live again");
                }
                Err(e) => {
                    // Asked again at its next passing push.
                    driver.concluding.store(false, Ordering::Release);
                    tracing::error!(driver = %driver.name(), error = %e, "a passed trial was not journaled; the driver stays on trial");
                }
            }
        });
    }

    /// Takes driver `name` out of service because its supervisor says so (`reason`): a
    /// live driver moves to `shadow`, journaled with the rule that fired, and is due a
    /// trial after its cool-down; one on trial goes back to `shadow` with the cool-down
    /// doubled, or to `retired` once it has failed `max_failed_trials` trials in a row. A
    /// driver in any other lane serves no traffic already, and stays where it is. True
    /// when the move was journaled.
    pub async fn take_out_of_service(
        self: &Arc<Self>,
        name: &str,
        reason: &str,
        rule: &str,
        evidence: Value,
    ) -> bool {
        self.take_out(name, reason, rule, evidence, false).await
    }

    /// [`take_out_of_service`](Self::take_out_of_service), by a caller that already holds
    /// the trial's conclusion (`concluding`) where `concluding_held`.
    async fn take_out(
        self: &Arc<Self>,
        name: &str,
        reason: &str,
        rule: &str,
        evidence: Value,
        concluding_held: bool,
    ) -> bool {
        let Some(driver) = self.lanes.driver(name) else {
            return false;
        };
        let from = self.lanes.lane(name);
        let to = match from {
            Some(Lane::Live) => Lane::Shadow,
            // Worse than the live driver is not a failure of the driver: it is held in
            // shadow, never retired for it.
            Some(Lane::Trial) if rule == crate::lanes::TRIAL_UPLIFT => Lane::Shadow,
            Some(Lane::Trial) => {
                if !concluding_held && driver.concluding.swap(true, Ordering::AcqRel) {
                    return false;
                }
                let next = self
                    .lanes
                    .trials()
                    .next(driver.breaker().0, axon_supervisors::TrialEvent::Tripped);
                if next == Breaker::Retired {
                    Lane::Retired
                } else {
                    Lane::Shadow
                }
            }
            _ => {
                tracing::warn!(driver = %name, %reason, %rule, "driver failing a check, not in service: its lane stays");
                return false;
            }
        };
        let reason = match (from, to) {
            (Some(Lane::Trial), Lane::Retired) => format!(
                "{reason}, on its trial: it has failed {} trials in a row, and is retired",
                self.lanes.trials().max_failed_trials
            ),
            (Some(Lane::Trial), _) => format!("{reason}, on its trial"),
            _ => reason.to_owned(),
        };
        let why = crate::lanes::Why {
            reason: reason.clone(),
            rule: Some(rule.to_owned()),
            evidence: Some(evidence),
        };
        match self.supervisor_move(name, to, why).await {
            Ok(_) => {
                self.metrics
                    .demotions
                    .with_label_values(&[name, rule])
                    .inc();
                if from == Some(Lane::Trial) {
                    self.metrics
                        .trials
                        .with_label_values(&[name, "failed"])
                        .inc();
                }
                tracing::error!(driver = %name, %reason, %rule, to = %to, "driver taken out of service by its supervisor");
                self.schedule_trial(&driver);
                true
            }
            Err(e) => {
                driver.concluding.store(false, Ordering::Release);
                tracing::error!(driver = %name, error = %e, "the demotion of a failing driver was not journaled; it stays in service");
                false
            }
        }
    }

    /// Moves driver `name` to `to` by one of its supervisor's rules, journaled first.
    async fn supervisor_move(
        &self,
        name: &str,
        to: Lane,
        why: crate::lanes::Why,
    ) -> Result<axon_protocols::lane::LaneChange, crate::lanes::LaneError> {
        self.lanes
            .change(
                name,
                to,
                crate::lanes::Mover::Supervisor,
                why,
                &self.journal,
                &self.journal_opts(),
            )
            .await
    }

    /// Sets every driver due a trial (its breaker open) on its way to one: at start, from
    /// the breakers the lanes rebuilt.
    pub fn schedule_trials(self: &Arc<Self>) {
        for d in self.lanes.drivers() {
            self.schedule_trial(&d);
        }
    }

    /// Moves driver `d` onto its trial once its cool-down has passed, if its breaker is
    /// still as it is now (open); while another driver of its capability is on trial, or
    /// the move is not journaled, it tries again after the same wait.
    fn schedule_trial(self: &Arc<Self>, d: &Arc<DriverInstance>) {
        let (state, changes) = d.breaker();
        let Breaker::Open { failed_trials } = state else {
            return;
        };
        let policy = *self.lanes.trials();
        let wait = policy.cool_down_after(failed_trials);
        let (this, d) = (self.clone(), d.clone());
        actix::spawn(async move {
            loop {
                this.clock.sleep(wait).await;
                if d.breaker() != (state, changes) {
                    return;
                }
                let why = crate::lanes::Why {
                    reason: format!(
                        "{wait:?} after it was taken out of service: a half-open trial, serving {} of the intents for {}",
                        policy.share, d.descriptor.capability
                    ),
                    rule: Some(crate::lanes::TRIAL_START.into()),
                    evidence: Some(serde_json::json!({
                        "failed_trials": failed_trials,
                        "waited_ms": wait.as_millis() as u64,
                        "share": policy.share,
                    })),
                };
                match this.supervisor_move(d.name(), Lane::Trial, why).await {
                    Ok(_) => {
                        this.metrics
                            .trials
                            .with_label_values(&[d.name(), "started"])
                            .inc();
                        tracing::warn!(driver = %d.name(), "driver on trial");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(driver = %d.name(), error = %e, "the trial did not start; trying again after the same wait");
                    }
                }
            }
        });
    }

    /// True while action `action` is between its claim and its answer.
    pub fn is_running(&self, action: &str) -> bool {
        matches!(
            lock(&self.book).slots.get(action),
            Some(Slot::Running { .. })
        )
    }

    /// The actions in doubt, oldest id first.
    pub fn in_doubt(&self) -> Vec<ActionResult> {
        lock(&self.in_doubt)
            .values()
            .map(|k| k.result.clone())
            .collect()
    }

    /// Records an operator's finding about action `action`, which must be in doubt.
    pub async fn resolve(
        &self,
        action: &str,
        resolution: Resolution,
    ) -> Result<ActionResult, ResolveError> {
        if resolution.reason.trim().is_empty() || resolution.reason.len() > MAX_REASON_BYTES {
            return Err(ResolveError::Reason);
        }
        // Taken out while its resolution is journaled, so two cannot both resolve it.
        let Some(k) = lock(&self.in_doubt).remove(action) else {
            let found = self.journaled_state(action).await.map_err(|e| match e {
                ActError::Journal(r) => ResolveError::Journal(r),
                other => ResolveError::Journal(Refusal::Internal(other.to_string())),
            })?;
            return Err(match found {
                None => ResolveError::NoSuchAction(action.to_owned()),
                Some(k) => ResolveError::NotInDoubt {
                    action_id: action.to_owned(),
                    status: k.result.status.as_str(),
                },
            });
        };
        let mut record = (*k.record).clone();
        record.status = ActionStatus::Resolved;
        record.reason = Some(format!(
            "an operator found that it {}: {}",
            if resolution.ran { "ran" } else { "did not run" },
            resolution.reason
        ));
        record.resolution = Some(resolution);
        record.late = false;
        record.capsule = None;
        match self
            .append(EntryKind::Result, vec![k.entry_id.clone()], &record)
            .await
        {
            Ok(appended) => {
                self.metrics.actions.with_label_values(&["resolved"]).inc();
                let known = known(&appended, record);
                let result = known.result.clone();
                self.track_in_doubt(&known);
                self.settle(action, Some(known));
                Ok(result)
            }
            Err(refusal) => {
                lock(&self.in_doubt).insert(action.to_owned(), k);
                Err(ResolveError::Journal(refusal))
            }
        }
    }
}

/// What start-up found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Actions in the journal.
    pub actions: usize,
    /// Dispatches without an outcome, journaled `in_doubt` now.
    pub marked_in_doubt: usize,
    /// Actions in doubt after start-up.
    pub in_doubt: usize,
}

/// Where a stored entry is: its index, id and barcode, as an append answers them.
pub(crate) fn place_of(e: &StoredEntry) -> Appended {
    Appended {
        index: e.index,
        id: e.id.clone(),
        barcode: e.barcode.clone(),
    }
}

/// What the pipeline knows of `record`, journaled at `at`.
fn known(at: &Appended, record: ActionRecord) -> Known {
    Known {
        digest: record.intent_digest.clone(),
        result: record.answer(at.index, &at.barcode),
        entry_id: at.id.clone(),
        record: Arc::new(record),
    }
}

/// The state of an action whose dispatch `d` has no outcome recorded: in doubt.
fn in_doubt_after(d: Dispatch, reason: String) -> ActionRecord {
    ActionRecord {
        action_id: d.action_id,
        caller: d.caller,
        intent_id: d.intent_id,
        intent_digest: d.intent_digest,
        status: ActionStatus::InDoubt,
        output: Value::Null,
        driver: Some(d.driver),
        lane: Some(d.lane),
        reason: Some(reason),
        intent: None,
        capsule: None,
        resolution: None,
        late: false,
    }
}

fn body<T: serde::de::DeserializeOwned>(stored: &StoredEntry) -> Result<T, Refusal> {
    let entry = Entry::from_bytes(&stored.bytes)
        .map_err(|e| Refusal::Internal(format!("entry {} cannot be read: {e}", stored.index)))?;
    serde_json::from_value(entry.body).map_err(|e| {
        Refusal::Internal(format!(
            "entry {} is not a {}: {e}",
            stored.index,
            stored.kind.as_str()
        ))
    })
}

/// Forgets the oldest finished actions beyond `bound`: memory is then no longer
/// complete, and a miss asks the journal.
fn forget_oldest(book: &mut Book, bound: usize) {
    while book.finished.len() > bound {
        let Some(old) = book.finished.pop_front() else {
            break;
        };
        if matches!(book.slots.get(&old), Some(Slot::Done(_))) {
            book.slots.remove(&old);
            book.complete = false;
        }
    }
}

/// Refuses arguments larger than the driver's `limits.max_payload_bytes`.
fn check_payload(driver: &DriverInstance, args: &Value) -> Result<(), Violation> {
    let limit = driver.manifest.limits.max_payload_bytes;
    let bytes = axon_protocols::canonical::to_vec(args)
        .map_err(|e| Violation {
            which: "args",
            path: e.path.clone(),
            reason: e.to_string(),
        })?
        .len() as u64;
    if bytes > limit {
        return Err(Violation {
            which: "limits",
            path: String::new(),
            reason: format!(
                "the arguments take {bytes} bytes of canonical JSON, more than the driver's limits.max_payload_bytes of {limit}"
            ),
        });
    }
    Ok(())
}
