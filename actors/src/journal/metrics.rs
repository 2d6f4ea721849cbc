//! The journal's metrics.
//!
//! Owns: their names, help texts and registration, once per node; every incarnation of the
//! journal and its readers reports to the same series. Must never: label a series with an
//! id (entry, action) — labels stay bounded.

/// The journal's metrics, registered once per node and shared by its incarnations.
#[derive(Clone)]
pub struct JournalMetrics {
    pub(super) entries: prometheus::IntGauge,
    pub(super) appends: prometheus::IntCounterVec,
    pub(super) commit_seconds: prometheus::Histogram,
    pub(super) commit_entries: prometheus::Histogram,
    pub(super) halted: prometheus::IntGauge,
    pub(super) torn_tail_bytes: prometheus::IntCounter,
    pub(super) index_lag: prometheus::IntGauge,
    pub(super) index_mismatches: prometheus::IntCounter,
    pub(super) checkpoints: prometheus::IntCounter,
}

impl JournalMetrics {
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        use prometheus::{
            exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
            Opts,
        };
        let m = Self {
            entries: IntGauge::new("axon_journal_entries", "Entries in the journal")?,
            appends: IntCounterVec::new(
                Opts::new(
                    "axon_journal_appends_total",
                    "Append requests by outcome (ok, refused, halted)",
                ),
                &["outcome"],
            )?,
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "axon_journal_commit_seconds",
                    "Time to write one group commit and fdatasync it",
                )
                .buckets(exponential_buckets(1e-5, 2.0, 18)?),
            )?,
            commit_entries: Histogram::with_opts(
                HistogramOpts::new("axon_journal_commit_entries", "Entries per group commit")
                    .buckets(exponential_buckets(1.0, 2.0, 14)?),
            )?,
            halted: IntGauge::new(
                "axon_journal_halted",
                "1 once a failed write halted the journal",
            )?,
            torn_tail_bytes: IntCounter::new(
                "axon_journal_torn_tail_bytes_total",
                "Bytes of unacknowledged torn tail cut at start",
            )?,
            index_lag: IntGauge::new(
                "axon_journal_index_lag_entries",
                "Durable entries the sled index has not reached yet (lookups read them from the segments)",
            )?,
            index_mismatches: IntCounter::new(
                "axon_journal_index_mismatches_total",
                "Index hits that did not match the entry they name (answered from the segments)",
            )?,
            checkpoints: IntCounter::new(
                "axon_journal_checkpoints_total",
                "Signed checkpoints made durable in the checkpoint log",
            )?,
        };
        registry.register(Box::new(m.entries.clone()))?;
        registry.register(Box::new(m.index_mismatches.clone()))?;
        registry.register(Box::new(m.checkpoints.clone()))?;
        registry.register(Box::new(m.appends.clone()))?;
        registry.register(Box::new(m.commit_seconds.clone()))?;
        registry.register(Box::new(m.commit_entries.clone()))?;
        registry.register(Box::new(m.halted.clone()))?;
        registry.register(Box::new(m.torn_tail_bytes.clone()))?;
        registry.register(Box::new(m.index_lag.clone()))?;
        for outcome in ["ok", "refused", "halted"] {
            m.appends.with_label_values(&[outcome]);
        }
        Ok(m)
    }
}
