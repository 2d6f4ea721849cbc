//! Group commit: requests that queue up while a batching worker is busy are handed to it
//! together; a batch that fails fails every caller in it; workers can run on their own
//! thread; a panic in a batching hook is a failure. And one operator-restart rule: a
//! temporary child whose restart fails is not restarted.

mod common;

use axon_supervisors::*;
use common::{one_for_one, wait_until};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

struct Batcher {
    batches: Arc<Mutex<Vec<usize>>>,
    thread: Arc<Mutex<Option<std::thread::ThreadId>>>,
    wait: Duration,
}

impl Worker for Batcher {
    type Request = u32;
    type Response = u32;
    fn handle(&mut self, r: u32, _: &mut WorkerContext) -> Result<u32, WorkerError> {
        Ok(r)
    }
    fn batch_limit(&self) -> Option<usize> {
        Some(8)
    }
    fn batch_wait(&self) -> Duration {
        self.wait
    }
    fn handle_batch(
        &mut self,
        requests: Vec<u32>,
        _: &mut WorkerContext,
    ) -> Result<Vec<Result<u32, String>>, WorkerError> {
        *self.thread.lock().unwrap() = Some(std::thread::current().id());
        self.batches.lock().unwrap().push(requests.len());
        if requests.contains(&666) {
            return Err(WorkerError::Fatal("the disk is gone".into()));
        }
        Ok(requests
            .into_iter()
            .map(|r| {
                if r == 13 {
                    Err("unlucky".into())
                } else {
                    Ok(r * 10)
                }
            })
            .collect())
    }
}

type Seen<T> = Arc<Mutex<T>>;

/// A batcher that records its batches (and its thread) and waits `wait` for a batch.
fn batcher_spec(
    batches: Seen<Vec<usize>>,
    thread: Seen<Option<std::thread::ThreadId>>,
    wait: Duration,
) -> WorkerSpec<impl Fn() -> Result<Batcher, String> + Send + Clone + 'static> {
    WorkerSpec {
        id: "batcher".into(),
        restart: RestartType::Permanent,
        shutdown: Shutdown::Timeout(Duration::from_secs(1)),
        mailbox_capacity: 64,
        factory: move || {
            Ok(Batcher {
                batches: batches.clone(),
                thread: thread.clone(),
                wait,
            })
        },
    }
}

#[test]
fn queued_requests_commit_together_on_the_workers_own_thread() {
    actix::System::new().block_on(async {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let env = Env::new(&prometheus::Registry::new(), Arc::new(clock.clone()), 1).unwrap();
        let batches: Arc<Mutex<Vec<usize>>> = Arc::default();
        let thread: Arc<Mutex<Option<std::thread::ThreadId>>> = Arc::default();
        let (b2, t2) = (batches.clone(), thread.clone());
        let (child, w) = worker_on_own_thread(&env, batcher_spec(b2, t2, Duration::ZERO));
        let mut root = start_root(&env, one_for_one("root", vec![child]))
            .await
            .unwrap();
        let opts = CallOptions {
            deadline: Duration::from_secs(5),
            correlation_id: None,
        };
        // Hold the worker on one request so the next twenty queue up.
        env.faults
            .inject("batcher", Fault::Delay(Duration::from_secs(1)), Some(1));
        let held = actix::spawn({
            let w = w.clone();
            let opts = opts.clone();
            async move { w.call(1, &opts).await }
        });
        wait_until("the worker holds the first request", || {
            clock.sleepers() > 0
        })
        .await;
        let queued: Vec<_> = (0..20u32)
            .map(|i| {
                let w = w.clone();
                let opts = opts.clone();
                actix::spawn(async move { w.call(100 + i, &opts).await })
            })
            .collect();
        wait_until("twenty requests queue", || {
            w.node().mailbox.as_ref().unwrap().depth() >= 20
        })
        .await;
        clock.advance(Duration::from_secs(1));
        assert_eq!(held.await.unwrap(), Ok(1));
        for (i, q) in queued.into_iter().enumerate() {
            assert_eq!(q.await.unwrap(), Ok((100 + i as u32) * 10));
        }
        // Twenty queued requests, at most eight at a time: 8 + 8 + 4.
        assert_eq!(*batches.lock().unwrap(), vec![8, 8, 4]);
        assert_ne!(*thread.lock().unwrap(), Some(std::thread::current().id()));

        // A rejection answers one request; a fatal error fails the batch and the worker.
        assert!(matches!(
            w.call(13, &opts).await,
            Err(CallError::Rejected { .. })
        ));
        assert!(matches!(
            w.call(666, &opts).await,
            Err(CallError::Failed { .. })
        ));
        wait_until("the batcher restarted", || {
            w.node().restarts_total() > 0 && w.node().status() == NodeStatus::Running
        })
        .await;
        assert_eq!(w.call(2, &opts).await, Ok(20));
        root.stop(StopLevel::Graceful);
        assert_eq!((&mut root.exit).await.unwrap(), Exit::Shutdown);
    });
}

