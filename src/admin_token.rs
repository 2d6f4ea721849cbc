//! The admin token: a random secret the node writes to `<data-dir>/admin.token` (mode
//! 0600) at first start. Mutating routes need it as a bearer token; it is compared through
//! an HMAC so the comparison takes the same time whatever the guess.

use anyhow::{bail, Context};
use ring::{hmac, rand::SecureRandom};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The file name inside the data directory.
pub const FILE: &str = "admin.token";

/// Checks presented tokens against the admin token.
pub struct AdminAuth {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl AdminAuth {
    pub fn new(token: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("system randomness");
        let tag = hmac::sign(&key, token.as_bytes());
        Self { key, tag }
    }

    /// True when `presented` is the admin token.
    pub fn verify(&self, presented: &str) -> bool {
        hmac::verify(&self.key, presented.as_bytes(), self.tag.as_ref()).is_ok()
    }
}

/// Reads the token from `data_dir`, creating it at first start. Returns the token and
/// whether it was just created (the caller prints it once).
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(String, bool)> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "{} is readable by other users (mode {mode:o}); run `chmod 600` on it",
                    path.display()
                );
            }
            let token = text.trim().to_owned();
            if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "{} does not hold a valid admin token (at least 32 hex digits); delete it to make a new one",
                    path.display()
                );
            }
            Ok((token, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| anyhow::anyhow!("no system randomness"))?;
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            f.write_all(token.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            Ok((token, true))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (t1, created) = load_or_create(dir.path()).unwrap();
        assert!(created);
        assert_eq!(t1.len(), 64);
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (t2, created) = load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(t1, t2);
    }

    #[test]
    fn a_world_readable_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let p = dir.path().join(FILE);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("readable by other users"), "{e}");
    }

    #[test]
    fn verify_accepts_only_the_token() {
        let a = AdminAuth::new("abc");
        assert!(a.verify("abc"));
        assert!(!a.verify("abd"));
        assert!(!a.verify(""));
        assert!(!a.verify("abcabc"));
    }
}
