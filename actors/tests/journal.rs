//! The journal on disk: appends are durable and provable, a restart finds the same tree,
//! a torn tail is cut, and damage to acknowledged records is refused as tamper.

use axon_actors::journal::*;
use axon_protocols::checkpoint::{Checkpoint, Verifier};
use axon_protocols::journal::{parse_hex, Entry, EntryKind};
use axon_protocols::merkle::{self, Blake3};
use axon_supervisors::{ManualClock, Worker, WorkerContext};
use quickcheck::{Arbitrary, Gen, QuickCheck};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

fn cfg(dir: &Path) -> JournalConfig {
    JournalConfig {
        dir: dir.to_owned(),
        shard: 0,
        key_name: "axon-test".into(),
        segment_max_bytes: 4096,
        preallocate_bytes: 4096,
        max_entry_bytes: 2048,
        max_links: 8,
        batch_max_records: 64,
        batch_max_wait: std::time::Duration::ZERO,
        head_every_commits: 1_000_000,
        // Checkpoints are logged right after each commit (on the checkpoint thread).
        checkpoint_min_interval: std::time::Duration::ZERO,
        index_cache_bytes: 8 << 20,
        // Small, so that the index thread reopens sled while the tests look things up.
        index_reopen_entries: 128,
        page_max_entries: 1000,
        page_max_bytes: 4 << 20,
        page_scan_max_entries: 100_000,
        lock_wait: std::time::Duration::from_secs(5),
    }
}

fn open(dir: &Path) -> Result<Journal, OpenError> {
    let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    Journal::open(cfg(dir), clock, Arc::default())
}

/// Runs one batch through the worker interface, as the actor would.
fn batch(j: &mut Journal, reqs: Vec<JournalRequest>) -> Vec<JournalResponse> {
    j.handle_batch(reqs, &mut WorkerContext::new("journal", None))
        .expect("no failure")
        .into_iter()
        .map(|r| r.expect("no rejection"))
        .collect()
}

fn note(text: &str, links: Vec<String>) -> JournalRequest {
    JournalRequest::Append(NewEntry::new(
        EntryKind::Note,
        links,
        &json!({ "text": text }),
    ))
}

/// Hex proof hashes as bytes.
fn hashes(hex: &[String]) -> Vec<[u8; 32]> {
    hex.iter().map(|h| parse_hex::<32>(h).unwrap()).collect()
}

/// The checkpoint the journal serves once it covers `size` entries (the checkpoint thread
/// logs it right after the commit: this waits for that).
fn checkpoint_covering(j: &mut Journal, size: u64) -> String {
    let mut served = None;
    wait_for(&format!("a checkpoint of size {size} is served"), || {
        if let JournalResponse::Checkpoint(note) = &batch(j, vec![JournalRequest::Checkpoint])[0] {
            if note.contains(&format!("\n{size}\n")) {
                served = Some(note.clone());
            }
        }
        served.is_some()
    });
    served.unwrap()
}

fn appended(r: &JournalResponse) -> Appended {
    match r {
        JournalResponse::Appended(a) => a.clone(),
        other => panic!("not appended: {other:?}"),
    }
}

#[test]
fn appends_are_provable_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path()).unwrap();
    let first = batch(&mut j, vec![note("a", vec![]), note("b", vec![])]);
    let a = appended(&first[0]);
    assert_eq!((a.index, appended(&first[1]).index), (0, 1));
    // Links to earlier entries, in an earlier batch or the same one.
    let r = batch(&mut j, vec![note("c", vec![a.id.clone()])]);
    let c = appended(&r[0]);
    let r = batch(
        &mut j,
        vec![
            note("dangling", vec!["00".repeat(32)]),
            note("d", vec![c.id.clone()]),
        ],
    );
    assert!(matches!(
        &r[0],
        JournalResponse::Refused(Refusal::BadLink(_))
    ));
    assert_eq!(appended(&r[1]).index, 3);
    for i in 4..200 {
        batch(&mut j, vec![note(&format!("n{i}"), vec![])]);
    }
    assert_eq!(j.len(), 200);

    let JournalResponse::Key(vkey) = &batch(&mut j, vec![JournalRequest::Key])[0] else {
        panic!()
    };
    let cp = checkpoint_covering(&mut j, 200);
    let body = Verifier::parse(vkey).unwrap().verify(&cp).unwrap();
    let cp = Checkpoint::parse(body).unwrap();
    assert_eq!((cp.origin.as_str(), cp.size), ("axon-test/shard-0", 200));

    for (i, size) in [(0u64, 1u64), (2, 3), (150, 200), (199, 200)] {
        let JournalResponse::Inclusion(p) =
            &batch(&mut j, vec![JournalRequest::Inclusion { index: i, size }])[0]
        else {
            panic!()
        };
        let proof = hashes(&p.proof);
        let proof: Vec<&[u8]> = proof.iter().map(|h| h.as_slice()).collect();
        merkle::verify_inclusion::<Blake3>(
            i,
            size,
            &parse_hex::<32>(&p.leaf_hash).unwrap(),
            &proof,
            &parse_hex::<32>(&p.root).unwrap(),
        )
        .unwrap();
        if size == 200 {
            assert_eq!(parse_hex::<32>(&p.root).unwrap(), cp.root);
        }
    }
    let JournalResponse::Consistency(p) = &batch(
        &mut j,
        vec![JournalRequest::Consistency { from: 37, to: 200 }],
    )[0] else {
        panic!()
    };
    let proof = hashes(&p.proof);
    let proof: Vec<&[u8]> = proof.iter().map(|h| h.as_slice()).collect();
    merkle::verify_consistency::<Blake3>(
        37,
        200,
        &proof,
        &parse_hex::<32>(&p.root1).unwrap(),
        &parse_hex::<32>(&p.root2).unwrap(),
    )
    .unwrap();
    // Bad ranges are refused, not answered.
    for req in [
        JournalRequest::Inclusion {
            index: 5,
            size: 201,
        },
        JournalRequest::Inclusion { index: 5, size: 5 },
        JournalRequest::Consistency { from: 0, to: 3 },
        JournalRequest::Consistency { from: 4, to: 3 },
    ] {
        assert!(matches!(
            &batch(&mut j, vec![req])[0],
            JournalResponse::Refused(Refusal::Invalid(_))
        ));
    }
    assert!(matches!(
        &batch(&mut j, vec![JournalRequest::Entry(200)])[0],
        JournalResponse::Refused(Refusal::NotFound(_))
    ));

    let JournalResponse::Entry(e2) = &batch(&mut j, vec![JournalRequest::Entry(2)])[0] else {
        panic!()
    };
    assert_eq!(e2.id, c.id);
    assert_eq!(e2.links, vec![a.id.clone()]);
    assert_eq!(e2.barcode, c.barcode);
    let JournalResponse::Entries(found) = &batch(
        &mut j,
        vec![JournalRequest::ByBarcode(c.barcode.parse().unwrap())],
    )[0] else {
        panic!()
    };
    assert_eq!(found, std::slice::from_ref(e2));
    let root_before = cp.root;
    drop(j);

    // A restart reads every segment back and finds the same tree.
    let mut j = open(dir.path()).unwrap();
    assert_eq!(j.len(), 200);
    assert!(
        j.recovery().segments > 1,
        "the 4 KiB segment limit rolls segments"
    );
    assert_eq!(j.recovery().torn_tail, None);
    let JournalResponse::Entry(again) = &batch(&mut j, vec![JournalRequest::Entry(2)])[0] else {
        panic!()
    };
    assert_eq!(again, e2);
    let cp2 = checkpoint_covering(&mut j, 200);
    let body = Verifier::parse(vkey).unwrap().verify(&cp2).unwrap();
    assert_eq!(Checkpoint::parse(body).unwrap().root, root_before);
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("shard-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

/// How much of a segment is written: up to its last byte that is not zero (what follows
/// is space taken ahead of the writes).
fn written_len(path: &Path) -> u64 {
    let data = std::fs::read(path).unwrap();
    data.iter()
        .rposition(|b| *b != 0)
        .map_or(0, |at| at as u64 + 1)
}

/// Bytes this thread has handed to write calls so far (`wchar` of
/// `/proc/thread-self/io`); `None` where the kernel does not count them.
fn thread_wchar() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/io")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))?
        .trim()
        .parse()
        .ok()
}

