//! `axon replay`: finds an action's replay capsule in a stopped node's journal, re-runs the
//! driver call offline with the recorded input, seeds and clock, and compares the output
//! bytes (canonical JSON) with the recorded ones.

use anyhow::{anyhow, bail, Context};
use axon_actors::journal::{ActionId, Barcode, Filter, Journal, JournalConfig, Reader};
use axon_protocols::capsule::ReplayCapsule;
use axon_protocols::journal::{hex, Entry, EntryKind};
use axon_protocols::lane::LaneChange;
use std::fmt;

/// What a replay found.
pub struct ReplayReport {
    pub action_id: String,
    pub driver: String,
    pub index: u64,
    pub recorded: String,
    pub replayed: String,
    pub matches: bool,
    /// Differences between the recorded environment and this one.
    pub environment_notes: Vec<String>,
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.environment_notes {
            writeln!(f, "replay: note: {n}")?;
        }
        if self.matches {
            write!(
                f,
                "replay: ok: action {} ({} driver, entry {}) replays to the same output (blake3 {})",
                self.action_id, self.driver, self.index, self.recorded
            )
        } else {
            write!(
                f,
                "replay: MISMATCH (non-determinism): action {} ({} driver, entry {}) recorded output blake3 {}, replayed output blake3 {}",
                self.action_id, self.driver, self.index, self.recorded, self.replayed
            )
        }
    }
}

