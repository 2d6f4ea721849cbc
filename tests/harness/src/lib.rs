//! `axon-harness`: the actor-level test harness. Start a whole Axon node, or just a
//! subtree of your own actors, in-process; load your own driver manifests and call them
//! through `POST /v1/act`; move their lanes; move the clock by hand; inject faults into
//! any actor by name; wait for conditions; read the supervision tree, the metrics and the
//! replay capsules, and replay them.
//!
//! Axon's own tests use it, and so can yours: add `axon-harness` as a dev-dependency.
//!
//! Your own driver, through the one door:
//!
//! ```
//! use axon_harness::{echo_manifest, Fault, TestNode};
//! use serde_json::json;
//!
//! // Any manifest text, as in config/drivers/*.toml; this one is an echo driver named
//! // "mine", live from its first load, serving urn:axon:cap:mine.
//! let node = TestNode::builder().driver(&echo_manifest("mine", 16)).start();
//! let v: serde_json::Value = node.act("urn:axon:cap:mine", &json!({"n": 1})).json().unwrap();
//! assert_eq!((v["status"].as_str(), v["driver"].as_str()), (Some("ok"), Some("mine")));
//! // Its capsule replays bit for bit.
//! let action = v["action_id"].as_str().unwrap();
//! assert_eq!(node.replay(action).unwrap(), json!({"n": 1}));
//! // Out of live service, nothing acts for its capability.
//! node.move_lane("mine", "demote", "shadow", "a test").unwrap();
//! let v: serde_json::Value = node.act("urn:axon:cap:mine", &json!(2)).json().unwrap();
//! assert_eq!(v["status"], "blocked");
//! node.move_lane("mine", "promote", "live", "back").unwrap();
//! // A fault by name: its next message panics (the twin), so nothing acts.
//! node.inject("mine", Fault::Panic, Some(1));
//! let v: serde_json::Value = node.act("urn:axon:cap:mine", &json!(3)).json().unwrap();
//! assert_eq!(v["status"], "blocked");
//! node.shutdown();
//! ```
//!
//! A node on a free port with a temporary data directory:
//!
//! ```no_run
//! use axon_harness::{Fault, TestNode};
//! use std::time::Duration;
//!
//! let node = TestNode::builder().manual_clock().start();
//! node.inject("echo", Fault::Panic, Some(1));
//! let res = node.echo(&serde_json::json!({"hi": 1}));
//! // The driver's twin panicked: nothing acted, and the action says so at once.
//! let v: serde_json::Value = res.json().unwrap();
//! assert_eq!(v["status"], "blocked");
//! // The supervisor restarts echo after its backoff, on the test's clock:
//! node.finish_backoff("echo").unwrap();
//! assert_eq!(node.actor("echo").unwrap().restarts_total, 1);
//! assert_eq!(node.echo(&serde_json::json!(2)).status(), 200);
//! node.shutdown();
//! ```
//!
//! A subtree of your own workers, without HTTP:
//!
//! ```
//! use axon_harness::TestTree;
//! use axon_supervisors::*;
//! use std::time::Duration;
//!
//! struct Doubler;
//! impl Worker for Doubler {
//!     type Request = u64;
//!     type Response = u64;
//!     fn handle(&mut self, n: u64, _: &mut WorkerContext) -> Result<u64, WorkerError> {
//!         Ok(2 * n)
//!     }
//! }
//!
//! let tree = TestTree::start(|env| {
//!     let (child, doubler) = worker(env, WorkerSpec {
//!         id: "doubler".into(),
//!         restart: RestartType::Permanent,
//!         shutdown: Shutdown::Timeout(Duration::from_secs(1)),
//!         mailbox_capacity: 4,
//!         factory: || Ok(Doubler),
//!     });
//!     (TestTree::one_for_one("top", vec![child]), doubler)
//! });
//! assert_eq!(tree.call(tree.handle(), 21), Ok(42));
//! tree.inject("doubler", Fault::Panic, Some(1));
//! assert!(tree.call(tree.handle(), 1).is_err());
//! tree.finish_backoff("doubler").unwrap(); // waits for the backoff, then moves the clock
//! assert_eq!(tree.actor("doubler").unwrap().restarts_total, 1);
//! assert_eq!(tree.call(tree.handle(), 2), Ok(4));
//! ```

