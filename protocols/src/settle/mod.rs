//! Epochs, stake, Burn-Mint-Work settlement and governance: how contributions in the sealed
//! ledger become payouts, computed the same way on every honest node (integers only, sorted
//! iteration). `params`: the named parameters and genesis; `ops`: the entry bodies (stake,
//! seal, proposal, vote); `engine`: the fold over sealed epochs.

pub mod engine;
pub mod ops;
pub mod params;

pub use engine::{
    Account, EpochSettlement, GovOutcome, OpenProposal, Payout, Settlements, Slash, Status, WorkerLine, distribute,
    payout_root, seal_view, settle,
};
pub use ops::{EpochSeal, Proposal, StakeOp, Vote};
pub use params::{EconParams, GenesisAlloc, StakeRole, UNITS_PER_IFX};
