//! The red-team suite a driver build must pass before it may be promoted to `shadow`,
//! generated from its obligations and run against a stand-in: a real HTTP server on
//! loopback for an http driver (every URL of the manifest pointed at it), a scratch
//! directory for a file driver (beside a directory outside it that must stay untouched).
//! Nothing reaches the driver's real endpoint or directory.
//!
//! The checks, in order, stopping at the first failure:
//! - `sample`: each sample the manifest declares (`[[redteam.samples]]`) is answered `ok`
//!   with its postcondition holding (an http sample gets the answer it names);
//! - `schema_violation`: arguments that break the argument schema — built to break it (a
//!   wrong type, a required member missing, an unknown member where none is allowed, a
//!   string past its `maxLength`, a number past its bounds, a value outside its `enum`)
//!   or hostile values the schema refuses — are refused before the driver is called, and
//!   the stand-in sees nothing;
//! - `hostile_value`: values that fit the schema yet are hostile (injection strings,
//!   control characters, the longest allowed strings, boundary numbers; for a file
//!   driver, names planted as a symlink and a hard link to a file outside its directory)
//!   are refused by a precondition, or reach the stand-in exactly as sent: the request's
//!   method, its target matching the URL template with each value percent-encoded (so it
//!   cannot change the request's path or query), its headers and its JSON body; for a
//!   file driver, nothing outside the directory changes and an appended record reads
//!   back as sent.
//!
//! Echo and wasm drivers touch nothing outside themselves: their suites run the samples
//! and the schema checks.

use crate::descriptor::Effect;
use crate::driver::{act_checked, Call, Driver, Outcome, Prediction, Recorded, Status};
use crate::http::{Body, HeaderValue, RequestTemplate};
use crate::loopback::{Loopback, Reply, Seen};
use crate::manifest::{Kind, Manifest, SampleReply};
use axon_protocols::intent::AxonIntent;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The most cases one suite runs.
pub const MAX_CASES: usize = 2000;

/// The check that failed, the value it failed on and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    /// `sample`, `schema_violation`, `hostile_value` or `setup`.
    pub check: &'static str,
    /// The arguments of the failing call.
    pub value: Value,
    pub reason: String,
}

/// What one run of a suite found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub passed: bool,
    /// Samples answered ok with their postcondition holding.
    pub samples: u64,
    /// Schema violations refused before the driver was called.
    pub violations: u64,
    /// Hostile values that reached the stand-in exactly as sent.
    pub hostile_exact: u64,
    /// Hostile values a precondition refused.
    pub hostile_refused: u64,
    /// The first failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// What the suite could not cover, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    fn new() -> Self {
        Self {
            passed: false,
            samples: 0,
            violations: 0,
            hostile_exact: 0,
            hostile_refused: 0,
            failure: None,
            notes: vec![],
        }
    }

    /// The report of a suite that could not run at all.
    pub fn failed_to_run(reason: impl Into<String>) -> Self {
        Self::new().fail("setup", Value::Null, reason)
    }

    fn fail(mut self, check: &'static str, value: Value, reason: impl Into<String>) -> Self {
        self.failure = Some(Failure {
            check,
            value,
            reason: reason.into(),
        });
        self.passed = false;
        self
    }
}

/// Runs the suite of `manifest`'s driver, built as the node builds it, with a scratch
/// directory under `scratch` (removed afterwards).
pub fn run(manifest: &Manifest, scratch: &Path) -> Report {
    run_with(manifest, scratch, crate::host::build)
}

/// Runs the suite of `manifest`'s driver as `make` builds it from the stand-in's
/// manifest (the manifest with its URLs or its directory pointed at the stand-in): a
/// test hands its own driver in here to see the suite catch it.
pub fn run_with(
    manifest: &Manifest,
    scratch: &Path,
    make: impl FnOnce(&Manifest) -> Result<Box<dyn Driver>, String>,
) -> Report {
    let report = Report::new();
    let stand_in = match StandIn::new(manifest, scratch) {
        Ok(s) => s,
        Err(reason) => return report.fail("setup", Value::Null, reason),
    };
    let driver = match make(&stand_in.manifest) {
        Ok(d) => d,
        Err(reason) => {
            return report.fail(
                "setup",
                Value::Null,
                format!("the driver does not start against its stand-in: {reason}"),
            )
        }
    };
    let mut suite = Suite {
        manifest,
        stand_in,
        driver: Counting {
            inner: driver,
            calls: 0,
        },
        cases: 0,
        report,
    };
    let report = suite.run();
    drop(suite.driver);
    if let Some(dir) = suite.stand_in.dir.take() {
        let _ = std::fs::remove_dir_all(dir);
    }
    report
}