/// The space taken ahead is written with zeros by the commit that first reaches into it
/// (so later commits write over data, not unwritten space), and only by that one.
#[test]
fn the_commit_that_reaches_into_the_space_taken_writes_it_with_zeros() {
    let Some(start) = thread_wchar() else {
        eprintln!(
            "SKIPPED: this kernel does not count a thread's written bytes (/proc/thread-self/io)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path()).unwrap();
    let allocated = cfg(dir.path()).preallocate_bytes;
    let opened = thread_wchar().unwrap();
    batch(&mut j, vec![note("first", vec![])]);
    let seg = last_segment(dir.path());
    let first = written_len(&seg);
    assert!(first < allocated / 4, "{first}");
    if std::fs::metadata(&seg).unwrap().len() < allocated {
        eprintln!("SKIPPED: this file system takes no space ahead of the writes (fallocate)");
        return;
    }
    // The first commit wrote its records and then zeros to the end of the space taken.
    assert_eq!(thread_wchar().unwrap() - opened, allocated);
    // The next ones write their records alone.
    let before = thread_wchar().unwrap();
    batch(&mut j, vec![note("second", vec![])]);
    assert_eq!(thread_wchar().unwrap() - before, written_len(&seg) - first);
    assert!(start <= opened);
    // What was written reads back, and the zeros are cut at the stop.
    drop(j);
    let j = open(dir.path()).unwrap();
    assert_eq!(j.len(), 2);
    assert_eq!(j.recovery().torn_tail, None);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), written_len(&seg));
    drop(j);

    // With more space taken than one step of zeros: a step at a time, each written by
    // the commit that reaches past the one before, never by the others.
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_max_bytes = 1 << 20;
    c.preallocate_bytes = 512 << 10;
    c.max_entry_bytes = 4096;
    let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    let mut j = Journal::open(c, clock, Arc::default()).unwrap();
    let seg = last_segment(dir.path());
    let (mut steps, mut zeroed) = (0, 0u64);
    for i in 0..120 {
        let before = (thread_wchar().unwrap(), written_len(&seg));
        batch(&mut j, vec![note(&format!("{i:0>2000}"), vec![])]);
        let wrote = thread_wchar().unwrap() - before.0;
        let records = written_len(&seg) - before.1;
        if wrote > records {
            // Zeros from the end of the records on, as far as one step goes.
            assert!(written_len(&seg) > zeroed, "commit {i} wrote zeros again");
            assert!(wrote - records < 1 << 20, "commit {i}: {wrote} bytes");
            zeroed = before.1 + wrote;
            steps += 1;
        } else {
            assert_eq!(wrote, records);
            assert!(
                written_len(&seg) <= zeroed,
                "commit {i} reached past the zeros"
            );
        }
    }
    assert_eq!(last_segment(dir.path()), seg);
    assert!(steps > 1 && steps < 60, "{steps} steps");
}

