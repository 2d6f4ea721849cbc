//! `axon bench mirroring`: what mirroring a live push to a shadow adds to the live call.
//! One node serves two capabilities with the same echo driver: `plain`, live alone, and
//! `mirrored`, live with an echo shadow beside it that predicts every push. Runs against
//! the two alternate, `rounds` times, so drift in the machine falls on both alike:
//!
//! - serial: one connection, each request sent once the last is answered: the mean and
//!   the p50 and p99 of one call;
//! - loaded: `connections` clients back to back: requests per second.
//!
//! The figures are the medians over the rounds, and mirrored over plain. It measures and
//! prints; it asserts nothing.

use crate::bench_act::{load, node_with, MakeRequest};
use anyhow::{bail, Context};
use axon_drivers::manifest::ECHO_MANIFEST;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// How one run is shaped.
pub struct MirroringBench {
    /// Seconds of each run.
    pub seconds: u64,
    pub connections: usize,
    /// Pairs of runs (plain, then mirrored).
    pub rounds: usize,
}

/// The echo manifest as driver `name` of capability `cap`, in `lane`.
fn echo_as(name: &str, cap: &str, lane: &str) -> anyhow::Result<String> {
    let text = ECHO_MANIFEST
        .replace("name = \"echo\"", &format!("name = \"{name}\""))
        .replace("urn:axon:cap:echo", cap)
        .replace("lane = \"live\"", &format!("lane = \"{lane}\""));
    if !text.contains(cap) || !text.contains(&format!("name = \"{name}\"")) {
        bail!("the echo manifest no longer has the lines this benchmark rewrites");
    }
    Ok(text)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One run's figures: mean, p50 and p99 of a serial call in µs; loaded requests per
/// second.
struct Run {
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    rps: f64,
}

fn run(
    addr: SocketAddr,
    token: &str,
    cap: &'static str,
    b: &MirroringBench,
) -> anyhow::Result<Run> {
    let request = |prefix: String| -> MakeRequest {
        let token = token.to_owned();
        Arc::new(move |c, n| {
            let body = format!(
                r#"{{"capability":"{cap}","intent_id":"{prefix}-{c}-{n}","args":{{"n":{n}}}}}"#
            );
            format!(
                "POST /v1/act HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
    };
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let single = load(addr, 1, b.seconds, None, request(format!("s{nonce}")))?;
    let loaded = load(
        addr,
        b.connections,
        b.seconds,
        None,
        request(format!("l{nonce}")),
    )?;
    if single.other + loaded.other > 0 {
        bail!(
            "{cap}: {} requests were not answered 2xx",
            single.other + loaded.other
        );
    }
    Ok(Run {
        mean_us: single.elapsed.as_secs_f64() * 1e6 / single.ok.max(1) as f64,
        p50_us: single.latency.value_at_quantile(0.5) as f64,
        p99_us: single.latency.value_at_quantile(0.99) as f64,
        rps: loaded.per_second(),
    })
}

/// Runs the benchmark with its data in `base` and prints the figures.
pub fn mirroring(base: &Path, b: &MirroringBench) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("axon-bench-mirroring-")
        .tempdir_in(base)
        .with_context(|| format!("creating a directory in {}", base.display()))?;
    let manifests = dir.path().join("drivers");
    std::fs::create_dir_all(&manifests)?;
    const PLAIN: &str = "urn:axon:cap:plain";
    const MIRRORED: &str = "urn:axon:cap:mirrored";
    for (name, cap, lane) in [
        ("plain", PLAIN, "live"),
        ("mirrored", MIRRORED, "live"),
        ("mirrored-shadow", MIRRORED, "shadow"),
    ] {
        std::fs::write(
            manifests.join(format!("{name}.toml")),
            echo_as(name, cap, lane)?,
        )?;
    }
    let mut cfg = crate::Config::defaults();
    cfg.drivers.manifest_dirs = vec![manifests];
    let (addr, token) = node_with(&dir.path().join("node"), cfg)?;
    println!(
        "bench mirroring: {} rounds of {} s serial and {} s with {} connections, plain then mirrored (one echo shadow)",
        b.rounds, b.seconds, b.seconds, b.connections
    );
    let (mut plain, mut mirrored) = (vec![], vec![]);
    for _ in 0..b.rounds {
        plain.push(run(addr, &token, PLAIN, b)?);
        mirrored.push(run(addr, &token, MIRRORED, b)?);
    }
    let figures = |runs: &[Run], f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    for (what, f, unit) in [
        (
            "serial mean",
            (|r: &Run| r.mean_us) as fn(&Run) -> f64,
            "µs",
        ),
        ("serial p50", |r: &Run| r.p50_us, "µs"),
        ("serial p99", |r: &Run| r.p99_us, "µs"),
        ("loaded", |r: &Run| r.rps, "req/s"),
    ] {
        let (p, m) = (figures(&plain, f), figures(&mirrored, f));
        println!(
            "  {what:<12} plain {p:>10.1} {unit:<5}  mirrored {m:>10.1} {unit:<5}  = {:.3}x",
            m / p
        );
    }
    println!("  (goal: mirroring adds under 5% to a live call)");
    Ok(())
}
