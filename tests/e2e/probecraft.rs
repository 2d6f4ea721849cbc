//! T-PROBECRAFT-PROMOTE: a driver grown from an OpenAPI operation by
//! `POST /v1/probecraft/synthesize` is written to the data directory, journaled and loaded
//! into the running node at once, in lane `testing`; it reaches `shadow` only through its
//! red-team suite (run against a stand-in, never the real service), and `live` only
//! through an operator's promotion and a passed trial; then `/v1/act` reaches the real
//! loopback service through it, and after a restart it is still live.

use crate::act::journal_bodies;
use crate::loopback::{Loopback, Reply};
use axon_harness::{expect_problem, expect_problem_saying, wait_until, TestNode};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const CAPABILITY: &str = "urn:axon:cap:probecraft.qora-search";

/// An OpenAPI 3 document with a search and a count operation, served at `base`.
fn qora_api(base: &str) -> Value {
    let q = json!([{"name": "q", "in": "query", "required": true, "schema": {"type": "string", "maxLength": 64}}]);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Qora", "version": "1.4.0"},
        "servers": [{"url": base}],
        "paths": {
            "/search": {"get": {"operationId": "qora_search", "parameters": q}},
            "/count": {"get": {"operationId": "QoraCount", "parameters": q}}
        }
    })
}

/// The postcondition of a search: the service's answer holds `hits`.
fn answers_hits() -> Value {
    json!({"properties": {"output": {"properties": {"body": {"type": "object", "required": ["hits"]}}}}})
}

/// A node on the injected clock (a grown driver takes 10 calls per second: the clock is
/// moved on between calls, never waited on).
fn node(data: &Path, max_added_workers: u64) -> TestNode {
    let dir = data.to_owned();
    TestNode::builder()
        .manual_clock()
        .config(move |c| {
            c.data_dir = dir;
            c.drivers.max_added_workers = max_added_workers;
            // No live driver of the capability: its trial serves every intent of it.
            c.drivers.trial_share = 1.0;
        })
        .start()
}

fn lane(n: &TestNode, name: &str) -> Value {
    n.get(&format!("/v1/drivers/{name}"))
        .json::<Value>()
        .unwrap()["lane"]
        .clone()
}

fn promote(n: &TestNode, name: &str, to: &str) -> reqwest::blocking::Response {
    n.post_json(
        &format!("/v1/drivers/{name}/promote"),
        &json!({"to": to, "reason": format!("test: {name} into {to}")}),
    )
}

