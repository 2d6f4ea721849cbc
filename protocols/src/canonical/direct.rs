//! Canonical bytes straight from a value's `Serialize`, without building a
//! `serde_json::Value` first: the same bytes [`write`](super::write) gives for
//! `serde_json::to_value(v)` (a property test holds the two to it), at a fraction of the
//! allocations. Members are written in the order the value gives them, each object's
//! region then put in canonical order once its last member is written.
//!
//! Where the two could differ is only which error is named when a value breaks the rule
//! in more than one place: this names the first in the value's own order.

use super::{number, string, CanonicalError, Reason, MAX_DEPTH};
use serde::ser::{self, Serialize};
use serde_json::Number;

/// Why a value could not be written: a rule of the canonical form it breaks, or a
/// failure of its own `Serialize` (a map whose keys are not strings, say).
#[derive(Debug)]
pub enum DirectError {
    Canonical(CanonicalError),
    Custom(String),
}

impl std::fmt::Display for DirectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Canonical(e) => e.fmt(f),
            Self::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DirectError {}

impl ser::Error for DirectError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self::Custom(msg.to_string())
    }
}

impl DirectError {
    fn under(self, segment: &str) -> Self {
        match self {
            Self::Canonical(e) => Self::Canonical(e.under(segment)),
            other => other,
        }
    }

    /// As a canonical-form error: a failure of the value's own `Serialize` is reported as
    /// a value that is not JSON, at the top level.
    pub fn into_canonical(self) -> CanonicalError {
        match self {
            Self::Canonical(e) => e,
            Self::Custom(m) => CanonicalError::new(Reason::Syntax(m)),
        }
    }
}

/// Appends the canonical form of `v` (as [`write`](super::write) would write
/// `serde_json::to_value(v)`), which sits inside `depth` arrays or objects. On error
/// `out` may hold part of the value: callers truncate it.
pub fn write_serialize<T: Serialize + ?Sized>(
    v: &T,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), DirectError> {
    v.serialize(Writer { out, depth })
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    depth: usize,
}

fn too_deep(depth: usize) -> Result<(), DirectError> {
    if depth >= MAX_DEPTH {
        Err(DirectError::Canonical(CanonicalError::new(
            Reason::TooDeep(MAX_DEPTH),
        )))
    } else {
        Ok(())
    }
}

fn num(n: Number, out: &mut Vec<u8>) -> Result<(), DirectError> {
    out.extend_from_slice(number(&n).map_err(DirectError::Canonical)?.as_bytes());
    Ok(())
}

/// An array being written.
struct Array<'a> {
    out: &'a mut Vec<u8>,
    depth: usize,
    count: usize,
}

impl Array<'_> {
    fn item<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), DirectError> {
        if self.count > 0 {
            self.out.push(b',');
        }
        let at = self.count;
        self.count += 1;
        v.serialize(Writer {
            out: self.out,
            depth: self.depth + 1,
        })
        .map_err(|e| e.under(&at.to_string()))
    }

    fn end(self) {
        self.out.push(b']');
    }
}

/// One member of an object being written: its name, and where it lies in the output.
struct Member {
    name: String,
    start: usize,
    end: usize,
}

/// An object being written: members go to the output as they come, commas between;
/// `end` puts them in canonical order (a name twice keeps the last value, as a
/// `serde_json::Map` does).
struct Object<'a> {
    out: &'a mut Vec<u8>,
    depth: usize,
    /// Where the object's `{` is.
    start: usize,
    members: Vec<Member>,
    /// The name of the member whose value comes next (maps give it apart).
    pending: Option<String>,
    /// The enum variant this object is the value of, inside `{"variant": …}`, whose one
    /// member needs no sorting: `end` closes it too.
    variant: Option<&'static str>,
}

impl<'a> Object<'a> {
    fn begin(out: &'a mut Vec<u8>, depth: usize) -> Result<Self, DirectError> {
        too_deep(depth)?;
        let start = out.len();
        out.push(b'{');
        Ok(Self {
            out,
            depth,
            start,
            members: Vec::new(),
            pending: None,
            variant: None,
        })
    }

    /// `{"variant":` then an object begun inside it.
    fn begin_variant(
        out: &'a mut Vec<u8>,
        depth: usize,
        variant: &'static str,
    ) -> Result<Self, DirectError> {
        begin_variant(out, depth, variant)?;
        let mut o = Self::begin(out, depth + 1).map_err(|e| e.under(variant))?;
        o.variant = Some(variant);
        Ok(o)
    }

