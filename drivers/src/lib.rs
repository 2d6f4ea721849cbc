//! `axon-drivers`: the drivers Axon ships, the plugins that touch the world.
//!
//! What is here now: the `echo` driver, which answers every request with its input. It
//! touches nothing, so it is the probe operators and tests use to measure the path through
//! a supervised actor (`POST /v1/echo`).
//!
//! Architecture invariant: a driver carries no policy. Whether and when it may act is
//! decided before a request reaches it; a driver only does what it is asked, inside the
//! limits of its host.

pub mod echo;

use serde_json::Value;

/// The built-in drivers' identities: name, version and the hash that stands for their
/// artifact in replay capsules.
pub fn builtin_artifact(driver: &str) -> Option<&'static str> {
    match driver {
        "echo" => Some("builtin:echo@1"),
        _ => None,
    }
}

/// Re-runs a recorded call of a built-in driver with the recorded seeds and clock, offline,
/// and returns its output.
pub fn replay(driver: &str, input: &Value, _seeds: &[u64]) -> Result<Value, String> {
    match driver {
        "echo" => {
            use axon_supervisors::{Worker, WorkerContext};
            let mut echo = echo::Echo::default();
            echo.handle(input.clone(), &mut WorkerContext::new("echo", None))
                .map_err(|e| e.to_string())
        }
        other => Err(format!(
            "no built-in driver named {other:?} can be replayed"
        )),
    }
}