/// The driver under test, counting the calls that reached it.
struct Counting {
    inner: Box<dyn Driver>,
    calls: u64,
}

impl Driver for Counting {
    fn describe(&self) -> crate::descriptor::DriverDescriptor {
        self.inner.describe()
    }
    fn effect(&self) -> Effect {
        self.inner.effect()
    }
    fn predict(&mut self, call: &Call) -> Prediction {
        self.inner.predict(call)
    }
    fn push(&mut self, call: &Call) -> Outcome {
        self.calls += 1;
        self.inner.push(call)
    }
    fn pull(&mut self, call: &Call) -> Outcome {
        self.calls += 1;
        self.inner.pull(call)
    }
    fn rollback(&mut self, action: &Recorded) -> Outcome {
        self.inner.rollback(action)
    }
}

/// What the driver runs against in place of the world.
struct StandIn {
    /// The manifest pointed at the stand-in.
    manifest: Manifest,
    server: Option<(Loopback, Arc<Mutex<Reply>>)>,
    /// The scratch directory, removed at the end.
    dir: Option<PathBuf>,
    /// A file driver's directory, and the directory outside it that must stay untouched.
    file_dirs: Option<(PathBuf, PathBuf)>,
}

/// The file outside a file driver's directory that links inside point at.
const OUTSIDE_FILE: &str = "outside.log";
const OUTSIDE_TEXT: &str = "untouched\n";
/// The names planted inside a file driver's directory, linked to the outside file.
const PLANTED: [&str; 2] = ["redteam-symlink", "redteam-hardlink"];

/// A scratch directory of its own under `root`.
fn scratch_dir(root: &Path, name: &str) -> Result<PathBuf, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = root.join(format!("redteam-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the scratch directory {}: {e}", dir.display()))?;
    Ok(dir)
}

/// `url` with its scheme and host replaced by `base`; a host built from arguments
/// cannot be stood in for.
fn redirect(url: &str, base: &str) -> Result<String, String> {
    let after = url
        .find("://")
        .map(|i| i + 3)
        .ok_or_else(|| format!("{url:?} has no scheme"))?;
    let rest = &url[after..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[..end].contains('{') {
        return Err(format!(
            "the URL {url:?} builds its host from the arguments, which the red-team suite cannot stand in for"
        ));
    }
    Ok(format!("{base}{}", &rest[end..]))
}

impl StandIn {
    fn new(manifest: &Manifest, scratch: &Path) -> Result<Self, String> {
        let mut m = manifest.clone();
        match manifest.kind {
            Kind::Http => {
                let reply = Arc::new(Mutex::new(Reply::json(200, "{}")));
                let r = reply.clone();
                let server = Loopback::start(move |_, _| {
                    r.lock().unwrap_or_else(|e| e.into_inner()).clone()
                })
                .map_err(|e| format!("cannot start the stand-in service: {e}"))?;
                let h = m
                    .http_settings
                    .as_mut()
                    .ok_or("an http driver's manifest has no [http]")?;
                h.request.url = redirect(&h.request.url, &server.base)?;
                for t in [h.dry_run.as_mut(), h.rollback.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    t.url = redirect(&t.url, &server.base)?;
                }
                // The stand-in speaks plain HTTP.
                h.ca_file = None;
                Ok(Self {
                    manifest: m,
                    server: Some((server, reply)),
                    dir: None,
                    file_dirs: None,
                })
            }
            Kind::File => {
                let dir = scratch_dir(scratch, &manifest.name)?;
                let (inside, outside) = (dir.join("inside"), dir.join("outside"));
                let io = |e: std::io::Error| format!("cannot set up the scratch directory: {e}");
                std::fs::create_dir_all(&inside).map_err(io)?;
                std::fs::create_dir_all(&outside).map_err(io)?;
                let target = outside.join(OUTSIDE_FILE);
                std::fs::write(&target, OUTSIDE_TEXT).map_err(io)?;
                std::os::unix::fs::symlink(&target, inside.join(PLANTED[0])).map_err(io)?;
                std::fs::hard_link(&target, inside.join(PLANTED[1])).map_err(io)?;
                m.file_settings
                    .as_mut()
                    .ok_or("a file driver's manifest has no [file]")?
                    .dir = inside.clone();
                Ok(Self {
                    manifest: m,
                    server: None,
                    dir: Some(dir),
                    file_dirs: Some((inside, outside)),
                })
            }
            Kind::Echo | Kind::Wasm => Ok(Self {
                manifest: m,
                server: None,
                dir: None,
                file_dirs: None,
            }),
        }
    }

    /// What the stand-in service answers the next calls.
    fn answer(&self, reply: Option<&SampleReply>) {
        if let Some((_, r)) = &self.server {
            *r.lock().unwrap_or_else(|e| e.into_inner()) = match reply {
                Some(s) => Reply::json(s.status, &s.body.to_string()),
                None => Reply::json(200, "{}"),
            };
        }
    }

    /// Requests the stand-in service received so far.
    fn received(&self) -> usize {
        self.server.as_ref().map_or(0, |(s, _)| s.count())
    }

    fn seen_from(&self, from: usize) -> Vec<Seen> {
        self.server
            .as_ref()
            .map_or(vec![], |(s, _)| s.seen().split_off(from))
    }

    /// Why the directory outside a file driver's has changed, if it has.
    fn escaped(&self) -> Option<String> {
        let (inside, outside) = self.file_dirs.as_ref()?;
        let names: Vec<String> = match std::fs::read_dir(outside) {
            Ok(d) => d
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) => return Some(format!("the outside directory cannot be read: {e}")),
        };
        if names != [OUTSIDE_FILE] {
            return Some(format!(
                "the directory outside the driver's holds {names:?}: something was written there"
            ));
        }
        match std::fs::read_to_string(outside.join(OUTSIDE_FILE)) {
            Ok(t) if t == OUTSIDE_TEXT => {}
            Ok(t) => {
                return Some(format!(
                    "the file outside the driver's directory was written to through a link: it now holds {t:?}"
                ))
            }
            Err(e) => return Some(format!("the file outside the directory is gone: {e}")),
        }
        let parent = inside.parent()?;
        match std::fs::read_dir(parent).map(|d| d.count()) {
            Ok(2) => None,
            _ => Some("something was written beside the driver's directory".into()),
        }
    }
}

