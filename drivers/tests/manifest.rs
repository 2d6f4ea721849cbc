//! Driver manifests: the compiled-in one is valid; a bad one is refused with its file and
//! the key named, whatever the text; obligations hold every call of a driver.

use axon_drivers::descriptor::{Effect, Lane, Risk};
use axon_drivers::driver::{act_checked, Call, Driver, Outcome, Prediction, Status};
use axon_drivers::echo::Echo;
use axon_drivers::manifest::{
    artifact_hash, load_dir, Kind, Manifest, ManifestError, ECHO_MANIFEST,
};
use axon_protocols::intent::AxonIntent;
use quickcheck::{Arbitrary, Gen, QuickCheck};
use serde_json::{json, Value};
use std::path::Path;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(text, Path::new("drivers/test.toml"))
}

/// The key a refusal names.
fn refused_key(text: &str) -> String {
    match parse(text) {
        Err(ManifestError::Key { key, file, .. }) => {
            assert_eq!(file, Path::new("drivers/test.toml"));
            key
        }
        other => panic!("expected a refusal naming a key, got {other:?}"),
    }
}

/// The echo manifest with the line that starts with `key =` replaced by `line`.
fn with_line(key: &str, line: &str) -> String {
    let mut found = false;
    let out: Vec<String> = ECHO_MANIFEST
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key} =")) {
                found = true;
                line.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(found, "no line for {key}");
    out.join("\n")
}

/// A call of `intent` for an action.
fn call(intent: &AxonIntent) -> Call<'_> {
    Call {
        action_id: "00000000000000000000000000000000",
        intent,
    }
}

fn intent(args: Value) -> AxonIntent {
    AxonIntent {
        capability: "urn:axon:cap:echo".into(),
        args,
        intent_id: None,
        correlation_id: None,
        budget_ms: None,
        purpose: None,
        consent: None,
    }
}

#[test]
fn the_compiled_in_echo_manifest_describes_echo() {
    let m = Manifest::builtin_echo();
    assert_eq!(m.kind, Kind::Echo);
    assert_eq!(m.initial_lane, Lane::Live);
    let d = Echo::default().describe();
    assert_eq!(d, m.descriptor());
    assert_eq!(d.name, "echo");
    assert_eq!(d.capability, "urn:axon:cap:echo");
    assert_eq!((d.effect, d.risk), (Effect::Read, Risk::Low));
    assert!(!d.can_rollback);
    // The artifact is the kind's code (its identity in the binary) and the manifest: the
    // same text is the same build, a changed limit or lane a new one, as is the same
    // manifest for another kind's code.
    assert_eq!(
        d.artifact_hash,
        axon_protocols::journal::hex(&artifact_hash(&m))
    );
    assert_eq!(artifact_hash(&Manifest::builtin_echo()), artifact_hash(&m));
    let changed = parse(&ECHO_MANIFEST.replace("deadline_ms = 1000", "deadline_ms = 999")).unwrap();
    assert_ne!(artifact_hash(&changed), artifact_hash(&m));
    let relaned = parse(&ECHO_MANIFEST.replace("lane = \"live\"", "lane = \"testing\"")).unwrap();
    assert_ne!(artifact_hash(&relaned), artifact_hash(&m));
    let manifest_alone = blake3::hash(b"builtin:echo@1");
    assert_ne!(artifact_hash(&m), *manifest_alone.as_bytes());
}

#[test]
fn each_bad_value_is_refused_with_its_key() {
    for (key, line, named) in [
        ("name", "name = \"Echo\"", "name"),
        ("name", "name = \"\"", "name"),
        ("version", "version = \"1 0\"", "version"),
        ("kind", "kind = \"http2\"", "kind"),
        ("capability", "capability = \"urn:axon:echo\"", "capability"),
        ("effect", "effect = \"delete\"", "effect"),
        ("risk", "risk = 3", "risk"),
        (
            "max_blast_radius",
            "max_blast_radius = -1",
            "max_blast_radius",
        ),
        ("idempotent", "idempotent = \"yes\"", "idempotent"),
        ("lane", "lane = \"production\"", "lane"),
        ("deadline_ms", "deadline_ms = 0", "limits.deadline_ms"),
        ("concurrency", "concurrency = 5000", "limits.concurrency"),
        (
            "rate_per_second",
            "rate_per_second = 0",
            "limits.rate_per_second",
        ),
        (
            "max_payload_bytes",
            "max_payload_bytes = 0",
            "limits.max_payload_bytes",
        ),
        (
            "mailbox_capacity",
            "mailbox_capacity = 0",
            "limits.mailbox_capacity",
        ),
        ("p99_ms", "p99_ms = 0", "slo.p99_ms"),
        (
            "max_error_rate",
            "max_error_rate = 1.5",
            "slo.max_error_rate",
        ),
        ("units", "units = -1.0", "cost.units"),
        (
            "expected_ms",
            "expected_ms = 99999999999",
            "cost.expected_ms",
        ),
    ] {
        assert_eq!(refused_key(&with_line(key, line)), named, "{line}");
    }
}

