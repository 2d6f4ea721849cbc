//! Health checks on a child that answers calls: its service-level objective (`Slo`), and
//! the checks that decide, call by call, whether it still meets it. The runtime judges
//! health; it does not know what the calls do. Whoever makes a call hands its [`Sample`]
//! to the child's [`HealthWatch`] and acts on what comes back.
//!
//! Each check looks at the child's most recent calls (`Slo::window_calls` of them) and
//! has three outcomes, as in Argo Rollouts and Kayenta: **pass**, **fail**, and
//! **inconclusive** (fewer than `Slo::min_calls` calls: low traffic is never a failure).
//! A check fails only on evidence beyond chance:
//!
//! - latency: more calls slower than `p99_ms` than 1% allows, by a binomial test;
//! - errors: more failed calls than `max_error_rate` allows, by the same test, or more
//!   than the child's own recent baseline (its calls before the window, weighed down
//!   over about a thousand calls) makes likely, at 1 in a million: a spike, even below
//!   the objective;
//! - uplift: realized utility below the predicted one, with the upper end of its
//!   confidence interval still below zero.
//!
//! A check that fails `failure_limit` times (one after another when `consecutive`) trips:
//! the watch answers a [`Trip`] once, and stays tripped until [`HealthWatch::reset`] (the
//! child is put back in service). A check in `dry_run` trips the same way and says so,
//! but never asks for action; it trips again only after it has passed once.

use crate::scorecard::Sample;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The chance below which a count is taken as beyond what the objective allows.
const ALPHA: f64 = 0.001;
/// The one-sided normal quantile of `ALPHA`, for the uplift's confidence interval.
const Z_ALPHA: f64 = 3.090_232;
/// The share of calls allowed past the latency objective: it is a 99th percentile.
const SLOW_SHARE: f64 = 0.01;
/// The baseline forgets a call's weight over about this many later calls.
const BASELINE_CALLS: f64 = 1000.0;
/// The baseline's weight of calls below which it is not judged against.
const BASELINE_MIN: f64 = 200.0;
/// The chance below which a window's failures are a spike against the baseline: far
/// stricter than [`ALPHA`], since a child at its own usual rate is judged at every call
/// and must not be demoted by a run of bad luck.
const SPIKE_ALPHA: f64 = 1e-6;

/// How one check counts its failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSettings {
    /// Failed evaluations after which the check trips.
    #[serde(default = "one")]
    pub failure_limit: u32,
    /// Whether those failures must come one after another: a pass starts the count again.
    #[serde(default = "yes")]
    pub consecutive: bool,
    /// Measure and report, never act.
    #[serde(default)]
    pub dry_run: bool,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

impl Default for CheckSettings {
    fn default() -> Self {
        Self {
            failure_limit: 1,
            consecutive: true,
            dry_run: false,
        }
    }
}

/// A child's service-level objective.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// The 99th percentile of a call's latency, in milliseconds.
    pub p99_ms: u64,
    /// The share of calls that may fail (0 to 1).
    pub max_error_rate: f64,
    /// How many of the most recent calls the checks look at.
    #[serde(default = "default_window_calls")]
    pub window_calls: u32,
    /// Below this many calls in that window a check is inconclusive.
    #[serde(default = "default_min_calls")]
    pub min_calls: u32,
    #[serde(default)]
    pub latency: CheckSettings,
    #[serde(default)]
    pub errors: CheckSettings,
    #[serde(default)]
    pub uplift: CheckSettings,
}

fn default_window_calls() -> u32 {
    50
}

fn default_min_calls() -> u32 {
    20
}

