//! A request whose caller has gone (its deadline passed while the request waited in the
//! mailbox) is skipped and counted, never executed: on an actuation node it would be a
//! side effect nobody waits for. For plain workers and for batching workers.

mod common;

use axon_supervisors::*;
use common::{counter, one_for_one, wait_until};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Counts the requests it executes; batches when `batch` is set.
struct Counter {
    executed: Arc<AtomicU64>,
    batch: bool,
}

impl Worker for Counter {
    type Request = u32;
    type Response = u32;
    fn handle(&mut self, r: u32, _: &mut WorkerContext) -> Result<u32, WorkerError> {
        self.executed.fetch_add(1, Ordering::SeqCst);
        Ok(r)
    }
    fn batch_limit(&self) -> Option<usize> {
        self.batch.then_some(8)
    }
}

fn abandoned(registry: &prometheus::Registry) -> f64 {
    registry
        .gather()
        .iter()
        .find(|f| f.name() == "axon_actor_messages_total")
        .and_then(|f| {
            f.get_metric().iter().find(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "outcome" && l.value() == "abandoned")
            })
        })
        .map_or(0.0, |m| m.get_counter().get_value())
}

fn run(batch: bool) {
    actix::System::new().block_on(async move {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let registry = prometheus::Registry::new();
        let env = Env::new(&registry, Arc::new(clock.clone()), 1).unwrap();
        let executed: Arc<AtomicU64> = Arc::default();
        let e2 = executed.clone();
        let (child, w) = worker(
            &env,
            WorkerSpec {
                id: "counter".into(),
                restart: RestartType::Permanent,
                shutdown: Shutdown::Timeout(Duration::from_secs(1)),
                mailbox_capacity: 16,
                factory: move || {
                    Ok(Counter {
                        executed: e2.clone(),
                        batch,
                    })
                },
            },
        );
        let root = one_for_one("root", vec![child]);
        let mut root = start_root(&env, root).await.unwrap();
        let patient = CallOptions {
            deadline: Duration::from_secs(30),
            correlation_id: None,
        };
        // The first request holds the worker (on the manual clock)...
        env.faults
            .inject("counter", Fault::Delay(Duration::from_secs(1)), Some(1));
        let held = actix::spawn({
            let (w, o) = (w.clone(), patient.clone());
            async move { w.call(1, &o).await }
        });
        wait_until("the worker holds a request", || clock.sleepers() > 0).await;
        // ...while a caller with a short deadline gives up on its queued request.
        let hasty = CallOptions {
            deadline: Duration::from_millis(20),
            correlation_id: None,
        };
        assert!(matches!(
            w.call(2, &hasty).await,
            Err(CallError::Timeout { .. })
        ));
        clock.advance(Duration::from_secs(1));
        assert_eq!(held.await.unwrap(), Ok(1));
        // The next request is answered: the abandoned one was skipped before it.
        assert_eq!(w.call(3, &patient).await, Ok(3));
        assert_eq!(executed.load(Ordering::SeqCst), 2, "requests 1 and 3 only");
        assert_eq!(abandoned(&registry), 1.0);
        root.stop(StopLevel::Graceful);
        assert_eq!((&mut root.exit).await.unwrap(), Exit::Shutdown);
    });
}

#[test]
fn a_request_whose_caller_has_gone_is_skipped_and_counted() {
    run(false);
}

#[test]
fn a_batching_worker_skips_requests_whose_callers_have_gone() {
    run(true);
}

#[test]
fn a_kill_stops_a_worker_at_once_whatever_its_mailbox_holds() {
    actix::System::new().block_on(async move {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let registry = prometheus::Registry::new();
        let env = Env::new(&registry, Arc::new(clock.clone()), 1).unwrap();
        let executed: Arc<AtomicU64> = Arc::default();
        let e2 = executed.clone();
        let (child, w) = worker(
            &env,
            WorkerSpec {
                id: "counter".into(),
                restart: RestartType::Permanent,
                shutdown: Shutdown::Timeout(Duration::from_secs(1)),
                mailbox_capacity: 16,
                factory: move || {
                    Ok(Counter {
                        executed: e2.clone(),
                        batch: false,
                    })
                },
            },
        );
        let root = one_for_one("root", vec![child]);
        let mut root = start_root(&env, root).await.unwrap();
        let opts = CallOptions {
            deadline: Duration::from_secs(30),
            correlation_id: None,
        };
        env.faults
            .inject("counter", Fault::Delay(Duration::from_secs(1)), Some(1));
        let mut calls = vec![];
        for i in 0..6u32 {
            let (w, o) = (w.clone(), opts.clone());
            calls.push(actix::spawn(async move { w.call(i, &o).await }));
        }
        let depth = || w.node().mailbox.as_ref().unwrap().depth();
        wait_until("the worker holds one and five queue", || {
            clock.sleepers() > 0 && depth() >= 5
        })
        .await;
        root.stop(StopLevel::Kill);
        assert_eq!((&mut root.exit).await.unwrap(), Exit::Killed);
        for c in calls {
            assert!(c.await.unwrap().is_err());
        }
        assert_eq!(
            executed.load(Ordering::SeqCst),
            0,
            "nothing runs after a kill, queued or held"
        );
        // The one held and the five queued are counted as dropped, each once.
        let dropped = [("actor", "counter"), ("outcome", "dropped")];
        assert_eq!(
            counter(&registry, "axon_actor_messages_total", &dropped),
            6.0
        );
        assert_eq!(depth(), 0);
    });
}
