//! Settlement as a fold over sealed epochs. Given the ledger's entries and the current epoch,
//! every node walks the epochs in order: applies governance changes due, finds the epoch's seal
//! (verifiers holding at least 2/3 of verifier stake signed the same root and frontier), takes
//! exactly the sealed set (entries labelled with the epoch, up to each author's sealed seq),
//! checks its root, computes weights and payouts in integers, slashes, then applies the stake
//! operations, proposals and votes of the set. Everything iterates sorted maps, so two nodes
//! holding the same entries compute the same bytes whatever order they received them in.
//!
//! Rules fixed here (see `docs/ECONOMICS.md`):
//! - a seal of epoch `e` counts only in an entry labelled `e + 1` (sealed during the next
//!   epoch's grace); entries labelled `e` past a sealed frontier never settle (late entries are
//!   rejected from settlement; they stay in the ledger);
//! - an epoch without a quorum seal once epoch `e + 2` has begun is unsealed: nothing is minted
//!   or paid for it and its stake operations and votes never apply;
//! - stake operations apply after the epoch's payouts and count from the next epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::ops::{EpochSeal, MAX_FRONTIER, Proposal, StakeOp, Vote};
use super::params::{BPS, EconParams, StakeRole};
use crate::ledger::root::SetHash;
use crate::ledger::{Entry, EntryKind, FlReceipt, LivenessAttestation, PorVerdicts, RenderReceipt};
use crate::merkle;
use crate::network::NetworkConfig;
use crate::por::quorum;

const LEAF_DOMAIN: &[u8] = b"ifx/settle/leaf/v1";
const NODE_DOMAIN: &[u8] = b"ifx/settle/node/v1";

/// What became of an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
    pub amount: u64,
    pub reason: String,
}

/// A worker's inputs for the epoch, also when it earned nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerLine {
    #[serde(with = "hex::serde")]
    pub key: [u8; 32],
    pub ib_milli: u64,
    pub uptime_milli_minutes: u64,
    pub delivery_milli_minutes: u64,
    pub bonded: u64,
    pub required_stake: u64,
    /// Why it earned nothing, if it did not.
    pub excluded: Option<String>,
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
    /// Slashed stake, paid to verifiers with their pool.
    pub penalties: u64,
    /// Pools nobody could be paid from (no eligible weight): kept by the protocol.
    pub unallocated: u64,
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
    fn empty(epoch: u64, status: Status, params: &EconParams) -> Self {
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
            penalties: 0,
            unallocated: 0,
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

/// A vesting schedule: `total` vests linearly over `epochs` epochs after `start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Vesting {
    pub total: u64,
    pub start: u64,
    pub epochs: u64,
    pub released: u64,
}

impl Vesting {
    fn vested_at(&self, epoch: u64) -> u64 {
        let n = epoch.saturating_sub(self.start).min(self.epochs);
        (self.total as u128 * n as u128 / self.epochs.max(1) as u128) as u64
    }
}

/// An account as settlement leaves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Account {
    pub role: Option<StakeRole>,
    pub bonded: u64,
    pub liquid: u64,
    /// `(amount, epoch it becomes liquid)`.
    pub unbonding: Vec<(u64, u64)>,
    pub vesting: Vec<Vesting>,
    pub earned: u64,
    pub slashed: u64,
}

impl Account {
    /// Moves what has vested or finished unbonding by `epoch` into `liquid`.
    fn release(&mut self, epoch: u64) {
        let (done, waiting): (Vec<_>, Vec<_>) = self.unbonding.iter().partition(|(_, at)| *at <= epoch);
        self.liquid = done.iter().fold(self.liquid, |l, (a, _)| l.saturating_add(*a));
        self.unbonding = waiting;
        for v in &mut self.vesting {
            let now = v.vested_at(epoch);
            self.liquid = self.liquid.saturating_add(now - v.released);
            v.released = now;
        }
        self.vesting.retain(|v| v.released < v.total);
    }

    /// Still vesting.
    pub fn locked(&self) -> u64 {
        self.vesting.iter().fold(0u64, |s, v| s.saturating_add(v.total - v.released))
    }

