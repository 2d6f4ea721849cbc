//! `axon bench demotion`: how long, and how many calls, from a fault in a live driver to
//! its supervisor demoting it. A node with the embedded defaults loads `probe`, an echo
//! driver whose postcondition wants a number and whose objective allows 5% failures.
//! Clients send it numbers (every push ok) at a fixed rate, then, from one moment on,
//! objects (every push failed): the fault. A watcher reads the driver's lane every
//! millisecond; the figures are the time from the first failing request to the lane
//! leaving `live`, and the failing pushes answered meanwhile.
//!
//! It measures and prints; it asserts nothing.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The probe driver's manifest.
const PROBE: &str = r#"name = "probe"
version = "1.0.0"
kind = "echo"
capability = "urn:axon:cap:probe"
effect = "read"
risk = "low"
max_blast_radius = 0
idempotent = true
lane = "live"
[cost]
expected_ms = 0
units = 0.0
[limits]
deadline_ms = 1000
concurrency = 1
rate_per_second = 100000
max_payload_bytes = 65536
mailbox_capacity = 1024
[obligations.postcondition.properties.output]
type = "number"
[slo]
p99_ms = 500
max_error_rate = 0.05
"#;

/// How one run is shaped.
pub struct DemotionBench {
    /// Healthy requests before the fault.
    pub healthy: u64,
    /// Requests per second, healthy and failing alike.
    pub rate: u64,
}

/// Runs the benchmark with its data in `base` and prints the figures.
pub fn demotion(base: &Path, b: &DemotionBench) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("axon-bench-demotion-")
        .tempdir_in(base)
        .with_context(|| format!("creating a directory in {}", base.display()))?;
    let manifests = dir.path().join("drivers");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(manifests.join("probe.toml"), PROBE)?;
    let mut cfg = crate::Config::defaults();
    cfg.drivers.manifest_dirs = vec![manifests];
    let (addr, token) = crate::bench_act::node_with(&dir.path().join("node"), cfg)?;
    let base_url = format!("http://{addr}");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let send = |n: u64, args: Value| -> anyhow::Result<String> {
        let v: Value = client
            .post(format!("{base_url}/v1/act"))
            .bearer_auth(&token)
            .json(&json!({"capability": "urn:axon:cap:probe", "intent_id": format!("d-{n}"), "args": args}))
            .send()?
            .json()?;
        Ok(v["status"].as_str().unwrap_or("?").to_owned())
    };
    let every = Duration::from_secs_f64(1.0 / b.rate.max(1) as f64);
    let started = Instant::now();
    for n in 0..b.healthy {
        std::thread::sleep((started + every * n as u32).saturating_duration_since(Instant::now()));
        let status = send(n, json!(n))?;
        if status != "ok" {
            bail!("a healthy push answered {status}");
        }
    }
    // The watcher: the moment the lane leaves live.
    let demoted = Arc::new(AtomicBool::new(false));
    let demoted_after_us = Arc::new(AtomicU64::new(0));
    let fault_at = Instant::now();
    let watcher = {
        let (demoted, after) = (demoted.clone(), demoted_after_us.clone());
        let (client, url) = (client.clone(), format!("{base_url}/v1/drivers/probe"));
        std::thread::spawn(move || {
            while fault_at.elapsed() < Duration::from_secs(60) {
                let lane = client
                    .get(&url)
                    .send()
                    .and_then(|r| r.json::<Value>())
                    .map(|v| v["lane"].as_str().unwrap_or("").to_owned())
                    .unwrap_or_default();
                if lane != "live" && !lane.is_empty() {
                    after.store(fault_at.elapsed().as_micros() as u64, Ordering::SeqCst);
                    demoted.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut failed = 0u64;
    let mut n = b.healthy;
    while !demoted.load(Ordering::SeqCst) && fault_at.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(
            (fault_at + every * (n - b.healthy) as u32).saturating_duration_since(Instant::now()),
        );
        match send(n, json!({"not": "a number"}))?.as_str() {
            "failed" => failed += 1,
            // Routed after the demotion: nothing live serves the capability.
            "blocked" => break,
            other => bail!("a failing push answered {other}"),
        }
        n += 1;
    }
    let _ = watcher.join();
    if !demoted.load(Ordering::SeqCst) {
        bail!("no demotion within 60 s of the fault ({failed} failing pushes)");
    }
    let after_ms = demoted_after_us.load(Ordering::SeqCst) as f64 / 1000.0;
    println!(
        "bench demotion: {} healthy pushes at {} req/s, then every push failed",
        b.healthy, b.rate
    );
    println!(
        "  demoted {after_ms:.1} ms after the first failing request, after {failed} failing pushes (goal: within 1 s or 50 calls)"
    );
    Ok(())
}
