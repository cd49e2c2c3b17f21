//! A binary BLAKE3 Merkle tree over 32-byte leaves (padded with zero leaves to a power of two),
//! with inclusion proofs. Callers hash their own leaves; inner nodes are hashed under a
//! caller-chosen domain string, so trees of different uses never share a node.

/// Inner node hash: `BLAKE3(domain || left || right)`.
pub fn node(domain: &[u8], a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(domain);
    h.update(a);
    h.update(b);
    *h.finalize().as_bytes()
}

/// Every level of a tree, leaves first.
pub struct Tree {
    domain: &'static [u8],
    levels: Vec<Vec<[u8; 32]>>,
    leaves: usize,
}

impl Tree {
    /// Builds the tree over `leaves` (no leaves: the root is 32 zero bytes).
    pub fn new(domain: &'static [u8], mut leaves: Vec<[u8; 32]>) -> Self {
        let n = leaves.len();
        leaves.resize(n.next_power_of_two().max(1), [0; 32]);
        let mut levels = vec![leaves];
        while levels.last().expect("non-empty").len() > 1 {
            let prev = levels.last().expect("non-empty");
            levels.push(prev.chunks(2).map(|p| node(domain, &p[0], &p[1])).collect());
        }
        Self { domain, levels, leaves: n }
    }

    /// The root.
    pub fn root(&self) -> [u8; 32] {
        self.levels.last().expect("non-empty")[0]
    }

    /// The sibling path of leaf `index` (`index` < [`Tree::leaves`]).
    pub fn proof(&self, index: usize) -> Vec<[u8; 32]> {
        let mut i = index;
        self.levels[..self.levels.len() - 1]
            .iter()
            .map(|l| {
                let s = l[i ^ 1];
                i /= 2;
                s
            })
            .collect()
    }

    /// Number of real leaves.
    pub fn leaves(&self) -> usize {
        self.leaves
    }

    /// The node domain this tree hashes under.
    pub fn domain(&self) -> &'static [u8] {
        self.domain
    }
}

/// Checks that `leaf` sits at `index` under `root`.
pub fn verify(domain: &[u8], root: &[u8; 32], index: u32, leaf: [u8; 32], proof: &[[u8; 32]]) -> bool {
    if proof.len() > 32 {
        return false;
    }
    let mut h = leaf;
    let mut i = index;
    for s in proof {
        h = if i.is_multiple_of(2) { node(domain, &h, s) } else { node(domain, s, &h) };
        i /= 2;
    }
    i == 0 && h == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_and_bind_index_and_domain() {
        for n in [1usize, 2, 3, 5, 8, 13] {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| [i as u8 + 1; 32]).collect();
            let t = Tree::new(b"test/node", leaves.clone());
            for (i, l) in leaves.iter().enumerate() {
                let p = t.proof(i);
                assert!(verify(b"test/node", &t.root(), i as u32, *l, &p));
                if n > 1 {
                    // (A one-leaf tree's root is its leaf: no node is hashed.)
                    assert!(!verify(b"other/node", &t.root(), i as u32, *l, &p));
                    assert!(!verify(b"test/node", &t.root(), (i as u32) ^ 1, *l, &p));
                }
            }
        }
        assert_eq!(Tree::new(b"d", Vec::new()).root(), [0; 32]);
    }
}
