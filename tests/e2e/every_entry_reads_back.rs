//! Every acknowledged entry reads back. For each route the table marks as journaling the
//! caller's data, bodies are generated from the request schema the route declares (valid
//! ones, and hostile ones: edge numbers, nesting at and past the route's limit, odd
//! Unicode, shapes the schema refuses), so a route added later is covered without
//! touching this test. Each acknowledged entry must read back holding what was sent,
//! parse as an entry, survive a stop, `axon audit` and a start, and read back the same
//! bytes again; each refusal must be a 4xx problem document, and nothing refused may be
//! appended.

use crate::common::{audit, sigterm_and_wait, spawn_axon};
use axon::api::Route;
use axon_harness::check_problem;
use axon_protocols::canonical::{self, MAX_DEPTH};
use axon_protocols::journal::Entry;
use base64::Engine;
use reqwest::blocking::Client;
use serde_json::Value;
use std::collections::BTreeMap;

/// Valid bodies sent to each route; at least [`MIN_ACKNOWLEDGED`] must be acknowledged.
const VALID_BODIES: usize = 110;
const MIN_ACKNOWLEDGED: usize = 100;

/// splitmix64: a small seeded generator, so every run sends the same bodies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Numbers at the edges of what a double holds, written as a client might: each one the
/// canonical rule accepts.
const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-0.0",
    "5e-324",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "9007199254740992",
    "9007199254740994",
    "1e16",
    "9223372036854775808",
    "0.1",
    "-1",
];

/// Pieces of strings, as JSON text: plain letters and the odd corners of Unicode
/// (surrogate-pair escapes, U+2028, U+FFFD, NUL, combining marks, right-to-left marks,
/// private use).
const STRING_PIECES: &[&str] = &[
    "a",
    "Z",
    "7",
    " ",
    "\\ud83d\\ude02",
    "\u{1F600}",
    "\u{2028}",
    "\\u2029",
    "\u{FFFD}",
    "\\u0000",
    "e\u{0301}",
    "\u{0308}\u{0323}",
    "\u{200F}",
    "\u{202E}abc\u{202C}",
    "\u{E000}",
    "\\uf8ff",
    "\\\"",
    "\\\\",
    "\\n",
    "\u{10FFFF}",
];

/// What the node must answer to a body.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Acknowledged (2xx).
    Ack,
    /// Refused with this status.
    Refused(u16),
}

/// One change a hostile body makes at the first place of the schema that takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Hostile {
    /// Every edge number, in an array where any value goes.
    EdgeNumbers,
    /// Arrays nested exactly as deep as the route allows, where any value goes.
    DeepestAllowed,
    /// One level deeper than that.
    TooDeep,
    /// An integer no double holds.
    NoDouble,
    /// A number beyond the doubles.
    TooBig,
    /// A member name twice in one object.
    DuplicateMember,
    /// A lone surrogate escape in a string (not JSON text: 400).
    LoneSurrogate,
    /// A number where the schema wants a string.
    WrongType,
    /// An empty string where the schema wants at least one character.
    TooShort,
    /// A member the schema does not allow.
    ExtraMember,
    /// A required member left out.
    MissingMember,
}

impl Hostile {
    const ALL: [Hostile; 11] = [
        Hostile::EdgeNumbers,
        Hostile::DeepestAllowed,
        Hostile::TooDeep,
        Hostile::NoDouble,
        Hostile::TooBig,
        Hostile::DuplicateMember,
        Hostile::LoneSurrogate,
        Hostile::WrongType,
        Hostile::TooShort,
        Hostile::ExtraMember,
        Hostile::MissingMember,
    ];

    fn expect(self) -> Expect {
        match self {
            Hostile::EdgeNumbers | Hostile::DeepestAllowed => Expect::Ack,
            Hostile::TooDeep | Hostile::NoDouble | Hostile::TooBig | Hostile::DuplicateMember => {
                Expect::Refused(422)
            }
            Hostile::LoneSurrogate
            | Hostile::WrongType
            | Hostile::TooShort
            | Hostile::ExtraMember
            | Hostile::MissingMember => Expect::Refused(400),
        }
    }
}

