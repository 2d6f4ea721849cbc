//! Canonical JSON (RFC 8785, JCS): the one byte encoding of everything Axon hashes or
//! signs. Object members sorted by the UTF-16 code units of their names, no white space,
//! strings with only the required escapes, numbers as ECMAScript prints IEEE-754 doubles.

use serde_json::{Map, Number, Value};
use std::fmt;

mod direct;
pub use direct::{write_serialize, DirectError};

/// Why a value has no canonical form, and where: `path` is a JSON Pointer (RFC 6901) into
/// the value being written or read (`""` is the value itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalError {
    pub path: String,
    pub reason: Reason,
}

/// The rule a value breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// An integer literal whose value no IEEE-754 double holds exactly
    /// (`9007199254740993`): a reader in another language would see another number.
    #[error("the integer {0} is not exactly an IEEE-754 double")]
    InexactInteger(String),
    /// A number beyond the largest finite double (`1e400`), or not finite.
    #[error("the number {0} is beyond the range of an IEEE-754 double")]
    OutOfRange(String),
    /// More arrays and objects inside each other than [`MAX_DEPTH`] allows.
    #[error("arrays and objects nest deeper than {0} levels")]
    TooDeep(usize),
    /// An object names the same member twice: one of the two values would be lost.
    #[error("the member name {0:?} appears twice")]
    DuplicateName(String),
    /// Not JSON at all.
    #[error("invalid JSON: {0}")]
    Syntax(String),
}

impl CanonicalError {
    fn new(reason: Reason) -> Self {
        Self {
            path: String::new(),
            reason,
        }
    }

    /// The same error, seen from one level up: `segment` is the member name or array
    /// index under which it happened.
    fn under(mut self, segment: &str) -> Self {
        let mut p = String::with_capacity(segment.len() + 1 + self.path.len());
        p.push('/');
        p.push_str(&segment.replace('~', "~0").replace('/', "~1"));
        p.push_str(&self.path);
        self.path = p;
        self
    }

    /// Whether the bytes are not JSON at all (rather than JSON that breaks a rule).
    pub fn is_syntax(&self) -> bool {
        matches!(self.reason, Reason::Syntax(_))
    }
}

impl fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{} (at the top level)", self.reason)
        } else {
            write!(f, "{} (at {})", self.reason, self.path)
        }
    }
}

impl std::error::Error for CanonicalError {}

/// The most arrays and objects one value may hold inside each other, counted over the
/// whole value that is stored (a journal entry counts its own object as the first level).
/// The writer and the reader both enforce it: whatever one accepts, the other does.
pub const MAX_DEPTH: usize = 128;

/// The canonical bytes of `v`.
pub fn to_vec(v: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::new();
    write(v, &mut out, 0)?;
    Ok(out)
}

/// The canonical text of `v`.
pub fn to_string(v: &Value) -> Result<String, CanonicalError> {
    to_vec(v).map(|b| String::from_utf8(b).expect("canonical JSON is UTF-8"))
}

/// Appends the canonical form of `v`, which sits inside `depth` arrays or objects of the
/// value being written (for encoders that write the outer levels themselves). On error
/// `out` may hold part of the value: callers truncate it.
pub fn write(v: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), CanonicalError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(number(n)?.as_bytes()),
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err(CanonicalError::new(Reason::TooDeep(MAX_DEPTH)));
            }
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out, depth + 1).map_err(|e| e.under(&i.to_string()))?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            if depth >= MAX_DEPTH {
                return Err(CanonicalError::new(Reason::TooDeep(MAX_DEPTH)));
            }
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                write(v, out, depth + 1).map_err(|e| e.under(k))?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Reads JSON text under the one rule the writer follows, so that whatever this accepts
/// the writer can write: at most `max_depth` arrays and objects inside each other, no
/// member name twice in one object, every integer literal exactly an IEEE-754 double and
/// every number within the doubles' range, strings valid UTF-8 without lone surrogates.
/// White space between tokens is allowed (this reads requests as well as stored entries;
/// [`read_canonical`] also demands the canonical form).
pub fn parse(text: &[u8], max_depth: usize) -> Result<Value, CanonicalError> {
    let mut p = Parser {
        b: text,
        at: 0,
        max_depth,
    };
    p.skip_space();
    let v = p.value(0)?;
    p.skip_space();
    if p.at != text.len() {
        return Err(p.syntax("trailing characters after the value"));
    }
    Ok(v)
}

