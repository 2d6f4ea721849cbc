//! Every 429 and every 503 carries `Retry-After` with `http.retry_after_seconds`, in the
//! header and in the problem document: an actor restarting or overloaded, a node not
//! ready, a halted journal, a node shutting down.

use axon_harness::{expect_problem, wait_until, Fault, NodeStatus, TestNode};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Not the default (1), so the configured value is seen.
const RETRY: u64 = 7;

/// Checks the status, the problem type and `Retry-After` in both places.
fn assert_retry(res: reqwest::blocking::Response, status: u16, slug: &str) {
    let v = expect_problem(res, status, slug);
    assert_eq!(v["retry_after_seconds"], RETRY, "{slug}: {v}");
}

#[test]
fn unavailable_not_ready_and_overloaded_carry_retry_after() {
    let node = TestNode::builder()
        .manual_clock()
        .config(|c| {
            c.http.retry_after_seconds = RETRY;
            c.actors.echo.mailbox_capacity = 2;
            c.http.workers = 4;
        })
        .start();
    // A panic puts echo into its backoff: echo is unavailable and the node not ready.
    node.inject("echo", Fault::Panic, Some(1));
    assert_eq!(node.post_json("/v1/echo", &json!(1)).status(), 500);
    node.wait_for_status("echo", NodeStatus::Restarting, Duration::from_secs(10))
        .unwrap();
    assert_retry(node.post_json("/v1/echo", &json!(2)), 503, "unavailable");
    assert_retry(node.get("/readyz"), 503, "not-ready");
    node.finish_backoff("echo").unwrap();
    assert_eq!(node.get("/readyz").status(), 200);

    // Echo holds one request until the clock moves; two more fill its mailbox.
    node.inject("echo", Fault::Delay(Duration::from_secs(1)), Some(1));
    let send = |i: u32| {
        let url = node.url("/v1/echo");
        let token = node.admin_token.clone();
        std::thread::spawn(move || {
            reqwest::blocking::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&json!({"held": i}))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let mut held = vec![send(0)];
    wait_until(
        "echo holds the first request",
        Duration::from_secs(20),
        || !node.fault_armed("echo"),
    )
    .unwrap();
    held.extend([send(1), send(2)]);
    wait_until("echo's mailbox is full", Duration::from_secs(20), || {
        node.actor("echo")
            .and_then(|a| a.mailbox)
            .is_some_and(|m| m.depth == 2)
    })
    .unwrap();
    assert_retry(
        node.post_json("/v1/echo", &json!("one too many")),
        429,
        "overloaded",
    );
    node.advance(Duration::from_secs(1));
    let statuses: Vec<u16> = held.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(statuses, [200, 200, 200]);
}

/// A node started in this process, with the flags the tests flip.
struct Started {
    base: String,
    token: String,
    halt: Arc<axon_actors::journal::JournalShared>,
    shutting_down: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(data_dir: &std::path::Path) -> Started {
    let mut cfg = axon::Config::defaults();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.http.retry_after_seconds = RETRY;
    cfg.data_dir = data_dir.to_owned();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            let mut node = axon::start(&cfg, Default::default()).await.unwrap();
            ready_tx
                .send((
                    format!("http://{}", node.http_addr),
                    node.admin_token.clone(),
                    node.journal.shared().clone(),
                    node.shutting_down.clone(),
                ))
                .unwrap();
            let _ = stop_rx.await;
            node.shutdown(Duration::from_secs(30)).await;
        })
    });
    let (base, token, halt, shutting_down) = ready_rx.recv().unwrap();
    Started {
        base,
        token,
        halt,
        shutting_down,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

#[test]
fn a_halted_journal_and_a_node_shutting_down_carry_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let c = reqwest::blocking::Client::new();
    assert_eq!(
        c.get(format!("{}/readyz", n.base)).send().unwrap().status(),
        200
    );

    n.halt.halt.halt("a write failed (test)".into());
    assert_retry(
        c.get(format!("{}/readyz", n.base)).send().unwrap(),
        503,
        "journal-halted",
    );
    assert_retry(
        c.post(format!("{}/v1/journal/notes", n.base))
            .bearer_auth(&n.token)
            .json(&json!({"text": "after the halt"}))
            .send()
            .unwrap(),
        503,
        "journal-halted",
    );

    n.shutting_down.store(true, Ordering::Release);
    assert_retry(
        c.get(format!("{}/readyz", n.base)).send().unwrap(),
        503,
        "shutting-down",
    );
}
