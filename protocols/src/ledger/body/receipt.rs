//! Receipts: the body of a [`crate::ledger::EntryKind::RenderReceipt`] entry (the job owner's signed
//! statement that a worker delivered one tile of one job, and how much work that was) and of a
//! [`crate::ledger::EntryKind::FlReceipt`] entry (a task owner's verdict on one FL update).

use bincode::{Decode, Encode};
use serde::Serialize;

use crate::codec::DecodeError;
use crate::ledger::entry::MAX_ENTRY_BODY;

/// One accepted tile.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct RenderReceipt {
    /// Job id (random, chosen by the owner).
    #[serde(serialize_with = "hex::serde::serialize")]
    pub job: [u8; 16],
    /// Index of the tile in the job's row-major tiling.
    pub tile: u32,
    /// The worker's public key.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub worker: [u8; 32],
    /// Work units: pixels x samples per pixel x bounce budget / 1,000
    /// (`ifx_protocols::render::RenderSettings::work_units`).
    pub work_units: u64,
    /// The worker's signed commitment to the tile's pixels, as the owner received it (issue
    /// #18): what `ifx verify` checks an image against. None only where nobody signed (hostile
    /// or hand-made receipts; the job owner always writes it).
    pub signed: Option<TileSignature>,
}

/// A worker's commitment to a tile: the Merkle root of its pixels and the worker's signature
/// of the [`crate::render::commit::TileCommitment`] (job, spec hash, rectangle, root).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct TileSignature {
    #[serde(with = "hex::serde")]
    pub root: [u8; 32],
    #[serde(with = "hex::serde")]
    pub sig: [u8; 64],
}

impl RenderReceipt {
    /// Entry body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body; never panics.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        crate::codec::decode::<_, MAX_ENTRY_BODY>(body)
    }
}

/// A task owner's verdict on one client's update in one round of a federated task.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct FlReceipt {
    #[serde(serialize_with = "hex::serde::serialize")]
    pub task: [u8; 16],
    pub round: u32,
    #[serde(serialize_with = "hex::serde::serialize")]
    pub worker: [u8; 32],
    /// BLAKE3 of the update's safetensors bytes (zero if it never arrived whole).
    #[serde(serialize_with = "hex::serde::serialize")]
    pub update: [u8; 32],
    /// Whether the update went into the aggregate.
    pub accepted: bool,
    /// Work units (`fl::wire::work_units`: capped examples x epochs x 6 x parameters / 10^6,
    /// times the contribution); zero for a rejected update.
    pub work_units: u64,
    /// The update's contribution to its round in parts per million of the round's largest
    /// (`fl::aggregate::contributions`; zero for a rejected update): settlement pays this share
    /// of an update's paid units.
    pub contribution_ppm: u32,
    /// Why it was rejected (empty when accepted).
    pub reason: String,
}

impl FlReceipt {
    /// Entry body bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body; never panics.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        crate::codec::decode::<_, MAX_ENTRY_BODY>(body)
    }
}
