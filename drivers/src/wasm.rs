//! The `wasm` driver: a WebAssembly module run under wasmtime as a WASI preview 1
//! command, the plugin a user can hand Axon without trusting it. The request JSON
//! (`{"mode": "push" | "pull" | "predict", "action_id", "args"}`) is its stdin, its answer
//! JSON is its stdout, and exit code 0 is success.
//!
//! The sandbox: no preopened directory, no socket, no environment variable, no argument;
//! `fuel` per call (the replayable budget: the same module, input and fuel stop at the
//! same point); an epoch watchdog for wall time (`timeout_ms`; its trap is a timeout that
//! is not replayable); linear memory bounded by `memory_bytes` (a module whose memory has
//! no maximum gets this one); stdout bounded by `max_stdout_bytes`. The module is compiled
//! once when its manifest is loaded ([`Compiled`]); every instance of the driver, and every
//! incarnation after a restart, instantiates it per call from the same pooling allocator,
//! whose engine has one watchdog moving its epoch while any of their calls runs.
//!
//! Determinism: the wall clock the module sees starts at a time recorded in the capsule
//! and, like its monotonic clock, moves one microsecond per reading; its random source is
//! ChaCha20 seeded from the action id; NaNs are canonical, relaxed SIMD is deterministic;
//! it has no threads, and it cannot sleep (`poll_oneoff` answers `notsup` at once, so no
//! real timer decides anything and no call blocks outside the watchdog's reach). So a
//! replay with the recorded state is bit for bit, and the capsule records the fuel used,
//! which the replay must use again; a call the watchdog stopped is not replayable.
//!
//! Architecture invariant: a call runs on its caller's thread, an actor's as well as a
//! replay's: the module's descriptors are Axon's own ([`crate::wasm_stdio`]), never WASI's,
//! whose calls drive an async runtime of their own. Nothing of the host but its stdin,
//! stdout and the virtual clocks and randomness reaches it.

use crate::driver::{Call, Driver, Outcome, Prediction};
use crate::wasm_stdio::{HasStdio, Stdio};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// A `wasm` driver's `[wasm]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmSettings {
    /// The module (a `.wasm` binary), relative to the manifest's folder.
    pub module: PathBuf,
    /// The BLAKE3 (hex) the module must hash to: a module that differs is refused at load.
    pub blake3: String,
    /// Fuel per call: roughly one unit per instruction the module runs.
    pub fuel: u64,
    /// The most linear memory one call may use, in bytes.
    pub memory_bytes: u64,
    /// The largest answer read from stdout; a module that writes more fails the call.
    #[serde(default = "default_max_stdout_bytes")]
    pub max_stdout_bytes: u64,
    /// Wall time one call may take before the epoch watchdog stops it.
    pub timeout_ms: u64,
}

fn default_max_stdout_bytes() -> u64 {
    64 << 10
}

/// How often the epoch watchdog ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The most a stdin request may be (it holds arguments a manifest already bounds).
const MAX_STDIN_BYTES: usize = 16 << 20;

/// The largest module file read.
pub const MAX_MODULE_BYTES: u64 = 64 << 20;

/// How much of a slot's linear memory is kept resident (zeroed in place) between calls.
const KEEP_RESIDENT_BYTES: u64 = 1 << 20;

/// WASI's `notsup` errno.
const ERRNO_NOTSUP: i32 = 58;

/// The version of what a module sees of its host (its descriptors, clocks and random
/// source), recorded in each capsule: a replay runs only under the same one, since another
/// could answer the module otherwise, and stop it elsewhere.
const HOST_ABI: u64 = 1;

