//! How a driver manifest becomes a supervised driver: the checks a manifest passes before
//! the node loads it, its workers under the `drivers` supervisor with their own restart
//! intensity, and the [`DriverInstance`] the act pipeline routes to. The same steps load
//! the manifests read at start and a driver grown while the node runs
//! (`POST /v1/probecraft/synthesize`, [`Grower`]).

use crate::config::Config;
use axon_actors::act::Act;
use axon_actors::lanes::{DriverInstance, LaneError};
use axon_drivers::host::Prepared;
use axon_drivers::manifest::Manifest;
use axon_drivers::probecraft::{self, Synthesis};
use axon_protocols::lane::Lane;
use axon_supervisors::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The id of the supervisor every driver's workers run under.
pub const DRIVERS_SUPERVISOR: &str = "drivers";

/// The ids of the tree's own nodes, which no driver may take.
pub const RESERVED_IDS: [&str; 6] = [
    "root",
    "core",
    "journal",
    "journal-reader",
    DRIVERS_SUPERVISOR,
    "http",
];

/// Refuses manifest `m` where the node could not load it: named like a node of the
/// tree, or able to answer more than fits in one journal entry.
pub fn check_loadable(cfg: &Config, m: &Manifest) -> anyhow::Result<()> {
    if RESERVED_IDS.contains(&m.name.as_str()) {
        anyhow::bail!(
            "driver manifest {}: key `name`: {:?} is the name of a node of the supervision tree; choose another",
            m.file.display(),
            m.name
        );
    }
    // What a driver may answer must fit in one journal entry, with its copies: an http
    // push's result holds its answer three times (the output, the capsule's output and
    // the recorded exchange, in base64); a wasm answer twice (the output and the
    // capsule's), as JSON text that may escape each byte into six.
    let answers = [
        m.http_settings
            .as_ref()
            .map(|h| ("http.max_response_bytes", h.max_response_bytes, 5)),
        m.wasm_settings
            .as_ref()
            .map(|w| ("wasm.max_stdout_bytes", w.max_stdout_bytes, 12)),
    ];
    for (key, bytes, copies) in answers.into_iter().flatten() {
        let need = bytes.saturating_mul(copies) + (64 << 10);
        if need > cfg.journal.max_entry_bytes {
            anyhow::bail!(
                "driver manifest {}: key `{key}`: {bytes} bytes would not fit a journal entry ({copies} x it + 64 KiB = {need} > journal.max_entry_bytes = {}); lower it or raise the journal's limit",
                m.file.display(),
                cfg.journal.max_entry_bytes
            );
        }
    }
    Ok(())
}

/// Makes the supervised workers and the instance of a driver from its manifest. `Send`:
/// a driver grown while the node runs is built on the `drivers` supervisor's thread.
#[derive(Clone)]
pub struct DriverBuilder {
    cfg: crate::config::DriversConfig,
    wasm: axon_drivers::wasm::InNode,
    modules: PathBuf,
    /// The act pipeline, once it exists: a driver over its own restart intensity is
    /// taken out of live service through it.
    act: Arc<OnceLock<Arc<Act>>>,
}

impl DriverBuilder {
    pub fn new(cfg: &Config, wasm: axon_drivers::wasm::InNode) -> Self {
        Self {
            cfg: cfg.drivers.clone(),
            wasm,
            modules: crate::node::modules_dir(&crate::node::journal_config(cfg)),
            act: Arc::default(),
        }
    }

    /// Hands the builder the act pipeline, once it exists.
    pub fn set_act(&self, act: Arc<Act>) {
        let _ = self.act.set(act);
    }

    /// Readies `manifest` to run, once (not at each start): a wasm module is kept by its
    /// hash in the data directory, so that `axon replay` finds the module an action ran
    /// wherever its manifest has gone since, and compiled; one that does not compile
    /// stops the load. (The manifest as written, which the artifact hash and the capsules
    /// cover, is unchanged.)
    pub fn prepare(&self, mut manifest: Manifest) -> anyhow::Result<Arc<Prepared>> {
        let file = manifest.file.clone();
        let folder = manifest.folder().to_owned();
        if let Some(w) = &mut manifest.wasm_settings {
            w.module = axon_drivers::wasm::keep_module(w, &folder, &self.modules)
                .map_err(|e| anyhow::anyhow!("driver manifest {}: {e}", file.display()))?;
        }
        let concurrency = manifest.limits.concurrency;
        Ok(Arc::new(
            Prepared::new(Arc::new(manifest), concurrency)
                .map_err(|e| anyhow::anyhow!("driver manifest {}: {e}", file.display()))?
                .in_node(&self.wasm),
        ))
    }

