//! ProbeCraft: an http driver manifest grown from one OpenAPI operation, checked, and
//! passing its red-team suite against a loopback stand-in.

use axon_drivers::obligations::ObligationsSpec;
use axon_drivers::probecraft::{driver_name, read_document, synthesize};
use axon_drivers::redteam;
use serde_json::{json, Value};

fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Qora", "version": "2.1.0"},
        "paths": {
            "/indexes/{index}/search": {
                "parameters": [
                    {"name": "index", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 32}}
                ],
                "get": {
                    "operationId": "qora_search",
                    "parameters": [
                        {"$ref": "#/components/parameters/q"},
                        {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                        {"name": "x-trace", "in": "header", "schema": {"type": "string"}}
                    ]
                }
            },
            "/orders": {
                "post": {
                    "operationId": "createOrder",
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}
                    }
                }
            }
        },
        "components": {
            "parameters": {
                "q": {"name": "q", "in": "query", "required": true, "schema": {"type": "string", "maxLength": 128}}
            },
            "schemas": {
                "Order": {
                    "type": "object",
                    "required": ["item"],
                    "properties": {"item": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}
                }
            }
        }
    })
}

#[test]
fn compound_operation_ids_make_driver_names() {
    for (id, name) in [
        ("qora_search", "qora-search"),
        ("QoraSearch", "qora-search"),
        ("qoraSearch", "qora-search"),
        ("createOrder2", "create-order2"),
    ] {
        assert_eq!(driver_name(id).unwrap(), name, "{id}");
    }
    assert!(driver_name("2fast").is_err());
    assert!(driver_name("__").is_err());
}

#[test]
fn a_get_operation_makes_an_idempotent_reader_with_its_own_dry_run() {
    let s = synthesize(
        &document(),
        "qora_search",
        "https://api.qora.example/v2/",
        &ObligationsSpec::default(),
    )
    .unwrap();
    let m = &s.manifest;
    assert_eq!(m.name, "qora-search");
    assert_eq!(m.version, "2.1.0");
    assert_eq!(m.capability, "urn:axon:cap:probecraft.qora-search");
    assert_eq!(m.initial_lane, axon_drivers::descriptor::Lane::Testing);
    assert!(m.idempotent);
    assert_eq!(m.effect, axon_drivers::descriptor::Effect::Read);
    let h = m.http_settings.as_ref().unwrap();
    assert_eq!(
        h.request.url,
        "https://api.qora.example/v2/indexes/{index}/search?q={q}"
    );
    assert_eq!(h.dry_run.as_ref(), Some(&h.request));
    // The argument schema: the path and required query parameters, the $ref resolved.
    let args = m.obligations.spec_json()["args"].clone();
    assert_eq!(args["required"], json!(["index", "q"]));
    assert_eq!(args["properties"]["q"]["maxLength"], 128);
    assert_eq!(args["additionalProperties"], false);
    assert!(m
        .obligations
        .check_args(&json!({"index": "books", "q": "axon"}))
        .is_ok());
    assert!(m
        .obligations
        .check_args(&json!({"index": "books"}))
        .is_err());
    // What a driver cannot carry is listed.
    assert_eq!(s.left_out.len(), 2, "{:?}", s.left_out);
    assert!(s.left_out[0].contains("limit"));
    assert!(s.left_out[1].contains("x-trace"));
    // The grown driver passes its red-team suite against the loopback stand-in.
    let scratch = tempfile::tempdir().unwrap();
    let r = redteam::run(m, scratch.path());
    assert!(r.passed, "{r:?}");
    assert!(r.hostile_exact >= 20, "{r:?}");
}

#[test]
fn a_post_operation_sends_its_body_argument_and_is_not_idempotent() {
    let s = synthesize(
        &document(),
        "createOrder",
        "http://127.0.0.1:9",
        &ObligationsSpec {
            postcondition: Some(json!({"properties": {"status": {"const": "ok"}}})),
            ..ObligationsSpec::default()
        },
    )
    .unwrap();
    let m = &s.manifest;
    assert!(!m.idempotent);
    assert_eq!(m.effect, axon_drivers::descriptor::Effect::Write);
    let h = m.http_settings.as_ref().unwrap();
    assert_eq!(
        h.request.body,
        axon_drivers::http::Body::Member("body".into())
    );
    assert!(h.dry_run.is_none());
    let args = m.obligations.spec_json()["args"].clone();
    assert_eq!(args["properties"]["body"]["required"], json!(["item"]));
    assert!(m
        .obligations
        .check_args(&json!({"body": {"item": "tea", "qty": 2}}))
        .is_ok());
    assert!(m
        .obligations
        .check_args(&json!({"body": {"qty": 2}}))
        .is_err());
    assert!(m.obligations.spec_json()["postcondition"].is_object());
    // The TOML it writes reads back as the same build.
    let again =
        axon_drivers::manifest::Manifest::parse(&s.toml, std::path::Path::new("x.toml")).unwrap();
    assert_eq!(
        again.descriptor().artifact_hash,
        m.descriptor().artifact_hash
    );
}

