//! Merkle trees as in RFC 9162 §2.1: leaf hash `H(0x00 ‖ entry)`, node hash
//! `H(0x01 ‖ left ‖ right)`, the tree of `n` leaves split at the largest power of two below
//! `n`. Inclusion and consistency proofs are built and verified here for any hash with a
//! 32-byte output: BLAKE3 for Axon's journal, SHA-256 to check this code against the
//! published RFC 6962/9162 test data.

/// A 32-byte tree hash.
pub type Hash = [u8; 32];

/// The hash function of a tree.
pub trait TreeHasher {
    /// The hash of the empty tree: `H()`.
    fn empty() -> Hash;
    /// `H(0x00 ‖ data)`.
    fn leaf(data: &[u8]) -> Hash;
    /// `H(0x01 ‖ left ‖ right)`.
    fn node(left: &Hash, right: &Hash) -> Hash;
}

/// BLAKE3, Axon's journal hash.
pub struct Blake3;

impl TreeHasher for Blake3 {
    fn empty() -> Hash {
        *blake3::hash(b"").as_bytes()
    }
    fn leaf(data: &[u8]) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(&[0x00]);
        h.update(data);
        *h.finalize().as_bytes()
    }
    fn node(left: &Hash, right: &Hash) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(&[0x01]);
        h.update(left);
        h.update(right);
        *h.finalize().as_bytes()
    }
}

/// SHA-256 (ring), the hash of RFC 6962 and its published test data.
pub struct Sha256;

impl Sha256 {
    fn digest(parts: &[&[u8]]) -> Hash {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

impl TreeHasher for Sha256 {
    fn empty() -> Hash {
        Self::digest(&[])
    }
    fn leaf(data: &[u8]) -> Hash {
        Self::digest(&[&[0x00], data])
    }
    fn node(left: &Hash, right: &Hash) -> Hash {
        Self::digest(&[&[0x01], left, right])
    }
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not inside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the log holds {len} leaves; a tree of size {size} is not in it yet")]
    BeyondLog { size: u64, len: u64 },
    #[error("size {size1} is larger than size {size2}")]
    SizesOutOfOrder { size1: u64, size2: u64 },
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyFirstTree,
    #[error("{what} is {len} bytes, not 32")]
    BadHashLength { what: &'static str, len: usize },
    #[error("the proof has {got} hashes; this tree shape needs {want}")]
    WrongProofLength { got: usize, want: usize },
    #[error("the proof does not lead to the given root")]
    RootMismatch,
}

fn as_hash(what: &'static str, b: &[u8]) -> Result<Hash, ProofError> {
    b.try_into()
        .map_err(|_| ProofError::BadHashLength { what, len: b.len() })
}

/// The largest power of two strictly less than `n` (`n > 1`).
fn split(n: usize) -> usize {
    debug_assert!(n > 1);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The root of the tree over `leaves` (leaf hashes), RFC 9162's `MTH`.
pub fn root<H: TreeHasher>(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => H::empty(),
        1 => leaves[0],
        n => {
            let k = split(n);
            H::node(&root::<H>(&leaves[..k]), &root::<H>(&leaves[k..]))
        }
    }
}

/// The inclusion proof of leaf `index` in the tree over `leaves`, RFC 9162's `PATH`.
pub fn inclusion_proof<H: TreeHasher>(
    leaves: &[Hash],
    index: usize,
) -> Result<Vec<Hash>, ProofError> {
    inclusion_proof_with(&|a, b| root::<H>(&leaves[a..b]), index, leaves.len())
}

/// The consistency proof between the tree of the first `size1` leaves and the tree over
/// all `leaves`, RFC 9162's `PROOF`.
pub fn consistency_proof<H: TreeHasher>(
    leaves: &[Hash],
    size1: usize,
) -> Result<Vec<Hash>, ProofError> {
    consistency_proof_with(&|a, b| root::<H>(&leaves[a..b]), size1, leaves.len())
}

/// `PATH` for leaf `index` of the first `size` leaves, given the root of any subtree
/// `[start, end)` from `subtree`.
fn inclusion_proof_with(
    subtree: &dyn Fn(usize, usize) -> Hash,
    index: usize,
    size: usize,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange {
            index: index as u64,
            size: size as u64,
        });
    }
    let mut out = Vec::new();
    path(subtree, 0, size, index, &mut out);
    Ok(out)
}

fn path(
    subtree: &dyn Fn(usize, usize) -> Hash,
    start: usize,
    end: usize,
    m: usize,
    out: &mut Vec<Hash>,
) {
    let n = end - start;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(subtree, start, start + k, m, out);
        out.push(subtree(start + k, end));
    } else {
        path(subtree, start + k, end, m - k, out);
        out.push(subtree(start, start + k));
    }
}

