//! ProbeCraft: an http driver manifest grown from one OpenAPI operation, checked, and
//! passing its red-team suite against a loopback stand-in.

use axon_drivers::obligations::ObligationsSpec;
use axon_drivers::probecraft::{driver_name, read_document, synthesize, type_name};
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
fn compound_operation_ids_make_driver_names_and_type_names() {
    for (id, name, type_) in [
        ("qora_search", "qora-search", "QoraSearch"),
        ("QoraSearch", "qora-search", "QoraSearch"),
        ("qoraSearch", "qora-search", "QoraSearch"),
        ("createOrder2", "create-order2", "CreateOrder2"),
        ("list-HTTPRoutes", "list-httproutes", "ListHttproutes"),
    ] {
        assert_eq!(driver_name(id).unwrap(), name, "{id}");
        assert_eq!(type_name(id), type_, "{id}");
    }
    assert!(driver_name("2fast").is_err());
    assert!(driver_name("__").is_err());
}

#[test]
fn a_get_operation_makes_an_idempotent_reader_with_its_own_dry_run() {
    let s = synthesize(
        &document(),
        "qora_search",
        Some("https://api.qora.example/v2/"),
        &ObligationsSpec::default(),
        &[],
    )
    .unwrap();
    let m = &s.manifest;
    assert_eq!(m.name, "qora-search");
    // The argument schema is titled with the operation's type name.
    assert_eq!(m.obligations.spec_json()["args"]["title"], "QoraSearch");
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
        Some("http://127.0.0.1:9"),
        &ObligationsSpec {
            postcondition: Some(json!({"properties": {"status": {"const": "ok"}}})),
            ..ObligationsSpec::default()
        },
        &[],
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
    let e = synthesize(&document(), "nothing", Some("http://h"), &no, &[]).unwrap_err();
    assert!(
        e.0.contains("createOrder") && e.0.contains("qora_search"),
        "{e}"
    );
    let e = synthesize(&json!({"openapi": "2.0"}), "x", Some("http://h"), &no, &[]).unwrap_err();
    assert!(e.0.contains("OpenAPI 3"), "{e}");
    let e = synthesize(&document(), "qora_search", Some("ftp://h"), &no, &[]).unwrap_err();
    assert!(e.0.contains("base URL"), "{e}");
    // A schema that refers to itself.
    let mut d = document();
    d["components"]["schemas"]["Order"] = json!({"$ref": "#/components/schemas/Order"});
    let e = synthesize(&d, "createOrder", Some("http://h"), &no, &[]).unwrap_err();
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
    let s = synthesize(&d, "op", Some("http://h"), &no, &[]).unwrap();
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
            Some("http://h"),
            &no,
            &[],
        )
        .unwrap_err();
        assert!(e.0.contains(says), "{says}: {e}");
    }
    // A path that names what no parameter describes.
    let e = synthesize(
        &one_operation(json!([]), None),
        "op",
        Some("http://h"),
        &no,
        &[],
    )
    .unwrap_err();
    assert!(e.0.contains("no path parameter"), "{e}");
}

#[test]
fn an_optional_body_left_out_of_the_arguments_sends_none_and_passes_the_red_team() {
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 16}});
    let body = json!({"content": {"application/json": {"schema": {"type": "object"}}}});
    let s = synthesize(
        &one_operation(json!([id]), Some(body)),
        "op",
        Some("http://h"),
        &ObligationsSpec::default(),
        &[],
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
        Some("http://h"),
        &ObligationsSpec::default(),
        &[],
    )
    .unwrap_err();
    assert!(e.0.contains("nest deeper"), "{e}");
}

/// A hostile OpenAPI document and the operation id asked of it: parameters of every
/// place and odd name, schemas that nest, `$ref`s that point nowhere, outside the
/// document or round in a cycle, members of the wrong type, paths with braces that do
/// not close or name nothing. Each is rare enough that many documents still grow a
/// manifest.
/// Half the documents are wild: in those, each hostile choice is made one time in
/// `one_in`; the others are plain enough to grow a manifest more often than not.
fn rarely(g: &mut quickcheck::Gen, wild: bool, one_in: u8) -> bool {
    wild && u8::arbitrary(g) % one_in == 0
}

#[derive(Clone, Debug)]
struct HostileDoc {
    doc: serde_json::Value,
    operation: String,
}

fn pick<'a, T>(g: &mut quickcheck::Gen, items: &'a [T]) -> &'a T {
    g.choose(items).expect("a choice")
}

fn hostile_schema(g: &mut quickcheck::Gen, wild: bool, depth: u32) -> serde_json::Value {
    let refs = [
        "#/components/schemas/A",
        "#/components/schemas/B",
        "#/components/schemas/A/properties/next",
        "#/nowhere",
        "#/",
        "http://elsewhere.example/s.json",
        "#/components/schemas/A~1x",
    ];
    match u8::arbitrary(g) % if depth > 4 { 4 } else { 8 } {
        0 => json!({"type": pick(g, &["string", "integer", "number", "boolean", "null", "nope"])}),
        1 if rarely(g, wild, 3) => json!({"$ref": pick(g, &refs)}),
        1 => json!({"$ref": "#/components/schemas/C"}),
        2 => json!({"type": "string", "maxLength": pick(g, &[0i64, 1, 64, -1, 1 << 40])}),
        3 if wild => pick(
            g,
            &[json!(null), json!(7), json!("text"), json!([]), json!(true)],
        )
        .clone(),
        3 => json!({"type": "integer"}),
        4 => {
            json!({"type": "object", "properties": {"next": hostile_schema(g, wild, depth + 1), "x": hostile_schema(g, wild, depth + 1)}, "required": ["next"]})
        }
        5 => json!({"type": "array", "items": hostile_schema(g, wild, depth + 1)}),
        6 if wild => {
            json!({"allOf": [hostile_schema(g, wild, depth + 1), {"$ref": pick(g, &refs)}]})
        }
        6 => json!({"allOf": [hostile_schema(g, wild, depth + 1)]}),
        _ => {
            json!({"oneOf": [hostile_schema(g, wild, depth + 1), hostile_schema(g, wild, depth + 1)]})
        }
    }
}

