//! Call deadlines on a coarse clock.
//!
//! A caller that has to wait for its answer leaves its waker and its due time in a wheel,
//! and whoever drives the wheel wakes the callers whose time has passed, looking every
//! [`TICK`] while any call waits. A caller on an actix thread (the node's arbiters and
//! HTTP workers) uses its thread's own wheel, driven by one task on that thread: entering
//! and leaving it take no lock. Most calls there are answered well within a tick, so a
//! call first only leaves its task's waker among the thread's *young* callers (one entry
//! for calls made one after another by the same task) and leaves nothing behind when its
//! answer comes. At the next tick every young caller is woken once; one still waiting
//! then enters the wheel with its due time. A young caller that had its answer meanwhile
//! costs its task at most one extra poll per tick. Any other caller uses one of a few shards shared by the
//! process, driven by one thread of its own that sleeps while nobody waits. A call
//! answered before the next tick reads no clock; one that waits longer reads only the
//! kernel's coarse clock, where a runtime timer per call costs an insert and a cancel in
//! the timer wheel and a clock read for each.
//!
//! Precision: a deadline never passes early; it is seen late by at most two ticks (a
//! young caller's wait counts from the first tick after it began, or from a later one
//! when its task missed ticks) plus twice the coarse clock's resolution (a few
//! milliseconds), which is far inside any call deadline a node is configured with.

use slab::Slab;
use std::cell::RefCell;
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

/// Whether two wakers wake the same task. `Waker::will_wake` alone compares the vtables'
/// addresses, and one vtable can have several copies in a build (one per codegen unit
/// that makes it): a clone of a task's waker then never looks like the waker it came
/// from. The same data behind the same functions is the same waker.
fn same_task(a: &Waker, b: &Waker) -> bool {
    a.will_wake(b) || (a.data() == b.data() && a.vtable() == b.vtable())
}

/// The wheel of one actix thread, driven by a task on that thread.
struct LocalWheel {
    /// Tells this wheel's entries from another thread's.
    id: u64,
    waiting: Slab<(u64, u64, Waker)>,
    /// The tasks of calls made since the last tick that have not entered `waiting`: all
    /// woken at the next tick, so that those still waiting enter it.
    young: Vec<Waker>,
    /// Numbers each entry, so a key reused after its entry left is never mistaken for it.
    next_tag: u64,
    /// True while this thread's driving task runs.
    ticking: bool,
    /// The waker of the last caller that left: the next call of the same task (an HTTP
    /// request making its calls one after another) takes it instead of a fresh clone.
    spare: Option<Waker>,
    /// Ticks run so far, and the coarse time of the latest: a young caller's wait counts
    /// from the first tick after it began.
    ticks: u64,
    tick_at: u64,
}

thread_local! {
    static LOCAL: RefCell<LocalWheel> = RefCell::new(LocalWheel {
        id: {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            NEXT.fetch_add(1, Ordering::Relaxed)
        },
        waiting: Slab::new(),
        young: Vec::new(),
        next_tag: 0,
        ticking: false,
        spare: None,
        ticks: 0,
        tick_at: 0,
    });
}

/// Marks this thread's wheel as driven for as long as it lives. It is made before the
/// driving task is spawned and moved into it, so that a task dropped before its first
/// poll (its runtime ended, or the spawn failed) marks the wheel undriven too, and the
/// next caller starts another.
struct Ticking;

impl Ticking {
    fn start() -> Self {
        let _ = LOCAL.try_with(|w| w.borrow_mut().ticking = true);
        Ticking
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|w| {
            if let Ok(mut w) = w.try_borrow_mut() {
                w.ticking = false;
            }
        });
    }
}

