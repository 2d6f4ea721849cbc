//! The journal's in-memory log: the Merkle tree over the entries, where each entry's bytes
//! are (segment, offset, length), the table from barcode to index (which also finds an
//! entry by its leaf hash, the barcode being that hash's first 60 bits), the table from
//! action to its entries, the segment files to read them from, and how many entries are
//! durable.
//!
//! Owns: keeping those parts in agreement. Every push and truncate asserts that they hold
//! the same entries, so a bug that would make a lookup name the wrong entry stops here.
//! Must never: do IO (it holds the files, it does not read them), or let a reader see an
//! entry whose commit is not durable (readers ask [`Log::durable`] first).
//!
//! One `Log` is shared by the commit thread, which alone changes it, and the readers,
//! behind a read-write lock held only for the moment a lookup or a push takes: no lock is
//! held across IO.

use axon_protocols::journal::barcode_bits;
use axon_protocols::merkle::{Blake3, Hash, MerkleLog, ProofError};
use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, RwLock};

/// Where an entry's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Location {
    pub segment: u32,
    /// Offset of the entry's bytes (after the record header).
    pub offset: u64,
    pub len: u32,
}

/// Hashes leaf hashes (already uniformly random) by their first 8 bytes.
#[derive(Clone, Copy, Default)]
pub(super) struct LeafHasher(u64);

impl std::hash::Hasher for LeafHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 = u64::from_le_bytes(first);
    }

    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(super) type ByLeaf = HashMap<Hash, u64, std::hash::BuildHasherDefault<LeafHasher>>;

/// Hashes barcode bits (60 random bits, the top 4 always clear) by multiplying them out
/// over the whole word, so the table's tag bits are random too.
#[derive(Clone, Copy, Default)]
pub(super) struct BitsHasher(u64);

impl std::hash::Hasher for BitsHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// From barcode bits to the first entry with them.
type ByBarcode = HashMap<u64, u64, std::hash::BuildHasherDefault<BitsHasher>>;

/// From an action's key ([`action_key`]) to its first two entries ([`NO_ENTRY`] where it
/// has one): an action has a dispatch and a result, so two slots hold nearly every one.
type ByAction = HashMap<u64, [u64; 2], std::hash::BuildHasherDefault<BitsHasher>>;

/// An empty slot of [`ByAction`].
const NO_ENTRY: u64 = u64::MAX;

/// The key an action is filed under in the log: the two halves of its id (16 random bytes:
/// it is derived by hashing) folded together. Two actions may share a key, so every
/// lookup checks the entries it finds against the action asked for. `None` for what is
/// not an action id.
pub(super) fn action_key(action: &str) -> Option<u64> {
    let raw = axon_protocols::journal::parse_hex::<16>(action)?;
    let half = |h: &[u8]| u64::from_be_bytes(h.try_into().expect("8 bytes"));
    Some(half(&raw[..8]) ^ half(&raw[8..]))
}

/// The log, as the commit thread builds it and readers read it.
#[derive(Default)]
pub(super) struct Log {
    tree: MerkleLog<Blake3>,
    locations: Vec<Location>,
    /// Barcode bits to the first entry with them: a barcode's lookup, and, checked against
    /// the tree's leaf, a leaf hash's.
    by_barcode: ByBarcode,
    /// The later entries whose barcode an earlier entry already has, in order (60 bits
    /// make this all but empty, but a lookup must never miss one).
    shared_barcodes: HashMap<u64, Vec<u64>>,
    shared_count: usize,
    /// The entries of each action, by its key (about 30 bytes per action).
    by_action: ByAction,
    /// The third and later entries filed under a key, in order.
    later_of_action: HashMap<u64, Vec<u64>>,
    /// The entries with an action that are not durable yet, with their keys: what a
    /// truncate takes out of the action table.
    undurable_actions: Vec<(u64, u64)>,
    /// The segment files in order, open to read.
    files: Vec<Arc<File>>,
    /// Entries whose commit record is durable: the only ones a reader sees.
    durable: u64,
}