    fn slash(&mut self, bps: u64) -> u64 {
        let stake = self.bonded as u128 + self.unbonding.iter().map(|(a, _)| *a as u128).sum::<u128>();
        let mut take = (stake * bps as u128 / BPS as u128) as u64;
        let total = take;
        let from_bonded = take.min(self.bonded);
        self.bonded -= from_bonded;
        take -= from_bonded;
        for (a, _) in &mut self.unbonding {
            let t = take.min(*a);
            *a -= t;
            take -= t;
        }
        self.unbonding.retain(|(a, _)| *a > 0);
        self.slashed = self.slashed.saturating_add(total);
        total
    }
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

/// The seal a verifier signs for `epoch` from the entries it holds (any order).
pub fn seal_view<'a>(epoch: u64, entries: impl IntoIterator<Item = &'a Entry>) -> Result<EpochSeal, String> {
    let mut frontier: BTreeMap<[u8; 32], u64> = BTreeMap::new();
    let mut root = SetHash::default();
    let mut count = 0;
    for e in entries.into_iter().filter(|e| e.epoch == epoch) {
        let f = frontier.entry(e.author).or_default();
        *f = (*f).max(e.seq);
        root.add(&e.id());
        count += 1;
    }
    if frontier.len() > MAX_FRONTIER {
        return Err(format!("{} authors in epoch {epoch} exceed the seal's {MAX_FRONTIER}", frontier.len()));
    }
    Ok(EpochSeal { epoch, root: root.digest(), entries: count, frontier: frontier.into_iter().collect() })
}

/// What verifiers vote for with a seal: the root, the frontier and the entry count.
type SealKey<'a> = ([u8; 32], &'a [([u8; 32], u64)], u64);

/// The walk's state between epochs.
struct Fold<'n> {
    net: &'n NetworkConfig,
    params: EconParams,
    accounts: BTreeMap<[u8; 32], Account>,
    last_ib: BTreeMap<[u8; 32], u64>,
    open: BTreeMap<[u8; 32], OpenProposal>,
}

/// Settles every epoch before `now_epoch` that it can, from `entries` (any order).
pub fn settle(net: &NetworkConfig, entries: impl IntoIterator<Item = Arc<Entry>>, now_epoch: u64) -> Settlements {
    // Entries by label, each bucket sorted by (author, seq, id); seals by the epoch they seal.
    let mut by_label: BTreeMap<u64, Vec<Arc<Entry>>> = BTreeMap::new();
    let mut seals: BTreeMap<u64, Vec<([u8; 32], EpochSeal)>> = BTreeMap::new();
    for e in entries {
        if e.kind == EntryKind::Seal
            && let Ok(s) = EpochSeal::decode(&e.body)
            && s.epoch.checked_add(1) == Some(e.epoch)
        {
            seals.entry(s.epoch).or_default().push((e.author, s));
        }
        by_label.entry(e.epoch).or_default().push(e);
    }
    for b in by_label.values_mut() {
        b.sort_by_key(|e| (e.author, e.seq, e.id()));
    }
    let mut fold = Fold {
        net,
        params: net.economics.clone(),
        accounts: BTreeMap::new(),
        last_ib: BTreeMap::new(),
        open: BTreeMap::new(),
    };
    for g in &net.genesis {
        if let Some(k) = g.key_bytes() {
            let a = fold.accounts.entry(k).or_default();
            a.role = Some(g.role);
            a.bonded = a.bonded.saturating_add(g.stake);
            a.liquid = a.liquid.saturating_add(g.liquid);
        }
    }
    let interesting: BTreeSet<u64> = by_label.keys().chain(seals.keys()).copied().filter(|e| *e < now_epoch).collect();
    let mut out = Vec::new();
    for epoch in interesting {
        let s = fold.epoch(epoch, by_label.get(&epoch).map(Vec::as_slice).unwrap_or(&[]), seals.get(&epoch), now_epoch);
        let stop = matches!(s.status, Status::Pending | Status::Incomplete);
        out.push(s);
        if stop {
            break;
        }
    }
    for a in fold.accounts.values_mut() {
        a.release(now_epoch);
    }
    Settlements {
        epochs: out,
        accounts: fold.accounts,
        params: fold.params,
        open_proposals: fold.open.into_values().collect(),
    }
}