/// Reads bytes that must be exactly the canonical form of a value of at most
/// [`MAX_DEPTH`] levels: parses them by the rule and writes them again.
pub fn read_canonical(bytes: &[u8]) -> Result<Value, ReadError> {
    let v = parse(bytes, MAX_DEPTH).map_err(ReadError::Refused)?;
    if to_vec(&v).map_err(ReadError::Refused)? != bytes {
        return Err(ReadError::NotCanonical);
    }
    Ok(v)
}

/// Why bytes that should be canonical JSON are not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Refused(CanonicalError),
    #[error("the bytes are valid JSON but not in canonical form")]
    NotCanonical,
}

struct Parser<'a> {
    b: &'a [u8],
    at: usize,
    max_depth: usize,
}

impl Parser<'_> {
    fn syntax(&self, what: &str) -> CanonicalError {
        CanonicalError::new(Reason::Syntax(format!("{what} at byte {}", self.at)))
    }

    fn skip_space(&mut self) {
        while matches!(self.b.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn literal(&mut self, lit: &[u8], v: Value) -> Result<Value, CanonicalError> {
        match literal_end(self.b, self.at, lit) {
            Some(end) => {
                self.at = end;
                Ok(v)
            }
            None => Err(self.syntax("an unknown literal")),
        }
    }

    /// The value at the cursor, which sits inside `depth` arrays or objects.
    fn value(&mut self, depth: usize) -> Result<Value, CanonicalError> {
        match self.b.get(self.at) {
            None => Err(self.syntax("the text ends where a value should be")),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => {
                if depth >= self.max_depth {
                    return Err(CanonicalError::new(Reason::TooDeep(self.max_depth)));
                }
                self.at += 1;
                let mut items = Vec::new();
                self.skip_space();
                if self.b.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    self.skip_space();
                    let i = items.len();
                    items.push(self.value(depth + 1).map_err(|e| e.under(&i.to_string()))?);
                    self.skip_space();
                    match self.b.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Value::Array(items));
                        }
                        _ => return Err(self.syntax("expected `,` or `]`")),
                    }
                }
            }
            Some(b'{') => {
                if depth >= self.max_depth {
                    return Err(CanonicalError::new(Reason::TooDeep(self.max_depth)));
                }
                self.at += 1;
                let mut map = Map::new();
                self.skip_space();
                if self.b.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Value::Object(map));
                }
                loop {
                    self.skip_space();
                    if self.b.get(self.at) != Some(&b'"') {
                        return Err(self.syntax("expected a member name"));
                    }
                    let name = self.string()?;
                    self.skip_space();
                    if self.b.get(self.at) != Some(&b':') {
                        return Err(self.syntax("expected `:`"));
                    }
                    self.at += 1;
                    self.skip_space();
                    let v = self.value(depth + 1).map_err(|e| e.under(&name))?;
                    if map.contains_key(&name) {
                        return Err(
                            CanonicalError::new(Reason::DuplicateName(name.clone())).under(&name)
                        );
                    }
                    map.insert(name, v);
                    self.skip_space();
                    match self.b.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Value::Object(map));
                        }
                        _ => return Err(self.syntax("expected `,` or `}`")),
                    }
                }
            }
            Some(_) => Err(self.syntax("an unexpected character")),
        }
    }

    fn hex4(&mut self) -> Result<u32, CanonicalError> {
        let h = self
            .b
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.syntax("a short \\u escape"))?;
        let s = std::str::from_utf8(h).map_err(|_| self.syntax("a bad \\u escape"))?;
        let v = u32::from_str_radix(s, 16).map_err(|_| self.syntax("a bad \\u escape"))?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(self.syntax("a bad \\u escape"));
        }
        self.at += 4;
        Ok(v)
    }

    /// The string at the cursor (its opening quote).
    fn string(&mut self) -> Result<String, CanonicalError> {
        self.at += 1;
        let mut out = String::new();
        let mut run = self.at;
        loop {
            self.at += plain_len(&self.b[self.at.min(self.b.len())..]);
            match self.b.get(self.at) {
                None => return Err(self.syntax("the text ends inside a string")),
                Some(b'"') => {
                    out.push_str(self.utf8(run)?);
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(self.utf8(run)?);
                    self.at += 1;
                    let c = *self
                        .b
                        .get(self.at)
                        .ok_or_else(|| self.syntax("the text ends inside an escape"))?;
                    self.at += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi) {
                                if self.b.get(self.at..self.at + 2) != Some(b"\\u") {
                                    return Err(self.syntax("a lone surrogate in a \\u escape"));
                                }
                                self.at += 2;
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.syntax("a lone surrogate in a \\u escape"));
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else if (0xdc00..0xe000).contains(&hi) {
                                return Err(self.syntax("a lone surrogate in a \\u escape"));
                            } else {
                                hi
                            };
                            out.push(char::from_u32(code).expect("a scalar value"));
                        }
                        _ => {
                            self.at -= 1;
                            return Err(self.syntax("an unknown escape"));
                        }
                    }
                    run = self.at;
                }
                Some(0x00..=0x1f) => return Err(self.syntax("a control character inside a string")),
                Some(_) => self.at += 1,
            }
        }
    }

    /// The bytes from `run` to the cursor as text.
    fn utf8(&self, run: usize) -> Result<&str, CanonicalError> {
        std::str::from_utf8(&self.b[run..self.at]).map_err(|e| {
            CanonicalError::new(Reason::Syntax(format!(
                "invalid UTF-8 at byte {}",
                run + e.valid_up_to()
            )))
        })
    }

    /// The number at the cursor, by JSON's grammar, then by the rule on doubles.
    fn number(&mut self) -> Result<Value, CanonicalError> {
        let start = self.at;
        let b = self.b;
        let digits = |mut p: usize| {
            while b.get(p).is_some_and(u8::is_ascii_digit) {
                p += 1;
            }
            p
        };
        let mut p = start + usize::from(b[start] == b'-');
        let int_end = digits(p);
        if int_end == p {
            return Err(self.syntax("a number without digits"));
        }
        if b[p] == b'0' && int_end > p + 1 {
            return Err(self.syntax("a number with a leading zero"));
        }
        p = int_end;
        let mut integer = true;
        if b.get(p) == Some(&b'.') {
            let end = digits(p + 1);
            if end == p + 1 {
                self.at = p + 1;
                return Err(self.syntax("a fraction without digits"));
            }
            p = end;
            integer = false;
        }
        if matches!(b.get(p), Some(b'e' | b'E')) {
            p += 1;
            if matches!(b.get(p), Some(b'+' | b'-')) {
                p += 1;
            }
            let end = digits(p);
            if end == p {
                self.at = p;
                return Err(self.syntax("an exponent without digits"));
            }
            p = end;
            integer = false;
        }
        self.at = p;
        let text = std::str::from_utf8(&b[start..p]).expect("ASCII");
        let inexact = || CanonicalError::new(Reason::InexactInteger(text.into()));
        if integer {
            let small = match text.parse::<i64>() {
                Ok(i) => Some(Value::from(i)),
                Err(_) => text.parse::<u64>().ok().map(Value::from),
            };
            if let Some(v) =
                small.filter(|v| v.as_f64().is_some_and(|f| f.abs() <= MAX_SAFE as f64))
            {
                return Ok(v);
            }
        }
        let f: f64 = text.parse().expect("a JSON number reads as a double");
        if !f.is_finite() {
            return Err(CanonicalError::new(Reason::OutOfRange(text.into())));
        }
        if integer && !names_its_double(text, f) {
            return Err(inexact());
        }
        Ok(Number::from_f64(f).map(Value::Number).expect("finite"))
    }
}