#[test]
fn unknown_and_missing_keys_are_named() {
    assert_eq!(
        refused_key(&format!("surprise = 1\n{ECHO_MANIFEST}")),
        "surprise"
    );
    let text = ECHO_MANIFEST.replace("[limits]", "[limits]\ndeadline = 5");
    assert_eq!(refused_key(&text), "limits.deadline");
    assert_eq!(refused_key(&with_line("capability", "")), "capability");
    let text = ECHO_MANIFEST.replace("deadline_ms = 1000", "");
    assert_eq!(refused_key(&text), "limits.deadline_ms");
    assert!(matches!(
        parse("name = \"x\"\nname = \"y\"\n"),
        Err(ManifestError::Syntax { .. })
    ));
}

#[test]
fn obligations_must_be_schemas_with_one_encoding() {
    let bad_schema = format!("{ECHO_MANIFEST}\n[obligations.args]\ntype = 7\n");
    assert_eq!(refused_key(&bad_schema), "obligations.args");
    let huge = format!("{ECHO_MANIFEST}\n[obligations.args]\nmaximum = 9007199254740993\n");
    assert_eq!(refused_key(&huge), "obligations.args.maximum");
}

#[test]
fn arguments_that_break_the_schema_never_reach_the_driver() {
    let text = format!(
        "{ECHO_MANIFEST}\n[obligations.args]\ntype = \"object\"\nrequired = [\"to\"]\n[obligations.args.properties.to]\ntype = \"string\"\nmaxLength = 8\n"
    );
    let m = parse(&text).unwrap();
    let mut echo = Echo::default();
    let v = act_checked(
        &mut echo,
        &m.obligations,
        &call(&intent(json!({"to": "far too long"}))),
    )
    .unwrap_err();
    assert_eq!((v.which, v.path.as_str()), ("args", "/to"));
    let v = act_checked(
        &mut echo,
        &m.obligations,
        &call(&intent(json!({"from": "a"}))),
    )
    .unwrap_err();
    assert_eq!((v.which, v.path.as_str()), ("args", ""));
    assert_eq!(echo.handled(), 0, "a refused intent reached the driver");
    let ok = act_checked(
        &mut echo,
        &m.obligations,
        &call(&intent(json!({"to": "b"}))),
    )
    .unwrap();
    assert_eq!(ok, Outcome::ok(json!({"to": "b"})));
    assert_eq!(echo.handled(), 1);
}

#[test]
fn an_outcome_that_breaks_the_postcondition_is_failed() {
    let text = format!(
        "{ECHO_MANIFEST}\n[obligations.postcondition.properties.output]\ntype = \"number\"\n"
    );
    let m = parse(&text).unwrap();
    let mut echo = Echo::default();
    let out = act_checked(&mut echo, &m.obligations, &call(&intent(json!("text")))).unwrap();
    assert_eq!(out.status, Status::Failed);
    assert!(out.reason.unwrap().contains("postcondition"));
    let out = act_checked(&mut echo, &m.obligations, &call(&intent(json!(3)))).unwrap();
    assert_eq!(out.status, Status::Ok);
    // The twin of echo is exact.
    assert_eq!(
        echo.predict(&call(&intent(json!([1])))),
        Prediction::Expected {
            output: json!([1]),
            utility: 1.0
        }
    );
}

#[test]
fn a_directory_loads_in_name_order_and_refuses_a_second_driver_of_one_name() {
    let dir = tempfile::tempdir().unwrap();
    let b = ECHO_MANIFEST.replace("name = \"echo\"", "name = \"b\"");
    std::fs::write(dir.path().join("2.toml"), &b).unwrap();
    std::fs::write(dir.path().join("1.toml"), ECHO_MANIFEST).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let names: Vec<String> = load_dir(dir.path())
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["echo", "b"]);
    std::fs::write(dir.path().join("3.toml"), &b).unwrap();
    match load_dir(dir.path()) {
        Err(ManifestError::Duplicate { name, .. }) => assert_eq!(name, "b"),
        other => panic!("{other:?}"),
    }
    std::fs::write(dir.path().join("3.toml"), "x".repeat(300 * 1024)).unwrap();
    assert!(matches!(
        load_dir(dir.path()),
        Err(ManifestError::Read { .. })
    ));
}

/// A manifest text made hostile: lines dropped, values replaced, bytes thrown in.
#[derive(Clone, Debug)]
struct Hostile(String);