#[test]
fn space_taken_ahead_is_cut_when_the_journal_stops_or_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path()).unwrap();
    batch(&mut j, vec![note("first", vec![])]);
    let seg = last_segment(dir.path());
    // While the journal runs, the segment's file holds more than is written: zeros.
    let (len, written) = (std::fs::metadata(&seg).unwrap().len(), written_len(&seg));
    assert!(len > written, "{len} bytes, {written} written");
    assert_eq!(len, cfg(dir.path()).preallocate_bytes);
    for i in 0..9 {
        batch(&mut j, vec![note(&format!("n{i}"), vec![])]);
    }
    drop(j);
    // Stopped: the segment ends with its last commit record.
    let good = std::fs::read(&seg).unwrap();
    assert_eq!(good.len() as u64, written_len(&seg));

    // A crash leaves the zeros: they are no torn tail, and the next start cuts them.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(good.len() as u64 + 3000).unwrap();
    drop(f);
    let j = open(dir.path()).unwrap();
    assert_eq!(j.len(), 10);
    assert_eq!(j.recovery().torn_tail, None);
    assert!(j.recovery().set_aside.is_empty());
    assert_eq!(std::fs::read(&seg).unwrap(), good);
    drop(j);

    // A batch cut short by a crash, zeros after it: the torn tail is the batch's bytes.
    let tail = crashed_batch();
    let mut data = [good.clone(), tail.clone()].concat();
    data.resize(data.len() + 3000, 0);
    std::fs::write(&seg, &data).unwrap();
    let j = open(dir.path()).unwrap();
    assert_eq!(j.len(), 10);
    assert_eq!(
        j.recovery().torn_tail,
        Some((seg.clone(), good.len() as u64, tail.len() as u64))
    );
    assert_eq!(std::fs::read(&j.recovery().set_aside[0]).unwrap(), tail);
    assert_eq!(std::fs::read(&seg).unwrap(), good);
}

#[test]
fn a_torn_tail_is_cut_and_everything_acknowledged_stays() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path()).unwrap();
    for i in 0..10 {
        batch(&mut j, vec![note(&format!("n{i}"), vec![])]);
    }
    drop(j);
    let seg = last_segment(dir.path());
    let good = std::fs::metadata(&seg).unwrap().len();
    // An unacknowledged batch half written: a whole record without its commit, then part
    // of another.
    let unacknowledged = axon_protocols::journal::Entry {
        shard: 0,
        index: 10,
        kind: EntryKind::Note,
        time: "1970-01-01T00:00:00.000Z".into(),
        links: vec![],
        body: json!({"text": "never acknowledged"}),
    };
    let mut tail = Vec::new();
    axon_protocols::journal::encode_record(&unacknowledged.to_bytes().unwrap(), &mut tail);
    // (The torn bytes end at the last that is not zero: zeros after the records are
    // free space.)
    tail.extend_from_slice(&[7, 0, 0, 0, 0x5a]);
    let mut data = std::fs::read(&seg).unwrap();
    data.extend_from_slice(&tail);
    std::fs::write(&seg, &data).unwrap();

    let j = open(dir.path()).unwrap();
    assert_eq!(j.len(), 10);
    let (path, offset, cut) = j.recovery().torn_tail.clone().unwrap();
    assert_eq!((path, offset, cut), (seg.clone(), good, tail.len() as u64));
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good);
    // The cut bytes are kept next to the segment, not destroyed.
    let aside = &j.recovery().set_aside;
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), tail);
    drop(j);
    // The next start reads past the kept file and cuts nothing more.
    let j = open(dir.path()).unwrap();
    assert_eq!((j.len(), j.recovery().torn_tail.clone()), (10, None));
}

/// Ten acknowledged single-entry batches, and the stop's checkpoint covering them.
fn ten_acknowledged(dir: &Path) -> std::path::PathBuf {
    let mut j = open(dir).unwrap();
    for i in 0..10 {
        batch(&mut j, vec![note(&format!("n{i}"), vec![])]);
    }
    drop(j);
    last_segment(dir)
}

#[test]
fn a_damaged_tail_that_a_checkpoint_covers_is_damage_and_nothing_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let seg = ten_acknowledged(dir.path());
    let mut data = std::fs::read(&seg).unwrap();
    // The last commit record's checksum no longer holds: by the segments alone the last
    // batch looks torn, but the checkpoint logged at stop covers it.
    let last = data.len() - 1;
    data[last] ^= 1;
    std::fs::write(&seg, &data).unwrap();
    let Err(OpenError::Tamper(msg)) = open(dir.path()) else {
        panic!("opened a journal whose acknowledged tail is damaged");
    };
    assert!(
        msg.contains("covers 10 entries where 9 are intact"),
        "{msg}"
    );
    assert!(msg.contains("nothing was cut"), "{msg}");
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        data,
        "start-up changed the segment"
    );
    let Err(OpenError::Tamper(audited)) = audit(cfg(dir.path()), false, &[], None, &mut |_, _| {})
    else {
        panic!("the audit passed");
    };
    assert_eq!(audited, msg);

    // Acknowledged records that read back as zeros look like space taken ahead, but the
    // checkpoint covers them: damage too, and the file keeps its length.
    let clean = {
        data[last] ^= 1;
        data
    };
    // The last batch, from the end of the commit record before it, all zeros.
    let commit = 84;
    let last_commit = clean.len() - commit;
    let from = (0..last_commit)
        .rev()
        .find(|&o| axon_protocols::journal::find_commit_after(&clean[..o + commit], o) == Some(o))
        .unwrap()
        + commit;
    let mut zeroed = clean.clone();
    zeroed[from..].fill(0);
    std::fs::write(&seg, &zeroed).unwrap();
    let Err(OpenError::Tamper(msg)) = open(dir.path()) else {
        panic!("opened a journal whose acknowledged tail reads as zeros");
    };
    assert!(msg.contains("nothing was cut"), "{msg}");
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        zeroed,
        "start-up changed the segment"
    );
}

/// An unacknowledged last batch as a crash can leave it: entry 10 intact, entry 11's
/// bytes lost (zeros), and the batch's own commit record on disk.
fn crashed_batch() -> Vec<u8> {
    let entry = |index: u64| axon_protocols::journal::Entry {
        shard: 0,
        index,
        kind: EntryKind::Note,
        time: "2100-01-01T00:00:00.000Z".into(),
        links: vec![],
        body: json!({"text": "never acknowledged"}),
    };
    let mut tail = Vec::new();
    axon_protocols::journal::encode_record(&entry(10).to_bytes().unwrap(), &mut tail);
    let lost = tail.len();
    axon_protocols::journal::encode_record(&entry(11).to_bytes().unwrap(), &mut tail);
    tail[lost..].fill(0);
    axon_protocols::journal::encode_commit(10, 12, &[0x5a; 32], &mut tail);
    tail
}