/// Whether the integer literal `text`, which reads as the double `f`, names that double
/// and no other number: it is the double's exact value (`10000000000000000`), or the text
/// ECMAScript prints for it (2^63 prints as `9223372036854776000`), which is how the
/// writer prints it. `9007199254740993` is neither: no double holds it, and a reader
/// would silently see 9007199254740992.
fn names_its_double(text: &str, f: f64) -> bool {
    format!("{:.0}", f.abs()) == text.trim_start_matches('-') || es_number(f) == text
}

/// Appends `s` as a canonical JSON string: `"` and `\\` escaped, control characters as
/// the short escapes or `\u00xx`, everything else as its UTF-8 bytes.
pub fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    loop {
        i += plain_len(&bytes[i..]);
        let Some(&b) = bytes.get(i) else { break };
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            // Any other byte (of a character beyond ASCII) is written as it is.
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[run..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        i += 1;
        run = i;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// How many of `b`'s first bytes are ASCII from 0x20 up, other than `"` and `\\`: the
/// bytes a canonical string holds as they are, with nothing to escape or check.
/// Reads eight bytes at a time until a chunk holds some other byte, then one at a time.
pub fn plain_len(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // True when some byte of `v` is 0, or (with `below`) below it: exact for "some", the
    // classic word-at-a-time tests, valid for bytes under 0x80 (the others are caught
    // by their high bit).
    let some_below = |v: u64, below: u8| v.wrapping_sub(ONES * below as u64) & !v & HIGHS != 0;
    let mut n = 0;
    while let Some(chunk) = b.get(n..n + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        if w & HIGHS != 0
            || some_below(w, 0x20)
            || some_below(w ^ (ONES * b'"' as u64), 1)
            || some_below(w ^ (ONES * b'\\' as u64), 1)
        {
            break;
        }
        n += 8;
    }
    n + b[n..]
        .iter()
        .take_while(|&&c| (0x20..0x80).contains(&c) && c != b'"' && c != b'\\')
        .count()
}

/// The deepest nesting [`value_end`] checks itself; deeper values are left to a parse.
const FAST_MAX_DEPTH: usize = 64;

/// Where the value that starts at `at` ends, when it is in canonical form and of the
/// kinds this check reads without building a value: literals, integers within ±2^53,
/// numbers with a fraction or an exponent, strings, arrays and objects of those, at most
/// 64 levels deep (counting from `depth`). `None` means not canonical, or not a value
/// this check decides (integers beyond 2^53, object keys with escapes, deeper nesting):
/// the caller then parses and encodes again, which decides every case. What this
/// accepts, that always accepts.
pub fn value_end(b: &[u8], at: usize, depth: usize) -> Option<usize> {
    if depth > FAST_MAX_DEPTH {
        return None;
    }
    match *b.get(at)? {
        b'n' => literal_end(b, at, b"null"),
        b't' => literal_end(b, at, b"true"),
        b'f' => literal_end(b, at, b"false"),
        b'"' => string_end(b, at).map(|(end, _)| end),
        b'-' | b'0'..=b'9' => number_end(b, at),
        b'[' => {
            let mut p = at + 1;
            if b.get(p) == Some(&b']') {
                return Some(p + 1);
            }
            loop {
                p = value_end(b, p, depth + 1)?;
                match *b.get(p)? {
                    b',' => p += 1,
                    b']' => return Some(p + 1),
                    _ => return None,
                }
            }
        }
        b'{' => object_end(b, at, depth, |_, _| {}),
        _ => None,
    }
}

/// [`value_end`] for the object that starts at `at`, telling `member` each member's name
/// (plain: names with escapes are not decided here) and where its value is, as it passes
/// them: a caller reads what it needs of an object in the same pass that checks it.
pub fn object_end(
    b: &[u8],
    at: usize,
    depth: usize,
    mut member: impl FnMut(&[u8], std::ops::Range<usize>),
) -> Option<usize> {
    if depth > FAST_MAX_DEPTH || b.get(at) != Some(&b'{') {
        return None;
    }
    let mut p = at + 1;
    if b.get(p) == Some(&b'}') {
        return Some(p + 1);
    }
    let mut previous: Option<&[u8]> = None;
    loop {
        if b.get(p) != Some(&b'"') {
            return None;
        }
        let (end, escaped) = string_end(b, p)?;
        let key = &b[p + 1..end - 1];
        if escaped || previous.is_some_and(|prev| !name_before(prev, key)) {
            return None;
        }
        previous = Some(key);
        if b.get(end) != Some(&b':') {
            return None;
        }
        let value = end + 1;
        p = value_end(b, value, depth + 1)?;
        member(key, value..p);
        match *b.get(p)? {
            b',' => p += 1,
            b'}' => return Some(p + 1),
            _ => return None,
        }
    }
}

/// Where `lit` ends when the bytes at `at` are exactly it.
pub(crate) fn literal_end(b: &[u8], at: usize, lit: &[u8]) -> Option<usize> {
    b.get(at..at + lit.len())
        .filter(|s| *s == lit)
        .map(|_| at + lit.len())
}

/// Whether member name `a` sorts strictly before `b` by UTF-16 code units (both valid
/// UTF-8 without escapes).
fn name_before(a: &[u8], b: &[u8]) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a < b;
    }
    match (std::str::from_utf8(a), std::str::from_utf8(b)) {
        (Ok(a), Ok(b)) => a.encode_utf16().lt(b.encode_utf16()),
        _ => false,
    }
}

