//! Driver manifests: one TOML file per driver instance (`config/drivers/*.toml`, or a
//! directory named in config) that says what the driver is, what it may do and within
//! which limits. A bad manifest is refused with its file and the key named; nothing of it
//! is used.

use crate::descriptor::{Cost, DriverDescriptor, Effect, Lane, Risk};
use crate::obligations::{Obligations, ObligationsSpec};
use axon_protocols::intent::{check_capability, is_name};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The manifest of the built-in `echo` driver, compiled in so that a node run outside
/// the repository has it.
pub const ECHO_MANIFEST: &str = include_str!("../../config/drivers/echo.toml");

/// The largest manifest file read.
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024;

/// The kinds of driver this build can run. A manifest of any other kind is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Answers every intent with its arguments; touches nothing.
    Echo,
    /// Appends records to files inside one directory (`[file]`).
    File,
    /// Sends one HTTP request per push (`[http]`).
    Http,
    /// Runs a WebAssembly module, pinned by its hash, in a sandbox (`[wasm]`).
    Wasm,
}

impl Kind {
    /// What runs for a driver of this kind, when that is the binary itself: its
    /// identity, hashed as its artifact.
    fn builtin_identity(self) -> Option<&'static str> {
        match self {
            Kind::Echo => Some("builtin:echo@1"),
            Kind::File => Some("builtin:file@1"),
            Kind::Http => Some("builtin:http@1"),
            // What runs is the module, which the manifest pins by its hash.
            Kind::Wasm => None,
        }
    }

    fn can_rollback(self) -> bool {
        match self {
            // Nothing was done, so there is nothing to undo.
            Kind::Echo => false,
            // An append is truncated away while nothing was written after it.
            Kind::File => true,
            // Where the manifest has a compensating request (see `Manifest::descriptor`).
            Kind::Http => false,
            // A sandboxed module changes nothing but its answer.
            Kind::Wasm => false,
        }
    }

    /// The arguments every driver of this kind and effect needs, checked with its
    /// obligations.
    fn args_schema(self, effect: Effect) -> Option<serde_json::Value> {
        match (self, effect) {
            (Kind::Echo | Kind::Http | Kind::Wasm, _) => None,
            (Kind::File, Effect::Write) => Some(crate::file::args_schema()),
            (Kind::File, Effect::Read) => Some(crate::file::read_args_schema()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Echo => "echo",
            Kind::File => "file",
            Kind::Http => "http",
            Kind::Wasm => "wasm",
        }
    }
}

/// The limits one driver instance runs within.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// How long one call may take.
    pub deadline_ms: u64,
    /// Calls that may run at once.
    pub concurrency: u32,
    /// Calls per second, at most.
    pub rate_per_second: u32,
    /// The largest intent arguments accepted, in bytes of canonical JSON.
    pub max_payload_bytes: u64,
    /// Requests that may wait for the driver.
    pub mailbox_capacity: u64,
}

/// The settings of a `file` driver (`[file]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// The directory its files live in; a relative one is inside the manifest's folder.
    pub dir: PathBuf,
    /// The largest a file may grow; an append past it fails.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// How long a starting incarnation waits for an earlier one to let go of the
    /// directory's lock before it fails to start.
    #[serde(default = "default_lock_wait_ms")]
    pub lock_wait_ms: u64,
}

/// How a shadow's prediction of a mirrored call is compared with the live outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// The predicted output equals the live output, and the live call was ok.
    #[default]
    Output,
    /// The live call was ok (a prediction expects success).
    Status,
    /// The live call was ok, and the predicted and live outputs agree at each of
    /// `paths` (JSON pointers).
    Paths,
}

/// How this driver is judged while it is a shadow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowSettings {
    #[serde(default)]
    pub compare: Compare,
    /// With `compare = "paths"`: the JSON pointers (`/a/0/b`) compared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

