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
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
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