/// `PROOF` from `size1` to `size2` leaves, given subtree roots from `subtree`.
fn consistency_proof_with(
    subtree: &dyn Fn(usize, usize) -> Hash,
    size1: usize,
    size2: usize,
) -> Result<Vec<Hash>, ProofError> {
    if size1 == 0 {
        return Err(ProofError::EmptyFirstTree);
    }
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder {
            size1: size1 as u64,
            size2: size2 as u64,
        });
    }
    let mut out = Vec::new();
    subproof(subtree, size1, 0, size2, true, &mut out);
    Ok(out)
}

fn subproof(
    subtree: &dyn Fn(usize, usize) -> Hash,
    m: usize,
    start: usize,
    end: usize,
    complete: bool,
    out: &mut Vec<Hash>,
) {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(subtree(start, end));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(subtree, m, start, start + k, complete, out);
        out.push(subtree(start + k, end));
    } else {
        subproof(subtree, m - k, start + k, end, false, out);
        out.push(subtree(start, start + k));
    }
}

/// An append-only log of leaf hashes that keeps the root of every complete, aligned
/// subtree, so roots and proofs for any size take O(log² n) hashing instead of O(n).
/// Memory: about two hashes per leaf.
pub struct MerkleLog<H> {
    /// `levels[h][i]` is the root of leaves `[i·2^h, (i+1)·2^h)`.
    levels: Vec<Vec<Hash>>,
    _hash: std::marker::PhantomData<H>,
}

impl<H: TreeHasher> Default for MerkleLog<H> {
    fn default() -> Self {
        Self {
            levels: vec![Vec::new()],
            _hash: std::marker::PhantomData,
        }
    }
}

