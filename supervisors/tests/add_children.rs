//! Children added to a running supervisor (a driver grown while the node runs) are
//! supervised like the others: started at once, restarted after a failure, kept across
//! a restart of their supervisor; an addition that cannot be kept (a taken id, no room
//! left in the stop bound, a child that does not start) changes nothing.

mod common;

use axon_supervisors::*;
use common::{one_for_one, wait_until};
use std::sync::{mpsc, Arc};
use std::time::Duration;

struct Echo;

impl Worker for Echo {
    type Request = u32;
    type Response = u32;
    fn handle(&mut self, r: u32, _: &mut WorkerContext) -> Result<u32, WorkerError> {
        Ok(r + 1)
    }
}

fn spec(id: &str, starts: bool) -> WorkerSpec<impl Fn() -> Result<Echo, String>> {
    WorkerSpec {
        id: id.into(),
        restart: RestartType::Permanent,
        shutdown: Shutdown::Timeout(Duration::from_secs(1)),
        mailbox_capacity: 8,
        factory: move || {
            if starts {
                Ok(Echo)
            } else {
                Err("it will not start".to_owned())
            }
        },
    }
}

/// A build that makes worker `id` and hands its reference back through `tx`.
fn build(id: &'static str, starts: bool, tx: mpsc::Sender<WorkerRef<Echo>>) -> BuildChildren {
    Box::new(move |env: &Env| {
        let (child, r) = worker(env, spec(id, starts));
        tx.send(r).unwrap();
        vec![child]
    })
}

/// A tree `root` → `drivers` (no children yet) with room in its stop bound for `n`
/// children like [`spec`]'s.
async fn empty_drivers_with_room_for(n: u32) -> Root {
    let registry = prometheus::Registry::new();
    let env = Env::new(&registry, SystemClock::shared(), 1).unwrap();
    let room = n * (Duration::from_secs(1) + env.bounds.kill_wait);
    let drivers = supervisor_with_room(
        &env,
        one_for_one("drivers", vec![]),
        RestartType::Permanent,
        room,
    );
    start_root(&env, one_for_one("root", vec![drivers]))
        .await
        .unwrap()
}

fn ids(node: &Arc<TreeNode>) -> Vec<String> {
    node.children().iter().map(|c| c.id.clone()).collect()
}

#[test]
fn children_added_to_a_running_supervisor_are_supervised_like_the_others() {
    actix::System::new().block_on(async {
        let registry = prometheus::Registry::new();
        let env = Env::new(&registry, SystemClock::shared(), 1).unwrap();
        let (first, _) = worker(&env, spec("first", true));
        // Room for one more child's stop: its shutdown timeout and the wait for its kill.
        let room = Duration::from_secs(1) + env.bounds.kill_wait;
        let drivers = supervisor_with_room(
            &env,
            one_for_one("drivers", vec![first]),
            RestartType::Permanent,
            room,
        );
        assert_eq!(
            drivers.shutdown,
            Shutdown::Timeout(2 * room),
            "the room is part of the supervisor's stop bound"
        );
        let root = start_root(&env, one_for_one("root", vec![drivers]))
            .await
            .unwrap();
        let (sup, _) = root.node.find_with_parent("first").unwrap();
        let opts = CallOptions {
            deadline: Duration::from_secs(5),
            correlation_id: None,
        };
        let deadline = Duration::from_secs(10);

        // Asked from another thread, as an HTTP handler would: the children are built
        // on the supervisor's.
        let (tx, rx) = mpsc::channel();
        let tree = root.node.clone();
        let t = tx.clone();
        let asked = std::thread::spawn(move || {
            actix_rt::System::new().block_on(add_children(
                &tree,
                "drivers",
                build("grown", true, t),
                deadline,
            ))
        });
        wait_until("the addition is answered", || asked.is_finished()).await;
        asked.join().unwrap().unwrap();
        let grown = rx.recv().unwrap();
        assert_eq!(ids(&sup), ["first", "grown"]);
        assert_eq!(grown.node().status(), NodeStatus::Running);
        assert_eq!(grown.call(1, &opts).await.unwrap(), 2);

        // A taken id, and no room left: refused, nothing changes.
        let again = add_children(
            &root.node,
            "drivers",
            build("grown", true, tx.clone()),
            deadline,
        );
        assert!(matches!(again.await, Err(AddError::Taken { child, .. }) if child == "grown"));
        let more = add_children(
            &root.node,
            "drivers",
            build("more", true, tx.clone()),
            deadline,
        );
        match more.await {
            Err(AddError::NoRoom { needed, left, .. }) => {
                assert_eq!((needed, left), (room, Duration::ZERO))
            }
            other => panic!("expected no room, got {other:?}"),
        }
        let unknown = add_children(&root.node, "first", build("x", true, tx.clone()), deadline);
        assert!(matches!(unknown.await, Err(AddError::UnknownSupervisor(s)) if s == "first"));
        assert_eq!(ids(&sup), ["first", "grown"]);

        // It fails and is restarted by its supervisor, like any child.
        env.faults.inject("grown", Fault::Error, Some(1));
        assert!(grown.call(1, &opts).await.is_err());
        wait_until("the grown child is back", || {
            grown.node().status() == NodeStatus::Running && grown.node().restarts_total() == 1
        })
        .await;
        assert_eq!(grown.call(2, &opts).await.unwrap(), 3);

        // Its supervisor restarted: it comes back with it.
        restart_actor(&root.node, "drivers", deadline)
            .await
            .unwrap();
        assert_eq!(ids(&sup), ["first", "grown"]);
        wait_until("the grown child runs again", || {
            grown.node().status() == NodeStatus::Running
        })
        .await;
        assert_eq!(grown.call(3, &opts).await.unwrap(), 4);
        root.stop(StopLevel::Graceful);
    });
}

