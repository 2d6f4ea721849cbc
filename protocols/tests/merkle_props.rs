//! Properties of the BLAKE3 tree: over random sequences of appends, every inclusion proof
//! and every consistency proof between any two sizes verifies, and every corrupted proof
//! (bit flip, wrong index or size, truncated, extended, swapped roots) is refused.

use axon_protocols::merkle::{self, Blake3, Hash, TreeHasher};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

#[derive(Clone, Debug)]
struct Appends {
    entries: Vec<Vec<u8>>,
    /// Picks positions, sizes and bits; reduced modulo what they pick from.
    picks: [u32; 4],
}

impl Arbitrary for Appends {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = 1 + usize::arbitrary(g) % 96;
        Appends {
            // Each entry ends with its position, as journal entries carry their index:
            // two equal leaves would make "another leaf" or a swapped index verify.
            entries: (0..n)
                .map(|i| {
                    let mut e = Vec::<u8>::arbitrary(g);
                    e.extend_from_slice(&(i as u32).to_be_bytes());
                    e
                })
                .collect(),
            picks: [
                u32::arbitrary(g),
                u32::arbitrary(g),
                u32::arbitrary(g),
                u32::arbitrary(g),
            ],
        }
    }
}

/// RFC 9162's `PATH` recursion on the shape alone: for each proof hash, whether the
/// sibling it stands for is to the right. A proof checked against another size verifies
/// exactly when this shape is the same for both sizes: the proof does not carry the size,
/// the signed checkpoint does.
fn sides(m: usize, n: usize) -> Vec<bool> {
    if n <= 1 {
        return vec![];
    }
    let k = n.next_power_of_two() / 2;
    let mut out = if m < k {
        sides(m, k)
    } else {
        sides(m - k, n - k)
    };
    out.push(m < k);
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The proof starts from the first tree's root itself (its size is a power of two).
    FirstRoot,
    /// The proof's first hash is a complete subtree of the first tree.
    FirstSubtree,
    /// A sibling to the right: only in the second tree.
    Right,
    /// A sibling to the left: in both trees.
    Left,
}

/// RFC 9162's `SUBPROOF` recursion on the shape alone (see [`sides`]).
fn shape(m: usize, n: usize) -> Vec<Step> {
    fn sub(m: usize, n: usize, complete: bool, out: &mut Vec<Step>) {
        if m == n {
            out.push(if complete {
                Step::FirstRoot
            } else {
                Step::FirstSubtree
            });
            return;
        }
        let k = n.next_power_of_two() / 2;
        if m <= k {
            sub(m, k, complete, out);
            out.push(Step::Right);
        } else {
            sub(m - k, n - k, false, out);
            out.push(Step::Left);
        }
    }
    let mut out = vec![];
    if m > 0 && m <= n {
        sub(m, n, true, &mut out);
    }
    out
}

fn refs(p: &[Hash]) -> Vec<&[u8]> {
    p.iter().map(|h| h.as_slice()).collect()
}

fn flip(p: &mut [Hash], pick: u32) {
    let i = pick as usize % p.len();
    let bit = (pick >> 8) as usize % 256;
    p[i][bit / 8] ^= 1 << (bit % 8);
}

fn inclusion(a: Appends) -> TestResult {
    let leaves: Vec<Hash> = a.entries.iter().map(|e| Blake3::leaf(e)).collect();
    let n = leaves.len();
    let size = 1 + a.picks[0] as usize % n;
    let index = a.picks[1] as usize % size;
    let tree = &leaves[..size];
    let root = merkle::root::<Blake3>(tree);
    let proof = merkle::inclusion_proof::<Blake3>(tree, index).unwrap();
    let verify = |i: u64, s: u64, leaf: &Hash, p: &[Hash], r: &Hash| {
        merkle::verify_inclusion::<Blake3>(i, s, leaf, &refs(p), r).is_ok()
    };
    let (i, s) = (index as u64, size as u64);
    assert!(verify(i, s, &leaves[index], &proof, &root));
    // Another leaf, index, size or root: refused.
    if size > 1 {
        let other = (index + 1 + a.picks[2] as usize % (size - 1)) % size;
        assert!(!verify(i, s, &leaves[other], &proof, &root));
        assert!(!verify(other as u64, s, &leaves[index], &proof, &root));
    }
    // Another size: verifies exactly when the proof has the same shape for it.
    for wrong in [size + 1, size * 2, size - 1, size / 2] {
        if wrong == size || wrong <= index {
            continue;
        }
        let same_shape = sides(index, wrong) == sides(index, size);
        assert_eq!(
            verify(i, wrong as u64, &leaves[index], &proof, &root),
            same_shape,
            "index {index}, size {size} checked as size {wrong}"
        );
    }
    let mut bad_root = root;
    bad_root[a.picks[3] as usize % 32] ^= 0x80;
    assert!(!verify(i, s, &leaves[index], &proof, &bad_root));
    // Corrupted proofs: refused.
    if !proof.is_empty() {
        let mut p = proof.clone();
        flip(&mut p, a.picks[2]);
        assert!(!verify(i, s, &leaves[index], &p, &root));
        assert!(!verify(
            i,
            s,
            &leaves[index],
            &proof[..proof.len() - 1],
            &root
        ));
        assert!(!verify(i, s, &leaves[index], &proof[1..], &root));
    }
    let mut longer = proof.clone();
    longer.push(root);
    assert!(!verify(i, s, &leaves[index], &longer, &root));
    let mut longer = proof.clone();
    longer.insert(0, leaves[index]);
    assert!(!verify(i, s, &leaves[index], &longer, &root));
    TestResult::passed()
}

