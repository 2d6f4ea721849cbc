//! Malformed, oversized and hostile input gets a precise 4xx problem document, never a 5xx.

use axon_harness::{expect_problem, TestNode};
use reqwest::blocking::Response;

const LIMIT: usize = 1024;

fn node() -> TestNode {
    TestNode::builder()
        .config(|c| c.http.max_body_bytes = LIMIT)
        .start()
}

/// POSTs `body` to `/v1/act` with `content_type`.
fn post_echo(
    n: &TestNode,
    content_type: &str,
    body: impl Into<reqwest::blocking::Body>,
) -> Response {
    n.client()
        .post(n.url("/v1/act"))
        .bearer_auth(&n.admin_token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap()
}

#[test]
fn malformed_json_is_400() {
    let n = node();
    for body in ["{", "{\"a\":}", "nul", "[1,2", "\u{0}"] {
        let res = post_echo(&n, "application/json", body);
        let v = expect_problem(res, 400, "malformed-request");
        assert_eq!(v["instance"], "/v1/act");
    }
}

#[test]
fn wrong_or_missing_content_type_is_415() {
    let n = node();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = n
            .client()
            .post(n.url("/v1/act"))
            .bearer_auth(&n.admin_token)
            .body("{}");
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        expect_problem(req.send().unwrap(), 415, "unsupported-media-type");
    }
}

#[test]
fn an_oversized_body_is_413_at_the_configured_limit() {
    let n = node();
    let intent = |pad: usize| {
        let (head, tail) = (r#"{"capability":"urn:axon:cap:echo","args":""#, r#""}"#);
        format!("{head}{}{tail}", "a".repeat(pad - head.len() - tail.len()))
    };
    let just_fits = intent(LIMIT);
    assert_eq!(just_fits.len(), LIMIT);
    let res = post_echo(&n, "application/json", just_fits);
    assert_eq!(res.status(), 200);
    let too_big = intent(LIMIT + 1);
    let res = post_echo(&n, "application/json", too_big);
    let v = expect_problem(res, 413, "payload-too-large");
    assert!(v["detail"].as_str().unwrap().contains("1024"));
}

#[test]
fn an_oversized_chunked_body_is_413() {
    let n = node();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b' '; LIMIT / 2])).collect();
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(
        chunks
            .into_iter()
            .flat_map(|c| c.unwrap())
            .collect::<Vec<u8>>(),
    ));
    let res = post_echo(&n, "application/json", body);
    expect_problem(res, 413, "payload-too-large");
}

#[test]
fn unknown_routes_and_methods() {
    let n = node();
    expect_problem(n.get("/nope"), 404, "not-found");
    expect_problem(n.get("/v1/supervision/echo"), 404, "not-found");
    let res = n.client().delete(n.url("/v1/supervision")).send().unwrap();
    expect_problem(res, 405, "method-not-allowed");
    let res = n.client().get(n.url("/v1/act")).send().unwrap();
    expect_problem(res, 405, "method-not-allowed");
}

#[test]
fn admin_routes_need_the_admin_token() {
    let n = node();
    // Every route that appends needs it, the one door to the drivers included.
    let res = n
        .client()
        .post(n.url("/v1/act"))
        .json(&serde_json::json!({"capability": "urn:axon:cap:echo", "args": 1}))
        .send()
        .unwrap();
    expect_problem(res, 401, "unauthenticated");
    let url = n.url("/v1/supervision/echo/restart");
    let res = n.client().post(&url).send().unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"axon\"");
    expect_problem(res, 401, "unauthenticated");
    let res = n
        .client()
        .post(&url)
        .header("authorization", "Basic abc")
        .send()
        .unwrap();
    expect_problem(res, 401, "unauthenticated");
    let res = n
        .client()
        .post(&url)
        .bearer_auth("0".repeat(64))
        .send()
        .unwrap();
    expect_problem(res, 401, "invalid-token");
    let wrong_by_one = format!("{}x", n.admin_token);
    let res = n
        .client()
        .post(&url)
        .bearer_auth(wrong_by_one)
        .send()
        .unwrap();
    expect_problem(res, 401, "invalid-token");
    // Nothing was restarted.
    assert_eq!(n.actor("echo").unwrap().restarts_total, 0);
    // With the token: unknown actors and the root are refused precisely.
    expect_problem(
        n.post_admin("/v1/supervision/nobody/restart"),
        404,
        "unknown-actor",
    );
    expect_problem(
        n.post_admin("/v1/supervision/root/restart"),
        422,
        "rejected",
    );
}

#[test]
fn a_hostile_correlation_id_is_400_and_a_good_one_is_echoed() {
    let n = node();
    for bad in ["<script>", &"a".repeat(129), "a b", "é"] {
        let res = n
            .client()
            .get(n.url("/healthz"))
            .header("x-correlation-id", bad)
            .send()
            .unwrap();
        expect_problem(res, 400, "bad-header");
    }
    let res = n
        .client()
        .get(n.url("/healthz"))
        .header("x-correlation-id", "req-42.a:b_c")
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-correlation-id"], "req-42.a:b_c");
    let res = n
        .client()
        .get(n.url("/nope"))
        .header("x-correlation-id", "trace-7")
        .send()
        .unwrap();
    let v = expect_problem(res, 404, "not-found");
    assert_eq!(v["correlation_id"], "trace-7");
}

#[test]
fn random_bodies_never_get_a_5xx() {
    let n = node();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..300 {
        // xorshift: a fixed, replayable sequence of hostile bodies.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 2048) as usize;
        let body: Vec<u8> = (0..len)
            .map(|i| (seed.rotate_left(i as u32 % 64) >> (i % 8)) as u8)
            .collect();
        let ct = [
            "application/json",
            "text/plain",
            "application/merge-patch+json",
        ][round % 3];
        let res = post_echo(&n, ct, body);
        assert!(
            res.status().as_u16() < 500,
            "round {round}: {} for a {len}-byte body",
            res.status()
        );
    }
    assert_eq!(n.get("/healthz").status(), 200);
}
