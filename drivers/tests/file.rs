//! The `file` driver: appends land where its twin says, nothing outside its directory can
//! be named or reached through a symlink, a rollback undoes only the newest append, one
//! incarnation at a time holds its directory, and a recorded append replays bit for bit.

mod capsule;

use axon_drivers::driver::{act_checked, Call, Driver, Prediction, Recorded, Status};
use axon_drivers::file::FileDriver;
use axon_drivers::manifest::Manifest;
use axon_protocols::intent::AxonIntent;
use quickcheck::{QuickCheck, TestResult};
use serde_json::{json, Value};
use std::path::Path;

fn manifest(dir: &Path, extra: &str) -> Manifest {
    let text = format!(
        r#"name = "ledger"
version = "1.0.0"
kind = "file"
capability = "urn:axon:cap:ledger.append"
effect = "write"
risk = "medium"
max_blast_radius = 1
idempotent = false
[cost]
expected_ms = 5
units = 1.0
[limits]
deadline_ms = 5000
concurrency = 1
rate_per_second = 1000
max_payload_bytes = 65536
mailbox_capacity = 64
[file]
dir = "records"
lock_wait_ms = 50
{extra}
"#
    );
    Manifest::parse(&text, &dir.join("ledger.toml")).unwrap()
}

fn open(m: &Manifest) -> Result<FileDriver, String> {
    FileDriver::open(
        m.descriptor(),
        m.file_settings.as_ref().unwrap(),
        m.folder(),
    )
}

fn intent(args: Value) -> AxonIntent {
    serde_json::from_value(json!({"capability": "urn:axon:cap:ledger.append", "args": args}))
        .unwrap()
}

fn id(n: u8) -> String {
    format!("{n:032x}")
}

#[test]
fn appends_land_where_the_twin_said_and_roll_back_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "");
    let mut d = open(&m).unwrap();
    let a = intent(json!({"file": "book.log", "record": {"n": 1}}));
    let (ida, idb) = (id(1), id(2));
    let call_a = Call {
        action_id: &ida,
        intent: &a,
    };
    let Prediction::Expected { output, .. } = d.predict(&call_a) else {
        panic!("the twin of an append is exact")
    };
    let first = act_checked(&mut d, &m.obligations, &call_a).unwrap();
    assert_eq!(first.status, Status::Ok, "{first:?}");
    assert_eq!(first.output, output, "the twin said where the record goes");
    assert_eq!(first.output["offset"], 0);
    assert_eq!(first.replay, Some(json!({"file_length": 0})));
    let b = intent(json!({"file": "book.log", "record": "two"}));
    let call_b = Call {
        action_id: &idb,
        intent: &b,
    };
    let second = act_checked(&mut d, &m.obligations, &call_b).unwrap();
    assert_eq!(second.output["offset"], first.output["end"]);
    let text = std::fs::read_to_string(dir.path().join("records/book.log")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            json!({"action_id": ida, "record": {"n": 1}}),
            json!({"action_id": idb, "record": "two"})
        ]
    );
    let recorded = |id: &str, out: &Value, i: &AxonIntent| Recorded {
        action_id: id.to_owned(),
        intent: i.clone(),
        output: out.clone(),
    };
    // The first cannot be undone while the second follows it: the refusal names it.
    let refused = d.rollback(&recorded(&ida, &first.output, &a));
    assert_eq!(refused.status, Status::Failed);
    assert!(
        refused
            .reason
            .as_deref()
            .unwrap()
            .contains(&format!("action {idb}")),
        "{refused:?}"
    );
    let undone = d.rollback(&recorded(&idb, &second.output, &b));
    assert_eq!(undone.status, Status::Ok, "{undone:?}");
    let undone = d.rollback(&recorded(&ida, &first.output, &a));
    assert_eq!(undone.status, Status::Ok, "{undone:?}");
    assert_eq!(
        std::fs::metadata(dir.path().join("records/book.log"))
            .unwrap()
            .len(),
        0
    );
}

