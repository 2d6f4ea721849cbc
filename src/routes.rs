//! The route table: every admin route, declared once with its path, method, handler,
//! auth, parameters, request and response schemas and problems. The router
//! ([`routes`]) and the OpenAPI document (`openapi.rs`) are both built from [`ROUTES`],
//! so the three cannot drift apart.

use crate::act_routes::{
    self as act, INTENT_LEVELS_ABOVE, LANE_MOVE_LEVELS_ABOVE, RESOLUTION_LEVELS_ABOVE,
    ROLLBACK_LEVELS_ABOVE, SYNTHESIZE_LEVELS_ABOVE,
};
use crate::api::{
    correlate, not_found, Auth, Method, PathParam, QueryParam, RequestBody, Route, CALL_PROBLEMS,
};
use crate::http;
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

/// `{action}`: an action id.
const ACTION: PathParam = PathParam {
    name: "action",
    pattern: "^[0-9a-f]{32}$",
    description: "The action id: 32 lowercase hex digits",
};

/// `{name}`: a driver's name.
const DRIVER: PathParam = PathParam {
    name: "name",
    pattern: "^[a-z][a-z0-9-]{0,62}$",
    description: "The driver's name, from its manifest",
};

/// The problems of a lane move.
const LANE_PROBLEMS: &[P] = &[
    P::UnknownDriver,
    P::IllegalLaneMove,
    P::JournalHalted,
    P::OutcomeUnknown,
    P::Overloaded,
    P::Unavailable,
    P::Timeout,
];

fn lanes() -> Value {
    json!(axon_protocols::lane::LANES
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>())
}

fn action_statuses() -> Value {
    json!(axon_protocols::action::ActionStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>())
}

/// A capability URN: `urn:axon:cap:` and names (a lowercase letter, then lowercase
/// letters, digits or `-`) joined by `.`.
pub const CAPABILITY_PATTERN: &str = "^urn:axon:cap:[a-z][a-z0-9-]*(\\.[a-z][a-z0-9-]*)*$";
/// An intent id: 1 to 128 printable ASCII characters without spaces.
pub const INTENT_ID_PATTERN: &str = "^[!-~]{1,128}$";
/// A correlation id, as in the `x-correlation-id` header.
pub const CORRELATION_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

fn intent_schema() -> Value {
    json!({
        "type": "object", "required": ["capability", "args"], "additionalProperties": false,
        "properties": {
            "capability": {"type": "string", "pattern": CAPABILITY_PATTERN, "description": "urn:axon:cap: then one or more names joined by '.', at most 128 characters"},
            "args": {"description": "Checked against the chosen driver's args schema"},
            "intent_id": {"type": "string", "pattern": INTENT_ID_PATTERN, "description": "Chosen by the client to make a retry safe: a repeat answers the first action's result; made up by the node when absent"},
            "correlation_id": {"type": "string", "pattern": CORRELATION_PATTERN},
            "budget_ms": {"type": "integer", "minimum": 1, "description": "How long the caller gives the action; the driver's deadline when shorter"},
            "purpose": {"type": "string", "maxLength": 1024},
            "consent": {}
        }
    })
}

fn action_result_schema() -> Value {
    json!({
        "type": "object",
        "required": ["action_id", "intent_id", "status", "output", "barcode", "index"],
        "properties": {
            "action_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "intent_id": {"type": "string"},
            "status": {"type": "string", "enum": action_statuses()},
            "output": {},
            "driver": {"type": "string"},
            "lane": {"type": "string", "enum": lanes()},
            "barcode": {"type": "string", "pattern": "^[a-z2-7]{12}$"},
            "index": {"type": "integer", "minimum": 0},
            "reason": {"type": "string"},
            "repeat": {"type": "boolean"}
        }
    })
}

