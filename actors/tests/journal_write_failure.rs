//! A write the disk refuses while a batch is being written (here: past the process's file
//! size limit, so the kernel answers EFBIG after a partial write): the batch's appends get
//! `OutcomeUnknown`, the journal halts and takes no more writes, and after a restart every
//! acknowledged entry is there, the half-written batch is a torn tail kept aside, and the
//! journal takes writes again.
//!
//! One test in its own binary: the file size limit applies to the whole process.

use axon_actors::journal::*;
use axon_protocols::journal::EntryKind;
use axon_supervisors::{ManualClock, Worker, WorkerContext};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn cfg(dir: &Path) -> JournalConfig {
    JournalConfig {
        dir: dir.to_owned(),
        shard: 0,
        key_name: "axon-test".into(),
        segment_max_bytes: 1 << 20,
        // None: the file size limit below is set from the segment's length, which space
        // taken ahead would make larger than what is written.
        preallocate_bytes: 0,
        max_entry_bytes: 1 << 16,
        max_links: 8,
        batch_max_records: 64,
        batch_max_wait: Duration::ZERO,
        head_every_commits: 1_000_000,
        checkpoint_min_interval: Duration::from_secs(3600),
        index_cache_bytes: 8 << 20,
        index_reopen_entries: 1 << 20,
        page_max_entries: 1000,
        page_max_bytes: 4 << 20,
        page_scan_max_entries: 100_000,
        lock_wait: std::time::Duration::from_secs(5),
    }
}

fn append(j: &mut Journal, text: &str) -> JournalResponse {
    let r = JournalRequest::Append(NewEntry::new(
        EntryKind::Note,
        vec![],
        &json!({ "text": text }),
    ));
    j.handle_batch(vec![r], &mut WorkerContext::new("journal", None))
        .expect("no failure")
        .remove(0)
        .expect("no rejection")
}

fn set_file_size_limit(bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct; affects this test process only.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) }, 0);
}

#[test]
fn a_failed_write_answers_outcome_unknown_and_loses_nothing_acknowledged() {
    // Past the limit the kernel sends SIGXFSZ, which would end the process: ignore it, so
    // the write returns EFBIG instead.
    // SAFETY: setting a signal's disposition to "ignore".
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    let shared: Arc<JournalShared> = Arc::default();
    let mut j = Journal::open(cfg(dir.path()), clock.clone(), shared.clone()).unwrap();
    for i in 0..10 {
        assert!(matches!(
            append(&mut j, &format!("n{i}")),
            JournalResponse::Appended(_)
        ));
    }
    let segment = dir.path().join("shard-0/00000000000000000000.seg");
    let size = std::fs::metadata(&segment).unwrap().len();
    // Room for part of the next record only.
    set_file_size_limit(size + 40);
    let r = append(&mut j, &"x".repeat(400));
    set_file_size_limit(libc::RLIM_INFINITY);
    assert!(
        matches!(&r, JournalResponse::Refused(Refusal::OutcomeUnknown(_))),
        "{r:?}"
    );
    assert!(shared.halt.is_halted());
    assert!(matches!(
        append(&mut j, "after"),
        JournalResponse::Refused(Refusal::Halted(_))
    ));
    assert_eq!(j.len(), 10);
    drop(j);
    assert!(
        std::fs::metadata(&segment).unwrap().len() > size,
        "a partial write"
    );

    let mut j = Journal::open(cfg(dir.path()), clock, Arc::default()).unwrap();
    assert_eq!(j.len(), 10, "every acknowledged entry, and nothing else");
    let (_, offset, _) = j
        .recovery()
        .torn_tail
        .clone()
        .expect("the partial batch is torn");
    assert_eq!(offset, size);
    assert_eq!(j.recovery().set_aside.len(), 1);
    assert!(matches!(
        append(&mut j, "again"),
        JournalResponse::Appended(_)
    ));
}
