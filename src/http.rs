//! The admin HTTP API (v1, JSON). Every error is an RFC 9457 problem document with a
//! stable `type`; every request carries a correlation id, taken from `X-Correlation-Id`
//! or made here, and echoed back.

use crate::admin_token::AdminAuth;
use crate::config::HttpConfig;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use axon_drivers::echo::Echo;
use axon_protocols::{CorrelationId, Problem, ProblemType};
use axon_supervisors::{CallError, CallOptions, RestartError, SharedClock, TreeNode, WorkerRef};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde_json::{json, Value};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The header that carries the correlation id, both ways.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Every route: method, path, summary. The OpenAPI document is built from this list and
/// a test checks that the server answers each one.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/healthz", "Liveness: the process answers HTTP"),
    (
        "get",
        "/readyz",
        "Readiness: the whole supervision tree is running",
    ),
    ("get", "/v1/supervision", "The live supervision tree"),
    (
        "post",
        "/v1/supervision/{actor}/restart",
        "Restart one actor through its supervisor (admin token)",
    ),
    (
        "post",
        "/v1/echo",
        "Send JSON through the supervised echo driver and get it back",
    ),
    (
        "get",
        "/v1/journal/checkpoint",
        "The latest signed checkpoint (a C2SP signed note, text)",
    ),
    (
        "get",
        "/v1/journal/key",
        "The journal's verifier key in signed-note vkey form (text)",
    ),
    (
        "get",
        "/v1/journal/entries",
        "A page of journal entries in order: ?kind=&since=&until=&after=&limit=",
    ),
    ("get", "/v1/journal/entries/{index}", "One journal entry"),
    (
        "get",
        "/v1/journal/by-id/{id}",
        "The journal entry with this id",
    ),
    (
        "get",
        "/v1/journal/by-action/{action}",
        "The journal entries of one action",
    ),
    (
        "get",
        "/v1/journal/by-barcode/{code}",
        "The journal entries with this barcode",
    ),
    (
        "get",
        "/v1/journal/proof/inclusion",
        "An inclusion proof: ?index=I&size=N",
    ),
    (
        "get",
        "/v1/journal/proof/consistency",
        "A consistency proof: ?from=M&to=N",
    ),
    (
        "post",
        "/v1/journal/notes",
        "Append an operator note (admin token)",
    ),
    ("get", "/metrics", "Prometheus text exposition"),
    (
        "get",
        "/openapi.json",
        "This API as an OpenAPI 3.1 document",
    ),
];

/// What the routes share.
pub struct AppState {
    pub tree: Arc<TreeNode>,
    pub clock: SharedClock,
    pub echo: WorkerRef<Echo>,
    pub journal: axon_actors::journal::JournalClient,
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

