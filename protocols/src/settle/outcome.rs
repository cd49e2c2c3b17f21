//! What settlement computes: an epoch's settlement (status, seal, pools, payouts, slashes,
//! worker lines, governance outcomes) and the whole walk's result (epochs, accounts, parameters
//! in force, open proposals). Plain data, serialised for the API and the CLI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::account::Account;
use super::params::EconParams;
use crate::ledger::body::Proposal;
use crate::merkle;

/// What became of an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Sealed by a quorum and settled.
    Sealed,
    /// No quorum seal, and none can count any more: nothing minted.
    Unsealed,
    /// No quorum seal yet, but one may still come (the next epoch is running).
    Pending,
    /// Sealed, but this node does not hold the sealed set yet (anti-entropy will bring it).
    Incomplete,
}

/// One account's line in an epoch's settlement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Payout {
    #[serde(with = "hex::serde")]
    pub key: [u8; 32],
    /// From the worker pool.
    pub workers: u64,
    /// From the verifier pool and the penalty pool.
    pub verifiers: u64,
    /// From the governance pool.
    pub governance: u64,
    /// From the artist pool (paid work consumed).
    pub artists: u64,
    pub total: u64,
    /// Liquid at once.
    pub liquid: u64,
    /// Vesting linearly over `vesting_epochs`.
    pub vesting: u64,
    /// Worker weight: IB(milli) x (uptime milli-minutes x 1000 + W_PoD(milli) x delivery
    /// milli-minutes).
    pub worker_weight: u128,
    /// Verifier weight: verdicts agreeing with the quorum, plus one for a liveness attestation.
    pub verifier_weight: u128,
}

/// Stake taken from a cheater.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Slash {
    #[serde(with = "hex::serde")]
    pub key: [u8; 32],
    /// Everything taken: stake, and `vesting`.
    pub amount: u64,
    /// Of `amount`, pay still vesting that was forfeited (a bad job tile).
    pub vesting: u64,
    pub reason: String,
}

/// A worker's inputs for the epoch, also when it earned nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerLine {
    #[serde(with = "hex::serde")]
    pub key: [u8; 32],
    pub ib_milli: u64,
    pub uptime_milli_minutes: u64,
    pub delivery_milli_minutes: u64,
    pub bonded: u64,
    pub required_stake: u64,
    /// QoS factor from challenge answers and timeouts, in basis points (weights.rs).
    pub qos_bps: u64,
    /// Why it earned nothing, if it did not.
    pub excluded: Option<String>,
}

/// One paid job's line in an epoch's settlement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JobLine {
    #[serde(with = "hex::serde")]
    pub payer: [u8; 32],
    #[serde(with = "hex::serde")]
    pub job: [u8; 16],
    /// Units burned for it in this epoch.
    pub burned: u64,
    /// Work units its payments in this epoch bought.
    pub bought: u64,
    /// Work units its receipts counted in this epoch.
    pub delivered: u64,
    /// Work units of credit left after this epoch.
    pub remaining: u64,
}

/// A job owner's evidence of a bad tile, and where the verifiers' rulings stand
/// (`faults.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultLine {
    /// The evidence entry's id.
    #[serde(with = "hex::serde")]
    pub fault: [u8; 32],
    #[serde(with = "hex::serde")]
    pub worker: [u8; 32],
    #[serde(with = "hex::serde")]
    pub payer: [u8; 32],
    #[serde(with = "hex::serde")]
    pub job: [u8; 16],
    /// The epoch its evidence was settled in.
    pub filed: u64,
    /// Verifier stake that ruled it guilty, and innocent.
    pub guilty_stake: u64,
    pub innocent_stake: u64,
    /// `guilty` (the worker is slashed), `unfounded` (the accuser's job credit is void),
    /// `lapsed`, or `pending`.
    pub decision: String,
}

/// A proposal's tally when its epoch came.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GovOutcome {
    #[serde(with = "hex::serde")]
    pub proposal: [u8; 32],
    pub param: String,
    pub value: u64,
    pub from_epoch: u64,
    pub yes: u64,
    pub no: u64,
    pub total_stake: u64,
    pub passed: bool,
    /// Why it did not apply, if it did not.
    pub reason: Option<String>,
}

