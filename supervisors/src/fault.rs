//! Fault injection by actor name: the test harness arms a fault, and the actor's host
//! applies it to the next messages it handles, exactly as a real fault would happen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What happens to a message when a fault is armed.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The handler panics.
    Panic,
    /// The handler returns a fatal error.
    Error,
    /// The handler finishes normally, then the actor stops as if its work were done.
    Exit,
    /// The actor waits this long (on the supervision clock, from when it takes the
    /// message, before the message's place in the mailbox is given back) before handling
    /// the message; its mailbox is not read meanwhile.
    Delay(Duration),
    /// The actor never handles the message; only a kill ends the wait.
    Hang,
    /// The handler runs, then its answer waits until this long (on the supervision
    /// clock) has passed since the message was taken, however long the handler ran; the
    /// mailbox is not read meanwhile. A worker that did its work and answers late (a
    /// driver whose side effect landed and whose reply is slow).
    SlowAnswer(Duration),
}

#[derive(Clone, Debug)]
struct Armed {
    fault: Fault,
    /// How many messages it applies to; `None` until cleared.
    remaining: Option<u32>,
}

/// The faults armed in one node, by actor id. Cheap to clone; all clones share the faults.
#[derive(Clone, Default)]
pub struct FaultInjector {
    any: Arc<AtomicBool>,
    armed: Arc<Mutex<HashMap<String, Armed>>>,
}

impl FaultInjector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms `fault` for the next `times` messages of `actor` (`None`: until cleared).
    pub fn inject(&self, actor: &str, fault: Fault, times: Option<u32>) {
        let mut m = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(
            actor.to_owned(),
            Armed {
                fault,
                remaining: times,
            },
        );
        self.any.store(true, Ordering::Release);
    }

    /// Disarms every fault of `actor`.
    pub fn clear(&self, actor: &str) {
        let mut m = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(actor);
        self.any.store(!m.is_empty(), Ordering::Release);
    }

    /// True while a fault is armed for `actor`.
    pub fn is_armed(&self, actor: &str) -> bool {
        let m = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        m.contains_key(actor)
    }

    /// Takes the fault for one message of `actor`, if one is armed. With none armed
    /// anywhere (a node in service) this is one atomic load, inlined at each message.
    #[inline]
    pub fn take(&self, actor: &str) -> Option<Fault> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.take_armed(actor)
    }

    #[cold]
    fn take_armed(&self, actor: &str) -> Option<Fault> {
        let mut m = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let armed = m.get_mut(actor)?;
        let fault = armed.fault.clone();
        if let Some(n) = armed.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(actor);
                self.any.store(!m.is_empty(), Ordering::Release);
            }
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_fault_applies_that_many_times() {
        let f = FaultInjector::new();
        f.inject("a", Fault::Panic, Some(2));
        assert_eq!(f.take("b"), None);
        assert_eq!(f.take("a"), Some(Fault::Panic));
        assert_eq!(f.take("a"), Some(Fault::Panic));
        assert_eq!(f.take("a"), None);
        f.inject("a", Fault::Error, None);
        for _ in 0..5 {
            assert_eq!(f.take("a"), Some(Fault::Error));
        }
        f.clear("a");
        assert_eq!(f.take("a"), None);
    }
}
