//! Step four: pools and payouts. The epoch's mint splits into the worker, verifier, artist and
//! governance pools (slashed stake joins the verifiers'); each pool is divided by its weights
//! exactly in integers; each payout is part liquid, part vesting.

use std::collections::BTreeMap;

use super::account::{Account, Vesting};
use super::outcome::{EpochSettlement, Payout, payout_root};
use super::params::{BPS, EconParams};

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

/// `minted` split into the worker, verifier, artist and governance pools (the governance pool
/// takes the rounding).
pub(super) fn pools(minted: u64, p: &EconParams) -> [u64; 4] {
    let share = |bps: u64| (minted as u128 * bps as u128 / BPS as u128) as u64;
    let (w, v, a) = (share(p.workers_bps), share(p.verifiers_bps), share(p.artists_bps));
    [w, v, a, minted - w - v - a]
}

/// Of a payout of `total`, the part liquid at once (the rest vests).
pub(super) fn liquid_part(total: u64, p: &EconParams) -> u64 {
    (total as u128 * p.liquid_bps as u128 / BPS as u128) as u64
}

/// The weights of the four pools, and the most each artist may be paid.
pub(super) struct PoolWeights {
    pub workers: BTreeMap<[u8; 32], u128>,
    pub verifiers: BTreeMap<[u8; 32], u128>,
    pub governance: BTreeMap<[u8; 32], u128>,
    pub artists: BTreeMap<[u8; 32], u128>,
    pub artist_caps: BTreeMap<[u8; 32], u64>,
}

/// Mints the epoch, fills `s`'s pools and payouts (and its root), and credits the accounts:
/// the liquid part at once, the rest as a vesting schedule from this epoch.
pub(super) fn pay(
    accounts: &mut BTreeMap<[u8; 32], Account>,
    w: &PoolWeights,
    p: &EconParams,
    epoch_secs: u64,
    s: &mut EpochSettlement,
) {
    let epoch = s.epoch;
    s.minted = p.mint_at(epoch);
    [s.pool_workers, s.pool_verifiers, s.pool_artists, s.pool_governance] = pools(s.minted, p);
    let mut lines: BTreeMap<[u8; 32], Payout> = BTreeMap::new();
    let vpool = s.pool_verifiers + s.penalties;
    for (pool, weights, which) in [
        (s.pool_workers, &w.workers, 0u8),
        (vpool, &w.verifiers, 1),
        (s.pool_governance, &w.governance, 2),
        (s.pool_artists, &w.artists, 3),
    ] {
        let mut shares = distribute(pool, weights);
        if shares.is_empty() {
            s.unallocated += pool;
        }
        if which == 3 {
            // No artist gets back more than its rebate of what its consumed work cost.
            for (k, amount) in &mut shares {
                let cap = w.artist_caps.get(k).copied().unwrap_or(0);
                if *amount > cap {
                    s.unallocated += *amount - cap;
                    *amount = cap;
                }
            }
            shares.retain(|_, a| *a > 0);
        }
        for (k, amount) in shares {
            let l = lines.entry(k).or_insert_with(|| Payout {
                key: k,
                workers: 0,
                verifiers: 0,
                governance: 0,
                artists: 0,
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
                2 => l.governance = amount,
                _ => l.artists = amount,
            }
            l.total += amount;
        }
    }
    let vest_epochs = EconParams::epochs_of(p.vesting_secs, epoch_secs);
    for l in lines.values_mut() {
        l.liquid = liquid_part(l.total, p);
        l.vesting = l.total - l.liquid;
        let a = accounts.entry(l.key).or_default();
        a.liquid = a.liquid.saturating_add(l.liquid);
        a.earned = a.earned.saturating_add(l.total);
        if l.vesting > 0 {
            a.vesting.push(Vesting { total: l.vesting, start: epoch, epochs: vest_epochs, released: 0 });
        }
    }
    s.payouts = lines.into_values().filter(|l| l.total > 0).collect();
    s.root = payout_root(&s.payouts);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
}