/// One run of a suite.
struct Suite<'a> {
    manifest: &'a Manifest,
    stand_in: StandIn,
    driver: Counting,
    cases: usize,
    report: Report,
}

/// Why one case failed.
type CaseResult = Result<(), (&'static str, Value, String)>;

/// What one call answered: its outcome, or the obligation that refused it.
type Checked = Result<Outcome, crate::obligations::Violation>;

impl Suite<'_> {
    fn run(&mut self) -> Report {
        match self.cases_all() {
            Ok(()) => {
                self.report.passed = true;
                self.report.clone()
            }
            Err((check, value, reason)) => self.report.clone().fail(check, value, reason),
        }
    }

    fn cases_all(&mut self) -> CaseResult {
        let samples = self.manifest.samples.clone();
        for s in &samples {
            self.sample(&s.args, s.reply.as_ref())?;
        }
        let base = match samples.first() {
            Some(s) => s.args.clone(),
            None => match self.generated_base() {
                Some(b) => b,
                None => {
                    return Err((
                        "setup",
                        Value::Null,
                        "no arguments that fit the schema could be built from it: declare one in [[redteam.samples]]".into(),
                    ))
                }
            },
        };
        self.stand_in.answer(None);
        let (violations, hostile, left_out) = self.generate(&base);
        if left_out > 0 {
            self.report.notes.push(format!(
                "{left_out} cases beyond the suite's bound of {MAX_CASES} were not run"
            ));
        }
        for v in violations {
            self.violation(v)?;
        }
        match self.manifest.kind {
            Kind::Http | Kind::File => {
                for h in hostile {
                    self.hostile(h)?;
                }
            }
            Kind::Echo | Kind::Wasm => self.report.notes.push(format!(
                "a {} driver touches no endpoint and no directory: its hostile values are not sent",
                self.manifest.kind.as_str()
            )),
        }
        Ok(())
    }

    fn call(&mut self, args: &Value) -> Result<Checked, (&'static str, Value, String)> {
        self.cases += 1;
        if self.cases > MAX_CASES {
            return Err((
                "setup",
                args.clone(),
                format!("the suite has more than {MAX_CASES} cases"),
            ));
        }
        let intent = AxonIntent {
            capability: self.manifest.capability.clone(),
            args: args.clone(),
            intent_id: Some(format!("redteam-{}", self.cases)),
            correlation_id: None,
            budget_ms: None,
            purpose: Some("red-team suite".into()),
            consent: None,
        };
        let action_id = format!("redteam-{:08}", self.cases);
        let obligations = self.stand_in.manifest.obligations.clone();
        Ok(act_checked(
            &mut self.driver,
            &obligations,
            &Call {
                action_id: &action_id,
                intent: &intent,
            },
        ))
    }

    fn sample(&mut self, args: &Value, reply: Option<&SampleReply>) -> CaseResult {
        self.stand_in.answer(reply);
        match self.call(args)? {
            Ok(o) if o.status == Status::Ok => {
                self.report.samples += 1;
                Ok(())
            }
            Ok(o) => Err((
                "sample",
                args.clone(),
                format!(
                    "the sample was answered {:?}: {}",
                    o.status,
                    o.reason.unwrap_or_default()
                ),
            )),
            Err(v) => Err((
                "sample",
                args.clone(),
                format!("the sample was refused: {v}"),
            )),
        }
    }

    fn violation(&mut self, args: Value) -> CaseResult {
        let (calls, received) = (self.driver.calls, self.stand_in.received());
        let answer = self.call(&args)?;
        if self.driver.calls != calls || self.stand_in.received() != received {
            return Err((
                "schema_violation",
                args,
                "arguments that break the schema reached the driver".into(),
            ));
        }
        if let Some(why) = self.stand_in.escaped() {
            return Err(("schema_violation", args, why));
        }
        match answer {
            Err(_) => {
                self.report.violations += 1;
                Ok(())
            }
            Ok(o) => Err((
                "schema_violation",
                args,
                format!(
                    "arguments that break the schema were answered {:?}",
                    o.status
                ),
            )),
        }
    }

    fn hostile(&mut self, args: Value) -> CaseResult {
        let from = self.stand_in.received();
        let outcome = match self.call(&args)? {
            Err(v) if v.which == "precondition" => {
                self.report.hostile_refused += 1;
                return Ok(());
            }
            Err(v) => {
                return Err((
                    "hostile_value",
                    args,
                    format!("a value that fits the schema was refused as not fitting it: {v}"),
                ))
            }
            Ok(o) => o,
        };
        if let Some(why) = self.stand_in.escaped() {
            return Err(("hostile_value", args, why));
        }
        let checked = match self.manifest.kind {
            Kind::Http => {
                let t = &self
                    .manifest
                    .http_settings
                    .as_ref()
                    .expect("checked at setup")
                    .request;
                match self.stand_in.seen_from(from).first() {
                    None => Err(format!(
                        "it was neither refused by a precondition nor sent as given: {}",
                        outcome
                            .reason
                            .unwrap_or_else(|| "no request arrived".into())
                    )),
                    Some(seen) => exact_request(t, &args, seen),
                }
            }
            Kind::File => self.record_read_back(&args, &outcome),
            Kind::Echo | Kind::Wasm => Ok(()),
        };
        match checked {
            Ok(()) => {
                self.report.hostile_exact += 1;
                Ok(())
            }
            Err(why) => Err(("hostile_value", args, why)),
        }
    }

    /// For an appended record: the file's last line holds it as sent.
    fn record_read_back(&self, args: &Value, outcome: &Outcome) -> Result<(), String> {
        if outcome.status == Status::Ok
            && self.manifest.effect == Effect::Read
            && outcome.output.to_string().contains(OUTSIDE_TEXT.trim())
        {
            return Err("it read the file outside the driver's directory through a link".into());
        }
        if outcome.status != Status::Ok || self.manifest.effect != Effect::Write {
            // Refused by the driver (a planted link), and nothing escaped: contained.
            return Ok(());
        }
        let (inside, _) = self.stand_in.file_dirs.as_ref().expect("a file stand-in");
        let name = args.get("file").and_then(Value::as_str).unwrap_or("");
        let text = std::fs::read_to_string(inside.join(name))
            .map_err(|e| format!("the appended file {name:?} cannot be read back: {e}"))?;
        let last: Value = text
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| format!("{name:?} does not end with a record"))?;
        if last.get("record") == args.get("record") {
            Ok(())
        } else {
            Err(format!(
                "the record read back as {}, not as sent",
                last.get("record").unwrap_or(&Value::Null)
            ))
        }
    }

    /// Arguments built from the schema alone: each required member (and each name a
    /// template uses) with a plain value of its type.
    fn generated_base(&self) -> Option<Value> {
        let schemas = self.schemas();
        let mut base = Map::new();
        for schema in &schemas {
            let props = schema.get("properties").and_then(Value::as_object);
            for name in required(schema) {
                let s = props.and_then(|p| p.get(&name)).unwrap_or(&Value::Null);
                base.insert(name, plain_value(s));
            }
        }
        if self.manifest.kind == Kind::File {
            base.insert("file".into(), json!("redteam.log"));
            base.entry("record").or_insert(json!("axon"));
        }
        for name in self.template_names() {
            base.entry(name).or_insert(json!("axon"));
        }
        let base = Value::Object(base);
        self.manifest.obligations.check_args(&base).ok()?;
        Some(base)
    }

    /// The argument schemas the driver is held to: its kind's, then its manifest's.
    fn schemas(&self) -> Vec<Value> {
        let spec = self.manifest.obligations.spec_json();
        let mut out = vec![];
        if self.manifest.kind == Kind::File {
            out.push(match self.manifest.effect {
                Effect::Write => crate::file::args_schema(),
                Effect::Read => crate::file::read_args_schema(),
            });
        }
        if let Some(a) = spec.get("args") {
            out.push(a.clone());
        }
        out
    }

    /// The argument names the request's URL and headers are built from.
    fn template_names(&self) -> Vec<String> {
        let Some(h) = &self.manifest.http_settings else {
            return vec![];
        };
        let mut texts = vec![h.request.url.as_str()];
        for v in h.request.headers.values() {
            if let HeaderValue::Text(t) = v {
                texts.push(t);
            }
        }
        let mut names: Vec<String> = texts
            .into_iter()
            .flat_map(|t| crate::http::template_names(t).unwrap_or_default())
            .filter(|n| !n.starts_with("output."))
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The schema violations and the hostile values to try, each as whole arguments:
    /// `base` with one member changed; and how many were built past the bound and left
    /// out.
    fn generate(&self, base: &Value) -> (Vec<Value>, Vec<Value>, usize) {
        let schemas = self.schemas();
        let mut violations = vec![];
        let mut hostile = vec![];
        let with = |name: &str, v: Value| with_at(base, &[name.to_owned()], v);
        // Built to break each schema, by its own keywords.
        for schema in &schemas {
            if schema.get("type") == Some(&json!("object")) {
                violations.push(json!("not an object"));
                violations.push(json!([]));
            }
            for name in required(schema) {
                let mut a = base.clone();
                if let Some(o) = a.as_object_mut() {
                    o.remove(&name);
                }
                violations.push(a);
            }
            let props = schema.get("properties").and_then(Value::as_object);
            if schema.get("additionalProperties") == Some(&json!(false))
                && !props.is_some_and(|p| p.contains_key("redteam_unexpected"))
            {
                violations.push(with("redteam_unexpected", json!(1)));
            }
            let max = self.manifest.limits.max_payload_bytes;
            for (path, s) in members(schema) {
                violations.extend(
                    breaking_values(&s, max)
                        .into_iter()
                        .map(|v| with_at(base, &path, v)),
                );
            }
        }
        // Hostile values for each member the schemas name, at any depth (a request
        // body's own members too), or the templates use; those the schema refuses are
        // violations too.
        let mut names: Vec<(Vec<String>, Value)> = vec![];
        for schema in &schemas {
            names.extend(members(schema));
        }
        for name in self.template_names() {
            if !names.iter().any(|(n, _)| *n == [name.clone()]) {
                names.push((vec![name], Value::Null));
            }
        }
        let max_payload = self.manifest.limits.max_payload_bytes;
        for (path, s) in &names {
            for v in hostile_values(s, max_payload) {
                let a = with_at(base, path, v);
                if self.manifest.obligations.check_args(&a).is_ok() {
                    hostile.push(a);
                } else {
                    violations.push(a);
                }
            }
        }
        if self.manifest.kind == Kind::File {
            for planted in PLANTED {
                let a = with("file", json!(planted));
                if self.manifest.obligations.check_args(&a).is_ok() {
                    hostile.push(a);
                }
            }
        }
        // Bounded like the run (the samples run first), and shared: each kind keeps at
        // least half the room it needs, so a large schema never crowds out the other.
        let budget = MAX_CASES - crate::manifest::MAX_SAMPLES;
        let (v, h) = (violations.len(), hostile.len());
        let v_keep = v.min(budget - h.min(budget / 2));
        let h_keep = h.min(budget - v_keep);
        violations.truncate(v_keep);
        hostile.truncate(h_keep);
        (violations, hostile, (v - v_keep) + (h - h_keep))
    }
}

