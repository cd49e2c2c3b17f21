//! Settlement as a fold over sealed epochs. Given the ledger's entries and the current epoch,
//! every node walks the epochs in order: applies governance changes due, finds the epoch's seal
//! (verifiers holding at least 2/3 of verifier stake signed the same root and frontier), takes
//! exactly the sealed set (entries labelled with the epoch, up to each author's sealed seq),
//! checks its root, then settles the set in steps, one file each: `rules` (who may write what,
//! and quotas), `reports` (what the set says), `delivery` (payments burn, paid receipts count),
//! `slashing`, `weights`, `governance` (proposals and voters), `payouts`, `stake` (operations
//! and votes). Everything iterates sorted maps, so two nodes holding the same entries compute
//! the same bytes whatever order they received them in.
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

use super::account::{Account, saturating_sum};
use super::delivery::Credits;
use super::outcome::{EpochSettlement, OpenProposal, Settlements, Status};
use super::params::{EconParams, GenesisAlloc, StakeRole};
use super::payouts::PoolWeights;
use super::reports::Reports;
use super::{artists, delivery, faults, governance, payouts, rules, seal, slashing, stake, weights};
use crate::ledger::body::{EntryBody, EpochSeal};
use crate::ledger::{Entry, EntryKind};
use crate::por::quorum;

/// What settlement needs of a network's parameters: the epoch length, the economics at
/// genesis and the genesis allocations (`NetworkConfig` converts into it).
#[derive(Clone, Copy, Debug)]
pub struct Chain<'a> {
    pub epoch_secs: u64,
    pub economics: &'a EconParams,
    pub genesis: &'a [GenesisAlloc],
}

/// The walk's state between epochs.
struct Fold<'n> {
    net: Chain<'n>,
    params: EconParams,
    accounts: BTreeMap<[u8; 32], Account>,
    last_ib: BTreeMap<[u8; 32], u64>,
    open: BTreeMap<[u8; 32], OpenProposal>,
    /// Paid jobs' credit.
    credits: Credits,
    /// Artists' consumption history (the frequency bonus).
    consumers: artists::History,
    /// Challenges each worker answered and let time out, over all epochs.
    answers: BTreeMap<[u8; 32], (u64, u64)>,
    /// Evidence of bad job tiles waiting for verifiers' rulings.
    faults: faults::Faults,
    /// Workers found guilty of a bad job tile, and the last epoch they earn nothing in.
    jailed: BTreeMap<[u8; 32], u64>,
}

