//! The journal: Axon's source of truth. Entries go to append-only segment files owned by
//! Axon, in group commits: every batch of appends is written with a commit record and made
//! durable with one `fdatasync` before any append in it is acknowledged. A Merkle log over
//! the entries gives inclusion and consistency proofs, and signed checkpoints.
//!
//! Layout of `<dir>`:
//!
//! ```text
//! node.key                          Ed25519 signing key (PKCS#8, mode 0600)
//! shard-0/00000000000000000000.seg  a segment, named by the index of its first entry
//! shard-0.checkpoints               every signed checkpoint the journal issued, in order
//! index-shard-0/                    the derived sled indexes
//! ```
//!
//! The checkpoint log holds, in the segments' record framing, each signed checkpoint (a
//! C2SP signed note) the journal wrote down or handed out: one every
//! `head_every_commits` group commits, one when it stops, and each one served — made
//! durable before it is served. At open each is checked against the tree; one that records
//! more entries than the segments hold, or another root, is tamper: a crash cannot cause
//! it, since a checkpoint is issued only for durable entries.
//!
//! At start every segment is read and checked: checksums, canonical entries, indexes in
//! order, links to earlier entries, and each commit record's size and root. A torn tail —
//! whatever follows the last intact commit record of the last segment, when no intact
//! commit record follows the damage — was never acknowledged and is cut off with a warning.
//! Any other damage is tamper: the journal refuses to open and names the first bad record.
//!
//! A write or `fdatasync` error halts the journal for good: appends are refused (the node
//! turns unready) and nothing is retried, since the kernel may have dropped the pages.

use crate::journal_index::{IndexRecord, JournalIndex};
use crate::journal_indexer::{index_now, Indexer};
use axon_protocols::checkpoint::{Checkpoint, Signer};
use axon_protocols::journal::{
    self as format, action_of, barcode, begin_record, encode_commit, encode_record, entry_id,
    find_commit_after, find_record_after, finish_record, leaf_hash, read_record, Entry, EntryError,
    EntryHead, EntryKind, EntryParts, RecordRead,
};
use axon_protocols::merkle::{Blake3, Hash, MerkleLog};
use axon_supervisors::{SharedClock, Worker, WorkerContext, WorkerError};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The largest signed checkpoint the checkpoint log takes (they are about 250 bytes).
const MAX_CHECKPOINT_BYTES: usize = 4096;

/// The journal's limits and place.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// `<data-dir>/journal`.
    pub dir: PathBuf,
    pub shard: u32,
    /// The signer's name in signed notes and the start of the checkpoint origin.
    pub key_name: String,
    /// A new segment starts once the current one would grow past this.
    pub segment_max_bytes: u64,
    /// Largest canonical entry accepted.
    pub max_entry_bytes: usize,
    /// Most links one entry may carry.
    pub max_links: usize,
    /// Most appends in one group commit.
    pub batch_max_records: usize,
    /// How long the first append of a group commit may wait for more to join it.
    pub batch_max_wait: std::time::Duration,
    /// A signed checkpoint is added to the checkpoint log after this many group commits,
    /// and when the journal stops.
    pub head_every_commits: u64,
    /// The bound of the sled index's page cache.
    pub index_cache_bytes: u64,
    /// sled keeps memory while it takes writes, far beyond its cache bound, until it is
    /// closed: the index is reopened after this many entries are written to it.
    pub index_reopen_entries: u64,
    /// Most entries one query answers with.
    pub page_max_entries: usize,
    /// A query's page ends once its entries' bytes reach this (it holds at least one).
    pub page_max_bytes: usize,
    /// Most entries one query reads from the segments where the index does not reach; the
    /// page then ends early, and `next_after` says where to go on.
    pub page_scan_max_entries: usize,
}

/// An append request.
#[derive(Clone, Debug)]
pub struct NewEntry {
    pub kind: EntryKind,
    /// Ids of earlier entries.
    pub links: Vec<String>,
    pub body: Value,
}

/// What the journal is asked.
#[derive(Clone, Debug)]
pub enum JournalRequest {
    Append(NewEntry),
    Entry(u64),
    /// The entry with this id (its leaf hash in hex).
    ById(String),
    ByBarcode(String),
    /// The entries of an action.
    ByAction(String),
    /// Up to `limit` entries after index `after` that match `filter`, in order.
    Query {
        filter: Filter,
        after: Option<u64>,
        limit: usize,
    },
    Inclusion {
        index: u64,
        size: u64,
    },
    Consistency {
        from: u64,
        to: u64,
    },
    /// The latest signed checkpoint.
    Checkpoint,
    /// The verifier key.
    Key,
}

/// What the journal answers.
#[derive(Clone, Debug)]
pub enum JournalResponse {
    Appended(Appended),
    Entry(StoredEntry),
    Entries(Vec<StoredEntry>),
    /// A page of a query: the entries, and the index to continue after when there may be
    /// more.
    Page {
        entries: Vec<StoredEntry>,
        next_after: Option<u64>,
    },
    Inclusion(InclusionProof),
    Consistency(ConsistencyProof),
    /// A signed note.
    Checkpoint(String),
    Key(String),
    Refused(Refusal),
}

/// An acknowledged append.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Appended {
    pub index: u64,
    pub id: String,
    pub barcode: String,
}

/// An entry as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEntry {
    pub index: u64,
    pub id: String,
    pub kind: EntryKind,
    pub barcode: String,
    pub leaf_hash: String,
    /// The canonical bytes.
    pub bytes: Vec<u8>,
    pub links: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub root: String,
    pub proof: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsistencyProof {
    pub size1: u64,
    pub size2: u64,
    pub root1: String,
    pub root2: String,
    pub proof: Vec<String>,
}