impl WasmSettings {
    /// Checks what the types cannot say; the error names the key.
    pub fn check(&self, deadline_ms: u64) -> Result<(), (String, String)> {
        let range = |key: &str, v: u64, min: u64, max: u64| {
            if v < min || v > max {
                Err((
                    format!("wasm.{key}"),
                    format!("must be {min}..={max}, not {v}"),
                ))
            } else {
                Ok(())
            }
        };
        range("fuel", self.fuel, 1_000, 100_000_000_000)?;
        range("memory_bytes", self.memory_bytes, 64 << 10, 4 << 30)?;
        range("max_stdout_bytes", self.max_stdout_bytes, 1, 16 << 20)?;
        // A prediction and the action each run the module once within the deadline, and
        // the watchdog sees a timeout up to a tick late: a module stopped by it is failed
        // before the action's deadline could leave it in doubt.
        let most = deadline_ms.saturating_sub(4 * EPOCH_TICK.as_millis() as u64) / 2;
        if self.timeout_ms < 10 || self.timeout_ms > most {
            return Err((
                "wasm.timeout_ms".into(),
                format!(
                    "must be 10..={most} (at most half of limits.deadline_ms = {deadline_ms}, less two watchdog ticks each), not {}",
                    self.timeout_ms
                ),
            ));
        }
        let hex = self.blake3.len() == 64
            && self
                .blake3
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err((
                "wasm.blake3".into(),
                "must be the module's BLAKE3 as 64 lowercase hex digits".into(),
            ));
        }
        Ok(())
    }

    /// The module's bytes, read from `folder` and checked against the pinned hash; the
    /// error names the key.
    pub fn module_bytes(&self, folder: &Path) -> Result<Vec<u8>, (String, String)> {
        let path = folder.join(&self.module);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len > MAX_MODULE_BYTES {
            return Err((
                "wasm.module".to_owned(),
                format!(
                    "{} holds {len} bytes, more than the {MAX_MODULE_BYTES} a module may",
                    path.display()
                ),
            ));
        }
        let bytes = std::fs::read(&path).map_err(|e| {
            (
                "wasm.module".to_owned(),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let hash = blake3::hash(&bytes).to_hex().to_string();
        if hash != self.blake3 {
            return Err((
                "wasm.blake3".into(),
                format!(
                    "{} hashes to {hash}, not to the pinned {}: refused",
                    path.display(),
                    self.blake3
                ),
            ));
        }
        Ok(bytes)
    }
}

/// Keeps the module of `settings` (read from `folder`, checked against its hash) in
/// `modules` as `<blake3>.wasm`, durably, unless it is there already. Answers the kept
/// copy's absolute path.
pub fn keep_module(
    settings: &WasmSettings,
    folder: &Path,
    modules: &Path,
) -> Result<PathBuf, String> {
    use std::io::Write;
    let target = modules.join(format!("{}.wasm", settings.blake3));
    let absolute = |p: &Path| {
        p.canonicalize()
            .map_err(|e| format!("cannot resolve {}: {e}", p.display()))
    };
    if std::fs::read(&target).is_ok_and(|b| blake3::hash(&b).to_hex().as_str() == settings.blake3) {
        return absolute(&target);
    }
    let bytes = settings
        .module_bytes(folder)
        .map_err(|(key, reason)| format!("key `{key}`: {reason}"))?;
    let fail = |e: std::io::Error| format!("cannot keep the module in {}: {e}", modules.display());
    std::fs::create_dir_all(modules).map_err(fail)?;
    // The folder's own name is durable in its parent too.
    if let Some(parent) = modules.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
    }
    let tmp = modules.join(format!("{}.wasm.tmp", settings.blake3));
    let mut f = std::fs::File::create(&tmp).map_err(fail)?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, &target).map_err(fail)?;
    std::fs::File::open(modules)
        .and_then(|d| d.sync_all())
        .map_err(fail)?;
    absolute(&target)
}

/// The engine a driver's module is compiled for: fuel, the epoch watchdog, canonical
/// NaNs, and a pooling allocator sized for `concurrency` calls at once.
fn engine(settings: &WasmSettings, concurrency: u32) -> Result<Engine, String> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(concurrency.max(1))
        .total_memories(concurrency.max(1))
        .total_tables(concurrency.max(1))
        .total_stacks(concurrency.max(1))
        .max_memory_size(settings.memory_bytes as usize)
        // A slot's memory is zeroed in place between calls instead of given back to the
        // kernel: giving it back costs every core a TLB shootdown per call.
        .linear_memory_keep_resident(settings.memory_bytes.min(KEEP_RESIDENT_BYTES) as usize)
        .table_keep_resident(64 << 10);
    let mut cfg = Config::new();
    cfg.consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .memory_reservation(settings.memory_bytes)
        .memory_guard_size(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&cfg).map_err(|e| format!("cannot make the wasm engine: {e}"))
}