/// Drives this thread's wheel: every tick, wakes (and takes out) the entries whose time
/// has passed; ends once nobody has waited for a while.
async fn drive_local_wheel(ticking: Ticking) {
    let _ticking = ticking;
    let mut idle = 0u32;
    while idle < IDLE_TICKS {
        tokio::time::sleep(TICK).await;
        let now = now_ns();
        let due: Vec<Waker> = LOCAL.with(|w| {
            let mut w = w.borrow_mut();
            w.ticks += 1;
            w.tick_at = now;
            if w.waiting.is_empty() && w.young.is_empty() {
                idle += 1;
                return Vec::new();
            }
            idle = 0;
            let keys: Vec<usize> = w
                .waiting
                .iter()
                .filter(|(_, (due, _, _))| *due <= now)
                .map(|(k, _)| k)
                .collect();
            let mut due = std::mem::take(&mut w.young);
            due.extend(keys.into_iter().map(|k| w.waiting.remove(k).2));
            due
        });
        // Woken outside the borrow: a waker may run code that enters the wheel.
        for waker in due {
            waker.wake();
        }
    }
}

/// True once this thread's wheel is driven: it was, or the task that drives it could be
/// started on this thread's actix runtime.
fn local_wheel_driven() -> bool {
    let ticking = LOCAL
        .try_with(|w| w.try_borrow().is_ok_and(|w| w.ticking))
        .unwrap_or(false);
    if ticking {
        return true;
    }
    if actix::Arbiter::try_current().is_none() {
        return false;
    }
    // Outside any borrow of the wheel: a task dropped at once runs the guard's drop.
    let task = drive_local_wheel(Ticking::start());
    let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| actix::spawn(task)));
    spawned.is_ok()
        && LOCAL
            .try_with(|w| w.try_borrow().is_ok_and(|w| w.ticking))
            .unwrap_or(false)
}

/// Leaves `waker` among this thread's young callers if the thread has a driven wheel, and
/// answers its entry; `None` sends the caller elsewhere.
fn enter_young(waker: &Waker) -> Option<Entry> {
    LOCAL
        .try_with(|w| {
            let mut w = w.try_borrow_mut().ok()?;
            if !w.ticking {
                return None;
            }
            // The same task calling again before the tick needs no second wake-up.
            if !w.young.last().is_some_and(|last| same_task(last, waker)) {
                w.young.push(waker.clone());
            }
            Some(Entry::Young {
                wheel: w.id,
                after: w.ticks,
            })
        })
        .ok()
        .flatten()
}

/// When a young caller's wait began, at the latest: the coarse time of a tick after it
/// entered (the first, unless its task missed ticks), or now when no tick has run since.
fn young_since(wheel: u64, after: u64) -> u64 {
    LOCAL
        .try_with(|w| {
            let w = w.try_borrow().ok()?;
            (w.id == wheel && w.ticks > after).then_some(w.tick_at)
        })
        .ok()
        .flatten()
        .unwrap_or_else(now_ns)
}

/// Enters this thread's wheel if the thread has one that is driven (or can start the
/// task that drives it); `None` sends the caller to the shared wheel.
fn enter_local(due: u64, waker: &Waker) -> Option<Entry> {
    if !local_wheel_driven() {
        return None;
    }
    // A waker let go of is dropped after the wheel's borrow ends, whatever its drop does.
    let mut unused = None;
    let entry = LOCAL
        .try_with(|w| {
            let mut w = w.try_borrow_mut().ok()?;
            let tag = w.next_tag;
            w.next_tag += 1;
            let waker = match w.spare.take() {
                Some(spare) if same_task(&spare, waker) => spare,
                other => {
                    unused = other;
                    waker.clone()
                }
            };
            let key = w.waiting.insert((due, tag, waker));
            Some(Entry::Local {
                wheel: w.id,
                key,
                tag,
            })
        })
        .ok()
        .flatten();
    drop(unused);
    entry
}

/// Where a waiting caller's entry is.
#[derive(Clone, Copy, Debug)]
enum Entry {
    /// Among its thread's young callers, with nothing to take out when it leaves: of
    /// wheel `wheel`, entered when it had run `after` ticks.
    Young {
        wheel: u64,
        after: u64,
    },
    Local {
        wheel: u64,
        key: usize,
        tag: u64,
    },
    Shared {
        shard: usize,
        key: usize,
    },
}

