//! What a verifier records of its challenges (per worker: counts, latency, IB samples, the
//! timing judgement's best ratio), served by `GET /por/stats`, and the `por` topic
//! announcements it made or received, served by `GET /por/announcements`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use ifx_protocols::por::PorError;
use libp2p::PeerId;
use serde::Serialize;

use crate::network::author_peer_id;

/// What one verifier has seen of one worker.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerStats {
    pub challenges: u64,
    pub passed: u64,
    pub failed: u64,
    /// Answers that came too late or never (QoS failures).
    pub timeouts: u64,
    pub last_failure: Option<String>,
    pub mean_latency_ms: f64,
    pub(super) latency_ms_sum: f64,
    /// Time spent verifying, and what the worker said rendering took (µs).
    pub verify_us: u64,
    pub worker_render_us: u64,
    /// Benchmark challenges issued, answered correctly, and the latest IB estimate x 1000.
    pub bench_attempts: u64,
    pub benches: u64,
    /// IB x 1000: the median of the last benchmark samples.
    pub ib_milli: u64,
    #[serde(skip)]
    pub(super) ib_samples: VecDeque<u64>,
    /// Smallest observed / claimed benchmark time so far (an honest worker's is near 1).
    pub best_time_ratio: Option<f64>,
    /// Benchmarks whose claimed time was judged.
    pub judged_benches: u64,
    /// The worker's latest signed answer per epoch of its own (the last few), the proof a
    /// verdict of that epoch carries.
    #[serde(skip)]
    pub proofs: BTreeMap<u64, ifx_protocols::por::proof::AnswerProof>,
}

/// Epochs of proofs kept per worker.
const PROOF_EPOCHS: usize = 4;

impl WorkerStats {
    /// Keeps `proof` as the latest of its epoch.
    pub fn keep_proof(&mut self, proof: ifx_protocols::por::proof::AnswerProof) {
        self.proofs.insert(proof.epoch, proof);
        while self.proofs.len() > PROOF_EPOCHS {
            self.proofs.pop_first();
        }
    }
}

/// A verifier's results, by worker peer id (for `GET /por/stats`).
#[derive(Clone, Default)]
pub struct PorStats(Arc<Mutex<BTreeMap<String, WorkerStats>>>);

/// Benchmark samples the IB estimate is the median of (repeated measurements: one slow sample
/// does not move it).
const IB_SAMPLES: usize = 5;

/// Recent `por` topic announcements (this node's own and those gossiped to it), newest last.
#[derive(Clone, Default)]
pub struct Announcements(Arc<Mutex<VecDeque<AnnouncementView>>>);

/// One announcement as `GET /por/announcements` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AnnouncementView {
    pub verifier: String,
    pub worker: String,
    #[serde(flatten)]
    pub announcement: ifx_protocols::por::announce::Announcement,
    pub received_unix_ms: u64,
}

/// Announcements kept.
const ANNOUNCEMENTS_KEPT: usize = 256;

impl Announcements {
    /// Records one announcement by `verifier`.
    pub fn push(&self, verifier: [u8; 32], a: ifx_protocols::por::announce::Announcement) {
        let peer = |k: &[u8; 32]| author_peer_id(k).map(|p| p.to_string()).unwrap_or_else(|| hex::encode(k));
        let view = AnnouncementView {
            verifier: peer(&verifier),
            worker: peer(&a.worker),
            announcement: a,
            received_unix_ms: crate::unix_time_us() / 1000,
        };
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(view);
        if q.len() > ANNOUNCEMENTS_KEPT {
            q.pop_front();
        }
    }

    /// A copy, oldest first.
    pub fn snapshot(&self) -> Vec<AnnouncementView> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

impl WorkerStats {
    /// Records a benchmark answered in `ms`: its IB x 1000, or why it failed.
    pub fn record_bench(&mut self, ms: f64, result: Result<u64, PorError>) {
        self.challenges += 1;
        self.bench_attempts += 1;
        self.latency_ms_sum += ms;
        match result {
            Ok(ib) => {
                self.passed += 1;
                self.benches += 1;
                self.ib_samples.push_back(ib);
                if self.ib_samples.len() > IB_SAMPLES {
                    self.ib_samples.pop_front();
                }
                let mut sorted: Vec<u64> = self.ib_samples.iter().copied().collect();
                sorted.sort_unstable();
                self.ib_milli = sorted[sorted.len() / 2];
            }
            Err(reason) => {
                self.failed += 1;
                self.last_failure = Some(reason.0);
            }
        }
    }
}

impl WorkerStats {
    /// What `GET /por/stats` shows of it.
    pub fn view(&self) -> ifx_protocols::api::PorWorker {
        ifx_protocols::api::PorWorker {
            challenges: self.challenges,
            passed: self.passed,
            failed: self.failed,
            timeouts: self.timeouts,
            last_failure: self.last_failure.clone(),
            mean_latency_ms: self.mean_latency_ms,
            verify_us: self.verify_us,
            worker_render_us: self.worker_render_us,
            bench_attempts: self.bench_attempts,
            benches: self.benches,
            ib_milli: self.ib_milli,
            best_time_ratio: self.best_time_ratio,
            judged_benches: self.judged_benches,
        }
    }
}

impl PorStats {
    /// A copy of the table.
    pub fn snapshot(&self) -> BTreeMap<String, WorkerStats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Updates `peer`'s line with `f`, then its mean latency.
    pub(super) fn record<R>(&self, peer: &PeerId, f: impl FnOnce(&mut WorkerStats) -> R) -> R {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let w = m.entry(peer.to_string()).or_default();
        let r = f(w);
        w.mean_latency_ms = if w.challenges > 0 { w.latency_ms_sum / w.challenges as f64 } else { 0.0 };
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ib_estimate_is_the_median_of_the_last_five_benchmarks() {
        let mut w = WorkerStats::default();
        for ib in [1_000, 9_000, 2_000, 3_000, 2_500, 2_600, 2_700] {
            w.record_bench(10.0, Ok(ib));
        }
        // The last five: 2000, 3000, 2500, 2600, 2700.
        assert_eq!(w.ib_milli, 2_600);
        w.record_bench(10.0, Err(PorError::check("row 3 differs")));
        assert_eq!((w.challenges, w.bench_attempts, w.benches, w.failed), (8, 8, 7, 1));
        assert_eq!(w.last_failure.as_deref(), Some("row 3 differs"));
    }
}