/// The most members of nested objects a suite tries values at.
const MAX_MEMBERS: usize = 256;

/// Each member `schema`'s objects name, at any depth (at most [`MAX_BUILT_DEPTH`] and
/// [`MAX_MEMBERS`]), as its path of names, with its schema.
fn members(schema: &Value) -> Vec<(Vec<String>, Value)> {
    fn walk(schema: &Value, path: &[String], out: &mut Vec<(Vec<String>, Value)>) {
        if path.len() >= MAX_BUILT_DEPTH {
            return;
        }
        for (name, s) in schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if out.len() >= MAX_MEMBERS {
                return;
            }
            let mut p = path.to_vec();
            p.push(name.clone());
            out.push((p.clone(), s.clone()));
            walk(s, &p, out);
        }
    }
    let mut out = vec![];
    walk(schema, &[], &mut out);
    out
}

/// `base` with `v` at `path` (objects made on the way where there are none).
fn with_at(base: &Value, path: &[String], v: Value) -> Value {
    let mut a = base.clone();
    let mut at = &mut a;
    for (i, name) in path.iter().enumerate() {
        if !at.is_object() {
            *at = json!({});
        }
        let o = at.as_object_mut().expect("made an object above");
        if i + 1 == path.len() {
            o.insert(name.clone(), v);
            break;
        }
        at = o.entry(name.clone()).or_insert_with(|| json!({}));
    }
    a
}