/// The deadline passed before the answer came.
#[derive(Debug)]
pub struct Elapsed;

/// `inner`, given up at its deadline.
pub struct WithDeadline<F> {
    inner: F,
    /// How long the caller waits, in nanoseconds.
    wait: u64,
    /// When it gives up, on the coarse clock: set when the caller enters a wheel. A young
    /// caller, answered before the next tick, never reads the clock at all; one still
    /// waiting at the tick counts its wait from then.
    due: u64,
    /// This caller's entry, while it has one.
    entry: Option<Entry>,
}

impl<F> WithDeadline<F> {
    pub fn new(inner: F, deadline: Duration) -> Self {
        Self {
            inner,
            wait: u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX),
            due: u64::MAX,
            entry: None,
        }
    }

    /// Starts the wait from `since` (a coarse time no earlier than the call's start), if
    /// it has not started yet.
    fn start_wait(&mut self, since: u64) {
        if self.due == u64::MAX {
            self.due = since
                .saturating_add(self.wait)
                .saturating_add(resolution_ns());
        }
    }

    fn leave(&mut self) {
        match self.entry.take() {
            None | Some(Entry::Young { .. }) => {}
            Some(Entry::Local { wheel, key, tag }) => {
                // An entry already woken is gone from the wheel; one of another thread's
                // wheel (a caller moved between threads) leaves when it falls due. The
                // spare it replaces is dropped after the wheel's borrow ends.
                let replaced = LOCAL.try_with(|w| {
                    let Ok(mut w) = w.try_borrow_mut() else {
                        return None;
                    };
                    if w.id == wheel && w.waiting.get(key).is_some_and(|e| e.1 == tag) {
                        let (_, _, waker) = w.waiting.remove(key);
                        w.spare.replace(waker)
                    } else {
                        None
                    }
                });
                drop(replaced);
            }
            Some(Entry::Shared { shard, key }) => {
                let mut s = lock(&DEADLINES.shards[shard]);
                s.waiting.try_remove(key);
            }
        }
    }

    /// Leaves this caller's waker to be woken at its deadline.
    fn wait(&mut self, waker: &Waker) {
        match self.entry {
            // Polled again while still waiting (the tick woke the young callers, or
            // something else woke its task): now it enters the wheel with its due time.
            Some(Entry::Young { wheel, after }) => {
                self.start_wait(young_since(wheel, after));
                self.entry = Some(self.enter_wheel(waker));
            }
            Some(Entry::Local { wheel, key, tag }) => {
                // A waker replaced here is dropped after the wheel's borrow ends.
                let mut replaced = None;
                let kept = LOCAL
                    .try_with(|w| {
                        let Ok(mut w) = w.try_borrow_mut() else {
                            return false;
                        };
                        if w.id != wheel {
                            return false;
                        }
                        match w.waiting.get_mut(key) {
                            Some(e) if e.1 == tag => {
                                if !same_task(&e.2, waker) {
                                    replaced = Some(std::mem::replace(&mut e.2, waker.clone()));
                                }
                                true
                            }
                            _ => false,
                        }
                    })
                    .unwrap_or(false);
                drop(replaced);
                if !kept {
                    // Polled from another thread: enter again there.
                    self.entry = Some(self.enter_wheel(waker));
                }
            }
            Some(Entry::Shared { shard, key }) => {
                let mut s = lock(&DEADLINES.shards[shard]);
                if let Some(w) = s.waiting.get_mut(key) {
                    if !same_task(&w.waker, waker) {
                        w.waker = waker.clone();
                    }
                    w.woken = false;
                    s.earliest = s.earliest.min(self.due);
                }
            }
            None => {
                self.entry = Some(match enter_young(waker) {
                    Some(young) => young,
                    None => {
                        self.start_wait(now_ns());
                        self.enter_wheel(waker)
                    }
                });
            }
        }
    }

    /// Enters this thread's wheel, or the shared one, with this call's due time.
    fn enter_wheel(&self, waker: &Waker) -> Entry {
        match enter_local(self.due, waker) {
            Some(entry) => entry,
            None => enter_shared(self.due, waker),
        }
    }
}