impl<H: TreeHasher> MerkleLog<H> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves in the log.
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: usize) -> Option<Hash> {
        self.levels[0].get(index).copied()
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.levels[0].push(leaf);
        let mut h = 0;
        while self.levels[h].len().is_multiple_of(2) {
            let n = self.levels[h].len();
            let parent = H::node(&self.levels[h][n - 2], &self.levels[h][n - 1]);
            if self.levels.len() == h + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[h + 1].push(parent);
            h += 1;
        }
    }

    /// Drops every leaf from `size` on (used when a torn tail is cut off).
    pub fn truncate(&mut self, size: usize) {
        for (h, level) in self.levels.iter_mut().enumerate() {
            level.truncate(size >> h);
        }
    }

    /// The root of leaves `[start, end)` (`end <= len`).
    pub fn subtree(&self, start: usize, end: usize) -> Hash {
        let n = end - start;
        if n == 0 {
            return H::empty();
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let h = n.trailing_zeros() as usize;
            return self.levels[h][start >> h];
        }
        let k = split(n);
        H::node(
            &self.subtree(start, start + k),
            &self.subtree(start + k, end),
        )
    }

    /// The root of the tree of the first `size` leaves.
    pub fn root_at(&self, size: usize) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(self.subtree(0, size))
    }

    /// The inclusion proof of `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: usize, size: usize) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        inclusion_proof_with(&|a, b| self.subtree(a, b), index, size)
    }

    /// The consistency proof from `size1` to `size2` leaves.
    pub fn consistency_proof(&self, size1: usize, size2: usize) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size2)?;
        consistency_proof_with(&|a, b| self.subtree(a, b), size1, size2)
    }

    fn check_size(&self, size: usize) -> Result<(), ProofError> {
        if size > self.len() {
            return Err(ProofError::BeyondLog {
                size: size as u64,
                len: self.len() as u64,
            });
        }
        Ok(())
    }
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves with `root`
/// (RFC 9162 §2.1.3.2). Every hash must be 32 bytes.
pub fn verify_inclusion<H: TreeHasher>(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[&[u8]],
    root: &[u8],
) -> Result<(), ProofError> {
    let leaf = as_hash("the leaf hash", leaf_hash)?;
    let root = as_hash("the root", root)?;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = leaf;
    for p in proof {
        let p = as_hash("a proof hash", p)?;
        if snode == 0 {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want,
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = H::node(&p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = H::node(&r, &p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 || r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The number of hashes in an inclusion proof of `index` in a tree of `size`.
fn inclusion_len(index: u64, size: u64) -> usize {
    // Levels below the point where the paths of `index` and `size - 1` meet, plus the
    // right-border levels above it that have a left sibling.
    let inner = (u64::BITS - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    inner + border
}

/// Checks that the tree of `size1` leaves with `root1` is a prefix of the tree of `size2`
/// leaves with `root2` (RFC 9162 §2.1.4.2). Equal sizes with an empty proof only compare
/// the roots; a first tree of size 0 is always refused.
pub fn verify_consistency<H: TreeHasher>(
    size1: u64,
    size2: u64,
    proof: &[&[u8]],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == 0 {
        return Err(ProofError::EmptyFirstTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let first = as_hash("the first root", root1)?;
    let second = as_hash("the second root", root2)?;
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(first);
    }
    for p in proof {
        path.push(as_hash("a proof hash", p)?);
    }
    let want = consistency_len(size1, size2);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::RootMismatch);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = H::node(c, &fr);
            sr = H::node(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = H::node(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 || fr != first || sr != second {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The number of hashes in a consistency proof from `size1` to `size2` (`0 < size1 < size2`).
fn consistency_len(size1: u64, size2: u64) -> usize {
    let inner = (u64::BITS - ((size1 - 1) ^ (size2 - 1)).leading_zeros()) as usize;
    let shift = (size1 - 1).trailing_ones() as usize;
    let border = ((size2 - 1) >> inner).count_ones() as usize;
    let start = usize::from(!size1.is_power_of_two());
    start + inner - shift + border
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_agrees_with_the_plain_tree() {
        let leaves: Vec<Hash> = (0..70u8).map(|i| Blake3::leaf(&[i])).collect();
        let mut log = MerkleLog::<Blake3>::new();
        assert_eq!(log.root_at(0).unwrap(), Blake3::empty());
        for (n, leaf) in leaves.iter().enumerate() {
            log.push(*leaf);
            assert_eq!(log.root_at(n + 1).unwrap(), root::<Blake3>(&leaves[..=n]));
        }
        for n in 1..=leaves.len() {
            for i in (0..n).step_by(3) {
                assert_eq!(
                    log.inclusion_proof(i, n).unwrap(),
                    inclusion_proof::<Blake3>(&leaves[..n], i).unwrap()
                );
            }
            for m in (1..=n).step_by(5) {
                assert_eq!(
                    log.consistency_proof(m, n).unwrap(),
                    consistency_proof::<Blake3>(&leaves[..n], m).unwrap()
                );
            }
        }
        log.truncate(33);
        assert_eq!(log.len(), 33);
        assert_eq!(log.root_at(33).unwrap(), root::<Blake3>(&leaves[..33]));
        log.push(leaves[33]);
        assert_eq!(log.root_at(34).unwrap(), root::<Blake3>(&leaves[..34]));
        assert!(log.root_at(35).is_err());
    }

    #[test]
    fn proof_lengths_match_the_generated_proofs() {
        let leaves: Vec<Hash> = (0..70u8).map(|i| Blake3::leaf(&[i])).collect();
        for n in 1..=leaves.len() {
            for i in 0..n {
                let p = inclusion_proof::<Blake3>(&leaves[..n], i).unwrap();
                assert_eq!(p.len(), inclusion_len(i as u64, n as u64), "i={i} n={n}");
            }
            for m in 1..n {
                let p = consistency_proof::<Blake3>(&leaves[..n], m).unwrap();
                assert_eq!(p.len(), consistency_len(m as u64, n as u64), "m={m} n={n}");
            }
        }
    }
}