/// Settles every epoch before `now_epoch` that it can, from `entries` (any order).
pub fn settle<'a>(
    net: impl Into<Chain<'a>>,
    entries: impl IntoIterator<Item = Arc<Entry>>,
    now_epoch: u64,
) -> Settlements {
    let net: Chain<'a> = net.into();
    // Entries by label, each bucket sorted by (author, seq, id); seals by the epoch they seal.
    let mut by_label: BTreeMap<u64, Vec<Arc<Entry>>> = BTreeMap::new();
    let mut seals: BTreeMap<u64, Vec<([u8; 32], EpochSeal)>> = BTreeMap::new();
    for e in entries {
        if e.kind == EntryKind::Seal
            && let Ok(EntryBody::Seal(s)) = EntryBody::of(&e)
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
        credits: Credits::new(),
        consumers: artists::History::new(),
        answers: BTreeMap::new(),
        faults: BTreeMap::new(),
        jailed: BTreeMap::new(),
    };
    for g in net.genesis {
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

impl Fold<'_> {
    /// Bonded verifiers at or above the minimum verifier stake.
    fn verifier_stakes(&self) -> BTreeMap<[u8; 32], u64> {
        self.accounts
            .iter()
            .filter(|(_, a)| {
                a.role == Some(StakeRole::Verifier) && a.bonded >= self.params.min_verifier_stake && a.bonded > 0
            })
            .map(|(k, a)| (*k, a.bonded))
            .collect()
    }

    /// One epoch: releases, governance due, the seal, then the sealed set's settlement.
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
        let governance = governance::apply_due(&mut self.open, &self.accounts, &mut self.params, epoch);
        let mut s = EpochSettlement::empty(epoch, Status::Unsealed, &self.params);
        s.governance = governance;
        let stakes = self.verifier_stakes();
        let total = saturating_sum(stakes.values().copied());
        s.verifier_stake = total;
        let Some(q) = seal::quorum(seals.into_iter().flatten(), &stakes, total) else {
            s.status = if epoch + 1 < now { Status::Unsealed } else { Status::Pending };
            return s;
        };
        s.seal_root = Some(q.root);
        s.sealed_entries = q.entries;
        s.sealer_stake = saturating_sum(q.signers.iter().map(|k| stakes[k]));
        let Some(set) = seal::sealed_set(&q, labelled) else {
            s.sealers = q.signers.into_iter().collect();
            s.status = Status::Incomplete;
            return s;
        };
        s.sealers = q.signers.into_iter().collect();
        s.status = Status::Sealed;
        self.settle_set(&mut s, &set, &stakes);
        s
    }

    /// The sealed set's settlement, step by step.
    fn settle_set(&mut self, s: &mut EpochSettlement, set: &[&Arc<Entry>], stakes: &BTreeMap<[u8; 32], u64>) {
        let p = self.params.clone();
        let epoch_secs = self.net.epoch_secs;
        let held_before = held(&self.accounts);
        let set = rules::admit(set, &self.accounts, &p, &mut s.refused);
        let set = set.as_slice();
        let r = Reports::of(set, s.epoch, stakes);
        let voided = |k: &[u8; 32]| r.equivocators.contains(k);
        let mut jobs = BTreeMap::new();
        delivery::pay(&mut self.accounts, &mut self.credits, set, &voided, &p, &mut jobs, s);
        let delivered = delivery::count(&mut self.credits, set, &voided, &mut jobs, s);
        s.jobs = jobs.into_values().collect();
        let views = quorum::views(r.verdicts.iter().map(|(k, v)| (*k, v)));
        let standings = quorum::standings_of(&views);
        let faulty = faults::judge(&mut self.faults, &mut self.credits, set, &voided, stakes, s);
        let mut caught: BTreeMap<[u8; 32], &'static str> = faulty.clone();
        for k in faulty.keys() {
            self.jailed.insert(*k, s.epoch.saturating_add(p.jail_epochs));
        }
        let bad_tiles: BTreeSet<[u8; 32]> = faulty.into_keys().collect();
        for (k, _) in standings.iter().filter(|(_, st)| st.caught) {
            caught.entry(*k).or_insert("failed proof of rendering");
        }
        slashing::slash(&mut self.accounts, &caught, &r.equivocators, &bad_tiles, p.slash_bps, s);
        // Barred from the worker pool: caught now, or jailed after an earlier bad tile or batch.
        self.jailed.retain(|_, until| *until >= s.epoch);
        let mut barred = caught.clone();
        for k in self.jailed.keys() {
            barred.entry(*k).or_insert("jailed after bad delivery");
        }
        let worker_w = weights::workers(
            &self.accounts,
            &mut self.last_ib,
            &mut self.answers,
            &r,
            &delivered,
            &views,
            &barred,
            &p,
            epoch_secs,
            s,
        );
        let proven = weights::proven(&r, s.epoch);
        let verifier_w = weights::verifiers(&views, &standings, &proven, r.liveness.keys().copied());
        governance::open_proposals(&mut self.open, &self.accounts, set, &voided, &p, s);
        let gov_w = governance::voter_weights(&self.open, &self.accounts, set, &voided, s.epoch);
        let (artists, artist_caps) = artists::weights(&delivered.consumed, &mut self.consumers, s.epoch, &p);
        let w = PoolWeights { workers: worker_w, verifiers: verifier_w, governance: gov_w, artists, artist_caps };
        payouts::pay(&mut self.accounts, &w, &p, epoch_secs, s);
        s.caught = caught.into_keys().collect();
        s.equivocators = r.equivocators.iter().copied().collect();
        let unbond_epochs = EconParams::epochs_of(p.unbonding_secs, epoch_secs);
        stake::apply_ops(&mut self.accounts, &mut self.open, set, &voided, unbond_epochs, s);
        s.net_supply = held(&self.accounts) as i128 - held_before as i128;
    }
}

/// Units the accounts hold together.
fn held(accounts: &BTreeMap<[u8; 32], Account>) -> u128 {
    accounts.values().map(Account::held).sum()
}
