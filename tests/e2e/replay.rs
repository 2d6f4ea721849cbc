//! `axon replay`: every action of the echo driver is journaled with its replay capsule
//! (in its `result` entry); on a stopped node's data directory the action replays, by
//! action id or barcode, to the same output bytes.

use axon_harness::TestNode;
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
