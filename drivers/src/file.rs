//! The `file` driver: appends records to files inside one directory. Each append is
//! fsynced before its outcome is `ok`; nothing outside the directory can be named (a file
//! name is one plain component, and a symlink is never followed); a rollback truncates a
//! file back to the action's start only while the file still ends where the action left
//! it. Each incarnation holds an exclusive lock on the directory through an open handle
//! until it is gone, so a successor never writes while an abandoned one still may.
//!
//! A record is one line: the canonical JSON of `{"action_id", "record"}` and a newline.
//! The twin is exact: it computes the line and the offset it would be written at.

use crate::driver::{Call, Driver, Outcome, Prediction, Recorded};
use crate::manifest::FileSettings;
use base64::Engine;
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The JSON Schema of a `file` driver's arguments, checked with its obligations before
/// the driver sees an intent: one plain file name (no `/`, not starting with `.`), and
/// the record.
pub fn args_schema() -> Value {
    json!({
        "type": "object",
        "required": ["file", "record"],
        "additionalProperties": false,
        "properties": {
            "file": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$"},
            "record": {}
        }
    })
}

/// The JSON Schema of the arguments of a `file` driver whose effect is `read`: one plain
/// file name, and where in it to read (`offset`, from 0; `max_bytes`, at most 64 KiB).
pub fn read_args_schema() -> Value {
    json!({
        "type": "object",
        "required": ["file"],
        "additionalProperties": false,
        "properties": {
            "file": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$"},
            "offset": {"type": "integer", "minimum": 0},
            "max_bytes": {"type": "integer", "minimum": 1, "maximum": 65536}
        }
    })
}

/// One `file` driver instance.
pub struct FileDriver {
    descriptor: crate::descriptor::DriverDescriptor,
    dir: PathBuf,
    max_file_bytes: u64,
    /// The directory's handle: its exclusive lock is held through it until this
    /// incarnation is gone, and every file is opened relative to it.
    handle: File,
}

impl std::fmt::Debug for FileDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDriver")
            .field("dir", &self.dir)
            .finish()
    }
}