/// Why the journal did not do what it was asked. Each maps to one problem type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the journal is halted and takes no writes: {0}")]
    Halted(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadLink(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the stored entry {0} no longer matches its hash: the journal is damaged")]
    Damaged(u64),
    /// Answering now would take too long; later it will not.
    #[error("{0}")]
    Busy(String),
    /// The entry has no canonical form, so it could not be read back: nothing is
    /// appended. Its path is a JSON Pointer into the entry (`/body/...`).
    #[error("the entry has no canonical form: {0}")]
    NotCanonical(axon_protocols::canonical::CanonicalError),
}

/// Shared with the node: set once a write failed, never cleared.
#[derive(Default)]
pub struct Halt {
    halted: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Halt {
    pub fn is_halted(&self) -> bool {
        self.halted.load(Ordering::Acquire)
    }

    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops all further writes, for good.
    pub fn halt(&self, reason: String) {
        tracing::error!(%reason, "journal halted: no more writes until the node is restarted and audited");
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        self.halted.store(true, Ordering::Release);
    }
}

/// Why the journal cannot open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tamper: {0}")]
    Tamper(String),
    #[error("{0}")]
    Key(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

struct Segment {
    path: PathBuf,
    file: File,
}

/// A staged append.
#[derive(Clone, Copy)]
struct Staged {
    leaf: Hash,
    /// Length of the entry's bytes.
    len: u32,
    /// Offset of the entry's bytes in the batch.
    at: usize,
}

#[derive(Clone, Copy)]
struct Location {
    segment: u32,
    /// Offset of the entry's bytes (after the record header).
    offset: u64,
    len: u32,
}

/// What start-up found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub entries: u64,
    pub segments: usize,
    /// Bytes of a torn tail cut off the last segment, and where.
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// Bytes of a torn checkpoint record cut off the end of the checkpoint log, and where.
    pub torn_checkpoint: Option<(PathBuf, u64, u64)>,
    /// The files the cut bytes were moved to (next to the file they were cut from), so
    /// that nothing is destroyed: `<file>.torn-at-<offset>`.
    pub set_aside: Vec<PathBuf>,
    /// The size the sled index was built for at open; the index thread catches up from
    /// there (0 when it was missing, stale or of another format).
    pub index_from: u64,
}

/// Which entries a query asks for; `since` and `until` are times in the journal's form,
/// `since` inclusive and `until` exclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub kind: Option<EntryKind>,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// A page of query results, bounded in entries and bytes.
struct Page {
    entries: Vec<StoredEntry>,
    bytes: usize,
    limit: usize,
    max_bytes: usize,
}

impl Page {
    /// Adds an entry; false once the page is full.
    fn push(&mut self, e: StoredEntry) -> bool {
        self.bytes += e.bytes.len();
        self.entries.push(e);
        !self.is_full()
    }

    fn is_full(&self) -> bool {
        self.entries.len() >= self.limit || self.bytes >= self.max_bytes
    }
}

/// A record read at `offset` and, for an entry, its leaf hash and parsed entry: the checks
/// that need no other record.
struct Prechecked<'a> {
    offset: usize,
    read: RecordRead<'a>,
    entry: Option<(Hash, Result<EntryHead, format::EntryError>)>,
}

/// Records checked ahead at once.
const PRECHECK_RECORDS: usize = 16_384;

/// Checks up to [`PRECHECK_RECORDS`] records from `from` on up to `threads` threads: their
/// checksums, leaf hashes and canonical entries. Stops before the first record whose
/// framing does not hold (a length beyond the data or the limit): the caller reads that
/// one itself. Also returns where the records it checked end.
fn precheck(data: &[u8], from: usize, max: usize, threads: usize) -> (Vec<Prechecked<'_>>, usize) {
    let mut offsets = Vec::new();
    let mut o = from;
    while offsets.len() < PRECHECK_RECORDS && o + format::RECORD_HEADER <= data.len() {
        let Ok((len, _)) = format::record_header(&data[o..], max) else {
            break;
        };
        let next = o + format::RECORD_HEADER + len;
        if next > data.len() {
            break;
        }
        offsets.push(o);
        o = next;
    }
    let check = |offset: usize| {
        let read = read_record(data, offset, max);
        let entry = match &read {
            RecordRead::Entry { bytes, .. } => {
                Some((leaf_hash(bytes), EntryHead::from_bytes(bytes)))
            }
            _ => None,
        };
        Prechecked {
            offset,
            read,
            entry,
        }
    };
    if threads <= 1 || offsets.len() < 256 {
        return (offsets.into_iter().map(check).collect(), o);
    }
    let checked = std::thread::scope(|s| {
        let handles: Vec<_> = offsets
            .chunks(offsets.len().div_ceil(threads))
            .map(|part| s.spawn(move || part.iter().map(|&o| check(o)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("the checks do not panic"))
            .collect()
    });
    (checked, o)
}

/// Hashes leaf hashes (already uniformly random) by their first 8 bytes.
#[derive(Clone, Copy, Default)]
struct LeafHasher(u64);

impl std::hash::Hasher for LeafHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }

    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

type ByLeaf = HashMap<Hash, u64, std::hash::BuildHasherDefault<LeafHasher>>;

/// The checkpoint log as read before the segments: each checkpoint (where it is, its
/// note, what it records), and a torn last record (its offset and bytes).
#[derive(Default)]
struct LoggedCheckpoints {
    notes: Vec<(String, String, Checkpoint)>,
    torn: Option<(usize, Vec<u8>)>,
}

impl LoggedCheckpoints {
    /// The largest size a logged checkpoint records (sizes never decrease along the log).
    fn covered(&self) -> Option<u64> {
        self.notes.last().map(|(_, _, cp)| cp.size)
    }
}

/// The journal worker.
pub struct Journal {
    cfg: JournalConfig,
    clock: SharedClock,
    shard_dir: PathBuf,
    segments: Vec<Segment>,
    /// Length of the last segment.
    tail_len: u64,
    log: MerkleLog<Blake3>,
    locations: Vec<Location>,
    by_id: ByLeaf,
    /// The time of the last entry: entry times never decrease along the log.
    last_time: String,
    /// Feeds the sled indexes from a thread of its own, off the commit path;
    /// `None` when read-only or after the index fell behind (lookups then scan the
    /// leaves, and the next start rebuilds it).
    index: Option<Indexer>,
    signer: Signer,
    origin: String,
    halt: Arc<Halt>,
    /// The last signed checkpoint, signed once per size.
    checkpoint: Option<(u64, String)>,
    /// The checkpoint log, open to append (not when auditing).
    checkpoint_log: Option<File>,
    /// Checkpoints in the log, and the size the last one records.
    checkpoints: u64,
    recovery: Recovery,
    /// The size of the last commit record.
    last_commit: u64,
    /// Group commits since a checkpoint was last logged.
    commits_since_head: u64,
    /// The size the last logged checkpoint records.
    head_size: Option<u64>,
    mode: Mode,
    metrics: Option<JournalMetrics>,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// Whether a file in a shard's folder holds bytes cut at start-up (see [`set_aside`]).
fn is_set_aside(name: &str) -> bool {
    name.contains(".torn-at-")
}

/// Keeps `bytes`, about to be cut from `path` at `offset`, in a file next to it
/// (`<file>.torn-at-<offset>`, or `…-<n>` when that exists), durable before the cut.
fn set_aside(path: &Path, offset: u64, bytes: &[u8]) -> Result<PathBuf, OpenError> {
    let base = format!("{}.torn-at-{offset}", path.display());
    let mut aside = PathBuf::from(&base);
    let mut n = 1;
    while aside.exists() {
        aside = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&aside)
        .map_err(io(&aside))?;
    f.write_all(bytes).map_err(io(&aside))?;
    f.sync_all().map_err(io(&aside))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(aside)
}

fn sync_dir(dir: &Path) -> Result<(), OpenError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Loads the node's signing key, creating it (mode 0600, made durable) at first start.
fn load_or_create_key(dir: &Path, name: &str) -> Result<Signer, OpenError> {
    let path = dir.join("node.key");
    let pkcs8 = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pkcs8 = Signer::generate_pkcs8().map_err(|e| OpenError::Key(e.to_string()))?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io(&path))?;
            f.write_all(&pkcs8).map_err(io(&path))?;
            f.sync_all().map_err(io(&path))?;
            sync_dir(dir)?;
            pkcs8
        }
        Err(e) => return Err(io(&path)(e)),
    };
    Signer::from_pkcs8(name, &pkcs8).map_err(|e| OpenError::Key(format!("{}: {e}", path.display())))
}

/// The journal's metrics, registered once per node and shared by its incarnations.
#[derive(Clone)]
pub struct JournalMetrics {
    entries: prometheus::IntGauge,
    appends: prometheus::IntCounterVec,
    commit_seconds: prometheus::Histogram,
    commit_entries: prometheus::Histogram,
    halted: prometheus::IntGauge,
    torn_tail_bytes: prometheus::IntCounter,
    index_lag: prometheus::IntGauge,
}

impl JournalMetrics {
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        use prometheus::{
            exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
            Opts,
        };
        let m = Self {
            entries: IntGauge::new("axon_journal_entries", "Entries in the journal")?,
            appends: IntCounterVec::new(
                Opts::new(
                    "axon_journal_appends_total",
                    "Append requests by outcome (ok, refused, halted)",
                ),
                &["outcome"],
            )?,
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "axon_journal_commit_seconds",
                    "Time to write one group commit and fdatasync it",
                )
                .buckets(exponential_buckets(1e-5, 2.0, 18)?),
            )?,
            commit_entries: Histogram::with_opts(
                HistogramOpts::new("axon_journal_commit_entries", "Entries per group commit")
                    .buckets(exponential_buckets(1.0, 2.0, 14)?),
            )?,
            halted: IntGauge::new(
                "axon_journal_halted",
                "1 once a failed write halted the journal",
            )?,
            torn_tail_bytes: IntCounter::new(
                "axon_journal_torn_tail_bytes_total",
                "Bytes of unacknowledged torn tail cut at start",
            )?,
            index_lag: IntGauge::new(
                "axon_journal_index_lag_entries",
                "Durable entries the sled index has not reached yet (lookups read them from the segments)",
            )?,
        };
        registry.register(Box::new(m.entries.clone()))?;
        registry.register(Box::new(m.appends.clone()))?;
        registry.register(Box::new(m.commit_seconds.clone()))?;
        registry.register(Box::new(m.commit_entries.clone()))?;
        registry.register(Box::new(m.halted.clone()))?;
        registry.register(Box::new(m.torn_tail_bytes.clone()))?;
        registry.register(Box::new(m.index_lag.clone()))?;
        for outcome in ["ok", "refused", "halted"] {
            m.appends.with_label_values(&[outcome]);
        }
        Ok(m)
    }
}

