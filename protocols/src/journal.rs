//! The journal's formats: entries, their canonical bytes and hashes, ids and barcodes, and
//! the framing of records in segment files. A verifier needs nothing but this module (and
//! the Merkle module) to check a journal.
//!
//! An entry's bytes are the canonical JSON (RFC 8785) of
//! `{"body", "index", "kind", "links", "shard", "time"}`; its leaf hash is
//! `BLAKE3(0x00 ‖ bytes)`; its id is that hash in lowercase hex and its barcode the first
//! 12 characters of the hash in lowercase RFC 4648 base32.
//!
//! A record in a segment file is `length (u32, little endian) ‖ BLAKE3(bytes) ‖ bytes`.
//! Two kinds share that framing: an *entry* record holds an entry's canonical bytes; a
//! *commit* record (the length's top bit set) closes a group commit and holds the tree
//! size before and after it and the root after it: `previous size (u64, little endian) ‖
//! size (u64, little endian) ‖ root`, so commit records chain. An append is acknowledged
//! only once its commit record is durable, so whatever follows the last intact commit
//! record of the last segment was never acknowledged.

use crate::canonical::{self, CanonicalError, Reason};
use crate::merkle::{Blake3, Hash, TreeHasher};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// An operator's note anchoring an outside event ("deploy 4.2 started").
    Note,
    Event,
    Intent,
    Decision,
    Result,
    Capsule,
    LaneChange,
    /// An action handed to its driver: written durably before the driver is called.
    Dispatch,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Note => "note",
            Self::Event => "event",
            Self::Intent => "intent",
            Self::Decision => "decision",
            Self::Result => "result",
            Self::Capsule => "capsule",
            Self::LaneChange => "lane_change",
            Self::Dispatch => "dispatch",
        }
    }
}

/// One journal entry, exactly as it is hashed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub shard: u32,
    /// Position in its shard's log, from 0.
    pub index: u64,
    pub kind: EntryKind,
    /// RFC 3339 UTC time from the node's recorded clock.
    pub time: String,
    /// Ids of earlier entries this one refers to.
    pub links: Vec<String>,
    pub body: Value,
}

/// Why bytes are not an entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("not canonical: {0}")]
    Canonical(#[from] CanonicalError),
    #[error("not an entry: {0}")]
    Shape(String),
    #[error("the bytes are valid JSON but not in canonical form")]
    NotCanonical,
}

impl Entry {
    /// The canonical bytes, written directly: the members in their canonical order
    /// (`body`, `index`, `kind`, `links`, `shard`, `time`) with the body canonicalised.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EntryError> {
        let mut out = Vec::with_capacity(160);
        // The body goes straight into the entry's bytes: a read checks every entry so.
        let body = |out: &mut Vec<u8>| write_body(&self.body, out);
        write_entry(
            self.shard,
            self.index,
            self.kind,
            &self.time,
            &self.links,
            body,
            &mut out,
        )?;
        Ok(out)
    }

    /// Reads an entry back, refusing bytes that are not exactly its canonical form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EntryError> {
        let value = canonical::parse(bytes, canonical::MAX_DEPTH)?;
        let entry: Entry =
            serde_json::from_value(value).map_err(|e| EntryError::Shape(e.to_string()))?;
        if entry.to_bytes()? != bytes {
            return Err(EntryError::NotCanonical);
        }
        Ok(entry)
    }
}

/// What a check of the log and its index need of an entry: everything but its body, and
/// the action the body belongs to ([`action_of`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryHead {
    pub shard: u32,
    pub index: u64,
    pub kind: EntryKind,
    pub time: String,
    pub links: Vec<String>,
    pub action: Option<String>,
}

