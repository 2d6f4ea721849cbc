//! The one rule of canonical JSON, held against RFC 8785's published data in
//! `../shared/vectors/jcs/` (read from there, never copied) and against itself:
//!
//! - every `input/X.json` reads and canonicalizes to exactly the bytes of `output/X.json`;
//! - the ES6 number stream that `jcs/README.md` defines, serialized by Axon's number
//!   writer, hashes to the published SHA-256 for its first 1,000,000 values;
//! - for generated values (doubles over the whole range, subnormals, ±2^53, the largest
//!   finite double, `-0.0`, integers on both sides of exactness, nesting up to and past the
//!   limit, any Unicode): what the writer writes, the reader reads back to the same bytes,
//!   and what the writer refuses, the reader refuses too; and the direct writer (from a
//!   value's `Serialize`) writes exactly what the writer of a `serde_json::Value` writes.

use axon_protocols::canonical::{self, Reason, MAX_DEPTH};
use quickcheck::{Arbitrary, Gen, QuickCheck};
use serde_json::{Map, Number, Value};
use std::path::{Path, PathBuf};

fn jcs() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/jcs");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "\n*** SKIPPED: the RFC 8785 test data is not at {} ***\n",
            dir.display()
        );
        None
    }
}

#[test]
fn published_inputs_canonicalize_to_the_published_outputs() {
    let Some(dir) = jcs() else { return };
    let mut names: Vec<_> = std::fs::read_dir(dir.join("input"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        let input = std::fs::read(dir.join("input").join(&name)).unwrap();
        let want = std::fs::read(dir.join("output").join(&name)).unwrap();
        let value = canonical::parse(&input, MAX_DEPTH)
            .unwrap_or_else(|e| panic!("{name:?} does not read: {e}"));
        let got = canonical::to_vec(&value).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{name:?}"
        );
        // The canonical bytes are a fixed point of the reader.
        let again = canonical::read_canonical(&want).unwrap();
        assert_eq!(canonical::to_vec(&again).unwrap(), want, "{name:?}");
    }
}

/// The stream of doubles `jcs/README.md` defines: a static list, 2,000 values counting up
/// from the smallest normal double, then the doubles of a SHA-256 chain (skipping zeros
/// and non-finite values).
struct Es6Stream {
    index: usize,
    block: [u8; 32],
    pending: Vec<f64>,
}