/// The names `schema` requires.
fn required(schema: &Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// The JSON type names `schema` allows (none named: any).
fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

/// A plain value `schema` likely takes: the first of its `enum`, else one of its type.
fn plain_value(schema: &Value) -> Value {
    plain_value_at(schema, 0)
}

/// How deep a built value nests objects and arrays.
const MAX_BUILT_DEPTH: usize = 16;

fn plain_value_at(schema: &Value, depth: usize) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let min = schema.get("minimum").cloned();
    let kind = types(schema)
        .first()
        .copied()
        .or_else(|| schema.get("properties").map(|_| "object"));
    match kind {
        Some("integer") | Some("number") => min.unwrap_or(json!(0)),
        Some("boolean") => json!(false),
        // As few items as it must hold, each plain.
        Some("array") if depth < MAX_BUILT_DEPTH => {
            let n = schema
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(16) as usize;
            let item = plain_value_at(schema.get("items").unwrap_or(&Value::Null), depth + 1);
            Value::Array(vec![item; n])
        }
        Some("array") => json!([]),
        // Its required members, each plain: a request body's object, say.
        Some("object") if depth < MAX_BUILT_DEPTH => {
            let props = schema.get("properties").and_then(Value::as_object);
            let members = required(schema)
                .into_iter()
                .map(|name| {
                    let s = props.and_then(|p| p.get(&name)).unwrap_or(&Value::Null);
                    (name, plain_value_at(s, depth + 1))
                })
                .collect();
            Value::Object(members)
        }
        Some("object") => json!({}),
        Some("null") => Value::Null,
        _ => {
            // Past a payload no manifest allows, no plain value is built: the suite then
            // asks for a declared sample.
            let min_len = schema
                .get("minLength")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(MAX_BUILT_STRING) as usize;
            json!("axon".repeat(min_len.div_ceil(4).max(1)))
        }
    }
}