impl EntryHead {
    /// Reads the head of an entry's bytes, refusing bytes that are not exactly an entry's
    /// canonical form, as [`Entry::from_bytes`] does. Common entries are checked in one
    /// pass without building the body; the rest are parsed and encoded again.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EntryError> {
        if let Some(head) = Self::read_canonical(bytes) {
            return Ok(head);
        }
        let e = Entry::from_bytes(bytes)?;
        Ok(Self {
            action: action_of(&e.body).map(str::to_owned),
            shard: e.shard,
            index: e.index,
            kind: e.kind,
            time: e.time,
            links: e.links,
        })
    }

    /// The one-pass check: `None` when the bytes are not canonical or not of the shapes
    /// it decides (see [`canonical::value_end`]).
    pub fn read_canonical(b: &[u8]) -> Option<Self> {
        let body = canonical::literal_end(b, 0, BODY_OPEN)?;
        let mut action = None;
        let p = if b.get(body) == Some(&b'{') {
            // The body's members are checked and its action picked up in one pass.
            canonical::object_end(b, body, 1, |name, value| {
                if name == b"action_id" {
                    action = action_value(&b[value]);
                }
            })?
        } else {
            canonical::value_end(b, body, 1)?
        };
        Self::read_after_body(b, p, action)
    }

    /// The one-pass check of the members after the body, which ends at `p`.
    fn read_after_body(b: &[u8], p: usize, action: Option<String>) -> Option<Self> {
        let expect = |p: usize, lit: &[u8]| canonical::literal_end(b, p, lit);
        let plain_string = |p: usize| -> Option<(usize, &str)> {
            let (end, escaped) = canonical::string_end(b, p)?;
            let text = std::str::from_utf8(&b[p + 1..end - 1]).ok()?;
            (!escaped).then_some((end, text))
        };
        let unsigned = |p: usize| -> Option<(usize, u64)> {
            let (end, v) = canonical::integer_end(b, p)?;
            u64::try_from(v).ok().map(|v| (end, v))
        };
        let p = expect(p, b",\"index\":")?;
        let (p, index) = unsigned(p)?;
        let p = expect(p, b",\"kind\":")?;
        let (p, kind) = plain_string(p)?;
        let kind = KINDS.iter().copied().find(|k| k.as_str() == kind)?;
        let mut p = expect(p, b",\"links\":[")?;
        let mut links = Vec::new();
        if b.get(p) == Some(&b']') {
            p += 1;
        } else {
            loop {
                let (end, link) = plain_string(p)?;
                links.push(link.to_owned());
                p = end + 1;
                match b.get(end)? {
                    b',' => {}
                    b']' => break,
                    _ => return None,
                }
            }
        }
        let p = expect(p, b",\"shard\":")?;
        let (p, shard) = unsigned(p)?;
        let p = expect(p, b",\"time\":")?;
        let (p, time) = plain_string(p)?;
        (expect(p, b"}")? == b.len()).then_some(())?;
        Some(Self {
            shard: u32::try_from(shard).ok()?,
            index,
            kind,
            time: time.to_owned(),
            links,
            action,
        })
    }

    /// Whether `bytes`, an entry written around `body`, read back through
    /// [`from_bytes`](Self::from_bytes): what that accepts, this accepts, and nothing
    /// else. A body the one-pass check decided when it was made (an object: nothing of
    /// what follows it is read to decide it) is only compared, byte for byte, with the
    /// entry's; the members after it are checked in one pass. Any other entry is read
    /// whole.
    pub fn reads_back(bytes: &[u8], body: &Body) -> Result<(), EntryError> {
        let end = BODY_OPEN.len() + body.bytes.len();
        let framed = body.one_pass
            && bytes.starts_with(BODY_OPEN)
            && bytes.get(BODY_OPEN.len()..end) == Some(body.as_bytes());
        if framed && Self::read_after_body(bytes, end, None).is_some() {
            return Ok(());
        }
        Self::from_bytes(bytes).map(|_| ())
    }
}

/// What an entry's bytes start with: its first member, the body, is written first.
const BODY_OPEN: &[u8] = b"{\"body\":";

/// An `action_id` member's canonical value as [`action_of`] reads it: a plain string that
/// is an action id (an escaped string holds a character no action id has).
fn action_value(v: &[u8]) -> Option<String> {
    let text = v.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    std::str::from_utf8(text)
        .ok()
        .filter(|s| crate::capsule::ReplayCapsule::is_action_id(s))
        .map(str::to_owned)
}

/// Every kind, in declaration order (the journal's index numbers them by position: a new
/// kind goes at the end).
pub const KINDS: [EntryKind; 8] = [
    EntryKind::Note,
    EntryKind::Event,
    EntryKind::Intent,
    EntryKind::Decision,
    EntryKind::Result,
    EntryKind::Capsule,
    EntryKind::LaneChange,
    EntryKind::Dispatch,
];

