//! The plumbing every admin route shares: the app state, problem documents
//! ([`ApiError`]), correlation ids and request metrics (the [`correlate`] middleware), the
//! admin-token gate, the canonical-JSON body extractor ([`JsonBody`]), the journal call
//! with its refusals mapped onto problems, and the shape of one entry of the route table
//! ([`Route`]).
//!
//! Invariant: knows no particular route. The routes live in `http.rs`,
//! `journal_routes.rs` and `act_routes.rs`, which build on this module and never on each
//! other; the table that lists them is `routes.rs`.

use crate::admin_token::AdminAuth;
use crate::config::HttpConfig;
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use axon_actors::journal::{Appended, JournalClient, NewEntry, Refusal, StoredEntry};
use axon_protocols::journal::EntryKind;
use axon_protocols::{CorrelationId, Problem, ProblemType};
use axon_supervisors::{CallError, CallOptions, SharedClock, TreeNode};
use base64::Engine;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde_json::{json, Value};
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The header that carries the correlation id, both ways.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// What the routes share.
pub struct AppState {
    pub tree: Arc<TreeNode>,
    pub clock: SharedClock,
    /// The one door to the drivers, and their lanes.
    pub act: Arc<axon_actors::act::Act>,
    /// The journal: appends to its commit thread, reads to its reader.
    pub journal: JournalClient,
    /// The most entries one journal query may ask for (`journal.page_max_entries`).
    pub journal_page_max_entries: usize,
    pub registry: Registry,
    pub auth: AdminAuth,
    pub http: HttpConfig,
    pub metrics: HttpMetrics,
    pub shutting_down: Arc<AtomicBool>,
    pub openapi: Value,
    /// BLAKE3 (hex) of the canonical JSON of the effective configuration, for capsules.
    pub config_hash: String,
    /// Grows drivers from OpenAPI operations while the node runs.
    pub grower: Arc<crate::driver_load::Grower>,
}

impl AppState {
    /// The options of an actor call made for `req`: the configured deadline and the
    /// request's correlation id.
    pub fn call_options(&self, req: &HttpRequest) -> CallOptions {
        CallOptions {
            deadline: Duration::from_millis(self.http.call_timeout_ms),
            correlation_id: correlation_id(req),
        }
    }
}

/// HTTP metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    seconds: HistogramVec,
    problems: IntCounterVec,
}

impl HttpMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "axon_http_requests_total",
                    "HTTP requests by route, method and status",
                ),
                &["route", "method", "status"],
            )?,
            seconds: HistogramVec::new(
                HistogramOpts::new("axon_http_request_seconds", "HTTP request latency by route"),
                &["route"],
            )?,
            problems: IntCounterVec::new(
                Opts::new(
                    "axon_http_problems_total",
                    "Requests answered with a problem document, by problem type",
                ),
                &["type"],
            )?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.seconds.clone()))?;
        registry.register(Box::new(m.problems.clone()))?;
        for p in ProblemType::ALL {
            m.problems.with_label_values(&[p.slug()]);
        }
        Ok(m)
    }
}

/// The correlation id of the request being served.
#[derive(Clone)]
struct Cid(CorrelationId);

/// The correlation id of `req`, for actor calls.
pub(crate) fn correlation_id(req: &HttpRequest) -> Option<Arc<str>> {
    req.extensions()
        .get::<Cid>()
        .map(|c| Arc::from(c.0.as_str()))
}

/// True for the statuses that tell the client to come back later (429 and 503): each of
/// them carries `Retry-After`.
pub fn says_retry(kind: ProblemType) -> bool {
    matches!(kind.status(), 429 | 503)
}

/// An error answered as a problem document.
#[derive(Debug)]
pub struct ApiError {
    kind: ProblemType,
    detail: String,
    retry_after: Option<u64>,
    correlation_id: Option<String>,
    instance: Option<String>,
    path: Option<String>,
}

