//! The `http` driver against a real HTTP server on loopback: what the endpoint receives
//! (encoded exactly, secrets resolved at the call and never recorded), status codes as
//! outcomes, retries only where they are safe, timeouts, oversized and non-canonical
//! answers, the twin's dry run, the compensating request, and replay from the recorded
//! exchange with no network.

mod capsule;

use axon_drivers::driver::{Call, Driver, Prediction, Recorded, Status};
use axon_drivers::http::HttpDriver;
use axon_drivers::loopback::{Loopback, Reply};
use axon_drivers::manifest::Manifest;
use axon_protocols::intent::AxonIntent;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn manifest(idempotent: bool, http: &str) -> Manifest {
    manifest_of("write", idempotent, http)
}

fn manifest_of(effect: &str, idempotent: bool, http: &str) -> Manifest {
    manifest_at(Path::new("orders.toml"), effect, idempotent, http)
}

/// The orders manifest with `http` as its settings, read as the file `file` (a relative
/// `ca_file` is read from its folder).
fn manifest_at(file: &Path, effect: &str, idempotent: bool, http: &str) -> Manifest {
    let text = format!(
        r#"name = "orders"
version = "1.0.0"
kind = "http"
capability = "urn:axon:cap:orders.create"
effect = "{effect}"
risk = "high"
max_blast_radius = 1
idempotent = {idempotent}
[cost]
expected_ms = 50
units = 1.0
[limits]
deadline_ms = 5000
concurrency = 1
rate_per_second = 100
max_payload_bytes = 65536
mailbox_capacity = 16
{http}
"#
    );
    Manifest::parse(&text, file).unwrap_or_else(|e| panic!("{e}"))
}

fn driver(m: &Manifest) -> HttpDriver {
    HttpDriver::new(
        m.descriptor(),
        m.http_settings.as_ref().unwrap(),
        Path::new("."),
    )
    .unwrap()
}

fn intent(args: Value) -> AxonIntent {
    serde_json::from_value(json!({"capability": "urn:axon:cap:orders.create", "args": args}))
        .unwrap()
}

const ID: &str = "0123456789abcdef0123456789abcdef";

fn push(d: &mut HttpDriver, m: &Manifest, args: Value) -> axon_drivers::driver::Outcome {
    capsule::act(d, m, ID, &intent(args))
}

