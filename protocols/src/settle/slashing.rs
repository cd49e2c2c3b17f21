//! Step two: slashing. Workers the PoR quorum caught, workers verifiers found guilty of a bad
//! job tile (`faults`) and authors who equivocated lose
//! `slash_bps` of their stake (bonded first, then unbonding). A worker found guilty of a bad
//! job tile also forfeits its pay still vesting (fraud with signed evidence, unlike a failed
//! challenge, which a broken GPU can cause too): however late in its career it is caught, it
//! ends below a worker that did the same work honestly. What is taken feeds the verifier pool
//! as penalties.

use std::collections::{BTreeMap, BTreeSet};

use super::account::Account;
use super::outcome::{EpochSettlement, Slash};

/// Slashes `caught` (with why) and `equivocators` (each key once, in key order), takes the
/// vesting pay of `forfeit` (a subset of `caught`) and records it in `s`.
pub(super) fn slash(
    accounts: &mut BTreeMap<[u8; 32], Account>,
    caught: &BTreeMap<[u8; 32], &'static str>,
    equivocators: &BTreeSet<[u8; 32]>,
    forfeit: &BTreeSet<[u8; 32]>,
    slash_bps: u64,
    s: &mut EpochSettlement,
) {
    let keys: BTreeSet<[u8; 32]> = caught.keys().chain(equivocators).copied().collect();
    for k in &keys {
        let reason = caught.get(k).copied().unwrap_or("equivocation");
        if let Some(a) = accounts.get_mut(k) {
            let stake = a.slash(slash_bps);
            let vesting = if forfeit.contains(k) { a.forfeit_vesting() } else { 0 };
            let amount = stake.saturating_add(vesting);
            if amount > 0 {
                s.slashed.push(Slash { key: *k, amount, vesting, reason: reason.into() });
                s.penalties = s.penalties.saturating_add(amount);
            }
        }
    }
}
