//! The `por` section: the verifiers' challenge results (`GET /por/stats`), summed per worker,
//! against the nodes that were told to cheat; and the standing node 0's ledger gives.

use std::collections::BTreeMap;

use ifx_protocols::api::{PorStats, Standings};
use serde::Serialize;

/// One worker across every verifier.
#[derive(Debug, Default, Serialize, Clone, PartialEq)]
pub struct WorkerTally {
    pub passed: u64,
    pub failed: u64,
    /// Answers late or missing (QoS, not a PoR failure).
    pub timeouts: u64,
    /// Verifiers whose verdict on it is decided (they saw a failure, or passed both an image
    /// challenge and a benchmark: a cheat may show in one kind only).
    pub verifiers: u64,
    /// Of those, the ones that saw it fail.
    pub failed_by: u64,
    /// The last failure a verifier gave for it.
    pub last_failure: Option<String>,
}

/// `por` section of the report.
#[derive(Debug, Serialize)]
pub struct PorSection {
    /// Challenges issued (answered or not) by all verifiers.
    pub challenges: u64,
    pub passed: u64,
    pub failed: u64,
    /// Per worker peer id.
    pub per_node: BTreeMap<String, WorkerTally>,
    /// Peer ids of the nodes that ran a cheat mode.
    pub cheaters: Vec<String>,
    /// Peer ids failed by a strict majority of the verifiers whose verdict on them is decided.
    pub caught: Vec<String>,
    /// Honest peer ids with a failed verdict (must be empty).
    pub honest_failed: Vec<String>,
    /// Verifier time / worker render time over all challenges.
    pub verify_cost_ratio: Option<f64>,
    /// Workers caught according to the PoR verdicts in node 0's ledger (attested per finished
    /// epoch, so the last epoch's challenges are not in it yet).
    pub ledger_caught: Vec<String>,
}

impl PorSection {
    /// From each running verifier's stats, the cheaters' peer ids and node 0's standings.
    pub fn of(stats: &[PorStats], mut cheaters: Vec<String>, standings: Option<&Standings>) -> Self {
        let mut per: BTreeMap<String, WorkerTally> = BTreeMap::new();
        let (mut verify_us, mut render_us) = (0u64, 0u64);
        for v in stats {
            for (peer, w) in &v.workers {
                let e = per.entry(peer.clone()).or_default();
                e.passed += w.passed;
                e.failed += w.failed;
                e.timeouts += w.timeouts;
                if w.failed > 0 || (w.passed > w.benches && w.benches > 0) {
                    e.verifiers += 1;
                    if w.failed > 0 {
                        e.failed_by += 1;
                    }
                }
                if w.last_failure.is_some() {
                    e.last_failure.clone_from(&w.last_failure);
                }
                verify_us = verify_us.saturating_add(w.verify_us);
                render_us = render_us.saturating_add(w.worker_render_us);
            }
        }
        cheaters.sort();
        let caught = per.iter().filter(|(_, e)| e.failed_by * 2 > e.verifiers).map(|(p, _)| p.clone()).collect();
        let honest_failed =
            per.iter().filter(|(p, e)| e.failed > 0 && !cheaters.contains(p)).map(|(p, _)| p.clone()).collect();
        PorSection {
            challenges: per.values().map(|e| e.passed + e.failed + e.timeouts).sum(),
            passed: per.values().map(|e| e.passed).sum(),
            failed: per.values().map(|e| e.failed).sum(),
            per_node: per,
            cheaters,
            caught,
            honest_failed,
            verify_cost_ratio: (render_us > 0).then(|| verify_us as f64 / render_us as f64),
            ledger_caught: standings
                .map(|s| s.iter().filter(|(_, v)| v.caught).map(|(k, _)| k.clone()).collect())
                .unwrap_or_default(),
        }
    }

    /// What makes the run fail.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.caught != self.cheaters {
            f.push(format!("cheaters {:?} but caught {:?}", self.cheaters, self.caught));
        }
        for peer in &self.honest_failed {
            let why = self.per_node.get(peer).and_then(|t| t.last_failure.as_deref()).unwrap_or("?");
            f.push(format!("honest node {peer} failed proof of rendering: {why}"));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use ifx_protocols::api::PorWorker;

    use super::*;

    fn stats(workers: &[(&str, PorWorker)]) -> PorStats {
        PorStats {
            verifier: true,
            workers: workers.iter().map(|(p, w)| (p.to_string(), w.clone())).collect(),
            ..Default::default()
        }
    }

    fn passed(images: u64, benches: u64) -> PorWorker {
        PorWorker { passed: images + benches, benches, verify_us: 10, worker_render_us: 1000, ..Default::default() }
    }

    fn failed(why: &str) -> PorWorker {
        PorWorker { failed: 1, last_failure: Some(why.into()), ..Default::default() }
    }

    #[test]
    fn a_cheater_is_caught_by_a_majority_of_decided_verifiers() {
        // Two verifiers: both fail the cheater; one has decided on the honest worker, the
        // other only saw image challenges (undecided).
        let v1 = stats(&[("cheat", failed("constant image")), ("honest", passed(2, 1))]);
        let v2 = stats(&[("cheat", failed("watermark missing")), ("honest", passed(3, 0))]);
        let s = PorSection::of(&[v1, v2], vec!["cheat".into()], None);
        assert_eq!(s.caught, ["cheat"]);
        assert!(s.honest_failed.is_empty());
        assert_eq!(s.per_node["honest"].verifiers, 1);
        assert_eq!(s.per_node["cheat"].failed_by, 2);
        assert_eq!((s.challenges, s.passed, s.failed), (8, 6, 2));
        assert_eq!(s.verify_cost_ratio, Some(0.01));
        assert!(s.failures().is_empty());
    }

    #[test]
    fn an_honest_failure_names_its_reason_and_a_missed_cheater_fails_the_run() {
        let v1 = stats(&[("honest", failed("tile differs at (3, 4)")), ("cheat", passed(1, 1))]);
        let s = PorSection::of(&[v1], vec!["cheat".into()], None);
        let f = s.failures();
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].contains("but caught [\"honest\"]"), "{f:?}");
        assert!(f[1].contains("tile differs at (3, 4)"), "{f:?}");
    }
}