    fn member<T: Serialize + ?Sized>(&mut self, name: String, v: &T) -> Result<(), DirectError> {
        if !self.members.is_empty() {
            self.out.push(b',');
        }
        let start = self.out.len();
        string(&name, self.out);
        self.out.push(b':');
        let written = v.serialize(Writer {
            out: self.out,
            depth: self.depth + 1,
        });
        if let Err(e) = written {
            let e = e.under(&name);
            return Err(match self.variant {
                Some(variant) => e.under(variant),
                None => e,
            });
        }
        let end = self.out.len();
        self.members.push(Member { name, start, end });
        Ok(())
    }

    fn end(mut self) {
        let in_order = self
            .members
            .windows(2)
            .all(|w| w[0].name.encode_utf16().lt(w[1].name.encode_utf16()));
        if !in_order {
            // Stable, so of two members of one name the later stays later: it wins.
            self.members
                .sort_by(|a, b| a.name.encode_utf16().cmp(b.name.encode_utf16()));
            let body = self.start + 1;
            let written = self.out.split_off(body);
            let mut first = true;
            for (i, m) in self.members.iter().enumerate() {
                if self.members.get(i + 1).is_some_and(|n| n.name == m.name) {
                    continue;
                }
                if !first {
                    self.out.push(b',');
                }
                first = false;
                self.out
                    .extend_from_slice(&written[m.start - body..m.end - body]);
            }
        }
        self.out.push(b'}');
        if self.variant.is_some() {
            self.out.push(b'}');
        }
    }
}

/// Writes `{"variant":`, the start of an enum variant's one-member object, which sits
/// inside `depth` arrays or objects.
fn begin_variant(out: &mut Vec<u8>, depth: usize, variant: &str) -> Result<(), DirectError> {
    too_deep(depth)?;
    out.push(b'{');
    string(variant, out);
    out.push(b':');
    Ok(())
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = DirectError;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = VariantArray<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), DirectError> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), DirectError> {
        self.serialize_i64(v.into())
    }

    fn serialize_i16(self, v: i16) -> Result<(), DirectError> {
        self.serialize_i64(v.into())
    }

    fn serialize_i32(self, v: i32) -> Result<(), DirectError> {
        self.serialize_i64(v.into())
    }

    fn serialize_i64(self, v: i64) -> Result<(), DirectError> {
        num(v.into(), self.out)
    }

    fn serialize_i128(self, v: i128) -> Result<(), DirectError> {
        if let Ok(u) = u64::try_from(v) {
            return self.serialize_u64(u);
        }
        match i64::try_from(v) {
            Ok(i) => self.serialize_i64(i),
            Err(_) => Err(ser::Error::custom("number out of range")),
        }
    }

    fn serialize_u8(self, v: u8) -> Result<(), DirectError> {
        self.serialize_u64(v.into())
    }

    fn serialize_u16(self, v: u16) -> Result<(), DirectError> {
        self.serialize_u64(v.into())
    }

    fn serialize_u32(self, v: u32) -> Result<(), DirectError> {
        self.serialize_u64(v.into())
    }

    fn serialize_u64(self, v: u64) -> Result<(), DirectError> {
        num(v.into(), self.out)
    }

    fn serialize_u128(self, v: u128) -> Result<(), DirectError> {
        match u64::try_from(v) {
            Ok(u) => self.serialize_u64(u),
            Err(_) => Err(ser::Error::custom("number out of range")),
        }
    }

    fn serialize_f32(self, v: f32) -> Result<(), DirectError> {
        self.serialize_f64(v.into())
    }

    fn serialize_f64(self, v: f64) -> Result<(), DirectError> {
        // As `serde_json::Value` holds it: a number that is not finite is null.
        match Number::from_f64(v) {
            Some(n) => num(n, self.out),
            None => self.serialize_unit(),
        }
    }

    fn serialize_char(self, v: char) -> Result<(), DirectError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), DirectError> {
        string(v, self.out);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), DirectError> {
        use ser::SerializeSeq;
        let mut a = self.serialize_seq(Some(v.len()))?;
        for b in v {
            a.serialize_element(b)?;
        }
        SerializeSeq::end(a)
    }

    fn serialize_none(self) -> Result<(), DirectError> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), DirectError> {
        v.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), DirectError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), DirectError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), DirectError> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), DirectError> {
        v.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), DirectError> {
        begin_variant(self.out, self.depth, variant)?;
        v.serialize(Writer {
            out: self.out,
            depth: self.depth + 1,
        })
        .map_err(|e| e.under(variant))?;
        self.out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, DirectError> {
        too_deep(self.depth)?;
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
            depth: self.depth,
            count: 0,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, DirectError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Array<'a>, DirectError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<VariantArray<'a>, DirectError> {
        begin_variant(self.out, self.depth, variant)?;
        too_deep(self.depth + 1).map_err(|e| e.under(variant))?;
        self.out.push(b'[');
        Ok(VariantArray {
            array: Array {
                out: self.out,
                depth: self.depth + 1,
                count: 0,
            },
            variant,
        })
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Object<'a>, DirectError> {
        Object::begin(self.out, self.depth)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Object<'a>, DirectError> {
        Object::begin(self.out, self.depth)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Object<'a>, DirectError> {
        Object::begin_variant(self.out, self.depth, variant)
    }
}

/// A tuple variant's array, inside its one-member object.
struct VariantArray<'a> {
    array: Array<'a>,
    variant: &'static str,
}

