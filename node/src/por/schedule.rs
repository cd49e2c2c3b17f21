//! A verifier's PoR policy, sans I/O: which worker to challenge next and with what, how a
//! benchmark's timing becomes an IB and a forged-time verdict. Inputs are what the verifier
//! recorded and what it measured (and a random roll); outputs are decisions. The challenger
//! (`challenger.rs`) does the I/O around them.

use std::collections::{BTreeMap, BTreeSet};

use libp2p::PeerId;

use super::stats::WorkerStats;

/// Observed time above this multiple of the claimed one, in every benchmark of a worker, is a
/// forged claim. One sample can be slowed by scheduling; the best of several cannot all be.
pub const MAX_TIME_RATIO: f64 = 4.0;
/// Benchmarks a forged-time verdict needs.
pub const JUDGED_MIN: u64 = 2;

/// What to challenge a worker with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    Image,
    Bench,
}

/// What to ask a worker next, from what this verifier asked it so far: an image challenge
/// first (in a big network a verifier reaches each worker rarely, and most cheats show only in
/// images), a benchmark next (a view is decided only once both kinds passed), a second
/// benchmark (a forged time is judged on two), then one benchmark in three (`one_in_three`).
pub fn next_kind(seen: Option<&WorkerStats>, one_in_three: bool) -> ChallengeKind {
    let benches = seen.map_or(0, |w| w.bench_attempts);
    let images = seen.map_or(0, |w| w.challenges.saturating_sub(w.bench_attempts));
    match (images, benches) {
        (0, _) => ChallengeKind::Image,
        (_, b) if b < JUDGED_MIN || one_in_three => ChallengeKind::Bench,
        _ => ChallengeKind::Image,
    }
}

/// A worker the verifier knows of.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub peer: PeerId,
    /// When its last heartbeat arrived (Unix ms).
    pub last_seen_unix_ms: u64,
    /// Whether a connection to it is open.
    pub connected: bool,
}

/// The worker to challenge next: among workers connected now or heard from since
/// `heard_since_ms` (in a big network a node keeps only some connections open, and a request
/// to any other worker dials it) and not `busy` with a challenge of ours, the least challenged
/// one (so every worker is checked soon and cheaters cannot hide in small samples); ties broken
/// by `roll`, a random number, so the timing and the order stay unpredictable.
pub fn pick(
    candidates: &[Candidate],
    busy: &BTreeSet<PeerId>,
    seen: &BTreeMap<String, WorkerStats>,
    heard_since_ms: u64,
    roll: u64,
) -> Option<PeerId> {
    let workers: Vec<PeerId> = candidates
        .iter()
        .filter(|c| c.last_seen_unix_ms >= heard_since_ms || c.connected)
        .filter(|c| !busy.contains(&c.peer))
        .map(|c| c.peer)
        .collect();
    let count = |p: &PeerId| seen.get(&p.to_string()).map_or(0, |w| w.challenges + w.timeouts);
    let least = workers.iter().map(count).min()?;
    let pool: Vec<PeerId> = workers.into_iter().filter(|p| count(p) == least).collect();
    Some(pool[(roll % pool.len() as u64) as usize])
}

/// A worker whose claimed benchmark times were judged forged.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("benchmark time forged: observed at least {best:.1}x the claimed time in all of {judged} judged benchmarks")]
pub struct ForgedTime {
    pub best: f64,
    pub judged: u64,
}

impl WorkerStats {
    /// Folds a benchmark's observed / claimed time into the worker's best; once enough samples
    /// were judged, a best still above [`MAX_TIME_RATIO`] is a forged claim.
    pub fn judge_time(&mut self, ratio: f64) -> Result<(), ForgedTime> {
        self.judged_benches += 1;
        let best = self.best_time_ratio.map_or(ratio, |b| b.min(ratio));
        self.best_time_ratio = Some(best);
        if self.judged_benches >= JUDGED_MIN && best > MAX_TIME_RATIO {
            return Err(ForgedTime { best, judged: self.judged_benches });
        }
        Ok(())
    }
}

/// The compute time of a benchmark: its round trip less the path delay (the largest of the
/// connection's RTT and the echoes just before and after), but never less than half the round
/// trip: a worker that slows its echoes on purpose gains at most a factor 2 on its IB, and
/// cannot make a forged claim look honest. At least 1 µs.
pub fn observed_us(round_trip_us: u64, rtt_us: u64, echo_before_us: u64, echo_after_us: u64) -> u64 {
    let noise_us = rtt_us.max(echo_before_us).max(echo_after_us);
    round_trip_us.saturating_sub(noise_us.min(round_trip_us / 2)).max(1)
}