fn search(n: &TestNode, id: &str, q: &str) -> Value {
    n.advance(Duration::from_millis(100));
    let res = n.post_json(
        "/v1/act",
        &json!({"capability": CAPABILITY, "intent_id": id, "args": {"q": q}}),
    );
    let status = res.status();
    let v: Value = res.json().unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn t_probecraft_promote_a_grown_driver_earns_live_through_its_gates_and_stays_live() {
    let service = Loopback::start(|_, _| Reply::json(200, r#"{"hits":["axon"]}"#)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let n = node(data.path(), 16);
    let grow = |operation: &str, samples: Value| {
        n.post_json(
            "/v1/probecraft/synthesize",
            &json!({
                "openapi": qora_api(&service.base),
                "operation_id": operation,
                "obligations": {"postcondition": answers_hits()},
                "samples": samples,
            }),
        )
    };
    let res = grow(
        "qora_search",
        json!([{"args": {"q": "axon"}, "reply": {"status": 200, "body": {"hits": []}}}]),
    );
    assert_eq!(res.status(), 201);
    let grown: Value = res.json().unwrap();
    assert_eq!(
        (&grown["driver"], &grown["lane"], &grown["capability"]),
        (&json!("qora-search"), &json!("testing"), &json!(CAPABILITY))
    );
    // Written to the data directory's manifest folder, as answered.
    let file = data.path().join("drivers/qora-search.toml");
    assert_eq!(grown["file"], json!(file));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        grown["manifest"].as_str().unwrap()
    );
    // Journaled, with its build and the manifest as written.
    let record = journal_bodies(&n, "event")
        .into_iter()
        .find_map(|b| b.get("driver_synthesized").cloned())
        .unwrap();
    assert_eq!(record["artifact_hash"], grown["artifact_hash"]);
    assert_eq!(record["operation_id"], "qora_search");
    assert_eq!(record["manifest"], grown["manifest"]);
    // Loaded at once, a child of the drivers supervisor, without a restart.
    let tree = n.tree();
    let drivers = tree.children.iter().find(|c| c.id == "drivers").unwrap();
    let child = drivers
        .children
        .iter()
        .find(|c| c.id == "qora-search")
        .unwrap();
    assert_eq!(child.status, axon_protocols::NodeStatus::Running);
    assert_eq!(lane(&n, "qora-search"), "testing");
    // In testing it serves nothing.
    let v = search(&n, "before", "axon");
    assert_eq!(v["status"], "blocked", "{v}");

    // A second build whose postcondition the service's declared answer breaks: its
    // red-team suite fails on the sample, and the promotion is refused.
    let res = grow(
        "QoraCount",
        json!([{"args": {"q": "axon"}, "reply": {"status": 200, "body": {"count": 3}}}]),
    );
    assert_eq!(res.status(), 201);
    let v = expect_problem(
        promote(&n, "qora-count", "shadow"),
        409,
        "promotion-gate-failed",
    );
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("redteam gate: check sample"), "{detail}");
    assert_eq!(lane(&n, "qora-count"), "testing");

    // The search passes its red-team suite against a stand-in: the real service sees
    // nothing of it.
    let res = promote(&n, "qora-search", "shadow");
    assert_eq!(res.status(), 200);
    assert_eq!(lane(&n, "qora-search"), "shadow");
    assert_eq!(
        service.count(),
        0,
        "the red-team suite reached the real service"
    );
    // No live driver to compare with: an operator's promotion puts it on trial.
    let v = crate::gates::put_on_trial(promote(&n, "qora-search", "live"));
    assert_eq!(
        v["change"]["evidence"]["shadow"],
        "no live driver to compare with"
    );
    // Its trial serves the capability's intents until every check has passed.
    let lane_after = crate::gates::run_trial_of(&n, "qora-search", |i| {
        search(&n, &format!("trial-{i}"), &format!("q {i}"))
    });
    assert_eq!(lane_after, "live");
    // Live: /v1/act reaches the real service through it, the query encoded as sent.
    let v = search(&n, "live-1", "a&b");
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["output"]["body"]["hits"], json!(["axon"]), "{v}");
    let seen = service.seen();
    assert!(
        seen.iter()
            .any(|s| s.method == "GET" && s.target == "/search?q=a%26b"),
        "{:?}",
        seen.iter().map(|s| &s.target).collect::<Vec<_>>()
    );
    let all: Value = n.get("/v1/drivers").json().unwrap();
    assert!(all["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["name"] == "qora-search" && d["lane"] == "live"));
    n.shutdown();

    // After a restart: loaded from the data directory, still live, still reaching it.
    let n = node(data.path(), 16);
    assert_eq!(lane(&n, "qora-search"), "live");
    assert_eq!(lane(&n, "qora-count"), "testing");
    let before = service.count();
    let v = search(&n, "after-restart", "axon");
    assert_eq!(v["status"], "ok", "{v}");
    assert!(service.count() > before);
}

#[test]
fn the_synthesize_route_refuses_what_it_cannot_grow_and_keeps_nothing_of_it() {
    let data = tempfile::tempdir().unwrap();
    // Room for one added worker.
    let n = node(data.path(), 1);
    let api = qora_api("http://qora.invalid/v1");
    let grow = |body: Value| n.post_json("/v1/probecraft/synthesize", &body);
    let dir = data.path().join("drivers");
    let files = || -> Vec<String> {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    expect_problem_saying(
        grow(json!({"openapi": api, "operation_id": "nothing"})),
        422,
        "synthesis-refused",
        "nothing",
    );
    expect_problem_saying(
        grow(json!({"openapi": {"openapi": "2.0"}, "operation_id": "x"})),
        422,
        "synthesis-refused",
        "OpenAPI 3",
    );
    // The argument schema is the operation's, never the caller's.
    expect_problem_saying(
        grow(
            json!({"openapi": api, "operation_id": "qora_search", "obligations": {"args": {"type": "object"}}}),
        ),
        422,
        "synthesis-refused",
        "obligations.args",
    );
    // A sample that does not fit the operation's arguments.
    expect_problem(
        grow(
            json!({"openapi": api, "operation_id": "qora_search", "samples": [{"args": {"z": 1}}]}),
        ),
        422,
        "synthesis-refused",
    );
    // Unknown members are refused, not ignored.
    expect_problem(
        grow(json!({"openapi": api, "operation_id": "qora_search", "lane": "live"})),
        400,
        "malformed-request",
    );
    assert!(files().is_empty(), "{:?}", files());

    let res = grow(json!({"openapi": api, "operation_id": "qora_search"}));
    assert_eq!(res.status(), 201);
    // The same name again, from another spelling of the operation id.
    let mut renamed = api.clone();
    renamed["paths"]["/search"]["get"]["operationId"] = json!("QoraSearch");
    expect_problem(
        grow(json!({"openapi": renamed, "operation_id": "QoraSearch"})),
        409,
        "driver-exists",
    );
    // The room for workers added while the node runs is taken: refused, nothing kept.
    expect_problem_saying(
        grow(json!({"openapi": api, "operation_id": "QoraCount"})),
        409,
        "driver-limit",
        "drivers.max_added_workers",
    );
    assert_eq!(files(), ["qora-search.toml"]);
    assert!(n.get("/v1/drivers/qora-count").status() == 404);
    // The journal records the one driver grown, and nothing of those refused.
    let grown: Vec<Value> = journal_bodies(&n, "event")
        .into_iter()
        .filter_map(|b| b.get("driver_synthesized").cloned())
        .collect();
    assert_eq!(grown.len(), 1, "{grown:?}");
    assert_eq!(grown[0]["driver"], "qora-search");
    // An operation id past its bound is refused before anything else.
    expect_problem(
        grow(json!({"openapi": api, "operation_id": "o".repeat(300)})),
        422,
        "synthesis-refused",
    );
    // Without the admin token: 401.
    let res = n
        .client()
        .post(n.url("/v1/probecraft/synthesize"))
        .json(&json!({"openapi": api, "operation_id": "QoraCount"}))
        .send()
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[test]
fn an_openapi_document_past_its_own_limit_is_413_naming_the_key() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_owned();
    let n = TestNode::builder()
        .config(move |c| {
            c.data_dir = dir;
            c.http.max_openapi_bytes = 100_000;
        })
        .start();
    let mut api = qora_api("http://qora.invalid/v1");
    // Larger than http.max_body_bytes (64 KiB), within its own limit: taken.
    api["info"]["description"] = json!("x".repeat(80_000));
    let res = n.post_json(
        "/v1/probecraft/synthesize",
        &json!({"openapi": api, "operation_id": "qora_search"}),
    );
    assert_eq!(res.status(), 201);
    api["info"]["description"] = json!("x".repeat(120_000));
    expect_problem_saying(
        n.post_json(
            "/v1/probecraft/synthesize",
            &json!({"openapi": api, "operation_id": "QoraCount"}),
        ),
        413,
        "payload-too-large",
        "http.max_openapi_bytes",
    );
    // Every other route keeps its own limit.
    expect_problem(
        n.post_json("/v1/journal/notes", &json!({"note": "x".repeat(80_000)})),
        413,
        "payload-too-large",
    );
}

#[test]
fn a_build_grown_again_while_the_node_runs_comes_back_in_its_journaled_lane() {
    let data = tempfile::tempdir().unwrap();
    let api = qora_api("http://qora.invalid/v1");
    let body = json!({"openapi": api, "operation_id": "qora_search"});
    let n = node(data.path(), 16);
    assert_eq!(
        n.post_json("/v1/probecraft/synthesize", &body).status(),
        201
    );
    assert_eq!(promote(&n, "qora-search", "shadow").status(), 200);
    n.shutdown();
    // Its manifest taken away: the next start does not load it.
    std::fs::remove_file(data.path().join("drivers/qora-search.toml")).unwrap();
    let n = node(data.path(), 16);
    assert_eq!(n.get("/v1/drivers/qora-search").status(), 404);
    // Grown again, the same build: its lane is the journal's, not testing.
    let res = n.post_json("/v1/probecraft/synthesize", &body);
    assert_eq!(res.status(), 201);
    let grown: Value = res.json().unwrap();
    assert_eq!(grown["lane"], "shadow", "{grown}");
    assert_eq!(lane(&n, "qora-search"), "shadow");
    // Its first load was journaled once, by the first growth.
    let first_loads = journal_bodies(&n, "lane_change")
        .into_iter()
        .filter(|c| c["driver"] == "qora-search" && c["who"] == "manifest")
        .count();
    assert_eq!(first_loads, 1);
}

/// The live http driver `qora-legacy` of the grown driver's capability, searching at
/// `base`, and a node with it, where a shadow period is 10 compared predictions and a
/// trial serves half the capability's intents.
fn node_with_incumbent(data: &Path, base: &str) -> TestNode {
    let legacy = format!(
        r#"name = "qora-legacy"
version = "1.0.0"
kind = "http"
capability = "{CAPABILITY}"
effect = "read"
risk = "low"
max_blast_radius = 1
idempotent = true
lane = "live"
[cost]
expected_ms = 10
units = 1.0
[limits]
deadline_ms = 10000
concurrency = 1
rate_per_second = 100000
max_payload_bytes = 65536
mailbox_capacity = 64
{slo}
[obligations.args]
type = "object"
required = ["q"]
properties = {{ q = {{ type = "string", maxLength = 64 }} }}
[http]
timeout_ms = 5000
[http.request]
method = "GET"
url = "{base}/search?q={{q}}"
body = "none"
"#,
        slo = axon_harness::LENIENT_SLO
    );
    let dir = data.to_owned();
    TestNode::builder()
        .manual_clock()
        .config(move |c| {
            c.data_dir = dir;
            c.drivers.promotion_min_shadow_calls = 10;
            c.drivers.trial_share = 0.5;
        })
        .driver(&legacy)
        .start()
}

/// Grows `qora-search` against `base` and brings it to shadow through its red-team gate.
fn grow_into_shadow(n: &TestNode, base: &str) {
    let res = n.post_json(
        "/v1/probecraft/synthesize",
        &json!({"openapi": qora_api(base), "operation_id": "qora_search"}),
    );
    assert_eq!(res.status(), 201);
    assert_eq!(promote(n, "qora-search", "shadow").status(), 200);
}

/// Sends `count` searches (served by the live driver, mirrored to the grown one) and
/// waits until the grown one has compared its predictions of them.
fn shadow_period(n: &TestNode, prefix: &str, count: u64) {
    for i in 0..count {
        let v = search(n, &format!("{prefix}-{i}"), &format!("q {i}"));
        assert_eq!(
            (v["status"].as_str(), v["driver"].as_str()),
            (Some("ok"), Some("qora-legacy")),
            "{v}"
        );
    }
    wait_until(
        "the grown driver compared them",
        Duration::from_secs(10),
        || crate::gates::shadow_compared(n, "qora-search") >= count,
    )
    .unwrap();
}

#[test]
fn a_grown_driver_that_disagrees_with_the_live_driver_is_refused_at_its_shadow_gate() {
    let old = Loopback::start(|_, _| Reply::json(200, r#"{"hits":["old"]}"#)).unwrap();
    let new = Loopback::start(|_, _| Reply::json(200, r#"{"hits":["new"]}"#)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let n = node_with_incumbent(data.path(), &old.base);
    grow_into_shadow(&n, &new.base);
    // No shadow period yet.
    expect_problem_saying(
        promote(&n, "qora-search", "live"),
        409,
        "promotion-gate-failed",
        "shadow gate: check min_calls",
    );
    // Its twin (its own dry run, against its service) predicts other answers than the
    // live driver gives.
    shadow_period(&n, "s", 10);
    expect_problem_saying(
        promote(&n, "qora-search", "live"),
        409,
        "promotion-gate-failed",
        "shadow gate: check agreement",
    );
    assert_eq!(lane(&n, "qora-search"), "shadow");
    assert_eq!(lane(&n, "qora-legacy"), "live");
}

#[test]
fn a_grown_driver_that_agrees_and_delivers_as_much_displaces_the_live_driver() {
    let service = Loopback::start(|_, _| Reply::json(200, r#"{"hits":["axon"]}"#)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let n = node_with_incumbent(data.path(), &service.base);
    grow_into_shadow(&n, &service.base);
    shadow_period(&n, "s", 10);
    let res = promote(&n, "qora-search", "live");
    assert_eq!(res.status(), 200);
    let v: Value = res.json().unwrap();
    assert_eq!(v["change"]["to"], "trial", "{v}");
    assert_eq!(v["change"]["evidence"]["live"], "qora-legacy");
    assert!(
        v["change"]["evidence"]["shadow"]["agreed"]
            .as_u64()
            .unwrap()
            >= 10,
        "{v}"
    );
    // Its trial shares the intents with the live driver until its checks pass and its
    // uplift is found not worse than the live driver's.
    let lane_after = crate::gates::run_trial_of(&n, "qora-search", |i| {
        search(&n, &format!("t-{i}"), &format!("t {i}"))
    });
    assert_eq!(lane_after, "live");
    assert_eq!(lane(&n, "qora-legacy"), "shadow");
    let passed = journal_bodies(&n, "lane_change")
        .into_iter()
        .find(|c| c["driver"] == "qora-search" && c["to"] == "live")
        .unwrap();
    assert_eq!(passed["rule"], "trial.passed");
    assert_eq!(passed["evidence"]["uplift"]["worse"], false, "{passed}");
    let v = search(&n, "after", "axon");
    assert_eq!(v["driver"], "qora-search", "{v}");
}

#[test]
fn a_growth_its_supervisor_cannot_take_in_time_is_taken_back_and_journaled_so() {
    // A service that holds each request until it is let go.
    let release = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let held = release.clone();
    let slow = Loopback::start(move |_, _| {
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while !held.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        Reply::json(200, "{}")
    })
    .unwrap();
    // A live driver `hold` calling it, with no dry run (its twin sends nothing).
    let hold = format!(
        r#"name = "hold"
version = "1.0.0"
kind = "http"
capability = "urn:axon:cap:hold"
effect = "write"
risk = "low"
max_blast_radius = 1
idempotent = false
lane = "live"
[cost]
expected_ms = 10
units = 1.0
[limits]
deadline_ms = 60000
concurrency = 1
rate_per_second = 100000
max_payload_bytes = 65536
mailbox_capacity = 16
{slo}
[http]
timeout_ms = 60000
[http.request]
method = "POST"
url = "{base}/hold"
body = "args"
"#,
        slo = axon_harness::LENIENT_SLO,
        base = slow.base
    );
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_owned();
    let n = TestNode::builder()
        .config(move |c| {
            c.data_dir = dir;
            c.http.call_timeout_ms = 5000;
            // Its graceful stop waits for the call it is in.
            c.drivers.shutdown_timeout_ms = 60_000;
        })
        .driver(&hold)
        .start();
    let (client, token, url) = (n.client().clone(), n.admin_token.clone(), n.url("/v1/act"));
    let held_call = std::thread::spawn(move || {
        client
            .post(url)
            .bearer_auth(token)
            .json(&json!({"capability": "urn:axon:cap:hold", "args": {}}))
            .send()
            .map(|r| r.status())
    });
    wait_until("hold is in its call", Duration::from_secs(10), || {
        slow.count() == 1
    })
    .unwrap();
    // The drivers supervisor busy: an operator's restart of hold waits for its call.
    let (client, token) = (n.client().clone(), n.admin_token.clone());
    let restart_url = n.url("/v1/supervision/hold/restart");
    let restart = std::thread::spawn(move || client.post(restart_url).bearer_auth(token).send());
    n.wait_for_status(
        "hold",
        axon_harness::NodeStatus::Stopping,
        Duration::from_secs(10),
    )
    .unwrap();
    let api = qora_api("http://qora.invalid/v1");
    let body = json!({"openapi": api, "operation_id": "qora_search"});
    let grow = || n.post_json("/v1/probecraft/synthesize", &body);
    let (client, token) = (n.client().clone(), n.admin_token.clone());
    let (url, first_body) = (n.url("/v1/probecraft/synthesize"), body.clone());
    let first = std::thread::spawn(move || {
        let res = client
            .post(url)
            .bearer_auth(token)
            .json(&first_body)
            .send()
            .unwrap();
        (res.status().as_u16(), res.json::<Value>().unwrap())
    });
    // While it waits for the supervisor (its record journaled), another is refused: one
    // growth at a time.
    wait_until(
        "the first growth is journaled",
        Duration::from_secs(10),
        || {
            journal_bodies(&n, "event")
                .iter()
                .any(|b| b.get("driver_synthesized").is_some())
        },
    )
    .unwrap();
    let mut other = body.clone();
    other["operation_id"] = json!("QoraCount");
    expect_problem_saying(
        n.post_json("/v1/probecraft/synthesize", &other),
        429,
        "overloaded",
        "one at a time",
    );
    let (status, v) = first.join().unwrap();
    assert_eq!(status, 504, "{v}");
    assert_eq!(v["type"], "urn:axon:problem:timeout");
    assert!(
        v["detail"].as_str().unwrap().contains("nothing was added"),
        "{v}"
    );
    // Taken back: no manifest, no driver, and the journal says why.
    assert!(!data.path().join("drivers/qora-search.toml").exists());
    let events = journal_bodies(&n, "event");
    let grown = events
        .iter()
        .find_map(|b| b.get("driver_synthesized"))
        .unwrap();
    let undone = events
        .iter()
        .find_map(|b| b.get("driver_synthesis_undone"))
        .unwrap();
    assert_eq!(undone["driver"], "qora-search");
    assert_eq!(undone["artifact_hash"], grown["artifact_hash"]);
    assert!(undone["synthesized"].is_u64(), "{undone}");
    assert!(
        undone["reason"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{undone}"
    );
    // Let go: the call ends, the restart is done, and the supervisor, free again, never
    // adds what its caller gave up on.
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = held_call.join().unwrap();
    let _ = restart.join().unwrap();
    n.wait_for_status(
        "hold",
        axon_harness::NodeStatus::Running,
        Duration::from_secs(20),
    )
    .unwrap();
    // The same driver grows now, once.
    assert_eq!(grow().status(), 201);
    let tree = n.tree();
    let drivers = tree.children.iter().find(|c| c.id == "drivers").unwrap();
    let ids: Vec<&str> = drivers.children.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["echo", "hold", "qora-search"]);
}

#[test]
fn a_grown_driver_that_cannot_be_shadowed_goes_straight_to_its_trial() {
    let service = Loopback::start(|_, _| Reply::json(200, r#"{"hits":[]}"#)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let n = node_with_incumbent(data.path(), &service.base);
    // A POST: not a safe method, so no dry run, so no twin to compare with the live
    // driver's outcomes.
    let api = json!({
        "openapi": "3.1.0",
        "info": {"title": "Qora", "version": "1.4.0"},
        "paths": {"/search": {"post": {
            "operationId": "qora_search",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["q"],
                "properties": {"q": {"type": "string", "maxLength": 64}}
            }}}}
        }}}
    });
    let res = n.post_json(
        "/v1/probecraft/synthesize",
        &json!({"openapi": api, "operation_id": "qora_search", "base_url": service.base}),
    );
    assert_eq!(res.status(), 201);
    let v: Value = n.get("/v1/drivers/qora-search").json().unwrap();
    assert!(
        v["descriptor"].get("dry_run").is_none_or(|d| d.is_null()),
        "{v}"
    );
    let res = promote(&n, "qora-search", "shadow");
    assert_eq!(res.status(), 200, "{}", res.text().unwrap());
    // Its red-team suite built a body from the schema and sent hostile values inside it,
    // each arriving as sent.
    let run = journal_bodies(&n, "event")
        .into_iter()
        .filter_map(|b| b.get("gate_run").cloned())
        .find(|r| r["driver"] == "qora-search" && r["gate"] == "redteam")
        .unwrap();
    assert!(
        run["report"]["hostile_exact"].as_u64().unwrap() >= 20,
        "{run}"
    );
    // No shadow period to judge: on to its trial, and the evidence says why.
    let res = promote(&n, "qora-search", "live");
    assert_eq!(res.status(), 200);
    let v: Value = res.json().unwrap();
    assert_eq!(v["change"]["to"], "trial", "{v}");
    assert_eq!(v["change"]["evidence"]["live"], "qora-legacy");
    assert!(
        v["change"]["evidence"]["shadow"]
            .as_str()
            .is_some_and(|s| s.contains("cannot be shadowed")),
        "{v}"
    );
}