impl Arbitrary for Hostile {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut lines: Vec<String> = ECHO_MANIFEST.lines().map(str::to_owned).collect();
        for _ in 0..1 + usize::arbitrary(g) % 4 {
            let i = usize::arbitrary(g) % lines.len();
            match u8::arbitrary(g) % 5 {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    if let Some((k, _)) = lines[i].split_once('=') {
                        let v = g
                            .choose(&[
                                "-1",
                                "0",
                                "1e400",
                                "\"\"",
                                "[]",
                                "{}",
                                "true",
                                "\"\u{0}\"",
                                "18446744073709551615",
                                "\"urn:axon:cap:\"",
                                "nan",
                                "inf",
                            ])
                            .unwrap();
                        lines[i] = format!("{k}= {v}");
                    }
                }
                2 => lines.insert(i, String::arbitrary(g)),
                3 => lines.insert(i, format!("[{}]", String::arbitrary(g))),
                _ => lines[i].push_str(&String::arbitrary(g)),
            }
        }
        Hostile(lines.join("\n"))
    }
}

#[test]
fn any_text_is_a_manifest_or_a_refusal_naming_the_file() {
    fn prop(h: Hostile) -> bool {
        match parse(&h.0) {
            Ok(m) => !m.name.is_empty(),
            Err(e) => e.to_string().contains("drivers/test.toml"),
        }
    }
    QuickCheck::new()
        .tests(3000)
        .quickcheck(prop as fn(Hostile) -> bool);
}

#[test]
fn a_driver_that_starts_live_needs_an_slo_and_its_checks_are_checked() {
    let slo_at = ECHO_MANIFEST
        .find("[slo]")
        .expect("the echo manifest has an slo");
    let without = &ECHO_MANIFEST[..slo_at];
    assert_eq!(refused_key(without), "slo");
    // Not live at first: it loads, and the lane routes refuse to make it live.
    let testing = without.replace("lane = \"live\"", "lane = \"testing\"");
    assert!(parse(&testing).unwrap().slo.is_none());
    for (extra, key) in [
        ("window_calls = 5\n", "slo.window_calls"),
        ("min_calls = 0\n", "slo.min_calls"),
        ("window_calls = 20\nmin_calls = 21\n", "slo.min_calls"),
        (
            "[slo.errors]\nfailure_limit = 0\n",
            "slo.errors.failure_limit",
        ),
        ("surprise = 1\n", "slo.surprise"),
    ] {
        assert_eq!(
            refused_key(&format!("{ECHO_MANIFEST}{extra}")),
            key,
            "{extra}"
        );
    }
    let m = parse(&format!("{ECHO_MANIFEST}[slo.latency]\ndry_run = true\n")).unwrap();
    let slo = m.descriptor().slo.unwrap();
    assert!(slo.latency.dry_run && !slo.errors.dry_run);
    assert_eq!((slo.window_calls, slo.min_calls), (50, 20));
}

#[test]
fn a_shadow_is_judged_as_its_manifest_says_and_a_bad_shadow_table_is_refused() {
    let shadow = |table: &str| format!("{ECHO_MANIFEST}\n[shadow]\n{table}");
    // Without the table: outputs are compared.
    let plain = parse(ECHO_MANIFEST).unwrap().shadow;
    let (a, b) = (json!({"x": 1, "t": 5}), json!({"x": 1, "t": 6}));
    assert!(plain.agrees(&a, true, &a));
    assert!(!plain.agrees(&a, true, &b));
    assert!(
        !plain.agrees(&a, false, &a),
        "a failed live call never agrees"
    );
    let status = parse(&shadow("compare = \"status\"\n")).unwrap().shadow;
    assert!(status.agrees(&a, true, &b) && !status.agrees(&a, false, &a));
    let paths = parse(&shadow("compare = \"paths\"\npaths = [\"/x\"]\n"))
        .unwrap()
        .shadow;
    assert!(paths.agrees(&a, true, &b));
    assert!(!paths.agrees(&json!({"x": 2}), true, &b));
    assert!(!paths.agrees(&a, false, &b));
    let many = format!(
        "compare = \"paths\"\npaths = [{}]\n",
        vec!["\"/a\""; 33].join(", ")
    );
    for table in [
        "compare = \"paths\"\n",
        "paths = [\"/x\"]\n",
        "compare = \"paths\"\npaths = [\"x\"]\n",
        many.as_str(),
    ] {
        assert_eq!(refused_key(&shadow(table)), "shadow.paths", "{table}");
    }
    let with_utility = |p: &str| {
        ECHO_MANIFEST.replace(
            "lane = \"live\"\n",
            &format!("lane = \"live\"\nutility = {p:?}\n"),
        )
    };
    let m = parse(&with_utility("/u/0")).unwrap();
    assert_eq!(m.realized_utility(true, &json!({"u": [0.5]})), 0.5);
    assert_eq!(m.realized_utility(false, &json!({"u": [-2]})), -2.0);
    assert_eq!(m.realized_utility(true, &json!({"u": ["x"]})), 1.0);
    assert_eq!(m.realized_utility(false, &Value::Null), 0.0);
    assert_eq!(refused_key(&with_utility("u")), "utility");
    for table in ["compare = \"close\"\n", "surprise = 1\n"] {
        assert!(refused_key(&shadow(table)).starts_with("shadow"), "{table}");
    }
}