    /// The workers of `prepared`'s driver, as many as its concurrency, each on a thread
    /// of its own (a slow, hung or panicking driver never holds up another, the journal
    /// or the HTTP server) with its own restart intensity; and the driver they make up.
    pub fn build(&self, env: &Env, prepared: &Arc<Prepared>) -> (Vec<ChildSpec>, DriverInstance) {
        let manifest = prepared.manifest().clone();
        let d = &self.cfg;
        let mut children = vec![];
        let mut workers = vec![];
        for id in DriverInstance::worker_ids(&manifest.name, manifest.limits.concurrency) {
            let (mut child, worker) = {
                let prepared = prepared.clone();
                worker_on_own_thread(
                    env,
                    WorkerSpec {
                        id,
                        restart: RestartType::Permanent,
                        shutdown: Shutdown::Timeout(Duration::from_millis(d.shutdown_timeout_ms)),
                        mailbox_capacity: manifest.limits.mailbox_capacity,
                        factory: move || prepared.host(),
                    },
                )
            };
            let (act, name) = (self.act.clone(), manifest.name.clone());
            let evidence = json!({
                "max_restarts": d.max_restarts,
                "period_seconds": d.period_seconds,
                "cool_down_ms": d.cool_down_ms,
                "instance": worker.id(),
            });
            child.isolation = Some(Isolation {
                intensity: Intensity {
                    max_restarts: d.max_restarts,
                    period: Duration::from_secs(d.period_seconds),
                },
                cool_down: Duration::from_millis(d.cool_down_ms),
                exceeded: Rc::new(move |reason: &str| {
                    if let Some(act) = act.get().cloned() {
                        let (name, reason, evidence) =
                            (name.clone(), reason.to_owned(), evidence.clone());
                        actix::spawn(async move {
                            act.take_out_of_service(&name, &reason, "restart_intensity", evidence)
                                .await;
                        });
                    }
                }),
            });
            children.push(child);
            workers.push(worker);
        }
        let scorecard = ScorecardConfig {
            window: Duration::from_secs(d.scorecard_window_seconds),
            slices: d.scorecard_slices,
        };
        (children, DriverInstance::new(manifest, workers, scorecard))
    }

    /// The room the drivers supervisor keeps in its stop bound for the workers added
    /// while the node runs: each one's shutdown timeout and the wait for its kill.
    pub fn room(&self, kill_wait: Duration) -> Duration {
        (Duration::from_millis(self.cfg.shutdown_timeout_ms) + kill_wait)
            * self.cfg.max_added_workers as u32
    }
}

/// Why no driver was grown, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    /// The document, the operation or the asked obligations make no loadable driver.
    #[error("{0}")]
    Refused(String),
    /// A driver of its name is loaded, or named by a manifest on disk, or its file exists.
    #[error("{0}")]
    Exists(String),
    /// No room is left for drivers added while the node runs.
    #[error("{0}")]
    Limit(String),
    /// Another growth is under way, or the supervisor's commands are full: try again.
    #[error("{0}")]
    Busy(String),
    /// The drivers supervisor is not running (it is restarting).
    #[error("{0}")]
    Unavailable(String),
    /// The drivers supervisor did not add the driver in time: nothing was added.
    #[error("{0}")]
    Timeout(String),
    /// The journal did not take the record of it: nothing was loaded.
    #[error("{0}")]
    Unrecorded(axon_actors::journal::Refusal),
    /// The driver is loaded and its manifest kept, but its first lane was not journaled:
    /// it is in no lane (routed nowhere) until the next start records it.
    #[error("driver {driver:?} is loaded and its manifest kept, but its first lane was not journaled: it serves nothing until the next start places it: {error}")]
    Unplaced {
        driver: String,
        error: Box<LaneError>,
    },
    #[error("{0}")]
    Failed(String),
}