/// What one call's store holds.
struct State {
    /// WASI's clocks, randomness and exit; the descriptors are `stdio`.
    wasi: WasiP1Ctx,
    stdio: Stdio,
    limits: Limiter,
}

impl HasStdio for State {
    fn stdio(&mut self) -> &mut Stdio {
        &mut self.stdio
    }
}

/// A clock that starts at `start` nanoseconds and moves one microsecond per reading.
#[derive(Clone)]
struct VirtualClock {
    now: Arc<std::sync::atomic::AtomicU64>,
}

impl VirtualClock {
    fn starting_at(start: u64) -> Self {
        Self {
            now: Arc::new(std::sync::atomic::AtomicU64::new(start)),
        }
    }

    fn read(&self) -> u64 {
        self.now.fetch_add(1_000, Ordering::Relaxed)
    }
}

impl HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.read())
    }
}

impl HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        self.read()
    }
}

/// What a call starts from, recorded in the capsule so that a replay starts there too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Start {
    /// The wall clock the module sees first, in nanoseconds since the Unix epoch.
    wall_ns: u64,
    /// The seed of its random source.
    seed: [u8; 32],
}

/// How one run of the module ended.
struct Run {
    result: Result<Value, String>,
    fuel_used: u64,
    /// False for a stop that depends on the machine (the wall-time watchdog).
    replayable: bool,
    /// What made the call fail, if it failed.
    stop: Option<Stop>,
}

/// What made a call of a module fail: the label of `axon_wasm_stops_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Fuel,
    Timeout,
    Memory,
    Stdout,
    Exit,
    Trap,
    Answer,
    Host,
}

impl Stop {
    const ALL: [Stop; 8] = [
        Stop::Fuel,
        Stop::Timeout,
        Stop::Memory,
        Stop::Stdout,
        Stop::Exit,
        Stop::Trap,
        Stop::Answer,
        Stop::Host,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Stop::Fuel => "fuel",
            Stop::Timeout => "timeout",
            Stop::Memory => "memory",
            Stop::Stdout => "stdout",
            Stop::Exit => "exit",
            Stop::Trap => "trap",
            Stop::Answer => "answer",
            Stop::Host => "host",
        }
    }
}

/// `axon_wasm_stops_total`: failed calls of wasm drivers, by driver and cause. A node
/// registers its own; one made with `default()` counts where nobody reads (a replay).
#[derive(Clone)]
pub struct Stops(prometheus::IntCounterVec);

impl Default for Stops {
    fn default() -> Self {
        Self(
            prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "axon_wasm_stops_total",
                    "Calls of wasm drivers that failed, by driver and by what stopped them: fuel, timeout (the wall-time watchdog), memory (its limit), stdout (the answer's bound), exit (a non-zero exit code), trap (any other), answer (no JSON on stdout), host (the host failed)",
                ),
                &["driver", "cause"],
            )
            .expect("a valid metric"),
        )
    }
}

impl Stops {
    /// The counter, registered in `registry`.
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let stops = Self::default();
        registry.register(Box::new(stops.0.clone()))?;
        Ok(stops)
    }

    fn count(&self, driver: &str, stop: Stop) {
        self.0.with_label_values(&[driver, stop.as_str()]).inc();
    }

    /// Shows every cause of `driver`, at zero.
    fn show(&self, driver: &str) {
        for stop in Stop::ALL {
            self.0.with_label_values(&[driver, stop.as_str()]);
        }
    }
}

