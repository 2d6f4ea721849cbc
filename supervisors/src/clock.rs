//! Time for the supervision runtime: every backoff, intensity window and shutdown timeout
//! reads an injected [`Clock`], so tests drive time by hand and never sleep to wait.

use futures::future::BoxFuture;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

/// A source of time. `now` is monotonic and starts near zero; `wall` is for display.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time since the clock was made.
    fn now(&self) -> Duration;
    /// Wall-clock time, for timestamps shown to people.
    fn wall(&self) -> SystemTime;
    /// A future that completes once `d` has passed on this clock.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
    /// A future that completes once this clock reads `at` (see [`now`](Self::now)). A
    /// wait that started earlier ends on time however late this is called, where
    /// `sleep(at - now())` would end late if the clock moved between the two reads.
    fn sleep_until(&self, at: Duration) -> BoxFuture<'static, ()>;
}

/// The clock every part of one node shares.
pub type SharedClock = Arc<dyn Clock>;

/// Real time: `Instant` and tokio's timer.
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn shared() -> SharedClock {
        Arc::new(Self {
            start: Instant::now(),
        })
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
    fn sleep_until(&self, at: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until((self.start + at).into()))
    }
}

/// Time that moves only when a test calls [`ManualClock::advance`].
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<ManualState>>,
    wall_base: SystemTime,
}

struct ManualState {
    now: Duration,
    next_id: u64,
    /// Live sleeps: deadline, id, waker. A sleep removes itself when dropped.
    sleepers: Vec<(Duration, u64, Waker)>,
}

impl ManualClock {
    /// A clock at zero whose wall time starts at `wall_base`.
    pub fn new(wall_base: SystemTime) -> Self {
        Self {
            inner: Arc::new(Mutex::new(ManualState {
                now: Duration::ZERO,
                next_id: 0,
                sleepers: Vec::new(),
            })),
            wall_base,
        }
    }

    /// Moves time forward by `d` and wakes every sleeper whose deadline has come.
    pub fn advance(&self, d: Duration) {
        let due: Vec<Waker> = {
            let mut st = lock(&self.inner);
            st.now += d;
            let now = st.now;
            let (due, keep): (Vec<_>, Vec<_>) =
                st.sleepers.drain(..).partition(|(at, _, _)| *at <= now);
            st.sleepers = keep;
            due.into_iter().map(|(_, _, w)| w).collect()
        };
        for w in due {
            w.wake();
        }
    }

    /// How many sleeps are waiting for time to move.
    pub fn sleepers(&self) -> usize {
        lock(&self.inner).sleepers.len()
    }

    /// The earliest deadline a sleeper waits for, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        lock(&self.inner)
            .sleepers
            .iter()
            .map(|(at, _, _)| *at)
            .min()
    }
}

fn lock(m: &Mutex<ManualState>) -> std::sync::MutexGuard<'_, ManualState> {
    // A panic while holding this lock leaves plain data behind; it stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        lock(&self.inner).now
    }
    fn wall(&self) -> SystemTime {
        self.wall_base + self.now()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        let mut st = lock(&self.inner);
        let at = st.now + d;
        self.sleep_locked(&mut st, at)
    }
    fn sleep_until(&self, at: Duration) -> BoxFuture<'static, ()> {
        let mut st = lock(&self.inner);
        self.sleep_locked(&mut st, at)
    }
}

impl ManualClock {
    fn sleep_locked(&self, st: &mut ManualState, deadline: Duration) -> BoxFuture<'static, ()> {
        st.next_id += 1;
        Box::pin(ManualSleep {
            inner: self.inner.clone(),
            deadline,
            id: st.next_id,
        })
    }
}

struct ManualSleep {
    inner: Arc<Mutex<ManualState>>,
    deadline: Duration,
    id: u64,
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        let id = self.id;
        lock(&self.inner).sleepers.retain(|(_, i, _)| *i != id);
    }
}

impl Future for ManualSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(&self.inner);
        if st.now >= self.deadline {
            return Poll::Ready(());
        }
        let (deadline, id) = (self.deadline, self.id);
        if let Some(slot) = st.sleepers.iter_mut().find(|(_, i, _)| *i == id) {
            slot.2 = cx.waker().clone();
        } else {
            st.sleepers.push((deadline, id, cx.waker().clone()));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_sleep_completes_only_when_advanced() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let mut fut = clock.sleep(Duration::from_millis(10));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        clock.advance(Duration::from_millis(9));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.sleepers(), 1);
        clock.advance(Duration::from_millis(1));
        assert!(fut.as_mut().poll(&mut cx).is_ready());
        assert_eq!(clock.sleepers(), 0);
        assert_eq!(
            clock.wall(),
            SystemTime::UNIX_EPOCH + Duration::from_millis(10)
        );
    }

    #[test]
    fn a_dropped_sleep_is_no_longer_counted() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let mut fut = clock.sleep(Duration::from_millis(10));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.sleepers(), 1);
        assert_eq!(clock.next_deadline(), Some(Duration::from_millis(10)));
        drop(fut);
        assert_eq!(clock.sleepers(), 0);
    }
}
