//! Every start has a bound, taken from the tree's `Bounds`: a child whose start takes
//! longer fails to start, and the tree says why.

mod common;

use axon_supervisors::*;
use common::{one_for_one, wait_until};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Never;

impl Worker for Never {
    type Request = ();
    type Response = ();
    fn handle(&mut self, _: (), _: &mut WorkerContext) -> Result<(), WorkerError> {
        Ok(())
    }
}

#[test]
fn a_start_that_outlasts_the_configured_bound_is_a_start_failure() {
    actix::System::new().block_on(async {
        let mut env = Env::new(&prometheus::Registry::new(), SystemClock::shared(), 1).unwrap();
        env.bounds.start_timeout = Duration::from_millis(50);
        // The factory blocks its own thread until the test ends: far past the bound.
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let (child, w) = worker_on_own_thread(
            &env,
            WorkerSpec {
                id: "slow".into(),
                restart: RestartType::Permanent,
                shutdown: Shutdown::Timeout(Duration::from_secs(1)),
                mailbox_capacity: 4,
                factory: move || {
                    let _ = release_rx.lock().unwrap().recv();
                    Ok(Never)
                },
            },
        );
        let started = start_root(&env, one_for_one("root", vec![child])).await;
        let Err(e) = started else {
            panic!("a start past its bound was taken as a success");
        };
        assert_eq!(
            e,
            StartError::Child {
                supervisor: "root".into(),
                child: "slow".into(),
                cause: Box::new(StartError::TimedOut(Duration::from_millis(50))),
            }
        );
        assert_eq!(w.node().status(), NodeStatus::Failed);
        let why = w
            .node()
            .snapshot(&env.clock)
            .last_failure
            .expect("the tree says why");
        assert!(why.reason.contains("did not start within"), "{why:?}");
        drop(release_tx);
    });
}

#[test]
fn a_kill_during_a_restart_does_not_wait_for_the_start() {
    actix::System::new().block_on(async {
        let mut env = Env::new(&prometheus::Registry::new(), SystemClock::shared(), 1).unwrap();
        // Far longer than the test waits: only the kill may end the wait for the start.
        env.bounds.start_timeout = Duration::from_secs(120);
        let starts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let s2 = starts.clone();
        let (child, _w) = worker_on_own_thread(
            &env,
            WorkerSpec {
                id: "slow".into(),
                restart: RestartType::Permanent,
                shutdown: Shutdown::Timeout(Duration::from_secs(1)),
                mailbox_capacity: 4,
                factory: move || {
                    // The first start is quick; the next ones block until the test ends.
                    if s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                        let _ = release_rx.lock().unwrap().recv();
                    }
                    Ok(Never)
                },
            },
        );
        let mut root = start_root(&env, one_for_one("root", vec![child]))
            .await
            .unwrap();
        let node = root.node.clone();
        let restart = actix::spawn(async move {
            supervisor::restart_actor(&node, "slow", Duration::from_secs(120)).await
        });
        wait_until("the restart is under way", || {
            starts.load(std::sync::atomic::Ordering::SeqCst) == 2
        })
        .await;
        root.stop(StopLevel::Kill);
        let mut exit = None;
        wait_until(
            "the kill ends the tree without waiting for the start",
            || {
                exit = root.exit.try_recv().ok();
                exit.is_some()
            },
        )
        .await;
        assert_eq!(exit, Some(Exit::Killed));
        assert!(matches!(
            restart.await.unwrap(),
            Err(RestartError::Failed {
                cause: StartError::Interrupted,
                ..
            })
        ));
        drop(release_tx);
    });
}