/// How the journal is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// To write: creates what is missing and cuts a torn tail.
    Write,
    /// To audit: changes nothing on disk.
    Audit,
}

/// The state of the sled index, as the audit found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexStatus {
    /// No index directory (the node builds one at start).
    Missing,
    /// Built for exactly this tree, and a sample of 4096 entries spread over it is indexed.
    Consistent,
    /// Built for the first entries only (the node stopped before its index thread caught
    /// up); the node catches it up at start.
    Behind(u64),
    /// The index disagrees with the segments; the node rebuilds it at start.
    Stale(String),
    /// `--rebuild-index`: rebuilt from the segments.
    Rebuilt,
}

/// Where a shard's sled index lives.
fn index_dir(cfg: &JournalConfig) -> PathBuf {
    cfg.dir.join(format!("index-shard-{}", cfg.shard))
}

/// What `axon audit` reports.
#[derive(Debug)]
pub struct AuditReport {
    pub index: IndexStatus,
    pub entries: u64,
    pub segments: usize,
    /// A torn tail (never acknowledged) that the next start will cut: a warning, not a
    /// failure.
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// A torn checkpoint record (never served) that the next start will cut: a warning.
    pub torn_checkpoint: Option<(PathBuf, u64, u64)>,
    /// Signed checkpoints in the checkpoint log, all checked against the tree.
    pub checkpoints: u64,
    /// The size the last of them records.
    pub head_size: Option<u64>,
    /// Signed checkpoints given with `--checkpoint`, all checked against the tree.
    pub outside_checkpoints: usize,
}

/// Checks a stopped node's journal without writing to its segments: every record checksum,
/// every entry's canonical form, order and links, every commit record's size and root, and
/// the signed head. `progress` is called after each segment with the entries checked so far.
pub fn audit(
    cfg: JournalConfig,
    rebuild_index: bool,
    outside: &[(String, String)],
    progress: &mut dyn FnMut(&Path, u64),
) -> Result<AuditReport, OpenError> {
    let clock = axon_supervisors::SystemClock::shared();
    let path = index_dir(&cfg);
    let exists = path.exists();
    // sled reads its whole log to open: it does so while the segments are checked.
    let opening = (rebuild_index || exists).then(|| {
        let (path, cache) = (path.clone(), cfg.index_cache_bytes);
        std::thread::spawn(move || JournalIndex::open(&path, cache))
    });
    let checked =
        Journal::open_mode(cfg, clock, Arc::default(), Mode::Audit, progress).and_then(|j| {
            j.check_outside_checkpoints(outside)
                .map_err(OpenError::Tamper)?;
            Ok(j)
        });
    let j = match checked {
        Ok(j) => j,
        Err(e) => {
            if let Some(opening) = opening {
                let _ = opening.join();
            }
            return Err(e);
        }
    };
    let (size, root) = (j.len(), j.log.root_at(j.log.len()).expect("in range"));
    let index = if let Some(opening) = opening {
        let index = opening
            .join()
            .map_err(|_| OpenError::Key("opening the journal index panicked".into()))?
            .map_err(OpenError::Key)?;
        if rebuild_index {
            let index = index.recreate().map_err(OpenError::Key)?;
            let index = index_now(
                index,
                &j.shard_dir,
                j.cfg.max_entry_bytes,
                j.cfg.index_reopen_entries,
                0,
                j.len(),
            )
            .map_err(OpenError::Key)?;
            index.flush();
            IndexStatus::Rebuilt
        } else {
            let samples = j
                .sample_records(4096)
                .map_err(|e| OpenError::Tamper(e.to_string()))?;
            match (index.built_for(), index.verify(&samples, size, &root)) {
                (_, Ok(())) => IndexStatus::Consistent,
                (Some((s, r)), Err(_)) if s < size && j.log.root_at(s as usize).ok() == Some(r) => {
                    IndexStatus::Behind(s)
                }
                (_, Err(why)) => IndexStatus::Stale(why),
            }
        }
    } else {
        IndexStatus::Missing
    };
    Ok(AuditReport {
        index,
        entries: j.len(),
        segments: j.segments.len(),
        torn_tail: j.recovery.torn_tail.clone(),
        torn_checkpoint: j.recovery.torn_checkpoint.clone(),
        checkpoints: j.checkpoints,
        head_size: j.head_size,
        outside_checkpoints: outside.len(),
    })
}

impl Journal {
    /// Opens a stopped node's journal to read it, checking every record and changing
    /// nothing on disk. Appends to it are refused.
    pub fn open_read_only(cfg: JournalConfig) -> Result<Self, OpenError> {
        let halt: Arc<Halt> = Arc::default();
        halt.halt("the journal is open read-only".into());
        Self::open_mode(
            cfg,
            axon_supervisors::SystemClock::shared(),
            halt,
            Mode::Audit,
            &mut |_, _| {},
        )
    }

    /// The entry at `index`, read back and checked against its hash.
    pub fn entry(&self, index: u64) -> Result<StoredEntry, Refusal> {
        self.stored(index)
    }

    /// Answers from the sled index below the size it covers; `None` (scan everything)
    /// without one or when it fails. Waits while the index thread reopens the index.
    fn ask_index(
        &self,
        ask: impl FnOnce(&JournalIndex, u64) -> Result<Vec<u64>, String>,
    ) -> Option<(Vec<u64>, u64)> {
        let indexer = self.index.as_ref()?;
        let guard = indexer.index.read().unwrap_or_else(|e| e.into_inner());
        let ix = guard.as_ref()?;
        let upto = indexer.indexed.load(Ordering::Acquire).min(self.len());
        match ask(ix, upto) {
            Ok(hits) => Some((hits.into_iter().filter(|i| *i < upto).collect(), upto)),
            Err(e) => {
                tracing::warn!(error = %e, "journal index lookup failed; scanning");
                None
            }
        }
    }

    /// The indexes of the entries with barcode `code`: from the sled index when there is
    /// one, then by computing the barcode of every entry it does not cover yet.
    pub fn indexes_of_barcode(&self, code: &str) -> Vec<u64> {
        let (mut found, from) = self
            .ask_index(|ix, _| ix.by_barcode(code))
            .unwrap_or_default();
        found.extend(
            (from as usize..self.log.len())
                .filter(|i| barcode(&self.log.leaf(*i).expect("in range")) == code)
                .map(|i| i as u64),
        );
        found
    }

    /// The indexes of the entries of `action`: from the sled index, then by reading every
    /// entry it does not cover yet, when they are at most `scan_max`; more is
    /// [`Refusal::Busy`].
    pub fn indexes_of_action(&self, action: &str, scan_max: u64) -> Result<Vec<u64>, Refusal> {
        let (mut found, from) = self
            .ask_index(|ix, _| ix.by_action(action))
            .unwrap_or_default();
        let behind = self.len() - from;
        if behind > scan_max {
            return Err(Refusal::Busy(format!(
                "the index is {behind} entries behind the journal (it catches up on its own); try again shortly"
            )));
        }
        for i in from..self.len() {
            if action_of(&self.read_entry(i)?.1.body) == Some(action) {
                found.push(i);
            }
        }
        Ok(found)
    }

