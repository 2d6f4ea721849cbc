//! Node assembly: the supervision tree of one Axon node and the HTTP server inside it.
//!
//! ```text
//! root (one_for_one)
//! ├── core (rest_for_one)
//! │   └── journal   the journal (on its own thread: it waits on fdatasync)
//! ├── drivers (one_for_one)
//! │   └── <name>    one worker per driver manifest (echo is built in), each on its own thread
//! └── http          the admin HTTP server (started last, stopped first)
//! ```

use crate::admin_token::{self, AdminAuth};
use crate::api::{AppState, HttpMetrics};
use crate::config::{Config, SupervisorConfig};
use actix_web::{web, HttpServer};
use anyhow::Context;
use axon_actors::act::{Act, ActConfig};
use axon_actors::journal::{
    Journal, JournalClient, JournalConfig, JournalMetrics, JournalReader, JournalShared,
};
use axon_actors::lanes::{Lanes, PromotionGates, ShadowGate};
use axon_drivers::manifest::Manifest;
use axon_supervisors::*;
use prometheus::Registry;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// What can be injected into a node: the clock, the faults, the metrics registry.
pub struct NodeOptions {
    pub clock: SharedClock,
    pub faults: FaultInjector,
    pub registry: Registry,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            clock: SystemClock::shared(),
            faults: FaultInjector::new(),
            registry: Registry::new(),
        }
    }
}

/// A running node.
pub struct Node {
    pub root: Root,
    /// The address the HTTP server is bound to (the real port when 0 was asked for).
    pub http_addr: SocketAddr,
    pub admin_token: String,
    /// True when this start created the admin token (print it once).
    pub admin_token_created: bool,
    pub env: Env,
    pub registry: Registry,
    /// The act pipeline and the drivers' lanes.
    pub act: Arc<Act>,
    pub journal: JournalClient,
    pub shutting_down: Arc<AtomicBool>,
}

/// A supervisor's spec from its section of the configuration.
fn supervisor_spec(
    cfg: &Config,
    id: &str,
    c: &SupervisorConfig,
    strategy: Strategy,
    children: Vec<ChildSpec>,
) -> SupervisorSpec {
    let mut backoff = BackoffPolicy::new(
        Duration::from_millis(c.min_backoff_ms),
        Duration::from_millis(c.max_backoff_ms),
        c.random_factor,
    );
    if c.reset_after_ms > 0 {
        backoff.reset_after = Duration::from_millis(c.reset_after_ms);
    }
    SupervisorSpec {
        id: id.into(),
        strategy,
        intensity: Intensity {
            max_restarts: c.max_restarts,
            period: Duration::from_secs(c.period_seconds),
        },
        backoff,
        command_capacity: cfg.supervision.command_capacity,
        children,
    }
}

/// BLAKE3 (hex) of the canonical JSON of the effective configuration.
pub fn config_hash(cfg: &Config) -> String {
    let canonical = serde_json::to_value(cfg)
        .ok()
        .and_then(|v| axon_protocols::canonical::to_vec(&v).ok())
        .unwrap_or_default();
    axon_protocols::journal::hex(blake3::hash(&canonical).as_bytes())
}

/// Where the node keeps the wasm modules it has loaded, by hash: beside the journal.
pub fn modules_dir(journal: &JournalConfig) -> std::path::PathBuf {
    journal
        .dir
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("modules")
}

/// Where synthesized driver manifests are written, and loaded from at start: `drivers`
/// in the data directory.
pub fn synthesized_dir(cfg: &Config) -> std::path::PathBuf {
    cfg.data_dir.join("drivers")
}

/// Where red-team suites make their scratch directories: `redteam` beside the journal,
/// in the data directory.
pub fn redteam_dir(journal: &JournalConfig) -> std::path::PathBuf {
    journal
        .dir
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("redteam")
}

/// The journal's settings from the node's configuration.
pub fn journal_config(cfg: &Config) -> JournalConfig {
    let j = &cfg.journal;
    JournalConfig {
        dir: cfg.data_dir.join("journal"),
        shard: 0,
        key_name: j.key_name.clone(),
        segment_max_bytes: j.segment_max_bytes,
        preallocate_bytes: j.preallocate_bytes,
        max_entry_bytes: j.max_entry_bytes as usize,
        max_links: j.max_links as usize,
        batch_max_records: j.batch_max_records as usize,
        batch_max_wait: std::time::Duration::from_micros(j.batch_max_wait_us),
        head_every_commits: j.head_every_commits,
        checkpoint_min_interval: std::time::Duration::from_millis(j.checkpoint_min_interval_ms),
        index_cache_bytes: j.index_cache_bytes,
        index_reopen_entries: j.index_reopen_entries,
        page_max_entries: j.page_max_entries as usize,
        page_max_bytes: j.page_max_bytes as usize,
        page_scan_max_entries: j.page_scan_max_entries as usize,
        lock_wait: std::time::Duration::from_millis(j.lock_wait_ms),
    }
}

