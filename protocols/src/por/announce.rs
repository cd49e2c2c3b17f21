//! The body of a `por` topic announcement: a verifier tells the network the outcome of one
//! challenge as it happens (the per-epoch `PorVerdicts` ledger entries are the durable record).

use bincode::{Decode, Encode};
use serde::Serialize;

/// Longest reason text carried.
pub const MAX_REASON: usize = 160;

/// One challenge outcome.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Announcement {
    /// The worker's public key.
    #[serde(serialize_with = "hex32")]
    pub worker: [u8; 32],
    /// `image`, `bench` or `timeout`.
    pub challenge: String,
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub reason: String,
    pub latency_ms: u32,
}

fn hex32<S: serde::Serializer>(k: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(k))
}

impl Announcement {
    /// Envelope body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body; never panics; refuses unknown challenge kinds and long reasons.
    pub fn decode(body: &[u8]) -> Result<Self, crate::codec::DecodeError> {
        let a: Self = crate::codec::decode::<_, 512>(body)?;
        if !["image", "bench", "timeout"].contains(&a.challenge.as_str()) || a.reason.len() > MAX_REASON {
            return Err(crate::codec::DecodeError::invalid("bad challenge kind or reason"));
        }
        Ok(a)
    }
}