const STATIC: [u64; 168] = [
    0x0000000000000000,
    0x8000000000000000,
    0x0000000000000001,
    0x8000000000000001,
    0xc46696695dbd1cc3,
    0xc43211ede4974a35,
    0xc3fce97ca0f21056,
    0xc3c7213080c1a6ac,
    0xc39280f39a348556,
    0xc35d9b1f5d20d557,
    0xc327af4c4a80aaac,
    0xc2f2f2a36ecd5556,
    0xc2be51057e155558,
    0xc28840d131aaaaac,
    0xc253670dc1555557,
    0xc21f0b4935555557,
    0xc1e8d5d42aaaaaac,
    0xc1b3de4355555556,
    0xc17fca0555555556,
    0xc1496e6aaaaaaaab,
    0xc114585555555555,
    0xc0e046aaaaaaaaab,
    0xc0aa0aaaaaaaaaaa,
    0xc074d55555555555,
    0xc040aaaaaaaaaaab,
    0xc00aaaaaaaaaaaab,
    0xbfd5555555555555,
    0xbfa1111111111111,
    0xbf6b4e81b4e81b4f,
    0xbf35d867c3ece2a5,
    0xbf0179ec9cbd821e,
    0xbecbf647612f3696,
    0xbe965e9f80f29212,
    0xbe61e54c672874db,
    0xbe2ca213d840baf8,
    0xbdf6e80fe033c8c6,
    0xbdc2533fe68fd3d2,
    0xbd8d51ffd74c861c,
    0xbd5774ccac3d3817,
    0xbd22c3d6f030f9ac,
    0xbcee0624b3818f79,
    0xbcb804ea293472c7,
    0xbc833721ba905bd3,
    0xbc4ebe9c5db3c61e,
    0xbc18987d17c304e5,
    0xbbe3ad30dfcf371d,
    0xbbaf7b816618582f,
    0xbb792f9ab81379bf,
    0xbb442615600f9499,
    0xbb101e77800c76e1,
    0xbad9ca58cce0be35,
    0xbaa4a1e0a3e6fe90,
    0xba708180831f320d,
    0xba3a68cd9e985016,
    0x446696695dbd1cc3,
    0x443211ede4974a35,
    0x43fce97ca0f21056,
    0x43c7213080c1a6ac,
    0x439280f39a348556,
    0x435d9b1f5d20d557,
    0x4327af4c4a80aaac,
    0x42f2f2a36ecd5556,
    0x42be51057e155558,
    0x428840d131aaaaac,
    0x4253670dc1555557,
    0x421f0b4935555557,
    0x41e8d5d42aaaaaac,
    0x41b3de4355555556,
    0x417fca0555555556,
    0x41496e6aaaaaaaab,
    0x4114585555555555,
    0x40e046aaaaaaaaab,
    0x40aa0aaaaaaaaaaa,
    0x4074d55555555555,
    0x4040aaaaaaaaaaab,
    0x400aaaaaaaaaaaab,
    0x3fd5555555555555,
    0x3fa1111111111111,
    0x3f6b4e81b4e81b4f,
    0x3f35d867c3ece2a5,
    0x3f0179ec9cbd821e,
    0x3ecbf647612f3696,
    0x3e965e9f80f29212,
    0x3e61e54c672874db,
    0x3e2ca213d840baf8,
    0x3df6e80fe033c8c6,
    0x3dc2533fe68fd3d2,
    0x3d8d51ffd74c861c,
    0x3d5774ccac3d3817,
    0x3d22c3d6f030f9ac,
    0x3cee0624b3818f79,
    0x3cb804ea293472c7,
    0x3c833721ba905bd3,
    0x3c4ebe9c5db3c61e,
    0x3c18987d17c304e5,
    0x3be3ad30dfcf371d,
    0x3baf7b816618582f,
    0x3b792f9ab81379bf,
    0x3b442615600f9499,
    0x3b101e77800c76e1,
    0x3ad9ca58cce0be35,
    0x3aa4a1e0a3e6fe90,
    0x3a708180831f320d,
    0x3a3a68cd9e985016,
    0x4024000000000000,
    0x4014000000000000,
    0x3fe0000000000000,
    0x3fa999999999999a,
    0x3f747ae147ae147b,
    0x3f40624dd2f1a9fc,
    0x3f0a36e2eb1c432d,
    0x3ed4f8b588e368f1,
    0x3ea0c6f7a0b5ed8d,
    0x3e6ad7f29abcaf48,
    0x3e35798ee2308c3a,
    0x3ed539223589fa95,
    0x3ed4ff26cd5a7781,
    0x3ed4f95a762283ff,
    0x3ed4f8c60703520c,
    0x3ed4f8b72f19cd0d,
    0x3ed4f8b5b31c0c8d,
    0x3ed4f8b58d1c461a,
    0x3ed4f8b5894f7f0e,
    0x3ed4f8b588ee37f3,
    0x3ed4f8b588e47da4,
    0x3ed4f8b588e3849c,
    0x3ed4f8b588e36bb5,
    0x3ed4f8b588e36937,
    0x3ed4f8b588e368f8,
    0x3ed4f8b588e368f1,
    0x3ff0000000000000,
    0xbff0000000000000,
    0xbfeffffffffffffa,
    0xbfeffffffffffffb,
    0x3feffffffffffffa,
    0x3feffffffffffffb,
    0x3feffffffffffffc,
    0x3feffffffffffffe,
    0xbfefffffffffffff,
    0xbfefffffffffffff,
    0x3fefffffffffffff,
    0x3fefffffffffffff,
    0x3fd3333333333332,
    0x3fd3333333333333,
    0x3fd3333333333334,
    0x0010000000000000,
    0x000ffffffffffffd,
    0x000fffffffffffff,
    0x7fefffffffffffff,
    0xffefffffffffffff,
    0x4340000000000000,
    0xc340000000000000,
    0x4430000000000000,
    0x44b52d02c7e14af5,
    0x44b52d02c7e14af6,
    0x44b52d02c7e14af7,
    0x444b1ae4d6e2ef4e,
    0x444b1ae4d6e2ef4f,
    0x444b1ae4d6e2ef50,
    0x3eb0c6f7a0b5ed8c,
    0x3eb0c6f7a0b5ed8d,
    0x41b3de4355555553,
    0x41b3de4355555554,
    0x41b3de4355555555,
    0x41b3de4355555556,
    0x41b3de4355555557,
    0xbecbf647612f3696,
    0x43143ff3c1cb0959,
];

