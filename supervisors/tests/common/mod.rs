//! What the runtime's tests share: the one way they wait for a condition, and the
//! plain supervisor most of them run their children under. Each test binary uses some.
#![allow(dead_code)]

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

/// A `one_for_one` supervisor `id` over `children`: 3 restarts within 5 s, no backoff.
pub fn one_for_one(
    id: &str,
    children: Vec<axon_supervisors::ChildSpec>,
) -> axon_supervisors::SupervisorSpec {
    axon_supervisors::SupervisorSpec {
        id: id.into(),
        strategy: axon_supervisors::Strategy::OneForOne,
        intensity: axon_supervisors::Intensity {
            max_restarts: 3,
            period: Duration::from_secs(5),
        },
        backoff: axon_supervisors::BackoffPolicy::none(),
        command_capacity: 4,
        children,
    }
}

/// The value of the counter `name` with exactly these `labels` in `registry` (0 when the
/// series does not exist yet).
pub fn counter(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .find(|m| {
            m.get_label().len() == labels.len()
                && labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
        })
        .map_or(0.0, |m| m.get_counter().get_value())
}
