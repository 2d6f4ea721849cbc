//! `POST /v1/act` (the one door to the drivers), `/v1/actions/...` (what an action came
//! to, the actions in doubt and their resolution) and `/v1/drivers/...` (the loaded
//! drivers and their lanes). The handlers only translate: the pipeline and the lanes live
//! in `axon-actors`.

use crate::api::{entry_json, path_param, refusal_problem, ApiError, AppState, JsonBody};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use axon_actors::act::{ActError, ResolveError, RollbackError};
use axon_actors::journal::ActionId;
use axon_actors::lanes::{DriverInstance, LaneError, Mover, Why};
use axon_protocols::action::{ActionResult, ActionStatus, Resolution};
use axon_protocols::intent::AxonIntent;
use axon_protocols::journal::{Entry, EntryKind};
use axon_protocols::lane::Lane;
use axon_protocols::ProblemType;
use serde::Deserialize;
use serde_json::{json, Value};

/// The principal behind the admin token: the caller intents are de-duplicated under.
pub(crate) const ADMIN_CALLER: &str = "admin";

/// How many arrays and objects of a journal entry hold the intent, at the deepest: the
/// entry's object, the result body and its replay capsule, whose `input` is the intent.
pub(crate) const INTENT_LEVELS_ABOVE: usize = 3;

/// How many arrays and objects of its journal entry hold a resolution's `evidence`: the
/// entry's object, the result body and the resolution.
pub(crate) const RESOLUTION_LEVELS_ABOVE: usize = 3;