#[test]
fn the_endpoint_receives_exactly_what_the_manifest_and_the_arguments_say() {
    let server = Loopback::start(|_, _| Reply::json(201, r#"{"id":"o-17","ok":true}"#))
        .expect("a loopback server");
    std::env::set_var("ORDERS_TEST_KEY", "s3cret-value");
    let m = manifest(
        false,
        &format!(
            r#"[http]
timeout_ms = 2000
[http.request]
method = "POST"
url = "{}/shops/{{shop}}/orders?note={{note}}"
body = "args"
[http.request.headers]
x-api-key = {{ secret = "KEY" }}
x-shop = "shop {{shop}}"
[http.secrets.KEY]
env = "ORDERS_TEST_KEY"
"#,
            server.base
        ),
    );
    let mut d = driver(&m);
    // Hostile yet valid values travel encoded exactly as sent.
    let args = json!({"shop": "a/b?c=d&e#f", "note": "ü ✓", "qty": 3});
    let out = push(&mut d, &m, args.clone());
    assert_eq!(out.status, Status::Ok, "{out:?}");
    assert_eq!(
        out.output,
        json!({"status": 201, "body": {"id": "o-17", "ok": true}})
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.target,
        "/shops/a%2Fb%3Fc%3Dd%26e%23f/orders?note=%C3%BC%20%E2%9C%93"
    );
    assert_eq!(r.header("x-api-key"), Some("s3cret-value"));
    assert_eq!(r.header("x-shop"), Some("shop a/b?c=d&e#f"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.body,
        axon_protocols::canonical::to_vec(&args).unwrap(),
        "the body is the canonical JSON of the arguments"
    );
    // The capsule's exchange names the secret, never its value.
    let state = serde_json::to_string(&out.replay).unwrap();
    assert!(!state.contains("s3cret-value"), "{state}");
    assert!(state.contains("{secret:KEY}"), "{state}");
}

#[test]
fn an_error_status_is_a_failed_outcome_and_only_safe_requests_retry() {
    let server = Loopback::start(|_, n| {
        if n < 2 {
            Reply::json(503, r#"{"busy":true}"#)
        } else {
            Reply::json(200, r#"{"done":true}"#)
        }
    })
    .expect("a loopback server");
    let http = |method: &str| {
        format!(
            r#"[http]
timeout_ms = 2000
retries = 2
retry_backoff_ms = 1
[http.request]
method = "{method}"
url = "{}/orders/{{id}}"
"#,
            server.base
        )
    };
    // A POST is never repeated: one request, and the 503 is the outcome.
    let m = manifest(true, &http("POST"));
    let out = push(&mut driver(&m), &m, json!({"id": 1}));
    assert_eq!(out.status, Status::Failed);
    assert_eq!(out.reason.as_deref(), Some("the endpoint answered 503"));
    assert_eq!(out.output["status"], 503);
    assert_eq!(server.seen().len(), 1);
    // An idempotent driver's PUT is retried with backoff until it succeeds.
    let m = manifest(true, &http("PUT"));
    let out = push(&mut driver(&m), &m, json!({"id": 1}));
    assert_eq!(out.status, Status::Ok, "{out:?}");
    assert_eq!(server.seen().len(), 3);
    let exchanges = &out.replay.as_ref().unwrap()["exchanges"];
    assert_eq!(exchanges.as_array().unwrap().len(), 2);
    // A driver not declared idempotent never retries, whatever its method.
    let m = manifest(false, &http("PUT"));
    let before = server.seen().len();
    push(&mut driver(&m), &m, json!({"id": 2}));
    assert_eq!(server.seen().len(), before + 1);
}

#[test]
fn slow_oversized_and_odd_answers_are_handled() {
    let server = Loopback::start(|r, _| match r.target.as_str() {
        "/slow" => Reply {
            delay: Duration::from_millis(800),
            ..Reply::json(200, "{}")
        },
        "/big" => Reply::json(200, &format!("\"{}\"", "x".repeat(4096))),
        "/huge-number" => Reply::json(200, r#"{"id": 9007199254740993}"#),
        _ => Reply::json(200, "not json"),
    })
    .expect("a loopback server");
    let at = |path: &str| {
        format!(
            r#"[http]
timeout_ms = 200
max_response_bytes = 1024
[http.request]
method = "GET"
url = "{}{path}"
"#,
            server.base
        )
    };
    // A request sent and not answered in time, or answered past the size limit, may have
    // acted: the outcome is unknown (the action in doubt), never a plain failure.
    let m = manifest(false, &at("/slow"));
    let out = push(&mut driver(&m), &m, json!({}));
    assert_eq!(out.status, Status::Unknown);
    let reason = out.reason.unwrap();
    assert!(
        reason.contains("no answer within") && reason.contains("may have acted"),
        "{reason}"
    );
    let m = manifest(false, &at("/big"));
    let out = push(&mut driver(&m), &m, json!({}));
    assert_eq!(out.status, Status::Unknown);
    assert!(out.reason.unwrap().contains("max_response_bytes"));
    // A request that never left (nothing listens) is a plain failure.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let m = manifest(
        false,
        &format!(
            "[http]\ntimeout_ms = 200\n[http.request]\nmethod = \"GET\"\nurl = \"{nobody}/x\"\n"
        ),
    );
    let out = push(&mut driver(&m), &m, json!({}));
    assert_eq!(out.status, Status::Failed, "{out:?}");
    assert!(out.reason.unwrap().contains("not sent"));
    // An integer no double holds is kept as text and flagged, never refused.
    let m = manifest(false, &at("/huge-number"));
    let out = push(&mut driver(&m), &m, json!({}));
    assert_eq!(out.status, Status::Ok);
    assert_eq!(out.output["text"], r#"{"id": 9007199254740993}"#);
    assert!(out.output["not_canonical"].is_string());
    axon_protocols::canonical::to_vec(&out.output).unwrap();
    let m = manifest(false, &at("/text"));
    let out = push(&mut driver(&m), &m, json!({}));
    assert_eq!(out.output, json!({"status": 200, "text": "not json"}));
}

#[test]
fn the_twin_asks_the_dry_run_and_the_rollback_compensates() {
    let server = Loopback::start(|r, _| match (r.method.as_str(), r.target.as_str()) {
        ("GET", "/quote") => Reply::json(200, r#"{"price":12}"#),
        ("POST", "/orders") => Reply::json(201, r#"{"id":"o-9"}"#),
        ("DELETE", "/orders/o-9") => Reply::json(204, ""),
        _ => Reply::json(404, "{}"),
    })
    .expect("a loopback server");
    let m = manifest(
        false,
        &format!(
            r#"[http]
timeout_ms = 2000
[http.request]
method = "POST"
url = "{0}/orders"
body = "args"
[http.dry_run]
method = "GET"
url = "{0}/quote"
[http.rollback]
method = "DELETE"
url = "{0}/orders/{{output.body.id}}"
"#,
            server.base
        ),
    );
    assert!(m.descriptor().can_rollback);
    let mut d = driver(&m);
    let i = intent(json!({"item": "tea"}));
    let call = Call {
        action_id: ID,
        intent: &i,
    };
    assert_eq!(
        d.predict(&call),
        Prediction::Expected {
            output: json!({"status": 200, "body": {"price": 12}}),
            utility: 1.0
        }
    );
    let out = push(&mut d, &m, json!({"item": "tea"}));
    let undone = d.rollback(&Recorded {
        action_id: ID.into(),
        intent: i.clone(),
        output: out.output.clone(),
    });
    assert_eq!(undone.status, Status::Ok, "{undone:?}");
    let seen = server.seen();
    assert_eq!(seen.last().unwrap().method, "DELETE");
    assert_eq!(seen.last().unwrap().target, "/orders/o-9");
    // Without a dry run the twin says it cannot tell, never makes a figure up.
    let bare = manifest(
        false,
        &format!(
            "[http]\ntimeout_ms = 100\n[http.request]\nmethod = \"POST\"\nurl = \"{}/orders\"\n",
            server.base
        ),
    );
    assert!(matches!(
        driver(&bare).predict(&call),
        Prediction::Inconclusive { .. }
    ));
    assert!(!bare.descriptor().can_rollback);
}

#[test]
fn a_recorded_exchange_replays_bit_for_bit_without_the_network() {
    std::env::set_var("REPLAY_TEST_TOKEN", "tok-123");
    let server = Loopback::start(|_, _| Reply::json(200, r#"{"z":[1,2.5],"a":"ü"}"#))
        .expect("a loopback server");
    let m = manifest(
        false,
        &format!(
            r#"[http]
timeout_ms = 2000
[http.request]
method = "POST"
url = "{}/x/{{k}}"
body = "args"
[http.request.headers]
authorization = {{ secret = "TOKEN" }}
[http.secrets.TOKEN]
env = "REPLAY_TEST_TOKEN"
"#,
            server.base
        ),
    );
    let args = json!({"k": "v w", "n": 1});
    let out = push(&mut driver(&m), &m, args.clone());
    let capsule = |input: &AxonIntent| capsule::capsule(&m, ID, input, &out);
    // No network: the secret is gone too, and nothing is sent.
    std::env::remove_var("REPLAY_TEST_TOKEN");
    let before = server.seen().len();
    let replayed = axon_drivers::replay(&capsule(&intent(args.clone())), Path::new(".")).unwrap();
    assert_eq!(replayed, out.output);
    assert_eq!(
        server.seen().len(),
        before,
        "the replay touched the network"
    );
    // Another request than the recorded one is caught.
    let err = axon_drivers::replay(
        &capsule(&intent(json!({"k": "other", "n": 1}))),
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.contains("differs from the recorded one"), "{err}");
}

#[test]
fn bad_http_settings_are_refused_with_their_key() {
    for (http, key) in [
        (
            "[http]\ntimeout_ms = 10\n[http.request]\nmethod = \"GET\"\nurl = \"ftp://x\"\n",
            "http.request.url",
        ),
        (
            "[http]\ntimeout_ms = 10\nca_file = \"no-such-ca.pem\"\n[http.request]\nmethod = \"GET\"\nurl = \"https://x\"\n",
            "http.ca_file",
        ),
        (
            "[http]\ntimeout_ms = 999999\n[http.request]\nmethod = \"GET\"\nurl = \"http://x\"\n",
            "http.timeout_ms",
        ),
        (
            "[http]\ntimeout_ms = 10\n[http.request]\nmethod = \"GET\"\nurl = \"http://x/{a\"\n",
            "http.request.url",
        ),
        (
            "[http]\ntimeout_ms = 10\n[http.request]\nmethod = \"GET\"\nurl = \"http://x\"\n[http.request.headers]\nauth = { secret = \"NOPE\" }\n",
            "http.request.headers.auth",
        ),
        (
            "[http]\ntimeout_ms = 10\nretries = 9\n[http.request]\nmethod = \"GET\"\nurl = \"http://x\"\n",
            "http.retries",
        ),
        (
            "[http]\ntimeout_ms = 10\n[http.request]\nmethod = \"FETCH\"\nurl = \"http://x\"\n",
            "http.request.method",
        ),
    ] {
        let text = format!(
            "name = \"o\"\nversion = \"1\"\nkind = \"http\"\ncapability = \"urn:axon:cap:o\"\neffect = \"write\"\nrisk = \"low\"\nmax_blast_radius = 1\nidempotent = false\n[cost]\nexpected_ms = 1\nunits = 0.0\n[limits]\ndeadline_ms = 1000\nconcurrency = 1\nrate_per_second = 1\nmax_payload_bytes = 10\nmailbox_capacity = 2\n{http}"
        );
        match Manifest::parse(&text, Path::new("o.toml")) {
            Err(axon_drivers::manifest::ManifestError::Key { key: k, .. }) => {
                assert_eq!(k, key, "{http}")
            }
            other => panic!("expected {key} refused, got {other:?}"),
        }
    }
}

/// A certificate authority and a server certificate for 127.0.0.1 signed by it: the CA's
/// PEM, and the server's rustls configuration.
fn private_ca() -> (String, std::sync::Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca_cert.pem(), std::sync::Arc::new(config))
}

/// A loopback server that speaks HTTP over TLS with `config`.
fn tls_loopback(config: std::sync::Arc<rustls::ServerConfig>) -> Loopback {
    Loopback::start_wrapped(
        "https",
        |_, _| Reply::json(201, r#"{"id":"o-tls"}"#),
        move |tcp| {
            let session = rustls::ServerConnection::new(config.clone()).ok()?;
            Some(Box::new(rustls::StreamOwned::new(session, tcp)))
        },
    )
    .expect("a loopback server")
}

/// The orders manifest, written in `dir` (so a relative `ca_file` is read from there).
fn https_manifest(dir: &Path, base: &str, ca_file: Option<&str>) -> Manifest {
    let ca = ca_file
        .map(|f| format!("ca_file = \"{f}\"\n"))
        .unwrap_or_default();
    manifest_at(
        &dir.join("orders.toml"),
        "write",
        false,
        &format!(
            "[http]\ntimeout_ms = 2000\n{ca}[http.request]\nmethod = \"POST\"\nurl = \"{base}/orders\"\nbody = \"args\"\n"
        ),
    )
}

#[test]
fn an_https_endpoint_whose_certificate_chains_to_the_manifests_ca_is_called() {
    let (ca_pem, config) = private_ca();
    let server = tls_loopback(config);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_pem).unwrap();
    let m = https_manifest(dir.path(), &server.base, Some("ca.pem"));
    let mut d = HttpDriver::new(
        m.descriptor(),
        m.http_settings.as_ref().unwrap(),
        m.folder(),
    )
    .unwrap();
    let out = push(&mut d, &m, json!({"sku": "tls-1"}));
    assert_eq!(out.status, Status::Ok, "{out:?}");
    assert_eq!(out.output["body"]["id"], "o-tls");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/orders");
    assert_eq!(seen[0].body, br#"{"sku":"tls-1"}"#, "{:?}", seen[0]);
}

#[test]
fn an_https_endpoint_with_a_certificate_nobody_vouches_for_is_never_sent_the_request() {
    let (_, config) = private_ca();
    let server = tls_loopback(config);
    let dir = tempfile::tempdir().unwrap();
    // The system's roots do not know the test's CA; nor does another private CA.
    let (other_ca, _) = private_ca();
    std::fs::write(dir.path().join("other.pem"), other_ca).unwrap();
    for ca in [None, Some("other.pem")] {
        let m = https_manifest(dir.path(), &server.base, ca);
        let mut d = HttpDriver::new(
            m.descriptor(),
            m.http_settings.as_ref().unwrap(),
            m.folder(),
        )
        .unwrap();
        let out = push(&mut d, &m, json!({"sku": "tls-2"}));
        // Failed, not unknown: the driver knows the request never left.
        assert_eq!(out.status, Status::Failed, "{ca:?}: {out:?}");
    }
    assert!(
        server.seen().is_empty(),
        "a request went through an untrusted handshake"
    );
}

#[test]
fn a_ca_file_that_holds_no_certificate_is_refused_at_load_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").unwrap();
    let manifest = "name = \"o\"\nversion = \"1\"\nkind = \"http\"\ncapability = \"urn:axon:cap:o\"\neffect = \"write\"\nrisk = \"low\"\nmax_blast_radius = 1\nidempotent = false\n[cost]\nexpected_ms = 1\nunits = 0.0\n[limits]\ndeadline_ms = 1000\nconcurrency = 1\nrate_per_second = 1\nmax_payload_bytes = 10\nmailbox_capacity = 2\n[http]\ntimeout_ms = 10\nca_file = \"ca.pem\"\n[http.request]\nmethod = \"GET\"\nurl = \"https://x\"\n";
    match Manifest::parse(manifest, &dir.path().join("o.toml")) {
        Err(axon_drivers::manifest::ManifestError::Key { key, reason, .. }) => {
            assert_eq!(key, "http.ca_file");
            assert!(reason.contains("holds no certificate"), "{reason}");
        }
        other => panic!("expected http.ca_file refused, got {other:?}"),
    }
}

#[test]
fn a_read_driver_is_pulled_and_a_read_left_unanswered_has_failed_not_in_doubt() {
    let server = Loopback::start(|seen, _| {
        let mut r = Reply::json(200, r#"{"state":"shipped"}"#);
        if seen.target.contains("slow") {
            r.delay = Duration::from_millis(500);
        }
        r
    })
    .expect("a loopback server");
    let m = manifest_of(
        "read",
        false,
        &format!(
            r#"[http]
timeout_ms = 100
[http.request]
method = "GET"
url = "{}/orders/{{id}}"
"#,
            server.base
        ),
    );
    assert!(!m.descriptor().can_rollback, "a read has nothing to undo");
    let mut d = driver(&m);
    let out = push(&mut d, &m, json!({"id": "o-1"}));
    assert_eq!(out.status, Status::Ok, "{out:?}");
    assert_eq!(out.output["body"]["state"], "shipped");
    assert!(
        out.replay.is_some(),
        "a read records its exchange for replay"
    );
    // Sent and never answered: a write would be in doubt; a read changed nothing.
    let out = push(&mut d, &m, json!({"id": "slow"}));
    assert_eq!(out.status, Status::Failed, "{out:?}");
    assert!(
        out.reason
            .as_deref()
            .unwrap()
            .contains("a read changes nothing"),
        "{out:?}"
    );
}
