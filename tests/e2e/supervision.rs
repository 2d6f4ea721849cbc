//! The node's supervision seen from outside, through the echo driver: panics are caught
//! and restarted while the node keeps serving, requests queued behind a failure are never
//! handled, operators can restart actors, readiness follows the tree, and a root that
//! gives up stops the node. A fault injected into a driver hits its next message: an
//! intent's prediction (the twin) comes before its push.

use axon_harness::{expect_problem, wait_until, Fault, NodeStatus, TestNode};
use axon_supervisors::Exit;
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn a_panicking_handler_is_restarted_and_the_node_keeps_serving() {
    let node = TestNode::builder().manual_clock().start();
    assert_eq!(node.echo(&json!(1)).status(), 200);

    node.inject("echo", Fault::Panic, Some(1));
    let res = node.echo(&json!({"boom": true}));
    // The twin panicked, so nothing acted: the caller learns it from the failure itself,
    // at once, not from a deadline running out.
    assert_eq!(res.status(), 200);
    let v: Value = res.json().unwrap();
    assert_eq!(v["status"], "blocked", "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("injected panic"),
        "{v}"
    );

    // The other routes keep answering while echo waits out its backoff.
    node.wait_for_status("echo", NodeStatus::Restarting, Duration::from_secs(10))
        .unwrap();
    assert_eq!(node.get("/healthz").status(), 200);
    let res = node.echo(&json!(2));
    expect_problem(res, 503, "unavailable");
    assert_eq!(node.get("/readyz").status(), 503);

    node.finish_backoff("echo").unwrap();
    let echo = node.actor("echo").unwrap();
    assert_eq!(echo.restarts_total, 1);
    assert!(echo.last_failure.unwrap().reason.contains("injected panic"));
    let res = node.echo(&json!({"again": 3}));
    assert_eq!(res.status(), 200);
    let v: Value = res.json().unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["output"], json!({"again": 3}));
    assert!(v["barcode"].is_string() && v["action_id"].is_string());
    assert_eq!(node.get("/readyz").status(), 200);
    assert_eq!(
        node.metric("axon_supervisor_restarts_total", &[("child", "echo")]),
        Some(1.0)
    );
    assert_eq!(
        node.metric(
            "axon_supervisor_child_exits_total",
            &[("child", "echo"), ("exit", "panicked")]
        ),
        Some(1.0)
    );
    assert_eq!(node.shutdown(), Exit::Shutdown);
}

#[test]
fn an_error_is_a_failure_too() {
    let node = TestNode::builder().manual_clock().start();
    node.inject("echo", Fault::Error, Some(1));
    let v: Value = node.echo(&json!(1)).json().unwrap();
    assert_eq!(v["status"], "blocked", "{v}");
    node.finish_backoff("echo").unwrap();
    let echo = node.actor("echo").unwrap();
    assert!(echo.last_failure.unwrap().reason.contains("injected error"));
    assert_eq!(node.echo(&json!(1)).status(), 200);
}