const SERIAL: usize = 2000;

impl Es6Stream {
    fn new() -> Self {
        Self {
            index: 0,
            block: [0; 32],
            pending: Vec::new(),
        }
    }
}

impl Iterator for Es6Stream {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        let i = self.index;
        self.index += 1;
        if i < STATIC.len() {
            return Some(f64::from_bits(STATIC[i]));
        }
        if i < STATIC.len() + SERIAL {
            return Some(f64::from_bits(
                0x0010_0000_0000_0000 + (i - STATIC.len()) as u64,
            ));
        }
        loop {
            if self.pending.is_empty() {
                let digest = ring::digest::digest(&ring::digest::SHA256, &self.block);
                self.block.copy_from_slice(digest.as_ref());
                self.pending = self
                    .block
                    .chunks(8)
                    .rev()
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
            }
            let f = self.pending.pop().expect("refilled");
            if f != 0.0 && f.is_finite() {
                return Some(f);
            }
        }
    }
}

#[test]
fn the_es6_number_stream_hashes_to_the_published_value() {
    let Some(dir) = jcs() else { return };
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    // The table row for 1,000,000 lines: `| <sha-256> | 1000000 | <bytes> |`.
    let want = readme
        .lines()
        .find_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() > 3 && cells[2] == "1000000").then(|| cells[1].to_owned())
        })
        .expect("the README's table has a row for 1000000 lines");
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut line = String::with_capacity(64);
    let mut bytes = 0usize;
    for f in Es6Stream::new().take(1_000_000) {
        line.clear();
        line.push_str(&format!("{:x},", f.to_bits()));
        line.push_str(&canonical::es_number(f));
        line.push('\n');
        bytes += line.len();
        ctx.update(line.as_bytes());
    }
    let got: String = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(bytes, 40_357_417, "the stream's size");
    assert_eq!(got, want);
}

/// A JSON value built to probe the rule's edges.
#[derive(Clone, Debug)]
struct Probe(Value);

fn edge_double(g: &mut Gen) -> f64 {
    let special = [
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        5e-324,
        -5e-324,
        f64::MAX,
        f64::MIN,
        9007199254740992.0,
        -9007199254740992.0,
        9007199254740994.0,
        1e16,
        1e21,
        1e-7,
        0.1,
    ];
    match u8::arbitrary(g) % 4 {
        0 => *g.choose(&special).unwrap(),
        // Any bit pattern: the whole range, subnormals included.
        1 | 2 => loop {
            let f = f64::from_bits(u64::arbitrary(g));
            if f.is_finite() {
                break f;
            }
        },
        _ => loop {
            let f = f64::arbitrary(g);
            if f.is_finite() {
                break f;
            }
        },
    }
}

