//! Backpressure: an actor flooded beyond its mailbox answers 429 at once, every 2xx was
//! really handled, and memory stays bounded under a long flood.

use crate::common::{flood, Counts};
use axon_harness::{echo_manifest, wait_until, Fault, TestNode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The held intent keeps one slot (for its push); each other intent takes two (its
/// prediction and its push), so four more fill the mailbox.
const CAPACITY: u64 = 9;
/// An echo driver of its own, with a small mailbox.
const DRIVER: &str = "echo-small";
const CAPABILITY: &str = "urn:axon:cap:echo-small";

#[test]
fn a_full_mailbox_answers_429_and_every_2xx_was_handled() {
    let node = TestNode::builder()
        .manual_clock()
        .driver(&echo_manifest(DRIVER, CAPACITY))
        .config(|c| c.http.workers = 4)
        .start();
    // The driver holds its first request (the first intent's prediction) until the test
    // moves the clock, so its mailbox fills.
    node.inject(DRIVER, Fault::Delay(Duration::from_secs(1)), Some(1));
    let counts: Counts = Arc::new(Default::default());
    let threads = 40;
    let handles = flood(
        node.base_url(),
        &node.admin_token,
        CAPABILITY,
        threads,
        1,
        &counts,
    );
    let expected_ok = 1 + (CAPACITY - 1) / 2;
    wait_until(
        "every request beyond the mailbox is refused",
        Duration::from_secs(20),
        || counts[1].load(Ordering::Relaxed) == threads as u64 - expected_ok,
    )
    .unwrap();
    assert_eq!(node.actor(DRIVER).unwrap().mailbox.unwrap().depth, CAPACITY);
    node.advance(Duration::from_secs(1));
    for h in handles {
        h.join().unwrap();
    }
    let ok = counts[0].load(Ordering::Relaxed);
    assert_eq!(ok, expected_ok);
    assert_eq!(counts[2].load(Ordering::Relaxed), 0, "no other statuses");
    // Counted on both sides: the driver handled exactly the prediction and the push of
    // each intent that got a 2xx, and refused exactly the ones that got a 429.
    assert_eq!(
        node.metric(
            "axon_actor_messages_total",
            &[("actor", DRIVER), ("outcome", "ok")]
        ),
        Some(2.0 * ok as f64)
    );
    assert_eq!(
        node.metric("axon_actions_total", &[("status", "ok")]),
        Some(ok as f64)
    );
    assert_eq!(
        node.metric(
            "axon_actor_rejections_total",
            &[("actor", DRIVER), ("reason", "overloaded")]
        ),
        Some(counts[1].load(Ordering::Relaxed) as f64)
    );
    assert_eq!(
        node.metric("axon_http_problems_total", &[("type", "overloaded")]),
        Some(counts[1].load(Ordering::Relaxed) as f64)
    );
    assert_eq!(node.actor(DRIVER).unwrap().mailbox.unwrap().depth, 0);
}