impl Slo {
    /// Why this objective cannot be used, naming the key.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !(1..=3_600_000).contains(&self.p99_ms) {
            return Some((
                "p99_ms",
                format!("must be between 1 and 3600000 (got {})", self.p99_ms),
            ));
        }
        if !(self.max_error_rate.is_finite() && (0.0..=1.0).contains(&self.max_error_rate)) {
            return Some((
                "max_error_rate",
                format!("must be between 0 and 1 (got {})", self.max_error_rate),
            ));
        }
        if !(10..=10_000).contains(&self.window_calls) {
            return Some((
                "window_calls",
                format!("must be between 10 and 10000 (got {})", self.window_calls),
            ));
        }
        if self.min_calls < 1 || self.min_calls > self.window_calls {
            return Some((
                "min_calls",
                format!(
                    "must be between 1 and window_calls ({}) (got {})",
                    self.window_calls, self.min_calls
                ),
            ));
        }
        for (key, c) in [
            ("latency.failure_limit", self.latency),
            ("errors.failure_limit", self.errors),
            ("uplift.failure_limit", self.uplift),
        ] {
            if !(1..=10_000).contains(&c.failure_limit) {
                return Some((
                    key,
                    format!("must be between 1 and 10000 (got {})", c.failure_limit),
                ));
            }
        }
        None
    }
}

/// One of the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Latency,
    Errors,
    Uplift,
}

impl Check {
    pub const ALL: [Check; 3] = [Check::Latency, Check::Errors, Check::Uplift];

    /// The rule's name in a journaled decision.
    pub fn rule(self) -> &'static str {
        match self {
            Check::Latency => "slo.latency",
            Check::Errors => "slo.errors",
            Check::Uplift => "slo.uplift",
        }
    }
}

/// What one evaluation of a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// The figures one evaluation was made on, journaled with a trip.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figures {
    /// Calls in the window the check looked at (for uplift: those with a prediction).
    pub calls: u64,
    /// Latency: calls slower than the objective; errors: failed calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over: Option<u64>,
    /// The share of calls the objective allows over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_share: Option<f64>,
    /// The chance of at least `over` such calls if the objective were met.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Errors: the failure rate of the child's calls before the window, and the chance
    /// of at least `over` failed calls at that rate (a spike when below 0.1%).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_p_value: Option<f64>,
    /// Uplift: its mean, and the upper end of its confidence interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_uplift: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplift_upper: Option<f64>,
}

/// A check's state, as a status shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckState {
    pub check: Check,
    pub verdict: Verdict,
    /// Failed evaluations counted towards its `failure_limit`.
    pub failures: u32,
    pub failure_limit: u32,
    pub dry_run: bool,
    pub figures: Figures,
}

/// A check that reached its failure limit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trip {
    pub check: Check,
    pub rule: &'static str,
    /// True for a check in dry run: report it, never act on it.
    pub dry_run: bool,
    /// The window the figures cover, in calls.
    pub window_calls: u32,
    pub figures: Figures,
}

struct Call {
    slow: bool,
    failed: bool,
    uplift: Option<f64>,
}

#[derive(Default)]
struct Counter {
    failures: u32,
    /// Tripped in dry run: not again until it passes.
    latched: bool,
    last: Option<(Verdict, Figures)>,
}

/// The checks of one child, fed one call at a time.
pub struct HealthWatch {
    slo: Slo,
    recent: VecDeque<Call>,
    slow: u64,
    failed: u64,
    compared: u64,
    uplift_sum: f64,
    uplift_squares: f64,
    /// The calls that left the window, weighed down as newer ones leave it: their
    /// weight, and the weight of the failed ones.
    baseline_calls: f64,
    baseline_failed: f64,
    counters: [Counter; 3],
    /// A check tripped for real: nothing more is asked until the child is back.
    tripped: bool,
}

impl HealthWatch {
    pub fn new(slo: Slo) -> Self {
        Self {
            recent: VecDeque::with_capacity(slo.window_calls as usize),
            slo,
            slow: 0,
            failed: 0,
            compared: 0,
            uplift_sum: 0.0,
            uplift_squares: 0.0,
            baseline_calls: 0.0,
            baseline_failed: 0.0,
            counters: Default::default(),
            tripped: false,
        }
    }

