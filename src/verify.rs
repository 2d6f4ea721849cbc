//! `axon verify-proof`: checks a journal proof against a signed checkpoint offline, with
//! nothing but the verifier key, the checkpoint note, the proof JSON and (optionally) the
//! entry as served by the node.

use anyhow::{anyhow, bail, Context};
use axon_protocols::checkpoint::{Checkpoint, Verifier};
use axon_protocols::journal::{hex, leaf_hash, parse_hex};
use axon_protocols::merkle::{self, Blake3};
use base64::Engine;
use serde_json::Value;

fn hash_field(v: &Value, name: &str) -> anyhow::Result<[u8; 32]> {
    let s = v[name]
        .as_str()
        .ok_or_else(|| anyhow!("the proof lacks {name}"))?;
    parse_hex::<32>(s).ok_or_else(|| anyhow!("{name} is not 64 hex digits"))
}

fn u64_field(v: &Value, name: &str) -> anyhow::Result<u64> {
    v[name]
        .as_u64()
        .ok_or_else(|| anyhow!("the proof lacks the whole number {name}"))
}

fn proof_hashes(v: &Value) -> anyhow::Result<Vec<[u8; 32]>> {
    v["proof"]
        .as_array()
        .ok_or_else(|| anyhow!("the proof lacks its list of hashes"))?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(parse_hex::<32>)
                .ok_or_else(|| anyhow!("a proof hash is not 64 hex digits"))
        })
        .collect()
}

/// Verifies a signed checkpoint note with `vkey`.
pub fn checkpoint(vkey: &str, note: &str) -> anyhow::Result<(Verifier, Checkpoint)> {
    let verifier = Verifier::parse(vkey).context("the key")?;
    let body = verifier.verify(note).context("the checkpoint")?;
    let cp = Checkpoint::parse(body).context("the checkpoint")?;
    Ok((verifier, cp))
}

/// Checks `proof` (inclusion or consistency JSON) against the signed checkpoint; `entry`
/// is the entry JSON (with `bytes_b64`) an inclusion proof is about, and `old_note` a
/// signed checkpoint a consistency proof starts from. Returns what was proven.
pub fn verify(
    vkey: &str,
    note: &str,
    proof: &Value,
    entry: Option<&Value>,
    old_note: Option<&str>,
) -> anyhow::Result<String> {
    let (verifier, cp) = checkpoint(vkey, note)?;
    let hashes = proof_hashes(proof)?;
    let refs: Vec<&[u8]> = hashes.iter().map(|h| h.as_slice()).collect();
    if proof.get("tree_size").is_some() {
        let index = u64_field(proof, "index")?;
        let size = u64_field(proof, "tree_size")?;
        let mut leaf = hash_field(proof, "leaf_hash")?;
        if size != cp.size {
            bail!(
                "the proof is for a tree of {size} entries; the checkpoint signs {}",
                cp.size
            );
        }
        if let Some(e) = entry {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(
                    e["bytes_b64"]
                        .as_str()
                        .ok_or_else(|| anyhow!("the entry lacks bytes_b64"))?,
                )
                .context("the entry's bytes_b64")?;
            let computed = leaf_hash(&bytes);
            if computed != leaf {
                bail!(
                    "the entry's bytes hash to {}, not the proof's leaf {}",
                    hex(&computed),
                    hex(&leaf)
                );
            }
            leaf = computed;
        }
        merkle::verify_inclusion::<Blake3>(index, size, &leaf, &refs, &cp.root)
            .context("the inclusion proof")?;
        Ok(format!(
            "entry {index} ({}) is in {} at size {size}, signed by {}",
            hex(&leaf),
            cp.origin,
            verifier.name
        ))
    } else {
        let size1 = u64_field(proof, "size1")?;
        let size2 = u64_field(proof, "size2")?;
        let root1 = hash_field(proof, "root1")?;
        if size2 != cp.size {
            bail!(
                "the proof ends at {size2} entries; the checkpoint signs {}",
                cp.size
            );
        }
        if let Some(old) = old_note {
            let (_, old_cp) = checkpoint(vkey, old).context("the old checkpoint")?;
            if old_cp.size != size1 || old_cp.root != root1 || old_cp.origin != cp.origin {
                bail!("the proof does not start from the old checkpoint");
            }
        }
        merkle::verify_consistency::<Blake3>(size1, size2, &refs, &root1, &cp.root)
            .context("the consistency proof")?;
        Ok(format!(
            "{} at size {size1} is a prefix of {} at size {size2}, signed by {}",
            cp.origin, cp.origin, verifier.name
        ))
    }
}