fn edge_number(g: &mut Gen) -> Number {
    let near = |g: &mut Gen, at: u64| at.wrapping_add(u64::from(u8::arbitrary(g) % 8)) - 4;
    match u8::arbitrary(g) % 6 {
        0 => Number::from(near(g, 1 << 53)),
        1 => Number::from(-(near(g, 1 << 53) as i64)),
        2 => Number::from(u64::arbitrary(g)),
        3 => Number::from(i64::arbitrary(g)),
        _ => Number::from_f64(edge_double(g)).expect("finite"),
    }
}

fn edge_string(g: &mut Gen) -> String {
    let mut s = String::arbitrary(g);
    for _ in 0..usize::arbitrary(g) % 3 {
        s.push(
            *g.choose(&[
                '"', '\\', '/', '\u{0}', '\u{1f}', '\u{7f}', '\u{2028}', '\u{fffd}', '😂', '\n',
            ])
            .unwrap(),
        );
    }
    s
}

fn probe(g: &mut Gen, depth: usize) -> Value {
    let leaf = depth >= 4 || u8::arbitrary(g) % 3 == 0;
    if leaf {
        return match u8::arbitrary(g) % 5 {
            0 => Value::Null,
            1 => Value::Bool(bool::arbitrary(g)),
            2 => Value::String(edge_string(g)),
            _ => Value::Number(edge_number(g)),
        };
    }
    let n = usize::arbitrary(g) % 4;
    if bool::arbitrary(g) {
        Value::Array((0..n).map(|_| probe(g, depth + 1)).collect())
    } else {
        let mut m = Map::new();
        for _ in 0..n {
            m.insert(edge_string(g), probe(g, depth + 1));
        }
        Value::Object(m)
    }
}

impl Arbitrary for Probe {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut v = probe(g, 0);
        // Now and then, bury it near the depth limit: just inside, at it, or past it.
        if u8::arbitrary(g) % 3 == 0 {
            let levels = MAX_DEPTH - 6 + usize::arbitrary(g) % 10;
            for i in 0..levels {
                v = if i % 2 == 0 {
                    Value::Array(vec![v])
                } else {
                    Value::Object(Map::from_iter([("k".to_owned(), v)]))
                };
            }
        }
        Probe(v)
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn writer_and_reader_agree(p: Probe) -> bool {
    match canonical::to_vec(&p.0) {
        Ok(bytes) => {
            let back = canonical::read_canonical(&bytes)
                .unwrap_or_else(|e| panic!("written but not read back: {e}"));
            canonical::to_vec(&back).unwrap() == bytes && depth(&p.0) <= MAX_DEPTH
        }
        Err(e) => {
            // The writer refuses only by the rule, and then so does the reader: the text
            // serde would print for the value is refused too (or, for an integer that no
            // double holds, would be read as another number).
            let agreed = match &e.reason {
                Reason::TooDeep(_) => {
                    depth(&p.0) > MAX_DEPTH
                        && canonical::parse(p.0.to_string().as_bytes(), MAX_DEPTH).is_err()
                }
                Reason::InexactInteger(_) => {
                    canonical::parse(p.0.to_string().as_bytes(), MAX_DEPTH).is_err()
                }
                _ => false,
            };
            assert!(agreed, "refused for {e} by the writer only");
            agreed
        }
    }
}

#[test]
fn what_the_writer_writes_the_reader_reads_back() {
    QuickCheck::new()
        .tests(2000)
        .quickcheck(writer_and_reader_agree as fn(Probe) -> bool);
}

/// Text that is not JSON, or is hostile JSON, never panics the reader, and whatever it
/// accepts the writer can write.
fn reader_never_accepts_what_the_writer_cannot_write(bytes: Vec<u8>, seed: Probe) -> bool {
    let mut text = seed.0.to_string().into_bytes();
    // Damage a copy of valid text at a few places, and try the raw bytes too.
    for (i, b) in bytes.iter().enumerate().take(4) {
        if !text.is_empty() {
            let at = (usize::from(*b) * 31 + i * 7) % text.len();
            text[at] = *b;
        }
    }
    [text, bytes]
        .iter()
        .all(|t| match canonical::parse(t, MAX_DEPTH) {
            Ok(v) => canonical::to_vec(&v).is_ok(),
            Err(_) => true,
        })
}

#[test]
fn hostile_text_is_read_or_refused_never_half_accepted() {
    QuickCheck::new().tests(3000).quickcheck(
        reader_never_accepts_what_the_writer_cannot_write as fn(Vec<u8>, Probe) -> bool,
    );
}

/// The direct writer (from a value's `Serialize`) and the writer of a `serde_json::Value`
/// write the same bytes for every value, and refuse the same values for the same reason.
fn direct_writer_writes_what_the_value_writer_writes(p: Probe) -> bool {
    let mut direct = Vec::new();
    let got = canonical::write_serialize(&p.0, &mut direct, 0);
    match (canonical::to_vec(&p.0), got) {
        (Ok(bytes), Ok(())) => {
            assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&bytes)
            );
            true
        }
        (Err(want), Err(e)) => {
            let e = e.into_canonical();
            assert_eq!(
                std::mem::discriminant(&e.reason),
                std::mem::discriminant(&want.reason),
                "{e} where the value writer says {want}"
            );
            true
        }
        (want, got) => panic!("the value writer: {want:?}; the direct writer: {got:?}"),
    }
}

