//! `axon-drivers`: the driver ABI and the drivers Axon ships, the plugins that touch the
//! world.
//!
//! What is here: the [`Driver`](driver::Driver) trait and the
//! [`DriverDescriptor`](descriptor::DriverDescriptor) every driver answers with; driver
//! manifests (`config/drivers/*.toml`), checked with the file and key named, and the one
//! function that computes a driver's artifact hash; obligations (JSON Schemas over the
//! arguments, the intent and the outcome); and the `echo` driver, which answers every
//! request with its input and touches nothing, so it is the probe operators and tests use
//! to measure the path through a supervised actor.
//!
//! Architecture invariant: a driver carries no policy. Whether and when it may act is
//! decided before a request reaches it; a driver only does what it is asked, inside the
//! limits of its host.

pub mod descriptor;
pub mod driver;
pub mod echo;
pub mod manifest;
pub mod obligations;

use serde_json::Value;

/// The manifest of a built-in driver, by name.
pub fn builtin_manifest(driver: &str) -> Option<&'static manifest::Manifest> {
    static ECHO: std::sync::LazyLock<manifest::Manifest> =
        std::sync::LazyLock::new(manifest::Manifest::builtin_echo);
    match driver {
        "echo" => Some(&ECHO),
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