/// The store's limits, noting when they refused the module memory (or a table).
struct Limiter {
    limits: StoreLimits,
    refused: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.limits.memory_growing(current, desired, maximum);
        self.refused |= !matches!(r, Ok(true));
        r
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.limits.table_growing(current, desired, maximum);
        self.refused |= !matches!(r, Ok(true));
        r
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refused = true;
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The module, compiled once, ready to be instantiated per call.
struct Runner {
    engine: Engine,
    pre: InstancePre<State>,
    settings: WasmSettings,
    /// Calls running now, of every instance: the watchdog ticks only while there is one.
    running: std::sync::atomic::AtomicUsize,
    watchdog: std::sync::OnceLock<std::thread::Thread>,
}

impl Drop for Runner {
    fn drop(&mut self) {
        // The watchdog sees that the module is gone at once rather than at its next look.
        if let Some(w) = self.watchdog.get() {
            w.unpark();
        }
    }
}

/// A driver's module, compiled once for its manifest's limits, with the watchdog that
/// moves its engine's epoch while any call runs (the thread ends with the last handle).
/// Every instance of the driver and every incarnation after a restart runs this one.
#[derive(Clone)]
pub struct Compiled {
    runner: Arc<Runner>,
    node: InNode,
}

/// What a node gives its wasm drivers: the counter of their stops, and the clock whose
/// wall time a module first sees (recorded in each capsule). `default()`: a counter
/// nobody reads and the system's clock, for a driver outside a node.
#[derive(Clone)]
pub struct InNode {
    pub stops: Stops,
    pub clock: axon_supervisors::SharedClock,
}

impl Default for InNode {
    fn default() -> Self {
        Self {
            stops: Stops::default(),
            clock: axon_supervisors::SystemClock::shared(),
        }
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("module", &self.runner.settings.module)
            .finish()
    }
}

impl Compiled {
    /// Reads the module of `settings` from `folder` (checked against its pinned hash) and
    /// compiles it for `instances` driver instances; the error names the key.
    pub fn load(settings: &WasmSettings, folder: &Path, instances: u32) -> Result<Self, String> {
        let bytes = settings
            .module_bytes(folder)
            .map_err(|(key, reason)| format!("{key}: {reason}"))?;
        Self::of(settings, &bytes, instances)
    }

    /// Compiles `bytes` for `instances` driver instances, each running one call at a
    /// time, with as many slots again for incarnations that were abandoned with a call
    /// still running (their successors start at once, beside them).
    fn of(settings: &WasmSettings, bytes: &[u8], instances: u32) -> Result<Self, String> {
        let runner = Arc::new(Runner::new(settings, bytes, instances.max(1) * 2)?);
        let watched = Arc::downgrade(&runner);
        let watchdog = std::thread::Builder::new()
            .name("axon-wasm-epoch".into())
            .spawn(move || watch(watched))
            .map_err(|e| format!("cannot start the wasm watchdog: {e}"))?;
        let _ = runner.watchdog.set(watchdog.thread().clone());
        Ok(Self {
            runner,
            node: InNode::default(),
        })
    }

