//! The `wasm` driver: modules from `drivers/examples/` (WAT, compiled here) run sandboxed —
//! fuel and the wall-time watchdog stop a loop, a memory bomb hits its limit, files and
//! sockets are out of reach, hostile descriptor calls get errors, an oversized answer
//! fails the call, a module that is not the pinned one is refused at load — and a recorded
//! call replays bit for bit with the same fuel, from any thread.

mod capsule;

use axon_drivers::driver::{Call, Driver, Outcome, Prediction, Status};
use axon_drivers::host::Prepared;
use axon_drivers::manifest::{Manifest, ManifestError};
use axon_drivers::wasm::{Compiled, InNode, Stops, WasmDriver};
use axon_protocols::intent::AxonIntent;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// `drivers/examples/<name>.wat` compiled, written into `dir` as `<blake3>.wasm` (where a
/// replay looks for it); its path and hash.
fn module(dir: &Path, name: &str) -> (PathBuf, String) {
    let wat = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.wat"));
    let bytes = wat::parse_file(&wat).unwrap_or_else(|e| panic!("{}: {e}", wat.display()));
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let path = dir.join(format!("{hash}.wasm"));
    std::fs::write(&path, &bytes).unwrap();
    (path, hash)
}

fn manifest_text(module: &Path, hash: &str, wasm: &str) -> String {
    format!(
        r#"name = "dice"
version = "1.0.0"
kind = "wasm"
capability = "urn:axon:cap:dice"
effect = "write"
risk = "low"
max_blast_radius = 0
idempotent = true
[cost]
expected_ms = 1
units = 0.0
[limits]
deadline_ms = 5000
concurrency = 1
rate_per_second = 1000
max_payload_bytes = 65536
mailbox_capacity = 16
[wasm]
module = "{}"
blake3 = "{hash}"
{wasm}
"#,
        module.display()
    )
}

const LIMITS: &str =
    "fuel = 10000000\nmemory_bytes = 1048576\nmax_stdout_bytes = 65536\ntimeout_ms = 2000";

fn manifest(dir: &Path, name: &str, wasm: &str) -> Manifest {
    let (path, hash) = module(dir, name);
    Manifest::parse(&manifest_text(&path, &hash, wasm), &dir.join("m.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn driver(m: &Manifest) -> WasmDriver {
    let compiled = Compiled::load(m.wasm_settings.as_ref().unwrap(), m.folder(), 1).unwrap();
    WasmDriver::new(m.descriptor(), &compiled).unwrap()
}

fn intent(args: Value) -> AxonIntent {
    serde_json::from_value(json!({"capability": "urn:axon:cap:dice", "args": args})).unwrap()
}

const ID: &str = "00000000000000000000000000000abc";

fn act(d: &mut dyn Driver, m: &Manifest, args: Value) -> Outcome {
    capsule::act(d, m, ID, &intent(args))
}

/// The capsule of a call of `m`'s driver on `args`.
fn capsule_of(m: &Manifest, args: Value, out: &Outcome) -> axon_protocols::capsule::ReplayCapsule {
    capsule::capsule(m, ID, &intent(args), out)
}

#[test]
fn a_module_answers_its_request_predicts_the_same_way_and_replays_with_the_same_fuel() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "echo", LIMITS);
    let mut d = driver(&m);
    let args = json!({"sku": "w-1", "n": [1, 2.5]});
    let out = act(&mut d, &m, args.clone());
    assert_eq!(out.status, Status::Ok, "{out:?}");
    assert_eq!(
        out.output,
        json!({"mode": "push", "action_id": ID, "args": args})
    );
    let fuel = out.replay.as_ref().unwrap()["fuel_used"].as_u64().unwrap();
    assert!(fuel > 0, "{out:?}");
    let i = intent(args.clone());
    match d.predict(&Call {
        action_id: ID,
        intent: &i,
    }) {
        Prediction::Expected { output, .. } => assert_eq!(output["mode"], "predict"),
        other => panic!("{other:?}"),
    }
    // Replayed from the module kept by its hash, with the recorded state.
    let c = capsule_of(&m, args.clone(), &out);
    assert_eq!(axon_drivers::replay(&c, dir.path()).unwrap(), out.output);
    // A replay that does not use the recorded fuel is caught.
    let mut forged = c.clone();
    forged.state.as_mut().unwrap()["fuel_used"] = json!(fuel + 1);
    let err = axon_drivers::replay(&forged, dir.path()).unwrap_err();
    assert!(err.contains("units of fuel"), "{err}");
    // So is one recorded under another host ABI (what the module's descriptors answer).
    let mut other = c.clone();
    other.state.as_mut().unwrap()["host_abi"] = json!(0);
    let err = axon_drivers::replay(&other, dir.path()).unwrap_err();
    assert!(err.contains("host ABI 0"), "{err}");
}