impl ser::SerializeTupleVariant for VariantArray<'_> {
    type Ok = ();
    type Error = DirectError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), DirectError> {
        self.array.item(v).map_err(|e| e.under(self.variant))
    }

    fn end(self) -> Result<(), DirectError> {
        let out = self.array.out;
        out.extend_from_slice(b"]}");
        Ok(())
    }
}

impl ser::SerializeSeq for Array<'_> {
    type Ok = ();
    type Error = DirectError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), DirectError> {
        self.item(v)
    }

    fn end(self) -> Result<(), DirectError> {
        Array::end(self);
        Ok(())
    }
}

impl ser::SerializeTuple for Array<'_> {
    type Ok = ();
    type Error = DirectError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), DirectError> {
        self.item(v)
    }

    fn end(self) -> Result<(), DirectError> {
        Array::end(self);
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Array<'_> {
    type Ok = ();
    type Error = DirectError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), DirectError> {
        self.item(v)
    }

    fn end(self) -> Result<(), DirectError> {
        Array::end(self);
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = DirectError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), DirectError> {
        self.pending = Some(key.serialize(KeyWriter)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), DirectError> {
        let name = self
            .pending
            .take()
            .ok_or_else(|| ser::Error::custom("a map value without its key"))?;
        self.member(name, v)
    }

    fn end(self) -> Result<(), DirectError> {
        Object::end(self);
        Ok(())
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = DirectError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), DirectError> {
        self.member(name.to_owned(), v)
    }

    fn end(self) -> Result<(), DirectError> {
        Object::end(self);
        Ok(())
    }
}

impl ser::SerializeStructVariant for Object<'_> {
    type Ok = ();
    type Error = DirectError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), DirectError> {
        self.member(name.to_owned(), v)
    }

    fn end(self) -> Result<(), DirectError> {
        Object::end(self);
        Ok(())
    }
}

/// A map key, as `serde_json` takes one: a string, or a number, a bool or a char written
/// as one.
struct KeyWriter;

impl ser::Serializer for KeyWriter {
    type Ok = String;
    type Error = DirectError;
    type SerializeSeq = ser::Impossible<String, DirectError>;
    type SerializeTuple = ser::Impossible<String, DirectError>;
    type SerializeTupleStruct = ser::Impossible<String, DirectError>;
    type SerializeTupleVariant = ser::Impossible<String, DirectError>;
    type SerializeMap = ser::Impossible<String, DirectError>;
    type SerializeStruct = ser::Impossible<String, DirectError>;
    type SerializeStructVariant = ser::Impossible<String, DirectError>;

    fn serialize_bool(self, v: bool) -> Result<String, DirectError> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, DirectError> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, DirectError> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, DirectError> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, DirectError> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, DirectError> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, DirectError> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, DirectError> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, DirectError> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _: f32) -> Result<String, DirectError> {
        Err(key_error())
    }
    fn serialize_f64(self, _: f64) -> Result<String, DirectError> {
        Err(key_error())
    }
    fn serialize_char(self, v: char) -> Result<String, DirectError> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, DirectError> {
        Ok(v.to_owned())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, DirectError> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<String, DirectError> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, DirectError> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<String, DirectError> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, DirectError> {
        Err(key_error())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, DirectError> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<String, DirectError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, DirectError> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, DirectError> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, DirectError> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, DirectError> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, DirectError> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, DirectError> {
        Err(key_error())
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, DirectError> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, DirectError> {
        Err(key_error())
    }
}

fn key_error() -> DirectError {
    ser::Error::custom("key must be a string")
}
