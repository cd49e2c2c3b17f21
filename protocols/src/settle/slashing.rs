//! Step two: slashing. Workers the PoR quorum caught and authors who equivocated lose
//! `slash_bps` of their stake (bonded first, then unbonding); the stake taken feeds the
//! verifier pool as penalties.

use std::collections::{BTreeMap, BTreeSet};

use super::account::Account;
use super::outcome::{EpochSettlement, Slash};

/// Slashes `caught` and `equivocators` (each key once, in key order) and records it in `s`.
pub(super) fn slash(
    accounts: &mut BTreeMap<[u8; 32], Account>,
    caught: &BTreeSet<[u8; 32]>,
    equivocators: &BTreeSet<[u8; 32]>,
    slash_bps: u64,
    s: &mut EpochSettlement,
) {
    for k in caught.union(equivocators) {
        let reason = if caught.contains(k) { "failed proof of rendering" } else { "equivocation" };
        if let Some(a) = accounts.get_mut(k) {
            let amount = a.slash(slash_bps);
            if amount > 0 {
                s.slashed.push(Slash { key: *k, amount, reason: reason.into() });
                s.penalties = s.penalties.saturating_add(amount);
            }
        }
    }
}
