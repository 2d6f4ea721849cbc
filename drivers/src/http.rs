//! The `http` driver: one request per push, built from the manifest's template and the
//! validated arguments — method, URL (`{name}` takes the argument `name`, percent-encoded),
//! headers, and the arguments as the JSON body. A timeout per attempt; retries with
//! backoff only for an idempotent driver whose method is idempotent; a response size
//! limit; an optional `dry_run` request for the twin and an optional compensating
//! request as its rollback. An answer of 400 or more is a `failed` outcome, not a
//! failure of the driver.
//!
//! Secrets (an API key, a bearer token) are named in the manifest by reference — an
//! environment variable or a file — and resolved at each call. What the capsule records
//! of a request shows the reference (`{secret:NAME}`), never the value; the exchange it
//! records (requests sent, responses received) is what a replay answers from, with no
//! network.
//!
//! `https://` URLs are spoken with rustls on ring. The server's certificate is checked
//! against the system's roots, or only against the certificate authorities of the
//! manifest's `http.ca_file` (a PEM file, for a private CA) where it names one.

use crate::driver::{Call, Driver, Outcome, Prediction, Recorded};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// The methods a request may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// Whether repeating it has the effect of doing it once (RFC 9110 §9.2.2).
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get | Method::Head | Method::Put | Method::Delete
        )
    }
}

/// What a request sends as its body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    /// The intent's arguments, as canonical JSON.
    Args,
    /// One member of the arguments, as canonical JSON (`body = { member = "body" }`):
    /// the others fill the URL.
    Member(String),
    /// Nothing.
    #[default]
    None,
}

/// A header's value: text (a template over the arguments), or a secret by reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum HeaderValue {
    Text(String),
    Secret { secret: String },
}

/// Where a secret is read from, at each call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretRef {
    /// An environment variable of the node.
    Env(String),
    /// A file (its content, without the trailing newline).
    File(PathBuf),
}

/// One request, as a template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTemplate {
    pub method: Method,
    /// `http://host:port/path?query`, where `{name}` is replaced by the argument `name`
    /// (and, in a rollback, `{output.a.b}` by that member of the recorded output).
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    #[serde(default)]
    pub body: Body,
}

/// The settings of an `http` driver (`[http]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub request: RequestTemplate,
    /// The request the twin sends to learn what a push would do, with no side effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<RequestTemplate>,
    /// The compensating request that undoes a push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RequestTemplate>,
    /// How long one attempt may take.
    pub timeout_ms: u64,
    /// The largest response body read; a larger one fails the call.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Further attempts after a failed one (a connection error, a timeout or a 5xx), for
    /// an idempotent driver whose method is idempotent; others never retry.
    #[serde(default)]
    pub retries: u32,
    /// The wait before the first retry, doubled for each next one.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// A PEM file of the certificate authorities an `https://` endpoint's certificate
    /// must chain to, in place of the system's roots; relative to the manifest's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

fn default_max_response_bytes() -> u64 {
    128 << 10
}

fn default_retry_backoff_ms() -> u64 {
    100
}

impl HttpSettings {
    /// Checks what the types cannot say; the error names the key.
    pub fn check(&self, deadline_ms: u64) -> Result<(), (String, String)> {
        let templates = [
            ("http.request", Some(&self.request)),
            ("http.dry_run", self.dry_run.as_ref()),
            ("http.rollback", self.rollback.as_ref()),
        ];
        for (key, t) in templates {
            let Some(t) = t else { continue };
            if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                return Err((
                    format!("{key}.url"),
                    format!("must start with http:// or https://, not {:?}", t.url),
                ));
            }
            if template_names(&t.url).is_err() {
                return Err((format!("{key}.url"), "a `{` without its `}`".into()));
            }
            for (name, v) in &t.headers {
                let ok_name = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok_name {
                    return Err((
                        format!("{key}.headers"),
                        format!("{name:?} is not a header name"),
                    ));
                }
                if let HeaderValue::Secret { secret } = v {
                    if !self.secrets.contains_key(secret) {
                        return Err((
                            format!("{key}.headers.{name}"),
                            format!(
                                "names the secret {secret:?}, which [http.secrets] does not define"
                            ),
                        ));
                    }
                }
            }
        }
        if !(1..=deadline_ms).contains(&self.timeout_ms) {
            return Err((
                "http.timeout_ms".into(),
                format!(
                    "must be between 1 and limits.deadline_ms ({deadline_ms}), not {}",
                    self.timeout_ms
                ),
            ));
        }
        if !(1..=(64 << 20)).contains(&self.max_response_bytes) {
            return Err((
                "http.max_response_bytes".into(),
                "must be between 1 and 67108864".into(),
            ));
        }
        if self.retries > 5 {
            return Err(("http.retries".into(), "must be at most 5".into()));
        }
        if self.retry_backoff_ms > 60_000 {
            return Err((
                "http.retry_backoff_ms".into(),
                "must be at most 60000".into(),
            ));
        }
        Ok(())
    }
}

