//! Scorecards: how a child that answers calls has been doing, over a sliding window and in
//! total — calls, errors by kind, latency percentiles (an HDR histogram), the utility it
//! predicted against the utility it delivered. The runtime keeps the figures and never
//! knows what the calls do; whoever makes a call records its sample.
//!
//! The window is a ring of slices on the supervision clock: a sample lands in the slice of
//! its time, a slice older than the window is cleared before it is used again, and a
//! report merges the slices still inside the window. Memory is fixed per scorecard
//! (`slices + 1` histograms), whatever the traffic.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// The longest latency a scorecard tells apart; longer calls count as this long.
const MAX_LATENCY_US: u64 = 600_000_000;

/// How a scorecard's window is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScorecardConfig {
    /// How far back the window reaches.
    pub window: Duration,
    /// How many slices the window is cut into: a sample leaves the window within one
    /// slice of `window` after it was recorded.
    pub slices: u32,
}

impl Default for ScorecardConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            slices: 30,
        }
    }
}

/// One finished call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub latency: Duration,
    /// `None` for a success; otherwise the kind of failure, one of a fixed set of words
    /// chosen by the caller (so the kinds, and any label made of them, stay bounded).
    pub error: Option<&'static str>,
    /// The utility predicted before the call; `None` where the prediction was
    /// inconclusive.
    pub predicted: Option<f64>,
    /// The utility the call delivered.
    pub realized: f64,
}

/// How one mirrored call's prediction compared with the live call's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mirrored {
    Agreed,
    Disagreed,
    /// The prediction was inconclusive: never counted as agreeing.
    Inconclusive,
    /// The mirrored call failed (an error, a panic, no answer in time): swallowed, counted.
    Failed,
    /// Not mirrored: the shadow's own queue or concurrency was full.
    Skipped,
}

impl Mirrored {
    pub const ALL: [Mirrored; 5] = [
        Mirrored::Agreed,
        Mirrored::Disagreed,
        Mirrored::Inconclusive,
        Mirrored::Failed,
        Mirrored::Skipped,
    ];

    /// Its name in a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Mirrored::Agreed => "agreed",
            Mirrored::Disagreed => "disagreed",
            Mirrored::Inconclusive => "inconclusive",
            Mirrored::Failed => "failed",
            Mirrored::Skipped => "skipped",
        }
    }
}

/// A shadow's mirrored calls over a span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Agreement {
    pub agreed: u64,
    pub disagreed: u64,
    pub inconclusive: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Agreed over agreed and disagreed (absent with neither).
    pub agreement: Option<f64>,
}

impl Agreement {
    /// Counts one mirrored call.
    pub fn count(&mut self, m: Mirrored) {
        *match m {
            Mirrored::Agreed => &mut self.agreed,
            Mirrored::Disagreed => &mut self.disagreed,
            Mirrored::Inconclusive => &mut self.inconclusive,
            Mirrored::Failed => &mut self.failed,
            Mirrored::Skipped => &mut self.skipped,
        } += 1;
    }

    /// Adds the counts of `other` (the agreement rate is worked out where it is shown).
    fn add(&mut self, other: &Agreement) {
        self.agreed += other.agreed;
        self.disagreed += other.disagreed;
        self.inconclusive += other.inconclusive;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The figures of a span of calls. Rates and means are absent where there is nothing to
/// divide by, never made up as zero.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figures {
    pub calls: u64,
    /// Failed calls by kind.
    pub errors: BTreeMap<&'static str, u64>,
    pub error_rate: Option<f64>,
    pub latency: Option<Latency>,
    /// The mean realized utility over every call.
    pub realized_utility: Option<f64>,
    /// The mean predicted utility over the calls whose prediction was not inconclusive.
    pub predicted_utility: Option<f64>,
    /// Realized minus predicted utility, averaged over those same calls.
    pub uplift: Option<f64>,
    /// Calls whose prediction was inconclusive: never counted as agreeing.
    pub inconclusive: u64,
    /// As a shadow: its predictions of mirrored calls against the live outcomes.
    pub shadow: Agreement,
}

/// A scorecard's report at one moment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScorecardReport {
    pub window_seconds: f64,
    pub window: Figures,
    pub total: Figures,
}

/// The running sums behind [`Figures`].
#[derive(Clone)]
struct Tally {
    calls: u64,
    errors: BTreeMap<&'static str, u64>,
    latency_us: Histogram<u32>,
    realized: f64,
    compared: u64,
    predicted: f64,
    inconclusive: u64,
    shadow: Agreement,
}

