//! A render job's tile queue, sans I/O: which tiles go to which workers, what an answer does,
//! and when the job is done. The owner (`owner.rs`) does the requests, receipts and timers
//! around it.
//!
//! Two schedules ([`Schedule`]):
//! - **capacity** (the default, issue #18): the queue plans its tiles as list scheduling does.
//!   Each tile in turn goes to the worker expected to finish it first: when its tiles in flight
//!   are done, plus its time per tile. A worker with a free slot gets the tiles planned for it;
//!   a tile planned for a busy faster worker waits for it. Time per tile is the median of a
//!   worker's last [`SAMPLES`] answers. Before it has answered, it is scaled from its attested
//!   IB against the measured workers'; but a worker not yet tried gets one tile first (an
//!   attested IB is a guess). When nothing is queued, a free worker re-renders the
//!   tile whose holder is expected to finish last, if it would finish it [`SPECULATE_GAIN`]
//!   sooner: the first good copy is kept, the other discarded.
//! - **fifo** (before #18): every worker keeps its allowance of tiles in flight, whatever its
//!   speed, first queued first; nothing is re-issued until it fails.
//!
//! Either way a worker gets at most its allowance at once ([`IN_FLIGHT`], one when its
//! attested link is slow: [`allowances`]), a failed tile goes back to the front of the queue
//! and its worker sits out [`BENCH`], and a worker caught with a bad tile gets no more.
//! Everything is integer microseconds: the same answers plan the same way.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

pub use ifx_protocols::api::{Schedule, WorkerShare};
pub use ifx_protocols::render::job::IN_FLIGHT;
use ifx_protocols::stats::lower_median;
use libp2p::PeerId;

/// A worker whose attested link (its slower direction) is under the median of the job's
/// measured workers divided by this gets one tile at a time: its tiles wait on the wire, not
/// on its GPU, and a second one in flight would only hold a tile back from a faster worker.
/// A ratio, not a rate: what is slow depends on the network the job runs on.
pub const SLOW_RATIO: u32 = 4;
/// A worker that failed a tile gets no new tile for this long.
pub const BENCH: Duration = Duration::from_secs(10);
/// A straggler is copied to a free worker only when that worker is expected to finish it this
/// many times sooner than its holder (as a fraction, 3/2): a copy that saves little costs a
/// whole tile of work.
pub const SPECULATE_GAIN: (u64, u64) = (3, 2);
/// A worker's time per tile is the median of its last this many good answers (the first also
/// builds the job's scene; one slow answer moves nothing).
pub const SAMPLES: usize = 5;
/// Most tiles one hand-out plans ahead. It bounds the work of one [`TileQueue::assign`] on a
/// job of many small tiles; a worker too slow to be planned a tile within it gets none.
pub const PLAN_HORIZON: usize = 4096;

/// A worker as the owner sees it when handing out tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Worker {
    pub peer: PeerId,
    /// Tiles it may hold at once ([`allowances`]).
    pub allowance: usize,
    /// Its IB x 1000 as the verifiers attest it.
    pub ib_milli: Option<u32>,
    /// Its attested link's slower direction, kbit/s.
    pub link_kbit: Option<u32>,
}

impl Worker {
    /// µs its link takes to carry `bytes` (0 when not measured).
    fn transfer_us(&self, bytes: u64) -> u64 {
        match self.link_kbit {
            Some(k) if k > 0 => bytes.saturating_mul(8_000) / k as u64,
            _ => 0,
        }
    }
}

#[derive(Debug, Default)]
struct WorkerState {
    /// Its tiles in flight with when each was sent, oldest first.
    flying: Vec<(usize, Instant)>,
    last_answer: Option<Instant>,
    /// Its latest good answers' times, in µs: from when the tile was sent or its previous
    /// answer came, whichever was later (it renders one after the other).
    samples: VecDeque<u64>,
    busy_since: Option<Instant>,
    busy: Duration,
    /// When it got its first tile of the job.
    first_given: Option<Instant>,
    kept: u64,
    delivered: u64,
    ib_milli: u32,
}

impl WorkerState {
    /// Its busy time up to `end` (a tile it still holds counts until then; busy periods
    /// that ended count whole).
    fn busy_until(&self, end: Option<Instant>) -> Duration {
        let ongoing = match (self.busy_since, end) {
            (Some(b), Some(e)) => e.saturating_duration_since(b),
            _ => Duration::ZERO,
        };
        self.busy + ongoing
    }

