//! Step two: slashing. Workers the PoR quorum caught, workers verifiers found guilty of a bad
//! job tile (`faults`) and authors who equivocated lose
//! `slash_bps` of their stake (bonded first, then unbonding); the stake taken feeds the
//! verifier pool as penalties.

use std::collections::{BTreeMap, BTreeSet};

use super::account::Account;
use super::outcome::{EpochSettlement, Slash};

/// Slashes `caught` (with why) and `equivocators` (each key once, in key order) and records it
/// in `s`.
pub(super) fn slash(
    accounts: &mut BTreeMap<[u8; 32], Account>,
    caught: &BTreeMap<[u8; 32], &'static str>,
    equivocators: &BTreeSet<[u8; 32]>,
    slash_bps: u64,
    s: &mut EpochSettlement,
) {
    let keys: BTreeSet<[u8; 32]> = caught.keys().chain(equivocators).copied().collect();
    for k in &keys {
        let reason = caught.get(k).copied().unwrap_or("equivocation");
        if let Some(a) = accounts.get_mut(k) {
            let amount = a.slash(slash_bps);
            if amount > 0 {
                s.slashed.push(Slash { key: *k, amount, reason: reason.into() });
                s.penalties = s.penalties.saturating_add(amount);
            }
        }
    }
}
