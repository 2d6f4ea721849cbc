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
//! shard-0/<segment>.torn-at-<n>     bytes start-up cut from a segment at offset n, kept
//! shard-0.checkpoints               every signed checkpoint the journal logged, in order
//! index-shard-0/                    the derived sled index (by kind)
//! ```
//!
//! The parts, each in its own file, each saying at its top what it owns and what it must
//! never do:
//!
//! - this file: the commit thread ([`Journal`]): staging and group commits, and opening.
//! - [`log`]: the in-memory log (tree, locations, id and action tables), shared with the readers.
//! - [`segments`]: the segment files and start-up's check of every record.
//! - [`checkpoints`]: the checkpoint log and the thread that logs and publishes checkpoints.
//! - [`reads`]: every read, on the reader worker's thread, from what is durable.
//! - [`index`] and [`indexer`]: the derived sled index by kind and the thread that fills it.
//! - [`client`]: the typed client the node's routes use.
//! - [`audit`], [`keys`], [`metrics`].
//!
//! A write or `fdatasync` error halts the journal for good: appends are refused (the node
//! turns unready) and nothing is retried, since the kernel may have dropped the pages.
//!
//! Architecture invariant: the commit thread does no reads for the node (the reader
//! worker does), and nothing it does waits on a reader: readers hold the log's lock only
//! for a lookup, never across IO.

mod audit;
mod checkpoints;
pub mod client;
pub mod index;
pub mod indexer;
mod keys;
mod log;
mod metrics;
mod reads;
mod segments;

pub use audit::{audit, AuditReport, IndexStatus};
pub use client::JournalClient;
pub use metrics::JournalMetrics;
pub use reads::{JournalReader, Reader};

use axon_protocols::checkpoint::Signer;
use axon_protocols::journal::{
    self as format, barcode, begin_record, encode_commit, entry_id, finish_record, leaf_hash,
    EntryError, EntryKind, EntryParts,
};
pub use axon_protocols::journal::{ActionId, Barcode, EntryId};
use axon_protocols::merkle::Hash;
use axon_supervisors::{SharedClock, Worker, WorkerContext, WorkerError};
use checkpoints::{Checkpointer, LogWriter};
use index::JournalIndex;
use indexer::Indexer;
use log::{Location, SharedLog};
use serde::Serialize;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How much lower than the commit thread's the CPU priority of the journal's background
/// threads is (the readers and the index thread): on a busy machine a commit, which
/// someone waits on, gets the processor first.
const BACKGROUND_NICE: i32 = 10;

/// Lowers the CPU priority of the calling thread by [`BACKGROUND_NICE`] (Linux: a
/// thread's nice value is its own). A refusal is logged and otherwise ignored: the thread
/// then runs at the normal priority.
pub(crate) fn run_in_background() {
    // SAFETY: gettid and setpriority take no pointers; they change this thread only.
    let done = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, now + BACKGROUND_NICE)
    };
    if done != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot lower a journal background thread's priority"
        );
    }
}

/// The largest signed checkpoint the checkpoint log takes (they are about 250 bytes).
pub(super) const MAX_CHECKPOINT_BYTES: usize = 4096;

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
    /// Space taken for the last segment ahead of its writes, this much at a time (0: none).
    /// Writing into space the file already has spares each commit's `fdatasync` the
    /// change of the file's size; the zeros after the last record are free space, cut
    /// when the segment is sealed or the journal stops.
    pub preallocate_bytes: u64,
    /// Largest canonical entry accepted.
    pub max_entry_bytes: usize,
    /// Most links one entry may carry.
    pub max_links: usize,
    /// Most appends in one group commit.
    pub batch_max_records: usize,
    /// How long the first append of a group commit may wait for more to join it.
    pub batch_max_wait: std::time::Duration,
    /// A signed checkpoint is due after this many group commits (see
    /// `checkpoint_min_interval`), and one is logged when the journal stops.
    pub head_every_commits: u64,
    /// At most one checkpoint is logged per this interval; every acknowledged entry is
    /// covered by a logged (served) checkpoint within it.
    pub checkpoint_min_interval: std::time::Duration,
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
    /// How long an opening journal waits for the exclusive lock on its directory, which
    /// an earlier incarnation holds until it is gone.
    pub lock_wait: std::time::Duration,
}

