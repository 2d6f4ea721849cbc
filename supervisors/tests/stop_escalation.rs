//! A stop escalates from graceful to kill at every level: a `Kill` asked while a graceful
//! stop is under way passes down through a child supervisor to the child being stopped.

mod common;

use axon_supervisors::*;
use common::{counter, one_for_one, wait_until};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

struct Plain;

impl Worker for Plain {
    type Request = ();
    type Response = ();
    fn handle(&mut self, _: (), _: &mut WorkerContext) -> Result<(), WorkerError> {
        Ok(())
    }
}

#[test]
fn a_kill_after_a_graceful_stop_passes_down_to_the_child_being_stopped() {
    actix::System::new().block_on(async {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let registry = prometheus::Registry::new();
        let env = Env::new(&registry, Arc::new(clock.clone()), 1).unwrap();
        let (w, w_ref) = worker(
            &env,
            WorkerSpec {
                id: "w".into(),
                restart: RestartType::Permanent,
                // A graceful stop of this worker may take an hour (on the manual clock,
                // which this test never moves).
                shutdown: Shutdown::Timeout(Duration::from_secs(3600)),
                mailbox_capacity: 4,
                factory: || Ok(Plain),
            },
        );
        let inner = supervisor(&env, one_for_one("inner", vec![w]), RestartType::Permanent);
        let mut root = start_root(&env, one_for_one("root", vec![inner]))
            .await
            .unwrap();
        // The worker hangs in a request: a graceful stop cannot end it.
        env.faults.inject("w", Fault::Hang, Some(1));
        let hung = actix::spawn({
            let w = w_ref.clone();
            async move {
                let opts = CallOptions {
                    deadline: Duration::from_secs(60),
                    correlation_id: None,
                };
                w.call((), &opts).await
            }
        });
        wait_until("w hangs in its request", || !env.faults.is_armed("w")).await;
        root.stop(StopLevel::Graceful);
        wait_until("the stop reaches w", || {
            w_ref.node().status() == NodeStatus::Stopping
        })
        .await;
        // Now a kill: it must reach w through inner, without the clock moving.
        root.stop(StopLevel::Kill);
        let mut exit = None;
        wait_until("the kill passes down to the child being stopped", || {
            exit = root.exit.try_recv().ok();
            exit.is_some()
        })
        .await;
        let exit = exit.unwrap();
        assert!(matches!(exit, Exit::Killed | Exit::Shutdown), "{exit:?}");
        assert!(hung.await.unwrap().is_err());
        // The worker's stop is recorded as the kill it was, not as a graceful shutdown.
        let w_exits = |kind| {
            counter(
                &registry,
                "axon_supervisor_child_exits_total",
                &[("supervisor", "inner"), ("child", "w"), ("exit", kind)],
            )
        };
        assert_eq!((w_exits("killed"), w_exits("shutdown")), (1.0, 0.0));
    });
}
