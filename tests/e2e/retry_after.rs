//! Every 429 and every 503 carries `Retry-After` with `http.retry_after_seconds`, in the
//! header and in the problem document: an actor restarting or overloaded, a node not
//! ready, a halted journal, a node shutting down.

use axon_harness::{echo_manifest, expect_problem, wait_until, Fault, NodeStatus, TestNode};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const DRIVER: &str = "echo-small";
const CAPABILITY: &str = "urn:axon:cap:echo-small";

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
        .driver(&echo_manifest(DRIVER, 3))
        .config(|c| {
            c.http.retry_after_seconds = RETRY;
            c.http.workers = 4;
        })
        .start();
    // A panic puts the driver into its backoff: it is unavailable and the node not ready.
    node.inject(DRIVER, Fault::Panic, Some(1));
    let v: serde_json::Value = node.act(CAPABILITY, &json!(1)).json().unwrap();
    assert_eq!(
        v["status"], "blocked",
        "the twin panicked: nothing acted: {v}"
    );
    node.wait_for_status(DRIVER, NodeStatus::Restarting, Duration::from_secs(10))
        .unwrap();
    assert_retry(node.act(CAPABILITY, &json!(2)), 503, "unavailable");
    assert_retry(node.get("/readyz"), 503, "not-ready");
    node.finish_backoff(DRIVER).unwrap();
    assert_eq!(node.get("/readyz").status(), 200);

    // The driver holds one intent's prediction until the clock moves (that intent keeps
    // one slot for its push); one more intent (two slots) fills the mailbox of three.
    node.inject(DRIVER, Fault::Delay(Duration::from_secs(1)), Some(1));
    let send = |i: u32| {
        let url = node.url("/v1/act");
        let token = node.admin_token.clone();
        std::thread::spawn(move || {
            axon_drivers::tls::client_builder()
                .build()
                .unwrap()
                .post(url)
                .bearer_auth(token)
                .json(&json!({"capability": CAPABILITY, "args": {"held": i}}))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let mut held = vec![send(0)];
    wait_until(
        "the driver holds the first prediction",
        Duration::from_secs(20),
        || !node.fault_armed(DRIVER),
    )
    .unwrap();
    held.push(send(1));
    wait_until(
        "the driver's mailbox is full",
        Duration::from_secs(20),
        || {
            node.actor(DRIVER)
                .and_then(|a| a.mailbox)
                .is_some_and(|m| m.depth == 3)
        },
    )
    .unwrap();
    assert_retry(
        node.act(CAPABILITY, &json!("one too many")),
        429,
        "overloaded",
    );
    node.advance(Duration::from_secs(1));
    let statuses: Vec<u16> = held.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(statuses, [200, 200]);
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
    let c = axon_drivers::tls::client_builder().build().unwrap();
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
