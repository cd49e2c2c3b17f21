//! A render job's tile queue, sans I/O: which tiles go to which workers (at most [`IN_FLIGHT`]
//! each, first-queued first), what an answer does (accepted, or the tile goes back to the
//! front of the queue and its worker sits out [`BENCH`]), and when the job is done. The owner
//! (`owner.rs`) does the requests, receipts and timers around it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Tiles in flight per worker.
pub const IN_FLIGHT: usize = 2;
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

    /// Hands queued tiles to `workers` that are not benched at `now`, up to [`IN_FLIGHT`] each,
    /// in the workers' order: (worker, tile index) pairs to request.
    pub fn assign(&mut self, workers: &[PeerId], now: Instant) -> Vec<(PeerId, usize)> {
        let mut out = Vec::new();
        for peer in workers {
            if self.banned.contains(peer) || self.benched.get(peer).is_some_and(|t| now.duration_since(*t) < BENCH) {
                continue;
            }
            while self.busy.get(peer).copied().unwrap_or(0) < IN_FLIGHT {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_go_two_at_a_time_and_a_failed_tile_goes_first_to_another_worker() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut q = TileQueue::new(5);
        assert_eq!(q.assign(&[a, b], t0), vec![(a, 0), (a, 1), (b, 2), (b, 3)]);
        // Nobody is free: nothing more to hand out.
        assert!(q.assign(&[a, b], t0).is_empty());
        q.answered(a, 0, true, t0);
        q.answered(b, 2, false, t0);
        assert_eq!(q.done(), 1);
        // The failed tile comes first, but not to the benched worker.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(q.assign(&[b, a], t1), vec![(a, 2)]);
        for (p, i) in [(a, 1), (a, 2), (b, 3)] {
            q.answered(p, i, true, t1);
        }
        // b is still benched at 9 s; at 10 s it may work again.
        assert_eq!(q.assign(&[b], t0 + Duration::from_secs(9)), vec![]);
        assert_eq!(q.assign(&[b], t0 + BENCH), vec![(b, 4)]);
        assert!(!q.is_done() && !q.has_queued());
        q.answered(b, 4, true, t0 + BENCH);
        assert!(q.is_done());
    }
}
