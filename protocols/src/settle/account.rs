//! An account as settlement carries it from epoch to epoch: role, bonded stake, liquid units,
//! unbonding and vesting schedules; releasing what is due and slashing.

use serde::{Deserialize, Serialize};

use super::params::{BPS, StakeRole};

/// A sum that stops at `u64::MAX` (balances and stake sums under extreme parameters).
pub(super) fn saturating_sum(v: impl Iterator<Item = u64>) -> u64 {
    v.fold(0, u64::saturating_add)
}

/// A vesting schedule: `total` vests linearly over `epochs` epochs after `start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vesting {
    pub total: u64,
    pub start: u64,
    pub epochs: u64,
    pub released: u64,
}

impl Vesting {
    pub(super) fn vested_at(&self, epoch: u64) -> u64 {
        let n = epoch.saturating_sub(self.start).min(self.epochs);
        (self.total as u128 * n as u128 / self.epochs.max(1) as u128) as u64
    }
}

/// An account as settlement leaves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub role: Option<StakeRole>,
    pub bonded: u64,
    pub liquid: u64,
    /// `(amount, epoch it becomes liquid)`.
    pub unbonding: Vec<(u64, u64)>,
    pub vesting: Vec<Vesting>,
    pub earned: u64,
    pub slashed: u64,
    /// Units this account burned paying for jobs.
    #[serde(default)]
    pub burned: u64,
}

impl Account {
    /// Moves what has vested or finished unbonding by `epoch` into `liquid`.
    pub(super) fn release(&mut self, epoch: u64) {
        let (done, waiting): (Vec<_>, Vec<_>) = self.unbonding.iter().partition(|(_, at)| *at <= epoch);
        self.liquid = done.iter().fold(self.liquid, |l, (a, _)| l.saturating_add(*a));
        self.unbonding = waiting;
        for v in &mut self.vesting {
            let now = v.vested_at(epoch);
            self.liquid = self.liquid.saturating_add(now - v.released);
            v.released = now;
        }
        self.vesting.retain(|v| v.released < v.total);
    }

    /// Whether the account holds anything or has a role: what a key needs for its entries to
    /// be sealed, relayed and stored at all (issue #16 and #21: a key without one writes
    /// nothing anyone keeps).
    pub fn is_funded(&self) -> bool {
        self.role.is_some()
            || self.bonded > 0
            || self.liquid > 0
            || !self.vesting.is_empty()
            || !self.unbonding.is_empty()
    }

    /// Units the account holds: bonded, liquid, unbonding and still vesting.
    pub fn held(&self) -> u128 {
        self.bonded as u128
            + self.liquid as u128
            + self.unbonding.iter().map(|(x, _)| *x as u128).sum::<u128>()
            + self.locked() as u128
    }

    /// Still vesting.
    pub fn locked(&self) -> u64 {
        self.vesting.iter().fold(0u64, |s, v| s.saturating_add(v.total - v.released))
    }

    pub(super) fn slash(&mut self, bps: u64) -> u64 {
        let stake = self.bonded as u128 + self.unbonding.iter().map(|(a, _)| *a as u128).sum::<u128>();
        let mut take = (stake * bps as u128 / BPS as u128) as u64;
        let total = take;
        let from_bonded = take.min(self.bonded);
        self.bonded -= from_bonded;
        take -= from_bonded;
        for (a, _) in &mut self.unbonding {
            let t = take.min(*a);
            *a -= t;
            take -= t;
        }
        self.unbonding.retain(|(a, _)| *a > 0);
        self.slashed = self.slashed.saturating_add(total);
        total
    }

    /// Takes everything still vesting (pay earned and not yet released): what a worker found
    /// guilty of a bad job tile loses besides its stake. Returns the amount taken.
    pub(super) fn forfeit_vesting(&mut self) -> u64 {
        let taken = self.locked();
        self.vesting.clear();
        self.slashed = self.slashed.saturating_add(taken);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vesting_releases_linearly_and_unbonding_after_the_delay() {
        let mut a = Account { liquid: 0, unbonding: vec![(50, 5)], ..Default::default() };
        a.vesting.push(Vesting { total: 90, start: 10, epochs: 3, released: 0 });
        a.release(4);
        assert_eq!(a.liquid, 0);
        a.release(5);
        assert_eq!(a.liquid, 50);
        a.release(11);
        assert_eq!(a.liquid, 80);
        a.release(100);
        assert_eq!(a.liquid, 140);
        assert!(a.vesting.is_empty());
    }

    #[test]
    fn forfeiting_takes_only_what_is_still_vesting() {
        let mut a = Account { liquid: 7, ..Default::default() };
        a.vesting.push(Vesting { total: 90, start: 10, epochs: 3, released: 30 });
        a.vesting.push(Vesting { total: 40, start: 12, epochs: 3, released: 0 });
        assert_eq!(a.forfeit_vesting(), 100);
        assert_eq!((a.liquid, a.locked(), a.slashed), (7, 0, 100));
        assert_eq!(a.forfeit_vesting(), 0);
    }

    #[test]
    fn slashing_takes_bonded_then_unbonding() {
        let mut a = Account { bonded: 100, unbonding: vec![(100, 9)], ..Default::default() };
        assert_eq!(a.slash(7_500), 150);
        assert_eq!((a.bonded, a.unbonding.clone(), a.slashed), (0, vec![(50, 9)], 150));
    }
}
