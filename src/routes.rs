//! The route table: every admin route, declared once with its path, method, handler,
//! auth, parameters, request and response schemas and problems. The router
//! ([`routes`]) and the OpenAPI document (`openapi.rs`) are both built from [`ROUTES`],
//! so the three cannot drift apart.

use crate::api::{
    correlate, not_found, Auth, Method, PathParam, QueryParam, RequestBody, Route, CALL_PROBLEMS,
};
use crate::http::{self, ECHO_LEVELS_ABOVE};
use crate::journal_routes::{self as journal, NOTE_LEVELS_ABOVE};
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::web;
use axon_protocols::ProblemType as P;
use serde_json::{json, Value};

/// `{index}`: a position in the log.
const INDEX: PathParam = PathParam {
    name: "index",
    pattern: "^[0-9]+$",
    description: "The entry's position in the log, from 0",
};

/// A JSON response with `schema`.
fn json_ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// A plain-text response.
fn text_ok(description: &str) -> Value {
    json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}})
}

fn entry_schema() -> Value {
    json!({"$ref": "#/components/schemas/JournalEntry"})
}

/// `{<key>: <the key>, entries: [...]}`, the answer of the lookups by action and barcode.
fn entries_of(key: &str, pattern: &str) -> Value {
    json!({
        "type": "object", "required": [key, "entries"],
        "properties": {
            key: {"type": "string", "pattern": pattern},
            "entries": {"type": "array", "items": entry_schema()}
        }
    })
}

fn whole_number() -> Value {
    json!({"type": "integer", "minimum": 0})
}

/// The problems of a call to the journal that reads.
const JOURNAL_READ: &[P] = &[
    P::InvalidParameter,
    P::NoSuchEntry,
    P::JournalDamaged,
    P::Overloaded,
    P::Unavailable,
    P::Timeout,
];

