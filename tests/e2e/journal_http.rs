//! The journal over HTTP: notes become durable entries with ids and barcodes, links are
//! checked, and every answer can be verified with nothing but the key, the checkpoint and
//! the proofs.

use axon_harness::{expect_problem, NodeStatus, TestNode};
use axon_protocols::checkpoint::{Checkpoint, Verifier};
use axon_protocols::journal::{leaf_hash, parse_hex, Entry};
use axon_protocols::merkle::{self, Blake3};
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;

fn note(n: &TestNode, body: Value) -> reqwest::blocking::Response {
    n.client()
        .post(n.url("/v1/journal/notes"))
        .bearer_auth(&n.admin_token)
        .json(&body)
        .send()
        .unwrap()
}

fn hashes(v: &Value) -> Vec<[u8; 32]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| parse_hex::<32>(h.as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn notes_are_durable_linked_and_provable() {
    let n = TestNode::start();
    // Entry 0 is the first lane of the built-in echo driver, journaled at the first start.
    let res = note(&n, json!({"text": "deploy 4.2 started"}));
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], "/v1/journal/entries/1");
    let first: Value = res.json().unwrap();
    assert_eq!(first["index"], 1);
    let id0 = first["id"].as_str().unwrap().to_owned();
    let res = note(&n, json!({"text": "deploy 4.2 done", "links": [id0]}));
    assert_eq!(res.status(), 201);
    for i in 3..40 {
        assert_eq!(note(&n, json!({"text": format!("note {i}")})).status(), 201);
    }

    // Refusals.
    expect_problem(
        note(&n, json!({"text": "x", "links": ["00".repeat(32)]})),
        422,
        "bad-link",
    );
    expect_problem(
        note(&n, json!({"text": "x", "links": ["not hex"]})),
        422,
        "bad-link",
    );
    expect_problem(note(&n, json!({"text": "  "})), 400, "malformed-request");
    expect_problem(
        note(&n, json!({"text": "x", "extra": 1})),
        400,
        "malformed-request",
    );
    let res = n
        .client()
        .post(n.url("/v1/journal/notes"))
        .json(&json!({"text": "no token"}))
        .send()
        .unwrap();
    expect_problem(res, 401, "unauthenticated");
    expect_problem(n.get("/v1/journal/entries/40"), 404, "no-such-entry");
    expect_problem(n.get("/v1/journal/entries/-1"), 400, "invalid-parameter");
    expect_problem(
        n.get("/v1/journal/proof/inclusion?index=1"),
        400,
        "invalid-parameter",
    );
    expect_problem(
        n.get("/v1/journal/proof/inclusion?index=1&size=41"),
        400,
        "invalid-parameter",
    );
    expect_problem(
        n.get("/v1/journal/proof/inclusion?index=1&size=2&x=1"),
        400,
        "invalid-parameter",
    );
    expect_problem(
        n.get("/v1/journal/proof/consistency?from=0&to=3"),
        400,
        "invalid-parameter",
    );
    expect_problem(
        n.get("/v1/journal/by-barcode/NOPE"),
        400,
        "invalid-parameter",
    );
    expect_problem(
        n.get("/v1/journal/by-barcode/aaaaaaaaaaaa"),
        404,
        "no-such-entry",
    );

    assert_eq!(n.metric("axon_journal_entries", &[]), Some(40.0));
    assert_eq!(
        n.metric("axon_journal_appends_total", &[("outcome", "ok")]),
        Some(40.0)
    );
    assert_eq!(
        n.metric("axon_journal_appends_total", &[("outcome", "refused")]),
        Some(2.0)
    );
    assert_eq!(n.metric("axon_journal_halted", &[]), Some(0.0));
    assert!(n.metric("axon_journal_commit_seconds", &[]).unwrap() >= 1.0);

    // Verify with nothing but the key, the checkpoint and the proofs.
    let vkey = n.get("/v1/journal/key").text().unwrap();
    // Checkpoints are logged on a schedule: one covers all 40 within an interval.
    let note_text = n.checkpoint_covering(40);
    let cp =
        Checkpoint::parse(Verifier::parse(&vkey).unwrap().verify(&note_text).unwrap()).unwrap();
    assert_eq!(cp.size, 40);
    assert_eq!(cp.origin, "axon/shard-0");

    let e: Value = n.get("/v1/journal/entries/2").json().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(e["bytes_b64"].as_str().unwrap())
        .unwrap();
    let leaf = leaf_hash(&bytes);
    assert_eq!(
        e["leaf_hash"].as_str().unwrap(),
        axon_protocols::journal::hex(&leaf)
    );
    assert_eq!(e["id"], e["leaf_hash"]);
    let entry = Entry::from_bytes(&bytes).unwrap();
    assert_eq!(entry.body, json!({"text": "deploy 4.2 done"}));
    assert_eq!(entry.links, vec![id0.clone()]);
    assert_eq!(e["links"], json!([id0]));
    assert_eq!(e["kind"], "note");

    let p: Value = n
        .get("/v1/journal/proof/inclusion?index=2&size=40")
        .json()
        .unwrap();
    let proof = hashes(&p["proof"]);
    let proof: Vec<&[u8]> = proof.iter().map(|h| h.as_slice()).collect();
    merkle::verify_inclusion::<Blake3>(2, 40, &leaf, &proof, &cp.root).unwrap();

    let c: Value = n
        .get("/v1/journal/proof/consistency?from=7&to=40")
        .json()
        .unwrap();
    let proof = hashes(&c["proof"]);
    let proof: Vec<&[u8]> = proof.iter().map(|h| h.as_slice()).collect();
    let root7 = parse_hex::<32>(c["root1"].as_str().unwrap()).unwrap();
    merkle::verify_consistency::<Blake3>(7, 40, &proof, &root7, &cp.root).unwrap();

    let code = e["barcode"].as_str().unwrap();
    let found: Value = n
        .get(&format!("/v1/journal/by-barcode/{code}"))
        .json()
        .unwrap();
    assert_eq!(found["entries"][0], e);

    // A restart of the journal actor reopens the segments and answers the same.
    assert_eq!(
        n.post_admin("/v1/supervision/journal/restart").status(),
        202
    );
    axon_harness::wait_until("the journal restarted", Duration::from_secs(10), || {
        n.actor("journal")
            .is_some_and(|a| a.restarts_total == 1 && a.status == NodeStatus::Running)
    })
    .unwrap();
    let again: Value = n.get("/v1/journal/entries/2").json().unwrap();
    assert_eq!(again, e);
    // The new incarnation serves the newest logged checkpoint: the one of 40 (or, logged
    // at its stop or start, one of the same tree).
    let served = n.get("/v1/journal/checkpoint").text().unwrap();
    let verified = Verifier::parse(&vkey)
        .unwrap()
        .verify(&served)
        .map(str::to_owned);
    assert_eq!(Checkpoint::parse(&verified.unwrap()).unwrap().root, cp.root);
}

