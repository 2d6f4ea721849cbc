//! Per-actor and per-supervisor metrics, registered in the node's own Prometheus registry
//! (never the global one, so several nodes can live in one test process).

use crate::tree::Mailbox;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use std::sync::{Arc, Mutex};

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
    pub handler_seconds: HistogramVec,
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
            handler_seconds: HistogramVec::new(
                HistogramOpts::new("axon_actor_handler_seconds", "Time inside the actor's handler")
                    .buckets(exponential_buckets(1e-6, 4.0, 12)?),
                &["actor"],
            )?,
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
