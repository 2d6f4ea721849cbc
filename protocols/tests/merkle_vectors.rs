//! The proof code with SHA-256 against the published RFC 6962/9162 proof suite in
//! `../shared/vectors/merkle/` (read from there, never copied): every happy path verifies,
//! every `wantErr` case is refused.

use axon_protocols::merkle::{self, Sha256, TreeHasher};
use base64::Engine;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn suite() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/merkle");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "\n*** SKIPPED: the Merkle proof suite is not at {} ***\n",
            dir.display()
        );
        None
    }
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out.sort();
}

/// Decodes a base64 hash; `None` for text that is not base64 (such a case must fail).
fn b64(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => Some(vec![]),
        Value::String(s) => base64::engine::general_purpose::STANDARD.decode(s).ok(),
        _ => None,
    }
}

fn proof_of(v: &Value) -> Option<Vec<Vec<u8>>> {
    match v {
        Value::Null => Some(vec![]),
        Value::Array(items) => items.iter().map(b64).collect(),
        _ => None,
    }
}

fn run(kind: &str, check: impl Fn(&Value) -> bool) {
    let Some(dir) = suite() else { return };
    let mut files = vec![];
    json_files(&dir.join(kind), &mut files);
    let (mut happy, mut refused) = (0, 0);
    for f in &files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let want_err = v["wantErr"].as_bool().unwrap();
        let ok = check(&v);
        assert_eq!(
            ok,
            !want_err,
            "{}: {} (wantErr {want_err})",
            f.display(),
            v["desc"]
        );
        if want_err {
            refused += 1;
        } else {
            happy += 1;
        }
    }
    assert!(
        happy >= 5 && refused >= 50,
        "{kind}: {happy} happy, {refused} refused"
    );
    eprintln!("{kind}: {happy} happy paths verified, {refused} corrupted cases refused");
}

#[test]
fn inclusion_suite() {
    run("inclusion", |v| {
        let (Some(index), Some(size)) = (v["leafIdx"].as_u64(), v["treeSize"].as_u64()) else {
            return false;
        };
        let (Some(root), Some(leaf), Some(proof)) =
            (b64(&v["root"]), b64(&v["leafHash"]), proof_of(&v["proof"]))
        else {
            return false;
        };
        let proof: Vec<&[u8]> = proof.iter().map(Vec::as_slice).collect();
        merkle::verify_inclusion::<Sha256>(index, size, &leaf, &proof, &root).is_ok()
    });
}

#[test]
fn consistency_suite() {
    run("consistency", |v| {
        let (Some(size1), Some(size2)) = (v["size1"].as_u64(), v["size2"].as_u64()) else {
            return false;
        };
        let (Some(root1), Some(root2), Some(proof)) =
            (b64(&v["root1"]), b64(&v["root2"]), proof_of(&v["proof"]))
        else {
            return false;
        };
        let proof: Vec<&[u8]> = proof.iter().map(Vec::as_slice).collect();
        merkle::verify_consistency::<Sha256>(size1, size2, &proof, &root1, &root2).is_ok()
    });
}

/// The leaves of RFC 6962's reference tree, on which the suite's proofs are built.
fn reference_leaves() -> Vec<merkle::Hash> {
    let data: [&[u8]; 8] = [
        b"",
        &[0x00],
        &[0x10],
        &[0x20, 0x21],
        &[0x30, 0x31],
        &[0x40, 0x41, 0x42, 0x43],
        &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        &[
            0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
            0x6e, 0x6f,
        ],
    ];
    data.iter().map(|d| Sha256::leaf(d)).collect()
}

#[test]
fn reference_roots_with_sha256() {
    // Known roots of RFC 6962's reference tree; these need no vectors folder.
    let leaves = reference_leaves();
    let hex = |h: merkle::Hash| axon_protocols::journal::hex(&h);
    assert_eq!(
        hex(merkle::root::<Sha256>(&[])),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(merkle::root::<Sha256>(&leaves[..1])),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
    assert_eq!(
        hex(merkle::root::<Sha256>(&leaves)),
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    );
}

#[test]
fn generated_proofs_match_the_published_ones() {
    let Some(dir) = suite() else { return };
    let leaves = reference_leaves();
    let as_vecs = |p: Vec<merkle::Hash>| p.iter().map(|h| h.to_vec()).collect::<Vec<_>>();
    let mut compared = 0;
    let mut files = vec![];
    json_files(&dir.join("inclusion"), &mut files);
    for f in files.iter().filter(|f| f.ends_with("happy-path.json")) {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let i = v["leafIdx"].as_u64().unwrap() as usize;
        let n = v["treeSize"].as_u64().unwrap() as usize;
        if n > leaves.len() || b64(&v["leafHash"]).unwrap() != leaves[i] {
            continue;
        }
        let got = merkle::inclusion_proof::<Sha256>(&leaves[..n], i).unwrap();
        assert_eq!(
            as_vecs(got),
            proof_of(&v["proof"]).unwrap(),
            "{}",
            f.display()
        );
        assert_eq!(
            merkle::root::<Sha256>(&leaves[..n]).to_vec(),
            b64(&v["root"]).unwrap()
        );
        compared += 1;
    }
    let mut files = vec![];
    json_files(&dir.join("consistency"), &mut files);
    for f in files.iter().filter(|f| f.ends_with("happy-path.json")) {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let m = v["size1"].as_u64().unwrap() as usize;
        let n = v["size2"].as_u64().unwrap() as usize;
        if n > leaves.len() || b64(&v["root2"]).unwrap() != merkle::root::<Sha256>(&leaves[..n]) {
            continue;
        }
        let got = merkle::consistency_proof::<Sha256>(&leaves[..n], m).unwrap();
        assert_eq!(
            as_vecs(got),
            proof_of(&v["proof"]).unwrap(),
            "{}",
            f.display()
        );
        compared += 1;
    }
    assert!(
        compared >= 4,
        "only {compared} published proofs were on the reference tree"
    );
}
