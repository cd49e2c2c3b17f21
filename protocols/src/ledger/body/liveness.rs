//! The body of a [`crate::ledger::EntryKind::Liveness`] entry: what one verifier saw of every peer's
//! heartbeats in one epoch.

use bincode::{Decode, Encode};
use serde::Serialize;

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

/// A verifier's liveness attestation for one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct LivenessAttestation {
    /// The epoch attested (the entry's own epoch is when it was written).
    pub epoch: u64,
    /// Heartbeats a peer live for the whole epoch sends.
    pub expected: u64,
    /// Peers sorted by key.
    pub peers: Vec<PeerLiveness>,
}

impl LivenessAttestation {
    /// Entry body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body; never panics.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v: Self = crate::codec::decode::<_, MAX_ENTRY_BODY>(body)?;
        if !v.peers.windows(2).all(|w| w[0].peer < w[1].peer) {
            return Err(DecodeError::invalid("peers are not sorted and distinct"));
        }
        Ok(v)
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
