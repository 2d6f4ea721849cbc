//! Memory stays bounded while an actor is flooded beyond its mailbox. In its own test
//! binary so that nothing else in the process allocates while it measures.

mod common;

use axon_harness::{echo_manifest, Fault, TestNode};
use common::{flood, Counts};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const CAPACITY: u64 = 8;
const DRIVER: &str = "echo-small";
const CAPABILITY: &str = "urn:axon:cap:echo-small";

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn memory_stays_bounded_under_a_long_flood() {
    let node = TestNode::builder()
        .driver(&echo_manifest(DRIVER, CAPACITY))
        .config(|c| c.http.workers = 2)
        .start();
    // Every message takes 2 ms in the driver, so a flood of 16 clients keeps its mailbox
    // full.
    node.inject(DRIVER, Fault::Delay(Duration::from_millis(2)), None);
    let counts: Counts = Arc::new(Default::default());
    for h in flood(
        node.base_url(),
        &node.admin_token,
        CAPABILITY,
        16,
        100,
        &counts,
    ) {
        h.join().unwrap();
    }
    let warm = rss_bytes();
    for h in flood(
        node.base_url(),
        &node.admin_token,
        CAPABILITY,
        16,
        400,
        &counts,
    ) {
        h.join().unwrap();
    }
    let after = rss_bytes();
    let total: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    assert_eq!(total, 16 * 500);
    assert!(
        counts[1].load(Ordering::Relaxed) > 0,
        "the flood never filled the mailbox"
    );
    assert_eq!(counts[2].load(Ordering::Relaxed), 0);
    let growth = after.saturating_sub(warm);
    eprintln!(
        "resident memory grew by {} KiB over 6400 requests",
        growth >> 10
    );
    assert!(
        growth < 32 << 20,
        "resident memory grew by {} KiB over 6400 requests",
        growth >> 10
    );
    // Every 2xx was an action the driver ran and the journal recorded.
    assert_eq!(
        node.metric("axon_actions_total", &[("status", "ok")]),
        Some(counts[0].load(Ordering::Relaxed) as f64)
    );
}
