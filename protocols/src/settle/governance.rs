//! Governance steps: at an epoch's start, proposals whose epoch has come are tallied by bonded
//! stake and applied when they pass; in a sealed set, valid proposals from staked authors open,
//! and the stake of this epoch's voters on open proposals weighs the governance pool.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::account::{Account, saturating_sum};
use super::outcome::{EpochSettlement, GovOutcome, OpenProposal};
use super::params::{BPS, EconParams};
use crate::ledger::body::EntryBody;
use crate::ledger::{Entry, EntryKind};

/// Tallies and applies the proposals due at `epoch` (in order of their epoch, then id);
/// `params` becomes the parameters in force.
pub(super) fn apply_due(
    open: &mut BTreeMap<[u8; 32], OpenProposal>,
    accounts: &BTreeMap<[u8; 32], Account>,
    params: &mut EconParams,
    epoch: u64,
) -> Vec<GovOutcome> {
    let due: Vec<[u8; 32]> = {
        let mut d: Vec<(u64, [u8; 32])> =
            open.values().filter(|p| p.proposal.from_epoch <= epoch).map(|p| (p.proposal.from_epoch, p.id)).collect();
        d.sort();
        d.into_iter().map(|(_, id)| id).collect()
    };
    let total = saturating_sum(accounts.values().map(|a| a.bonded));
    let mut out = Vec::new();
    for id in due {
        let p = open.remove(&id).expect("listed");
        let (mut yes, mut no) = (0u64, 0u64);
        for (voter, y) in &p.votes {
            let w = accounts.get(voter).map_or(0, |a| a.bonded);
            if *y { yes = yes.saturating_add(w) } else { no = no.saturating_add(w) }
        }
        let cast = yes as u128 + no as u128;
        let quorum = cast * BPS as u128 >= params.gov_quorum_bps as u128 * total as u128 && cast > 0;
        let passed = quorum && yes as u128 * BPS as u128 > params.gov_threshold_bps as u128 * cast;
        let reason = if !quorum {
            Some(format!("no quorum: {cast} of {total} staked voted"))
        } else if !passed {
            Some("rejected by the vote".to_string())
        } else {
            match params.with(&p.proposal.param, p.proposal.value) {
                Ok(next) => {
                    *params = next;
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

/// Opens the set's valid proposals (staked author, far enough ahead, a known parameter and an
/// allowed value); the others are recorded in `s.ignored`. Proposals open before votes are
/// read, so a vote may follow its proposal in the same epoch.
pub(super) fn open_proposals(
    open: &mut BTreeMap<[u8; 32], OpenProposal>,
    accounts: &BTreeMap<[u8; 32], Account>,
    set: &[&Arc<Entry>],
    voided: &impl Fn(&[u8; 32]) -> bool,
    p: &EconParams,
    s: &mut EpochSettlement,
) {
    let epoch = s.epoch;
    for e in set.iter().filter(|e| e.kind == EntryKind::Proposal && !voided(&e.author)) {
        let who = hex::encode(&e.author[..4]);
        match EntryBody::of(e) {
            Ok(EntryBody::Proposal(prop)) => {
                let staked = accounts.get(&e.author).is_some_and(|a| a.bonded > 0);
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
                    open.insert(
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
            Ok(_) => {}
            Err(err) => s.ignored.push(format!("{who}.. proposal: {err}")),
        }
    }
}

/// Governance-pool weights: the bonded stake of this epoch's voters on proposals still open.
pub(super) fn voter_weights(
    open: &BTreeMap<[u8; 32], OpenProposal>,
    accounts: &BTreeMap<[u8; 32], Account>,
    set: &[&Arc<Entry>],
    voided: &impl Fn(&[u8; 32]) -> bool,
    epoch: u64,
) -> BTreeMap<[u8; 32], u128> {
    let mut gov_w: BTreeMap<[u8; 32], u128> = BTreeMap::new();
    for e in set.iter().filter(|e| e.kind == EntryKind::Vote && !voided(&e.author)) {
        if let Ok(EntryBody::Vote(v)) = EntryBody::of(e)
            && open.get(&v.proposal).is_some_and(|o| epoch < o.proposal.from_epoch)
        {
            let w = accounts.get(&e.author).map_or(0, |a| a.bonded) as u128;
            if w > 0 {
                gov_w.insert(e.author, w);
            }
        }
    }
    gov_w
}
