//! What the runtime's tests share: the one way they wait for a condition.

use std::time::{Duration, Instant};

/// Waits (in real time, yielding to the actix arbiter) until `cond` holds; panics naming
/// `what` after 20 s. Tests wait for conditions this way, never sleep to let time pass.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
}