/// Every route of the admin API.
pub static ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: "/healthz",
        summary: "Liveness: the process answers HTTP",
        auth: Auth::None,
        path_params: &[],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || {
            json_ok(
                "The process answers",
                json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}),
            )
        },
        problems: &[],
        handler: |r| r.to(http::healthz),
    },
    Route {
        method: Method::Get,
        path: "/readyz",
        summary: "Readiness: the whole supervision tree is running",
        auth: Auth::None,
        path_params: &[],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || {
            json_ok(
                "Every node of the supervision tree runs",
                json!({"type": "object", "required": ["ready"], "properties": {"ready": {"const": true}}}),
            )
        },
        problems: &[P::NotReady, P::ShuttingDown, P::JournalHalted],
        handler: |r| r.to(http::readyz),
    },
    Route {
        method: Method::Get,
        path: "/v1/supervision",
        summary: "The live supervision tree",
        auth: Auth::None,
        path_params: &[],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || {
            json_ok(
                "The tree",
                json!({"$ref": "#/components/schemas/SupervisionNode"}),
            )
        },
        problems: &[],
        handler: |r| r.to(http::supervision),
    },
    Route {
        method: Method::Post,
        path: "/v1/supervision/{actor}/restart",
        summary: "Restart one actor through its supervisor (admin token)",
        auth: Auth::Admin,
        path_params: &[PathParam {
            name: "actor",
            pattern: "^[^/]+$",
            description: "The id of a node of the supervision tree (not the root)",
        }],
        query: &[],
        request: None,
        journals: false,
        ok_status: 202,
        response: || {
            json_ok(
                "The restart is queued with the actor's supervisor; watch /v1/supervision for it",
                json!({
                    "type": "object",
                    "required": ["actor", "status"],
                    "properties": {"actor": {"type": "string"}, "status": {"const": "restart requested"}}
                }),
            )
        },
        problems: &[P::UnknownActor, P::Rejected, P::Overloaded, P::Unavailable],
        handler: |r| r.to(http::restart),
    },
    Route {
        method: Method::Post,
        path: "/v1/echo",
        summary: "Send JSON through the supervised echo driver and get it back (admin token)",
        auth: Auth::Admin,
        path_params: &[],
        query: &[],
        request: Some(RequestBody {
            description: "Any JSON value, up to http.max_body_bytes; it is journaled as the input of the call's replay capsule",
            schema: || json!({}),
            levels_above: ECHO_LEVELS_ABOVE,
        }),
        journals: true,
        ok_status: 200,
        response: || {
            json_ok(
                "The request body, as the echo driver returned it, and the journal entry of the call's replay capsule",
                json!({
                    "type": "object", "required": ["echo", "action_id", "index", "barcode"],
                    "properties": {
                        "echo": {},
                        "action_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                        "index": {"type": "integer", "minimum": 0},
                        "barcode": {"type": "string", "pattern": "^[a-z2-7]{12}$"}
                    }
                }),
            )
        },
        problems: &[
            P::Overloaded,
            P::Unavailable,
            P::Timeout,
            P::ActorFailed,
            P::Rejected,
            P::InvalidParameter,
            P::JournalHalted,
            P::OutcomeUnknown,
        ],
        handler: |r| r.to(http::echo),
    },
    Route {
        method: Method::Get,
        path: "/v1/journal/checkpoint",
        summary: "The latest signed checkpoint (a C2SP signed note, text)",
        auth: Auth::None,
        path_params: &[],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || text_ok("A C2SP tlog-checkpoint, signed as a C2SP signed note"),
        problems: CALL_PROBLEMS,
        handler: |r| r.to(journal::checkpoint),
    },
    Route {
        method: Method::Get,
        path: "/v1/journal/key",
        summary: "The journal's verifier key in signed-note vkey form (text)",
        auth: Auth::None,
        path_params: &[],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || text_ok("The verifier key, `<name>+<hash>+<key>`"),
        problems: CALL_PROBLEMS,
        handler: |r| r.to(journal::key),
    },
    Route {
        method: Method::Get,
        path: "/v1/journal/entries",
        summary: "A page of journal entries in order: ?kind=&since=&until=&after=&limit=",
        auth: Auth::None,
        path_params: &[],
        query: &[
            QueryParam {
                name: "kind",
                required: false,
                description: "Only entries of this kind",
                schema: || {
                    json!({"type": "string", "enum": ["note", "event", "intent", "decision", "result", "capsule", "lane_change"]})
                },
            },
            QueryParam {
                name: "since",
                required: false,
                description: "Entries from this time on (inclusive); RFC 3339 UTC (ending in Z)",
                schema: || json!({"type": "string", "format": "date-time"}),
            },
            QueryParam {
                name: "until",
                required: false,
                description: "Entries before this time (exclusive); RFC 3339 UTC (ending in Z)",
                schema: || json!({"type": "string", "format": "date-time"}),
            },
            QueryParam {
                name: "after",
                required: false,
                description: "Entries after this index: the previous page's next_after",
                schema: whole_number,
            },
            QueryParam {
                name: "limit",
                required: false,
                description: "At most this many entries (1 to journal.page_max_entries, the default)",
                schema: || json!({"type": "integer", "minimum": 1}),
            },
        ],
        request: None,
        journals: false,
        ok_status: 200,
        response: || {
            json_ok(
                "A page of entries; pass next_after as after for the next one (null at the end)",
                json!({
                    "type": "object", "required": ["entries", "next_after"],
                    "properties": {
                        "entries": {"type": "array", "items": entry_schema()},
                        "next_after": {"oneOf": [{"type": "null"}, whole_number()]}
                    }
                }),
            )
        },
        problems: JOURNAL_READ,
        handler: |r| r.to(journal::entries),
    },
    Route {
        method: Method::Get,
        path: "/v1/journal/entries/{index}",
        summary: "One journal entry",
        auth: Auth::None,
        path_params: &[INDEX],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || json_ok("The entry", entry_schema()),
        problems: JOURNAL_READ,
        handler: |r| r.to(journal::entry),
    },
    Route {
        method: Method::Get,
        path: "/v1/journal/by-id/{id}",
        summary: "The journal entry with this id",
        auth: Auth::None,
        path_params: &[PathParam {
            name: "id",
            pattern: "^[0-9a-f]{64}$",
            description: "The entry's id: its leaf hash in lowercase hex",
        }],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || json_ok("The entry", entry_schema()),
        problems: JOURNAL_READ,
        handler: |r| r.to(journal::by_id),
    },
    Route {
        method: Method::Get,
        path: "/v1/journal/by-action/{action}",
        summary: "The journal entries of one action",
        auth: Auth::None,
        path_params: &[PathParam {
            name: "action",
            pattern: "^[0-9a-f]{32}$",
            description: "The action id: 32 lowercase hex digits",
        }],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || {
            json_ok(
                "The entries of the action, in index order",
                entries_of("action_id", "^[0-9a-f]{32}$"),
            )
        },
        problems: JOURNAL_READ,
        handler: |r| r.to(journal::by_action),
    },
    Route {
        method: Method::Get,
        path: "/v1/journal/by-barcode/{code}",
        summary: "The journal entries with this barcode",
        auth: Auth::None,
        path_params: &[PathParam {
            name: "code",
            pattern: "^[a-z2-7]{12}$",
            description: "A barcode: the first 60 bits of an id in lowercase base32",
        }],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || {
            json_ok(
                "The entries with this barcode, in index order",
                entries_of("barcode", "^[a-z2-7]{12}$"),
            )
        },
        problems: JOURNAL_READ,
        handler: |r| r.to(journal::by_barcode),
    },
    Route {
        method: Method::Get,
        path: "/v1/journal/proof/inclusion",
        summary: "An inclusion proof: ?index=I&size=N",
        auth: Auth::None,
        path_params: &[],
        query: &[
            QueryParam {
                name: "index",
                required: true,
                description: "The entry to prove",
                schema: whole_number,
            },
            QueryParam {
                name: "size",
                required: true,
                description: "The size of the tree to prove it in",
                schema: whole_number,
            },
        ],
        request: None,
        journals: false,
        ok_status: 200,
        response: || {
            json_ok(
                "An RFC 9162 inclusion proof (hashes in lowercase hex)",
                json!({
                    "type": "object", "required": ["index", "tree_size", "leaf_hash", "root", "proof"],
                    "properties": {
                        "index": whole_number(), "tree_size": whole_number(),
                        "leaf_hash": {"type": "string"}, "root": {"type": "string"},
                        "proof": {"type": "array", "items": {"type": "string"}}
                    }
                }),
            )
        },
        problems: &[P::InvalidParameter, P::Overloaded, P::Unavailable, P::Timeout],
        handler: |r| r.to(journal::inclusion),
    },
    Route {
        method: Method::Get,
        path: "/v1/journal/proof/consistency",
        summary: "A consistency proof: ?from=M&to=N",
        auth: Auth::None,
        path_params: &[],
        query: &[
            QueryParam {
                name: "from",
                required: true,
                description: "The size of the older tree",
                schema: whole_number,
            },
            QueryParam {
                name: "to",
                required: true,
                description: "The size of the newer tree",
                schema: whole_number,
            },
        ],
        request: None,
        journals: false,
        ok_status: 200,
        response: || {
            json_ok(
                "An RFC 9162 consistency proof (hashes in lowercase hex)",
                json!({
                    "type": "object", "required": ["size1", "size2", "root1", "root2", "proof"],
                    "properties": {
                        "size1": whole_number(), "size2": whole_number(),
                        "root1": {"type": "string"}, "root2": {"type": "string"},
                        "proof": {"type": "array", "items": {"type": "string"}}
                    }
                }),
            )
        },
        problems: &[P::InvalidParameter, P::Overloaded, P::Unavailable, P::Timeout],
        handler: |r| r.to(journal::consistency),
    },
    Route {
        method: Method::Post,
        path: "/v1/journal/notes",
        summary: "Append an operator note (admin token)",
        auth: Auth::Admin,
        path_params: &[],
        query: &[],
        request: Some(RequestBody {
            description: "The note: a text that is not only white space, and ids of earlier entries it refers to",
            schema: || {
                json!({
                    "type": "object", "required": ["text"], "additionalProperties": false,
                    "properties": {
                        "text": {"type": "string", "minLength": 1},
                        "links": {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}
                    }
                })
            },
            levels_above: NOTE_LEVELS_ABOVE,
        }),
        journals: true,
        ok_status: 201,
        response: || {
            json_ok(
                "The note is durable; Location names its entry",
                json!({
                    "type": "object", "required": ["index", "id", "barcode"],
                    "properties": {
                        "index": whole_number(),
                        "id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "barcode": {"type": "string", "pattern": "^[a-z2-7]{12}$"}
                    }
                }),
            )
        },
        problems: &[
            P::BadLink,
            P::InvalidParameter,
            P::JournalHalted,
            P::OutcomeUnknown,
            P::Overloaded,
            P::Unavailable,
            P::Timeout,
        ],
        handler: |r| r.to(journal::note),
    },
    Route {
        method: Method::Get,
        path: "/metrics",
        summary: "Prometheus text exposition",
        auth: Auth::None,
        path_params: &[],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || {
            json!({
                "description": "Prometheus text exposition format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}}
            })
        },
        problems: &[],
        handler: |r| r.to(http::metrics),
    },
    Route {
        method: Method::Get,
        path: "/openapi.json",
        summary: "This API as an OpenAPI 3.1 document",
        auth: Auth::None,
        path_params: &[],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || json_ok("The document", json!({"type": "object"})),
        problems: &[],
        handler: |r| r.to(http::openapi),
    },
];

