//! A task owner's round, sans I/O. [`Collect`] takes the selected clients' answers as they come
//! and the deadline when it passes, and says when the round has enough; [`close`] screens and
//! aggregates the delivered updates and writes one receipt per update (accepted or rejected);
//! [`Roster`] keeps each worker's record across rounds: repeat offenders are banned,
//! stragglers sit out. The owner task (`owner.rs`) does the requests, the timers and the
//! ledger writes around them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ifx_protocols::fl::FlError;
use ifx_protocols::fl::aggregate::{Aggregator, Screened, Update, control, from_fixed, next_global};
use ifx_protocols::fl::wire::{MAX_REASON, TaskSpec, contributed, work_units};
use ifx_protocols::ledger::FlReceipt;
use libp2p::PeerId;

/// Example counts above this are capped in FedAvg weights and work units.
pub const EXAMPLE_CAP: u64 = 10_000;
/// A worker whose updates were rejected this many times within its last [`BAN_WINDOW`]
/// updates is excluded from the task (an honest non-IID update is rejected now and then; a
/// poisoner nearly always).
pub const BAN_STRIKES: usize = 3;
pub const BAN_WINDOW: usize = 5;
/// A worker late in [`LATE_STRIKES`] of its last [`LATE_WINDOW`] rounds sits out this many
/// rounds (doubling each time, up to 8x).
pub const STRAGGLER_BENCH_ROUNDS: u32 = 5;
pub const LATE_STRIKES: usize = 2;
pub const LATE_WINDOW: usize = 3;

/// Why a selected client's update did not make it into a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Miss {
    /// It arrived and is bad: recorded in the ledger as a rejection.
    Rejected { update: [u8; 32], reason: String },
    /// It never arrived (error, timeout, disconnect).
    Dropped(String),
}

impl Miss {
    /// The reason, whichever kind of miss.
    pub fn reason(self) -> String {
        match self {
            Miss::Rejected { reason, .. } | Miss::Dropped(reason) => reason,
        }
    }
}

/// A valid update from one client.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub key: [u8; 32],
    /// BLAKE3 of its safetensors bytes (kept for auditors).
    pub hash: [u8; 32],
    pub update: Update,
    pub loss: f32,
    /// With `scaffold`: the hash of the gradient sent with the update, and its values.
    pub grad: Option<([u8; 32], Update)>,
}