#[test]
fn a_last_batch_whose_commit_reached_the_disk_before_its_entries_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let seg = ten_acknowledged(dir.path());
    let good = std::fs::read(&seg).unwrap();
    let tail = crashed_batch();
    std::fs::write(&seg, [good.clone(), tail.clone()].concat()).unwrap();
    let j = open(dir.path()).unwrap();
    assert_eq!(j.len(), 10);
    assert_eq!(
        j.recovery().torn_tail,
        Some((seg.clone(), good.len() as u64, tail.len() as u64))
    );
    assert_eq!(std::fs::read(&seg).unwrap(), good);
    assert_eq!(std::fs::read(&j.recovery().set_aside[0]).unwrap(), tail);
}

#[test]
fn a_record_after_the_last_batch_commit_makes_damage_before_it_tamper() {
    let dir = tempfile::tempdir().unwrap();
    let seg = ten_acknowledged(dir.path());
    let good = std::fs::read(&seg).unwrap();
    let mut tail = crashed_batch();
    // A later batch is written only once this one is durable: a record after its commit
    // means the damage hit data that was acknowledged.
    axon_protocols::journal::encode_record(b"{}", &mut tail);
    let bad = [good, tail].concat();
    std::fs::write(&seg, &bad).unwrap();
    let Err(OpenError::Tamper(msg)) = open(dir.path()) else {
        panic!("opened");
    };
    assert!(msg.contains("and another record at offset"), "{msg}");
    assert_eq!(std::fs::read(&seg).unwrap(), bad);
}

#[derive(Clone, Debug)]
enum Tamper {
    Flip { at: usize, bit: u8 },
    Delete(usize),
    Duplicate(usize),
    Swap(usize),
}

impl Arbitrary for Tamper {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = usize::arbitrary(g);
        match u8::arbitrary(g) % 4 {
            0 => Tamper::Flip {
                at: n,
                bit: u8::arbitrary(g) % 8,
            },
            1 => Tamper::Delete(n),
            2 => Tamper::Duplicate(n),
            _ => Tamper::Swap(n),
        }
    }
}

/// Offsets and lengths of the records of a segment.
fn records(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = vec![];
    let mut o = 0;
    while o < data.len() {
        let next = match axon_protocols::journal::read_record(data, o, usize::MAX) {
            axon_protocols::journal::RecordRead::Entry { next, .. }
            | axon_protocols::journal::RecordRead::Commit { next, .. } => next,
            other => panic!("{other:?}"),
        };
        out.push((o, next - o));
        o = next;
    }
    out
}

fn tampered_journal_is_refused(entries: u8, tamper: Tamper) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path()).unwrap();
    for i in 0..(entries % 40 + 2) {
        batch(&mut j, vec![note(&format!("entry {i}"), vec![])]);
    }
    drop(j);
    let seg = last_segment(dir.path());
    let data = std::fs::read(&seg).unwrap();
    let recs = records(&data);
    let mut bad = data.clone();
    let what = match tamper {
        Tamper::Flip { at, bit } => {
            bad[at % data.len()] ^= 1 << bit;
            format!("flip byte {}", at % data.len())
        }
        Tamper::Delete(n) => {
            let (o, l) = recs[n % recs.len()];
            bad.drain(o..o + l);
            format!("delete record at {o}")
        }
        Tamper::Duplicate(n) => {
            let (o, l) = recs[n % recs.len()];
            let copy = data[o..o + l].to_vec();
            bad.splice(o..o, copy);
            format!("duplicate record at {o}")
        }
        Tamper::Swap(n) => {
            let k = n % (recs.len() - 1);
            let ((o1, l1), (o2, l2)) = (recs[k], recs[k + 1]);
            let mut swapped = data[o2..o2 + l2].to_vec();
            swapped.extend_from_slice(&data[o1..o1 + l1]);
            bad.splice(o1..o2 + l2, swapped);
            format!("swap records at {o1} and {o2}")
        }
    };
    std::fs::write(&seg, &bad).unwrap();
    // The audit names the same first bad record as the journal's own start-up check.
    let audited = audit(cfg(dir.path()), false, &[], None, &mut |_, _| {});
    let Err(OpenError::Tamper(audit_msg)) = audited else {
        panic!("{what}: audit passed: {audited:?}");
    };
    assert!(audit_msg.contains(".seg at offset "), "{audit_msg}");
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        bad,
        "the audit changed nothing"
    );
    match open(dir.path()) {
        Err(OpenError::Tamper(msg)) => {
            assert_eq!(msg, audit_msg);
            true
        }
        Ok(j) => {
            // Damage inside the last, unfinished group can only look like a torn tail
            // when it removes whole records after the last commit: none exist here, since
            // every batch ends with a commit record.
            panic!(
                "{what}: opened with {} entries, torn tail {:?}",
                j.len(),
                j.recovery().torn_tail
            )
        }
        Err(other) => panic!("{what}: {other}"),
    }
}

#[test]
fn damage_to_acknowledged_records_is_tamper() {
    QuickCheck::new()
        .tests(200)
        .quickcheck(tampered_journal_is_refused as fn(u8, Tamper) -> bool);
}

/// A body of `levels` arrays inside each other with `leaf` at the bottom.
fn buried(levels: usize, leaf: serde_json::Value) -> serde_json::Value {
    (0..levels).fold(leaf, |v, _| json!([v]))
}