#[test]
fn the_direct_writer_agrees_with_the_value_writer() {
    QuickCheck::new()
        .tests(3000)
        .quickcheck(direct_writer_writes_what_the_value_writer_writes as fn(Probe) -> bool);
}

/// Every shape serde gives a Rust value (structs in any field order, each kind of enum
/// variant, options, tuples, maps, bytes, floats that are not finite) comes out of the
/// direct writer as the value writer writes `serde_json::to_value` of it.
#[test]
fn the_direct_writer_writes_every_serde_shape_as_the_value_writer_does() {
    use serde::Serialize;
    use std::collections::BTreeMap;
    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(Value),
        Tuple(u8, String, Option<i64>),
        Struct {
            zeta: f64,
            alpha: Vec<Shape>,
            mid: Option<Box<Shape>>,
        },
    }
    #[derive(Serialize)]
    struct Unit;
    #[derive(Serialize)]
    struct Wrapped(u32);
    #[derive(Serialize)]
    struct Record {
        z: &'static str,
        a: Shape,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        m: BTreeMap<String, Shape>,
        n: BTreeMap<u32, bool>,
        t: (i8, char, Unit, Wrapped),
        b: serde_bytes_like::Bytes,
        not_finite: [f64; 3],
        big: u128,
        #[serde(rename = "é")]
        accented: (),
        #[serde(rename = "😂")]
        astral: i16,
        #[serde(rename = "\u{ffff}")]
        last_bmp: i16,
    }
    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }
    let shape = Shape::Struct {
        zeta: 0.1,
        alpha: vec![
            Shape::Unit,
            Shape::Newtype(serde_json::json!({"y": [1, 2.5, null], "b": "\u{0}"})),
            Shape::Tuple(7, "x\"y".into(), None),
        ],
        mid: Some(Box::new(Shape::Tuple(0, String::new(), Some(-3)))),
    };
    let record = Record {
        z: "last",
        a: shape,
        skipped: None,
        m: BTreeMap::from([("b".to_owned(), Shape::Unit), ("a".to_owned(), Shape::Unit)]),
        n: BTreeMap::from([(10, true), (9, false)]),
        t: (-1, 'q', Unit, Wrapped(5)),
        b: serde_bytes_like::Bytes(vec![0, 255]),
        not_finite: [f64::NAN, f64::INFINITY, 1e300],
        big: 1 << 60,
        accented: (),
        astral: 1,
        last_bmp: 2,
    };
    let via_value = canonical::to_vec(&serde_json::to_value(&record).unwrap()).unwrap();
    let mut direct = Vec::new();
    canonical::write_serialize(&record, &mut direct, 0).unwrap();
    assert_eq!(
        String::from_utf8(direct).unwrap(),
        String::from_utf8(via_value).unwrap()
    );
    // An integer no double holds is refused by both, naming where it is.
    let refused = canonical::write_serialize(
        &serde_json::json!({"a": [1u64 << 60 | 1]}),
        &mut Vec::new(),
        0,
    )
    .unwrap_err()
    .into_canonical();
    assert_eq!(refused.path, "/a/0");
    assert!(matches!(refused.reason, Reason::InexactInteger(_)));
}

