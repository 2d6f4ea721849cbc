//! The admin token: a random secret the node writes to `<data-dir>/admin.token` (mode
//! 0600) at first start. Mutating routes need it as a bearer token; it is compared through
//! an HMAC so the comparison takes the same time whatever the guess.

use anyhow::{bail, Context};
use ring::{hmac, rand::SecureRandom};
use std::os::unix::fs::PermissionsExt;
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

/// True when `text` (the file's content) is an admin token: at least 32 hex digits.
fn parse(text: &[u8]) -> Option<String> {
    let token = std::str::from_utf8(text).ok()?.trim();
    (token.len() >= 32 && token.bytes().all(|b| b.is_ascii_hexdigit())).then(|| token.to_owned())
}

/// Reads the token from `data_dir`, creating the folder (made durable) and the token at
/// first start. A file that holds no token (empty, or partly written by a crash of an
/// older node) is replaced with a warning naming it; a file other users may read is
/// refused. Returns the token and whether it was just written (the caller prints the
/// file's path, never the token).
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(String, bool)> {
    crate::data_dir::create(data_dir)?;
    let path = data_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(text) => {
            let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "{} is readable by other users (mode {mode:o}); run `chmod 600` on it",
                    path.display()
                );
            }
            if let Some(token) = parse(&text) {
                return Ok((token, false));
            }
            tracing::warn!(
                path = %path.display(),
                bytes = text.len(),
                "the admin token file holds no valid token (at least 32 hex digits); writing a new one"
            );
            Ok((create(data_dir)?, true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((create(data_dir)?, true)),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes a new random token to `data_dir/admin.token` (mode 0600), replaced by rename.
fn create(data_dir: &Path) -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::data_dir::replace_file(data_dir, FILE, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
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
    fn a_file_without_a_token_is_replaced() {
        for left in [
            "",
            "3f2a",
            "not a token at all, but long enough to pass a length check",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join(FILE);
            std::fs::write(&p, left).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            let (token, created) = load_or_create(dir.path()).unwrap();
            assert!(created, "{left:?}");
            assert_eq!(token.len(), 64);
            assert_eq!(std::fs::read_to_string(&p).unwrap().trim(), token);
            assert_eq!(load_or_create(dir.path()).unwrap(), (token, false));
        }
    }

    #[test]
    fn a_world_readable_file_without_a_token_is_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("readable by other users"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"");
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
