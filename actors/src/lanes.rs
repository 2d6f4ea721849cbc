//! Driver lanes: which lane each loaded driver build is in, and the one way a lane
//! changes. Every change is a `lane_change` journal entry, durable before it takes
//! effect; lanes are rebuilt from those entries at start, so nothing lives only in
//! memory or in sled. Lanes belong to a build, keyed by (driver name, artifact hash): a
//! changed manifest makes a new build, which starts in its manifest's initial lane,
//! recorded as the manifest's decision at its first load. At most one driver is `live`
//! per capability: promoting one to `live` moves the current live one to `shadow` in the
//! same entry. Each driver's breaker (see `axon_supervisors::trial`) follows its lane
//! changes, and is rebuilt from the same entries: a driver its checks took out of service
//! is due a half-open trial after a cool-down, one an operator moved is not.

use crate::journal::{Filter, JournalClient, Refusal};
use axon_drivers::descriptor::DriverDescriptor;
use axon_drivers::host::DriverHost;
use axon_drivers::manifest::Manifest;
use axon_protocols::journal::{Entry, EntryKind};
use axon_protocols::lane::{IllegalMove, Lane, LaneChange, Move};
use axon_supervisors::{
    Breaker, CallOptions, HealthWatch, Placement, Scorecard, ScorecardConfig, TrialEvent,
    TrialPolicy, WorkerRef,
};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// How the gates of a promotion run: a build moved from `testing` to `shadow` must first
/// pass its red-team suite (`axon_drivers::redteam`), each run journaled with its
/// figures and counted.
pub struct PromotionGates {
    /// The folder red-team suites make their scratch directories in.
    pub scratch: PathBuf,
    /// The shadow period a build needs before its trial, where a live driver exists.
    pub shadow: ShadowGate,
    /// The confidence at which a trial's realized uplift is found worse than the live
    /// driver's (a one-sided Mann-Whitney U test).
    pub confidence: f64,
    /// The pushes each side of that comparison needs before a trial may end.
    pub min_trial_calls: usize,
    /// The node's clock, for the scorecards.
    pub clock: axon_supervisors::SharedClock,
    /// `axon_promotion_gates_total{driver, gate, outcome}`.
    runs: prometheus::IntCounterVec,
}

/// What a shadow period must show before its build's trial.
#[derive(Clone, Copy, Debug)]
pub struct ShadowGate {
    /// Mirrored calls whose prediction was compared (agreed or disagreed: inconclusive
    /// predictions do not count).
    pub min_calls: u64,
    /// The least share of them that agreed (judged once any were compared: with
    /// `min_calls = 0` an operator has waived the shadow period).
    pub min_agreement: f64,
}

impl ShadowGate {
    /// Judges a shadow's mirrored calls against this gate and the build's objective
    /// (its predictions may fail no more often than its `max_error_rate`): the figures,
    /// and the failing check with why.
    pub fn judge(
        &self,
        a: &axon_supervisors::Agreement,
        slo: Option<&axon_supervisors::Slo>,
        p99_ms: Option<f64>,
    ) -> (serde_json::Value, Option<(&'static str, String)>) {
        let max_error_rate = slo.map_or(0.0, |s| s.max_error_rate);
        let max_p99_ms = slo.map(|s| s.p99_ms as f64);
        let compared = a.agreed + a.disagreed;
        let tried = compared + a.inconclusive + a.failed;
        let agreement = (compared > 0).then(|| a.agreed as f64 / compared as f64);
        let error_rate = (tried > 0).then(|| a.failed as f64 / tried as f64);
        let figures = serde_json::json!({
            "agreed": a.agreed,
            "disagreed": a.disagreed,
            "inconclusive": a.inconclusive,
            "failed": a.failed,
            "skipped": a.skipped,
            "agreement": agreement,
            "error_rate": error_rate,
            "min_calls": self.min_calls,
            "min_agreement": self.min_agreement,
            "max_error_rate": max_error_rate,
            "p99_ms": p99_ms,
            "max_p99_ms": max_p99_ms,
        });
        let failure = if compared < self.min_calls {
            Some((
                "min_calls",
                format!(
                    "{compared} of its mirrored predictions were compared with live outcomes; it needs {}",
                    self.min_calls
                ),
            ))
        } else if agreement.is_some_and(|a| a < self.min_agreement) {
            Some((
                "agreement",
                format!(
                    "{:.4} of its compared predictions agreed with the live outcomes, below {}",
                    agreement.unwrap_or(0.0),
                    self.min_agreement
                ),
            ))
        } else if error_rate.unwrap_or(0.0) > max_error_rate {
            Some((
                "error_rate",
                format!(
                    "{:.4} of its mirrored predictions failed, above its objective's {max_error_rate}",
                    error_rate.unwrap_or(0.0)
                ),
            ))
        } else if let Some((p99, max)) = p99_ms.zip(max_p99_ms).filter(|(p, m)| p > m) {
            Some((
                "latency",
                format!("its mirrored predictions took {p99} ms at the 99th percentile, above its objective's {max} ms"),
            ))
        } else {
            None
        };
        (figures, failure)
    }
}

impl PromotionGates {
    pub fn new(
        scratch: PathBuf,
        shadow: ShadowGate,
        confidence: f64,
        min_trial_calls: usize,
        clock: axon_supervisors::SharedClock,
        registry: &prometheus::Registry,
    ) -> prometheus::Result<Self> {
        let runs = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "axon_promotion_gates_total",
                "Promotion gate runs, by driver, gate and outcome (passed or failed)",
            ),
            &["driver", "gate", "outcome"],
        )?;
        registry.register(Box::new(runs.clone()))?;
        Ok(Self {
            scratch,
            shadow,
            confidence,
            min_trial_calls,
            clock,
            runs,
        })
    }
}