impl ApiError {
    /// The same problem with `detail` in place of its own.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            retry_after: None,
            correlation_id: None,
            instance: None,
            path: None,
        }
    }

    /// A `not-canonical` problem at the error's path, a JSON Pointer into `what` (the
    /// request body, or the entry the journal was asked to store).
    pub fn not_canonical(what: &str, e: &axon_protocols::canonical::CanonicalError) -> Self {
        let mut err = Self::new(
            ProblemType::NotCanonical,
            format!("{what} cannot be journaled: {e}"),
        );
        err.path = Some(e.path.clone());
        err
    }

    /// The problem is at `path`, a JSON Pointer into the request body.
    pub fn at_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Fills `instance` and `correlation_id` from the request, and for a 429 or a 503 the
    /// configured `http.retry_after_seconds`: every problem the node answers passes here,
    /// so none of those can go out without `Retry-After`.
    pub fn at(mut self, req: &HttpRequest) -> Self {
        self.instance = Some(req.path().to_owned());
        self.correlation_id = req.extensions().get::<Cid>().map(|c| c.0.to_string());
        if says_retry(self.kind) {
            let configured = req
                .app_data::<web::Data<AppState>>()
                .map(|st| st.http.retry_after_seconds);
            self.retry_after = Some(configured.unwrap_or_else(default_retry_after));
        }
        self
    }
}

/// `http.retry_after_seconds` as compiled in, for a request served without app state.
fn default_retry_after() -> u64 {
    crate::config::Config::defaults().http.retry_after_seconds
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.slug(), self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        if self.kind.status() >= 500 {
            tracing::error!(
                problem = self.kind.slug(),
                detail = %self.detail,
                correlation_id = self.correlation_id.as_deref().unwrap_or(""),
                "request failed"
            );
        }
        let retry_after = match self.retry_after {
            None if says_retry(self.kind) => Some(default_retry_after()),
            r => r,
        };
        let mut p = Problem::new(self.kind, self.detail.clone());
        p.instance = self.instance.clone();
        p.correlation_id = self.correlation_id.clone();
        p.retry_after_seconds = retry_after;
        p.path = self.path.clone();
        let mut res = HttpResponse::build(self.status_code());
        res.content_type(axon_protocols::problem::CONTENT_TYPE);
        if let Some(s) = retry_after {
            res.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        if matches!(
            self.kind,
            ProblemType::Unauthenticated | ProblemType::InvalidToken
        ) {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"axon\""));
        }
        let mut res = res.json(p);
        res.extensions_mut().insert(self.kind);
        res
    }
}

/// Maps an actor call's failure onto the problem it is for the client.
pub(crate) fn call_problem(e: CallError) -> ApiError {
    let detail = e.to_string();
    let kind = match e {
        CallError::Overloaded { .. } => ProblemType::Overloaded,
        CallError::Unavailable { .. } => ProblemType::Unavailable,
        CallError::Timeout { .. } => ProblemType::Timeout,
        CallError::Failed { .. } => ProblemType::ActorFailed,
        CallError::Rejected { .. } => ProblemType::Rejected,
    };
    ApiError::new(kind, detail)
}

/// The gate in front of every route the table marks [`Auth::Admin`]: it answers 401
/// before the handler reads anything of the request.
pub(crate) async fn admin_gate(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<EitherBody<BoxBody>>, actix_web::Error> {
    let checked = match req.app_data::<web::Data<AppState>>() {
        Some(st) => require_admin(req.request(), &st.auth),
        None => Err(ApiError::new(ProblemType::Internal, "no app state").at(req.request())),
    };
    match checked {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
}

fn require_admin(req: &HttpRequest, auth: &AdminAuth) -> Result<(), ApiError> {
    let Some(h) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            ProblemType::Unauthenticated,
            "this route needs `Authorization: Bearer <token>` with the token from <data-dir>/admin.token",
        )
        .at(req));
    };
    let token = h
        .to_str()
        .ok()
        .and_then(|s| s.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                ProblemType::Unauthenticated,
                "the Authorization header must be `Bearer <token>`",
            )
            .at(req)
        })?;
    if !auth.verify(token.trim()) {
        return Err(ApiError::new(
            ProblemType::InvalidToken,
            "the bearer token is not the admin token",
        )
        .at(req));
    }
    Ok(())
}

/// The answer for a path no route matches.
pub(crate) async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        ProblemType::NotFound,
        format!("no route for {}", req.path()),
    )
    .at(&req)
    .error_response()
}

