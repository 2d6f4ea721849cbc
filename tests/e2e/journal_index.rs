//! Index loss: the sled index is derived. Deleted, the node rebuilds it at start and
//! answers every query as before; `axon audit` reports its state and can rebuild it.

use crate::common::{sigterm_and_wait, spawn_axon};
use serde_json::{json, Value};
use std::path::Path;

fn audit(dir: &Path, extra: &[&str]) -> String {
    let (code, out, err) = crate::common::audit(dir, extra);
    assert_eq!(code, 0, "{out}{err}");
    out
}

/// Every query the journal answers, for comparing before and after.
fn answers(base: &str, codes: &[String], actions: &[String]) -> Vec<Value> {
    let c = axon_drivers::tls::client_builder().build().unwrap();
    let get = |p: String| -> Value { c.get(format!("{base}{p}")).send().unwrap().json().unwrap() };
    let mut out = vec![];
    for (i, code) in codes.iter().enumerate() {
        out.push(get(format!("/v1/journal/entries/{i}")));
        out.push(get(format!("/v1/journal/by-barcode/{code}")));
        out.push(get(format!(
            "/v1/journal/proof/inclusion?index={i}&size={}",
            codes.len()
        )));
    }
    out.push(get(format!(
        "/v1/journal/proof/consistency?from=1&to={}",
        codes.len()
    )));
    for e in &out.clone()[..] {
        if let Some(id) = e["id"].as_str() {
            out.push(get(format!("/v1/journal/by-id/{id}")));
        }
    }
    for action in actions {
        out.push(get(format!("/v1/journal/by-action/{action}")));
    }
    for q in [
        "kind=note",
        "kind=capsule&limit=3",
        "kind=capsule&after=20",
        "since=2000-01-01T00:00:00Z&limit=7",
        "until=2000-01-01T00:00:00Z",
    ] {
        out.push(get(format!("/v1/journal/entries?{q}")));
    }
    out
}

#[test]
fn a_lost_index_is_rebuilt_and_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_axon(dir.path(), &[], false);
    let base = node.base.clone();
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let c = axon_drivers::tls::client_builder().build().unwrap();
    let (mut codes, mut actions) = (vec![], vec![]);
    for i in 0..30 {
        let v: Value = if i % 3 == 0 {
            // A driver call: its capsule belongs to an action.
            let v: Value = c
                .post(format!("{base}/v1/act"))
                .bearer_auth(token.trim())
                .json(&serde_json::json!({"capability": "urn:axon:cap:echo", "args": json!({"call": i})}))
                .send()
                .unwrap()
                .json()
                .unwrap();
            actions.push(v["action_id"].as_str().unwrap().to_owned());
            v
        } else {
            c.post(format!("{base}/v1/journal/notes"))
                .bearer_auth(token.trim())
                .json(&json!({"text": format!("note {i}")}))
                .send()
                .unwrap()
                .json()
                .unwrap()
        };
        codes.push(v["barcode"].as_str().unwrap().to_owned());
    }
    let before = answers(&base, &codes, &actions);
    assert_eq!(sigterm_and_wait(node).0, 0);
    assert!(audit(dir.path(), &[]).contains("audit: index: consistent with the segments"));

    let index = dir.path().join("journal/index-shard-0");
    assert!(index.is_dir());
    std::fs::remove_dir_all(&index).unwrap();
    assert!(audit(dir.path(), &[]).contains("audit: index: none yet"));

    let node = spawn_axon(dir.path(), &[], false);
    let base = node.base.clone();
    assert_eq!(answers(&base, &codes, &actions), before);
    assert_eq!(sigterm_and_wait(node).0, 0);
    assert!(audit(dir.path(), &[]).contains("consistent with the segments"));
    assert!(audit(dir.path(), &["--rebuild-index"]).contains("audit: index: rebuilt"));
    assert!(audit(dir.path(), &[]).contains("consistent with the segments"));
}