impl ShadowSettings {
    /// Whether a prediction of `predicted` agrees with a live call that ended `ok` (or
    /// not) with `output`.
    pub fn agrees(
        &self,
        predicted: &serde_json::Value,
        ok: bool,
        output: &serde_json::Value,
    ) -> bool {
        ok && match self.compare {
            Compare::Output => predicted == output,
            Compare::Status => true,
            Compare::Paths => self
                .paths
                .iter()
                .all(|p| predicted.pointer(p) == output.pointer(p)),
        }
    }
}

/// Whether `p` is a JSON pointer a manifest may name: `""` (the whole value) or
/// `/a/0/b`, at most 256 bytes.
fn is_pointer(p: &str) -> bool {
    (p.is_empty() || p.starts_with('/')) && p.len() <= 256
}

fn pointer_problem(p: &str) -> String {
    format!("{p:?} is not a JSON pointer (\"/a/0/b\", at most 256 bytes)")
}

fn default_max_file_bytes() -> u64 {
    1 << 30
}

fn default_lock_wait_ms() -> u64 {
    5000
}

/// A manifest as written, before it is checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    name: String,
    version: String,
    kind: Kind,
    capability: String,
    effect: Effect,
    risk: Risk,
    max_blast_radius: u64,
    idempotent: bool,
    /// The lane a new build of this driver starts in.
    #[serde(default = "testing")]
    lane: Lane,
    cost: Cost,
    limits: Limits,
    #[serde(default)]
    obligations: ObligationsSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<FileSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<crate::http::HttpSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wasm: Option<crate::wasm::WasmSettings>,
    /// Its service-level objective, without which it cannot be `live`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slo: Option<axon_supervisors::Slo>,
    /// How it is judged as a shadow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shadow: Option<ShadowSettings>,
    /// Where its outcome reports the utility it delivered: a JSON pointer into the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    utility: Option<String>,
    /// What its red-team suite runs besides the values it generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redteam: Option<RedteamSettings>,
    /// Its own thresholds for its promotion to live, in place of the node's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    promotion: Option<PromotionSettings>,
}

/// A manifest's own promotion thresholds (`[promotion]`); each one not given is the
/// node's (`drivers.promotion_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionSettings {
    /// Mirrored predictions compared with live outcomes its shadow period needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_shadow_calls: Option<u64>,
    /// The least share of them that agreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_agreement: Option<f64>,
    /// The confidence at which its trial's uplift is found worse than the live driver's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}

/// The red-team suite's part of a manifest (`[redteam]`): the sample arguments on which
/// the driver's postcondition must hold before it may be promoted to `shadow`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedteamSettings {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
}

/// One sample call of a red-team suite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Arguments that fit the driver's argument schema.
    pub args: serde_json::Value,
    /// For an http driver: what the stand-in service answers this sample (200 with `{}`
    /// when not given), as the real service would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<SampleReply>,
}

/// What the stand-in service answers one sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleReply {
    pub status: u16,
    #[serde(default)]
    pub body: serde_json::Value,
}

/// The most samples a manifest declares.
pub const MAX_SAMPLES: usize = 32;

fn testing() -> Lane {
    Lane::Testing
}

/// A checked manifest of one driver instance.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Where it was read from (`<built-in>` for the compiled-in ones).
    pub file: PathBuf,
    pub name: String,
    pub version: String,
    pub kind: Kind,
    pub capability: String,
    pub effect: Effect,
    pub risk: Risk,
    pub max_blast_radius: u64,
    pub idempotent: bool,
    pub initial_lane: Lane,
    pub cost: Cost,
    pub limits: Limits,
    pub obligations: Obligations,
    /// The settings of a `file` driver.
    pub file_settings: Option<FileSettings>,
    /// The settings of an `http` driver.
    pub http_settings: Option<crate::http::HttpSettings>,
    /// The settings of a `wasm` driver.
    pub wasm_settings: Option<crate::wasm::WasmSettings>,
    /// Its service-level objective.
    pub slo: Option<axon_supervisors::Slo>,
    /// How it is judged as a shadow (comparing outputs when not set).
    pub shadow: ShadowSettings,
    /// Where its outcome reports the utility it delivered (a JSON pointer into the
    /// output); without one, or where the output has no finite number there, an `ok`
    /// outcome delivered 1 and any other 0.
    pub utility: Option<String>,
    /// The sample calls of its red-team suite.
    pub samples: Vec<Sample>,
    /// Its own promotion thresholds.
    pub promotion: PromotionSettings,
    /// The canonical JSON of the manifest as written, for the artifact hash.
    canonical: Vec<u8>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read driver manifest {file}: {reason}")]
    Read { file: PathBuf, reason: String },
    #[error("driver manifest {file} is not valid TOML: {reason}")]
    Syntax { file: PathBuf, reason: String },
    #[error("driver manifest {file}: key `{key}`: {reason}")]
    Key {
        file: PathBuf,
        key: String,
        reason: String,
    },
    #[error("driver manifests {first} and {second} both name a driver {name:?}")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// The file name a manifest read back from a capsule goes by.