    /// Up to `limit` (at most `page_max_entries`, and no more than `page_max_bytes` of
    /// them) entries after index `after` that match `filter`, in order, and the index to
    /// continue after when the page is full. Times bound an index range (entry times never
    /// decrease); kinds come from the sled index where it reaches.
    pub fn query(
        &self,
        filter: &Filter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<StoredEntry>, Option<u64>), Refusal> {
        let limit = limit.clamp(1, self.cfg.page_max_entries.max(1));
        let mut page = Page {
            entries: Vec::new(),
            bytes: 0,
            limit,
            max_bytes: self.cfg.page_max_bytes,
        };
        let mut lo = after.map_or(0, |a| a.saturating_add(1));
        let mut hi = self.len();
        if let Some(since) = &filter.since {
            lo = lo.max(self.first_at_or_after(since)?);
        }
        if let Some(until) = &filter.until {
            hi = hi.min(self.first_at_or_after(until)?);
        }
        let mut open = true;
        match filter.kind {
            None => {
                let mut i = lo;
                while open && i < hi {
                    open = page.push(self.stored(i)?);
                    i += 1;
                }
            }
            Some(kind) => {
                let mut from = lo;
                if let Some((hits, upto)) =
                    self.ask_index(|ix, upto| ix.by_kind(kind, lo, hi.min(upto), limit))
                {
                    for i in hits {
                        open = page.push(self.stored(i)?);
                        if !open {
                            break;
                        }
                    }
                    from = from.max(upto);
                }
                let mut i = from;
                let budget = from.saturating_add(self.cfg.page_scan_max_entries.max(1) as u64);
                while open && i < hi {
                    if i >= budget {
                        // Scanned enough for one request: go on after what was read.
                        return Ok((page.entries, Some(i - 1)));
                    }
                    let (stored, entry) = self.read_entry(i)?;
                    if entry.kind == kind {
                        open = page.push(stored);
                    }
                    i += 1;
                }
            }
        }
        let next = page
            .is_full()
            .then(|| page.entries.last().map(|e| e.index))
            .flatten();
        Ok((page.entries, next))
    }

    /// The first index whose entry is dated `time` or later (the journal's length when
    /// none is): a binary search, since entry times never decrease.
    fn first_at_or_after(&self, time: &str) -> Result<u64, Refusal> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.read_entry(mid)?.1.time.as_str() < time {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// What the index records of entry `index`, read from the segments.
    fn record(&self, index: u64) -> Result<IndexRecord, Refusal> {
        let (_, entry) = self.read_entry(index)?;
        let leaf = self.log.leaf(index as usize).expect("read, so in range");
        Ok(IndexRecord::of(&entry, &leaf))
    }

    /// The records of up to `count` entries spread evenly over the journal, the last one
    /// included.
    fn sample_records(&self, count: usize) -> Result<Vec<IndexRecord>, Refusal> {
        let n = self.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let step = (n / count.max(1) as u64).max(1);
        let mut picks: Vec<u64> = (0..n).step_by(step as usize).collect();
        if picks.last() != Some(&(n - 1)) {
            picks.push(n - 1);
        }
        picks.into_iter().map(|i| self.record(i)).collect()
    }

    /// Where `index` can catch up from: the size it was built for when that is a prefix
    /// of this tree (its size and root agree with the tree at that size); else it is
    /// recreated empty, from 0.
    fn index_start(&self, index: JournalIndex) -> Result<(JournalIndex, u64), String> {
        match index.built_for() {
            Some((size, root))
                if size <= self.len() && self.log.root_at(size as usize).ok() == Some(root) =>
            {
                Ok((index, size))
            }
            _ => Ok((index.recreate()?, 0)),
        }
    }

    fn index_path(&self) -> PathBuf {
        index_dir(&self.cfg)
    }

    /// Opens the sled index and starts the thread that keeps it up; it catches up from
    /// where the index stopped (or from the start, when it was built for another tree or
    /// never) while lookups read what it has not reached from the segments.
    fn open_index(&mut self) {
        let path = self.index_path();
        let opened = JournalIndex::open(&path, self.cfg.index_cache_bytes)
            .and_then(|index| self.index_start(index));
        let (index, from) = match opened {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the journal index; lookups read the segments");
                return;
            }
        };
        self.recovery.index_from = from;
        if from < self.len() {
            tracing::info!(
                from,
                entries = self.len(),
                "the journal index catches up from the segments"
            );
        }
        let indexer = Indexer::start(
            index,
            &self.shard_dir,
            self.cfg.max_entry_bytes,
            self.cfg.index_reopen_entries,
            from,
        );
        indexer.committed(self.len());
        self.index = Some(indexer);
    }

    /// Uses a stopped node's index for lookups when it exists and is up to date (changing
    /// nothing); otherwise lookups read every entry.
    pub fn use_index_if_current(&mut self) {
        let path = self.index_path();
        if !path.is_dir() {
            return;
        }
        let Ok(index) = JournalIndex::open(&path, self.cfg.index_cache_bytes) else {
            return; // a running node holds it: scan instead
        };
        let want = (
            self.len(),
            self.log.root_at(self.log.len()).expect("in range"),
        );
        if index.built_for() == Some(want) {
            self.index = Some(Indexer::reading(index, want.0));
        }
    }

    /// Reports to `metrics` from now on.
    pub fn set_metrics(&mut self, metrics: JournalMetrics) {
        metrics.entries.set(self.len() as i64);
        metrics.halted.set(i64::from(self.halt.is_halted()));
        if let Some((_, _, bytes)) = &self.recovery.torn_tail {
            metrics.torn_tail_bytes.inc_by(*bytes);
        }
        match &self.index {
            Some(ix) => ix.report_lag_to(metrics.index_lag.clone()),
            // No index (it could not be opened): every lookup reads every entry.
            None => metrics.index_lag.set(self.len() as i64),
        }
        self.metrics = Some(metrics);
    }

    /// Opens (or creates) the journal, checking every record.
    pub fn open(
        cfg: JournalConfig,
        clock: SharedClock,
        halt: Arc<Halt>,
    ) -> Result<Self, OpenError> {
        Self::open_mode(cfg, clock, halt, Mode::Write, &mut |_, _| {})
    }

    fn open_mode(
        cfg: JournalConfig,
        clock: SharedClock,
        halt: Arc<Halt>,
        mode: Mode,
        progress: &mut dyn FnMut(&Path, u64),
    ) -> Result<Self, OpenError> {
        let shard_dir = cfg.dir.join(format!("shard-{}", cfg.shard));
        let signer = match mode {
            Mode::Write => {
                std::fs::create_dir_all(&shard_dir).map_err(io(&shard_dir))?;
                sync_dir(&cfg.dir)?;
                load_or_create_key(&cfg.dir, &cfg.key_name)?
            }
            Mode::Audit => {
                if !shard_dir.is_dir() {
                    return Err(OpenError::Key(format!(
                        "no journal at {}",
                        shard_dir.display()
                    )));
                }
                let path = cfg.dir.join("node.key");
                let pkcs8 = std::fs::read(&path).map_err(io(&path))?;
                Signer::from_pkcs8(&cfg.key_name, &pkcs8)
                    .map_err(|e| OpenError::Key(format!("{}: {e}", path.display())))?
            }
        };
        let origin = format!("{}/shard-{}", cfg.key_name, cfg.shard);
        let mut j = Journal {
            shard_dir,
            segments: Vec::new(),
            tail_len: 0,
            log: MerkleLog::new(),
            locations: Vec::new(),
            by_id: HashMap::default(),
            last_time: String::new(),
            index: None,
            signer,
            origin,
            halt,
            checkpoint: None,
            checkpoint_log: None,
            checkpoints: 0,
            recovery: Recovery::default(),
            last_commit: 0,
            commits_since_head: 0,
            head_size: None,
            mode,
            metrics: None,
            clock,
            cfg,
        };
        // The checkpoint log first: what it covers was acknowledged, and start-up must not
        // cut it away as a torn tail.
        let logged = j.read_checkpoint_log()?;
        j.recover(progress, logged.covered().unwrap_or(0))?;
        j.check_logged_checkpoints(logged)?;
        if mode == Mode::Write {
            j.open_index();
        }
        Ok(j)
    }

