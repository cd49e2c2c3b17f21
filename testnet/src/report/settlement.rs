//! The `settlement` section: the sealed epochs' settlements as every running node computed them
//! (`GET /rewards`), compared root by root; who was slashed; the governance change's epoch.

use std::collections::{BTreeMap, BTreeSet};

use ifx_protocols::api::Rewards;
use ifx_protocols::settle::Status;
use serde::Serialize;

use crate::watch::GovRun;

/// `settlement` section of the report.
#[derive(Debug, Serialize, Default)]
pub struct SettlementSection {
    /// Agreed over at least one sealed epoch, every cheater slashed, no honest node slashed,
    /// the governance change applied exactly at its epoch.
    pub ok: bool,
    /// Every running node computed the same settlement root for every epoch sealed on all.
    pub agreed: bool,
    /// Running nodes at the end, and those of them that answered `GET /rewards`.
    pub running: usize,
    pub answered: usize,
    /// Epochs sealed on every running node.
    pub sealed_epochs: Vec<u64>,
    /// Per node index, per sealed epoch, the settlement root.
    pub roots: BTreeMap<usize, BTreeMap<u64, String>>,
    /// Units minted over the sealed epochs (the first answering node's view).
    pub minted: u64,
    /// Units earned by peer id through the last epoch that node settled.
    pub payouts: BTreeMap<String, u64>,
    /// Peer ids slashed in a sealed epoch.
    pub slashed: Vec<String>,
    pub cheaters: Vec<String>,
    pub honest_slashed: Vec<String>,
    /// Burn and mint side by side over the sealed epochs (the first answering node's view).
    pub economics: Vec<EpochEconomics>,
    /// Units node 0 (the run's artist) burned paying for its render job, FL task and inference
    /// job, as settled, and what each says it paid: the burn is a sum of settled payments,
    /// never more.
    pub artist_burned: u64,
    pub job_paid: u64,
    pub task_paid: u64,
    pub infer_paid: u64,
    /// The governance change, if the run proposed one.
    pub governance: Option<GovernanceReport>,
    /// Why the proposal was refused.
    pub governance_error: Option<String>,
}

/// One sealed epoch's burn and mint.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct EpochEconomics {
    pub epoch: u64,
    pub minted: u64,
    pub burned: u64,
    pub net_supply: i128,
    /// Paid work units delivered.
    pub delivered: u64,
    /// Paid to job owners from the artist pool.
    pub paid_artists: u64,
    /// Entries settlement refused.
    pub refused: u64,
}

/// The governance change: proposed value, epoch named, first epoch it was in force on every
/// node, and the worker pool's payout either side of it.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct GovernanceReport {
    pub param: String,
    pub value: u64,
    pub from_epoch: u64,
    /// Nodes whose vote was accepted.
    pub votes: usize,
    /// First epoch (sealed or unsealed) listed with the new value, when every node agrees on
    /// it (only `workers_bps` is visible in `/rewards`' epoch summary).
    pub applied_at: Option<u64>,
    /// Some epoch sealed on every node is at or after `from_epoch`.
    pub reached: bool,
    pub on_time: bool,
    pub paid_workers_before: Option<u64>,
    pub sealed_before: Option<u64>,
    pub paid_workers_at: Option<u64>,
    pub sealed_at: Option<u64>,
}