/// Starts the node's tree. Must run inside an actix `System`.
pub async fn start(cfg: &Config, opts: NodeOptions) -> anyhow::Result<Node> {
    let (token, created) = admin_token::load_or_create(&cfg.data_dir)?;
    let registry = opts.registry;
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::new(std::process::id() as i32, "axon"),
        ))
        .context("registering process metrics")?;
    let seed = match cfg.supervision.seed {
        0 => rand::random(),
        s => s,
    };
    let mut env = Env::new(&registry, opts.clock, seed).context("registering metrics")?;
    env.faults = opts.faults;
    env.bounds = Bounds {
        kill_wait: Duration::from_millis(cfg.supervision.kill_wait_ms),
        start_timeout: Duration::from_millis(cfg.supervision.start_timeout_ms),
    };

    let j = &cfg.journal;
    let journal_cfg = journal_config(cfg);
    let journal_shared: Arc<JournalShared> = Arc::default();
    let journal_metrics = JournalMetrics::new(&registry).context("registering journal metrics")?;
    let wasm_node = axon_drivers::wasm::InNode {
        stops: axon_drivers::wasm::Stops::register(&registry)
            .context("registering wasm metrics")?,
        clock: env.clock.clone(),
    };
    let (journal_child, journal) = {
        let clock = env.clock.clone();
        let shared = journal_shared.clone();
        let metrics = journal_metrics.clone();
        worker_on_own_thread(
            &env,
            WorkerSpec {
                id: "journal".into(),
                restart: RestartType::Permanent,
                shutdown: Shutdown::Timeout(Duration::from_millis(j.shutdown_timeout_ms)),
                mailbox_capacity: j.mailbox_capacity,
                factory: move || {
                    let mut journal =
                        Journal::open(journal_cfg.clone(), clock.clone(), shared.clone())
                            .map_err(|e| format!("the journal cannot open: {e}"))?;
                    journal.set_metrics(metrics.clone());
                    let r = journal.recovery();
                    tracing::info!(entries = r.entries, segments = r.segments, torn_tail = ?r.torn_tail, "journal open");
                    Ok(journal)
                },
            },
        )
    };
    // The journal's reads run beside its commit thread, on the log the journal now
    // running published: started after it, restarted with it (rest_for_one).
    let (reader_child, reader) = {
        let shared = journal_shared.clone();
        worker_on_own_thread(
            &env,
            WorkerSpec {
                id: "journal-reader".into(),
                restart: RestartType::Permanent,
                shutdown: Shutdown::Timeout(Duration::from_millis(j.shutdown_timeout_ms)),
                mailbox_capacity: j.reader_mailbox_capacity,
                factory: move || {
                    shared
                        .reader()
                        .map(JournalReader::new)
                        .ok_or_else(|| "the journal has not opened".to_owned())
                },
            },
        )
    };
    let journal = JournalClient::new(journal, reader, journal_shared.clone());
    let core = supervisor(
        &env,
        supervisor_spec(
            cfg,
            "core",
            &cfg.supervision.core,
            Strategy::RestForOne,
            vec![journal_child, reader_child],
        ),
        RestartType::Permanent,
    );
    let builder = crate::driver_load::DriverBuilder::new(cfg, wasm_node);
    let mut driver_children = vec![];
    let mut instances = vec![];
    for manifest in load_manifests(cfg)? {
        let (children, instance) = builder.build(&env, &builder.prepare(manifest)?);
        driver_children.extend(children);
        instances.push(Arc::new(instance));
    }
    // Drivers grown while the node runs are added under it, each within room kept in
    // its stop bound.
    let drivers = supervisor_with_room(
        &env,
        supervisor_spec(
            cfg,
            crate::driver_load::DRIVERS_SUPERVISOR,
            &cfg.supervision.drivers,
            Strategy::OneForOne,
            driver_children,
        ),
        RestartType::Permanent,
        builder.room(env.bounds.kill_wait),
    );
    let config_hash = config_hash(cfg);
    let act = Act::new(
        Arc::new(Lanes::new(
            instances,
            axon_supervisors::TrialPolicy {
                cool_down: Duration::from_millis(cfg.drivers.trial_after_ms),
                max_cool_down: Duration::from_millis(cfg.drivers.trial_max_wait_ms),
                max_failed_trials: cfg.drivers.max_failed_trials,
                share: cfg.drivers.trial_share,
            },
            PromotionGates::new(
                redteam_dir(&journal_config(cfg)),
                ShadowGate {
                    min_calls: cfg.drivers.promotion_min_shadow_calls,
                    min_agreement: cfg.drivers.promotion_min_agreement,
                },
                cfg.drivers.promotion_confidence,
                cfg.drivers.promotion_min_trial_calls as usize,
                env.clock.clone(),
                &registry,
            )
            .context("registering promotion gate metrics")?,
        )),
        journal.clone(),
        env.clock.clone(),
        ActConfig {
            max_in_flight: cfg.act.max_in_flight as usize,
            remembered_actions: cfg.act.remembered_actions as usize,
            journal_deadline: cfg.call_timeout(),
            late_outcome: Duration::from_millis(cfg.act.late_outcome_ms),
            page: cfg.journal.page_max_entries as usize,
            runners: cfg.http.workers,
            shadow_concurrency: cfg.drivers.shadow_concurrency as usize,
            binary_version: env!("CARGO_PKG_VERSION").into(),
            config_hash: config_hash.clone(),
        },
        seed,
        &registry,
    )
    .context("registering act metrics")?;
    builder.set_act(act.clone());
    let mut root = RootSpec::new(
        &env,
        supervisor_spec(
            cfg,
            "root",
            &cfg.supervision.root,
            Strategy::OneForOne,
            vec![core, drivers],
        ),
    );
    act.set_tree(root.node().clone());
    let shutting_down = Arc::new(AtomicBool::new(false));
    let state = web::Data::new(AppState {
        tree: root.node().clone(),
        clock: env.clock.clone(),
        act: act.clone(),
        journal: journal.clone(),
        journal_page_max_entries: cfg.journal.page_max_entries as usize,
        registry: registry.clone(),
        auth: AdminAuth::new(&token),
        http: cfg.http.clone(),
        metrics: HttpMetrics::new(&registry).context("registering HTTP metrics")?,
        shutting_down: shutting_down.clone(),
        openapi: crate::openapi::document(),
        config_hash,
        grower: Arc::new(crate::driver_load::Grower::new(cfg, builder)),
    });
    let bound = Arc::new(Mutex::new(None));
    root.push_child(http_child(state, act.clone(), cfg, bound.clone())?);
    let root = root
        .start()
        .await
        .map_err(|reason| anyhow::anyhow!("{reason}"))?;
    let http_addr = bound
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .context("the HTTP server did not bind")?;
    // The folders the tree created in the data directory (the journal's) are durable.
    crate::data_dir::sync_dir(&cfg.data_dir)?;
    Ok(Node {
        root,
        http_addr,
        admin_token: token,
        admin_token_created: created,
        env,
        registry,
        act,
        journal,
        shutting_down,
    })
}

