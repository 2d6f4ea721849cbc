//! Per-actor and per-supervisor metrics, registered in the node's own Prometheus registry
//! (never the global one, so several nodes can live in one test process).

use crate::tree::Mailbox;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::proto::{Bucket, Histogram, LabelPair, Metric, MetricType};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// `axon_actor_mailbox_depth`, read from the mailboxes' own counters at scrape time so the
/// hot path pays for one counter, not two.
#[derive(Clone)]
pub struct MailboxDepths {
    gauge: IntGaugeVec,
    mailboxes: Arc<Mutex<Vec<NamedMailbox>>>,
}

type NamedMailbox = (String, Arc<Mailbox>);

impl MailboxDepths {
    fn new() -> prometheus::Result<Self> {
        Ok(Self {
            gauge: IntGaugeVec::new(
                Opts::new(
                    "axon_actor_mailbox_depth",
                    "Messages waiting in the actor's mailbox",
                ),
                &["actor"],
            )?,
            mailboxes: Arc::default(),
        })
    }

    /// Reports `mailbox` as the mailbox of `actor`.
    pub fn add(&self, actor: &str, mailbox: Arc<Mailbox>) {
        let mut m = self.mailboxes.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|(id, _)| id != actor);
        m.push((actor.to_owned(), mailbox));
    }
}

impl Collector for MailboxDepths {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let m = self.mailboxes.lock().unwrap_or_else(|e| e.into_inner());
        for (id, mailbox) in m.iter() {
            let depth = mailbox.depth();
            self.gauge
                .with_label_values(&[id])
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
        self.gauge.collect()
    }
}

/// The clock handler times are taken on: the CPU's time-stamp counter where it is
/// steady, read without a system call. Its readings are ticks, turned into seconds only
/// when a scrape reads them.
pub(crate) fn handler_clock() -> &'static quanta::Clock {
    static CLOCK: LazyLock<quanta::Clock> = LazyLock::new(quanta::Clock::new);
    &CLOCK
}

/// Upper bounds of `axon_actor_handler_seconds`' buckets: 1 µs, then four times the one
/// before, up to about 4.2 s.
const HANDLER_BOUNDS: usize = 12;

fn handler_bound_ns(i: usize) -> u64 {
    1000 * 4u64.pow(i as u32)
}

/// Bucket `i`'s bound in seconds, the double nearest to its decimal value.
fn handler_bound_seconds(i: usize) -> f64 {
    handler_bound_ns(i) as f64 / 1e9
}

/// The bounds in clock ticks: bucket `i` holds the times of at most `ticks[i]` ticks,
/// the longest that read as at most its bound in seconds. Found once, so that a message
/// is bucketed by comparing integers.
fn handler_bound_ticks() -> &'static [u64; HANDLER_BOUNDS] {
    static TICKS: LazyLock<[u64; HANDLER_BOUNDS]> = LazyLock::new(|| {
        let clock = handler_clock();
        std::array::from_fn(|i| {
            let bound_ns = handler_bound_ns(i);
            // The largest tick count whose length in nanoseconds is within the bound:
            // lengths grow with ticks, so a binary search finds it, between 0 and a count
            // found by doubling (small enough that the scaling cannot overflow, whatever
            // the counter's rate).
            let mut hi = 1u64;
            while clock.delta_as_nanos(0, hi) <= bound_ns && hi < 1 << 62 {
                hi *= 2;
            }
            let mut lo = 0u64;
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if clock.delta_as_nanos(0, mid) <= bound_ns {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            lo
        })
    });
    &TICKS
}

/// One actor's handler times, shared by its incarnations: bucket counts (the last one
/// past every bound) and the sum in clock ticks, added to by each host every second.
#[derive(Default)]
pub(crate) struct ActorHandlerTimes {
    buckets: [AtomicU64; HANDLER_BOUNDS + 1],
    sum_ticks: AtomicU64,
}

/// The handler times one host counts on its own thread: plain cells, so that a message
/// pays no atomic update and no float arithmetic; [`flush`](Self::flush) adds them to
/// the actor's shared counts.
pub(crate) struct LocalHandlerTimes {
    clock: &'static quanta::Clock,
    bounds: &'static [u64; HANDLER_BOUNDS],
    buckets: [Cell<u64>; HANDLER_BOUNDS + 1],
    sum_ticks: Cell<u64>,
    shared: Arc<ActorHandlerTimes>,
}

impl LocalHandlerTimes {
    pub(crate) fn new(shared: Arc<ActorHandlerTimes>) -> Self {
        Self {
            clock: handler_clock(),
            bounds: handler_bound_ticks(),
            buckets: Default::default(),
            sum_ticks: Cell::new(0),
            shared,
        }
    }