#[test]
fn a_child_that_does_not_start_is_not_added() {
    actix::System::new().block_on(async {
        // Room for exactly two children.
        let root = empty_drivers_with_room_for(2).await;
        let (tx, rx) = mpsc::channel();
        let deadline = Duration::from_secs(10);
        let two: BuildChildren = Box::new(move |env: &Env| {
            let (a, ra) = worker(env, spec("starts", true));
            let (b, rb) = worker(env, spec("refuses", false));
            tx.send((ra, rb)).unwrap();
            vec![a, b]
        });
        match add_children(&root.node, "drivers", two, deadline).await {
            Err(AddError::Failed { child, cause }) => {
                assert_eq!(child, "refuses");
                assert_eq!(cause, StartError::Refused("it will not start".into()));
            }
            other => panic!("expected a failed start, got {other:?}"),
        }
        let (started, _) = rx.recv().unwrap();
        // The one that started was stopped again, and neither is in the tree.
        assert_eq!(started.node().status(), NodeStatus::Stopped);
        let drivers = root.node.children()[0].clone();
        assert!(drivers.children().is_empty());
        // Their room was given back: the same two can be added once both start.
        let (tx, rx) = mpsc::channel();
        let both: BuildChildren = Box::new(move |env: &Env| {
            let (a, ra) = worker(env, spec("starts", true));
            let (b, rb) = worker(env, spec("refuses", true));
            tx.send((ra, rb)).unwrap();
            vec![a, b]
        });
        add_children(&root.node, "drivers", both, deadline)
            .await
            .unwrap();
        assert_eq!(ids(&drivers), ["starts", "refuses"]);
        let (a, b) = rx.recv().unwrap();
        assert_eq!(a.node().status(), NodeStatus::Running);
        assert_eq!(b.node().status(), NodeStatus::Running);
        root.stop(StopLevel::Graceful);
    });
}

#[test]
fn an_addition_whose_caller_gave_up_is_not_made_or_is_taken_back() {
    actix::System::new().block_on(async {
        // Room for exactly two children.
        let root = empty_drivers_with_room_for(2).await;
        let drivers = root.node.children()[0].clone();
        let long = Duration::from_secs(10);

        // Given up on while its child starts (on a thread of its own, held until both
        // callers below have gone): started, then taken back with its room.
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        let slow: BuildChildren = Box::new(move |env: &Env| {
            let (child, _) = worker_on_own_thread(
                env,
                WorkerSpec {
                    id: "slow".into(),
                    restart: RestartType::Permanent,
                    shutdown: Shutdown::Timeout(Duration::from_secs(1)),
                    mailbox_capacity: 8,
                    factory: move || {
                        let _ = release_rx.lock().unwrap().recv();
                        Ok(Echo)
                    },
                },
            );
            vec![child]
        });
        let slow = add_children(&root.node, "drivers", slow, Duration::from_millis(300));
        // Queued behind it, and given up on before the supervisor reaches it: never built.
        let (tx, early) = mpsc::channel();
        let queued = add_children(
            &root.node,
            "drivers",
            build("early", true, tx),
            Duration::from_millis(100),
        );
        let (slow, queued) = futures::join!(slow, queued);
        assert!(matches!(slow, Err(AddError::Timeout(..))), "{slow:?}");
        assert!(matches!(queued, Err(AddError::Timeout(..))), "{queued:?}");
        release_tx.send(()).unwrap();
        // Handled after both, in order: it fits only if the slow one's room came back.
        let (tx, a) = mpsc::channel();
        let (tx2, b) = mpsc::channel();
        add_children(&root.node, "drivers", build("a", true, tx), long)
            .await
            .unwrap();
        add_children(&root.node, "drivers", build("b", true, tx2), long)
            .await
            .unwrap();
        assert!(
            early.try_recv().is_err(),
            "an addition nobody waits for was built"
        );
        assert_eq!(ids(&drivers), ["a", "b"]);
        assert_eq!(a.recv().unwrap().node().status(), NodeStatus::Running);
        assert_eq!(b.recv().unwrap().node().status(), NodeStatus::Running);
        root.stop(StopLevel::Graceful);
    });
}