impl Tally {
    fn new() -> Self {
        Self {
            calls: 0,
            errors: BTreeMap::new(),
            // Two significant digits: a percentile is within 1% of the true one.
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 2)
                .expect("the bounds are constant and valid"),
            realized: 0.0,
            compared: 0,
            predicted: 0.0,
            inconclusive: 0,
            shadow: Agreement::default(),
        }
    }

    fn clear(&mut self) {
        self.calls = 0;
        self.errors.clear();
        self.latency_us.reset();
        self.realized = 0.0;
        self.compared = 0;
        self.predicted = 0.0;
        self.inconclusive = 0;
        self.shadow = Agreement::default();
    }

    fn add(&mut self, s: &Sample) {
        self.calls += 1;
        if let Some(kind) = s.error {
            *self.errors.entry(kind).or_default() += 1;
        }
        let us = u64::try_from(s.latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(us.clamp(1, MAX_LATENCY_US));
        self.realized += s.realized;
        match s.predicted {
            Some(p) => {
                self.compared += 1;
                self.predicted += p;
            }
            None => self.inconclusive += 1,
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.calls += other.calls;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        // Both have the same bounds, so the merge cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        self.realized += other.realized;
        self.compared += other.compared;
        self.predicted += other.predicted;
        self.inconclusive += other.inconclusive;
        self.shadow.add(&other.shadow);
    }

    /// The figures, given the realized utility of the compared calls alone (kept beside
    /// the tally) so that the uplift sets like against like.
    fn figures(&self, compared_realized: f64) -> Figures {
        let per = |sum: f64, n: u64| (n > 0).then(|| sum / n as f64);
        let errors: u64 = self.errors.values().sum();
        let ms = |us: u64| us as f64 / 1000.0;
        Figures {
            calls: self.calls,
            errors: self.errors.clone(),
            error_rate: per(errors as f64, self.calls),
            latency: (self.calls > 0).then(|| Latency {
                p50_ms: ms(self.latency_us.value_at_quantile(0.50)),
                p95_ms: ms(self.latency_us.value_at_quantile(0.95)),
                p99_ms: ms(self.latency_us.value_at_quantile(0.99)),
                max_ms: ms(self.latency_us.max()),
            }),
            realized_utility: per(self.realized, self.calls),
            predicted_utility: per(self.predicted, self.compared),
            uplift: per(compared_realized - self.predicted, self.compared),
            inconclusive: self.inconclusive,
            shadow: Agreement {
                agreement: per(
                    self.shadow.agreed as f64,
                    self.shadow.agreed + self.shadow.disagreed,
                ),
                ..self.shadow
            },
        }
    }
}

struct Slice {
    /// Which slice of the clock's time this is (time / slice length).
    index: u64,
    tally: Tally,
}

struct Inner {
    slices: Vec<Slice>,
    total: Tally,
    /// Realized utility of the calls whose prediction was not inconclusive, per slice and
    /// in total: the uplift compares like with like.
    compared_realized: Vec<f64>,
    total_compared_realized: f64,
}

/// One child's scorecard. Cheap to record into from any thread.
pub struct Scorecard {
    config: ScorecardConfig,
    slice: Duration,
    inner: Mutex<Inner>,
}

impl Scorecard {
    /// A scorecard with an empty window. `config.slices` below 1 is taken as 1.
    pub fn new(config: ScorecardConfig) -> Self {
        let slices = config.slices.max(1);
        let slice = (config.window / slices).max(Duration::from_millis(1));
        Self {
            config: ScorecardConfig { slices, ..config },
            slice,
            inner: Mutex::new(Inner {
                slices: (0..slices)
                    .map(|_| Slice {
                        index: u64::MAX,
                        tally: Tally::new(),
                    })
                    .collect(),
                total: Tally::new(),
                compared_realized: vec![0.0; slices as usize],
                total_compared_realized: 0.0,
            }),
        }
    }

    pub fn config(&self) -> ScorecardConfig {
        self.config
    }

    fn index(&self, now: Duration) -> u64 {
        u64::try_from(now.as_nanos() / self.slice.as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// The slice `now` falls in, cleared first if it last held an older one.
    fn slice_at(&self, inner: &mut Inner, now: Duration) -> usize {
        let index = self.index(now);
        let n = inner.slices.len();
        let at = (index % n as u64) as usize;
        if inner.slices[at].index != index {
            inner.slices[at].index = index;
            inner.slices[at].tally.clear();
            inner.compared_realized[at] = 0.0;
        }
        at
    }

    /// Records, for a shadow, how one mirrored call went at `now`.
    pub fn record_mirrored(&self, now: Duration, m: Mirrored) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let at = self.slice_at(&mut inner, now);
        inner.slices[at].tally.shadow.count(m);
        inner.total.shadow.count(m);
    }

    /// Records one call that finished at `now` (on the supervision clock).
    pub fn record(&self, now: Duration, sample: Sample) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let at = self.slice_at(&mut inner, now);
        inner.slices[at].tally.add(&sample);
        inner.total.add(&sample);
        if sample.predicted.is_some() {
            inner.compared_realized[at] += sample.realized;
            inner.total_compared_realized += sample.realized;
        }
    }

    /// The figures of the window ending at `now`, and in total.
    pub fn report(&self, now: Duration) -> ScorecardReport {
        let current = self.index(now);
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let n = inner.slices.len() as u64;
        let mut window = Tally::new();
        let mut window_compared_realized = 0.0;
        for (i, s) in inner.slices.iter().enumerate() {
            // Inside the window: one of the last `n` slices up to now (a slice recorded
            // "after" now, from a clock read earlier by another thread, counts too).
            if s.index != u64::MAX && s.index.saturating_add(n) > current {
                window.merge(&s.tally);
                window_compared_realized += inner.compared_realized[i];
            }
        }
        ScorecardReport {
            window_seconds: self.config.window.as_secs_f64(),
            window: window.figures(window_compared_realized),
            total: inner.total.figures(inner.total_compared_realized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, TestResult};

    fn ok(ms: u64, predicted: Option<f64>, realized: f64) -> Sample {
        Sample {
            latency: Duration::from_millis(ms),
            error: None,
            predicted,
            realized,
        }
    }

    #[test]
    fn an_empty_scorecard_has_counts_of_zero_and_no_made_up_rates() {
        let s = Scorecard::new(ScorecardConfig::default());
        let r = s.report(Duration::from_secs(5));
        assert_eq!(r.window.calls, 0);
        assert_eq!(r.window.error_rate, None);
        assert_eq!(r.window.latency, None);
        assert_eq!(r.window.uplift, None);
        assert_eq!(r.total, r.window);
    }

    #[test]
    fn figures_count_errors_by_kind_latency_percentiles_and_uplift_over_compared_calls() {
        let s = Scorecard::new(ScorecardConfig::default());
        let t = Duration::from_secs(100);
        for ms in 1..=100 {
            s.record(t, ok(ms, Some(0.5), 1.0));
        }
        s.record(
            t,
            Sample {
                latency: Duration::from_millis(2),
                error: Some("failed"),
                predicted: Some(0.5),
                realized: 0.0,
            },
        );
        // Inconclusive: counted as a call, never in the uplift.
        s.record(t, ok(3, None, 1.0));
        let w = s.report(t).window;
        assert_eq!(w.calls, 102);
        assert_eq!(w.errors.get("failed"), Some(&1));
        assert_eq!(w.inconclusive, 1);
        let rate = w.error_rate.unwrap();
        assert!((rate - 1.0 / 102.0).abs() < 1e-12, "{rate}");
        let l = w.latency.unwrap();
        assert!((l.p50_ms - 50.0).abs() <= 1.0, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() <= 1.5, "{l:?}");
        assert!((l.max_ms - 100.0).abs() <= 1.0, "{l:?}");
        // 101 compared calls predicted 0.5 each; 100 of them delivered 1, one 0.
        let uplift = w.uplift.unwrap();
        assert!((uplift - (100.0 / 101.0 - 0.5)).abs() < 1e-12, "{uplift}");
        assert!((w.predicted_utility.unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn calls_leave_the_window_but_stay_in_the_total() {
        let s = Scorecard::new(ScorecardConfig {
            window: Duration::from_secs(10),
            slices: 10,
        });
        s.record(Duration::from_secs(1), ok(5, Some(1.0), 1.0));
        s.record(Duration::from_secs(6), ok(5, Some(1.0), 1.0));
        assert_eq!(s.report(Duration::from_secs(10)).window.calls, 2);
        // At 11.5 s the first call's slice (1 s to 2 s) has left the window.
        let r = s.report(Duration::from_millis(11_500));
        assert_eq!((r.window.calls, r.total.calls), (1, 2));
        // A slice used again after a full turn of the ring starts empty.
        s.record(Duration::from_secs(16), ok(5, Some(1.0), 1.0));
        let r = s.report(Duration::from_secs(16));
        assert_eq!((r.window.calls, r.total.calls), (1, 3));
        assert_eq!(s.report(Duration::from_secs(100)).window.calls, 0);
    }

    quickcheck! {
        /// Whatever the times and samples, the window holds exactly the calls of its last
        /// `slices` slices, and the total every call.
        fn the_window_holds_exactly_its_recent_calls(times: Vec<(u16, u8, bool)>) -> TestResult {
            let s = Scorecard::new(ScorecardConfig { window: Duration::from_secs(8), slices: 8 });
            let mut at = Vec::new();
            let mut now = 0u64;
            for (step, ms, failed) in times {
                now += u64::from(step % 3000);
                s.record(Duration::from_millis(now), Sample {
                    latency: Duration::from_millis(u64::from(ms)),
                    error: failed.then_some("failed"),
                    predicted: Some(1.0),
                    realized: if failed { 0.0 } else { 1.0 },
                });
                at.push((now, failed));
            }
            let r = s.report(Duration::from_millis(now));
            let current = now / 1000;
            let inside: Vec<_> = at.iter().filter(|(t, _)| t / 1000 + 8 > current).collect();
            let failed = inside.iter().filter(|(_, f)| *f).count() as u64;
            TestResult::from_bool(
                r.window.calls == inside.len() as u64
                    && r.window.errors.get("failed").copied().unwrap_or(0) == failed
                    && r.total.calls == at.len() as u64,
            )
        }
    }
}