    fn checkpoints_path(&self) -> PathBuf {
        self.cfg
            .dir
            .join(format!("shard-{}.checkpoints", self.cfg.shard))
    }

    /// Reads the checkpoint log, before the segments are read: every checkpoint's
    /// signature, origin and size (never less than the one before it). A damaged last
    /// record with nothing intact after it is a torn write (its offset is kept to cut it
    /// later); any other damage is tamper. The largest size they record is what start-up
    /// must never cut below.
    fn read_checkpoint_log(&self) -> Result<LoggedCheckpoints, OpenError> {
        let path = self.checkpoints_path();
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        let tamper = |offset: usize, what: String| {
            OpenError::Tamper(format!("{} at offset {offset}: {what}", path.display()))
        };
        let verifier = axon_protocols::checkpoint::Verifier::parse(&self.signer.vkey())
            .map_err(|e| OpenError::Key(e.to_string()))?;
        let mut logged = LoggedCheckpoints::default();
        let mut offset = 0;
        while offset < data.len() {
            let n = logged.notes.len() + 1;
            match read_record(&data, offset, MAX_CHECKPOINT_BYTES) {
                RecordRead::Entry { bytes, next } => {
                    let note = std::str::from_utf8(bytes)
                        .map_err(|_| tamper(offset, format!("checkpoint {n} is not UTF-8")))?;
                    let which = format!("{} at offset {offset}: checkpoint {n}", path.display());
                    let cp = self
                        .verify_note(&verifier, note, &which)
                        .map_err(OpenError::Tamper)?;
                    if let Some(before) = logged.covered().filter(|b| cp.size < *b) {
                        return Err(tamper(
                            offset,
                            format!(
                                "checkpoint {n} records {} entries, fewer than the {before} of the one before it",
                                cp.size
                            ),
                        ));
                    }
                    logged.notes.push((which, note.to_owned(), cp));
                    offset = next;
                }
                RecordRead::Commit { .. } => {
                    return Err(tamper(
                        offset,
                        "a commit record in the checkpoint log".into(),
                    ))
                }
                RecordRead::Truncated | RecordRead::Corrupt(_) => {
                    if let Some(at) = find_record_after(&data, offset + 1, MAX_CHECKPOINT_BYTES) {
                        return Err(tamper(
                            offset,
                            format!(
                                "a damaged checkpoint, yet an intact one follows at offset {at}"
                            ),
                        ));
                    }
                    logged.torn = Some((offset, data[offset..].to_vec()));
                    break;
                }
            }
        }
        Ok(logged)
    }

