//! Half-open trials: a circuit breaker over a child's service. A child its checks take out
//! of service (the breaker opens) gets, after a cool-down, a trial (half-open): it serves a
//! share of the work again under the same checks. Passing closes the breaker; failing opens
//! it again with the cool-down doubled, and a child that fails `max_failed_trials` trials in
//! a row is retired. A child an operator took out of service is held: it gets no trial.
//!
//! Pure rules, on the caller's clock and randomness: whoever owns the child's service
//! feeds the events and acts on the answers. Nothing here knows what the child does.

use crate::health::{CheckState, Verdict};
use std::time::Duration;

/// How trials are given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrialPolicy {
    /// The wait before the first trial after a child is taken out of service.
    pub cool_down: Duration,
    /// The longest wait, however many trials failed.
    pub max_cool_down: Duration,
    /// Failed trials in a row after which the child is retired.
    pub max_failed_trials: u32,
    /// The share of the work a child on trial serves, in `[0, 1]`.
    pub share: f64,
}

/// Where a child's breaker stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Breaker {
    /// In service, or never taken out of it by its checks.
    #[default]
    Closed,
    /// Taken out of service by its checks, after `failed_trials` failed trials in a row:
    /// a trial is due after [`TrialPolicy::cool_down_after`].
    Open { failed_trials: u32 },
    /// On trial, after `failed_trials` failed ones before it.
    HalfOpen { failed_trials: u32 },
    /// Taken out of service (or kept out) by an operator: no trial.
    Held,
    /// Failed too many trials: out of service for good, until an operator says otherwise.
    Retired,
}

impl Breaker {
    /// Its name in a status: `closed`, `open`, `half_open`, `held`, `retired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Breaker::Closed => "closed",
            Breaker::Open { .. } => "open",
            Breaker::HalfOpen { .. } => "half_open",
            Breaker::Held => "held",
            Breaker::Retired => "retired",
        }
    }

    /// The failed trials in a row it counts.
    pub fn failed_trials(self) -> u32 {
        match self {
            Breaker::Open { failed_trials } | Breaker::HalfOpen { failed_trials } => failed_trials,
            _ => 0,
        }
    }
}

/// What happened to a child's service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrialEvent {
    /// Its checks (or its restart intensity) took it out of service, from service or
    /// from a trial.
    Tripped,
    /// Its trial began.
    TrialStarted,
    /// Its trial passed: it is back in full service.
    TrialPassed,
    /// An operator moved it: into full service, onto a trial, or out of service.
    Operator(Placement),
}

/// Where an operator put a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    InService,
    OnTrial,
    OutOfService,
}

impl TrialPolicy {
    /// The wait before the next trial of a child that has failed `failed_trials` trials
    /// in a row: the cool-down, doubled for each, at most `max_cool_down`.
    pub fn cool_down_after(&self, failed_trials: u32) -> Duration {
        let factor = 1u32.checked_shl(failed_trials.min(31)).unwrap_or(u32::MAX);
        self.cool_down
            .checked_mul(factor)
            .unwrap_or(self.max_cool_down)
            .min(self.max_cool_down)
    }

    /// The breaker after `event`.
    pub fn next(&self, state: Breaker, event: TrialEvent) -> Breaker {
        match (state, event) {
            (Breaker::HalfOpen { failed_trials }, TrialEvent::Tripped) => {
                let failed_trials = failed_trials.saturating_add(1);
                if failed_trials >= self.max_failed_trials {
                    Breaker::Retired
                } else {
                    Breaker::Open { failed_trials }
                }
            }
            (Breaker::Retired, TrialEvent::Tripped) => Breaker::Retired,
            (_, TrialEvent::Tripped) => Breaker::Open { failed_trials: 0 },
            (Breaker::Open { failed_trials }, TrialEvent::TrialStarted) => {
                Breaker::HalfOpen { failed_trials }
            }
            (s, TrialEvent::TrialStarted) => s,
            (_, TrialEvent::TrialPassed) => Breaker::Closed,
            (_, TrialEvent::Operator(Placement::InService)) => Breaker::Closed,
            (_, TrialEvent::Operator(Placement::OnTrial)) => Breaker::HalfOpen { failed_trials: 0 },
            (_, TrialEvent::Operator(Placement::OutOfService)) => Breaker::Held,
        }
    }