    /// Fills `instance` and `correlation_id` from the request.
    pub fn at(mut self, req: &HttpRequest) -> Self {
        self.instance = Some(req.path().to_owned());
        self.correlation_id = req.extensions().get::<Cid>().map(|c| c.0.to_string());
        self
    }

    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
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
        let mut p = Problem::new(self.kind, self.detail.clone());
        p.instance = self.instance.clone();
        p.correlation_id = self.correlation_id.clone();
        p.retry_after_seconds = self.retry_after;
        p.path = self.path.clone();
        let mut res = HttpResponse::build(self.status_code());
        res.content_type(axon_protocols::problem::CONTENT_TYPE);
        if let Some(s) = self.retry_after {
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
pub(crate) fn call_problem(e: CallError, retry_after: u64) -> ApiError {
    let detail = e.to_string();
    match e {
        CallError::Overloaded { .. } => {
            ApiError::new(ProblemType::Overloaded, detail).retry_after(retry_after)
        }
        CallError::Unavailable { .. } => {
            ApiError::new(ProblemType::Unavailable, detail).retry_after(retry_after)
        }
        CallError::Timeout { .. } => ApiError::new(ProblemType::Timeout, detail),
        CallError::Failed { .. } => ApiError::new(ProblemType::ActorFailed, detail),
        CallError::Rejected { .. } => ApiError::new(ProblemType::Rejected, detail),
    }
}

/// Proof that the request carries the admin token: a route that takes this as its first
/// argument answers 401 before it reads anything else of the request.
pub struct Admin;

impl actix_web::FromRequest for Admin {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let checked = match req.app_data::<web::Data<AppState>>() {
            Some(st) => require_admin(req, &st.auth).map(|()| Admin),
            None => Err(ApiError::new(ProblemType::Internal, "no app state").at(req)),
        };
        std::future::ready(checked.map_err(Into::into))
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

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if st.shutting_down.load(Ordering::Acquire) {
        return Err(ApiError::new(ProblemType::ShuttingDown, "the node is shutting down").at(&req));
    }
    let halt = &st.journal.shared().halt;
    if let Some(reason) = halt.reason().filter(|_| halt.is_halted()) {
        return Err(ApiError::new(ProblemType::JournalHalted, reason).at(&req));
    }
    if st.tree.all_running() {
        return Ok(HttpResponse::Ok().json(json!({"ready": true})));
    }
    let snap = st.tree.snapshot(&st.clock);
    let waiting: Vec<String> = snap
        .walk()
        .into_iter()
        .filter(|n| n.status != axon_protocols::NodeStatus::Running)
        .map(|n| format!("{} ({})", n.id, n.status))
        .collect();
    Err(ApiError::new(
        ProblemType::NotReady,
        format!("not running: {}", waiting.join(", ")),
    )
    .retry_after(st.http.retry_after_seconds)
    .at(&req))
}

async fn supervision(st: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(st.tree.snapshot(&st.clock))
}

async fn restart(
    _: Admin,
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = req.match_info().get("actor").unwrap_or_default().to_owned();
    let retry = st.http.retry_after_seconds;
    match axon_supervisors::supervisor::request_restart(&st.tree, &actor) {
        Ok(_) => Ok(HttpResponse::Accepted().json(json!({
            "actor": actor,
            "status": "restart requested",
        }))),
        Err(e) => {
            let detail = e.to_string();
            let err = match e {
                RestartError::UnknownActor(_) => ApiError::new(ProblemType::UnknownActor, detail),
                RestartError::IsRoot(_) => ApiError::new(ProblemType::Rejected, detail),
                RestartError::Overloaded(_) => {
                    ApiError::new(ProblemType::Overloaded, detail).retry_after(retry)
                }
                RestartError::Unavailable(_)
                | RestartError::Timeout(..)
                | RestartError::Failed(..) => {
                    ApiError::new(ProblemType::Unavailable, detail).retry_after(retry)
                }
            };
            Err(err.at(&req))
        }
    }
}

/// How many arrays and objects of its capsule entry hold the body of `POST /v1/echo`: the
/// entry's object and the capsule's (`input` and `output` are members of the capsule).
const ECHO_LEVELS_ABOVE: usize = 2;

async fn echo(
    _: Admin,
    req: HttpRequest,
    st: web::Data<AppState>,
    body: JsonBody<Value, ECHO_LEVELS_ABOVE>,
) -> Result<HttpResponse, ApiError> {
    let opts = CallOptions {
        deadline: Duration::from_millis(st.http.call_timeout_ms),
        correlation_id: correlation_id(&req),
    };
    let input = body.0;
    let started_wall = st.clock.wall();
    let started = Instant::now();
    let output = match st.echo.call(input.clone(), &opts).await {
        Ok(v) => v,
        Err(e) => return Err(call_problem(e, st.http.retry_after_seconds).at(&req)),
    };
    // Every driver call is journaled as a replay capsule, or the call fails closed.
    let capsule = axon_protocols::capsule::ReplayCapsule {
        action_id: format!("{:032x}", rand::random::<u128>()),
        driver: "echo".into(),
        environment: axon_protocols::capsule::Environment {
            binary_version: env!("CARGO_PKG_VERSION").into(),
            config_hash: st.config_hash.clone(),
            driver_artifact_hash: axon_protocols::journal::hex(
                blake3::hash(
                    axon_drivers::builtin_artifact("echo")
                        .unwrap_or("echo")
                        .as_bytes(),
                )
                .as_bytes(),
            ),
        },
        input,
        output: output.clone(),
        seeds: vec![],
        clock: axon_protocols::capsule::RecordedClock {
            started: axon_protocols::time::rfc3339(started_wall),
            finished: axon_protocols::time::rfc3339(st.clock.wall()),
            duration_us: started.elapsed().as_micros() as u64,
        },
    };
    let action_id = capsule.action_id.clone();
    let body = serde_json::to_value(&capsule)
        .map_err(|e| ApiError::new(ProblemType::Internal, e.to_string()).at(&req))?;
    let appended = crate::journal_routes::append(
        &req,
        &st,
        axon_protocols::journal::EntryKind::Capsule,
        vec![],
        body,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "echo": output,
        "action_id": action_id,
        "index": appended.index,
        "barcode": appended.barcode,
    })))
}