/// Where the canonical string that starts at `at` (its opening quote) ends, and whether
/// it holds escapes: valid UTF-8, no raw control characters, and only the escapes
/// [`string`] writes.
pub fn string_end(b: &[u8], at: usize) -> Option<(usize, bool)> {
    if b.get(at) != Some(&b'"') {
        return None;
    }
    let mut p = at + 1;
    let mut run = p;
    // Whether the bytes since `run` are all ASCII, which needs no UTF-8 check.
    let mut ascii = true;
    let mut escaped = false;
    let utf8 = |run: &[u8], ascii: bool| ascii || std::str::from_utf8(run).is_ok();
    loop {
        p += plain_len(&b[p..]);
        match *b.get(p)? {
            b'"' => {
                return utf8(&b[run..p], ascii).then_some((p + 1, escaped));
            }
            b'\\' => {
                if !utf8(&b[run..p], ascii) {
                    return None;
                }
                ascii = true;
                escaped = true;
                match *b.get(p + 1)? {
                    b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => p += 2,
                    b'u' => {
                        let h = b.get(p + 2..p + 6)?;
                        let digit = |c: u8| match c {
                            b'0'..=b'9' => Some(c - b'0'),
                            b'a'..=b'f' => Some(c - b'a' + 10),
                            _ => None,
                        };
                        let v = digit(h[2])? * 16 + digit(h[3])?;
                        if &h[..2] != b"00"
                            || v >= 0x20
                            || matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)
                        {
                            return None;
                        }
                        p += 6;
                    }
                    _ => return None,
                }
                run = p;
            }
            0x00..=0x1f => return None,
            // A byte of a character beyond ASCII: the run is checked as UTF-8 at its end.
            _ => {
                ascii = false;
                p += 1;
            }
        }
    }
}