impl SettlementSection {
    /// From each answering node's `GET /rewards` (by node index), the number of running nodes,
    /// public key (hex) -> peer id, the cheaters' peer ids, the governance change proposed, and
    /// the artist's key with what its job says it paid.
    #[allow(clippy::too_many_arguments)]
    pub fn of(
        rewards: &[(usize, Rewards)],
        running: usize,
        peer_of: &BTreeMap<String, String>,
        cheaters: Vec<String>,
        gov: Option<&GovRun>,
        gov_error: Option<&str>,
        artist: Option<&String>,
        (job_paid, task_paid, infer_paid): (u64, u64, u64),
    ) -> Self {
        let mut s = SettlementSection {
            running,
            answered: rewards.len(),
            cheaters,
            governance_error: gov_error.map(str::to_owned),
            ..Default::default()
        };
        if rewards.len() < running || rewards.is_empty() {
            return s;
        }
        let sealed: Vec<BTreeMap<u64, &ifx_protocols::api::RewardsEpoch>> =
            rewards.iter().map(|(_, r)| r.sealed()).collect();
        let common: BTreeSet<u64> = sealed
            .iter()
            .map(|m| m.keys().copied().collect::<BTreeSet<u64>>())
            .reduce(|a, b| a.intersection(&b).copied().collect())
            .unwrap_or_default();
        s.sealed_epochs = common.iter().copied().collect();
        s.agreed = !common.is_empty()
            && common.iter().all(|e| sealed.iter().map(|m| &m[e].root).collect::<BTreeSet<_>>().len() == 1);
        for ((i, _), m) in rewards.iter().zip(&sealed) {
            s.roots.insert(*i, common.iter().map(|e| (*e, m[e].root.clone())).collect());
        }
        let first = &sealed[0];
        s.minted = common.iter().map(|e| first[e].minted).sum();
        let slashed_keys: BTreeSet<&String> = common.iter().flat_map(|e| &first[e].slashed).collect();
        let peer = |k: &str| peer_of.get(k).cloned().unwrap_or_else(|| k.to_owned());
        s.slashed = slashed_keys.iter().map(|k| peer(k)).collect();
        s.honest_slashed = s.slashed.iter().filter(|p| !s.cheaters.contains(p)).cloned().collect();
        s.payouts =
            rewards[0].1.accounts.iter().filter(|(_, a)| a.earned > 0).map(|(k, a)| (peer(k), a.earned)).collect();
        s.economics = common
            .iter()
            .map(|e| {
                let x = first[e];
                EpochEconomics {
                    epoch: *e,
                    minted: x.minted,
                    burned: x.burned,
                    net_supply: x.net_supply,
                    delivered: x.delivered,
                    paid_artists: x.paid_artists,
                    refused: x.refused,
                }
            })
            .collect();
        s.artist_burned = artist.and_then(|k| rewards[0].1.accounts.get(k)).map_or(0, |a| a.burned);
        (s.job_paid, s.task_paid, s.infer_paid) = (job_paid, task_paid, infer_paid);
        s.governance = gov.map(|g| governance(g, rewards, &common));
        s.ok = s.failures().is_empty();
        s
    }

    /// What makes the run fail.
    pub fn failures(&self) -> Vec<String> {
        if self.answered < self.running || self.answered == 0 {
            return vec![format!(
                "settlement: {} of {} running nodes answered GET /rewards",
                self.answered, self.running
            )];
        }
        let mut f = Vec::new();
        if !self.agreed {
            f.push(if self.sealed_epochs.is_empty() {
                "settlement: no epoch was sealed on every running node".to_string()
            } else {
                "settlement: running nodes computed different settlement roots".to_string()
            });
        }
        let missed: Vec<&String> = self.cheaters.iter().filter(|c| !self.slashed.contains(c)).collect();
        if !missed.is_empty() {
            f.push(format!("settlement: cheaters not slashed: {missed:?}"));
        }
        if !self.honest_slashed.is_empty() {
            f.push(format!("settlement: honest nodes slashed: {:?}", self.honest_slashed));
        }
        // Any subset of the three payments may have settled by the run's end.
        let (j, t, i) = (self.job_paid, self.task_paid, self.infer_paid);
        let sums: Vec<u64> = (0..8u8)
            .map(|m| [j, t, i].iter().enumerate().filter(|(b, _)| m >> b & 1 == 1).map(|(_, v)| *v).sum())
            .collect();
        if !sums.contains(&self.artist_burned) {
            f.push(format!(
                "economics: the artist burned {} units as settled, but its job paid {j}, its task {t} and its inference job {i}",
                self.artist_burned
            ));
        }
        if let Some(e) = &self.governance_error {
            f.push(format!("governance: the proposal was refused: {e}"));
        }
        if let Some(g) = self.governance.as_ref().filter(|g| !g.on_time) {
            f.push(format!(
                "governance: {}={} named epoch {} but was in force from {:?}",
                g.param, g.value, g.from_epoch, g.applied_at
            ));
        }
        f
    }
}

/// Parameters are in force for unsealed epochs too, so every epoch a node lists counts: the
/// change must first show at exactly the named epoch, on every node; and it shows in the
/// payouts, the worker pool's share in the last sealed epoch before it and the first from it.
fn governance(g: &GovRun, rewards: &[(usize, Rewards)], common: &BTreeSet<u64>) -> GovernanceReport {
    let first_with = |r: &Rewards| {
        r.epochs
            .iter()
            .filter(|e| matches!(e.status, Status::Sealed | Status::Unsealed))
            .find(|e| e.workers_bps == g.value)
            .map(|e| e.epoch)
    };
    let firsts: BTreeSet<Option<u64>> = rewards.iter().map(|(_, r)| first_with(r)).collect();
    let applied_at =
        (g.param == "workers_bps" && firsts.len() == 1).then(|| firsts.into_iter().next().flatten()).flatten();
    let reached = common.iter().any(|e| *e >= g.from_epoch);
    let on_time = g.param != "workers_bps" || !reached || applied_at == Some(g.from_epoch);
    let paid = |e: Option<u64>| {
        let e = e?;
        rewards.first()?.1.epochs.iter().find(|x| x.epoch == e && x.status == Status::Sealed).map(|x| x.paid_workers)
    };
    let sealed_before = common.range(..g.from_epoch).next_back().copied();
    let sealed_at = common.range(g.from_epoch..).next().copied();
    GovernanceReport {
        param: g.param.clone(),
        value: g.value,
        from_epoch: g.from_epoch,
        votes: g.votes,
        applied_at,
        reached,
        on_time,
        paid_workers_before: paid(sealed_before),
        sealed_before,
        paid_workers_at: paid(sealed_at),
        sealed_at,
    }
}