/// The names of every kind, for errors and schemas.
pub fn kind_names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.as_str()).collect()
}

/// The action an entry belongs to: its body's `action_id` member, when that is an action
/// id (32 lowercase hex digits). Capsules carry one; so will intents, decisions and results.
pub fn action_of(body: &Value) -> Option<&str> {
    body.get("action_id")?
        .as_str()
        .filter(|s| crate::capsule::ReplayCapsule::is_action_id(s))
}

/// An entry's parts, borrowed: what the journal encodes without assembling an [`Entry`].
pub struct EntryParts<'a> {
    pub shard: u32,
    pub index: u64,
    pub kind: EntryKind,
    pub time: &'a str,
    pub links: &'a [String],
    pub body: &'a Body,
}

/// An entry's body in its canonical bytes, as the entry holds it (one level down). Made
/// wherever the entry is asked for, so that whoever writes the entry only frames it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    bytes: Vec<u8>,
    /// The bytes are an object that the one-pass check of an entry's body accepts (see
    /// [`EntryHead::reads_back`]): decided here, on the thread that asks for the entry.
    one_pass: bool,
    /// The action the body belongs to ([`action_of`]), picked up by the same pass.
    action: Option<String>,
}

impl Body {
    /// The canonical bytes of `body`, written straight from its `Serialize` (the bytes
    /// [`canonical::write`] gives for `serde_json::to_value(body)`, without building that
    /// value); an error names the path inside the entry.
    pub fn of<T: Serialize + ?Sized>(body: &T) -> Result<Self, CanonicalError> {
        let mut out = Vec::with_capacity(512);
        canonical::write_serialize(body, &mut out, 1).map_err(|e| {
            let e = e.into_canonical();
            CanonicalError {
                path: format!("/body{}", e.path),
                ..e
            }
        })?;
        let mut action = None;
        let one_pass = out.first() == Some(&b'{')
            && canonical::object_end(&out, 0, 1, |name, value| {
                if name == b"action_id" {
                    action = action_value(&out[value]);
                }
            }) == Some(out.len());
        if !one_pass {
            // What the full reader of the entry finds (see [`EntryHead::from_bytes`]).
            action = canonical::parse(&out, canonical::MAX_DEPTH - 1)
                .ok()
                .and_then(|v| action_of(&v).map(str::to_owned));
        }
        Ok(Self {
            bytes: out,
            one_pass,
            action,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The action the body belongs to: what [`EntryHead::from_bytes`] finds in an entry
    /// holding it.
    pub fn action(&self) -> Option<&str> {
        self.action.as_deref()
    }
}

/// Writes `body` in canonical bytes as an entry holds it (one level down); an error
/// names the path inside the entry.
fn write_body(body: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    canonical::write(body, out, 1).map_err(|e| CanonicalError {
        path: format!("/body{}", e.path),
        ..e
    })
}

impl EntryParts<'_> {
    /// Appends the entry's canonical bytes to `out` (what [`Entry::to_bytes`] gives); on
    /// error `out` is as it was.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), EntryError> {
        let body = |out: &mut Vec<u8>| {
            out.extend_from_slice(self.body.as_bytes());
            Ok(())
        };
        write_entry(
            self.shard, self.index, self.kind, self.time, self.links, body, out,
        )
    }
}

/// Appends an entry's canonical bytes to `out`, the members in their canonical order,
/// with `body` writing the body's; on error `out` is as it was.
fn write_entry(
    shard: u32,
    index: u64,
    kind: EntryKind,
    time: &str,
    links: &[String],
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), CanonicalError>,
    out: &mut Vec<u8>,
) -> Result<(), EntryError> {
    use std::io::Write as _;
    let start = out.len();
    let written = || {
        if index > canonical::MAX_SAFE {
            return Err(CanonicalError {
                path: "/index".into(),
                reason: Reason::OutOfRange(index.to_string()),
            });
        }
        out.extend_from_slice(BODY_OPEN);
        body(out)?;
        let _ = write!(out, ",\"index\":{index},\"kind\":");
        canonical::string(kind.as_str(), out);
        out.extend_from_slice(b",\"links\":[");
        for (i, link) in links.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            canonical::string(link, out);
        }
        let _ = write!(out, "],\"shard\":{shard},\"time\":");
        canonical::string(time, out);
        out.push(b'}');
        Ok(())
    };
    let written = written();
    if written.is_err() {
        out.truncate(start);
    }
    Ok(written?)
}