    fn measured_us(&self) -> Option<u64> {
        lower_median(self.samples.iter().copied().collect())
    }

    /// When the tile it renders now started: sent, or its previous answer if that came later.
    fn serving_since(&self) -> Option<Instant> {
        let (_, sent) = self.flying.first()?;
        Some(self.last_answer.filter(|a| a > sent).unwrap_or(*sent))
    }

    /// When (µs from `now`) it is expected to deliver its tile at `position` in flight, with
    /// `est` µs a tile. A tile past its expected time is expected to take as long again.
    fn finish_us(&self, position: usize, est: u64, now: Instant) -> u64 {
        let Some(since) = self.serving_since() else { return 0 };
        let elapsed = now.saturating_duration_since(since).as_micros() as u64;
        let first = if elapsed < est { est - elapsed } else { elapsed };
        first.saturating_add(est.saturating_mul(position as u64))
    }
}

/// The tiles of one job and where each is.
#[derive(Debug)]
pub struct TileQueue {
    total: usize,
    schedule: Schedule,
    queue: VecDeque<usize>,
    /// Tiles in flight and the workers that hold them (two for a re-issued straggler).
    holders: BTreeMap<usize, Vec<PeerId>>,
    kept: Vec<bool>,
    workers: HashMap<PeerId, WorkerState>,
    benched: HashMap<PeerId, Instant>,
    /// Workers caught delivering a bad tile: no more tiles of this job.
    banned: HashSet<PeerId>,
    done: usize,
    /// Tiles kept before this queue was made (a resumed job): not part of its makespan.
    restored: usize,
    /// Bytes of one tile's answer (its pixels), which cross the worker's link.
    answer_bytes: u64,
    speculative: u64,
    first_sent: Option<Instant>,
    last_kept: Option<Instant>,
}

impl TileQueue {
    /// A job of `total` tiles, all queued in order.
    pub fn new(total: usize, schedule: Schedule) -> Self {
        Self {
            total,
            schedule,
            queue: (0..total).collect(),
            holders: BTreeMap::new(),
            kept: vec![false; total],
            workers: HashMap::new(),
            benched: HashMap::new(),
            banned: HashSet::new(),
            done: 0,
            restored: 0,
            answer_bytes: 0,
            speculative: 0,
            first_sent: None,
            last_kept: None,
        }
    }

    /// Tells the queue how many bytes a tile's answer carries (see [`Self::estimates`]).
    pub fn with_answer_bytes(mut self, bytes: u64) -> Self {
        self.answer_bytes = bytes;
        self
    }