/// `s` cut to [`MAX_REASON`] bytes at a character boundary.
pub fn clip_reason(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// One round's answers, over one or more attempts: an attempt asks some clients and ends when
/// `k` valid updates arrived, every client answered, or the deadline passed. Misses and late
/// clients add up over the attempts; a retried attempt starts with no delivered updates.
#[derive(Debug, Default)]
pub struct Collect {
    k: usize,
    outstanding: BTreeMap<PeerId, [u8; 32]>,
    pub delivered: Vec<Delivered>,
    pub misses: Vec<([u8; 32], PeerId, Miss)>,
    /// Clients still out when a deadline passed.
    pub late: Vec<[u8; 32]>,
}

impl Collect {
    /// A round that wants `k` updates.
    pub fn new(k: usize) -> Self {
        Self { k, ..Default::default() }
    }

    /// An attempt asked `asked` (peer, key); a retry forgets the last attempt's updates.
    pub fn asked(&mut self, asked: &[(PeerId, [u8; 32])]) {
        self.delivered.clear();
        self.outstanding = asked.iter().copied().collect();
    }

    /// `peer` answered; true when the attempt is over (enough updates, or nobody left out).
    pub fn answered(&mut self, peer: PeerId, answer: Result<Delivered, Miss>) -> bool {
        let Some(key) = self.outstanding.remove(&peer) else { return self.over() };
        match answer {
            Ok(d) => self.delivered.push(d),
            Err(m) => self.misses.push((key, peer, m)),
        }
        self.over()
    }

    fn over(&self) -> bool {
        self.delivered.len() >= self.k || self.outstanding.is_empty()
    }

    /// The attempt's deadline passed: whoever is still out is late.
    pub fn deadline_passed(&mut self) {
        self.late.extend(self.outstanding.values().copied());
    }

    /// Ends the attempt: whoever is still out missed the deadline or was not needed any more.
    /// True when the round has at least `min_clients` updates (else it is retried).
    pub fn end_attempt(&mut self, min_clients: usize) -> bool {
        for (peer, key) in std::mem::take(&mut self.outstanding) {
            self.misses.push((key, peer, Miss::Dropped("still out when the round closed".into())));
        }
        self.delivered.len() >= min_clients
    }
}

/// What a closed round produced.
#[derive(Debug)]
pub struct Closed {
    /// The next global weights.
    pub next: Vec<f32>,
    /// Screening's verdicts on the delivered updates (indices into the sorted `delivered`).
    pub screened: Screened,
    /// One receipt per delivered update and per update rejected on arrival, in that order.
    pub receipts: Vec<FlReceipt>,
    /// (worker, reason) of every rejected update.
    pub rejected: Vec<([u8; 32], String)>,
    /// The next round's control (`aggregate::control`; tasks with `scaffold`).
    pub control: Option<Vec<f32>>,
}

/// Screens and aggregates `delivered` (sorted by worker key first, so the inputs have one
/// order everywhere) into the next weights from `global`, and writes the receipts: accepted
/// updates earn work units by their examples and the task's epochs, rejected ones nothing.
pub fn close(
    task: [u8; 16],
    round: u32,
    spec: &TaskSpec,
    agg: Aggregator,
    global: &[f32],
    delivered: &mut [Delivered],
    misses: &[([u8; 32], PeerId, Miss)],
) -> Result<Closed, FlError> {
    delivered.sort_by_key(|d| d.key);
    let updates: Vec<Update> = delivered.iter().map(|d| d.update.clone()).collect();
    let (next, screened) = next_global(global, &updates, agg, spec.clip)?;
    let grads: Vec<Option<Update>> = delivered.iter().map(|d| d.grad.as_ref().map(|(_, g)| g.clone())).collect();
    let control = control(&grads, &screened.rejected)?.map(|c| from_fixed(&c));
    let mut rejected: Vec<([u8; 32], String)> = Vec::new();
    let mut receipts = Vec::new();
    for (i, d) in delivered.iter().enumerate() {
        let reason = screened.rejected.iter().find(|(r, _)| *r == i).map(|(_, why)| clip_reason(why.clone()));
        let contribution = screened.contribution_ppm.get(i).copied().unwrap_or(0);
        if let Some(r) = &reason {
            rejected.push((d.key, r.clone()));
        }
        receipts.push(FlReceipt {
            task,
            round,
            worker: d.key,
            update: d.hash,
            accepted: reason.is_none(),
            work_units: if reason.is_none() {
                contributed(work_units(d.update.examples, spec.local_epochs, EXAMPLE_CAP), contribution)
            } else {
                0
            },
            contribution_ppm: contribution,
            reason: reason.unwrap_or_default(),
        });
    }
    for (key, _, m) in misses {
        if let Miss::Rejected { update, reason } = m {
            rejected.push((*key, clip_reason(reason.clone())));
            receipts.push(FlReceipt {
                task,
                round,
                worker: *key,
                update: *update,
                accepted: false,
                work_units: 0,
                contribution_ppm: 0,
                reason: clip_reason(reason.clone()),
            });
        }
    }
    Ok(Closed { next, screened, receipts, rejected, control })
}

/// Each worker's last few yes/no marks (rejected, late), oldest first.
type Recent = BTreeMap<[u8; 32], VecDeque<bool>>;

/// Records `mark` for `worker`, keeping its last `window` marks; returns how many are set.
fn note(recent: &mut Recent, worker: [u8; 32], mark: bool, window: usize) -> usize {
    let h = recent.entry(worker).or_default();
    h.push_back(mark);
    if h.len() > window {
        h.pop_front();
    }
    h.iter().filter(|x| **x).count()
}

/// The owner's record of a task's workers across rounds.
#[derive(Debug, Default)]
pub struct Roster {
    /// Recent verdicts (true: rejected).
    history: Recent,
    banned: BTreeSet<[u8; 32]>,
    /// Recent rounds (true: late).
    lateness: Recent,
    benched_until: BTreeMap<[u8; 32], u32>,
    benched_times: BTreeMap<[u8; 32], u32>,
}

/// What a round changed in the roster.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RosterChange {
    /// Workers banned by this round.
    pub banned: Vec<[u8; 32]>,
    /// Stragglers benched by this round, with the rounds they sit out.
    pub benched: Vec<([u8; 32], u32)>,
}

impl Roster {
    /// Workers not asked in `round`: banned ones, and stragglers sitting out.
    pub fn excluded(&self, round: u32) -> BTreeSet<[u8; 32]> {
        self.banned
            .iter()
            .copied()
            .chain(self.benched_until.iter().filter(|(_, until)| **until > round).map(|(k, _)| *k))
            .collect()
    }

    /// Whether `worker` is banned.
    pub fn is_banned(&self, worker: &[u8; 32]) -> bool {
        self.banned.contains(worker)
    }