/// The `{...}` names of a template, in order.
pub(crate) fn template_names(t: &str) -> Result<Vec<&str>, ()> {
    let mut names = vec![];
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(())?;
        names.push(&after[..close]);
        rest = &after[close + 1..];
    }
    Ok(names)
}

/// A value as URL text: every byte but the unreserved ones percent-encoded.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text a template name stands for: an argument, or (`output.a.b`) a member of the
/// recorded output.
pub(crate) fn lookup(name: &str, args: &Value, output: Option<&Value>) -> Result<String, String> {
    let v = match name.strip_prefix("output.") {
        Some(path) => {
            let mut v =
                output.ok_or_else(|| format!("{{{name}}} names an output, and there is none"))?;
            for part in path.split('.') {
                v = v
                    .get(part)
                    .ok_or_else(|| format!("{{{name}}}: the output has no {part:?}"))?;
            }
            v
        }
        None => args
            .get(name)
            .ok_or_else(|| format!("{{{name}}}: the arguments have no {name:?}"))?,
    };
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!(
            "{{{name}}} is {other}, not a string, number or boolean"
        )),
    }
}

/// Fills a template; `encode_values` percent-encodes what the names stand for.
pub(crate) fn fill(
    t: &str,
    args: &Value,
    output: Option<&Value>,
    encode_values: bool,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("a `{` without its `}`")?;
        let value = lookup(&after[..close], args, output)?;
        out.push_str(&if encode_values { encode(&value) } else { value });
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One request as sent.
#[derive(Clone, Debug, PartialEq)]
struct Request {
    method: Method,
    url: String,
    /// Header values as sent (secrets resolved).
    headers: Vec<(String, String)>,
    /// As the capsule records them: a secret shows as `{secret:NAME}`.
    shown_headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Request {
    /// What a capsule records of this request.
    fn recorded(&self) -> Value {
        json!({
            "method": self.method.as_str(),
            "url": self.url,
            "headers": self.shown_headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "body": self.body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
        })
    }
}

/// One response as received.
#[derive(Clone, Debug, PartialEq)]
struct Response {
    status: u16,
    body: Vec<u8>,
}

/// Why an exchange gave no answer, and whether the request may have reached the endpoint
/// (then the call may have acted, and its outcome is unknown).
#[derive(Clone, Debug, PartialEq)]
struct Failure {
    reason: String,
    sent: bool,
}

impl Failure {
    fn before_sending(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            sent: false,
        }
    }

    fn after_sending(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            sent: true,
        }
    }
}

/// How requests reach their endpoint: the network, or a recorded exchange.
trait Transport: Send {
    fn send(
        &mut self,
        req: &Request,
        timeout: Duration,
        max_bytes: u64,
    ) -> Result<Response, Failure>;

    /// For a recorded exchange: the first way the replay strayed from it.
    fn strayed(&self) -> Option<&str> {
        None
    }
}

/// The network, through a thread of its own (the blocking client must not run inside
/// the actor's runtime).
struct Network {
    tx: std::sync::mpsc::Sender<Job>,
}

type Job = (
    Request,
    Duration,
    u64,
    std::sync::mpsc::SyncSender<Result<Response, Failure>>,
);

impl Network {
    /// The network, trusting only `roots` for https where they are given.
    fn new(roots: Option<Vec<reqwest::Certificate>>) -> Result<Self, String> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let client = std::thread::Builder::new()
            .name("axon-http-driver".into())
            .spawn(move || {
                let mut builder =
                    crate::tls::client_builder().redirect(reqwest::redirect::Policy::none());
                if let Some(roots) = roots {
                    builder = builder.tls_certs_only(roots);
                }
                let client = match builder.build() {
                    Ok(c) => c,
                    Err(e) => {
                        for (_, _, _, reply) in rx {
                            let _ = reply
                                .send(Err(Failure::before_sending(format!("no HTTP client: {e}"))));
                        }
                        return;
                    }
                };
                for (req, timeout, max, reply) in rx {
                    let _ = reply.send(exchange(&client, &req, timeout, max));
                }
            })
            .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
        drop(client);
        Ok(Self { tx })
    }
}

