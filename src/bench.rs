//! `axon bench journal`: measures the journal on this machine's file system.
//!
//! - durable appends per second in group commits of 1, 16 and 256, against the physical
//!   limit: a loop that appends the same bytes to a file with one `fdatasync` per group;
//! - an audit of a journal of N entries (default one million);
//! - inclusion-proof latency at that size.
//!
//! It measures and prints; it asserts nothing.

use anyhow::Context;
use axon_actors::journal::{
    audit, Journal, JournalConfig, JournalRequest, JournalResponse, NewEntry,
};
use axon_protocols::journal::EntryKind;
use axon_supervisors::{SystemClock, Worker, WorkerContext};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(dir: &Path) -> JournalConfig {
    JournalConfig {
        dir: dir.to_owned(),
        shard: 0,
        key_name: "axon".into(),
        segment_max_bytes: 64 << 20,
        preallocate_bytes: 16 << 20,
        max_entry_bytes: 1 << 20,
        max_links: 64,
        batch_max_records: 65_536,
        batch_max_wait: std::time::Duration::ZERO,
        head_every_commits: 64,
        checkpoint_min_interval: std::time::Duration::from_secs(1),
        index_cache_bytes: 64 << 20,
        index_reopen_entries: 262_144,
        page_max_entries: 1000,
        page_max_bytes: 4 << 20,
        page_scan_max_entries: 100_000,
        lock_wait: std::time::Duration::from_secs(5),
    }
}

fn note(i: u64) -> JournalRequest {
    JournalRequest::Append(NewEntry::new(
        EntryKind::Note,
        vec![],
        &serde_json::json!({ "text": format!("benchmark note number {i:08}") }),
    ))
}

/// `batches` groups of `batch` append requests, numbered from `from`.
fn requests(batch: usize, batches: usize, from: u64) -> Vec<Vec<JournalRequest>> {
    (0..batches)
        .map(|b| {
            (0..batch)
                .map(|k| note(from + (b * batch + k) as u64))
                .collect()
        })
        .collect()
}

/// Hands each group to the journal as one batch, as its actor does; the requests are
/// built beforehand, as the raw loop's bytes are.
fn append_batches(j: &mut Journal, groups: Vec<Vec<JournalRequest>>) -> anyhow::Result<()> {
    let mut cx = WorkerContext::new("journal", None);
    for reqs in groups {
        for r in j
            .handle_batch(reqs, &mut cx)
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            match r {
                Ok(JournalResponse::Appended(_)) => {}
                other => anyhow::bail!("append failed: {other:?}"),
            }
        }
    }
    Ok(())
}

/// The same bytes, appended with one fdatasync per group: the file system's limit.
fn raw_loop(dir: &Path, record: usize, batch: usize, batches: usize) -> anyhow::Result<Duration> {
    let path = dir.join("raw.log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let buf = vec![0x5au8; record * batch];
    let start = Instant::now();
    for _ in 0..batches {
        f.write_all(&buf)?;
        f.sync_data()?;
    }
    let d = start.elapsed();
    std::fs::remove_file(&path)?;
    Ok(d)
}

/// Runs the journal benchmarks in a new folder under `base`; with `keep`, the audited
/// journal stays there as a data directory.
pub fn journal(base: &Path, entries: u64, keep: bool) -> anyhow::Result<()> {
    let dir = base.join(format!("axon-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run(&dir, entries);
    if keep && result.is_ok() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.file_name().is_some_and(|n| n != "big") {
                std::fs::remove_dir_all(&p)?;
            }
        }
        println!(
            "kept the journal of {entries} entries: axon audit --data-dir {}",
            dir.join("big").display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn run(dir: &Path, entries: u64) -> anyhow::Result<()> {
    println!("journal benchmarks in {}", dir.display());
    // The record size of a typical note, for the raw loop.
    let probe = dir.join("probe");
    let record = {
        let mut j = Journal::open(config(&probe), SystemClock::shared(), Arc::default())?;
        append_batches(&mut j, requests(1, 1, 0))?;
        drop(j);
        let seg = probe.join("shard-0/00000000000000000000.seg");
        // One entry record plus one commit record (84 bytes).
        (std::fs::metadata(&seg)?.len() as usize).saturating_sub(84)
    };
    std::fs::remove_dir_all(&probe)?;
    println!("entry record: {record} bytes");
    for (batch, batches) in [(1usize, 1000usize), (16, 500), (256, 300)] {
        let jdir = dir.join(format!("append-{batch}"));
        let mut j = Journal::open(config(&jdir), SystemClock::shared(), Arc::default())?;
        let groups = requests(batch, batches, 0);
        let start = Instant::now();
        append_batches(&mut j, groups)?;
        let journal = start.elapsed();
        drop(j);
        let raw = raw_loop(dir, record, batch, batches)?;
        let n = (batch * batches) as f64;
        let (jr, rr) = (n / journal.as_secs_f64(), n / raw.as_secs_f64());
        println!(
            "durable appends, batch {batch:>3}: journal {jr:>9.0}/s, raw append+fdatasync {rr:>9.0}/s, ratio {:.2}",
            jr / rr
        );
        std::fs::remove_dir_all(&jdir)?;
    }

    let big = dir.join("big/journal");
    let mut j = Journal::open(config(&big), SystemClock::shared(), Arc::default())?;
    let start = Instant::now();
    let batch = 4096usize;
    let mut done = 0u64;
    while done < entries {
        let n = batch.min((entries - done) as usize);
        append_batches(&mut j, requests(n, 1, done))?;
        done += n as u64;
    }
    println!(
        "built a journal of {entries} entries in {:.2}s",
        start.elapsed().as_secs_f64()
    );
    let mut cx = WorkerContext::new("journal", None);
    let samples = 10_000u64;
    let start = Instant::now();
    for k in 0..samples {
        let index = (k * 7919) % entries;
        let r = j
            .handle_batch(
                vec![JournalRequest::Inclusion {
                    index,
                    size: entries,
                }],
                &mut cx,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !matches!(r.first(), Some(Ok(JournalResponse::Inclusion(_)))) {
            anyhow::bail!("no proof for {index}");
        }
    }
    println!(
        "inclusion proof at {entries} entries: {:.1} µs each (mean of {samples})",
        start.elapsed().as_secs_f64() * 1e6 / samples as f64
    );
    drop(j);
    let start = Instant::now();
    let j = Journal::open_read_only(config(&big)).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "checking every record of {} entries (no index): {:.2}s",
        j.len(),
        start.elapsed().as_secs_f64()
    );
    drop(j);
    let start = Instant::now();
    let report = audit(config(&big), false, &[], None, &mut |_, _| {})?;
    println!(
        "audit of {} entries in {} segments: {:.2}s",
        report.entries,
        report.segments,
        start.elapsed().as_secs_f64()
    );
    // What the index thread can sustain: every entry read back and written to sled.
    let start = Instant::now();
    audit(config(&big), true, &[], None, &mut |_, _| {})?;
    let took = start.elapsed().as_secs_f64();
    println!(
        "rebuilding the sled index of {entries} entries: {took:.2}s ({:.0} entries/s)",
        entries as f64 / took
    );
    Ok(())
}
