//! Which workers stand as caught, from the verifiers' `PorVerdicts` in the ledger: a verifier's
//! view of a worker is decided once it saw a failure, or passed it on both an image challenge
//! and a benchmark (a cheat may show in one kind only); a worker is caught when a strict
//! majority of the verifiers with a decided view saw it fail. Deterministic (sorted maps), so
//! every node with the same ledger reaches the same standing.

use std::collections::{BTreeMap, BTreeSet};

use crate::ledger::PorVerdicts;

/// A worker's standing across verifiers.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Standing {
    /// Verifiers with a decided view.
    pub decided: u32,
    /// Of those, the ones that saw a failure.
    pub failed_by: u32,
    pub caught: bool,
}

/// One verifier's counts for one worker: passed image challenges, passed benchmarks, failures.
pub type View = (u64, u64, u64);

/// Each verifier's summed view of each worker, keyed `(worker, verifier)`.
pub fn views<'a>(
    verdicts: impl IntoIterator<Item = ([u8; 32], &'a PorVerdicts)>,
) -> BTreeMap<([u8; 32], [u8; 32]), View> {
    let mut views: BTreeMap<([u8; 32], [u8; 32]), View> = BTreeMap::new();
    for (verifier, v) in verdicts {
        for w in &v.workers {
            let e = views.entry((w.worker, verifier)).or_default();
            e.0 += w.passed.saturating_sub(w.benches) as u64;
            e.1 += w.benches as u64;
            e.2 += w.failed as u64;
        }
    }
    views
}

/// A view's decision: `Some(true)` saw a failure, `Some(false)` passed both kinds, `None`
/// not decided yet.
pub fn decision((images, benches, failed): View) -> Option<bool> {
    if failed > 0 {
        Some(true)
    } else if images > 0 && benches > 0 {
        Some(false)
    } else {
        None
    }
}

/// Standings of every worker mentioned in `verdicts` (pairs of verifier key and body).
pub fn standings<'a>(verdicts: impl IntoIterator<Item = ([u8; 32], &'a PorVerdicts)>) -> BTreeMap<[u8; 32], Standing> {
    standings_of(&views(verdicts))
}

/// Standings from views computed by [`views`].
pub fn standings_of(views: &BTreeMap<([u8; 32], [u8; 32]), View>) -> BTreeMap<[u8; 32], Standing> {
    let mut out: BTreeMap<[u8; 32], Standing> = BTreeMap::new();
    let mut workers = BTreeSet::new();
    for ((worker, _), view) in views {
        workers.insert(*worker);
        let s = out.entry(*worker).or_default();
        if let Some(failed) = decision(*view) {
            s.decided += 1;
            if failed {
                s.failed_by += 1;
            }
        }
    }
    for w in workers {
        let s = out.get_mut(&w).expect("inserted");
        s.caught = s.failed_by * 2 > s.decided;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::WorkerVerdict;

    fn v(worker: u8, passed: u32, benches: u32, failed: u32) -> WorkerVerdict {
        WorkerVerdict {
            worker: [worker; 32],
            passed,
            failed,
            timeouts: 0,
            mean_latency_ms: 10,
            benches,
            ib_milli: 0,
            last_failure: String::new(),
            proof: None,
        }
    }

    #[test]
    fn a_majority_of_decided_verifiers_catches() {
        let a = PorVerdicts { epoch: 1, workers: vec![v(1, 2, 1, 0), v(2, 1, 1, 0), v(3, 2, 1, 0)] };
        let b = PorVerdicts { epoch: 1, workers: vec![v(1, 0, 0, 2), v(2, 0, 0, 1), v(3, 3, 1, 0)] };
        let c = PorVerdicts { epoch: 2, workers: vec![v(1, 0, 0, 1)] };
        let s = standings([([10; 32], &a), ([11; 32], &b), ([12; 32], &c)]);
        // Worker 1: A passed both kinds, B and C saw failures: 2 of 3 -> caught.
        assert_eq!(s[&[1; 32]], Standing { decided: 3, failed_by: 2, caught: true });
        // Worker 2: A only benchmarked it (undecided), B failed it: 1 of 1 -> caught.
        assert_eq!(s[&[2; 32]], Standing { decided: 1, failed_by: 1, caught: true });
        // Worker 3: passed everywhere.
        assert_eq!(s[&[3; 32]], Standing { decided: 2, failed_by: 0, caught: false });
        // Order of the input does not matter.
        assert_eq!(standings([([12; 32], &c), ([11; 32], &b), ([10; 32], &a)]), s);
        // One verifier against one: no strict majority.
        let d = PorVerdicts { epoch: 1, workers: vec![v(4, 2, 1, 0)] };
        let e = PorVerdicts { epoch: 1, workers: vec![v(4, 0, 0, 1)] };
        assert!(!standings([([1; 32], &d), ([2; 32], &e)])[&[4; 32]].caught);
    }
}
