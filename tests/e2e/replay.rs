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

/// A node with the defaults whose data directory is `dir`.
fn node_in(dir: &std::path::Path) -> TestNode {
    let dir = dir.to_owned();
    TestNode::builder()
        .config(move |c| c.data_dir = dir.clone())
        .start()
}

#[test]
fn echo_calls_replay_bit_for_bit() {
    let data = tempfile::tempdir().unwrap();
    let node = node_in(data.path());
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

/// The replay capsules of the journal's `result` entries, as stored, in log order.
fn stored_capsules(node: &TestNode) -> Vec<Value> {
    crate::act::journal_bodies(node, "result")
        .into_iter()
        .map(|b| b["capsule"].clone())
        .collect()
}

/// A build's manifest is journaled once, on the build's first lane change: the capsules of
/// its calls name it by artifact hash, `GET /v1/actions/{id}` answers the capsule with it
/// put back (ready to replay), and `axon replay` finds it in the journal.
#[test]
fn a_builds_manifest_is_journaled_once_and_its_capsules_name_it() {
    let data = tempfile::tempdir().unwrap();
    let node = node_in(data.path());
    let mut actions = vec![];
    for n in 0..3 {
        let v: Value = node.echo(&json!({"n": n})).json().unwrap();
        actions.push(v["action_id"].as_str().unwrap().to_owned());
    }
    let echo = axon_drivers::echo::descriptor();
    let firsts: Vec<Value> = crate::act::journal_bodies(&node, "lane_change")
        .into_iter()
        .filter(|c| c["artifact_hash"] == echo.artifact_hash.as_str())
        .collect();
    assert_eq!(firsts.len(), 1, "{firsts:?}");
    let manifest = firsts[0]["manifest"].clone();
    assert_eq!(manifest["name"], "echo");
    assert_eq!(
        axon_protocols::journal::hex(&axon_drivers::manifest::artifact_hash(
            &axon_drivers::manifest::Manifest::from_recorded(&manifest).unwrap()
        )),
        echo.artifact_hash
    );
    let stored = stored_capsules(&node);
    assert_eq!(stored.len(), 3);
    for c in &stored {
        assert_eq!(
            c["environment"]["driver_artifact_hash"],
            echo.artifact_hash.as_str()
        );
        assert!(c["environment"].get("manifest").is_none(), "{c}");
    }
    let shown: Value = node
        .get_admin(&format!("/v1/actions/{}", actions[0]))
        .json()
        .unwrap();
    assert_eq!(shown["capsule"]["environment"]["manifest"], manifest);
    assert!(shown["result"]["capsule"]["environment"]
        .get("manifest")
        .is_none());
    assert_eq!(node.replay(&actions[0]).unwrap(), json!({"n": 0}));
    node.shutdown();
    for a in &actions {
        let (code, out) = replay(data.path(), a);
        assert_eq!(code, 0, "{out}");
    }
}

/// A build whose first lane change an older Axon journaled without the manifest keeps the
/// manifest in each of its capsules, and its actions still replay.
#[test]
fn a_build_whose_manifest_the_journal_lacks_keeps_it_in_each_capsule() {
    use axon_actors::journal::{Journal, JournalRequest, NewEntry};
    use axon_protocols::lane::{Lane, LaneChange};
    let data = tempfile::tempdir().unwrap();
    let echo = axon_drivers::echo::descriptor();
    {
        let mut cfg = axon::config::Config::defaults();
        cfg.data_dir = data.path().to_owned();
        let mut j = Journal::open(
            axon::node::journal_config(&cfg),
            axon_supervisors::SystemClock::shared(),
            Default::default(),
        )
        .unwrap();
        let change = LaneChange {
            driver: "echo".into(),
            artifact_hash: echo.artifact_hash.clone(),
            from: None,
            to: Lane::Live,
            capability: echo.capability.clone(),
            who: "manifest".into(),
            reason: "first load of build, by an Axon that kept manifests in capsules".into(),
            rule: None,
            evidence: None,
            displaced: vec![],
            manifest: None,
        };
        let appended = axon_supervisors::Worker::handle_batch(
            &mut j,
            vec![JournalRequest::Append(NewEntry::new(
                axon_protocols::journal::EntryKind::LaneChange,
                vec![],
                &change,
            ))],
            &mut axon_supervisors::WorkerContext::new("journal", None),
        )
        .unwrap();
        assert!(appended[0].is_ok());
    }
    let node = node_in(data.path());
    let v: Value = node.echo(&json!({"old": true})).json().unwrap();
    let action = v["action_id"].as_str().unwrap().to_owned();
    // No second first load: the build's lane comes from the entry above.
    assert_eq!(crate::act::journal_bodies(&node, "lane_change").len(), 1);
    let stored = stored_capsules(&node);
    assert_eq!(stored[0]["environment"]["manifest"]["name"], "echo");
    assert_eq!(node.replay(&action).unwrap(), json!({"old": true}));
    node.shutdown();
    let (code, out) = replay(data.path(), &action);
    assert_eq!(code, 0, "{out}");
}
