//! Verified delivery's evidence (issue #21): a job owner's [`DeliveryFault`] (a bad tile) or
//! `InferFault` (a wrong inference batch, issue #20) waits for bonded
//! verifiers' rulings. Settlement checks what it can without rendering: the author paid for the
//! job and for exactly the work of the evidence's spec, the worker signed the commitment and the
//! opened sub-tile sits under its root. Whether the sub-tile is a real render is the verifiers'
//! re-render; a fault is decided when verifiers holding more than half of the verifier stake
//! agree: guilty slashes the worker (and excludes it from the epoch's worker pool) as a failed
//! PoR does; unfounded costs the accuser what is left of the job's credit (false evidence costs
//! its sender, and verifiers re-rendered for nothing). A fault undecided for
//! [`FAULT_WINDOW`] epochs lapses.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::delivery::Credits;
use super::outcome::{EpochSettlement, FaultLine};
use crate::ledger::body::EntryBody;
use crate::ledger::{Entry, EntryKind};

/// Slashing reasons of the two kinds of evidence.
pub const BAD_TILE: &str = "delivered a bad job tile";
pub const WRONG_BATCH: &str = "answered an inference batch wrongly";

/// Epochs a fault waits for a deciding majority of rulings before it lapses.
pub const FAULT_WINDOW: u64 = 4;

/// A fault waiting for rulings, carried from epoch to epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Pending {
    pub worker: [u8; 32],
    pub payer: [u8; 32],
    pub job: [u8; 16],
    pub filed: u64,
    /// What the worker is accused of (the slashing reason when found guilty).
    pub what: &'static str,
    /// Each verifier's first ruling.
    pub rulings: BTreeMap<[u8; 32], bool>,
}

/// Pending faults by entry id.
pub(super) type Faults = BTreeMap<[u8; 32], Pending>;

/// Reads the set's evidence and rulings, decides what a majority of `stakes` (the bonded
/// verifiers) ruled; returns the workers found guilty in this epoch, with what of.
pub(super) fn judge(
    faults: &mut Faults,
    credits: &mut Credits,
    set: &[&Arc<Entry>],
    voided: &impl Fn(&[u8; 32]) -> bool,
    stakes: &BTreeMap<[u8; 32], u64>,
    s: &mut EpochSettlement,
) -> BTreeMap<[u8; 32], &'static str> {
    let mut refuse = |why: &str| *s.refused.entry(format!("delivery-fault: {why}")).or_default() += 1;
    for e in set.iter().filter(|e| matches!(e.kind, EntryKind::DeliveryFault | EntryKind::InferFault)) {
        // The job, the accused worker, and whether its author paid for the work the evidence
        // shows (an inference batch must be that batch of the paid job, with its rows).
        let body = EntryBody::of(e);
        let (job, worker, check, what) = match &body {
            Ok(EntryBody::DeliveryFault(f)) => (f.job, f.worker, f.check(), BAD_TILE),
            Ok(EntryBody::InferFault(f)) => (f.job, f.worker, f.check(), WRONG_BATCH),
            _ => {
                refuse("does not decode");
                continue;
            }
        };
        let paid_for = match (&body, credits.get(&(e.author, job))) {
            (Ok(EntryBody::DeliveryFault(f)), Some(c)) => f.paid_by(&c.work),
            (Ok(EntryBody::InferFault(f)), Some(c)) => f.paid_by(&c.work),
            _ => false,
        };
        if voided(&e.author) {
            refuse("its author equivocated");
            continue;
        }
        if !paid_for {
            refuse("not evidence about a job its author paid for");
            continue;
        }
        if worker == e.author || check.is_err() {
            refuse("proves nothing (signature, opening or worker)");
            continue;
        }
        faults.entry(e.id()).or_insert(Pending {
            worker,
            payer: e.author,
            job,
            filed: s.epoch,
            what,
            rulings: BTreeMap::new(),
        });
    }
    for e in set.iter().filter(|e| e.kind == EntryKind::FaultRulings) {
        if !stakes.contains_key(&e.author) || voided(&e.author) {
            continue;
        }
        let Ok(EntryBody::FaultRulings(r)) = EntryBody::of(e) else { continue };
        for ruling in r.rulings {
            if let Some(p) = faults.get_mut(&ruling.fault) {
                p.rulings.entry(e.author).or_insert(ruling.guilty);
            }
        }
    }
    let total: u128 = stakes.values().map(|v| *v as u128).sum();
    let mut guilty_workers = BTreeMap::new();
    let mut decided = Vec::new();
    for (id, p) in faults.iter() {
        let stake_of = |guilty: bool| -> u128 {
            p.rulings
                .iter()
                .filter(|(_, g)| **g == guilty)
                .map(|(v, _)| stakes.get(v).copied().unwrap_or(0) as u128)
                .sum()
        };
        let (guilty, innocent) = (stake_of(true), stake_of(false));
        let decision = if total > 0 && guilty * 2 > total {
            guilty_workers.entry(p.worker).or_insert(p.what);
            "guilty"
        } else if total > 0 && innocent * 2 > total {
            if let Some(c) = credits.get_mut(&(p.payer, p.job)) {
                c.remaining = 0;
            }
            if let Some(l) = s.jobs.iter_mut().find(|l| (l.payer, l.job) == (p.payer, p.job)) {
                l.remaining = 0;
            }
            "unfounded"
        } else if s.epoch >= p.filed.saturating_add(FAULT_WINDOW) {
            "lapsed"
        } else {
            "pending"
        };
        s.faults.push(FaultLine {
            fault: *id,
            worker: p.worker,
            payer: p.payer,
            job: p.job,
            filed: p.filed,
            guilty_stake: guilty.min(u64::MAX as u128) as u64,
            innocent_stake: innocent.min(u64::MAX as u128) as u64,
            decision: decision.into(),
        });
        if decision != "pending" {
            decided.push(*id);
        }
    }
    for id in decided {
        faults.remove(&id);
    }
    guilty_workers
}