    /// Folds round `round` of `rounds` in: each receipt's verdict, then who delivered on time
    /// and who was late.
    pub fn record(
        &mut self,
        round: u32,
        rounds: u32,
        receipts: &[FlReceipt],
        on_time: impl IntoIterator<Item = [u8; 32]>,
        late: &[[u8; 32]],
    ) -> RosterChange {
        let mut change = RosterChange::default();
        for r in receipts {
            if note(&mut self.history, r.worker, !r.accepted, BAN_WINDOW) >= BAN_STRIKES && self.banned.insert(r.worker)
            {
                change.banned.push(r.worker);
            }
        }
        for (key, was_late) in on_time.into_iter().map(|k| (k, false)).chain(late.iter().map(|k| (*k, true))) {
            if note(&mut self.lateness, key, was_late, LATE_WINDOW) >= LATE_STRIKES {
                self.lateness.remove(&key);
                let times = self.benched_times.entry(key).or_insert(0u32);
                let sit_out = (STRAGGLER_BENCH_ROUNDS << (*times).min(3)).min(rounds);
                *times += 1;
                self.benched_until.insert(key, round + 1 + sit_out);
                change.benched.push((key, sit_out));
            }
        }
        change
    }
}

#[cfg(test)]
mod tests {
    //! A whole owner round with no sockets and no sleeps: real candle training on digits shards,
    //! a sign-flip poisoner's update made by the worker's own poison code, a straggler that never
    //! answers before the deadline; then the roster over three rounds.

    use std::path::Path;

    use ifx_learn::data::Dataset;
    use ifx_learn::model::{self, TrainConfig};
    use ifx_protocols::fl::poison::Poison;
    use ifx_protocols::fl::wire::{TaskSpec, to_safetensors};

    use ifx_protocols::fl::aggregate::{FULL_CONTRIBUTION_PPM, SAME_DATA_COSINE_MILLI};

    use super::*;
    use crate::fl::transfer::parse_update;
    use crate::fl::worker::poisoned;

    fn digits() -> Dataset {
        Dataset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/digits.csv.gz")).unwrap()
    }

    /// A worker's answer: train `shard` from `global`, send the (possibly poisoned) delta.
    fn answer(key: u8, global: &[f32], shard: &Dataset, poison: Poison, round: u32) -> Delivered {
        let cfg = TrainConfig { epochs: 1, batch: 32, lr: 0.01, seed: 7 + round as u64 };
        let (local, loss) = model::train(global, shard, &cfg).unwrap();
        let delta: Vec<f32> = local.iter().zip(global).map(|(l, g)| l - g).collect();
        let bytes = poisoned(poison, delta, round).unwrap();
        let update = parse_update(&bytes, shard.len() as u64).unwrap();
        Delivered { key: [key; 32], hash: *blake3::hash(&bytes).as_bytes(), update, loss, grad: None }
    }

