//! The contribution ledger: signed, hash-chained entries per author (`entry`), merged as a
//! set (`state`) whose homomorphic root (`root`) two nodes compare in 32 bytes, repaired by
//! anti-entropy (`sync`). Every kind's body, and the one decode by kind, live in `body`.

pub mod body;
pub mod entry;
pub mod root;
pub mod state;
pub mod sync;

pub use body::{
    AttestedLink, EntryBody, EpochSeal, FlReceipt, JobPayment, LinkReport, LivenessAttestation, PaidWork, PeerLiveness,
    PorVerdicts, Proposal, RenderReceipt, StakeOp, StakeRole, TileSignature, Vote, WorkerLink, WorkerVerdict,
};
pub use entry::{Entry, EntryError, EntryId, EntryKind};
pub use state::{IngestOutcome, Ledger, SyncPlan};
pub use sync::{AuthorSummary, Pull, SyncRequest, SyncResponse};