fn driver_schema() -> Value {
    json!({
        "type": "object",
        "required": ["name", "lane", "artifact_hash", "descriptor", "manifest", "health"],
        "properties": {
            "name": {"type": "string"},
            "lane": {"type": "string", "enum": lanes()},
            "artifact_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "descriptor": {"type": "object"},
            "manifest": {"type": "string"},
            "health": {"$ref": "#/components/schemas/SupervisionNode"},
            "checks": {
                "description": "Each check against its service-level objective (null without one): the last verdict, the failures counted towards its limit, the figures",
                "type": ["array", "null"],
                "items": {"type": "object", "required": ["check", "verdict", "failures", "failure_limit", "dry_run", "figures"]}
            },
            "breaker": {
                "description": "Its circuit breaker: closed (in service, or never taken out by its checks), open (taken out by its checks: a trial is due after its cool-down), half_open (on trial), held (moved by an operator: no trial), retired (failed too many trials in a row)",
                "type": "object",
                "required": ["state", "failed_trials"],
                "properties": {
                    "state": {"type": "string", "enum": ["closed", "open", "half_open", "held", "retired"]},
                    "failed_trials": {"type": "integer", "minimum": 0}
                }
            }
        }
    })
}

/// A scorecard's figures over one span of calls.
fn figures_schema() -> Value {
    let number_or_null = json!({"type": ["number", "null"]});
    json!({
        "type": "object",
        "required": ["calls", "errors", "error_rate", "latency", "realized_utility",
                     "predicted_utility", "uplift", "inconclusive"],
        "properties": {
            "calls": {"type": "integer", "minimum": 0},
            "errors": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
            "error_rate": number_or_null,
            "latency": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["p50_ms", "p95_ms", "p99_ms", "max_ms"],
                        "properties": {
                            "p50_ms": {"type": "number"}, "p95_ms": {"type": "number"},
                            "p99_ms": {"type": "number"}, "max_ms": {"type": "number"}
                        }
                    }
                ]
            },
            "realized_utility": number_or_null,
            "predicted_utility": number_or_null,
            "uplift": number_or_null,
            "inconclusive": {"type": "integer", "minimum": 0},
            "shadow": {
                "description": "As a shadow: how its predictions of mirrored calls compared with the live outcomes",
                "type": "object",
                "required": ["agreed", "disagreed", "inconclusive", "failed", "skipped", "agreement"],
                "properties": {"agreement": number_or_null}
            }
        }
    })
}

fn scorecard_schema() -> Value {
    json!({
        "type": "object",
        "required": ["driver", "lane", "restarts", "window_seconds", "window", "total"],
        "properties": {
            "driver": {"type": "string"},
            "lane": {"oneOf": [{"type": "string", "enum": lanes()}, {"type": "null"}]},
            "restarts": {"type": "integer", "minimum": 0},
            "window_seconds": {"type": "number"},
            "window": figures_schema(),
            "total": figures_schema(),
            "slo": {"type": ["object", "null"]},
            "checks": {"type": ["array", "null"], "items": {"type": "object"}}
        }
    })
}

fn lane_move_schema() -> Value {
    json!({
        "type": "object", "required": ["to", "reason"], "additionalProperties": false,
        "properties": {
            "to": {"type": "string", "enum": lanes()},
            "reason": {"type": "string", "minLength": 1, "maxLength": 1024}
        }
    })
}

fn synthesize_schema() -> Value {
    json!({
        "type": "object", "required": ["openapi", "operation_id"], "additionalProperties": false,
        "properties": {
            "openapi": {"type": "object", "description": "The OpenAPI 3 document (JSON)"},
            "operation_id": {"type": "string", "minLength": 1, "maxLength": 256, "description": "The operation to grow a driver for; its words make the driver's name (qora_search, QoraSearch: qora-search)"},
            "base_url": {"type": "string", "description": "Where the service is (http:// or https://); the document's first server when left out"},
            "obligations": {
                "type": "object", "additionalProperties": false,
                "description": "The JSON Schemas the driver is held to: its argument schema is the operation's",
                "properties": {"precondition": {"type": "object"}, "postcondition": {"type": "object"}}
            },
            "samples": {
                "type": "array", "maxItems": 32,
                "description": "Sample calls of its red-team suite: arguments, and what the stand-in service answers them",
                "items": {
                    "type": "object", "required": ["args"], "additionalProperties": false,
                    "properties": {
                        "args": {"type": "object"},
                        "reply": {"type": "object", "required": ["status"], "properties": {"status": {"type": "integer", "minimum": 100, "maximum": 599}, "body": {}}}
                    }
                }
            }
        }
    })
}