    /// Whether a unit of work, given a `draw` uniform over `u64`, goes to the child on
    /// trial: with probability `share`.
    pub fn serves_trial(&self, draw: u64) -> bool {
        Self::fraction(draw) < self.share
    }

    /// A draw as a fraction in `[0, 1)`: its top 53 bits, exact in an `f64`.
    pub fn fraction(draw: u64) -> f64 {
        (draw >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether a trial's checks have passed: every check not in dry run answered pass on
    /// its most recent evaluation (an inconclusive one has not passed yet).
    pub fn passed(states: &[CheckState]) -> bool {
        states
            .iter()
            .filter(|s| !s.dry_run)
            .all(|s| s.verdict == Verdict::Pass)
            && states.iter().any(|s| !s.dry_run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TrialPolicy {
        TrialPolicy {
            cool_down: Duration::from_secs(30),
            max_cool_down: Duration::from_secs(600),
            max_failed_trials: 3,
            share: 0.25,
        }
    }

    #[test]
    fn a_tripped_child_is_tried_and_each_failed_trial_doubles_the_wait_until_it_is_retired() {
        let p = policy();
        let mut s = p.next(Breaker::Closed, TrialEvent::Tripped);
        assert_eq!(s, Breaker::Open { failed_trials: 0 });
        let mut waits = vec![];
        while let Breaker::Open { failed_trials } = s {
            waits.push(p.cool_down_after(failed_trials).as_secs());
            s = p.next(s, TrialEvent::TrialStarted);
            assert_eq!(s, Breaker::HalfOpen { failed_trials });
            s = p.next(s, TrialEvent::Tripped);
        }
        assert_eq!(waits, [30, 60, 120]);
        assert_eq!(s, Breaker::Retired);
        // A passed trial closes it and forgets the failures.
        let s = p.next(
            Breaker::HalfOpen { failed_trials: 2 },
            TrialEvent::TrialPassed,
        );
        assert_eq!(s, Breaker::Closed);
        assert_eq!(
            p.next(s, TrialEvent::Tripped),
            Breaker::Open { failed_trials: 0 }
        );
    }

    #[test]
    fn an_operator_decides_over_the_rules() {
        let p = policy();
        for from in [
            Breaker::Closed,
            Breaker::Open { failed_trials: 1 },
            Breaker::HalfOpen { failed_trials: 1 },
            Breaker::Retired,
        ] {
            assert_eq!(
                p.next(from, TrialEvent::Operator(Placement::OutOfService)),
                Breaker::Held
            );
            assert_eq!(
                p.next(from, TrialEvent::Operator(Placement::InService)),
                Breaker::Closed
            );
        }
        // Held: no trial starts by itself.
        assert_eq!(
            p.next(Breaker::Held, TrialEvent::TrialStarted),
            Breaker::Held
        );
    }

    #[test]
    fn the_wait_is_bounded() {
        let p = policy();
        assert_eq!(p.cool_down_after(5), Duration::from_secs(600));
        assert_eq!(p.cool_down_after(u32::MAX), Duration::from_secs(600));
    }

    #[test]
    fn the_share_of_draws_that_go_to_the_trial_is_the_configured_share() {
        let p = policy();
        let mut x: u64 = 0x243f_6a88_85a3_08d3;
        let n = 100_000;
        let mut hits = 0;
        for _ in 0..n {
            // splitmix64
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            hits += u32::from(p.serves_trial(z));
        }
        let share = f64::from(hits) / f64::from(n);
        // Five standard deviations of a binomial share at n = 100 000.
        assert!(
            (share - 0.25).abs() < 5.0 * (0.25f64 * 0.75 / 100_000.0).sqrt(),
            "{share}"
        );
        let none = TrialPolicy { share: 0.0, ..p };
        let all = TrialPolicy { share: 1.0, ..p };
        assert!(!none.serves_trial(0) && all.serves_trial(u64::MAX));
    }
}