/// The replay capsule entry `index` records: a `result` entry's `capsule` (an action of
/// `POST /v1/act` whose driver answered), or a `capsule` entry's body.
fn capsule_of(j: &Reader, index: u64) -> anyhow::Result<Option<ReplayCapsule>> {
    let stored = j.entry(index)?;
    let entry = || Entry::from_bytes(&stored.bytes).context("reading the entry");
    let body = match stored.kind {
        EntryKind::Capsule => entry()?.body,
        EntryKind::Result => match entry()?.body.get_mut("capsule") {
            Some(c) => c.take(),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    let capsule: ReplayCapsule = serde_json::from_value(body)
        .with_context(|| format!("entry {index} does not hold a replay capsule"))?;
    Ok(Some(capsule))
}

/// Finds the capsule of `action` (an action id or a capsule entry's barcode).
fn find(j: &Reader, action: &str) -> anyhow::Result<(u64, ReplayCapsule)> {
    if let Ok(code) = action.parse::<Barcode>() {
        for index in j.indexes_of_barcode(&code)? {
            if let Some(c) = capsule_of(j, index)? {
                return Ok((index, c));
            }
        }
        bail!("no entry with barcode {action} holds a replay capsule");
    }
    let Ok(id) = action.parse::<ActionId>() else {
        bail!("{action:?} is neither an action id (32 hex digits) nor a barcode (12 of a-z, 2-7)");
    };
    // The action's entries from the log's table of actions; its capsule is the newest.
    for index in j.indexes_of_action(&id)?.into_iter().rev() {
        if let Some(c) = capsule_of(j, index)? {
            if c.action_id == action {
                return Ok((index, c));
            }
        }
    }
    bail!("no capsule records action {action}");
}

/// The manifest of build `artifact_hash`, from the build's first lane change (the one
/// entry that holds it); `None` when no lane change holds it.
fn build_manifest(
    j: &Reader,
    artifact_hash: &str,
) -> anyhow::Result<Option<std::sync::Arc<serde_json::Value>>> {
    let filter = Filter {
        kind: Some(EntryKind::LaneChange),
        since: None,
        until: None,
    };
    let mut after = None;
    loop {
        let (entries, next) = j.query(&filter, after, usize::MAX)?;
        for stored in entries {
            let body = Entry::from_bytes(&stored.bytes)
                .with_context(|| format!("reading entry {}", stored.index))?
                .body;
            let change: LaneChange = serde_json::from_value(body)
                .with_context(|| format!("entry {} is not a lane change", stored.index))?;
            if let Some(m) = change.manifest_of(artifact_hash) {
                return Ok(Some(m.clone()));
            }
        }
        match next {
            Some(n) => after = Some(n),
            None => return Ok(None),
        }
    }
}

/// Compares a capsule's recorded output with `replayed`.
pub fn compare(
    capsule: &ReplayCapsule,
    index: u64,
    replayed: &serde_json::Value,
) -> anyhow::Result<ReplayReport> {
    let canon = |v: &serde_json::Value| -> anyhow::Result<String> {
        let bytes = axon_protocols::canonical::to_vec(v).map_err(|e| anyhow!("{e}"))?;
        Ok(hex(blake3::hash(&bytes).as_bytes()))
    };
    let (recorded, replayed) = (canon(&capsule.output)?, canon(replayed)?);
    let mut notes = vec![];
    if capsule.environment.binary_version != env!("CARGO_PKG_VERSION") {
        notes.push(format!(
            "recorded by axon {}, replayed by {}",
            capsule.environment.binary_version,
            env!("CARGO_PKG_VERSION")
        ));
    }
    // The driver replays from the manifest the capsule recorded (checked against the
    // recorded artifact hash); a build of this binary may differ from it.
    let current = axon_drivers::builtin_manifest(&capsule.driver)
        .map(|m| hex(&axon_drivers::manifest::artifact_hash(m)));
    if capsule.environment.manifest.is_none()
        && current.as_deref() != Some(capsule.environment.driver_artifact_hash.as_str())
    {
        notes.push(format!(
            "the {} driver's artifact differs from the recorded one",
            capsule.driver
        ));
    }
    Ok(ReplayReport {
        action_id: capsule.action_id.clone(),
        driver: capsule.driver.clone(),
        index,
        matches: recorded == replayed,
        recorded,
        replayed,
        environment_notes: notes,
    })
}

/// Replays `action` from the journal in `cfg.dir`.
pub fn replay(cfg: &JournalConfig, action: &str) -> anyhow::Result<ReplayReport> {
    let mut j = Journal::open_read_only(cfg.clone()).map_err(|e| anyhow!("{e}"))?;
    j.use_index_if_current();
    // Offline there is time to read every entry the index does not cover.
    let reader = j.reader().with_scan_max(usize::MAX);
    let (index, mut capsule) = find(&reader, action)?;
    // A capsule names its build's manifest by artifact hash once the journal holds it.
    if capsule.environment.manifest.is_none() {
        capsule.environment.manifest =
            build_manifest(&reader, &capsule.environment.driver_artifact_hash)?;
        if capsule.environment.manifest.is_none()
            && axon_drivers::builtin_manifest(&capsule.driver).is_none()
        {
            bail!(
                "the journal holds no manifest for build {} of driver {} (no lane change of that build carries one)",
                capsule.environment.driver_artifact_hash,
                capsule.driver
            );
        }
    }
    let modules = crate::node::modules_dir(cfg);
    let replayed = axon_drivers::replay(&capsule, &modules).map_err(|e| anyhow!("{e}"))?;
    compare(&capsule, index, &replayed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axon_protocols::capsule::{Environment, RecordedClock};
    use serde_json::json;

    #[test]
    fn a_different_output_is_reported_with_both_hashes() {
        let capsule = ReplayCapsule {
            action_id: "0".repeat(32),
            driver: "echo".into(),
            environment: Environment {
                binary_version: env!("CARGO_PKG_VERSION").into(),
                config_hash: "x".into(),
                driver_artifact_hash: axon_drivers::echo::descriptor().artifact_hash.clone(),
                manifest: None,
            },
            input: json!({"capability": "urn:axon:cap:echo", "args": {"a": 1}}),
            output: json!({"a": 1}),
            seeds: vec![],
            state: None,
            clock: RecordedClock {
                started: "1970-01-01T00:00:00.000Z".into(),
                finished: "1970-01-01T00:00:00.000Z".into(),
                duration_us: 0,
            },
        };
        let same = compare(&capsule, 3, &json!({"a": 1})).unwrap();
        assert!(same.matches && same.environment_notes.is_empty());
        let other = compare(&capsule, 3, &json!({"a": 2})).unwrap();
        assert!(!other.matches);
        assert_ne!(other.recorded, other.replayed);
        let text = other.to_string();
        assert!(
            text.contains("MISMATCH")
                && text.contains(&other.recorded)
                && text.contains(&other.replayed)
        );
    }
}