/// IB x 1000 of `iters` iterations in `observed_us`, against `reference` iterations per second
/// for IB 1.0.
pub fn ib_milli(iters: u64, observed_us: u64, reference: u64) -> u64 {
    let rate = iters.saturating_mul(1_000_000) / observed_us.max(1);
    rate.saturating_mul(1000) / reference.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_times_are_judged_on_the_best_of_two_samples() {
        let (mut honest, mut forger) = (WorkerStats::default(), WorkerStats::default());
        // An honest worker slowed once by scheduling (6x) is not judged on that sample alone,
        // and its best sample clears it.
        assert!(honest.judge_time(6.0).is_ok());
        assert!(honest.judge_time(1.3).is_ok());
        assert!(honest.judge_time(9.0).is_ok());
        // A forger claiming a tenth of its time is caught at the second benchmark.
        assert!(forger.judge_time(10.2).is_ok());
        let e = forger.judge_time(9.7).unwrap_err().to_string();
        assert!(e.contains("forged") && e.contains("2 judged"), "{e}");
    }

    #[test]
    fn an_image_challenge_comes_first_then_two_benchmarks() {
        use ChallengeKind::{Bench, Image};
        let after = |images: u64, benches: u64| WorkerStats {
            challenges: images + benches,
            bench_attempts: benches,
            ..Default::default()
        };
        assert_eq!(next_kind(None, true), Image);
        // An image timed out (not counted) or never asked: still an image first.
        assert_eq!(next_kind(Some(&after(0, 0)), true), Image);
        assert_eq!(next_kind(Some(&after(1, 0)), false), Bench);
        assert_eq!(next_kind(Some(&after(1, 1)), false), Bench);
        // Then one benchmark in three.
        assert_eq!(next_kind(Some(&after(1, 2)), false), Image);
        assert_eq!(next_kind(Some(&after(4, 2)), true), Bench);
    }

    #[test]
    fn the_least_challenged_reachable_idle_worker_is_picked() {
        let ps: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        let now = 100_000;
        let c = |i: usize, seen: u64, connected: bool| Candidate { peer: ps[i], last_seen_unix_ms: seen, connected };
        // 0: heard lately; 1: silent but connected; 2: silent and not connected (gone);
        // 3: heard lately but busy with our challenge; 4: heard lately, challenged twice.
        let cands = [c(0, now, false), c(1, 0, true), c(2, 0, false), c(3, now, false), c(4, now, true)];
        let busy: BTreeSet<PeerId> = [ps[3]].into();
        let mut seen = BTreeMap::new();
        seen.insert(ps[4].to_string(), WorkerStats { challenges: 1, timeouts: 1, ..Default::default() });
        seen.insert(ps[0].to_string(), WorkerStats { challenges: 1, ..Default::default() });
        // Least challenged among {0, 1, 4}: 1 (never asked), whatever the roll.
        for roll in 0..10 {
            assert_eq!(pick(&cands, &busy, &seen, now - 15_000, roll), Some(ps[1]));
        }
        // Once 1 was asked as often as 0, the roll breaks the tie between them, and both come up.
        seen.insert(ps[1].to_string(), WorkerStats { challenges: 1, ..Default::default() });
        let picked: BTreeSet<PeerId> = (0..10).filter_map(|r| pick(&cands, &busy, &seen, now - 15_000, r)).collect();
        assert_eq!(picked, [ps[0], ps[1]].into());
        // Nobody reachable and idle: nothing to do.
        assert_eq!(pick(&[c(2, 0, false), c(3, now, false)], &busy, &seen, now - 15_000, 7), None);
    }

    #[test]
    fn path_delay_is_taken_off_at_most_half_the_round_trip() {
        // 10 ms round trip, echoes of 2 and 3 ms: 7 ms of compute.
        assert_eq!(observed_us(10_000, 1_000, 2_000, 3_000), 7_000);
        // Echoes slowed to 9 ms on purpose: only half the round trip comes off.
        assert_eq!(observed_us(10_000, 0, 9_000, 0), 5_000);
        assert_eq!(observed_us(0, 0, 0, 0), 1);
        // 1M iterations in 0.5 s against a 1M/s reference: IB 2.0.
        assert_eq!(ib_milli(1_000_000, 500_000, 1_000_000), 2_000);
        // Extreme numbers saturate instead of overflowing.
        assert_eq!(ib_milli(u64::MAX, 1, 1), u64::MAX);
    }
}