/// One epoch's settlement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EpochSettlement {
    pub epoch: u64,
    pub status: Status,
    /// The sealed root (sealed and incomplete epochs).
    #[serde(serialize_with = "opt_hex")]
    pub seal_root: Option<[u8; 32]>,
    pub sealed_entries: u64,
    /// Verifiers whose seal formed the quorum, and the stake they hold of all verifier stake.
    #[serde(serialize_with = "hex_list")]
    pub sealers: Vec<[u8; 32]>,
    pub sealer_stake: u64,
    pub verifier_stake: u64,
    /// The parameters in force for this epoch.
    pub params: EconParams,
    pub minted: u64,
    pub pool_workers: u64,
    pub pool_verifiers: u64,
    pub pool_governance: u64,
    pub pool_artists: u64,
    /// Slashed stake, paid to verifiers with their pool.
    pub penalties: u64,
    /// Pools nobody could be paid from (no eligible weight): kept by the protocol.
    pub unallocated: u64,
    /// Burned by job owners' payments (the burn side of Burn-Mint-Work).
    pub burned: u64,
    /// What the accounts hold together changed by: minted - unallocated - burned (slashed
    /// stake moves to verifiers inside the epoch).
    pub net_supply: i128,
    /// Paid jobs with a payment or a counted receipt in this epoch.
    pub jobs: Vec<JobLine>,
    /// Evidence of bad job tiles filed or decided in this epoch.
    pub faults: Vec<FaultLine>,
    /// Entries of the sealed set settlement did not read or count, by `"<kind>: <reason>"`
    /// (who may write what, quotas, unpaid or spent receipts).
    pub refused: BTreeMap<String, u64>,
    /// Accounts paid, sorted by key.
    pub payouts: Vec<Payout>,
    pub workers: Vec<WorkerLine>,
    pub slashed: Vec<Slash>,
    #[serde(serialize_with = "hex_list")]
    pub caught: Vec<[u8; 32]>,
    #[serde(serialize_with = "hex_list")]
    pub equivocators: Vec<[u8; 32]>,
    /// Governance changes decided at the start of this epoch.
    pub governance: Vec<GovOutcome>,
    /// Operations of the sealed set that did not apply, and why.
    pub ignored: Vec<String>,
    /// Merkle root over `(key, total)` sorted by key.
    #[serde(with = "hex::serde")]
    pub root: [u8; 32],
}

impl EpochSettlement {
    pub(super) fn empty(epoch: u64, status: Status, params: &EconParams) -> Self {
        Self {
            epoch,
            status,
            seal_root: None,
            sealed_entries: 0,
            sealers: Vec::new(),
            sealer_stake: 0,
            verifier_stake: 0,
            params: params.clone(),
            minted: 0,
            pool_workers: 0,
            pool_verifiers: 0,
            pool_governance: 0,
            pool_artists: 0,
            penalties: 0,
            unallocated: 0,
            burned: 0,
            net_supply: 0,
            jobs: Vec::new(),
            faults: Vec::new(),
            refused: BTreeMap::new(),
            payouts: Vec::new(),
            workers: Vec::new(),
            slashed: Vec::new(),
            caught: Vec::new(),
            equivocators: Vec::new(),
            governance: Vec::new(),
            ignored: Vec::new(),
            root: payout_root(&[]),
        }
    }

    /// Paid out plus kept equals minted plus penalties (the accounting identity).
    pub fn balanced(&self) -> bool {
        let paid: u128 = self.payouts.iter().map(|p| p.total as u128).sum();
        paid + self.unallocated as u128 == self.minted as u128 + self.penalties as u128
    }
}

fn opt_hex<S: serde::Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(k) => s.serialize_str(&hex::encode(k)),
        None => s.serialize_none(),
    }
}

fn hex_list<S: serde::Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(hex::encode))
}

/// Everything settlement computed up to where it could go.
#[derive(Clone, Debug, Serialize)]
pub struct Settlements {
    /// Epochs that had entries or seals, in order, up to the first that could not be settled.
    pub epochs: Vec<EpochSettlement>,
    /// Accounts, released up to the current epoch.
    #[serde(serialize_with = "hex_map")]
    pub accounts: BTreeMap<[u8; 32], Account>,
    /// Parameters in force now.
    pub params: EconParams,
    /// Proposals not yet applied.
    pub open_proposals: Vec<OpenProposal>,
}

fn hex_map<S: serde::Serializer>(m: &BTreeMap<[u8; 32], Account>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().map(|(k, v)| (hex::encode(k), v)))
}

/// A proposal waiting for its epoch, with the votes so far.
#[derive(Clone, Debug, Serialize)]
pub struct OpenProposal {
    #[serde(with = "hex::serde")]
    pub id: [u8; 32],
    #[serde(with = "hex::serde")]
    pub author: [u8; 32],
    pub proposal: Proposal,
    pub sealed_in: u64,
    #[serde(serialize_with = "hex_bool_map")]
    pub votes: BTreeMap<[u8; 32], bool>,
}

fn hex_bool_map<S: serde::Serializer>(m: &BTreeMap<[u8; 32], bool>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().map(|(k, v)| (hex::encode(k), v)))
}

impl Settlements {
    /// The settlement of `epoch`, if it was reached.
    pub fn epoch(&self, epoch: u64) -> Option<&EpochSettlement> {
        self.epochs.iter().find(|e| e.epoch == epoch)
    }

    /// Sealed epochs.
    pub fn sealed(&self) -> impl Iterator<Item = &EpochSettlement> {
        self.epochs.iter().filter(|e| e.status == Status::Sealed)
    }
}

const LEAF_DOMAIN: &[u8] = b"ifx/settle/leaf/v1";
const NODE_DOMAIN: &[u8] = b"ifx/settle/node/v1";

/// Merkle root over `(key, amount)` leaves sorted by key.
pub fn payout_root(payouts: &[Payout]) -> [u8; 32] {
    let leaves = payouts
        .iter()
        .map(|p| {
            let mut h = blake3::Hasher::new();
            h.update(LEAF_DOMAIN);
            h.update(&p.key);
            h.update(&p.total.to_le_bytes());
            *h.finalize().as_bytes()
        })
        .collect();
    merkle::Tree::new(NODE_DOMAIN, leaves).root()
}
