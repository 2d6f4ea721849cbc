//! `axon audit`: the check of a stopped node's journal.
//!
//! Owns: opening the journal read-only (every record, entry, link, commit and checkpoint is
//! checked by the same code start-up uses), checking checkpoints kept elsewhere, and the
//! state of the sled index. Must never: write to a segment or the checkpoint log.

use super::index::JournalIndex;
use super::indexer::index_now;
use super::{Journal, JournalConfig, Mode, OpenError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
pub(super) fn index_dir(cfg: &JournalConfig) -> PathBuf {
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
/// every signed checkpoint. With `trusted_key` (the verifier key the node printed at its
/// first start, kept elsewhere), the journal's key must be that one and every checkpoint
/// signed by it. `progress` is called after each segment with the entries checked so far.
pub fn audit(
    cfg: JournalConfig,
    rebuild_index: bool,
    outside: &[(String, String)],
    trusted_key: Option<&str>,
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
    let checked = Journal::open_mode(
        cfg,
        clock,
        Arc::default(),
        Mode::Audit,
        trusted_key,
        progress,
    )
    .and_then(|j| {
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
    let size = j.len();
    let root = super::log::read(&j.log).root_at(size).expect("in range");
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
                .reader()
                .sample_records(4096)
                .map_err(|e| OpenError::Tamper(e.to_string()))?;
            match (index.built_for(), index.verify(&samples, size, &root)) {
                (_, Ok(())) => IndexStatus::Consistent,
                (Some((s, r)), Err(_))
                    if s < size && super::log::read(&j.log).root_at(s).ok() == Some(r) =>
                {
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