    pub fn slo(&self) -> &Slo {
        &self.slo
    }

    /// Asks again on the next failing evaluation: a trip that could not be acted on (the
    /// move out of service was not recorded) leaves the child in service, still watched.
    pub fn untrip(&mut self) {
        self.tripped = false;
    }

    /// Starts over with an empty window: the child is back in service.
    pub fn reset(&mut self) {
        *self = Self::new(self.slo.clone());
    }

    /// Counts one finished call and evaluates every check on the window it ends; answers
    /// the checks that tripped on it.
    pub fn observe(&mut self, s: &Sample) -> Vec<Trip> {
        let call = Call {
            slow: s.latency > std::time::Duration::from_millis(self.slo.p99_ms),
            failed: s.error.is_some(),
            uplift: s.predicted.map(|p| s.realized - p),
        };
        self.push(call);
        if self.tripped {
            return vec![];
        }
        let mut trips = vec![];
        for check in Check::ALL {
            let (verdict, figures) = self.evaluate(check);
            let settings = self.settings(check);
            let c = &mut self.counters[check as usize];
            match verdict {
                // A dry-run check that has reported waits for a pass before it counts
                // again, so its next report is about a new failure.
                Verdict::Fail if c.latched => {}
                Verdict::Fail => c.failures = c.failures.saturating_add(1),
                Verdict::Pass => {
                    if settings.consecutive {
                        c.failures = 0;
                    }
                    c.latched = false;
                }
                Verdict::Inconclusive => {}
            }
            c.last = Some((verdict, figures.clone()));
            if verdict == Verdict::Fail && c.failures >= settings.failure_limit && !c.latched {
                c.failures = 0;
                if settings.dry_run {
                    c.latched = true;
                } else {
                    self.tripped = true;
                }
                trips.push(Trip {
                    check,
                    rule: check.rule(),
                    dry_run: settings.dry_run,
                    window_calls: self.slo.window_calls,
                    figures,
                });
                if self.tripped {
                    break;
                }
            }
        }
        trips
    }

    /// Every check's last verdict, for a status.
    pub fn states(&self) -> Vec<CheckState> {
        Check::ALL
            .into_iter()
            .map(|check| {
                let c = &self.counters[check as usize];
                let settings = self.settings(check);
                let (verdict, figures) = c.last.clone().unwrap_or_else(|| self.evaluate(check));
                CheckState {
                    check,
                    verdict,
                    failures: c.failures,
                    failure_limit: settings.failure_limit,
                    dry_run: settings.dry_run,
                    figures,
                }
            })
            .collect()
    }

    fn settings(&self, check: Check) -> CheckSettings {
        match check {
            Check::Latency => self.slo.latency,
            Check::Errors => self.slo.errors,
            Check::Uplift => self.slo.uplift,
        }
    }

    fn push(&mut self, call: Call) {
        if self.recent.len() == self.slo.window_calls as usize {
            if let Some(old) = self.recent.pop_front() {
                self.slow -= u64::from(old.slow);
                self.failed -= u64::from(old.failed);
                let keep = 1.0 - 1.0 / BASELINE_CALLS;
                self.baseline_calls = self.baseline_calls * keep + 1.0;
                self.baseline_failed =
                    self.baseline_failed * keep + f64::from(u8::from(old.failed));
                if let Some(u) = old.uplift {
                    self.compared -= 1;
                    self.uplift_sum -= u;
                    self.uplift_squares -= u * u;
                }
            }
        }
        self.slow += u64::from(call.slow);
        self.failed += u64::from(call.failed);
        if let Some(u) = call.uplift {
            self.compared += 1;
            self.uplift_sum += u;
            self.uplift_squares += u * u;
        }
        self.recent.push_back(call);
    }