/// The longest a value is quoted in an error's text; the journal holds it whole.
const MAX_QUOTED_BYTES: usize = 512;

fn quoted(v: &serde_json::Value) -> String {
    let text = v.to_string();
    if text.len() <= MAX_QUOTED_BYTES {
        return text;
    }
    let mut end = MAX_QUOTED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// One loaded driver: its manifest, its description and its supervised workers, as many
/// as its `limits.concurrency` (each a driver instance on a thread of its own, so that
/// many calls run at once).
pub struct DriverInstance {
    pub manifest: Arc<Manifest>,
    pub descriptor: DriverDescriptor,
    /// The first is named like the driver; the others `<name>#2`, `<name>#3`, ...
    pub workers: Vec<WorkerRef<DriverHost>>,
    /// Its `limits.rate_per_second`.
    pub rate: RateLimit,
    /// Where the next call starts looking for room.
    next: std::sync::atomic::AtomicUsize,
    /// The manifest as the journal records it (its canonical JSON, parsed once): on the
    /// build's first lane change, or in each capsule while the journal does not hold it.
    pub recorded_manifest: Option<Arc<serde_json::Value>>,
    /// True once the journal holds this build's manifest (on its first lane change): its
    /// capsules then name it by artifact hash and do not carry it.
    manifest_journaled: std::sync::atomic::AtomicBool,
    /// How its pushes have gone: every push the act pipeline makes records its sample.
    pub scorecard: Scorecard,
    /// The checks against its service-level objective, fed the pushes it makes while
    /// live; started over each time it goes live.
    pub health: Option<std::sync::Mutex<HealthWatch>>,
    /// Mirrored calls it is predicting now, as a shadow (bounded by the pipeline).
    pub shadow_in_flight: std::sync::atomic::AtomicUsize,
    /// What of its mirrored calls goes to the journal: the current tumbling window's
    /// counts (journaled as a summary when the next window starts) and how many of its
    /// disagreements were journaled in full.
    pub shadow_log: std::sync::Mutex<ShadowLog>,
    /// Its breaker, and a count of its changes (a trial timer set for one state acts
    /// only while that state stands).
    breaker: std::sync::Mutex<(Breaker, u64)>,
    /// Set while the end of its trial is being recorded, so that it is recorded once.
    pub concluding: std::sync::atomic::AtomicBool,
    /// The utilities its latest pushes realized (at most [`MAX_UTILITIES`]), emptied
    /// when a trial of its capability starts: a trial's uplift is compared with the live
    /// driver's over the same span.
    utilities: std::sync::Mutex<std::collections::VecDeque<(std::time::Duration, f64)>>,
    /// How long its mirrored predictions took, in microseconds, since it was loaded.
    predictions: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
}

/// The most realized utilities a driver keeps for the uplift comparison of a trial.
pub const MAX_UTILITIES: usize = 1024;

/// A shadow's mirrored calls in one tumbling window of the journal's summaries.
#[derive(Default)]
pub struct ShadowLog {
    /// Which window (the node's clock over the scorecard window's length).
    pub window: u64,
    /// Whether any call has opened a window yet.
    pub started: bool,
    pub counts: axon_supervisors::Agreement,
    /// Disagreements journaled in full in this window.
    pub in_full: u32,
    /// Whether this window's summary was taken for the journal.
    pub summarised: bool,
}

impl ShadowLog {
    /// This window's counts for its summary, once: none when it was already taken or
    /// holds nothing.
    pub fn take_summary(&mut self) -> Option<(u64, axon_supervisors::Agreement)> {
        if self.summarised || !self.started || self.counts == Default::default() {
            return None;
        }
        self.summarised = true;
        Some((self.window, self.counts))
    }
}

impl DriverInstance {
    pub fn new(
        manifest: Arc<Manifest>,
        workers: Vec<WorkerRef<DriverHost>>,
        scorecard: ScorecardConfig,
    ) -> Self {
        assert!(!workers.is_empty(), "a driver has at least one worker");
        let health = manifest
            .slo
            .clone()
            .map(|slo| std::sync::Mutex::new(HealthWatch::new(slo)));
        Self {
            descriptor: manifest.descriptor(),
            rate: RateLimit::per_second(manifest.limits.rate_per_second),
            recorded_manifest: serde_json::from_slice(manifest.canonical())
                .ok()
                .map(Arc::new),
            manifest_journaled: std::sync::atomic::AtomicBool::new(false),
            manifest,
            workers,
            next: std::sync::atomic::AtomicUsize::new(0),
            scorecard: Scorecard::new(scorecard),
            health,
            shadow_in_flight: Default::default(),
            shadow_log: Default::default(),
            breaker: Default::default(),
            concluding: Default::default(),
            utilities: Default::default(),
            predictions: std::sync::Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 2)
                    .expect("valid histogram bounds"),
            ),
        }
    }

    /// Records how long one of its mirrored predictions took.
    pub fn record_prediction(&self, took: std::time::Duration) {
        let us = (took.as_micros() as u64).clamp(1, 3_600_000_000);
        let mut h = self.predictions.lock().unwrap_or_else(|e| e.into_inner());
        h.saturating_record(us);
    }

    /// The 99th percentile of its mirrored predictions' times, in milliseconds (none
    /// before the first).
    pub fn prediction_p99_ms(&self) -> Option<f64> {
        let h = self.predictions.lock().unwrap_or_else(|e| e.into_inner());
        (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64 / 1000.0)
    }

    /// The confidence its trial's uplift is tested at: its manifest's, else `node`'s.
    pub fn promotion_confidence(&self, node: f64) -> f64 {
        self.manifest.promotion.confidence.unwrap_or(node)
    }

    /// Keeps the utility one of its pushes realized at `now` (the node's clock).
    pub fn record_utility(&self, now: std::time::Duration, realized: f64) {
        let mut u = self.utilities.lock().unwrap_or_else(|e| e.into_inner());
        if u.len() == MAX_UTILITIES {
            u.pop_front();
        }
        u.push_back((now, realized));
    }

    /// The finite utilities kept since its capability's trial started (the latest
    /// [`MAX_UTILITIES`]) realized at `since` or later.
    pub fn utilities_since(&self, since: std::time::Duration) -> Vec<f64> {
        let u = self.utilities.lock().unwrap_or_else(|e| e.into_inner());
        u.iter()
            .filter(|(t, v)| *t >= since && v.is_finite())
            .map(|(_, v)| *v)
            .collect()
    }

    /// When the oldest utility it keeps was realized.
    pub fn oldest_utility(&self) -> Option<std::time::Duration> {
        let u = self.utilities.lock().unwrap_or_else(|e| e.into_inner());
        u.front().map(|(t, _)| *t)
    }

    fn forget_utilities(&self) {
        self.utilities
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Whether its twin can be judged against live outcomes while it is a shadow: an
    /// http driver without a `dry_run` request predicts nothing.
    pub fn can_shadow(&self) -> bool {
        self.manifest
            .http_settings
            .as_ref()
            .is_none_or(|h| h.dry_run.is_some())
    }

    /// Its breaker, and the count of its changes.
    pub fn breaker(&self) -> (Breaker, u64) {
        *self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_breaker(&self, b: Breaker) {
        let mut g = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 != b {
            *g = (b, g.1 + 1);
        }
    }

    /// The health checks, if it has an objective.
    pub fn health(&self) -> Option<std::sync::MutexGuard<'_, HealthWatch>> {
        self.health
            .as_ref()
            .map(|h| h.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn name(&self) -> &str {
        &self.descriptor.name
    }

    /// The manifest a capsule of this build carries: none once the journal holds it (the
    /// capsule's artifact hash then names it), the whole manifest before.
    pub fn capsule_manifest(&self) -> Option<Arc<serde_json::Value>> {
        if self
            .manifest_journaled
            .load(std::sync::atomic::Ordering::Acquire)
        {
            None
        } else {
            self.recorded_manifest.clone()
        }
    }

    /// Notes that the journal holds this build's manifest.
    fn manifest_is_journaled(&self) {
        self.manifest_journaled
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The worker ids of a driver named `name` with `concurrency` workers.
    pub fn worker_ids(name: &str, concurrency: u32) -> Vec<String> {
        (1..=concurrency.max(1))
            .map(|k| {
                if k == 1 {
                    name.to_owned()
                } else {
                    format!("{name}#{k}")
                }
            })
            .collect()
    }

    /// `n` places in the mailbox of one of its workers, tried in turn from where the
    /// last call started: the first with room serves. Every worker full is
    /// `Overloaded`; none running, `Unavailable`.
    pub fn reserve(
        &self,
        n: u64,
    ) -> Result<axon_supervisors::Permit<DriverHost>, axon_supervisors::CallError> {
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut last = None;
        for k in 0..self.workers.len() {
            let w = &self.workers[(start + k) % self.workers.len()];
            match w.reserve(n) {
                Ok(p) => return Ok(p),
                // Overloaded wins over unavailable: the caller should come back later.
                Err(e @ axon_supervisors::CallError::Overloaded { .. }) => last = Some(e),
                Err(e) => {
                    if last.is_none() {
                        last = Some(e)
                    }
                }
            }
        }
        Err(last.expect("a driver has at least one worker"))
    }
}

/// A token bucket: at most `rate` calls in any second, on the node's clock, with bursts
/// of up to `rate`.
pub struct RateLimit {
    rate: f64,
    /// Tokens left, and when they were counted.
    state: std::sync::Mutex<(f64, Option<std::time::Duration>)>,
}

impl RateLimit {
    pub fn per_second(rate: u32) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            state: std::sync::Mutex::new((f64::from(rate.max(1)), None)),
        }
    }

    /// Takes one call's token at `now` (the node's clock); false when none is left.
    pub fn take(&self, now: std::time::Duration) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = *st;
        let refill = at.map_or(0.0, |at| now.saturating_sub(at).as_secs_f64() * self.rate);
        let tokens = (tokens + refill).min(self.rate);
        if tokens >= 1.0 {
            *st = (tokens - 1.0, Some(now));
            true
        } else {
            *st = (tokens, Some(now));
            false
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

/// Who moves a lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mover {
    /// An operator, through the admin API.
    Admin,
    /// A build's manifest, at the build's first load.
    Manifest,
    /// An automatic rule of the supervisor.
    Supervisor,
}

impl Mover {
    pub fn as_str(self) -> &'static str {
        match self {
            Mover::Admin => "admin",
            Mover::Manifest => "manifest",
            Mover::Supervisor => "supervisor",
        }
    }
}

/// Why a lane changes: the reason, and for an automatic move the rule that fired and
/// the figures it saw.
#[derive(Clone, Debug, Default)]
pub struct Why {
    pub reason: String,
    pub rule: Option<String>,
    pub evidence: Option<serde_json::Value>,
}

impl Why {
    pub fn because(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            ..Self::default()
        }
    }

    /// A move the node makes by `rule`, for `reason`.
    fn by_rule(reason: impl Into<String>, rule: &str) -> Self {
        Self {
            reason: reason.into(),
            rule: Some(rule.into()),
            evidence: None,
        }
    }

    /// A build's first lane, its manifest's, at its first load.
    fn first_load(d: &DriverInstance) -> Self {
        Self::because(format!(
            "first load of build {} of {}: the manifest's initial lane",
            d.descriptor.artifact_hash, d.descriptor.name
        ))
    }

    /// A live build without the objective a live driver needs, moved to shadow.
    fn slo_required() -> Self {
        Self::by_rule(
            "a live driver needs a service-level objective ([slo] in its manifest), and this build has none",
            "slo_required",
        )
    }
}

