//! The journal's derived index in sled: entries by kind, and the tree size and root it was
//! built for. (Barcodes and actions need none: a barcode is the first 60 bits of a leaf
//! hash, and the journal's in-memory log holds every leaf hash in a table by those bits;
//! start-up reads every entry's head, action included, so the log files each entry under
//! its action as it loads it, and the commit thread as it writes it, which costs less than
//! sled's two writes per action.) sled does not make writes durable on its
//! own, so nothing lives only here: the index is checked against the segments at every
//! start, caught up or rebuilt from them when it lags, is missing or disagrees.
//!
//! Owns: the sled trees and their keys. Must never: be the only place anything lives, or
//! be trusted by a reader without checking each hit against the entry it names.
//!
//! ```text
//! by_kind     kind (1 byte) ‖ block (8, big endian)         → 256-bit map of the block's
//!                                                             entries of that kind
//! ```
//!
//! A block is 256 consecutive entries. sled's cost is per key, so kinds (a handful of
//! values over every entry) are kept as one bitmap per kind and block rather than a key
//! per entry. There is no index by time: entry times never decrease along the log (the
//! journal enforces it), so the log itself is ordered by time and a binary search over it
//! finds a time.

use axon_protocols::journal::{EntryHead, EntryKind, KINDS};
use axon_protocols::merkle::Hash;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Entries per kind bitmap.
pub const BLOCK: u64 = 256;

/// What the index records of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRecord {
    pub index: u64,
    pub kind: EntryKind,
}

impl IndexRecord {
    /// What the index records of `entry`.
    pub fn of(entry: EntryHead) -> Self {
        Self {
            index: entry.index,
            kind: entry.kind,
        }
    }
}

/// The index of one shard.
pub struct JournalIndex {
    dir: PathBuf,
    cache_bytes: u64,
    db: sled::Db,
    kinds: sled::Tree,
}

const META_SIZE: &[u8] = b"size";
const META_ROOT: &[u8] = b"root";
const META_FORMAT: &[u8] = b"format";
/// The layout above; an index of another format is rebuilt. (Format 5 also kept entries by
/// action: a version that reads it must not take this one's for its own.)
const FORMAT: u64 = 6;

/// How long opening the index waits for the lock of a handle being let go of. A dropped
/// handle keeps its lock file open while sled's shared IO threads still hold writes of it
/// in their queue, and those queues serve every sled database of the process: on a busy
/// disk that has been seen to take more than 5 s.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

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

/// A kind's byte in the index: its position in [`KINDS`] (new kinds go at its end).
fn kind_byte(kind: EntryKind) -> u8 {
    KINDS.iter().position(|k| *k == kind).expect("every kind") as u8
}

type Bitmap = [u8; (BLOCK / 8) as usize];

fn bitmap(v: Option<sled::IVec>) -> Result<Bitmap, String> {
    match v {
        None => Ok([0; (BLOCK / 8) as usize]),
        Some(v) => v
            .as_ref()
            .try_into()
            .map_err(|_| "journal index: a kind bitmap of the wrong length".to_owned()),
    }
}

impl JournalIndex {
    /// Opens (or creates) the index at `dir`; sled's page cache is bounded by `cache_bytes`.
    /// A handle of the same index let go of just before (a reopen, a restart) still holds
    /// its lock until sled's deferred destruction runs, which happens only as crossbeam's
    /// epoch moves on, and until sled's IO threads have written what they hold of it: the
    /// lock is waited for, moving the epoch, at most [`LOCK_WAIT`].
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, String> {
        let started = std::time::Instant::now();
        let db = loop {
            match sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                .open()
            {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        && started.elapsed() < LOCK_WAIT =>
                {
                    for _ in 0..4 {
                        crossbeam_epoch::pin().flush();
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(format!(
                        "journal index: {} is still locked after {} s (another process, or a handle of this one, holds it): {e}",
                        dir.display(),
                        LOCK_WAIT.as_secs()
                    ))
                }
                Err(e) => return Err(err(e)),
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            cache_bytes,
            kinds: db.open_tree("by_kind").map_err(err)?,
            db,
        })
    }

    /// Deletes the index and opens an empty one in its place (faster than removing every
    /// key).
    pub fn recreate(self) -> Result<Self, String> {
        let (dir, cache) = (self.dir.clone(), self.cache_bytes);
        drop(self);
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("journal index: removing {}: {e}", dir.display()))?;
        Self::open(&dir, cache)
    }

    /// Writes the index out, closes it and opens it again: sled holds on to memory while
    /// it takes many writes, far beyond its cache bound, and gives it back only when
    /// closed.
    pub fn reopen(self) -> Result<Self, String> {
        self.db.flush().map_err(err)?;
        let (dir, cache) = (self.dir.clone(), self.cache_bytes);
        drop(self);
        Self::open(&dir, cache)
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

    /// Adds entries, in index order (then [`mark_built`](Self::mark_built) says up to
    /// where).
    pub fn add(&self, records: &[IndexRecord]) -> Result<(), String> {
        let mut maps: BTreeMap<Vec<u8>, Bitmap> = BTreeMap::new();
        for r in records {
            let k = key(&[kind_byte(r.kind)], r.index / BLOCK);
            let map = match maps.get_mut(&k) {
                Some(m) => m,
                None => {
                    let m = bitmap(self.kinds.get(&k).map_err(err)?)?;
                    maps.entry(k).or_insert(m)
                }
            };
            let bit = (r.index % BLOCK) as usize;
            map[bit / 8] |= 1 << (bit % 8);
        }
        let mut kinds = sled::Batch::default();
        for (k, m) in maps {
            kinds.insert(k, &m[..]);
        }
        self.kinds.apply_batch(kinds).map_err(err)?;
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

    /// Up to `limit` indexes of entries of `kind` in `from..to`, in order.
    pub fn by_kind(
        &self,
        kind: EntryKind,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<u64>, String> {
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        let b = kind_byte(kind);
        let range = key(&[b], from / BLOCK)..=key(&[b], (to - 1) / BLOCK);
        for kv in self.kinds.range(range) {
            let (k, v) = kv.map_err(err)?;
            let block = index_of(&k)?;
            let map = bitmap(Some(v))?;
            for bit in 0..BLOCK {
                let index = block * BLOCK + bit;
                if map[(bit / 8) as usize] & (1 << (bit % 8)) != 0 && index >= from && index < to {
                    out.push(index);
                    if out.len() >= limit {
                        return Ok(out);
                    }
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
            let found = self.by_kind(r.kind, r.index, r.index + 1, 1)?;
            if found != [r.index] {
                return Err(format!(
                    "entry {} is missing under kind {}",
                    r.index,
                    r.kind.as_str()
                ));
            }
        }
        Ok(())
    }

    /// Writes sled's buffers out (not a durability promise: the index is derived).
    pub fn flush(&self) {
        let _ = self.db.flush();
    }
}
