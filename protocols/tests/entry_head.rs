//! The one-pass check of an entry's canonical bytes (`EntryHead::read_canonical`, used by
//! start-up and the audit) accepts nothing that parsing and encoding again would refuse,
//! reads the same head, and decides the common entries itself.

use axon_protocols::journal::{Entry, EntryHead, KINDS};
use quickcheck::{Arbitrary, Gen, QuickCheck};
use serde_json::{json, Map, Value};

const TEXTS: &[&str] = &[
    "",
    "a",
    "b",
    "A",
    "z",
    "é",
    "\u{e000}",
    "\u{ffff}",
    "\u{10000}",
    "😀",
    "\"",
    "\\",
    "\n",
    "\t",
    "\u{1}",
    "\u{1f}",
    "\u{7f}",
    "/",
    "deploy 4.2",
    "action_id",
    "0123456789abcdef0123456789abcdef",
    "a\u{8}b",
];

fn text(g: &mut Gen) -> String {
    let n = usize::arbitrary(g) % 3;
    (0..n).map(|_| *g.choose(TEXTS).unwrap()).collect()
}

fn value(g: &mut Gen, depth: usize) -> Value {
    let pick = if depth > 3 {
        u8::arbitrary(g) % 5
    } else {
        u8::arbitrary(g) % 7
    };
    match pick {
        0 => Value::Null,
        1 => Value::Bool(bool::arbitrary(g)),
        2 => json!(*g
            .choose(&[
                0i64,
                1,
                -1,
                42,
                9_007_199_254_740_991,
                -9_007_199_254_740_991
            ])
            .unwrap()),
        3 => json!(*g
            .choose(&[0.5f64, -1.25, 1e21, 1e-7, 333.3333333333333, 100.0])
            .unwrap()),
        4 => Value::String(text(g)),
        5 => Value::Array(
            (0..usize::arbitrary(g) % 4)
                .map(|_| value(g, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..usize::arbitrary(g) % 5 {
                m.insert(text(g), value(g, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// Half the object bodies get an `action_id` member: an action id, or something that
/// only looks close to one.
fn with_action(g: &mut Gen, body: Value) -> Value {
    const ID: &str = "0123456789abcdef0123456789abcdef";
    let Value::Object(mut m) = body else {
        return body;
    };
    if bool::arbitrary(g) {
        let v = match u8::arbitrary(g) % 5 {
            0 | 1 => json!(ID),
            2 => json!(ID.to_uppercase()),
            3 => json!(&ID[1..]),
            _ => value(g, 1),
        };
        m.insert("action_id".into(), v);
    }
    Value::Object(m)
}

#[derive(Clone, Debug)]
struct Case {
    entry: Entry,
    /// A change to the canonical bytes: (position, what).
    mutation: (usize, u8, u8),
}

impl Arbitrary for Case {
    fn arbitrary(g: &mut Gen) -> Self {
        Case {
            entry: Entry {
                shard: *g.choose(&[0u32, 1, u32::MAX]).unwrap(),
                index: *g.choose(&[0u64, 7, 1 << 40, (1 << 53) - 1]).unwrap(),
                kind: *g.choose(&KINDS).unwrap(),
                time: if bool::arbitrary(g) {
                    "2026-11-25T10:00:00.000Z".into()
                } else {
                    text(g)
                },
                links: (0..usize::arbitrary(g) % 3)
                    .map(|_| {
                        if bool::arbitrary(g) {
                            "ab".repeat(32)
                        } else {
                            text(g)
                        }
                    })
                    .collect(),
                body: {
                    let body = value(g, 0);
                    with_action(g, body)
                },
            },
            mutation: (usize::arbitrary(g), u8::arbitrary(g), u8::arbitrary(g)),
        }
    }
}

fn head_of(e: &Entry) -> EntryHead {
    EntryHead {
        shard: e.shard,
        index: e.index,
        kind: e.kind,
        time: e.time.clone(),
        links: e.links.clone(),
        action: axon_protocols::journal::action_of(&e.body).map(str::to_owned),
    }
}

/// Whatever the one-pass check accepts, parsing accepts with the same head.
fn sound(bytes: &[u8]) -> bool {
    match EntryHead::read_canonical(bytes) {
        None => true,
        Some(head) => match Entry::from_bytes(bytes) {
            Ok(e) => head == head_of(&e),
            Err(err) => panic!(
                "accepted what parsing refuses ({err}): {}",
                String::from_utf8_lossy(bytes)
            ),
        },
    }
}

fn check(case: Case) -> bool {
    let Ok(bytes) = case.entry.to_bytes() else {
        return true;
    };
    // Canonical bytes: the same head either way.
    assert_eq!(EntryHead::from_bytes(&bytes).unwrap(), head_of(&case.entry));
    assert!(sound(&bytes));
    // Changed bytes: never accepted wrongly.
    let (at, what, byte) = case.mutation;
    let at = at % (bytes.len() + 1);
    let mut changed = bytes.clone();
    match what % 4 {
        0 if at < changed.len() => changed[at] ^= 1 << (byte % 8),
        1 => changed.insert(at, byte),
        2 if at < changed.len() => {
            changed.remove(at);
        }
        _ => changed.insert(
            at,
            *[b' ', b'0', b'"', b'\\', b'-', b'.']
                .get(byte as usize % 6)
                .unwrap(),
        ),
    }
    sound(&changed)
}

#[test]
fn the_one_pass_check_agrees_with_parsing() {
    QuickCheck::new()
        .tests(3000)
        .quickcheck(check as fn(Case) -> bool);
}

#[test]
fn hand_picked_bytes_are_judged_as_parsing_judges_them() {
    let base = |body: &str| {
        format!(r#"{{"body":{body},"index":3,"kind":"note","links":[],"shard":0,"time":"t"}}"#)
    };
    for body in [
        r#"{"a":1,"b":2}"#,
        r#"{"b":1,"a":2}"#,
        r#"{"a":1,"a":2}"#,
        r#"{"\ue000":1,"😀":2}"#,
        r#"{"😀":1,"":2}"#,
        "1.0",
        "-0",
        "01",
        "9007199254740992",
        "20000000000000000000",
        "1e+30",
        r#""\u001f""#,
        r#""\u001F""#,
        r#""\u0041""#,
        r#""\n""#,
        r#""\u000a""#,
        r#""\/""#,
        "[1 ,2]",
        "[1,2]",
        "\"\u{1}\"",
        "tru",
        "nul",
    ] {
        let bytes = base(body);
        assert!(sound(bytes.as_bytes()), "{body}");
        assert_eq!(
            EntryHead::from_bytes(bytes.as_bytes()).is_ok(),
            Entry::from_bytes(bytes.as_bytes()).is_ok(),
            "{body}"
        );
    }
    // A common entry is decided in one pass.
    let note = base(r#"{"action_id":"00ff","text":"deploy 4.2 started é"}"#);
    let head = EntryHead::read_canonical(note.as_bytes()).unwrap();
    assert_eq!(head.action, None, "00ff is no action id");
    // An action's entry names its action, in one pass too.
    let id = "0123456789abcdef0123456789abcdef";
    let result = base(&format!(
        r#"{{"a":[1,{{"action_id":"x"}}],"action_id":"{id}","z":1}}"#
    ));
    let head = EntryHead::read_canonical(result.as_bytes()).unwrap();
    assert_eq!(head.action.as_deref(), Some(id));
}