/// An action's answer, with the HTTP status its status has.
fn answer(r: &ActionResult) -> HttpResponse {
    let status =
        StatusCode::from_u16(r.status.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if r.status == ActionStatus::InDoubt {
        tracing::error!(action_id = %r.action_id, reason = r.reason.as_deref().unwrap_or(""), "action in doubt");
    }
    HttpResponse::build(status).json(r)
}

fn act_problem(req: &HttpRequest, e: ActError) -> ApiError {
    let detail = e.to_string();
    match e {
        ActError::Malformed(_) => ApiError::new(ProblemType::MalformedRequest, detail).at(req),
        ActError::Violation { violation, .. } => {
            // A JSON Pointer into the request body: the arguments' own pointer, under
            // `/args`, or the intent's for a precondition.
            let path = match violation.which {
                "args" | "limits" => format!("/args{}", violation.path),
                _ => violation.path.clone(),
            };
            ApiError::new(ProblemType::ObligationViolated, detail)
                .at_path(path)
                .at(req)
        }
        ActError::Conflict { .. } => ApiError::new(ProblemType::IntentConflict, detail).at(req),
        ActError::Busy { .. } | ActError::Rate { .. } => {
            ApiError::new(ProblemType::Overloaded, detail).at(req)
        }
        ActError::Driver(e) => crate::api::call_problem(e).at(req),
        ActError::NotRun { .. } => ApiError::new(ProblemType::Unavailable, detail).at(req),
        ActError::Journal(r) => refusal_problem(req, r),
        ActError::Unrecorded { .. } => ApiError::new(ProblemType::ActionUnrecorded, detail).at(req),
    }
}

pub(crate) async fn act(
    req: HttpRequest,
    st: web::Data<AppState>,
    body: JsonBody<AxonIntent, INTENT_LEVELS_ABOVE>,
) -> Result<HttpResponse, ApiError> {
    let mut intent = body.0;
    if intent.correlation_id.is_none() {
        intent.correlation_id = crate::api::correlation_id(&req).map(|c| c.to_string());
    }
    match st.act.act(intent, ADMIN_CALLER).await {
        Ok(r) => Ok(answer(&r)),
        Err(e) => Err(act_problem(&req, e)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionsQuery {
    status: Option<String>,
}

/// `GET /v1/actions?status=in_doubt`.
pub(crate) async fn actions(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = web::Query::<ActionsQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::new(ProblemType::InvalidParameter, e.to_string()).at(&req))?;
    match q.status.as_deref() {
        Some("in_doubt") => {}
        other => {
            return Err(ApiError::new(
                ProblemType::InvalidParameter,
                format!(
                    "status must be in_doubt (the one list kept whole in memory), not {other:?}; find one action with GET /v1/actions/{{action}}"
                ),
            )
            .at(&req))
        }
    }
    let actions = st.act.in_doubt();
    Ok(HttpResponse::Ok().json(json!({"status": "in_doubt", "actions": actions})))
}

/// `GET /v1/actions/{action}`: the intent, the dispatch, the newest result and the capsule
/// of one action, and every entry of it, from the journal.
pub(crate) async fn action(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id: ActionId = path_param(&req, "action")?;
    let entries = match st
        .journal
        .by_action(id.clone(), &st.call_options(&req))
        .await
    {
        Ok(entries) => entries,
        Err(axon_actors::journal::Refusal::NotFound(_)) => vec![],
        Err(r) => return Err(refusal_problem(&req, r)),
    };
    if entries.is_empty() {
        return Err(ApiError::new(
            ProblemType::NoSuchAction,
            format!("no action has id {}", id.as_str()),
        )
        .at(&req));
    }
    let mut dispatch = Value::Null;
    let mut result = Value::Null;
    let mut capsule = Value::Null;
    // Whether a dispatch is newer than the newest result (entries come in index order).
    let mut dispatched_last = false;
    for e in &entries {
        let body = Entry::from_bytes(&e.bytes)
            .map_err(|err| {
                ApiError::new(
                    ProblemType::JournalDamaged,
                    format!("entry {} cannot be read: {err}", e.index),
                )
                .at(&req)
            })?
            .body;
        match e.kind {
            EntryKind::Dispatch => {
                dispatched_last = true;
                // The dispatch that performed it (an undo's comes later, in `entries`).
                if body.get("undo").is_none() {
                    dispatch = body;
                }
            }
            EntryKind::Result => {
                dispatched_last = false;
                if let Some(c) = body.get("capsule") {
                    capsule = c.clone();
                }
                result = body;
            }
            _ => {}
        }
    }
    // The capsule as a replay needs it: with its build's manifest, which the journal holds
    // once, on the build's first lane change.
    if let Err(r) = st.act.with_manifest(&mut capsule).await {
        return Err(refusal_problem(&req, r));
    }
    let intent = match &dispatch {
        Value::Null => result.get("intent").cloned().unwrap_or(Value::Null),
        d => d["intent"].clone(),
    };
    Ok(HttpResponse::Ok().json(json!({
        "action_id": id.as_str(),
        // A dispatch newer than the newest result: running now, or in doubt. A result
        // newer than every dispatch is the outcome, even while the pipeline that wrote it
        // has not yet let go of the action.
        "status": if dispatched_last && st.act.is_running(id.as_str()) {
            json!("running")
        } else {
            result.get("status").cloned().unwrap_or(json!("in_doubt"))
        },
        "intent": intent,
        "dispatch": dispatch,
        "result": result,
        "capsule": capsule,
        "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
    })))
}

/// `POST /v1/actions/{action}/resolve`.
pub(crate) async fn resolve(
    req: HttpRequest,
    st: web::Data<AppState>,
    body: JsonBody<Resolution, RESOLUTION_LEVELS_ABOVE>,
) -> Result<HttpResponse, ApiError> {
    let id: ActionId = path_param(&req, "action")?;
    match st.act.resolve(id.as_str(), body.0).await {
        Ok(r) => Ok(HttpResponse::Ok().json(r)),
        Err(e) => {
            let detail = e.to_string();
            Err(match e {
                ResolveError::NoSuchAction(_) => {
                    ApiError::new(ProblemType::NoSuchAction, detail).at(&req)
                }
                ResolveError::NotInDoubt { .. } => {
                    ApiError::new(ProblemType::NotInDoubt, detail).at(&req)
                }
                ResolveError::Reason => {
                    ApiError::new(ProblemType::MalformedRequest, detail).at(&req)
                }
                ResolveError::Journal(r) => refusal_problem(&req, r),
            })
        }
    }
}

/// The body of `POST /v1/actions/{action}/rollback`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackBody {
    reason: String,
}

/// How many arrays and objects of its journal entry hold a rollback's body: the entry's
/// object, the dispatch and its `undo`.
pub(crate) const ROLLBACK_LEVELS_ABOVE: usize = 3;

/// `POST /v1/actions/{action}/rollback`.
pub(crate) async fn rollback(
    req: HttpRequest,
    st: web::Data<AppState>,
    body: JsonBody<RollbackBody, ROLLBACK_LEVELS_ABOVE>,
) -> Result<HttpResponse, ApiError> {
    let id: ActionId = path_param(&req, "action")?;
    match st.act.rollback(id.as_str(), &body.0.reason).await {
        Ok(r) => Ok(answer(&r)),
        Err(e) => {
            let detail = e.to_string();
            Err(match e {
                RollbackError::NoSuchAction(_) => {
                    ApiError::new(ProblemType::NoSuchAction, detail).at(&req)
                }
                RollbackError::Reason => {
                    ApiError::new(ProblemType::MalformedRequest, detail).at(&req)
                }
                RollbackError::Refused(_) => {
                    ApiError::new(ProblemType::RollbackRefused, detail).at(&req)
                }
                RollbackError::Driver(e) => crate::api::call_problem(e).at(&req),
                RollbackError::Journal(r) => refusal_problem(&req, r),
            })
        }
    }
}

/// One driver as `GET /v1/drivers` shows it.
fn driver_json(st: &AppState, d: &DriverInstance) -> Value {
    // Its first worker's state (status, restarts, last failure, mailbox); with a
    // concurrency above 1, every worker's in `instances`.
    let health = d.workers[0].node().snapshot(&st.clock);
    let instances: Vec<_> = d
        .workers
        .iter()
        .map(|w| w.node().snapshot(&st.clock))
        .collect();
    json!({
        "name": d.name(),
        "lane": st.act.lanes().lane(d.name()),
        "artifact_hash": d.descriptor.artifact_hash,
        "descriptor": d.descriptor,
        "manifest": d.manifest.file.display().to_string(),
        "health": health,
        "instances": instances,
        // Each check against its objective: the last verdict, the failures counted
        // towards its limit, and the figures it was made on.
        "checks": d.health().map(|h| h.states()),
        // Its circuit breaker: whether it is due a trial (open), on one (half_open),
        // held out by an operator, or retired by failing them.
        "breaker": {
            "state": d.breaker().0.as_str(),
            "failed_trials": d.breaker().0.failed_trials(),
        },
    })
}

pub(crate) async fn drivers(st: web::Data<AppState>) -> HttpResponse {
    let all: Vec<Value> = st
        .act
        .lanes()
        .drivers()
        .iter()
        .map(|d| driver_json(&st, d))
        .collect();
    HttpResponse::Ok().json(json!({ "drivers": all }))
}

fn named_driver(
    req: &HttpRequest,
    st: &AppState,
) -> Result<std::sync::Arc<DriverInstance>, ApiError> {
    let name = req.match_info().get("name").unwrap_or("");
    st.act.lanes().driver(name).ok_or_else(|| {
        ApiError::new(
            ProblemType::UnknownDriver,
            format!("no driver named {name:?} is loaded"),
        )
        .at(req)
    })
}

pub(crate) async fn driver(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let d = named_driver(&req, &st)?;
    Ok(HttpResponse::Ok().json(driver_json(&st, &d)))
}

/// `GET /v1/drivers/{name}/scorecard`.
pub(crate) async fn scorecard(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let d = named_driver(&req, &st)?;
    let report = d.scorecard.report(st.clock.now());
    let restarts: u64 = d.workers.iter().map(|w| w.node().restarts_total()).sum();
    Ok(HttpResponse::Ok().json(json!({
        "driver": d.name(),
        "lane": st.act.lanes().lane(d.name()),
        "restarts": restarts,
        "window_seconds": report.window_seconds,
        "window": report.window,
        "total": report.total,
        "slo": d.descriptor.slo,
        "checks": d.health().map(|h| h.states()),
    })))
}

/// The body of a lane move.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LaneMove {
    to: Lane,
    reason: String,
}

/// How many arrays and objects of its journal entry hold a lane move's members: the
/// entry's object and the lane change.
pub(crate) const LANE_MOVE_LEVELS_ABOVE: usize = 2;

/// Which way a lane route moves a driver.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Promote,
    Demote,
}