/// The leaf hash of an entry's bytes.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    Blake3::leaf(bytes)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize]);
        s.push(DIGITS[(b & 15) as usize]);
    }
    String::from_utf8(s).expect("hex digits are ASCII")
}

/// Parses lowercase or uppercase hex of exactly `N` bytes.
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// An entry's id: its leaf hash in lowercase hex.
pub fn entry_id(leaf: &Hash) -> String {
    hex(leaf)
}

/// The length of a barcode.
pub const BARCODE_LEN: usize = 12;

/// The barcode's alphabet: lowercase RFC 4648 base32.
const BARCODE_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The first 60 bits of a leaf hash, as a number below 2^60: what its barcode spells.
pub fn barcode_bits(leaf: &Hash) -> u64 {
    u64::from_be_bytes(leaf[..8].try_into().expect("8 bytes")) >> 4
}

/// An entry's barcode: the first 60 bits of its leaf hash as 12 characters of lowercase
/// RFC 4648 base32 (`a-z2-7`), short enough to read out and type.
pub fn barcode(leaf: &Hash) -> String {
    let bits = barcode_bits(leaf);
    (0..BARCODE_LEN)
        .map(|i| BARCODE_ALPHABET[((bits >> (55 - 5 * i)) & 31) as usize] as char)
        .collect()
}

/// An entry's id, parsed: its leaf hash. Text form: 64 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryId(Hash);

impl EntryId {
    pub fn of(leaf: &Hash) -> Self {
        Self(*leaf)
    }

    pub fn hash(&self) -> &Hash {
        &self.0
    }
}

impl std::str::FromStr for EntryId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_hex::<32>(s)
            .filter(|_| !s.bytes().any(|b| b.is_ascii_uppercase()))
            .map(Self)
            .ok_or_else(|| format!("{s:?} is not an entry id (64 lowercase hex digits)"))
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// A barcode, parsed: 12 characters of `a-z2-7`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Barcode(String);

impl Barcode {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 60 bits of a leaf hash this barcode spells ([`barcode_bits`] of its entries).
    pub fn bits(&self) -> u64 {
        self.0.bytes().fold(0, |bits, c| {
            let v = BARCODE_ALPHABET
                .iter()
                .position(|a| *a == c)
                .expect("a parsed barcode holds only its alphabet");
            bits << 5 | v as u64
        })
    }
}

impl std::str::FromStr for Barcode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if is_barcode(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is not a barcode (12 characters of a-z and 2-7)"
            ))
        }
    }
}

impl std::fmt::Display for Barcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An action id, parsed: 32 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ActionId(String);

impl ActionId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ActionId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if crate::capsule::ReplayCapsule::is_action_id(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is not an action id (32 lowercase hex digits)"
            ))
        }
    }
}

impl std::fmt::Display for ActionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// True for text shaped like a barcode.
pub fn is_barcode(s: &str) -> bool {
    s.len() == BARCODE_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

/// Bytes in a record's header: length and checksum.
pub const RECORD_HEADER: usize = 4 + 32;

/// The top bit of the length field marks a commit record.
pub const COMMIT_FLAG: u32 = 0x8000_0000;

/// Bytes in a commit record's body: previous size, size and root.
pub const COMMIT_BODY: usize = 8 + 8 + 32;

/// Frames an entry's bytes as a record.
pub fn encode_record(bytes: &[u8], out: &mut Vec<u8>) {
    let start = begin_record(out);
    out.extend_from_slice(bytes);
    finish_record(out, start);
}

/// Starts a record in `out` whose bytes the caller then appends; returns where it starts,
/// for [`finish_record`].
pub fn begin_record(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER]);
    start
}

