//! The `fl` section: the federated task node 0 owned (`GET /fl/{id}`), the poisoners it had to
//! screen out, and the verifiers' audits of its rounds (`GET /fl`).

use std::collections::BTreeMap;

use ifx_protocols::api::{AuditStats, RunState, TaskStatus};
use ifx_protocols::fl::wire::TaskSpec;
use serde::Serialize;

use crate::watch::Tracked;

/// The accuracy the digits task was first judged by: a report figure since issue #20 (a fixed
/// bar failed healthy runs that had lost shards to PoR cheaters, at 0.9415 and 0.9499).
pub const FL_TARGET: f64 = 0.95;
/// The verdict (issue #20): the federated model must end at most this far below the centralized
/// baseline on the same honest shards (1.5 points).
pub const BASELINE_MARGIN: f64 = 0.015;

/// The verdict's reference for issue #20: the task's model trained centrally, in the harness, on
/// the shards of the honest workers whose updates the owner accepted, each in as many rounds as
/// its updates were accepted (`shards`: shard -> rounds), spread evenly over the run, with the
/// task's own recipe (its initial weights, rounds x local epochs, batch, learning-rate
/// schedule; the optimizer restarted each round as a worker's is), scored on the owner's test
/// split. On `--nodes 9 --verifiers 2 --cheaters 3` (six non-IID shards) it reached 0.9721,
/// which plain federated trimmed mean missed by 2.8 points; SCAFFOLD's drift correction
/// (`--fl-scaffold`, on by default) closed the gap to within [`BASELINE_MARGIN`].
///
/// Why by rounds: a worker benched as a straggler, or late past the join grace, adds its shard
/// to fewer rounds of the federated model. A baseline that trained every shard in every round
/// held the federated model to data it had seen less of; one race of which workers made which
/// rounds put a healthy run 1.67 points below it twice, with the same figures.
pub fn centralized_baseline(
    data: &std::path::Path,
    spec: &TaskSpec,
    shards: &BTreeMap<u32, u64>,
) -> Result<f64, String> {
    use ifx_learn::{data::Dataset, model};
    let all = Dataset::load(data).map_err(|e| e.to_string())?;
    let (train, test) = all.split();
    let parts = train.non_iid(spec.data.shards as usize, spec.data.alpha, spec.data.seed);
    let rounds = spec.rounds as u64;
    let mut params = model::init(spec.init_seed);
    let mut trained = false;
    for round in 0..spec.rounds {
        let r = round as u64;
        let mut union = Dataset::default();
        // Shard s in k of R rounds: in round r when floor((r+1) k / R) passes floor(r k / R).
        for (s, k) in shards {
            let k = (*k).min(rounds);
            if (r + 1) * k / rounds > r * k / rounds
                && let Some(p) = parts.get(*s as usize)
            {
                union.x.extend_from_slice(&p.x);
                union.y.extend_from_slice(&p.y);
            }
        }
        if union.is_empty() {
            continue;
        }
        trained = true;
        let cfg = model::TrainConfig {
            epochs: spec.local_epochs as usize,
            batch: spec.batch as usize,
            lr: spec.lr_at(round),
            seed: round as u64,
        };
        params = model::train(&params, &union, &cfg).map_err(|e| e.to_string())?.0;
    }
    if !trained {
        return Err("no honest shard had an update accepted".into());
    }
    model::accuracy(&params, &test).map_err(|e| e.to_string())
}

/// A copier's contribution against unique data (issue #20).
#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct CopyLine {
    pub copier: String,
    pub original: String,
    pub copier_ppm: u64,
    pub original_ppm: u64,
    /// The mean over the workers whose shard nobody else holds.
    pub unique_mean_ppm: u64,
}

/// A copy earns "clearly less" when it gets under this share of the unique workers' mean
/// (a copy and its original split one share: about half, as a share varies by shard).
pub const COPY_MOST: f64 = 0.8;

/// A baseline as the report keeps it.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct Baseline {
    pub accuracy: f64,
    /// The honest shards it was trained on.
    pub shards: Vec<u32>,
    /// Issue #20's margin, and whether the federated model ended within it (the verdict).
    pub margin: f64,
    pub within_margin: Option<bool>,
}