fn exchange(
    client: &reqwest::blocking::Client,
    req: &Request,
    timeout: Duration,
    max: u64,
) -> Result<Response, Failure> {
    let method = reqwest::Method::from_bytes(req.method.as_str().as_bytes())
        .map_err(|e| Failure::before_sending(e.to_string()))?;
    let mut b = client.request(method, &req.url).timeout(timeout);
    for (k, v) in &req.headers {
        b = b.header(k, v);
    }
    if let Some(body) = &req.body {
        b = b
            .header("content-type", "application/json")
            .body(body.clone());
    }
    let res = b.send().map_err(|e| {
        if e.is_connect() || e.is_builder() {
            // No connection: the request never left.
            Failure::before_sending(format!("the request was not sent: {e}"))
        } else if e.is_timeout() {
            Failure::after_sending(format!("no answer within {timeout:?}"))
        } else {
            Failure::after_sending(format!("the request failed after it was sent: {e}"))
        }
    })?;
    let status = res.status().as_u16();
    let mut body = Vec::new();
    res.take(max + 1).read_to_end(&mut body).map_err(|e| {
        Failure::after_sending(format!("reading the answer ({status}) failed: {e}"))
    })?;
    if body.len() as u64 > max {
        return Err(Failure::after_sending(format!(
            "the endpoint answered {status} with a body larger than http.max_response_bytes ({max} bytes)"
        )));
    }
    Ok(Response { status, body })
}

impl Transport for Network {
    fn send(&mut self, req: &Request, timeout: Duration, max: u64) -> Result<Response, Failure> {
        let (reply_tx, reply_rx) = std::sync::mpsc::sync_channel(1);
        self.tx
            .send((req.clone(), timeout, max, reply_tx))
            .map_err(|_| Failure::before_sending("the HTTP thread is gone"))?;
        // The client's own timeout ends the wait; a margin covers the hand-over.
        reply_rx
            .recv_timeout(timeout + Duration::from_secs(1))
            .map_err(|_| Failure::after_sending(format!("no answer within {timeout:?}")))?
    }
}

/// A recorded exchange, answered in order, with no network: each request must be the
/// recorded one.
struct Replayed {
    exchanges: std::collections::VecDeque<(Value, Result<Response, Failure>)>,
    strayed: Option<String>,
}

impl Transport for Replayed {
    fn send(&mut self, req: &Request, _: Duration, _: u64) -> Result<Response, Failure> {
        let err = match self.exchanges.pop_front() {
            Some((recorded, response)) if recorded == req.recorded() => return response,
            Some((recorded, _)) => format!(
                "the replayed request differs from the recorded one: {} vs {}",
                req.recorded(),
                recorded
            ),
            None => "the replay sends a request the capsule did not record".to_owned(),
        };
        self.strayed.get_or_insert(err.clone());
        Err(Failure::before_sending(err))
    }

    fn strayed(&self) -> Option<&str> {
        self.strayed.as_deref()
    }
}

/// The certificate authorities of the PEM file at `path`: at least one, each a
/// certificate rustls can read.
pub fn certificate_authorities(
    path: &std::path::Path,
) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "the CA file {} is not PEM certificates: {e}",
            path.display()
        )
    })?;
    if roots.is_empty() {
        return Err(format!(
            "the CA file {} holds no certificate",
            path.display()
        ));
    }
    Ok(roots)
}

/// One `http` driver instance.
pub struct HttpDriver {
    descriptor: crate::descriptor::DriverDescriptor,
    settings: HttpSettings,
    transport: Box<dyn Transport>,
    /// The exchanges of the call in progress, for its capsule.
    log: Vec<Value>,
    /// True when answering from a recorded exchange: secrets stay references, as the
    /// capsule recorded them.
    replaying: bool,
}

/// The output a response makes: its status and its JSON body. A body that is not JSON
/// is kept as text; one that is JSON without a canonical form (an integer beyond 2^53,
/// say) is kept as text and flagged, never refused after the fact.
fn output_of(r: &Response) -> Value {
    let text = || String::from_utf8_lossy(&r.body).into_owned();
    if r.body.is_empty() {
        return json!({"status": r.status, "body": null});
    }
    match crate::driver::answer_json(&r.body) {
        crate::driver::Answer::Json(v) => json!({"status": r.status, "body": v}),
        crate::driver::Answer::NotJson => json!({"status": r.status, "text": text()}),
        crate::driver::Answer::NotCanonical { text, reason } => json!({
            "status": r.status,
            "text": text,
            "not_canonical": reason,
        }),
    }
}

