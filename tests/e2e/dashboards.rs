//! The Prometheus alert rules and the Grafana dashboard in `config/` name only metrics the
//! node exports.

use axon_harness::TestNode;
use std::collections::BTreeSet;

/// Every `axon_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("axon_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        out.insert(text[start..end].to_owned());
        i = end;
    }
    out
}

#[test]
fn alerts_and_dashboard_name_exported_metrics() {
    let node = TestNode::start();
    // Touch the paths that create labelled series.
    assert!(node.echo(&serde_json::json!(1)).status().is_success());
    let exported: BTreeSet<String> = node
        .registry()
        .gather()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    let known = |name: &str| {
        exported.contains(name)
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                name.strip_suffix(s)
                    .is_some_and(|base| exported.contains(base))
            })
    };
    let root = env!("CARGO_MANIFEST_DIR");
    for file in [
        "config/prometheus/axon-alerts.yml",
        "config/prometheus/axon-alerts.test.yml",
        "config/grafana/axon-node.json",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        if file.ends_with(".json") {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(v["panels"].as_array().is_some_and(|p| !p.is_empty()));
        }
        let names = metric_names(&text);
        assert!(names.len() >= 5, "{file}: {names:?}");
        for name in names {
            assert!(
                known(&name),
                "{file} names {name}, which the node does not export"
            );
        }
    }
}

/// `promtool`, from Debian's `prometheus` package: installed here when the machine does
/// not have it, so the suite needs nothing set up by hand.
fn promtool() -> std::path::PathBuf {
    let found = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = found() {
        return p;
    }
    let apt = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let install = ["install", "-y", "--no-install-recommends", "prometheus"];
    // The package lists may be stale on a fresh machine: refreshed once if the first try
    // fails.
    let installed = apt(&install) || (apt(&["update"]) && apt(&install));
    assert!(
        installed,
        "promtool is needed to test the alert rules: installing Debian's prometheus package failed"
    );
    found().expect("Debian's prometheus package installs promtool")
}

#[test]
fn every_alert_rule_is_checked_and_unit_tested_by_promtool() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus");
    let promtool = promtool();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {args:?}:\n{text}");
        text
    };
    run(&["check", "rules", "axon-alerts.yml"]);
    run(&["test", "rules", "axon-alerts.test.yml"]);
    // Every alert has a test of its own.
    let rules = std::fs::read_to_string(format!("{dir}/axon-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(format!("{dir}/axon-alerts.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 14, "{alerts:?}");
    for a in alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "alert {a} has no promtool test"
        );
    }
}