/// The log shared between the commit thread and the readers.
pub(super) type SharedLog = Arc<RwLock<Log>>;

/// Reads the shared log; a panic elsewhere while it was held leaves it as consistent as
/// the paired assertions left it, so a poisoned lock is read on.
pub(super) fn read(log: &SharedLog) -> std::sync::RwLockReadGuard<'_, Log> {
    log.read().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn write(log: &SharedLog) -> std::sync::RwLockWriteGuard<'_, Log> {
    log.write().unwrap_or_else(|e| e.into_inner())
}

impl Log {
    /// Room for `entries` more, so the tables are not grown and copied while they fill.
    pub fn reserve(&mut self, entries: usize) {
        self.locations.reserve(entries);
        self.by_barcode.reserve(entries);
    }

    /// Entries in the log, durable or not.
    pub fn len(&self) -> u64 {
        self.tree.len() as u64
    }

    /// Entries whose commit is durable.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Adds a segment file; entries name it by its position.
    pub fn add_file(&mut self, file: Arc<File>) {
        self.files.push(file);
    }

    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Appends an entry (not yet durable), filed under `action` (its key) when it belongs
    /// to one.
    pub fn push(&mut self, leaf: Hash, at: Location, action: Option<u64>) {
        assert!(
            (at.segment as usize) < self.files.len(),
            "entry in segment {} of {}",
            at.segment,
            self.files.len()
        );
        let index = self.len();
        assert!(
            self.index_of(&leaf).is_none(),
            "two entries with one leaf hash"
        );
        let bits = barcode_bits(&leaf);
        if let std::collections::hash_map::Entry::Vacant(v) = self.by_barcode.entry(bits) {
            v.insert(index);
        } else {
            self.shared_barcodes.entry(bits).or_default().push(index);
            self.shared_count += 1;
        }
        if let Some(key) = action {
            match self.by_action.entry(key) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert([index, NO_ENTRY]);
                }
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    let slots = o.get_mut();
                    if slots[1] == NO_ENTRY {
                        slots[1] = index;
                    } else {
                        self.later_of_action.entry(key).or_default().push(index);
                    }
                }
            }
            self.undurable_actions.push((index, key));
        }
        self.tree.push(leaf);
        self.locations.push(at);
        self.assert_agree();
    }

    /// Takes entry `index`, the newest filed under `key`, out of the action table.
    fn unfile_action(&mut self, index: u64, key: u64) {
        if let Some(later) = self.later_of_action.get_mut(&key) {
            assert_eq!(
                later.pop(),
                Some(index),
                "entry {index} not last of its action"
            );
            if later.is_empty() {
                self.later_of_action.remove(&key);
            }
            return;
        }
        let slots = self
            .by_action
            .get_mut(&key)
            .unwrap_or_else(|| panic!("entry {index} not in the action table"));
        if slots[1] == NO_ENTRY {
            assert_eq!(slots[0], index, "entry {index} not in the action table");
            self.by_action.remove(&key);
        } else {
            assert_eq!(slots[1], index, "entry {index} not last of its action");
            slots[1] = NO_ENTRY;
        }
    }

    /// Forgets the entries from `size` on: only ones that are not durable.
    pub fn truncate(&mut self, size: u64) {
        assert!(
            size >= self.durable,
            "cutting durable entries ({size} < {})",
            self.durable
        );
        // Newest first: an entry sharing its barcode is the last of its list.
        for i in (size..self.len()).rev() {
            let bits = barcode_bits(&self.tree.leaf(i as usize).expect("in range"));
            match self.shared_barcodes.get_mut(&bits) {
                Some(later) if later.last() == Some(&i) => {
                    later.pop();
                    if later.is_empty() {
                        self.shared_barcodes.remove(&bits);
                    }
                    self.shared_count -= 1;
                }
                _ => assert_eq!(
                    self.by_barcode.remove(&bits),
                    Some(i),
                    "entry {i} not in the table"
                ),
            }
        }
        while let Some(&(index, key)) = self.undurable_actions.last() {
            if index < size {
                break;
            }
            self.undurable_actions.pop();
            self.unfile_action(index, key);
        }
        self.tree.truncate(size as usize);
        self.locations.truncate(size as usize);
        self.assert_agree();
    }

    /// Marks the first `size` entries durable (their commit record is on disk).
    pub fn mark_durable(&mut self, size: u64) {
        assert!(
            size >= self.durable && size <= self.len(),
            "durable {size} outside {}..={}",
            self.durable,
            self.len()
        );
        self.durable = size;
        self.undurable_actions.retain(|(index, _)| *index >= size);
    }

    fn assert_agree(&self) {
        assert_eq!(self.tree.len(), self.locations.len(), "tree and locations");
        assert_eq!(
            self.tree.len(),
            self.by_barcode.len() + self.shared_count,
            "tree and barcode table"
        );
    }

    /// The leaf hash of entry `index`, if the log holds it.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.tree.leaf(usize::try_from(index).ok()?)
    }

    /// Where entry `index` is, and the file that holds it.
    pub fn location(&self, index: u64) -> Option<(Location, Arc<File>, Hash)> {
        let at = *self.locations.get(usize::try_from(index).ok()?)?;
        let file = self.files[at.segment as usize].clone();
        Some((at, file, self.leaf(index)?))
    }

    /// The index of the entry with this leaf hash.
    pub fn index_of(&self, leaf: &Hash) -> Option<u64> {
        self.with_barcode_bits(barcode_bits(leaf))
            .find(|i| self.leaf(*i).as_ref() == Some(leaf))
    }

    /// The indexes of the entries whose barcode spells `bits`, in order (durable or not).
    pub fn with_barcode_bits(&self, bits: u64) -> impl Iterator<Item = u64> + '_ {
        let first = self.by_barcode.get(&bits).copied();
        let later = self
            .shared_barcodes
            .get(&bits)
            .into_iter()
            .flatten()
            .copied();
        first.into_iter().chain(later)
    }

    /// The indexes of the entries filed under `key` ([`action_key`]), in order (durable or
    /// not; of every action with that key).
    pub fn with_action_key(&self, key: u64) -> impl Iterator<Item = u64> + '_ {
        let first = self.by_action.get(&key).copied().unwrap_or([NO_ENTRY; 2]);
        let later = self
            .later_of_action
            .get(&key)
            .into_iter()
            .flatten()
            .copied();
        first.into_iter().filter(|i| *i != NO_ENTRY).chain(later)
    }

    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.tree.root_at(size as usize)
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.tree.inclusion_proof(index as usize, size as usize)
    }

    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
        self.tree.consistency_proof(from as usize, to as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with_file() -> Log {
        let mut log = Log::default();
        log.add_file(Arc::new(tempfile::tempfile().unwrap()));
        log
    }

    fn at(offset: u64) -> Location {
        Location {
            segment: 0,
            offset,
            len: 1,
        }
    }

    #[test]
    fn parts_agree_through_push_truncate_and_durability() {
        let mut log = log_with_file();
        for i in 0..5u8 {
            log.push([i; 32], at(u64::from(i)), None);
        }
        log.mark_durable(3);
        assert_eq!((log.len(), log.durable()), (5, 3));
        log.truncate(3);
        assert_eq!(log.index_of(&[2; 32]), Some(2));
        assert_eq!(log.index_of(&[4; 32]), None);
        assert_eq!(log.location(2).unwrap().0, at(2));
        assert!(log.location(3).is_none());
    }

    #[test]
    fn entries_that_share_a_barcode_are_all_found_and_cut_newest_first() {
        let mut log = log_with_file();
        // Three leaves with the same first 60 bits (so one barcode), one with others.
        let leaf = |last: u8, low: u8| {
            let mut l = [7u8; 32];
            l[7] = 0x70 | low;
            l[31] = last;
            l
        };
        let (a, b, c, other) = (leaf(1, 0), leaf(2, 1), leaf(3, 2), [9u8; 32]);
        for (i, l) in [a, other, b, c].into_iter().enumerate() {
            log.push(l, at(i as u64), None);
        }
        let bits = barcode_bits(&a);
        assert_eq!(
            log.with_barcode_bits(bits).collect::<Vec<_>>(),
            vec![0, 2, 3]
        );
        assert_eq!(
            [a, other, b, c].map(|l| log.index_of(&l)),
            [Some(0), Some(1), Some(2), Some(3)]
        );
        assert_eq!(log.index_of(&leaf(4, 3)), None);
        log.truncate(2);
        assert_eq!(log.with_barcode_bits(bits).collect::<Vec<_>>(), vec![0]);
        assert_eq!(log.index_of(&b), None);
        log.truncate(0);
        assert_eq!(log.with_barcode_bits(bits).count(), 0);
        // And they come back in the same places.
        for (i, l) in [a, b].into_iter().enumerate() {
            log.push(l, at(i as u64), None);
        }
        assert_eq!(log.with_barcode_bits(bits).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    #[should_panic(expected = "cutting durable entries")]
    fn durable_entries_are_never_cut() {
        let mut log = log_with_file();
        log.push([1; 32], at(0), None);
        log.mark_durable(1);
        log.truncate(0);
    }

    #[test]
    #[should_panic(expected = "two entries with one leaf hash")]
    fn one_leaf_names_one_entry() {
        let mut log = log_with_file();
        log.push([1; 32], at(0), None);
        log.push([1; 32], at(1), None);
    }

    /// The action table against a list of (entry, key) through random pushes, durable
    /// marks and truncates: a lookup finds exactly the entries filed under its key, in
    /// order, whatever was cut before.
    #[test]
    fn the_action_table_holds_exactly_the_entries_of_each_key() {
        fn prop(ops: Vec<(u8, u8)>) -> bool {
            let mut log = log_with_file();
            let mut model: Vec<Option<u64>> = vec![];
            for (n, (op, arg)) in ops.into_iter().enumerate() {
                match op % 8 {
                    0..=5 => {
                        // Four keys (so most have three entries or more), or none.
                        let key = (arg % 5 != 4).then_some(u64::from(arg % 5));
                        let mut leaf = [0u8; 32];
                        leaf[..8].copy_from_slice(&(n as u64).to_le_bytes());
                        log.push(leaf, at(n as u64), key);
                        model.push(key);
                    }
                    6 => {
                        let len = log.len();
                        let size = log.durable() + u64::from(arg) % (len - log.durable() + 1);
                        log.mark_durable(size);
                    }
                    _ => {
                        let d = log.durable();
                        let size = d + u64::from(arg) % (log.len() - d + 1);
                        log.truncate(size);
                        model.truncate(size as usize);
                    }
                }
                for key in 0..5u64 {
                    let want: Vec<u64> = (0..model.len() as u64)
                        .filter(|i| model[*i as usize] == Some(key))
                        .collect();
                    if log.with_action_key(key).collect::<Vec<_>>() != want {
                        return false;
                    }
                }
            }
            true
        }
        quickcheck::QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<(u8, u8)>) -> bool);
    }

    #[test]
    fn an_action_id_folds_to_its_key_and_nothing_else_does() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            action_key(id),
            Some(0x0123456789abcdef ^ 0x0123456789abcdef)
        );
        assert_ne!(
            action_key(&format!("{:032x}", 0)),
            action_key(&format!("{:032x}", 1))
        );
        assert_eq!(action_key("0123"), None);
        assert_eq!(action_key(&"z".repeat(32)), None);
    }
}