    fn evaluate(&self, check: Check) -> (Verdict, Figures) {
        let n = self.recent.len() as u64;
        let enough = |calls: u64| calls >= u64::from(self.slo.min_calls);
        let counted = |over: u64, share: f64| {
            let p = binomial_tail(n, over, share);
            let verdict = if !enough(n) {
                Verdict::Inconclusive
            } else if p < ALPHA {
                Verdict::Fail
            } else {
                Verdict::Pass
            };
            (
                verdict,
                Figures {
                    calls: n,
                    over: Some(over),
                    allowed_share: Some(share),
                    p_value: Some(p),
                    baseline_rate: None,
                    baseline_p_value: None,
                    mean_uplift: None,
                    uplift_upper: None,
                },
            )
        };
        match check {
            Check::Latency => counted(self.slow, SLOW_SHARE),
            Check::Errors => {
                let (mut verdict, mut figures) = counted(self.failed, self.slo.max_error_rate);
                if self.baseline_calls >= BASELINE_MIN {
                    // A baseline without failures still allows the odd one: its rate is
                    // at least one call in its weight.
                    let rate =
                        (self.baseline_failed / self.baseline_calls).max(1.0 / self.baseline_calls);
                    let p = binomial_tail(n, self.failed, rate);
                    figures.baseline_rate = Some(self.baseline_failed / self.baseline_calls);
                    figures.baseline_p_value = Some(p);
                    if verdict == Verdict::Pass && p < SPIKE_ALPHA {
                        verdict = Verdict::Fail;
                    }
                }
                (verdict, figures)
            }
            Check::Uplift => {
                let m = self.compared;
                let mut figures = Figures {
                    calls: m,
                    over: None,
                    allowed_share: None,
                    p_value: None,
                    baseline_rate: None,
                    baseline_p_value: None,
                    mean_uplift: None,
                    uplift_upper: None,
                };
                if !enough(m) {
                    return (Verdict::Inconclusive, figures);
                }
                let mean = self.uplift_sum / m as f64;
                // Sums taken in and out leave rounding behind: a variance never below 0.
                let variance = ((self.uplift_squares / m as f64) - mean * mean).max(0.0);
                let upper = mean + Z_ALPHA * (variance / m as f64).sqrt();
                figures.mean_uplift = Some(mean);
                figures.uplift_upper = Some(upper);
                // A mean below zero by rounding alone is no evidence.
                let verdict = if mean < -1e-9 && upper < 0.0 {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                };
                (verdict, figures)
            }
        }
    }
}

