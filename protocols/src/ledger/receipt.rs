//! The body of a [`super::EntryKind::RenderReceipt`] entry: the job owner's signed statement
//! that a worker delivered one tile of one job, and how much work that was.

use bincode::{Decode, Encode};
use serde::Serialize;

use super::entry::MAX_ENTRY_BODY;

/// One accepted tile.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct RenderReceipt {
    /// Job id (random, chosen by the owner).
    #[serde(serialize_with = "hex16")]
    pub job: [u8; 16],
    /// Index of the tile in the job's row-major tiling.
    pub tile: u32,
    /// The worker's public key.
    #[serde(serialize_with = "hex32")]
    pub worker: [u8; 32],
    /// Work units: pixels x samples per pixel x bounce budget / 1,000
    /// (`ifx_protocols::render::RenderSettings::work_units`).
    pub work_units: u64,
}

fn hex16<S: serde::Serializer>(k: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(k))
}

fn hex32<S: serde::Serializer>(k: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(k))
}

impl RenderReceipt {
    /// Entry body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body; never panics.
    pub fn decode(body: &[u8]) -> Result<Self, String> {
        crate::codec::decode::<_, MAX_ENTRY_BODY>(body)
    }
}
