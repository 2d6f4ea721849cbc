//! Keeps the sled index up with the journal from a thread of its own, off the commit path.
//!
//! The journal tells the indexer only how far its commits are durable; the indexer reads
//! the entries itself from the segment files, from where the index stopped, and marks the
//! index built at each commit record it passes (the commit record carries the size and the
//! root the index is then built for). It never falls behind for good: under load it lags,
//! and lookups read the entries it has not reached from the segments. The same reader
//! brings an index up to date at `axon audit --rebuild-index`.
//!
//! Owns: the index thread and its catch-up from the segments. Must never: write a
//! segment, make the commit thread wait (it is told sizes, nothing more), or mark the
//! index built for a size it has not read to a commit record.

use super::index::{IndexRecord, JournalIndex};
use axon_protocols::journal::{read_record, record_header, EntryHead, RecordRead, RECORD_HEADER};
use axon_protocols::merkle::Hash;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The segment reader's buffer.
const READ_BUFFER: usize = 64 << 10;

/// The indexer writes to sled once it holds this many entries (at the next commit).
const CHUNK: usize = 4096;

/// How long the indexer lets group commits gather before it reads them: waking for each
/// one would cost the commit path more than sled's own work.
const GATHER: Duration = Duration::from_millis(20);

/// Asked to stop, the indexer finishes what is committed for at most this long (so that
/// the next start has nothing to catch up), then stops at the next commit.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Reads a shard's records in order from its segment files.
struct SegmentReader {
    dir: PathBuf,
    max_entry_bytes: usize,
    file: Option<BufReader<File>>,
    /// Where the next record starts in the open segment.
    pos: u64,
    /// The index of the next entry.
    next: u64,
    /// The size of the last commit record read (or the start).
    committed: u64,
    buf: Vec<u8>,
}

enum Item {
    Entry(IndexRecord),
    Commit { size: u64, root: Hash },
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

impl SegmentReader {
    /// A reader positioned after the commit record of size `at` (a commit boundary).
    fn open(dir: &Path, max_entry_bytes: usize, at: u64) -> Result<Self, String> {
        let mut first = 0;
        for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let name = e.map_err(|e| e.to_string())?.file_name();
            let n = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = n.filter(|n| *n <= at) {
                first = first.max(n);
            }
        }
        let mut r = Self {
            dir: dir.to_owned(),
            max_entry_bytes,
            file: None,
            pos: 0,
            next: first,
            committed: first,
            buf: Vec::new(),
        };
        r.open_segment(first)?;
        // Skip the entries before `at`, and the commit record that closes them.
        while r.committed < at {
            let file = r.file.as_mut().expect("open");
            let mut header = [0u8; RECORD_HEADER];
            file.read_exact(&mut header)
                .map_err(|e| format!("reading to entry {at}: {e}"))?;
            let (len, commit) = record_header(&header, max_entry_bytes)
                .map_err(|e| format!("reading to entry {at}: {e}"))?;
            file.seek_relative(len as i64).map_err(|e| e.to_string())?;
            r.pos += (RECORD_HEADER + len) as u64;
            if commit {
                r.committed = r.next;
            } else {
                r.next += 1;
            }
        }
        if r.committed != at {
            return Err(format!("entry {at} is not at the end of a commit"));
        }
        Ok(r)
    }

    fn open_segment(&mut self, first: u64) -> Result<(), String> {
        let path = segment_path(&self.dir, first);
        let f = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // Each wake-up reads the last segment again from the first record it has not
        // read (its buffer holds zeros of space taken ahead there): a buffer of a few
        // records' worth keeps that cheap, and the kernel reads ahead on its own.
        self.file = Some(BufReader::with_capacity(READ_BUFFER, f));
        self.pos = 0;
        Ok(())
    }