const RECORDED: &str = "<recorded>";

fn key_err(file: &Path, key: &str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Key {
        file: file.to_owned(),
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn range(file: &Path, key: &str, v: u64, min: u64, max: u64) -> Result<(), ManifestError> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(key_err(
            file,
            key,
            format!("must be between {min} and {max} (got {v})"),
        ))
    }
}

impl Manifest {
    /// The utility an outcome delivered: the number its output reports at the manifest's
    /// `utility` pointer where it has one there, and otherwise 1 for an `ok` outcome and
    /// 0 for any other.
    pub fn realized_utility(&self, ok: bool, output: &serde_json::Value) -> f64 {
        self.utility
            .as_deref()
            .and_then(|p| output.pointer(p))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(if ok { 1.0 } else { 0.0 })
    }

    /// Reads and checks the manifest in `file`.
    pub fn load(file: &Path) -> Result<Self, ManifestError> {
        let read_err = |reason: String| ManifestError::Read {
            file: file.to_owned(),
            reason,
        };
        let len = std::fs::metadata(file)
            .map_err(|e| read_err(e.to_string()))?
            .len();
        if len > MAX_MANIFEST_BYTES {
            return Err(read_err(format!(
                "{len} bytes, more than the limit of {MAX_MANIFEST_BYTES}"
            )));
        }
        let text = std::fs::read_to_string(file).map_err(|e| read_err(e.to_string()))?;
        Self::parse(&text, file)
    }

