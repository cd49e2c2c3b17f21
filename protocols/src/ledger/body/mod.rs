//! Entry bodies: one type per [`EntryKind`] (`liveness`: attestations and PoR verdicts;
//! `receipt`: render and FL receipts; `payment`: a job owner's burn; `fault`: evidence of a bad
//! job tile and verifiers' rulings on it; `infer`: inference receipts and evidence of a wrong batch; `link`: verifiers' link measurements; `settle`: stake, seals, proposals, votes) and
//! [`EntryBody`], the one decode by kind that the router, settlement and the CLI share.

pub mod certificate;
pub mod fault;
pub mod infer;
pub mod link;
pub mod liveness;
pub mod parts;
pub mod payment;
pub mod proof;
pub mod receipt;
pub mod settle;

use serde::Serialize;

pub use fault::{DeliveryFault, FaultRulings, Ruling};
pub use infer::{InferFault, InferReceipt};
pub use link::{AttestedLink, LinkReport, WorkerLink};
pub use liveness::{LivenessAttestation, PeerLiveness, PorVerdicts, WorkerVerdict};
pub use payment::{FL_EXAMPLE_CAP, JobPayment, PaidWork};
pub use receipt::{FlReceipt, RenderReceipt, TileSignature};
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
    JobPayment(JobPayment),
    DeliveryFault(Box<DeliveryFault>),
    FaultRulings(FaultRulings),
    LinkReport(LinkReport),
    InferReceipt(InferReceipt),
    InferFault(Box<InferFault>),
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
            EntryKind::JobPayment => EntryBody::JobPayment(JobPayment::decode(body)?),
            EntryKind::DeliveryFault => EntryBody::DeliveryFault(Box::new(DeliveryFault::decode(body)?)),
            EntryKind::FaultRulings => EntryBody::FaultRulings(FaultRulings::decode(body)?),
            EntryKind::LinkReport => EntryBody::LinkReport(LinkReport::decode(body)?),
            EntryKind::InferReceipt => EntryBody::InferReceipt(InferReceipt::decode(body)?),
            EntryKind::InferFault => EntryBody::InferFault(Box::new(InferFault::decode(body)?)),
            EntryKind::Unknown(v) => EntryBody::Unknown { kind: v, bytes: body.len() },
        })
    }

    /// The body of `e`.
    pub fn of(e: &Entry) -> Result<Self, DecodeError> {
        Self::decode(e.kind, &e.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::GENESIS_PREV;

    #[test]
    fn one_decode_reads_every_kind_and_refuses_garbage() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let vote = Vote { proposal: [7; 32], yes: true };
        let e = Entry::sign(&key, "lab", 0, GENESIS_PREV, 4, EntryKind::Vote, vote.encode()).unwrap();
        assert_eq!(EntryBody::of(&e).unwrap(), EntryBody::Vote(vote));
        let kinds = [
            EntryKind::Liveness,
            EntryKind::RenderReceipt,
            EntryKind::PorVerdicts,
            EntryKind::FlReceipt,
            EntryKind::Stake,
            EntryKind::Seal,
            EntryKind::Proposal,
            EntryKind::Vote,
            EntryKind::JobPayment,
            EntryKind::DeliveryFault,
            EntryKind::FaultRulings,
            EntryKind::LinkReport,
            EntryKind::InferReceipt,
            EntryKind::InferFault,
        ];
        for kind in kinds {
            for garbage in [&[][..], &[0xff; 7][..], &[0xff; 40_000][..]] {
                assert!(EntryBody::decode(kind, garbage).is_err(), "{kind:?} {} bytes", garbage.len());
            }
        }
        // A kind this build does not know is kept, not read.
        assert_eq!(
            EntryBody::decode(EntryKind::Unknown(99), &[1, 2, 3]).unwrap(),
            EntryBody::Unknown { kind: 99, bytes: 3 }
        );
    }
}