/// Frames the bytes appended since [`begin_record`] returned `start` as an entry record,
/// and returns them.
pub fn finish_record(out: &mut [u8], start: usize) -> &[u8] {
    let (header, bytes) = out[start..].split_at_mut(RECORD_HEADER);
    debug_assert!(bytes.len() < COMMIT_FLAG as usize);
    header[..4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
    header[4..].copy_from_slice(blake3::hash(bytes).as_bytes());
    bytes
}

/// Frames a commit record that takes the tree from `previous` to `size` entries, with
/// `root`.
pub fn encode_commit(previous: u64, size: u64, root: &Hash, out: &mut Vec<u8>) {
    let mut body = [0u8; COMMIT_BODY];
    body[..8].copy_from_slice(&previous.to_le_bytes());
    body[8..16].copy_from_slice(&size.to_le_bytes());
    body[16..].copy_from_slice(root);
    out.extend_from_slice(&(COMMIT_BODY as u32 | COMMIT_FLAG).to_le_bytes());
    out.extend_from_slice(blake3::hash(&body).as_bytes());
    out.extend_from_slice(&body);
}

/// What the record at an offset is.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordRead<'a> {
    /// A whole entry record whose checksum holds; `next` is the offset after it.
    Entry { bytes: &'a [u8], next: usize },
    /// A whole commit record whose checksum holds.
    Commit {
        previous: u64,
        size: u64,
        root: Hash,
        next: usize,
    },
    /// The data ends inside the record (its header or its body).
    Truncated,
    /// The record is whole but its checksum does not match, or its length is impossible.
    Corrupt(String),
}

/// What a record's header (its first [`RECORD_HEADER`] bytes, or more) claims: the length
/// of its bytes and whether it is a commit record; an impossible length is refused with
/// the reason (`max_len` bounds an entry record's).
pub fn record_header(header: &[u8], max_len: usize) -> Result<(usize, bool), String> {
    let raw = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let commit = raw & COMMIT_FLAG != 0;
    let len = (raw & !COMMIT_FLAG) as usize;
    if commit && len != COMMIT_BODY {
        return Err(format!("a commit record of {len} bytes"));
    }
    if !commit && len > max_len {
        return Err(format!("claims {len} bytes; the limit is {max_len}"));
    }
    Ok((len, commit))
}

/// Reads the record at `offset` of `data`; `max_len` bounds the length an entry record
/// may claim.
pub fn read_record(data: &[u8], offset: usize, max_len: usize) -> RecordRead<'_> {
    let rest = &data[offset.min(data.len())..];
    if rest.len() < RECORD_HEADER {
        return RecordRead::Truncated;
    }
    let (len, commit) = match record_header(rest, max_len) {
        Ok(claim) => claim,
        Err(why) => return RecordRead::Corrupt(why),
    };
    if rest.len() < RECORD_HEADER + len {
        return RecordRead::Truncated;
    }
    let bytes = &rest[RECORD_HEADER..RECORD_HEADER + len];
    if blake3::hash(bytes).as_bytes() != &rest[4..RECORD_HEADER] {
        return RecordRead::Corrupt("checksum mismatch".into());
    }
    let next = offset + RECORD_HEADER + len;
    if commit {
        RecordRead::Commit {
            previous: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
            size: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
            root: bytes[16..].try_into().expect("32 bytes"),
            next,
        }
    } else {
        RecordRead::Entry { bytes, next }
    }
}

/// The offset of the first intact commit record at or after `from`, found by trying every
/// offset: after damage, it tells a torn tail (no commit follows) from damage to
/// acknowledged data (a commit follows).
pub fn find_commit_after(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len().saturating_sub(RECORD_HEADER + COMMIT_BODY - 1)).find(|&o| {
        data[o..o + 4] == (COMMIT_BODY as u32 | COMMIT_FLAG).to_le_bytes()
            && matches!(read_record(data, o, 0), RecordRead::Commit { .. })
    })
}

