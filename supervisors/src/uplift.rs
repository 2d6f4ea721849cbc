//! Whether a driver on trial delivers less than the live driver it would replace: the
//! utilities each realized over the same span, compared by a one-sided Mann-Whitney U
//! (Wilcoxon rank-sum) test. The candidate is worse only where the test says so at the
//! configured confidence; a sample too small to tell, or two samples with no spread at
//! all, is not evidence that it is worse.

use serde::Serialize;
use statrs::stats_tests::mannwhitneyu::{mannwhitneyu, MannWhitneyUMethod};
use statrs::stats_tests::Alternative;

/// The comparison of one candidate with the incumbent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Uplift {
    /// Utilities of the candidate's calls, and of the incumbent's.
    pub candidate_calls: usize,
    pub incumbent_calls: usize,
    pub candidate_mean: Option<f64>,
    pub incumbent_mean: Option<f64>,
    /// The U statistic of the incumbent's sample (large when the candidate ranks low).
    pub u: Option<f64>,
    /// The chance of a difference at least this much in the candidate's disfavour if
    /// the two delivered alike (`None` where the test cannot be made).
    pub p_value: Option<f64>,
    pub confidence: f64,
    /// True when the candidate is worse at `confidence`.
    pub worse: bool,
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Compares the candidate's realized utilities with the incumbent's; non-finite values
/// are left out. `confidence` is between 0.5 and 1 (0.95: worse when p < 0.05).
pub fn compare(candidate: &[f64], incumbent: &[f64], confidence: f64) -> Uplift {
    let c: Vec<f64> = candidate
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let i: Vec<f64> = incumbent
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let spread = c
        .iter()
        .chain(&i)
        .any(|v| Some(*v) != c.first().or(i.first()).copied());
    // With no spread the ranks are all tied: the two delivered exactly alike.
    let test = if spread {
        // H1: the candidate's utilities are stochastically less than the incumbent's.
        // Always the normal approximation: the exact method enumerates every split of
        // the ranks, which small samples without ties make astronomically many.
        mannwhitneyu(
            &c,
            &i,
            MannWhitneyUMethod::AsymptoticInclContinuityCorrection,
            Alternative::Less,
        )
        .ok()
        .filter(|(_, p)| p.is_finite())
    } else {
        None
    };
    let (u, p_value) = match test {
        Some((u, p)) => (Some(u), Some(p)),
        None => (None, None),
    };
    Uplift {
        candidate_calls: c.len(),
        incumbent_calls: i.len(),
        candidate_mean: mean(&c),
        incumbent_mean: mean(&i),
        u,
        p_value,
        confidence,
        worse: p_value.is_some_and(|p| p < 1.0 - confidence),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// `n` utilities, uniform on [low, low + 1), from `seed`.
    fn sample(seed: u64, n: usize, low: f64) -> Vec<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| low + rng.random::<f64>()).collect()
    }

    #[test]
    fn a_candidate_worse_by_a_known_difference_is_found_worse() {
        for seed in 0..20 {
            let r = compare(&sample(seed, 60, -0.4), &sample(seed + 100, 200, 0.0), 0.95);
            assert!(r.worse, "{r:?}");
            assert!(r.p_value.unwrap() < 0.05);
            assert!(r.candidate_mean < r.incumbent_mean);
        }
    }

    #[test]
    fn a_candidate_as_good_or_better_is_not_worse_and_chance_alone_rarely_says_so() {
        for seed in 0..20 {
            let better = compare(&sample(seed, 60, 0.3), &sample(seed + 100, 200, 0.0), 0.95);
            assert!(!better.worse, "{better:?}");
        }
        // Drawn alike, the test calls the candidate worse about 5% of the time at 0.95.
        let worse = (0..400)
            .filter(|&seed| {
                compare(&sample(seed, 60, 0.0), &sample(seed + 1000, 200, 0.0), 0.95).worse
            })
            .count();
        assert!((5..=40).contains(&worse), "{worse} of 400");
    }

    #[test]
    fn samples_without_spread_or_too_small_to_tell_are_not_evidence_of_worse() {
        let same = compare(&[1.0; 30], &[1.0; 90], 0.95);
        assert!(!same.worse && same.p_value.is_none(), "{same:?}");
        let none = compare(&[], &[1.0, 0.5], 0.95);
        assert!(!none.worse && none.candidate_mean.is_none(), "{none:?}");
        let odd = compare(&[f64::NAN, 0.2], &[f64::INFINITY, 0.9], 0.95);
        assert_eq!((odd.candidate_calls, odd.incumbent_calls), (1, 1));
        // Every call failed for the candidate and none for the incumbent.
        let failing = compare(&[0.0; 30], &[1.0; 90], 0.95);
        assert!(failing.worse, "{failing:?}");
    }
}
