//! Call deadlines on a coarse clock, shared by every caller in the process.
//!
//! A caller that has to wait for its answer leaves its waker and its due time in one of a
//! few shards; one thread wakes the callers whose time has passed, looking every [`TICK`]
//! while any call waits and sleeping otherwise. A call pays a lock on its shard to enter
//! and one to leave, and reads the kernel's coarse clock, where a runtime timer per call
//! costs an insert and a cancel in the timer wheel and a clock read for each.
//!
//! Precision: a deadline never passes early; it is seen late by at most one tick plus the
//! coarse clock's resolution (a few milliseconds), which is far inside any call deadline
//! a node is configured with.

use slab::Slab;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;
use std::time::Duration;

/// How often the deadline thread looks while calls wait.
pub const TICK: Duration = Duration::from_millis(2);
/// Ticks with no call waiting before the deadline thread sleeps until the next one.
const IDLE_TICKS: u32 = 500;
const SHARDS: usize = 16;

/// Nanoseconds on the kernel's coarse monotonic clock: read without touching the
/// hardware counter, at the resolution of the scheduler's tick.
#[cfg(target_os = "linux")]
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE always exists on
    // Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(not(target_os = "linux"))]
fn now_ns() -> u64 {
    static START: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);
    START.elapsed().as_nanos() as u64
}

/// How far the coarse clock may lag the true time: added to every due time, so that a
/// deadline never passes early.
fn resolution_ns() -> u64 {
    static RES: LazyLock<u64> = LazyLock::new(|| {
        #[cfg(target_os = "linux")]
        {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: as in `now_ns`.
            unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        }
        #[cfg(not(target_os = "linux"))]
        {
            0
        }
    });
    *RES
}

struct Waiting {
    due: u64,
    waker: Waker,
    /// Woken for its deadline; it leaves the shard itself when it is polled or dropped.
    woken: bool,
}

#[derive(Default)]
struct Shard {
    waiting: Slab<Waiting>,
    /// No entry that is not yet woken is due before this.
    earliest: u64,
}

struct Deadlines {
    shards: [Mutex<Shard>; SHARDS],
    /// Set while the deadline thread sleeps with no call waiting.
    parked: AtomicBool,
    thread: Thread,
}

static DEADLINES: LazyLock<Deadlines> = LazyLock::new(|| {
    let thread = std::thread::Builder::new()
        .name("axon-deadlines".into())
        .spawn(run)
        // Like an actix arbiter's own thread, a process that cannot start one thread
        // cannot run a node.
        .expect("starting the call-deadline thread")
        .thread()
        .clone();
    Deadlines {
        shards: std::array::from_fn(|_| {
            Mutex::new(Shard {
                waiting: Slab::new(),
                earliest: u64::MAX,
            })
        }),
        parked: AtomicBool::new(false),
        thread,
    }
});

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A shard holds plain data, consistent whatever panicked while it was held.
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    /// The shard this thread's callers use.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// The deadline thread: wakes every caller whose time has passed.
fn run() {
    let d = &*DEADLINES;
    let mut idle = 0u32;
    loop {
        let now = now_ns();
        let mut waiting = false;
        for shard in &d.shards {
            let mut s = lock(shard);
            waiting |= !s.waiting.is_empty();
            if s.earliest > now {
                continue;
            }
            let mut earliest = u64::MAX;
            for (_, w) in s.waiting.iter_mut() {
                if w.woken {
                    continue;
                }
                if w.due <= now {
                    w.woken = true;
                    w.waker.wake_by_ref();
                } else {
                    earliest = earliest.min(w.due);
                }
            }
            s.earliest = earliest;
        }
        if waiting {
            idle = 0;
        } else {
            idle += 1;
        }
        if idle >= IDLE_TICKS {
            // Sleep until a caller arrives: it unparks this thread after entering its
            // shard, and the check below runs after `parked` is set, so either that check
            // sees the caller or the caller sees `parked`.
            d.parked.store(true, Ordering::SeqCst);
            if d.shards.iter().all(|s| lock(s).waiting.is_empty()) {
                std::thread::park();
            }
            d.parked.store(false, Ordering::SeqCst);
            idle = 0;
            continue;
        }
        std::thread::sleep(TICK);
    }
}

