//! Epochs, stake, Burn-Mint-Work settlement and governance: how contributions in the sealed
//! ledger become payouts, computed the same way on every honest node (integers only, sorted
//! iteration). `params`: the named parameters and genesis; `engine`: the fold over sealed
//! epochs, a short driver over one file per step (`seal`, `rules`, `reports`, `delivery`,
//! `faults`, `slashing`, `weights`, `governance`, `artists`, `payouts`, `stake`); `account` and `outcome`: what the fold carries and what it
//! returns; `estimate`: a worker's pay for an epoch on assumed inputs, by the same steps. The entry bodies it reads (stake, seal, proposal, vote, job payment, delivery fault, rulings) are the
//! ledger's (`ledger::body`).

mod account;
mod artists;
mod delivery;
pub mod engine;
pub mod estimate;
pub mod faults;
mod governance;
mod outcome;
pub mod params;
mod payouts;
mod reports;
pub mod rules;
pub mod seal;
mod slashing;
mod stake;
mod weights;

pub use crate::ledger::body::{EpochSeal, Proposal, StakeOp, Vote};
pub use account::{Account, Vesting};
pub use engine::settle;
pub use estimate::{Assumed, Estimate, estimate};
pub use outcome::payout_root;
pub use outcome::{
    EpochSettlement, FaultLine, GovOutcome, JobLine, OpenProposal, Payout, Settlements, Slash, Status, WorkerLine,
};
pub use params::{EconParams, GenesisAlloc, StakeRole, UNITS_PER_IFX};
pub use payouts::distribute;
pub use seal::{SealTooLarge, seal_view};
