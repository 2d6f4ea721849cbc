//! A child that will not stop is abandoned within a bound, counted, and replaced on a
//! fresh thread; the abandoned incarnation, when it finally ends, can never touch its
//! successor (its late `stopped()` does not blank the new address).

mod common;

use axon_supervisors::*;
use common::{counter, one_for_one, wait_until};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Blocks its thread in `handle` until the test lets it go (when `stuck` holds a receiver).
struct Stuck {
    release: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
}

impl Worker for Stuck {
    type Request = u32;
    type Response = u32;
    fn handle(&mut self, r: u32, _: &mut WorkerContext) -> Result<u32, WorkerError> {
        if r == 0 {
            let rx = self.release.lock().unwrap().take();
            if let Some(rx) = rx {
                // A handler stuck in a blocking call: no stop request reaches it.
                let _ = rx.recv();
            }
        }
        Ok(r)
    }
}

/// One `Stuck` worker on a thread of its own, with a mailbox of `capacity`, under a root
/// on the manual clock; `tx` lets it go once it is stuck.
struct StuckTree {
    clock: ManualClock,
    registry: prometheus::Registry,
    env: Env,
    tx: mpsc::Sender<()>,
    release: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
    w: WorkerRef<Stuck>,
    root: Root,
    opts: CallOptions,
}

async fn stuck_tree(capacity: u64) -> StuckTree {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
    let registry = prometheus::Registry::new();
    let env = Env::new(&registry, Arc::new(clock.clone()), 1).unwrap();
    let (tx, rx) = mpsc::channel();
    let release = Arc::new(Mutex::new(Some(rx)));
    let r2 = release.clone();
    let (child, w) = worker_on_own_thread(
        &env,
        WorkerSpec {
            id: "stuck".into(),
            restart: RestartType::Permanent,
            shutdown: Shutdown::Timeout(Duration::from_secs(1)),
            mailbox_capacity: capacity,
            factory: move || {
                Ok(Stuck {
                    release: r2.clone(),
                })
            },
        },
    );
    let root = start_root(&env, one_for_one("root", vec![child]))
        .await
        .unwrap();
    let opts = CallOptions {
        deadline: Duration::from_secs(60),
        correlation_id: None,
    };
    StuckTree {
        clock,
        registry,
        env,
        tx,
        release,
        w,
        root,
        opts,
    }
}