/// Writes JSON text for a JSON Schema, in the subset the route table uses: `{}` (any
/// value), `object` with `properties`, `required` and `additionalProperties: false`,
/// `string` with `minLength` or an id `pattern`, `array` with `items`.
struct Generator<'a> {
    rng: &'a mut Rng,
    /// Ids of entries acknowledged so far: the only values an id pattern may take.
    ids: &'a [String],
    /// The most arrays and objects the body may nest.
    max_depth: usize,
    /// The change still to make, if any.
    hostile: Option<Hostile>,
}

const ID_PATTERN: &str = "^[0-9a-f]{64}$";

impl Generator<'_> {
    /// JSON text for `schema`, at `depth` arrays and objects into the body.
    fn value(&mut self, schema: &Value, depth: usize) -> String {
        let obj = schema.as_object().expect("a schema is an object");
        for key in obj.keys() {
            assert!(
                [
                    "type",
                    "properties",
                    "required",
                    "additionalProperties",
                    "minLength",
                    "maxLength",
                    "minimum",
                    "items",
                    "pattern",
                    "description"
                ]
                .contains(&key.as_str()),
                "the schema keyword {key:?} is new to this generator: teach it"
            );
        }
        match obj.get("type").and_then(Value::as_str) {
            None => self.any(depth),
            Some("object") => self.object(obj, depth),
            Some("array") => self.array(obj, depth),
            Some("string") => self.string(obj),
            Some("integer") => {
                let min = obj.get("minimum").and_then(Value::as_u64).unwrap_or(0);
                format!("{}", min + self.rng.next() % 100_000)
            }
            Some("boolean") => self.rng.pick(&["true", "false"]).to_string(),
            Some(other) => panic!("the schema type {other:?} is new to this generator: teach it"),
        }
    }

    fn take(&mut self, applies: impl Fn(Hostile) -> bool) -> Option<Hostile> {
        match self.hostile {
            Some(h) if applies(h) => self.hostile.take(),
            _ => None,
        }
    }

    /// Any value: where the edge cases of numbers and nesting go.
    fn any(&mut self, depth: usize) -> String {
        let room = self.max_depth - depth;
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        match self.take(|h| {
            matches!(
                h,
                Hostile::EdgeNumbers
                    | Hostile::DeepestAllowed
                    | Hostile::TooDeep
                    | Hostile::NoDouble
                    | Hostile::TooBig
                    | Hostile::DuplicateMember
            )
        }) {
            Some(Hostile::EdgeNumbers) => return format!("[{}]", EDGE_NUMBERS.join(",")),
            Some(Hostile::DeepestAllowed) => return nested(room),
            Some(Hostile::TooDeep) => return nested(room + 1),
            Some(Hostile::NoDouble) => return "[1, 9007199254740993]".into(),
            Some(Hostile::TooBig) => return "{\"x\": 1e400}".into(),
            Some(Hostile::DuplicateMember) => return "{\"k\": 1, \"k\": 2}".into(),
            _ => {}
        }
        if matches!(self.hostile, Some(Hostile::LoneSurrogate)) {
            return self.text();
        }
        // Leave room for what a hostile change may still need below.
        let branch = room > 1 && depth < 4;
        match self.rng.below(if branch { 8 } else { 6 }) {
            0 => "null".into(),
            1 => self.rng.pick(&["true", "false"]).to_string(),
            2 => self.rng.pick(EDGE_NUMBERS).to_string(),
            3 => format!("{}", self.rng.next() % 2_000_000),
            4 => format!("{}.{}", self.rng.below(1000), self.rng.below(1000) + 1),
            5 => self.text(),
            6 => {
                let items: Vec<String> = (0..self.rng.below(4))
                    .map(|_| self.any(depth + 1))
                    .collect();
                format!("[{}]", items.join(","))
            }
            _ => {
                let members: Vec<String> = (0..self.rng.below(4))
                    .map(|i| {
                        format!(
                            "{}:{}",
                            quoted(&format!("m{i}{}", self.text_inner())),
                            self.any(depth + 1)
                        )
                    })
                    .collect();
                format!("{{{}}}", members.join(","))
            }
        }
    }

    /// The inside of a string: starts with a letter (so it is never only white space),
    /// then pieces from [`STRING_PIECES`].
    fn text_inner(&mut self) -> String {
        let mut s = String::from(*self.rng.pick(&["a", "q", "Z", "x"]));
        for _ in 0..self.rng.below(6) {
            s.push_str(self.rng.pick::<&str>(STRING_PIECES));
        }
        s
    }

    fn text(&mut self) -> String {
        if self.take(|h| matches!(h, Hostile::LoneSurrogate)).is_some() {
            return "\"a\\ud800b\"".into();
        }
        format!("\"{}\"", self.text_inner())
    }

    fn string(&mut self, schema: &serde_json::Map<String, Value>) -> String {
        let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
        match self.take(|h| {
            matches!(h, Hostile::WrongType) || (matches!(h, Hostile::TooShort) && min > 0)
        }) {
            Some(Hostile::WrongType) => return "12345".into(),
            Some(Hostile::TooShort) => return "\"\"".into(),
            _ => {}
        }
        match schema.get("pattern").and_then(Value::as_str) {
            None => self.text(),
            Some(ID_PATTERN) => {
                let id = self.rng.pick(self.ids).clone();
                format!("\"{id}\"")
            }
            // A capability no driver serves: the action is blocked, and recorded.
            Some(axon::routes::CAPABILITY_PATTERN) => {
                format!(
                    "\"urn:axon:cap:generated.c{:x}\"",
                    self.rng.next() % 1_000_000
                )
            }
            // Unique, so that no two bodies are one intent (a repeat or a conflict).
            Some(axon::routes::INTENT_ID_PATTERN) => {
                format!("\"id:{:016x}/{}~!\"", self.rng.next(), self.rng.below(1000))
            }
            Some(axon::routes::CORRELATION_PATTERN) => {
                format!("\"c.{:x}\"", self.rng.next())
            }
            Some(other) => panic!("the string pattern {other:?} is new to this generator"),
        }
    }

    fn array(&mut self, schema: &serde_json::Map<String, Value>, depth: usize) -> String {
        let items = schema.get("items").expect("an array schema has items");
        // Ids can only name entries that exist: no ids yet, no items.
        let n = if items.get("pattern").and_then(Value::as_str) == Some(ID_PATTERN)
            && self.ids.is_empty()
        {
            0
        } else {
            self.rng.below(4)
        };
        let values: Vec<String> = (0..n).map(|_| self.value(items, depth + 1)).collect();
        format!("[{}]", values.join(","))
    }

    fn object(&mut self, schema: &serde_json::Map<String, Value>, depth: usize) -> String {
        let empty = serde_json::Map::new();
        let props = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
        let missing = self
            .take(|h| matches!(h, Hostile::MissingMember) && !required.is_empty())
            .map(|_| required[0]);
        let mut members = vec![];
        for (name, sub) in props {
            let needed = required.contains(&name.as_str());
            if Some(name.as_str()) == missing || (!needed && self.rng.below(2) == 0) {
                continue;
            }
            members.push(format!("{}:{}", quoted(name), self.value(sub, depth + 1)));
        }
        if self
            .take(|h| matches!(h, Hostile::ExtraMember) && closed)
            .is_some()
        {
            members.push(format!(
                "\"not_in_the_schema\":[{}]",
                EDGE_NUMBERS.join(",")
            ));
        }
        format!("{{{}}}", members.join(","))
    }
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// True when `sent` is held in the stored entry: as a whole value somewhere in it, or, for
/// an object, member by member (each member in some object of the entry, as the journal
/// keeps `links` beside the body).
fn holds(entry: &Value, sent: &Value) -> bool {
    fn same(a: &Value, b: &Value) -> bool {
        canonical::to_vec(a).unwrap() == canonical::to_vec(b).unwrap()
    }
    fn somewhere(v: &Value, f: &dyn Fn(&Value) -> bool) -> bool {
        f(v) || match v {
            Value::Array(items) => items.iter().any(|i| somewhere(i, f)),
            Value::Object(m) => m.values().any(|i| somewhere(i, f)),
            _ => false,
        }
    }
    somewhere(entry, &|v| same(v, sent))
        || sent.as_object().is_some_and(|members| {
            members
                .iter()
                .all(|(k, want)| somewhere(entry, &|v| v.get(k).is_some_and(|got| same(got, want))))
        })
}

