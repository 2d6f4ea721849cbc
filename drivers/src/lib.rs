//! `axon-drivers`: the driver ABI and the drivers Axon ships, the plugins that touch the
//! world.
//!
//! What is here: the [`Driver`](driver::Driver) trait and the
//! [`DriverDescriptor`](descriptor::DriverDescriptor) every driver answers with; driver
//! manifests (`config/drivers/*.toml`), checked with the file and key named, and the one
//! function that computes a driver's artifact hash; obligations (JSON Schemas over the
//! arguments, the intent and the outcome); the host that runs one driver instance as a
//! supervised worker ([`host`]); and the `echo` driver, which answers every
//! request with its input and touches nothing, so it is the probe operators and tests use
//! to measure the path through a supervised actor.
//!
//! Architecture invariant: a driver carries no policy. Whether and when it may act is
//! decided before a request reaches it; a driver only does what it is asked, inside the
//! limits of its host.

pub mod descriptor;
pub mod driver;
pub mod echo;
pub mod host;
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

/// Re-runs a recorded push of a built-in driver offline: `input` is the recorded intent,
/// and the answer is the output the push gives now.
pub fn replay(driver: &str, input: &Value, _seeds: &[u64]) -> Result<Value, String> {
    let manifest = builtin_manifest(driver)
        .ok_or_else(|| format!("no built-in driver named {driver:?} can be replayed"))?;
    let intent: axon_protocols::intent::AxonIntent = serde_json::from_value(input.clone())
        .map_err(|e| format!("the recorded input is not an intent: {e}"))?;
    let mut host = host::DriverHost::new(manifest);
    let mut cx = axon_supervisors::WorkerContext::new(driver, None);
    use axon_supervisors::Worker;
    match host.handle(
        host::DriverCall::Push(std::sync::Arc::new(intent), host::Ticket::new()),
        &mut cx,
    ) {
        Ok(host::DriverAnswer::Outcome(o)) => Ok(o.output),
        Ok(host::DriverAnswer::Refused(v)) => {
            Err(format!("the recorded intent is refused now: {v}"))
        }
        Ok(other) => Err(format!("a push answered {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}
