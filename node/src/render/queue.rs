//! A render job's tile queue, sans I/O: which tiles go to which workers (at most [`IN_FLIGHT`]
//! each, one to a worker whose attested link is slow: [`allowances`]; first-queued first), what an answer does (accepted, or the tile goes back to the
//! front of the queue and its worker sits out [`BENCH`]), and when the job is done. The owner
//! (`owner.rs`) does the requests, receipts and timers around it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Tiles in flight per worker.
pub const IN_FLIGHT: usize = 2;
/// A worker whose attested link (its slower direction) is under the median of the job's
/// measured workers divided by this gets one tile at a time: its tiles wait on the wire, not
/// on its GPU, and a second one in flight would only hold a tile back from a faster worker.
/// A ratio, not a rate: what is slow depends on the network the job runs on.
pub const SLOW_RATIO: u32 = 4;
/// A worker that failed a tile gets no new tile for this long.
pub const BENCH: Duration = Duration::from_secs(10);

/// The tiles of one job and where each is.
#[derive(Debug)]
pub struct TileQueue {
    total: usize,
    queue: VecDeque<usize>,
    busy: HashMap<PeerId, usize>,
    benched: HashMap<PeerId, Instant>,
    /// Workers caught delivering a bad tile: no more tiles of this job.
    banned: std::collections::HashSet<PeerId>,
    done: usize,
}

impl TileQueue {
    /// A job of `total` tiles, all queued in order.
    pub fn new(total: usize) -> Self {
        Self {
            total,
            queue: (0..total).collect(),
            busy: HashMap::new(),
            benched: HashMap::new(),
            banned: Default::default(),
            done: 0,
        }
    }

    /// Gives `peer` no more tiles of this job (it delivered a bad one).
    pub fn ban(&mut self, peer: PeerId) {
        self.banned.insert(peer);
    }

    /// Whether every tile was accepted.
    pub fn is_done(&self) -> bool {
        self.done >= self.total
    }

    /// Tiles accepted so far.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Whether tiles wait for a worker.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Hands queued tiles to `workers` (each with its allowance of tiles in flight, see
    /// [`allowances`]) that are not benched at `now`, in the workers' order: (worker, tile
    /// index) pairs to request.
    pub fn assign(&mut self, workers: &[(PeerId, usize)], now: Instant) -> Vec<(PeerId, usize)> {
        let mut out = Vec::new();
        for (peer, allowed) in workers {
            if self.banned.contains(peer) || self.benched.get(peer).is_some_and(|t| now.duration_since(*t) < BENCH) {
                continue;
            }
            while self.busy.get(peer).copied().unwrap_or(0) < *allowed {
                let Some(i) = self.queue.pop_front() else { return out };
                *self.busy.entry(*peer).or_default() += 1;
                out.push((*peer, i));
            }
        }
        out
    }

    /// `peer` answered tile `i` at `now`: accepted (`ok`), or the tile goes back to the front of
    /// the queue and the worker is benched.
    pub fn answered(&mut self, peer: PeerId, i: usize, ok: bool, now: Instant) {
        if let Some(n) = self.busy.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
        if ok {
            self.done += 1;
        } else {
            self.benched.insert(peer, now);
            self.queue.push_front(i);
        }
    }
}

/// Each worker's allowance of tiles in flight, from its attested link's slower direction in
/// kbit/s (`None`: not measured): [`IN_FLIGHT`], or one when it is under the median of the
/// measured ones divided by [`SLOW_RATIO`]; slow workers last, the order otherwise kept.
pub fn allowances(workers: &[(PeerId, Option<u32>)]) -> Vec<(PeerId, usize)> {
    let median = ifx_protocols::stats::lower_median(workers.iter().filter_map(|(_, k)| k.map(u64::from)).collect());
    let is_slow =
        |k: &Option<u32>| matches!((k, median), (Some(k), Some(m)) if u64::from(*k) * u64::from(SLOW_RATIO) < m);
    let mut out: Vec<(PeerId, usize)> =
        workers.iter().filter(|(_, k)| !is_slow(k)).map(|(p, _)| (*p, IN_FLIGHT)).collect();
    out.extend(workers.iter().filter(|(_, k)| is_slow(k)).map(|(p, _)| (*p, 1)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_go_two_at_a_time_and_a_failed_tile_goes_first_to_another_worker() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut q = TileQueue::new(5);
        let two = |ps: &[PeerId]| ps.iter().map(|p| (*p, IN_FLIGHT)).collect::<Vec<_>>();
        assert_eq!(q.assign(&two(&[a, b]), t0), vec![(a, 0), (a, 1), (b, 2), (b, 3)]);
        // Nobody is free: nothing more to hand out.
        assert!(q.assign(&two(&[a, b]), t0).is_empty());
        q.answered(a, 0, true, t0);
        q.answered(b, 2, false, t0);
        assert_eq!(q.done(), 1);
        // The failed tile comes first, but not to the benched worker.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(q.assign(&two(&[b, a]), t1), vec![(a, 2)]);
        for (p, i) in [(a, 1), (a, 2), (b, 3)] {
            q.answered(p, i, true, t1);
        }
        // b is still benched at 9 s; at 10 s it may work again.
        assert_eq!(q.assign(&two(&[b]), t0 + Duration::from_secs(9)), vec![]);
        assert_eq!(q.assign(&two(&[b]), t0 + BENCH), vec![(b, 4)]);
        assert!(!q.is_done() && !q.has_queued());
        q.answered(b, 4, true, t0 + BENCH);
        assert!(q.is_done());
    }

    /// Issue #17: the verifiers attest one worker's link at 19 Mbit/s, the others' at
    /// gigabits: it gets one tile at a time and comes last; an unmeasured worker is not slow;
    /// with one measured worker nothing is slow (there is nothing to compare with).
    #[test]
    fn a_worker_with_a_slow_attested_link_gets_one_tile_at_a_time() {
        let (slow, a, b, new) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
        let got = allowances(&[(slow, Some(19_000)), (a, Some(2_400_000)), (new, None), (b, Some(3_100_000))]);
        assert_eq!(got, vec![(a, IN_FLIGHT), (new, IN_FLIGHT), (b, IN_FLIGHT), (slow, 1)]);
        let mut q = TileQueue::new(8);
        let handed = q.assign(&got, Instant::now());
        assert_eq!(handed.iter().filter(|(p, _)| *p == slow).count(), 1);
        assert_eq!(handed.len(), 7);
        // A quarter of the median is not yet slow; just under it is.
        let at = |k| allowances(&[(a, Some(400)), (b, Some(400)), (slow, Some(k))]);
        assert_eq!(at(100)[2], (slow, IN_FLIGHT));
        assert_eq!(at(99)[2], (slow, 1));
        assert_eq!(allowances(&[(slow, Some(1))]), vec![(slow, IN_FLIGHT)]);
    }
}
