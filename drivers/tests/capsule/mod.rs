//! What the driver tests share: one call made directly on a driver, and its replay
//! capsule as the act pipeline would journal it.
#![allow(dead_code)]

use axon_drivers::driver::{act_checked, Call, Driver, Outcome};
use axon_drivers::manifest::Manifest;
use axon_protocols::capsule::{Environment, RecordedClock, ReplayCapsule};
use axon_protocols::intent::AxonIntent;

/// The capsule of `m`'s driver answering `input` for `action_id` with `out`.
pub fn capsule(m: &Manifest, action_id: &str, input: &AxonIntent, out: &Outcome) -> ReplayCapsule {
    ReplayCapsule {
        action_id: action_id.into(),
        driver: m.name.clone(),
        environment: Environment {
            binary_version: "test".into(),
            config_hash: "test".into(),
            driver_artifact_hash: m.descriptor().artifact_hash,
            manifest: serde_json::from_slice(m.canonical())
                .ok()
                .map(std::sync::Arc::new),
        },
        input: serde_json::to_value(input).unwrap(),
        output: out.output.clone(),
        seeds: vec![],
        state: out.replay.clone(),
        clock: RecordedClock {
            started: "2026-12-01T00:00:00.000Z".into(),
            finished: "2026-12-01T00:00:00.000Z".into(),
            duration_us: 0,
        },
    }
}

/// `intent` acted on by `d` as action `action_id`, its obligations checked (they must hold).
pub fn act(d: &mut dyn Driver, m: &Manifest, action_id: &str, intent: &AxonIntent) -> Outcome {
    act_checked(d, &m.obligations, &Call { action_id, intent }).unwrap()
}