#[cfg(test)]
mod tests {
    use ifx_protocols::api::RewardsEpoch;
    use ifx_protocols::settle::{Account, EconParams};

    use super::*;

    fn epoch(epoch: u64, status: Status, root: &str, bps: u64, slashed: &[&str]) -> RewardsEpoch {
        RewardsEpoch {
            epoch,
            status,
            root: root.into(),
            seal_root: None,
            minted: 100,
            paid: 2,
            slashed: slashed.iter().map(|s| s.to_string()).collect(),
            workers_bps: bps,
            paid_workers: bps / 100,
            paid_artists: 0,
            burned: 0,
            net_supply: 100,
            delivered: 0,
            refused: 0,
        }
    }

    fn rewards(epochs: Vec<RewardsEpoch>) -> Rewards {
        let accounts = [("k-honest".to_string(), Account { earned: 7, ..Default::default() })].into();
        Rewards { current_epoch: 9, epochs, accounts, params: EconParams::default() }
    }

    fn peers() -> BTreeMap<String, String> {
        [("k-honest", "honest"), ("k-cheat", "cheat")].iter().map(|(k, p)| (k.to_string(), p.to_string())).collect()
    }

    #[test]
    fn agreeing_nodes_slash_the_cheater_and_the_change_applies_at_its_epoch() {
        let node = || {
            rewards(vec![
                epoch(3, Status::Sealed, "r3", 8108, &["k-cheat"]),
                epoch(4, Status::Sealed, "r4", 7000, &[]),
                epoch(5, Status::Pending, "", 7000, &[]),
            ])
        };
        let gov = GovRun { param: "workers_bps".into(), value: 7000, from_epoch: 4, votes: 2 };
        let s = SettlementSection::of(
            &[(0, node()), (2, node())],
            2,
            &peers(),
            vec!["cheat".into()],
            Some(&gov),
            None,
            None,
            (0, 0, 0),
        );
        assert!(s.ok, "{:?}", s.failures());
        assert_eq!(s.sealed_epochs, [3, 4]);
        assert_eq!(s.slashed, ["cheat"]);
        assert_eq!(s.minted, 200);
        assert_eq!(s.payouts["honest"], 7);
        let g = s.governance.unwrap();
        assert_eq!((g.applied_at, g.reached, g.on_time), (Some(4), true, true));
        assert_eq!((g.paid_workers_before, g.paid_workers_at), (Some(81), Some(70)));
    }

    #[test]
    fn different_roots_a_late_change_and_a_silent_node_fail_the_run() {
        let a = rewards(vec![epoch(3, Status::Sealed, "r3", 8108, &[]), epoch(4, Status::Sealed, "r4", 8108, &[])]);
        let b = rewards(vec![epoch(3, Status::Sealed, "r3'", 8108, &[]), epoch(4, Status::Sealed, "r4", 8108, &[])]);
        let gov = GovRun { param: "workers_bps".into(), value: 7000, from_epoch: 4, votes: 2 };
        let s = SettlementSection::of(
            &[(0, a.clone()), (1, b)],
            2,
            &peers(),
            vec!["cheat".into()],
            Some(&gov),
            None,
            None,
            (0, 0, 0),
        );
        let f = s.failures();
        assert!(!s.ok);
        assert!(f.iter().any(|x| x.contains("different settlement roots")), "{f:?}");
        assert!(f.iter().any(|x| x.contains("cheaters not slashed")), "{f:?}");
        assert!(f.iter().any(|x| x.contains("named epoch 4 but was in force from None")), "{f:?}");
        let s = SettlementSection::of(&[(0, a)], 2, &peers(), vec![], None, None, None, (0, 0, 0));
        assert_eq!(s.failures(), ["settlement: 1 of 2 running nodes answered GET /rewards"]);
    }
}
