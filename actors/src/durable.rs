//! Durable changes to files and folders, the one way Axon makes them: a folder's entries
//! are fsynced after files and folders are created in it, and a small file is replaced by
//! rename (written to a temporary file in the same folder, fsynced, renamed into place,
//! the folder fsynced), so a crash leaves the old file or the new one, never part of one;
//! or created the same way, by a rename that never replaces a file.
//!
//! Owns: those three steps. Must never: write a file in place that must survive a crash.

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
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    // A temporary file left by a crash is stale: it was never renamed into place.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err((tmp, e)),
    }
    write_new(&tmp, bytes, mode).map_err(|e| (tmp.clone(), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| (path.clone(), e))?;
    sync_dir(dir).map_err(|e| (dir.to_owned(), e))
}

/// Creates `dir/name` with `bytes` (mode `mode`), whole or not at all, never over a file
/// that exists (`AlreadyExists`, whoever made it meanwhile): written to a temporary file
/// of this writer's own beside it, fsynced, moved into place by a rename that never
/// replaces (`renameat2` with `RENAME_NOREPLACE`; a hard link where the file system has
/// no such rename), the folder fsynced. Two writers of one name never touch each other's
/// temporary file: one creates the file, the other is told it exists.
pub fn create_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<(), (std::path::PathBuf, std::io::Error)> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.{n}.new", std::process::id()));
    if let Err(e) = write_new(&tmp, bytes, mode) {
        let _ = std::fs::remove_file(&tmp);
        return Err((tmp, e));
    }
    let placed = rename_no_replace(&tmp, &path);
    if placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    placed.map_err(|e| (path.clone(), e))?;
    sync_dir(dir).map_err(|e| (dir.to_owned(), e))
}

/// Creates `path` (it must not exist) holding `bytes`, fsynced.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
}

/// Moves `from` to `to` unless `to` exists (`AlreadyExists`).
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them as given.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        // A file system without the flag: a hard link never replaces either.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn create_file_never_writes_over_a_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        create_file(dir.path(), "m.toml", b"first", 0o644).unwrap();
        let (at, e) = create_file(dir.path(), "m.toml", b"second", 0o644).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(at, dir.path().join("m.toml"));
        assert_eq!(std::fs::read(dir.path().join("m.toml")).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["m.toml"]);
    }

    #[test]
    fn of_two_writers_creating_one_name_one_wins_whole_and_the_other_is_told() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..50 {
            let name = format!("r{round}.toml");
            let writers: Vec<_> = [vec![b'a'; 64 << 10], vec![b'b'; 64 << 10]]
                .into_iter()
                .map(|bytes| {
                    let (dir, name) = (dir.path().to_owned(), name.clone());
                    std::thread::spawn(move || {
                        create_file(&dir, &name, &bytes, 0o644).map_err(|(_, e)| e.kind())
                    })
                })
                .collect();
            let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
            assert_eq!(
                results.iter().filter(|r| r.is_ok()).count(),
                1,
                "{results:?}"
            );
            assert!(results.contains(&Err(std::io::ErrorKind::AlreadyExists)));
            let text = std::fs::read(dir.path().join(&name)).unwrap();
            assert!(text == vec![b'a'; 64 << 10] || text == vec![b'b'; 64 << 10]);
        }
        // Nothing but the files themselves is left.
        assert_eq!(names(dir.path()).len(), 50);
    }
}