/// True when `from → to` goes towards `live` (a promotion) rather than away from it.
fn is_promotion(from: Lane, to: Lane) -> bool {
    matches!(
        (from, to),
        (Lane::Testing, Lane::Shadow)
            | (Lane::Shadow, Lane::Live)
            | (Lane::Shadow, Lane::Trial)
            | (Lane::Trial, Lane::Live)
            | (Lane::Retired, Lane::Testing)
    )
}

async fn move_lane(
    req: HttpRequest,
    st: web::Data<AppState>,
    body: LaneMove,
    direction: Direction,
) -> Result<HttpResponse, ApiError> {
    let d = named_driver(&req, &st)?.clone();
    let lanes = st.act.lanes();
    let from = lanes.lane(d.name()).unwrap_or(Lane::Testing);
    if from.check_move(body.to).is_ok()
        && is_promotion(from, body.to) != (direction == Direction::Promote)
    {
        let (this, other) = match direction {
            Direction::Promote => ("promote", "demote"),
            Direction::Demote => ("demote", "promote"),
        };
        return Err(ApiError::new(
            ProblemType::IllegalLaneMove,
            format!(
                "{from} → {} is not a move /{this} makes; send it to /v1/drivers/{}/{other}",
                body.to,
                d.name()
            ),
        )
        .at(&req));
    }
    let opts = st.call_options(&req);
    match lanes
        .change(
            d.name(),
            body.to,
            Mover::Admin,
            Why::because(body.reason),
            &st.journal,
            &opts,
        )
        .await
    {
        Ok(change) => Ok(HttpResponse::Ok().json(json!({
            "driver": driver_json(&st, &d),
            "change": change,
        }))),
        Err(e) => Err(lane_problem(&req, e)),
    }
}

