//! The ledger root: a homomorphic set hash (LtHash: the sum, lane by lane modulo 2^16, of a
//! 2 KiB BLAKE3 expansion of each element). Adding an element costs one expansion and 1024
//! additions, whatever the size of the set; the order of additions does not matter, so two
//! nodes holding the same set hold the same root, and the 32-byte digest of the lanes is what
//! they compare.

pub const LANES: usize = 1024;
const CONTEXT: &str = "ifx ledger root v1 lthash16";

/// A multiset hash of entry ids.
#[derive(Clone, PartialEq, Eq)]
pub struct SetHash {
    lanes: Box<[u16; LANES]>,
}

impl Default for SetHash {
    fn default() -> Self {
        Self { lanes: Box::new([0; LANES]) }
    }
}

impl std::fmt::Debug for SetHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SetHash({})", hex::encode(self.digest()))
    }
}

impl SetHash {
    /// Adds one element.
    pub fn add(&mut self, element: &[u8; 32]) {
        self.add_expanded(&Self::expand(element));
    }

    /// The 2 KiB expansion of an element (to add it to several sets at the cost of one).
    pub fn expand(element: &[u8; 32]) -> [u8; LANES * 2] {
        let mut buf = [0u8; LANES * 2];
        blake3::Hasher::new_derive_key(CONTEXT).update(element).finalize_xof().fill(&mut buf);
        buf
    }

    /// Adds an element given as its expansion.
    pub fn add_expanded(&mut self, buf: &[u8; LANES * 2]) {
        for (lane, chunk) in self.lanes.iter_mut().zip(buf.chunks_exact(2)) {
            *lane = lane.wrapping_add(u16::from_le_bytes([chunk[0], chunk[1]]));
        }
    }

    /// Removes an element given as its expansion (the inverse of [`SetHash::add_expanded`]).
    pub fn remove_expanded(&mut self, buf: &[u8; LANES * 2]) {
        for (lane, chunk) in self.lanes.iter_mut().zip(buf.chunks_exact(2)) {
            *lane = lane.wrapping_sub(u16::from_le_bytes([chunk[0], chunk[1]]));
        }
    }

    /// The 32-byte digest of the set.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for lane in self.lanes.iter() {
            h.update(&lane.to_le_bytes());
        }
        *h.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_matter_and_elements_do() {
        let (a, b, c) = ([1; 32], [2; 32], [3; 32]);
        let mut x = SetHash::default();
        let mut y = SetHash::default();
        for e in [a, b, c] {
            x.add(&e);
        }
        for e in [c, a, b] {
            y.add(&e);
        }
        assert_eq!(x.digest(), y.digest());
        y.add(&a);
        assert_ne!(x.digest(), y.digest(), "a multiset: adding twice changes it");
        assert_ne!(SetHash::default().digest(), x.digest());
        y.remove_expanded(&SetHash::expand(&a));
        assert_eq!(x.digest(), y.digest(), "removing undoes adding");
    }
}