/// P(X ≥ k) for X ~ Binomial(n, p).
fn binomial_tail(n: u64, k: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    // Summed from the top, in logs: the terms of interest are tiny, never negative.
    let ln_p = p.ln();
    let ln_q = (1.0 - p).ln();
    let mut ln_choose = 0.0; // ln C(n, n)
    let mut sum = 0.0;
    let mut i = n;
    loop {
        sum += (ln_choose + i as f64 * ln_p + (n - i) as f64 * ln_q).exp();
        if i == k {
            break;
        }
        // C(n, i-1) = C(n, i) * i / (n - i + 1)
        ln_choose += (i as f64).ln() - ((n - i + 1) as f64).ln();
        i -= 1;
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, TestResult};
    use std::time::Duration;

    fn slo() -> Slo {
        Slo {
            p99_ms: 100,
            max_error_rate: 0.05,
            window_calls: 50,
            min_calls: 20,
            latency: CheckSettings::default(),
            errors: CheckSettings::default(),
            uplift: CheckSettings::default(),
        }
    }

    fn call(ms: u64, failed: bool) -> Sample {
        Sample {
            latency: Duration::from_millis(ms),
            error: failed.then_some("failed"),
            predicted: Some(1.0),
            realized: if failed { 0.0 } else { 1.0 },
        }
    }

    #[test]
    fn the_binomial_tail_matches_known_values() {
        assert!((binomial_tail(50, 5, 0.01) - 1.4e-4).abs() < 2e-5);
        assert!((binomial_tail(20, 1, 0.5) - (1.0 - 0.5f64.powi(20))).abs() < 1e-12);
        assert_eq!(binomial_tail(10, 0, 0.3), 1.0);
        assert_eq!(binomial_tail(10, 11, 0.3), 0.0);
        assert_eq!(binomial_tail(10, 1, 0.0), 0.0);
        let sum: f64 = (0..=10).map(|k| binomial_tail(10, k, 0.3)).sum();
        // Σ P(X ≥ k) for k ≥ 1 is the mean, 3; plus P(X ≥ 0) = 1.
        assert!((sum - 4.0).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn low_traffic_is_inconclusive_never_a_failure() {
        let mut w = HealthWatch::new(slo());
        for _ in 0..19 {
            assert!(w.observe(&call(1000, true)).is_empty());
        }
        let states = w.states();
        assert!(states
            .iter()
            .all(|s| s.verdict == Verdict::Inconclusive && s.failures == 0));
    }

    #[test]
    fn a_driver_that_starts_failing_trips_the_error_check_within_the_window() {
        let mut w = HealthWatch::new(slo());
        for _ in 0..200 {
            assert!(w.observe(&call(5, false)).is_empty());
        }
        let mut calls = 0;
        let trip = loop {
            calls += 1;
            assert!(calls <= 50, "no trip within 50 failing calls");
            if let Some(t) = w.observe(&call(5, true)).pop() {
                break t;
            }
        };
        assert_eq!(
            (trip.check, trip.rule, trip.dry_run),
            (Check::Errors, "slo.errors", false)
        );
        assert!(trip.figures.p_value.unwrap() < ALPHA, "{trip:?}");
        assert!(calls <= 10, "{calls} calls");
        // Tripped: nothing more until it is back in service.
        assert!(w.observe(&call(5, true)).is_empty());
        w.reset();
        assert!(w.states().iter().all(|s| s.figures.calls == 0));
    }

    #[test]
    fn an_error_spike_against_the_baseline_trips_below_the_objective() {
        // An objective that allows one push in five to fail; this driver fails one in a
        // hundred, until it fails one in four.
        let mut w = HealthWatch::new(Slo {
            max_error_rate: 0.2,
            uplift: CheckSettings {
                dry_run: true,
                ..CheckSettings::default()
            },
            ..slo()
        });
        let unpredicted = |failed: bool| Sample {
            predicted: None,
            ..call(1, failed)
        };
        for i in 0..2000 {
            assert!(w.observe(&unpredicted(i % 100 == 0)).is_empty(), "call {i}");
        }
        let trip = (0..200)
            .find_map(|i| w.observe(&unpredicted(i % 4 == 0)).pop())
            .expect("a spike to one failure in four trips");
        assert_eq!(trip.check, Check::Errors);
        let f = trip.figures;
        assert!(f.p_value.unwrap() >= ALPHA, "under the objective: {f:?}");
        assert!(f.baseline_p_value.unwrap() < SPIKE_ALPHA, "{f:?}");
        assert!((f.baseline_rate.unwrap() - 0.01).abs() < 0.01, "{f:?}");
        // A driver that stays at its own rate never trips, however long.
        let mut steady = HealthWatch::new(Slo {
            max_error_rate: 0.2,
            ..slo()
        });
        for i in 0..20_000 {
            assert!(
                steady.observe(&unpredicted(i % 10 == 0)).is_empty(),
                "call {i}"
            );
        }
    }

    #[test]
    fn a_slow_driver_trips_the_latency_check_and_an_outlier_does_not() {
        let mut w = HealthWatch::new(slo());
        for i in 0..500 {
            // One slow call in a hundred is what a p99 objective allows.
            let ms = if i % 100 == 0 { 500 } else { 5 };
            assert!(w.observe(&call(ms, false)).is_empty(), "call {i}");
        }
        let trip = (0..50)
            .find_map(|_| w.observe(&call(500, false)).pop())
            .expect("a trip within 50 slow calls");
        assert_eq!(trip.check, Check::Latency);
    }

    #[test]
    fn negative_uplift_trips_and_noise_around_zero_does_not() {
        let mut w = HealthWatch::new(Slo {
            max_error_rate: 1.0,
            ..slo()
        });
        for i in 0..200 {
            let s = Sample {
                latency: Duration::from_millis(1),
                error: None,
                predicted: Some(0.5),
                realized: if i % 2 == 0 { 0.4 } else { 0.6 },
            };
            assert!(w.observe(&s).is_empty(), "call {i}");
        }
        let worse = Sample {
            latency: Duration::from_millis(1),
            error: None,
            predicted: Some(0.9),
            realized: 0.2,
        };
        let trip = (0..50)
            .find_map(|_| w.observe(&worse).pop())
            .expect("a trip within 50 calls");
        assert_eq!(trip.check, Check::Uplift);
        assert!(trip.figures.uplift_upper.unwrap() < 0.0);
    }

    #[test]
    fn a_failure_limit_counts_failures_consecutive_or_not() {
        // A window of 10 calls fails the error check from 5 failed calls on (the chance
        // of 5 of 10 at 5% is below 0.1%), and passes at 4. Nothing is predicted, so
        // the uplift check stays out of it.
        let trips_at = |consecutive: bool| {
            let mut w = HealthWatch::new(Slo {
                errors: CheckSettings {
                    failure_limit: 2,
                    consecutive,
                    dry_run: false,
                },
                min_calls: 10,
                window_calls: 10,
                ..slo()
            });
            // The 10th call fails the check, the 11th passes it, the 12th fails it again.
            let mut calls = vec![true];
            calls.extend([false; 5]);
            calls.extend([true, true, true, true, false, true]);
            calls
                .into_iter()
                .enumerate()
                .filter_map(|(i, failed)| {
                    let s = Sample {
                        predicted: None,
                        ..call(1, failed)
                    };
                    (!w.observe(&s).is_empty()).then_some(i + 1)
                })
                .collect::<Vec<_>>()
        };
        // Consecutive: the pass in between starts the count again.
        assert_eq!(trips_at(true), Vec::<usize>::new());
        // Not consecutive: the earlier failure still counts.
        assert_eq!(trips_at(false), vec![12]);
    }

    #[test]
    fn a_dry_run_check_reports_once_per_failure_and_never_stops_the_watch() {
        let mut w = HealthWatch::new(Slo {
            errors: CheckSettings {
                dry_run: true,
                ..CheckSettings::default()
            },
            ..slo()
        });
        let failing = Sample {
            predicted: None,
            ..call(1, true)
        };
        let trips: Vec<Trip> = (0..100).flat_map(|_| w.observe(&failing)).collect();
        assert_eq!(trips.len(), 1, "{trips:?}");
        assert!(trips[0].dry_run);
        // It passes again, then fails again: reported again.
        for _ in 0..50 {
            w.observe(&call(1, false));
        }
        let again: Vec<Trip> = (0..100).flat_map(|_| w.observe(&failing)).collect();
        assert_eq!(again.len(), 1);
    }

    quickcheck! {
        /// Calls that meet the objective (none slow, none failed, as worth as predicted)
        /// never trip a check, whatever their number and latencies.
        fn calls_within_the_objective_never_trip(latencies: Vec<u8>) -> TestResult {
            let mut w = HealthWatch::new(slo());
            let tripped = latencies
                .iter()
                .any(|ms| !w.observe(&call(u64::from(*ms % 100), false)).is_empty());
            TestResult::from_bool(!tripped)
        }

        /// Fewer calls than `min_calls` never trip a check, however bad.
        fn too_few_calls_never_trip(calls: Vec<(u16, bool)>) -> TestResult {
            let mut w = HealthWatch::new(slo());
            let tripped = calls
                .iter()
                .take(19)
                .any(|(ms, failed)| !w.observe(&call(u64::from(*ms), *failed)).is_empty());
            TestResult::from_bool(!tripped)
        }
    }
}
