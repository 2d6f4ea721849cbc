//! Promotion gates through a running node: a build moved from `testing` to `shadow`
//! first passes its red-team suite against stand-ins (never its real endpoint); a
//! failure is a 409 naming the check and the value, and every run is journaled with its
//! figures and counted.

use crate::act::journal_bodies;
use axon_harness::{echo_manifest, expect_problem, wait_until, TestNode};
use serde_json::{json, Value};
use std::time::Duration;

/// An http driver for `urn:axon:cap:search.query` whose request sends the header
/// `headers`. Its real endpoint does not exist: the suite never calls it.
fn search_manifest(name: &str, headers: &str) -> String {
    format!(
        r#"name = "{name}"
version = "1.0.0"
kind = "http"
capability = "urn:axon:cap:search.query"
effect = "write"
risk = "low"
max_blast_radius = 1
idempotent = false
[cost]
expected_ms = 50
units = 1.0
[limits]
deadline_ms = 5000
concurrency = 1
rate_per_second = 100
max_payload_bytes = 65536
mailbox_capacity = 16
[obligations.args]
type = "object"
required = ["q"]
properties = {{ q = {{ type = "string", maxLength = 64 }} }}
[[redteam.samples]]
args = {{ q = "axon" }}
reply = {{ status = 200, body = {{ results = [] }} }}
[http]
timeout_ms = 2000
[http.request]
method = "POST"
url = "https://search.invalid/v1/search?q={{q}}"
body = "args"
headers = {{ {headers} }}
"#
    )
}

fn gate_runs(n: &TestNode) -> Vec<Value> {
    journal_bodies(n, "event")
        .into_iter()
        .filter_map(|b| b.get("gate_run").cloned())
        .collect()
}

pub(crate) fn lane(n: &TestNode, name: &str) -> String {
    let v: Value = n.get(&format!("/v1/drivers/{name}")).json().unwrap();
    v["lane"].as_str().unwrap().to_owned()
}