/// A sum that stops at `u64::MAX` (balances and stake sums under extreme parameters).
fn saturating_sum(v: impl Iterator<Item = u64>) -> u64 {
    v.fold(0, u64::saturating_add)
}

/// Lower median of a non-empty list.
fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[(v.len() - 1) / 2]
}

/// `pool` split by `weights` (zero weights get nothing): floor shares, then the remainder one
/// unit each by largest remainder, ties by key. Returns nothing when the weights sum to zero.
pub fn distribute(pool: u64, weights: &BTreeMap<[u8; 32], u128>) -> BTreeMap<[u8; 32], u64> {
    let sum: u128 = weights.values().sum();
    let mut out = BTreeMap::new();
    if sum == 0 {
        return out;
    }
    let mut rems: Vec<(u128, [u8; 32])> = Vec::new();
    let mut given: u128 = 0;
    for (k, w) in weights.iter().filter(|(_, w)| **w > 0) {
        let p = pool as u128 * w;
        let share = p / sum;
        given += share;
        out.insert(*k, share as u64);
        rems.push((p % sum, *k));
    }
    // Largest remainder first; equal remainders by ascending key.
    rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, k) in rems.into_iter().take((pool as u128 - given) as usize) {
        *out.get_mut(&k).expect("inserted") += 1;
    }
    out
}