    /// Reads the record at `pos` into `buf` (its checksum unchecked): `false` when the
    /// bytes there do not frame a whole record (the end of the file, or bytes read ahead
    /// before they were written).
    fn read_record_bytes(&mut self) -> Result<bool, String> {
        let file = self.file.as_mut().expect("open");
        let mut header = [0u8; RECORD_HEADER];
        match file.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(format!("entry {}: {e}", self.next)),
        }
        // A header that does not hold may be bytes read while they were being written:
        // read again from the file before calling it damage.
        let Ok((len, _)) = record_header(&header, self.max_entry_bytes) else {
            return Ok(false);
        };
        self.buf.clear();
        self.buf.extend_from_slice(&header);
        self.buf.resize(RECORD_HEADER + len, 0);
        match file.read_exact(&mut self.buf[RECORD_HEADER..]) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(format!("entry {}: {e}", self.next)),
        }
    }

    /// Reads the record at `pos` afresh from the file: the buffer may hold bytes read
    /// ahead of the writes, such as the zeros of space taken ahead in the last segment,
    /// or of a segment before it was sealed.
    fn reread_record_bytes(&mut self) -> Result<bool, String> {
        let file = self.file.as_mut().expect("open");
        file.seek(SeekFrom::Start(self.pos))
            .map_err(|e| format!("entry {}: {e}", self.next))?;
        self.read_record_bytes()
    }

    /// The next record. Only called while records are known to be durable.
    fn next(&mut self) -> Result<Item, String> {
        // From the buffer; then afresh from the file (the buffer may hold bytes read
        // before they were written); then, where the file ends there (a sealed segment
        // ends with its last commit), from the next segment, which starts at the next
        // entry. A durable record is asked for, so none of them holding is damage.
        for attempt in 0..3 {
            let whole = match attempt {
                0 => self.read_record_bytes()?,
                1 => self.reread_record_bytes()?,
                _ => {
                    let file = self.file.as_ref().and_then(|f| f.get_ref().metadata().ok());
                    if file.is_some_and(|m| m.len() > self.pos) {
                        break;
                    }
                    self.open_segment(self.next)?;
                    self.read_record_bytes()?
                }
            };
            if !whole {
                continue;
            }
            match read_record(&self.buf, 0, self.max_entry_bytes) {
                RecordRead::Entry { bytes, .. } => {
                    // The head is all the index needs (its kind): read in one pass where
                    // the bytes allow, without building the body.
                    let entry = EntryHead::from_bytes(bytes)
                        .map_err(|e| format!("entry {}: {e}", self.next))?;
                    if entry.index != self.next {
                        return Err(format!(
                            "entry {} where entry {} belongs",
                            entry.index, self.next
                        ));
                    }
                    self.pos += self.buf.len() as u64;
                    self.next += 1;
                    return Ok(Item::Entry(IndexRecord::of(entry)));
                }
                RecordRead::Commit { size, root, .. } => {
                    if size != self.next {
                        return Err(format!("a commit of size {size} after entry {}", self.next));
                    }
                    self.pos += self.buf.len() as u64;
                    self.committed = size;
                    return Ok(Item::Commit { size, root });
                }
                RecordRead::Truncated | RecordRead::Corrupt(_) => {}
            }
        }
        Err(format!("entry {}: a damaged record", self.next))
    }
}