impl Node {
    /// Stops the tree gracefully: the HTTP server first (in-flight requests finish), then
    /// the rest in reverse start order. Waits at most `grace`, then kills what is left.
    pub async fn shutdown(&mut self, grace: Duration) -> Exit {
        self.shutting_down.store(true, Ordering::Release);
        self.root.stop(StopLevel::Graceful);
        match tokio::time::timeout(grace, &mut self.root.exit).await {
            Ok(exit) => exit.unwrap_or(Exit::Killed),
            Err(_) => {
                tracing::error!(
                    grace_ms = grace.as_millis() as u64,
                    "the tree did not stop in time; killing it"
                );
                self.root.stop(StopLevel::Kill);
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.root.exit).await;
                Exit::Killed
            }
        }
    }
}

struct HttpControl {
    handle: actix_web::dev::ServerHandle,
    stopping: Arc<Mutex<Option<StopLevel>>>,
}

impl ChildControl for HttpControl {
    fn stop(&self, level: StopLevel) {
        *self.stopping.lock().unwrap_or_else(|e| e.into_inner()) = Some(level);
        let handle = self.handle.clone();
        actix::spawn(async move { handle.stop(level == StopLevel::Graceful).await });
    }
}

pub use crate::driver_load::RESERVED_IDS;

/// The built-in manifests, then those of every folder in `drivers.manifest_dirs`. Two
/// drivers of one name, or a driver named like a node of the tree, stop the start.
pub fn load_manifests(cfg: &Config) -> anyhow::Result<Vec<Manifest>> {
    let mut all: Vec<Manifest> = vec![Manifest::builtin_echo()];
    // Then the manifests grown into the data directory (`axon drivers synthesize`).
    let grown = synthesized_dir(cfg);
    let dirs = cfg.drivers.manifest_dirs.iter().cloned().chain(
        // Once, even where a configured folder is the same one by another name.
        grown.is_dir().then_some(grown.clone()).filter(|g| {
            let same = |d: &std::path::PathBuf| {
                d.canonicalize()
                    .ok()
                    .is_some_and(|d| Some(d) == g.canonicalize().ok())
            };
            !cfg.drivers.manifest_dirs.iter().any(same)
        }),
    );
    for dir in dirs {
        for m in axon_drivers::manifest::load_dir(&dir)? {
            if let Some(first) = all.iter().find(|o| o.name == m.name) {
                return Err(axon_drivers::manifest::ManifestError::Duplicate {
                    name: m.name,
                    first: first.file.clone(),
                    second: m.file,
                }
                .into());
            }
            crate::driver_load::check_loadable(cfg, &m)?;
            all.push(m);
        }
    }
    Ok(all)
}

