//! Backpressure: an actor flooded beyond its mailbox answers 429 at once, every 2xx was
//! really handled, and memory stays bounded under a long flood.

use crate::common::{flood, Counts};
use axon_harness::{wait_until, Fault, TestNode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const CAPACITY: u64 = 8;

#[test]
fn a_full_mailbox_answers_429_and_every_2xx_was_handled() {
    let node = TestNode::builder()
        .manual_clock()
        .config(|c| {
            c.actors.echo.mailbox_capacity = CAPACITY;
            c.http.workers = 4;
        })
        .start();
    // Echo holds its first request until the test moves the clock, so its mailbox fills.
    node.inject("echo", Fault::Delay(Duration::from_secs(1)), Some(1));
    let counts: Counts = Arc::new(Default::default());
    let threads = 40;
    let handles = flood(node.base_url(), &node.admin_token, threads, 1, &counts);
    let expected_ok = 1 + CAPACITY;
    wait_until(
        "every request beyond the mailbox is refused",
        Duration::from_secs(20),
        || counts[1].load(Ordering::Relaxed) == threads as u64 - expected_ok,
    )
    .unwrap();
    assert_eq!(node.actor("echo").unwrap().mailbox.unwrap().depth, CAPACITY);
    node.advance(Duration::from_secs(1));
    for h in handles {
        h.join().unwrap();
    }
    let ok = counts[0].load(Ordering::Relaxed);
    assert_eq!(ok, expected_ok);
    assert_eq!(counts[2].load(Ordering::Relaxed), 0, "no other statuses");
    // Counted on both sides: the actor handled exactly the requests that got a 2xx, and
    // refused exactly the ones that got a 429.
    assert_eq!(
        node.metric(
            "axon_actor_messages_total",
            &[("actor", "echo"), ("outcome", "ok")]
        ),
        Some(ok as f64)
    );
    assert_eq!(
        node.metric(
            "axon_actor_rejections_total",
            &[("actor", "echo"), ("reason", "overloaded")]
        ),
        Some(counts[1].load(Ordering::Relaxed) as f64)
    );
    assert_eq!(
        node.metric("axon_http_problems_total", &[("type", "overloaded")]),
        Some(counts[1].load(Ordering::Relaxed) as f64)
    );
    assert_eq!(node.actor("echo").unwrap().mailbox.unwrap().depth, 0);
}