/// The writer's refusal is the journal's: a body without a canonical form is refused
/// whole (naming where), nothing of it is appended, and the batch's other appends go
/// through; whatever is appended reads back byte for byte after a restart.
fn refused_bodies_append_nothing(levels: u8, number: u64, negative: bool) -> bool {
    use axon_protocols::canonical::{self, MAX_DEPTH};
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path()).unwrap();
    // Depths around the limit: the entry's object and nothing else hold the body.
    let levels = MAX_DEPTH - 4 + usize::from(levels % 8);
    let leaf = match i64::try_from(number) {
        Ok(n) if negative => json!(-n),
        _ => json!(number),
    };
    let body = buried(levels, leaf);
    let writer = canonical::to_vec(&body).map(|_| levels < MAX_DEPTH);
    let r = batch(
        &mut j,
        vec![
            JournalRequest::Append(NewEntry::new(EntryKind::Note, vec![], &body)),
            note("after", vec![]),
        ],
    );
    assert!(matches!(r[1], JournalResponse::Appended(_)));
    let accepted = match (&r[0], writer) {
        (JournalResponse::Appended(_), Ok(true)) => true,
        (JournalResponse::Refused(Refusal::NotCanonical(e)), Ok(false) | Err(_)) => {
            assert!(e.path.starts_with("/body/0"), "{e}");
            false
        }
        (other, w) => panic!("journal {other:?}, writer {w:?}"),
    };
    assert_eq!(j.len(), 1 + u64::from(accepted));
    drop(j);
    let mut j = open(dir.path()).unwrap();
    for i in 0..j.len() {
        let JournalResponse::Entry(e) = batch(&mut j, vec![JournalRequest::Entry(i)]).remove(0)
        else {
            panic!("entry {i} does not read back")
        };
        let read = Entry::from_bytes(&e.bytes).unwrap();
        assert_eq!(read.to_bytes().unwrap(), e.bytes);
    }
    true
}

#[test]
fn what_the_writer_refuses_is_never_appended() {
    // Integers on both sides of exactness (around 2^53 and beyond), at every depth near
    // the limit.
    let gen = |g: &mut Gen| {
        let base = *g
            .choose(&[1u64 << 53, 1 << 60, u64::MAX - 8, 10_000_000_000_000_000])
            .unwrap();
        base.wrapping_add(u64::from(u8::arbitrary(g) % 16))
    };
    let mut g = Gen::new(100);
    for _ in 0..40 {
        let (levels, number, negative) =
            (u8::arbitrary(&mut g), gen(&mut g), bool::arbitrary(&mut g));
        assert!(refused_bodies_append_nothing(levels, number, negative));
    }
    // The body the issue found: 1e16 is a double and must read back.
    assert!(refused_bodies_append_nothing(
        0,
        10_000_000_000_000_000,
        false
    ));
}

#[test]
fn a_failed_write_halts_the_journal_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let shared: Arc<JournalShared> = Arc::default();
    let halt = &shared.halt;
    let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    let mut j = Journal::open(cfg(dir.path()), clock, shared.clone()).unwrap();
    let mut n = 0u64;
    // Fill the first segment to just under its limit.
    while written_len(&last_segment(dir.path())) < 3800 {
        batch(&mut j, vec![note(&format!("n{n}"), vec![])]);
        n += 1;
    }
    checkpoint_covering(&mut j, n);
    // Something else holds the name of the next segment: the group commit that needs it
    // fails, and the journal halts instead of retrying.
    let blocker = dir.path().join("shard-0").join(format!("{n:020}.seg"));
    std::fs::create_dir(&blocker).unwrap();
    let r = batch(&mut j, vec![note(&"x".repeat(400), vec![])]);
    assert!(
        matches!(&r[0], JournalResponse::Refused(Refusal::Halted(_))),
        "{r:?}"
    );
    assert!(halt.is_halted());
    let r = batch(
        &mut j,
        vec![note("small", vec![]), JournalRequest::Entry(0)],
    );
    assert!(matches!(
        &r[0],
        JournalResponse::Refused(Refusal::Halted(_))
    ));
    assert!(
        matches!(&r[1], JournalResponse::Entry(_)),
        "reads still work"
    );
    assert_eq!(j.len(), n);
    // A halted journal still hands out the checkpoint of what it holds, and writes
    // nothing for it.
    let log = dir.path().join("shard-0.checkpoints");
    let logged = std::fs::read(&log).unwrap();
    checkpoint_covering(&mut j, n);
    assert_eq!(std::fs::read(&log).unwrap(), logged);
    drop(j);
    std::fs::remove_dir(&blocker).unwrap();
    let j = open(dir.path()).unwrap();
    assert_eq!(
        j.len(),
        n,
        "every acknowledged entry is there after a restart"
    );
}

/// What a test appended: (kind, action).
type Appendix = Vec<(EntryKind, Option<String>)>;

fn open_at(dir: &Path, clock: &Arc<ManualClock>) -> Journal {
    Journal::open(cfg(dir), clock.clone(), Arc::default()).unwrap()
}

fn entries_of(r: &JournalResponse) -> Vec<u64> {
    match r {
        JournalResponse::Entries(es) => es.iter().map(|e| e.index).collect(),
        JournalResponse::Refused(Refusal::NotFound(_)) => vec![],
        other => panic!("not entries: {other:?}"),
    }
}

