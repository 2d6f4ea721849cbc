//! The journal's read side: entries, lookups by id, barcode and action, pages by kind and
//! time, and proofs, all from what is durable.
//!
//! Owns: [`Reader`], which answers every read from the shared [`Log`](super::log::Log) and
//! the segment files, and the [`JournalReader`] worker that runs it on a thread of its own,
//! so that no read waits behind a commit and no commit waits behind a read.
//! Must never: write anything, see an entry whose commit is not durable, trust the sled
//! index without checking each hit against the entry it names, or read more than
//! `journal.page_scan_max_entries` entries the index does not answer for in one request.

use super::index::{IndexRecord, JournalIndex};
use super::log::{self, SharedLog};
use super::{
    ConsistencyProof, Filter, InclusionProof, JournalConfig, JournalMetrics, JournalRequest,
    JournalResponse, Refusal, StoredEntry,
};
use axon_protocols::journal::{
    self as format, barcode, entry_id, leaf_hash, ActionId, Barcode, EntryHead, EntryKind,
};
use axon_protocols::merkle::Hash;
use axon_supervisors::{Worker, WorkerContext, WorkerError};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// The sled index as readers see it: taken out only while the index thread reopens it
/// (lookups then wait), and the size it is built for.
#[derive(Clone)]
pub(super) struct IndexView {
    pub index: Arc<RwLock<Option<JournalIndex>>>,
    pub indexed: Arc<AtomicU64>,
}

/// Answers reads of one journal incarnation. Cheap to clone: every clone reads the same
/// log.
#[derive(Clone)]
pub struct Reader {
    pub(super) cfg: JournalConfig,
    pub(super) log: SharedLog,
    pub(super) index: Option<IndexView>,
    /// Where index hits that do not match the entry they name are counted.
    pub(super) metrics: Arc<OnceLock<JournalMetrics>>,
}