fn consistency(a: Appends) -> TestResult {
    let leaves: Vec<Hash> = a.entries.iter().map(|e| Blake3::leaf(e)).collect();
    let n = leaves.len();
    let size2 = 1 + a.picks[0] as usize % n;
    let size1 = 1 + a.picks[1] as usize % size2;
    let root1 = merkle::root::<Blake3>(&leaves[..size1]);
    let root2 = merkle::root::<Blake3>(&leaves[..size2]);
    let proof = merkle::consistency_proof::<Blake3>(&leaves[..size2], size1).unwrap();
    let verify = |s1: u64, s2: u64, p: &[Hash], r1: &Hash, r2: &Hash| {
        merkle::verify_consistency::<Blake3>(s1, s2, &refs(p), r1, r2).is_ok()
    };
    let (s1, s2) = (size1 as u64, size2 as u64);
    assert!(verify(s1, s2, &proof, &root1, &root2));
    if size1 == size2 {
        assert!(proof.is_empty());
        return TestResult::passed();
    }
    // Swapped roots, wrong sizes: refused.
    assert!(!verify(s1, s2, &proof, &root2, &root1));
    assert!(!verify(s2, s1, &proof, &root1, &root2));
    assert!(!verify(0, s2, &proof, &root1, &root2));
    // Other sizes: verify exactly when the proof has the same shape for them.
    for (w1, w2) in [
        (size1 + 1, size2),
        (size1.saturating_sub(1), size2),
        (size1, size2 + 1),
        (size1, size2 * 2),
        (size1, size2 - 1),
        (size1 * 2, size2 * 2),
    ] {
        if (w1, w2) == (size1, size2) || w1 == 0 || w1 >= w2 {
            continue;
        }
        let same_shape = shape(w1, w2) == shape(size1, size2);
        assert_eq!(
            verify(w1 as u64, w2 as u64, &proof, &root1, &root2),
            same_shape,
            "{size1} -> {size2} checked as {w1} -> {w2}"
        );
    }
    // Corrupted proofs: refused.
    let mut p = proof.clone();
    flip(&mut p, a.picks[2]);
    assert!(!verify(s1, s2, &p, &root1, &root2));
    assert!(!verify(s1, s2, &proof[..proof.len() - 1], &root1, &root2));
    let mut longer = proof.clone();
    longer.push(root2);
    assert!(!verify(s1, s2, &longer, &root1, &root2));
    let mut r = root2;
    r[a.picks[3] as usize % 32] ^= 1;
    assert!(!verify(s1, s2, &proof, &root1, &r));
    TestResult::passed()
}

#[test]
fn inclusion_proofs_verify_and_corruptions_fail() {
    QuickCheck::new()
        .tests(500)
        .quickcheck(inclusion as fn(Appends) -> TestResult);
}

#[test]
fn consistency_proofs_verify_and_corruptions_fail() {
    QuickCheck::new()
        .tests(500)
        .quickcheck(consistency as fn(Appends) -> TestResult);
}

#[test]
fn every_pair_of_sizes_is_consistent() {
    let leaves: Vec<Hash> = (0..40u32).map(|i| Blake3::leaf(&i.to_be_bytes())).collect();
    for n in 1..=leaves.len() {
        let r2 = merkle::root::<Blake3>(&leaves[..n]);
        for m in 1..=n {
            let r1 = merkle::root::<Blake3>(&leaves[..m]);
            let p = merkle::consistency_proof::<Blake3>(&leaves[..n], m).unwrap();
            merkle::verify_consistency::<Blake3>(m as u64, n as u64, &refs(&p), &r1, &r2)
                .unwrap_or_else(|e| panic!("{m} -> {n}: {e}"));
        }
        for i in 0..n {
            let p = merkle::inclusion_proof::<Blake3>(&leaves[..n], i).unwrap();
            merkle::verify_inclusion::<Blake3>(i as u64, n as u64, &leaves[i], &refs(&p), &r2)
                .unwrap_or_else(|e| panic!("{i} in {n}: {e}"));
        }
    }
}