#[test]
fn a_call_made_inside_an_async_runtime_runs_there_as_it_runs_anywhere() {
    // An actor's handler runs inside an async runtime: the module's descriptors must not
    // need a runtime of their own, and the answer is the one a plain thread gets.
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "echo", LIMITS);
    let mut d = driver(&m);
    let args = json!({"sku": "w-1"});
    let plain = act(&mut d, &m, args.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let inside = rt.block_on(async { act(&mut d, &m, args.clone()) });
    assert_eq!(inside.status, Status::Ok, "{inside:?}");
    assert_eq!(inside.output, plain.output);
    assert_eq!(
        inside.replay.as_ref().unwrap()["fuel_used"],
        plain.replay.as_ref().unwrap()["fuel_used"]
    );
}

#[test]
fn the_wall_clock_a_module_first_sees_is_its_nodes() {
    use axon_supervisors::{ManualClock, SharedClock};
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "echo", LIMITS);
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let clock: SharedClock = std::sync::Arc::new(ManualClock::new(at));
    let node = InNode {
        stops: Stops::default(),
        clock,
    };
    let compiled = Compiled::load(m.wasm_settings.as_ref().unwrap(), m.folder(), 1)
        .unwrap()
        .in_node(&node);
    let mut d = WasmDriver::new(m.descriptor(), &compiled).unwrap();
    let out = act(&mut d, &m, json!(null));
    assert_eq!(out.status, Status::Ok, "{out:?}");
    assert_eq!(
        out.replay.as_ref().unwrap()["wall_ns"],
        json!("1800000000000000000")
    );
}

#[test]
fn hostile_descriptor_calls_get_errors_and_write_or_read_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "stray", LIMITS);
    let out = act(&mut driver(&m), &m, json!(null));
    // Each call got the error expected, and stdout holds only the one good write.
    assert_eq!(out.status, Status::Ok, "{out:?}");
    assert_eq!(out.output, json!({"ok": true}));
}

#[test]
fn what_a_module_sees_of_time_and_chance_is_recorded_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "dice", LIMITS);
    let mut d = driver(&m);
    let first = act(&mut d, &m, json!(1));
    assert_eq!(first.status, Status::Ok, "{first:?}");
    let hex = first.output.as_str().unwrap().to_owned();
    assert_eq!(hex.len(), 48, "{hex}");
    // The random part is seeded by the action: the same action draws the same bytes.
    let again = act(&mut d, &m, json!(1));
    assert_eq!(again.output.as_str().unwrap()[..16], hex[..16]);
    // And the replay sees the recorded clock too: the whole answer, bit for bit.
    assert_eq!(
        axon_drivers::replay(&capsule_of(&m, json!(1), &first), dir.path()).unwrap(),
        first.output
    );
}

#[test]
fn a_loop_is_stopped_by_fuel_and_without_enough_fuel_by_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "spin", LIMITS);
    let out = act(&mut driver(&m), &m, json!(null));
    assert_eq!(out.status, Status::Failed);
    assert!(
        out.reason
            .as_deref()
            .unwrap()
            .contains("ran out of its fuel"),
        "{out:?}"
    );
    assert_eq!(out.replay.as_ref().unwrap()["replayable"], true);
    // Fuel for far longer than the timeout: the wall-time watchdog stops it.
    let m = manifest(
        dir.path(),
        "spin",
        "fuel = 100000000000\nmemory_bytes = 1048576\ntimeout_ms = 100",
    );
    let out = act(&mut driver(&m), &m, json!(null));
    assert_eq!(out.status, Status::Failed);
    assert!(
        out.reason.as_deref().unwrap().contains("timeout"),
        "{out:?}"
    );
    assert_eq!(out.replay.as_ref().unwrap()["replayable"], false);
}