/// The longest string a suite builds.
const MAX_BUILT_STRING: u64 = 1 << 16;

/// Values that break `schema` by its own keywords (no string longer than
/// [`MAX_BUILT_STRING`] or than `max_payload` bytes, which the node refuses before any
/// schema is asked).
fn breaking_values(schema: &Value, max_payload: u64) -> Vec<Value> {
    let max_payload = max_payload.min(MAX_BUILT_STRING);
    let mut out = vec![];
    let ts = types(schema);
    if !ts.is_empty() {
        let candidates = [
            ("string", json!("a string")),
            ("integer", json!(7)),
            ("number", json!(7.5)),
            ("boolean", json!(true)),
            ("array", json!([1])),
            ("object", json!({"a": 1})),
            ("null", Value::Null),
        ];
        let allowed = |t: &str| ts.contains(&t) || (t == "integer" && ts.contains(&"number"));
        // The first candidate of a type the schema does not allow.
        if let Some((_, v)) = candidates.iter().find(|(t, _)| !allowed(t)) {
            out.push(v.clone());
        }
    }
    if let Some(n) = schema.get("maxLength").and_then(Value::as_u64) {
        if n < max_payload {
            out.push(json!("a".repeat(n as usize + 1)));
        }
    }
    if let Some(n) = schema.get("minLength").and_then(Value::as_u64) {
        if n > 0 && n <= max_payload {
            out.push(json!("a".repeat(n as usize - 1)));
        }
    }
    for (key, step) in [("maximum", 1.0), ("minimum", -1.0)] {
        if let Some(n) = schema.get(key).and_then(Value::as_f64) {
            out.push(json!(n + step));
        }
    }
    for key in ["exclusiveMaximum", "exclusiveMinimum"] {
        if let Some(n) = schema.get(key) {
            out.push(n.clone());
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        let outside = json!("redteam-not-in-enum");
        if !e.contains(&outside) {
            out.push(outside);
        }
    }
    out
}

/// Strings that fit many schemas yet are hostile.
const HOSTILE_STRINGS: &[&str] = &[
    "' OR '1'='1' --",
    "\"; DROP TABLE actions; --",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/a}",
    "$(id)",
    "`id`",
    "{{7*7}}",
    "../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "/etc/passwd",
    "a/b?c=d&e=f#g",
    "x&admin=true",
    "100% + 1 = ?",
    "%00",
    "line\r\nX-Injected: 1",
    "tab\tand space",
    "nul\u{0}byte",
    "\u{1}\u{1f}\u{7f}",
    "é ü 😀 \u{202e}rtl",
    "\u{feff}",
    "",
];

