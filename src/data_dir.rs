//! Durable changes to the data directory: folders created with their entries fsynced in
//! their parents, and small files replaced by rename, through `axon_actors::durable`
//! (the one way Axon makes such changes), with errors for the operator.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Makes the entries of `dir` (files and folders created in it) durable.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    axon_actors::durable::sync_dir(dir)
        .with_context(|| format!("cannot fsync the directory {}", dir.display()))
}

/// The folder that holds `p` (`.` for a relative name without one).
fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(q) if !q.as_os_str().is_empty() => q.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Creates `dir` and any missing folder above it, then fsyncs each new folder's parent
/// (so its entry survives a crash) and `dir` itself.
pub fn create(dir: &Path) -> anyhow::Result<()> {
    let mut missing = vec![];
    let mut p = dir.to_owned();
    while !p.exists() {
        missing.push(p.clone());
        let up = parent_of(&p);
        if up == p {
            break;
        }
        p = up;
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    for m in missing.iter().rev() {
        sync_dir(&parent_of(m))?;
    }
    sync_dir(dir)
}

/// Replaces `dir/name` with `bytes` (mode `mode`) by rename.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    axon_actors::durable::replace_file(dir, name, bytes, mode)
        .map_err(|(path, e)| anyhow::anyhow!("cannot replace {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_makes_every_missing_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/c");
        create(&dir).unwrap();
        assert!(dir.is_dir());
        // An existing folder is fine.
        create(&dir).unwrap();
    }

    #[test]
    fn replace_file_swaps_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".f.tmp"), b"left by a crash").unwrap();
        std::fs::write(dir.path().join("f"), b"old").unwrap();
        replace_file(dir.path(), "f", b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new");
        assert!(!dir.path().join(".f.tmp").exists());
        let mode = std::fs::metadata(dir.path().join("f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
