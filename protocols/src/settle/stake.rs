//! The last step: the set's stake operations and votes, in (author, seq) order, after the
//! epoch's payouts. A bond moves liquid units into stake (no role change while staked); an
//! unbond starts the unbonding delay; a vote counts on a proposal still open. Equivocators'
//! operations are void; refused operations are recorded in `s.ignored`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::account::Account;
use super::outcome::{EpochSettlement, OpenProposal};
use crate::ledger::body::{EntryBody, StakeOp};
use crate::ledger::{Entry, EntryKind};

/// Applies the stake operations and votes of `set`; `unbond_epochs` is the unbonding delay.
pub(super) fn apply_ops(
    accounts: &mut BTreeMap<[u8; 32], Account>,
    open: &mut BTreeMap<[u8; 32], OpenProposal>,
    set: &[&Arc<Entry>],
    voided: &impl Fn(&[u8; 32]) -> bool,
    unbond_epochs: u64,
    s: &mut EpochSettlement,
) {
    let epoch = s.epoch;
    for e in set.iter().filter(|e| matches!(e.kind, EntryKind::Stake | EntryKind::Vote) && !voided(&e.author)) {
        let who = hex::encode(&e.author[..4]);
        match (e.kind, EntryBody::of(e)) {
            (_, Ok(EntryBody::Stake(StakeOp::Bond { amount, role }))) => {
                let a = accounts.entry(e.author).or_default();
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
            (_, Ok(EntryBody::Stake(StakeOp::Unbond { amount }))) => {
                let a = accounts.entry(e.author).or_default();
                if a.bonded < amount {
                    s.ignored.push(format!("{who}.. unbond {amount}: only {} bonded", a.bonded));
                } else {
                    a.bonded -= amount;
                    a.unbonding.push((amount, epoch + 1 + unbond_epochs));
                }
            }
            (_, Ok(EntryBody::Vote(v))) => match open.get_mut(&v.proposal) {
                Some(o) if epoch < o.proposal.from_epoch => {
                    o.votes.insert(e.author, v.yes);
                }
                _ => s.ignored.push(format!("{who}.. vote: no open proposal {}", hex::encode(&v.proposal[..4]))),
            },
            (EntryKind::Stake, Err(err)) => s.ignored.push(format!("{who}.. stake: {err}")),
            (EntryKind::Vote, Err(err)) => s.ignored.push(format!("{who}.. vote: {err}")),
            _ => {}
        }
    }
}