#[test]
fn a_batch_waits_for_more_requests_up_to_its_wait_or_until_it_is_full() {
    actix::System::new().block_on(async {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let env = Env::new(&prometheus::Registry::new(), Arc::new(clock.clone()), 1).unwrap();
        let batches: Arc<Mutex<Vec<usize>>> = Arc::default();
        let b2 = batches.clone();
        let (child, w) = worker(
            &env,
            batcher_spec(b2, Arc::default(), Duration::from_millis(5)),
        );
        let mut root = start_root(&env, one_for_one("root", vec![child]))
            .await
            .unwrap();
        let opts = CallOptions {
            deadline: Duration::from_secs(60),
            correlation_id: None,
        };
        let call = |i: u32| {
            let (w, opts) = (w.clone(), opts.clone());
            actix::spawn(async move { w.call(i, &opts).await })
        };
        // Three requests wait for the batch wait, on the node's clock.
        let first: Vec<_> = (0..3).map(call).collect();
        // The batch waits on the node's clock, which has not moved: nothing is handed
        // over while the wait is pending.
        wait_until("the batch waits", || clock.sleepers() > 0).await;
        assert!(
            batches.lock().unwrap().is_empty(),
            "handed over before the wait"
        );
        clock.advance(Duration::from_millis(5));
        for (i, c) in first.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), Ok(i as u32 * 10));
        }
        assert_eq!(*batches.lock().unwrap(), vec![3]);
        // A full batch does not wait.
        let full: Vec<_> = (0..8).map(call).collect();
        for (i, c) in full.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), Ok(i as u32 * 10));
        }
        assert_eq!(*batches.lock().unwrap(), vec![3, 8]);
        root.stop(StopLevel::Graceful);
        assert_eq!((&mut root.exit).await.unwrap(), Exit::Shutdown);
    });
}

/// A batching worker whose `batch_limit` (or `batch_wait`) panics.
struct Fragile {
    hook: &'static str,
}

impl Worker for Fragile {
    type Request = u32;
    type Response = u32;
    fn handle(&mut self, r: u32, _: &mut WorkerContext) -> Result<u32, WorkerError> {
        Ok(r)
    }
    fn batch_limit(&self) -> Option<usize> {
        assert_ne!(self.hook, "batch_limit", "the limit is broken");
        Some(8)
    }
    fn batch_wait(&self) -> Duration {
        assert_ne!(self.hook, "batch_wait", "the wait is broken");
        Duration::ZERO
    }
}

