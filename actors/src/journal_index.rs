//! The journal's derived indexes in sled: entries by barcode, by action id, by kind and by
//! time, and the tree size and root they were built for. sled does not make writes durable
//! on its own, so nothing lives only here: the indexes are checked against the segments at
//! every start and rebuilt from them when they are missing or disagree.
//!
//! Every key ends with the entry's index (8 bytes, big endian), so a prefix or range scan
//! yields entries in index order:
//!
//! ```text
//! by_barcode  barcode (12 bytes) ‖ index
//! by_action   action id (32 bytes) ‖ index
//! by_kind     kind (1 byte) ‖ index
//! by_time     time (RFC 3339, 24 bytes) ‖ index    → kind (1 byte)
//! ```
//!
//! Entry times never decrease along the log (the journal enforces it), so the time order is
//! the index order.

use axon_protocols::journal::EntryKind;
use axon_protocols::merkle::Hash;
use std::path::Path;

/// What the index records of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRecord {
    pub index: u64,
    pub barcode: String,
    pub kind: EntryKind,
    pub time: String,
    /// The action the entry belongs to, if any.
    pub action: Option<String>,
}

/// Which entries a query asks for; `since` and `until` are times in the journal's form,
/// `since` inclusive and `until` exclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub kind: Option<EntryKind>,
    pub since: Option<String>,
    pub until: Option<String>,
}

impl Filter {
    /// Whether an entry of `kind` at `time` matches.
    pub fn matches(&self, kind: EntryKind, time: &str) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && self.since.as_deref().is_none_or(|s| time >= s)
            && self.until.as_deref().is_none_or(|u| time < u)
    }
}

/// The indexes of one shard.
pub struct JournalIndex {
    db: sled::Db,
    barcodes: sled::Tree,
    actions: sled::Tree,
    kinds: sled::Tree,
    times: sled::Tree,
}

const META_SIZE: &[u8] = b"size";
const META_ROOT: &[u8] = b"root";
const META_FORMAT: &[u8] = b"format";
/// The layout above; an index of another format is rebuilt.
const FORMAT: u64 = 2;

fn err(e: sled::Error) -> String {
    format!("journal index: {e}")
}