    /// Checks the manifest text `text`, read from `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ManifestError> {
        let value: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ManifestError::Syntax {
                    file: file.to_owned(),
                    reason: e.message().to_owned(),
                })?;
        let written: ManifestFile = serde_path_to_error::deserialize(toml::Value::Table(value))
            .map_err(|e| {
                let path = e.path().to_string();
                let reason = e.inner().message();
                // The path of an unknown key already ends with the key itself; a missing
                // key is named by the table it is missing from.
                let missing = reason
                    .strip_prefix("missing field `")
                    .and_then(|r| r.split_once('`'))
                    .map(|(field, _)| field);
                match (missing, path.as_str()) {
                    (Some(field), "." | "") => key_err(file, field, "missing"),
                    (Some(field), table) => key_err(file, &format!("{table}.{field}"), "missing"),
                    (None, p) if reason.starts_with("unknown field") => {
                        key_err(file, p, "unknown key")
                    }
                    (None, ".") => key_err(file, "(top)", reason),
                    (None, p) => key_err(file, p, reason),
                }
            })?;
        // Asked of a manifest being loaded, not of one a capsule recorded before the
        // objective was a key: that replays as it ran.
        if written.lane == Lane::Live && written.slo.is_none() {
            return Err(key_err(
                file,
                "slo",
                "a driver that starts live needs a service-level objective ([slo] with p99_ms and max_error_rate): its supervisor watches it against that",
            ));
        }
        Self::check(written, file)
    }

    /// The compiled-in manifest of `echo`.
    pub fn builtin_echo() -> Self {
        Self::parse(ECHO_MANIFEST, Path::new("<built-in>/drivers/echo.toml"))
            .expect("the compiled-in echo manifest is valid")
    }

    fn check(w: ManifestFile, file: &Path) -> Result<Self, ManifestError> {
        if w.name.len() > 63 || !is_name(&w.name) {
            return Err(key_err(
                file,
                "name",
                format!(
                    "must be 1 to 63 characters: a lowercase letter, then lowercase letters, digits or '-' (got {:?})",
                    w.name
                ),
            ));
        }
        if w.version.is_empty()
            || w.version.len() > 64
            || !w.version.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(key_err(
                file,
                "version",
                "must be 1 to 64 printable ASCII characters without spaces",
            ));
        }
        check_capability(&w.capability).map_err(|r| key_err(file, "capability", r))?;
        range(
            file,
            "max_blast_radius",
            w.max_blast_radius,
            0,
            1_000_000_000,
        )?;
        range(file, "cost.expected_ms", w.cost.expected_ms, 0, 3_600_000)?;
        if !(w.cost.units.is_finite() && (0.0..=1e9).contains(&w.cost.units)) {
            return Err(key_err(
                file,
                "cost.units",
                format!("must be between 0 and 1e9 (got {})", w.cost.units),
            ));
        }
        let l = &w.limits;
        range(file, "limits.deadline_ms", l.deadline_ms, 1, 600_000)?;
        // Each instance runs one call at a time on a thread of its own; a concurrency of
        // N runs N instances. A file driver appends in order and holds its directory
        // alone: one.
        range(file, "limits.concurrency", u64::from(l.concurrency), 1, 64)?;
        if w.kind == Kind::File && w.effect == Effect::Write && l.concurrency != 1 {
            return Err(key_err(
                file,
                "limits.concurrency",
                "a file driver that writes appends in order and holds its directory alone: it must be 1",
            ));
        }
        range(
            file,
            "limits.rate_per_second",
            u64::from(l.rate_per_second),
            1,
            1_000_000,
        )?;
        range(
            file,
            "limits.max_payload_bytes",
            l.max_payload_bytes,
            1,
            16 * 1024 * 1024,
        )?;
        if let Some((key, reason)) = w.slo.as_ref().and_then(|s| s.problem()) {
            return Err(key_err(file, &format!("slo.{key}"), reason));
        }
        if let Some(s) = &w.shadow {
            let paths = s.compare == Compare::Paths;
            if paths == s.paths.is_empty() || s.paths.len() > 32 {
                return Err(key_err(
                    file,
                    "shadow.paths",
                    "1 to 32 JSON pointers with compare = \"paths\", and none otherwise",
                ));
            }
            if let Some(bad) = s.paths.iter().find(|p| !is_pointer(p)) {
                return Err(key_err(file, "shadow.paths", pointer_problem(bad)));
            }
        }
        if let Some(bad) = w.utility.as_deref().filter(|p| !is_pointer(p)) {
            return Err(key_err(file, "utility", pointer_problem(bad)));
        }
        // An intent takes two places at once (its prediction and its push).
        range(
            file,
            "limits.mailbox_capacity",
            l.mailbox_capacity,
            2,
            1 << 20,
        )?;
        let obligations = Obligations::compile(&w.obligations, w.kind.args_schema(w.effect))
            .map_err(|(which, reason)| key_err(file, &format!("obligations.{which}"), reason))?;
        let promotion = w.promotion.unwrap_or_default();
        if let Some(n) = promotion.min_shadow_calls {
            range(file, "promotion.min_shadow_calls", n, 0, 1_000_000_000)?;
        }
        if let Some(a) = promotion.min_agreement.filter(|a| !(0.0..=1.0).contains(a)) {
            return Err(key_err(
                file,
                "promotion.min_agreement",
                format!("must be between 0 and 1 (got {a})"),
            ));
        }
        if let Some(c) = promotion.confidence.filter(|c| !(*c >= 0.5 && *c < 1.0)) {
            return Err(key_err(
                file,
                "promotion.confidence",
                format!("must be at least 0.5 and below 1 (got {c})"),
            ));
        }
        let samples = w.redteam.clone().unwrap_or_default().samples;
        if samples.len() > MAX_SAMPLES {
            return Err(key_err(
                file,
                "redteam.samples",
                format!("at most {MAX_SAMPLES} samples (got {})", samples.len()),
            ));
        }
        for (i, sample) in samples.iter().enumerate() {
            obligations.check_args(&sample.args).map_err(|v| {
                key_err(
                    file,
                    &format!("redteam.samples.{i}.args"),
                    format!("does not fit the argument schema: {v}"),
                )
            })?;
            if let Some(r) = &sample.reply {
                if w.kind != Kind::Http {
                    return Err(key_err(
                        file,
                        &format!("redteam.samples.{i}.reply"),
                        "only an http driver's samples name the stand-in service's answer",
                    ));
                }
                range(
                    file,
                    &format!("redteam.samples.{i}.reply.status"),
                    u64::from(r.status),
                    100,
                    599,
                )?;
            }
        }
        match (w.kind, &w.file) {
            (Kind::File, None) => {
                return Err(key_err(
                    file,
                    "file",
                    "missing: a file driver needs [file] with its dir",
                ))
            }
            (Kind::File, Some(f)) => {
                if f.dir.as_os_str().is_empty() {
                    return Err(key_err(file, "file.dir", "must not be empty"));
                }
                range(file, "file.max_file_bytes", f.max_file_bytes, 1, 1 << 40)?;
                range(file, "file.lock_wait_ms", f.lock_wait_ms, 0, 600_000)?;
            }
            (other, Some(_)) => {
                return Err(key_err(
                    file,
                    "file",
                    format!(
                        "only a file driver takes [file], not a driver of kind {}",
                        other.as_str()
                    ),
                ))
            }
            (_, None) => {}
        }
        match (w.kind, &w.http) {
            (Kind::Http, None) => {
                return Err(key_err(
                    file,
                    "http",
                    "missing: an http driver needs [http] with its request",
                ))
            }
            (Kind::Http, Some(h)) => {
                h.check(w.limits.deadline_ms)
                    .map_err(|(key, reason)| key_err(file, &key, reason))?;
                // A recorded manifest is replayed from its recorded exchanges, with no
                // network: the CA file of the machine that acted is not needed.
                if let Some(ca) = h.ca_file.as_ref().filter(|_| file != Path::new(RECORDED)) {
                    let folder = file.parent().unwrap_or(Path::new("."));
                    crate::http::certificate_authorities(&folder.join(ca))
                        .map_err(|reason| key_err(file, "http.ca_file", reason))?;
                }
            }
            (other, Some(_)) => {
                return Err(key_err(
                    file,
                    "http",
                    format!(
                        "only an http driver takes [http], not a driver of kind {}",
                        other.as_str()
                    ),
                ))
            }
            (_, None) => {}
        }
        match (w.kind, &w.wasm) {
            (Kind::Wasm, None) => {
                return Err(key_err(
                    file,
                    "wasm",
                    "missing: a wasm driver needs [wasm] with its module and its hash",
                ))
            }
            (Kind::Wasm, Some(m)) => {
                m.check(w.limits.deadline_ms)
                    .map_err(|(key, reason)| key_err(file, &key, reason))?;
                // A recorded manifest is replayed with the module its hash names.
                if file != Path::new(RECORDED) {
                    let folder = file.parent().unwrap_or(Path::new("."));
                    m.module_bytes(folder)
                        .map_err(|(key, reason)| key_err(file, &key, reason))?;
                }
            }
            (other, Some(_)) => {
                return Err(key_err(
                    file,
                    "wasm",
                    format!(
                        "only a wasm driver takes [wasm], not a driver of kind {}",
                        other.as_str()
                    ),
                ))
            }
            (_, None) => {}
        }
        // What the artifact hash covers must have one encoding: a value with none (an
        // integer no double holds, say) is refused here, named by its key.
        let value = serde_json::to_value(&w).expect("a manifest is plain data");
        let canonical = axon_protocols::canonical::to_vec(&value).map_err(|e| {
            let key = e.path.trim_start_matches('/').replace('/', ".");
            key_err(file, &key, e.to_string())
        })?;
        Ok(Self {
            file: file.to_owned(),
            name: w.name.clone(),
            version: w.version.clone(),
            kind: w.kind,
            capability: w.capability.clone(),
            effect: w.effect,
            risk: w.risk,
            max_blast_radius: w.max_blast_radius,
            idempotent: w.idempotent,
            initial_lane: w.lane,
            cost: w.cost,
            limits: w.limits,
            obligations,
            file_settings: w.file.clone(),
            http_settings: w.http.clone(),
            wasm_settings: w.wasm.clone(),
            slo: w.slo.clone(),
            shadow: w.shadow.clone().unwrap_or_default(),
            utility: w.utility.clone(),
            samples,
            promotion,
            canonical,
        })
    }

    /// The folder relative paths of the manifest are read from: its file's.
    pub fn folder(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// The canonical JSON of the manifest as written: what a capsule records, so that a
    /// replay rebuilds the driver that ran.
    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }

    /// The manifest a capsule recorded (its canonical JSON), read back to replay.
    pub fn from_recorded(value: &serde_json::Value) -> Result<Self, ManifestError> {
        let file = Path::new(RECORDED);
        let written: ManifestFile =
            serde_json::from_value(value.clone()).map_err(|e| ManifestError::Syntax {
                file: file.to_owned(),
                reason: e.to_string(),
            })?;
        Self::check(written, file)
    }

    /// The driver's description of itself.
    pub fn descriptor(&self) -> DriverDescriptor {
        DriverDescriptor {
            name: self.name.clone(),
            version: self.version.clone(),
            capability: self.capability.clone(),
            effect: self.effect,
            risk: self.risk,
            max_blast_radius: self.max_blast_radius,
            cost: self.cost,
            artifact_hash: axon_protocols::journal::hex(&artifact_hash(self)),
            obligations: self.obligations.spec_json(),
            idempotent: self.idempotent,
            // A read changes nothing, so there is nothing to undo.
            can_rollback: self.effect == Effect::Write
                && (self.kind.can_rollback()
                    || self
                        .http_settings
                        .as_ref()
                        .is_some_and(|h| h.rollback.is_some())),
            slo: self.slo.clone(),
        }
    }
}