/// Every page of `filter`, `limit` entries at a time, concatenated.
fn all_pages(j: &mut Journal, filter: &Filter, limit: usize) -> Vec<u64> {
    let (mut out, mut after) = (vec![], None);
    loop {
        let q = JournalRequest::Query {
            filter: filter.clone(),
            after,
            limit,
        };
        let JournalResponse::Page {
            entries,
            next_after,
        } = batch(j, vec![q]).remove(0)
        else {
            panic!("not a page")
        };
        assert!(entries.len() <= limit);
        out.extend(entries.iter().map(|e| e.index));
        match next_after {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

/// Checks every lookup against what was appended, entry `i` being at second `i / 3`.
fn check_lookups(j: &mut Journal, appended: &Appendix) {
    use Filter;
    let time = |s: u64| {
        axon_protocols::time::rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s))
    };
    for (i, (_, action)) in appended.iter().enumerate() {
        if let Some(a) = action {
            let want: Vec<u64> = (0..appended.len() as u64)
                .filter(|k| appended[*k as usize].1.as_ref() == Some(a))
                .collect();
            assert_eq!(
                entries_of(&batch(j, vec![JournalRequest::ByAction(a.parse().unwrap())])[0]),
                want,
                "action of {i}"
            );
        }
    }
    let n = appended.len() as u64;
    for kind in [
        Some(EntryKind::Note),
        Some(EntryKind::Capsule),
        Some(EntryKind::Event),
        None,
    ] {
        for (since, until) in [
            (None, None),
            (Some(2), None),
            (None, Some(5)),
            (Some(1), Some(4)),
            (Some(9), Some(9)),
            (Some(90), Some(150)),
            (Some(170), None),
        ] {
            let filter = Filter {
                kind,
                since: since.map(time),
                until: until.map(time),
            };
            let want: Vec<u64> = (0..n)
                .filter(|k| kind.is_none_or(|want| appended[*k as usize].0 == want))
                .filter(|k| since.is_none_or(|s| k / 3 >= s) && until.is_none_or(|u| k / 3 < u))
                .collect();
            for limit in [7, 100, 1000] {
                assert_eq!(all_pages(j, &filter, limit), want, "{filter:?} by {limit}");
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn entries_are_found_by_id_action_kind_and_time_with_or_without_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    let mut j = open_at(dir.path(), &clock);
    let mut log: Appendix = vec![];
    let kinds = [EntryKind::Note, EntryKind::Capsule, EntryKind::Event];
    // Enough entries for several blocks of the kind index.
    for i in 0..600u64 {
        // Three entries a second; every fifth entry belongs to one of two actions.
        let kind = kinds[(i % 3) as usize];
        let action = (i % 5 == 0).then(|| format!("{:032x}", i % 2));
        let mut body = json!({ "n": i });
        if let Some(a) = &action {
            body["action_id"] = json!(a);
        }
        let r = batch(
            &mut j,
            vec![JournalRequest::Append(NewEntry::new(kind, vec![], &body))],
        );
        let a = appended(&r[0]);
        let JournalResponse::Entry(e) =
            &batch(&mut j, vec![JournalRequest::ById(a.id.parse().unwrap())])[0]
        else {
            panic!("no entry by id")
        };
        assert_eq!(e.index, i);
        log.push((kind, action));
        if i % 3 == 2 {
            clock.advance(std::time::Duration::from_secs(1));
        }
    }
    // Hostile ids do not parse; unknown ones are not found.
    assert!("zz".parse::<EntryId>().is_err());
    assert!("AB".repeat(32).parse::<EntryId>().is_err());
    assert!("0".repeat(31).parse::<ActionId>().is_err());
    assert!("NOT-A-CODE".parse::<Barcode>().is_err());
    assert!(matches!(
        &batch(
            &mut j,
            vec![JournalRequest::ById("ab".repeat(32).parse().unwrap())]
        )[0],
        JournalResponse::Refused(Refusal::NotFound(_))
    ));
    check_lookups(&mut j, &log);
    drop(j);
    // Reopened: the index is current.
    let mut j = open_at(dir.path(), &clock);
    check_lookups(&mut j, &log);
    drop(j);
    // The index lost: rebuilt at open.
    let index_dir = dir.path().join("index-shard-0");
    std::fs::remove_dir_all(&index_dir).unwrap();
    let mut j = open_at(dir.path(), &clock);
    assert_eq!(j.recovery().index_from, 0);
    check_lookups(&mut j, &log);
    // An index that stopped early (a crash, or it fell behind): caught up, not rebuilt.
    let saved = tempfile::tempdir().unwrap();
    drop(j);
    copy_dir(&index_dir, saved.path());
    let mut j = open_at(dir.path(), &clock);
    assert_eq!(j.recovery().index_from, 600);
    for i in 600..700u64 {
        let body = json!({ "n": i, "action_id": format!("{:032x}", i % 2) });
        let kind = kinds[(i % 3) as usize];
        batch(
            &mut j,
            vec![JournalRequest::Append(NewEntry::new(kind, vec![], &body))],
        );
        log.push((kind, Some(format!("{:032x}", i % 2))));
        if i % 3 == 2 {
            clock.advance(std::time::Duration::from_secs(1));
        }
    }
    drop(j);
    std::fs::remove_dir_all(&index_dir).unwrap();
    copy_dir(saved.path(), &index_dir);
    let mut j = open_at(dir.path(), &clock);
    assert_eq!(j.recovery().index_from, 600);
    check_lookups(&mut j, &log);
    drop(j);
    // Read-only, without the index, and with the index it left.
    let mut j = Journal::open_read_only(cfg(dir.path())).unwrap();
    check_lookups(&mut j, &log);
    j.use_index_if_current();
    check_lookups(&mut j, &log);
    drop(j);
    // Without the index, a query reads at most page_scan_max_entries entries and says
    // where to go on; paging on still finds everything.
    let mut c = cfg(dir.path());
    c.page_scan_max_entries = 50;
    let mut j = Journal::open_read_only(c).unwrap();
    let events = Filter {
        kind: Some(EntryKind::Event),
        ..Default::default()
    };
    let (page, next) = j.reader().query(&events, None, 1000).unwrap();
    assert_eq!((page.len(), next), (16, Some(49)));
    let want: Vec<u64> = (0..log.len() as u64)
        .filter(|i| log[*i as usize].0 == EntryKind::Event)
        .collect();
    assert_eq!(all_pages(&mut j, &events, 1000), want);
    // A lookup by action never needs the sled index: the log files every entry under its
    // action as it loads it, so the bound on reading past the index does not apply.
    let action = JournalRequest::ByAction(format!("{:032x}", 0).parse().unwrap());
    let want: Vec<u64> = (0..log.len() as u64)
        .filter(|i| log[*i as usize].1.as_deref() == Some(&format!("{:032x}", 0)[..]))
        .collect();
    assert!(want.len() > 50);
    assert_eq!(entries_of(&batch(&mut j, vec![action])[0]), want);
}

#[test]
fn entry_times_never_go_back_even_when_the_clock_does() {
    let dir = tempfile::tempdir().unwrap();
    let later = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000),
    ));
    let mut j = open_at(dir.path(), &later);
    batch(&mut j, vec![note("late", vec![])]);
    drop(j);
    // A node restarted with its clock set back: its entries keep the time of the last one.
    let earlier = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    let mut j = open_at(dir.path(), &earlier);
    batch(&mut j, vec![note("early", vec![])]);
    let times: Vec<String> = (0..2)
        .map(
            |i| match &batch(&mut j, vec![JournalRequest::Entry(i)])[0] {
                JournalResponse::Entry(e) => Entry::from_bytes(&e.bytes).unwrap().time,
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(times[0], "1970-01-01T00:16:40.000Z");
    assert_eq!(times[1], times[0]);
}

#[test]
fn a_query_page_is_bounded_in_entries_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.page_max_entries = 5;
    c.page_max_bytes = 1024;
    let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    let mut j = Journal::open(c, clock, Arc::default()).unwrap();
    for i in 0..40 {
        batch(&mut j, vec![note(&format!("{i:0>300}"), vec![])]);
    }
    let filter = Filter::default();
    let (page, next) = j.reader().query(&filter, None, 1000).unwrap();
    // Entries of ~380 bytes: the third reaches 1024 bytes.
    assert_eq!(page.len(), 3);
    assert_eq!(next, Some(2));
    let (page, next) = j.reader().query(&filter, Some(38), 1000).unwrap();
    assert_eq!((page.len(), next), (1, None));
    let small = Filter {
        kind: Some(EntryKind::Note),
        ..Default::default()
    };
    let mut j2 = j;
    assert_eq!(
        all_pages(&mut j2, &small, 1000),
        (0..40).collect::<Vec<_>>()
    );
}

/// The size the served checkpoint records, if one is served.
fn served_size(j: &mut Journal) -> Option<u64> {
    match &batch(j, vec![JournalRequest::Checkpoint])[0] {
        JournalResponse::Checkpoint(note) => note.lines().nth(1).and_then(|l| l.parse().ok()),
        _ => None,
    }
}

/// Waits (real time, bounded) until `what` holds.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[test]
fn checkpoints_are_logged_on_schedule_and_served_only_once_logged() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    let mut c = cfg(dir.path());
    c.checkpoint_min_interval = Duration::from_secs(1);
    c.head_every_commits = 3;
    let mut j = Journal::open(c, clock.clone(), Arc::default()).unwrap();
    let log = dir.path().join("shard-0.checkpoints");
    // At first start the empty journal's checkpoint is logged at once.
    wait_for("the first checkpoint", || served_size(&mut j) == Some(0));
    let logged = |n: usize| std::fs::metadata(&log).unwrap().len() as usize > n;
    let len0 = std::fs::metadata(&log).unwrap().len() as usize;
    // A commit: its checkpoint is due one interval later, not before.
    batch(&mut j, vec![note("a", vec![])]);
    wait_for("the checkpoint thread waits for its time", || {
        clock.sleepers() == 1
    });
    assert_eq!(served_size(&mut j), Some(0));
    clock.advance(Duration::from_millis(999));
    wait_for("still waiting", || clock.sleepers() == 1);
    // Asking for the checkpoint writes nothing.
    assert_eq!(served_size(&mut j), Some(0));
    assert_eq!(std::fs::metadata(&log).unwrap().len() as usize, len0);
    clock.advance(Duration::from_millis(1));
    wait_for("the checkpoint of the commit", || {
        served_size(&mut j) == Some(1)
    });
    assert!(logged(len0), "served only once logged");
    // Three commits make one due at once, but never sooner than an interval after the
    // last: the rate holds.
    for n in ["b", "c", "d"] {
        batch(&mut j, vec![note(n, vec![])]);
    }
    wait_for("the rate limit holds it back", || clock.sleepers() == 1);
    assert_eq!(served_size(&mut j), Some(1));
    clock.advance(Duration::from_secs(1));
    wait_for("the checkpoint of four", || served_size(&mut j) == Some(4));
    clock.advance(Duration::from_secs(5));
    for n in ["e", "f", "g"] {
        batch(&mut j, vec![note(n, vec![])]);
    }
    // An interval has passed since the last: the third commit makes it due now.
    wait_for("the checkpoint of seven", || served_size(&mut j) == Some(7));
    batch(&mut j, vec![note("h", vec![])]);
    drop(j);
    // On stop, what is durable is covered.
    let mut j = Journal::open(cfg(dir.path()), clock.clone(), Arc::default()).unwrap();
    assert_eq!(served_size(&mut j), Some(8));
}

#[test]
fn a_torn_checkpoint_is_cut_and_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path()).unwrap();
    let log = dir.path().join("shard-0.checkpoints");
    batch(&mut j, vec![note("a", vec![])]);
    checkpoint_covering(&mut j, 1);
    batch(&mut j, vec![note("b", vec![])]);
    checkpoint_covering(&mut j, 2);
    drop(j);
    // A crash in the middle of writing a checkpoint: cut at the next start, which then
    // logs on as before.
    let clean = std::fs::read(&log).unwrap();
    let mut torn = clean.clone();
    torn.extend_from_slice(&clean[..40]);
    std::fs::write(&log, &torn).unwrap();
    let mut j = open(dir.path()).unwrap();
    let (path, offset, bytes) = j.recovery().torn_checkpoint.clone().unwrap();
    assert_eq!((path, offset, bytes), (log.clone(), clean.len() as u64, 40));
    assert_eq!(&std::fs::read(&log).unwrap()[..clean.len()], clean);
    assert_eq!(
        std::fs::read(&j.recovery().set_aside[0]).unwrap(),
        &clean[..40],
        "the cut bytes are kept next to the log"
    );
    batch(&mut j, vec![note("c", vec![])]);
    checkpoint_covering(&mut j, 3);
    drop(j);
    let j = open(dir.path()).unwrap();
    assert_eq!(j.recovery().torn_checkpoint, None);
    assert_eq!(j.len(), 3);
}