/// Where the canonical number that starts at `at` ends: an integer within ±2^53 (see
/// [`integer_end`]), or a number with a fraction or an exponent written exactly as
/// ECMAScript prints its double, which is how the writer prints it and the only form a
/// parse and encode again gives back. Integers beyond 2^53 are left to a parse.
fn number_end(b: &[u8], at: usize) -> Option<usize> {
    if let Some((end, _)) = integer_end(b, at) {
        return Some(end);
    }
    let len = b[at.min(b.len())..]
        .iter()
        .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .count();
    let text = std::str::from_utf8(&b[at..at + len]).ok()?;
    if !text.contains(['.', 'e', 'E']) {
        return None;
    }
    let f: f64 = text.parse().ok()?;
    (f.is_finite() && es_number(f) == text).then_some(at + len)
}

/// Where the canonical integer that starts at `at` ends, and its value: within ±2^53,
/// no leading zeros, no `-0`, no fraction or exponent after it.
pub fn integer_end(b: &[u8], at: usize) -> Option<(usize, i64)> {
    let negative = b.get(at) == Some(&b'-');
    let start = at + usize::from(negative);
    let digits = b[start.min(b.len())..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let end = start + digits;
    if digits == 0 || digits > 16 || (digits > 1 && b[start] == b'0') {
        return None;
    }
    if matches!(b.get(end), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    let magnitude = b[start..end]
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    if magnitude > MAX_SAFE || (negative && magnitude == 0) {
        return None;
    }
    let v = magnitude as i64;
    Some((end, if negative { -v } else { v }))
}

/// The largest integer up to which every integer is a double (2^53 − 1). The one-pass
/// check decides integers up to here; beyond it, a parse decides.
pub const MAX_SAFE: u64 = (1 << 53) - 1;

/// A number as ECMAScript prints its double. An integer beyond 2^53 is accepted when it
/// names its double (see [`names_its_double`]): the reader holds literals to the same
/// rule.
fn number(n: &Number) -> Result<String, CanonicalError> {
    let integer = |f: f64| {
        if f.abs() <= MAX_SAFE as f64 {
            Ok(n.to_string())
        } else if names_its_double(&n.to_string(), f) {
            Ok(es_number(f))
        } else {
            Err(CanonicalError::new(Reason::InexactInteger(n.to_string())))
        }
    };
    if let Some(u) = n.as_u64() {
        return integer(u as f64);
    }
    if let Some(i) = n.as_i64() {
        return integer(i as f64);
    }
    let f = n
        .as_f64()
        .filter(|f| f.is_finite())
        .ok_or_else(|| CanonicalError::new(Reason::OutOfRange(n.to_string())))?;
    Ok(es_number(f))
}

/// ECMAScript's `Number.prototype.toString` for a finite double.
pub fn es_number(f: f64) -> String {
    if f == 0.0 {
        return "0".to_owned();
    }
    let sign = if f < 0.0 { "-" } else { "" };
    // Rust's `{:e}` gives the fewest digits that read back as the same double. Of the
    // numbers with that many digits, ECMAScript takes the one nearest the double (the even
    // one on a tie), which `{:.*e}` gives: it rounds the exact value, half to even. The
    // two differ where the shortest digits are not the nearest (1424953923781206.25 reads
    // back from both …206.2 and …206.3: ECMAScript prints …206.2).
    let shortest = format!("{:e}", f.abs());
    let k = shortest
        .split_once('e')
        .map_or(0, |(m, _)| m.len() - usize::from(m.contains('.')));
    let nearest = format!("{:.*e}", k.saturating_sub(1), f.abs());
    let sci = if nearest.parse::<f64>() == Ok(f.abs()) {
        nearest
    } else {
        shortest
    };
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let k = digits.len() as i32;
    let n = exp + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let sign_e = if e >= 0 { "+" } else { "-" };
        let m = if k == 1 {
            digits.clone()
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        format!("{m}e{sign_e}{}", e.abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The first case is RFC 8785's example, written as the RFC writes it.
    #[allow(clippy::excessive_precision)]
    fn numbers_print_as_ecmascript_does() {
        for (f, want) in [
            (333333333.33333329, "333333333.3333333"),
            (1e30, "1e+30"),
            (4.5, "4.5"),
            (2e-3, "0.002"),
            (1e-27, "1e-27"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123e-7, "0.0000123"),
            (1e-7, "1e-7"),
            (-1.5, "-1.5"),
            (-0.0, "0"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(es_number(f), want, "{f:e}");
        }
    }

    #[test]
    fn integers_are_accepted_exactly_when_a_double_holds_them() {
        for (text, want) in [
            ("9007199254740991", Some("9007199254740991")),
            ("9007199254740992", Some("9007199254740992")),
            ("9007199254740993", None),
            ("-9007199254740993", None),
            ("9007199254740994", Some("9007199254740994")),
            ("10000000000000000", Some("10000000000000000")),
            ("18446744073709551615", None),
            ("18446744073709551616", Some("18446744073709552000")),
            ("-9223372036854775808", Some("-9223372036854776000")),
            ("100000000000000000000000", None),
            ("1e16", Some("10000000000000000")),
            ("1e400", None),
            ("-0", Some("0")),
        ] {
            let read = parse(text.as_bytes(), MAX_DEPTH);
            match want {
                Some(w) => assert_eq!(to_string(&read.unwrap()).unwrap(), w, "{text}"),
                None => assert!(read.is_err(), "{text} was accepted"),
            }
        }
        // What serde reads as an integer, the writer holds to the same rule.
        let v: Value = serde_json::from_str("9007199254740993").unwrap();
        assert_eq!(
            to_vec(&v).unwrap_err().reason,
            Reason::InexactInteger("9007199254740993".into())
        );
        let v: Value = serde_json::from_str("10000000000000000").unwrap();
        assert_eq!(to_string(&v).unwrap(), "10000000000000000");
    }

    fn nested(levels: usize) -> Value {
        let mut v = Value::Null;
        for _ in 0..levels {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn writer_and_reader_share_the_depth_limit() {
        let deepest = to_vec(&nested(MAX_DEPTH)).unwrap();
        assert_eq!(read_canonical(&deepest).unwrap(), nested(MAX_DEPTH));
        let err = to_vec(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(err.reason, Reason::TooDeep(MAX_DEPTH));
        assert_eq!(err.path, "/0".repeat(MAX_DEPTH));
        let text = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = parse(text.as_bytes(), MAX_DEPTH).unwrap_err();
        assert_eq!(err.reason, Reason::TooDeep(MAX_DEPTH));
        // A hostile depth neither overflows the stack nor is accepted.
        let text = "[".repeat(1_000_000);
        assert!(parse(text.as_bytes(), MAX_DEPTH).is_err());
    }

    #[test]
    fn refusals_name_the_path() {
        let err = parse(br#"{"a": [1, {"b~/c": 9007199254740993}]}"#, MAX_DEPTH).unwrap_err();
        assert_eq!(err.path, "/a/1/b~0~1c");
        let err = parse(br#"{"a": 1, "a": 2}"#, MAX_DEPTH).unwrap_err();
        assert_eq!(err.reason, Reason::DuplicateName("a".into()));
        assert_eq!(err.path, "/a");
        for bad in [
            &b"{"[..],
            b"[1,]",
            b"01",
            b"1.",
            b"\"\\ud800\"",
            b"\"\\udc00x\"",
            b"\"\x01\"",
            b"\"\xff\"",
            b"nul",
            b"1 2",
            b"",
        ] {
            assert!(
                parse(bad, MAX_DEPTH).unwrap_err().is_syntax(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse(br#""\ud83d\ude02\/""#, MAX_DEPTH).unwrap(),
            Value::String("😂/".into())
        );
    }
}
