//! The node's own admin routes: liveness, readiness, the supervision tree and restarts,
//! the echo driver, metrics and the OpenAPI document. The route table (`routes.rs`) lists
//! them with their paths, methods, auth and schemas; the shared plumbing is `api.rs`.

use crate::api::{ApiError, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use axon_protocols::ProblemType;
use axon_supervisors::RestartError;
use serde_json::json;
use std::sync::atomic::Ordering;

pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub(crate) async fn readyz(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
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
    .at(&req))
}

pub(crate) async fn supervision(st: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(st.tree.snapshot(&st.clock))
}

pub(crate) async fn restart(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = req.match_info().get("actor").unwrap_or_default().to_owned();
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
                RestartError::Overloaded(_) => ApiError::new(ProblemType::Overloaded, detail),
                RestartError::Unavailable(_)
                | RestartError::Timeout(..)
                | RestartError::Failed { .. } => ApiError::new(ProblemType::Unavailable, detail),
            };
            Err(err.at(&req))
        }
    }
}

pub(crate) async fn metrics(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut out = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&st.registry.gather(), &mut out)
        .map_err(|e| {
            ApiError::new(ProblemType::Internal, format!("cannot encode metrics: {e}")).at(&req)
        })?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out))
}

pub(crate) async fn openapi(st: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(&st.openapi)
}