/// `axon_journal_index_lag_entries` in `registry`.
fn index_lag(registry: &prometheus::Registry) -> Option<f64> {
    registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "axon_journal_index_lag_entries")
        .map(|f| f.get_metric()[0].get_gauge().get_value())
}

#[test]
fn without_an_index_lookups_read_the_segments_and_the_lag_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // Something that is not an index where the index belongs: it cannot be opened.
    std::fs::write(dir.path().join("index-shard-0"), b"not sled").unwrap();
    let mut j = open(dir.path()).unwrap();
    let registry = prometheus::Registry::new();
    j.set_metrics(JournalMetrics::new(&registry).unwrap());
    let lag = || index_lag(&registry);
    assert_eq!(lag(), Some(0.0));
    let mut codes = vec![];
    for i in 0..5 {
        codes.push(appended(&batch(&mut j, vec![note(&format!("n{i}"), vec![])])[0]).barcode);
    }
    assert_eq!(lag(), Some(5.0));
    for (i, code) in codes.iter().enumerate() {
        assert_eq!(
            entries_of(
                &batch(
                    &mut j,
                    vec![JournalRequest::ByBarcode(code.parse().unwrap())]
                )[0]
            ),
            vec![i as u64]
        );
    }
}

#[test]
fn index_hits_that_do_not_match_their_entry_are_counted_and_answered_from_the_segments() {
    use axon_actors::journal::index::{IndexRecord, JournalIndex};
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    let action = format!("{:032x}", 7);
    let mut j = open_at(dir.path(), &clock);
    let mut codes = vec![];
    for i in 0..6 {
        let r = batch(
            &mut j,
            vec![JournalRequest::Append(NewEntry::new(
                if i == 5 {
                    EntryKind::Event
                } else {
                    EntryKind::Note
                },
                vec![],
                &if i == 5 {
                    json!({"action_id": action})
                } else {
                    json!({"text": format!("n{i}")})
                },
            ))],
        );
        codes.push(appended(&r[0]).barcode);
    }
    // Stopped, the index thread finishes what is committed: the index is current.
    drop(j);
    // The index is changed behind the journal's back: entry 0 (a note) is claimed for
    // the event kind. (Barcodes and actions are answered from the log's tables in memory,
    // never from sled.)
    {
        let ix = JournalIndex::open(&dir.path().join("index-shard-0"), 8 << 20).unwrap();
        let built = ix.built_for().expect("built");
        ix.add(&[IndexRecord {
            index: 0,
            kind: EntryKind::Event,
        }])
        .unwrap();
        ix.mark_built(built.0, &built.1).unwrap();
        ix.flush();
    }
    let mut j = open_at(dir.path(), &clock);
    let registry = prometheus::Registry::new();
    j.set_metrics(JournalMetrics::new(&registry).unwrap());
    let mismatches = || {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == "axon_journal_index_mismatches_total")
            .map(|f| f.get_metric()[0].get_counter().get_value())
    };
    assert_eq!(mismatches(), Some(0.0));
    let found = entries_of(
        &batch(
            &mut j,
            vec![JournalRequest::ByBarcode(codes[5].parse().unwrap())],
        )[0],
    );
    assert_eq!(found, vec![5]);
    let found = entries_of(
        &batch(
            &mut j,
            vec![JournalRequest::ByAction(action.parse().unwrap())],
        )[0],
    );
    assert_eq!(found, vec![5]);
    let events = Filter {
        kind: Some(EntryKind::Event),
        ..Default::default()
    };
    let (page, _) = j.reader().query(&events, None, 10).unwrap();
    assert_eq!(page.iter().map(|e| e.index).collect::<Vec<_>>(), vec![5]);
    assert_eq!(mismatches(), Some(1.0));
}