/// The answer for a route's path with another method.
pub(crate) async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        ProblemType::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
    .at(&req)
    .error_response()
}

/// Correlation ids, one span per request, and request metrics.
pub(crate) async fn correlate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let parsed = match req.headers().get(CORRELATION_HEADER) {
        None => Ok(CorrelationId::from_random(rand::random())),
        Some(v) => match v.to_str() {
            Ok(s) => CorrelationId::parse(s).map_err(|e| e.to_string()),
            Err(_) => Err("correlation id is not visible ASCII".to_owned()),
        },
    };
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let mut res = match parsed {
        Err(reason) => {
            // The client's id is refused; the answer still carries one of ours.
            let fresh = CorrelationId::from_random(rand::random());
            req.extensions_mut().insert(Cid(fresh));
            let (http_req, _) = req.into_parts();
            let err = ApiError::new(
                ProblemType::BadHeader,
                format!("X-Correlation-Id: {reason}"),
            )
            .at(&http_req);
            ServiceResponse::new(http_req, err.error_response())
        }
        Ok(cid) => {
            req.extensions_mut().insert(Cid(cid.clone()));
            let span = tracing::info_span!("http", %method, %route, correlation_id = %cid);
            // Handlers turn their errors into problem responses themselves; an `Err` here
            // can only come from actix itself and is answered by it.
            next.call(req).instrument(span).await?.map_into_boxed_body()
        }
    };
    let cid = res
        .request()
        .extensions()
        .get::<Cid>()
        .map(|c| c.0.to_string());
    if let Some(cid) = cid {
        if let Ok(v) = HeaderValue::from_str(&cid) {
            res.headers_mut()
                .insert(header::HeaderName::from_static(CORRELATION_HEADER), v);
        }
    }
    if let Some(st) = state {
        let status = res.status().as_u16().to_string();
        st.metrics
            .requests
            .with_label_values(&[&route, &method, &status])
            .inc();
        st.metrics
            .seconds
            .with_label_values(&[&route])
            .observe(started.elapsed().as_secs_f64());
        if let Some(kind) = res.response().extensions().get::<ProblemType>() {
            st.metrics.problems.with_label_values(&[kind.slug()]).inc();
        }
    }
    Ok(res)
}

/// A JSON request body read under the journal's canonical-JSON rule, so that whatever a
/// route accepts can be journaled and read back: no integer that no double holds, no
/// member name twice, no nesting that would put the stored entry past
/// [`canonical::MAX_DEPTH`](axon_protocols::canonical::MAX_DEPTH). `LEVELS_ABOVE` is how
/// many arrays and objects of the stored entry hold the body (the entry's own object
/// counts): the route table declares the same number ([`RequestBody::levels_above`]).
/// Refusals: 415 without a JSON content type, 413 past `http.max_body_bytes`, 400 for
/// text that is not JSON or not of the route's shape, 422 `not-canonical` with the body's
/// JSON Pointer for a value the rule refuses.
pub struct JsonBody<T, const LEVELS_ABOVE: usize>(pub T);