    /// Marks `tiles` kept before this queue was made (a job resumed after a restart): never
    /// handed out. One pass over the queue, however many (a sequence restores whole frames).
    pub fn restore(&mut self, tiles: impl IntoIterator<Item = usize>) {
        let mut any = false;
        for i in tiles {
            if self.wanted(i) {
                self.kept[i] = true;
                self.done += 1;
                self.restored += 1;
                any = true;
            }
        }
        if any {
            let kept = &self.kept;
            self.queue.retain(|&q| !kept[q]);
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

    /// Whether tile `i` still needs a good answer (false once a copy of it was kept).
    pub fn wanted(&self, i: usize) -> bool {
        self.kept.get(i).is_some_and(|k| !k)
    }

    /// Tiles handed to a second worker while the first still held them.
    pub fn speculative(&self) -> u64 {
        self.speculative
    }

    /// Hands tiles to `workers` that are not banned nor benched at `now`, as the schedule
    /// says: (worker, tile index) pairs to request.
    pub fn assign(&mut self, workers: &[Worker], now: Instant) -> Vec<(PeerId, usize)> {
        let eligible: Vec<Worker> = workers
            .iter()
            .filter(|w| {
                !self.banned.contains(&w.peer)
                    && self.benched.get(&w.peer).is_none_or(|t| now.saturating_duration_since(*t) >= BENCH)
            })
            .copied()
            .collect();
        for w in &eligible {
            self.workers.entry(w.peer).or_default().ib_milli = w.ib_milli.unwrap_or(0);
        }
        let slots: Vec<usize> = eligible.iter().map(|w| w.allowance.saturating_sub(self.flying(&w.peer))).collect();
        match self.schedule {
            Schedule::Fifo => self.fifo(&eligible, slots, now),
            Schedule::Capacity => self.capacity(&eligible, slots, now),
        }
    }

    fn flying(&self, peer: &PeerId) -> usize {
        self.workers.get(peer).map_or(0, |w| w.flying.len())
    }

    fn send(&mut self, peer: PeerId, i: usize, now: Instant) {
        let w = self.workers.entry(peer).or_default();
        if w.flying.is_empty() {
            w.busy_since = Some(now);
        }
        w.first_given.get_or_insert(now);
        w.flying.push((i, now));
        self.holders.entry(i).or_default().push(peer);
        self.first_sent.get_or_insert(now);
    }

    fn fifo(&mut self, eligible: &[Worker], slots: Vec<usize>, now: Instant) -> Vec<(PeerId, usize)> {
        let mut out = Vec::new();
        for (w, free) in eligible.iter().zip(slots) {
            for _ in 0..free {
                let Some(i) = self.queue.pop_front() else { return out };
                self.send(w.peer, i, now);
                out.push((w.peer, i));
            }
        }
        out
    }

    fn capacity(&mut self, eligible: &[Worker], mut slots: Vec<usize>, now: Instant) -> Vec<(PeerId, usize)> {
        let mut out = Vec::new();
        if eligible.is_empty() {
            return out;
        }
        // A worker not yet tried in this job gets one tile first: its attested IB is only the
        // verifiers' guess (on a loaded machine, 0.1 for a worker that then rendered at the
        // others' pace), and a worker never tried would never be measured.
        for (k, w) in eligible.iter().enumerate() {
            let untried = self.workers.get(&w.peer).is_none_or(|s| s.first_given.is_none());
            if untried && slots[k] > 0 {
                let Some(i) = self.queue.pop_front() else { break };
                slots[k] -= 1;
                self.send(w.peer, i, now);
                out.push((w.peer, i));
            }
        }
        let est = self.estimates(eligible);
        let mut free_at: Vec<u64> = eligible
            .iter()
            .zip(&est)
            .map(|(w, e)| {
                let n = self.flying(&w.peer);
                self.workers.get(&w.peer).map_or(0, |s| if n == 0 { 0 } else { s.finish_us(n - 1, *e, now) })
            })
            .collect();
        // List scheduling over the queue: each tile to the earliest finish. A tile planned
        // for a worker without a free slot stays queued for it.
        let mut left = self.queue.len().min(PLAN_HORIZON);
        while left > 0 && slots.iter().any(|s| *s > 0) {
            let k = (0..eligible.len()).min_by_key(|&k| (free_at[k].saturating_add(est[k]), k)).expect("not empty");
            free_at[k] = free_at[k].saturating_add(est[k]);
            left -= 1;
            if slots[k] > 0 {
                slots[k] -= 1;
                let i = self.queue.pop_front().expect("left counts the queue");
                self.send(eligible[k].peer, i, now);
                out.push((eligible[k].peer, i));
            }
        }
        if !self.queue.is_empty() {
            return out;
        }
        // Nothing queued: free workers, fastest first, copy the straggler expected last.
        let mut order: Vec<usize> = (0..eligible.len()).filter(|&k| slots[k] > 0).collect();
        order.sort_by_key(|&k| (est[k], k));
        for k in order {
            while slots[k] > 0 {
                let me = eligible[k].peer;
                let mine = free_at[k].saturating_add(est[k]);
                let Some((i, theirs)) = self.straggler(&me, eligible, &est, now) else { break };
                if mine.saturating_mul(SPECULATE_GAIN.0) >= theirs.saturating_mul(SPECULATE_GAIN.1) {
                    break;
                }
                slots[k] -= 1;
                free_at[k] = mine;
                self.send(me, i, now);
                self.speculative += 1;
                out.push((me, i));
            }
        }
        out
    }

    /// The tile still wanted, held by one worker other than `me`, that is expected last, and
    /// when (µs).
    fn straggler(&self, me: &PeerId, eligible: &[Worker], est: &[u64], now: Instant) -> Option<(usize, u64)> {
        let typical = lower_median(est.to_vec()).unwrap_or(1);
        self.holders
            .iter()
            .filter(|(i, h)| h.len() == 1 && h[0] != *me && self.wanted(**i))
            .filter_map(|(i, h)| {
                let s = self.workers.get(&h[0])?;
                let position = s.flying.iter().position(|(t, _)| t == i)?;
                let e = eligible
                    .iter()
                    .position(|w| w.peer == h[0])
                    .map_or_else(|| s.measured_us().unwrap_or(typical), |k| est[k]);
                Some((*i, s.finish_us(position, e, now)))
            })
            .max_by_key(|(i, f)| (*f, std::cmp::Reverse(*i)))
    }

    /// Each worker's expected µs per tile: measured (the time from request to answer: its
    /// render, its load and its link's transfer of the answer, all as they are); else its
    /// render scaled from its attested IB (or the median IB) by the measured workers' render
    /// µs x IB, plus its own link's transfer of the answer; else the measured median; with
    /// nothing measured, relative units of 10^6 µs at IB 1 plus the transfer. A render is a
    /// measured time less the worker's link's transfer: on a network of slow uplinks, the
    /// IB of a worker is not made to carry what its link costs.
    fn estimates(&self, eligible: &[Worker]) -> Vec<u64> {
        let state = |w: &Worker| self.workers.get(&w.peer);
        let wire = |w: &Worker| w.transfer_us(self.answer_bytes);
        let median_ib = lower_median(eligible.iter().filter_map(|w| w.ib_milli).filter(|i| *i > 0).collect());
        let ib = |w: &Worker| w.ib_milli.filter(|i| *i > 0).or(median_ib);
        let measured: Vec<Option<u64>> = eligible.iter().map(|w| state(w).and_then(WorkerState::measured_us)).collect();
        let per_ib = lower_median(
            eligible
                .iter()
                .zip(&measured)
                .filter_map(|(w, m)| Some(m.as_ref()?.saturating_sub(wire(w)).max(1).saturating_mul(ib(w)? as u64)))
                .collect(),
        );
        let typical = lower_median(measured.iter().flatten().copied().collect());
        eligible
            .iter()
            .zip(measured)
            .map(|(w, m)| {
                let scaled = |k: u64| ib(w).map(|ib| k / ib.max(1) as u64 + wire(w));
                m.or_else(|| per_ib.and_then(scaled))
                    .or(typical)
                    .or_else(|| scaled(1_000_000_000))
                    .unwrap_or(1_000_000 + wire(w))
                    .max(1)
            })
            .collect()
    }

    /// `peer` answered tile `i` at `at`: a good tile (`ok`) is kept unless a copy already was;
    /// a failed one goes back to the front of the queue (unless another worker holds it) and
    /// the worker is benched. [`Self::arrived`] then [`Self::settle`].
    pub fn answered(&mut self, peer: PeerId, i: usize, ok: bool, at: Instant) {
        self.arrived(peer, i, ok, at);
        self.settle(peer, i, ok, at);
    }

    /// `peer`'s answer to tile `i` came at `at`, a tile (`good`) or an error: its slot is free
    /// and its time per tile measured, before the owner checks the tile.
    pub fn arrived(&mut self, peer: PeerId, i: usize, good: bool, at: Instant) {
        let w = self.workers.entry(peer).or_default();
        if let Some(pos) = w.flying.iter().position(|(t, _)| *t == i) {
            let (_, sent) = w.flying.remove(pos);
            let start = w.last_answer.filter(|a| *a > sent).unwrap_or(sent);
            if good {
                w.samples.push_back(at.saturating_duration_since(start).as_micros() as u64);
                if w.samples.len() > SAMPLES {
                    w.samples.pop_front();
                }
                w.delivered += 1;
            }
            w.last_answer = Some(at);
            if w.flying.is_empty()
                && let Some(b) = w.busy_since.take()
            {
                w.busy += at.saturating_duration_since(b);
            }
        }
        if let Some(h) = self.holders.get_mut(&i) {
            h.retain(|p| *p != peer);
            if h.is_empty() {
                self.holders.remove(&i);
            }
        }
    }

    /// The owner's verdict on `peer`'s answer to tile `i` (see [`Self::answered`]).
    pub fn settle(&mut self, peer: PeerId, i: usize, ok: bool, at: Instant) {
        if ok && self.wanted(i) {
            self.kept[i] = true;
            self.done += 1;
            self.last_kept = Some(at);
            self.workers.entry(peer).or_default().kept += 1;
        } else if !ok {
            self.benched.insert(peer, at);
            if self.wanted(i) && !self.holders.contains_key(&i) && !self.queue.contains(&i) {
                self.queue.push_front(i);
            }
        }
    }

    /// Seconds from the first tile handed out to the last one kept (0 before both).
    pub fn makespan_secs(&self) -> f64 {
        match (self.first_sent, self.last_kept) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// The makespan of a perfect schedule on what the workers showed: each worker at work from
    /// when it got its first tile, at its average pace in the job (its busy time up to its
    /// last answer over its good answers: scene building and every slow moment included), the
    /// tiles split as finely as need be. A worker that delivered nothing adds nothing; a tile
    /// still rendering at the end is not counted as its work. 0: nothing measured.
    pub fn ideal_secs(&self) -> f64 {
        let Some(t0) = self.first_sent else { return 0.0 };
        // (at work from, seconds a tile), by the first.
        let mut lanes: Vec<(f64, f64)> = self
            .workers
            .values()
            .filter(|w| w.delivered > 0)
            .filter_map(|w| {
                let busy = w.busy_until(w.last_answer).as_secs_f64();
                Some((w.first_given?.saturating_duration_since(t0).as_secs_f64(), busy / w.delivered as f64))
            })
            .filter(|(_, per)| *per > 0.0)
            .collect();
        lanes.sort_by(|a, b| a.0.total_cmp(&b.0));
        // With the first k lanes at work: tiles = the sum over them of (T - from) / per.
        let (mut rate, mut offset, mut ideal) = (0.0, 0.0, 0.0);
        for (k, (from, per)) in lanes.iter().enumerate() {
            rate += 1.0 / per;
            offset += from / per;
            ideal = ((self.total - self.restored) as f64 + offset) / rate;
            if lanes.get(k + 1).is_none_or(|(next, _)| ideal <= *next) {
                break;
            }
        }
        ideal
    }

    /// Each worker's part so far.
    pub fn shares(&self) -> Vec<(PeerId, WorkerShare)> {
        let mut v: Vec<(PeerId, WorkerShare)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.delivered > 0 || !w.busy.is_zero() || !w.flying.is_empty())
            .map(|(p, w)| {
                let share = WorkerShare {
                    tiles: w.kept,
                    delivered: w.delivered,
                    busy_secs: w.busy_until(self.last_kept).as_secs_f64(),
                    secs_per_tile: w.measured_us().unwrap_or(0) as f64 / 1e6,
                    ib_milli: w.ib_milli,
                };
                (*p, share)
            })
            .collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }
}

/// Each worker's allowance of tiles in flight, from its attested link's slower direction in
/// kbit/s (`None`: not measured): [`IN_FLIGHT`], or one when it is under the median of the
/// measured ones divided by [`SLOW_RATIO`]; slow workers last, the order otherwise kept.
pub fn allowances(workers: &[(PeerId, Option<u32>)]) -> Vec<(PeerId, usize)> {
    let median = lower_median(workers.iter().filter_map(|(_, k)| k.map(u64::from)).collect());
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

    fn two(ps: &[PeerId]) -> Vec<Worker> {
        ps.iter().map(|p| Worker { peer: *p, allowance: IN_FLIGHT, ib_milli: None, link_kbit: None }).collect()
    }

    #[test]
    fn fifo_gives_two_at_a_time_and_a_failed_tile_goes_first_to_another_worker() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut q = TileQueue::new(5, Schedule::Fifo);
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

    /// Issue #18: a job resumed after its owner restarted hands out only the tiles it had not
    /// kept, under either schedule, copies of stragglers included.
    #[test]
    fn tiles_kept_before_a_restart_are_never_handed_out() {
        for schedule in [Schedule::Capacity, Schedule::Fifo] {
            let t0 = Instant::now();
            let (a, b) = (PeerId::random(), PeerId::random());
            let mut q = TileQueue::new(6, schedule);
            for i in [0, 2, 3, 3, 5] {
                q.restore([i]);
            }
            assert_eq!(q.done(), 4, "{schedule}: restoring twice counts once");
            let mut handed = Vec::new();
            let mut now = t0;
            while !q.is_done() {
                let got = q.assign(&two(&[a, b]), now);
                for &(p, i) in &got {
                    now += Duration::from_millis(100);
                    q.answered(p, i, true, now);
                }
                handed.extend(got.into_iter().map(|(_, i)| i));
                now += Duration::from_millis(100);
                assert!(now < t0 + Duration::from_secs(60), "{schedule}: the job never ends");
            }
            handed.sort();
            handed.dedup();
            assert_eq!(handed, vec![1, 4], "{schedule}");
        }
    }

    /// Issue #17: the verifiers attest one worker's link at 19 Mbit/s, the others' at
    /// gigabits: it gets one tile at a time and comes last; an unmeasured worker is not slow;
    /// with one measured worker nothing is slow (there is nothing to compare with).
    #[test]
    fn a_worker_with_a_slow_attested_link_gets_one_tile_at_a_time() {
        let (slow, a, b, new) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
        let got = allowances(&[(slow, Some(19_000)), (a, Some(2_400_000)), (new, None), (b, Some(3_100_000))]);
        assert_eq!(got, vec![(a, IN_FLIGHT), (new, IN_FLIGHT), (b, IN_FLIGHT), (slow, 1)]);
        let mut q = TileQueue::new(8, Schedule::Capacity);
        let ws: Vec<Worker> =
            got.iter().map(|(p, n)| Worker { peer: *p, allowance: *n, ib_milli: None, link_kbit: None }).collect();
        let handed = q.assign(&ws, Instant::now());
        assert_eq!(handed.iter().filter(|(p, _)| *p == slow).count(), 1);
        assert_eq!(handed.len(), 7);
        // A quarter of the median is not yet slow; just under it is.
        let at = |k| allowances(&[(a, Some(400)), (b, Some(400)), (slow, Some(k))]);
        assert_eq!(at(100)[2], (slow, IN_FLIGHT));
        assert_eq!(at(99)[2], (slow, 1));
        assert_eq!(allowances(&[(slow, Some(1))]), vec![(slow, IN_FLIGHT)]);
    }

    /// Issue #18 item 6: link throughput in the estimate of a worker that has not answered
    /// yet. Its render is scaled from its IB by what the answered workers rendered, their own
    /// links' transfers taken out; its link's transfer of a tile's answer is added. A worker
    /// whose slow uplink made its measured time long does not make a fast-linked worker of
    /// the same IB look slow, and a slow-linked one is expected slower than its IB says.
    #[test]
    fn a_worker_not_yet_measured_is_expected_at_its_ib_plus_its_link() {
        let t0 = Instant::now();
        let (a, b, d) = (PeerId::random(), PeerId::random(), PeerId::random());
        // 64x64 tiles of 12-byte pixels: 49,152 bytes; 98.3 ms at 4 Mbit/s, 0.4 ms at 1 Gbit/s.
        let bytes = 64 * 64 * 12;
        let w = |peer, kbit| Worker { peer, allowance: IN_FLIGHT, ib_milli: Some(1000), link_kbit: Some(kbit) };
        let mut q = TileQueue::new(40, Schedule::Capacity).with_answer_bytes(bytes);
        let ws = [w(a, 1_000_000), w(b, 1_000_000), w(d, 4_000)];
        let first = q.assign(&ws, t0);
        // Each renders in 100 ms; d's answer then takes 98.3 ms more on its link.
        let ms = |n| t0 + Duration::from_micros(n);
        for (p, i) in first.iter().filter(|(p, _)| *p != d).take(2) {
            q.answered(*p, *i, true, ms(100_393));
        }
        let d_tile = first.iter().find(|(p, _)| *p == d).unwrap().1;
        q.answered(d, d_tile, true, ms(198_304));
        let (fast_new, slow_new) = (PeerId::random(), PeerId::random());
        let est = q.estimates(&[ws[0], ws[1], ws[2], w(fast_new, 1_000_000), w(slow_new, 4_000)]);
        // Measured as they are.
        assert_eq!(&est[..3], &[100_393, 100_393, 198_304]);
        // The new ones: a 100 ms render (d's less its link is as much) plus their own link.
        assert_eq!(est[3], 100_000 + 393);
        assert_eq!(est[4], 100_000 + 98_304);
        // Without the link in the estimate, the slow-linked newcomer would be expected at its
        // IB alone, and d's slow link would have been read as a slow render.
        let plain = |p| Worker { link_kbit: None, ..w(p, 0) };
        let est = q.estimates(&[plain(a), plain(b), plain(d), plain(slow_new)]);
        assert_eq!(est[3], 100_393);
    }

    /// A job on simulated workers, each rendering its tiles one after the other in a fixed
    /// time (ms): the owner hands out tiles at every answer. Returns the makespan in ms, the
    /// queue's ideal in ms, and the copies of stragglers it handed out.
    fn simulate(schedule: Schedule, speeds_ms: &[u64], ibs: &[Option<u32>], tiles: usize) -> (u64, u64, u64) {
        let t0 = Instant::now();
        let peers: Vec<PeerId> = speeds_ms.iter().map(|_| PeerId::random()).collect();
        let workers: Vec<Worker> = peers
            .iter()
            .zip(ibs)
            .map(|(p, ib)| Worker { peer: *p, allowance: IN_FLIGHT, ib_milli: *ib, link_kbit: None })
            .collect();
        let mut q = TileQueue::new(tiles, schedule);
        // Per worker: the tiles it holds in order, and when it is free to start the next.
        let mut lanes: Vec<VecDeque<usize>> = vec![VecDeque::new(); peers.len()];
        let mut free_ms = vec![0u64; peers.len()];
        let mut now_ms = 0u64;
        let mut ends: Vec<Option<u64>> = vec![None; peers.len()];
        while !q.is_done() {
            for (p, i) in q.assign(&workers, t0 + Duration::from_millis(now_ms)) {
                let k = peers.iter().position(|x| *x == p).unwrap();
                lanes[k].push_back(i);
                if ends[k].is_none() {
                    free_ms[k] = free_ms[k].max(now_ms);
                    ends[k] = Some(free_ms[k] + speeds_ms[k]);
                }
            }
            // The next answer.
            let (k, end) =
                ends.iter().enumerate().filter_map(|(k, e)| e.map(|e| (k, e))).min_by_key(|(k, e)| (*e, *k)).unwrap();
            now_ms = end;
            let i = lanes[k].pop_front().unwrap();
            free_ms[k] = end;
            ends[k] = (!lanes[k].is_empty()).then_some(end + speeds_ms[k]);
            q.answered(peers[k], i, true, t0 + Duration::from_millis(end));
        }
        ((q.makespan_secs() * 1000.0).round() as u64, (q.ideal_secs() * 1000.0).round() as u64, q.speculative())
    }

    /// Issue #18: workers of IB 1x and 4x. The capacity schedule finishes within 1.3x of the
    /// ideal (tiles over the summed throughput) where first come first served does not, and it
    /// copies only a few stragglers. Slow workers last in the list, first, or unmeasured alike.
    #[test]
    fn the_capacity_schedule_finishes_near_the_ideal_where_fifo_waits_for_the_slow_worker() {
        type Case<'a> = (&'a [u64], &'a [Option<u32>], usize);
        let cases: [Case; 5] = [
            (&[100, 400], &[Some(4000), Some(1000)], 36),
            (&[400, 100], &[None, None], 36),
            (&[100, 100, 400, 400], &[Some(4000), Some(4000), Some(1000), Some(1000)], 16),
            (&[400, 400, 400, 100], &[Some(1000), Some(1000), Some(1000), Some(4000)], 12),
            (&[100, 400, 400], &[None, None, None], 9),
        ];
        for (speeds, ibs, tiles) in cases {
            let (cap, ideal, copies) = simulate(Schedule::Capacity, speeds, ibs, tiles);
            let (fifo, fifo_ideal, fifo_copies) = simulate(Schedule::Fifo, speeds, ibs, tiles);
            let what = format!(
                "{speeds:?} ms a tile, {tiles} tiles: capacity {cap} ms ({copies} copies, ideal {ideal}), fifo {fifo} ms (ideal {fifo_ideal})"
            );
            eprintln!("{what}");
            assert!(cap * 10 <= ideal * 13, "{what}");
            assert!(cap <= fifo, "{what}");
            assert_eq!(fifo_copies, 0);
            assert!(copies as usize <= speeds.len(), "{what}");
        }
        // Where fifo hands the slow workers the last tiles, it misses the 1.3x the capacity
        // schedule keeps.
        let (fifo, ideal, _) = simulate(Schedule::Fifo, &[400, 400, 400, 100], &[None; 4], 12);
        assert!(fifo * 10 > ideal * 13, "fifo {fifo} ms, ideal {ideal}");
    }

    /// An attested IB is a guess: X gets one
    /// tile first, and once it answers as fast as they do, its share with it.
    #[test]
    fn a_worker_not_yet_tried_gets_a_tile_whatever_its_attested_ib() {
        let t0 = Instant::now();
        let (a, b, low) = (PeerId::random(), PeerId::random(), PeerId::random());
        let ws = [(a, 1_000), (b, 1_000), (low, 10)]
            .map(|(peer, ib)| Worker { peer, allowance: IN_FLIGHT, ib_milli: Some(ib), link_kbit: None })
            .to_vec();
        let mut q = TileQueue::new(40, Schedule::Capacity);
        let first = q.assign(&ws, t0);
        assert_eq!(first.iter().filter(|(p, _)| *p == low).count(), 1, "{first:?}");
        // Everyone answers its first tile in 1 s; low's measured time now plans it a full share.
        let at = t0 + Duration::from_secs(1);
        for p in [a, b, low] {
            let (_, i) = *first.iter().find(|(x, _)| *x == p).unwrap();
            q.answered(p, i, true, at);
        }
        let next = q.assign(&ws, at);
        assert!(next.iter().any(|(p, _)| *p == low), "{next:?}");
    }

    /// A copy that comes second is not kept again; a failure of one holder leaves the tile with
    /// the other; a tile is queued again only when nobody holds it.
    #[test]
    fn a_re_issued_tile_is_kept_once() {
        let t0 = Instant::now();
        let (fast, slow) = (PeerId::random(), PeerId::random());
        let ws = |_| {
            [(fast, 4_000), (slow, 1_000)]
                .map(|(peer, ib)| Worker { peer, allowance: IN_FLIGHT, ib_milli: Some(ib), link_kbit: None })
                .to_vec()
        };
        let mut q = TileQueue::new(2, Schedule::Capacity);
        // Speeds unknown at first: one tile each. fast answers in 1 s; then the verifiers'
        // attested IBs are in, and slow, of a quarter of fast's, is expected to take 4 s.
        let sent = q.assign(&two(&[fast, slow]), t0);
        assert_eq!(sent, vec![(fast, 0), (slow, 1)]);
        q.answered(fast, 0, true, t0 + Duration::from_secs(1));
        // Nothing queued; fast is free and tile 1 at slow is expected at 4 s: fast copies it.
        let copy = q.assign(&ws(()), t0 + Duration::from_secs(1));
        assert_eq!(copy, vec![(fast, 1)]);
        assert_eq!(q.speculative(), 1);
        // No third copy.
        assert!(q.assign(&ws(()), t0 + Duration::from_secs(1)).is_empty());
        q.answered(fast, 1, true, t0 + Duration::from_secs(2));
        assert!(q.is_done() && !q.wanted(1));
        q.answered(slow, 1, true, t0 + Duration::from_secs(4));
        assert_eq!(q.done(), 2);
        let shares: BTreeMap<PeerId, WorkerShare> = q.shares().into_iter().collect();
        assert_eq!((shares[&fast].tiles, shares[&fast].delivered), (2, 2));
        assert_eq!((shares[&slow].tiles, shares[&slow].delivered), (0, 1));

        // A failed holder: the copy still holds it, so it is not queued again. (A tile 9 s
        // late with nothing measured is expected to take as long again: it is copied.)
        let mut q = TileQueue::new(1, Schedule::Capacity);
        assert_eq!(q.assign(&two(&[slow]), t0), vec![(slow, 0)]);
        assert_eq!(q.assign(&two(&[slow, fast]), t0 + Duration::from_secs(9)), vec![(fast, 0)]);
        q.answered(slow, 0, false, t0 + Duration::from_secs(9));
        assert!(!q.has_queued(), "the copy at fast still holds it");
        q.answered(fast, 0, false, t0 + Duration::from_secs(10));
        assert!(q.has_queued(), "nobody holds it now");
    }
}