    /// The same compilation, run in `node`: its stops counted there, on its clock.
    pub fn in_node(self, node: &InNode) -> Self {
        Self {
            node: node.clone(),
            ..self
        }
    }
}

/// The watchdog: the epoch moves one tick per [`EPOCH_TICK`] while a call runs; idle, it
/// sleeps until a call wakes it, or at the latest a second later to see whether the module
/// is gone.
fn watch(runner: Weak<Runner>) {
    loop {
        let Some(r) = runner.upgrade() else { return };
        let idle = r.running.load(Ordering::Acquire) == 0;
        drop(r);
        if idle {
            std::thread::park_timeout(Duration::from_secs(1));
            continue;
        }
        std::thread::sleep(EPOCH_TICK);
        match runner.upgrade() {
            Some(r) => r.engine.increment_epoch(),
            None => return,
        }
    }
}

impl Runner {
    fn new(settings: &WasmSettings, bytes: &[u8], concurrency: u32) -> Result<Self, String> {
        let engine = engine(settings, concurrency)?;
        let module = Module::new(&engine, bytes)
            .map_err(|e| format!("the module does not compile: {e:#}"))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut State| &mut s.wasi)
            .map_err(|e| format!("cannot link WASI: {e:#}"))?;
        // No sleeping: a module waiting on a clock would block outside the watchdog's
        // reach, and real timers would decide what it sees.
        linker.allow_shadowing(true);
        linker
            .func_wrap(
                "wasi_snapshot_preview1",
                "poll_oneoff",
                |_: i32, _: i32, _: i32, _: i32| -> i32 { ERRNO_NOTSUP },
            )
            .map_err(|e| format!("cannot link WASI: {e:#}"))?;
        // The descriptors are Axon's own, which run on any thread (see `wasm_stdio`).
        crate::wasm_stdio::add_to_linker(&mut linker)
            .map_err(|e| format!("cannot link WASI: {e:#}"))?;
        linker.allow_shadowing(false);
        let pre = linker.instantiate_pre(&module).map_err(|e| {
            format!("the module cannot be linked (only WASI preview 1 is offered): {e:#}")
        })?;
        Ok(Self {
            engine,
            pre,
            settings: settings.clone(),
            running: std::sync::atomic::AtomicUsize::new(0),
            watchdog: std::sync::OnceLock::new(),
        })
    }

    /// Runs the module once on `stdin` from `start`, with the watchdog ticking, and
    /// answers a panic of the host as a failed run.
    fn run(&self, stdin: Vec<u8>, start: Start) -> Run {
        self.running.fetch_add(1, Ordering::AcqRel);
        if let Some(w) = self.watchdog.get() {
            w.unpark();
        }
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_watched(stdin, start)
        }))
        .unwrap_or_else(|p| Run {
            result: Err(format!(
                "the wasm host panicked: {}",
                axon_supervisors::worker::panic_message(&*p)
            )),
            fuel_used: 0,
            replayable: false,
            stop: Some(Stop::Host),
        });
        self.running.fetch_sub(1, Ordering::AcqRel);
        run
    }

    fn run_watched(&self, stdin: Vec<u8>, start: Start) -> Run {
        use rand_core::SeedableRng;
        let s = &self.settings;
        let clock = VirtualClock::starting_at(start.wall_ns);
        let mut wasi = WasiCtxBuilder::new();
        wasi.wall_clock(clock.clone())
            .monotonic_clock(clock)
            .secure_random(chacha20::ChaCha20Rng::from_seed(start.seed))
            .insecure_random(chacha20::ChaCha20Rng::from_seed(start.seed))
            .insecure_random_seed(u128::from_le_bytes(
                start.seed[..16].try_into().expect("16 bytes"),
            ));
        let state = State {
            wasi: wasi.build_p1(),
            stdio: Stdio::new(stdin, s.max_stdout_bytes as usize),
            limits: Limiter {
                limits: StoreLimitsBuilder::new()
                    .memory_size(s.memory_bytes as usize)
                    .instances(1)
                    .trap_on_grow_failure(true)
                    .build(),
                refused: false,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|st| &mut st.limits);
        let ticks = s.timeout_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        if let Err(e) = store.set_fuel(s.fuel) {
            return Run {
                result: Err(format!("cannot set the fuel: {e}")),
                fuel_used: 0,
                replayable: true,
                stop: Some(Stop::Host),
            };
        }
        let ran = self.pre.instantiate(&mut store).and_then(|instance| {
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())
        });
        let fuel_used = s.fuel - store.get_fuel().unwrap_or(0);
        let mut replayable = true;
        let state = store.into_data();
        let exit = match ran {
            Ok(()) => Ok(0),
            Err(e) => {
                if let Some(code) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                    Ok(code.0)
                } else if e.is::<wasmtime::PoolConcurrencyLimitError>() {
                    // Every slot is taken (by calls of abandoned incarnations): the module
                    // never ran, and what stopped it depends on the machine.
                    replayable = false;
                    Err((
                        Stop::Host,
                        format!("the module could not be started: {e:#}"),
                    ))
                } else {
                    match e.downcast_ref::<Trap>() {
                        Some(Trap::OutOfFuel) => Err((
                            Stop::Fuel,
                            format!("the module ran out of its fuel ({} units)", s.fuel),
                        )),
                        Some(Trap::Interrupt) => {
                            replayable = false;
                            Err((Stop::Timeout, format!(
                                "the module ran past its timeout of {} ms (the wall-time watchdog; not replayable)",
                                s.timeout_ms
                            )))
                        }
                        _ if state.limits.refused => Err((
                            Stop::Memory,
                            format!(
                                "the module trapped at its memory limit of {} bytes: {e:#}",
                                s.memory_bytes
                            ),
                        )),
                        _ => Err((Stop::Trap, format!("the module trapped: {e:#}"))),
                    }
                }
            }
        };
        let (out, overflowed) = state.stdio.into_stdout();
        // An answer past its bound fails the call however the module went on after it.
        let exit = if overflowed {
            Err((Stop::Stdout, stdout_too_big(s.max_stdout_bytes)))
        } else {
            exit
        };
        let result = exit.and_then(|code| {
            if code != 0 {
                return Err((Stop::Exit, format!("the module exited with code {code}")));
            }
            match crate::driver::answer_json(&out) {
                crate::driver::Answer::Json(v) => Ok(v),
                crate::driver::Answer::NotCanonical { text, reason } => {
                    Ok(json!({"text": text, "not_canonical": reason}))
                }
                crate::driver::Answer::NotJson => Err((
                    Stop::Answer,
                    "the module answered no JSON on stdout".to_owned(),
                )),
            }
        });
        let stop = result.as_ref().err().map(|(stop, _)| *stop);
        Run {
            result: result.map_err(|(_, reason)| reason),
            fuel_used,
            replayable,
            stop,
        }
    }
}

