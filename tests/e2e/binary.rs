//! End to end: the built `axon` binary starts with nothing but the defaults, answers every
//! route, refuses bad configuration with the key named, and exits 0 on SIGTERM.

use crate::common::{sigterm_and_wait, spawn_axon};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

fn client() -> reqwest::blocking::Client {
    axon_drivers::tls::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn the_binary_serves_every_route_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let r = spawn_axon(dir.path(), &[], true);
    assert!(
        r.stdout_lines
            .iter()
            .any(|l| l.starts_with("axon: admin token")),
        "the first start prints the admin token: {:?}",
        r.stdout_lines
    );
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let token = token.trim();
    let c = client();
    let get = |p: &str| c.get(format!("{}{p}", r.base)).send().unwrap();

    let res = get("/healthz");
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().unwrap()["status"], "ok");
    assert_eq!(get("/readyz").status(), 200);

    let tree: Value = get("/v1/supervision").json().unwrap();
    assert_eq!(tree["id"], "root");
    assert_eq!(tree["status"], "running");

    let res = get("/metrics");
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = res.text().unwrap();
    for name in [
        "axon_actor_mailbox_capacity{actor=\"echo\"} 1024",
        "axon_actor_mailbox_depth{actor=\"echo\"} 0",
        "axon_process_resident_memory_bytes",
        "axon_process_cpu_seconds_total",
        "axon_http_requests_total",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}");
    }

    let doc: Value = get("/openapi.json").json().unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // The served document has exactly the operations of the route table.
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(operations, axon::routes::ROUTES.len());
    // Every documented route answers (none is a 404 or a 405).
    // A note first, so that entry 0 and its barcode exist.
    let res = c
        .post(format!("{}/v1/journal/notes", r.base))
        .bearer_auth(token)
        .json(&serde_json::json!({"text": "binary test"}))
        .send()
        .unwrap();
    assert_eq!(res.status(), 201);
    let first = res.json::<Value>().unwrap();
    let (code, id) = (
        first["barcode"].as_str().unwrap(),
        first["id"].as_str().unwrap(),
    );
    // A driver call, so that an action exists.
    let echoed: Value = c
        .post(format!("{}/v1/act", r.base))
        .bearer_auth(&r.token)
        .json(&serde_json::json!({"capability": "urn:axon:cap:echo", "args": serde_json::json!({"probe": true})}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let action = echoed["action_id"].as_str().unwrap();
    // Every route of the table answers its method (none is a 404 or a 405), and one that
    // needs the admin token answers 401 without it.
    for route in axon::routes::ROUTES {
        let method = route.method.as_str();
        assert!(
            doc["paths"][route.path][method].is_object(),
            "{method} {}",
            route.path
        );
        let path = route
            .path
            .replace("{actor}", "echo")
            .replace("{index}", "0")
            .replace("{code}", code)
            .replace("{id}", id)
            .replace("{action}", action)
            .replace("{name}", "echo")
            .replace("/inclusion", "/inclusion?index=0&size=1")
            .replace("/consistency", "/consistency?from=1&to=1")
            .replace("/v1/actions", "/v1/actions?status=in_doubt")
            .replace("?status=in_doubt/", "/");
        let url = format!("{}{}", r.base, path);
        let request = |with_token: bool| {
            let mut b = c.request(route.method.http().as_str().parse().unwrap(), &url);
            if with_token {
                b = b.bearer_auth(token);
            }
            if route.request.is_some() {
                b = b.json(&match route.path {
                    "/v1/journal/notes" => serde_json::json!({"text": "probe"}),
                    "/v1/act" => serde_json::json!({"capability": "urn:axon:cap:echo", "args": {"probe": true}}),
                    "/v1/actions/{action}/resolve" => serde_json::json!({"ran": false, "reason": "probe"}),
                    "/v1/actions/{action}/rollback" => serde_json::json!({"reason": "probe"}),
                    "/v1/drivers/{name}/promote" => serde_json::json!({"to": "live", "reason": "probe"}),
                    "/v1/drivers/{name}/demote" => serde_json::json!({"to": "shadow", "reason": "probe"}),
                    "/v1/probecraft/synthesize" => serde_json::json!({
                        "openapi": {"openapi": "3.0.3", "info": {"title": "probe", "version": "1"}, "paths": {"/probe": {"get": {"operationId": "probe"}}}},
                        "operation_id": "probe",
                        "base_url": "http://127.0.0.1:9",
                    }),
                    _ => serde_json::json!({"probe": true}),
                });
            }
            b.send().unwrap()
        };
        // Echo is live: it goes to shadow first, so that the promotion has a move to make.
        if route.path == "/v1/drivers/{name}/promote" {
            let res = c
                .post(format!("{}/v1/drivers/echo/demote", r.base))
                .bearer_auth(token)
                .json(&serde_json::json!({"to": "shadow", "reason": "probe"}))
                .send()
                .unwrap();
            assert_eq!(res.status(), 200);
        }
        // The probe's action ran: there is nothing in doubt to resolve, and echo cannot
        // roll back.
        let ok_status = match route.path {
            "/v1/actions/{action}/resolve" | "/v1/actions/{action}/rollback" => 409,
            _ => route.ok_status,
        };
        if route.auth == axon::api::Auth::Admin {
            let res = request(false);
            assert_eq!(res.status(), 401, "{method} {path} without the token");
        }
        let res = request(route.auth == axon::api::Auth::Admin);
        assert_eq!(
            res.status().as_u16(),
            ok_status,
            "{method} {path} answered {}",
            res.status()
        );
        // A restart of echo (on a fresh thread of its own) takes a moment: the next
        // routes ask echo, so it runs again first.
        if route.path == "/v1/supervision/{actor}/restart" {
            axon_harness::wait_until("echo runs again", Duration::from_secs(20), || {
                let tree: Value = c
                    .get(format!("{}/v1/supervision", r.base))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                let echo = &tree["children"][1]["children"][0];
                echo["id"] == "echo" && echo["restarts_total"] == 1 && echo["status"] == "running"
            })
            .unwrap();
        }
    }

    let (code, stderr) = sigterm_and_wait(r);
    assert_eq!(code, 0, "exit code after SIGTERM; stderr:\n{stderr}");
    assert!(stderr.contains("signal=\"SIGTERM\""), "{stderr}");

    // A second start on the same data directory reuses the token and does not print it.
    let r = spawn_axon(dir.path(), &["--log-format", "json"], true);
    assert!(!r.stdout_lines.iter().any(|l| l.contains("admin token")));
    let res = client()
        .post(format!("{}/v1/supervision/echo/restart", r.base))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(res.status(), 202);
    let (code, stderr) = sigterm_and_wait(r);
    assert_eq!(code, 0);
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string());
    }
}

fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_axon"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_fails_at_start_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, err) = run_to_exit(&["run", "--data-dir", d], &[("AXON_HTTP__WORKERS", "0")]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "axon: config key `http.workers`: must be between 1 and 256 (got 0)"
    );
    let (code, err) = run_to_exit(&["run", "--data-dir", d, "--listen", "nowhere"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("config key `http.listen`"), "{err}");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[act]\nmax_in_flight = -1\n").unwrap();
    let (code, err) = run_to_exit(&["run", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("config key `act.max_in_flight`"), "{err}");
    // Space taken ahead of the journal's writes is at most a segment.
    let (code, err) = run_to_exit(
        &["run", "--data-dir", d],
        &[("AXON_JOURNAL__PREALLOCATE_BYTES", "67108865")],
    );
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "axon: config key `journal.preallocate_bytes`: must be between 0 and 67108864 (got 67108865)"
    );
}

#[test]
fn a_taken_port_stops_the_node_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn_axon(dir.path(), &[], true);
    let port = first.base.rsplit(':').next().unwrap().to_owned();
    let other = tempfile::tempdir().unwrap();
    let (code, err) = run_to_exit(
        &[
            "run",
            "--data-dir",
            other.path().to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        &[],
    );
    assert_eq!(code, 1);
    let line = err
        .lines()
        .find(|l| l.contains("node cannot start"))
        .unwrap_or_else(|| panic!("no start failure line in:\n{err}"));
    assert!(
        line.contains("root: child http failed to start: cannot listen on 127.0.0.1"),
        "{line}"
    );
    let (code, _) = sigterm_and_wait(first);
    assert_eq!(code, 0);
}

#[test]
fn drivers_check_prints_the_descriptor_or_names_the_file_and_the_key() {
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/config/drivers/echo.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_axon"))
        .args(["drivers", "check", good])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["capability"], "urn:axon:cap:echo");
    let builtin =
        axon_drivers::manifest::artifact_hash(&axon_drivers::manifest::Manifest::builtin_echo());
    assert_eq!(
        d["artifact_hash"],
        axon_protocols::journal::hex(&builtin).as_str()
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(good)
        .unwrap()
        .replace("risk = \"low\"", "risk = \"none\"");
    std::fs::write(&bad, text).unwrap();
    let (code, err) = run_to_exit(&["drivers", "check", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("driver manifest {}: key `risk`", bad.display())),
        "{err}"
    );
}

#[test]
fn drivers_are_listed_shown_and_moved_against_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_axon(dir.path(), &[], false);
    let d = dir.path().to_str().unwrap();
    let axon = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_axon"))
            .args(args)
            .args(["--url", &node.base, "--data-dir", d])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = axon(&["drivers", "list"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("echo ")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &fields[..4],
        ["echo", "live", "running", "urn:axon:cap:echo"]
    );
    let (code, out, _) = axon(&["drivers", "show", "echo"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["lane"], "live");
    let (code, out, err) = axon(&["drivers", "scorecard", "echo"]);
    assert_eq!(code, 0, "{err}");
    let card: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&card["driver"], &card["window"]["calls"]),
        (&json!("echo"), &json!(0))
    );
    let (code, _, err) = axon(&["drivers", "scorecard", "nobody"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown-driver"), "{err}");
    let (code, out, err) = axon(&[
        "drivers",
        "demote",
        "echo",
        "--to",
        "shadow",
        "--reason",
        "from the CLI",
    ]);
    assert_eq!(code, 0, "{err}");
    let change: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&change["from"], &change["to"], &change["reason"]),
        (&json!("live"), &json!("shadow"), &json!("from the CLI"))
    );
    let (code, _, err) = axon(&[
        "drivers", "promote", "echo", "--to", "retired", "--reason", "x",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("illegal-lane-move"), "{err}");
    let (code, _, err) = axon(&["drivers", "show", "nobody"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown-driver"), "{err}");
    let (code, _, err) = axon(&[
        "drivers", "promote", "echo", "--to", "live", "--reason", "back",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(sigterm_and_wait(node).0, 0);
}
