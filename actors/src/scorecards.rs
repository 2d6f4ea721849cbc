//! The drivers' scorecards as metrics: read from each loaded driver's scorecard at scrape
//! time, over its sliding window, labelled by driver name and lane only (never by an
//! action or a caller, so the series stay bounded by the drivers loaded).

use crate::lanes::Lanes;
use axon_protocols::action::ActionStatus;
use axon_supervisors::SharedClock;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};
use std::sync::{Arc, Mutex};

/// Every driver's scorecard, exported at each scrape.
#[derive(Clone)]
pub struct ScorecardMetrics {
    lanes: Arc<Lanes>,
    clock: SharedClock,
    calls: GaugeVec,
    errors: GaugeVec,
    error_rate: GaugeVec,
    latency: GaugeVec,
    uplift: GaugeVec,
    agreement: GaugeVec,
    pushes: IntCounterVec,
    lane: GaugeVec,
    slo_p99: GaugeVec,
    slo_error_rate: GaugeVec,
    /// One scrape at a time: each sets the gauges afresh and brings the counters up to
    /// the scorecards' totals.
    scraping: Arc<Mutex<()>>,
}

impl ScorecardMetrics {
    /// Registers the scorecard metrics of the drivers in `lanes` in `registry`.
    pub fn register(
        lanes: Arc<Lanes>,
        clock: SharedClock,
        registry: &Registry,
    ) -> prometheus::Result<()> {
        let gauge =
            |name: &str, help: &str, labels: &[&str]| GaugeVec::new(Opts::new(name, help), labels);
        let m = Self {
            lanes,
            clock,
            calls: gauge(
                "axon_driver_window_calls",
                "Pushes a driver finished within its scorecard's sliding window",
                &["driver", "lane"],
            )?,
            errors: gauge(
                "axon_driver_window_errors",
                "Pushes within the window that did not end ok, by kind (failed, in_doubt, not_run)",
                &["driver", "lane", "kind"],
            )?,
            error_rate: gauge(
                "axon_driver_window_error_rate",
                "Share of the window's pushes that did not end ok (absent with no pushes)",
                &["driver", "lane"],
            )?,
            latency: gauge(
                "axon_driver_window_latency_seconds",
                "Push latency percentiles over the window (absent with no pushes)",
                &["driver", "lane", "quantile"],
            )?,
            uplift: gauge(
                "axon_driver_window_uplift",
                "Realized minus predicted utility over the window's pushes whose prediction was not inconclusive (absent without any)",
                &["driver", "lane"],
            )?,
            agreement: gauge(
                "axon_driver_window_shadow_agreement",
                "As a shadow: the share of its predictions of mirrored calls that agreed with the live outcome, over the window (inconclusive ones not counted; absent with none)",
                &["driver", "lane"],
            )?,
            pushes: IntCounterVec::new(
                Opts::new(
                    "axon_driver_pushes_total",
                    "Pushes a driver finished since the node started, by outcome",
                ),
                &["driver", "outcome"],
            )?,
            lane: gauge(
                "axon_driver_lane",
                "1 for the lane each loaded driver is in",
                &["driver", "capability", "lane"],
            )?,
            slo_p99: gauge(
                "axon_driver_slo_p99_seconds",
                "The p99 latency a driver's objective allows",
                &["driver"],
            )?,
            slo_error_rate: gauge(
                "axon_driver_slo_max_error_rate",
                "The error rate a driver's objective allows",
                &["driver"],
            )?,
            scraping: Arc::default(),
        };
        registry.register(Box::new(m))
    }

    fn collectors(&self) -> [&dyn Collector; 10] {
        [
            &self.calls,
            &self.agreement,
            &self.errors,
            &self.error_rate,
            &self.latency,
            &self.uplift,
            &self.pushes,
            &self.lane,
            &self.slo_p99,
            &self.slo_error_rate,
        ]
    }
}

impl Collector for ScorecardMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.collectors()
            .into_iter()
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = self.scraping.lock().unwrap_or_else(|e| e.into_inner());
        // Set afresh at each scrape: a driver that changed lanes leaves no stale series.
        for g in [
            &self.calls,
            &self.errors,
            &self.error_rate,
            &self.latency,
            &self.uplift,
            &self.agreement,
            &self.lane,
            &self.slo_p99,
            &self.slo_error_rate,
        ] {
            g.reset();
        }
        let now = self.clock.now();
        for d in self.lanes.drivers() {
            let name = d.name();
            let lane = self.lanes.lane(name).map(|l| l.as_str()).unwrap_or("none");
            self.lane
                .with_label_values(&[name, &d.descriptor.capability, lane])
                .set(1.0);
            if let Some(slo) = &d.descriptor.slo {
                self.slo_p99
                    .with_label_values(&[name])
                    .set(slo.p99_ms as f64 / 1000.0);
                self.slo_error_rate
                    .with_label_values(&[name])
                    .set(slo.max_error_rate);
            }
            let r = d.scorecard.report(now);
            let w = &r.window;
            self.calls
                .with_label_values(&[name, lane])
                .set(w.calls as f64);
            for (kind, n) in &w.errors {
                self.errors
                    .with_label_values(&[name, lane, kind])
                    .set(*n as f64);
            }
            if let Some(rate) = w.error_rate {
                self.error_rate.with_label_values(&[name, lane]).set(rate);
            }
            if let Some(l) = w.latency {
                for (q, ms) in [("0.5", l.p50_ms), ("0.95", l.p95_ms), ("0.99", l.p99_ms)] {
                    self.latency
                        .with_label_values(&[name, lane, q])
                        .set(ms / 1000.0);
                }
            }
            if let Some(u) = w.uplift {
                self.uplift.with_label_values(&[name, lane]).set(u);
            }
            if let Some(a) = w.shadow.agreement {
                self.agreement.with_label_values(&[name, lane]).set(a);
            }
            // The total's counts only grow: a counter, set to the scorecard's own count.
            let errors: u64 = r.total.errors.values().sum();
            for (outcome, n) in [("ok", r.total.calls - errors)].into_iter().chain(
                [
                    ActionStatus::Failed,
                    ActionStatus::InDoubt,
                    ActionStatus::NotRun,
                ]
                .into_iter()
                .map(|s| {
                    (
                        s.as_str(),
                        r.total.errors.get(s.as_str()).copied().unwrap_or(0),
                    )
                }),
            ) {
                let c = self.pushes.with_label_values(&[name, outcome]);
                c.inc_by(n.saturating_sub(c.get()));
            }
        }
        self.collectors()
            .into_iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}
