//! The mailbox bound is Axon's counter alone: a worker held busy takes exactly its
//! capacity of queued requests, and the next is `Overloaded` (HTTP 429) — never
//! `Unavailable` because actix's own queue filled first, whether the worker was just
//! started or has run for a while, on the arbiter or on a thread of its own.

mod common;

use axon_supervisors::*;
use common::{one_for_one, wait_until};
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

const CAPACITY: u64 = 100;

fn run(own_thread: bool) {
    actix::System::new().block_on(async move {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let env = Env::new(&prometheus::Registry::new(), Arc::new(clock.clone()), 1).unwrap();
        let spec = WorkerSpec {
            id: "echo".into(),
            restart: RestartType::Permanent,
            shutdown: Shutdown::Timeout(Duration::from_secs(1)),
            mailbox_capacity: CAPACITY,
            factory: || Ok(Echo),
        };
        let (child, w) = if own_thread {
            worker_on_own_thread(&env, spec)
        } else {
            worker(&env, spec)
        };
        let root = one_for_one("root", vec![child]);
        let mut root = start_root(&env, root).await.unwrap();
        let opts = CallOptions {
            deadline: Duration::from_secs(30),
            correlation_id: None,
        };
        // The moment it has started, the worker takes a whole mailbox of requests at
        // once: none meets a queue of actix's own that is smaller or not yet sized.
        let burst: Vec<_> = (0..CAPACITY as u32)
            .map(|i| {
                let (w, o) = (w.clone(), opts.clone());
                actix::spawn(async move { w.call(i, &o).await })
            })
            .collect();
        for (i, c) in burst.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), Ok(i as u32), "burst request {i}");
        }
        // Right after the start: the worker is held on one request...
        env.faults
            .inject("echo", Fault::Delay(Duration::from_secs(1)), Some(1));
        let held = {
            let (w, o) = (w.clone(), opts.clone());
            actix::spawn(async move { w.call(0, &o).await })
        };
        wait_until("the worker holds a request", || clock.sleepers() > 0).await;
        // ...and its mailbox filled to the bound.
        let mut calls = vec![held];
        for i in 1..=CAPACITY {
            let (w, o) = (w.clone(), opts.clone());
            calls.push(actix::spawn(async move { w.call(i as u32, &o).await }));
        }
        let depth = || w.node().mailbox.as_ref().unwrap().depth();
        wait_until("the mailbox fills to its bound", || depth() >= CAPACITY).await;
        // Full: the next request is refused as overloaded, at once.
        assert!(
            matches!(w.call(999, &opts).await, Err(CallError::Overloaded { .. })),
            "a full mailbox must read as overloaded"
        );
        clock.advance(Duration::from_secs(1));
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), Ok(i as u32), "request {i}");
        }
        root.stop(StopLevel::Graceful);
        assert_eq!((&mut root.exit).await.unwrap(), Exit::Shutdown);
    });
}

#[test]
fn a_full_mailbox_is_always_overloaded() {
    run(false);
}

#[test]
fn a_full_mailbox_on_its_own_thread_is_always_overloaded() {
    run(true);
}