/// An entry as answered: its bytes and what its leaf hash and head say of it.
fn stored(
    index: u64,
    leaf: &Hash,
    kind: EntryKind,
    links: Vec<String>,
    bytes: Vec<u8>,
) -> StoredEntry {
    StoredEntry {
        index,
        id: entry_id(leaf),
        kind,
        barcode: barcode(leaf),
        leaf_hash: entry_id(leaf),
        bytes,
        links,
    }
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

impl Reader {
    /// The same reader with another scan bound (offline tools may read every entry).
    pub fn with_scan_max(&self, entries: usize) -> Self {
        let mut r = self.clone();
        r.cfg.page_scan_max_entries = entries;
        r
    }

    /// Entries whose commit is durable: everything a read may see.
    pub fn len(&self) -> u64 {
        log::read(&self.log).durable()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn scan_max(&self) -> u64 {
        self.cfg.page_scan_max_entries.max(1) as u64
    }

    fn mismatch(&self, what: &str, index: u64) {
        tracing::warn!(
            lookup = what,
            index,
            "the journal index names an entry that does not match; answering from the segments"
        );
        if let Some(m) = self.metrics.get() {
            m.index_mismatches.inc();
        }
    }

    /// The entry at `index`, read back and checked against its hash.
    pub fn entry(&self, index: u64) -> Result<StoredEntry, Refusal> {
        Ok(self.read_head(index)?.0)
    }

    /// Entry `index` read back and checked against its leaf hash, with its head only
    /// (kind, time, links), read by the one-pass head reader (which refuses what is not
    /// canonical, as a full parse does): what scans by kind and time need, without
    /// building the body.
    fn read_head(&self, index: u64) -> Result<(StoredEntry, EntryHead), Refusal> {
        let (bytes, leaf) = self.fetch(index)?;
        let head = EntryHead::from_bytes(&bytes).map_err(|_| Refusal::Damaged(index))?;
        let links = head.links.clone();
        Ok((stored(index, &leaf, head.kind, links, bytes), head))
    }

    /// Entry `index`'s bytes, read from its segment once it is durable, and checked
    /// against its leaf hash.
    fn fetch(&self, index: u64) -> Result<(Vec<u8>, Hash), Refusal> {
        let found = {
            let log = log::read(&self.log);
            let durable = log.durable();
            (index < durable)
                .then(|| log.location(index))
                .flatten()
                .ok_or(durable)
        };
        let (at, file, leaf) = found.map_err(|durable| {
            Refusal::NotFound(format!("no entry {index}; the journal holds {durable}"))
        })?;
        let mut bytes = vec![0u8; at.len as usize];
        file.read_exact_at(&mut bytes, at.offset)
            .map_err(|_| Refusal::Damaged(index))?;
        if leaf_hash(&bytes) != leaf {
            return Err(Refusal::Damaged(index));
        }
        Ok((bytes, leaf))
    }

    /// Answers from the sled index below the size it covers (and below what is durable);
    /// `None` (scan instead) without one or when it fails.
    fn ask_index(
        &self,
        ask: impl FnOnce(&JournalIndex, u64) -> Result<Vec<u64>, String>,
    ) -> Option<(Vec<u64>, u64)> {
        let view = self.index.as_ref()?;
        let guard = view.index.read().unwrap_or_else(|e| e.into_inner());
        let ix = guard.as_ref()?;
        let upto = view.indexed.load(Ordering::Acquire).min(self.len());
        match ask(ix, upto) {
            Ok(hits) => Some((hits.into_iter().filter(|i| *i < upto).collect(), upto)),
            Err(e) => {
                tracing::warn!(error = %e, "journal index lookup failed; scanning");
                None
            }
        }
    }

    /// The indexes of the entries with barcode `code`, durable ones only, in order: from
    /// the log's own table (a barcode is the first 60 bits of a leaf hash, and every leaf
    /// hash is in memory).
    pub fn indexes_of_barcode(&self, code: &Barcode) -> Result<Vec<u64>, Refusal> {
        let log = log::read(&self.log);
        let durable = log.durable();
        Ok(log
            .with_barcode_bits(code.bits())
            .filter(|i| *i < durable)
            .collect())
    }

    /// The entries of `action`, durable ones only, in order: from the log's action table,
    /// each entry it names read once and its head checked against the action (two actions
    /// may share a key there).
    pub fn entries_of_action(&self, action: &ActionId) -> Result<Vec<StoredEntry>, Refusal> {
        let action = action.as_str();
        let filed: Vec<u64> = match log::action_key(action) {
            Some(key) => {
                let log = log::read(&self.log);
                let durable = log.durable();
                log.with_action_key(key).filter(|i| *i < durable).collect()
            }
            None => vec![],
        };
        let mut found = Vec::with_capacity(filed.len());
        for i in filed {
            let (stored, head) = self.read_head(i)?;
            if head.action.as_deref() == Some(action) {
                found.push(stored);
            }
        }
        Ok(found)
    }

    /// The indexes of the entries of `action` (see [`entries_of_action`](Self::entries_of_action)).
    pub fn indexes_of_action(&self, action: &ActionId) -> Result<Vec<u64>, Refusal> {
        Ok(self
            .entries_of_action(action)?
            .into_iter()
            .map(|e| e.index)
            .collect())
    }

    /// Up to `limit` (at most `page_max_entries`, and no more than `page_max_bytes` of
    /// them) entries after index `after` that match `filter`, in order, and the index to
    /// continue after when the page is full. Times bound an index range (entry times never
    /// decrease); kinds come from the sled index where it reaches, each hit checked.
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
            lo = lo.max(self.first_at_or_after(since, hi)?);
        }
        if let Some(until) = &filter.until {
            hi = hi.min(self.first_at_or_after(until, hi)?);
        }
        match filter.kind {
            None => {
                let mut i = lo;
                while i < hi && page.push(self.entry(i)?) {
                    i += 1;
                }
            }
            Some(kind) => {
                let mut from = lo;
                if let Some((hits, upto)) =
                    self.ask_index(|ix, upto| ix.by_kind(kind, lo, hi.min(upto), limit))
                {
                    let mut open = true;
                    for i in hits {
                        let (stored, head) = self.read_head(i)?;
                        if head.kind != kind {
                            self.mismatch("kind", i);
                            page.entries.clear();
                            page.bytes = 0;
                            return self.scan_kind(page, kind, lo, hi);
                        }
                        open = page.push(stored);
                        if !open {
                            break;
                        }
                    }
                    if !open {
                        return Ok(Self::finish(page));
                    }
                    from = from.max(upto);
                }
                return self.scan_kind(page, kind, from, hi);
            }
        }
        Ok(Self::finish(page))
    }

    /// Fills `page` with the entries of `kind` in `from..hi` by reading them, at most
    /// `page_scan_max_entries` of them: past that the page ends early with `next_after`.
    fn scan_kind(
        &self,
        mut page: Page,
        kind: EntryKind,
        from: u64,
        hi: u64,
    ) -> Result<(Vec<StoredEntry>, Option<u64>), Refusal> {
        let budget = from.saturating_add(self.scan_max());
        let mut i = from;
        while i < hi {
            if i >= budget {
                // Scanned enough for one request: go on after what was read.
                return Ok((page.entries, Some(i - 1)));
            }
            let (stored, head) = self.read_head(i)?;
            i += 1;
            if head.kind == kind && !page.push(stored) {
                break;
            }
        }
        Ok(Self::finish(page))
    }

    fn finish(page: Page) -> (Vec<StoredEntry>, Option<u64>) {
        let next = page
            .is_full()
            .then(|| page.entries.last().map(|e| e.index))
            .flatten();
        (page.entries, next)
    }

    /// The first index below `hi` whose entry is dated `time` or later (`hi` when none
    /// is): a binary search, since entry times never decrease.
    fn first_at_or_after(&self, time: &str, hi: u64) -> Result<u64, Refusal> {
        let (mut lo, mut hi) = (0, hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.read_head(mid)?.1.time.as_str() < time {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// What the index records of entry `index`, read from the segments.
    fn record(&self, index: u64) -> Result<IndexRecord, Refusal> {
        let (bytes, _) = self.fetch(index)?;
        let head = EntryHead::from_bytes(&bytes).map_err(|_| Refusal::Damaged(index))?;
        Ok(IndexRecord::of(head))
    }

    /// The records of up to `count` entries spread evenly over the journal, the last one
    /// included.
    pub(super) fn sample_records(&self, count: usize) -> Result<Vec<IndexRecord>, Refusal> {
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

    fn entries(&self, found: Vec<u64>, none: String) -> Result<JournalResponse, Refusal> {
        if found.is_empty() {
            return Err(Refusal::NotFound(none));
        }
        found
            .into_iter()
            .map(|i| self.entry(i))
            .collect::<Result<Vec<_>, _>>()
            .map(JournalResponse::Entries)
    }

    /// Answers one read request.
    pub fn read(&self, req: JournalRequest) -> JournalResponse {
        let hexes = |v: Vec<Hash>| v.iter().map(|h| format::hex(h)).collect::<Vec<_>>();
        let r = match req {
            JournalRequest::Append(_) => Err(Refusal::Invalid(
                "appends go to the journal's commit thread, not to a reader".into(),
            )),
            JournalRequest::Entry(i) => self.entry(i).map(JournalResponse::Entry),
            JournalRequest::ById(id) => {
                let found = {
                    let log = log::read(&self.log);
                    log.index_of(id.hash()).filter(|i| *i < log.durable())
                };
                match found {
                    Some(i) => self.entry(i).map(JournalResponse::Entry),
                    None => Err(Refusal::NotFound(format!("no entry has id {id}"))),
                }
            }
            JournalRequest::ByAction(action) => {
                self.entries_of_action(&action)
                    .and_then(|found| match found {
                        found if found.is_empty() => Err(Refusal::NotFound(format!(
                            "no entry belongs to action {action}"
                        ))),
                        found => Ok(JournalResponse::Entries(found)),
                    })
            }
            JournalRequest::ByBarcode(code) => self
                .indexes_of_barcode(&code)
                .and_then(|f| self.entries(f, format!("no entry has barcode {code}"))),
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
            // The Merkle log checks the ranges; its refusal is the client's answer. Proofs
            // reach only as far as what is durable.
            JournalRequest::Inclusion { index, size } => {
                let log = log::read(&self.log);
                if size > log.durable() {
                    Err(Refusal::Invalid(format!(
                        "size {size} is beyond the journal's {} entries",
                        log.durable()
                    )))
                } else {
                    log.inclusion_proof(index, size)
                        .map_err(|e| Refusal::Invalid(e.to_string()))
                        .map(|proof| {
                            JournalResponse::Inclusion(InclusionProof {
                                index,
                                tree_size: size,
                                leaf_hash: format::hex(&log.leaf(index).expect("in range")),
                                root: format::hex(&log.root_at(size).expect("in range")),
                                proof: hexes(proof),
                            })
                        })
                }
            }
            JournalRequest::Consistency { from, to } => {
                let log = log::read(&self.log);
                if to > log.durable() {
                    Err(Refusal::Invalid(format!(
                        "size {to} is beyond the journal's {} entries",
                        log.durable()
                    )))
                } else {
                    log.consistency_proof(from, to)
                        .map_err(|e| Refusal::Invalid(e.to_string()))
                        .map(|proof| {
                            JournalResponse::Consistency(ConsistencyProof {
                                size1: from,
                                size2: to,
                                root1: format::hex(&log.root_at(from).expect("in range")),
                                root2: format::hex(&log.root_at(to).expect("in range")),
                                proof: hexes(proof),
                            })
                        })
                }
            }
            JournalRequest::Checkpoint | JournalRequest::Key => Err(Refusal::Invalid(
                "checkpoints and the key are published, not read".into(),
            )),
        };
        r.unwrap_or_else(JournalResponse::Refused)
    }
}

/// The worker that answers the journal's reads on a thread of its own, beside the commit
/// thread: one incarnation per journal incarnation (it starts after the journal, in the
/// same `rest_for_one` supervisor, and reads the log that journal publishes).
pub struct JournalReader {
    reader: Reader,
}

impl JournalReader {
    /// The worker, on the calling thread (its own), which it moves to a lower CPU
    /// priority than the commit thread: a read never takes the processor from a commit.
    pub fn new(reader: Reader) -> Self {
        super::run_in_background();
        Self { reader }
    }
}

impl Worker for JournalReader {
    type Request = JournalRequest;
    type Response = JournalResponse;

    fn handle(
        &mut self,
        request: JournalRequest,
        _cx: &mut WorkerContext<'_>,
    ) -> Result<JournalResponse, WorkerError> {
        Ok(self.reader.read(request))
    }
}
