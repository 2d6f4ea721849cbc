//! A user's wasm module through the harness: loaded from its manifest, called through
//! `/v1/act`, replayed offline from the module the node kept; a module that loops is
//! stopped (by its fuel, or by the watchdog), and the node and its other drivers keep
//! answering.

use axon_harness::{wait_until, NodeStatus, TestNode, ECHO, LENIENT_SLO};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// The manifest of driver `name` running `drivers/examples/<module>.wat`, compiled into
/// `dir`.
pub(crate) fn wasm_manifest(dir: &Path, name: &str, module: &str, fuel: u64) -> String {
    let wat = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("drivers/examples/{module}.wat"));
    let bytes = wat::parse_file(&wat).unwrap();
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let path = dir.join(format!("{module}.wasm"));
    std::fs::write(&path, &bytes).unwrap();
    format!(
        r#"name = "{name}"
version = "1.0.0"
kind = "wasm"
capability = "urn:axon:cap:{name}"
effect = "write"
risk = "low"
max_blast_radius = 0
idempotent = true
lane = "live"
{LENIENT_SLO}[cost]
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
fuel = {fuel}
memory_bytes = 1048576
timeout_ms = 2000
"#,
        path.display()
    )
}

#[test]
fn a_users_module_acts_through_the_one_door_and_replays_from_the_kept_module() {
    let modules = tempfile::tempdir().unwrap();
    let n = TestNode::builder()
        .driver(&wasm_manifest(modules.path(), "mine", "dice", 10_000_000))
        .driver(&wasm_manifest(modules.path(), "looper", "spin", 1_000_000))
        .start();
    let res = n.act("urn:axon:cap:mine", &json!({"roll": 1}));
    let status = res.status();
    let v: Value = res.json().unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["output"].as_str().unwrap().len(), 48, "{v}");
    let action = v["action_id"].as_str().unwrap().to_owned();
    let a = n.action(&action).unwrap();
    assert!(
        a["capsule"]["state"]["fuel_used"].as_u64().unwrap() > 0,
        "{a}"
    );
    // The manifest's own copy of the module goes; the node kept it by its hash.
    drop(modules);
    assert_eq!(n.replay(&action).unwrap(), v["output"]);
    // A restarted incarnation runs the kept copy too.
    assert_eq!(n.post_admin("/v1/supervision/mine/restart").status(), 202);
    wait_until("mine is restarted", Duration::from_secs(10), || {
        n.actor("mine")
            .is_some_and(|a| a.restarts_total == 1 && a.status == NodeStatus::Running)
    })
    .unwrap();
    let v: Value = n
        .act("urn:axon:cap:mine", &json!({"roll": 2}))
        .json()
        .unwrap();
    assert_eq!(v["status"], "ok", "{v}");

    // A module that never ends is stopped by its fuel: a failed action, and the node,
    // its journal and the other drivers keep answering.
    let v: Value = n.act("urn:axon:cap:looper", &json!(null)).json().unwrap();
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("fuel"), "{v}");
    assert_eq!(
        n.metric(
            "axon_wasm_stops_total",
            &[("driver", "looper"), ("cause", "fuel")]
        ),
        Some(2.0)
    );
    let v: Value = n.act(ECHO, &json!("still here")).json().unwrap();
    assert_eq!(
        (v["status"].as_str(), &v["output"]),
        (Some("ok"), &json!("still here"))
    );
    assert_eq!(n.get("/healthz").status(), 200);
}

#[test]
fn modules_that_bomb_shout_escape_sleep_or_outrun_the_watchdog_fail_their_calls_and_the_node_keeps_answering(
) {
    let modules = tempfile::tempdir().unwrap();
    let mut b = TestNode::builder();
    for module in ["grow", "loud", "escape", "sleep"] {
        b = b.driver(&wasm_manifest(modules.path(), module, module, 10_000_000));
    }
    // Fuel for far longer than its timeout: the wall-time watchdog stops it.
    let spin = wasm_manifest(modules.path(), "spin", "spin", 100_000_000_000)
        .replace("timeout_ms = 2000", "timeout_ms = 100");
    let n = b.driver(&spin).start();
    for (module, says, cause) in [
        ("grow", "memory limit", "memory"),
        ("loud", "max_stdout_bytes", "stdout"),
        ("escape", "exited with code 1", "exit"),
        ("sleep", "exited with code 58", "exit"),
        ("spin", "past its timeout of 100 ms", "timeout"),
    ] {
        let v: Value = n
            .act(&format!("urn:axon:cap:{module}"), &json!(null))
            .json()
            .unwrap();
        assert_eq!(v["status"], "failed", "{module}: {v}");
        assert!(
            v["reason"].as_str().unwrap().contains(says),
            "{module}: {v}"
        );
        // A failed call is an outcome, not a failure of the driver's actor.
        assert_eq!(n.actor(module).unwrap().restarts_total, 0, "{module}");
        let v: Value = n.act(ECHO, &json!(module)).json().unwrap();
        assert_eq!(v["output"], json!(module));
        // Counted by cause: the twin's run and the action's, each stopped the same way;
        // the other causes are shown at zero.
        let stops = |cause| {
            n.metric(
                "axon_wasm_stops_total",
                &[("driver", module), ("cause", cause)],
            )
        };
        assert_eq!(stops(cause), Some(2.0), "{module}");
        assert_eq!(stops("fuel"), Some(0.0), "{module}");
    }
    assert_eq!(n.get("/healthz").status(), 200);
}
