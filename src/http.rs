//! The node's own admin routes: liveness, readiness, the supervision tree and restarts,
//! the echo driver, metrics and the OpenAPI document. The route table (`routes.rs`) lists
//! them with their paths, methods, auth and schemas; the shared plumbing is `api.rs`.

use crate::api::{append, call_problem, ApiError, AppState, JsonBody};
use actix_web::{web, HttpRequest, HttpResponse};
use axon_protocols::ProblemType;
use axon_supervisors::RestartError;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Instant;

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

/// How many arrays and objects of its capsule entry hold the body of `POST /v1/echo`: the
/// entry's object and the capsule's (`input` and `output` are members of the capsule).
pub(crate) const ECHO_LEVELS_ABOVE: usize = 2;

pub(crate) async fn echo(
    req: HttpRequest,
    st: web::Data<AppState>,
    body: JsonBody<Value, ECHO_LEVELS_ABOVE>,
) -> Result<HttpResponse, ApiError> {
    let opts = st.call_options(&req);
    let input = body.0;
    let started_wall = st.clock.wall();
    let started = Instant::now();
    let output = match st.echo.call(input.clone(), &opts).await {
        Ok(v) => v,
        Err(e) => return Err(call_problem(e).at(&req)),
    };
    // Every driver call is journaled as a replay capsule, or the call fails closed.
    let capsule = axon_protocols::capsule::ReplayCapsule {
        action_id: format!("{:032x}", rand::random::<u128>()),
        driver: "echo".into(),
        environment: axon_protocols::capsule::Environment {
            binary_version: env!("CARGO_PKG_VERSION").into(),
            config_hash: st.config_hash.clone(),
            driver_artifact_hash: axon_drivers::echo::descriptor().artifact_hash.clone(),
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
    let appended = append(
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