/// The ledger's reader: a `file` driver whose effect is `read`, on the same directory.
fn reader(dir: &Path) -> Manifest {
    let text = r#"name = "ledger-reader"
version = "1.0.0"
kind = "file"
capability = "urn:axon:cap:ledger.read"
effect = "read"
risk = "low"
max_blast_radius = 0
idempotent = true
[cost]
expected_ms = 1
units = 0.0
[limits]
deadline_ms = 5000
concurrency = 4
rate_per_second = 1000
max_payload_bytes = 1024
mailbox_capacity = 64
[file]
dir = "records"
lock_wait_ms = 0
"#;
    Manifest::parse(text, &dir.join("reader.toml")).unwrap()
}

#[test]
fn a_reader_of_the_directory_is_pulled_beside_its_writer_and_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "");
    let mut writer = open(&m).unwrap();
    let a = intent(json!({"file": "book.log", "record": {"n": 1}}));
    let ida = id(1);
    let call = Call {
        action_id: &ida,
        intent: &a,
    };
    let written = act_checked(&mut writer, &m.obligations, &call).unwrap();
    assert_eq!(written.status, Status::Ok);

    // The writer holds the directory's lock; a reader takes none, so it opens beside it.
    let r = reader(dir.path());
    assert!(!r.descriptor().can_rollback, "a read has nothing to undo");
    let mut reader = open(&r).unwrap();
    let mut read = |args: Value| {
        let i = intent(args);
        act_checked(
            &mut reader,
            &r.obligations,
            &Call {
                action_id: &ida,
                intent: &i,
            },
        )
    };
    let out = read(json!({"file": "book.log"})).unwrap();
    assert_eq!(out.status, Status::Ok, "{out:?}");
    assert!(out.output["text"].as_str().unwrap().contains("\"n\":1"));
    let out = read(json!({"file": "book.log", "offset": 10, "max_bytes": 5})).unwrap();
    assert_eq!(out.output["text"].as_str().unwrap().len(), 5);
    // Its arguments say where to read, never what to write.
    let refused = read(json!({"file": "book.log", "record": 1})).unwrap_err();
    assert_eq!(refused.which, "args");
    // A file it is asked to read that is not there is a failed read, and nothing is
    // created.
    let out = read(json!({"file": "absent.log"})).unwrap();
    assert_eq!(out.status, Status::Failed, "{out:?}");
    assert!(!dir.path().join("records/absent.log").exists());
    let length = std::fs::metadata(dir.path().join("records/book.log"))
        .unwrap()
        .len();
    assert_eq!(Some(length), written.output["end"].as_u64(), "{written:?}");
}

#[test]
fn nothing_outside_the_directory_can_be_named_or_reached() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "");
    let mut d = open(&m).unwrap();
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "untouched").unwrap();
    std::os::unix::fs::symlink(&outside, dir.path().join("records/link.log")).unwrap();
    let ida = id(9);
    for name in [
        "../outside.txt",
        "/etc/passwd",
        "a/b.log",
        ".hidden",
        "..",
        "",
        "x\u{0}y",
    ] {
        let i = intent(json!({"file": name, "record": 1}));
        let call = Call {
            action_id: &ida,
            intent: &i,
        };
        // Refused by the argument schema before the driver sees it...
        let v = act_checked(&mut d, &m.obligations, &call).unwrap_err();
        assert_eq!((v.which, v.path.as_str()), ("args", "/file"), "{name:?}");
        // ...and by the driver itself, should anything skip the schema.
        assert_eq!(d.push(&call).status, Status::Failed, "{name:?}");
    }
    // A symlink inside the directory is never followed.
    let i = intent(json!({"file": "link.log", "record": 1}));
    let out = d.push(&Call {
        action_id: &ida,
        intent: &i,
    });
    assert_eq!(out.status, Status::Failed);
    assert!(out.reason.unwrap().contains("symlink"));
    // Nor is a hard link to a file elsewhere written through.
    std::fs::hard_link(&outside, dir.path().join("records/hard.log")).unwrap();
    let i = intent(json!({"file": "hard.log", "record": 1}));
    let out = d.push(&Call {
        action_id: &ida,
        intent: &i,
    });
    assert_eq!(out.status, Status::Failed);
    assert!(out.reason.unwrap().contains("hard links"));
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "untouched");
}

