//! Durable changes to files and folders, the one way Axon makes them: a folder's entries
//! are fsynced after files and folders are created in it, and a small file is replaced by
//! rename (written to a temporary file in the same folder, fsynced, renamed into place,
//! the folder fsynced), so a crash leaves the old file or the new one, never part of one.
//!
//! Owns: those two steps. Must never: write a file in place that must survive a crash.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Makes the entries of `dir` (files and folders created or renamed in it) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// Replaces `dir/name` with `bytes` (mode `mode`) by rename. On error, the error names
/// the path it concerns.
pub fn replace_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<(), (std::path::PathBuf, std::io::Error)> {
    put_file(dir, name, bytes, mode, Put::Replace)
}

/// Creates `dir/name` with `bytes` (mode `mode`), whole or not at all, never over a file
/// that exists (`AlreadyExists`, whoever made it meanwhile): written beside it, fsynced,
/// linked into place (a link, unlike a rename, never replaces), the folder fsynced.
pub fn create_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<(), (std::path::PathBuf, std::io::Error)> {
    put_file(dir, name, bytes, mode, Put::CreateNew)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Put {
    Replace,
    CreateNew,
}

fn put_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
    how: Put,
) -> Result<(), (std::path::PathBuf, std::io::Error)> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    // A temporary file left by a crash is stale: it was never renamed into place.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err((tmp, e)),
    }
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    written.map_err(|e| (tmp.clone(), e))?;
    match how {
        Put::Replace => std::fs::rename(&tmp, &path).map_err(|e| (path.clone(), e))?,
        Put::CreateNew => {
            let linked = std::fs::hard_link(&tmp, &path).map_err(|e| (path.clone(), e));
            let removed = std::fs::remove_file(&tmp).map_err(|e| (tmp.clone(), e));
            linked?;
            removed?;
        }
    }
    sync_dir(dir).map_err(|e| (dir.to_owned(), e))
}