impl<T: serde::de::DeserializeOwned + 'static, const LEVELS_ABOVE: usize> actix_web::FromRequest
    for JsonBody<T, LEVELS_ABOVE>
{
    type Error = actix_web::Error;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let json = req
            .mime_type()
            .ok()
            .flatten()
            .is_some_and(|m| m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"));
        let limit = req.app_data::<BodyLimit>().copied().unwrap_or(BodyLimit {
            bytes: req
                .app_data::<web::Data<AppState>>()
                .map_or(0, |st| st.http.max_body_bytes),
            key: "http.max_body_bytes",
        });
        let bytes = web::Bytes::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            if !json {
                return Err(ApiError::new(
                    ProblemType::UnsupportedMediaType,
                    "send the body as Content-Type: application/json",
                )
                .at(&req)
                .into());
            }
            let bytes = bytes.await.map_err(|e| {
                use actix_web::error::PayloadError as P;
                let err = match e.as_error::<P>() {
                    Some(P::Overflow) => ApiError::new(
                        ProblemType::PayloadTooLarge,
                        format!(
                            "the body is larger than the limit of {} bytes ({})",
                            limit.bytes, limit.key
                        ),
                    ),
                    _ => ApiError::new(
                        ProblemType::MalformedRequest,
                        format!("cannot read the body: {e}"),
                    ),
                };
                err.at(&req)
            })?;
            let depth = axon_protocols::canonical::MAX_DEPTH.saturating_sub(LEVELS_ABOVE);
            let value = axon_protocols::canonical::parse(&bytes, depth).map_err(|e| {
                if e.is_syntax() {
                    ApiError::new(ProblemType::MalformedRequest, e.to_string()).at(&req)
                } else {
                    ApiError::not_canonical("the body", &e).at(&req)
                }
            })?;
            let body = serde_json::from_value::<T>(value).map_err(|e| {
                ApiError::new(
                    ProblemType::MalformedRequest,
                    format!("the body is not of this route's shape: {e}"),
                )
                .at(&req)
            })?;
            Ok(JsonBody(body))
        })
    }
}

/// The problem a journal refusal is for the client.
pub(crate) fn refusal_problem(req: &HttpRequest, refusal: Refusal) -> ApiError {
    let detail = refusal.to_string();
    let e = match refusal {
        Refusal::Halted(_) => ApiError::new(ProblemType::JournalHalted, detail),
        Refusal::NotFound(_) => ApiError::new(ProblemType::NoSuchEntry, detail),
        Refusal::BadLink(_) => ApiError::new(ProblemType::BadLink, detail),
        Refusal::Invalid(_) => ApiError::new(ProblemType::InvalidParameter, detail),
        Refusal::Damaged(_) => ApiError::new(ProblemType::JournalDamaged, detail),
        Refusal::Busy(_) => ApiError::new(ProblemType::Unavailable, detail),
        Refusal::NotCanonical(e) => ApiError::not_canonical("the entry", &e),
        Refusal::OutcomeUnknown(_) => ApiError::new(ProblemType::OutcomeUnknown, detail),
        Refusal::Internal(_) => ApiError::new(ProblemType::Internal, detail),
        Refusal::Call(e) => call_problem(e),
    };
    e.at(req)
}

/// Reads the path parameter `name` as a `T` (an id, a barcode, an action id), once, here
/// at the edge: the journal takes them parsed.
pub(crate) fn path_param<T: std::str::FromStr<Err = String>>(
    req: &HttpRequest,
    name: &str,
) -> Result<T, ApiError> {
    req.match_info()
        .get(name)
        .unwrap_or("")
        .parse()
        .map_err(|e| ApiError::new(ProblemType::InvalidParameter, e).at(req))
}

/// An entry as the API shows it.
pub(crate) fn entry_json(e: &StoredEntry) -> Value {
    json!({
        "index": e.index,
        "id": e.id,
        "kind": e.kind,
        "barcode": e.barcode,
        "leaf_hash": e.leaf_hash,
        "bytes_b64": base64::engine::general_purpose::STANDARD.encode(&e.bytes),
        "links": e.links,
    })
}

/// Appends an entry; answers once it is durable.
pub(crate) async fn append(
    req: &HttpRequest,
    st: &AppState,
    kind: EntryKind,
    links: Vec<String>,
    body: Value,
) -> Result<Appended, ApiError> {
    st.journal
        .append(NewEntry::new(kind, links, &body), &st.call_options(req))
        .await
        .map_err(|r| refusal_problem(req, r))
}

/// The HTTP methods the admin API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    /// The lowercase name, as OpenAPI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }

    pub fn http(self) -> actix_web::http::Method {
        match self {
            Method::Get => actix_web::http::Method::GET,
            Method::Post => actix_web::http::Method::POST,
        }
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anyone who reaches the port.
    None,
    /// Only with `Authorization: Bearer <admin token>`; checked before the body is read.
    Admin,
}

/// A parameter in the route's path (`{name}`).
pub struct PathParam {
    pub name: &'static str,
    /// The ECMA-262 regular expression a value of it matches.
    pub pattern: &'static str,
    pub description: &'static str,
}

