//! `axon audit` on a stopped node's data directory: passes on a clean journal, warns about
//! (and passes on) a torn tail, fails naming the first bad record on tamper, and changes
//! nothing on disk.

mod common;

use common::{sigterm_and_wait, spawn_axon};
use std::path::{Path, PathBuf};
use std::process::Command;

fn run_node_and_append(dir: &Path, notes: usize) {
    let node = spawn_axon(dir, &[], false);
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    let c = reqwest::blocking::Client::new();
    for i in 0..notes {
        let res = c
            .post(format!("{}/v1/journal/notes", node.base))
            .bearer_auth(token.trim())
            .json(&serde_json::json!({"text": format!("note {i}")}))
            .send()
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    assert_eq!(sigterm_and_wait(node).0, 0);
}

fn audit(dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_axon"))
        .args(["audit", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("journal/shard-0/00000000000000000000.seg")
}

#[test]
fn audit_passes_warns_and_fails_as_it_should() {
    let dir = tempfile::tempdir().unwrap();
    run_node_and_append(dir.path(), 25);
    let (code, out, err) = audit(dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("audit: ok: 25 entries in 1 segments; the signed head records 25"),
        "{out}"
    );
    assert!(
        err.contains("00000000000000000000.seg ok (25 entries so far)"),
        "progress: {err}"
    );

    // A torn tail: a warning, and the audit passes without touching it.
    let seg = segment(dir.path());
    let clean = std::fs::read(&seg).unwrap();
    let mut torn = clean.clone();
    torn.extend_from_slice(&[9, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&seg, &torn).unwrap();
    let (code, out, _) = audit(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("audit: warning: a torn tail of 7 bytes"),
        "{out}"
    );
    assert_eq!(std::fs::read(&seg).unwrap(), torn);

    // A flipped byte in the middle: tamper, named by segment and offset.
    let mut flipped = clean.clone();
    let at = clean.len() / 2;
    flipped[at] ^= 0x20;
    std::fs::write(&seg, &flipped).unwrap();
    let (code, out, _) = audit(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("audit: FAILED: tamper: "), "{out}");
    assert!(out.contains("00000000000000000000.seg at offset "), "{out}");

    // The last records cut off after a clean stop: the signed head catches it.
    std::fs::write(&seg, &clean[..clean.len() - 100]).unwrap();
    let (code, out, _) = audit(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("acknowledged entries"), "{out}");

    // Back to the clean journal: the node starts and the audit passes again.
    std::fs::write(&seg, &clean).unwrap();
    let (code, _, _) = audit(dir.path());
    assert_eq!(code, 0);
    let empty = tempfile::tempdir().unwrap();
    let (code, out, _) = audit(empty.path());
    assert_eq!(code, 1);
    assert!(out.contains("no journal at"), "{out}");
}
