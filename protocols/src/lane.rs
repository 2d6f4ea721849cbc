//! Driver lanes: where a driver build stands in its rollout, and the moves between them.
//! `live` works like a closed circuit breaker, `shadow` like an open one (a shadow driver
//! sees copies of live traffic and never acts) and `trial` like a half-open one: a driver
//! its supervisor demoted answers a share of the traffic again, on probation.

use serde::{Deserialize, Serialize};

/// Where a driver build stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    Testing,
    Shadow,
    Live,
    /// On probation after an automatic demotion: answers a share of its capability's
    /// traffic as if live, under the same checks.
    Trial,
    Retired,
}

/// Every lane, in rollout order.
pub const LANES: [Lane; 5] = [
    Lane::Testing,
    Lane::Shadow,
    Lane::Live,
    Lane::Trial,
    Lane::Retired,
];

/// A move the rules do not allow, with the ones they do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a driver in {from} cannot move to {to}; from {from} it can move to: {}", legal_list(.legal))]
pub struct IllegalMove {
    pub from: Lane,
    pub to: Lane,
    pub legal: Vec<Lane>,
}

fn legal_list(legal: &[Lane]) -> String {
    legal
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Testing => "testing",
            Lane::Shadow => "shadow",
            Lane::Live => "live",
            Lane::Trial => "trial",
            Lane::Retired => "retired",
        }
    }

    /// The lanes a driver in this lane may move to: `testing → shadow`, `shadow → live`,
    /// `live → shadow` (a demotion), `shadow → testing`, `shadow → trial` (a half-open
    /// trial), `trial → live` (it passed), `trial → shadow` (it failed), any lane
    /// `→ retired`, `retired → testing`.
    pub fn legal_moves(self) -> Vec<Lane> {
        let mut out = match self {
            Lane::Testing => vec![Lane::Shadow],
            Lane::Shadow => vec![Lane::Testing, Lane::Live, Lane::Trial],
            Lane::Live => vec![Lane::Shadow],
            Lane::Trial => vec![Lane::Live, Lane::Shadow],
            Lane::Retired => vec![Lane::Testing],
        };
        if self != Lane::Retired {
            out.push(Lane::Retired);
        }
        out
    }

    /// Checks the move from this lane to `to`.
    pub fn check_move(self, to: Lane) -> Result<(), IllegalMove> {
        let legal = self.legal_moves();
        if legal.contains(&to) {
            Ok(())
        } else {
            Err(IllegalMove {
                from: self,
                to,
                legal,
            })
        }
    }
}

/// One driver build's move, inside a `lane_change` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    pub driver: String,
    /// The build the lane belongs to: lanes are keyed by (driver, artifact hash).
    pub artifact_hash: String,
    /// `None` for a build's first lane.
    pub from: Option<Lane>,
    pub to: Lane,
}

/// The body of a `lane_change` entry. Lanes are rebuilt from these at start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneChange {
    pub driver: String,
    pub artifact_hash: String,
    /// `None` for a build's first lane.
    pub from: Option<Lane>,
    pub to: Lane,
    pub capability: String,
    /// Who decided: `admin` (an operator), `manifest` (a build's first lane) or
    /// `supervisor` (an automatic rule).
    pub who: String,
    pub reason: String,
    /// The rule that fired, for an automatic move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<serde_json::Value>,
    /// The live driver of the same capability moved to `shadow` by a promotion to `live`,
    /// in the same entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub displaced: Vec<Move>,
    /// The build's manifest (its canonical JSON, parsed), on the entry of the build's
    /// first load: the one place the journal holds it. The replay capsules of the build's
    /// calls name it by `artifact_hash` instead of carrying it each time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<std::sync::Arc<serde_json::Value>>,
}

impl LaneChange {
    /// The manifest of build `artifact_hash`, when this entry is the one that holds it.
    pub fn manifest_of(&self, artifact_hash: &str) -> Option<&std::sync::Arc<serde_json::Value>> {
        self.manifest
            .as_ref()
            .filter(|_| self.artifact_hash == artifact_hash)
    }

    /// Every move this entry makes: the one asked for, then the displaced ones.
    pub fn moves(&self) -> impl Iterator<Item = Move> + '_ {
        std::iter::once(Move {
            driver: self.driver.clone(),
            artifact_hash: self.artifact_hash.clone(),
            from: self.from,
            to: self.to,
        })
        .chain(self.displaced.iter().cloned())
    }
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_listed_moves_are_legal() {
        let legal = [
            (Lane::Testing, Lane::Shadow),
            (Lane::Shadow, Lane::Live),
            (Lane::Live, Lane::Shadow),
            (Lane::Shadow, Lane::Testing),
            (Lane::Shadow, Lane::Trial),
            (Lane::Trial, Lane::Live),
            (Lane::Trial, Lane::Shadow),
            (Lane::Trial, Lane::Retired),
            (Lane::Testing, Lane::Retired),
            (Lane::Shadow, Lane::Retired),
            (Lane::Live, Lane::Retired),
            (Lane::Retired, Lane::Testing),
        ];
        for from in LANES {
            for to in LANES {
                let expected = legal.contains(&(from, to));
                assert_eq!(from.check_move(to).is_ok(), expected, "{from} → {to}");
            }
        }
    }

    #[test]
    fn a_refused_move_names_the_legal_ones() {
        let e = Lane::Testing.check_move(Lane::Live).unwrap_err();
        assert_eq!(e.legal, vec![Lane::Shadow, Lane::Retired]);
        assert_eq!(
            e.to_string(),
            "a driver in testing cannot move to live; from testing it can move to: shadow, retired"
        );
        // Staying put is not a move.
        assert!(Lane::Live.check_move(Lane::Live).is_err());
    }

    #[test]
    fn every_lane_is_reachable_from_testing_and_live_is_never_reached_skipping_shadow() {
        // A trial is entered only from shadow, so live is still never reached skipping it.
        for from in LANES {
            if from.check_move(Lane::Trial).is_ok() {
                assert_eq!(from, Lane::Shadow);
            }
        }
        // Breadth-first over the legal moves from `testing`.
        let mut seen = vec![Lane::Testing];
        let mut i = 0;
        while i < seen.len() {
            for next in seen[i].legal_moves() {
                if !seen.contains(&next) {
                    seen.push(next);
                }
            }
            i += 1;
        }
        seen.sort();
        assert_eq!(seen, LANES.to_vec());
        for from in LANES {
            if from.check_move(Lane::Live).is_ok() {
                assert!(
                    matches!(from, Lane::Shadow | Lane::Trial),
                    "live is reached only from shadow or a trial"
                );
            }
        }
    }
}