#[test]
fn documents_and_operations_it_cannot_use_are_refused_with_the_reason() {
    let no = ObligationsSpec::default();
    let e = synthesize(&document(), "nothing", "http://h", &no).unwrap_err();
    assert!(
        e.0.contains("createOrder") && e.0.contains("qora_search"),
        "{e}"
    );
    let e = synthesize(&json!({"openapi": "2.0"}), "x", "http://h", &no).unwrap_err();
    assert!(e.0.contains("OpenAPI 3"), "{e}");
    let e = synthesize(&document(), "qora_search", "ftp://h", &no).unwrap_err();
    assert!(e.0.contains("base URL"), "{e}");
    // A schema that refers to itself.
    let mut d = document();
    d["components"]["schemas"]["Order"] = json!({"$ref": "#/components/schemas/Order"});
    let e = synthesize(&d, "createOrder", "http://h", &no).unwrap_err();
    assert!(e.0.contains("$refs nest"), "{e}");
    assert!(read_document(b"openapi: 3.0.0")
        .unwrap_err()
        .0
        .contains("YAML"));
}

fn one_operation(parameters: Value, request_body: Option<Value>) -> Value {
    let mut op = json!({"operationId": "op", "parameters": parameters});
    if let Some(b) = request_body {
        op["requestBody"] = b;
    }
    json!({"openapi": "3.0.0", "paths": {"/items/{id}": {"post": op}}})
}

#[test]
fn parameters_are_carried_left_out_or_refused_by_what_a_template_can_send() {
    let no = ObligationsSpec::default();
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    // An optional parameter whose name no argument could take is only left out.
    let d = one_operation(
        json!([id, {"name": "page[size]", "in": "query", "schema": {"type": "integer"}}]),
        None,
    );
    let s = synthesize(&d, "op", "http://h", &no).unwrap();
    assert!(s.left_out[0].contains("page[size]"), "{:?}", s.left_out);
    for (extra, says) in [
        (
            json!({"name": "output.x", "in": "query", "required": true}),
            "output.",
        ),
        (
            json!({"name": "id", "in": "query", "required": true}),
            "two parameters",
        ),
        (
            json!({"name": "tags", "in": "query", "required": true, "schema": {"type": "array"}}),
            "not a string",
        ),
        (
            json!({"name": "x-key", "in": "header", "required": true}),
            "header",
        ),
    ] {
        let e = synthesize(
            &one_operation(json!([id, extra]), None),
            "op",
            "http://h",
            &no,
        )
        .unwrap_err();
        assert!(e.0.contains(says), "{says}: {e}");
    }
    // A path that names what no parameter describes.
    let e = synthesize(&one_operation(json!([]), None), "op", "http://h", &no).unwrap_err();
    assert!(e.0.contains("no path parameter"), "{e}");
}

#[test]
fn an_optional_body_left_out_of_the_arguments_sends_none_and_passes_the_red_team() {
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 16}});
    let body = json!({"content": {"application/json": {"schema": {"type": "object"}}}});
    let s = synthesize(
        &one_operation(json!([id]), Some(body)),
        "op",
        "http://h",
        &ObligationsSpec::default(),
    )
    .unwrap();
    let args = s.manifest.obligations.spec_json()["args"].clone();
    assert_eq!(args["required"], json!(["id"]));
    let scratch = tempfile::tempdir().unwrap();
    let r = redteam::run(&s.manifest, scratch.path());
    assert!(r.passed, "{r:?}");
}

#[test]
fn schemas_nested_past_the_bound_are_refused_not_followed() {
    let mut deep = json!({"type": "string"});
    for _ in 0..80 {
        deep = json!({"type": "object", "properties": {"a": deep}});
    }
    let body = json!({"required": true, "content": {"application/json": {"schema": deep}}});
    let id = json!({"name": "id", "in": "path", "required": true});
    let e = synthesize(
        &one_operation(json!([id]), Some(body)),
        "op",
        "http://h",
        &ObligationsSpec::default(),
    )
    .unwrap_err();
    assert!(e.0.contains("nest deeper"), "{e}");
}