    /// Checks the logged checkpoints against the tree the segments hold (each one's root,
    /// and no more entries than the segments hold), sets a torn last record aside and cuts
    /// it (when not auditing), and opens the log to append.
    fn check_logged_checkpoints(&mut self, logged: LoggedCheckpoints) -> Result<(), OpenError> {
        let path = self.checkpoints_path();
        for (which, note, cp) in logged.notes {
            self.check_against_tree(&cp, &which)
                .map_err(OpenError::Tamper)?;
            self.head_size = Some(cp.size);
            self.checkpoints += 1;
            self.checkpoint = Some((cp.size, note));
        }
        if let Some((offset, torn)) = logged.torn {
            let cut = torn.len() as u64;
            if self.mode == Mode::Write {
                let aside = set_aside(&path, offset as u64, &torn)?;
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                f.set_len(offset as u64).map_err(io(&path))?;
                f.sync_all().map_err(io(&path))?;
                tracing::warn!(log = %path.display(), offset, bytes = cut, kept_in = %aside.display(), "cut a torn checkpoint that was never served");
                self.recovery.set_aside.push(aside);
            }
            self.recovery.torn_checkpoint = Some((path.clone(), offset as u64, cut));
        }
        if self.mode == Mode::Write {
            let existed = path.exists();
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o644)
                .open(&path)
                .map_err(io(&path))?;
            if !existed {
                f.sync_all().map_err(io(&path))?;
                sync_dir(&self.cfg.dir)?;
            }
            self.checkpoint_log = Some(f);
        }
        Ok(())
    }

    /// Checks one signed checkpoint's signature and origin (`which` names it).
    fn verify_note(
        &self,
        verifier: &axon_protocols::checkpoint::Verifier,
        note: &str,
        which: &str,
    ) -> Result<Checkpoint, String> {
        let body = verifier.verify(note).map_err(|e| format!("{which}: {e}"))?;
        let cp = Checkpoint::parse(body).map_err(|e| format!("{which}: {e}"))?;
        if cp.origin != self.origin {
            return Err(format!(
                "{which}: it is for {}, not {}",
                cp.origin, self.origin
            ));
        }
        Ok(cp)
    }

    /// Checks one checkpoint of this journal against the tree. When it records more
    /// entries than the segments hold, the first bad record is where the segments end, and
    /// the message starts there.
    fn check_against_tree(&self, cp: &Checkpoint, which: &str) -> Result<(), String> {
        if cp.size > self.len() {
            let last = self
                .segments
                .last()
                .map(|s| s.path.clone())
                .unwrap_or_else(|| self.shard_dir.join(segment_name(0)));
            return Err(format!(
                "{} at offset {}: acknowledged entries {} to {} are missing ({which}: it records {} entries)",
                last.display(),
                self.tail_len,
                self.len(),
                cp.size - 1,
                cp.size,
            ));
        }
        if self.log.root_at(cp.size as usize).expect("in range") != cp.root {
            return Err(format!(
                "{which}: the first {} entries do not have the root it records",
                cp.size
            ));
        }
        Ok(())
    }

    /// Checks signed checkpoints held elsewhere (handed out by this journal) against the
    /// tree; names the first that does not hold.
    pub fn check_outside_checkpoints(&self, notes: &[(String, String)]) -> Result<(), String> {
        let verifier = axon_protocols::checkpoint::Verifier::parse(&self.signer.vkey())
            .map_err(|e| e.to_string())?;
        for (name, note) in notes {
            let cp = self.verify_note(&verifier, note, name)?;
            self.check_against_tree(&cp, name)?;
        }
        Ok(())
    }

    /// Adds the signed checkpoint of the current size to the checkpoint log and makes it
    /// durable, unless the log already ends with it.
    pub fn write_head(&mut self) -> Result<(), String> {
        self.commits_since_head = 0;
        self.log_checkpoint().map(|_| ())
    }

    /// The signed checkpoint of the current size, in the checkpoint log and durable.
    fn log_checkpoint(&mut self) -> Result<String, String> {
        let note = self.signed_checkpoint();
        let size = self.len();
        if self.head_size == Some(size) {
            return Ok(note);
        }
        let path = self.checkpoints_path();
        let Some(f) = &self.checkpoint_log else {
            return Err(format!("{} is not open to write", path.display()));
        };
        let mut buf = Vec::with_capacity(note.len() + format::RECORD_HEADER);
        encode_record(note.as_bytes(), &mut buf);
        (&*f)
            .write_all(&buf)
            .and_then(|()| f.sync_data())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        self.head_size = Some(size);
        self.checkpoints += 1;
        Ok(note)
    }

    /// What start-up found.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    pub fn len(&self) -> u64 {
        self.log.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    /// Reads and checks every segment. `covered` is the largest size a signed checkpoint
    /// in the checkpoint log records: those entries were acknowledged, so a damaged tail
    /// that would cut below it is damage, not a torn write.
    fn recover(
        &mut self,
        progress: &mut dyn FnMut(&Path, u64),
        covered: u64,
    ) -> Result<(), OpenError> {
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&self.shard_dir).map_err(io(&self.shard_dir))? {
            let path = entry.map_err(io(&self.shard_dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if is_set_aside(name) {
                continue;
            }
            let first = name
                .strip_suffix(".seg")
                .filter(|n| n.len() == 20)
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| OpenError::Tamper(format!("unexpected file {}", path.display())))?;
            names.push((first, path));
        }
        names.sort();
        if names.is_empty() {
            if self.mode == Mode::Write {
                self.create_segment(0)?;
                self.recovery.segments = 1;
            }
            return Ok(());
        }
        let count = names.len();
        // Room for the entries the segments likely hold (a small entry's record takes about
        // 128 bytes; at most 8M ahead), so that the tables are not grown and copied while
        // they fill.
        let bytes: u64 = names
            .iter()
            .filter_map(|(_, p)| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let room = ((bytes / 128) as usize).min(8 << 20);
        self.by_id.reserve(room);
        self.locations.reserve(room);
        // One buffer for every segment: its pages are faulted in once.
        let mut data = Vec::new();
        for (k, (first, path)) in names.into_iter().enumerate() {
            if first != self.len() {
                return Err(OpenError::Tamper(format!(
                    "{} starts at entry {first}, but the segments before it end at {}",
                    path.display(),
                    self.len()
                )));
            }
            let file = OpenOptions::new()
                .read(true)
                .append(self.mode == Mode::Write)
                .open(&path)
                .map_err(io(&path))?;
            data.clear();
            std::io::Read::read_to_end(&mut &file, &mut data).map_err(io(&path))?;
            let last = k + 1 == count;
            let kept = self.scan(k as u32, &path, &data, last)?;
            progress(&path, self.len());
            if kept < data.len() as u64 {
                let cut = data.len() as u64 - kept;
                if self.len() < covered {
                    return Err(OpenError::Tamper(format!(
                        "{} at offset {kept}: the records after the last intact commit are damaged, \
                         and the checkpoint log covers {covered} entries where {} are intact: \
                         acknowledged entries are damaged (nothing was cut)",
                        path.display(),
                        self.len()
                    )));
                }
                if self.mode == Mode::Write {
                    let aside = set_aside(&path, kept, &data[kept as usize..])?;
                    file.set_len(kept).map_err(io(&path))?;
                    file.sync_all().map_err(io(&path))?;
                    tracing::warn!(segment = %path.display(), offset = kept, bytes = cut, kept_in = %aside.display(), "cut a torn tail that was never acknowledged");
                    self.recovery.set_aside.push(aside);
                }
                self.recovery.torn_tail = Some((path.clone(), kept, cut));
            }
            if last {
                self.tail_len = kept;
            }
            self.segments.push(Segment { path, file });
        }
        self.recovery.entries = self.len();
        self.recovery.segments = self.segments.len();
        Ok(())
    }

    /// Checks one segment and loads its entries. Returns the length to keep.
    fn scan(&mut self, seg: u32, path: &Path, data: &[u8], last: bool) -> Result<u64, OpenError> {
        let tamper = |offset: usize, what: String| {
            OpenError::Tamper(format!("{} at offset {offset}: {what}", path.display()))
        };
        let mut offset = 0usize;
        let mut committed_offset = 0usize;
        let mut committed_entries = self.len();
        let max = self.cfg.max_entry_bytes;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        // Records are checked a chunk ahead on another thread while this one takes the
        // chunk before in order (the first chunk on every core).
        std::thread::scope(|sc| -> Result<(), OpenError> {
            let mut ahead = std::collections::VecDeque::new();
            let mut next: Option<std::thread::ScopedJoinHandle<'_, (Vec<Prechecked<'_>>, usize)>> =
                None;
            loop {
                if offset == data.len() {
                    break;
                }
                if ahead.front().map(|p: &Prechecked| p.offset) != Some(offset) {
                    let fetched = next
                        .take()
                        .map(|h| h.join().expect("the checks do not panic"))
                        .filter(|(v, _)| v.first().map(|p| p.offset) == Some(offset));
                    let (checked, end) = match fetched {
                        Some(f) => f,
                        None => precheck(data, offset, max, cores),
                    };
                    ahead = checked.into();
                    if cores > 1 && end > offset && end < data.len() {
                        next = Some(sc.spawn(move || precheck(data, end, max, 1)));
                    }
                }
                let (read, parsed) = match ahead.pop_front() {
                    Some(p) if p.offset == offset => (p.read, p.entry),
                    _ => (read_record(data, offset, self.cfg.max_entry_bytes), None),
                };
                match read {
                    RecordRead::Entry { bytes, next } => {
                        let index = self.len();
                        let (leaf, entry) = parsed
                            .unwrap_or_else(|| (leaf_hash(bytes), EntryHead::from_bytes(bytes)));
                        let entry =
                            entry.map_err(|e| tamper(offset, format!("entry {index}: {e}")))?;
                        if entry.index != index || entry.shard != self.cfg.shard {
                            return Err(tamper(
                                offset,
                                format!(
                                    "entry {} of shard {} where entry {index} of shard {} belongs",
                                    entry.index, entry.shard, self.cfg.shard
                                ),
                            ));
                        }
                        for link in &entry.links {
                            if self.lookup_id(link).is_none() {
                                return Err(tamper(
                                    offset,
                                    format!("entry {index} links to unknown entry {link}"),
                                ));
                            }
                        }
                        if entry.time < self.last_time {
                            return Err(tamper(
                                offset,
                                format!(
                                    "entry {index} is dated {}, before the entry ahead of it ({})",
                                    entry.time, self.last_time
                                ),
                            ));
                        }
                        self.last_time = entry.time;
                        self.index_entry(
                            seg,
                            (offset + format::RECORD_HEADER) as u64,
                            bytes.len() as u32,
                            leaf,
                        );
                        offset = next;
                    }
                    RecordRead::Commit {
                        previous,
                        size,
                        root,
                        next,
                    } => {
                        if self.len() == committed_entries {
                            return Err(tamper(
                                offset,
                                "a commit record that commits no entry".into(),
                            ));
                        }
                        if previous != self.last_commit {
                            return Err(tamper(
                            offset,
                            format!(
                                "a commit record follows one of size {previous}, but the last commit was of size {}",
                                self.last_commit
                            ),
                        ));
                        }
                        let want = self.log.root_at(self.log.len()).expect("in range");
                        if size != self.len() || root != want {
                            return Err(tamper(
                                offset,
                                format!(
                                "a commit of size {size} does not match the {} entries before it",
                                self.len()
                            ),
                            ));
                        }
                        offset = next;
                        committed_offset = offset;
                        committed_entries = self.len();
                        self.last_commit = size;
                    }
                    RecordRead::Truncated | RecordRead::Corrupt(_) if last => {
                        // What follows the last intact commit is the last batch, and a
                        // crash before its fdatasync returned may leave its own commit
                        // record on disk while an earlier record of it is not: it was
                        // never acknowledged. A later batch is written only once this one
                        // is durable, so any intact record after that commit record, or a
                        // commit that is not this batch's, is damage.
                        if let Some(at) = find_commit_after(data, offset + 1) {
                            let RecordRead::Commit { previous, next, .. } =
                                read_record(data, at, max)
                            else {
                                unreachable!("find_commit_after finds intact commit records")
                            };
                            if previous != self.last_commit {
                                return Err(tamper(
                                    offset,
                                    format!(
                                        "a damaged record, yet a commit record of another batch follows at offset {at}"
                                    ),
                                ));
                            }
                            if let Some(later) = find_record_after(data, next, max) {
                                return Err(tamper(
                                    offset,
                                    format!(
                                        "a damaged record, yet a commit record follows at offset {at} and another record at offset {later}"
                                    ),
                                ));
                            }
                        }
                        break;
                    }
                    RecordRead::Truncated => {
                        return Err(tamper(offset, "the segment ends inside a record".into()))
                    }
                    RecordRead::Corrupt(why) => return Err(tamper(offset, why)),
                }
            }
            Ok(())
        })?;
        if !last && committed_offset != data.len() {
            return Err(tamper(
                committed_offset,
                "the segment does not end with a commit record".into(),
            ));
        }
        // Entries after the last commit were never acknowledged: forget them.
        if self.len() > committed_entries {
            self.forget_from(committed_entries);
        }
        Ok(committed_offset as u64)
    }

    fn index_entry(&mut self, segment: u32, offset: u64, len: u32, leaf: Hash) {
        self.log.push(leaf);
        self.locate(segment, offset, len, leaf);
    }

    /// Records where the entry just added to the tree is.
    fn locate(&mut self, segment: u32, offset: u64, len: u32, leaf: Hash) {
        let index = self.locations.len() as u64;
        self.locations.push(Location {
            segment,
            offset,
            len,
        });
        self.by_id.insert(leaf, index);
    }

    fn forget_from(&mut self, size: u64) {
        for i in size..self.len() {
            let leaf = self.log.leaf(i as usize).expect("in range");
            self.by_id.remove(&leaf);
        }
        self.log.truncate(size as usize);
        self.locations.truncate(size as usize);
    }

    fn lookup_id(&self, id: &str) -> Option<u64> {
        let hash = format::parse_hex::<32>(id)?;
        self.by_id.get(&hash).copied()
    }

    fn create_segment(&mut self, first: u64) -> Result<(), OpenError> {
        let path = self.shard_dir.join(segment_name(first));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        sync_dir(&self.shard_dir)?;
        self.segments.push(Segment { path, file });
        self.tail_len = 0;
        Ok(())
    }

    /// Validates and stages the appends of one batch. Returns the bytes to write and, per
    /// request, the staged entry or why it was refused.
    fn stage(&self, appends: Vec<NewEntry>, time: &str) -> (Vec<u8>, Vec<Result<Staged, Refusal>>) {
        let mut buf = Vec::with_capacity(appends.len() * 256);
        let mut staged_ids = ByLeaf::default();
        let mut out = Vec::with_capacity(appends.len());
        for new in appends {
            let index = self.len() + staged_ids.len() as u64;
            let r = (|| {
                if new.links.len() > self.cfg.max_links {
                    return Err(Refusal::Invalid(format!(
                        "{} links; at most {} are allowed",
                        new.links.len(),
                        self.cfg.max_links
                    )));
                }
                for link in &new.links {
                    let known = format::parse_hex::<32>(link)
                        .filter(|h| self.by_id.contains_key(h) || staged_ids.contains_key(h));
                    if known.is_none() || link.bytes().any(|b| b.is_ascii_uppercase()) {
                        return Err(Refusal::BadLink(format!(
                            "link {link:?} is not the id of an earlier entry"
                        )));
                    }
                }
                // Written straight into the batch, behind the record header.
                let start = begin_record(&mut buf);
                let parts = EntryParts {
                    shard: self.cfg.shard,
                    index,
                    kind: new.kind,
                    time,
                    links: &new.links,
                    body: &new.body,
                };
                if let Err(e) = parts.write(&mut buf) {
                    buf.truncate(start);
                    return Err(match e {
                        EntryError::Canonical(c) => Refusal::NotCanonical(c),
                        other => Refusal::Invalid(other.to_string()),
                    });
                }
                let len = buf.len() - start - format::RECORD_HEADER;
                if len > self.cfg.max_entry_bytes {
                    buf.truncate(start);
                    return Err(Refusal::Invalid(format!(
                        "the entry is {len} bytes; the limit is {}",
                        self.cfg.max_entry_bytes
                    )));
                }
                let leaf = leaf_hash(finish_record(&mut buf, start));
                Ok(Staged {
                    leaf,
                    len: len as u32,
                    at: start + format::RECORD_HEADER,
                })
            })();
            if let Ok(s) = &r {
                staged_ids.insert(s.leaf, index);
            }
            out.push(r);
        }
        (buf, out)
    }

    /// Writes one group commit; every staged append is acknowledged only if this returns Ok.
    fn commit(&mut self, mut buf: Vec<u8>, staged: &[Staged], time: &str) -> Result<(), String> {
        let before = self.len();
        for s in staged {
            self.log.push(s.leaf);
        }
        let size = self.log.len() as u64;
        let root = self.log.root_at(self.log.len()).expect("in range");
        encode_commit(before, size, &root, &mut buf);
        if self.tail_len > 0 && self.tail_len + buf.len() as u64 > self.cfg.segment_max_bytes {
            if let Err(e) = self.create_segment(before) {
                self.log.truncate(before as usize);
                return Err(format!("cannot start a new segment: {e}"));
            }
        }
        let seg = self.segments.last().expect("a segment is open");
        let started = std::time::Instant::now();
        let written = (&seg.file)
            .write_all(&buf)
            .and_then(|()| seg.file.sync_data());
        if let Some(m) = &self.metrics {
            m.commit_seconds.observe(started.elapsed().as_secs_f64());
            m.commit_entries.observe(staged.len() as f64);
        }
        if let Err(e) = written {
            self.log.truncate(before as usize);
            return Err(format!("writing {}: {e}", seg.path.display()));
        }
        let segment = (self.segments.len() - 1) as u32;
        let base = self.tail_len;
        self.last_commit = size;
        self.tail_len += buf.len() as u64;
        for s in staged {
            self.locate(segment, base + s.at as u64, s.len, s.leaf);
        }
        time.clone_into(&mut self.last_time);
        match (&self.index, &self.metrics) {
            (Some(index), _) => index.committed(size),
            (None, Some(m)) => m.index_lag.set(size as i64),
            (None, None) => {}
        }
        self.commits_since_head += 1;
        if self.commits_since_head >= self.cfg.head_every_commits.max(1) {
            // The batch is durable and is acknowledged; the failed checkpoint write halts
            // the journal for what comes next.
            if let Err(reason) = self.write_head() {
                self.halt.halt(reason);
            }
        }
        Ok(())
    }

    fn stored(&self, index: u64) -> Result<StoredEntry, Refusal> {
        Ok(self.read_entry(index)?.0)
    }

    /// Entry `index` read back from its segment and checked against its hash, as stored
    /// and parsed.
    fn read_entry(&self, index: u64) -> Result<(StoredEntry, Entry), Refusal> {
        let loc = *self.locations.get(index as usize).ok_or_else(|| {
            Refusal::NotFound(format!(
                "no entry {index}; the journal holds {}",
                self.len()
            ))
        })?;
        let seg = &self.segments[loc.segment as usize];
        let mut bytes = vec![0u8; loc.len as usize];
        seg.file
            .read_exact_at(&mut bytes, loc.offset)
            .map_err(|_| Refusal::Damaged(index))?;
        let leaf = self.log.leaf(index as usize).expect("in range");
        if leaf_hash(&bytes) != leaf {
            return Err(Refusal::Damaged(index));
        }
        let entry = Entry::from_bytes(&bytes).map_err(|_| Refusal::Damaged(index))?;
        let stored = StoredEntry {
            index,
            id: entry_id(&leaf),
            kind: entry.kind,
            barcode: barcode(&leaf),
            leaf_hash: entry_id(&leaf),
            bytes,
            links: entry.links.clone(),
        };
        Ok((stored, entry))
    }

    fn read(&mut self, req: JournalRequest) -> JournalResponse {
        let hexes = |v: Vec<Hash>| v.iter().map(|h| format::hex(h)).collect::<Vec<_>>();
        let r = match req {
            JournalRequest::Append(_) => unreachable!("appends are staged, not read"),
            JournalRequest::Entry(i) => self.stored(i).map(JournalResponse::Entry),
            JournalRequest::ById(id) => match format::parse_hex::<32>(&id) {
                Some(h) if !id.bytes().any(|b| b.is_ascii_uppercase()) => {
                    match self.by_id.get(&h) {
                        Some(i) => self.stored(*i).map(JournalResponse::Entry),
                        None => Err(Refusal::NotFound(format!("no entry has id {id}"))),
                    }
                }
                _ => Err(Refusal::Invalid(format!(
                    "{id:?} is not an entry id (64 lowercase hex digits)"
                ))),
            },
            JournalRequest::ByAction(action) => {
                if !axon_protocols::capsule::ReplayCapsule::is_action_id(&action) {
                    Err(Refusal::Invalid(format!(
                        "{action:?} is not an action id (32 lowercase hex digits)"
                    )))
                } else {
                    let scan_max = self.cfg.page_scan_max_entries as u64;
                    self.indexes_of_action(&action, scan_max).and_then(|found| {
                        if found.is_empty() {
                            return Err(Refusal::NotFound(format!(
                                "no entry belongs to action {action}"
                            )));
                        }
                        found
                            .into_iter()
                            .map(|i| self.stored(i))
                            .collect::<Result<Vec<_>, _>>()
                            .map(JournalResponse::Entries)
                    })
                }
            }
            JournalRequest::Query {
                filter,
                after,
                limit,
            } => self
                .query(&filter, after, limit)
                .map(|(entries, next_after)| JournalResponse::Page {
                    entries,
                    next_after,
                }),
            JournalRequest::ByBarcode(code) => {
                if !format::is_barcode(&code) {
                    Err(Refusal::Invalid(format!(
                        "{code:?} is not a barcode (12 characters of a-z and 2-7)"
                    )))
                } else {
                    let found = self.indexes_of_barcode(&code);
                    if found.is_empty() {
                        Err(Refusal::NotFound(format!("no entry has barcode {code}")))
                    } else {
                        found
                            .into_iter()
                            .map(|i| self.stored(i))
                            .collect::<Result<Vec<_>, _>>()
                            .map(JournalResponse::Entries)
                    }
                }
            }
            // The Merkle log checks the ranges; its refusal is the client's answer.
            JournalRequest::Inclusion { index, size } => self
                .log
                .inclusion_proof(index as usize, size as usize)
                .map_err(|e| Refusal::Invalid(e.to_string()))
                .map(|proof| {
                    JournalResponse::Inclusion(InclusionProof {
                        index,
                        tree_size: size,
                        leaf_hash: format::hex(&self.log.leaf(index as usize).expect("in range")),
                        root: format::hex(&self.log.root_at(size as usize).expect("in range")),
                        proof: hexes(proof),
                    })
                }),
            JournalRequest::Consistency { from, to } => self
                .log
                .consistency_proof(from as usize, to as usize)
                .map_err(|e| Refusal::Invalid(e.to_string()))
                .map(|proof| {
                    JournalResponse::Consistency(ConsistencyProof {
                        size1: from,
                        size2: to,
                        root1: format::hex(&self.log.root_at(from as usize).expect("in range")),
                        root2: format::hex(&self.log.root_at(to as usize).expect("in range")),
                        proof: hexes(proof),
                    })
                }),
            // A checkpoint is written down before it is handed out.
            // Read-only or halted, nothing more is written: the checkpoint of what is there.
            JournalRequest::Checkpoint if self.mode == Mode::Audit || self.halt.is_halted() => {
                Ok(JournalResponse::Checkpoint(self.signed_checkpoint()))
            }
            JournalRequest::Checkpoint => match self.log_checkpoint() {
                Ok(note) => Ok(JournalResponse::Checkpoint(note)),
                Err(reason) => {
                    self.halt.halt(reason.clone());
                    Err(Refusal::Halted(reason))
                }
            },
            JournalRequest::Key => Ok(JournalResponse::Key(self.signer.vkey())),
        };
        r.unwrap_or_else(JournalResponse::Refused)
    }

    /// The signed checkpoint of the current size (signed once per size).
    pub fn signed_checkpoint(&mut self) -> String {
        let size = self.len();
        if let Some((s, note)) = &self.checkpoint {
            if *s == size {
                return note.clone();
            }
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.log.root_at(size as usize).expect("in range"),
        };
        let note = self.signer.sign(&cp.body());
        self.checkpoint = Some((size, note.clone()));
        note
    }
}