    #[test]
    fn a_round_screens_out_a_poisoner_waits_out_a_straggler_and_the_roster_acts_on_both() {
        let (train, test) = digits().split();
        let shards = train.non_iid(5, 0.5, 11);
        let spec = TaskSpec {
            rounds: 10,
            clients_per_round: 5,
            min_clients: 3,
            aggregator: "trimmed-mean".into(),
            ..Default::default()
        };
        let agg = spec.validate().unwrap();
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        // Keys 1-3 honest, 4 the poisoner, 5 the straggler.
        let asked: Vec<(PeerId, [u8; 32])> = (0..5).map(|i| (peers[i], [i as u8 + 1; 32])).collect();
        let (poisoner, straggler) = ([4u8; 32], [5u8; 32]);
        let mut global = model::init(spec.init_seed);
        let (acc0, _) = model::evaluate(&global, &test).unwrap();
        let mut roster = Roster::default();
        for round in 0..3u32 {
            assert!(!roster.is_banned(&poisoner), "round {round}");
            let mut c = Collect::new(spec.clients_per_round as usize);
            c.asked(&asked);
            for i in 0..4 {
                let poison = if i == 3 { Poison::SignFlip } else { Poison::Honest };
                let done = c.answered(peers[i], Ok(answer(i as u8 + 1, &global, &shards[i], poison, round)));
                assert!(!done, "the straggler is still out");
            }
            // An answer from a peer nobody asked changes nothing.
            assert!(!c.answered(PeerId::random(), Err(Miss::Dropped("?".into()))));
            c.deadline_passed();
            assert!(c.end_attempt(spec.min_clients as usize));
            assert_eq!(c.late, vec![straggler]);
            assert_eq!(c.misses.len(), 1, "the straggler, dropped when the round closed");
            let Collect { mut delivered, misses, late, .. } = c;
            let closed = close([9; 16], round, &spec, agg, &global, &mut delivered, &misses).unwrap();
            // The poisoner's update is screened out and earns nothing; the honest ones earn.
            assert_eq!(closed.rejected.len(), 1, "{:?}", closed.rejected);
            assert_eq!(closed.rejected[0].0, poisoner);
            let by_worker: BTreeMap<[u8; 32], &FlReceipt> = closed.receipts.iter().map(|r| (r.worker, r)).collect();
            assert_eq!(by_worker.len(), 4);
            assert!(!by_worker[&poisoner].accepted && by_worker[&poisoner].work_units == 0);
            for k in 1..=3u8 {
                assert!(by_worker[&[k; 32]].accepted && by_worker[&[k; 32]].work_units > 0, "worker {k}");
            }
            let change = roster.record(round, spec.rounds, &closed.receipts, delivered.iter().map(|d| d.key), &late);
            match round {
                0 => assert_eq!(change, RosterChange::default()),
                // Late in 2 of its last 3 rounds: the straggler sits out 5 rounds.
                1 => assert_eq!(
                    change,
                    RosterChange { banned: vec![], benched: vec![(straggler, STRAGGLER_BENCH_ROUNDS)] }
                ),
                // Rejected 3 times in its last 5 updates: the poisoner is banned.
                _ => assert_eq!(change, RosterChange { banned: vec![poisoner], benched: vec![] }),
            }
            global = closed.next;
            assert!(to_safetensors(&global).is_ok());
        }
        let excluded = roster.excluded(3);
        assert!(excluded.contains(&poisoner) && excluded.contains(&straggler));
        assert!(!roster.excluded(7).contains(&straggler), "the straggler is back after round 1 + 1 + 5");
        assert!(roster.excluded(7).contains(&poisoner), "a ban is for the whole task");
        // The three honest updates a round moved the model.
        let (acc, _) = model::evaluate(&global, &test).unwrap();
        assert!(acc > acc0 + 0.2, "accuracy {acc0:.3} -> {acc:.3}");
    }

    /// Issue #20: pay by contribution. Three workers with their own shards, a fourth holding a
    /// copy of the first's shard, a fifth flipping signs: the two holders of one shard split one
    /// share (they earn the same, clearly less than a worker with unique data), the poisoner
    /// earns nothing, and the receipts' units are the paid units times the contribution.
    #[test]
    fn a_copied_shard_earns_its_holders_one_share_and_a_poisoner_earns_nothing() {
        let (train, _) = digits().split();
        let shards = train.non_iid(3, 0.5, 42);
        let spec =
            TaskSpec { clients_per_round: 5, min_clients: 3, aggregator: "trimmed-mean".into(), ..Default::default() };
        let agg = spec.validate().unwrap();
        let who = [
            (1u8, 0usize, Poison::Honest),
            (2, 1, Poison::Honest),
            (3, 2, Poison::Honest),
            (4, 0, Poison::Honest),
            (5, 1, Poison::SignFlip),
        ];
        let mut global = model::init(spec.init_seed);
        let mut earned: BTreeMap<u8, (u64, u64)> = BTreeMap::new();
        let mut closest = 0f64;
        for round in 0..6u32 {
            let mut delivered: Vec<Delivered> =
                who.iter().map(|(k, s, p)| answer(*k, &global, &shards[*s], *p, round)).collect();
            // Updates of different shards stay well apart from the same-data cosine.
            let v = |i: usize| delivered[i].update.values.iter().map(|x| *x as f64).collect::<Vec<f64>>();
            for (i, j) in [(0, 1), (0, 2), (1, 2)] {
                let (a, b) = (v(i), v(j));
                let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
                let n = |x: &[f64]| x.iter().map(|x| x * x).sum::<f64>().sqrt();
                closest = closest.max(dot / (n(&a) * n(&b)));
            }
            let closed = close([9; 16], round, &spec, agg, &global, &mut delivered, &[]).unwrap();
            // An auditor holding the same inputs in another order gets the same contributions.
            let mut again: Vec<Delivered> = delivered.iter().rev().cloned().collect();
            let reclosed = close([9; 16], round, &spec, agg, &global, &mut again, &[]).unwrap();
            assert_eq!(reclosed.screened.contribution_ppm, closed.screened.contribution_ppm);
            for r in &closed.receipts {
                let paid =
                    work_units(shards[who[r.worker[0] as usize - 1].1].len() as u64, spec.local_epochs, EXAMPLE_CAP);
                assert_eq!(r.work_units, contributed(paid, r.contribution_ppm), "{r:?}");
                let e = earned.entry(r.worker[0]).or_default();
                e.0 += r.contribution_ppm as u64;
                e.1 += r.work_units;
            }
            // The scale is the largest projection before the split: the two holders of shard 0
            // count double in it.
            let unsplit =
                closed.receipts.iter().map(|r| r.contribution_ppm * if matches!(r.worker[0], 1 | 4) { 2 } else { 1 });
            assert!((FULL_CONTRIBUTION_PPM - 1..=FULL_CONTRIBUTION_PPM).contains(&unsplit.max().unwrap()));
            global = closed.next;
        }
        eprintln!(
            "contribution ppm and units by worker over 6 rounds: {earned:?}; closest shards' cosine {closest:.3}"
        );
        assert!(closest < SAME_DATA_COSINE_MILLI as f64 / 1000.0 - 0.1, "{closest}");
        assert_eq!(earned[&1], earned[&4], "the two holders of shard 0 split its share evenly");
        assert_eq!(earned[&5], (0, 0), "the poisoner earns nothing");
        let unique = (earned[&2].0 + earned[&3].0) / 2;
        assert!(earned[&4].0 * 10 < unique * 7, "a copy earns {} against {unique} for unique data", earned[&4].0);
    }

