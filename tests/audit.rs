//! `axon audit` on a stopped node's data directory: passes on a clean journal, warns about
//! (and passes on) a torn tail, fails naming the first bad record on tamper, and changes
//! nothing on disk.

mod common;

use common::{sigterm_and_wait, spawn_axon};
use std::path::{Path, PathBuf};

/// Appends `notes` notes; returns the signed checkpoint served after the first ten.
fn run_node_and_append(dir: &Path, notes: usize) -> String {
    let node = spawn_axon(dir, &[], false);
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    let c = reqwest::blocking::Client::new();
    let mut served = String::new();
    for i in 0..notes {
        if i == 10 {
            served = c
                .get(format!("{}/v1/journal/checkpoint", node.base))
                .send()
                .unwrap()
                .text()
                .unwrap();
        }
        let res = c
            .post(format!("{}/v1/journal/notes", node.base))
            .bearer_auth(token.trim())
            .json(&serde_json::json!({"text": format!("note {i}")}))
            .send()
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    assert_eq!(sigterm_and_wait(node).0, 0);
    served
}

fn audit(dir: &Path) -> (i32, String, String) {
    common::audit::<&str>(dir, &[])
}

fn audit_with(dir: &Path, checkpoints: &[&Path]) -> (i32, String, String) {
    let args: Vec<&std::ffi::OsStr> = checkpoints
        .iter()
        .flat_map(|p| [std::ffi::OsStr::new("--checkpoint"), p.as_os_str()])
        .collect();
    common::audit(dir, &args)
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("journal/shard-0/00000000000000000000.seg")
}

#[test]
fn audit_passes_warns_and_fails_as_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let served = run_node_and_append(dir.path(), 25);
    let (code, out, err) = audit(dir.path());
    assert_eq!(code, 0, "{out}{err}");
    // The checkpoint served at 10 entries and the one written at stop.
    assert!(
        out.contains(
            "audit: ok: 25 entries in 1 segments; 2 signed checkpoints hold; the last records 25"
        ),
        "{out}"
    );
    // A checkpoint handed out earlier, kept by a client, holds against the tree.
    let kept = dir.path().join("kept.checkpoint");
    std::fs::write(&kept, &served).unwrap();
    let (code, out, _) = audit_with(dir.path(), &[&kept]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 given checkpoint(s) hold"), "{out}");
    // One signed by another node's key does not.
    let other = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.checkpoint");
    std::fs::write(&foreign, run_node_and_append(other.path(), 11)).unwrap();
    let (code, out, _) = audit_with(dir.path(), &[&kept, &foreign]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("foreign.checkpoint"), "{out}");

    // The checkpoint log: a torn last record is a warning; damage before an intact
    // record is tamper.
    let log = dir.path().join("journal/shard-0.checkpoints");
    let clean_log = std::fs::read(&log).unwrap();
    let mut torn = clean_log.clone();
    torn.extend_from_slice(&[200, 0, 0, 0, 7]);
    std::fs::write(&log, &torn).unwrap();
    let (code, out, _) = audit(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("audit: warning: a torn checkpoint of 5 bytes"),
        "{out}"
    );
    let mut flipped = clean_log.clone();
    flipped[60] ^= 1;
    std::fs::write(&log, &flipped).unwrap();
    let (code, out, _) = audit(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("shard-0.checkpoints at offset 0"), "{out}");
    std::fs::write(&log, &clean_log).unwrap();
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

    // The last records cut off after a clean stop: the last checkpoint catches it.
    std::fs::write(&seg, &clean[..clean.len() - 100]).unwrap();
    let (code, out, _) = audit(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("acknowledged entries"), "{out}");
    // So does a checkpoint kept elsewhere, when the log itself is gone too.
    std::fs::remove_file(&log).unwrap();
    let cut = clean.len() / 3;
    let cut = (0..cut)
        .rev()
        .find(|&o| axon_protocols::journal::find_commit_after(&clean[..o + 84], o) == Some(o))
        .unwrap();
    std::fs::write(&seg, &clean[..cut + 84]).unwrap();
    let (code, out, _) = audit(dir.path());
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = audit_with(dir.path(), &[&kept]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("kept.checkpoint: it records 10 entries"),
        "{out}"
    );
    assert!(out.contains("00000000000000000000.seg at offset "), "{out}");
    std::fs::write(&log, &clean_log).unwrap();

    // Back to the clean journal: the node starts and the audit passes again.
    std::fs::write(&seg, &clean).unwrap();
    let (code, _, _) = audit(dir.path());
    assert_eq!(code, 0);
    let empty = tempfile::tempdir().unwrap();
    let (code, out, _) = audit(empty.path());
    assert_eq!(code, 1);
    assert!(out.contains("no journal at"), "{out}");
}