/// The capability of the built-in echo driver.
pub const ECHO: &str = "urn:axon:cap:echo";

use axon::config::Config;
use axon::node::NodeOptions;
use axon_protocols::NodeSnapshot;
use axon_supervisors::{
    BackoffPolicy, CallError, CallOptions, ChildSpec, Env, Exit, FaultInjector, Intensity,
    ManualClock, SharedClock, StopLevel, Strategy, SupervisorSpec, SystemClock, TreeNode, Worker,
    WorkerRef,
};
use prometheus::Registry;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

pub use axon_protocols::NodeStatus;
pub use axon_supervisors::Fault;

/// True for an `ActionResult` that was `ok`, or `blocked` because the driver it was
/// routed to changed lanes before its dispatch was journaled (a trial that concluded
/// meanwhile, say): nothing ran, and the node said why. A test that sends intents while a
/// trial may conclude takes either.
pub fn ok_or_moved_before_dispatch(result: &serde_json::Value) -> bool {
    result["status"] == "ok"
        || (result["status"] == "blocked"
            && result["reason"]
                .as_str()
                .is_some_and(|r| r.contains("before the action was dispatched: nothing ran")))
}

/// Polls `cond` every few milliseconds until it holds or `deadline` (real time) passes.
pub fn wait_until(
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), String> {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!("timed out after {deadline:?} waiting until {what}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The clock a harness runs on: real time, or time that moves when the test says.
#[derive(Clone)]
enum TestClock {
    System(SharedClock),
    Manual(ManualClock),
}

impl TestClock {
    fn new(manual: bool) -> Self {
        if manual {
            TestClock::Manual(ManualClock::new(SystemTime::now()))
        } else {
            TestClock::System(SystemClock::shared())
        }
    }
    fn shared(&self) -> SharedClock {
        match self {
            TestClock::System(c) => c.clone(),
            TestClock::Manual(m) => Arc::new(m.clone()),
        }
    }
    fn advance(&self, d: Duration) {
        match self {
            TestClock::Manual(m) => m.advance(d),
            TestClock::System(_) => {
                panic!("advance() needs a manual clock: build with .manual_clock()")
            }
        }
    }
}

/// What both a [`TestNode`] and a [`TestTree`] expose (through `Deref`): the live tree, the
/// faults, the clock and the metrics.
pub struct TreeView {
    tree: Arc<TreeNode>,
    clock: TestClock,
    faults: FaultInjector,
    registry: Registry,
}

impl TreeView {
    /// Arms `fault` for the next `times` messages of `actor` (`None`: until cleared).
    pub fn inject(&self, actor: &str, fault: Fault, times: Option<u32>) {
        self.faults.inject(actor, fault, times);
    }

    /// True while a fault is armed for `actor` (a counted fault disarms once used up).
    pub fn fault_armed(&self, actor: &str) -> bool {
        self.faults.is_armed(actor)
    }

    pub fn clear_faults(&self, actor: &str) {
        self.faults.clear(actor);
    }

    /// Moves the manual clock. Panics on real time.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// With a manual clock: how many sleeps (backoffs, injected delays, stop timeouts)
    /// wait for the clock to move.
    pub fn timers_waiting(&self) -> usize {
        match &self.clock {
            TestClock::Manual(m) => m.sleepers(),
            TestClock::System(_) => 0,
        }
    }

    /// The whole supervision tree now.
    pub fn tree(&self) -> NodeSnapshot {
        self.tree.snapshot(&self.clock.shared())
    }

    /// One node of the tree.
    pub fn actor(&self, id: &str) -> Option<NodeSnapshot> {
        self.tree().find(id).cloned()
    }

    /// The live tree, for conditions that should not copy it.
    pub fn tree_node(&self) -> &Arc<TreeNode> {
        &self.tree
    }

    /// One metric sample (see [`metric_value`]).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_value(&self.registry, name, labels)
    }

    /// The metrics registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Waits (real time) until the actor `id` has `status`.
    pub fn wait_for_status(
        &self,
        id: &str,
        status: NodeStatus,
        deadline: Duration,
    ) -> Result<(), String> {
        wait_until(&format!("{id} is {status}"), deadline, || {
            self.actor(id).map(|n| n.status) == Some(status)
        })
    }

    /// With a manual clock: waits until `id` waits out its restart backoff, moves the
    /// clock to the end of it, and waits until `id` runs again.
    pub fn finish_backoff(&self, id: &str) -> Result<(), String> {
        let TestClock::Manual(clock) = &self.clock else {
            return Err("finish_backoff needs a manual clock".into());
        };
        let limit = Duration::from_secs(10);
        self.wait_for_status(id, NodeStatus::Restarting, limit)?;
        wait_until("the supervisor waits for its backoff", limit, || {
            clock.next_deadline().is_some()
        })?;
        let now = axon_supervisors::Clock::now(clock);
        if let Some(at) = clock.next_deadline() {
            clock.advance(at.saturating_sub(now));
        }
        self.wait_for_status(id, NodeStatus::Running, limit)
    }
}

/// The thread an actix system runs on, and how to stop it.
struct SystemThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Exit>>,
}