    /// Issue #20's privacy table: the digits task on 10 non-IID clients, DP-FedAvg at budgets ε
    /// of 1, 4 and 8 (δ = 1e-5) and without DP, each worker's update privatised as a worker
    /// does it, each round closed as the owner does it. Prints the table for
    /// docs/BENCHMARKS.md; checks that every run kept its budget and that the noise is real
    /// (the tightest budget costs accuracy).
    #[test]
    fn accuracy_against_the_privacy_budget_on_ten_non_iid_clients() {
        let (train, test) = digits().split();
        let clients = 10;
        let shards = train.non_iid(clients, 0.5, 42);
        let mut rows = Vec::new();
        for eps in [None, Some(8.0), Some(4.0), Some(1.0)] {
            let spec = TaskSpec {
                rounds: 20,
                clients_per_round: clients as u32,
                min_clients: clients as u32,
                aggregator: "fedavg".into(),
                dp: eps.map(|epsilon| ifx_protocols::fl::dp::DpSpec { epsilon, delta: 1e-5, clip: 1.0 }),
                ..Default::default()
            };
            let agg = spec.validate().unwrap();
            let plan = spec.dp_plan().unwrap();
            let mut global = model::init(spec.init_seed);
            for round in 0..spec.rounds {
                let mut delivered: Vec<Delivered> = shards
                    .iter()
                    .enumerate()
                    .map(|(i, shard)| {
                        let cfg = TrainConfig { epochs: 3, batch: 16, lr: spec.lr_at(round), seed: round as u64 };
                        let (local, _) = model::train(&global, shard, &cfg).unwrap();
                        let mut delta: Vec<f32> = local.iter().zip(&global).map(|(l, g)| l - g).collect();
                        if let Some(p) = &plan {
                            ifx_protocols::fl::dp::privatize(&mut delta, p);
                        }
                        let bytes = to_safetensors(&delta).unwrap();
                        let update = parse_update(&bytes, shard.len() as u64).unwrap();
                        Delivered { key: [i as u8; 32], hash: [0; 32], update, loss: 0.0, grad: None }
                    })
                    .collect();
                global = close([1; 16], round, &spec, agg, &global, &mut delivered, &[]).unwrap().next;
            }
            let acc = model::accuracy(&global, &test).unwrap();
            if let (Some(e), Some(p)) = (eps, &plan) {
                assert!(p.epsilon <= e, "{p:?}");
            }
            rows.push((eps, plan, acc));
        }
        eprintln!(
            "| budget ε | ε spent (δ = 1e-5) | noise multiplier z | worker noise std | ε against the owner | test accuracy |"
        );
        eprintln!("|---|---|---|---|---|---|");
        for (eps, plan, acc) in &rows {
            match plan {
                Some(p) => eprintln!(
                    "| {} | {:.3} | {:.3} | {:.4} | {:.1} | {acc:.4} |",
                    eps.unwrap(),
                    p.epsilon,
                    p.noise_multiplier,
                    p.worker_noise_std,
                    p.epsilon_vs_owner
                ),
                None => eprintln!("| ∞ (no DP) | - | 0 | 0 | - | {acc:.4} |"),
            }
        }
        let (free, tight) = (rows[0].2, rows[3].2);
        assert!(free > 0.9, "without DP the task learns: {free}");
        assert!(tight < free - 0.05, "ε = 1 costs accuracy ({tight} against {free}): the noise is added");
    }
}