/// An acknowledged entry: what was sent and, once read, its bytes.
struct Acked {
    route: &'static str,
    index: u64,
    sent: String,
}

/// The entry at `index`: its bytes, checked to be an entry holding `sent`.
fn read_entry(c: &Client, base: &str, a: &Acked) -> Vec<u8> {
    let res = c
        .get(format!("{base}/v1/journal/entries/{}", a.index))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200, "entry {} of {}", a.index, a.route);
    let v: Value = res.json().unwrap();
    assert_eq!(v["index"], a.index);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["bytes_b64"].as_str().unwrap())
        .unwrap();
    let entry = Entry::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("entry {} of {} does not parse: {e}", a.index, a.route));
    assert_eq!(entry.index, a.index);
    let stored = canonical::parse(&bytes, MAX_DEPTH).unwrap();
    let sent = canonical::parse(a.sent.as_bytes(), MAX_DEPTH).unwrap();
    assert!(
        holds(&stored, &sent),
        "entry {} of {} does not hold what was sent:\nsent {:.300}\nstored {:.300}",
        a.index,
        a.route,
        a.sent,
        String::from_utf8_lossy(&bytes)
    );
    bytes
}

/// How many entries the journal holds, paging through all of them.
fn journal_size(c: &Client, base: &str) -> usize {
    let mut total = 0;
    let mut after: Option<u64> = None;
    loop {
        let url = match after {
            None => format!("{base}/v1/journal/entries"),
            Some(a) => format!("{base}/v1/journal/entries?after={a}"),
        };
        let v: Value = c.get(url).send().unwrap().json().unwrap();
        total += v["entries"].as_array().unwrap().len();
        match v["next_after"].as_u64() {
            Some(a) => after = Some(a),
            None => return total,
        }
    }
}