impl SystemThread {
    fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn stop_and_join(&mut self) -> Exit {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap_or(Exit::Killed),
            None => Exit::Shutdown,
        }
    }
}

impl Drop for SystemThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The value of one sample of `name` whose labels include every pair in `labels`
/// (a counter's or gauge's value, a histogram's count).
/// Checks the rules every problem document of Axon keeps, whatever its type: the
/// content type, the correlation id, `type` in Axon's namespace, `status` equal to the
/// status line, `title` and `detail` as text, and for a 429 or a 503 a `Retry-After`
/// header equal to the document's `retry_after_seconds`.
pub fn check_problem(status: u16, headers: &reqwest::header::HeaderMap, v: &serde_json::Value) {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|h| h.to_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/problem+json"),
        "{v}"
    );
    assert!(
        header("x-correlation-id").is_some(),
        "no correlation id: {v}"
    );
    assert!(
        v["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:axon:problem:")),
        "{v}"
    );
    assert_eq!(v["status"], status, "{v}");
    assert!(v["title"].is_string(), "{v}");
    assert!(v["detail"].is_string(), "{v}");
    if status == 429 || status == 503 {
        let retry =
            header("retry-after").unwrap_or_else(|| panic!("{status} without Retry-After: {v}"));
        assert_eq!(v["retry_after_seconds"].to_string(), retry, "{v}");
    }
}

/// Checks that `res` is the problem document of type `urn:axon:problem:{slug}` with
/// `status`, and keeps every rule of [`check_problem`]; answers the document.
pub fn expect_problem(
    res: reqwest::blocking::Response,
    status: u16,
    slug: &str,
) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status for {slug}");
    let headers = res.headers().clone();
    let v: serde_json::Value = res.json().expect("a JSON problem document");
    check_problem(status, &headers, &v);
    assert_eq!(v["type"], format!("urn:axon:problem:{slug}"), "{v}");
    v
}

/// [`expect_problem`], whose `detail` also holds `says`.
pub fn expect_problem_saying(
    res: reqwest::blocking::Response,
    status: u16,
    slug: &str,
    says: &str,
) -> serde_json::Value {
    let v = expect_problem(res, status, slug);
    assert!(
        v["detail"].as_str().is_some_and(|d| d.contains(says)),
        "the detail does not say {says:?}: {v}"
    );
    v
}

pub fn metric_value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    use prometheus::proto::MetricType;
    let family = registry.gather().into_iter().find(|f| f.name() == name)?;
    let kind = family.get_field_type();
    if !matches!(
        kind,
        MetricType::COUNTER | MetricType::GAUGE | MetricType::HISTOGRAM
    ) {
        return None;
    }
    family
        .get_metric()
        .iter()
        .find(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| match kind {
            MetricType::COUNTER => m.get_counter().get_value(),
            MetricType::GAUGE => m.get_gauge().get_value(),
            _ => m.get_histogram().get_sample_count() as f64,
        })
}

/// A service-level objective no test driver misses by accident (a minute's latency, any
/// error rate, an uplift check that needs ten thousand failures), for the manifests of
/// drivers that start live; a test of the checks sets its own.
pub const LENIENT_SLO: &str =
    "[slo]\np99_ms = 60000\nmax_error_rate = 1.0\n[slo.uplift]\nfailure_limit = 10000\n";