/// Hostile values for a member of `schema`: strings where it takes strings (or says
/// nothing of its type), boundary numbers where it takes numbers; the longest string
/// it allows (up to a quarter of the payload limit).
fn hostile_values(schema: &Value, max_payload: u64) -> Vec<Value> {
    let ts = types(schema);
    let any = ts.is_empty();
    let mut out = vec![];
    if any || ts.contains(&"string") {
        out.extend(HOSTILE_STRINGS.iter().map(|s| json!(s)));
        let longest = schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .unwrap_or(4096)
            .min(max_payload / 4)
            .min(1 << 16) as usize;
        let alphabet: Vec<char> = "a/?&=#%'\" <>\\".chars().collect();
        out.push(json!((0..longest)
            .map(|i| alphabet[i % alphabet.len()])
            .collect::<String>()));
    }
    if any || ts.contains(&"integer") || ts.contains(&"number") {
        let mut numbers = vec![
            json!(0),
            json!(-1),
            json!(9_007_199_254_740_991i64),
            json!(-9_007_199_254_740_991i64),
        ];
        if any || ts.contains(&"number") {
            numbers.push(json!(1e308));
            numbers.push(json!(0.30000000000000004));
        }
        for key in ["minimum", "maximum"] {
            if let Some(n) = schema.get(key) {
                numbers.push(n.clone());
            }
        }
        out.extend(numbers);
    }
    out
}

/// Whether `seen` is the request `t` makes of `args`, each value exactly as given.
fn exact_request(t: &RequestTemplate, args: &Value, seen: &Seen) -> Result<(), String> {
    if seen.method != t.method.as_str() {
        return Err(format!(
            "the service received a {} request, not {}",
            seen.method,
            t.method.as_str()
        ));
    }
    target_matches(t, args, &seen.target)?;
    for (name, v) in &t.headers {
        let HeaderValue::Text(text) = v else { continue };
        // Header values are sent as the arguments give them, unencoded.
        let expected = crate::http::fill(text, args, None, false)?;
        let got = seen.header(&name.to_ascii_lowercase());
        if got != Some(expected.trim()) {
            return Err(format!(
                "the header {name} arrived as {got:?}, not as {:?}",
                expected.trim()
            ));
        }
    }
    let sent = match &t.body {
        Body::Args => Some(args),
        Body::Member(name) => args.get(name),
        Body::None => None,
    };
    match sent {
        Some(sent) => {
            let body: Value = serde_json::from_slice(&seen.body).map_err(|e| {
                format!(
                    "the body that arrived is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&seen.body)
                )
            })?;
            if &body != sent {
                return Err(format!(
                    "the body arrived as {body}, not as the arguments sent"
                ));
            }
        }
        None if !seen.body.is_empty() => {
            return Err("a body arrived where the template sends none".into())
        }
        None => {}
    }
    Ok(())
}

