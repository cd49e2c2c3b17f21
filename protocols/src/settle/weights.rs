//! Step three: weights. A worker's weight is IB(milli) x (uptime milli-minutes x 1000 +
//! W_PoD(milli) x delivery milli-minutes), with IB the median of the epoch's benchmark verdicts
//! (else its last known IB, else the default), uptime the median over verifiers' attestations,
//! and delivery from paid, counted receipts (`delivery`); workers caught, equivocating or under-staked weigh nothing. A
//! verifier's weight is its decided views that agree with the quorum, plus one for attesting.

use std::collections::{BTreeMap, BTreeSet};

use super::account::Account;
use super::delivery::Delivered;
use super::outcome::{EpochSettlement, WorkerLine};
use super::params::{BPS, EconParams, StakeRole};
use super::reports::Reports;
use crate::por::quorum::{self, Standing, View};

/// PoR views by (worker, verifier).
pub(super) type Views = BTreeMap<([u8; 32], [u8; 32]), View>;

/// Lower median of a list (each one here has an entry at least).
fn median(v: Vec<u64>) -> u64 {
    crate::stats::lower_median(v).unwrap_or(0)
}

/// Worker weights of the epoch; pushes every candidate's line into `s.workers` and remembers
/// measured IBs in `last_ib`.
#[allow(clippy::too_many_arguments)]
pub(super) fn workers(
    accounts: &BTreeMap<[u8; 32], Account>,
    last_ib: &mut BTreeMap<[u8; 32], u64>,
    answers: &mut BTreeMap<[u8; 32], (u64, u64)>,
    r: &Reports,
    delivered: &Delivered,
    views: &Views,
    caught: &BTreeMap<[u8; 32], &'static str>,
    p: &EconParams,
    epoch_secs: u64,
    s: &mut EpochSettlement,
) -> BTreeMap<[u8; 32], u128> {
    let mut candidates: BTreeSet<[u8; 32]> = BTreeSet::new();
    for l in r.liveness.values() {
        candidates.extend(l.peers.iter().map(|x| x.peer));
    }
    candidates.extend(delivered.render.keys().chain(delivered.fl.keys()).copied());
    candidates.extend(views.keys().map(|(w, _)| *w));
    let mut ibs: BTreeMap<[u8; 32], Vec<u64>> = BTreeMap::new();
    for (_, v) in &r.verdicts {
        for w in v.workers.iter().filter(|w| w.ib_milli > 0) {
            ibs.entry(w.worker).or_default().push(w.ib_milli as u64);
        }
    }
    // (answered, timed out) per worker and verifier.
    let mut challenged: BTreeMap<([u8; 32], [u8; 32]), (u64, u64)> = BTreeMap::new();
    for (verifier, v) in &r.verdicts {
        for w in &v.workers {
            let c = challenged.entry((w.worker, *verifier)).or_default();
            c.0 = c.0.saturating_add(w.passed as u64 + w.failed as u64);
            c.1 = c.1.saturating_add(w.timeouts as u64);
        }
    }
    let epoch_mm = epoch_milli_minutes(epoch_secs);
    let mut worker_w: BTreeMap<[u8; 32], u128> = BTreeMap::new();
    for k in candidates {
        let Some(acct) = accounts.get(&k).filter(|a| a.role == Some(StakeRole::Worker)) else { continue };
        let ib = match ibs.remove(&k) {
            Some(v) => {
                let m = median(v);
                last_ib.insert(k, m);
                m
            }
            None => last_ib.get(&k).copied().unwrap_or(p.default_ib_milli),
        };
        let uptime = if r.liveness.is_empty() {
            0
        } else {
            median(
                r.liveness
                    .values()
                    .map(|l| {
                        // A binary search: a linear one was candidates x peers (10^10 at 100,000).
                        let seen = l.seen(&k).min(l.expected);
                        (seen as u128 * epoch_mm / l.expected as u128) as u64
                    })
                    .collect(),
            )
        };
        let delivery = delivered.render.get(&k).map_or(0, |u| *u as u128 * 1000 / p.render_units_per_minute as u128)
            + delivered.fl.get(&k).map_or(0, |u| *u as u128 * 1000 / p.fl_units_per_minute as u128);
        let delivery = delivery.min(u64::MAX as u128) as u64;
        // This epoch's challenges decide; an epoch without any falls back to every challenge
        // so far (a worker that never answered stays at nothing).
        let now: Vec<(u64, u64)> = challenged.range((k, [0; 32])..=(k, [0xff; 32])).map(|(_, c)| *c).collect();
        let so_far = answers.entry(k).or_default();
        for (a, t) in &now {
            *so_far = (so_far.0.saturating_add(*a), so_far.1.saturating_add(*t));
        }
        let qos = if now.iter().any(|(a, t)| *a > 0 || *t > 0) {
            qos_bps(now.into_iter())
        } else {
            qos_bps(std::iter::once(*so_far))
        };
        let required = p.required_stake(epoch_secs, ib);
        let excluded = if let Some(why) = caught.get(&k) {
            Some(format!("caught: {why}"))
        } else if r.equivocators.contains(&k) {
            Some("equivocated".to_string())
        } else if acct.bonded < required {
            Some(format!("bonded {} below the required {required}", acct.bonded))
        } else if qos == 0 {
            Some("answered no challenge".to_string())
        } else {
            None
        };
        if excluded.is_none() {
            worker_w.insert(k, worker_weight(ib, uptime, delivery, qos, p));
        }
        s.workers.push(WorkerLine {
            key: k,
            ib_milli: ib,
            uptime_milli_minutes: uptime,
            delivery_milli_minutes: delivery,
            bonded: acct.bonded,
            required_stake: required,
            qos_bps: qos,
            excluded,
        });
    }
    worker_w
}

