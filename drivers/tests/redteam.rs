//! The red-team suite a driver must pass before `shadow`: the drivers Axon ships pass it
//! against its stand-ins (a loopback service, a scratch directory), and drivers that
//! forward an injection string unencoded, let a hostile header through or follow a link
//! out of their directory are caught, the check and the value named.

use axon_drivers::descriptor::{DriverDescriptor, Effect};
use axon_drivers::driver::{Call, Driver, Outcome, Prediction};
use axon_drivers::manifest::Manifest;
use axon_drivers::redteam::{run, run_with};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn http_manifest(extra: &str) -> Manifest {
    Manifest::parse(&http_text(extra), Path::new("search.toml")).unwrap_or_else(|e| panic!("{e}"))
}

/// The lines every http manifest of these tests begins with: driver `name`, serving
/// `urn:axon:cap:<capability>`, a write, with small limits.
fn http_head(name: &str, capability: &str) -> String {
    format!(
        r#"name = "{name}"
version = "1.0.0"
kind = "http"
capability = "urn:axon:cap:{capability}"
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
"#
    )
}

fn http_text(extra: &str) -> String {
    format!(
        r#"{}[obligations.args]
type = "object"
required = ["q", "n"]
additionalProperties = false
properties = {{ q = {{ type = "string", maxLength = 64 }}, n = {{ type = "integer", minimum = 0, maximum = 100 }} }}
{extra}
"#,
        http_head("search", "search.query")
    )
}

const SEARCH: &str = r#"[http]
timeout_ms = 2000
[http.request]
method = "POST"
url = "https://search.example.com:8443/v1/search?q={q}&n={n}"
body = "args"
headers = { x-client = "axon" }
"#;