/// Where a grown manifest named `name` is written: `drivers/<name>.toml` in the data
/// directory, which the node loads at start.
pub fn grown_file(cfg: &Config, name: &str) -> PathBuf {
    crate::node::synthesized_dir(cfg).join(format!("{name}.toml"))
}

/// Writes grown manifest `s` to `file` after [`check_grown`]'s checks. Whole or not at
/// all: written beside it, fsynced, linked into place, never over a file.
pub fn write_grown(
    cfg: &Config,
    s: &Synthesis,
    file: &Path,
    loaded: &[String],
) -> Result<(), GrowError> {
    check_grown(cfg, s, file, loaded)?;
    create_grown(s, file)
}

/// The checks the node's next start makes of grown manifest `s`, to be written to
/// `file`, so that a manifest the node would refuse is never written: not too large, not
/// named like a node of the tree, nor like a driver in `loaded` or in a manifest on disk,
/// no file there already.
pub fn check_grown(
    cfg: &Config,
    s: &Synthesis,
    file: &Path,
    loaded: &[String],
) -> Result<(), GrowError> {
    let max = axon_drivers::manifest::MAX_MANIFEST_BYTES;
    if s.toml.len() as u64 > max {
        return Err(GrowError::Refused(format!(
            "the grown manifest is {} bytes, more than a manifest may be ({max})",
            s.toml.len()
        )));
    }
    let name = &s.manifest.name;
    check_loadable(cfg, &s.manifest).map_err(|e| GrowError::Refused(e.to_string()))?;
    if loaded.contains(name) {
        return Err(GrowError::Exists(format!(
            "a driver named {name:?} is already loaded"
        )));
    }
    let on_disk = crate::node::load_manifests(cfg).map_err(|e| {
        GrowError::Failed(format!(
            "the manifests on disk, whose names a new one must not take, do not load: {e}"
        ))
    })?;
    if let Some(m) = on_disk.iter().find(|m| &m.name == name) {
        return Err(GrowError::Exists(format!(
            "a driver named {name:?} is already named by {}",
            m.file.display()
        )));
    }
    if file.exists() {
        return Err(GrowError::Exists(format!(
            "{} exists: an existing file is never overwritten",
            file.display()
        )));
    }
    Ok(())
}

/// Creates `file` holding grown manifest `s`, never over a file.
fn create_grown(s: &Synthesis, file: &Path) -> Result<(), GrowError> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| GrowError::Refused("the manifest's file has no name".into()))?;
    crate::data_dir::create(dir).map_err(|e| GrowError::Failed(format!("{e:#}")))?;
    // Never over a file, even one made since the checks (by the offline command).
    match axon_actors::durable::create_file(dir, file_name, s.toml.as_bytes(), 0o644) {
        Ok(()) => Ok(()),
        Err((at, e)) if e.kind() == std::io::ErrorKind::AlreadyExists && at == file => {
            Err(GrowError::Exists(format!(
                "{} exists: an existing file is never overwritten",
                file.display()
            )))
        }
        Err((at, e)) => {
            // In place, but its folder not fsynced: not written, as far as anyone knows.
            if at == dir {
                remove(file);
            }
            Err(GrowError::Failed(format!(
                "cannot create {}: {e}",
                at.display()
            )))
        }
    }
}

/// What `POST /v1/probecraft/synthesize` is asked.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthesizeRequest {
    /// The OpenAPI 3 document, as JSON.
    pub openapi: Value,
    pub operation_id: String,
    /// Where the service is; the document's first server when left out.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The precondition and postcondition the driver is held to (its argument schema is
    /// the operation's).
    #[serde(default)]
    pub obligations: axon_drivers::obligations::ObligationsSpec,
    /// Sample calls for its red-team suite (`[[redteam.samples]]`).
    #[serde(default)]
    pub samples: Vec<axon_drivers::manifest::Sample>,
}

/// A driver grown while the node runs.
#[derive(Debug, serde::Serialize)]
pub struct Grown {
    pub driver: String,
    pub capability: String,
    pub artifact_hash: String,
    pub lane: Lane,
    pub file: PathBuf,
    /// The manifest as written.
    pub manifest: String,
    pub left_out: Vec<String>,
    /// The journal entry that records the growth.
    pub index: u64,
}