/// `fl` section of the report.
#[derive(Debug, Serialize)]
pub struct FlSection {
    pub task_id: String,
    /// Done, final accuracy at least `target`, every poisoner caught, every audit matched.
    pub ok: bool,
    pub state: RunState,
    /// The task owner (node 0's peer id) and the aggregation rule.
    pub owner: String,
    pub aggregator: String,
    pub rounds: u64,
    pub accuracy_by_round: Vec<f64>,
    pub final_accuracy: Option<f64>,
    pub target: f64,
    /// The centralized baseline; the verdict requires the final accuracy within its margin
    /// (`target`, the fixed 0.95, is a report figure).
    pub baseline: Option<Baseline>,
    /// A private task's plan: the noise and the ε it spent (the verdict then requires ε within
    /// the task's budget instead of `target`: the accuracy is the price the owner chose).
    pub privacy: Option<ifx_protocols::fl::dp::DpPlan>,
    pub dp_budget: Option<f64>,
    /// Rejected updates per peer id.
    pub rejected: BTreeMap<String, u64>,
    /// The last few reasons per peer id.
    pub rejected_reasons: BTreeMap<String, Vec<String>>,
    /// Workers the owner excluded from the task (peer id: round and reason).
    pub banned: BTreeMap<String, String>,
    /// Honest workers among them (must be empty).
    pub honest_banned: Vec<String>,
    /// Accepted updates per peer id.
    pub accepted: BTreeMap<String, u64>,
    /// Each worker's contributions summed over the rounds (ppm of each round's largest), which
    /// its FL pay follows (issue #20).
    pub contribution_ppm: BTreeMap<String, u64>,
    /// Poisoners with any contribution (must be empty: a poisoner earns nothing).
    pub poisoners_paid: Vec<String>,
    /// Workers holding a copy of another's shard (`--fl-copiers`), beside their original and
    /// the mean of the workers with data of their own: a copy must earn clearly less.
    pub copies: Vec<CopyLine>,
    /// Updates that missed a deadline per peer id.
    pub dropped: BTreeMap<String, u64>,
    /// Peer ids of the poisoners, and those with a rejected update and none accepted.
    pub poisoners: Vec<String>,
    pub poisoners_caught: Vec<String>,
    /// Honest peers with a rejected update (the screen's false positives).
    pub honest_rejected: Vec<String>,
    /// FL receipts the owner wrote to the ledger.
    pub receipts: u64,
    /// Rounds each running verifier recomputed: matched / mismatched / failed, summed.
    pub audits_matched: u64,
    pub audits_mismatched: u64,
    pub audits_failed: u64,
    pub secs: f64,
    pub plot: Option<String>,
    pub weights: Option<String>,
    pub error: Option<String>,
}

impl FlSection {
    /// From the task as its owner last reported it, the owner's peer id, the poisoners' peer
    /// ids and the running verifiers' audit tallies.
    pub fn of(
        task: &Tracked<TaskStatus>,
        owner: String,
        mut poisoners: Vec<String>,
        audits: &[AuditStats],
        baseline: Option<Baseline>,
    ) -> Self {
        poisoners.sort();
        let never = TaskStatus {
            error: Some("the task owner never reported the task".into()),
            ..TaskStatus::started(task.id.clone(), Default::default(), String::new())
        };
        let t = task.last.as_ref().unwrap_or(&never);
        let accepted_by = |p: &str| t.accepted.get(p).copied().unwrap_or(0);
        // A poisoner is caught when the owner excluded it (rejected in 3 of its last 5
        // updates), or rejected its updates and accepted none; one the owner never heard from
        // is not caught.
        let poisoners_caught = poisoners
            .iter()
            .filter(|p| t.banned.contains_key(*p) || (t.rejected_count.contains_key(*p) && accepted_by(p) == 0))
            .cloned()
            .collect::<Vec<_>>();
        let honest_rejected = t.rejected_count.keys().filter(|p| !poisoners.contains(p)).cloned().collect();
        let honest_banned: Vec<String> = t.banned.keys().filter(|p| !poisoners.contains(p)).cloned().collect();
        let sum = |f: fn(&AuditStats) -> u64| audits.iter().map(f).sum::<u64>();
        let poisoners_paid: Vec<String> =
            poisoners.iter().filter(|p| t.contribution_ppm.get(*p).is_some_and(|c| *c > 0)).cloned().collect();
        let baseline =
            baseline.map(|b| Baseline { within_margin: t.final_accuracy.map(|a| a >= b.accuracy - b.margin), ..b });
        let budget = t.spec.dp.as_ref().map(|d| d.epsilon);
        let private_ok = match (&t.privacy, budget) {
            (Some(p), Some(b)) => p.epsilon <= b * (1.0 + 1e-9),
            _ => false,
        };
        let near_baseline = baseline.as_ref().is_some_and(|b| b.within_margin == Some(true));
        let ok = t.state == RunState::Done
            && (near_baseline || private_ok)
            && poisoners_caught.len() == poisoners.len()
            && honest_banned.is_empty()
            && poisoners_paid.is_empty()
            && sum(|a| a.mismatched) == 0;
        FlSection {
            task_id: t.task_id.clone(),
            ok,
            state: t.state,
            owner,
            aggregator: t.aggregator.clone(),
            rounds: t.rounds_done as u64,
            accuracy_by_round: t.accuracy_by_round.clone(),
            final_accuracy: t.final_accuracy,
            target: FL_TARGET,
            baseline,
            privacy: t.privacy.clone(),
            dp_budget: budget,
            rejected: t.rejected_count.clone(),
            rejected_reasons: t.rejected.clone(),
            banned: t.banned.clone(),
            honest_banned,
            accepted: t.accepted.clone(),
            contribution_ppm: t.contribution_ppm.clone(),
            poisoners_paid,
            copies: Vec::new(),
            dropped: t.dropped.clone(),
            poisoners,
            poisoners_caught,
            honest_rejected,
            receipts: t.receipts,
            audits_matched: sum(|a| a.matched),
            audits_mismatched: sum(|a| a.mismatched),
            audits_failed: sum(|a| a.failed),
            secs: t.secs,
            plot: t.plot.clone(),
            weights: t.weights.clone(),
            error: t.error.clone(),
        }
    }

