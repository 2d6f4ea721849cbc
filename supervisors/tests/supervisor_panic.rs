//! A panic inside a supervisor is a failure of that supervisor: it stops its children in
//! order, each within its shutdown bound, before it exits as failed; the tree shows them
//! stopped, not running.

use axon_supervisors::supervisor::{ChildControl, ChildSpec, Running};
mod common;

use axon_supervisors::*;
use common::one_for_one;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

type Log = Arc<Mutex<Vec<String>>>;

/// A worker that writes its id to the log when it stops.
struct Probe {
    id: String,
    log: Log,
}

impl Worker for Probe {
    type Request = ();
    type Response = ();
    fn handle(&mut self, _: (), _: &mut WorkerContext) -> Result<(), WorkerError> {
        Ok(())
    }
    fn stopped(&mut self) {
        self.log.lock().unwrap().push(self.id.clone());
    }
}

/// A child whose stop handle panics: asking it to stop is where the supervisor panics.
struct Bomb {
    _exit: tokio::sync::oneshot::Sender<Exit>,
}

impl ChildControl for Bomb {
    fn stop(&self, _: StopLevel) {
        panic!("the stop handle is broken");
    }
}

fn bomb() -> ChildSpec {
    let node = TreeNode::new(
        "bomb",
        ChildKind::Worker,
        None,
        Some(RestartType::Permanent),
        None,
    );
    ChildSpec {
        id: "bomb".into(),
        restart: RestartType::Permanent,
        shutdown: Shutdown::Timeout(Duration::from_secs(1)),
        kind: ChildKind::Worker,
        node,
        start: std::rc::Rc::new(|| {
            Box::pin(async {
                let (tx, rx) = tokio::sync::oneshot::channel();
                Ok(Running {
                    control: Box::new(Bomb { _exit: tx }),
                    exit: rx,
                })
            })
        }),
        isolation: None,
    }
}

#[test]
fn a_panicking_supervisor_stops_its_children_in_order() {
    actix::System::new().block_on(async {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let env = Env::new(&prometheus::Registry::new(), Arc::new(clock), 1).unwrap();
        let log: Log = Arc::default();
        let probe = |id: &str| {
            let (id, log) = (id.to_owned(), log.clone());
            worker(
                &env,
                WorkerSpec {
                    id: id.clone(),
                    restart: RestartType::Permanent,
                    shutdown: Shutdown::Timeout(Duration::from_secs(1)),
                    mailbox_capacity: 4,
                    factory: move || {
                        Ok(Probe {
                            id: id.clone(),
                            log: log.clone(),
                        })
                    },
                },
            )
        };
        let (a, a_ref) = probe("a");
        let (c, c_ref) = probe("c");
        let mut root = start_root(&env, one_for_one("sup", vec![a, bomb(), c]))
            .await
            .unwrap();
        // An operator restart of the bomb makes the supervisor ask it to stop: it panics.
        let answer = supervisor::request_restart(&root.node, "bomb").unwrap();
        let exit = (&mut root.exit).await.unwrap();
        // The restart is never answered: the supervisor that took it failed.
        assert!(answer.await.is_err());
        assert!(
            matches!(exit, Exit::Panicked(ref m) if m.contains("stop handle")),
            "{exit:?}"
        );
        // Its other children were stopped last started first, and awaited.
        assert_eq!(*log.lock().unwrap(), vec!["c".to_owned(), "a".to_owned()]);
        assert_eq!(a_ref.node().status(), NodeStatus::Stopped);
        assert_eq!(c_ref.node().status(), NodeStatus::Stopped);
        assert_eq!(root.node.status(), NodeStatus::Failed);
    });
}

/// A worker that takes a while to stop (on its own thread), then writes its id to the log.
struct SlowToStop {
    log: Log,
}

impl Worker for SlowToStop {
    type Request = ();
    type Response = ();
    fn handle(&mut self, _: (), _: &mut WorkerContext) -> Result<(), WorkerError> {
        Ok(())
    }
    fn stopped(&mut self) {
        std::thread::sleep(Duration::from_millis(200));
        self.log.lock().unwrap().push("a".into());
    }
}

/// A child whose every start fails.
fn broken() -> ChildSpec {
    let node = TreeNode::new(
        "broken",
        ChildKind::Worker,
        None,
        Some(RestartType::Permanent),
        None,
    );
    ChildSpec {
        id: "broken".into(),
        restart: RestartType::Permanent,
        shutdown: Shutdown::Timeout(Duration::from_secs(1)),
        kind: ChildKind::Worker,
        node,
        start: std::rc::Rc::new(|| {
            Box::pin(async { Err(StartError::Refused("cannot start".into())) })
        }),
        isolation: None,
    }
}

#[test]
fn a_supervisor_that_panics_while_starting_reports_it_only_once_its_children_are_stopped() {
    actix::System::new().block_on(async {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let env = Env::new(&prometheus::Registry::new(), Arc::new(clock), 1).unwrap();
        let log: Log = Arc::default();
        let l2 = log.clone();
        let (a, a_ref) = worker_on_own_thread(
            &env,
            WorkerSpec {
                id: "a".into(),
                restart: RestartType::Permanent,
                shutdown: Shutdown::Timeout(Duration::from_secs(1)),
                mailbox_capacity: 4,
                factory: move || Ok(SlowToStop { log: l2.clone() }),
            },
        );
        // a (slow to stop) and the bomb start; broken does not, so the start is undone: stopping the
        // bomb panics, in the middle of the start.
        let started = start_root(&env, one_for_one("sup", vec![a, bomb(), broken()])).await;
        let Err(e) = started else {
            panic!("a start with a child that cannot start succeeded");
        };
        assert!(
            matches!(e, StartError::Panicked(ref m) if m.contains("stop handle")),
            "{e:?}"
        );
        // By the time the failure is reported, what had started is stopped.
        assert_eq!(*log.lock().unwrap(), vec!["a".to_owned()]);
        assert_eq!(a_ref.node().status(), NodeStatus::Stopped);
    });
}