/// Sends `body`; checks the answer against `expect` and the problem-document rules.
/// Answers the entry's index and id when it was acknowledged.
fn send(
    c: &Client,
    base: &str,
    token: &str,
    route: &Route,
    body: &str,
    expect: Expect,
) -> Option<(u64, Option<String>)> {
    let res = c
        .request(
            route.method.http().as_str().parse().unwrap(),
            format!("{base}{}", route.path),
        )
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let v: Value = res.json().unwrap();
    if (200..300).contains(&status) {
        assert_eq!(
            expect,
            Expect::Ack,
            "{} acknowledged a body it should refuse: {body:.200}",
            route.path
        );
        assert_eq!(status, route.ok_status, "{}", route.path);
        let index = v["index"]
            .as_u64()
            .expect("an acknowledgement names its index");
        return Some((index, v["id"].as_str().map(str::to_owned)));
    }
    assert!(
        (400..500).contains(&status),
        "{} answered {status} to {body:.200}: {v}",
        route.path
    );
    check_problem(status, &headers, &v);
    assert_eq!(
        expect,
        Expect::Refused(status),
        "{} answered {status} to {body:.200}: {v}",
        route.path
    );
    if status == 422 && v["type"] == "urn:axon:problem:not-canonical" {
        assert!(v["path"].is_string(), "not-canonical names no path: {v}");
    }
    None
}