async fn metrics(st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut out = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&st.registry.gather(), &mut out)
        .map_err(|e| ApiError::new(ProblemType::Internal, format!("cannot encode metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out))
}

async fn openapi(st: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(&st.openapi)
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        ProblemType::NotFound,
        format!("no route for {}", req.path()),
    )
    .at(&req)
    .error_response()
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        ProblemType::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
    .at(&req)
    .error_response()
}

/// Correlation ids, one span per request, and request metrics.
async fn correlate(
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

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(true)
        .content_type(|mime| mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
        .error_handler(|err, req| {
            use actix_web::error::JsonPayloadError as J;
            let (kind, detail) = match &err {
                J::OverflowKnownLength { length, limit } => (
                    ProblemType::PayloadTooLarge,
                    format!("the body is {length} bytes; the limit is {limit}"),
                ),
                J::Overflow { limit } => (
                    ProblemType::PayloadTooLarge,
                    format!("the body is larger than the limit of {limit} bytes"),
                ),
                J::ContentType => (
                    ProblemType::UnsupportedMediaType,
                    "send the body as Content-Type: application/json".to_owned(),
                ),
                J::Deserialize(e) => (ProblemType::MalformedRequest, format!("invalid JSON: {e}")),
                J::Payload(e) => (
                    ProblemType::MalformedRequest,
                    format!("cannot read the body: {e}"),
                ),
                other => (ProblemType::MalformedRequest, other.to_string()),
            };
            ApiError::new(kind, detail).at(req).into()
        })
}

/// A JSON request body read under the journal's canonical-JSON rule, so that whatever a
/// route accepts can be journaled and read back: no integer that no double holds, no
/// member name twice, no nesting that would put the stored entry past
/// [`canonical::MAX_DEPTH`](axon_protocols::canonical::MAX_DEPTH). `LEVELS_ABOVE` is how
/// many arrays and objects of the stored entry hold the body (the entry's own object
/// counts). Refusals: 415 without a JSON content type, 413 past `http.max_body_bytes`,
/// 400 for text that is not JSON or not of the route's shape, 422 `not-canonical` with
/// the body's JSON Pointer for a value the rule refuses.
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
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(0, |st| st.http.max_body_bytes);
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
                            "the body is larger than the limit of {limit} bytes (http.max_body_bytes)"
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

/// A resource that answers `method` with `handler` and any other method with 405.
pub(crate) fn resource<F, Args>(
    path: &str,
    method: actix_web::Route,
    handler: F,
) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(method.to(handler))
        .default_service(web::to(method_not_allowed))
}

/// Registers every route on `cfg`. The app's state must be registered by the caller.
pub fn routes(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(json_config(max_body_bytes))
        .app_data(web::PayloadConfig::new(max_body_bytes))
        .service(resource("/healthz", web::get(), healthz))
        .service(resource("/readyz", web::get(), readyz))
        .service(resource("/v1/supervision", web::get(), supervision))
        .service(resource(
            "/v1/supervision/{actor}/restart",
            web::post(),
            restart,
        ))
        .service(resource("/v1/echo", web::post(), echo))
        .configure(crate::journal_routes::routes)
        .service(resource("/metrics", web::get(), metrics))
        .service(resource("/openapi.json", web::get(), openapi))
        .default_service(web::to(not_found));
}

/// Builds the app: state, middleware, routes.
pub fn app(
    state: web::Data<AppState>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limit = state.http.max_body_bytes;
    actix_web::App::new()
        .app_data(state)
        .wrap(from_fn(correlate))
        .configure(|c| routes(c, limit))
}