#[test]
fn a_build_enters_shadow_only_after_its_red_team_suite_passes() {
    let n = TestNode::builder()
        .driver(&search_manifest("leaky", r#"x-query = "{q}""#))
        .driver(&search_manifest("careful", r#"x-client = "axon""#))
        .start();
    let promote = |name: &str| {
        n.post_json(
            &format!("/v1/drivers/{name}/promote"),
            &json!({"to": "shadow", "reason": "test: into shadow"}),
        )
    };
    // A header built from an unchecked argument: a hostile value (a line break, say) is
    // neither refused by a precondition nor sent as given.
    let v = expect_problem(promote("leaky"), 409, "promotion-gate-failed");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("redteam gate"), "{detail}");
    assert!(detail.contains("check hostile_value"), "{detail}");
    assert!(detail.contains(r#"{"q":"#), "{detail}");
    assert_eq!(lane(&n, "leaky"), "testing");

    let res = promote("careful");
    assert_eq!(res.status(), 200);
    assert_eq!(lane(&n, "careful"), "shadow");

    // Both runs are journaled with their figures, the failure with its value.
    let runs = gate_runs(&n);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        (runs[0]["driver"].as_str(), runs[0]["passed"].as_bool()),
        (Some("leaky"), Some(false))
    );
    let failure = &runs[0]["report"]["failure"];
    assert_eq!(failure["check"], "hostile_value");
    assert!(failure["value"]["q"].is_string(), "{failure}");
    assert_eq!(
        (runs[1]["driver"].as_str(), runs[1]["passed"].as_bool()),
        (Some("careful"), Some(true))
    );
    let report = &runs[1]["report"];
    assert_eq!(report["samples"], 1);
    assert!(report["violations"].as_u64().unwrap() >= 3, "{report}");
    assert!(report["hostile_exact"].as_u64().unwrap() >= 20, "{report}");
    assert_eq!(runs[1]["into"], "shadow");
    for (driver, outcome) in [("leaky", "failed"), ("careful", "passed")] {
        assert_eq!(
            n.metric(
                "axon_promotion_gates_total",
                &[
                    ("driver", driver),
                    ("gate", "redteam"),
                    ("outcome", outcome)
                ]
            ),
            Some(1.0),
            "{driver}"
        );
    }
    // The lane change of the build that passed is journaled after its gate run.
    let changes = journal_bodies(&n, "lane_change");
    assert!(changes
        .iter()
        .any(|c| c["driver"] == "careful" && c["to"] == "shadow"));
    assert!(!changes
        .iter()
        .any(|c| c["driver"] == "leaky" && c["to"] == "shadow"));
}

/// A live echo driver `p` and a shadow `q` of the same capability, reporting the utility
/// their output holds at `/u` (`p`) and at `q_utility` (`q`), `q` with a shadow period of
/// 10 of its own (the node's is 100). Their twins predict 1 whatever they deliver: their own uplift checks
/// (against their twins) only measure, so the trial turns on the comparison of the two.
fn live_and_candidate(q_utility: &str) -> TestNode {
    let with_utility = |m: String, pointer: &str| {
        format!("utility = \"{pointer}\"\n{m}").replace(
            "[slo.uplift]\nfailure_limit = 10000\n",
            "[slo.uplift]\ndry_run = true\n",
        )
    };
    let q = echo_manifest("q", 256)
        .replace("urn:axon:cap:q", "urn:axon:cap:p")
        .replace("lane = \"live\"", "lane = \"shadow\"");
    let q = format!(
        "{}\n[promotion]\nmin_shadow_calls = 10\n",
        with_utility(q, q_utility)
    );
    TestNode::builder()
        .config(|c| c.drivers.trial_share = 0.5)
        .driver(&with_utility(echo_manifest("p", 256), "/u"))
        .driver(&q)
        .start()
}

fn act(n: &TestNode, id: &str, args: Value) -> Value {
    let v = act_while_trial_may_end(n, id, args);
    assert_eq!(v["status"], "ok", "{v}");
    v
}

/// An intent sent while q's trial may conclude: the move it makes may block it.
fn act_while_trial_may_end(n: &TestNode, id: &str, args: Value) -> Value {
    let res = n.post_json(
        "/v1/act",
        &json!({"capability": "urn:axon:cap:p", "intent_id": id, "args": args}),
    );
    assert_eq!(res.status(), 200);
    res.json().unwrap()
}

fn promote_live(n: &TestNode) -> reqwest::blocking::Response {
    n.post_json(
        "/v1/drivers/q/promote",
        &json!({"to": "live", "reason": "test: q earns live"}),
    )
}

/// Sends intents, the `i`th with the arguments `args(i)`, until `q` has left its
/// trial; answers its lane.
fn run_trial(n: &TestNode, args: impl Fn(u64) -> Value) -> String {
    run_trial_of(n, "q", |i| {
        act_while_trial_may_end(n, &format!("t-{i}"), args(i))
    })
}

/// Sends intents (`send(i)`, at most 400) while driver `name` is on trial, each answered
/// `ok` or blocked by the move that ends the trial, then waits for its trial to
/// conclude; answers its lane.
pub(crate) fn run_trial_of(n: &TestNode, name: &str, mut send: impl FnMut(u64) -> Value) -> String {
    for i in 0..400 {
        if lane(n, name) != "trial" {
            break;
        }
        let v = send(i);
        assert!(axon_harness::ok_or_moved_before_dispatch(&v), "{v}");
    }
    wait_until(
        &format!("{name}'s trial concluded"),
        Duration::from_secs(10),
        || lane(n, name) != "trial",
    )
    .unwrap();
    lane(n, name)
}

/// Answers the body of `res`, an operator's promotion to live that put the build on
/// trial.
pub(crate) fn put_on_trial(res: reqwest::blocking::Response) -> Value {
    assert_eq!(res.status(), 200);
    let v: Value = res.json().unwrap();
    assert_eq!(
        (&v["change"]["to"], &v["change"]["rule"]),
        (&json!("trial"), &json!("promotion.trial")),
        "{v}"
    );
    v
}

/// The mirrored calls of driver `name` whose predictions were compared (agreed or not).
pub(crate) fn shadow_compared(n: &TestNode, name: &str) -> u64 {
    let card: Value = n
        .get(&format!("/v1/drivers/{name}/scorecard"))
        .json()
        .unwrap();
    let s = &card["total"]["shadow"];
    s["agreed"].as_u64().unwrap() + s["disagreed"].as_u64().unwrap()
}

#[test]
fn into_live_a_build_needs_a_shadow_period_then_a_trial_not_worse_than_the_live_driver() {
    let n = live_and_candidate("/u");
    // No shadow period yet: refused, the check and the figures named.
    let v = expect_problem(promote_live(&n), 409, "promotion-gate-failed");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("shadow gate: check min_calls"), "{detail}");
    assert_eq!(lane(&n, "q"), "shadow");
    // Ten live pushes, each mirrored to q, whose twin agrees.
    for i in 0..10 {
        act(&n, &format!("s-{i}"), json!({"u": 1}));
    }
    wait_until("q predicted them all", Duration::from_secs(10), || {
        shadow_compared(&n, "q") >= 10
    })
    .unwrap();
    let v = put_on_trial(promote_live(&n));
    assert_eq!(v["change"]["evidence"]["live"], "p");
    assert_eq!(v["change"]["evidence"]["shadow"]["agreed"], 10);
    // On its trial an operator cannot make it live: it has to pass.
    let v = expect_problem(promote_live(&n), 409, "illegal-lane-move");
    assert!(
        v["detail"].as_str().unwrap().contains("by passing it"),
        "{v}"
    );
    // It serves half the intents, and both deliver utilities spread alike: it goes live,
    // and p goes to shadow in the same entry.
    let spread = |i: u64| json!({"u": ((i * 37) % 100) as f64 / 100.0});
    assert_eq!(run_trial(&n, spread), "live");
    assert_eq!(lane(&n, "p"), "shadow");
    let passed = journal_bodies(&n, "lane_change")
        .into_iter()
        .find(|c| c["driver"] == "q" && c["to"] == "live")
        .unwrap();
    assert_eq!(passed["rule"], "trial.passed");
    assert_eq!(passed["displaced"][0]["driver"], "p");
    let uplift = &passed["evidence"]["uplift"];
    assert_eq!(uplift["worse"], false, "{uplift}");
    assert!(
        uplift["candidate_calls"].as_u64().unwrap() >= 20,
        "{uplift}"
    );
    assert!(
        uplift["incumbent_calls"].as_u64().unwrap() >= 20,
        "{uplift}"
    );
    // Compared by the test, not waved through.
    assert!(uplift["p_value"].as_f64().unwrap() >= 0.05, "{uplift}");
    let uplift_run = gate_runs(&n)
        .into_iter()
        .find(|r| r["gate"] == "uplift")
        .unwrap();
    assert_eq!(
        (uplift_run["passed"].as_bool(), uplift_run["live"].as_str()),
        (Some(true), Some("p"))
    );
    // Both shadow gate runs are journaled and counted.
    let runs: Vec<Value> = gate_runs(&n)
        .into_iter()
        .filter(|r| r["gate"] == "shadow")
        .collect();
    assert_eq!(
        runs.iter()
            .map(|r| r["passed"].as_bool())
            .collect::<Vec<_>>(),
        [Some(false), Some(true)]
    );
    for outcome in ["failed", "passed"] {
        assert_eq!(
            n.metric(
                "axon_promotion_gates_total",
                &[("driver", "q"), ("gate", "shadow"), ("outcome", outcome)]
            ),
            Some(1.0)
        );
    }
}

#[test]
fn a_trial_that_delivers_less_than_the_live_driver_goes_back_to_shadow() {
    let n = live_and_candidate("/v");
    for i in 0..10 {
        act(&n, &format!("s-{i}"), json!({"u": 1, "v": 0.1}));
    }
    wait_until("q predicted them all", Duration::from_secs(10), || {
        shadow_compared(&n, "q") >= 10
    })
    .unwrap();
    // An operator's move onto the trial goes through the same shadow gate.
    let res = n.post_json(
        "/v1/drivers/q/promote",
        &json!({"to": "trial", "reason": "test: q on trial"}),
    );
    assert_eq!(res.status(), 200);
    let v: Value = res.json().unwrap();
    assert_eq!(v["change"]["evidence"]["shadow"]["agreed"], 10, "{v}");
    // q realizes 0.1 for each push where p realizes 1: worse by the rank test.
    assert_eq!(run_trial(&n, |_| json!({"u": 1, "v": 0.1})), "shadow");
    assert_eq!(lane(&n, "p"), "live");
    let failed = journal_bodies(&n, "lane_change")
        .into_iter()
        .find(|c| c["driver"] == "q" && c["from"] == "trial")
        .unwrap();
    assert_eq!(failed["rule"], "trial.uplift");
    let uplift = &failed["evidence"]["uplift"];
    assert_eq!(uplift["worse"], true, "{uplift}");
    assert!(uplift["p_value"].as_f64().unwrap() < 0.05, "{uplift}");
    assert!(
        failed["reason"].as_str().unwrap().contains("Mann-Whitney"),
        "{failed}"
    );
    assert_eq!(
        n.metric(
            "axon_driver_trials_total",
            &[("driver", "q"), ("outcome", "failed")]
        ),
        Some(1.0)
    );
}

/// An OpenAPI 3 document with one search operation, served at `base`.
fn search_api(base: &str) -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Qora", "version": "1.4.0"},
        "servers": [{"url": base}],
        "paths": {
            "/search": {
                "get": {
                    "operationId": "qora_search",
                    "parameters": [
                        {"name": "q", "in": "query", "required": true, "schema": {"type": "string", "maxLength": 64}}
                    ]
                }
            }
        }
    })
}

