//! The body of a [`crate::ledger::EntryKind::Liveness`] entry: what one verifier saw of every peer's
//! heartbeats in one epoch.

use bincode::{Decode, Encode};
use serde::Serialize;

use super::parts::{self, Parted};
use crate::codec::DecodeError;
use crate::ledger::entry::MAX_ENTRY_BODY;

/// Heartbeats of one peer in the attested epoch.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct PeerLiveness {
    /// The peer's public key.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub peer: [u8; 32],
    /// Distinct heartbeats received from it in the epoch.
    pub seen: u64,
}

/// Peers in one part of an attestation: a [`PeerLiveness`] encodes to at most 41 bytes, so
/// 700 of them (28.7 KiB) and the header fit the 32 KiB entry body. Issue #16: one attestation
/// of every peer passed the body limit near 1,000 peers and no verifier could attest at all;
/// now 100,000 peers take 143 parts.
pub const PEERS_PER_PART: usize = 700;

/// A verifier's liveness attestation for one epoch: the peers it heard in that epoch (only
/// those), in `parts` entries of at most [`PEERS_PER_PART`] peers each, the peers ascending
/// across parts.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct LivenessAttestation {
    /// The epoch attested (the entry's own epoch is when it was written).
    pub epoch: u64,
    /// Heartbeats a peer live for the whole epoch sends.
    pub expected: u64,
    /// This part's index, below `parts`.
    pub part: u32,
    /// How many parts the attestation of this epoch has (at least one, even with no peers).
    pub parts: u32,
    /// Peers sorted by key.
    pub peers: Vec<PeerLiveness>,
}

impl LivenessAttestation {
    /// The attestation of `epoch` split into parts; `peers` sorted by key, peers never heard
    /// in the epoch (`seen == 0`) left out.
    pub fn split(epoch: u64, expected: u64, peers: impl IntoIterator<Item = PeerLiveness>) -> Vec<Self> {
        let heard: Vec<PeerLiveness> = peers.into_iter().filter(|p| p.seen > 0).collect();
        let chunks = parts::chunks(&heard, PEERS_PER_PART);
        let parts = chunks.len() as u32;
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, peers)| Self { epoch, expected, part: i as u32, parts, peers })
            .collect()
    }

    /// Merges the parts one verifier wrote for one epoch, given in ledger order (see
    /// [`parts::merge`]). `None` without parts.
    pub fn merge<'a>(written: impl IntoIterator<Item = &'a Self>) -> Option<Self> {
        let (last, peers) = parts::merge(written)?;
        Some(Self { epoch: last.epoch, expected: last.expected, part: 0, parts: 1, peers })
    }

    /// How many heartbeats of `peer` this attestation counts (0 if not listed).
    pub fn seen(&self, peer: &[u8; 32]) -> u64 {
        self.peers.binary_search_by(|p| p.peer.cmp(peer)).map_or(0, |i| self.peers[i].seen)
    }

    /// Entry body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body; never panics.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v: Self = crate::codec::decode::<_, MAX_ENTRY_BODY>(body)?;
        parts::check(&v)?;
        Ok(v)
    }
}

impl Parted for LivenessAttestation {
    type Item = PeerLiveness;
    fn part(&self) -> u32 {
        self.part
    }
    fn parts(&self) -> u32 {
        self.parts
    }
    fn items(&self) -> &[PeerLiveness] {
        &self.peers
    }
    fn key(item: &PeerLiveness) -> [u8; 32] {
        item.peer
    }
}

/// One worker's Proof-of-Rendering results in the attested epoch, from one verifier.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct WorkerVerdict {
    #[serde(serialize_with = "hex::serde::serialize")]
    pub worker: [u8; 32],
    pub passed: u32,
    pub failed: u32,
    /// Challenges unanswered in time (QoS failures, not PoR failures).
    pub timeouts: u32,
    /// Mean challenge round trip in ms (QoS).
    pub mean_latency_ms: u32,
    /// Of `passed`, how many were benchmarks (the rest were image challenges).
    pub benches: u32,
    /// IB estimate x 1000 from this epoch's benchmark challenges (0: none).
    pub ib_milli: u32,
    /// Why the last failure failed (at most 160 bytes).
    pub last_failure: String,
    /// The worker's signed answer to one of this verifier's challenges in the epoch: without it
    /// the verdict earns the verifier nothing (it may have copied it).
    pub proof: Option<super::proof::AnswerProof>,
}

/// A verifier's Proof-of-Rendering verdicts for one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct PorVerdicts {
    pub epoch: u64,
    /// Workers sorted by key.
    pub workers: Vec<WorkerVerdict>,
}

impl PorVerdicts {
    /// Entry body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body; never panics.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v: Self = crate::codec::decode::<_, MAX_ENTRY_BODY>(body)?;
        if !v.workers.windows(2).all(|w| w[0].worker < w[1].worker) {
            return Err(DecodeError::invalid("workers are not sorted and distinct"));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u32) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k
    }

    /// Issue #16: an attestation of every peer ever heard passed the 32 KiB body limit near
    /// 1,000 peers. 100,000 peers heard (plus as many silent ones, left out) split into parts
    /// that each fit an entry and decode, and merge back to exactly the peers heard.
    #[test]
    fn a_hundred_thousand_peers_attest_in_parts_that_fit() {
        let peers =
            (0..200_000u32).map(|i| PeerLiveness { peer: peer(i), seen: if i % 2 == 0 { u64::MAX } else { 0 } });
        let parts = LivenessAttestation::split(7, 30, peers);
        assert_eq!(parts.len(), 100_000usize.div_ceil(PEERS_PER_PART));
        for p in &parts {
            let body = p.encode();
            assert!(body.len() <= MAX_ENTRY_BODY, "part {} is {} bytes", p.part, body.len());
            assert_eq!(&LivenessAttestation::decode(&body).unwrap(), p);
        }
        let merged = LivenessAttestation::merge(&parts).unwrap();
        assert_eq!(merged.peers.len(), 100_000);
        assert!(merged.peers.iter().all(|p| p.seen == u64::MAX));
        assert_eq!(merged.seen(&peer(4)), u64::MAX);
        assert_eq!(merged.seen(&peer(5)), 0, "silent peers are not listed");
    }

    #[test]
    fn no_peers_heard_is_one_empty_part_and_a_rewritten_attestation_replaces_the_old_parts() {
        let empty = LivenessAttestation::split(1, 30, []);
        assert_eq!((empty.len(), empty[0].parts, empty[0].peers.len()), (1, 1, 0));
        // Three parts first; written again later as one part: the old parts 1 and 2 no longer count.
        let many = LivenessAttestation::split(1, 30, (0..1500).map(|i| PeerLiveness { peer: peer(i), seen: 3 }));
        assert_eq!(many.len(), 3);
        let again = LivenessAttestation::split(1, 30, [PeerLiveness { peer: peer(9), seen: 30 }]);
        let written: Vec<&LivenessAttestation> = many.iter().chain(&again).collect();
        let merged = LivenessAttestation::merge(written).unwrap();
        assert_eq!(merged.peers, vec![PeerLiveness { peer: peer(9), seen: 30 }]);
        // A part index at or past the count does not decode.
        let mut bad = again[0].clone();
        bad.part = 1;
        assert!(LivenessAttestation::decode(&bad.encode()).is_err());
    }
}