/// Why a lane did not change.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("no driver named {0:?} is loaded")]
    UnknownDriver(String),
    #[error(transparent)]
    Illegal(#[from] IllegalMove),
    #[error("a lane change needs a reason: 1 to {MAX_REASON_BYTES} bytes")]
    Reason,
    #[error("driver {0:?} has no service-level objective ([slo] in its manifest), which a live driver or a trial needs")]
    NoSlo(String),
    #[error(
        "driver {other:?} is already on trial for {capability}: one trial per capability at a time"
    )]
    TrialBusy { capability: String, other: String },
    #[error("driver {driver:?} failed its {gate} gate: check {check} on {}: {reason}", quoted(.value))]
    GateFailed {
        driver: String,
        gate: &'static str,
        check: &'static str,
        value: serde_json::Value,
        reason: String,
    },
    #[error("driver {0:?} is on trial: it goes live by passing it (its checks, and its uplift against the live driver), not by an operator's move; an operator can demote it")]
    TrialConcludes(String),
    #[error("driver {driver:?} is in {from}, not on trial: a move to live by its supervisor comes only at the end of a trial")]
    NotOnTrial { driver: String, from: Lane },
    #[error("the lane change was not journaled, so it did not happen: {0}")]
    Journal(Refusal),
    #[error("a driver named {0:?} is already loaded")]
    AlreadyLoaded(String),
}

