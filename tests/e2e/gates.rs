//! Promotion gates through a running node: a build moved from `testing` to `shadow`
//! first passes its red-team suite against stand-ins (never its real endpoint); a
//! failure is a 409 naming the check and the value, and every run is journaled with its
//! figures and counted.

use crate::act::journal_bodies;
use axon_harness::{expect_problem, TestNode};
use serde_json::{json, Value};

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

fn lane(n: &TestNode, name: &str) -> String {
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
                &[("driver", driver), ("gate", "redteam"), ("outcome", outcome)]
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