impl quickcheck::Arbitrary for HostileDoc {
    fn arbitrary(g: &mut quickcheck::Gen) -> Self {
        let wild = bool::arbitrary(g);
        let names = [
            "q", "id", "body", "output.x", "a b", "", "ünï", "x/y", "q", "{id}",
        ];
        let long = "n".repeat(300);
        let places = ["path", "query", "header", "cookie", "body", ""];
        let mut params = vec![];
        for _ in 0..u8::arbitrary(g) % 5 {
            let name = if rarely(g, wild, 6) {
                long.as_str()
            } else {
                *pick(g, &names)
            };
            let mut p = json!({
                "name": name,
                "in": pick(g, &places),
                "required": bool::arbitrary(g),
                "schema": hostile_schema(g, wild, 0),
            });
            if rarely(g, wild, 8) {
                p = json!({"$ref": pick(g, &["#/components/parameters/P", "#/nowhere", "#/components/parameters/Loop"])});
            }
            params.push(p);
        }
        let mut op = json!({
            "operationId": if rarely(g, wild, 8) { *pick(g, &["__", "2x", ""]) } else { *pick(g, &["op", "qora_search", "createOrder"]) },
            "parameters": params,
        });
        match u8::arbitrary(g) % 4 {
            0 => {}
            1 if wild => op["requestBody"] = json!({"$ref": "#/components/requestBodies/R"}),
            _ => {
                op["requestBody"] = json!({
                    "required": bool::arbitrary(g),
                    "content": {pick(g, &["application/json", "text/plain"]).to_string(): {"schema": hostile_schema(g, wild, 0)}},
                })
            }
        }
        if rarely(g, wild, 10) {
            op["parameters"] = pick(g, &[json!("params"), json!(3), json!({"a": 1})]).clone();
        }
        let path = if rarely(g, wild, 6) {
            *pick(g, &["/s/{", "/s/{missing}", "/{id}}"])
        } else {
            *pick(g, &["/s", "/s/{id}", "/s/{q}/{id}"])
        };
        let method = if rarely(g, wild, 10) {
            "trace"
        } else {
            *pick(g, &["get", "post", "put", "delete", "patch", "head"])
        };
        let shared = if rarely(g, wild, 4) {
            json!([{"$ref": "#/components/parameters/P"}])
        } else {
            json!([])
        };
        let doc = json!({
            "openapi": if rarely(g, wild, 10) { *pick(g, &["2.0", "", "4"]) } else { *pick(g, &["3.0.3", "3.1.0"]) },
            "info": {"title": "t", "version": pick(g, &["1.0.0", "", "v 1", "1"])},
            "paths": {path: {method: op, "parameters": shared}},
            "components": {
                "schemas": {
                    "A": hostile_schema(g, wild, 0),
                    "B": {"$ref": "#/components/schemas/A"},
                    "C": {"type": "string", "maxLength": 8},
                },
                "parameters": {
                    "P": {"name": *pick(g, &names), "in": pick(g, &places), "schema": hostile_schema(g, wild, 0)},
                    "Loop": {"$ref": "#/components/parameters/Loop"},
                },
                "requestBodies": {"R": {"$ref": "#/components/requestBodies/R"}},
            },
        });
        let operation = if rarely(g, wild, 8) {
            "missing".to_owned()
        } else {
            op["operationId"].as_str().unwrap().to_owned()
        };
        HostileDoc { doc, operation }
    }
}

use quickcheck::Arbitrary;

#[test]
fn hostile_documents_are_refused_with_a_reason_or_grow_a_manifest_that_loads() {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static GROWN: AtomicU64 = AtomicU64::new(0);
    static REFUSED: AtomicU64 = AtomicU64::new(0);
    fn prop(h: HostileDoc) -> quickcheck::TestResult {
        let no = ObligationsSpec::default();
        match synthesize(&h.doc, &h.operation, Some("http://h"), &no, &[]) {
            Err(e) => {
                REFUSED.fetch_add(1, Relaxed);
                quickcheck::TestResult::from_bool(!e.0.is_empty())
            }
            Ok(s) => {
                GROWN.fetch_add(1, Relaxed);
                // What it grew is what the node would load, named from the operation id.
                let again = axon_drivers::manifest::Manifest::parse(
                    &s.toml,
                    std::path::Path::new("grown.toml"),
                );
                quickcheck::TestResult::from_bool(
                    again.is_ok_and(|m| m.canonical() == s.manifest.canonical())
                        && Ok(s.manifest.name.clone()) == driver_name(&h.operation).map_err(|_| ()),
                )
            }
        }
    }
    quickcheck::QuickCheck::new()
        .rng(quickcheck::Gen::from_size_and_seed(40, 0x009e_7a91))
        .tests(2000)
        .quickcheck(prop as fn(HostileDoc) -> quickcheck::TestResult);
    // Both ways were taken, often: the documents are not all refused at the door.
    let (grown, refused) = (GROWN.load(Relaxed), REFUSED.load(Relaxed));
    assert!(
        grown >= 100 && refused >= 100,
        "grown {grown}, refused {refused}"
    );
}