impl Journal {
    /// Writes the head if commits happened since it was last written (and the journal is
    /// not halted: after a failed write nothing more is written).
    fn close(&mut self) {
        if let Some(mut index) = self.index.take() {
            index.stop();
        }
        if self.commits_since_head > 0 && !self.halt.is_halted() {
            if let Err(e) = self.write_head() {
                tracing::error!(error = %e, "could not write the journal head on stop");
            }
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

impl Worker for Journal {
    type Request = JournalRequest;
    type Response = JournalResponse;

    fn handle(
        &mut self,
        request: JournalRequest,
        cx: &mut WorkerContext<'_>,
    ) -> Result<JournalResponse, WorkerError> {
        let mut out = self.handle_batch(vec![request], cx)?;
        out.pop()
            .expect("one answer per request")
            .map_err(WorkerError::Rejected)
    }

    fn batch_limit(&self) -> Option<usize> {
        Some(self.cfg.batch_max_records.max(1))
    }

    fn batch_wait(&self) -> std::time::Duration {
        self.cfg.batch_max_wait
    }

    fn stopped(&mut self) {
        self.close();
    }

    fn handle_batch(
        &mut self,
        requests: Vec<JournalRequest>,
        _cx: &mut WorkerContext<'_>,
    ) -> Result<Vec<Result<JournalResponse, String>>, WorkerError> {
        let mut answers: Vec<Option<JournalResponse>> = vec![None; requests.len()];
        let mut appends = Vec::new();
        let mut append_slots = Vec::new();
        let mut reads = Vec::new();
        for (slot, req) in requests.into_iter().enumerate() {
            match req {
                JournalRequest::Append(new) => {
                    appends.push(new);
                    append_slots.push(slot);
                }
                other => reads.push((slot, other)),
            }
        }
        if !appends.is_empty() {
            if let Some(reason) = self.halt.reason().filter(|_| self.halt.is_halted()) {
                for slot in &append_slots {
                    answers[*slot] =
                        Some(JournalResponse::Refused(Refusal::Halted(reason.clone())));
                }
                if let Some(m) = &self.metrics {
                    m.appends
                        .with_label_values(&["halted"])
                        .inc_by(append_slots.len() as u64);
                }
            } else {
                // Entry times never decrease along the log, whatever the wall clock does.
                let time =
                    axon_protocols::time::rfc3339(self.clock.wall()).max(self.last_time.clone());
                let (buf, staged) = self.stage(appends, &time);
                let ok: Vec<Staged> = staged
                    .iter()
                    .filter_map(|r| r.as_ref().ok().copied())
                    .collect();
                let committed = if ok.is_empty() {
                    Ok(())
                } else {
                    self.commit(buf, &ok, &time)
                };
                if let Err(reason) = &committed {
                    self.halt.halt(reason.clone());
                }
                if let Some(m) = &self.metrics {
                    let ok = staged.iter().filter(|r| r.is_ok()).count() as u64;
                    let refused = staged.len() as u64 - ok;
                    let outcome = if committed.is_ok() { "ok" } else { "halted" };
                    m.appends.with_label_values(&[outcome]).inc_by(ok);
                    m.appends.with_label_values(&["refused"]).inc_by(refused);
                    m.entries.set(self.len() as i64);
                    m.halted.set(i64::from(self.halt.is_halted()));
                }
                for (slot, r) in append_slots.into_iter().zip(staged) {
                    answers[slot] = Some(match (r, &committed) {
                        (Err(refusal), _) => JournalResponse::Refused(refusal),
                        (Ok(_), Err(reason)) => {
                            JournalResponse::Refused(Refusal::Halted(reason.clone()))
                        }
                        (Ok(s), Ok(())) => JournalResponse::Appended(Appended {
                            index: self.by_id[&s.leaf],
                            id: entry_id(&s.leaf),
                            barcode: barcode(&s.leaf),
                        }),
                    });
                }
            }
        }
        for (slot, req) in reads {
            answers[slot] = Some(self.read(req));
        }
        Ok(answers
            .into_iter()
            .map(|a| Ok(a.expect("every request answered")))
            .collect())
    }
}