#[test]
fn requests_queued_behind_a_failure_get_errors_and_are_not_replayed() {
    let node = TestNode::builder().manual_clock().start();
    // The first intent's prediction is held (on the manual clock) so others queue behind.
    node.inject("echo", Fault::Delay(Duration::from_secs(1)), Some(1));
    let base = node.base_url().to_owned();
    let token = node.admin_token.clone();
    let send = |i: u64| {
        let base = base.clone();
        let token = token.clone();
        std::thread::spawn(move || {
            let res = axon_drivers::tls::client_builder()
                .build()
                .unwrap()
                .post(format!("{base}/v1/act"))
                .bearer_auth(token)
                .json(&json!({"capability": axon_harness::ECHO, "args": i}))
                .send()
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().unwrap())
        })
    };
    let first = send(0);
    wait_until(
        "echo holds the first prediction",
        Duration::from_secs(10),
        || !node.fault_armed("echo"),
    )
    .unwrap();
    let queued: Vec<_> = (1..=4).map(send).collect();
    // The held intent keeps a slot for its push; each queued one holds two.
    wait_until("four intents queue", Duration::from_secs(10), || {
        node.actor("echo").unwrap().mailbox.unwrap().depth == 1 + 4 * 2
    })
    .unwrap();
    // The next message handled panics; the three behind it must not be handled.
    node.inject("echo", Fault::Panic, Some(1));
    node.advance(Duration::from_secs(1));
    // Each queued prediction failed: nothing acted.
    for t in queued {
        let (status, v) = t.join().unwrap();
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("blocked")),
            "{v}"
        );
    }
    // The first intent was dispatched, and its driver failed before its push: it did not
    // run, and says so.
    let (status, v) = first.join().unwrap();
    assert_eq!(status, 503, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("did not run"), "{v}");
    assert_eq!(
        node.metric(
            "axon_actor_messages_total",
            &[("actor", "echo"), ("outcome", "ok")]
        ),
        Some(1.0)
    );
    // The three predictions behind the failed one were dropped; the first intent's push
    // is dropped too when it was sent before the failure ended its incarnation (either
    // order is possible; both leave it not run).
    let dropped = node.metric(
        "axon_actor_messages_total",
        &[("actor", "echo"), ("outcome", "dropped")],
    );
    assert!(matches!(dropped, Some(3.0) | Some(4.0)), "{dropped:?}");
    node.finish_backoff("echo").unwrap();
    assert_eq!(node.actor("echo").unwrap().mailbox.unwrap().depth, 0);
    // Nothing was replayed into the new incarnation.
    assert_eq!(
        node.metric(
            "axon_actor_messages_total",
            &[("actor", "echo"), ("outcome", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        node.metric("axon_actions_total", &[("status", "not_run")]),
        Some(1.0)
    );
}

#[test]
fn a_hung_actor_times_out_its_callers() {
    let node = TestNode::builder().manual_clock().start();
    node.inject("echo", Fault::Hang, Some(1));
    // The twin did not answer within the driver's deadline: nothing acted.
    let v: Value = node.echo(&json!(1)).json().unwrap();
    assert_eq!(v["status"], "blocked", "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("did not answer"),
        "{v}"
    );
    assert_eq!(
        node.metric("axon_actor_call_timeouts_total", &[("actor", "echo")]),
        Some(1.0)
    );
    // The node has the hung driver killed as failed: its supervisor restarts it after its
    // backoff, and the failure counts toward its restart intensity.
    assert_eq!(
        node.metric("axon_act_driver_hung_total", &[("driver", "echo")]),
        Some(1.0)
    );
    node.finish_backoff("echo").unwrap();
    let echo = node.actor("echo").unwrap();
    assert_eq!(echo.restarts_total, 1);
    assert!(
        echo.last_failure.unwrap().reason.contains("hung"),
        "the failure names the hang"
    );
    assert_eq!(
        node.metric(
            "axon_supervisor_child_exits_total",
            &[("child", "echo"), ("exit", "killed")]
        ),
        Some(1.0)
    );
    assert_eq!(node.echo(&json!(1)).status(), 200);
}

#[test]
fn operators_restart_an_actor_over_http() {
    let node = TestNode::start();
    let res = node.post_admin("/v1/supervision/echo/restart");
    assert_eq!(res.status(), 202);
    assert_eq!(
        res.json::<Value>().unwrap(),
        json!({"actor": "echo", "status": "restart requested"})
    );
    wait_until("echo restarted", Duration::from_secs(10), || {
        node.actor("echo")
            .is_some_and(|n| n.restarts_total == 1 && n.status == NodeStatus::Running)
    })
    .unwrap();
    // An operator restart is not a failure.
    assert!(node.actor("echo").unwrap().last_failure.is_none());
    let res = node.post_admin("/v1/supervision/drivers/restart");
    assert_eq!(res.status(), 202);
    wait_until("drivers restarted", Duration::from_secs(10), || {
        node.actor("drivers").is_some_and(|n| n.restarts_total == 1)
            && node.tree_node().all_running()
    })
    .unwrap();
    assert_eq!(node.echo(&json!(1)).status(), 200);
}

#[test]
fn the_tree_shows_every_node_with_its_state() {
    let node = TestNode::start();
    let tree: Value = node.get("/v1/supervision").json().unwrap();
    assert_eq!(tree["id"], "root");
    assert_eq!(tree["strategy"], "one_for_one");
    assert_eq!(tree["status"], "running");
    let ids: Vec<&str> = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["core", "drivers", "http"]);
    assert_eq!(tree["children"][0]["strategy"], "rest_for_one");
    assert_eq!(tree["children"][0]["children"][0]["id"], "journal");
    let echo = &tree["children"][1]["children"][0];
    assert_eq!(echo["id"], "echo");
    assert_eq!(echo["kind"], "worker");
    assert_eq!(echo["restart"], "permanent");
    assert_eq!(echo["mailbox"], json!({"depth": 0, "capacity": 1024}));
    assert_eq!(echo["restarts_in_window"], 0);
    assert_eq!(echo["last_failure"], Value::Null);
}

#[test]
fn when_the_root_gives_up_the_node_stops_and_says_why() {
    let node = TestNode::builder()
        .config(|c| {
            c.supervision.core.max_restarts = 1;
            c.supervision.core.min_backoff_ms = 0;
            c.supervision.core.max_backoff_ms = 0;
            c.supervision.root.max_restarts = 0;
        })
        .start();
    node.inject("journal", Fault::Panic, None);
    // First panic: restarted. Second: core exceeds its intensity and fails; the root
    // (allowed no restarts) gives up too. (A driver cannot do this: its failures stay its
    // own.)
    for _ in 0..2 {
        let _ = node
            .client()
            .post(node.url("/v1/journal/notes"))
            .bearer_auth(&node.admin_token)
            .json(&json!({"text": "boom"}))
            .send();
        let _ = wait_until(
            "the journal is down or back",
            Duration::from_secs(5),
            || {
                node.has_stopped()
                    || node
                        .actor("journal")
                        .is_some_and(|n| n.status == NodeStatus::Running && n.restarts_total > 0)
            },
        );
    }
    let exit = node.wait_exit(Duration::from_secs(20)).unwrap();
    let Exit::Failed(reason) = exit else {
        panic!("expected the root to fail, got {exit:?}");
    };
    assert!(
        reason.starts_with(
            "root: child core failed: core: child journal panicked: injected panic in journal"
        ),
        "{reason}"
    );
    assert!(reason.contains("restart intensity exceeded"), "{reason}");
}

#[test]
fn shutdown_lets_in_flight_requests_finish_first() {
    let node = TestNode::start();
    // Echo takes 300 ms (real time) for the next message: the intent's prediction.
    node.inject("echo", Fault::Delay(Duration::from_millis(300)), Some(1));
    let url = node.url("/v1/act");
    let token = node.admin_token.clone();
    let in_flight = std::thread::spawn(move || {
        axon_drivers::tls::client_builder()
            .build()
            .unwrap()
            .post(url)
            .bearer_auth(token)
            .json(&json!({"capability": axon_harness::ECHO, "args": "late"}))
            .send()
            .map(|r| r.status().as_u16())
    });
    wait_until(
        "echo is handling the request",
        Duration::from_secs(10),
        || !node.fault_armed("echo"),
    )
    .unwrap();
    assert_eq!(node.shutdown(), Exit::Shutdown);
    assert_eq!(in_flight.join().unwrap().unwrap(), 200);
}