/// The line a record is written as.
fn line(action_id: &str, record: &Value) -> Result<Vec<u8>, String> {
    let mut bytes = axon_protocols::canonical::to_vec(&json!({
        "action_id": action_id,
        "record": record,
    }))
    .map_err(|e| format!("the record has no canonical form: {e}"))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The file name of `args`, checked again here (the argument schema checked it first):
/// one plain component inside the directory.
fn file_name(args: &Value) -> Result<&str, String> {
    let name = args
        .get("file")
        .and_then(Value::as_str)
        .ok_or("args.file: a file name is required")?;
    let plain = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !plain {
        return Err(format!(
            "args.file: {name:?} is not a plain file name inside the driver's directory"
        ));
    }
    Ok(name)
}

impl FileDriver {
    /// Opens the driver's directory (created if missing) and takes its lock, waiting at
    /// most the manifest's `lock_wait_ms` for an earlier incarnation to let go of it.
    pub fn open(
        descriptor: crate::descriptor::DriverDescriptor,
        settings: &FileSettings,
        manifest_dir: &Path,
    ) -> Result<Self, String> {
        let dir = manifest_dir.join(&settings.dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("cannot resolve the directory {}: {e}", dir.display()))?;
        let lock = File::open(&dir)
            .map_err(|e| format!("cannot open the directory {}: {e}", dir.display()))?;
        let wait = Duration::from_millis(settings.lock_wait_ms);
        let started = Instant::now();
        // A reader writes nothing, so it takes no lock: it reads beside the writer of the
        // same directory, and any number of its incarnations may overlap.
        if descriptor.effect == crate::descriptor::Effect::Write {
            loop {
                match lock.try_lock() {
                    Ok(()) => break,
                    Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(format!(
                            "the directory {} is locked by another incarnation (waited {:?}): it may still write there",
                            dir.display(),
                            started.elapsed()
                        ))
                    }
                    Err(std::fs::TryLockError::Error(e)) => {
                        return Err(format!("cannot lock the directory {}: {e}", dir.display()))
                    }
                }
            }
        }
        Ok(Self {
            descriptor,
            dir,
            max_file_bytes: settings.max_file_bytes,
            handle: lock,
        })
    }

    /// Opens `name` inside the directory to append, never following a symlink.
    /// Opens `name` inside the directory, relative to the locked directory handle itself
    /// (`openat`): a directory renamed or replaced by a symlink meanwhile is never
    /// followed out of, nor is a symlink at `name`. A regular file with other hard links
    /// (which may live outside the directory) is refused too.
    fn open_file(&self, name: &str, create: bool) -> Result<File, String> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let c_name =
            std::ffi::CString::new(name).map_err(|_| format!("{name:?} holds a NUL byte"))?;
        // A reader never opens a file for writing.
        let access = match self.descriptor.effect {
            crate::descriptor::Effect::Read => libc::O_RDONLY,
            crate::descriptor::Effect::Write => libc::O_RDWR,
        };
        let mut flags = access | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        if create {
            flags |= libc::O_CREAT;
        }
        // SAFETY: the directory handle is open for as long as `self`, and `c_name` is a
        // NUL-terminated string; the returned descriptor is owned by the `File` below.
        let fd = unsafe { libc::openat(self.handle.as_raw_fd(), c_name.as_ptr(), flags, 0o644) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) => format!("{name} is a symlink: refused, never followed"),
                _ => format!("cannot open {name}: {e}"),
            });
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let f = unsafe { File::from_raw_fd(fd) };
        let m = f
            .metadata()
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        if !m.is_file() {
            return Err(format!("{name} is not a regular file"));
        }
        if std::os::unix::fs::MetadataExt::nlink(&m) > 1 {
            return Err(format!(
                "{name} has other hard links, which may be outside the directory: refused"
            ));
        }
        Ok(f)
    }

    /// The length `name` has now (0 when it does not exist yet).
    fn length(&self, name: &str) -> Result<u64, String> {
        match self.open_file(name, false) {
            Ok(f) => f
                .metadata()
                .map(|m| m.len())
                .map_err(|e| format!("cannot read {name}: {e}")),
            Err(_) if !self.dir.join(name).exists() && !self.dir.join(name).is_symlink() => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// What an append of `call` writes, and where.
    fn plan(&self, call: &Call) -> Result<(String, Vec<u8>, u64), String> {
        let name = file_name(&call.intent.args)?.to_owned();
        let record = call.intent.args.get("record").unwrap_or(&Value::Null);
        let bytes = line(call.action_id, record)?;
        let offset = self.length(&name)?;
        if offset + bytes.len() as u64 > self.max_file_bytes {
            return Err(format!(
                "{name} would grow to {} bytes, past the driver's file.max_file_bytes of {}",
                offset + bytes.len() as u64,
                self.max_file_bytes
            ));
        }
        Ok((name, bytes, offset))
    }
}

/// What an append answers: where the record went and its hash.
/// The output of a read of `bytes` at `offset` of `name`, and the bytes.
fn buf_read(name: &str, offset: u64, bytes: Vec<u8>) -> (Value, Vec<u8>) {
    let output = json!({
        "file": name,
        "offset": offset,
        "bytes": bytes.len(),
        "blake3": axon_protocols::journal::hex(blake3::hash(&bytes).as_bytes()),
        "text": String::from_utf8_lossy(&bytes),
    });
    (output, bytes)
}

fn appended(name: &str, offset: u64, bytes: &[u8]) -> Value {
    json!({
        "file": name,
        "offset": offset,
        "end": offset + bytes.len() as u64,
        "bytes": bytes.len(),
        "blake3": axon_protocols::journal::hex(blake3::hash(bytes).as_bytes()),
    })
}

impl Driver for FileDriver {
    fn describe(&self) -> crate::descriptor::DriverDescriptor {
        self.descriptor.clone()
    }

    fn effect(&self) -> crate::descriptor::Effect {
        self.descriptor.effect
    }

    /// Exact: the line and the offset the append would have, written nowhere.
    fn predict(&mut self, call: &Call) -> Prediction {
        match self.plan(call) {
            Ok((name, bytes, offset)) => Prediction::Expected {
                output: appended(&name, offset, &bytes),
                utility: 1.0,
            },
            Err(reason) => Prediction::Expected {
                output: json!({"refused": reason}),
                utility: 0.0,
            },
        }
    }

    fn push(&mut self, call: &Call) -> Outcome {
        let (name, bytes, offset) = match self.plan(call) {
            Ok(p) => p,
            Err(reason) => return Outcome::failed(reason),
        };
        // An error before anything was written is `failed`; one after is cut back to
        // where the append started, and only if that cut fails is the outcome unknown.
        let mut cut_failed = None;
        let mut write = || -> Result<u64, String> {
            let mut f = self.open_file(&name, true)?;
            let start = f
                .seek(SeekFrom::End(0))
                .map_err(|e| format!("cannot seek {name}: {e}"))?;
            let written = f.write_all(&bytes).and_then(|()| f.sync_data());
            if let Err(e) = written {
                if let Err(cut) = f.set_len(start).and_then(|()| f.sync_all()) {
                    cut_failed = Some(format!(
                        "cannot write {name} ({e}), and cannot cut it back to {start} ({cut})"
                    ));
                }
                return Err(format!("cannot write {name}: {e}; cut back to {start}"));
            }
            if start == 0 {
                // A new file: its name in the directory is durable too.
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| format!("cannot make the directory durable: {e}"))?;
            }
            Ok(start)
        };
        match (write(), cut_failed) {
            (Ok(start), _) => Outcome::ok(appended(&name, start, &bytes))
                .with_replay(json!({"file_length": offset})),
            (Err(_), Some(reason)) => Outcome {
                status: crate::driver::Status::Unknown,
                output: Value::Null,
                reason: Some(reason),
                replay: None,
            },
            (Err(reason), None) => Outcome::failed(reason),
        }
    }

    /// `{"file": NAME, "offset": N, "max_bytes": M}`: up to `max_bytes` (at most 64 KiB)
    /// of the file from `offset`, as text (with the count and BLAKE3 of the bytes read).
    /// The capsule records the bytes themselves, so a replay reads them again.
    fn pull(&mut self, call: &Call) -> Outcome {
        let query = &call.intent.args;
        let read = || -> Result<(Value, Vec<u8>), String> {
            let name = file_name(query)?;
            let offset = query.get("offset").and_then(Value::as_u64).unwrap_or(0);
            let max = query
                .get("max_bytes")
                .and_then(Value::as_u64)
                .unwrap_or(65536)
                .min(65536);
            let mut f = self.open_file(name, false)?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| format!("cannot seek {name}: {e}"))?;
            let mut buf = Vec::new();
            f.take(max)
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read {name}: {e}"))?;
            Ok(buf_read(name, offset, buf))
        };
        match read() {
            Ok((output, bytes)) => Outcome::ok(output).with_replay(json!({
                "read_b64": base64::engine::general_purpose::STANDARD.encode(bytes),
            })),
            Err(reason) => Outcome::failed(reason),
        }
    }

    /// Truncates the file back to where the action started, only while it still ends
    /// where the action left it; otherwise names the action that wrote after it.
    fn rollback(&mut self, action: &Recorded) -> Outcome {
        let undo = || -> Result<Value, String> {
            let name = action
                .output
                .get("file")
                .and_then(Value::as_str)
                .ok_or("the recorded output names no file")?;
            let field = |k: &str| {
                action
                    .output
                    .get(k)
                    .and_then(Value::as_u64)
                    .ok_or(format!("the recorded output has no {k}"))
            };
            let (start, end) = (field("offset")?, field("end")?);
            let f = self.open_file(name, false)?;
            let now = f
                .metadata()
                .map_err(|e| format!("cannot read {name}: {e}"))?
                .len();
            if now == end {
                // The bytes there must be this action's record, not another's of the
                // same length.
                let mut f = &f;
                f.seek(SeekFrom::Start(start))
                    .map_err(|e| format!("cannot seek {name}: {e}"))?;
                let mut there = Vec::new();
                f.take(end - start)
                    .read_to_end(&mut there)
                    .map_err(|e| format!("cannot read {name}: {e}"))?;
                let hash = axon_protocols::journal::hex(blake3::hash(&there).as_bytes());
                if action.output.get("blake3").and_then(Value::as_str) != Some(hash.as_str()) {
                    return Err(format!(
                        "the bytes of {name} from {start} to {end} are not the record action {} wrote",
                        action.action_id
                    ));
                }
            }
            if now != end {
                let later = later_action(&f, end).unwrap_or_else(|| "another writer".into());
                return Err(format!(
                    "{name} no longer ends where action {} left it (at {end}, now {now}): written after it by {later}",
                    action.action_id
                ));
            }
            f.set_len(start)
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("cannot truncate {name}: {e}"))?;
            Ok(json!({"file": name, "truncated_to": start, "removed_bytes": end - start}))
        };
        match undo() {
            Ok(v) => Outcome::ok(v),
            Err(reason) => Outcome::failed(reason),
        }
    }
}

