//! The OpenAPI 3.1 document served at `/openapi.json`, built from the route list so the
//! two cannot drift apart.

use crate::http::ROUTES;
use axon_protocols::ProblemType;
use serde_json::{json, Map, Value};

fn problem_ref(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn responses(method: &str, path: &str) -> Value {
    let mut r = Map::new();
    let ok = match (method, path) {
        ("get", "/metrics") => json!({
            "description": "Prometheus text exposition format 0.0.4",
            "content": {"text/plain": {"schema": {"type": "string"}}}
        }),
        ("get", "/v1/supervision") => json!({
            "description": "The tree",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SupervisionNode"}}}
        }),
        ("post", "/v1/supervision/{actor}/restart") => json!({
            "description": "The restart is queued with the actor's supervisor; watch /v1/supervision for it",
            "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["actor", "status"],
                "properties": {"actor": {"type": "string"}, "status": {"const": "restart requested"}}
            }}}
        }),
        ("post", "/v1/echo") => json!({
            "description": "The request body, as the echo driver returned it, and the journal entry of the call's replay capsule",
            "content": {"application/json": {"schema": {
                "type": "object", "required": ["echo", "action_id", "index", "barcode"],
                "properties": {"echo": {}, "action_id": {"type": "string"}, "index": {"type": "integer"}, "barcode": {"type": "string"}}
            }}}
        }),
        _ => {
            json!({"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}})
        }
    };
    let code = if path.ends_with("/restart") {
        "202"
    } else {
        "200"
    };
    r.insert(code.into(), ok);
    let mut problems: Vec<ProblemType> = vec![
        ProblemType::NotFound,
        ProblemType::MethodNotAllowed,
        ProblemType::BadHeader,
        ProblemType::Internal,
    ];
    match (method, path) {
        ("get", "/readyz") => problems.extend([ProblemType::NotReady, ProblemType::ShuttingDown]),
        ("post", "/v1/supervision/{actor}/restart") => problems.extend([
            ProblemType::Unauthenticated,
            ProblemType::InvalidToken,
            ProblemType::UnknownActor,
            ProblemType::Rejected,
            ProblemType::Overloaded,
            ProblemType::Unavailable,
        ]),
        ("get", "/v1/journal/entries/{index}")
        | ("get", "/v1/journal/by-barcode/{code}")
        | ("get", "/v1/journal/by-id/{id}")
        | ("get", "/v1/journal/by-action/{action}")
        | ("get", "/v1/journal/entries") => problems.extend([
            ProblemType::InvalidParameter,
            ProblemType::NoSuchEntry,
            ProblemType::JournalDamaged,
            ProblemType::Overloaded,
            ProblemType::Unavailable,
            ProblemType::Timeout,
        ]),
        ("get", "/v1/journal/proof/inclusion") | ("get", "/v1/journal/proof/consistency") => {
            problems.extend([
                ProblemType::InvalidParameter,
                ProblemType::Overloaded,
                ProblemType::Unavailable,
                ProblemType::Timeout,
            ])
        }
        ("get", "/v1/journal/checkpoint") | ("get", "/v1/journal/key") => problems.extend([
            ProblemType::Overloaded,
            ProblemType::Unavailable,
            ProblemType::Timeout,
        ]),
        ("post", "/v1/journal/notes") => problems.extend([
            ProblemType::Unauthenticated,
            ProblemType::InvalidToken,
            ProblemType::MalformedRequest,
            ProblemType::UnsupportedMediaType,
            ProblemType::PayloadTooLarge,
            ProblemType::BadLink,
            ProblemType::InvalidParameter,
            ProblemType::JournalHalted,
            ProblemType::Overloaded,
            ProblemType::Unavailable,
            ProblemType::Timeout,
        ]),
        ("post", "/v1/echo") => problems.extend([
            ProblemType::MalformedRequest,
            ProblemType::UnsupportedMediaType,
            ProblemType::PayloadTooLarge,
            ProblemType::Overloaded,
            ProblemType::Unavailable,
            ProblemType::Timeout,
            ProblemType::ActorFailed,
            ProblemType::Rejected,
            ProblemType::JournalHalted,
        ]),
        _ => {}
    }
    for p in problems {
        let code = p.status().to_string();
        let entry = r
            .entry(code)
            .or_insert_with(|| problem_ref("A problem document; `type` is one of the listed URIs"));
        let list = entry
            .as_object_mut()
            .expect("responses are objects")
            .entry("x-problem-types")
            .or_insert_with(|| json!([]));
        list.as_array_mut().expect("a list").push(json!(p.uri()));
    }
    Value::Object(r)
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "parameters": [{
                "name": "X-Correlation-Id", "in": "header", "required": false,
                "description": "1 to 128 characters of A-Z a-z 0-9 . _ : -; echoed back, made up when absent",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}
            }],
            "responses": responses(method, path),
        });
        for (name, p) in [
            ("{index}", "index"),
            ("{code}", "code"),
            ("{id}", "id"),
            ("{action}", "action"),
        ] {
            if path.contains(name) {
                op["parameters"]
                    .as_array_mut()
                    .expect("a list")
                    .push(json!({
                        "name": p, "in": "path", "required": true, "schema": {"type": "string"}
                    }));
            }
        }
        let query: &[&str] = match *path {
            "/v1/journal/proof/inclusion" => &["index", "size"],
            "/v1/journal/proof/consistency" => &["from", "to"],
            _ => &[],
        };
        for q in query {
            op["parameters"].as_array_mut().expect("a list").push(json!({
                "name": q, "in": "query", "required": true, "schema": {"type": "integer", "minimum": 0}
            }));
        }
        if *path == "/v1/journal/entries" {
            let list = op["parameters"].as_array_mut().expect("a list");
            list.push(json!({
                "name": "kind", "in": "query", "required": false,
                "schema": {"type": "string", "enum": ["note", "event", "intent", "decision", "result", "capsule", "lane_change"]}
            }));
            for (name, what) in [
                ("since", "from this time on (inclusive)"),
                ("until", "before this time (exclusive)"),
            ] {
                list.push(json!({
                    "name": name, "in": "query", "required": false,
                    "description": format!("Entries {what}; RFC 3339 UTC (ending in Z)"),
                    "schema": {"type": "string", "format": "date-time"}
                }));
            }
            list.push(json!({
                "name": "after", "in": "query", "required": false,
                "description": "Entries after this index: the previous page's next_after",
                "schema": {"type": "integer", "minimum": 0}
            }));
            list.push(json!({
                "name": "limit", "in": "query", "required": false,
                "description": "At most this many entries (1 to journal.page_max_entries, the default)",
                "schema": {"type": "integer", "minimum": 1}
            }));
        }
        if *path == "/v1/journal/notes" {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["text"], "additionalProperties": false,
                    "properties": {"text": {"type": "string", "minLength": 1},
                        "links": {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}
                }}}
            });
        }
        if path.contains("{actor}") {
            op["parameters"]
                .as_array_mut()
                .expect("a list")
                .push(json!({
                    "name": "actor", "in": "path", "required": true, "schema": {"type": "string"}
                }));
        }
        if *method == "post" && (path.ends_with("/restart") || path.ends_with("/notes")) {
            op["security"] = json!([{"adminToken": []}]);
        }
        if *path == "/v1/echo" {
            op["requestBody"] = json!({
                "required": true,
                "description": "Any JSON value, up to http.max_body_bytes",
                "content": {"application/json": {"schema": {}}}
            });
        }
        paths
            .entry(path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects")
            .insert(method.to_string(), op);
    }
    let problem_types: Vec<Value> = ProblemType::ALL.iter().map(|p| json!(p.uri())).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Axon admin API",
            "version": "1",
            "description": "The admin endpoint of one Axon node. Errors are RFC 9457 problem documents."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer",
                    "description": "The token in <data-dir>/admin.token"}
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status"],
                    "properties": {
                        "type": {"type": "string", "enum": problem_types},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                        "correlation_id": {"type": "string"},
                        "retry_after_seconds": {"type": "integer"}
                    }
                },
                "JournalEntry": {
                    "type": "object",
                    "required": ["index", "id", "kind", "barcode", "leaf_hash", "bytes_b64", "links"],
                    "properties": {
                        "index": {"type": "integer"},
                        "id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "kind": {"enum": ["note", "event", "intent", "decision", "result", "capsule", "lane_change"]},
                        "barcode": {"type": "string", "pattern": "^[a-z2-7]{12}$"},
                        "leaf_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "bytes_b64": {"type": "string", "contentEncoding": "base64"},
                        "links": {"type": "array", "items": {"type": "string"}}
                    }
                },
                "SupervisionNode": {
                    "type": "object",
                    "required": ["id", "kind", "status", "restarts_in_window", "restarts_total", "last_failure"],
                    "properties": {
                        "id": {"type": "string"},
                        "kind": {"enum": ["worker", "supervisor"]},
                        "strategy": {"enum": ["one_for_one", "one_for_all", "rest_for_one"]},
                        "restart": {"enum": ["permanent", "transient", "temporary"]},
                        "status": {"enum": ["starting", "running", "restarting", "stopping", "stopped", "failed"]},
                        "restarts_in_window": {"type": "integer"},
                        "restarts_total": {"type": "integer"},
                        "last_failure": {"oneOf": [{"type": "null"}, {
                            "type": "object", "required": ["reason", "at"],
                            "properties": {"reason": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}
                        }]},
                        "mailbox": {"type": "object", "required": ["depth", "capacity"],
                            "properties": {"depth": {"type": "integer"}, "capacity": {"type": "integer"}}},
                        "children": {"type": "array", "items": {"$ref": "#/components/schemas/SupervisionNode"}}
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_problems() {
        let doc = document();
        for (method, path, _) in ROUTES {
            let op = &doc["paths"][path][method];
            assert!(op.is_object(), "{method} {path} missing");
            assert!(op["responses"]["404"].is_object(), "{method} {path}");
        }
        let echo = &doc["paths"]["/v1/echo"]["post"]["responses"];
        for code in ["400", "413", "415", "429", "500", "503", "504"] {
            assert!(echo[code].is_object(), "echo lacks {code}");
        }
    }
}
