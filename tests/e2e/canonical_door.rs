//! The canonical-JSON rule at the door: a body the journal could not read back is refused
//! with 422 `not-canonical` naming its JSON Pointer, and nothing is appended; a body the
//! rule accepts (1e16, deep but within the limit) is journaled and reads back, also after
//! a restart.

use axon_harness::{expect_problem, TestNode};
use axon_protocols::canonical::MAX_DEPTH;
use base64::Engine;
use reqwest::blocking::Response;
use serde_json::Value;

fn post_raw(n: &TestNode, path: &str, body: String) -> Response {
    n.client()
        .post(n.url(path))
        .bearer_auth(&n.admin_token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap()
}

/// How many entries the journal holds, from its newest page.
fn entries(n: &TestNode) -> usize {
    let v: Value = n.get("/v1/journal/entries?limit=1000").json().unwrap();
    v["entries"].as_array().unwrap().len()
}

/// The intent of the echo driver with `args` (JSON text) as its arguments.
fn intent(args: &str) -> String {
    format!(r#"{{"capability":"urn:axon:cap:echo","args":{args}}}"#)
}

fn nested(levels: usize) -> String {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels))
}

#[test]
fn what_the_rule_refuses_is_422_and_nothing_is_appended() {
    let n = TestNode::start();
    let before = entries(&n);
    let too_deep = format!("/args{}", "/0".repeat(MAX_DEPTH - 4));
    for (args, path) in [
        (r#"{"x": 9007199254740993}"#.to_owned(), "/args/x"),
        (r#"{"a": [0, -9007199254740993]}"#.to_owned(), "/args/a/1"),
        (
            r#"{"big": 100000000000000000000000}"#.to_owned(),
            "/args/big",
        ),
        (r#"{"huge": 1e400}"#.to_owned(), "/args/huge"),
        (r#"{"k": 1, "k": 2}"#.to_owned(), "/args/k"),
        // The result entry holds the intent three levels down (entry, result, capsule)
        // and the arguments one more: this is one level too many.
        (nested(MAX_DEPTH - 3), too_deep.as_str()),
    ] {
        let body = intent(&args);
        let res = post_raw(&n, "/v1/act", body.clone());
        let v = expect_problem(res, 422, "not-canonical");
        assert_eq!(v["path"], path, "{body:.80}");
        assert!(v["detail"].as_str().unwrap().contains(path), "{v}");
    }
    // Text that is not JSON stays a 400.
    assert_eq!(post_raw(&n, "/v1/act", "[1,]".into()).status(), 400);
    assert_eq!(entries(&n), before, "a refused body appended something");
}

#[test]
fn what_the_rule_accepts_reads_back_before_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        TestNode::builder()
            .config(|c| c.data_dir = dir.path().to_owned())
            .start()
    };
    let n = start();
    let bodies = [
        r#"{"x":1e16}"#.to_owned(),
        r#"{"x":9007199254740994,"y":-0.0,"z":5e-324,"w":1.7976931348623157e308}"#.to_owned(),
        r#"{"two_to_the_63":9223372036854775808,"printed":9223372036854776000}"#.to_owned(),
        nested(MAX_DEPTH - 4),
        r#"{"s":"\ud83d\ude02 \u0000 \u2028"}"#.to_owned(),
    ];
    let mut indexes = vec![];
    for args in &bodies {
        let body = intent(args);
        let res = post_raw(&n, "/v1/act", body.clone());
        assert_eq!(res.status(), 200, "{body:.80}");
        let v: Value = res.json().unwrap();
        indexes.push(v["index"].as_u64().unwrap());
    }
    let read_all = |n: &TestNode| {
        for i in &indexes {
            let res = n.get(&format!("/v1/journal/entries/{i}"));
            assert_eq!(res.status(), 200, "entry {i}");
            let v: Value = res.json().unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v["bytes_b64"].as_str().unwrap())
                .unwrap();
            axon_protocols::journal::Entry::from_bytes(&bytes).unwrap();
        }
    };
    read_all(&n);
    assert_eq!(n.shutdown(), axon_supervisors::Exit::Shutdown);
    let n = start();
    read_all(&n);
}
