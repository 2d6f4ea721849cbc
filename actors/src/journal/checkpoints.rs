//! The checkpoint log, and the thread that adds to it.
//!
//! Owns: reading the log at open (before the segments, so start-up knows what it must not
//! cut), checking each checkpoint against the tree, checking checkpoints kept elsewhere,
//! and the [`Checkpointer`]: the thread that signs a checkpoint of what is durable, makes
//! it durable in the log and only then publishes it to be served, on a schedule —
//! every `journal.head_every_commits` commits, never more than one per
//! `journal.checkpoint_min_interval_ms`, and once more on stop — so that every acknowledged
//! entry is covered by a served checkpoint within that interval.
//! Must never: serve a checkpoint that is not durable in the log, sign a size that is not
//! durable, or write anything once the journal is halted. A read never writes: serving is
//! reading what was published.

use super::segments::{set_aside, sync_dir};
use super::{io, Journal, JournalMetrics, JournalShared, Mode, OpenError, MAX_CHECKPOINT_BYTES};
use axon_protocols::checkpoint::{Checkpoint, Signer};
use axon_protocols::journal::{
    self as format, encode_record, find_record_after, read_record, RecordRead,
};
use axon_protocols::merkle::Hash;
use axon_supervisors::SharedClock;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The checkpoint log as read before the segments: each checkpoint (where it is, its
/// note, what it records), and a torn last record (its offset and bytes).
#[derive(Default)]
pub(super) struct LoggedCheckpoints {
    notes: Vec<(String, String, Checkpoint)>,
    torn: Option<(usize, Vec<u8>)>,
}

impl LoggedCheckpoints {
    /// The largest size a logged checkpoint records (sizes never decrease along the log).
    pub(super) fn covered(&self) -> Option<u64> {
        self.notes.last().map(|(_, _, cp)| cp.size)
    }
}

impl Journal {
    pub(super) fn checkpoints_path(&self) -> PathBuf {
        self.cfg
            .dir
            .join(format!("shard-{}.checkpoints", self.cfg.shard))
    }

    /// Reads the checkpoint log, before the segments are read: every checkpoint's
    /// signature, origin and size (never less than the one before it). A damaged last
    /// record with nothing intact after it is a torn write (its offset is kept to cut it
    /// later); any other damage is tamper. The largest size they record is what start-up
    /// must never cut below.
    pub(super) fn read_checkpoint_log(&self) -> Result<LoggedCheckpoints, OpenError> {
        let path = self.checkpoints_path();
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        let tamper = |offset: usize, what: String| {
            OpenError::Tamper(format!("{} at offset {offset}: {what}", path.display()))
        };
        let verifier = axon_protocols::checkpoint::Verifier::parse(&self.vkey)
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
    pub(super) fn check_logged_checkpoints(
        &mut self,
        logged: LoggedCheckpoints,
    ) -> Result<(), OpenError> {
        let path = self.checkpoints_path();
        for (which, note, cp) in logged.notes {
            self.check_against_tree(&cp, &which)
                .map_err(OpenError::Tamper)?;
            self.head_size = Some(cp.size);
            self.checkpoints += 1;
            self.newest_checkpoint = Some(note);
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
                .cloned()
                .unwrap_or_else(|| self.shard_dir.join(super::segments::segment_name(0)));
            return Err(format!(
                "{} at offset {}: acknowledged entries {} to {} are missing ({which}: it records {} entries)",
                last.display(),
                self.tail_len,
                self.len(),
                cp.size - 1,
                cp.size,
            ));
        }
        if super::log::read(&self.log)
            .root_at(cp.size)
            .expect("in range")
            != cp.root
        {
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
        let verifier =
            axon_protocols::checkpoint::Verifier::parse(&self.vkey).map_err(|e| e.to_string())?;
        for (name, note) in notes {
            let cp = self.verify_note(&verifier, note, name)?;
            self.check_against_tree(&cp, name)?;
        }
        Ok(())
    }
}

/// When the checkpointer logs, and what it has to log.
struct Schedule {
    /// The newest durable size and its root.
    durable: (u64, Hash),
    /// Commits since the last logged checkpoint.
    commits_since: u64,
    /// When the first commit that no logged checkpoint covers became durable.
    first_uncovered_at: Option<Duration>,
    /// The size the newest logged checkpoint records.
    logged: Option<u64>,
    /// When this checkpointer last logged one (`None`: not yet, so it logs at once).
    last_logged_at: Option<Duration>,
    stop: bool,
}

impl Schedule {
    fn uncovered(&self) -> bool {
        self.logged.is_none_or(|l| l < self.durable.0)
    }

    /// Takes the commit of `size` entries with `root`, durable at `now`. Answers whether
    /// it can bring the next checkpoint forward (the first commit no checkpoint covers, or
    /// the one that makes `every`): only then is the checkpoint thread woken, so a commit
    /// that changes nothing it waits for costs no thread a wake-up.
    fn commit(&mut self, size: u64, root: Hash, now: Duration, every: u64) -> bool {
        self.durable = (size, root);
        self.commits_since += 1;
        let first = self.first_uncovered_at.is_none();
        self.first_uncovered_at.get_or_insert(now);
        first || self.commits_since == every.max(1)
    }

    /// When the next checkpoint is due, on the node's clock; `None` while every durable
    /// entry is covered.
    fn due(&self, every: u64, interval: Duration) -> Option<Duration> {
        if !self.uncovered() {
            return None;
        }
        let earliest = self.last_logged_at.map_or(Duration::ZERO, |t| t + interval);
        let trigger = match (self.last_logged_at, self.first_uncovered_at) {
            (None, _) => Duration::ZERO,
            _ if self.commits_since >= every.max(1) => Duration::ZERO,
            (_, Some(first)) => first + interval,
            (_, None) => Duration::ZERO,
        };
        Some(earliest.max(trigger))
    }
}

struct Shared {
    schedule: Mutex<Schedule>,
    wake: tokio::sync::Notify,
    /// `journal.head_every_commits`.
    every: u64,
}

fn lock(m: &Mutex<Schedule>) -> std::sync::MutexGuard<'_, Schedule> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the checkpointer thread writes with.
pub(super) struct LogWriter {
    pub file: File,
    pub path: PathBuf,
    pub signer: Arc<Signer>,
    pub origin: String,
    pub journal: Arc<JournalShared>,
    pub clock: SharedClock,
    pub every: u64,
    pub interval: Duration,
    pub metrics: Arc<std::sync::OnceLock<JournalMetrics>>,
}

/// The thread that logs checkpoints and publishes them (see the module's top).
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread: `durable` is the journal's size and root now, `logged` the size
    /// the newest logged checkpoint records.
    pub fn start(
        writer: LogWriter,
        durable: (u64, Hash),
        logged: Option<u64>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            schedule: Mutex::new(Schedule {
                durable,
                commits_since: 0,
                first_uncovered_at: None,
                logged,
                last_logged_at: None,
                stop: false,
            }),
            wake: tokio::sync::Notify::new(),
            every: writer.every,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("axon-journal-checkpoints".into())
            .spawn(move || runtime.block_on(run(writer, s)))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// The commit of `size` entries with `root` is durable.
    pub fn committed(&self, size: u64, root: Hash, now: Duration) {
        let sooner = lock(&self.shared.schedule).commit(size, root, now, self.shared.every);
        if sooner {
            self.shared.wake.notify_one();
        }
    }

    /// Logs a last checkpoint of what is durable (unless halted) and ends the thread.
    pub fn stop(&mut self) {
        lock(&self.shared.schedule).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the checkpoint thread panicked");
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(mut w: LogWriter, shared: Arc<Shared>) {
    loop {
        let (due, stop) = {
            let s = lock(&shared.schedule);
            (s.due(w.every, w.interval), s.stop)
        };
        let halted = w.journal.halt.is_halted();
        if stop || halted {
            if stop && !halted && lock(&shared.schedule).uncovered() {
                log_one(&mut w, &shared);
            }
            if stop {
                return;
            }
            // Halted: nothing more is written; wait for the stop.
            shared.wake.notified().await;
            continue;
        }
        let now = w.clock.now();
        match due {
            Some(at) if at <= now => log_one(&mut w, &shared),
            Some(at) => {
                tokio::select! {
                    () = w.clock.sleep(at - now) => {}
                    () = shared.wake.notified() => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

/// Signs a checkpoint of what is durable, makes it durable in the log, then publishes it.
/// A failed write halts the journal.
fn log_one(w: &mut LogWriter, shared: &Shared) {
    let started = w.clock.now();
    let (size, root) = lock(&shared.schedule).durable;
    let cp = Checkpoint {
        origin: w.origin.clone(),
        size,
        root,
    };
    let note = w.signer.sign(&cp.body());
    let mut buf = Vec::with_capacity(note.len() + format::RECORD_HEADER);
    encode_record(note.as_bytes(), &mut buf);
    let written = (&w.file).write_all(&buf).and_then(|()| w.file.sync_data());
    if let Err(e) = written {
        w.journal
            .halt
            .halt(format!("writing {}: {e}", w.path.display()));
        if let Some(m) = w.metrics.get() {
            m.halted.set(1);
        }
        return;
    }
    w.journal.publish_checkpoint(note);
    if let Some(m) = w.metrics.get() {
        m.checkpoints.inc();
    }
    let mut s = lock(&shared.schedule);
    s.logged = Some(size);
    s.last_logged_at = Some(w.clock.now());
    s.commits_since = 0;
    s.first_uncovered_at = (s.durable.0 > size).then_some(started);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(logged: Option<u64>, last_logged_at: Option<Duration>) -> Schedule {
        Schedule {
            durable: (0, Hash::default()),
            commits_since: 0,
            first_uncovered_at: None,
            logged,
            last_logged_at,
            stop: false,
        }
    }

    /// Only the commits that bring the next checkpoint forward wake its thread, and the
    /// due time of every other commit is the one the thread already waits for.
    #[test]
    fn only_a_commit_that_brings_the_checkpoint_forward_wakes_the_thread() {
        let (every, interval) = (10, Duration::from_secs(60));
        let mut s = schedule(Some(0), Some(Duration::ZERO));
        let mut woken = vec![];
        let mut due = vec![];
        for n in 1..=25u64 {
            if s.commit(n, Hash::default(), Duration::from_secs(n), every) {
                woken.push(n);
            }
            due.push(s.due(every, interval));
        }
        // The first uncovered commit sets the interval's trigger; the tenth makes `every`.
        assert_eq!(woken, vec![1, 10]);
        let at_interval = Some(Duration::from_secs(1) + interval);
        assert!(due[..9].iter().all(|d| *d == at_interval), "{due:?}");
        // From the tenth on it is due as soon as the interval since the last one allows.
        assert!(due[9..].iter().all(|d| *d == Some(interval)), "{due:?}");
    }

    #[test]
    fn after_a_checkpoint_covers_everything_the_next_commit_wakes_the_thread_again() {
        let mut s = schedule(Some(5), Some(Duration::from_secs(3)));
        s.durable.0 = 5;
        assert_eq!(s.due(10, Duration::from_secs(1)), None);
        assert!(s.commit(6, Hash::default(), Duration::from_secs(4), 10));
        assert_eq!(
            s.due(10, Duration::from_secs(1)),
            Some(Duration::from_secs(5))
        );
        assert!(!s.commit(7, Hash::default(), Duration::from_secs(4), 10));
    }
}