#[test]
fn the_module_compiled_at_load_serves_every_instance_and_restart_under_one_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        "spin",
        "fuel = 100000000000\nmemory_bytes = 1048576\ntimeout_ms = 100",
    );
    let prepared = Prepared::new(std::sync::Arc::new(m.clone()), 2).unwrap();
    // Two incarnations one after the other (a restart), each of two instances calling at
    // once: every call is stopped by the watchdog, and never early, though both run on
    // one engine whose epoch moves for both.
    for incarnation in 0..2 {
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let mut d = prepared.driver().unwrap();
                let m = m.clone();
                std::thread::spawn(move || {
                    let started = std::time::Instant::now();
                    let out = act(&mut *d, &m, json!(null));
                    (out, started.elapsed())
                })
            })
            .collect();
        for call in calls {
            let (out, took) = call.join().unwrap();
            assert_eq!(out.status, Status::Failed, "incarnation {incarnation}");
            assert!(
                out.reason.as_deref().unwrap().contains("timeout"),
                "incarnation {incarnation}: {out:?}"
            );
            assert!(
                took >= std::time::Duration::from_millis(100),
                "stopped after {took:?}, before its timeout of 100 ms"
            );
        }
    }
    // A module that does not compile is refused when it is prepared, not at a start.
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0\x01").unwrap();
    let hash = blake3::hash(&std::fs::read(&bad).unwrap())
        .to_hex()
        .to_string();
    let m = Manifest::parse(
        &manifest_text(&bad, &hash, LIMITS),
        &dir.path().join("m.toml"),
    )
    .unwrap();
    let e = Prepared::new(std::sync::Arc::new(m), 1).unwrap_err();
    assert!(e.contains("does not compile"), "{e}");
}

#[test]
fn a_module_cannot_sleep_past_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "sleep", LIMITS);
    let out = act(&mut driver(&m), &m, json!(null));
    // poll_oneoff answers notsup (58) at once: nothing blocks, no real timer decides.
    assert_eq!(out.status, Status::Failed, "{out:?}");
    assert!(
        out.reason
            .as_deref()
            .unwrap()
            .ends_with("exited with code 58"),
        "{out:?}"
    );
}

#[test]
fn a_call_the_watchdog_stopped_is_refused_by_replay() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        "spin",
        "fuel = 100000000000\nmemory_bytes = 1048576\ntimeout_ms = 100",
    );
    let out = act(&mut driver(&m), &m, json!(null));
    let err = axon_drivers::replay(&capsule_of(&m, json!(null), &out), dir.path()).unwrap_err();
    assert!(err.contains("not replayable"), "{err}");
}

#[test]
fn a_memory_bomb_hits_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "grow", LIMITS);
    let out = act(&mut driver(&m), &m, json!(null));
    assert_eq!(out.status, Status::Failed);
    assert!(
        out.reason.as_deref().unwrap().contains("growing memory"),
        "{out:?}"
    );
}

#[test]
fn files_and_sockets_are_out_of_reach() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "escape", LIMITS);
    let out = act(&mut driver(&m), &m, json!(null));
    assert_eq!(out.status, Status::Failed, "{out:?}");
    let reason = out.reason.unwrap();
    assert!(reason.ends_with("exited with code 1"), "{reason}");
}

#[test]
fn an_answer_larger_than_its_bound_fails_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "loud", LIMITS);
    let out = act(&mut driver(&m), &m, json!(null));
    assert_eq!(out.status, Status::Failed);
    assert!(
        out.reason.as_deref().unwrap().contains("max_stdout_bytes"),
        "{out:?}"
    );
}

#[test]
fn a_module_that_is_not_the_pinned_one_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = module(dir.path(), "echo");
    let (_, other) = module(dir.path(), "spin");
    match Manifest::parse(
        &manifest_text(&path, &other, LIMITS),
        &dir.path().join("m.toml"),
    ) {
        Err(ManifestError::Key { key, reason, .. }) => {
            assert_eq!(key, "wasm.blake3");
            assert!(reason.contains("refused"), "{reason}");
        }
        other => panic!("expected wasm.blake3 refused, got {other:?}"),
    }
    // A watchdog that could fire after the action's deadline is refused too: such a
    // module would be left in doubt instead of failed.
    let (path, hash) = module(dir.path(), "echo");
    let late = LIMITS.replace("timeout_ms = 2000", "timeout_ms = 4000");
    match Manifest::parse(
        &manifest_text(&path, &hash, &late),
        &dir.path().join("m.toml"),
    ) {
        Err(ManifestError::Key { key, .. }) => assert_eq!(key, "wasm.timeout_ms"),
        other => panic!("expected wasm.timeout_ms refused, got {other:?}"),
    }
    // A changed limit is another build.
    let a = manifest(dir.path(), "echo", LIMITS);
    let b = manifest(
        dir.path(),
        "echo",
        &LIMITS.replace("fuel = 10000000", "fuel = 20000000"),
    );
    assert_ne!(a.descriptor().artifact_hash, b.descriptor().artifact_hash);
}