#[test]
fn every_acknowledged_entry_reads_back_before_and_after_a_restart_and_an_audit() {
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_axon(dir.path(), &[], false);
    let c = axon_drivers::tls::client_builder().build().unwrap();
    // A route with a path parameter journals about something that must exist first (an
    // action in doubt, a driver): each has tests of its own.
    let journaling: Vec<&Route> = axon::routes::ROUTES
        .iter()
        .filter(|r| r.journals && r.path_params.is_empty())
        .collect();
    assert!(!journaling.is_empty(), "no route journals caller data");
    // What the node journals by itself at its first start (the first lane of each driver).
    let before = journal_size(&c, &node.base) as u64;

    let mut rng = Rng(0x0a50_2026);
    let mut ids: Vec<String> = vec![];
    let mut acked: Vec<Acked> = vec![];
    let mut per_route: BTreeMap<&str, usize> = BTreeMap::new();
    let mut sent_hostile = std::collections::BTreeSet::new();
    for route in &journaling {
        let request = route
            .request
            .as_ref()
            .unwrap_or_else(|| panic!("{} journals caller data but declares no body", route.path));
        let schema = (request.schema)();
        for i in 0..VALID_BODIES + Hostile::ALL.len() {
            let hostile = (i >= VALID_BODIES).then(|| Hostile::ALL[i - VALID_BODIES]);
            let mut g = Generator {
                rng: &mut rng,
                ids: &ids,
                max_depth: request.max_depth(),
                hostile,
            };
            let body = g.value(&schema, 0);
            let expect = match hostile {
                None => Expect::Ack,
                // The schema has no place for this change: nothing to send.
                Some(_) if g.hostile.is_some() => continue,
                Some(h) => {
                    sent_hostile.insert(h);
                    h.expect()
                }
            };
            // Ids acknowledged on the way are what the next bodies' links may name.
            if let Some((index, id)) = send(&c, &node.base, &node.token, route, &body, expect) {
                acked.push(Acked {
                    route: route.path,
                    index,
                    sent: body,
                });
                ids.extend(id);
                *per_route.entry(route.path).or_default() += 1;
            }
        }
    }
    // Each hostile change found a place in some route's schema.
    assert_eq!(
        sent_hostile.into_iter().collect::<Vec<_>>(),
        Hostile::ALL.to_vec()
    );
    for route in &journaling {
        let n = per_route.get(route.path).copied().unwrap_or(0);
        assert!(
            n >= MIN_ACKNOWLEDGED,
            "{} acknowledged {n} entries, fewer than {MIN_ACKNOWLEDGED}",
            route.path
        );
    }
    // Nothing refused was appended: the journal holds exactly the acknowledged entries.
    let mut indexes: Vec<u64> = acked.iter().map(|a| a.index).collect();
    indexes.sort_unstable();
    let total = before as usize + acked.len();
    assert_eq!(indexes, (before..total as u64).collect::<Vec<_>>());
    assert_eq!(journal_size(&c, &node.base), total);

    let first: Vec<Vec<u8>> = acked
        .iter()
        .map(|a| read_entry(&c, &node.base, a))
        .collect();
    let (code, stderr) = sigterm_and_wait(node);
    assert_eq!(code, 0, "{stderr}");

    let (code, out, err) = audit::<&str>(dir.path(), &[]);
    assert_eq!(code, 0, "audit failed:\n{out}{err}");
    assert!(
        out.contains(&format!("{total} entries")),
        "audit saw another journal:\n{out}"
    );

    let node = spawn_axon(dir.path(), &[], false);
    for (a, bytes) in acked.iter().zip(&first) {
        assert_eq!(
            &read_entry(&c, &node.base, a),
            bytes,
            "entry {} of {} changed across the restart",
            a.index,
            a.route
        );
    }
    assert_eq!(journal_size(&c, &node.base), total);
    let (code, stderr) = sigterm_and_wait(node);
    assert_eq!(code, 0, "{stderr}");
}