/// Enters one of the shards shared by the process; the deadline thread wakes it.
fn enter_shared(due: u64, waker: &Waker) -> Entry {
    let d = &*DEADLINES;
    let shard = SHARD.with(|s| *s);
    let key = {
        let mut s = lock(&d.shards[shard]);
        s.earliest = s.earliest.min(due);
        s.waiting.insert(Waiting {
            due,
            waker: waker.clone(),
            woken: false,
        })
    };
    if d.parked.load(Ordering::SeqCst) {
        d.thread.unpark();
    }
    Entry::Shared { shard, key }
}

impl<F: Future + Unpin> Future for WithDeadline<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(v) = Pin::new(&mut this.inner).poll(cx) {
            this.leave();
            return Poll::Ready(Ok(v));
        }
        // Only a caller in a wheel has a due time; a young one gets its own at the tick
        // (a zero deadline is answered at the tick after). Polls come from a wake-up, the
        // deadline's or the answer's.
        if matches!(this.entry, Some(Entry::Local { .. } | Entry::Shared { .. }))
            && now_ns() >= this.due
        {
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

    /// A call that never gets its answer gives up, and only once the coarse clock has
    /// passed a due time at least `ms` after the call began.
    async fn gives_up_only_when_due(ms: u64) {
        let began = now_ns();
        let mut call =
            WithDeadline::new(futures::future::pending::<()>(), Duration::from_millis(ms));
        assert!((&mut call).await.is_err());
        assert!(call.due >= began + ms * 1_000_000);
        assert!(now_ns() >= call.due, "gave up before its due time");
    }

    #[test]
    fn a_thread_whose_runtime_ended_before_its_wheel_ran_gets_a_driven_wheel_again() {
        // The first runtime ends right after a call entered the thread's wheel, before
        // the task that drives it was ever polled.
        let first = actix::System::new();
        first.block_on(async {
            let mut call =
                WithDeadline::new(futures::future::pending::<()>(), Duration::from_millis(5));
            assert!(poll_once(&mut call).is_pending());
            assert!(matches!(call.entry, Some(Entry::Local { .. })));
        });
        drop(first);
        // On the next runtime of the same thread, calls still give up at their deadline.
        actix::System::new().block_on(async {
            // Only a wake-up from the wheel ends the call; the runtime's own timer is the
            // bound on the test, looked at first.
            tokio::select! {
                biased;
                _ = tokio::time::sleep(Duration::from_secs(20)) => {
                    panic!("a call waited past its deadline: nothing drives the wheel")
                }
                _ = gives_up_only_when_due(5) => {}
            }
        });
    }

    #[test]
    fn a_deadline_never_passes_early() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for ms in [0u64, 1, 5, 30] {
                gives_up_only_when_due(ms).await;
            }
        });
    }

    /// Polls `f` once with a waker that does nothing.
    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let waker = futures::task::noop_waker();
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    fn is_waiting(entry: Entry) -> bool {
        let Entry::Shared { shard, key } = entry else {
            panic!("a caller outside actix entered {entry:?}");
        };
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
    #[test]
    fn a_young_caller_waits_from_the_first_tick_after_it_began() {
        actix::System::new().block_on(async {
            // A first call starts the thread's wheel.
            gives_up_only_when_due(0).await;
            let began = now_ns();
            let (_tx, rx) = tokio::sync::oneshot::channel::<u32>();
            let wait = Duration::from_secs(60);
            let mut call = WithDeadline::new(rx, wait);
            assert!(poll_once(&mut call).is_pending());
            let Some(Entry::Young { after, .. }) = call.entry else {
                panic!("not young: {:?}", call.entry);
            };
            // Until a tick has run, nothing is due.
            assert_eq!(call.due, u64::MAX);
            wait_until_ticked(after).await;
            let polled = now_ns();
            assert!(poll_once(&mut call).is_pending());
            let since = call.due - wait.as_nanos() as u64 - resolution_ns();
            // Never before the call began, and no later than the poll that moved it.
            assert!(
                since >= began && since <= polled,
                "{began} {since} {polled}"
            );
            assert_eq!(since, LOCAL.with(|w| w.borrow().tick_at));
        });
    }

    /// Waits (on the runtime's timer) until this thread's wheel has run past `after`.
    async fn wait_until_ticked(after: u64) {
        for _ in 0..10_000 {
            if LOCAL.with(|w| w.borrow().ticks) > after {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the thread's wheel never ticked");
    }

    /// A waker whose clones carry another copy of its vtable (same functions, another
    /// address), as a build with several codegen units makes them.
    mod copied_vtable {
        use std::task::{RawWaker, RawWakerVTable, Waker};

        fn clone(data: *const ()) -> RawWaker {
            RawWaker::new(data, &COPY)
        }
        fn noop(_: *const ()) {}
        pub static ORIGINAL: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
        pub static COPY: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);

        pub fn waker(data: &'static u8) -> Waker {
            // SAFETY: the functions do nothing with the data, which lives for ever.
            unsafe { Waker::new(data as *const u8 as *const (), &ORIGINAL) }
        }
    }

    #[test]
    fn a_clone_with_a_copied_vtable_wakes_the_same_task_and_another_task_does_not() {
        static A: u8 = 0;
        static B: u8 = 0;
        let a = copied_vtable::waker(&A);
        let clone = a.clone();
        assert!(
            !clone.will_wake(&a),
            "the vtable copies must differ in address"
        );
        assert!(same_task(&clone, &a));
        assert!(!same_task(&copied_vtable::waker(&B), &a));
    }

    #[test]
    fn calls_one_after_another_by_one_task_leave_one_young_entry() {
        static TASK: u8 = 0;
        actix::System::new().block_on(async {
            // A first call starts the thread's wheel.
            gives_up_only_when_due(0).await;
            let waker = copied_vtable::waker(&TASK);
            let young = || LOCAL.with(|w| w.borrow().young.len());
            let before = young();
            // No await in between: no tick can empty the young callers meanwhile.
            for _ in 0..100 {
                let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
                let mut call = WithDeadline::new(rx, Duration::from_secs(60));
                let mut cx = Context::from_waker(&waker);
                assert!(Pin::new(&mut call).poll(&mut cx).is_pending());
                tx.send(1).unwrap();
                assert!(Pin::new(&mut call).poll(&mut cx).is_ready());
            }
            assert_eq!(young(), before + 1);
        });
    }

    #[test]
    fn on_an_actix_thread_a_caller_uses_its_thread_wheel() {
        actix::System::new().block_on(async {
            for ms in [0u64, 1, 5, 30] {
                gives_up_only_when_due(ms).await;
            }
            let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
            let mut call = WithDeadline::new(rx, Duration::from_secs(60));
            // The first poll leaves the call among the young callers; the next (the
            // tick's wake-up) enters it in the wheel.
            assert!(poll_once(&mut call).is_pending());
            assert!(
                matches!(call.entry, Some(Entry::Young { .. })),
                "{:?}",
                call.entry
            );
            assert!(poll_once(&mut call).is_pending());
            let Some(Entry::Local { key, tag, .. }) = call.entry else {
                panic!("an actix caller entered {:?}", call.entry);
            };
            let here =
                |key, tag| LOCAL.with(|w| w.borrow().waiting.get(key).is_some_and(|e| e.1 == tag));
            assert!(here(key, tag));
            tx.send(7).unwrap();
            assert!(matches!(poll_once(&mut call), Poll::Ready(Ok(Ok(7)))));
            assert!(!here(key, tag));
        });
    }
}