    /// A reading of the handler clock, to time a handler run with.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.raw()
    }

    /// Counts one handler run between two readings of [`now`](Self::now).
    #[inline]
    pub(crate) fn observe(&self, start: u64, end: u64) {
        let ticks = end.saturating_sub(start);
        let i = self
            .bounds
            .iter()
            .position(|&b| ticks <= b)
            .unwrap_or(HANDLER_BOUNDS);
        let b = &self.buckets[i];
        b.set(b.get() + 1);
        self.sum_ticks.set(self.sum_ticks.get().wrapping_add(ticks));
    }

    /// Adds what was counted here to the actor's shared counts, and starts again at zero.
    pub(crate) fn flush(&self) {
        for (local, shared) in self.buckets.iter().zip(&self.shared.buckets) {
            let n = local.replace(0);
            if n > 0 {
                shared.fetch_add(n, Ordering::Relaxed);
            }
        }
        let sum = self.sum_ticks.replace(0);
        if sum > 0 {
            self.shared.sum_ticks.fetch_add(sum, Ordering::Relaxed);
        }
    }
}

/// `axon_actor_handler_seconds`, read from each actor's tick counts at scrape time.
#[derive(Clone)]
pub struct HandlerTimes {
    desc: Desc,
    actors: Arc<Mutex<Vec<NamedTimes>>>,
}

type NamedTimes = (String, Arc<ActorHandlerTimes>);

impl HandlerTimes {
    fn new() -> prometheus::Result<Self> {
        Ok(Self {
            desc: Desc::new(
                "axon_actor_handler_seconds".into(),
                "Time inside the actor's handler".into(),
                vec!["actor".into()],
                Default::default(),
            )?,
            actors: Arc::default(),
        })
    }

    /// The shared counts of `actor`, made at its first incarnation and kept across its
    /// restarts.
    pub(crate) fn for_actor(&self, actor: &str) -> Arc<ActorHandlerTimes> {
        let mut m = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, t)) = m.iter().find(|(id, _)| id == actor) {
            return t.clone();
        }
        let t = Arc::new(ActorHandlerTimes::default());
        m.push((actor.to_owned(), t.clone()));
        t
    }
}

impl Collector for HandlerTimes {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let clock = handler_clock();
        let m = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        let metrics = m
            .iter()
            .map(|(id, t)| {
                // The total is the buckets' own sum, so the buckets never add up to more
                // than the count, even when read during a host's flush.
                let mut cumulative = 0u64;
                let buckets = (0..HANDLER_BOUNDS)
                    .map(|i| {
                        cumulative += t.buckets[i].load(Ordering::Relaxed);
                        let mut b = Bucket::default();
                        b.set_cumulative_count(cumulative);
                        b.set_upper_bound(handler_bound_seconds(i));
                        b
                    })
                    .collect();
                cumulative += t.buckets[HANDLER_BOUNDS].load(Ordering::Relaxed);
                let mut h = Histogram::default();
                h.set_sample_count(cumulative);
                let sum_ns = clock.delta_as_nanos(0, t.sum_ticks.load(Ordering::Relaxed));
                h.set_sample_sum(sum_ns as f64 * 1e-9);
                h.set_bucket(buckets);
                let mut label = LabelPair::default();
                label.set_name("actor".into());
                label.set_value(id.clone());
                let mut metric = Metric::default();
                metric.set_label(vec![label]);
                metric.set_histogram(h);
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::HISTOGRAM);
        family.set_metric(metrics);
        vec![family]
    }
}