fn stdout_too_big(max: u64) -> String {
    format!("the module wrote more than wasm.max_stdout_bytes ({max} bytes) to stdout: cut, and the call failed")
}

/// One `wasm` driver instance.
pub struct WasmDriver {
    descriptor: crate::descriptor::DriverDescriptor,
    runner: Arc<Runner>,
    node: InNode,
    /// How a call's start is chosen: now (acting) or as recorded (replaying).
    recorded: Option<Start>,
    fuel_recorded: Option<u64>,
    last_fuel_used: Option<u64>,
}

impl std::fmt::Debug for WasmDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmDriver")
            .field("name", &self.descriptor.name)
            .finish()
    }
}

impl WasmDriver {
    /// A driver instance running `compiled`.
    pub fn new(
        descriptor: crate::descriptor::DriverDescriptor,
        compiled: &Compiled,
    ) -> Result<Self, String> {
        Self::running(descriptor, compiled, None)
    }

    fn running(
        descriptor: crate::descriptor::DriverDescriptor,
        compiled: &Compiled,
        recorded: Option<(Start, u64)>,
    ) -> Result<Self, String> {
        // Every cause is shown from the start, at zero.
        compiled.node.stops.show(&descriptor.name);
        Ok(Self {
            descriptor,
            runner: compiled.runner.clone(),
            node: compiled.node.clone(),
            recorded: recorded.map(|(s, _)| s),
            fuel_recorded: recorded.map(|(_, f)| f),
            last_fuel_used: None,
        })
    }

