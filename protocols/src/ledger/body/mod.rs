//! Entry bodies: one type per [`EntryKind`] (`liveness`: attestations and PoR verdicts;
//! `receipt`: render and FL receipts; `settle`: stake, seals, proposals, votes) and
//! [`EntryBody`], the one decode by kind that the router, settlement and the CLI share.

pub mod liveness;
pub mod receipt;
pub mod settle;

use serde::Serialize;

pub use liveness::{LivenessAttestation, PeerLiveness, PorVerdicts, WorkerVerdict};
pub use receipt::{FlReceipt, RenderReceipt};
pub use settle::{EpochSeal, MAX_FRONTIER, Proposal, StakeOp, StakeRole, Vote};

use super::entry::{Entry, EntryKind};
use crate::codec::DecodeError;

/// An entry's body, decoded by its kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EntryBody {
    Liveness(LivenessAttestation),
    RenderReceipt(RenderReceipt),
    PorVerdicts(PorVerdicts),
    FlReceipt(FlReceipt),
    Stake(StakeOp),
    Seal(EpochSeal),
    Proposal(Proposal),
    Vote(Vote),
    /// A kind this build does not know: kept and verified, never read.
    Unknown {
        kind: u16,
        bytes: usize,
    },
}

impl EntryBody {
    /// Decodes `body` as a `kind` body (every decoder checks its size and invariants).
    pub fn decode(kind: EntryKind, body: &[u8]) -> Result<Self, DecodeError> {
        Ok(match kind {
            EntryKind::Liveness => EntryBody::Liveness(LivenessAttestation::decode(body)?),
            EntryKind::RenderReceipt => EntryBody::RenderReceipt(RenderReceipt::decode(body)?),
            EntryKind::PorVerdicts => EntryBody::PorVerdicts(PorVerdicts::decode(body)?),
            EntryKind::FlReceipt => EntryBody::FlReceipt(FlReceipt::decode(body)?),
            EntryKind::Stake => EntryBody::Stake(StakeOp::decode(body)?),
            EntryKind::Seal => EntryBody::Seal(EpochSeal::decode(body)?),
            EntryKind::Proposal => EntryBody::Proposal(Proposal::decode(body)?),
            EntryKind::Vote => EntryBody::Vote(Vote::decode(body)?),
            EntryKind::Unknown(v) => EntryBody::Unknown { kind: v, bytes: body.len() },
        })
    }

    /// The body of `e`.
    pub fn of(e: &Entry) -> Result<Self, DecodeError> {
        Self::decode(e.kind, &e.body)
    }

    /// The kind this body is written as.
    pub fn kind(&self) -> EntryKind {
        match self {
            EntryBody::Liveness(_) => EntryKind::Liveness,
            EntryBody::RenderReceipt(_) => EntryKind::RenderReceipt,
            EntryBody::PorVerdicts(_) => EntryKind::PorVerdicts,
            EntryBody::FlReceipt(_) => EntryKind::FlReceipt,
            EntryBody::Stake(_) => EntryKind::Stake,
            EntryBody::Seal(_) => EntryKind::Seal,
            EntryBody::Proposal(_) => EntryKind::Proposal,
            EntryBody::Vote(_) => EntryKind::Vote,
            EntryBody::Unknown { kind, .. } => EntryKind::Unknown(*kind),
        }
    }

    /// The body's bytes (`Unknown` has none to give: empty).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            EntryBody::Liveness(b) => b.encode(),
            EntryBody::RenderReceipt(b) => b.encode(),
            EntryBody::PorVerdicts(b) => b.encode(),
            EntryBody::FlReceipt(b) => b.encode(),
            EntryBody::Stake(b) => b.encode(),
            EntryBody::Seal(b) => b.encode(),
            EntryBody::Proposal(b) => b.encode(),
            EntryBody::Vote(b) => b.encode(),
            EntryBody::Unknown { .. } => Vec::new(),
        }
    }
}