fn key(prefix: &[u8], index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn index_of(k: &[u8]) -> Result<u64, String> {
    let tail: [u8; 8] = k
        .get(k.len().wrapping_sub(8)..)
        .and_then(|t| t.try_into().ok())
        .ok_or_else(|| "journal index: a short key".to_owned())?;
    Ok(u64::from_be_bytes(tail))
}

/// The kinds in a fixed order: a kind's byte in the index is its position here.
const KINDS: [EntryKind; 7] = [
    EntryKind::Note,
    EntryKind::Event,
    EntryKind::Intent,
    EntryKind::Decision,
    EntryKind::Result,
    EntryKind::Capsule,
    EntryKind::LaneChange,
];

fn kind_byte(kind: EntryKind) -> u8 {
    KINDS.iter().position(|k| *k == kind).expect("every kind") as u8
}

fn kind_of(b: u8) -> Result<EntryKind, String> {
    KINDS
        .get(b as usize)
        .copied()
        .ok_or_else(|| format!("journal index: unknown kind byte {b}"))
}

impl JournalIndex {
    /// Opens (or creates) the index at `dir`; sled's page cache is bounded by `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, String> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(err)?;
        Ok(Self {
            barcodes: db.open_tree("by_barcode").map_err(err)?,
            actions: db.open_tree("by_action").map_err(err)?,
            kinds: db.open_tree("by_kind").map_err(err)?,
            times: db.open_tree("by_time").map_err(err)?,
            db,
        })
    }

    /// The tree size and root the index was last brought up to; `None` when it was never
    /// built or has another format.
    pub fn built_for(&self) -> Option<(u64, Hash)> {
        let format = self.db.get(META_FORMAT).ok()??;
        if format.as_ref() != FORMAT.to_be_bytes() {
            return None;
        }
        let size = self.db.get(META_SIZE).ok()??;
        let root = self.db.get(META_ROOT).ok()??;
        Some((
            u64::from_be_bytes(size.as_ref().try_into().ok()?),
            root.as_ref().try_into().ok()?,
        ))
    }

    /// Adds entries (then [`mark_built`](Self::mark_built) says up to where).
    pub fn add(&self, records: &[IndexRecord]) -> Result<(), String> {
        let mut barcodes = sled::Batch::default();
        let mut actions = sled::Batch::default();
        let mut kinds = sled::Batch::default();
        let mut times = sled::Batch::default();
        for r in records {
            let kind = kind_byte(r.kind);
            barcodes.insert(key(r.barcode.as_bytes(), r.index), &[]);
            if let Some(action) = &r.action {
                actions.insert(key(action.as_bytes(), r.index), &[]);
            }
            kinds.insert(key(&[kind], r.index), &[]);
            times.insert(key(r.time.as_bytes(), r.index), &[kind]);
        }
        self.barcodes.apply_batch(barcodes).map_err(err)?;
        self.actions.apply_batch(actions).map_err(err)?;
        self.kinds.apply_batch(kinds).map_err(err)?;
        self.times.apply_batch(times).map_err(err)?;
        Ok(())
    }

    /// Records that the index holds every entry of the tree of `size` with `root`.
    pub fn mark_built(&self, size: u64, root: &Hash) -> Result<(), String> {
        self.db
            .insert(META_FORMAT, &FORMAT.to_be_bytes())
            .map_err(err)?;
        self.db
            .insert(META_SIZE, &size.to_be_bytes())
            .map_err(err)?;
        self.db.insert(META_ROOT, root.as_slice()).map_err(err)?;
        Ok(())
    }

    /// Empties the index.
    pub fn clear(&self) -> Result<(), String> {
        for t in [&self.barcodes, &self.actions, &self.kinds, &self.times] {
            t.clear().map_err(err)?;
        }
        for k in [META_FORMAT, META_SIZE, META_ROOT] {
            self.db.remove(k).map_err(err)?;
        }
        Ok(())
    }

    fn prefixed(tree: &sled::Tree, prefix: &[u8]) -> Result<Vec<u64>, String> {
        tree.scan_prefix(prefix)
            .keys()
            .map(|k| index_of(&k.map_err(err)?))
            .collect()
    }

    /// The indexes of the entries with `barcode`.
    pub fn by_barcode(&self, barcode: &str) -> Result<Vec<u64>, String> {
        Self::prefixed(&self.barcodes, barcode.as_bytes())
    }

    /// The indexes of the entries of action `action`.
    pub fn by_action(&self, action: &str) -> Result<Vec<u64>, String> {
        Self::prefixed(&self.actions, action.as_bytes())
    }

    /// Up to `limit` indexes of entries after index `after` (all when `None`) that match
    /// `filter`, in order. `after_time` is the time of entry `after`: time scans start
    /// there. Without a kind or a time in the filter, use the index range itself.
    pub fn query(
        &self,
        filter: &Filter,
        after: Option<u64>,
        after_time: Option<&str>,
        limit: usize,
    ) -> Result<Vec<u64>, String> {
        let first = after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        if filter.since.is_some() || filter.until.is_some() {
            let since = filter.since.as_deref().unwrap_or("");
            let mut lower = key(since.as_bytes(), 0);
            if let Some(t) = after_time.filter(|t| *t >= since) {
                lower = key(t.as_bytes(), first);
            }
            let range = match &filter.until {
                Some(u) => self.times.range(lower..key(u.as_bytes(), 0)),
                None => self.times.range(lower..),
            };
            for kv in range {
                let (k, v) = kv.map_err(err)?;
                let index = index_of(&k)?;
                let kind = kind_of(*v.first().ok_or("journal index: an empty time value")?)?;
                if index >= first && filter.kind.is_none_or(|want| want == kind) {
                    out.push(index);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        } else if let Some(kind) = filter.kind {
            let b = kind_byte(kind);
            for k in self
                .kinds
                .range(key(&[b], first)..key(&[b], u64::MAX))
                .keys()
            {
                out.push(index_of(&k.map_err(err)?)?);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Checks that the index was built for a tree of `size` with `root` and holds every
    /// key of the `samples` records (a sample spread over the journal: a full pass over
    /// sled costs far more than the audit of the segments themselves; a full rebuild is
    /// `--rebuild-index`). Returns what disagrees first.
    pub fn verify(&self, samples: &[IndexRecord], size: u64, root: &Hash) -> Result<(), String> {
        match self.built_for() {
            Some((s, r)) if s == size && r == *root => {}
            Some((s, _)) => return Err(format!("built for {s} entries, the journal holds {size}")),
            None => return Err("never built, or built by another version".into()),
        }
        for r in samples {
            let kind = kind_byte(r.kind);
            let missing = |what: &str| Err(format!("entry {} is missing {what}", r.index));
            if !self
                .barcodes
                .contains_key(key(r.barcode.as_bytes(), r.index))
                .map_err(err)?
            {
                return missing(&format!("under barcode {}", r.barcode));
            }
            if let Some(a) = &r.action {
                if !self
                    .actions
                    .contains_key(key(a.as_bytes(), r.index))
                    .map_err(err)?
                {
                    return missing(&format!("under action {a}"));
                }
            }
            if !self
                .kinds
                .contains_key(key(&[kind], r.index))
                .map_err(err)?
            {
                return missing(&format!("under kind {}", r.kind.as_str()));
            }
            let t = self
                .times
                .get(key(r.time.as_bytes(), r.index))
                .map_err(err)?;
            if t.as_deref() != Some(&[kind][..]) {
                return missing(&format!("under time {}", r.time));
            }
        }
        Ok(())
    }

    /// Writes sled's buffers out (not a durability promise: the index is derived).
    pub fn flush(&self) {
        let _ = self.db.flush();
    }
}
