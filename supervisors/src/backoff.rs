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
    /// The restart count of a child resets after this long without a failure.
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

/// The backoff state of one child: how many restarts since the last quiet period.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackoffState {
    count: u32,
    last_failure: Option<Duration>,
}

impl BackoffState {
    /// Records a failure at `now` and returns the delay before its restart.
    pub fn next_delay(&mut self, policy: &BackoffPolicy, now: Duration, unit: f64) -> Duration {
        if let Some(last) = self.last_failure {
            if now.saturating_sub(last) >= policy.reset_after {
                self.count = 0;
            }
        }
        let d = policy.delay(self.count, unit);
        self.count = self.count.saturating_add(1);
        self.last_failure = Some(now);
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
    fn count_resets_after_a_quiet_period() {
        let p = BackoffPolicy::new(ms(100), ms(1000), 0.0);
        assert_eq!(p.reset_after, ms(550));
        let mut s = BackoffState::default();
        assert_eq!(s.next_delay(&p, ms(0), 0.0), ms(100));
        assert_eq!(s.next_delay(&p, ms(10), 0.0), ms(200));
        assert_eq!(s.next_delay(&p, ms(20), 0.0), ms(400));
        // 550 ms later without a failure: back to the minimum.
        assert_eq!(s.next_delay(&p, ms(570), 0.0), ms(100));
    }
}