/// The manifest of an echo driver named `name`, serving `urn:axon:cap:<name>`, live from
/// its first load, with a mailbox of `mailbox_capacity` and a deadline of a minute (a
/// test that holds it on a manual clock is not cut short), held to [`LENIENT_SLO`]. For
/// [`TestNodeBuilder::driver`].
pub fn echo_manifest(name: &str, mailbox_capacity: u64) -> String {
    format!(
        r#"name = "{name}"
version = "1.0.0"
kind = "echo"
capability = "urn:axon:cap:{name}"
effect = "read"
risk = "low"
max_blast_radius = 0
idempotent = true
lane = "live"

[cost]
expected_ms = 0
units = 0.0

[limits]
deadline_ms = 60000
concurrency = 1
rate_per_second = 100000
max_payload_bytes = 65536
mailbox_capacity = {mailbox_capacity}

{LENIENT_SLO}"#
    )
}

/// Configures a [`TestNode`] before it starts.
pub struct TestNodeBuilder {
    config: Config,
    manual_clock: bool,
    manifests: Vec<String>,
}

impl TestNodeBuilder {
    /// Changes the node's configuration (it starts from the embedded defaults, on a free
    /// loopback port, with a temporary data directory and backoff seed 1).
    pub fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Loads a driver from the manifest `text` (TOML, as in `config/drivers/*.toml`) beside
    /// the built-in ones: the node runs it under its `drivers` supervisor and calls it
    /// through `POST /v1/act` like any other. A bad manifest makes the start fail with
    /// its key named.
    pub fn driver(mut self, text: &str) -> Self {
        self.manifests.push(text.to_owned());
        self
    }

    /// Runs supervision on a [`ManualClock`]: backoff, intensity windows, injected delays
    /// and shutdown timeouts wait for [`TestNode::advance`].
    pub fn manual_clock(mut self) -> Self {
        self.manual_clock = true;
        self
    }

    /// Starts the node on its own thread and waits until it serves.
    pub fn start(self) -> TestNode {
        self.try_start()
            .unwrap_or_else(|e| panic!("test node did not start: {e}"))
    }

    /// Like [`start`](Self::start), but returns the start error.
    pub fn try_start(mut self) -> Result<TestNode, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        // A data directory set through `config` is kept; otherwise a temporary one is used.
        if self.config.data_dir == Config::defaults().data_dir {
            self.config.data_dir = dir.path().to_owned();
        }
        let manifests = tempfile::tempdir().map_err(|e| e.to_string())?;
        if !self.manifests.is_empty() {
            for (n, text) in self.manifests.iter().enumerate() {
                let file = manifests.path().join(format!("driver-{n:03}.toml"));
                std::fs::write(&file, text).map_err(|e| e.to_string())?;
            }
            self.config
                .drivers
                .manifest_dirs
                .push(manifests.path().to_owned());
        }
        let clock = TestClock::new(self.manual_clock);
        let faults = FaultInjector::new();
        let registry = Registry::new();
        let opts = NodeOptions {
            clock: clock.shared(),
            faults: faults.clone(),
            registry: registry.clone(),
        };
        let cfg = self.config;
        let data_dir_path = cfg.data_dir.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("axon-test-node".into())
            .spawn(move || {
                actix::System::new().block_on(async move {
                    let mut node = match axon::start(&cfg, opts).await {
                        Ok(n) => n,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e:#}")));
                            return Exit::Failed(format!("{e:#}"));
                        }
                    };
                    let _ = ready_tx.send(Ok((
                        node.http_addr,
                        node.admin_token.clone(),
                        node.root.node.clone(),
                    )));
                    tokio::select! {
                        exit = &mut node.root.exit => exit.unwrap_or(Exit::Killed),
                        _ = stop_rx => node.shutdown(Duration::from_secs(30)).await,
                    }
                })
            })
            .map_err(|e| e.to_string())?;
        let (addr, token, tree) = ready_rx
            .recv()
            .map_err(|_| "the node thread ended before it started".to_owned())??;
        Ok(TestNode {
            base_url: format!("http://{addr}"),
            admin_token: token,
            h: TreeView {
                tree,
                clock,
                faults,
                registry,
            },
            client: axon_drivers::tls::client_builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| e.to_string())?,
            thread: SystemThread {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            data_dir: data_dir_path,
            _data_dir: dir,
            _manifests: manifests,
        })
    }
}

