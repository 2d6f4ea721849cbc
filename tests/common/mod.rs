//! Helpers shared by the end-to-end tests. Each test binary uses some of them.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A `file` driver, `ledger`, live from its first load, appending to `records/` beside
/// its manifest, for `urn:axon:cap:ledger.append`.
pub const LEDGER_MANIFEST: &str = r#"name = "ledger"
version = "1.0.0"
kind = "file"
capability = "urn:axon:cap:ledger.append"
effect = "write"
risk = "medium"
max_blast_radius = 1
idempotent = false
lane = "live"
[slo]
p99_ms = 60000
max_error_rate = 1.0
[slo.uplift]
failure_limit = 10000
[cost]
expected_ms = 5
units = 1.0
[limits]
deadline_ms = 5000
concurrency = 1
rate_per_second = 1000
max_payload_bytes = 65536
mailbox_capacity = 64
[file]
dir = "records"
"#;

/// Responses by class: `[2xx, 429, anything else]`.
pub type Counts = Arc<[AtomicU64; 3]>;

/// Starts `threads` clients that each send `per_thread` intents to the echo driver of
/// `capability` one after the other, checking every 200 echoes its input and every 429
/// is an `overloaded` problem.
pub fn flood(
    base: &str,
    token: &str,
    capability: &str,
    threads: usize,
    per_thread: usize,
    counts: &Counts,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|t| {
            let base = base.to_owned();
            let token = token.to_owned();
            let counts = counts.clone();
            let capability = capability.to_owned();
            std::thread::spawn(move || {
                let client = axon_drivers::tls::client_builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                for i in 0..per_thread {
                    let res = client
                        .post(format!("{base}/v1/act"))
                        .bearer_auth(&token)
                        .json(&json!({"capability": capability, "args": {"t": t, "i": i}}))
                        .send()
                        .unwrap();
                    let slot = match res.status().as_u16() {
                        200 => {
                            let v: Value = res.json().unwrap();
                            assert_eq!(v["status"], "ok", "{v}");
                            assert_eq!(v["output"], json!({"t": t, "i": i}));
                            0
                        }
                        429 => {
                            let v = axon_harness::expect_problem(res, 429, "overloaded");
                            assert_eq!(v["retry_after_seconds"], 1);
                            1
                        }
                        _ => 2,
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

/// An `axon run` child process on a free loopback port.
pub struct Spawned {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// What it printed on standard output up to its address.
    pub stdout_lines: Vec<String>,
    /// The admin token, from `<data-dir>/admin.token`.
    pub token: String,
}

/// Starts the built binary with `--data-dir data_dir` and `extra` arguments and waits for
/// its address. Standard error is kept for [`sigterm_and_wait`] when `keep_stderr`.
pub fn spawn_axon(data_dir: &Path, extra: &[&str], keep_stderr: bool) -> Spawned {
    let mut child = Command::new(env!("CARGO_BIN_EXE_axon"))
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(if keep_stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("spawn axon");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = vec![];
    while let Some(Ok(line)) = lines.next() {
        seen.push(line.clone());
        if let Some(addr) = line.strip_prefix("axon: listening on ") {
            let token = std::fs::read_to_string(data_dir.join("admin.token"))
                .expect("the node wrote its admin token before listening")
                .trim()
                .to_owned();
            return Spawned {
                child,
                base: addr.to_owned(),
                stdout_lines: seen,
                token,
            };
        }
    }
    let _ = child.kill();
    let status = child.wait();
    panic!("axon exited ({status:?}) before printing its address; stdout: {seen:?}");
}

/// Sends SIGTERM, waits (at most 30 s) and returns the exit code and standard error.
pub fn sigterm_and_wait(mut s: Spawned) -> (i32, String) {
    let pid = s.child.id() as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let mut status = None;
    axon_harness::wait_until("axon exits after SIGTERM", Duration::from_secs(30), || {
        status = s.child.try_wait().unwrap();
        status.is_some()
    })
    .unwrap();
    let mut err = String::new();
    if let Some(e) = s.child.stderr.as_mut() {
        std::io::Read::read_to_string(e, &mut err).unwrap();
    }
    (status.and_then(|s| s.code()).unwrap_or(-1), err)
}

/// Runs `axon audit --data-dir data_dir` with `extra` arguments; answers its exit code,
/// standard output and standard error.
pub fn audit<S: AsRef<std::ffi::OsStr>>(data_dir: &Path, extra: &[S]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_axon"))
        .args(["audit", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .output()
        .expect("run axon audit");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