/// The problem document of a lane that did not change.
pub(crate) fn lane_problem(req: &HttpRequest, e: LaneError) -> ApiError {
    let detail = e.to_string();
    match e {
        LaneError::UnknownDriver(_) => ApiError::new(ProblemType::UnknownDriver, detail).at(req),
        LaneError::Illegal(_)
        | LaneError::NoSlo(_)
        | LaneError::TrialBusy { .. }
        | LaneError::TrialConcludes(_)
        | LaneError::NotOnTrial { .. } => {
            ApiError::new(ProblemType::IllegalLaneMove, detail).at(req)
        }
        LaneError::Reason => ApiError::new(ProblemType::MalformedRequest, detail).at(req),
        LaneError::GateFailed { .. } => {
            ApiError::new(ProblemType::PromotionGateFailed, detail).at(req)
        }
        LaneError::AlreadyLoaded(_) => ApiError::new(ProblemType::DriverExists, detail).at(req),
        LaneError::Journal(r) => refusal_problem(req, r),
    }
}

/// How many arrays and objects of a stored entry hold a synthesize body: the body itself
/// is not stored (the manifest it grows is), and is read under the same depth rule.
pub(crate) const SYNTHESIZE_LEVELS_ABOVE: usize = 1;

/// `POST /v1/probecraft/synthesize`.
pub(crate) async fn synthesize(
    req: HttpRequest,
    st: web::Data<AppState>,
    body: JsonBody<crate::driver_load::SynthesizeRequest, SYNTHESIZE_LEVELS_ABOVE>,
) -> Result<HttpResponse, ApiError> {
    use crate::driver_load::GrowError as G;
    let deadline = std::time::Duration::from_millis(st.http.call_timeout_ms);
    match st.grower.grow(&st.tree, &st.act, body.0, deadline).await {
        Ok(grown) => Ok(HttpResponse::Created().json(grown)),
        Err(e) => {
            let detail = e.to_string();
            Err(match e {
                G::Refused(_) => ApiError::new(ProblemType::SynthesisRefused, detail).at(&req),
                G::Exists(_) => ApiError::new(ProblemType::DriverExists, detail).at(&req),
                G::Limit(_) => ApiError::new(ProblemType::DriverLimit, detail).at(&req),
                G::Busy(_) => ApiError::new(ProblemType::Overloaded, detail).at(&req),
                G::Unavailable(_) => ApiError::new(ProblemType::Unavailable, detail).at(&req),
                G::Timeout(_) => ApiError::new(ProblemType::Timeout, detail).at(&req),
                G::Unrecorded(r) => refusal_problem(&req, r),
                // The lane's own problem, its detail saying the driver is loaded.
                G::Unplaced { error, .. } => lane_problem(&req, *error).with_detail(detail),
                G::Failed(_) => ApiError::new(ProblemType::Internal, detail).at(&req),
            })
        }
    }
}

pub(crate) async fn promote(
    req: HttpRequest,
    st: web::Data<AppState>,
    body: JsonBody<LaneMove, LANE_MOVE_LEVELS_ABOVE>,
) -> Result<HttpResponse, ApiError> {
    move_lane(req, st, body.0, Direction::Promote).await
}

pub(crate) async fn demote(
    req: HttpRequest,
    st: web::Data<AppState>,
    body: JsonBody<LaneMove, LANE_MOVE_LEVELS_ABOVE>,
) -> Result<HttpResponse, ApiError> {
    move_lane(req, st, body.0, Direction::Demote).await
}