impl Fold<'_> {
    fn verifier_stakes(&self) -> BTreeMap<[u8; 32], u64> {
        self.accounts
            .iter()
            .filter(|(_, a)| {
                a.role == Some(StakeRole::Verifier) && a.bonded >= self.params.min_verifier_stake && a.bonded > 0
            })
            .map(|(k, a)| (*k, a.bonded))
            .collect()
    }

    fn apply_governance(&mut self, epoch: u64) -> Vec<GovOutcome> {
        let due: Vec<[u8; 32]> = {
            let mut d: Vec<(u64, [u8; 32])> = self
                .open
                .values()
                .filter(|p| p.proposal.from_epoch <= epoch)
                .map(|p| (p.proposal.from_epoch, p.id))
                .collect();
            d.sort();
            d.into_iter().map(|(_, id)| id).collect()
        };
        let total = saturating_sum(self.accounts.values().map(|a| a.bonded));
        let mut out = Vec::new();
        for id in due {
            let p = self.open.remove(&id).expect("listed");
            let (mut yes, mut no) = (0u64, 0u64);
            for (voter, y) in &p.votes {
                let w = self.accounts.get(voter).map_or(0, |a| a.bonded);
                if *y { yes = yes.saturating_add(w) } else { no = no.saturating_add(w) }
            }
            let cast = yes as u128 + no as u128;
            let quorum = cast * BPS as u128 >= self.params.gov_quorum_bps as u128 * total as u128 && cast > 0;
            let passed = quorum && yes as u128 * BPS as u128 > self.params.gov_threshold_bps as u128 * cast;
            let reason = if !quorum {
                Some(format!("no quorum: {cast} of {total} staked voted"))
            } else if !passed {
                Some("rejected by the vote".to_string())
            } else {
                match self.params.with(&p.proposal.param, p.proposal.value) {
                    Ok(next) => {
                        self.params = next;
                        None
                    }
                    Err(e) => Some(format!("cannot apply: {e}")),
                }
            };
            out.push(GovOutcome {
                proposal: id,
                param: p.proposal.param,
                value: p.proposal.value,
                from_epoch: p.proposal.from_epoch,
                yes,
                no,
                total_stake: total,
                passed,
                reason,
            });
        }
        out
    }

    fn epoch(
        &mut self,
        epoch: u64,
        labelled: &[Arc<Entry>],
        seals: Option<&Vec<([u8; 32], EpochSeal)>>,
        now: u64,
    ) -> EpochSettlement {
        for a in self.accounts.values_mut() {
            a.release(epoch);
        }
        let governance = self.apply_governance(epoch);
        let mut s = EpochSettlement::empty(epoch, Status::Unsealed, &self.params);
        s.governance = governance;
        // The seal: a (root, frontier) signed by verifiers with >= 2/3 of verifier stake.
        let stakes = self.verifier_stakes();
        let total = saturating_sum(stakes.values().copied());
        s.verifier_stake = total;
        let mut votes: BTreeMap<SealKey, BTreeSet<[u8; 32]>> = BTreeMap::new();
        for (author, seal) in seals.into_iter().flatten() {
            if stakes.contains_key(author) {
                votes.entry((seal.root, &seal.frontier, seal.entries)).or_default().insert(*author);
            }
        }
        let winner = votes.into_iter().find(|(_, signers)| {
            let signed: u128 = signers.iter().map(|k| stakes[k] as u128).sum();
            total > 0 && signed * 3 >= total as u128 * 2
        });
        let Some(((root, frontier, count), signers)) = winner else {
            s.status = if epoch + 1 < now { Status::Unsealed } else { Status::Pending };
            return s;
        };
        s.seal_root = Some(root);
        s.sealed_entries = count;
        s.sealer_stake = saturating_sum(signers.iter().map(|k| stakes[k]));
        s.sealers = signers.into_iter().collect();
        // Exactly the sealed set.
        let limit: BTreeMap<[u8; 32], u64> = frontier.iter().copied().collect();
        let set: Vec<&Arc<Entry>> =
            labelled.iter().filter(|e| limit.get(&e.author).is_some_and(|last| e.seq <= *last)).collect();
        let mut h = SetHash::default();
        for e in &set {
            h.add(&e.id());
        }
        if h.digest() != root || set.len() as u64 != count {
            s.status = Status::Incomplete;
            return s;
        }
        s.status = Status::Sealed;
        self.settle_set(&mut s, &set, &stakes);
        s
    }

    fn settle_set(&mut self, s: &mut EpochSettlement, set: &[&Arc<Entry>], stakes: &BTreeMap<[u8; 32], u64>) {
        let epoch = s.epoch;
        let p = self.params.clone();
        let epoch_secs = self.net.epoch_secs;
        // Equivocation inside the sealed set.
        let mut at: BTreeMap<([u8; 32], u64), u32> = BTreeMap::new();
        for e in set {
            *at.entry((e.author, e.seq)).or_default() += 1;
        }
        let equivocators: BTreeSet<[u8; 32]> = at.iter().filter(|(_, n)| **n > 1).map(|((a, _), _)| *a).collect();
        // Verifier reports about this epoch (from staked verifiers only).
        let mut liveness: BTreeMap<[u8; 32], LivenessAttestation> = BTreeMap::new();
        let mut verdicts: Vec<([u8; 32], PorVerdicts)> = Vec::new();
        let mut render_units: BTreeMap<[u8; 32], u64> = BTreeMap::new();
        let mut fl_units: BTreeMap<[u8; 32], u64> = BTreeMap::new();
        for e in set {
            let verifier = stakes.contains_key(&e.author) && !equivocators.contains(&e.author);
            match e.kind {
                EntryKind::Liveness if verifier => {
                    if let Ok(l) = LivenessAttestation::decode(&e.body)
                        && l.epoch == epoch
                        && l.expected > 0
                    {
                        liveness.insert(e.author, l);
                    }
                }
                EntryKind::PorVerdicts if verifier => {
                    if let Ok(v) = PorVerdicts::decode(&e.body)
                        && v.epoch == epoch
                    {
                        verdicts.push((e.author, v));
                    }
                }
                EntryKind::RenderReceipt => {
                    if let Ok(r) = RenderReceipt::decode(&e.body)
                        && r.worker != e.author
                    {
                        let u = render_units.entry(r.worker).or_default();
                        *u = u.saturating_add(r.work_units);
                    }
                }
                EntryKind::FlReceipt => {
                    if let Ok(r) = FlReceipt::decode(&e.body)
                        && r.worker != e.author
                        && r.accepted
                    {
                        let u = fl_units.entry(r.worker).or_default();
                        *u = u.saturating_add(r.work_units);
                    }
                }
                _ => {}
            }
        }
        let views = quorum::views(verdicts.iter().map(|(k, v)| (*k, v)));
        let standings = quorum::standings_of(&views);
        let caught: BTreeSet<[u8; 32]> = standings.iter().filter(|(_, st)| st.caught).map(|(k, _)| *k).collect();
        // Slashing: caught cheaters and equivocators.
        for k in caught.union(&equivocators) {
            let reason = if caught.contains(k) { "failed proof of rendering" } else { "equivocation" };
            if let Some(a) = self.accounts.get_mut(k) {
                let amount = a.slash(p.slash_bps);
                if amount > 0 {
                    s.slashed.push(Slash { key: *k, amount, reason: reason.into() });
                    s.penalties = s.penalties.saturating_add(amount);
                }
            }
        }
        // Worker weights.
        let mut candidates: BTreeSet<[u8; 32]> = BTreeSet::new();
        for l in liveness.values() {
            candidates.extend(l.peers.iter().map(|x| x.peer));
        }
        candidates.extend(render_units.keys().chain(fl_units.keys()).copied());
        candidates.extend(views.keys().map(|(w, _)| *w));
        let mut ibs: BTreeMap<[u8; 32], Vec<u64>> = BTreeMap::new();
        for (_, v) in &verdicts {
            for w in v.workers.iter().filter(|w| w.ib_milli > 0) {
                ibs.entry(w.worker).or_default().push(w.ib_milli as u64);
            }
        }
        let epoch_mm = epoch_secs as u128 * 1000 / 60;
        let mut worker_w: BTreeMap<[u8; 32], u128> = BTreeMap::new();
        for k in candidates {
            let Some(acct) = self.accounts.get(&k).filter(|a| a.role == Some(StakeRole::Worker)) else { continue };
            let ib = match ibs.remove(&k) {
                Some(v) => {
                    let m = median(v);
                    self.last_ib.insert(k, m);
                    m
                }
                None => self.last_ib.get(&k).copied().unwrap_or(p.default_ib_milli),
            };
            let uptime = if liveness.is_empty() {
                0
            } else {
                median(
                    liveness
                        .values()
                        .map(|l| {
                            let seen = l.peers.iter().find(|x| x.peer == k).map_or(0, |x| x.seen.min(l.expected));
                            (seen as u128 * epoch_mm / l.expected as u128) as u64
                        })
                        .collect(),
                )
            };
            let delivery = render_units.get(&k).map_or(0, |u| *u as u128 * 1000 / p.render_units_per_minute as u128)
                + fl_units.get(&k).map_or(0, |u| *u as u128 * 1000 / p.fl_units_per_minute as u128);
            let delivery = delivery.min(u64::MAX as u128) as u64;
            let required = p.required_stake(epoch_secs, ib);
            let excluded = if caught.contains(&k) {
                Some("caught failing proof of rendering".to_string())
            } else if equivocators.contains(&k) {
                Some("equivocated".to_string())
            } else if acct.bonded < required {
                Some(format!("bonded {} below the required {required}", acct.bonded))
            } else {
                None
            };
            if excluded.is_none() {
                let w = ib as u128 * (uptime as u128 * 1000 + p.w_pod_milli as u128 * delivery as u128);
                worker_w.insert(k, w.min(u64::MAX as u128));
            }
            s.workers.push(WorkerLine {
                key: k,
                ib_milli: ib,
                uptime_milli_minutes: uptime,
                delivery_milli_minutes: delivery,
                bonded: acct.bonded,
                required_stake: required,
                excluded,
            });
        }
        // Verifier weights: agreeing decided views, plus one for the liveness attestation.
        let mut verifier_w: BTreeMap<[u8; 32], u128> = BTreeMap::new();
        for ((worker, verifier), view) in &views {
            if let Some(failed) = quorum::decision(*view)
                && standings.get(worker).is_some_and(|st| st.caught == failed)
            {
                *verifier_w.entry(*verifier).or_default() += 1;
            }
        }
        for k in liveness.keys() {
            *verifier_w.entry(*k).or_default() += 1;
        }
        // Proposals first: a vote may follow its proposal in the same epoch.
        for e in set.iter().filter(|e| e.kind == EntryKind::Proposal && !equivocators.contains(&e.author)) {
            let who = hex::encode(&e.author[..4]);
            match Proposal::decode(&e.body) {
                Ok(prop) => {
                    let staked = self.accounts.get(&e.author).is_some_and(|a| a.bonded > 0);
                    if !staked {
                        s.ignored.push(format!("{who}.. proposal: the proposer has no stake"));
                    } else if prop.from_epoch < epoch + p.gov_min_delay_epochs {
                        s.ignored.push(format!(
                            "{who}.. proposal: epoch {} is sooner than {} + {}",
                            prop.from_epoch, epoch, p.gov_min_delay_epochs
                        ));
                    } else if let Err(err) = p.with(&prop.param, prop.value) {
                        s.ignored.push(format!("{who}.. proposal: {err}"));
                    } else {
                        self.open.insert(
                            e.id(),
                            OpenProposal {
                                id: e.id(),
                                author: e.author,
                                proposal: prop,
                                sealed_in: epoch,
                                votes: BTreeMap::new(),
                            },
                        );
                    }
                }
                Err(err) => s.ignored.push(format!("{who}.. proposal: {err}")),
            }
        }
        // Governance participants: stake of this epoch's voters on open proposals.
        let mut gov_w: BTreeMap<[u8; 32], u128> = BTreeMap::new();
        for e in set.iter().filter(|e| e.kind == EntryKind::Vote && !equivocators.contains(&e.author)) {
            if let Ok(v) = Vote::decode(&e.body)
                && self.open.get(&v.proposal).is_some_and(|o| epoch < o.proposal.from_epoch)
            {
                let w = self.accounts.get(&e.author).map_or(0, |a| a.bonded) as u128;
                if w > 0 {
                    gov_w.insert(e.author, w);
                }
            }
        }
        // Pools and payouts.
        s.minted = p.mint_at(epoch);
        s.pool_workers = (s.minted as u128 * p.workers_bps as u128 / BPS as u128) as u64;
        s.pool_verifiers = (s.minted as u128 * p.verifiers_bps as u128 / BPS as u128) as u64;
        s.pool_governance = s.minted - s.pool_workers - s.pool_verifiers;
        let mut lines: BTreeMap<[u8; 32], Payout> = BTreeMap::new();
        let vpool = s.pool_verifiers + s.penalties;
        for (pool, weights, which) in
            [(s.pool_workers, &worker_w, 0u8), (vpool, &verifier_w, 1), (s.pool_governance, &gov_w, 2)]
        {
            let shares = distribute(pool, weights);
            if shares.is_empty() {
                s.unallocated += pool;
            }
            for (k, amount) in shares {
                let l = lines.entry(k).or_insert_with(|| Payout {
                    key: k,
                    workers: 0,
                    verifiers: 0,
                    governance: 0,
                    total: 0,
                    liquid: 0,
                    vesting: 0,
                    worker_weight: 0,
                    verifier_weight: 0,
                });
                match which {
                    0 => {
                        l.workers = amount;
                        l.worker_weight = weights[&k];
                    }
                    1 => {
                        l.verifiers = amount;
                        l.verifier_weight = weights[&k];
                    }
                    _ => l.governance = amount,
                }
                l.total += amount;
            }
        }
        let vest_epochs = EconParams::epochs_of(p.vesting_secs, epoch_secs);
        for l in lines.values_mut() {
            l.liquid = (l.total as u128 * p.liquid_bps as u128 / BPS as u128) as u64;
            l.vesting = l.total - l.liquid;
            let a = self.accounts.entry(l.key).or_default();
            a.liquid = a.liquid.saturating_add(l.liquid);
            a.earned = a.earned.saturating_add(l.total);
            if l.vesting > 0 {
                a.vesting.push(Vesting { total: l.vesting, start: epoch, epochs: vest_epochs, released: 0 });
            }
        }
        s.payouts = lines.into_values().filter(|l| l.total > 0).collect();
        s.root = payout_root(&s.payouts);
        s.caught = caught.into_iter().collect();
        s.equivocators = equivocators.iter().copied().collect();
        // Stake operations and votes, in (author, seq) order; equivocators' are void.
        let unbond_epochs = EconParams::epochs_of(p.unbonding_secs, epoch_secs);
        for e in set.iter().filter(|e| !equivocators.contains(&e.author)) {
            let who = hex::encode(&e.author[..4]);
            match e.kind {
                EntryKind::Stake => match StakeOp::decode(&e.body) {
                    Ok(StakeOp::Bond { amount, role }) => {
                        let a = self.accounts.entry(e.author).or_default();
                        let staked = a.bonded > 0 || !a.unbonding.is_empty();
                        if staked && a.role != Some(role) {
                            s.ignored.push(format!("{who}.. bond: role change while staked"));
                        } else if a.liquid < amount {
                            s.ignored.push(format!("{who}.. bond {amount}: only {} liquid", a.liquid));
                        } else {
                            a.liquid -= amount;
                            a.bonded = a.bonded.saturating_add(amount);
                            a.role = Some(role);
                        }
                    }
                    Ok(StakeOp::Unbond { amount }) => {
                        let a = self.accounts.entry(e.author).or_default();
                        if a.bonded < amount {
                            s.ignored.push(format!("{who}.. unbond {amount}: only {} bonded", a.bonded));
                        } else {
                            a.bonded -= amount;
                            a.unbonding.push((amount, epoch + 1 + unbond_epochs));
                        }
                    }
                    Err(err) => s.ignored.push(format!("{who}.. stake: {err}")),
                },
                EntryKind::Vote => match Vote::decode(&e.body) {
                    Ok(v) => match self.open.get_mut(&v.proposal) {
                        Some(o) if epoch < o.proposal.from_epoch => {
                            o.votes.insert(e.author, v.yes);
                        }
                        _ => {
                            s.ignored.push(format!("{who}.. vote: no open proposal {}", hex::encode(&v.proposal[..4])))
                        }
                    },
                    Err(err) => s.ignored.push(format!("{who}.. vote: {err}")),
                },
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribute_is_exact_and_breaks_ties_by_key() {
        let w: BTreeMap<[u8; 32], u128> = [([3; 32], 1), ([1; 32], 1), ([2; 32], 1)].into_iter().collect();
        let d = distribute(10, &w);
        assert_eq!(d.values().sum::<u64>(), 10);
        // 10 / 3 = 3 each, remainder 1 to the smallest key.
        assert_eq!(d[&[1; 32]], 4);
        assert_eq!(d[&[2; 32]], 3);
        let w: BTreeMap<[u8; 32], u128> = [([1; 32], 1), ([2; 32], 2)].into_iter().collect();
        // 7 x 1/3 = 2.33, 7 x 2/3 = 4.67: the larger remainder gets the unit.
        assert_eq!(distribute(7, &w), [([1; 32], 2), ([2; 32], 5)].into_iter().collect());
        assert!(distribute(5, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn vesting_releases_linearly_and_unbonding_after_the_delay() {
        let mut a = Account { liquid: 0, unbonding: vec![(50, 5)], ..Default::default() };
        a.vesting.push(Vesting { total: 90, start: 10, epochs: 3, released: 0 });
        a.release(4);
        assert_eq!(a.liquid, 0);
        a.release(5);
        assert_eq!(a.liquid, 50);
        a.release(11);
        assert_eq!(a.liquid, 80);
        a.release(100);
        assert_eq!(a.liquid, 140);
        assert!(a.vesting.is_empty());
    }

    #[test]
    fn slashing_takes_bonded_then_unbonding() {
        let mut a = Account { bonded: 100, unbonding: vec![(100, 9)], ..Default::default() };
        assert_eq!(a.slash(7_500), 150);
        assert_eq!((a.bonded, a.unbonding.clone(), a.slashed), (0, vec![(50, 9)], 150));
    }
}
