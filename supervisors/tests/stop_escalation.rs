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

/// Blocks its own thread in its first request until the test drops the sender.
struct Blocked {
    release: std::sync::Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>,
    entered: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl Worker for Blocked {
    type Request = ();
    type Response = ();
    fn handle(&mut self, _: (), _: &mut WorkerContext) -> Result<(), WorkerError> {
        self.entered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = self.release.lock().unwrap().recv();
        Ok(())
    }
}

#[test]
fn a_killed_supervisor_gets_the_time_to_kill_its_children_one_after_the_other() {
    actix::System::new().block_on(async {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let registry = prometheus::Registry::new();
        let env = Env::new(&registry, Arc::new(clock.clone()), 1).unwrap();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
        let entered = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut children = vec![];
        let mut refs = vec![];
        for id in ["w1", "w2"] {
            let rx = release_rx.clone();
            let entered = entered.clone();
            let (child, w) = worker_on_own_thread(
                &env,
                WorkerSpec {
                    id: id.into(),
                    restart: RestartType::Permanent,
                    shutdown: Shutdown::Timeout(Duration::from_secs(1)),
                    mailbox_capacity: 4,
                    factory: move || {
                        Ok(Blocked {
                            release: rx.clone(),
                            entered: entered.clone(),
                        })
                    },
                },
            );
            children.push(child);
            refs.push(w);
        }
        let inner = supervisor(&env, one_for_one("inner", children), RestartType::Permanent);
        let mut root = start_root(&env, one_for_one("root", vec![inner]))
            .await
            .unwrap();
        let opts = CallOptions {
            deadline: Duration::from_secs(60),
            correlation_id: None,
        };
        // Both workers block their threads: no kill reaches them.
        let calls: Vec<_> = refs
            .iter()
            .map(|w| {
                let (w, o) = (w.clone(), opts.clone());
                actix::spawn(async move { w.call((), &o).await })
            })
            .collect();
        // Both have taken their request (one waits on the channel, the other for the
        // lock around it): both threads are blocked where no kill reaches them.
        wait_until("both workers block", || {
            entered.load(std::sync::atomic::Ordering::SeqCst) == 2
        })
        .await;
        root.stop(StopLevel::Kill);
        // Time moves a second at a time while anyone waits on the clock: inner kills w2,
        // waits its bound, abandons it, then does the same with w1. The root waits for all
        // of that, not for one worker's bound.
        let mut exit = None;
        wait_until("the tree stops", || {
            if clock.sleepers() > 0 {
                clock.advance(Duration::from_secs(1));
            }
            exit = root.exit.try_recv().ok();
            exit.is_some()
        })
        .await;
        let abandoned = |sup: &str, child: &str| {
            counter(
                &registry,
                "axon_supervisor_abandoned_total",
                &[("supervisor", sup), ("child", child)],
            )
        };
        assert_eq!(abandoned("inner", "w1") + abandoned("inner", "w2"), 2.0);
        assert_eq!(
            abandoned("root", "inner"),
            0.0,
            "the root gave up on inner while it was still killing its children"
        );
        drop(release_tx);
        for c in calls {
            let _ = c.await;
        }
    });
}

#[test]
fn a_kill_reaches_a_child_that_may_take_for_ever_to_stop_and_is_bounded() {
    actix::System::new().block_on(async {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let registry = prometheus::Registry::new();
        let env = Env::new(&registry, Arc::new(clock.clone()), 1).unwrap();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release = Arc::new(std::sync::Mutex::new(release_rx));
        let entered = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let e2 = entered.clone();
        let (child, w) = worker_on_own_thread(
            &env,
            WorkerSpec {
                id: "patient".into(),
                restart: RestartType::Permanent,
                // A graceful stop waits as long as the child takes.
                shutdown: Shutdown::Infinity,
                mailbox_capacity: 4,
                factory: move || {
                    Ok(Blocked {
                        release: release.clone(),
                        entered: e2.clone(),
                    })
                },
            },
        );
        let mut root = start_root(&env, one_for_one("root", vec![child]))
            .await
            .unwrap();
        let call = actix::spawn(async move {
            let opts = CallOptions {
                deadline: Duration::from_secs(60),
                correlation_id: None,
            };
            w.call((), &opts).await
        });
        wait_until("the worker blocks", || {
            entered.load(std::sync::atomic::Ordering::SeqCst) == 1
        })
        .await;
        let node = root.node.children()[0].clone();
        root.stop(StopLevel::Graceful);
        // The graceful stop waits on the child, with no bound; then a kill is asked.
        wait_until("the graceful stop waits on the child", || {
            node.status() == NodeStatus::Stopping
        })
        .await;
        root.stop(StopLevel::Kill);
        let mut exit = None;
        wait_until("the kill ends the wait for ever", || {
            if clock.sleepers() > 0 {
                clock.advance(Duration::from_secs(1));
            }
            exit = root.exit.try_recv().ok();
            exit.is_some()
        })
        .await;
        // The root was asked to shut down, and did, killing on the way.
        assert!(
            matches!(exit, Some(Exit::Shutdown | Exit::Killed)),
            "{exit:?}"
        );
        assert_eq!(
            counter(
                &registry,
                "axon_supervisor_abandoned_total",
                &[("supervisor", "root"), ("child", "patient")],
            ),
            1.0
        );
        drop(release_tx);
        let _ = call.await;
    });
}