/// Reads entries from `reader` into `index` until the commit of size `target`, marking
/// the index built at commits every [`CHUNK`] entries or so; stops early (at a commit)
/// when `stop` says so.
fn catch_up(
    index: &JournalIndex,
    reader: &mut SegmentReader,
    target: u64,
    indexed: &AtomicU64,
    stop: &dyn Fn() -> bool,
) -> Result<(), String> {
    let mut records = Vec::with_capacity(CHUNK);
    while reader.committed < target {
        match reader.next()? {
            Item::Entry(r) => records.push(r),
            Item::Commit { size, root } => {
                if records.len() >= CHUNK || size >= target {
                    index.add(&records)?;
                    records.clear();
                    // No flush here: sled writes its buffers out on its own every half
                    // second, and a flush at every commit would put a second stream of
                    // fsyncs beside the journal's on the same disk. What a crash loses
                    // of the index is caught up from the segments at the next start.
                    index.mark_built(size, &root)?;
                    indexed.store(size, Ordering::Release);
                    if stop() {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Brings `index`, built for the commit of size `from`, up to the commit of size `to`,
/// here and now.
/// `reopen_every`: entries written to sled between two reopenings of it (see
/// [`JournalIndex::reopen`]), which bounds what sled holds on to.
pub fn index_now(
    mut index: JournalIndex,
    shard_dir: &Path,
    max_entry_bytes: usize,
    reopen_every: u64,
    from: u64,
    to: u64,
) -> Result<JournalIndex, String> {
    let mut reader = SegmentReader::open(shard_dir, max_entry_bytes, from)?;
    let indexed = AtomicU64::new(from);
    loop {
        let start = indexed.load(Ordering::Acquire);
        let enough = || indexed.load(Ordering::Acquire) - start >= reopen_every.max(1);
        catch_up(&index, &mut reader, to, &indexed, &enough)?;
        if reader.committed >= to {
            return Ok(index);
        }
        index = index.reopen()?;
    }
}

struct Signal {
    /// The size of the last durable commit, and when the indexer was asked to stop.
    state: Mutex<(u64, Option<Instant>)>,
    changed: Condvar,
    /// Entries committed but not indexed yet, once the node gives a gauge for it.
    lag: std::sync::OnceLock<prometheus::IntGauge>,
}

impl Signal {
    fn report_lag(&self, indexed: u64) {
        if let Some(g) = self.lag.get() {
            let committed = self.state.lock().unwrap_or_else(|e| e.into_inner()).0;
            g.set(committed.saturating_sub(indexed) as i64);
        }
    }
}

/// The sled index and the thread that keeps it up. Lookups read entries below `indexed`
/// from sled and the rest from the segments, so an index that lags is never wrong.
pub struct Indexer {
    /// Taken out only while the thread reopens it (lookups then wait for it).
    pub index: Arc<RwLock<Option<JournalIndex>>>,
    /// The size the index is built for.
    pub indexed: Arc<AtomicU64>,
    signal: Option<Arc<Signal>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Indexer {
    /// Starts the thread; the index is built for the commit of size `from`. The thread
    /// reopens the index after every `reopen_every` entries it writes (see
    /// [`index_now`]).
    pub fn start(
        index: JournalIndex,
        shard_dir: &Path,
        max_entry_bytes: usize,
        reopen_every: u64,
        from: u64,
    ) -> Self {
        let index = Arc::new(RwLock::new(Some(index)));
        let indexed = Arc::new(AtomicU64::new(from));
        let signal = Arc::new(Signal {
            state: Mutex::new((from, None)),
            changed: Condvar::new(),
            lag: std::sync::OnceLock::new(),
        });
        let (ix, done, sig, dir) = (
            index.clone(),
            indexed.clone(),
            signal.clone(),
            shard_dir.to_owned(),
        );
        let thread = std::thread::Builder::new()
            .name("journal-index".into())
            .spawn(move || {
                super::run_in_background();
                let state = || *sig.state.lock().unwrap_or_else(|e| e.into_inner());
                let past_grace = || state().1.is_some_and(|t| t.elapsed() >= STOP_GRACE);
                let run = || -> Result<(), String> {
                    let mut reader = SegmentReader::open(&dir, max_entry_bytes, from)?;
                    let mut opened_at = from;
                    loop {
                        let gather = {
                            let mut st = sig.state.lock().unwrap_or_else(|e| e.into_inner());
                            while st.0 <= reader.committed && st.1.is_none() {
                                st = sig.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                            }
                            if st.0 <= reader.committed {
                                return Ok(()); // asked to stop, and nothing is left
                            }
                            st.1.is_none()
                        };
                        if gather {
                            std::thread::sleep(GATHER);
                        }
                        let reopen_due =
                            || done.load(Ordering::Acquire) - opened_at >= reopen_every.max(1);
                        let pause = || {
                            sig.report_lag(done.load(Ordering::Acquire));
                            past_grace() || reopen_due()
                        };
                        {
                            let guard = ix.read().unwrap_or_else(|e| e.into_inner());
                            let index = guard.as_ref().ok_or("the index is gone")?;
                            catch_up(index, &mut reader, state().0, &done, &pause)?;
                        }
                        sig.report_lag(done.load(Ordering::Acquire));
                        if past_grace() {
                            return Ok(());
                        }
                        if reopen_due() {
                            let mut slot = ix.write().unwrap_or_else(|e| e.into_inner());
                            let index = slot.take().ok_or("the index is gone")?;
                            *slot = Some(index.reopen()?);
                            opened_at = done.load(Ordering::Acquire);
                        }
                    }
                };
                if let Err(e) = run() {
                    tracing::warn!(error = %e, "the journal index stopped; lookups read the segments, and the next start catches the index up");
                }
                if let Some(index) = ix.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    index.flush();
                }
            })
            .ok();
        Self {
            index,
            indexed,
            signal: Some(signal),
            thread,
        }
    }

    /// Reads an index that is up to date, without a thread to keep it up (a stopped
    /// node's).
    pub fn reading(index: JournalIndex, indexed: u64) -> Self {
        Self {
            index: Arc::new(RwLock::new(Some(index))),
            indexed: Arc::new(AtomicU64::new(indexed)),
            signal: None,
            thread: None,
        }
    }

    /// Tells the thread that commits up to `size` are durable. Never blocks on sled.
    pub fn committed(&self, size: u64) {
        if let Some(sig) = &self.signal {
            sig.state.lock().unwrap_or_else(|e| e.into_inner()).0 = size;
            sig.changed.notify_one();
            sig.report_lag(self.indexed.load(Ordering::Acquire));
        }
    }

    /// Reports the entries not indexed yet to `gauge` from now on.
    pub fn report_lag_to(&self, gauge: prometheus::IntGauge) {
        if let Some(sig) = &self.signal {
            let _ = sig.lag.set(gauge);
            sig.report_lag(self.indexed.load(Ordering::Acquire));
        }
    }

    /// Lets the thread finish what is committed (for at most [`STOP_GRACE`]), stops it
    /// and waits for it.
    pub fn stop(&mut self) {
        if let Some(sig) = &self.signal {
            sig.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .1
                .get_or_insert_with(Instant::now);
            sig.changed.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.stop();
    }
}