enum Piece<'a> {
    Text(&'a str),
    Name(&'a str),
}

fn pieces(t: &str) -> Vec<Piece<'_>> {
    let mut out = vec![];
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        out.push(Piece::Name(&rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

/// Whether the request target that arrived is the URL template's path and query with
/// each name's value percent-encoded: the template's own text verbatim, and in place of
/// each name only unreserved characters and `%XX` escapes that decode to the value.
fn target_matches(t: &RequestTemplate, args: &Value, target: &str) -> Result<(), String> {
    let url = &t.url;
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    let rest = &url[after..];
    let path = rest.find(['/', '?', '#']).map_or("", |i| &rest[i..]);
    let path = path.split('#').next().unwrap_or("");
    let template = if path.is_empty() || path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    let ps = pieces(&template);
    let mut expected = Vec::with_capacity(ps.len());
    for p in &ps {
        expected.push(match p {
            Piece::Text(s) => Ok(*s),
            Piece::Name(n) => Err(crate::http::lookup(n, args, None)?),
        });
    }
    if matches_from(&expected, target.as_bytes()) {
        Ok(())
    } else {
        Err(format!(
            "the request target arrived as {target:?}: it is not the URL template {template:?} with each value percent-encoded"
        ))
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The length of the run at the start of `target` that encodes `value`: unreserved
/// bytes as themselves, any byte as a `%XX` escape. Each unit decodes to one byte, so
/// there is at most one such run.
fn encoded_run(value: &[u8], target: &[u8]) -> Option<usize> {
    let mut at = 0;
    for &want in value {
        let (got, len) = match *target.get(at)? {
            b'%' => {
                let hex = target.get(at + 1..at + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                (
                    u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?,
                    3,
                )
            }
            b if is_unreserved(b) => (b, 1),
            _ => return None,
        };
        if got != want {
            return None;
        }
        at += len;
    }
    Some(at)
}

/// Whether `target` is the pieces in order: text verbatim, each value (`Err`) as an
/// encoded run that decodes to it.
fn matches_from(pieces: &[Result<&str, String>], target: &[u8]) -> bool {
    match pieces.split_first() {
        None => target.is_empty(),
        Some((Ok(text), rest)) => target
            .strip_prefix(text.as_bytes())
            .is_some_and(|t| matches_from(rest, t)),
        Some((Err(value), rest)) => match encoded_run(value.as_bytes(), target) {
            Some(end) => matches_from(rest, &target[end..]),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{Gen, QuickCheck, TestResult};

    fn template() -> RequestTemplate {
        serde_json::from_value(json!({
            "method": "GET",
            "url": "http://h/v1/{a}/x?q={b}&n=1",
        }))
        .unwrap()
    }

    /// Every byte but the unreserved ones escaped, in upper or lower case hex.
    fn encode(s: &str, lower: bool) -> String {
        s.bytes()
            .map(|b| match (is_unreserved(b), lower) {
                (true, _) => (b as char).to_string(),
                (false, false) => format!("%{b:02X}"),
                (false, true) => format!("%{b:02x}"),
            })
            .collect()
    }

    #[test]
    fn values_encoded_match_and_a_raw_reserved_character_never_does() {
        fn prop(a: String, b: String, lower: bool, raw: u8) -> TestResult {
            let args = json!({"a": a, "b": b});
            let t = template();
            let target = format!("/v1/{}/x?q={}&n=1", encode(&a, lower), encode(&b, lower));
            if target_matches(&t, &args, &target).is_err() {
                return TestResult::failed();
            }
            // The same value with one reserved character sent as itself.
            let reserved = b"/?&=#+ '%"[raw as usize % 9] as char;
            let a2 = format!("{a}{reserved}");
            let args2 = json!({"a": a2, "b": b});
            let sent = format!(
                "/v1/{}{reserved}/x?q={}&n=1",
                encode(&a, lower),
                encode(&b, lower)
            );
            TestResult::from_bool(target_matches(&t, &args2, &sent).is_err())
        }
        QuickCheck::new()
            .rng(Gen::from_size_and_seed(60, 0x7ed_7ea))
            .tests(500)
            .quickcheck(prop as fn(String, String, bool, u8) -> TestResult);
    }

    #[test]
    fn any_target_is_judged_without_a_panic() {
        fn prop(target: Vec<u8>, a: String) -> bool {
            let target = String::from_utf8_lossy(&target).into_owned();
            let _ = target_matches(&template(), &json!({"a": a, "b": "1"}), &target);
            true
        }
        QuickCheck::new()
            .rng(Gen::from_size_and_seed(80, 0xbad_7a6))
            .tests(500)
            .quickcheck(prop as fn(Vec<u8>, String) -> bool);
    }

    #[test]
    fn a_host_from_the_arguments_is_refused_and_others_are_pointed_at_the_stand_in() {
        assert_eq!(
            redirect(
                "https://api.example.com:8443/v1?q={q}",
                "http://127.0.0.1:9"
            )
            .unwrap(),
            "http://127.0.0.1:9/v1?q={q}"
        );
        assert_eq!(
            redirect("http://api.example.com", "http://127.0.0.1:9").unwrap(),
            "http://127.0.0.1:9"
        );
        assert!(redirect("https://{tenant}.example.com/v1", "http://x").is_err());
    }
}