#[test]
fn no_two_incarnations_hold_the_journal_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = open(dir.path()).unwrap();
    batch(&mut first, vec![note("a", vec![])]);
    let mut c = cfg(dir.path());
    c.lock_wait = std::time::Duration::from_millis(50);
    let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
    match Journal::open(c.clone(), clock.clone(), Arc::default()) {
        Err(OpenError::Locked { path, .. }) => assert!(path.ends_with("journal.lock")),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a second incarnation opened while the first holds the journal"),
    }
    // Nothing of the first was touched, and once it is gone the next one opens.
    drop(first);
    let j = Journal::open(c, clock, Arc::default()).unwrap();
    assert_eq!(j.len(), 1);
}

#[test]
fn the_index_keeps_up_through_space_taken_ahead_and_sealed_segments() {
    // The index thread reads the last segment while commits write into the zeros taken
    // ahead of them, and reads on into the next segment once one is sealed: it must read
    // what was written after it last looked, not the zeros it saw then.
    let dir = tempfile::tempdir().unwrap();
    let mut j = open(dir.path()).unwrap();
    let registry = prometheus::Registry::new();
    j.set_metrics(JournalMetrics::new(&registry).unwrap());
    let lag = || index_lag(&registry);
    let mut n = 0;
    for round in 0..6 {
        for _ in 0..4 {
            batch(&mut j, vec![note(&format!("n{n}"), vec![])]);
            n += 1;
        }
        // Waited for, not timed: an index thread that stopped never gets there.
        wait_for(
            &format!("round {round}: the index catches up to {n}"),
            || lag() == Some(0.0),
        );
    }
    let segments = std::fs::read_dir(dir.path().join("shard-0"))
        .unwrap()
        .count();
    assert!(segments > 1, "the notes fill more than one segment");
}
