//! `/v1/journal/...`: entries, proofs, checkpoints and operator notes. Hashes are
//! lowercase hex; entry bytes are the canonical JSON, in standard base64.

use crate::http::{call_problem, correlation_id, require_admin, resource, ApiError, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use axon_actors::journal::{
    Appended, JournalRequest, JournalResponse, NewEntry, Refusal, StoredEntry,
};
use axon_protocols::journal::EntryKind;
use axon_protocols::ProblemType;
use axon_supervisors::CallOptions;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// Asks the journal and maps its refusals onto problems.
async fn ask(
    req: &HttpRequest,
    st: &AppState,
    r: JournalRequest,
) -> Result<JournalResponse, ApiError> {
    let opts = CallOptions {
        deadline: Duration::from_millis(st.http.call_timeout_ms),
        correlation_id: correlation_id(req),
    };
    match st.journal.call(r, &opts).await {
        Ok(JournalResponse::Refused(refusal)) => {
            let detail = refusal.to_string();
            let e = match refusal {
                Refusal::Halted(_) => ApiError::new(ProblemType::JournalHalted, detail),
                Refusal::NotFound(_) => ApiError::new(ProblemType::NoSuchEntry, detail),
                Refusal::BadLink(_) => ApiError::new(ProblemType::BadLink, detail),
                Refusal::Invalid(_) => ApiError::new(ProblemType::InvalidParameter, detail),
                Refusal::Damaged(_) => ApiError::new(ProblemType::JournalDamaged, detail),
            };
            Err(e.at(req))
        }
        Ok(answer) => Ok(answer),
        Err(e) => Err(call_problem(e, st.http.retry_after_seconds).at(req)),
    }
}

fn unexpected(req: &HttpRequest, what: &JournalResponse) -> ApiError {
    ApiError::new(
        ProblemType::Internal,
        format!("the journal answered with {what:?}"),
    )
    .at(req)
}

fn entry_json(e: &StoredEntry) -> Value {
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

fn text(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

async fn checkpoint(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match ask(&req, &st, JournalRequest::Checkpoint).await? {
        JournalResponse::Checkpoint(note) => Ok(text(note)),
        other => Err(unexpected(&req, &other)),
    }
}

async fn key(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match ask(&req, &st, JournalRequest::Key).await? {
        JournalResponse::Key(vkey) => Ok(text(format!("{vkey}\n"))),
        other => Err(unexpected(&req, &other)),
    }
}

fn parse_u64(req: &HttpRequest, name: &str, raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>().map_err(|_| {
        ApiError::new(
            ProblemType::InvalidParameter,
            format!("{name} must be a whole number, not {raw:?}"),
        )
        .at(req)
    })
}

async fn entry(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let index = parse_u64(&req, "index", req.match_info().get("index").unwrap_or(""))?;
    match ask(&req, &st, JournalRequest::Entry(index)).await? {
        JournalResponse::Entry(e) => Ok(HttpResponse::Ok().json(entry_json(&e))),
        other => Err(unexpected(&req, &other)),
    }
}

async fn by_barcode(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let code = req.match_info().get("code").unwrap_or("").to_owned();
    match ask(&req, &st, JournalRequest::ByBarcode(code.clone())).await? {
        JournalResponse::Entries(es) => Ok(HttpResponse::Ok().json(json!({
            "barcode": code,
            "entries": es.iter().map(entry_json).collect::<Vec<_>>(),
        }))),
        other => Err(unexpected(&req, &other)),
    }
}

/// Reads `names` from the query string: each exactly once, nothing else.
fn query(req: &HttpRequest, names: [&str; 2]) -> Result<[u64; 2], ApiError> {
    let mut found: [Option<u64>; 2] = [None, None];
    for pair in req.query_string().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(i) = names.iter().position(|n| *n == k) else {
            return Err(ApiError::new(
                ProblemType::InvalidParameter,
                format!(
                    "unknown query parameter {k:?}; this route takes {} and {}",
                    names[0], names[1]
                ),
            )
            .at(req));
        };
        if found[i].is_some() {
            return Err(ApiError::new(
                ProblemType::InvalidParameter,
                format!("{k} is given twice"),
            )
            .at(req));
        }
        found[i] = Some(parse_u64(req, k, v)?);
    }
    let get = |i: usize| {
        found[i].ok_or_else(|| {
            ApiError::new(
                ProblemType::InvalidParameter,
                format!("the query parameter {} is required", names[i]),
            )
            .at(req)
        })
    };
    Ok([get(0)?, get(1)?])
}

async fn inclusion(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let [index, size] = query(&req, ["index", "size"])?;
    match ask(&req, &st, JournalRequest::Inclusion { index, size }).await? {
        JournalResponse::Inclusion(p) => Ok(HttpResponse::Ok().json(p)),
        other => Err(unexpected(&req, &other)),
    }
}

async fn consistency(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let [from, to] = query(&req, ["from", "to"])?;
    match ask(&req, &st, JournalRequest::Consistency { from, to }).await? {
        JournalResponse::Consistency(p) => Ok(HttpResponse::Ok().json(p)),
        other => Err(unexpected(&req, &other)),
    }
}

/// The body of `POST /v1/journal/notes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    pub text: String,
    #[serde(default)]
    pub links: Vec<String>,
}

async fn note(
    req: HttpRequest,
    st: web::Data<AppState>,
    body: web::Json<NoteBody>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &st.auth)?;
    let NoteBody { text, links } = body.into_inner();
    if text.trim().is_empty() {
        return Err(
            ApiError::new(ProblemType::MalformedRequest, "text must not be empty").at(&req),
        );
    }
    let new = NewEntry {
        kind: EntryKind::Note,
        links,
        body: json!({ "text": text }),
    };
    let a = append(&req, &st, new.kind, new.links, new.body).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/v1/journal/entries/{}", a.index),
        ))
        .json(a))
}

/// Appends an entry; answers once it is durable.
pub(crate) async fn append(
    req: &HttpRequest,
    st: &AppState,
    kind: EntryKind,
    links: Vec<String>,
    body: Value,
) -> Result<Appended, ApiError> {
    match ask(
        req,
        st,
        JournalRequest::Append(NewEntry { kind, links, body }),
    )
    .await?
    {
        JournalResponse::Appended(a) => Ok(a),
        other => Err(unexpected(req, &other)),
    }
}

/// Registers the journal routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/journal/checkpoint", web::get(), checkpoint))
        .service(resource("/v1/journal/key", web::get(), key))
        .service(resource("/v1/journal/entries/{index}", web::get(), entry))
        .service(resource(
            "/v1/journal/by-barcode/{code}",
            web::get(),
            by_barcode,
        ))
        .service(resource(
            "/v1/journal/proof/inclusion",
            web::get(),
            inclusion,
        ))
        .service(resource(
            "/v1/journal/proof/consistency",
            web::get(),
            consistency,
        ))
        .service(resource("/v1/journal/notes", web::post(), note));
}
