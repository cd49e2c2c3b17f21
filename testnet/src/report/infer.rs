//! The `infer` section: the inference job node 0 owned (`GET /infer/{id}`), judged against the
//! nodes told to answer batches wrongly: each must be caught (with evidence, slashing is the
//! settlement section's), no honest worker may be, the job must finish, and more than one
//! worker must have served it when more than one honest worker could.

use std::collections::BTreeMap;

use ifx_protocols::api::{InferJobStatus, InferWorker, RunState};
use serde::Serialize;

use crate::watch::Tracked;

/// `infer` section of the report.
#[derive(Debug, Serialize)]
pub struct InferSection {
    pub job_id: String,
    pub ok: bool,
    pub state: RunState,
    pub rows: u64,
    pub batches: u64,
    pub batches_done: u64,
    pub secs: f64,
    /// Per worker (peer id): batches, rows, p50 and p99 latency, rows per second.
    pub workers: BTreeMap<String, InferWorker>,
    /// Batches the owner re-executed, and that time as a share of the job's.
    pub verified: u64,
    pub verify_share: f64,
    /// Peer ids of the nodes that ran an inference cheat mode, and those the owner caught.
    pub cheaters: Vec<String>,
    pub caught: BTreeMap<String, String>,
    /// Cheaters that got no batch at all (the job ended first): they did no harm, and could not
    /// be caught.
    pub idle_cheaters: Vec<String>,
    pub honest_caught: Vec<String>,
    /// Honest workers that could serve (running inference-honest workers), and how many did.
    pub honest_workers: usize,
    pub served_by: usize,
    pub receipts: u64,
    pub paid: u64,
    /// The CNN's test accuracy as the harness trained it (the model the job served).
    pub model_accuracy: Option<f64>,
    pub error: Option<String>,
}

impl InferSection {
    /// The job as its owner last reported it, with the inference cheaters' peer ids, the
    /// number of running workers that serve honestly and the model's accuracy.
    pub fn of(
        job: &Tracked<InferJobStatus>,
        cheaters: Vec<String>,
        honest_workers: usize,
        accuracy: Option<f64>,
    ) -> Self {
        let mut s = Self {
            job_id: job.id.clone(),
            ok: false,
            state: RunState::Running,
            rows: 0,
            batches: 0,
            batches_done: 0,
            secs: 0.0,
            workers: BTreeMap::new(),
            verified: 0,
            verify_share: 0.0,
            cheaters,
            caught: BTreeMap::new(),
            idle_cheaters: Vec::new(),
            honest_caught: Vec::new(),
            honest_workers,
            served_by: 0,
            receipts: 0,
            paid: 0,
            model_accuracy: accuracy,
            error: Some("the job owner never reported the job".into()),
        };
        let Some(j) = &job.last else { return s };
        s.state = j.state;
        s.rows = j.rows;
        s.batches = j.batches;
        s.batches_done = j.batches_done;
        s.secs = j.secs;
        s.workers = j.workers.clone();
        s.verified = j.verified;
        s.verify_share = if j.secs > 0.0 { j.verify_secs / j.secs } else { 0.0 };
        s.caught = j.caught.clone();
        s.honest_caught = j.caught.keys().filter(|p| !s.cheaters.contains(p)).cloned().collect();
        s.idle_cheaters = s
            .cheaters
            .iter()
            .filter(|c| !j.caught.contains_key(*c) && j.workers.get(*c).is_none_or(|w| w.batches == 0 && w.failed == 0))
            .cloned()
            .collect();
        s.served_by = j.workers.values().filter(|w| w.batches > 0).count();
        s.receipts = j.receipts;
        s.paid = j.paid;
        s.error = j.error.clone();
        s.ok = s.failures().is_empty();
        s
    }

    /// What makes the run fail.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.state != RunState::Done {
            f.push(format!(
                "the inference job did not complete: {} ({}/{} batches){}",
                self.state,
                self.batches_done,
                self.batches,
                self.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ));
        }
        // A cheater whose answers were taken without being caught is the failure (each
        // worker's first batch is always re-executed, so that cannot happen by chance).
        let missed: Vec<&String> =
            self.cheaters.iter().filter(|c| !self.caught.contains_key(*c) && !self.idle_cheaters.contains(c)).collect();
        if !missed.is_empty() {
            f.push(format!("inference cheaters not caught: {missed:?}"));
        }
        for p in &self.honest_caught {
            f.push(format!("honest worker {p} caught answering inference wrongly: {}", self.caught[p]));
        }
        // Two batches in flight per worker: a job of at least four batches reaches two workers.
        if self.state == RunState::Done && self.honest_workers >= 2 && self.batches >= 4 && self.served_by < 2 {
            f.push(format!("the inference job was served by {} worker(s) of {}", self.served_by, self.honest_workers));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(caught: &[(&str, &str)], served: &[&str]) -> InferJobStatus {
        InferJobStatus {
            job_id: "j".into(),
            state: RunState::Done,
            model: ifx_protocols::infer::ModelSpec {
                arch: ifx_protocols::infer::Arch::Cnn,
                weights: [0; 32],
                len: 100,
            },
            rows: 1797,
            batches: 57,
            batches_done: 57,
            verified: 5,
            verify_secs: 0.1,
            workers: served
                .iter()
                .map(|p| (p.to_string(), InferWorker { batches: 10, rows: 320, ..Default::default() }))
                .collect(),
            caught: caught.iter().map(|(p, w)| (p.to_string(), w.to_string())).collect(),
            receipts: 57,
            paid: 9,
            outputs: None,
            secs: 2.0,
            error: None,
        }
    }

    fn of(s: InferJobStatus, cheaters: &[&str], honest: usize) -> InferSection {
        let t = Tracked { id: "j".into(), last: Some(s) };
        InferSection::of(&t, cheaters.iter().map(|c| c.to_string()).collect(), honest, Some(0.95))
    }

    #[test]
    fn cheaters_caught_and_several_servers_pass() {
        let s = of(status(&[("r", "row 0: class 3"), ("c", "row 1 class 2")], &["a", "b"]), &["r", "c"], 2);
        assert!(s.ok, "{:?}", s.failures());
        assert_eq!(s.served_by, 2);
        assert!((s.verify_share - 0.05).abs() < 1e-9);
    }

    #[test]
    fn a_missed_cheater_an_honest_catch_and_one_server_fail() {
        let mut served = status(&[("a", "row 0: class 3")], &["b"]);
        served.workers.insert("r".into(), InferWorker { batches: 3, rows: 96, ..Default::default() });
        let s = of(served, &["r"], 2);
        let f = s.failures();
        assert!(f.iter().any(|x| x.contains("not caught: [\"r\"]")), "{f:?}");
        assert!(f.iter().any(|x| x.contains("honest worker a")), "{f:?}");
        // One worker of two served the whole job.
        let f = of(status(&[], &["b"]), &[], 2).failures();
        assert!(f.iter().any(|x| x.contains("served by 1 worker(s) of 2")), "{f:?}");
        let t = Tracked::<InferJobStatus> { id: "j".into(), last: None };
        assert!(!InferSection::of(&t, vec![], 2, None).ok);
        // A cheater that got no batch is idle, not missed.
        let s = of(status(&[], &["a", "b"]), &["r"], 2);
        assert_eq!(s.idle_cheaters, ["r"]);
        assert!(s.ok, "{:?}", s.failures());
    }
}