#[test]
fn a_synthesized_driver_is_loaded_from_the_data_directory_and_earns_shadow_by_its_red_team() {
    let data = tempfile::tempdir().unwrap();
    let doc = data.path().join("qora.json");
    std::fs::write(&doc, search_api("http://search.invalid/v1").to_string()).unwrap();
    let synthesize = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_axon"))
            .args(["drivers", "synthesize", "--openapi"])
            .arg(&doc)
            .args(["--operation", "qora_search", "--data-dir"])
            .arg(data.path())
            .output()
            .unwrap()
    };
    let out = synthesize();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let file = data.path().join("drivers/qora-search.toml");
    assert!(String::from_utf8_lossy(&out.stdout).contains(file.to_str().unwrap()));
    let toml = std::fs::read_to_string(&file).unwrap();
    assert!(
        toml.contains("http://search.invalid/v1/search?q={q}"),
        "{toml}"
    );
    // Never a second driver of one name, nor over an existing file.
    let again = synthesize();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already named by"),
        "{again:?}"
    );
    let over = std::process::Command::new(env!("CARGO_BIN_EXE_axon"))
        .args([
            "drivers",
            "synthesize",
            "--operation",
            "qora_search",
            "--openapi",
        ])
        .arg(&doc)
        .arg("--out")
        .arg(&doc)
        .output()
        .unwrap();
    assert_eq!(over.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&over.stderr).contains("never overwritten"),
        "{over:?}"
    );

    let dir = data.path().to_owned();
    let start = || {
        let dir = dir.clone();
        TestNode::builder()
            .config(move |c| c.data_dir = dir)
            .start()
    };
    let n = start();
    let v: Value = n.get("/v1/drivers/qora-search").json().unwrap();
    assert_eq!(v["lane"], "testing");
    assert_eq!(
        v["descriptor"]["capability"],
        "urn:axon:cap:probecraft.qora-search"
    );
    let res = n.post_json(
        "/v1/drivers/qora-search/promote",
        &json!({"to": "shadow", "reason": "test: grown, red-teamed"}),
    );
    assert_eq!(res.status(), 200);
    let run = gate_runs(&n).pop().unwrap();
    assert_eq!(
        (run["gate"].as_str(), run["passed"].as_bool()),
        (Some("redteam"), Some(true))
    );
    assert!(
        run["report"]["hostile_exact"].as_u64().unwrap() >= 20,
        "{run}"
    );
    n.shutdown();
    // After a restart it is loaded again, its lane from the journal.
    let n = start();
    assert_eq!(lane(&n, "qora-search"), "shadow");
}