/// An append request. Its body is put in canonical bytes where the request is made, on
/// the caller's thread: the commit thread only frames it.
#[derive(Clone, Debug)]
pub struct NewEntry {
    pub kind: EntryKind,
    /// Ids of earlier entries.
    pub links: Vec<String>,
    /// The body's canonical bytes, or why it has none (the append is then refused).
    body: Result<format::Body, axon_protocols::canonical::CanonicalError>,
}

impl NewEntry {
    /// An append of an entry whose body is `body` (a `Value`, or any plain data: its
    /// canonical bytes are written straight from its `Serialize`).
    pub fn new<T: serde::Serialize + ?Sized>(
        kind: EntryKind,
        links: Vec<String>,
        body: &T,
    ) -> Self {
        Self {
            kind,
            links,
            body: format::Body::of(body),
        }
    }
}

/// What the journal is asked.
#[derive(Clone, Debug)]
pub enum JournalRequest {
    Append(NewEntry),
    Entry(u64),
    /// The entry with this id.
    ById(EntryId),
    ByBarcode(Barcode),
    /// The entries of an action.
    ByAction(ActionId),
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
    /// The newest logged checkpoint.
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
    /// Writing the batch failed after it was handed to the kernel: whether its entries
    /// are on disk is unknown (the journal halts; after a restart each is either there in
    /// full or not at all).
    #[error("the outcome is unknown: the write of this entry failed ({0}); the journal halted; after a restart the entry is either in the journal or not")]
    OutcomeUnknown(String),
    /// Something the journal did not expect of itself; nothing was changed.
    #[error("{0}")]
    Internal(String),
    /// The journal's worker did not answer (overloaded, restarting, timed out, failed).
    #[error(transparent)]
    Call(#[from] axon_supervisors::CallError),
}

/// What the journal publishes to the rest of the node, created once by the node and shared
/// by every incarnation: whether it is halted, the newest logged checkpoint, the verifier
/// key, and a reader of the current incarnation's log.
#[derive(Default)]
pub struct JournalShared {
    pub halt: Halt,
    /// Set when an open created the signing key (the node's first start).
    key_created: AtomicBool,
    checkpoint: Mutex<Option<String>>,
    key: Mutex<Option<String>>,
    reader: Mutex<Option<Reader>>,
}

fn locked<T: Clone>(m: &Mutex<Option<T>>) -> Option<T> {
    m.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn put<T>(m: &Mutex<Option<T>>, v: T) {
    *m.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
}

impl JournalShared {
    /// The newest checkpoint in the checkpoint log (durable before it is published).
    pub fn checkpoint(&self) -> Result<String, Refusal> {
        locked(&self.checkpoint).ok_or_else(|| {
            Refusal::Busy(
                "no checkpoint is logged yet; one is within journal.checkpoint_min_interval_ms"
                    .into(),
            )
        })
    }

    /// The verifier key, in signed-note vkey form.
    pub fn key(&self) -> Option<String> {
        locked(&self.key)
    }

    /// Whether the signing key was created by this node's start (its first).
    pub fn key_created(&self) -> bool {
        self.key_created.load(Ordering::Acquire)
    }

    /// A reader of the current incarnation's log (for the reader worker).
    pub fn reader(&self) -> Option<Reader> {
        locked(&self.reader)
    }

    fn publish_checkpoint(&self, note: String) {
        put(&self.checkpoint, note);
    }
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
    /// Another incarnation (or process) still holds the journal's directory: it may still
    /// write, so this one does not open.
    #[error("{path} is locked by another incarnation of the journal, which may still write; waited {waited:?}")]
    Locked {
        path: PathBuf,
        waited: std::time::Duration,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A staged append.
#[derive(Clone, Copy)]
struct Staged {
    leaf: Hash,
    /// Its place in the log once committed.
    index: u64,
    /// Length of the entry's bytes.
    len: u32,
    /// Offset of the entry's bytes in the batch.
    at: usize,
    /// The key of the action it belongs to, if any ([`log::action_key`]).
    action: Option<u64>,
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

/// Why a group commit failed: before anything was written (its appends are refused), or
/// while writing (whether they are on disk is unknown).
enum CommitFailure {
    NothingWritten(String),
    Unknown(String),
}

impl CommitFailure {
    fn reason(&self) -> &str {
        match self {
            Self::NothingWritten(r) | Self::Unknown(r) => r,
        }
    }
}

/// How far ahead of the records a commit writes zeros into the space taken (at most
/// `journal.preallocate_bytes` of it), when it reaches past the zeros written before: with
/// echo actions, about one commit in fifteen carries them. Kept small, since the commit
/// that carries them waits for them too. Measured on this project's virtio ext4 disk with
/// a loop of 2400-byte writes, each followed by fdatasync: p50 0.21-0.28 ms into space
/// taken with fallocate, 0.15-0.16 ms into zeros written 64 KiB at a time this way.
const ZERO_STEP: u64 = 64 << 10;

/// The commit record's framing and body: what every group commit adds after its entries.
const COMMIT_RECORD: u64 = (format::RECORD_HEADER + format::COMMIT_BODY) as u64;

/// The journal worker: the commit thread.
pub struct Journal {
    cfg: JournalConfig,
    clock: SharedClock,
    shard_dir: PathBuf,
    /// The segment files' paths, in order (the files themselves are in the log).
    segments: Vec<PathBuf>,
    /// The last segment, open to append.
    tail: Option<Arc<File>>,
    /// Length of what is written to the last segment (its records).
    tail_len: u64,
    /// Length of the last segment's file: `tail_len` and the space taken ahead of the
    /// writes (zeros), see [`JournalConfig::preallocate_bytes`].
    tail_allocated: u64,
    /// Where the last segment's written zeros end (see [`ZERO_STEP`]): from `tail_len` to
    /// here the file holds zeros written and made durable, not just space taken.
    zeroed: u64,
    /// Whether space is taken ahead for the last segment: off when configured so, once
    /// the file system cannot, and for the rest of a segment once it refused (say, a
    /// full disk).
    preallocating: bool,
    /// The file system cannot take space ahead (found at a refusal).
    cannot_preallocate: bool,
    log: SharedLog,
    /// The time of the last entry: entry times never decrease along the log.
    last_time: String,
    /// Feeds the sled index from a thread of its own, off the commit path; `None` when
    /// read-only or when the index could not be opened (lookups then read the segments).
    index: Option<Indexer>,
    signer: Arc<Signer>,
    /// The verifier key every checkpoint is checked with.
    vkey: String,
    origin: String,
    shared: Arc<JournalShared>,
    /// Logs and publishes checkpoints (not when auditing).
    checkpointer: Option<Checkpointer>,
    /// The checkpoint log, open to append, until the checkpointer takes it.
    checkpoint_log: Option<File>,
    /// The newest checkpoint in the log at open.
    newest_checkpoint: Option<String>,
    /// Checkpoints in the log at open, and the size the last one records.
    checkpoints: u64,
    head_size: Option<u64>,
    recovery: Recovery,
    /// The size of the last commit record.
    last_commit: u64,
    mode: Mode,
    metrics: Arc<OnceLock<JournalMetrics>>,
    /// The reader over this incarnation's log.
    reader: Reader,
    /// The exclusive lock on the journal's directory, held through this open handle until
    /// this incarnation is gone (and its threads with it): no successor writes meanwhile.
    /// Dropped last, after `Drop` has stopped the threads.
    _lock: Option<File>,
}

/// Takes the exclusive lock on `<dir>/journal.lock`, waiting at most `wait` for an earlier
/// incarnation to let go of it. A lock held through an open handle is the only fence that
/// holds against a write already stuck in the kernel: a check made before writing is not.
fn lock_dir(dir: &Path, wait: std::time::Duration) -> Result<File, OpenError> {
    let path = dir.join("journal.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Locked {
                    path,
                    waited: started.elapsed(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
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

impl Journal {
    /// Opens a stopped node's journal to read it, checking every record and changing
    /// nothing on disk. Appends to it are refused.
    pub fn open_read_only(cfg: JournalConfig) -> Result<Self, OpenError> {
        let shared: Arc<JournalShared> = Arc::default();
        shared.halt.halt("the journal is open read-only".into());
        Self::open_mode(
            cfg,
            axon_supervisors::SystemClock::shared(),
            shared,
            Mode::Audit,
            None,
            &mut |_, _| {},
        )
    }

    /// Opens (or creates) the journal, checking every record, and starts its index and
    /// checkpoint threads.
    pub fn open(
        cfg: JournalConfig,
        clock: SharedClock,
        shared: Arc<JournalShared>,
    ) -> Result<Self, OpenError> {
        Self::open_mode(cfg, clock, shared, Mode::Write, None, &mut |_, _| {})
    }

    fn open_mode(
        cfg: JournalConfig,
        clock: SharedClock,
        shared: Arc<JournalShared>,
        mode: Mode,
        trusted_key: Option<&str>,
        progress: &mut dyn FnMut(&Path, u64),
    ) -> Result<Self, OpenError> {
        let shard_dir = cfg.dir.join(format!("shard-{}", cfg.shard));
        let mut lock = None;
        let signer = match mode {
            Mode::Write => {
                std::fs::create_dir_all(&shard_dir).map_err(io(&shard_dir))?;
                lock = Some(lock_dir(&cfg.dir, cfg.lock_wait)?);
                segments::sync_dir(&cfg.dir)?;
                if let Some(parent) = cfg.dir.parent() {
                    segments::sync_dir(parent)?;
                }
                let (signer, created) = keys::load_or_create_key(&cfg.dir, &cfg.key_name)?;
                if created {
                    shared.key_created.store(true, Ordering::Release);
                }
                signer
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
        // What the checkpoints must be signed by: the key an auditor holds, when given
        // (whoever can write the data directory can replace node.key and sign again).
        let vkey = match trusted_key {
            Some(k) if k.trim() != signer.vkey() => {
                return Err(OpenError::Key(format!(
                    "the journal's key is {}, not the key given with --key ({}): node.key was replaced, so none of the journal's signatures can be trusted",
                    signer.vkey(),
                    k.trim()
                )));
            }
            Some(k) => k.trim().to_owned(),
            None => signer.vkey(),
        };
        let origin = format!("{}/shard-{}", cfg.key_name, cfg.shard);
        let log: SharedLog = Arc::default();
        let metrics: Arc<OnceLock<JournalMetrics>> = Arc::default();
        let reader = Reader {
            cfg: cfg.clone(),
            log: log.clone(),
            index: None,
            metrics: metrics.clone(),
        };
        let mut j = Journal {
            shard_dir,
            segments: Vec::new(),
            tail: None,
            tail_len: 0,
            tail_allocated: 0,
            zeroed: 0,
            preallocating: cfg.preallocate_bytes > 0,
            cannot_preallocate: false,
            log,
            last_time: String::new(),
            index: None,
            signer: Arc::new(signer),
            vkey,
            origin,
            shared,
            checkpointer: None,
            checkpoint_log: None,
            newest_checkpoint: None,
            checkpoints: 0,
            head_size: None,
            recovery: Recovery::default(),
            last_commit: 0,
            mode,
            metrics,
            reader,
            _lock: lock,
            clock,
            cfg,
        };
        // The checkpoint log first: what it covers was acknowledged, and start-up must not
        // cut it away as a torn tail.
        let logged = j.read_checkpoint_log()?;
        j.recover(progress, logged.covered().unwrap_or(0))?;
        j.check_logged_checkpoints(logged)?;
        put(&j.shared.key, j.signer.vkey());
        if let Some(note) = j.newest_checkpoint.clone() {
            j.shared.publish_checkpoint(note);
        }
        if mode == Mode::Write {
            j.open_index();
            j.start_checkpointer()?;
        }
        put(&j.shared.reader, j.reader.clone());
        Ok(j)
    }

    fn start_checkpointer(&mut self) -> Result<(), OpenError> {
        let path = self.checkpoints_path();
        let file = self
            .checkpoint_log
            .take()
            .expect("the checkpoint log is open to write");
        let writer = LogWriter {
            file,
            path: path.clone(),
            signer: self.signer.clone(),
            origin: self.origin.clone(),
            journal: self.shared.clone(),
            clock: self.clock.clone(),
            every: self.cfg.head_every_commits,
            interval: self.cfg.checkpoint_min_interval,
            metrics: self.metrics.clone(),
        };
        let size = self.len();
        let root = log::read(&self.log).root_at(size).expect("in range");
        self.checkpointer =
            Some(Checkpointer::start(writer, (size, root), self.head_size).map_err(io(&path))?);
        Ok(())
    }

    /// Where `index` can catch up from: the size it was built for when that is a prefix
    /// of this tree (its size and root agree with the tree at that size); else it is
    /// recreated empty, from 0.
    fn index_start(&self, index: JournalIndex) -> Result<(JournalIndex, u64), String> {
        let fits = index.built_for().filter(|(size, root)| {
            *size <= self.len() && log::read(&self.log).root_at(*size).ok() == Some(*root)
        });
        match fits {
            Some((size, _)) => Ok((index, size)),
            None => Ok((index.recreate()?, 0)),
        }
    }

    fn index_path(&self) -> PathBuf {
        audit::index_dir(&self.cfg)
    }

    fn use_indexer(&mut self, indexer: Indexer) {
        self.reader.index = Some(reads::IndexView {
            index: indexer.index.clone(),
            indexed: indexer.indexed.clone(),
        });
        self.index = Some(indexer);
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
        self.use_indexer(indexer);
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
        let size = self.len();
        let want = (size, log::read(&self.log).root_at(size).expect("in range"));
        if index.built_for() == Some(want) {
            self.use_indexer(Indexer::reading(index, want.0));
        }
    }

    /// Reports to `metrics` from now on (its readers and checkpoint thread too).
    pub fn set_metrics(&mut self, metrics: JournalMetrics) {
        metrics.entries.set(self.len() as i64);
        metrics.halted.set(i64::from(self.shared.halt.is_halted()));
        if let Some((_, _, bytes)) = &self.recovery.torn_tail {
            metrics.torn_tail_bytes.inc_by(*bytes);
        }
        match &self.index {
            Some(ix) => ix.report_lag_to(metrics.index_lag.clone()),
            // No index (it could not be opened): every lookup reads every entry.
            None => metrics.index_lag.set(self.len() as i64),
        }
        let _ = self.metrics.set(metrics);
    }

    fn metrics(&self) -> Option<&JournalMetrics> {
        self.metrics.get()
    }

    /// What start-up found.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Entries in the journal (all durable between batches).
    pub fn len(&self) -> u64 {
        log::read(&self.log).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The reader over this journal's log: what the reader worker runs, and what tests,
    /// `axon audit` and `axon replay` read with.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// Validates and stages the appends of one batch. Returns the bytes to write and, per
    /// request, the staged entry or why it was refused.
    fn stage(&self, appends: Vec<NewEntry>, time: &str) -> (Vec<u8>, Vec<Result<Staged, Refusal>>) {
        let mut buf = Vec::with_capacity(appends.len() * 256);
        let mut staged_ids = log::ByLeaf::default();
        let mut out = Vec::with_capacity(appends.len());
        let log = log::read(&self.log);
        for new in appends {
            let index = log.len() + staged_ids.len() as u64;
            let r = (|| {
                if new.links.len() > self.cfg.max_links {
                    return Err(Refusal::Invalid(format!(
                        "{} links; at most {} are allowed",
                        new.links.len(),
                        self.cfg.max_links
                    )));
                }
                for link in &new.links {
                    let known = link.parse::<EntryId>().ok().filter(|id| {
                        log.index_of(id.hash()).is_some() || staged_ids.contains_key(id.hash())
                    });
                    if known.is_none() {
                        return Err(Refusal::BadLink(format!(
                            "link {link:?} is not the id of an earlier entry"
                        )));
                    }
                }
                let body = new
                    .body
                    .as_ref()
                    .map_err(|c| Refusal::NotCanonical(c.clone()))?;
                // Written straight into the batch, behind the record header.
                let start = begin_record(&mut buf);
                let parts = EntryParts {
                    shard: self.cfg.shard,
                    index,
                    kind: new.kind,
                    time,
                    links: &new.links,
                    body,
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
                let bytes = finish_record(&mut buf, start);
                // Paired assertion: what is written reads back through the reader that
                // start-up and the audit use; bytes that do not are never written. (The
                // body was checked where the entry was asked for: here only the rest is.)
                if let Err(e) = format::EntryHead::reads_back(bytes, body) {
                    tracing::error!(index, error = %e, "staged bytes do not read back");
                    buf.truncate(start);
                    return Err(Refusal::Internal(format!(
                        "the entry's bytes do not read back ({e}); nothing was appended"
                    )));
                }
                let leaf = leaf_hash(bytes);
                Ok(Staged {
                    leaf,
                    index,
                    len: len as u32,
                    at: start + format::RECORD_HEADER,
                    action: body.action().and_then(log::action_key),
                })
            })();
            if let Ok(s) = &r {
                staged_ids.insert(s.leaf, index);
            }
            out.push(r);
        }
        (buf, out)
    }

    /// Writes one group commit; every staged append is acknowledged only if this returns
    /// Ok. The entries join the log before the write (readers see only what is durable),
    /// and leave it again if the write fails.
    fn commit(
        &mut self,
        mut buf: Vec<u8>,
        staged: &[Staged],
        time: &str,
    ) -> Result<(), CommitFailure> {
        let before = self.len();
        if self.tail_len > 0
            && self.tail_len + buf.len() as u64 + COMMIT_RECORD > self.cfg.segment_max_bytes
        {
            self.seal_tail().map_err(|e| {
                CommitFailure::NothingWritten(format!("cannot seal the last segment: {e}"))
            })?;
            self.create_segment(before).map_err(|e| {
                CommitFailure::NothingWritten(format!("cannot start a new segment: {e}"))
            })?;
        }
        let (size, root) = {
            let mut log = log::write(&self.log);
            let segment = (log.files() - 1) as u32;
            for s in staged {
                // Staged in order after what the log held, by this thread alone.
                debug_assert_eq!(log.len(), s.index);
                log.push(
                    s.leaf,
                    Location {
                        segment,
                        offset: self.tail_len + s.at as u64,
                        len: s.len,
                    },
                    s.action,
                );
            }
            (log.len(), log.root_at(log.len()).expect("in range"))
        };
        encode_commit(before, size, &root, &mut buf);
        let tail = self.tail.clone().expect("a segment is open");
        let started = std::time::Instant::now();
        let end = self.tail_len + buf.len() as u64;
        if end > self.tail_allocated {
            self.take_space_ahead(&tail, end);
        }
        // Zeros go ahead of the records, within the space taken, a step at a time with the
        // commit that reaches past the last step (same write, same fdatasync): space
        // taken with fallocate is unwritten, and each commit's first write into it changes
        // the file system's metadata, which its fdatasync then also commits; a commit into
        // written zeros is data alone.
        let zeros_to = if end > self.zeroed {
            (end + ZERO_STEP).min(self.tail_allocated)
        } else {
            end
        };
        if zeros_to > end {
            buf.resize(buf.len() + (zeros_to - end) as usize, 0);
        }
        let written = tail
            .write_all_at(&buf, self.tail_len)
            .and_then(|()| tail.sync_data());
        if let Some(m) = self.metrics() {
            m.commit_seconds.observe(started.elapsed().as_secs_f64());
            m.commit_entries.observe(staged.len() as f64);
        }
        if let Err(e) = written {
            log::write(&self.log).truncate(before);
            let path = self.segments.last().expect("a segment is open");
            return Err(CommitFailure::Unknown(format!(
                "writing {}: {e}",
                path.display()
            )));
        }
        log::write(&self.log).mark_durable(size);
        self.last_commit = size;
        self.tail_len = end;
        self.tail_allocated = self.tail_allocated.max(end);
        self.zeroed = self.zeroed.max(zeros_to);
        time.clone_into(&mut self.last_time);
        match (&self.index, self.metrics()) {
            (Some(index), _) => index.committed(size),
            (None, Some(m)) => m.index_lag.set(size as i64),
            (None, None) => {}
        }
        if let Some(c) = &self.checkpointer {
            c.committed(size, root, self.clock.now());
        }
        Ok(())
    }

    /// Takes space for the last segment ahead of a write that ends at `end`:
    /// [`JournalConfig::preallocate_bytes`] more but not past `segment_max_bytes`, or up to
    /// `end` when that is further (the space is zeros, and the file's length includes
    /// it). A file system that cannot is written without it from then on, and after any
    /// other refusal the rest of the segment is (one warning says so); the write itself
    /// meets the cause, if it lasts.
    fn take_space_ahead(&mut self, tail: &File, end: u64) {
        if !self.preallocating {
            return;
        }
        // Never past the segment's bound (a write that needs more makes its own room).
        let target = (self.tail_allocated + self.cfg.preallocate_bytes)
            .min(self.cfg.segment_max_bytes)
            .max(end);
        let (Ok(offset), Ok(len)) = (
            i64::try_from(self.tail_allocated),
            i64::try_from(target - self.tail_allocated),
        ) else {
            return;
        };
        // SAFETY: fallocate takes no pointers; `tail` is an open file descriptor.
        let r = unsafe { libc::fallocate(tail.as_raw_fd(), 0, offset, len) };
        if r == 0 {
            self.tail_allocated = target;
            return;
        }
        let e = std::io::Error::last_os_error();
        // A refusal may still have taken part of the space: the file's length says.
        if let Ok(m) = tail.metadata() {
            self.tail_allocated = self.tail_allocated.max(m.len());
        }
        self.preallocating = false;
        if matches!(
            e.raw_os_error(),
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
        ) {
            self.cannot_preallocate = true;
            tracing::warn!(dir = %self.shard_dir.display(), error = %e, "the file system cannot take space ahead of the journal's writes; each commit grows the segment instead");
        } else {
            tracing::warn!(dir = %self.shard_dir.display(), error = %e, "could not take space ahead of the journal's writes; the rest of this segment is written without it");
        }
    }

    /// Cuts the last segment's space taken ahead (zeros after its last record), durably:
    /// before a new segment follows it, and when the journal stops. A sealed segment
    /// ends with its last commit record.
    fn seal_tail(&mut self) -> std::io::Result<()> {
        let Some(tail) = &self.tail else {
            return Ok(());
        };
        if self.tail_allocated > self.tail_len {
            tail.set_len(self.tail_len)?;
            tail.sync_all()?;
            self.tail_allocated = self.tail_len;
            self.zeroed = self.tail_len;
        }
        Ok(())
    }

    /// Stops the index and checkpoint threads; the checkpoint thread logs a last
    /// checkpoint of what is durable (unless the journal is halted). The last segment's
    /// space taken ahead is cut, unless the journal is halted: then nothing is written.
    fn close(&mut self) {
        if self.mode == Mode::Write && !self.shared.halt.is_halted() {
            if let Err(e) = self.seal_tail() {
                tracing::warn!(dir = %self.shard_dir.display(), error = %e, "could not cut the space taken ahead of the last segment's writes; the next start cuts it");
            }
        }
        if let Some(mut index) = self.index.take() {
            index.stop();
        }
        if let Some(mut c) = self.checkpointer.take() {
            c.stop();
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

    /// Appends are staged and committed together. Other requests are answered by this
    /// journal's reader (a node sends them to the reader worker instead; tests and tools
    /// that hold a journal ask it directly), and checkpoints and the key from what is
    /// published.
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
            let halt = &self.shared.halt;
            if let Some(reason) = halt.reason().filter(|_| halt.is_halted()) {
                for slot in &append_slots {
                    answers[*slot] =
                        Some(JournalResponse::Refused(Refusal::Halted(reason.clone())));
                }
                if let Some(m) = self.metrics() {
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
                if let Err(failure) = &committed {
                    self.shared.halt.halt(failure.reason().to_owned());
                }
                if let Some(m) = self.metrics() {
                    let ok = staged.iter().filter(|r| r.is_ok()).count() as u64;
                    let refused = staged.len() as u64 - ok;
                    let outcome = if committed.is_ok() { "ok" } else { "halted" };
                    m.appends.with_label_values(&[outcome]).inc_by(ok);
                    m.appends.with_label_values(&["refused"]).inc_by(refused);
                    m.entries.set(self.len() as i64);
                    m.halted.set(i64::from(self.shared.halt.is_halted()));
                }
                for (slot, r) in append_slots.into_iter().zip(staged) {
                    answers[slot] = Some(match (r, &committed) {
                        (Err(refusal), _) => JournalResponse::Refused(refusal),
                        (Ok(_), Err(CommitFailure::NothingWritten(reason))) => {
                            JournalResponse::Refused(Refusal::Halted(reason.clone()))
                        }
                        (Ok(_), Err(CommitFailure::Unknown(reason))) => {
                            JournalResponse::Refused(Refusal::OutcomeUnknown(reason.clone()))
                        }
                        (Ok(s), Ok(())) => JournalResponse::Appended(Appended {
                            index: s.index,
                            id: entry_id(&s.leaf),
                            barcode: barcode(&s.leaf),
                        }),
                    });
                }
            }
        }
        for (slot, req) in reads {
            answers[slot] = Some(match req {
                JournalRequest::Checkpoint => match self.shared.checkpoint() {
                    Ok(note) => JournalResponse::Checkpoint(note),
                    Err(refusal) => JournalResponse::Refused(refusal),
                },
                JournalRequest::Key => JournalResponse::Key(self.signer.vkey()),
                other => self.reader.read(other),
            });
        }
        Ok(answers
            .into_iter()
            .map(|a| Ok(a.expect("every request answered")))
            .collect())
    }
}