/// BLAKE3 of what actually runs for `manifest`'s driver: the canonical JSON of the
/// manifest as written (its limits, effect, risk and lane are part of the build), and for
/// a kind whose code is built into the binary, that code's identity before it. So a
/// changed manifest, or new code for its kind, is a new build. The one place this is
/// computed: lanes are keyed by it, and capsules and replays record and compare it.
pub fn artifact_hash(manifest: &Manifest) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    if let Some(identity) = manifest.kind.builtin_identity() {
        h.update(identity.as_bytes());
        h.update(&[0]);
    }
    h.update(&manifest.canonical);
    *h.finalize().as_bytes()
}

/// Reads every `*.toml` in `dir`, in name order. Two manifests naming the same driver are
/// refused.
pub fn load_dir(dir: &Path) -> Result<Vec<Manifest>, ManifestError> {
    let read_err = |reason: String| ManifestError::Read {
        file: dir.to_owned(),
        reason,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| read_err(e.to_string()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(e.to_string()))?;
    files.retain(|p| p.extension().is_some_and(|x| x == "toml"));
    files.sort();
    let mut out: Vec<Manifest> = Vec::with_capacity(files.len());
    for file in files {
        let m = Manifest::load(&file)?;
        if let Some(first) = out.iter().find(|o| o.name == m.name) {
            return Err(ManifestError::Duplicate {
                name: m.name,
                first: first.file.clone(),
                second: file,
            });
        }
        out.push(m);
    }
    Ok(out)
}