fn file_manifest(dir: &Path) -> Manifest {
    let text = r#"name = "ledger"
version = "1.0.0"
kind = "file"
capability = "urn:axon:cap:ledger.append"
effect = "write"
risk = "low"
max_blast_radius = 1
idempotent = false
[cost]
expected_ms = 5
units = 1.0
[limits]
deadline_ms = 5000
concurrency = 1
rate_per_second = 100
max_payload_bytes = 65536
mailbox_capacity = 16
[file]
dir = "ledger"
"#;
    Manifest::parse(text, &dir.join("ledger.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn the_http_driver_passes_against_a_loopback_service_its_samples_answered_as_they_say() {
    let m = http_manifest(&format!(
        r#"[obligations.postcondition]
properties = {{ output = {{ properties = {{ body = {{ required = ["results"] }} }} }} }}
[[redteam.samples]]
args = {{ q = "axon", n = 3 }}
reply = {{ status = 200, body = {{ results = [] }} }}
{SEARCH}"#
    ));
    let s = scratch();
    let r = run(&m, s.path());
    assert!(r.passed, "{r:?}");
    assert_eq!(r.samples, 1);
    // A wrong type for each member, each required one missing, an unknown member, past
    // the length and the bounds, and the non-objects.
    assert!(r.violations >= 9, "{r:?}");
    // Every hostile string and boundary number that fits the schema reached the
    // service exactly as sent.
    assert!(r.hostile_exact >= 20, "{r:?}");
    assert_eq!(r.hostile_refused, 0);
}

#[test]
fn a_sample_whose_answer_breaks_the_postcondition_fails_the_suite() {
    let m = http_manifest(&format!(
        r#"[obligations.postcondition]
properties = {{ output = {{ properties = {{ body = {{ required = ["results"] }} }} }} }}
[[redteam.samples]]
args = {{ q = "axon", n = 3 }}
reply = {{ status = 200, body = {{ nothing = true }} }}
{SEARCH}"#
    ));
    let s = scratch();
    let r = run(&m, s.path());
    assert!(!r.passed);
    let f = r.failure.unwrap();
    assert_eq!(f.check, "sample");
    assert_eq!(f.value, json!({"q": "axon", "n": 3}));
    assert!(f.reason.contains("postcondition"), "{}", f.reason);
}

#[test]
fn a_header_built_from_an_unchecked_argument_fails_and_a_precondition_makes_it_pass() {
    let header = SEARCH.replace(r#"x-client = "axon""#, r#"x-query = "{q}""#);
    let s = scratch();
    let r = run(&http_manifest(&header), s.path());
    let f = r.failure.expect("caught");
    assert_eq!(f.check, "hostile_value");
    assert!(f.value["q"].is_string(), "{f:?}");
    // Refused by a precondition, a hostile value never goes out.
    let checked = format!(
        r#"[obligations.precondition]
properties = {{ args = {{ properties = {{ q = {{ pattern = "^[a-z0-9-]*$" }} }} }} }}
{header}"#
    );
    let r = run(&http_manifest(&checked), s.path());
    assert!(r.passed, "{r:?}");
    assert!(r.hostile_refused > 0, "{r:?}");
}

/// Sends `POST target` with `header` and `body` to the stand-in at `base`, written by
/// hand as a misbehaving driver would, and answers `ok` whatever came back (the service
/// may refuse what it cannot read and close before the body).
fn post_raw(base: &str, target: &str, header: &str, body: &str) -> Outcome {
    let mut conn = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    let _ = write!(
        conn,
        "POST {target} HTTP/1.1\r\nhost: x\r\n{header}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    Outcome::ok(json!({"status": 200, "body": {}}))
}

/// An http driver that pastes the arguments into its request target, escaping only what
/// would break the request line.
struct Unencoded {
    base: String,
}

impl Driver for Unencoded {
    fn describe(&self) -> DriverDescriptor {
        http_manifest(SEARCH).descriptor()
    }
    fn effect(&self) -> Effect {
        Effect::Write
    }
    fn predict(&mut self, _: &Call) -> Prediction {
        Prediction::Inconclusive {
            reason: "none".into(),
        }
    }
    fn push(&mut self, call: &Call) -> Outcome {
        let args = &call.intent.args;
        // Only what would break the request line is escaped; `&`, `/`, `'` go as they are.
        let q = args["q"]
            .as_str()
            .unwrap_or("")
            .replace(' ', "%20")
            .replace('\t', "%09")
            .replace('\r', "%0D")
            .replace('\n', "%0A");
        let n = args["n"].to_string();
        post_raw(
            &self.base,
            &format!("/v1/search?q={q}&n={n}"),
            "x-client: axon",
            &args.to_string(),
        )
    }
    fn pull(&mut self, call: &Call) -> Outcome {
        self.push(call)
    }
}

#[test]
fn a_driver_that_forwards_an_injection_string_unencoded_is_caught() {
    let m = http_manifest(SEARCH);
    let s = scratch();
    let r = run_with(&m, s.path(), |stand_in| {
        let url = &stand_in.http_settings.as_ref().unwrap().request.url;
        let base = url.split("/v1/").next().unwrap().to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        Ok(Box::new(Unencoded { base }) as Box<dyn Driver>)
    });
    assert!(!r.passed);
    let f = r.failure.unwrap();
    assert_eq!(f.check, "hostile_value", "{f:?}");
    assert!(f.reason.contains("request target"), "{}", f.reason);
    assert_ne!(f.value["q"], json!("axon"));
}

#[test]
fn a_url_whose_host_comes_from_the_arguments_cannot_be_stood_in_for() {
    let m = http_manifest(&SEARCH.replace("search.example.com", "{q}.example.com"));
    let s = scratch();
    let f = run(&m, s.path()).failure.unwrap();
    assert_eq!(f.check, "setup");
    assert!(f.reason.contains("host"), "{}", f.reason);
}

#[test]
fn the_file_driver_passes_its_planted_links_refused_and_its_records_read_back_as_sent() {
    let d = scratch();
    let m = file_manifest(d.path());
    let s = scratch();
    let r = run(&m, s.path());
    assert!(r.passed, "{r:?}");
    // Names with a path in them, or starting with a dot, break the file name's pattern.
    assert!(r.violations >= 5, "{r:?}");
    assert!(r.hostile_exact >= 20, "{r:?}");
    // The real directory was never touched, and the scratch directory is gone.
    assert!(!d.path().join("ledger").exists());
    assert_eq!(std::fs::read_dir(s.path()).unwrap().count(), 0);
}

/// A file driver that joins the name onto its directory and appends, following links.
struct Naive {
    dir: PathBuf,
}

impl Driver for Naive {
    fn describe(&self) -> DriverDescriptor {
        file_manifest(Path::new(".")).descriptor()
    }
    fn effect(&self) -> Effect {
        Effect::Write
    }
    fn predict(&mut self, _: &Call) -> Prediction {
        Prediction::Inconclusive {
            reason: "none".into(),
        }
    }
    fn push(&mut self, call: &Call) -> Outcome {
        let args = &call.intent.args;
        let name = args["file"].as_str().unwrap_or("x");
        let line = json!({"action_id": call.action_id, "record": args["record"]});
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))
            .unwrap();
        writeln!(f, "{line}").unwrap();
        Outcome::ok(Value::Null)
    }
    fn pull(&mut self, call: &Call) -> Outcome {
        self.push(call)
    }
}

#[test]
fn a_file_driver_that_follows_a_link_out_of_its_directory_is_caught() {
    let d = scratch();
    let m = file_manifest(d.path());
    let s = scratch();
    let r = run_with(&m, s.path(), |stand_in| {
        let dir = stand_in.file_settings.as_ref().unwrap().dir.clone();
        Ok(Box::new(Naive { dir }) as Box<dyn Driver>)
    });
    let f = r.failure.expect("caught");
    assert_eq!(f.check, "hostile_value", "{f:?}");
    assert!(
        f.value["file"].as_str().unwrap().starts_with("redteam-"),
        "{f:?}"
    );
    assert!(f.reason.contains("outside"), "{}", f.reason);
}

#[test]
fn a_sample_that_does_not_fit_the_schema_is_refused_with_its_key() {
    let text = http_text(&format!(
        "[[redteam.samples]]\nargs = {{ q = \"axon\" }}\n{SEARCH}"
    ));
    let e = Manifest::parse(&text, Path::new("search.toml")).unwrap_err();
    assert!(e.to_string().contains("redteam.samples.0.args"), "{e}");
}

/// An http driver for `urn:axon:cap:orders.create` sending its `order` argument, an
/// object, as the request body (as a grown POST driver does).
fn orders_manifest() -> Manifest {
    let text = http_head("orders", "orders.create")
        + r#"[obligations.args]
type = "object"
required = ["order"]
additionalProperties = false
[obligations.args.properties.order]
type = "object"
required = ["note", "items"]
properties = { note = { type = "string", maxLength = 64 }, items = { type = "array", minItems = 1, items = { type = "integer" } } }
[http]
timeout_ms = 2000
[http.request]
method = "POST"
url = "https://orders.example.com/v1/orders"
body = { member = "order" }
"#;
    Manifest::parse(&text, Path::new("orders.toml")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_body_is_built_from_the_schema_and_hostile_values_inside_it_arrive_as_sent() {
    // No sample declared: the suite builds {"order": {"note": "axon", "items": [0]}}.
    let s = scratch();
    let r = run(&orders_manifest(), s.path());
    assert!(r.passed, "{r:?}");
    // The hostile strings went into order.note, the boundary numbers into order.items'
    // place, each checked in the body the service received.
    assert!(r.hostile_exact >= 20, "{r:?}");
    assert!(r.violations >= 3, "{r:?}");
}

/// An http driver that "cleans" the strings of its body before it sends them: line
/// breaks and control characters dropped.
struct Cleaning {
    base: String,
}

impl Driver for Cleaning {
    fn describe(&self) -> DriverDescriptor {
        orders_manifest().descriptor()
    }
    fn effect(&self) -> Effect {
        Effect::Write
    }
    fn predict(&mut self, _: &Call) -> Prediction {
        Prediction::Inconclusive {
            reason: "none".into(),
        }
    }
    fn push(&mut self, call: &Call) -> Outcome {
        let mut order = call.intent.args["order"].clone();
        if let Some(note) = order["note"].as_str() {
            order["note"] = json!(note.chars().filter(|c| !c.is_control()).collect::<String>());
        }
        post_raw(
            &self.base,
            "/v1/orders",
            "content-type: application/json",
            &order.to_string(),
        )
    }
    fn pull(&mut self, call: &Call) -> Outcome {
        self.push(call)
    }
}

#[test]
fn a_driver_that_changes_a_value_inside_its_body_is_caught() {
    let s = scratch();
    let r = run_with(&orders_manifest(), s.path(), |stand_in| {
        let url = &stand_in.http_settings.as_ref().unwrap().request.url;
        let base = url.split("/v1/").next().unwrap().to_owned();
        Ok(Box::new(Cleaning { base }) as Box<dyn Driver>)
    });
    assert!(!r.passed);
    let f = r.failure.unwrap();
    assert_eq!(f.check, "hostile_value", "{f:?}");
    assert!(f.reason.contains("body"), "{}", f.reason);
    let note = f.value["order"]["note"].as_str().unwrap();
    assert!(note.chars().any(char::is_control), "{note:?}");
}

#[test]
fn a_large_schema_leaves_room_for_hostile_values_and_says_what_it_did_not_run() {
    // 400 bounded integer members: more schema-breaking and more hostile values than one
    // suite runs.
    let members: Vec<String> = (0..400)
        .map(|i| format!("m{i} = {{ type = \"integer\", minimum = 0, maximum = 9 }}"))
        .collect();
    let text = format!(
        r#"{}[obligations.args]
type = "object"
required = ["m0"]
additionalProperties = false
properties = {{ {} }}
[http]
timeout_ms = 2000
[http.request]
method = "POST"
url = "https://wide.example.com/v1"
body = "args"
"#,
        http_head("wide", "wide"),
        members.join(", ")
    );
    let m = Manifest::parse(&text, Path::new("wide.toml")).unwrap_or_else(|e| panic!("{e}"));
    let s = scratch();
    let r = run(&m, s.path());
    assert!(r.passed, "{:?}", r.failure);
    let run_cases = r.violations + r.hostile_exact + r.hostile_refused;
    assert!(
        run_cases <= axon_drivers::redteam::MAX_CASES as u64,
        "{run_cases}"
    );
    // The violations (about 1500 built) did not crowd out the hostile values (768 fit
    // the schema, fewer than half the room): all of those ran, and violations the rest.
    let half = (axon_drivers::redteam::MAX_CASES - axon_drivers::manifest::MAX_SAMPLES) / 2;
    assert_eq!(r.hostile_exact + r.hostile_refused, 768, "{r:?}");
    assert!(r.violations >= half as u64, "{r:?}");
    assert!(
        r.notes.iter().any(|n| n.contains("were not run")),
        "{:?}",
        r.notes
    );
}
