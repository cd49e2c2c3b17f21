//! What a worker holds for challengers, bounded per peer (sans I/O): the challenges it answered
//! and may be asked to open, and how many of a peer's challenges it is working on.
//!
//! A challenge's second round (`Open`) needs the answered image's Merkle tree, kept from the
//! first. Kept by `(peer, id)` with a cap per peer and in all, so a stranger's stream of
//! challenges evicts only its own entries (and, past the total cap, the oldest anyone left);
//! an evicted challenge answers [`Response::Busy`](ifx_protocols::por::wire::Response), which
//! the verifier counts as unanswered (QoS), never as a PoR failure.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use libp2p::PeerId;

/// Open challenges kept per challenger. An honest verifier has one challenge in flight per
/// worker at a time; 4 leaves room for a retry and a slow second round.
pub const OPEN_PER_PEER: usize = 4;
/// Open challenges kept in all (each holds a 128x128 image, 49 KiB, and its tree: 64 MiB at
/// most).
pub const OPEN_TOTAL: usize = 1024;
/// Render or benchmark challenges a worker works on at once for one peer (an honest verifier
/// sends one at a time).
pub const IN_FLIGHT_PER_PEER: usize = 2;

/// Challenges answered and not yet opened, by `(peer, id)`.
pub struct OpenBook<T> {
    entries: HashMap<(PeerId, [u8; 16]), (u64, T)>,
    /// Insertion order over everyone: the oldest goes first past [`OPEN_TOTAL`].
    order: BTreeMap<u64, (PeerId, [u8; 16])>,
    by_peer: HashMap<PeerId, VecDeque<[u8; 16]>>,
    next: u64,
    per_peer: usize,
    total: usize,
}

impl<T> Default for OpenBook<T> {
    fn default() -> Self {
        Self::with_caps(OPEN_PER_PEER, OPEN_TOTAL)
    }
}

impl<T> OpenBook<T> {
    pub fn with_caps(per_peer: usize, total: usize) -> Self {
        OpenBook {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            by_peer: HashMap::new(),
            next: 0,
            per_peer: per_peer.max(1),
            total: total.max(1),
        }
    }

    /// Keeps `value` for `peer`'s challenge `id`, evicting `peer`'s oldest past its cap, then
    /// the oldest of all past the total.
    pub fn insert(&mut self, peer: PeerId, id: [u8; 16], value: T) {
        self.remove(&peer, &id);
        if self.by_peer.get(&peer).is_some_and(|q| q.len() >= self.per_peer)
            && let Some(old) = self.by_peer.get(&peer).and_then(|q| q.front().copied())
        {
            self.remove(&peer, &old);
        }
        while self.entries.len() >= self.total {
            let Some((_, (p, i))) = self.order.first_key_value().map(|(k, v)| (*k, *v)) else { break };
            self.remove(&p, &i);
        }
        let n = self.next;
        self.next += 1;
        self.entries.insert((peer, id), (n, value));
        self.order.insert(n, (peer, id));
        self.by_peer.entry(peer).or_default().push_back(id);
    }

    /// Takes what was kept for `peer`'s challenge `id` (another peer's id finds nothing).
    pub fn take(&mut self, peer: &PeerId, id: &[u8; 16]) -> Option<T> {
        self.remove(peer, id)
    }

    fn remove(&mut self, peer: &PeerId, id: &[u8; 16]) -> Option<T> {
        let (n, v) = self.entries.remove(&(*peer, *id))?;
        self.order.remove(&n);
        if let Some(q) = self.by_peer.get_mut(peer) {
            q.retain(|x| x != id);
            if q.is_empty() {
                self.by_peer.remove(peer);
            }
        }
        Some(v)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Challenges being worked on, per peer.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<HashMap<PeerId, usize>>>);

/// One challenge being worked on; dropping it frees the slot.
pub struct Slot {
    owner: InFlight,
    peer: PeerId,
}

impl InFlight {
    /// A slot for `peer`, unless it already has [`IN_FLIGHT_PER_PEER`].
    pub fn acquire(&self, peer: PeerId) -> Option<Slot> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(peer).or_default();
        if *n >= IN_FLIGHT_PER_PEER {
            return None;
        }
        *n += 1;
        Some(Slot { owner: self.clone(), peer })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.owner.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #16: a worker cleared its whole map at 16 entries, so a stranger streaming cheap
    /// challenges made the honest verifier's `Open` unknown, and that counted as a failure.
    #[test]
    fn a_strangers_stream_of_challenges_does_not_evict_an_honest_verifiers() {
        let (honest, stranger) = (PeerId::random(), PeerId::random());
        let mut book = OpenBook::default();
        book.insert(honest, [1; 16], "honest");
        for i in 0..10_000u32 {
            let mut id = [0; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            book.insert(stranger, id, "stranger");
        }
        assert_eq!(book.len(), 1 + OPEN_PER_PEER);
        assert_eq!(book.take(&honest, &[1; 16]), Some("honest"));
        // A peer cannot open another's challenge.
        book.insert(honest, [2; 16], "honest");
        assert_eq!(book.take(&stranger, &[2; 16]), None);
        assert_eq!(book.take(&honest, &[2; 16]), Some("honest"));
    }

    #[test]
    fn many_peers_are_held_to_the_total_oldest_first() {
        let mut book = OpenBook::with_caps(2, 3);
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            book.insert(*p, [i as u8; 16], i);
        }
        assert_eq!(book.len(), 3);
        assert_eq!(book.take(&peers[0], &[0; 16]), None, "the oldest went first");
        assert_eq!(book.take(&peers[3], &[3; 16]), Some(3));
        // The same id again replaces, it does not count twice.
        book.insert(peers[1], [1; 16], 10);
        book.insert(peers[1], [1; 16], 11);
        assert_eq!(book.take(&peers[1], &[1; 16]), Some(11));
        assert_eq!(book.take(&peers[1], &[1; 16]), None);
    }

    #[test]
    fn in_flight_slots_are_per_peer_and_freed_on_drop() {
        let f = InFlight::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let s1 = f.acquire(a).unwrap();
        let _s2 = f.acquire(a).unwrap();
        assert!(f.acquire(a).is_none(), "a third from the same peer waits for a slot");
        assert!(f.acquire(b).is_some(), "another peer is not held up");
        drop(s1);
        assert!(f.acquire(a).is_some());
    }
}