/// Every metric the supervision runtime exports. Names follow DESIGN.md §7.
#[derive(Clone)]
pub struct Metrics {
    /// Messages waiting in an actor's mailbox.
    pub mailbox_depth: MailboxDepths,
    /// The bound of an actor's mailbox.
    pub mailbox_capacity: IntGaugeVec,
    /// Messages an actor finished, by outcome (`ok`, `rejected`, `failed`, `dropped`,
    /// `abandoned`: skipped because the caller had gone).
    pub messages: IntCounterVec,
    /// Requests refused before they reached the actor, by reason
    /// (`overloaded`, `unavailable`).
    pub rejections: IntCounterVec,
    /// Callers that gave up waiting for an answer.
    pub call_timeouts: IntCounterVec,
    /// Time spent inside an actor's handler. Each host keeps its own on its thread and
    /// adds it here every second and when it stops, so a scrape may be a second behind.
    pub handler_seconds: HandlerTimes,
    /// Restarts a supervisor performed, by supervisor and child.
    pub restarts: IntCounterVec,
    /// Child exits a supervisor saw, by supervisor, child and exit kind.
    pub exits: IntCounterVec,
    /// Supervisors that gave up because their restart intensity was exceeded.
    pub escalations: IntCounterVec,
    /// Times an isolated child went past its own restart intensity.
    pub isolated_exceeded: IntCounterVec,
    /// Children that did not stop after a kill within the bound and were abandoned.
    pub abandoned: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            mailbox_depth: MailboxDepths::new()?,
            mailbox_capacity: IntGaugeVec::new(
                Opts::new("axon_actor_mailbox_capacity", "Bound of the actor's mailbox"),
                &["actor"],
            )?,
            messages: IntCounterVec::new(
                Opts::new(
                    "axon_actor_messages_total",
                    "Messages the actor finished, by outcome (ok, rejected, failed, dropped, abandoned: skipped unexecuted because the caller had gone)",
                ),
                &["actor", "outcome"],
            )?,
            rejections: IntCounterVec::new(
                Opts::new(
                    "axon_actor_rejections_total",
                    "Requests refused before reaching the actor, by reason",
                ),
                &["actor", "reason"],
            )?,
            call_timeouts: IntCounterVec::new(
                Opts::new(
                    "axon_actor_call_timeouts_total",
                    "Calls whose caller stopped waiting at its deadline",
                ),
                &["actor"],
            )?,
            handler_seconds: HandlerTimes::new()?,
            restarts: IntCounterVec::new(
                Opts::new("axon_supervisor_restarts_total", "Restarts of a child by its supervisor"),
                &["supervisor", "child"],
            )?,
            exits: IntCounterVec::new(
                Opts::new(
                    "axon_supervisor_child_exits_total",
                    "Child exits a supervisor saw, by kind (normal, shutdown, failed, panicked, killed)",
                ),
                &["supervisor", "child", "exit"],
            )?,
            escalations: IntCounterVec::new(
                Opts::new(
                    "axon_supervisor_escalations_total",
                    "Times a supervisor gave up because its restart intensity was exceeded",
                ),
                &["supervisor"],
            )?,
            isolated_exceeded: IntCounterVec::new(
                Opts::new(
                    "axon_supervisor_isolated_exceeded_total",
                    "Times an isolated child (a driver) went past its own restart intensity and was taken out of service",
                ),
                &["supervisor", "child"],
            )?,
            abandoned: IntCounterVec::new(
                Opts::new(
                    "axon_supervisor_abandoned_total",
                    "Children that did not stop within the bound after a kill and were abandoned (fenced off from their successor)",
                ),
                &["supervisor", "child"],
            )?,
        };
        registry.register(Box::new(m.mailbox_depth.clone()))?;
        registry.register(Box::new(m.mailbox_capacity.clone()))?;
        registry.register(Box::new(m.messages.clone()))?;
        registry.register(Box::new(m.rejections.clone()))?;
        registry.register(Box::new(m.call_timeouts.clone()))?;
        registry.register(Box::new(m.handler_seconds.clone()))?;
        registry.register(Box::new(m.restarts.clone()))?;
        registry.register(Box::new(m.exits.clone()))?;
        registry.register(Box::new(m.escalations.clone()))?;
        registry.register(Box::new(m.isolated_exceeded.clone()))?;
        registry.register(Box::new(m.abandoned.clone()))?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    fn scrape(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tick_bounds_split_exactly_where_the_bounds_in_seconds_do() {
        let clock = handler_clock();
        let ticks = handler_bound_ticks();
        for (i, &t) in ticks.iter().enumerate() {
            let bound_ns = handler_bound_ns(i);
            assert!(clock.delta_as_nanos(0, t) <= bound_ns, "bucket {i}");
            assert!(clock.delta_as_nanos(0, t + 1) > bound_ns, "bucket {i}");
        }
        assert!(ticks.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn handler_times_reach_a_scrape_only_when_flushed_and_add_up_across_incarnations() {
        let registry = Registry::new();
        let m = Metrics::new(&registry).unwrap();
        let ticks = handler_bound_ticks();
        let first = LocalHandlerTimes::new(m.handler_seconds.for_actor("a"));
        first.observe(100, 100 + ticks[0]); // at the first bound: its bucket
        first.observe(100, 100 + ticks[0] + 1); // just past it: the next
        first.observe(5, 0); // a clock read backwards counts as zero
        first.observe(0, ticks[HANDLER_BOUNDS - 1] + 1); // past every bound
        let text = scrape(&registry);
        assert!(
            text.contains(r#"axon_actor_handler_seconds_count{actor="a"} 0"#),
            "{text}"
        );
        first.flush();
        // A restarted actor's host adds to the same counts.
        let second = LocalHandlerTimes::new(m.handler_seconds.for_actor("a"));
        second.observe(0, ticks[1]);
        second.flush();
        second.flush();
        let text = scrape(&registry);
        for line in [
            r#"axon_actor_handler_seconds_bucket{actor="a",le="0.000001"} 2"#,
            r#"axon_actor_handler_seconds_bucket{actor="a",le="0.000004"} 4"#,
            r#"axon_actor_handler_seconds_bucket{actor="a",le="1.048576"} 4"#,
            r#"axon_actor_handler_seconds_bucket{actor="a",le="+Inf"} 5"#,
            r#"axon_actor_handler_seconds_count{actor="a"} 5"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        let sum_ticks = 2 * ticks[0] + 1 + ticks[HANDLER_BOUNDS - 1] + 1 + ticks[1];
        let want = handler_clock().delta_as_nanos(0, sum_ticks) as f64 * 1e-9;
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(r#"axon_actor_handler_seconds_sum{actor="a"} "#))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - want).abs() <= want * 1e-9, "{sum} vs {want}");
    }
}
