//! The journal's segment files: their names, start-up's check of every record, the cut of
//! a torn tail, and new segments.
//!
//! Owns: reading the segments at open into the [`Log`](super::log::Log), deciding what is
//! a torn tail (never acknowledged) and what is damage, keeping cut bytes in a file next to
//! the segment, and creating segments durably (the file, then its folder).
//! Must never: cut below what a logged checkpoint covers, cut anything when auditing, or
//! accept a segment that does not end with a commit record unless it is the last.

use super::log::{self, Location};
use super::{io, Journal, Mode, OpenError};
use axon_protocols::journal::{
    self as format, find_commit_after, find_record_after, leaf_hash, read_record, EntryHead,
    RecordRead,
};
use axon_protocols::merkle::Hash;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(super) fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// Whether a file in a shard's folder holds bytes cut at start-up (see [`set_aside`]).
fn is_set_aside(name: &str) -> bool {
    name.contains(".torn-at-")
}

/// Keeps `bytes`, about to be cut from `path` at `offset`, in a file next to it
/// (`<file>.torn-at-<offset>`, or `…-<n>` when that exists), durable before the cut.
pub(super) fn set_aside(path: &Path, offset: u64, bytes: &[u8]) -> Result<PathBuf, OpenError> {
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

pub(super) fn sync_dir(dir: &Path) -> Result<(), OpenError> {
    crate::durable::sync_dir(dir).map_err(io(dir))
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

impl Journal {
    /// Reads and checks every segment. `covered` is the largest size a signed checkpoint
    /// in the checkpoint log records: those entries were acknowledged, so a damaged tail
    /// that would cut below it is damage, not a torn write.
    pub(super) fn recover(
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
        log::write(&self.log).reserve(room);
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
            let file = Arc::new(
                OpenOptions::new()
                    .read(true)
                    .write(self.mode == Mode::Write)
                    .open(&path)
                    .map_err(io(&path))?,
            );
            log::write(&self.log).add_file(file.clone());
            data.clear();
            std::io::Read::read_to_end(&mut &*file, &mut data).map_err(io(&path))?;
            let last = k + 1 == count;
            let kept = self.scan(k as u32, &path, &data, last)?;
            progress(&path, self.len());
            // Zeros after the last record are space taken ahead of the writes (see
            // `JournalConfig::preallocate_bytes`), not a torn tail: what is torn ends at
            // the last byte that is not zero.
            let written = data[kept as usize..]
                .iter()
                .rposition(|b| *b != 0)
                .map_or(kept, |at| kept + at as u64 + 1);
            if kept < data.len() as u64 && self.len() < covered {
                // Whatever follows the last intact commit (zeros too) stands where
                // acknowledged entries belong: damage, and nothing is cut.
                return Err(OpenError::Tamper(format!(
                    "{} at offset {kept}: the records after the last intact commit are damaged, \
                     and the checkpoint log covers {covered} entries where {} are intact: \
                     acknowledged entries are damaged (nothing was cut)",
                    path.display(),
                    self.len()
                )));
            }
            if kept < written {
                let cut = written - kept;
                if self.mode == Mode::Write {
                    // Kept, durably, before the cut below.
                    let aside = set_aside(&path, kept, &data[kept as usize..written as usize])?;
                    tracing::warn!(segment = %path.display(), offset = kept, bytes = cut, kept_in = %aside.display(), "cut a torn tail that was never acknowledged");
                    self.recovery.set_aside.push(aside);
                }
                self.recovery.torn_tail = Some((path.clone(), kept, cut));
            }
            // The torn tail (set aside above) and the zeros after it.
            if kept < data.len() as u64 && self.mode == Mode::Write {
                file.set_len(kept).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
            }
            if last {
                self.tail_len = kept;
                self.tail_allocated = kept;
                self.zeroed = kept;
                self.tail = Some(file);
            }
            self.segments.push(path);
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
        let shared = self.log.clone();
        let mut log = log::write(&shared);
        let mut offset = 0usize;
        let mut committed_offset = 0usize;
        let mut committed_entries = log.len();
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
                        let index = log.len();
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
                            let known = format::parse_hex::<32>(link)
                                .and_then(|h| log.index_of(&h))
                                .is_some();
                            if !known {
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
                        log.push(
                            leaf,
                            Location {
                                segment: seg,
                                offset: (offset + format::RECORD_HEADER) as u64,
                                len: bytes.len() as u32,
                            },
                            entry.action.as_deref().and_then(log::action_key),
                        );
                        offset = next;
                    }
                    RecordRead::Commit {
                        previous,
                        size,
                        root,
                        next,
                    } => {
                        if log.len() == committed_entries {
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
                        let want = log.root_at(log.len()).expect("in range");
                        if size != log.len() || root != want {
                            return Err(tamper(
                                offset,
                                format!(
                                "a commit of size {size} does not match the {} entries before it",
                                log.len()
                            ),
                            ));
                        }
                        offset = next;
                        committed_offset = offset;
                        committed_entries = log.len();
                        self.last_commit = size;
                        log.mark_durable(size);
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
        if log.len() > committed_entries {
            log.truncate(committed_entries);
        }
        Ok(committed_offset as u64)
    }

    pub(super) fn create_segment(&mut self, first: u64) -> Result<(), OpenError> {
        let path = self.shard_dir.join(segment_name(first));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        sync_dir(&self.shard_dir)?;
        let file = Arc::new(file);
        log::write(&self.log).add_file(file.clone());
        self.segments.push(path);
        self.tail = Some(file);
        self.tail_len = 0;
        self.tail_allocated = 0;
        self.zeroed = 0;
        self.preallocating = self.cfg.preallocate_bytes > 0 && !self.cannot_preallocate;
        Ok(())
    }
}