/// A whole Axon node running in this process.
pub struct TestNode {
    base_url: String,
    /// The admin token the node created in its data directory.
    pub admin_token: String,
    h: TreeView,
    client: reqwest::blocking::Client,
    thread: SystemThread,
    data_dir: std::path::PathBuf,
    _data_dir: tempfile::TempDir,
    _manifests: tempfile::TempDir,
}

impl TestNode {
    pub fn builder() -> TestNodeBuilder {
        let mut config = Config::defaults();
        config.http.listen = "127.0.0.1:0".into();
        config.supervision.seed = 1;
        TestNodeBuilder {
            config,
            manual_clock: false,
            manifests: vec![],
        }
    }

    /// A node with the defaults and real time.
    pub fn start() -> TestNode {
        Self::builder().start()
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A blocking HTTP client (30 s timeout).
    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client.get(self.url(path)).send().expect("GET")
    }

    /// GET with the admin token (the routes that show intents and outputs need it).
    pub fn get_admin(&self, path: &str) -> reqwest::blocking::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .expect("GET")
    }

    /// POST JSON with the admin token (every route that appends needs it).
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::blocking::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .expect("POST")
    }

    /// `POST /v1/act` with the intent `{capability, args}` and the admin token.
    pub fn act(&self, capability: &str, args: &serde_json::Value) -> reqwest::blocking::Response {
        self.post_json(
            "/v1/act",
            &serde_json::json!({"capability": capability, "args": args}),
        )
    }

    /// `POST /v1/act` of `args` to the built-in echo driver (`urn:axon:cap:echo`).
    pub fn echo(&self, args: &serde_json::Value) -> reqwest::blocking::Response {
        self.act(ECHO, args)
    }

    /// One action from the journal (`GET /v1/actions/{id}`): its intent, dispatch, result
    /// and capsule.
    pub fn action(&self, action_id: &str) -> Result<serde_json::Value, String> {
        let res = self.get_admin(&format!("/v1/actions/{action_id}"));
        let status = res.status();
        let v: serde_json::Value = res.json().map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(v)
        } else {
            Err(format!("{status}: {v}"))
        }
    }

    /// Replays the push of `action_id` offline from its capsule, as `axon replay` does:
    /// the driver is rebuilt from its build's manifest (which `GET /v1/actions/{id}` puts in
    /// the capsule from the build's first lane change). Answers the output
    /// the replay gives, once it is the recorded one byte for byte; an error otherwise.
    pub fn replay(&self, action_id: &str) -> Result<serde_json::Value, String> {
        let v = self.action(action_id)?;
        let capsule: axon_protocols::capsule::ReplayCapsule =
            serde_json::from_value(v["capsule"].clone())
                .map_err(|e| format!("action {action_id} has no replay capsule: {e}"))?;
        let replayed = axon_drivers::replay(&capsule, &self.data_dir().join("modules"))?;
        let bytes =
            |v: &serde_json::Value| axon_protocols::canonical::to_vec(v).map_err(|e| e.to_string());
        if bytes(&replayed)? != bytes(&capsule.output)? {
            return Err(format!(
                "action {action_id} replays to {replayed}, not to the recorded {}",
                capsule.output
            ));
        }
        Ok(replayed)
    }

    /// Moves driver `name`'s lane (`way` is `promote` or `demote`) to `to`, for
    /// `reason`; answers the journaled lane change.
    pub fn move_lane(
        &self,
        name: &str,
        way: &str,
        to: &str,
        reason: &str,
    ) -> Result<serde_json::Value, String> {
        let res = self.post_json(
            &format!("/v1/drivers/{name}/{way}"),
            &serde_json::json!({"to": to, "reason": reason}),
        );
        let status = res.status();
        let v: serde_json::Value = res.json().map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(v["change"].clone())
        } else {
            Err(format!("{status}: {v}"))
        }
    }

    /// The signed checkpoint the node serves, once it covers at least `size` entries:
    /// checkpoints are logged on a schedule (within `journal.checkpoint_min_interval_ms` of
    /// a commit), so this waits for one, at most 20 s.
    pub fn checkpoint_covering(&self, size: u64) -> String {
        let mut note = String::new();
        wait_until(
            &format!("a checkpoint of {size} entries"),
            Duration::from_secs(20),
            || {
                note = self
                    .get("/v1/journal/checkpoint")
                    .text()
                    .unwrap_or_default();
                note.lines()
                    .nth(1)
                    .and_then(|l| l.parse::<u64>().ok())
                    .is_some_and(|n| n >= size)
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        note
    }

    /// POST with the admin token.
    pub fn post_admin(&self, path: &str) -> reqwest::blocking::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .expect("POST")
    }

    /// True once the node's thread has ended (its root exited).
    pub fn has_stopped(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the node to stop on its own (the root failed) and returns the root's exit.
    pub fn wait_exit(mut self, deadline: Duration) -> Result<Exit, String> {
        wait_until("the node stops", deadline, || self.has_stopped())?;
        Ok(self.thread.stop_and_join())
    }

    /// Stops the node gracefully and returns the root's exit.
    pub fn shutdown(mut self) -> Exit {
        self.thread.stop_and_join()
    }
}

impl std::ops::Deref for TestNode {
    type Target = TreeView;
    fn deref(&self) -> &TreeView {
        &self.h
    }
}

/// A subtree of your own actors running in this process, without HTTP.
pub struct TestTree<H> {
    h: TreeView,
    env: Env,
    handle: H,
    rt: tokio::runtime::Runtime,
    thread: SystemThread,
}

impl TestTree<()> {
    /// A `one_for_one` supervisor with intensity 3 in 5 s and backoff from 100 ms to 1 s,
    /// no jitter.
    pub fn one_for_one(id: &str, children: Vec<ChildSpec>) -> SupervisorSpec {
        SupervisorSpec {
            id: id.into(),
            strategy: Strategy::OneForOne,
            intensity: Intensity {
                max_restarts: 3,
                period: Duration::from_secs(5),
            },
            backoff: BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(1), 0.0),
            command_capacity: 8,
            children,
        }
    }
}