    /// Adds the copies: (copier, original) peer ids, and the peers whose data is their own.
    pub fn with_copies(mut self, copies: &[(String, String)], unique: &[String]) -> Self {
        let ppm = |p: &String| self.contribution_ppm.get(p).copied().unwrap_or(0);
        let mean = unique.iter().map(ppm).sum::<u64>() / unique.len().max(1) as u64;
        self.copies = copies
            .iter()
            .map(|(c, o)| CopyLine {
                copier: c.clone(),
                original: o.clone(),
                copier_ppm: ppm(c),
                original_ppm: ppm(o),
                unique_mean_ppm: mean,
            })
            .collect();
        self.ok &= self.copies.iter().all(|c| (c.copier_ppm as f64) < COPY_MOST * c.unique_mean_ppm as f64);
        self
    }

    /// What makes the run fail.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.ok {
            return f;
        }
        for c in self.copies.iter().filter(|c| (c.copier_ppm as f64) >= COPY_MOST * c.unique_mean_ppm as f64) {
            f.push(format!(
                "a copy of another's shard ({}) earned {} ppm, not clearly less than unique data ({} ppm on average)",
                c.copier, c.copier_ppm, c.unique_mean_ppm
            ));
        }
        if self.state != RunState::Done {
            f.push(format!(
                "the federated task did not complete: {} after {} rounds ({})",
                self.state,
                self.rounds,
                self.error.as_deref().unwrap_or("-")
            ));
        } else if let Some(b) = self.dp_budget {
            let spent = self.privacy.as_ref().map(|p| p.epsilon);
            if spent.is_none_or(|e| e > b * (1.0 + 1e-9)) {
                f.push(format!("the private task spent ε {spent:?} against its budget {b}"));
            }
        } else {
            let acc = self.final_accuracy.unwrap_or(0.0);
            match &self.baseline {
                None => f.push(format!(
                    "federated accuracy {acc:.4} has no centralized baseline to be judged against (see the log)"
                )),
                Some(b) if b.within_margin != Some(true) => f.push(format!(
                    "federated accuracy {acc:.4} is {:.2} points below the centralized model on the same honest shards \
                     ({:.4}; the margin is {:.1})",
                    (b.accuracy - acc) * 100.0,
                    b.accuracy,
                    b.margin * 100.0
                )),
                Some(_) => {}
            }
        }
        if !self.poisoners_paid.is_empty() {
            f.push(format!("poisoners credited with a contribution: {:?}", self.poisoners_paid));
        }
        let missed: Vec<&String> = self.poisoners.iter().filter(|p| !self.poisoners_caught.contains(p)).collect();
        if !missed.is_empty() {
            f.push(format!("poisoners not caught: {missed:?}"));
        }
        if !self.honest_banned.is_empty() {
            f.push(format!("honest workers excluded from the federated task: {:?}", self.honest_banned));
        }
        if self.audits_mismatched > 0 {
            f.push(format!("{} federated rounds did not recompute to the same weights", self.audits_mismatched));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A centralized baseline at `accuracy` (the verdict's reference).
    fn base(accuracy: f64) -> Option<Baseline> {
        Some(Baseline { accuracy, shards: vec![0, 1], margin: BASELINE_MARGIN, within_margin: None })
    }

    fn done(accuracy: f64) -> TaskStatus {
        TaskStatus {
            task_id: "t".into(),
            state: RunState::Done,
            spec: Default::default(),
            aggregator: "median".into(),
            rounds_done: 3,
            accuracy_by_round: vec![0.5, 0.8, accuracy],
            loss_by_round: vec![],
            clients_by_round: vec![],
            accepted: [("h1".to_string(), 3), ("h2".to_string(), 2)].into(),
            contribution_ppm: [("h1".to_string(), 2_400_000), ("h2".to_string(), 1_500_000)].into(),
            privacy: None,
            rejected: [("p".to_string(), vec!["norm 9.1 > 3x median".to_string()])].into(),
            rejected_count: [("p".to_string(), 3), ("h2".to_string(), 1)].into(),
            banned: [("p".to_string(), "round 3: 3 of 5 rejected".to_string())].into(),
            dropped: BTreeMap::new(),
            receipts: 5,
            paid: 0,
            global_hash: String::new(),
            final_accuracy: Some(accuracy),
            weights: None,
            plot: None,
            secs: 1.0,
            error: None,
        }
    }

    /// The centralized baseline trains the task's recipe on the named shards only, each in its
    /// rounds: on all of them it reaches what the digits task reaches, on one skewed shard far
    /// less; no shard (or no round), no baseline.
    #[test]
    fn the_centralized_baseline_trains_on_exactly_the_honest_shards() {
        let data = std::env::temp_dir().join(format!("ifx-fl-baseline-{}.csv.gz", std::process::id()));
        std::fs::write(&data, include_bytes!("../../../testdata/digits.csv.gz")).unwrap();
        let spec = TaskSpec {
            rounds: 20,
            data: ifx_protocols::fl::wire::DataRule { shards: 4, alpha: 0.5, seed: 42 },
            ..Default::default()
        };
        let every = |n: u64| (0..4).map(|s| (s, n)).collect::<BTreeMap<u32, u64>>();
        let all = centralized_baseline(&data, &spec, &every(20)).unwrap();
        let one = centralized_baseline(&data, &spec, &[(0, 20)].into()).unwrap();
        assert!(all > 0.93, "{all}");
        assert!(one < all - 0.05, "one skewed shard {one} against all {all}");
        assert!(centralized_baseline(&data, &spec, &BTreeMap::new()).is_err());
        assert!(centralized_baseline(&data, &spec, &every(0)).is_err());
        // A shard in fewer rounds counts for less: three shards in every round and the fourth
        // in 2 of 20 lands between the three alone and all four throughout.
        let three: BTreeMap<u32, u64> = (0..3).map(|s| (s, 20)).collect();
        let mut most = three.clone();
        most.insert(3, 2);
        let (three, most) =
            (centralized_baseline(&data, &spec, &three).unwrap(), centralized_baseline(&data, &spec, &most).unwrap());
        // (0.9053 < 0.9666 < 0.9749 on this data.)
        assert!(three < most && most < all, "{three} {most} {all}");
        std::fs::remove_file(&data).ok();
    }

    /// A private task is judged by its ε, not the accuracy target: within the budget it passes
    /// at chance accuracy; a plan over the budget (or none) fails.
    #[test]
    fn a_private_task_is_judged_by_its_epsilon() {
        let private = |spent: Option<f64>| {
            let mut t = done(0.11);
            t.spec.dp = Some(ifx_protocols::fl::dp::DpSpec { epsilon: 4.0, delta: 1e-5, clip: 1.0 });
            t.privacy = spent.map(|epsilon| ifx_protocols::fl::dp::DpPlan {
                clip: 1.0,
                noise_multiplier: 2.0,
                worker_noise_std: 1.0,
                epsilon,
                epsilon_vs_owner: 9.0,
                delta: 1e-5,
                rounds: 60,
            });
            // (The fixture's banned poisoner "p" is named as one.)
            FlSection::of(&Tracked { id: "t".into(), last: Some(t) }, "owner".into(), vec!["p".into()], &[], None)
        };
        assert!(private(Some(3.99)).ok, "{:?}", private(Some(3.99)).failures());
        for spent in [Some(4.5), None] {
            let s = private(spent);
            assert!(!s.ok);
            assert!(s.failures().iter().any(|f| f.contains("budget 4")), "{:?}", s.failures());
        }
        // Without a budget, the centralized baseline judges the accuracy (none: the run fails).
        let plain =
            FlSection::of(&Tracked { id: "t".into(), last: Some(done(0.11)) }, "o".into(), vec!["p".into()], &[], None);
        assert!(plain.failures().iter().any(|f| f.contains("no centralized baseline")), "{:?}", plain.failures());
    }

    /// The verdict judges the final accuracy against the centralized model within 1.5 points,
    /// not against the fixed 0.95: 0.94 passes beside a 0.95 baseline, 0.96 fails beside 0.98.
    #[test]
    fn the_accuracy_is_judged_against_the_centralized_baseline() {
        let judge = |acc: f64, central: f64| {
            FlSection::of(
                &Tracked { id: "t".into(), last: Some(done(acc)) },
                "o".into(),
                vec!["p".into()],
                &[],
                base(central),
            )
        };
        let s = judge(0.94, 0.95);
        assert!(s.ok, "{:?}", s.failures());
        assert_eq!(s.baseline.as_ref().unwrap().within_margin, Some(true));
        assert_eq!(s.target, FL_TARGET);
        let s = judge(0.96, 0.98);
        assert!(!s.ok);
        assert!(s.failures()[0].contains("2.00 points below the centralized model"), "{:?}", s.failures());
        assert!(judge(0.9655, 0.98).ok, "within the margin passes");
    }

    /// A copy that earned about half of unique data passes; one that earned as much fails.
    #[test]
    fn a_copy_must_earn_clearly_less_than_unique_data() {
        let with = |copier: u64| {
            let mut t = done(0.97);
            t.contribution_ppm =
                [("c", copier), ("o", 400_000), ("u1", 900_000), ("u2", 700_000)].map(|(p, v)| (p.into(), v)).into();
            FlSection::of(
                &Tracked { id: "t".into(), last: Some(t) },
                "owner".into(),
                vec!["p".into()],
                &[],
                base(0.975),
            )
            .with_copies(&[("c".into(), "o".into())], &["u1".into(), "u2".into()])
        };
        let s = with(400_000);
        assert!(s.ok, "{:?}", s.failures());
        assert_eq!(s.copies[0].unique_mean_ppm, 800_000);
        let s = with(700_000);
        assert!(!s.ok);
        assert!(s.failures().iter().any(|f| f.contains("not clearly less")), "{:?}", s.failures());
    }

    #[test]
    fn a_banned_poisoner_is_caught_and_a_false_positive_is_reported_not_failed() {
        let task = Tracked { id: "t".into(), last: Some(done(0.97)) };
        let audits = [AuditStats { matched: 3, ..Default::default() }, AuditStats { matched: 2, ..Default::default() }];
        let s = FlSection::of(&task, "owner".into(), vec!["p".into()], &audits, base(0.975));
        assert!(s.ok, "{s:?}");
        assert_eq!(s.poisoners_caught, ["p"]);
        assert_eq!(s.honest_rejected, ["h2"]);
        assert_eq!(s.audits_matched, 5);
        assert!(s.failures().is_empty());
    }

    #[test]
    fn low_accuracy_an_audit_mismatch_and_a_silent_owner_fail_the_run() {
        let task = Tracked { id: "t".into(), last: Some(done(0.9)) };
        let s = FlSection::of(
            &task,
            "owner".into(),
            vec!["p".into()],
            &[AuditStats { mismatched: 1, ..Default::default() }],
            base(0.975),
        );
        let f = s.failures();
        assert!(!s.ok);
        assert!(f.iter().any(|x| x.contains("7.50 points below the centralized model")), "{f:?}");
        assert!(f.iter().any(|x| x.contains("did not recompute")), "{f:?}");
        // A poisoner credited with a contribution fails the run (issue #20: it earns nothing).
        let mut paid = done(0.97);
        paid.contribution_ppm.insert("p".into(), 10);
        let s =
            FlSection::of(&Tracked { id: "t".into(), last: Some(paid) }, "owner".into(), vec!["p".into()], &[], None);
        assert_eq!(s.poisoners_paid, ["p"]);
        assert!(s.failures().iter().any(|x| x.contains("credited")), "{:?}", s.failures());
        let s = FlSection::of(&Tracked { id: "t".into(), last: None }, "owner".into(), vec![], &[], None);
        assert!(
            s.failures()[0].contains("running after 0 rounds (the task owner never reported the task)"),
            "{:?}",
            s.failures()
        );
    }
}
