//! An isolated child (a driver) keeps its failures to itself: they never count against
//! its supervisor's restart intensity and never escalate, however many; past its own
//! intensity it is taken out of service (its `exceeded` hook is told why) and restarted
//! after its cool-down, while its sibling runs on untouched.

mod common;

use axon_supervisors::*;
use common::{counter, one_for_one, wait_until};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

struct Echo;

impl Worker for Echo {
    type Request = u32;
    type Response = u32;
    fn handle(&mut self, r: u32, _: &mut WorkerContext) -> Result<u32, WorkerError> {
        Ok(r)
    }
}

fn spec(id: &str) -> WorkerSpec<impl Fn() -> Result<Echo, String>> {
    WorkerSpec {
        id: id.into(),
        restart: RestartType::Permanent,
        shutdown: Shutdown::Timeout(Duration::from_secs(1)),
        mailbox_capacity: 8,
        factory: || Ok(Echo),
    }
}

#[test]
fn an_isolated_child_never_escalates_and_is_taken_out_of_service_past_its_own_intensity() {
    actix::System::new().block_on(async {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let registry = prometheus::Registry::new();
        let env = Env::new(&registry, Arc::new(clock.clone()), 1).unwrap();
        let (mut plugin, plugin_ref) = worker(&env, spec("plugin"));
        let (other, other_ref) = worker(&env, spec("other"));
        let told: Rc<RefCell<Vec<String>>> = Rc::default();
        let t = told.clone();
        plugin.isolation = Some(Isolation {
            intensity: Intensity {
                max_restarts: 2,
                period: Duration::from_secs(60),
            },
            cool_down: Duration::from_secs(30),
            exceeded: Rc::new(move |reason: &str| t.borrow_mut().push(reason.to_owned())),
        });
        // The supervisor allows no restart at all: any failure it counted would make it
        // give up.
        let mut sup = one_for_one("drivers", vec![plugin, other]);
        sup.intensity.max_restarts = 0;
        let mut root = start_root(&env, sup).await.unwrap();
        let opts = CallOptions {
            deadline: Duration::from_secs(5),
            correlation_id: None,
        };
        let running = |r: &WorkerRef<Echo>| r.node().status() == NodeStatus::Running;

        // Two failures within its own intensity: restarted at once (no backoff).
        for n in 1..=2u64 {
            env.faults.inject("plugin", Fault::Error, Some(1));
            assert!(plugin_ref.call(1, &opts).await.is_err());
            wait_until("the plugin is back", || {
                running(&plugin_ref) && plugin_ref.node().restarts_total() == n
            })
            .await;
        }
        assert!(told.borrow().is_empty());
        // The third is past it: out of service, restarted only after the cool-down.
        env.faults.inject("plugin", Fault::Panic, Some(1));
        assert!(plugin_ref.call(1, &opts).await.is_err());
        wait_until("the hook is told", || told.borrow().len() == 1).await;
        let reason = told.borrow()[0].clone();
        assert!(
            reason.contains("own restart intensity exceeded")
                && reason.contains("cool-down of 30s"),
            "{reason}"
        );
        assert_eq!(plugin_ref.node().status(), NodeStatus::Restarting);
        clock.advance(Duration::from_secs(29));
        assert_eq!(plugin_ref.node().status(), NodeStatus::Restarting);
        clock.advance(Duration::from_secs(1));
        wait_until("the plugin is back after its cool-down", || {
            running(&plugin_ref)
        })
        .await;
        assert_eq!(plugin_ref.call(7, &opts).await, Ok(7));
        // Its count starts again: two more failures are within it.
        env.faults.inject("plugin", Fault::Error, Some(1));
        assert!(plugin_ref.call(1, &opts).await.is_err());
        wait_until("the plugin is back", || {
            running(&plugin_ref) && plugin_ref.node().restarts_total() == 4
        })
        .await;
        assert_eq!(told.borrow().len(), 1);

        // Through all of it the supervisor never gave up, and the sibling never stopped.
        assert_eq!(root.node.status(), NodeStatus::Running);
        assert_eq!(other_ref.node().restarts_total(), 0);
        assert_eq!(other_ref.call(3, &opts).await, Ok(3));
        assert_eq!(
            counter(
                &registry,
                "axon_supervisor_escalations_total",
                &[("supervisor", "drivers")]
            ),
            0.0
        );
        assert_eq!(
            counter(
                &registry,
                "axon_supervisor_isolated_exceeded_total",
                &[("supervisor", "drivers"), ("child", "plugin")]
            ),
            1.0
        );
        root.stop(StopLevel::Graceful);
        assert_eq!((&mut root.exit).await.unwrap(), Exit::Shutdown);
    });
}