/// Registers every route of [`ROUTES`] on `cfg`: one resource per path, answering its
/// routes' methods and 405 to any other; 404 for any other path. The app's state must
/// be registered by the caller.
pub fn routes(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(web::PayloadConfig::new(max_body_bytes));
    let mut paths: Vec<&'static str> = vec![];
    for r in ROUTES {
        if !paths.contains(&r.path) {
            paths.push(r.path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path);
        for r in ROUTES.iter().filter(|r| r.path == path) {
            resource = resource.route(r.route());
        }
        cfg.service(resource.default_service(web::to(crate::api::method_not_allowed)));
    }
    cfg.default_service(web::to(not_found));
}

/// Builds the app: state, middleware, routes.
pub fn app(
    state: web::Data<crate::api::AppState>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn each_route_is_declared_once_with_its_path_parameters() {
        let mut seen = HashSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method.as_str(),
                r.path
            );
            let in_path: Vec<&str> = r
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            let declared: Vec<&str> = r.path_params.iter().map(|p| p.name).collect();
            assert_eq!(in_path, declared, "{}", r.path);
            for p in r.path_params {
                assert!(
                    p.pattern.starts_with('^') && p.pattern.ends_with('$'),
                    "{}",
                    p.pattern
                );
            }
        }
    }

    #[test]
    fn every_route_that_journals_caller_data_declares_its_body_and_needs_the_token() {
        assert!(ROUTES.iter().any(|r| r.journals));
        for r in ROUTES.iter().filter(|r| r.journals) {
            assert!(r.request.is_some(), "{}", r.path);
            assert_eq!(r.auth, Auth::Admin, "{}", r.path);
        }
    }
}
