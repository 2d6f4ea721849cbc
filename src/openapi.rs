//! The OpenAPI 3.1 document served at `/openapi.json`, built from the route table
//! (`routes::ROUTES`) alone, so the document and the router cannot drift apart.

use crate::api::{says_retry, Auth, Route};
use crate::routes::ROUTES;
use axon_protocols::ProblemType;
use serde_json::{json, Map, Value};

fn problem_response(p: ProblemType) -> Value {
    let mut r = json!({
        "description": "A problem document; `type` is one of the listed URIs",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    });
    if says_retry(p) {
        r["headers"] = json!({"Retry-After": {
            "description": "Seconds to wait before trying again (http.retry_after_seconds)",
            "required": true,
            "schema": {"type": "integer", "minimum": 1}
        }});
    }
    r
}

fn responses(route: &Route) -> Value {
    let mut r = Map::new();
    r.insert(route.ok_status.to_string(), (route.response)());
    for p in route.all_problems() {
        let entry = r
            .entry(p.status().to_string())
            .or_insert_with(|| problem_response(p));
        let list = entry
            .as_object_mut()
            .expect("responses are objects")
            .entry("x-problem-types")
            .or_insert_with(|| json!([]));
        list.as_array_mut().expect("a list").push(json!(p.uri()));
    }
    Value::Object(r)
}

/// The operation object of one route.
fn operation(route: &Route) -> Value {
    let mut parameters = vec![json!({
        "name": "X-Correlation-Id", "in": "header", "required": false,
        "description": "1 to 128 characters of A-Z a-z 0-9 . _ : -; echoed back, made up when absent",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}
    })];
    for p in route.path_params {
        parameters.push(json!({
            "name": p.name, "in": "path", "required": true, "description": p.description,
            "schema": {"type": "string", "pattern": p.pattern}
        }));
    }
    for q in route.query {
        parameters.push(json!({
            "name": q.name, "in": "query", "required": q.required, "description": q.description,
            "schema": (q.schema)()
        }));
    }
    let mut op = json!({
        "summary": route.summary,
        "parameters": parameters,
        "responses": responses(route),
    });
    if let Some(body) = &route.request {
        op["requestBody"] = json!({
            "required": true,
            "description": format!(
                "{}. Read under the journal's canonical-JSON rule: at most {} levels of arrays and objects, no member name twice, no integer that no double holds (422 not-canonical with the JSON Pointer in `path`).",
                body.description,
                body.max_depth()
            ),
            "content": {"application/json": {"schema": (body.schema)()}}
        });
    }
    if route.auth == Auth::Admin {
        op["security"] = json!([{"adminToken": []}]);
    }
    if route.journals {
        op["x-journals-caller-data"] = json!(true);
    }
    op
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects")
            .insert(route.method.as_str().to_owned(), operation(route));
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
                        "retry_after_seconds": {"type": "integer"},
                        "path": {"type": "string", "description": "For not-canonical: where in the body, as a JSON Pointer (RFC 6901)"}
                    }
                },
                "JournalEntry": {
                    "type": "object",
                    "required": ["index", "id", "kind", "barcode", "leaf_hash", "bytes_b64", "links"],
                    "properties": {
                        "index": {"type": "integer"},
                        "id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "kind": {"enum": axon_protocols::journal::kind_names()},
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
    fn the_document_has_exactly_the_declared_operations() {
        let doc = document();
        let mut documented = vec![];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push(format!("{method} {path}"));
            }
        }
        let mut declared: Vec<String> = ROUTES
            .iter()
            .map(|r| format!("{} {}", r.method.as_str(), r.path))
            .collect();
        documented.sort();
        declared.sort();
        assert_eq!(documented, declared);
    }

    #[test]
    fn every_operation_documents_its_parameters_auth_body_and_problems() {
        let doc = document();
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.as_str()];
            assert!(
                op["responses"][r.ok_status.to_string()].is_object(),
                "{}",
                r.path
            );
            assert!(op["responses"]["404"].is_object(), "{}", r.path);
            for p in r.path_params {
                let param = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["in"] == "path" && x["name"] == p.name)
                    .unwrap_or_else(|| panic!("{} lacks {}", r.path, p.name));
                assert_eq!(param["schema"]["pattern"], p.pattern);
            }
            assert_eq!(
                op["security"] == json!([{"adminToken": []}]),
                r.auth == Auth::Admin,
                "{}",
                r.path
            );
            assert_eq!(
                op["requestBody"].is_object(),
                r.request.is_some(),
                "{}",
                r.path
            );
            for code in ["429", "503"] {
                if let Some(res) = op["responses"].get(code) {
                    assert_eq!(
                        res["headers"]["Retry-After"]["required"], true,
                        "{} {code}",
                        r.path
                    );
                }
            }
        }
        let act = &doc["paths"]["/v1/act"]["post"]["responses"];
        for code in [
            "400", "401", "409", "413", "415", "422", "429", "500", "503", "504",
        ] {
            assert!(act[code].is_object(), "act lacks {code}");
        }
        let notes = &doc["paths"]["/v1/journal/notes"]["post"];
        assert_eq!(
            notes["requestBody"]["content"]["application/json"]["schema"]["required"],
            json!(["text"])
        );
        assert!(notes["responses"]["201"].is_object());
    }
}