impl HttpDriver {
    /// The driver of `settings`, on the network; a secret file named by a relative path
    /// is inside `folder` (the manifest's).
    pub fn new(
        descriptor: crate::descriptor::DriverDescriptor,
        settings: &HttpSettings,
        folder: &std::path::Path,
    ) -> Result<Self, String> {
        let mut settings = settings.clone();
        for s in settings.secrets.values_mut() {
            if let SecretRef::File(p) = s {
                *p = folder.join(&*p);
            }
        }
        let roots = match &settings.ca_file {
            Some(ca) => Some(certificate_authorities(&folder.join(ca))?),
            None => None,
        };
        Ok(Self {
            descriptor,
            settings,
            transport: Box::new(Network::new(roots)?),
            log: vec![],
            replaying: false,
        })
    }

    /// The driver of `settings`, answering from the exchanges a capsule recorded.
    pub fn replaying(
        descriptor: crate::descriptor::DriverDescriptor,
        settings: &HttpSettings,
        state: &Value,
    ) -> Result<Self, String> {
        let exchanges = state
            .get("exchanges")
            .and_then(Value::as_array)
            .ok_or("the capsule records no http exchange")?
            .iter()
            .map(|x| {
                let response = match (x.get("response"), x.get("error")) {
                    (Some(r), _) => Ok(Response {
                        status: r["status"].as_u64().unwrap_or(0) as u16,
                        body: base64::engine::general_purpose::STANDARD
                            .decode(r["body_b64"].as_str().unwrap_or(""))
                            .map_err(|e| e.to_string())?,
                    }),
                    (None, Some(e)) => Err(Failure {
                        reason: e.as_str().unwrap_or("").to_owned(),
                        sent: x.get("sent").and_then(Value::as_bool).unwrap_or(true),
                    }),
                    (None, None) => return Err("an exchange without a response".to_owned()),
                };
                Ok((x["request"].clone(), response))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            descriptor,
            settings: settings.clone(),
            transport: Box::new(Replayed {
                exchanges,
                strayed: None,
            }),
            log: vec![],
            replaying: true,
        })
    }

    /// For a replaying driver: the first way it strayed from the recorded exchange.
    pub fn strayed(&self) -> Option<&str> {
        self.transport.strayed()
    }

