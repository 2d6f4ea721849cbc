//! Restart backoff (`SUPERVISION.md`, "Backoff"): exponential with jitter, reset after a
//! quiet period. Backoff delays a restart; it never bypasses the intensity rule.

use std::time::Duration;

/// The backoff of one supervisor's children.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffPolicy {
    pub min: Duration,
    pub max: Duration,
    /// `r` in `delay × (1 + r)` is drawn uniformly from `[0, random_factor]`.
    pub random_factor: f64,
    /// The failure count of a child resets once it has run this long since its last
    /// restart without failing.
    pub reset_after: Duration,
}

impl BackoffPolicy {
    /// A policy with `reset_after = (min + max) / 2`, the contract's default.
    pub fn new(min: Duration, max: Duration, random_factor: f64) -> Self {
        Self {
            min,
            max,
            random_factor,
            reset_after: (min + max) / 2,
        }
    }

    /// No delay at all: restarts happen as soon as the failure is handled.
    pub fn none() -> Self {
        Self::new(Duration::ZERO, Duration::ZERO, 0.0)
    }

    /// `min(max, min × 2^n) × (1 + r)`, where `unit` in `[0, 1)` picks `r`.
    pub fn delay(&self, n: u32, unit: f64) -> Duration {
        let base = if n >= 32 {
            self.max
        } else {
            self.min.saturating_mul(1u32 << n).min(self.max)
        };
        let r = self.random_factor * unit.clamp(0.0, 1.0);
        base.mul_f64(1.0 + r)
    }
}

/// The backoff state of one child: its consecutive failures, and when it last started.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackoffState {
    count: u32,
    started: Option<Duration>,
}

impl BackoffState {
    /// Records that the child (re)started at `now`: its run without failing counts from
    /// here, so the backoff delay before it never counts as quiet time.
    pub fn started(&mut self, now: Duration) {
        self.started = Some(now);
    }

    /// Records that the child stopped at `now` without failing (its supervisor stopped it,
    /// or it ended normally). A run that lasted `reset_after` has earned its reset; the
    /// time the child then spends stopped never counts as running.
    pub fn stopped(&mut self, policy: &BackoffPolicy, now: Duration) {
        if let Some(started) = self.started.take() {
            if now.saturating_sub(started) >= policy.reset_after {
                self.count = 0;
            }
        }
    }

    /// Records a failure at `now` and returns the delay before its restart. The count
    /// resets first when the child had run `reset_after` since its last start.
    pub fn next_delay(&mut self, policy: &BackoffPolicy, now: Duration, unit: f64) -> Duration {
        if let Some(started) = self.started {
            if now.saturating_sub(started) >= policy.reset_after {
                self.count = 0;
            }
        }
        let d = policy.delay(self.count, unit);
        self.count = self.count.saturating_add(1);
        self.started = None;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_up_to_the_maximum() {
        let p = BackoffPolicy::new(ms(100), ms(1000), 0.0);
        let got: Vec<_> = (0..6).map(|n| p.delay(n, 0.0)).collect();
        assert_eq!(
            got,
            vec![ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(p.delay(200, 0.0), ms(1000));
    }

    #[test]
    fn jitter_stays_within_the_random_factor() {
        let p = BackoffPolicy::new(ms(100), ms(1000), 0.5);
        assert_eq!(p.delay(0, 0.0), ms(100));
        assert_eq!(p.delay(0, 1.0), ms(150));
        let d = p.delay(1, 0.5);
        assert_eq!(d, ms(250));
    }

    #[test]
    fn count_resets_after_a_quiet_run() {
        let p = BackoffPolicy::new(ms(100), ms(1000), 0.0);
        assert_eq!(p.reset_after, ms(550));
        let mut s = BackoffState::default();
        s.started(ms(0));
        assert_eq!(s.next_delay(&p, ms(0), 0.0), ms(100));
        s.started(ms(100));
        assert_eq!(s.next_delay(&p, ms(110), 0.0), ms(200));
        s.started(ms(310));
        assert_eq!(s.next_delay(&p, ms(320), 0.0), ms(400));
        // Restarted, then 550 ms of running without a failure: back to the minimum.
        s.started(ms(720));
        assert_eq!(s.next_delay(&p, ms(1270), 0.0), ms(100));
    }

    #[test]
    fn time_spent_stopped_never_counts_as_running() {
        let p = BackoffPolicy::new(ms(100), ms(1000), 0.0);
        let mut s = BackoffState::default();
        s.started(ms(0));
        assert_eq!(s.next_delay(&p, ms(10), 0.0), ms(100));
        // Restarted, stopped 10 ms later by a sibling's restart, then down for a long
        // time, then its start fails: it ran 10 ms, not 1000, so the count stands.
        s.started(ms(110));
        s.stopped(&p, ms(120));
        assert_eq!(s.next_delay(&p, ms(1120), 0.0), ms(200));
        // A run long enough before the stop does earn the reset.
        s.started(ms(1320));
        s.stopped(&p, ms(1900));
        assert_eq!(s.next_delay(&p, ms(5000), 0.0), ms(100));
    }

    #[test]
    fn a_crash_loop_reaches_the_maximum() {
        // The child fails the moment it starts. Measured from the failure, the gaps
        // (the delays themselves) would soon exceed reset_after and reset the count; from
        // the restart they are zero, so the delay doubles up to the maximum and stays.
        let p = BackoffPolicy::new(ms(100), ms(1000), 0.0);
        let mut s = BackoffState::default();
        let mut now = ms(0);
        let mut delays = vec![];
        for _ in 0..7 {
            s.started(now);
            let d = s.next_delay(&p, now, 0.0);
            delays.push(d);
            now += d;
        }
        assert_eq!(
            delays,
            vec![
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000),
                ms(1000)
            ]
        );
    }
}
