//! The node's signing key: `<journal dir>/node.key`, Ed25519 in PKCS#8.
//!
//! Owns: creating it once (mode 0600, durable with its folder) and loading it. Must never:
//! replace an existing key, or write it anywhere else.

use super::{io, OpenError};
use axon_protocols::checkpoint::Signer;
use std::path::Path;

/// Loads the node's signing key, creating it (mode 0600, made durable) at first start.
/// Also says whether it was created now.
pub(super) fn load_or_create_key(dir: &Path, name: &str) -> Result<(Signer, bool), OpenError> {
    let path = dir.join("node.key");
    let mut created = false;
    let pkcs8 = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Written whole to a temporary file, made durable, then renamed into place: a
            // crash leaves either no key (made anew at the next start, before any entry is
            // signed with it) or the whole key, never part of one.
            let pkcs8 = Signer::generate_pkcs8().map_err(|e| OpenError::Key(e.to_string()))?;
            crate::durable::replace_file(dir, "node.key", &pkcs8, 0o600)
                .map_err(|(p, e)| io(&p)(e))?;
            created = true;
            pkcs8
        }
        Err(e) => return Err(io(&path)(e)),
    };
    Signer::from_pkcs8(name, &pkcs8)
        .map(|s| (s, created))
        .map_err(|e| OpenError::Key(format!("{}: {e}", path.display())))
}
