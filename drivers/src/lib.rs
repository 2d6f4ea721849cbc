//! `axon-drivers`: the driver ABI and the drivers Axon ships, the plugins that touch the
//! world.
//!
//! What is here: the [`Driver`](driver::Driver) trait and the
//! [`DriverDescriptor`](descriptor::DriverDescriptor) every driver answers with; driver
//! manifests (`config/drivers/*.toml`), checked with the file and key named, and the one
//! function that computes a driver's artifact hash; obligations (JSON Schemas over the
//! arguments, the intent and the outcome); the host that runs one driver instance as a
//! supervised worker ([`host`]); the `file`, `http` and sandboxed `wasm` kinds; and the
//! `echo` driver, which answers every
//! request with its input and touches nothing, so it is the probe operators and tests use
//! to measure the path through a supervised actor.
//!
//! Architecture invariant: a driver carries no policy. Whether and when it may act is
//! decided before a request reaches it; a driver only does what it is asked, inside the
//! limits of its host.

pub mod descriptor;
pub mod driver;
pub mod echo;
pub mod file;
pub mod host;
pub mod http;
pub mod loopback;
pub mod manifest;
pub mod obligations;
pub mod probecraft;
pub mod redteam;
pub mod tls;
pub mod wasm;
mod wasm_stdio;

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

/// Re-runs the push `capsule` recorded, offline: the driver is rebuilt from the manifest
/// the capsule holds (the compiled-in one for a capsule that holds none), checked against
/// the recorded artifact hash, and set up as the capsule says it found the world (a file
/// driver in a scratch directory; a wasm driver with the module its manifest pins, found
/// by its hash in `modules` — the node keeps every module it loads there, as
/// `<blake3>.wasm`). Answers the output the call gives now.
pub fn replay(
    capsule: &axon_protocols::capsule::ReplayCapsule,
    modules: &std::path::Path,
) -> Result<Value, String> {
    let manifest = match &capsule.environment.manifest {
        Some(m) => manifest::Manifest::from_recorded(m).map_err(|e| e.to_string())?,
        None => builtin_manifest(&capsule.driver).cloned().ok_or_else(|| {
            format!(
                "no built-in driver named {:?} can be replayed",
                capsule.driver
            )
        })?,
    };
    let hash = axon_protocols::journal::hex(&manifest::artifact_hash(&manifest));
    if hash != capsule.environment.driver_artifact_hash {
        return Err(format!(
            "the recorded manifest hashes to {hash}, not to the recorded artifact {}",
            capsule.environment.driver_artifact_hash
        ));
    }
    let intent: axon_protocols::intent::AxonIntent = serde_json::from_value(capsule.input.clone())
        .map_err(|e| format!("the recorded input is not an intent: {e}"))?;
    let call = driver::Call {
        action_id: &capsule.action_id,
        intent: &intent,
    };
    match (manifest.kind, &manifest.file_settings) {
        (manifest::Kind::File, Some(settings)) => {
            let scratch = Scratch::new()?;
            file::replay_in(
                manifest.descriptor(),
                settings,
                &scratch.0,
                &call,
                capsule.state.as_ref().unwrap_or(&Value::Null),
            )
        }
        (manifest::Kind::Http, _) => {
            let settings = manifest
                .http_settings
                .as_ref()
                .ok_or("an http driver's manifest has no [http]")?;
            let mut driver = http::HttpDriver::replaying(
                manifest.descriptor(),
                settings,
                capsule.state.as_ref().unwrap_or(&Value::Null),
            )?;
            let out = driver::act_checked(&mut driver, &manifest.obligations, &call)
                .map_err(|v| format!("the recorded intent is refused now: {v}"))?;
            match driver.strayed() {
                Some(how) => Err(how.to_owned()),
                None => Ok(out.output),
            }
        }
        (manifest::Kind::Wasm, _) => {
            let settings = manifest
                .wasm_settings
                .as_ref()
                .ok_or("a wasm driver's manifest has no [wasm]")?;
            let state = capsule.state.as_ref().unwrap_or(&Value::Null);
            if state.get("replayable") == Some(&Value::Bool(false)) {
                return Err(
                    "not replayable: the recorded call was stopped by the wall-time watchdog, which depends on the machine".into(),
                );
            }
            let path = modules.join(format!("{}.wasm", settings.blake3));
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("the module {} cannot be read: {e}", path.display()))?;
            let mut driver =
                wasm::WasmDriver::replaying(manifest.descriptor(), settings, &bytes, state)?;
            let out = driver::act_checked(&mut driver, &manifest.obligations, &call)
                .map_err(|v| format!("the recorded intent is refused now: {v}"))?;
            match driver.strayed() {
                Some(how) => Err(how),
                None => Ok(out.output),
            }
        }
        _ => {
            let mut driver = host::build(&manifest)?;
            let out = driver::act_checked(&mut *driver, &manifest.obligations, &call)
                .map_err(|v| format!("the recorded intent is refused now: {v}"))?;
            Ok(out.output)
        }
    }
}

/// A scratch directory, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "axon-replay-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the scratch directory {}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
