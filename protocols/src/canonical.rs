//! Canonical JSON (RFC 8785, JCS): the one byte encoding of everything Axon hashes or
//! signs. Object members sorted by the UTF-16 code units of their names, no white space,
//! strings with only the required escapes, numbers as ECMAScript prints IEEE-754 doubles.

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("the number {0} is not exactly representable as an IEEE-754 double")]
    InexactNumber(String),
    #[error("the value nests deeper than {0} levels")]
    TooDeep(usize),
}

/// The deepest nesting accepted.
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

/// Appends the canonical form of `v`, which sits `depth` levels deep in the value being
/// written (for encoders that write the outer levels themselves).
pub fn write(v: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), CanonicalError> {
    if depth > MAX_DEPTH {
        return Err(CanonicalError::TooDeep(MAX_DEPTH));
    }
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(number(n)?.as_bytes()),
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                write(v, out, depth + 1)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Appends `s` as a canonical JSON string: `"` and `\\` escaped, control characters as
/// the short escapes or `\u00xx`, everything else as its UTF-8 bytes.
pub fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// The deepest nesting [`value_end`] checks itself; deeper values are left to a parse.
const FAST_MAX_DEPTH: usize = 64;

/// Where the value that starts at `at` ends, when it is in canonical form and of the
/// kinds this check reads without building a value: literals, integers within ±2^53,
/// strings, arrays and objects of those, at most 64 levels deep (counting from `depth`).
/// `None` means not canonical, or not a value this check decides (fractions, exponents,
/// object keys with escapes, deeper nesting): the caller then parses and encodes again,
/// which decides every case. What this accepts, that always accepts.
pub fn value_end(b: &[u8], at: usize, depth: usize) -> Option<usize> {
    if depth > FAST_MAX_DEPTH {
        return None;
    }
    match *b.get(at)? {
        b'n' => literal_end(b, at, b"null"),
        b't' => literal_end(b, at, b"true"),
        b'f' => literal_end(b, at, b"false"),
        b'"' => string_end(b, at).map(|(end, _)| end),
        b'-' | b'0'..=b'9' => integer_end(b, at).map(|(end, _)| end),
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
        b'{' => {
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
                p = value_end(b, end + 1, depth + 1)?;
                match *b.get(p)? {
                    b',' => p += 1,
                    b'}' => return Some(p + 1),
                    _ => return None,
                }
            }
        }
        _ => None,
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
    let mut escaped = false;
    loop {
        match *b.get(p)? {
            b'"' => {
                std::str::from_utf8(&b[run..p]).ok()?;
                return Some((p + 1, escaped));
            }
            b'\\' => {
                std::str::from_utf8(&b[run..p]).ok()?;
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
            _ => p += 1,
        }
    }
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

/// Integers beyond ±2^53 are refused: not every one of them is a double, and a verifier
/// in another language would read a different number.
pub const MAX_SAFE: u64 = (1 << 53) - 1;

fn number(n: &serde_json::Number) -> Result<String, CanonicalError> {
    if let Some(u) = n.as_u64() {
        return if u <= MAX_SAFE {
            Ok(u.to_string())
        } else {
            Err(CanonicalError::InexactNumber(n.to_string()))
        };
    }
    if let Some(i) = n.as_i64() {
        return if i.unsigned_abs() <= MAX_SAFE {
            Ok(i.to_string())
        } else {
            Err(CanonicalError::InexactNumber(n.to_string()))
        };
    }
    let f = n
        .as_f64()
        .filter(|f| f.is_finite())
        .ok_or_else(|| CanonicalError::InexactNumber(n.to_string()))?;
    Ok(es_number(f))
}

/// ECMAScript's `Number.prototype.toString` for a finite double.
pub fn es_number(f: f64) -> String {
    if f == 0.0 {
        return "0".to_owned();
    }
    let sign = if f < 0.0 { "-" } else { "" };
    // Rust's `{:e}` gives the shortest digits that read back as the same double.
    let sci = format!("{:e}", f.abs());
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
    fn large_integers_are_refused() {
        let v: Value = serde_json::from_str("9007199254740993").unwrap();
        assert!(to_vec(&v).is_err());
        let v: Value = serde_json::from_str("9007199254740991").unwrap();
        assert_eq!(to_string(&v).unwrap(), "9007199254740991");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut v = Value::Null;
        for _ in 0..200 {
            v = Value::Array(vec![v]);
        }
        assert_eq!(to_vec(&v), Err(CanonicalError::TooDeep(MAX_DEPTH)));
    }
}