#[test]
fn a_child_that_will_not_stop_is_abandoned_and_cannot_touch_its_successor() {
    actix::System::new().block_on(async {
        let StuckTree {
            clock,
            registry,
            env,
            tx,
            release,
            w,
            mut root,
            opts,
        } = stuck_tree(8).await;
        // The first incarnation gets stuck in its handler.
        let stuck_call = actix::spawn({
            let (w, o) = (w.clone(), opts.clone());
            async move { w.call(0, &o).await }
        });
        wait_until("the first incarnation is stuck", || {
            release.lock().unwrap().is_none()
        })
        .await;
        // Requests queue behind the stuck one, in the mailbox of the incarnation that is
        // about to be abandoned.
        let stale: Vec<_> = (0..5u32)
            .map(|i| {
                let (w, o) = (w.clone(), opts.clone());
                actix::spawn(async move { w.call(50 + i, &o).await })
            })
            .collect();
        let depth = || w.node().mailbox.as_ref().unwrap().depth();
        wait_until("five requests queue", || depth() >= 5).await;
        // An operator restart: ask, wait the shutdown timeout, kill, wait a bound, abandon.
        let node = root.node.clone();
        let restart = actix::spawn(async move {
            supervisor::restart_actor(&node, "stuck", Duration::from_secs(60)).await
        });
        // The clock moves only while the supervisor waits on it (the shutdown timeout,
        // then the kill bound).
        wait_until("the restart ends, past a child that will not stop", || {
            if clock.sleepers() > 0 {
                clock.advance(Duration::from_secs(1));
            }
            restart.is_finished()
        })
        .await;
        assert_eq!(restart.await.unwrap(), Ok(()));
        // The successor answers, on a thread of its own.
        assert_eq!(w.call(7, &opts).await, Ok(7));
        // Its mailbox is its own: held busy, it takes its whole capacity, whatever the
        // abandoned incarnation still holds queued.
        assert_eq!(depth(), 0);
        env.faults
            .inject("stuck", Fault::Delay(Duration::from_secs(1)), Some(1));
        let held = {
            let (w, o) = (w.clone(), opts.clone());
            actix::spawn(async move { w.call(200, &o).await })
        };
        wait_until("the successor holds a request", || clock.sleepers() > 0).await;
        let mut fill = vec![held];
        for i in 1..9u32 {
            let (w, o) = (w.clone(), opts.clone());
            fill.push(actix::spawn(async move { w.call(200 + i, &o).await }));
        }
        wait_until("the successor's mailbox holds eight", || depth() >= 8).await;
        clock.advance(Duration::from_secs(1));
        for (i, c) in fill.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), Ok(200 + i as u32), "fill {i}");
        }
        let abandoned = registry
            .gather()
            .iter()
            .find(|f| f.name() == "axon_supervisor_abandoned_total")
            .map(|f| f.get_metric()[0].get_counter().get_value());
        assert_eq!(abandoned, Some(1.0));
        // The abandoned incarnation ends at last: it does not blank its successor.
        tx.send(()).unwrap();
        let _ = stuck_call.await;
        // What it held queued is answered with an error, never executed by anyone, and
        // counted as dropped once: when its successor's count started.
        for c in stale {
            assert!(c.await.unwrap().is_err());
        }
        let dropped = [("actor", "stuck"), ("outcome", "dropped")];
        assert_eq!(
            counter(&registry, "axon_actor_messages_total", &dropped),
            5.0
        );
        for i in 0..50u32 {
            assert_eq!(
                w.call(100 + i, &opts).await,
                Ok(100 + i),
                "after the old one ended"
            );
        }
        assert_eq!(w.node().status(), NodeStatus::Running);
        root.stop(StopLevel::Graceful);
        let _ = (&mut root.exit).await;
    });
}

#[test]
fn an_abandoned_child_is_unavailable_at_once_not_a_mailbox_to_queue_into() {
    actix::System::new().block_on(async {
        let StuckTree {
            clock,
            registry,
            tx,
            release,
            w,
            mut root,
            opts,
            ..
        } = stuck_tree(2).await;
        let stuck_call = actix::spawn({
            let (w, o) = (w.clone(), opts.clone());
            async move { w.call(0, &o).await }
        });
        wait_until("the worker is stuck", || release.lock().unwrap().is_none()).await;
        let queued = {
            let (w, o) = (w.clone(), opts.clone());
            actix::spawn(async move { w.call(1, &o).await })
        };
        wait_until("one request queues", || {
            w.node().mailbox.as_ref().unwrap().depth() == 1
        })
        .await;
        // The tree is killed: the worker does not stop, and is abandoned past the bound.
        root.stop(StopLevel::Kill);
        let mut exit = None;
        wait_until("the tree gives up on the stuck worker", || {
            if clock.sleepers() > 0 {
                clock.advance(Duration::from_secs(1));
            }
            exit = root.exit.try_recv().ok();
            exit.is_some()
        })
        .await;
        assert_eq!(exit, Some(Exit::Killed));
        // Nobody queues into it any more: a call is refused at once as unavailable, and
        // what it held queued was counted as dropped when it was fenced off.
        assert!(matches!(
            w.call(2, &opts).await,
            Err(CallError::Unavailable { .. })
        ));
        assert_eq!(w.node().mailbox.as_ref().unwrap().depth(), 0);
        let dropped = [("actor", "stuck"), ("outcome", "dropped")];
        assert_eq!(
            counter(&registry, "axon_actor_messages_total", &dropped),
            1.0
        );
        tx.send(()).unwrap();
        let _ = stuck_call.await;
        assert!(queued.await.unwrap().is_err());
    });
}