/// Grows drivers while the node runs: one at a time (another asked meanwhile is 429),
/// written to the data directory, journaled, added to the `drivers` supervisor and placed
/// in its first lane. Every check that can refuse is made before anything is written; a
/// step that fails after the manifest was written and journaled removes the manifest and
/// journals that it was taken back (`driver_synthesis_undone`), so the journal never says
/// a driver was grown that the node does not hold.
pub struct Grower {
    cfg: Config,
    builder: DriverBuilder,
    /// Held through one growth: the workers added while the node runs, so far.
    added_workers: tokio::sync::Mutex<u64>,
}

impl Grower {
    pub fn new(cfg: &Config, builder: DriverBuilder) -> Self {
        Self {
            cfg: cfg.clone(),
            builder,
            added_workers: tokio::sync::Mutex::new(0),
        }
    }

    /// Grows the driver `req` asks for and loads it into the running node, on the act
    /// pipeline's own threads: a caller that goes away (its connection closed, the HTTP
    /// server stopped) never leaves a growth half made.
    pub async fn grow(
        self: &Arc<Self>,
        tree: &Arc<TreeNode>,
        act: &Arc<Act>,
        req: SynthesizeRequest,
        deadline: Duration,
    ) -> Result<Grown, GrowError> {
        let (this, tree, runs_on) = (self.clone(), tree.clone(), act.clone());
        let act = act.clone();
        runs_on
            .detach(async move { this.grow_here(&tree, &act, req, deadline).await })
            .await
            .unwrap_or_else(|_| {
                Err(GrowError::Unavailable(
                    "the node stopped before the growth finished".into(),
                ))
            })
    }