#[test]
fn entries_are_found_by_id_action_kind_and_time() {
    let n = TestNode::start();
    let mut actions = vec![];
    for i in 0..6 {
        assert_eq!(note(&n, json!({"text": format!("note {i}")})).status(), 201);
        let echoed: Value = n
            .client()
            .post(n.url("/v1/act"))
            .bearer_auth(&n.admin_token)
            .json(
                &serde_json::json!({"capability": "urn:axon:cap:echo", "args": json!({"call": i})}),
            )
            .send()
            .unwrap()
            .json()
            .unwrap();
        actions.push(echoed["action_id"].as_str().unwrap().to_owned());
    }
    // The index catches up with the nineteen entries: the first lane of echo, then per
    // round a note and an action's dispatch and result.
    axon_harness::wait_until("the index caught up", Duration::from_secs(10), || {
        n.metric("axon_journal_index_lag_entries", &[]) == Some(0.0)
    })
    .unwrap();
    // By id: the same answer as by index.
    let e3: Value = n.get("/v1/journal/entries/3").json().unwrap();
    let by_id: Value = n
        .get(&format!("/v1/journal/by-id/{}", e3["id"].as_str().unwrap()))
        .json()
        .unwrap();
    assert_eq!(by_id, e3);
    // By action: the dispatch and the result (with its capsule) of the call.
    let found: Value = n
        .get(&format!("/v1/journal/by-action/{}", actions[2]))
        .json()
        .unwrap();
    assert_eq!(found["action_id"], actions[2].as_str());
    assert_eq!(found["entries"].as_array().unwrap().len(), 2);
    assert_eq!(found["entries"][0]["index"], 8);
    assert_eq!(found["entries"][0]["kind"], "dispatch");
    assert_eq!(found["entries"][1]["index"], 9);
    assert_eq!(found["entries"][1]["kind"], "result");
    // By kind, a page at a time.
    let mut seen = vec![];
    let mut url = "/v1/journal/entries?kind=result&limit=4".to_owned();
    loop {
        let page: Value = n.get(&url).json().unwrap();
        seen.extend(
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["index"].as_u64().unwrap()),
        );
        match page["next_after"].as_u64() {
            Some(after) => url = format!("/v1/journal/entries?kind=result&limit=4&after={after}"),
            None => break,
        }
    }
    assert_eq!(seen, vec![3, 6, 9, 12, 15, 18]);
    // By time: everything is from today; nothing from before 2000 or after 9999.
    let all: Value = n
        .get("/v1/journal/entries?since=2000-01-01T00:00:00Z&until=9999-12-31T23:59:59.999Z")
        .json()
        .unwrap();
    assert_eq!(all["entries"].as_array().unwrap().len(), 19);
    assert_eq!(all["next_after"], Value::Null);
    let none: Value = n
        .get("/v1/journal/entries?kind=note&until=2000-01-01T00:00:00Z")
        .json()
        .unwrap();
    assert_eq!(none["entries"], json!([]));
    // Percent-encoded times are read as such.
    let enc: Value = n
        .get("/v1/journal/entries?since=2000-01-01T00%3A00%3A00Z&kind=note")
        .json()
        .unwrap();
    assert_eq!(enc["entries"].as_array().unwrap().len(), 6);

    for (path, status, slug) in [
        ("/v1/journal/by-id/zz", 400, "invalid-parameter"),
        (
            &format!("/v1/journal/by-id/{}", "0".repeat(64)),
            404,
            "no-such-entry",
        ),
        ("/v1/journal/by-action/xyz", 400, "invalid-parameter"),
        (
            &format!("/v1/journal/by-action/{}", "0".repeat(32)),
            404,
            "no-such-entry",
        ),
        ("/v1/journal/entries?kind=nope", 400, "invalid-parameter"),
        (
            "/v1/journal/entries?since=yesterday",
            400,
            "invalid-parameter",
        ),
        (
            "/v1/journal/entries?until=2026-02-30T00:00:00Z",
            400,
            "invalid-parameter",
        ),
        (
            "/v1/journal/entries?since=2026-01-01T00:00:00%2B01:00",
            400,
            "invalid-parameter",
        ),
        ("/v1/journal/entries?limit=0", 400, "invalid-parameter"),
        ("/v1/journal/entries?limit=1001", 400, "invalid-parameter"),
        ("/v1/journal/entries?after=-1", 400, "invalid-parameter"),
        (
            "/v1/journal/entries?kind=note&kind=note",
            400,
            "invalid-parameter",
        ),
        ("/v1/journal/entries?page=2", 400, "invalid-parameter"),
        ("/v1/journal/entries?since=%ZZ", 400, "invalid-parameter"),
    ] {
        expect_problem(n.get(path), status, slug);
    }
    // Past the end: an empty last page.
    let past: Value = n.get("/v1/journal/entries?after=500").json().unwrap();
    assert_eq!(past, json!({"entries": [], "next_after": null}));
}
