//! An earnings estimate (issue #19): what a worker can expect to be paid for an epoch, computed
//! with settlement's own rules (the worker weight, the pools, the exact integer distribution,
//! the liquid and vesting split) on assumed inputs for the worker (its IB, uptime, delivery and
//! QoS), beside the other workers as the last sealed epoch weighed them, with the parameters and
//! the stake in force now. With the same inputs and the same other workers it is what settlement
//! pays, to the unit (tested against `settle` itself below).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::outcome::{Settlements, Status, WorkerLine};
use super::params::{BPS, EconParams, StakeRole};
use super::payouts::{distribute, liquid_part, pools};
use super::weights::{epoch_milli_minutes, worker_weight};

/// The worker's inputs an estimate assumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assumed {
    /// Its IB in milli-units (settlement's: the verifiers' median benchmark).
    pub ib_milli: u64,
    /// The share of the epoch it is up and working, in basis points.
    pub uptime_bps: u64,
    /// Paid delivery it is credited with, in milli-minutes.
    pub delivery_milli_minutes: u64,
    /// Its QoS factor (challenges answered), in basis points.
    pub qos_bps: u64,
}

/// What one epoch would pay the worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    #[serde(with = "hex::serde")]
    pub key: [u8; 32],
    /// The epoch estimated.
    pub epoch: u64,
    /// The sealed epoch whose other workers it is weighed against (`None`: none sealed yet, so
    /// it is assumed alone in the worker pool).
    pub based_on: Option<u64>,
    pub assumed: Assumed,
    pub epoch_secs: u64,
    /// The epoch's mint and its worker pool.
    pub minted: u64,
    pub pool_workers: u64,
    /// The other workers that would be paid, and their weight together.
    pub other_workers: u64,
    pub others_weight: u128,
    /// Its own weight.
    pub weight: u128,
    /// Its bonded stake now, and the stake required at the assumed IB.
    pub bonded: u64,
    pub required_stake: u64,
    /// Why it would be paid nothing, if it would not (then `total` is 0).
    pub excluded: Option<String>,
    /// What it would be paid: in all, liquid at once, vesting.
    pub total: u64,
    pub liquid: u64,
    pub vesting: u64,
    /// What it would be paid were it bonded at the required stake (the figure to weigh before
    /// bonding).
    pub if_staked: u64,
    /// `total` over a day of such epochs.
    pub per_day: u64,
    /// What the figures take for granted, in words.
    pub assumptions: Vec<String>,
}

/// The last sealed epoch's line of `key`, if it was weighed in one.
pub fn last_line<'a>(st: &'a Settlements, key: &[u8; 32]) -> Option<(u64, &'a WorkerLine)> {
    st.epochs
        .iter()
        .rev()
        .filter(|e| e.status == Status::Sealed)
        .find_map(|e| e.workers.iter().find(|w| w.key == *key).map(|w| (e.epoch, w)))
}

/// Whether a worker with `bonded` stake and `line`'s inputs may be paid now; why not if not.
fn excluded(role: Option<StakeRole>, bonded: u64, required: u64, qos_bps: u64) -> Option<String> {
    if role != Some(StakeRole::Worker) {
        Some("no stake bonded as a worker (ifx stake bond --role worker)".into())
    } else if bonded < required {
        Some(format!("bonded {bonded} below the required {required}"))
    } else if qos_bps == 0 {
        Some("answers no challenge".into())
    } else {
        None
    }
}

/// `key`'s pay for `epoch` with `assumed` inputs, from settlement `st` of a network with epochs
/// of `epoch_secs`.
pub fn estimate(st: &Settlements, epoch_secs: u64, epoch: u64, key: [u8; 32], assumed: Assumed) -> Estimate {
    let p: &EconParams = &st.params;
    let last = st.epochs.iter().rev().find(|e| e.status == Status::Sealed);
    // The others as the last sealed epoch weighed them; only a stake shortfall is judged again,
    // against the stake bonded now (an exclusion for cheating or silence stands).
    let mut weights: BTreeMap<[u8; 32], u128> = BTreeMap::new();
    for w in last.map(|e| e.workers.as_slice()).unwrap_or_default().iter().filter(|w| w.key != key) {
        let acct = st.accounts.get(&w.key);
        let stands = w.excluded.as_deref().is_none_or(|why| why.starts_with("bonded "));
        let required = p.required_stake(epoch_secs, w.ib_milli);
        if stands && excluded(acct.and_then(|a| a.role), acct.map_or(0, |a| a.bonded), required, w.qos_bps).is_none() {
            weights.insert(
                w.key,
                worker_weight(w.ib_milli, w.uptime_milli_minutes, w.delivery_milli_minutes, w.qos_bps, p),
            );
        }
    }
    let (other_workers, others_weight) = (weights.len() as u64, weights.values().sum());
    let uptime = (epoch_milli_minutes(epoch_secs) * assumed.uptime_bps.min(BPS) as u128 / BPS as u128) as u64;
    let weight = worker_weight(assumed.ib_milli, uptime, assumed.delivery_milli_minutes, assumed.qos_bps, p);
    let minted = p.mint_at(epoch);
    let [pool_workers, ..] = pools(minted, p);
    weights.insert(key, weight);
    let share = distribute(pool_workers, &weights).get(&key).copied().unwrap_or(0);
    let acct = st.accounts.get(&key);
    let bonded = acct.map_or(0, |a| a.bonded);
    let required_stake = p.required_stake(epoch_secs, assumed.ib_milli);
    let excluded = excluded(acct.and_then(|a| a.role), bonded, required_stake, assumed.qos_bps);
    let total = if excluded.is_some() { 0 } else { share };
    let liquid = liquid_part(total, p);
    let per_day = (total as u128 * 86_400 / epoch_secs.max(1) as u128).min(u64::MAX as u128) as u64;
    let mut assumptions = vec![
        match last {
            Some(e) => format!(
                "the other {other_workers} workers are paid as in sealed epoch {} (their IB, uptime, delivery and QoS), \
                 with the stake bonded now",
                e.epoch
            ),
            None => "no epoch is sealed yet: it is alone in the worker pool".into(),
        },
        format!(
            "the parameters in force now (mint {minted} units in epoch {epoch}, the worker pool {} bps of it); \
             proposals still open are not applied",
            p.workers_bps
        ),
        "the worker pool only: verifier, governance and artist pay are not included".into(),
    ];
    if assumed.qos_bps < BPS {
        assumptions.push(format!("QoS {} bps: some challenges go unanswered", assumed.qos_bps));
    }
    Estimate {
        key,
        epoch,
        based_on: last.map(|e| e.epoch),
        assumed,
        epoch_secs,
        minted,
        pool_workers,
        other_workers,
        others_weight,
        weight,
        bonded,
        required_stake,
        excluded,
        total,
        liquid,
        vesting: total - liquid,
        if_staked: if assumed.qos_bps > 0 { share } else { 0 },
        per_day,
        assumptions,
    }
}