/// The offset of the first intact record of any kind at or after `from` (entry records
/// no longer than `max_len`), found by trying every offset.
pub fn find_record_after(data: &[u8], from: usize, max_len: usize) -> Option<usize> {
    (from..data.len()).find(|&o| {
        matches!(
            read_record(data, o, max_len),
            RecordRead::Entry { .. } | RecordRead::Commit { .. }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            shard: 0,
            index: 7,
            kind: EntryKind::Note,
            time: "2026-11-22T01:02:03.004Z".into(),
            links: vec![],
            body: serde_json::json!({"text": "deploy 4.2 started"}),
        }
    }

    #[test]
    fn entries_round_trip_through_canonical_bytes() {
        let e = sample();
        let bytes = e.to_bytes().unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"body":{"text":"deploy 4.2 started"},"index":7,"kind":"note","links":[],"shard":0,"time":"2026-11-22T01:02:03.004Z"}"#
        );
        assert_eq!(Entry::from_bytes(&bytes).unwrap(), e);
        let spaced = String::from_utf8(bytes).unwrap().replace(':', ": ");
        assert!(matches!(
            Entry::from_bytes(spaced.as_bytes()),
            Err(EntryError::NotCanonical)
        ));
    }

    #[test]
    fn the_direct_encoding_is_the_canonical_encoding() {
        let mut e = sample();
        e.links = vec!["ab".repeat(32), "cd".repeat(32)];
        e.kind = EntryKind::LaneChange;
        e.body = serde_json::json!({"z": [1.5, "é\n"], "a": {"y": null, "b": true}});
        let via_value = canonical::to_vec(&serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(e.to_bytes().unwrap(), via_value);
        assert_eq!(Entry::from_bytes(&via_value).unwrap(), e);
    }

    #[test]
    fn ids_and_barcodes() {
        let leaf = leaf_hash(b"x");
        let id = entry_id(&leaf);
        assert_eq!(id.len(), 64);
        assert_eq!(parse_hex::<32>(&id), Some(leaf));
        let code = barcode(&leaf);
        assert!(is_barcode(&code), "{code}");
        assert_eq!(barcode(&[0u8; 32]), "aaaaaaaaaaaa");
        assert_eq!(barcode(&[0xff; 32]), "777777777777");
        for leaf in [[0u8; 32], [0xff; 32], leaf] {
            let code: Barcode = barcode(&leaf).parse().unwrap();
            assert_eq!(code.bits(), barcode_bits(&leaf));
        }
    }

    #[test]
    fn a_barcode_spells_the_bits_of_its_leaf_and_nothing_else() {
        fn prop(first: u64, rest: u8) -> bool {
            let mut leaf = [rest; 32];
            leaf[..8].copy_from_slice(&first.to_be_bytes());
            let code: Barcode = barcode(&leaf).parse().expect("a barcode");
            code.bits() == first >> 4 && code.bits() == barcode_bits(&leaf)
        }
        quickcheck::QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(u64, u8) -> bool);
    }

    #[test]
    fn records_detect_truncation_and_corruption() {
        let mut buf = Vec::new();
        encode_record(b"hello", &mut buf);
        encode_record(b"world!", &mut buf);
        let RecordRead::Entry { bytes, next } = read_record(&buf, 0, 1024) else {
            panic!()
        };
        assert_eq!(bytes, b"hello");
        assert!(matches!(
            read_record(&buf, next, 1024),
            RecordRead::Entry {
                bytes: b"world!",
                ..
            }
        ));
        assert_eq!(
            read_record(&buf[..buf.len() - 1], next, 1024),
            RecordRead::Truncated
        );
        assert_eq!(
            read_record(&buf[..next + 3], next, 1024),
            RecordRead::Truncated
        );
        let mut bad = buf.clone();
        bad[next + RECORD_HEADER] ^= 1;
        assert!(matches!(
            read_record(&bad, next, 1024),
            RecordRead::Corrupt(_)
        ));
        assert!(matches!(read_record(&buf, 0, 4), RecordRead::Corrupt(_)));
    }

    #[test]
    fn commit_records_carry_size_and_root() {
        let mut buf = Vec::new();
        encode_record(b"entry", &mut buf);
        let at = buf.len();
        encode_commit(0, 1, &[9u8; 32], &mut buf);
        assert_eq!(
            read_record(&buf, at, 1024),
            RecordRead::Commit {
                previous: 0,
                size: 1,
                root: [9u8; 32],
                next: buf.len()
            }
        );
        assert_eq!(find_commit_after(&buf, 0), Some(at));
        assert_eq!(find_commit_after(&buf, at + 1), None);
        let mut bad = buf.clone();
        bad[at + RECORD_HEADER] ^= 1;
        assert_eq!(find_commit_after(&bad, 0), None);
    }
}