/// The action id of the record that starts at `offset` in `f`, if one does (its line
/// read up to 16 MiB).
fn later_action(mut f: &File, offset: u64) -> Option<String> {
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut line = Vec::new();
    BufReader::new(f.take(16 << 20))
        .read_until(b'\n', &mut line)
        .ok()?;
    let first = line.strip_suffix(b"\n").unwrap_or(&line);
    let v: Value = serde_json::from_slice(first).ok()?;
    Some(format!("action {}", v.get("action_id")?.as_str()?))
}

/// Replays a recorded append in `scratch`: a file of the recorded length before the
/// append (its old bytes are not recorded, and no output depends on them), then the same
/// append. Answers the output the replay gives.
pub fn replay_in(
    descriptor: crate::descriptor::DriverDescriptor,
    settings: &FileSettings,
    scratch: &Path,
    call: &Call,
    state: &Value,
) -> Result<Value, String> {
    let name = file_name(&call.intent.args)?;
    std::fs::create_dir_all(scratch.join("files")).map_err(|e| e.to_string())?;
    let mut scratch_settings = settings.clone();
    scratch_settings.dir = "files".into();
    if descriptor.effect == crate::descriptor::Effect::Read {
        // The bytes the read found, where it found them.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(
                state
                    .get("read_b64")
                    .and_then(Value::as_str)
                    .ok_or("the capsule records no bytes read")?,
            )
            .map_err(|e| format!("the recorded bytes are not base64: {e}"))?;
        let offset = call
            .intent
            .args
            .get("offset")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let mut f = File::create(scratch.join("files").join(name)).map_err(|e| e.to_string())?;
        f.set_len(offset).map_err(|e| e.to_string())?;
        f.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
        f.write_all(&bytes).map_err(|e| e.to_string())?;
        let mut driver = FileDriver::open(descriptor, &scratch_settings, scratch)?;
        return Ok(driver.pull(call).output);
    }
    let length = state
        .get("file_length")
        .and_then(Value::as_u64)
        .ok_or("the capsule records no file length")?;
    let f = File::create(scratch.join("files").join(name)).map_err(|e| e.to_string())?;
    f.set_len(length).map_err(|e| e.to_string())?;
    let mut driver = FileDriver::open(descriptor, &scratch_settings, scratch)?;
    Ok(driver.push(call).output)
}