fn synthesized() -> Value {
    json_ok(
        "The driver grown, written to the data directory, journaled, loaded and placed in its first lane",
        json!({
            "type": "object",
            "required": ["driver", "capability", "artifact_hash", "lane", "file", "manifest", "left_out", "index"],
            "properties": {
                "driver": {"type": "string"},
                "capability": {"type": "string"},
                "artifact_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "lane": {"type": "string", "enum": lanes()},
                "file": {"type": "string", "description": "Where its manifest was written (loaded again at each start)"},
                "manifest": {"type": "string", "description": "The manifest as written (TOML)"},
                "left_out": {"type": "array", "items": {"type": "string"}, "description": "What of the operation the driver does not carry, and why"},
                "index": {"type": "integer", "minimum": 0, "description": "The journal entry that records it (driver_synthesized)"}
            }
        }),
    )
}

fn lane_moved() -> Value {
    json_ok(
        "The driver after the move, and the journaled lane change",
        json!({
            "type": "object", "required": ["driver", "change"],
            "properties": {"driver": driver_schema(), "change": {"type": "object"}}
        }),
    )
}

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
        path: "/v1/act",
        summary: "Ask for an action: an AxonIntent v1 goes to the capability's live driver (admin token)",
        auth: Auth::Admin,
        path_params: &[],
        query: &[],
        request: Some(RequestBody {
            description: "An AxonIntent v1; unknown fields are refused",
            schema: intent_schema,
            levels_above: INTENT_LEVELS_ABOVE,
            max_bytes: None,
        }),
        journals: true,
        ok_status: 200,
        response: || {
            json_ok(
                "The action's result: ok, failed or blocked (200); in_doubt answers 500 with the same body",
                action_result_schema(),
            )
        },
        problems: &[
            P::ObligationViolated,
            P::IntentConflict,
            P::Overloaded,
            P::Unavailable,
            P::JournalHalted,
            P::OutcomeUnknown,
            P::ActionUnrecorded,
            P::Timeout,
        ],
        handler: |r| r.to(act::act),
    },
    Route {
        method: Method::Get,
        path: "/v1/actions",
        summary: "The actions in doubt: ?status=in_doubt (admin token: intents and outputs may hold what only operators should read)",
        auth: Auth::Admin,
        path_params: &[],
        query: &[QueryParam {
            name: "status",
            required: true,
            description: "in_doubt: the actions whose driver may have acted without the node knowing the outcome",
            schema: || json!({"type": "string", "enum": ["in_doubt"]}),
        }],
        request: None,
        journals: false,
        ok_status: 200,
        response: || {
            json_ok(
                "The actions in doubt, by action id",
                json!({
                    "type": "object", "required": ["status", "actions"],
                    "properties": {
                        "status": {"const": "in_doubt"},
                        "actions": {"type": "array", "items": action_result_schema()}
                    }
                }),
            )
        },
        problems: &[P::InvalidParameter],
        handler: |r| r.to(act::actions),
    },
    Route {
        method: Method::Get,
        path: "/v1/actions/{action}",
        summary: "One action from the journal: its intent, dispatch, newest result and capsule (admin token: intents and outputs may hold what only operators should read)",
        auth: Auth::Admin,
        path_params: &[ACTION],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || {
            json_ok(
                "The action and its entries",
                json!({
                    "type": "object",
                    "required": ["action_id", "status", "intent", "dispatch", "result", "capsule", "entries"],
                    "properties": {
                        "action_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                        "status": {"type": "string", "description": "the newest result's status, or running (in the pipeline now)"},
                        "intent": {},
                        "dispatch": {},
                        "result": {},
                        "capsule": {},
                        "entries": {"type": "array", "items": entry_schema()}
                    }
                }),
            )
        },
        problems: &[
            P::InvalidParameter,
            P::NoSuchAction,
            P::JournalDamaged,
            P::Overloaded,
            P::Unavailable,
            P::Timeout,
        ],
        handler: |r| r.to(act::action),
    },
    Route {
        method: Method::Post,
        path: "/v1/actions/{action}/resolve",
        summary: "Record an operator's finding about an action in doubt (admin token)",
        auth: Auth::Admin,
        path_params: &[ACTION],
        query: &[],
        request: Some(RequestBody {
            description: "Whether the action ran, why the operator thinks so, and any evidence",
            schema: || {
                json!({
                    "type": "object", "required": ["ran", "reason"], "additionalProperties": false,
                    "properties": {
                        "ran": {"type": "boolean"},
                        "reason": {"type": "string", "minLength": 1, "maxLength": 4096},
                        "evidence": {}
                    }
                })
            },
            levels_above: RESOLUTION_LEVELS_ABOVE,
            max_bytes: None,
        }),
        journals: true,
        ok_status: 200,
        response: || json_ok("The action, now resolved", action_result_schema()),
        problems: &[
            P::InvalidParameter,
            P::NoSuchAction,
            P::NotInDoubt,
            P::JournalHalted,
            P::OutcomeUnknown,
            P::Overloaded,
            P::Unavailable,
            P::Timeout,
        ],
        handler: |r| r.to(act::resolve),
    },
    Route {
        method: Method::Post,
        path: "/v1/actions/{action}/rollback",
        summary: "Undo an ok action through its driver's rollback (admin token)",
        auth: Auth::Admin,
        path_params: &[ACTION],
        query: &[],
        request: Some(RequestBody {
            description: "Why the action is undone",
            schema: || {
                json!({
                    "type": "object", "required": ["reason"], "additionalProperties": false,
                    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 4096}}
                })
            },
            levels_above: ROLLBACK_LEVELS_ABOVE,
            max_bytes: None,
        }),
        journals: true,
        ok_status: 200,
        response: || json_ok("The action, now rolled_back (or in_doubt, 500, when the rollback did not answer)", action_result_schema()),
        problems: &[
            P::InvalidParameter,
            P::NoSuchAction,
            P::RollbackRefused,
            P::JournalHalted,
            P::OutcomeUnknown,
            P::Overloaded,
            P::Unavailable,
            P::Timeout,
        ],
        handler: |r| r.to(act::rollback),
    },
    Route {
        method: Method::Get,
        path: "/v1/drivers",
        summary: "The loaded drivers: descriptor, lane, artifact hash, health",
        auth: Auth::None,
        path_params: &[],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || {
            json_ok(
                "Every loaded driver, by name",
                json!({
                    "type": "object", "required": ["drivers"],
                    "properties": {"drivers": {"type": "array", "items": driver_schema()}}
                }),
            )
        },
        problems: &[],
        handler: |r| r.to(act::drivers),
    },
    Route {
        method: Method::Get,
        path: "/v1/drivers/{name}",
        summary: "One loaded driver",
        auth: Auth::None,
        path_params: &[DRIVER],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || json_ok("The driver", driver_schema()),
        problems: &[P::UnknownDriver],
        handler: |r| r.to(act::driver),
    },
    Route {
        method: Method::Get,
        path: "/v1/drivers/{name}/scorecard",
        summary: "How a driver's pushes have gone, over the sliding window and in total: calls, errors by kind, latency p50/p95/p99, predicted and realized utility and their uplift, restarts",
        auth: Auth::None,
        path_params: &[DRIVER],
        query: &[],
        request: None,
        journals: false,
        ok_status: 200,
        response: || json_ok("The driver's scorecard", scorecard_schema()),
        problems: &[P::UnknownDriver],
        handler: |r| r.to(act::scorecard),
    },
    Route {
        method: Method::Post,
        path: "/v1/drivers/{name}/promote",
        summary: "Move a driver towards live: testing → shadow, shadow → live, retired → testing (admin token)",
        auth: Auth::Admin,
        path_params: &[DRIVER],
        query: &[],
        request: Some(RequestBody {
            description: "The lane to move to and why",
            schema: lane_move_schema,
            levels_above: LANE_MOVE_LEVELS_ABOVE,
            max_bytes: None,
        }),
        journals: true,
        ok_status: 200,
        response: lane_moved,
        problems: LANE_PROBLEMS,
        handler: |r| r.to(act::promote),
    },
    Route {
        method: Method::Post,
        path: "/v1/drivers/{name}/demote",
        summary: "Move a driver away from live: live → shadow, shadow → testing, any → retired (admin token)",
        auth: Auth::Admin,
        path_params: &[DRIVER],
        query: &[],
        request: Some(RequestBody {
            description: "The lane to move to and why",
            schema: lane_move_schema,
            levels_above: LANE_MOVE_LEVELS_ABOVE,
            max_bytes: None,
        }),
        journals: true,
        ok_status: 200,
        response: lane_moved,
        problems: LANE_PROBLEMS,
        handler: |r| r.to(act::demote),
    },
    Route {
        method: Method::Post,
        path: "/v1/probecraft/synthesize",
        summary: "Grow an http driver from one OpenAPI 3 operation and load it, in lane testing (admin token)",
        auth: Auth::Admin,
        path_params: &[],
        query: &[],
        request: Some(RequestBody {
            description: "The document, the operation, the base URL, the obligations and red-team samples",
            schema: synthesize_schema,
            levels_above: SYNTHESIZE_LEVELS_ABOVE,
            max_bytes: Some(("http.max_openapi_bytes", |h| h.max_openapi_bytes)),
        }),
        // It journals a manifest grown from the body (and the driver's first lane), never
        // the body as sent: a document may be larger than a journal entry, and one body
        // that is acknowledged grows a driver, so a test of bodies read back cannot send
        // a hundred. Its refusals are tested in tests/e2e/probecraft.rs.
        journals: false,
        ok_status: 201,
        response: synthesized,
        problems: &[
            P::SynthesisRefused,
            P::DriverExists,
            P::DriverLimit,
            P::JournalHalted,
            P::OutcomeUnknown,
            P::Overloaded,
            P::Unavailable,
            P::Timeout,
        ],
        handler: |r| r.to(act::synthesize),
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
                    json!({"type": "string", "enum": axon_protocols::journal::kind_names()})
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
            max_bytes: None,
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
pub fn routes(cfg: &mut web::ServiceConfig, http: &crate::config::HttpConfig) {
    cfg.app_data(web::PayloadConfig::new(http.max_body_bytes));
    let mut paths: Vec<&'static str> = vec![];
    for r in ROUTES {
        if !paths.contains(&r.path) {
            paths.push(r.path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path);
        for r in ROUTES.iter().filter(|r| r.path == path) {
            if let Some((key, bytes)) = r.request.as_ref().and_then(|b| b.max_bytes) {
                let bytes = bytes(http);
                resource = resource
                    .app_data(web::PayloadConfig::new(bytes))
                    .app_data(crate::api::BodyLimit { bytes, key });
            }
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
    let http = state.http.clone();
    actix_web::App::new()
        .app_data(state)
        .wrap(from_fn(correlate))
        .configure(|c| routes(c, &http))
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
