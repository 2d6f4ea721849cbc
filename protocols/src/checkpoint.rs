//! Checkpoints in the C2SP `tlog-checkpoint` format, signed as C2SP signed notes with
//! Ed25519.
//!
//! A checkpoint's body is `<origin>\n<tree size>\n<base64 root>\n`. A signed note is the
//! body, a blank line, then one line per signature: `— <key name> <base64(key id ‖ sig)>`,
//! where the key id is the first four bytes of SHA-256(`<key name>\n` ‖ 0x01 ‖ public key)
//! and the signature is Ed25519 over the body. A verifier key is written
//! `<key name>+<key id in hex>+<base64(0x01 ‖ public key)>`.

use crate::merkle::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::signature::{self, Ed25519KeyPair, KeyPair};

/// The signature algorithm byte of Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;

/// A checkpoint of one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Why a checkpoint or a note is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(String),
    #[error("malformed verifier key: {0}")]
    BadKey(String),
    #[error("no signature by {0} on the note")]
    NotSigned(String),
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
}

fn malformed(s: impl Into<String>) -> NoteError {
    NoteError::Malformed(s.into())
}

impl Checkpoint {
    /// The note body.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Reads a note body (extension lines after the root are allowed and ignored).
    pub fn parse(body: &str) -> Result<Self, NoteError> {
        let mut lines = body.split_terminator('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| malformed("no origin line"))?;
        let size = lines
            .next()
            .and_then(|l| {
                if l.starts_with('0') && l.len() > 1 {
                    None
                } else {
                    l.parse::<u64>().ok()
                }
            })
            .ok_or_else(|| malformed("the second line is not a tree size"))?;
        let root = lines
            .next()
            .and_then(|l| B64.decode(l).ok())
            .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
            .ok_or_else(|| malformed("the third line is not a base64 32-byte root"))?;
        if !body.ends_with('\n') {
            return Err(malformed("the body does not end with a newline"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// The key id of an Ed25519 note key.
pub fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_ED25519]);
    ctx.update(public);
    let d = ctx.finish();
    d.as_ref()[..4].try_into().expect("4 bytes")
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// A note signer: a name and an Ed25519 key pair.
pub struct Signer {
    name: String,
    key: Ed25519KeyPair,
}

impl Signer {
    /// Loads a PKCS#8 Ed25519 key (as written by [`Signer::generate_pkcs8`]).
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey(format!("bad key name {name:?}")));
        }
        let key = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| NoteError::BadKey(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    /// A new random key in PKCS#8.
    pub fn generate_pkcs8() -> Result<Vec<u8>, NoteError> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| NoteError::BadKey("no system randomness".into()))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key in signed-note form.
    pub fn vkey(&self) -> String {
        let public = self.key.public_key().as_ref();
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(public);
        format!(
            "{}+{}+{}",
            self.name,
            crate::journal::hex(&key_id(&self.name, public)),
            B64.encode(k)
        )
    }

    /// Signs `body` (which must end with a newline) and returns the signed note.
    pub fn sign(&self, body: &str) -> String {
        debug_assert!(body.ends_with('\n'));
        let sig = self.key.sign(body.as_bytes());
        let mut blob = key_id(&self.name, self.key.public_key().as_ref()).to_vec();
        blob.extend_from_slice(sig.as_ref());
        format!("{body}\n\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

/// A verifier key read from its signed-note form.
pub struct Verifier {
    pub name: String,
    key_id: [u8; 4],
    public: Vec<u8>,
}

impl Verifier {
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let bad = |s: &str| NoteError::BadKey(s.to_owned());
        // The key is standard base64, which may itself hold '+'.
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("want <name>+<key id>+<key>"));
        };
        if !valid_name(name) {
            return Err(bad("bad key name"));
        }
        let id = crate::journal::parse_hex::<4>(id)
            .ok_or_else(|| bad("the key id is not 8 hex digits"))?;
        let key = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        if key.len() != 33 || key[0] != ALG_ED25519 {
            return Err(bad("not an Ed25519 key"));
        }
        let public = key[1..].to_vec();
        if key_id(name, &public) != id {
            return Err(bad("the key id does not match the key"));
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: id,
            public,
        })
    }

    /// Checks that `note` carries a valid signature by this key; returns the note body.
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .find("\n\n")
            .ok_or_else(|| malformed("no blank line between the text and the signatures"))?;
        let (body, sigs) = (&note[..split + 1], &note[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(malformed("no signature lines"));
        }
        for line in sigs.split_terminator('\n') {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| malformed("a signature line does not start with an em dash"))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| malformed("a signature line lacks its signature"))?;
            if name != self.name {
                continue;
            }
            let blob = B64
                .decode(blob)
                .map_err(|_| malformed("a signature is not base64"))?;
            if blob.len() != 4 + 64 || blob[..4] != self.key_id {
                continue;
            }
            return signature::UnparsedPublicKey::new(&signature::ED25519, &self.public)
                .verify(body.as_bytes(), &blob[4..])
                .map(|()| body)
                .map_err(|_| NoteError::BadSignature(self.name.clone()));
        }
        Err(NoteError::NotSigned(self.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let signer = Signer::from_pkcs8("axon-test", &Signer::generate_pkcs8().unwrap()).unwrap();
        let cp = Checkpoint {
            origin: "axon-test/shard-0".into(),
            size: 42,
            root: [7u8; 32],
        };
        let note = signer.sign(&cp.body());
        let v = Verifier::parse(&signer.vkey()).unwrap();
        let body = v.verify(&note).unwrap();
        assert_eq!(Checkpoint::parse(body).unwrap(), cp);
        assert!(note.contains("\n\n\u{2014} axon-test "));
        let tampered = note.replace("\n42\n", "\n43\n");
        assert_eq!(
            v.verify(&tampered),
            Err(NoteError::BadSignature("axon-test".into()))
        );
        let other = Signer::from_pkcs8("axon-test", &Signer::generate_pkcs8().unwrap()).unwrap();
        assert!(Verifier::parse(&other.vkey())
            .unwrap()
            .verify(&note)
            .is_err());
    }

    #[test]
    fn bad_checkpoints_and_keys_are_refused() {
        for body in ["", "o\n", "o\n01\nAAAA\n", "o\n1\nAAAA\n", "o\nx\nAAAA\n"] {
            assert!(Checkpoint::parse(body).is_err(), "{body:?}");
        }
        assert!(Verifier::parse("name+0000+AA").is_err());
        assert!(Verifier::parse("a b+00000000+AA").is_err());
    }
}