impl LaneError {
    /// As a journal refusal, for start-up, where a lane move the node makes itself can
    /// fail only to be journaled.
    fn into_refusal(self) -> Refusal {
        match self {
            LaneError::Journal(r) => r,
            other => Refusal::Internal(other.to_string()),
        }
    }
}

/// The rule of a supervisor's move of a driver onto its trial.
pub const TRIAL_START: &str = "trial.start";
/// The rule of a supervisor's move of a driver that passed its trial back to live.
pub const TRIAL_PASSED: &str = "trial.passed";
/// The rule of an operator's promotion to `live`, which puts the build on trial first.
pub const PROMOTION_TRIAL: &str = "promotion.trial";
/// The rule of a supervisor's move of a driver whose trial delivered less than the live
/// driver, by the rank test.
pub const TRIAL_UPLIFT: &str = "trial.uplift";

/// Whether `rule` is one by which a driver's supervisor takes it out of service for
/// failing: a check against its objective, or its restart intensity.
pub fn is_failure_rule(rule: &str) -> bool {
    rule.starts_with("slo.") || rule == "restart_intensity"
}

/// The longest reason a lane change takes.
pub const MAX_REASON_BYTES: usize = 1024;

#[derive(Default)]
struct State {
    /// Each loaded driver's lane.
    lanes: HashMap<String, Lane>,
    /// The live driver of each capability.
    live: HashMap<String, Arc<DriverInstance>>,
    /// The driver on trial for each capability.
    trial: HashMap<String, Arc<DriverInstance>>,
    /// The drivers in shadow of each capability, in name order.
    shadows: HashMap<String, Vec<Arc<DriverInstance>>>,
}

/// The lanes of the loaded drivers.
pub struct Lanes {
    /// The loaded drivers by name: those of the manifests read at start, then those
    /// added while the node runs ([`add`](Self::add)).
    drivers: RwLock<BTreeMap<String, Arc<DriverInstance>>>,
    state: RwLock<State>,
    /// One change at a time, from its check to its journal entry to its effect.
    changing: tokio::sync::Mutex<()>,
    /// How drivers taken out of service by their checks are given trials.
    trials: TrialPolicy,
    /// How promotions are gated.
    promotion: PromotionGates,
    /// Held for reading while a dispatch is journaled, for writing while a lane change
    /// is: the lane a dispatch was checked against is the lane at its place in the log.
    gate: tokio::sync::RwLock<()>,
}

impl Lanes {
    /// The lanes of `drivers`, none known yet: [`rebuild`](Self::rebuild) reads them.
    pub fn new(
        drivers: Vec<Arc<DriverInstance>>,
        trials: TrialPolicy,
        promotion: PromotionGates,
    ) -> Self {
        Self {
            drivers: RwLock::new(
                drivers
                    .into_iter()
                    .map(|d| (d.name().to_owned(), d))
                    .collect(),
            ),
            state: RwLock::default(),
            changing: tokio::sync::Mutex::new(()),
            trials,
            promotion,
            gate: tokio::sync::RwLock::new(()),
        }
    }