    /// The driver of `settings` running `bytes` from the state a capsule recorded.
    pub fn replaying(
        descriptor: crate::descriptor::DriverDescriptor,
        settings: &WasmSettings,
        bytes: &[u8],
        state: &Value,
    ) -> Result<Self, String> {
        let hash = blake3::hash(bytes).to_hex().to_string();
        if hash != settings.blake3 {
            return Err(format!(
                "the module hashes to {hash}, not to the pinned {}",
                settings.blake3
            ));
        }
        let wall_ns = state
            .get("wall_ns")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("the capsule records no wall clock")?;
        let seed = state
            .get("seed")
            .and_then(Value::as_str)
            .and_then(|s| blake3::Hash::from_hex(s).ok())
            .ok_or("the capsule records no seed")?;
        let fuel = state
            .get("fuel_used")
            .and_then(Value::as_u64)
            .ok_or("the capsule records no fuel used")?;
        match state.get("host_abi").and_then(Value::as_u64) {
            Some(HOST_ABI) => {}
            recorded => {
                return Err(format!(
                    "the call was recorded under wasm host ABI {}, and this Axon runs ABI {HOST_ABI}: its descriptors could answer the module otherwise, so a replay would not be bit for bit",
                    recorded.map_or("(none: an Axon before ABI 1)".to_owned(), |v| v.to_string())
                ))
            }
        }
        let start = Start {
            wall_ns,
            seed: *seed.as_bytes(),
        };
        let compiled = Compiled::of(settings, bytes, 1)?;
        Self::running(descriptor, &compiled, Some((start, fuel)))
    }

    /// For a replaying driver: how the replay strayed from the recorded run, if it did.
    pub fn strayed(&self) -> Option<String> {
        match (self.fuel_recorded, self.last_fuel_used) {
            (Some(recorded), Some(used)) if recorded != used => Some(format!(
                "the replay used {used} units of fuel, the recorded run {recorded}"
            )),
            _ => None,
        }
    }

    /// Runs the module for `call` in `mode`.
    fn run(&mut self, mode: &str, call: &Call) -> (Result<Value, String>, Value) {
        let request = json!({
            "mode": mode,
            "action_id": call.action_id,
            "args": call.intent.args,
        });
        let stdin = match axon_protocols::canonical::to_vec(&request) {
            Ok(b) if b.len() <= MAX_STDIN_BYTES => b,
            Ok(_) => {
                return (
                    Err("the request is too large for stdin".into()),
                    Value::Null,
                )
            }
            Err(e) => {
                return (
                    Err(format!("the request has no canonical form: {e}")),
                    Value::Null,
                )
            }
        };
        let start = self.recorded.unwrap_or_else(|| Start {
            wall_ns: self
                .node
                .clock
                .wall()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            seed: *blake3::hash(format!("{mode}:{}", call.action_id).as_bytes()).as_bytes(),
        });
        let run = self.runner.run(stdin, start);
        if let Some(stop) = run.stop {
            self.node.stops.count(&self.descriptor.name, stop);
        }
        self.last_fuel_used = Some(run.fuel_used);
        let state = json!({
            // As text: nanoseconds since 1970 are beyond what a JSON number holds exactly.
            "wall_ns": start.wall_ns.to_string(),
            "seed": blake3::Hash::from_bytes(start.seed).to_hex().to_string(),
            "fuel_used": run.fuel_used,
            "replayable": run.replayable,
            "host_abi": HOST_ABI,
        });
        (run.result, state)
    }

    fn act(&mut self, mode: &str, call: &Call) -> Outcome {
        let (result, state) = self.run(mode, call);
        match result {
            Ok(output) => Outcome::ok(output),
            Err(reason) => Outcome::failed(reason),
        }
        .with_replay(state)
    }
}

impl Driver for WasmDriver {
    fn describe(&self) -> crate::descriptor::DriverDescriptor {
        self.descriptor.clone()
    }

    fn effect(&self) -> crate::descriptor::Effect {
        self.descriptor.effect
    }

    /// The same module, asked with `"mode": "predict"`: a sandboxed module has no side
    /// effect but its answer.
    fn predict(&mut self, call: &Call) -> Prediction {
        match self.run("predict", call).0 {
            Ok(output) => Prediction::Expected {
                output,
                utility: 1.0,
            },
            Err(reason) => Prediction::Inconclusive { reason },
        }
    }

    fn push(&mut self, call: &Call) -> Outcome {
        self.act("push", call)
    }

    fn pull(&mut self, call: &Call) -> Outcome {
        self.act("pull", call)
    }
}