/// Bytes weighted to those the word-at-a-time scan of a string must stop at (and those
/// next to them), at any place in runs long enough to fill several words.
#[derive(Clone, Debug)]
struct EdgeBytes(Vec<u8>);

impl Arbitrary for EdgeBytes {
    fn arbitrary(g: &mut Gen) -> Self {
        let edges = [
            0x00, 0x1f, 0x20, 0x21, b'"', b'\\', 0x5b, 0x5d, 0x7e, 0x7f, 0x80, 0xbf, 0xc3, 0xe2,
            0xf0, 0xff, b'u', b'n', b'0',
        ];
        let n = usize::arbitrary(g) % 48;
        Self(
            (0..n)
                .map(|_| match u8::arbitrary(g) % 4 {
                    0 => *g.choose(&edges).unwrap(),
                    1 => u8::arbitrary(g),
                    _ => b'a' + u8::arbitrary(g) % 26,
                })
                .collect(),
        )
    }
}

/// The scan's run of plain bytes is exactly the one a byte-by-byte reading gives.
fn plain_run_is_read_byte_by_byte(b: EdgeBytes) -> bool {
    let by_byte =
        b.0.iter()
            .take_while(|&&c| (0x20..0x80).contains(&c) && c != b'"' && c != b'\\')
            .count();
    (0..b.0.len().min(9)).all(|from| {
        let by_byte_from = b.0[from..]
            .iter()
            .take_while(|&&c| (0x20..0x80).contains(&c) && c != b'"' && c != b'\\')
            .count();
        canonical::plain_len(&b.0[from..]) == by_byte_from
    }) && canonical::plain_len(&b.0) == by_byte
}

#[test]
fn the_word_at_a_time_scan_stops_where_a_byte_by_byte_one_does() {
    QuickCheck::new()
        .tests(5000)
        .quickcheck(plain_run_is_read_byte_by_byte as fn(EdgeBytes) -> bool);
}

/// A quoted run of hostile bytes that the one-pass string check accepts is a string the
/// full reader reads and the writer writes back to the same bytes; every string the
/// writer writes, the check accepts whole.
fn string_check_agrees_with_reader_and_writer(b: EdgeBytes) -> bool {
    let mut quoted = vec![b'"'];
    quoted.extend_from_slice(&b.0);
    quoted.push(b'"');
    let sound = match canonical::string_end(&quoted, 0) {
        None => true,
        Some((end, escaped)) => {
            let text = &quoted[..end];
            match canonical::parse(text, MAX_DEPTH) {
                Ok(Value::String(s)) => {
                    canonical::to_vec(&Value::String(s)).unwrap() == text
                        && escaped == text.contains(&b'\\')
                }
                _ => false,
            }
        }
    };
    let s = String::from_utf8_lossy(&b.0).into_owned();
    let written = canonical::to_vec(&Value::String(s.clone())).unwrap();
    let complete = canonical::string_end(&written, 0)
        == Some((
            written.len(),
            written[1..written.len() - 1].contains(&b'\\'),
        ))
        && canonical::parse(&written, MAX_DEPTH).unwrap() == Value::String(s);
    sound && complete
}

#[test]
fn the_string_check_accepts_exactly_what_the_reader_and_writer_agree_on() {
    QuickCheck::new()
        .tests(5000)
        .quickcheck(string_check_agrees_with_reader_and_writer as fn(EdgeBytes) -> bool);
}