    /// Holds lane changes off while a dispatch is journaled: check the lane the action
    /// was routed by, append, then drop the guard.
    pub async fn hold_for_dispatch(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// How trials are given.
    pub fn trials(&self) -> &TrialPolicy {
        &self.trials
    }

    /// The driver on trial for `capability`.
    pub fn trial(&self, capability: &str) -> Option<Arc<DriverInstance>> {
        self.read().trial.get(capability).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The loaded drivers, by name.
    pub fn drivers(&self) -> Vec<Arc<DriverInstance>> {
        self.loaded().values().cloned().collect()
    }

    pub fn driver(&self, name: &str) -> Option<Arc<DriverInstance>> {
        self.loaded().get(name).cloned()
    }

    /// The manifest of build `artifact_hash`: a loaded build's own, else the one the
    /// build's first lane change journaled; `None` when neither has it (a build whose
    /// capsules carry their manifest, or a built-in driver's).
    pub async fn manifest_of_build(
        &self,
        artifact_hash: &str,
        journal: &JournalClient,
        page: usize,
        opts: &CallOptions,
    ) -> Result<Option<Arc<serde_json::Value>>, Refusal> {
        let loaded = self
            .loaded()
            .values()
            .find(|d| d.descriptor.artifact_hash == artifact_hash)
            .and_then(|d| d.recorded_manifest.clone());
        if loaded.is_some() {
            return Ok(loaded);
        }
        let mut found = None;
        scan_lane_changes(journal, page, opts, |_, change| {
            if found.is_none() {
                found = change.manifest_of(artifact_hash).cloned();
            }
            Ok(())
        })
        .await?;
        Ok(found)
    }

    fn loaded(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<DriverInstance>>> {
        self.drivers.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A loaded driver that is known to be there (its name came from the map).
    fn known(&self, name: &str) -> Arc<DriverInstance> {
        self.driver(name)
            .expect("a driver once loaded stays loaded")
    }

    /// The lane of driver `name`.
    pub fn lane(&self, name: &str) -> Option<Lane> {
        self.read().lanes.get(name).copied()
    }

    /// The live driver of `capability`.
    pub fn live(&self, capability: &str) -> Option<Arc<DriverInstance>> {
        self.read().live.get(capability).cloned()
    }

    /// The drivers of `capability` in lane `shadow`, in name order.
    pub fn shadows(&self, capability: &str) -> Vec<Arc<DriverInstance>> {
        self.read()
            .shadows
            .get(capability)
            .cloned()
            .unwrap_or_default()
    }

    /// Sets the lanes from the journal's `lane_change` entries (those of the loaded
    /// builds), then records the first lane of each build that has none yet.
    pub async fn rebuild(
        &self,
        journal: &JournalClient,
        page: usize,
        opts: &CallOptions,
    ) -> Result<(), Refusal> {
        let _one = self.changing.lock().await;
        let (found, breakers) = self.journaled(None, journal, page, opts).await?;
        // At most one live driver per capability, even when the entries of a build loaded
        // again (an old manifest back in place) say otherwise: the newest move to live
        // wins; the others are moved to shadow below, journaled.
        let mut live_newest: HashMap<String, (u64, String)> = HashMap::new();
        for (name, (lane, index)) in &found {
            if *lane == Lane::Live {
                let cap = self.known(name).descriptor.capability.clone();
                let e = live_newest.entry(cap).or_insert((*index, name.clone()));
                if *index > e.0 {
                    *e = (*index, name.clone());
                }
            }
        }
        let extra_live: Vec<String> = found
            .iter()
            .filter(|(name, (lane, _))| {
                *lane == Lane::Live
                    && live_newest[&self.known(name).descriptor.capability].1 != **name
            })
            .map(|(name, _)| name.clone())
            .collect();
        // A build made live before objectives were required has none: it could not be
        // watched, so it is moved to shadow, journaled, until one is given.
        let unwatched: Vec<String> = found
            .iter()
            .filter(|(name, (lane, _))| {
                *lane == Lane::Live
                    && !extra_live.contains(name)
                    && self.known(name).descriptor.slo.is_none()
            })
            .map(|(name, _)| name.clone())
            .collect();
        let extra_live: Vec<String> = extra_live.into_iter().chain(unwatched).collect();
        for (name, b) in breakers {
            self.known(&name).set_breaker(b);
        }
        {
            let mut st = self.write();
            for (name, (lane, _)) in &found {
                if !extra_live.contains(name) {
                    set(&mut st, &self.known(name), *lane);
                }
            }
        }
        for name in &extra_live {
            let d = &self.known(name);
            let why = if d.descriptor.slo.is_none() {
                Why::slo_required()
            } else {
                Why::by_rule(
                    format!(
                        "another driver of {} is live: one live driver per capability",
                        d.descriptor.capability
                    ),
                    "one_live_per_capability",
                )
            };
            self.record(
                d,
                Some(Lane::Live),
                Lane::Shadow,
                Mover::Supervisor,
                why,
                journal,
                opts,
            )
            .await
            .map_err(LaneError::into_refusal)?;
        }
        for d in self.drivers() {
            if !found.contains_key(d.name()) {
                let to = d.manifest.initial_lane;
                let why = Why::first_load(&d);
                self.record(&d, None, to, Mover::Manifest, why, journal, opts)
                    .await
                    .map_err(LaneError::into_refusal)?;
            }
        }
        Ok(())
    }

    /// Each loaded build's newest journaled lane (only `only`'s, where given), with the
    /// index of the entry that set it; and its breaker, followed through all of them.
    async fn journaled(
        &self,
        only: Option<&str>,
        journal: &JournalClient,
        page: usize,
        opts: &CallOptions,
    ) -> Result<(HashMap<String, (Lane, u64)>, HashMap<String, Breaker>), Refusal> {
        let mut found: HashMap<String, (Lane, u64)> = HashMap::new();
        let mut breakers: HashMap<String, Breaker> = HashMap::new();
        scan_lane_changes(journal, page, opts, |stored, change| {
            if let Some(d) = self.driver(&change.driver) {
                if change.manifest_of(&d.descriptor.artifact_hash).is_some() {
                    d.manifest_is_journaled();
                }
            }
            for (k, m) in change.moves().enumerate() {
                if only.is_none_or(|o| o == m.driver) && self.is_loaded_build(&m) {
                    let b = breakers.entry(m.driver.clone()).or_default();
                    *b = self.breaker_after(*b, &change, &m, k == 0);
                    found.insert(m.driver, (m.to, stored.index));
                }
            }
            Ok(())
        })
        .await?;
        Ok((found, breakers))
    }

    /// Adds driver `d`, loaded while the node runs, and places it: in its build's newest
    /// journaled lane where it has one (the build was loaded before), else in its
    /// manifest's initial lane, recorded as its first load, as at start. A journaled
    /// `live` or `trial` lane that another driver of its capability holds now, or a live
    /// one without an objective, is moved to `shadow`, journaled. Answers its lane.
    ///
    /// The driver is loaded even when its lane cannot be journaled (the error says so):
    /// it is then in no lane, routed nowhere, and the next start records its first lane.
    pub async fn add(
        &self,
        d: Arc<DriverInstance>,
        journal: &JournalClient,
        page: usize,
        opts: &CallOptions,
    ) -> Result<Lane, LaneError> {
        let _one = self.changing.lock().await;
        {
            let mut all = self.drivers.write().unwrap_or_else(|e| e.into_inner());
            if all.contains_key(d.name()) {
                return Err(LaneError::AlreadyLoaded(d.name().to_owned()));
            }
            all.insert(d.name().to_owned(), d.clone());
        }
        let (found, breakers) = self
            .journaled(Some(d.name()), journal, page, opts)
            .await
            .map_err(LaneError::Journal)?;
        if let Some(b) = breakers.get(d.name()) {
            d.set_breaker(*b);
        }
        let capability = &d.descriptor.capability;
        let Some(&(lane, _)) = found.get(d.name()) else {
            let to = d.manifest.initial_lane;
            self.record(
                &d,
                None,
                to,
                Mover::Manifest,
                Why::first_load(&d),
                journal,
                opts,
            )
            .await?;
            return Ok(to);
        };
        let taken = match lane {
            Lane::Live if d.descriptor.slo.is_none() => Some(Why::slo_required()),
            Lane::Live => self.live(capability).map(|other| {
                Why::by_rule(
                    format!(
                        "driver {} of {capability} is live: one live driver per capability",
                        other.name()
                    ),
                    "one_live_per_capability",
                )
            }),
            Lane::Trial => self.trial(capability).map(|other| {
                Why::by_rule(
                    format!(
                        "driver {} of {capability} is on trial: one trial per capability",
                        other.name()
                    ),
                    "one_trial_per_capability",
                )
            }),
            _ => None,
        };
        match taken {
            None => {
                set(&mut self.write(), &d, lane);
                Ok(lane)
            }
            Some(why) => {
                self.record(
                    &d,
                    Some(lane),
                    Lane::Shadow,
                    Mover::Supervisor,
                    why,
                    journal,
                    opts,
                )
                .await?;
                Ok(Lane::Shadow)
            }
        }
    }

    /// A driver's breaker after move `m` of `change` (`main`: the move asked for, not one
    /// it displaced). Its checks (or its restart intensity) taking it out of service trip
    /// it; an operator's move, or the node's own at start, places it; a move into live
    /// closes it and one into retired retires it, whatever came before.
    fn breaker_after(&self, b: Breaker, change: &LaneChange, m: &Move, main: bool) -> Breaker {
        let placed = |to: Lane| {
            TrialEvent::Operator(match to {
                Lane::Live => Placement::InService,
                Lane::Trial => Placement::OnTrial,
                _ => Placement::OutOfService,
            })
        };
        let event = match (main, change.who.as_str(), change.rule.as_deref()) {
            // A build's first lane: nothing has happened to it yet.
            (true, "manifest", _) => return b,
            (true, "supervisor", Some(TRIAL_START)) => TrialEvent::TrialStarted,
            (true, "supervisor", Some(TRIAL_PASSED)) => TrialEvent::TrialPassed,
            (true, "supervisor", Some(rule))
                if is_failure_rule(rule) && matches!(m.from, Some(Lane::Live | Lane::Trial)) =>
            {
                TrialEvent::Tripped
            }
            _ => placed(m.to),
        };
        match (m.to, self.trials.next(b, event)) {
            (Lane::Live, _) => Breaker::Closed,
            (Lane::Retired, _) => Breaker::Retired,
            (_, next) => next,
        }
    }

    fn is_loaded_build(&self, m: &Move) -> bool {
        self.loaded()
            .get(&m.driver)
            .is_some_and(|d| d.descriptor.artifact_hash == m.artifact_hash)
    }

    /// Moves driver `name` to `to`, for `why`, if the move is legal; journaled before it
    /// takes effect. Answers the entry's body.
    pub async fn change(
        &self,
        name: &str,
        to: Lane,
        who: Mover,
        why: Why,
        journal: &JournalClient,
        opts: &CallOptions,
    ) -> Result<LaneChange, LaneError> {
        let d = &self
            .driver(name)
            .ok_or_else(|| LaneError::UnknownDriver(name.to_owned()))?;
        if why.reason.trim().is_empty() || why.reason.len() > MAX_REASON_BYTES {
            return Err(LaneError::Reason);
        }
        let _one = self.changing.lock().await;
        let from = self.lane(name).unwrap_or(Lane::Testing);
        from.check_move(to)?;
        // An operator's build goes into live only through a trial, and onto a trial
        // only through the shadow gate; it comes off its trial live only by passing it.
        let promoted =
            who == Mover::Admin && from == Lane::Shadow && matches!(to, Lane::Live | Lane::Trial);
        let requested = to;
        let to = if promoted { Lane::Trial } else { to };
        if (from, to) == (Lane::Trial, Lane::Live) && who == Mover::Admin {
            return Err(LaneError::TrialConcludes(name.to_owned()));
        }
        if to == Lane::Live && who == Mover::Supervisor && from != Lane::Trial {
            // A conclusion that found the trial ended meanwhile (demoted, taken out).
            return Err(LaneError::NotOnTrial {
                driver: name.to_owned(),
                from,
            });
        }
        if matches!(to, Lane::Live | Lane::Trial) && d.descriptor.slo.is_none() {
            return Err(LaneError::NoSlo(name.to_owned()));
        }
        if to == Lane::Trial {
            if let Some(other) = self.trial(&d.descriptor.capability) {
                return Err(LaneError::TrialBusy {
                    capability: d.descriptor.capability.clone(),
                    other: other.name().to_owned(),
                });
            }
        }
        if (from, to) == (Lane::Testing, Lane::Shadow) {
            self.redteam(d, journal, opts).await?;
        }
        let mut why = why;
        if promoted {
            // Where a live driver exists, only after a shadow period that shows its twin
            // agrees with it (unless it has no twin to judge).
            let live = self
                .live(&d.descriptor.capability)
                .filter(|l| l.name() != name);
            let shadow = match &live {
                Some(_) if d.can_shadow() => self.shadow_gate(d, journal, opts).await?,
                Some(_) => serde_json::json!(
                    "cannot be shadowed (an http driver without dry_run): straight to its trial"
                ),
                None => serde_json::json!("no live driver to compare with"),
            };
            why.rule = Some(PROMOTION_TRIAL.into());
            why.evidence = Some(serde_json::json!({
                "asked": requested,
                "live": live.as_ref().map(|l| l.name()),
                "shadow": shadow,
            }));
        }
        self.record(d, Some(from), to, who, why, journal, opts)
            .await
    }

    /// Judges `d`'s shadow period (its scorecard's mirrored calls) against the shadow
    /// gate, journals the run with its figures, and answers the figures, or the failure
    /// that blocks the promotion. The caller holds `changing`.
    async fn shadow_gate(
        &self,
        d: &Arc<DriverInstance>,
        journal: &JournalClient,
        opts: &CallOptions,
    ) -> Result<serde_json::Value, LaneError> {
        const GATE: &str = "shadow";
        let agreement = d.scorecard.report(self.promotion.clock.now()).total.shadow;
        let own = d.manifest.promotion;
        let gate = ShadowGate {
            min_calls: own
                .min_shadow_calls
                .unwrap_or(self.promotion.shadow.min_calls),
            min_agreement: own
                .min_agreement
                .unwrap_or(self.promotion.shadow.min_agreement),
        };
        let (figures, failure) =
            gate.judge(&agreement, d.descriptor.slo.as_ref(), d.prediction_p99_ms());
        let body = serde_json::json!({
            "gate_run": {
                "gate": GATE,
                "into": Lane::Trial,
                "driver": d.name(),
                "artifact_hash": d.descriptor.artifact_hash,
                "passed": failure.is_none(),
                "figures": figures,
                "failure": failure.as_ref().map(|(check, reason)| serde_json::json!({"check": check, "reason": reason})),
            }
        });
        self.gate_run(d, GATE, failure.is_none(), body, journal, opts)
            .await?;
        match failure {
            None => Ok(figures),
            Some((check, reason)) => Err(LaneError::GateFailed {
                driver: d.name().to_owned(),
                gate: GATE,
                check,
                value: figures,
                reason,
            }),
        }
    }

    /// Journals one gate run and counts it.
    pub(crate) async fn gate_run(
        &self,
        d: &Arc<DriverInstance>,
        gate: &'static str,
        passed: bool,
        body: serde_json::Value,
        journal: &JournalClient,
        opts: &CallOptions,
    ) -> Result<(), LaneError> {
        journal
            .append(
                crate::journal::NewEntry::new(EntryKind::Event, vec![], &body),
                opts,
            )
            .await
            .map_err(LaneError::Journal)?;
        self.count_gate(d.name(), gate, passed);
        Ok(())
    }

    /// How promotions are gated.
    pub fn promotion(&self) -> &PromotionGates {
        &self.promotion
    }

    /// Counts one run of `gate` for driver `driver`.
    pub fn count_gate(&self, driver: &str, gate: &str, passed: bool) {
        let outcome = if passed { "passed" } else { "failed" };
        self.promotion
            .runs
            .with_label_values(&[driver, gate, outcome])
            .inc();
    }

    /// Runs `d`'s red-team suite against its stand-ins (off the async threads: it makes
    /// real requests and writes), journals the run with its figures, and answers the
    /// failure that blocks the promotion, if any. The caller holds `changing`.
    async fn redteam(
        &self,
        d: &Arc<DriverInstance>,
        journal: &JournalClient,
        opts: &CallOptions,
    ) -> Result<(), LaneError> {
        const GATE: &str = "redteam";
        let (manifest, scratch) = (d.manifest.clone(), self.promotion.scratch.clone());
        let report =
            tokio::task::spawn_blocking(move || axon_drivers::redteam::run(&manifest, &scratch))
                .await
                .unwrap_or_else(|e| {
                    axon_drivers::redteam::Report::failed_to_run(format!(
                        "the red-team suite did not finish: {e}"
                    ))
                });
        let passed = report.passed;
        let body = serde_json::json!({
            "gate_run": {
                "gate": GATE,
                "into": Lane::Shadow,
                "driver": d.name(),
                "artifact_hash": d.descriptor.artifact_hash,
                "passed": report.passed,
                "report": report,
            }
        });
        self.gate_run(d, GATE, passed, body, journal, opts).await?;
        match report.failure {
            None => Ok(()),
            Some(f) => Err(LaneError::GateFailed {
                driver: d.name().to_owned(),
                gate: GATE,
                check: f.check,
                value: f.value,
                reason: f.reason,
            }),
        }
    }

    /// Journals one move (and the live driver it displaces), then applies it. The caller
    /// holds `changing`.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        d: &Arc<DriverInstance>,
        from: Option<Lane>,
        to: Lane,
        who: Mover,
        why: Why,
        journal: &JournalClient,
        opts: &CallOptions,
    ) -> Result<LaneChange, LaneError> {
        let capability = d.descriptor.capability.clone();
        let displaced: Vec<Move> = match (to, self.live(&capability)) {
            (Lane::Live, Some(other)) if other.name() != d.name() => vec![Move {
                driver: other.name().to_owned(),
                artifact_hash: other.descriptor.artifact_hash.clone(),
                from: Some(Lane::Live),
                to: Lane::Shadow,
            }],
            _ => vec![],
        };
        let change = LaneChange {
            driver: d.name().to_owned(),
            artifact_hash: d.descriptor.artifact_hash.clone(),
            from,
            to,
            capability,
            who: who.as_str().to_owned(),
            reason: why.reason,
            rule: why.rule,
            evidence: why.evidence,
            displaced,
            // A build's first lane change holds its manifest, once for all its calls.
            manifest: match (from, who) {
                (None, Mover::Manifest) => d.recorded_manifest.clone(),
                _ => None,
            },
        };
        let body = serde_json::to_value(&change).expect("a lane change is plain data");
        // No dispatch is journaled between this entry and its taking effect.
        let _gate = self.gate.write().await;
        journal
            .append(
                crate::journal::NewEntry::new(EntryKind::LaneChange, vec![], &body),
                opts,
            )
            .await
            .map_err(LaneError::Journal)?;
        if change.manifest.is_some() {
            d.manifest_is_journaled();
        }
        let mut st = self.write();
        for (k, m) in change.moves().enumerate() {
            if let Some(d) = self.driver(&m.driver) {
                set(&mut st, &d, m.to);
                d.set_breaker(self.breaker_after(d.breaker().0, &change, &m, k == 0));
            }
        }
        tracing::info!(driver = %change.driver, from = ?change.from, to = %change.to, who = %change.who, "lane changed");
        Ok(change)
    }
}

/// Puts driver `d` in `lane`, keeping the live-driver map in step.
fn set(st: &mut State, d: &Arc<DriverInstance>, lane: Lane) {
    let capability = &d.descriptor.capability;
    st.lanes.insert(d.name().to_owned(), lane);
    let is_live_one = st
        .live
        .get(capability)
        .is_some_and(|l| l.name() == d.name());
    let is_trial_one = st
        .trial
        .get(capability)
        .is_some_and(|l| l.name() == d.name());
    if matches!(lane, Lane::Live | Lane::Trial) {
        // Judged afresh from here: what it did before says nothing now.
        if let Some(mut h) = d.health() {
            h.reset();
        }
        d.concluding
            .store(false, std::sync::atomic::Ordering::Release);
    }
    if lane == Lane::Live {
        st.live.insert(capability.clone(), d.clone());
    } else if is_live_one {
        st.live.remove(capability);
    }
    if lane == Lane::Trial {
        // Its uplift is compared with the live driver's over the trial alone.
        d.forget_utilities();
        if let Some(live) = st.live.get(capability) {
            live.forget_utilities();
        }
        st.trial.insert(capability.clone(), d.clone());
    } else if is_trial_one {
        st.trial.remove(capability);
    }
    let shadows = st.shadows.entry(capability.clone()).or_default();
    shadows.retain(|s| s.name() != d.name());
    if lane == Lane::Shadow {
        let at = shadows.partition_point(|s| s.name() < d.name());
        shadows.insert(at, d.clone());
    }
    if shadows.is_empty() {
        st.shadows.remove(capability);
    }
}

/// Calls `f` with each `lane_change` entry of the journal, in log order.
async fn scan_lane_changes(
    journal: &JournalClient,
    page: usize,
    opts: &CallOptions,
    mut f: impl FnMut(&crate::journal::Appended, LaneChange) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    scan(
        journal,
        EntryKind::LaneChange,
        page,
        opts,
        |stored, body| {
            let change: LaneChange = serde_json::from_value(body).map_err(|e| {
                Refusal::Internal(format!("entry {} is not a lane change: {e}", stored.index))
            })?;
            f(stored, change)
        },
    )
    .await
}

/// Calls `f` with every entry of `kind` and its body, in log order, reading `page`
/// entries at a time.
pub(crate) async fn scan(
    journal: &JournalClient,
    kind: EntryKind,
    page: usize,
    opts: &CallOptions,
    mut f: impl FnMut(&crate::journal::Appended, serde_json::Value) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    let filter = Filter {
        kind: Some(kind),
        since: None,
        until: None,
    };
    let mut after = None;
    loop {
        let (entries, next) = journal.query(filter.clone(), after, page, opts).await?;
        for stored in entries {
            let entry = Entry::from_bytes(&stored.bytes).map_err(|e| {
                Refusal::Internal(format!("entry {} cannot be read: {e}", stored.index))
            })?;
            f(&crate::act::place_of(&stored), entry.body)?;
        }
        match next {
            Some(n) => after = Some(n),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod gate_tests {
    use super::ShadowGate;
    use axon_supervisors::{Agreement, Slo};

    fn counts(agreed: u64, disagreed: u64, inconclusive: u64, failed: u64) -> Agreement {
        Agreement {
            agreed,
            disagreed,
            inconclusive,
            failed,
            ..Agreement::default()
        }
    }

    #[test]
    fn the_shadow_gate_names_the_first_check_a_shadow_period_fails() {
        let gate = ShadowGate {
            min_calls: 100,
            min_agreement: 0.95,
        };
        let slo: Slo = serde_json::from_value(serde_json::json!({
            "p99_ms": 50,
            "max_error_rate": 0.02,
        }))
        .unwrap();
        let check = |a: Agreement, p99: Option<f64>| gate.judge(&a, Some(&slo), p99).1.map(|f| f.0);
        // Inconclusive predictions are not compared: 99 compared is too few.
        assert_eq!(check(counts(99, 0, 500, 0), Some(1.0)), Some("min_calls"));
        assert_eq!(check(counts(94, 6, 0, 0), Some(1.0)), Some("agreement"));
        assert_eq!(check(counts(100, 0, 0, 3), Some(1.0)), Some("error_rate"));
        assert_eq!(check(counts(100, 0, 0, 2), Some(50.5)), Some("latency"));
        assert_eq!(check(counts(95, 5, 0, 2), Some(50.0)), None);
        let (figures, _) = gate.judge(&counts(95, 5, 3, 2), Some(&slo), Some(4.0));
        assert_eq!(figures["agreement"], 0.95);
        assert_eq!(figures["error_rate"], 2.0 / 105.0);
        assert_eq!(figures["p99_ms"], 4.0);
    }
}
