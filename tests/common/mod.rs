//! Helpers shared by the end-to-end tests.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Responses by class: `[2xx, 429, anything else]`.
pub type Counts = Arc<[AtomicU64; 3]>;

/// Starts `threads` clients that each send `per_thread` echo requests one after the other,
/// checking every 200 echoes its input and every 429 is an `overloaded` problem.
pub fn flood(
    base: &str,
    threads: usize,
    per_thread: usize,
    counts: &Counts,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|t| {
            let base = base.to_owned();
            let counts = counts.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                for i in 0..per_thread {
                    let res = client
                        .post(format!("{base}/v1/echo"))
                        .json(&json!({"t": t, "i": i}))
                        .send()
                        .unwrap();
                    let slot = match res.status().as_u16() {
                        200 => {
                            let v: Value = res.json().unwrap();
                            assert_eq!(v["echo"], json!({"t": t, "i": i}));
                            0
                        }
                        429 => {
                            assert_eq!(res.headers()["retry-after"], "1");
                            let v: Value = res.json().unwrap();
                            assert_eq!(v["type"], "urn:axon:problem:overloaded");
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