/// A worker's weight: IB(milli) x (uptime milli-minutes x 1000 + W_PoD(milli) x delivery
/// milli-minutes), capped at `u64::MAX`, times its QoS factor in basis points.
pub(super) fn worker_weight(ib_milli: u64, uptime_mm: u64, delivery_mm: u64, qos_bps: u64, p: &EconParams) -> u128 {
    let w = ib_milli as u128 * (uptime_mm as u128 * 1000 + p.w_pod_milli as u128 * delivery_mm as u128);
    w.min(u64::MAX as u128) * qos_bps.min(BPS) as u128 / BPS as u128
}

/// Milli-minutes in an epoch of `epoch_secs` (a full epoch's uptime).
pub(super) fn epoch_milli_minutes(epoch_secs: u64) -> u128 {
    epoch_secs as u128 * 1000 / 60
}

/// A worker's QoS factor in basis points from `(answered, timed out)` per verifier that
/// challenged it: each verifier's `min(1, 2 x answered / challenges)` (half the challenges
/// may go unanswered, busy or lost, at no cost; fewer answers cost weight in proportion; none
/// costs all of it), the upper median over those verifiers (a timeout needs no proof, so one
/// lying verifier must not zero a worker the others hear); full without challenges.
fn qos_bps(per_verifier: impl Iterator<Item = (u64, u64)>) -> u64 {
    let mut v: Vec<u64> = per_verifier
        .filter(|(a, t)| *a > 0 || *t > 0)
        .map(|(answered, timeouts)| {
            (2 * BPS as u128 * answered as u128 / (answered as u128 + timeouts as u128)).min(BPS as u128) as u64
        })
        .collect();
    if v.is_empty() {
        BPS
    } else {
        v.sort_unstable();
        v[v.len() / 2]
    }
}

/// The `(worker, verifier)` pairs whose verdicts carry the worker's signed answer to that
/// verifier's challenge in the epoch (proof of challenge).
pub(super) fn proven(r: &Reports, epoch: u64) -> BTreeSet<([u8; 32], [u8; 32])> {
    r.verdicts
        .iter()
        .flat_map(|(verifier, v)| v.workers.iter().map(move |w| (verifier, w)))
        .filter(|(verifier, w)| w.proof.as_ref().is_some_and(|p| p.epoch == epoch && p.verify(&w.worker, verifier)))
        .map(|(verifier, w)| (w.worker, *verifier))
        .collect()
}

/// Verifier weights: decided views agreeing with the quorum's standing and backed by the
/// worker's signed answer (`proven`: a copied verdict earns nothing), plus one for a liveness
/// attestation.
pub(super) fn verifiers(
    views: &Views,
    standings: &BTreeMap<[u8; 32], Standing>,
    proven: &BTreeSet<([u8; 32], [u8; 32])>,
    liveness_authors: impl Iterator<Item = [u8; 32]>,
) -> BTreeMap<[u8; 32], u128> {
    let mut verifier_w: BTreeMap<[u8; 32], u128> = BTreeMap::new();
    for ((worker, verifier), view) in views.iter().filter(|(k, _)| proven.contains(k)) {
        if let Some(failed) = quorum::decision(*view)
            && standings.get(worker).is_some_and(|st| st.caught == failed)
        {
            *verifier_w.entry(*verifier).or_default() += 1;
        }
    }
    for k in liveness_authors {
        *verifier_w.entry(k).or_default() += 1;
    }
    verifier_w
}

#[cfg(test)]
mod tests {
    /// Issue #21: ignoring every challenge cost nothing. Now no answer costs all the weight,
    /// few answers cost in proportion, and half may be missed (busy, lost) at no cost.
    #[test]
    fn timeouts_cost_weight_and_silence_costs_all() {
        use super::qos_bps;
        assert_eq!(qos_bps([].into_iter()), 10_000);
        assert_eq!(qos_bps([(0, 0)].into_iter()), 10_000);
        assert_eq!(qos_bps([(0, 9)].into_iter()), 0);
        assert_eq!(qos_bps([(5, 5)].into_iter()), 10_000);
        assert_eq!(qos_bps([(1, 3)].into_iter()), 5_000);
        // Upper median over verifiers: one verifier alone cannot zero a worker others hear.
        assert_eq!(qos_bps([(0, 9), (4, 0), (4, 1)].into_iter()), 10_000);
        assert_eq!(qos_bps([(0, 9), (0, 4), (4, 1)].into_iter()), 0);
        assert_eq!(qos_bps([(u64::MAX, u64::MAX)].into_iter()), 10_000);
    }
}
