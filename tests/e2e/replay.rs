//! `axon replay`: every action of the echo driver is journaled with its replay capsule
//! (in its `result` entry); on a stopped node's data directory the action replays, by
//! action id or barcode, to the same output bytes.

use axon_harness::{TestNode, LENIENT_SLO};
use serde_json::{json, Value};
use std::process::Command;

fn replay(data_dir: &std::path::Path, action: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_axon"))
        .args(["replay", action, "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn echo_calls_replay_bit_for_bit() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_owned();
    let node = TestNode::builder()
        .config(move |c| c.data_dir = dir.clone())
        .start();
    let input = json!({"z": [1, 2.5, "three"], "a": {"nested": true}, "emoji": "😀"});
    let res = node.echo(&input);
    assert_eq!(res.status(), 200);
    let v: Value = res.json().unwrap();
    assert_eq!(v["output"], input);
    let (action, barcode, index) = (
        v["action_id"].as_str().unwrap().to_owned(),
        v["barcode"].as_str().unwrap().to_owned(),
        v["index"].as_u64().unwrap(),
    );
    let entry: Value = node
        .get(&format!("/v1/journal/entries/{index}"))
        .json()
        .unwrap();
    assert_eq!(entry["kind"], "result");
    assert!(node.echo(&json!("another")).status().is_success());
    node.shutdown();

    let (code, out) = replay(data.path(), &action);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "replay: ok: action {action} (echo driver, entry {index})"
        )),
        "{out}"
    );
    let (code, out) = replay(data.path(), &barcode);
    assert_eq!(code, 0, "{out}");
    let (code, out) = replay(data.path(), &"f".repeat(32));
    assert_eq!(code, 1);
    assert!(out.contains("no capsule records action"), "{out}");
    let (code, out) = replay(data.path(), "not-an-id");
    assert_eq!(code, 1);
    assert!(out.contains("neither an action id"), "{out}");
}

#[test]
fn a_file_action_replays_bit_for_bit_in_a_scratch_directory() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_owned();
    let manifest = crate::common::LEDGER_MANIFEST;
    let node = TestNode::builder()
        .driver(manifest)
        .config(move |c| c.data_dir = dir.clone())
        .start();
    let cap = "urn:axon:cap:ledger.append";
    let mut last = Value::Null;
    for n in 0..3 {
        let res = node.act(
            cap,
            &json!({"file": "book.log", "record": {"n": n, "s": "ü"}}),
        );
        assert_eq!(res.status(), 200);
        last = res.json().unwrap();
        assert_eq!(last["status"], "ok", "{last}");
    }
    assert!(last["output"]["offset"].as_u64().unwrap() > 0);
    // A name outside its directory never reaches the driver.
    for name in ["../escape.log", "/etc/passwd", "sub/dir.log", ".hidden"] {
        let v = axon_harness::expect_problem(
            node.act(cap, &json!({"file": name, "record": 1})),
            422,
            "obligation-violated",
        );
        assert_eq!(v["path"], "/args/file", "{name}: {v}");
    }
    node.shutdown();
    let action = last["action_id"].as_str().unwrap();
    let (code, out) = replay(data.path(), action);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("replay: ok") && out.contains("ledger driver"),
        "{out}"
    );
}

#[test]
fn an_http_action_replays_bit_for_bit_from_its_recorded_exchange() {
    let server = crate::loopback::Loopback::start(|r, _| {
        if r.target.contains("fail") {
            crate::loopback::Reply::json(500, r#"{"error":"down"}"#)
        } else {
            crate::loopback::Reply::json(201, r#"{"id":"o-1","big":9007199254740993}"#)
        }
    })
    .expect("a loopback server");
    std::env::set_var("E2E_ORDERS_TOKEN", "not-in-any-capsule");
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_owned();
    let manifest = format!(
        r#"name = "orders"
version = "1.0.0"
kind = "http"
capability = "urn:axon:cap:orders.create"
effect = "write"
risk = "high"
max_blast_radius = 1
idempotent = false
lane = "live"
{LENIENT_SLO}[cost]
expected_ms = 20
units = 1.0
[limits]
deadline_ms = 5000
concurrency = 1
rate_per_second = 100
max_payload_bytes = 65536
mailbox_capacity = 16
[http]
timeout_ms = 2000
[http.request]
method = "POST"
url = "{}/orders/{{kind}}"
body = "args"
[http.request.headers]
authorization = {{ secret = "TOKEN" }}
[http.secrets.TOKEN]
env = "E2E_ORDERS_TOKEN"
"#,
        server.base
    );
    let node = TestNode::builder()
        .driver(&manifest)
        .config(move |c| c.data_dir = dir.clone())
        .start();
    let cap = "urn:axon:cap:orders.create";
    let v: Value = node
        .act(cap, &json!({"kind": "tea", "qty": 2}))
        .json()
        .unwrap();
    assert_eq!(v["status"], "ok", "{v}");
    // Its answer holds an integer no double holds: kept as text, flagged, journaled.
    assert!(v["output"]["not_canonical"].is_string(), "{v}");
    let action = v["action_id"].as_str().unwrap().to_owned();
    // An endpoint that answers 500 is a failed action, not a failure of the node.
    let failed: Value = node
        .act(cap, &json!({"kind": "fail", "qty": 1}))
        .json()
        .unwrap();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["reason"], "the endpoint answered 500");
    assert_eq!(node.actor("orders").unwrap().restarts_total, 0);
    // The endpoint received the secret; the journal never did.
    assert_eq!(
        server.seen()[0].header("authorization"),
        Some("not-in-any-capsule")
    );
    let all: Value = node.get("/v1/journal/entries?limit=1000").json().unwrap();
    assert!(!all.to_string().contains("not-in-any-capsule"));
    let bytes: Vec<u8> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                e["bytes_b64"].as_str().unwrap(),
            )
            .unwrap()
        })
        .collect();
    assert!(!String::from_utf8_lossy(&bytes).contains("not-in-any-capsule"));
    node.shutdown();

    // Offline: no network, no secret; the recorded exchange answers.
    std::env::remove_var("E2E_ORDERS_TOKEN");
    let before = server.seen().len();
    let (code, out) = replay(data.path(), &action);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("replay: ok") && out.contains("orders driver"),
        "{out}"
    );
    assert_eq!(server.seen().len(), before);
}

#[test]
fn a_wasm_action_replays_bit_for_bit_with_the_same_fuel_from_the_kept_module() {
    let modules = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_owned();
    let node = TestNode::builder()
        .driver(&crate::wasm::wasm_manifest(
            modules.path(),
            "dice",
            "dice",
            10_000_000,
        ))
        .config(move |c| c.data_dir = dir.clone())
        .start();
    let v: Value = node.act("urn:axon:cap:dice", &json!(1)).json().unwrap();
    assert_eq!(v["status"], "ok", "{v}");
    let action = v["action_id"].as_str().unwrap().to_owned();
    node.shutdown();
    // The module the manifest named is gone; the node kept it by its hash.
    drop(modules);
    let (code, out) = replay(data.path(), &action);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("replay: ok") && out.contains("dice driver"),
        "{out}"
    );
}