    fn secret(&self, name: &str) -> Result<String, String> {
        match self.settings.secrets.get(name) {
            Some(SecretRef::Env(var)) => std::env::var(var)
                .map_err(|_| format!("the secret {name} (environment variable {var}) is not set")),
            Some(SecretRef::File(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| {
                    format!(
                        "the secret {name} (file {}) cannot be read: {e}",
                        path.display()
                    )
                }),
            None => Err(format!("no secret named {name}")),
        }
    }

    /// The request `t` makes for `args` (and, for a rollback, the recorded `output`).
    fn build(
        &self,
        t: &RequestTemplate,
        args: &Value,
        output: Option<&Value>,
    ) -> Result<Request, String> {
        let url = fill(&t.url, args, output, true)?;
        let mut headers = vec![];
        let mut shown = vec![];
        for (k, v) in &t.headers {
            match v {
                HeaderValue::Text(text) => {
                    let value = fill(text, args, output, false)?;
                    headers.push((k.clone(), value.clone()));
                    shown.push((k.clone(), value));
                }
                HeaderValue::Secret { secret } => {
                    let reference = format!("{{secret:{secret}}}");
                    let value = if self.replaying {
                        reference.clone()
                    } else {
                        self.secret(secret)?
                    };
                    headers.push((k.clone(), value));
                    shown.push((k.clone(), reference));
                }
            }
        }
        let body = match &t.body {
            Body::Args => Some(
                axon_protocols::canonical::to_vec(args)
                    .map_err(|e| format!("the arguments have no canonical form: {e}"))?,
            ),
            // An optional body left out of the arguments sends none.
            Body::Member(name) => match args.get(name) {
                None => None,
                Some(member) => Some(
                    axon_protocols::canonical::to_vec(member)
                        .map_err(|e| format!("the argument {name:?} has no canonical form: {e}"))?,
                ),
            },
            Body::None => None,
        };
        Ok(Request {
            method: t.method,
            url,
            headers,
            shown_headers: shown,
            body,
        })
    }

    /// Sends `req`, retrying where that is safe; each exchange is logged for the capsule.
    fn send(&mut self, req: &Request, may_retry: bool) -> Result<Response, Failure> {
        let s = &self.settings;
        let attempts = if may_retry { 1 + s.retries } else { 1 };
        let timeout = Duration::from_millis(s.timeout_ms);
        let mut last = Err(Failure::before_sending("no attempt"));
        for n in 0..attempts {
            if n > 0 {
                std::thread::sleep(Duration::from_millis(
                    s.retry_backoff_ms.saturating_mul(1 << (n - 1).min(16)),
                ));
            }
            let r = self.transport.send(req, timeout, s.max_response_bytes);
            self.log.push(match &r {
                Ok(res) => json!({
                    "request": req.recorded(),
                    "response": {
                        "status": res.status,
                        "body_b64": base64::engine::general_purpose::STANDARD.encode(&res.body),
                    },
                }),
                Err(e) => json!({"request": req.recorded(), "error": e.reason, "sent": e.sent}),
            });
            let again = match &r {
                Err(_) => true,
                Ok(res) => res.status >= 500,
            };
            last = r;
            if !again {
                break;
            }
        }
        last
    }

    /// The manifest's request for `call`, retried where its method is idempotent and
    /// `repeatable` (the call may be made twice with the effect of once); its exchanges
    /// are recorded for the capsule.
    fn request(&mut self, call: &Call, repeatable: bool) -> Outcome {
        self.log.clear();
        let t = self.settings.request.clone();
        let req = match self.build(&t, &call.intent.args, None) {
            Ok(r) => r,
            Err(reason) => return Outcome::failed(reason),
        };
        let r = self.send(&req, repeatable && t.method.is_idempotent());
        let log = std::mem::take(&mut self.log);
        Self::outcome(r).with_replay(json!({ "exchanges": log }))
    }

    /// A response as an outcome: 400 and above fail; no answer to a request that may
    /// have reached the endpoint is an unknown outcome (the call may have acted).
    fn outcome(r: Result<Response, Failure>) -> Outcome {
        match r {
            Ok(res) if res.status < 400 => Outcome::ok(output_of(&res)),
            Ok(res) => Outcome {
                status: crate::driver::Status::Failed,
                output: output_of(&res),
                reason: Some(format!("the endpoint answered {}", res.status)),
                replay: None,
            },
            Err(Failure {
                reason,
                sent: false,
            }) => Outcome::failed(reason),
            Err(Failure { reason, sent: true }) => Outcome {
                status: crate::driver::Status::Unknown,
                output: Value::Null,
                reason: Some(format!("{reason}: the endpoint may have acted")),
                replay: None,
            },
        }
    }
}

impl Driver for HttpDriver {
    fn describe(&self) -> crate::descriptor::DriverDescriptor {
        self.descriptor.clone()
    }

    fn effect(&self) -> crate::descriptor::Effect {
        self.descriptor.effect
    }

    /// The `dry_run` request's answer where the manifest has one; otherwise inconclusive,
    /// never a made-up figure.
    fn predict(&mut self, call: &Call) -> Prediction {
        let Some(t) = self.settings.dry_run.clone() else {
            return Prediction::Inconclusive {
                reason: "the manifest has no dry_run request".into(),
            };
        };
        let req = match self.build(&t, &call.intent.args, None) {
            Ok(r) => r,
            Err(reason) => return Prediction::Inconclusive { reason },
        };
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        match self
            .transport
            .send(&req, timeout, self.settings.max_response_bytes)
        {
            Ok(res) => Prediction::Expected {
                utility: if res.status < 400 { 1.0 } else { 0.0 },
                output: output_of(&res),
            },
            Err(f) => Prediction::Inconclusive {
                reason: format!("the dry_run request failed: {}", f.reason),
            },
        }
    }

    fn push(&mut self, call: &Call) -> Outcome {
        self.request(call, self.descriptor.idempotent)
    }

    /// A read: the manifest's request, which for a driver whose effect is `read` is the
    /// read itself, retried where its method is idempotent (a read changes nothing, so
    /// the driver's `idempotent` flag is not needed for that).
    fn pull(&mut self, call: &Call) -> Outcome {
        self.request(call, true)
    }

    /// The compensating request, built from the action's arguments and recorded output.
    fn rollback(&mut self, action: &Recorded) -> Outcome {
        let Some(t) = self.settings.rollback.clone() else {
            return Outcome::failed(format!(
                "{} has no compensating request: action {} cannot be undone",
                self.descriptor.name, action.action_id
            ));
        };
        match self.build(&t, &action.intent.args, Some(&action.output)) {
            Ok(req) => {
                let r = self.send(&req, t.method.is_idempotent() && self.descriptor.idempotent);
                self.log.clear();
                Self::outcome(r)
            }
            Err(reason) => Outcome::failed(reason),
        }
    }
}