#[test]
fn a_panic_in_a_batching_hook_is_a_failure_not_a_kill() {
    for hook in ["batch_limit", "batch_wait"] {
        actix::System::new().block_on(async move {
            let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
            let env = Env::new(&prometheus::Registry::new(), Arc::new(clock), 1).unwrap();
            let (child, w) = worker(
                &env,
                WorkerSpec {
                    id: "fragile".into(),
                    restart: RestartType::Permanent,
                    shutdown: Shutdown::Timeout(Duration::from_secs(1)),
                    mailbox_capacity: 8,
                    factory: move || Ok(Fragile { hook }),
                },
            );
            let mut root = start_root(&env, one_for_one("root", vec![child]))
                .await
                .unwrap();
            let opts = CallOptions {
                deadline: Duration::from_secs(5),
                correlation_id: None,
            };
            let answer = w.call(1, &opts).await;
            let Err(CallError::Failed { reason, .. }) = answer else {
                panic!("{hook}: {answer:?}");
            };
            assert!(reason.contains(&format!("in {hook}()")), "{hook}: {reason}");
            wait_until(&format!("{hook}: a restart"), || {
                w.node().restarts_total() > 0
            })
            .await;
            let failure = w.node().snapshot(&env.clock).last_failure.unwrap();
            assert!(failure.reason.contains("panicked"), "{hook}: {failure:?}");
            root.stop(StopLevel::Graceful);
            (&mut root.exit).await.unwrap();
        });
    }
}

struct Plain;

impl Worker for Plain {
    type Request = u32;
    type Response = u32;
    fn handle(&mut self, r: u32, _: &mut WorkerContext) -> Result<u32, WorkerError> {
        Ok(r)
    }
}

#[test]
fn a_temporary_child_whose_operator_restart_fails_is_not_restarted() {
    actix::System::new().block_on(async {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let env = Env::new(&prometheus::Registry::new(), Arc::new(clock), 1).unwrap();
        let starts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let s2 = starts.clone();
        let (child, w) = worker(
            &env,
            WorkerSpec {
                id: "t".into(),
                restart: RestartType::Temporary,
                shutdown: Shutdown::Timeout(Duration::from_secs(1)),
                mailbox_capacity: 8,
                // The second start fails; any later one would succeed.
                factory: move || match s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                    1 => Err("the device is gone".to_owned()),
                    _ => Ok(Plain),
                },
            },
        );
        let mut root = start_root(&env, one_for_one("root", vec![child]))
            .await
            .unwrap();
        let node = root.node.clone();
        let failed = supervisor::restart_actor(&node, "t", Duration::from_secs(5)).await;
        assert!(
            matches!(
                &failed,
                Err(RestartError::Failed {
                    cause: StartError::Refused(_),
                    ..
                })
            ),
            "{failed:?}"
        );
        // The supervisor has moved on: the child is gone, not started again.
        let again = supervisor::restart_actor(&node, "t", Duration::from_secs(5)).await;
        assert_eq!(again, Err(RestartError::UnknownActor("t".into())));
        assert_eq!(starts.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(node.children().iter().all(|c| c.id != "t"));
        assert_eq!(w.node().status(), NodeStatus::Failed);
        root.stop(StopLevel::Graceful);
        (&mut root.exit).await.unwrap();
    });
}

#[test]
fn a_graceful_stop_answers_the_batch_in_progress() {
    actix::System::new().block_on(async {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let env = Env::new(&prometheus::Registry::new(), Arc::new(clock.clone()), 1).unwrap();
        let batches: Arc<Mutex<Vec<usize>>> = Arc::default();
        let (child, w) = worker(
            &env,
            batcher_spec(batches.clone(), Arc::default(), Duration::from_secs(1)),
        );
        let mut root = start_root(&env, one_for_one("root", vec![child]))
            .await
            .unwrap();
        let opts = CallOptions {
            deadline: Duration::from_secs(30),
            correlation_id: None,
        };
        // Three requests wait for the batch wait (on the manual clock, never advanced).
        let calls: Vec<_> = (0..3u32)
            .map(|i| {
                let (w, o) = (w.clone(), opts.clone());
                actix::spawn(async move { w.call(i, &o).await })
            })
            .collect();
        wait_until("the batch waits", || clock.sleepers() > 0).await;
        root.stop(StopLevel::Graceful);
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), Ok(i as u32 * 10), "request {i}");
        }
        assert_eq!(*batches.lock().unwrap(), vec![3]);
        assert_eq!((&mut root.exit).await.unwrap(), Exit::Shutdown);
    });
}
