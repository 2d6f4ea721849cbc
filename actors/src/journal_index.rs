//! The journal's derived index in sled: entries by barcode, and the tree size and root it
//! was built for. sled does not make writes durable on its own, so nothing lives only
//! here: the index is checked against the segments at every start and rebuilt from them
//! when it is missing or disagrees.

use axon_protocols::merkle::Hash;
use std::path::Path;

/// The index of one shard.
pub struct JournalIndex {
    db: sled::Db,
    barcodes: sled::Tree,
}

const META_SIZE: &[u8] = b"size";
const META_ROOT: &[u8] = b"root";

fn err(e: sled::Error) -> String {
    format!("journal index: {e}")
}

fn key(barcode: &str, index: u64) -> Vec<u8> {
    let mut k = barcode.as_bytes().to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

impl JournalIndex {
    /// Opens (or creates) the index at `dir`; sled's page cache is bounded by `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, String> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(err)?;
        let barcodes = db.open_tree("by_barcode").map_err(err)?;
        Ok(Self { db, barcodes })
    }

    /// The tree size and root the index was last brought up to.
    pub fn built_for(&self) -> Option<(u64, Hash)> {
        let size = self.db.get(META_SIZE).ok()??;
        let root = self.db.get(META_ROOT).ok()??;
        Some((
            u64::from_be_bytes(size.as_ref().try_into().ok()?),
            root.as_ref().try_into().ok()?,
        ))
    }

    /// Adds entries `(barcode, index)` and records the new size and root.
    pub fn add(&self, entries: &[(String, u64)], size: u64, root: &Hash) -> Result<(), String> {
        let mut batch = sled::Batch::default();
        for (code, index) in entries {
            batch.insert(key(code, *index), &[]);
        }
        self.barcodes.apply_batch(batch).map_err(err)?;
        self.db
            .insert(META_SIZE, &size.to_be_bytes())
            .map_err(err)?;
        self.db.insert(META_ROOT, root.as_slice()).map_err(err)?;
        Ok(())
    }

    /// Empties the index.
    pub fn clear(&self) -> Result<(), String> {
        self.barcodes.clear().map_err(err)?;
        self.db.remove(META_SIZE).map_err(err)?;
        self.db.remove(META_ROOT).map_err(err)?;
        Ok(())
    }

    /// The indexes of the entries with `barcode`.
    pub fn lookup(&self, barcode: &str) -> Result<Vec<u64>, String> {
        self.barcodes
            .scan_prefix(barcode.as_bytes())
            .keys()
            .map(|k| {
                let k = k.map_err(err)?;
                let tail: [u8; 8] = k[k.len().saturating_sub(8)..]
                    .try_into()
                    .map_err(|_| "journal index: a short key".to_owned())?;
                Ok(u64::from_be_bytes(tail))
            })
            .collect()
    }

    /// Checks that the index was built for a tree of `size` with `root` and holds a sample
    /// of up to `samples` of the `expected` (barcode, index) pairs, spread evenly. (A full
    /// pass over sled costs far more than the audit of the segments themselves; a full
    /// rebuild is `--rebuild-index`.) Returns what disagrees first.
    pub fn verify(
        &self,
        expected: &[(String, u64)],
        size: u64,
        root: &Hash,
        samples: usize,
    ) -> Result<(), String> {
        match self.built_for() {
            Some((s, r)) if s == size && r == *root => {}
            Some((s, _)) => return Err(format!("built for {s} entries, the journal holds {size}")),
            None => return Err("never built".into()),
        }
        let step = (expected.len() / samples.max(1)).max(1);
        for (code, index) in expected.iter().step_by(step) {
            if !self.barcodes.contains_key(key(code, *index)).map_err(err)? {
                return Err(format!("entry {index} is missing under barcode {code}"));
            }
        }
        Ok(())
    }

    /// Writes sled's buffers out (not a durability promise: the index is derived).
    pub fn flush(&self) {
        let _ = self.db.flush();
    }
}