    async fn grow_here(
        &self,
        tree: &Arc<TreeNode>,
        act: &Arc<Act>,
        req: SynthesizeRequest,
        deadline: Duration,
    ) -> Result<Grown, GrowError> {
        if req.obligations.args.is_some() {
            return Err(GrowError::Refused(
                "obligations.args cannot be given: the argument schema is the operation's".into(),
            ));
        }
        // Shared with the blocking checks and the write, not copied for each.
        let s = Arc::new(
            probecraft::synthesize(
                &req.openapi,
                &req.operation_id,
                req.base_url.as_deref(),
                &req.obligations,
                &req.samples,
            )
            .map_err(|e| GrowError::Refused(e.to_string()))?,
        );
        let Ok(mut added) = self.added_workers.try_lock() else {
            return Err(GrowError::Busy(
                "another driver is being grown: one at a time; try again".into(),
            ));
        };
        let workers = u64::from(s.manifest.limits.concurrency);
        let max = self.cfg.drivers.max_added_workers;
        let name = s.manifest.name.clone();
        let file = grown_file(&self.cfg, &name);
        let artifact_hash = s.manifest.descriptor().artifact_hash;
        let record = json!({
            "driver_synthesized": {
                "driver": name,
                "artifact_hash": artifact_hash,
                "capability": s.manifest.capability,
                "operation_id": req.operation_id,
                "base_url": req.base_url,
                "file": file,
                "manifest": s.toml,
                "left_out": s.left_out,
            }
        });
        // What must go in one journal entry is measured before anything is written (the
        // entry's own members need room beside the body).
        let record_bytes = serde_json::to_vec(&record).map_or(usize::MAX, |b| b.len());
        let room = (self.cfg.journal.max_entry_bytes as usize).saturating_sub(4096);
        if record_bytes > room {
            return Err(GrowError::Refused(format!(
                "the record of the grown driver would be {record_bytes} bytes, more than a journal entry holds ({room} with its envelope, journal.max_entry_bytes)"
            )));
        }
        let loaded: Vec<String> = act
            .lanes()
            .drivers()
            .iter()
            .map(|d| d.name().to_owned())
            .collect();
        // Reads and fsyncs: off the async threads.
        let blocking = |f: Box<dyn FnOnce() -> Result<(), GrowError> + Send>| async move {
            tokio::task::spawn_blocking(f)
                .await
                .map_err(|e| GrowError::Failed(format!("the manifest's checks or write: {e}")))?
        };
        {
            let (cfg, s, file) = (self.cfg.clone(), s.clone(), file.clone());
            blocking(Box::new(move || check_grown(&cfg, &s, &file, &loaded))).await?;
        }
        if *added + workers > max {
            return Err(GrowError::Limit(format!(
                "{} of drivers.max_added_workers = {max} workers have been added while the node runs, and this driver needs {workers} more; its manifest was not written (a restart loads the data directory's manifests like any others)",
                *added
            )));
        }
        {
            let (s, file) = (s.clone(), file.clone());
            blocking(Box::new(move || create_grown(&s, &file))).await?;
        }
        // Read back as the next start will read it, so that what runs now is what will.
        let manifest = match Manifest::load(&file) {
            Ok(m) => m,
            Err(e) => {
                remove(&file);
                return Err(GrowError::Failed(format!(
                    "the written manifest does not load: {e}"
                )));
            }
        };
        let index = match act.record_event(record).await {
            Ok(e) => e.index,
            Err(e) => {
                // Maybe journaled after all: then the journal says it was taken back.
                if matches!(e, axon_actors::journal::Refusal::OutcomeUnknown(_)) {
                    undo(act, &file, &name, &artifact_hash, None, e.to_string()).await;
                } else {
                    remove(&file);
                }
                return Err(GrowError::Unrecorded(e));
            }
        };
        let undo = |why: String| undo(act, &file, &name, &artifact_hash, Some(index), why);
        let prepared = match self.builder.prepare(manifest) {
            Ok(p) => p,
            Err(e) => {
                let e = GrowError::Failed(format!("{e:#}"));
                undo(e.to_string()).await;
                return Err(e);
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let builder = self.builder.clone();
        let build: BuildChildren = Box::new(move |env: &Env| {
            let (children, instance) = builder.build(env, &prepared);
            let _ = tx.send(instance);
            children
        });
        if let Err(e) = add_children(tree, DRIVERS_SUPERVISOR, build, deadline).await {
            let e = match e {
                AddError::NoRoom { .. } => GrowError::Limit(format!(
                    "{e}: drivers.max_added_workers = {max} workers may be added while the node runs"
                )),
                AddError::Taken { .. } => GrowError::Exists(e.to_string()),
                AddError::Overloaded(_) => GrowError::Busy(e.to_string()),
                AddError::Unavailable(_) => GrowError::Unavailable(e.to_string()),
                AddError::Timeout(..) => GrowError::Timeout(format!("{e}: nothing was added")),
                other => GrowError::Failed(format!("the driver did not start: {other}")),
            };
            undo(e.to_string()).await;
            return Err(e);
        }
        *added += workers;
        // Sent by the build, which ran before the supervisor answered.
        let Ok(instance) = rx.try_recv() else {
            let e = GrowError::Failed("the driver's workers were not built".into());
            undo(e.to_string()).await;
            return Err(e);
        };
        let instance = Arc::new(instance);
        let lane = act
            .add_driver(instance.clone())
            .await
            .map_err(|error| GrowError::Unplaced {
                driver: instance.name().to_owned(),
                error: Box::new(error),
            })?;
        tracing::info!(driver = %instance.name(), %lane, file = %file.display(), "driver grown and loaded");
        Ok(Grown {
            driver: instance.name().to_owned(),
            capability: instance.descriptor.capability.clone(),
            artifact_hash: instance.descriptor.artifact_hash.clone(),
            lane,
            file,
            manifest: s.toml.clone(),
            left_out: s.left_out.clone(),
            index,
        })
    }
}

/// Takes back a growth journaled as entry `index` (where known) that did not complete:
/// its manifest is removed and the journal says so, and why, as far as the journal takes
/// it (a journal that refuses the record of the undoing is logged).
async fn undo(
    act: &Act,
    file: &Path,
    name: &str,
    artifact_hash: &str,
    index: Option<u64>,
    why: String,
) {
    remove(file);
    let body = json!({
        "driver_synthesis_undone": {
            "driver": name,
            "artifact_hash": artifact_hash,
            "synthesized": index,
            "reason": why,
        }
    });
    if let Err(e) = act.record_event(body).await {
        tracing::error!(driver = %name, error = %e, "a grown driver that was not loaded was not journaled as taken back");
    }
}

/// Removes a manifest written for a growth that did not complete, so that the next start
/// does not load it.
fn remove(file: &Path) {
    if let Err(e) = std::fs::remove_file(file) {
        tracing::error!(file = %file.display(), error = %e, "a manifest written for a driver that was not loaded could not be removed");
    } else if let Some(dir) = file.parent() {
        let _ = crate::data_dir::sync_dir(dir);
    }
}
