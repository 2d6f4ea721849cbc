//! ProbeCraft: an `http` driver manifest grown from one operation of an OpenAPI 3
//! document (JSON). The operation's path and query parameters and its JSON request body
//! become the argument schema (`$ref`s into the document resolved), its path and method
//! the request (each parameter `{name}` in the URL, the body the `body` argument), its
//! method whether it is idempotent and whether it only reads; a GET or HEAD sends itself
//! as its `dry_run`. The manifest starts in `testing` and is checked by the one manifest
//! checker before it is answered; what could not be carried over (an optional query
//! parameter, which a URL template cannot leave out; a header or cookie parameter) is
//! listed, never dropped silently.

use crate::manifest::Manifest;
use crate::obligations::ObligationsSpec;
use serde_json::{json, Map, Value};
use std::path::Path;

/// The largest OpenAPI document read.
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;
/// The longest operation id a driver is grown from, in characters.
pub const MAX_OPERATION_ID_CHARS: usize = 256;
/// How deep `$ref`s may nest, and how many values a resolved schema may hold.
const MAX_REF_DEPTH: usize = 32;
const MAX_SCHEMA_VALUES: usize = 10_000;

/// A manifest grown from an operation.
#[derive(Clone, Debug)]
pub struct Synthesis {
    /// The manifest as TOML, as written to a manifest folder.
    pub toml: String,
    /// The same, checked.
    pub manifest: Manifest,
    /// What of the operation the driver does not carry, and why.
    pub left_out: Vec<String>,
}

/// Why no manifest was grown.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SynthesisError(pub String);

fn err(s: impl Into<String>) -> SynthesisError {
    SynthesisError(s.into())
}

const METHODS: [&str; 6] = ["get", "put", "post", "delete", "patch", "head"];

/// The driver name an operation id makes: words split at `_`, `-`, spaces and lower to
/// upper case changes (`qora_search`, `QoraSearch` and `qoraSearch` all make
/// `qora-search`), lowercase, joined with `-`.
pub fn driver_name(operation_id: &str) -> Result<String, SynthesisError> {
    let name = words(operation_id).join("-");
    if name.len() > 63 || !axon_protocols::intent::is_name(&name) {
        return Err(err(format!(
            "the operation id {operation_id:?} makes no driver name (a lowercase letter, then lowercase letters, digits or '-', at most 63): got {name:?}"
        )));
    }
    Ok(name)
}