/// A query-string parameter.
pub struct QueryParam {
    pub name: &'static str,
    pub required: bool,
    pub description: &'static str,
    /// Its JSON Schema.
    pub schema: fn() -> Value,
}

/// The JSON body a route takes, read with [`JsonBody`].
pub struct RequestBody {
    pub description: &'static str,
    /// Its JSON Schema.
    pub schema: fn() -> Value,
    /// How many arrays and objects of the stored entry hold the body: the `LEVELS_ABOVE`
    /// of the route's [`JsonBody`]. The body may nest
    /// [`MAX_DEPTH`](axon_protocols::canonical::MAX_DEPTH)` - levels_above` levels.
    pub levels_above: usize,
    /// Its own size limit from the configuration, where it is not `http.max_body_bytes`:
    /// the key, and its value.
    pub max_bytes: Option<(&'static str, BodyMaxBytes)>,
}

/// Reads a body size limit from the HTTP configuration.
pub type BodyMaxBytes = fn(&crate::config::HttpConfig) -> usize;

/// The size limit of the bodies of one resource (its routes' [`RequestBody::max_bytes`]),
/// set as its app data beside actix's own payload limit, for the refusal to name.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit {
    pub bytes: usize,
    pub key: &'static str,
}

impl RequestBody {
    /// The most arrays and objects the body may hold inside each other.
    pub fn max_depth(&self) -> usize {
        axon_protocols::canonical::MAX_DEPTH.saturating_sub(self.levels_above)
    }
}

/// One route of the admin API: the router and the OpenAPI document are both built from
/// the table of these (`routes::ROUTES`).
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    pub path_params: &'static [PathParam],
    pub query: &'static [QueryParam],
    pub request: Option<RequestBody>,
    /// True when the route appends the caller's data to the journal.
    pub journals: bool,
    /// The status of a successful answer.
    pub ok_status: u16,
    /// The OpenAPI response object of a successful answer (description and content).
    pub response: fn() -> Value,
    /// The problems this route answers with, beyond those every route can answer
    /// ([`COMMON_PROBLEMS`]), those of the admin gate and those of reading a body.
    pub problems: &'static [ProblemType],
    /// Attaches the handler: `|r| r.to(handler)`.
    pub handler: fn(actix_web::Route) -> actix_web::Route,
}

/// What any route can answer.
pub const COMMON_PROBLEMS: &[ProblemType] = &[
    ProblemType::NotFound,
    ProblemType::MethodNotAllowed,
    ProblemType::BadHeader,
    ProblemType::Internal,
];

/// What the admin gate answers.
pub const AUTH_PROBLEMS: &[ProblemType] =
    &[ProblemType::Unauthenticated, ProblemType::InvalidToken];

/// What reading a [`JsonBody`] answers.
pub const BODY_PROBLEMS: &[ProblemType] = &[
    ProblemType::UnsupportedMediaType,
    ProblemType::PayloadTooLarge,
    ProblemType::MalformedRequest,
    ProblemType::NotCanonical,
];

/// What an actor call answers when the actor cannot take it.
pub const CALL_PROBLEMS: &[ProblemType] = &[
    ProblemType::Overloaded,
    ProblemType::Unavailable,
    ProblemType::Timeout,
];

impl Route {
    /// Every problem the route can answer with, each once, in a stable order.
    pub fn all_problems(&self) -> Vec<ProblemType> {
        let mut all: Vec<ProblemType> = COMMON_PROBLEMS.to_vec();
        if self.auth == Auth::Admin {
            all.extend_from_slice(AUTH_PROBLEMS);
        }
        if self.request.is_some() {
            all.extend_from_slice(BODY_PROBLEMS);
        }
        all.extend_from_slice(self.problems);
        let mut seen = std::collections::HashSet::new();
        all.retain(|p| seen.insert(*p));
        all
    }

    /// This route's method with its handler, behind the admin gate when it needs the
    /// token.
    pub fn route(&self) -> actix_web::Route {
        let route = (self.handler)(web::method(self.method.http()));
        match self.auth {
            Auth::None => route,
            Auth::Admin => route.wrap(actix_web::middleware::from_fn(admin_gate)),
        }
    }
}
