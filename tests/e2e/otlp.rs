//! Traces leave the node over OTLP/HTTP when `--otlp-endpoint` is given: a stand-in
//! collector on loopback receives the spans of HTTP requests and actor hops, with their
//! correlation ids.

use crate::common::{sigterm_and_wait, spawn_axon};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Accepts OTLP/HTTP posts and forwards (path, body) of each.
fn collector() -> (String, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            let _ = tx.send((path, body));
        }
    });
    (format!("http://{addr}/v1/traces"), rx)
}

#[test]
fn spans_with_correlation_ids_reach_the_collector() {
    let (endpoint, received) = collector();
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_axon(dir.path(), &["--otlp-endpoint", &endpoint], false);
    let res = axon_drivers::tls::client_builder().build().unwrap()
        .post(format!("{}/v1/act", node.base))
        .bearer_auth(&node.token)
        .header("x-correlation-id", "otlp-probe-1")
        .json(&serde_json::json!({"capability": "urn:axon:cap:echo", "args": serde_json::json!({"x": 1})}))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    // SIGTERM: the node flushes its spans on the way out.
    assert_eq!(sigterm_and_wait(node).0, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut bodies = Vec::new();
    while let Ok((path, body)) =
        received.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        assert_eq!(path, "/v1/traces");
        bodies.extend(body);
        let count = |needle: &[u8]| {
            bodies
                .windows(needle.len())
                .filter(|w| *w == needle)
                .count()
        };
        // The HTTP span and the echo actor's span each carry the correlation id.
        if count(b"otlp-probe-1") >= 2 && count(b"echo") >= 1 {
            return;
        }
    }
    panic!(
        "the collector never saw both spans with the correlation id ({} bytes)",
        bodies.len()
    );
}