/// The type name an operation id makes, the title of the driver's argument schema: its
/// words capitalized and joined (`qora_search`, `qoraSearch`: `QoraSearch`).
pub fn type_name(operation_id: &str) -> String {
    words(operation_id)
        .iter()
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The words of an operation id, lowercase: split at `_`, `-`, spaces and lower to upper
/// case changes.
fn words(operation_id: &str) -> Vec<String> {
    let mut words: Vec<String> = vec![];
    let mut word = String::new();
    let mut prev_lower = false;
    for c in operation_id.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// How deep a resolved schema may nest.
const MAX_NESTING: usize = 64;

/// `v` with every `{"$ref": "#/..."}` replaced by what it points at in `doc`: at most
/// [`MAX_REF_DEPTH`] references deep, [`MAX_NESTING`] levels and [`MAX_SCHEMA_VALUES`]
/// values in all (`count`).
fn resolve(doc: &Value, v: &Value, count: &mut usize) -> Result<Value, SynthesisError> {
    resolve_at(doc, v, 0, 0, count)
}

fn resolve_at(
    doc: &Value,
    v: &Value,
    refs: usize,
    nesting: usize,
    count: &mut usize,
) -> Result<Value, SynthesisError> {
    *count += 1;
    if *count > MAX_SCHEMA_VALUES {
        return Err(err(format!(
            "the operation's schemas hold more than {MAX_SCHEMA_VALUES} values once their $refs are resolved"
        )));
    }
    if refs > MAX_REF_DEPTH {
        return Err(err(format!(
            "$refs nest deeper than {MAX_REF_DEPTH} (a schema that refers to itself cannot be carried into a manifest)"
        )));
    }
    if nesting > MAX_NESTING {
        return Err(err(format!(
            "the operation's schemas nest deeper than {MAX_NESTING} levels once their $refs are resolved"
        )));
    }
    match v {
        Value::Object(o) => {
            if let Some(r) = o.get("$ref") {
                let r = r.as_str().ok_or_else(|| err("a $ref that is not text"))?;
                let pointer = r
                    .strip_prefix('#')
                    .ok_or_else(|| err(format!("the $ref {r:?} points outside the document")))?;
                let target = doc
                    .pointer(pointer)
                    .ok_or_else(|| err(format!("the $ref {r:?} points at nothing")))?;
                return resolve_at(doc, target, refs + 1, nesting, count);
            }
            let mut out = Map::new();
            for (k, v) in o {
                out.insert(k.clone(), resolve_at(doc, v, refs, nesting + 1, count)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => Ok(Value::Array(
            a.iter()
                .map(|v| resolve_at(doc, v, refs, nesting + 1, count))
                .collect::<Result<_, _>>()?,
        )),
        other => Ok(other.clone()),
    }
}

/// The operation `operation_id` of `doc`: its path, method, own object and the
/// parameters of its path item.
fn find<'a>(
    doc: &'a Value,
    operation_id: &str,
) -> Result<(&'a str, &'static str, &'a Value, &'a Value), SynthesisError> {
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or_else(|| err("the document has no paths"))?;
    let mut ids = vec![];
    for (path, item) in paths {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                match op.get("operationId").and_then(Value::as_str) {
                    Some(id) if id == operation_id => {
                        return Ok((path, m, op, item.get("parameters").unwrap_or(&Value::Null)))
                    }
                    Some(id) => ids.push(id.to_owned()),
                    None => {}
                }
            }
        }
    }
    ids.sort();
    ids.truncate(20);
    Err(err(format!(
        "no operation has the id {operation_id:?}; the document's are: {}",
        ids.join(", ")
    )))
}

/// Grows the manifest of an `http` driver for `operation_id` of the OpenAPI 3 document
/// `doc`, calling `base_url` (the document's first server where it is `None`), held to
/// `obligations`' precondition and postcondition (its argument schema is the
/// operation's), with `samples` for its red-team suite.
pub fn synthesize(
    doc: &Value,
    operation_id: &str,
    base_url: Option<&str>,
    obligations: &ObligationsSpec,
    samples: &[crate::manifest::Sample],
) -> Result<Synthesis, SynthesisError> {
    let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("");
    if !version.starts_with("3.") {
        return Err(err(format!(
            "not an OpenAPI 3 document (its openapi member is {version:?})"
        )));
    }
    if operation_id.chars().count() > MAX_OPERATION_ID_CHARS {
        return Err(err(format!(
            "the operation id is {} characters, more than {MAX_OPERATION_ID_CHARS}",
            operation_id.chars().count()
        )));
    }
    let base_url = match base_url {
        Some(b) => b,
        None => doc
            .pointer("/servers/0/url")
            .and_then(Value::as_str)
            .ok_or_else(|| err("the document names no server: give the base URL"))?,
    };
    if !(base_url.starts_with("http://") || base_url.starts_with("https://"))
        || base_url.contains('{')
    {
        return Err(err(format!(
            "the base URL must be http:// or https:// with no {{...}} in it (got {base_url:?})"
        )));
    }
    let name = driver_name(operation_id)?;
    let (path, method, op, path_params) = find(doc, operation_id)?;
    let mut count = 0;
    let mut left_out = vec![];
    // The operation's parameters override its path item's of the same name and place.
    let mut params: Vec<Value> = vec![];
    for p in path_params.as_array().into_iter().flatten().chain(
        op.get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten(),
    ) {
        let p = resolve(doc, p, &mut count)?;
        let key = (p.get("name").cloned(), p.get("in").cloned());
        params.retain(|q| (q.get("name").cloned(), q.get("in").cloned()) != key);
        params.push(p);
    }
    let mut properties = Map::new();
    let mut required = vec![];
    let mut query = vec![];
    for p in &params {
        let pname = p
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| err("a parameter without a name"))?;
        let place = p.get("in").and_then(Value::as_str).unwrap_or("");
        let is_required = place == "path" || p.get("required") == Some(&json!(true));
        // A URL template takes text: a parameter of arrays or objects cannot be sent.
        let scalar = !matches!(
            p.pointer("/schema/type").and_then(Value::as_str),
            Some("array" | "object")
        );
        match (place, is_required, scalar) {
            ("path" | "query", true, false) => {
                return Err(err(format!(
                    "the required {place} parameter {pname:?} is not a string, number or boolean, which a URL template cannot send"
                )))
            }
            ("path" | "query", false, false) => {
                left_out.push(format!(
                    "the {place} parameter {pname:?}, which is not a string, number or boolean"
                ));
                continue;
            }
            ("path", _, _) => {}
            ("query", true, _) => query.push(pname.to_owned()),
            ("query", false, _) => {
                left_out.push(format!(
                    "the optional query parameter {pname:?}: a URL template sends every name it holds"
                ));
                continue;
            }
            (other, true, _) => {
                return Err(err(format!(
                    "the required {other} parameter {pname:?} cannot be sent by a synthesized driver"
                )))
            }
            (other, false, _) => {
                left_out.push(format!("the optional {other} parameter {pname:?}"));
                continue;
            }
        }
        // Only what is carried must make an argument name.
        if pname.is_empty()
            || pname == "body"
            || pname.starts_with("output.")
            || !pname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(err(format!(
                "the parameter {pname:?} cannot be an argument name (letters, digits, '_', '-', '.'; not \"body\", not starting \"output.\")"
            )));
        }
        if properties.contains_key(pname) {
            return Err(err(format!(
                "two parameters are named {pname:?} (in the path and the query, say): one argument cannot be both"
            )));
        }
        properties.insert(
            pname.to_owned(),
            p.get("schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "string"})),
        );
        required.push(json!(pname));
    }
    // Every {name} of the path must be a path parameter.
    let names = crate::http::template_names(path)
        .map_err(|_| err(format!("the path {path:?} has a `{{` without its `}}`")))?;
    if let Some(missing) = names.iter().find(|n| !properties.contains_key(**n)) {
        return Err(err(format!(
            "the path {path:?} names {missing:?}, which no path parameter describes"
        )));
    }
    let mut body = json!("none");
    if let Some(rb) = op.get("requestBody") {
        let rb = resolve(doc, rb, &mut count)?;
        let rb_required = rb.get("required") == Some(&json!(true));
        match rb.pointer("/content/application~1json/schema") {
            Some(schema) => {
                properties.insert("body".into(), schema.clone());
                if rb_required {
                    required.push(json!("body"));
                }
                body = json!({ "member": "body" });
            }
            None if rb_required => {
                return Err(err(
                    "the operation requires a request body that is not application/json",
                ))
            }
            None => {
                left_out.push("the optional request body, which is not application/json".into())
            }
        }
    }
    let mut url = format!("{}{path}", base_url.trim_end_matches('/'));
    if !query.is_empty() {
        let q: Vec<String> = query.iter().map(|n| format!("{n}={{{n}}}")).collect();
        url.push('?');
        url.push_str(&q.join("&"));
    }
    let upper = method.to_ascii_uppercase();
    let method_enum: crate::http::Method =
        serde_json::from_value(json!(upper)).map_err(|e| err(e.to_string()))?;
    let reads = matches!(method, "get" | "head");
    let request = json!({ "method": upper, "url": url, "body": body });
    let mut http = json!({ "timeout_ms": 5000, "request": request });
    if reads {
        http["dry_run"] = request.clone();
    }
    let mut obligation = Map::new();
    obligation.insert(
        "args".into(),
        json!({
            "title": type_name(operation_id),
            "type": "object",
            "additionalProperties": false,
            "required": required,
            "properties": properties,
        }),
    );
    for (key, v) in [
        ("precondition", &obligations.precondition),
        ("postcondition", &obligations.postcondition),
    ] {
        if let Some(v) = v {
            obligation.insert(key.into(), v.clone());
        }
    }
    let manifest = json!({
        "name": name,
        "version": doc.pointer("/info/version").and_then(Value::as_str).filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic())).unwrap_or("1.0.0"),
        "kind": "http",
        "capability": format!("urn:axon:cap:probecraft.{name}"),
        "effect": if reads { "read" } else { "write" },
        "risk": "medium",
        "max_blast_radius": 1,
        "idempotent": method_enum.is_idempotent(),
        "lane": "testing",
        "cost": { "expected_ms": 100, "units": 1.0 },
        "limits": {
            "deadline_ms": 10000,
            "concurrency": 1,
            "rate_per_second": 10,
            "max_payload_bytes": 65536,
            "mailbox_capacity": 16,
        },
        "slo": { "p99_ms": 5000, "max_error_rate": 0.05 },
        "obligations": Value::Object(obligation),
        "http": http,
    });
    let mut manifest = manifest;
    if !samples.is_empty() {
        manifest["redteam"] = json!({ "samples": samples });
    }
    let toml = toml::to_string(&manifest).map_err(|e| {
        err(format!(
            "the manifest cannot be written as TOML ({e}): a schema holding null, say"
        ))
    })?;
    let checked = Manifest::parse(&toml, Path::new(&format!("{name}.toml")))
        .map_err(|e| err(format!("the grown manifest does not check: {e}")))?;
    Ok(Synthesis {
        toml,
        manifest: checked,
        left_out,
    })
}

/// Reads an OpenAPI document (JSON) of at most [`MAX_DOCUMENT_BYTES`].
pub fn read_document(bytes: &[u8]) -> Result<Value, SynthesisError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(err(format!(
            "the OpenAPI document is {} bytes, more than the limit of {MAX_DOCUMENT_BYTES}",
            bytes.len()
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        err(format!(
            "the OpenAPI document is not JSON ({e}); YAML documents are not read: convert them to JSON first"
        ))
    })
}
