//! `axon audit` on a stopped node's data directory: passes on a clean journal, warns about
//! (and passes on) a torn tail, fails naming the first bad record on tamper, and changes
//! nothing on disk.

use crate::common::{sigterm_and_wait, spawn_axon};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The size a signed checkpoint records.
fn size_of(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

/// Appends `notes` notes; returns the first signed checkpoint served that covers the first
/// ten (checkpoints are logged within `journal.checkpoint_min_interval_ms`).
fn run_node_and_append(dir: &Path, notes: usize) -> String {
    let node = spawn_axon(dir, &[], false);
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    let c = axon_drivers::tls::client_builder().build().unwrap();
    let mut served = String::new();
    for i in 0..notes {
        if i == 10 {
            axon_harness::wait_until("a checkpoint of ten", Duration::from_secs(20), || {
                served = c
                    .get(format!("{}/v1/journal/checkpoint", node.base))
                    .send()
                    .unwrap()
                    .text()
                    .unwrap();
                size_of(&served) >= 10
            })
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
    crate::common::audit::<&str>(dir, &[])
}

fn audit_with(dir: &Path, checkpoints: &[&Path]) -> (i32, String, String) {
    let args: Vec<&std::ffi::OsStr> = checkpoints
        .iter()
        .flat_map(|p| [std::ffi::OsStr::new("--checkpoint"), p.as_os_str()])
        .collect();
    crate::common::audit(dir, &args)
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("journal/shard-0/00000000000000000000.seg")
}

#[test]
fn audit_passes_warns_and_fails_as_it_should() {
    let dir = tempfile::tempdir().unwrap();
    // Twenty-four notes after the first lane of the built-in echo driver: 25 entries.
    let served = run_node_and_append(dir.path(), 24);
    let (code, out, err) = audit(dir.path());
    assert_eq!(code, 0, "{out}{err}");
    // The checkpoints logged on schedule (the one served at 10 entries among them) and
    // the one logged at stop.
    assert!(
        out.contains("audit: ok: 25 entries in 1 segments; "),
        "{out}"
    );
    assert!(
        out.contains(" signed checkpoints hold; the last records 25"),
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
        out.contains(&format!(
            "kept.checkpoint: it records {} entries",
            size_of(&served)
        )),
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

/// The verifier key a node printed on its first start.
fn printed_key(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|l| {
        l.strip_prefix("axon: journal verifier key")
            .and_then(|rest| rest.rsplit(": ").next())
            .map(str::to_owned)
    })
}

#[test]
fn audit_with_the_printed_key_refuses_a_journal_signed_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_axon(dir.path(), &[], false);
    let key = printed_key(&node.stdout_lines).expect("the key is printed at first start");
    assert_eq!(sigterm_and_wait(node).0, 0);
    // Not at later starts.
    let node = spawn_axon(dir.path(), &[], false);
    assert_eq!(printed_key(&node.stdout_lines), None);
    assert_eq!(sigterm_and_wait(node).0, 0);

    let run = |d: &Path, key: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_axon"))
            .args(["audit", "--data-dir"])
            .arg(d)
            .args(["--key", key])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(dir.path(), &key);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("audit: signatures: by the key given with --key"),
        "{out}"
    );
    // The key from a file works the same.
    let file = dir.path().join("kept.vkey");
    std::fs::write(&file, format!("{key}\n")).unwrap();
    assert_eq!(run(dir.path(), file.to_str().unwrap()).0, 0);
    // Without --key the audit says what it could not check.
    let (code, out, _) = audit(dir.path());
    assert_eq!(code, 0);
    assert!(
        out.contains("checked with the directory's own node.key only"),
        "{out}"
    );

    // Whoever holds the directory rewrites the journal and signs it with a key of their
    // own: on its own it is consistent, against the kept key it is refused.
    let forged = tempfile::tempdir().unwrap();
    let node = spawn_axon(forged.path(), &[], false);
    assert_eq!(sigterm_and_wait(node).0, 0);
    assert_eq!(audit(forged.path()).0, 0);
    let (code, out) = run(forged.path(), &key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("node.key was replaced"), "{out}");
    // With the checkpoint log gone nothing is signed: the key cannot vouch for anything.
    std::fs::remove_file(dir.path().join("journal/shard-0.checkpoints")).unwrap();
    let (code, out) = run(dir.path(), &key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("holds no signed checkpoint"), "{out}");
    assert!(
        out.contains("no signature covers them") || out.contains("0 entries"),
        "{out}"
    );
    // Garbage as a key is a usage error.
    assert_eq!(run(dir.path(), "not-a-key").0, 2);
}