/// The HTTP server as a supervised child. After the first bind it keeps the port it got,
/// so a restart comes back on the same address. Before its first start it has the act
/// pipeline read its lanes and actions from the journal, so the node serves only what the
/// journal says.
fn http_child(
    state: web::Data<AppState>,
    act: Arc<Act>,
    cfg: &Config,
    bound: Arc<Mutex<Option<SocketAddr>>>,
) -> anyhow::Result<ChildSpec> {
    let listen = cfg.listen_addr()?;
    let h = cfg.http.clone();
    let node = TreeNode::new(
        "http",
        ChildKind::Worker,
        None,
        Some(RestartType::Permanent),
        None,
    );
    let rebuilt = Rc::new(std::cell::Cell::new(false));
    let start: StartFn = Rc::new(move || {
        let state = state.clone();
        let bound = bound.clone();
        let h = h.clone();
        let act = act.clone();
        let rebuilt = rebuilt.clone();
        Box::pin(async move {
            if !rebuilt.get() {
                let report = act.rebuild().await.map_err(|e| {
                    StartError::Refused(format!(
                        "cannot read the lanes and actions from the journal: {e}"
                    ))
                })?;
                tracing::info!(
                    actions = report.actions,
                    marked_in_doubt = report.marked_in_doubt,
                    in_doubt = report.in_doubt,
                    "act pipeline ready"
                );
                // Drivers their checks took out of service before the stop get their
                // trials, after a full cool-down from now.
                act.schedule_trials();
                rebuilt.set(true);
            }
            let addr = bound
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or(listen);
            let server = HttpServer::new(move || crate::routes::app(state.clone()))
                .workers(h.workers)
                .max_connections(h.max_connections)
                .keep_alive(Duration::from_secs(h.keep_alive_seconds))
                .shutdown_timeout(h.shutdown_timeout_seconds)
                .disable_signals()
                .bind(addr)
                .map_err(|e| StartError::Refused(format!("cannot listen on {addr}: {e}")))?;
            let actual = *server
                .addrs()
                .first()
                .ok_or_else(|| StartError::Refused(format!("no address bound for {addr}")))?;
            *bound.lock().unwrap_or_else(|e| e.into_inner()) = Some(actual);
            let server = server.run();
            let handle = server.handle();
            let stopping = Arc::new(Mutex::new(None));
            let (exit_tx, exit_rx) = oneshot::channel();
            let asked = stopping.clone();
            actix::spawn(async move {
                let result = server.await;
                let asked = *asked.lock().unwrap_or_else(|e| e.into_inner());
                let exit = match (asked, result) {
                    (Some(StopLevel::Kill), _) => Exit::Killed,
                    (Some(_), _) => Exit::Shutdown,
                    (None, Ok(())) => {
                        Exit::Failed("the HTTP server stopped without being asked".into())
                    }
                    (None, Err(e)) => Exit::Failed(format!("the HTTP server failed: {e}")),
                };
                let _ = exit_tx.send(exit);
            });
            tracing::info!(%actual, "admin HTTP listening");
            Ok(Running {
                control: Box::new(HttpControl { handle, stopping }),
                exit: exit_rx,
            })
        })
    });
    Ok(ChildSpec {
        id: "http".into(),
        restart: RestartType::Permanent,
        shutdown: Shutdown::Timeout(Duration::from_secs(cfg.http.shutdown_timeout_seconds + 2)),
        kind: ChildKind::Worker,
        node,
        start,
        isolation: None,
    })
}