/// The deadline passed before the answer came.
#[derive(Debug)]
pub struct Elapsed;

/// `inner`, given up at its deadline.
pub struct WithDeadline<F> {
    inner: F,
    due: u64,
    /// The shard and key of this caller's entry, while it has one.
    entry: Option<(usize, usize)>,
}

impl<F> WithDeadline<F> {
    pub fn new(inner: F, deadline: Duration) -> Self {
        let wait = u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX);
        Self {
            inner,
            due: now_ns()
                .saturating_add(wait)
                .saturating_add(resolution_ns()),
            entry: None,
        }
    }

    fn leave(&mut self) {
        if let Some((shard, key)) = self.entry.take() {
            let mut s = lock(&DEADLINES.shards[shard]);
            s.waiting.try_remove(key);
        }
    }

    fn wait(&mut self, waker: &Waker) {
        let d = &*DEADLINES;
        match self.entry {
            Some((shard, key)) => {
                let mut s = lock(&d.shards[shard]);
                if let Some(w) = s.waiting.get_mut(key) {
                    if !w.waker.will_wake(waker) {
                        w.waker = waker.clone();
                    }
                    w.woken = false;
                    s.earliest = s.earliest.min(self.due);
                }
            }
            None => {
                let shard = SHARD.with(|s| *s);
                let key = {
                    let mut s = lock(&d.shards[shard]);
                    s.earliest = s.earliest.min(self.due);
                    s.waiting.insert(Waiting {
                        due: self.due,
                        waker: waker.clone(),
                        woken: false,
                    })
                };
                self.entry = Some((shard, key));
                if d.parked.load(Ordering::SeqCst) {
                    d.thread.unpark();
                }
            }
        }
    }
}

impl<F: Future + Unpin> Future for WithDeadline<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(v) = Pin::new(&mut this.inner).poll(cx) {
            this.leave();
            return Poll::Ready(Ok(v));
        }
        if now_ns() >= this.due {
            this.leave();
            return Poll::Ready(Err(Elapsed));
        }
        this.wait(cx.waker());
        Poll::Pending
    }
}

impl<F> Drop for WithDeadline<F> {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_deadline_never_passes_early() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for ms in [0u64, 1, 5, 30] {
                let started = Instant::now();
                let r =
                    WithDeadline::new(futures::future::pending::<()>(), Duration::from_millis(ms))
                        .await;
                assert!(r.is_err());
                assert!(
                    started.elapsed() >= Duration::from_millis(ms),
                    "early for {ms} ms"
                );
            }
        });
    }

    /// Polls `f` once with a waker that does nothing.
    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let waker = futures::task::noop_waker();
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    fn is_waiting((shard, key): (usize, usize)) -> bool {
        lock(&DEADLINES.shards[shard]).waiting.contains(key)
    }

    #[test]
    fn a_caller_leaves_its_shard_when_answered_and_when_it_gives_up() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let mut answered = WithDeadline::new(rx, Duration::from_secs(60));
        assert!(poll_once(&mut answered).is_pending());
        let entry = answered.entry.expect("a waiting call has an entry");
        assert!(is_waiting(entry));
        tx.send(7).unwrap();
        assert!(matches!(poll_once(&mut answered), Poll::Ready(Ok(Ok(7)))));
        assert!(answered.entry.is_none());
        assert!(!is_waiting(entry));

        let (_tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let mut dropped = WithDeadline::new(rx, Duration::from_secs(60));
        assert!(poll_once(&mut dropped).is_pending());
        let entry = dropped.entry.expect("a waiting call has an entry");
        assert!(is_waiting(entry));
        drop(dropped);
        assert!(!is_waiting(entry));
    }
}