#[test]
fn any_name_the_schema_lets_through_stays_inside_the_directory() {
    // Names built from the characters that matter: the allowed ones and those of every
    // escape (separators, dots, NUL, white space, non-ASCII).
    const PIECES: [&str; 12] = [
        "a", "Z", "0", ".", "_", "-", "/", "\\", "\u{0}", " ", "..", "é",
    ];
    fn prop(picks: Vec<u8>) -> TestResult {
        let name: String = picks
            .iter()
            .take(12)
            .map(|p| PIECES[*p as usize % PIECES.len()])
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(dir.path(), "");
        let mut d = open(&m).unwrap();
        let i = intent(json!({"file": name, "record": 0}));
        let ida = id(3);
        let call = Call {
            action_id: &ida,
            intent: &i,
        };
        match act_checked(&mut d, &m.obligations, &call) {
            Err(_) => TestResult::passed(),
            Ok(out) if out.status == Status::Ok => {
                // Whatever was written is one file directly inside records/.
                let entries: Vec<_> = std::fs::read_dir(dir.path().join("records"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                let root: Vec<_> = std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                TestResult::from_bool(
                    entries == [std::ffi::OsString::from(&name)]
                        && root == [std::ffi::OsString::from("records")],
                )
            }
            Ok(_) => TestResult::passed(),
        }
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(prop as fn(Vec<u8>) -> TestResult);
}

#[test]
fn one_incarnation_at_a_time_holds_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "");
    let first = open(&m).unwrap();
    let err = open(&m).unwrap_err();
    assert!(err.contains("locked by another incarnation"), "{err}");
    drop(first);
    open(&m).unwrap();
}

#[test]
fn an_append_past_the_file_limit_fails() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "max_file_bytes = 64");
    let mut d = open(&m).unwrap();
    let ida = id(4);
    let i = intent(json!({"file": "small.log", "record": "x".repeat(100)}));
    let out = d.push(&Call {
        action_id: &ida,
        intent: &i,
    });
    assert_eq!(out.status, Status::Failed);
    assert!(out.reason.unwrap().contains("max_file_bytes"));
}

#[test]
fn a_recorded_append_replays_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "");
    let mut d = open(&m).unwrap();
    let ida = id(5);
    let warmup = intent(json!({"file": "r.log", "record": "before"}));
    d.push(&Call {
        action_id: &id(6),
        intent: &warmup,
    });
    let i = intent(json!({"file": "r.log", "record": {"z": [1, 2.5], "a": "ü"}}));
    let out = d.push(&Call {
        action_id: &ida,
        intent: &i,
    });
    let capsule = capsule::capsule(&m, &ida, &i, &out);
    let replayed = axon_drivers::replay(&capsule, Path::new(".")).unwrap();
    assert_eq!(replayed, out.output);
    assert!(out.output["offset"].as_u64().unwrap() > 0);
    // A capsule whose manifest was changed is refused: it is not the build that ran.
    let mut forged = capsule.clone();
    let mut changed = (**forged.environment.manifest.as_ref().unwrap()).clone();
    changed["limits"]["deadline_ms"] = json!(1);
    forged.environment.manifest = Some(std::sync::Arc::new(changed));
    assert!(axon_drivers::replay(&forged, Path::new("."))
        .unwrap_err()
        .contains("not to the recorded artifact"));
}

#[test]
fn a_recorded_read_replays_bit_for_bit_from_the_bytes_it_found() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "");
    let mut writer = open(&m).unwrap();
    let w = intent(json!({"file": "r.log", "record": {"a": "ü", "bytes": [0, 255]}}));
    writer.push(&Call {
        action_id: &id(7),
        intent: &w,
    });
    let r = reader(dir.path());
    let mut reader = open(&r).unwrap();
    let i = intent(json!({"file": "r.log", "offset": 3, "max_bytes": 40}));
    let ida = id(8);
    let out = act_checked(
        &mut reader,
        &r.obligations,
        &Call {
            action_id: &ida,
            intent: &i,
        },
    )
    .unwrap();
    assert_eq!(out.status, Status::Ok, "{out:?}");
    let capsule = capsule::capsule(&r, &ida, &i, &out);
    // The original file is gone: the replay reads what the capsule says was found.
    std::fs::remove_dir_all(dir.path().join("records")).unwrap();
    assert_eq!(
        axon_drivers::replay(&capsule, Path::new(".")).unwrap(),
        out.output
    );
}
