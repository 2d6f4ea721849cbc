//! `axon verify-proof` checks what the node served, offline: a good proof passes, and any
//! change to the proof, the entry or the checkpoint fails.

use axon_harness::TestNode;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn verify(dir: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_axon"));
    cmd.arg("verify-proof")
        .arg("--key")
        .arg(dir.join("key"))
        .arg("--checkpoint")
        .arg(dir.join("checkpoint"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn proofs_verify_offline_and_changes_are_caught() {
    let n = TestNode::start();
    // Entry 0 is the first lane of the built-in echo driver: eleven notes make twelve.
    for i in 0..11 {
        let res = n
            .client()
            .post(n.url("/v1/journal/notes"))
            .bearer_auth(&n.admin_token)
            .json(&json!({"text": format!("note {i}")}))
            .send()
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    let old_checkpoint = n.checkpoint_covering(12);
    let res = n
        .client()
        .post(n.url("/v1/journal/notes"))
        .bearer_auth(&n.admin_token)
        .json(&json!({"text": "the thirteenth"}))
        .send()
        .unwrap();
    assert_eq!(res.status(), 201);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, text: &str| std::fs::write(d.join(name), text).unwrap();
    write("key", &n.get("/v1/journal/key").text().unwrap());
    write("checkpoint", &n.checkpoint_covering(13));
    write("old", &old_checkpoint);
    let inclusion = n
        .get("/v1/journal/proof/inclusion?index=5&size=13")
        .text()
        .unwrap();
    write("inclusion", &inclusion);
    write("entry", &n.get("/v1/journal/entries/5").text().unwrap());
    let consistency = n
        .get("/v1/journal/proof/consistency?from=12&to=13")
        .text()
        .unwrap();
    let p = |f: &str| d.join(f).to_str().unwrap().to_owned();

    let (code, out) = verify(
        d,
        &["--proof", &p("inclusion"), "--entry", &p("entry")],
        None,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("verify-proof: ok: entry 5 ("), "{out}");
    // The proof from standard input.
    let (code, out) = verify(d, &["--old-checkpoint", &p("old")], Some(&consistency));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("at size 12 is a prefix of"), "{out}");

    // Another entry's bytes.
    write("entry6", &n.get("/v1/journal/entries/6").text().unwrap());
    let (code, out) = verify(
        d,
        &["--proof", &p("inclusion"), "--entry", &p("entry6")],
        None,
    );
    assert_eq!(code, 1, "{out}");
    // A changed proof hash.
    let mut v: Value = serde_json::from_str(&inclusion).unwrap();
    let h = v["proof"][0].as_str().unwrap().to_owned();
    let flipped = format!("{}{}", if h.starts_with('0') { "1" } else { "0" }, &h[1..]);
    v["proof"][0] = json!(flipped);
    let (code, out) = verify(d, &[], Some(&v.to_string()));
    assert_eq!(code, 1);
    assert!(out.contains("the inclusion proof"), "{out}");
    // A checkpoint whose size was edited: the signature fails.
    let cp = std::fs::read_to_string(d.join("checkpoint")).unwrap();
    write("checkpoint", &cp.replacen("\n13\n", "\n12\n", 1));
    let (code, out) = verify(d, &[], Some(&inclusion));
    assert_eq!(code, 1);
    assert!(out.contains("signature"), "{out}");
    // The consistency proof against the wrong old checkpoint.
    write("checkpoint", &cp);
    let (code, out) = verify(
        d,
        &["--old-checkpoint", &p("checkpoint")],
        Some(&consistency),
    );
    assert_eq!(code, 1, "{out}");
}