impl<H: Send + 'static> TestTree<H> {
    /// Starts the tree `build` returns, on a manual clock, and keeps what else it returns
    /// (typically the [`WorkerRef`]s to call) as [`handle`](Self::handle).
    pub fn start(build: impl FnOnce(&Env) -> (SupervisorSpec, H) + Send + 'static) -> Self {
        let clock = TestClock::new(true);
        let registry = Registry::new();
        let env = Env::new(&registry, clock.shared(), 1).expect("metrics");
        let env2 = env.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix::System::new().block_on(async move {
                let (spec, handle) = build(&env2);
                let mut root = match axon_supervisors::start_root(&env2, spec).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.clone()));
                        return Exit::Failed(e.to_string());
                    }
                };
                let _ = ready_tx.send(Ok((root.node.clone(), handle)));
                tokio::select! {
                    exit = &mut root.exit => exit.unwrap_or(Exit::Killed),
                    _ = stop_rx => {
                        root.stop(StopLevel::Graceful);
                        root.exit.await.unwrap_or(Exit::Killed)
                    }
                }
            })
        });
        let (tree, handle) = ready_rx
            .recv()
            .expect("the tree thread ended before it started")
            .unwrap_or_else(|e| panic!("the tree did not start: {e}"));
        let faults = env.faults.clone();
        Self {
            h: TreeView {
                tree,
                clock,
                faults,
                registry,
            },
            env,
            handle,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for calls"),
            thread: SystemThread {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
        }
    }

    /// What the build function returned besides the spec.
    pub fn handle(&self) -> &H {
        &self.handle
    }

    /// The environment the tree runs in (clock, metrics, faults).
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Calls a worker of the tree and waits (up to 5 s) for its answer.
    pub fn call<W: Worker>(
        &self,
        w: &WorkerRef<W>,
        req: W::Request,
    ) -> Result<W::Response, CallError> {
        let opts = CallOptions {
            deadline: Duration::from_secs(5),
            correlation_id: None,
        };
        self.rt.block_on(w.call(req, &opts))
    }

    /// Stops the tree and returns the root's exit.
    pub fn shutdown(mut self) -> Exit {
        self.thread.stop_and_join()
    }
}

impl<H> std::ops::Deref for TestTree<H> {
    type Target = TreeView;
    fn deref(&self) -> &TreeView {
        &self.h
    }
}
