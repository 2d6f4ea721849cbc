//! `/v1/journal/...`: entries, proofs, checkpoints and operator notes. Hashes are
//! lowercase hex; entry bytes are the canonical JSON, in standard base64.

use crate::api::{append, entry_json, path_param, refusal_problem, ApiError, AppState, JsonBody};
use actix_web::{web, HttpRequest, HttpResponse};
use axon_actors::journal::{ActionId, Barcode, EntryId, Filter};

use axon_protocols::journal::EntryKind;
use axon_protocols::ProblemType;
use serde::Deserialize;
use serde_json::{json, Value};

fn text(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

pub(crate) async fn checkpoint(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // The newest logged checkpoint, as published: serving it writes nothing.
    let note = st
        .journal
        .checkpoint()
        .map_err(|r| refusal_problem(&req, r))?;
    Ok(text(note))
}

pub(crate) async fn key(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let vkey = st.journal.key().map_err(|r| refusal_problem(&req, r))?;
    Ok(text(format!("{vkey}\n")))
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

pub(crate) async fn entry(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let index = parse_u64(&req, "index", req.match_info().get("index").unwrap_or(""))?;
    let e = st
        .journal
        .entry(index, &st.call_options(&req))
        .await
        .map_err(|r| refusal_problem(&req, r))?;
    Ok(HttpResponse::Ok().json(entry_json(&e)))
}

pub(crate) async fn by_id(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id: EntryId = path_param(&req, "id")?;
    let e = st
        .journal
        .by_id(id, &st.call_options(&req))
        .await
        .map_err(|r| refusal_problem(&req, r))?;
    Ok(HttpResponse::Ok().json(entry_json(&e)))
}

pub(crate) async fn by_action(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let action: ActionId = path_param(&req, "action")?;
    let es = st
        .journal
        .by_action(action.clone(), &st.call_options(&req))
        .await
        .map_err(|r| refusal_problem(&req, r))?;
    Ok(HttpResponse::Ok().json(json!({
        "action_id": action.as_str(),
        "entries": es.iter().map(entry_json).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/journal/entries?kind=&since=&until=&after=&limit=`: a page of entries in
/// order, with `next_after` to pass as `after` for the next page (`null` at the end).
pub(crate) async fn entries(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let [kind, since, until, after, limit] =
        params(&req, ["kind", "since", "until", "after", "limit"])?;
    let bad = |detail: String| ApiError::new(ProblemType::InvalidParameter, detail).at(&req);
    let kind = kind
        .map(|k| {
            serde_json::from_value::<EntryKind>(Value::String(k.clone())).map_err(|_| {
                bad(format!(
                    "kind {k:?} is not one of {}",
                    axon_protocols::journal::kind_names().join(", ")
                ))
            })
        })
        .transpose()?;
    let time = |name: &str, v: Option<String>| {
        v.map(|t| axon_protocols::time::parse_rfc3339(&t).map_err(|e| bad(format!("{name}: {e}"))))
            .transpose()
    };
    let filter = Filter {
        kind,
        since: time("since", since)?,
        until: time("until", until)?,
    };
    let after = after.map(|a| parse_u64(&req, "after", &a)).transpose()?;
    let max = st.journal_page_max_entries;
    let limit = match limit {
        None => max,
        Some(l) => match parse_u64(&req, "limit", &l)? {
            n @ 1.. if n <= max as u64 => n as usize,
            _ => return Err(bad(format!("limit must be between 1 and {max}"))),
        },
    };
    let (entries, next_after) = st
        .journal
        .query(filter, after, limit, &st.call_options(&req))
        .await
        .map_err(|r| refusal_problem(&req, r))?;
    Ok(HttpResponse::Ok().json(json!({
        "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        "next_after": next_after,
    })))
}

pub(crate) async fn by_barcode(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let code: Barcode = path_param(&req, "code")?;
    let es = st
        .journal
        .by_barcode(code.clone(), &st.call_options(&req))
        .await
        .map_err(|r| refusal_problem(&req, r))?;
    Ok(HttpResponse::Ok().json(json!({
        "barcode": code.as_str(),
        "entries": es.iter().map(entry_json).collect::<Vec<_>>(),
    })))
}

/// Reads the query string: each parameter at most once, only those in `names`. Values
/// are percent-decoded; the answer is in the order of `names`.
fn params<const N: usize>(
    req: &HttpRequest,
    names: [&str; N],
) -> Result<[Option<String>; N], ApiError> {
    let bad = |detail: String| ApiError::new(ProblemType::InvalidParameter, detail).at(req);
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| bad(format!("the query string cannot be read: {e}")))?
        .into_inner();
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    for (k, v) in pairs {
        let Some(i) = names.iter().position(|n| *n == k) else {
            return Err(bad(format!(
                "unknown query parameter {k:?}; this route takes {}",
                names.join(", ")
            )));
        };
        if found[i].replace(v).is_some() {
            return Err(bad(format!("{k} is given twice")));
        }
    }
    Ok(found)
}

/// Reads the two whole numbers `names`, both required.
fn query(req: &HttpRequest, names: [&str; 2]) -> Result<[u64; 2], ApiError> {
    let found = params(req, names)?;
    let get = |i: usize| match &found[i] {
        Some(v) => parse_u64(req, names[i], v),
        None => Err(ApiError::new(
            ProblemType::InvalidParameter,
            format!("the query parameter {} is required", names[i]),
        )
        .at(req)),
    };
    Ok([get(0)?, get(1)?])
}

pub(crate) async fn inclusion(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let [index, size] = query(&req, ["index", "size"])?;
    let p = st
        .journal
        .inclusion(index, size, &st.call_options(&req))
        .await
        .map_err(|r| refusal_problem(&req, r))?;
    Ok(HttpResponse::Ok().json(p))
}

pub(crate) async fn consistency(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let [from, to] = query(&req, ["from", "to"])?;
    let p = st
        .journal
        .consistency(from, to, &st.call_options(&req))
        .await
        .map_err(|r| refusal_problem(&req, r))?;
    Ok(HttpResponse::Ok().json(p))
}

/// The body of `POST /v1/journal/notes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    pub text: String,
    #[serde(default)]
    pub links: Vec<String>,
}

/// How many arrays and objects of its entry hold the body of `POST /v1/journal/notes`:
/// the entry's object (the note's text and links are stored in it, one level down).
pub(crate) const NOTE_LEVELS_ABOVE: usize = 1;

pub(crate) async fn note(
    req: HttpRequest,
    st: web::Data<AppState>,
    body: JsonBody<NoteBody, NOTE_LEVELS_ABOVE>,
) -> Result<HttpResponse, ApiError> {
    let NoteBody { text, links } = body.0;
    if text.trim().is_empty() {
        return Err(
            ApiError::new(ProblemType::MalformedRequest, "text must not be empty").at(&req),
        );
    }
    let a = append(&req, &st, EntryKind::Note, links, json!({ "text": text })).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/v1/journal/entries/{}", a.index),
        ))
        .json(a))
}
