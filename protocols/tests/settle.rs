//! Settlement over real signed ledgers: seals and quorums, payouts, slashing, stake operations,
//! governance at the named epoch, late entries, and (by proptest) the same payouts and roots
//! on two nodes whatever order they received the entries in, with every unit accounted for.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use ifx_protocols::NetworkConfig;
use ifx_protocols::infer::{Arch, Commitment, ModelSpec, weights_to_bytes};
use ifx_protocols::ledger::body::{DeliveryFault, FaultRulings, InferFault, InferReceipt, Ruling};
use ifx_protocols::ledger::{
    Entry, EntryKind, FlReceipt, JobPayment, Ledger, LivenessAttestation, PaidWork, PeerLiveness, PorVerdicts,
    RenderReceipt, WorkerVerdict,
};
use ifx_protocols::por::proof::AnswerProof;
use ifx_protocols::render::Tile;
use ifx_protocols::render::commit;
use ifx_protocols::render::job::JobSpec;
use ifx_protocols::settle::{
    EconParams, GenesisAlloc, Proposal, Settlements, StakeOp, StakeRole, Status, UNITS_PER_IFX, Vote, seal_view, settle,
};
use proptest::prelude::*;

const EPOCH_SECS: u64 = 30;

fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i.wrapping_mul(7).wrapping_add(3); 32])
}

fn pk(k: &SigningKey) -> [u8; 32] {
    k.verifying_key().to_bytes()
}

/// Three verifiers, four workers (the last one a cheater when a scenario says so).
struct Cast {
    verifiers: Vec<SigningKey>,
    workers: Vec<SigningKey>,
    /// Worker 2's second key: liquid units, no stake (a self-dealer's job owner).
    second: SigningKey,
}

fn cast() -> Cast {
    Cast { verifiers: (0..3).map(key).collect(), workers: (10..14).map(key).collect(), second: key(41) }
}

fn network(c: &Cast) -> NetworkConfig {
    let mut genesis: Vec<GenesisAlloc> = c
        .verifiers
        .iter()
        .map(|k| GenesisAlloc {
            key: hex::encode(pk(k)),
            role: StakeRole::Verifier,
            stake: 2_000 * UNITS_PER_IFX,
            liquid: 0,
        })
        .collect();
    genesis.extend(c.workers.iter().map(|k| GenesisAlloc {
        key: hex::encode(pk(k)),
        role: StakeRole::Worker,
        stake: 100 * UNITS_PER_IFX,
        liquid: 50 * UNITS_PER_IFX,
    }));
    genesis.push(GenesisAlloc {
        key: hex::encode(pk(&c.second)),
        role: StakeRole::Worker,
        stake: 0,
        liquid: 50 * UNITS_PER_IFX,
    });
    let n = NetworkConfig {
        id: "settle-test".into(),
        genesis_unix_secs: 0,
        epoch_secs: EPOCH_SECS,
        heartbeat_interval_ms: 1_000,
        economics: EconParams { vesting_secs: 10 * EPOCH_SECS, unbonding_secs: 2 * EPOCH_SECS, ..Default::default() },
        genesis,
        ..Default::default()
    };
    n.validate("network").unwrap();
    n
}

/// Work units of one tile of a test job: 100 x 100 pixels at 500 spp and 10 bounces.
const TILE_UNITS: u64 = 50_000;

/// A job of `tiles` tiles of [`TILE_UNITS`] each, in one column.
fn one_tile_job(tiles: u64) -> PaidWork {
    PaidWork::Render { width: 100, height: 100 * tiles as u32, spp: 500, max_bounces: 10, tile: 100, frames: [0, 0] }
}

fn job_id(epoch: u64, worker: usize) -> [u8; 16] {
    let mut j = [0u8; 16];
    j[0] = epoch as u8;
    j[1] = worker as u8;
    j
}

/// The FL task the owner pays for: 100 examples, 2 local epochs per update.
const FL_WORK: PaidWork = PaidWork::Fl { examples: 100, local_epochs: 2 };

/// Writes entries in time order, each author's chain linked, like nodes appending.
struct World {
    l: Ledger,
    log: Vec<Entry>,
}

impl World {
    fn new() -> Self {
        Self { l: Ledger::new("settle-test"), log: Vec::new() }
    }

    fn put(&mut self, k: &SigningKey, label: u64, kind: EntryKind, body: Vec<u8>) -> Entry {
        let e = self.l.next_entry(k, label, kind, body).unwrap();
        let out = self.l.ingest(vec![e.clone()], None);
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        self.log.push(e.clone());
        e
    }

    fn seal(&mut self, k: &SigningKey, epoch: u64) {
        let held: Vec<Arc<Entry>> = self.l.iter_sorted().collect();
        for part in seal_view(epoch, held.iter().map(|e| e.as_ref())).unwrap() {
            self.put(k, epoch + 1, EntryKind::Seal, part.encode());
        }
    }
}

/// What varies between scenarios.
#[derive(Clone, Debug)]
struct Plan {
    epochs: u64,
    /// Heartbeats seen per worker and epoch (out of 30).
    seen: Vec<u64>,
    /// Render work units per worker and epoch, in tiles of [`TILE_UNITS`] (rounded down).
    units: Vec<u64>,
    /// How much of each worker's job the owner pays for, in percent (0: unpaid).
    paid_pct: Vec<u64>,
    /// The worker that cheats, and in which epoch it is caught.
    cheat: Option<(usize, u64)>,
    /// Worker 1 bonds this much of its liquid in epoch 0.
    bond: u64,
    /// Worker 2 unbonds this much in epoch 1.
    unbond: u64,
    /// Governance: workers_bps = 7000 from epoch 2, voted yes by these verifiers.
    yes_votes: usize,
    /// Verifiers sealing each epoch.
    sealers: usize,
    /// Forged receipts in every epoch: a key without an account and worker 2's funded second
    /// key claim u64::MAX units for worker 2 without paying; worker 2 receipts itself; the owner
    /// receipts a tile past its job and one tile twice.
    forgers: bool,
    /// Worker 2's second key pays for a job of 2 tiles each epoch and receipts worker 2 for it.
    self_deal: bool,
    /// Fresh keys that each write one forged receipt in epoch 1 (a seal spam).
    flood: u32,
    /// A worker that lets every challenge time out in epoch 0 and is not challenged after.
    dodger: Option<usize>,
    /// A verifier whose verdicts carry no proof (copied from the others, never challenged).
    copier: Option<usize>,
    /// In epoch 1 the owner files evidence of a bad tile against worker 1, and each verifier
    /// rules on it as given (`None`: never rules).
    fault: Option<FaultPlan>,
    /// In epoch 1 the owner pays for an inference job of worker 1 (100 CNN rows in batches of
    /// 64), receipts both batches and files evidence of a wrong batch 1 with `rows` rows; each
    /// verifier rules as given.
    infer: Option<InferPlan>,
}

/// Evidence of a wrong inference batch against worker 1 in epoch 1 (see [`Plan::infer`]).
#[derive(Clone, Debug)]
struct InferPlan {
    rulings: Vec<Option<bool>>,
    /// Rows in the evidence's batch (36 is the paid job's batch 1).
    rows: usize,
}

/// The inference job of [`Plan::infer`].
const INFER_JOB: [u8; 16] = [7; 16];
const INFER_WORK: PaidWork = PaidWork::Infer { arch: Arch::Cnn, rows: 100, batch_rows: 64 };

/// Worker `k`'s signed answer to batch 1 of [`INFER_JOB`], as evidence.
fn infer_evidence(k: &SigningKey, rows: usize) -> InferFault {
    let w = weights_to_bytes(Arch::Cnn, &vec![0.0; Arch::Cnn.params()]).unwrap();
    let model = ModelSpec::publish(Arch::Cnn, &w).unwrap();
    let (inputs, outputs) = (vec![1.0; rows * 64], vec![0.5; rows * 10]);
    let sig = Commitment::of(INFER_JOB, 1, &model, &inputs, &outputs).sign(k);
    InferFault { job: INFER_JOB, batch: 1, model, inputs, outputs, worker: pk(k), sig, reason: "logits".into() }
}

/// Evidence against worker 1 in epoch 1 (see [`Plan::fault`]).
#[derive(Clone, Debug)]
struct FaultPlan {
    rulings: Vec<Option<bool>>,
    /// The opened bytes are altered after signing (an owner framing the worker).
    forged: bool,
    /// The evidence is filed by a funded key that did not pay for the job.
    stranger: bool,
}

/// Worker `k`'s signed tile 0 of the paid 2-tile job `job` (as `one_tile_job(2)` specifies it)
/// and evidence opening its sub-tile 3.
fn evidence(k: &SigningKey, job: [u8; 16]) -> DeliveryFault {
    let spec = JobSpec {
        scene: "cornell".into(),
        scene_toml: None,
        assets: Vec::new(),
        width: 100,
        height: 200,
        spp: 500,
        max_bounces: 10,
        tile: 100,
        unpaid: false,
        frames: Default::default(),
    };
    assert_eq!(PaidWork::render(&spec), one_tile_job(2));
    let t = Tile { x: 0, y: 0, w: 100, h: 100 };
    let px = commit::encode_pixels(&vec![[0.25f32, 0.5, 0.75]; 100 * 100]);
    let c = commit::TileCommitment::of(job, spec.hash(), t, &px);
    let sub = commit::sub_tiles(t.w, t.h)[3];
    DeliveryFault {
        job,
        spec,
        tile: [0, 0, 100, 100],
        worker: pk(k),
        root: c.root,
        sig: c.sign(k),
        index: 3,
        bytes: commit::sub_bytes(&px, t.w, sub),
        proof: commit::tree(&px, t.w, t.h).proof(3),
        reason: "re-render differs".into(),
    }
}

impl Plan {
    fn honest() -> Self {
        Self {
            epochs: 4,
            seen: vec![30, 30, 20, 30],
            units: vec![200_000, 100_000, 0, 50_000],
            paid_pct: vec![100],
            cheat: Some((3, 1)),
            bond: 20 * UNITS_PER_IFX,
            unbond: 10 * UNITS_PER_IFX,
            yes_votes: 3,
            sealers: 3,
            forgers: false,
            self_deal: false,
            flood: 0,
            dodger: None,
            copier: None,
            fault: None,
            infer: None,
        }
    }
}

/// Builds the whole history of a plan; returns every entry in the order it was written.
fn history(c: &Cast, p: &Plan) -> Vec<Entry> {
    let mut w = World::new();
    let owner = &c.workers[0];
    let mut proposal = None;
    for e in 0..p.epochs {
        // Seals of the previous epoch come first in this epoch (after its grace).
        if e > 0 {
            for v in c.verifiers.iter().take(p.sealers) {
                w.seal(v, e - 1);
            }
        }
        // Work: the job owner pays for one job per worker (as much of it as the plan says),
        // then writes a receipt per tile; and an FL receipt of a paid task.
        for (i, k) in c.workers.iter().enumerate().skip(1) {
            let tiles = p.units[i % p.units.len()] / TILE_UNITS;
            if tiles == 0 {
                continue;
            }
            let job = job_id(e, i);
            let work = one_tile_job(tiles);
            let pct = p.paid_pct[i % p.paid_pct.len()];
            if pct > 0 {
                let econ = &network(c).economics;
                let amount = econ.price_of(tiles * TILE_UNITS * pct / 100, econ.render_units_per_minute).max(1);
                w.put(owner, e, EntryKind::JobPayment, JobPayment { job, work, amount }.encode());
            }
            for tile in 0..tiles as u32 {
                // The receipt claims absurd units: settlement takes the spec's.
                let r = RenderReceipt { job, tile, worker: pk(k), work_units: u64::MAX, signed: None };
                w.put(owner, e, EntryKind::RenderReceipt, r.encode());
            }
        }
        if e == 0 {
            let pay = JobPayment { job: [9; 16], work: FL_WORK, amount: 5 * UNITS_PER_IFX };
            w.put(owner, 0, EntryKind::JobPayment, pay.encode());
        }
        let fl = FlReceipt {
            task: [9; 16],
            round: e as u32,
            worker: pk(&c.workers[1]),
            update: [1; 32],
            accepted: true,
            work_units: 500,
            contribution_ppm: 1_000_000,
            reason: String::new(),
        };
        w.put(owner, e, EntryKind::FlReceipt, fl.encode());
        if let Some(f) = p.fault.as_ref().filter(|_| e == 1) {
            let mut ev = evidence(&c.workers[1], job_id(1, 1));
            if f.forged {
                ev.bytes[0] ^= 0x10;
            }
            let by = if f.stranger { &c.second } else { owner };
            let id = w.put(by, 1, EntryKind::DeliveryFault, ev.encode()).id();
            for (v, r) in c.verifiers.iter().zip(&f.rulings) {
                if let Some(guilty) = r {
                    let body = FaultRulings { rulings: vec![Ruling { fault: id, guilty: *guilty }] };
                    w.put(v, 1, EntryKind::FaultRulings, body.encode());
                }
            }
        }
        if let Some(f) = p.infer.as_ref().filter(|_| e == 1) {
            let pay = JobPayment { job: INFER_JOB, work: INFER_WORK, amount: UNITS_PER_IFX };
            w.put(owner, 1, EntryKind::JobPayment, pay.encode());
            for batch in 0..2 {
                let r = InferReceipt {
                    job: INFER_JOB,
                    batch,
                    worker: pk(&c.workers[1]),
                    outputs: [0; 32],
                    verified: false,
                };
                w.put(owner, 1, EntryKind::InferReceipt, r.encode());
            }
            let id = w.put(owner, 1, EntryKind::InferFault, infer_evidence(&c.workers[1], f.rows).encode()).id();
            for (v, r) in c.verifiers.iter().zip(&f.rulings) {
                if let Some(guilty) = r {
                    let body = FaultRulings { rulings: vec![Ruling { fault: id, guilty: *guilty }] };
                    w.put(v, 1, EntryKind::FaultRulings, body.encode());
                }
            }
        }
        let w2 = pk(&c.workers[2]);
        if p.forgers {
            let forged =
                |job, tile| RenderReceipt { job, tile, worker: w2, work_units: u64::MAX, signed: None }.encode();
            w.put(&key(40), e, EntryKind::RenderReceipt, forged([40; 16], 0));
            w.put(&c.second, e, EntryKind::RenderReceipt, forged([41; 16], 0));
            w.put(&c.workers[2], e, EntryKind::RenderReceipt, forged([42; 16], 0));
            // The owner's paid job of worker 1 (2 tiles): a third tile, and tile 0 again.
            let paid = job_id(e, 1);
            let again = RenderReceipt { job: paid, tile: 0, worker: pk(&c.workers[1]), work_units: 1, signed: None };
            w.put(owner, e, EntryKind::RenderReceipt, again.encode());
            let past = RenderReceipt { job: paid, tile: 2, worker: pk(&c.workers[1]), work_units: 1, signed: None };
            w.put(owner, e, EntryKind::RenderReceipt, past.encode());
        }
        if e == 1 {
            for i in 0..p.flood {
                let mut seed = [0xee; 32];
                seed[..4].copy_from_slice(&i.to_le_bytes());
                let fresh = SigningKey::from_bytes(&seed);
                let r = RenderReceipt { job: [1; 16], tile: 0, worker: w2, work_units: u64::MAX, signed: None };
                w.put(&fresh, 1, EntryKind::RenderReceipt, r.encode());
            }
        }
        if p.self_deal {
            let econ = &network(c).economics;
            let (job, work) = ([50 + e as u8; 16], one_tile_job(2));
            let amount = econ.price_of(2 * TILE_UNITS, econ.render_units_per_minute);
            w.put(&c.second, e, EntryKind::JobPayment, JobPayment { job, work, amount }.encode());
            for tile in 0..2 {
                let r = RenderReceipt { job, tile, worker: w2, work_units: 0, signed: None };
                w.put(&c.second, e, EntryKind::RenderReceipt, r.encode());
            }
        }
        if e == 0 && p.bond > 0 {
            w.put(
                &c.workers[1],
                0,
                EntryKind::Stake,
                StakeOp::Bond { amount: p.bond, role: StakeRole::Worker }.encode(),
            );
        }
        if e == 1 && p.unbond > 0 {
            w.put(&c.workers[2], 1, EntryKind::Stake, StakeOp::Unbond { amount: p.unbond }.encode());
        }
        if e == 0 {
            let prop = Proposal { param: "workers_bps".into(), value: 7_000, from_epoch: 2, note: "test".into() };
            proposal = Some(w.put(&c.verifiers[0], 0, EntryKind::Proposal, prop.encode()).id());
        }
        if e == 1 {
            for v in c.verifiers.iter().take(p.yes_votes) {
                w.put(v, 1, EntryKind::Vote, Vote { proposal: proposal.unwrap(), yes: true }.encode());
            }
        }
        // Verifier reports about epoch e, labelled e (written in its grace period).
        for (vi, v) in c.verifiers.iter().enumerate() {
            let peers: Vec<PeerLiveness> = {
                let mut ps: Vec<PeerLiveness> = c
                    .workers
                    .iter()
                    .enumerate()
                    .map(|(i, k)| PeerLiveness { peer: pk(k), seen: p.seen[i % p.seen.len()] })
                    .collect();
                ps.sort_by_key(|x| x.peer);
                ps
            };
            w.put(
                v,
                e,
                EntryKind::Liveness,
                LivenessAttestation { epoch: e, expected: 30, part: 0, parts: 1, peers }.encode(),
            );
            let mut workers: Vec<WorkerVerdict> = c
                .workers
                .iter()
                .enumerate()
                .filter(|(i, _)| p.dodger != Some(*i) || e == 0)
                .map(|(i, k)| {
                    if p.dodger == Some(i) {
                        // No answer, so no proof.
                        let silent = WorkerVerdict {
                            worker: pk(k),
                            passed: 0,
                            failed: 0,
                            timeouts: 3,
                            mean_latency_ms: 0,
                            benches: 0,
                            ib_milli: 0,
                            last_failure: String::new(),
                            proof: None,
                        };
                        return silent;
                    }
                    let cheating = p.cheat.is_some_and(|(who, when)| who == i && when == e);
                    WorkerVerdict {
                        worker: pk(k),
                        passed: if cheating { 0 } else { 2 },
                        failed: u32::from(cheating),
                        timeouts: 0,
                        mean_latency_ms: 10,
                        benches: if cheating { 0 } else { 1 },
                        ib_milli: if cheating { 0 } else { 1_000 + 500 * i as u32 },
                        last_failure: String::new(),
                        // The worker's signed answer to this verifier's challenge (unless the
                        // plan has this verifier copy its verdicts).
                        proof: (p.copier != Some(vi))
                            .then(|| AnswerProof::sign(k, &pk(v), e, [e as u8; 32], [i as u8; 32])),
                    }
                })
                .collect();
            workers.sort_by_key(|x| x.worker);
            w.put(v, e, EntryKind::PorVerdicts, PorVerdicts { epoch: e, workers }.encode());
        }
    }
    // The last epoch's seals.
    for v in c.verifiers.iter().take(p.sealers) {
        w.seal(v, p.epochs - 1);
    }
    w.log
}

fn settle_entries(n: &NetworkConfig, entries: Vec<Entry>, now: u64) -> Settlements {
    let mut l = Ledger::new("settle-test");
    let out = l.ingest(entries, None);
    assert!(out.rejected.is_empty());
    settle(n, l.iter_sorted(), now)
}

/// Units everywhere (burned units left): accounts (bonded, liquid, unbonding, still vesting) plus what was never
/// allocated, against genesis plus everything minted.
fn conserved(n: &NetworkConfig, s: &Settlements) -> bool {
    let genesis: u128 = n.genesis.iter().map(|g| g.stake as u128 + g.liquid as u128).sum();
    let minted: u128 = s.epochs.iter().map(|e| e.minted as u128).sum();
    let kept: u128 = s.epochs.iter().map(|e| e.unallocated as u128).sum();
    let held: u128 = s.accounts.values().map(|a| a.held()).sum();
    let burned: u128 = s.epochs.iter().map(|e| e.burned as u128).sum();
    held + kept + burned == genesis + minted
}

#[test]
fn four_sealed_epochs_pay_slash_and_apply_governance_on_time() {
    let c = cast();
    let n = network(&c);
    let p = Plan::honest();
    let s = settle_entries(&n, history(&c, &p), 10);
    // Epochs 0-3 sealed; epoch 4 holds only the seals of epoch 3 and nobody sealed it.
    let statuses: Vec<Status> = s.epochs.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [vec![Status::Sealed; 4], vec![Status::Unsealed]].concat());
    for e in s.sealed() {
        assert!(e.balanced(), "epoch {} does not balance", e.epoch);
        assert_eq!(e.minted, n.economics.mint_at(e.epoch));
        assert_eq!(e.sealers.len(), 3);
    }
    assert!(conserved(&n, &s));
    // The cheater: caught in epoch 1 only, paid nothing then, slashed 20% of its stake.
    let cheater = pk(&c.workers[3]);
    let e1 = s.epoch(1).unwrap();
    assert_eq!(e1.caught, vec![cheater]);
    assert_eq!(e1.slashed.len(), 1);
    assert_eq!(e1.slashed[0].amount, 20 * UNITS_PER_IFX);
    assert!(e1.payouts.iter().all(|x| x.key != cheater));
    assert_eq!(e1.penalties, 20 * UNITS_PER_IFX);
    // Penalties go to the verifiers with their pool.
    let to_verifiers: u64 = e1.payouts.iter().map(|x| x.verifiers).sum();
    assert_eq!(to_verifiers, e1.pool_verifiers + e1.penalties);
    // No honest node is ever slashed; the cheater earns in the epochs it was not caught.
    for e in s.sealed() {
        assert!(e.slashed.iter().all(|x| x.key == cheater));
        if e.epoch != 1 {
            assert!(e.payouts.iter().any(|x| x.key == cheater && x.workers > 0));
        }
    }
    // Governance: 8108 bps in epochs 0 and 1, 7000 from epoch 2 exactly, in the payouts too.
    let bps: Vec<u64> = s.sealed().map(|e| e.params.workers_bps).collect();
    assert_eq!(bps, vec![8_108, 8_108, 7_000, 7_000]);
    assert_eq!(s.epoch(2).unwrap().governance.len(), 1);
    assert!(s.epoch(2).unwrap().governance[0].passed);
    let paid_workers = |e: u64| s.epoch(e).unwrap().payouts.iter().map(|x| x.workers).sum::<u64>();
    assert_eq!(paid_workers(1), n.economics.mint_per_epoch * 8_108 / 10_000);
    assert_eq!(paid_workers(2), n.economics.mint_per_epoch * 7_000 / 10_000);
    // Voters shared the governance pool of epoch 1.
    assert_eq!(s.epoch(1).unwrap().payouts.iter().filter(|x| x.governance > 0).count(), 3);
    // Stake: worker 1 bonded 20 IFX in epoch 0, worker 2 unbonds 10 IFX (liquid 2 epochs later).
    let w1 = &s.accounts[&pk(&c.workers[1])];
    assert_eq!(w1.bonded, 120 * UNITS_PER_IFX);
    let w2 = &s.accounts[&pk(&c.workers[2])];
    assert_eq!(w2.bonded, 90 * UNITS_PER_IFX);
    // Vesting: 25% liquid at once, 75% over 10 epochs.
    let x = &s.epoch(0).unwrap().payouts[0];
    assert_eq!(x.liquid, x.total / 4);
    assert_eq!(x.liquid + x.vesting, x.total);
    // The worker weight follows IB x (uptime + W_PoD x delivery): worker 1 (IB 1.5, 30/30
    // heartbeats, 100k render units + 500 FL units) against worker 2 (IB 2.0, 20/30, no work).
    let e0 = s.epoch(0).unwrap();
    let line = |k: &SigningKey| e0.workers.iter().find(|w| w.key == pk(k)).unwrap().clone();
    let (l1, l2) = (line(&c.workers[1]), line(&c.workers[2]));
    assert_eq!((l1.ib_milli, l1.uptime_milli_minutes), (1_500, 500));
    let fl_units = FL_WORK.units_per_update().unwrap();
    assert_eq!(l1.delivery_milli_minutes, 100_000 * 1000 / 100_000 + fl_units * 1000 / 1_000);
    assert_eq!((l2.ib_milli, l2.uptime_milli_minutes, l2.delivery_milli_minutes), (2_000, 333, 0));
    let w = |k: &SigningKey| e0.payouts.iter().find(|x| x.key == pk(k)).unwrap().worker_weight;
    assert_eq!(w(&c.workers[1]), 1_500 * (500 * 1000 + 2_000 * (1_000 + fl_units as u128 * 1000 / 1_000)));
    assert_eq!(w(&c.workers[2]), 2_000 * (333 * 1000));
}

#[test]
fn seals_need_two_thirds_of_verifier_stake_and_late_entries_never_settle() {
    let c = cast();
    let n = network(&c);
    // One sealer of three: no epoch is ever sealed, nothing minted.
    let p = Plan { sealers: 1, ..Plan::honest() };
    let s = settle_entries(&n, history(&c, &p), 10);
    assert!(s.epochs.iter().all(|e| e.status == Status::Unsealed && e.minted == 0));
    // The last epoch's seal may still come while the next epoch runs: pending, and nothing later.
    let s = settle_entries(&n, history(&c, &p), 4);
    assert_eq!(s.epochs.last().unwrap().status, Status::Pending);
    // Two of three suffice.
    let p = Plan { sealers: 2, ..Plan::honest() };
    let all = history(&c, &p);
    let s = settle_entries(&n, all.clone(), 10);
    assert_eq!(s.sealed().count(), 4);
    // A late entry labelled epoch 1, past the sealed frontier (here: from an author the seal
    // does not list), changes nothing.
    let late = RenderReceipt { job: [7; 16], tile: 99, worker: pk(&c.workers[2]), work_units: 9_999_999, signed: None };
    let mut with_late = all.clone();
    with_late
        .push(Entry::sign(&key(40), "settle-test", 0, [0; 32], 1, EntryKind::RenderReceipt, late.encode()).unwrap());
    let s2 = settle_entries(&n, with_late, 10);
    assert_eq!(
        s.epochs.iter().map(|e| e.root).collect::<Vec<_>>(),
        s2.epochs.iter().map(|e| e.root).collect::<Vec<_>>()
    );
    // Missing one sealed entry: this node stops at that epoch (incomplete) and settles nothing
    // past it.
    let receipt_at_2 = all.iter().position(|e| e.epoch == 2 && e.kind == EntryKind::RenderReceipt).unwrap();
    let mut missing = all.clone();
    // Removing one entry of the owner's chain leaves its successors pending as well.
    missing.remove(receipt_at_2);
    let mut l = Ledger::new("settle-test");
    l.ingest(missing, None);
    let s3 = settle(&n, l.iter_sorted(), 10);
    assert_eq!(s3.epochs.last().unwrap().status, Status::Incomplete);
    assert_eq!(s3.epochs.last().unwrap().epoch, 2);
}

/// Issue #21: a receipt counted for whoever signed it, with the units it claimed. Now forged
/// receipts (no account, a funded key that paid nothing, the worker itself, a tile past the
/// job, a tile twice) change no payout; a self-dealer's second key pays the burn for exactly
/// the units its job spec gives.
#[test]
fn forged_receipts_earn_nothing_and_self_dealing_pays_its_burn() {
    let c = cast();
    let n = network(&c);
    let honest = settle_entries(&n, history(&c, &Plan::honest()), 10);
    let forged = settle_entries(&n, history(&c, &Plan { forgers: true, ..Plan::honest() }), 10);
    assert_eq!(forged.sealed().count(), 4);
    for (h, f) in honest.sealed().zip(forged.sealed()) {
        assert_eq!(h.payouts, f.payouts, "epoch {}", h.epoch);
        assert_eq!(h.root, f.root);
        assert_eq!(h.workers, f.workers);
        let refused = |why: &str| f.refused.get(why).copied().unwrap_or(0);
        assert_eq!(refused("receipt: the job was not paid for by its author"), 2, "{:?}", f.refused);
        assert_eq!(refused("receipt: written by its own worker"), 1);
        assert_eq!(refused("receipt: counted before"), 1);
        assert_eq!(refused("receipt: the tile is outside the paid job"), 1);
        assert!(f.balanced());
    }
    // Worker 2 delivers nothing in the honest plan; with its second key paying, exactly the two
    // paid tiles count, and the second key's burn is in the settlement.
    let dealt = settle_entries(&n, history(&c, &Plan { self_deal: true, ..Plan::honest() }), 10);
    let w2 = pk(&c.workers[2]);
    for (h, d) in honest.sealed().zip(dealt.sealed()) {
        let line = |s: &ifx_protocols::settle::EpochSettlement| {
            s.workers.iter().find(|l| l.key == w2).unwrap().delivery_milli_minutes
        };
        assert_eq!(line(d) - line(h), 2 * TILE_UNITS * 1000 / n.economics.render_units_per_minute);
        let price = n.economics.price_of(2 * TILE_UNITS, n.economics.render_units_per_minute);
        assert_eq!(d.burned - h.burned, price);
        assert_eq!(d.net_supply, d.minted as i128 - d.unallocated as i128 - d.burned as i128);
    }
    let burned = dealt.accounts[&pk(&c.second)].burned;
    assert_eq!(burned, 4 * n.economics.price_of(2 * TILE_UNITS, 100_000));
    // The second key earns the artists' reward for what it consumed, but at most a quarter of
    // what it burned: self-dealing never pays for itself through it.
    let back: u64 = dealt.sealed().flat_map(|e| &e.payouts).filter(|p| p.key == pk(&c.second)).map(|p| p.artists).sum();
    assert!(back > 0 && back * 4 <= burned, "{back} of {burned}");
    assert!(conserved(&n, &dealt));
}

/// Issue #21: a seal held at most 800 authors, so 801 fresh keys with one entry each in an
/// epoch stopped all minting. 10,000 now seal (in parts), and their entries change no payout.
#[test]
fn ten_thousand_authors_in_one_epoch_seal_and_change_nothing() {
    let c = cast();
    let n = network(&c);
    let honest = settle_entries(&n, history(&c, &Plan::honest()), 10);
    let flooded = settle_entries(&n, history(&c, &Plan { flood: 10_000, ..Plan::honest() }), 10);
    assert_eq!(flooded.sealed().count(), 4);
    let e1 = flooded.epoch(1).unwrap();
    assert!(e1.sealed_entries > 10_000);
    assert_eq!(e1.refused["receipt: the job was not paid for by its author"], 10_000);
    for (h, f) in honest.sealed().zip(flooded.sealed()) {
        assert_eq!((h.root, &h.payouts), (f.root, &f.payouts), "epoch {}", h.epoch);
    }
}

/// Issue #19: `ifx estimate` runs settlement's own rules on assumed inputs. Given a worker's
/// inputs of the last sealed epoch, beside the same other workers, the estimate is what that
/// epoch paid it, to the unit; a key without the required stake is told it would earn nothing,
/// what it would earn bonded, and the stake it needs.
#[test]
fn an_estimate_on_an_epochs_own_inputs_is_what_settlement_paid() {
    use ifx_protocols::settle::{Assumed, estimate};
    let c = cast();
    let n = network(&c);
    let s = settle_entries(&n, history(&c, &Plan::honest()), 10);
    let e3 = s.epoch(3).unwrap();
    assert_eq!(e3.status, Status::Sealed);
    let epoch_mm = EPOCH_SECS * 1000 / 60;
    let mut checked = 0;
    for w in &c.workers[1..] {
        let line = e3.workers.iter().find(|l| l.key == pk(w)).unwrap();
        if line.uptime_milli_minutes * 10_000 % epoch_mm != 0 {
            continue; // its uptime is not a whole number of basis points
        }
        let assumed = Assumed {
            ib_milli: line.ib_milli,
            uptime_bps: line.uptime_milli_minutes * 10_000 / epoch_mm,
            delivery_milli_minutes: line.delivery_milli_minutes,
            qos_bps: line.qos_bps,
        };
        let est = estimate(&s, EPOCH_SECS, 3, pk(w), assumed);
        let paid = e3.payouts.iter().find(|p| p.key == pk(w)).unwrap();
        assert_eq!(est.based_on, Some(3));
        assert_eq!(est.excluded, None);
        assert_eq!(
            (est.total, est.liquid, est.vesting),
            (paid.workers, paid.workers / 4, paid.workers - paid.workers / 4)
        );
        assert_eq!(est.weight, paid.worker_weight);
        assert_eq!(est.pool_workers, e3.pool_workers);
        let paid_workers = e3.payouts.iter().filter(|p| p.workers > 0).count() as u64;
        assert_eq!(est.other_workers, paid_workers - 1);
        assert_eq!(est.per_day, paid.workers * 86_400 / EPOCH_SECS);
        checked += 1;
    }
    assert!(checked >= 2, "{checked} workers compared");
    // A key with no stake: nothing, what it would earn with the stake, and the stake it needs.
    let full = Assumed { ib_milli: 1_500, uptime_bps: 10_000, delivery_milli_minutes: 0, qos_bps: 10_000 };
    let est = estimate(&s, EPOCH_SECS, 4, pk(&c.second), full);
    assert_eq!(est.total, 0);
    assert!(est.excluded.as_deref().unwrap().starts_with("bonded 0 below the required 25000"), "{:?}", est.excluded);
    assert_eq!(est.required_stake, n.economics.required_stake(EPOCH_SECS, 1_500));
    let paid_workers = e3.payouts.iter().filter(|p| p.workers > 0).count() as u64;
    assert_eq!(est.other_workers, paid_workers);
    assert!(est.if_staked > 0 && est.if_staked < e3.pool_workers / paid_workers, "{}", est.if_staked);
    // A stranger without an account is told to bond as a worker.
    let est = estimate(&s, EPOCH_SECS, 4, [0xee; 32], full);
    assert!(est.excluded.unwrap().contains("ifx stake bond --role worker"));
    // Before any seal it is alone in the pool.
    let none = settle_entries(&n, Vec::new(), 0);
    let est = estimate(&none, EPOCH_SECS, 0, pk(&c.workers[1]), full);
    assert_eq!((est.based_on, est.other_workers, est.total), (None, 0, est.pool_workers));
}

/// Issue #21: ignoring every challenge cost nothing. A worker whose challenges all timed out
/// earns nothing then, and nothing after while it answers none (unchallenged epochs fall back
/// to its record); the others share its part.
#[test]
fn a_worker_that_answers_no_challenge_earns_nothing() {
    let c = cast();
    let n = network(&c);
    let s = settle_entries(&n, history(&c, &Plan { dodger: Some(2), cheat: None, ..Plan::honest() }), 10);
    assert_eq!(s.sealed().count(), 4);
    let dodger = pk(&c.workers[2]);
    for e in s.sealed() {
        let line = e.workers.iter().find(|l| l.key == dodger).unwrap();
        assert_eq!((line.qos_bps, line.excluded.as_deref()), (0, Some("answered no challenge")), "epoch {}", e.epoch);
        assert!(e.payouts.iter().all(|p| p.key != dodger || p.workers == 0));
        assert_eq!(e.payouts.iter().map(|p| p.workers).sum::<u64>(), e.pool_workers);
    }
}

/// Issue #21: verifiers were paid for verdicts agreeing with the quorum, and every outcome is
/// gossiped at once, so copying the others' outcomes paid as well as challenging. A verdict
/// counts for its verifier's pay only with the worker's signed answer to that verifier's own
/// challenge: the copier earns its liveness attestation and nothing for its verdicts, while
/// the quorum (and who is caught) stays the same.
#[test]
fn a_verifier_that_copies_verdicts_earns_nothing_for_them() {
    let c = cast();
    let n = network(&c);
    let honest = settle_entries(&n, history(&c, &Plan::honest()), 10);
    let copied = settle_entries(&n, history(&c, &Plan { copier: Some(2), ..Plan::honest() }), 10);
    let (copier, other) = (pk(&c.verifiers[2]), pk(&c.verifiers[0]));
    for (h, x) in honest.sealed().zip(copied.sealed()) {
        let w = |s: &ifx_protocols::settle::EpochSettlement, k: [u8; 32]| {
            s.payouts.iter().find(|p| p.key == k).map_or(0, |p| p.verifier_weight)
        };
        assert!(w(h, copier) > 1, "epoch {}: it earned for its verdicts when they were proven", h.epoch);
        assert_eq!(w(x, copier), 1, "epoch {}: only its liveness attestation counts", x.epoch);
        assert_eq!(w(x, other), w(h, other));
        assert_eq!(h.caught, x.caught);
        assert!(x.balanced());
    }
}

/// Issue #21, verified delivery: evidence of a bad tile slashes its worker once verifiers
/// holding more than half of the verifier stake rule it guilty; one verifier alone decides
/// nothing; evidence a majority finds unfounded voids the accuser's remaining credit; evidence
/// with altered bytes, or from a key that did not pay for the job, is refused.
#[test]
fn bad_job_tiles_are_slashed_on_a_verifier_majority_and_false_evidence_costs_the_accuser() {
    let c = cast();
    let n = network(&c);
    let w1 = pk(&c.workers[1]);
    // Jobs paid at 150%: credit is left after every tile.
    let run = |f: FaultPlan| {
        let p = Plan { cheat: None, fault: Some(f), paid_pct: vec![150], ..Plan::honest() };
        let s = settle_entries(&n, history(&c, &p), 10);
        assert!(s.epochs.iter().all(|e| e.balanced()));
        assert!(conserved(&n, &s));
        s
    };
    let plan = |rulings: Vec<Option<bool>>| FaultPlan { rulings, forged: false, stranger: false };
    // Two of three verifiers (2/3 of the stake): guilty, slashed 20%, paid nothing in epoch 1.
    let s = run(plan(vec![Some(true), Some(true), None]));
    let e1 = s.epoch(1).unwrap();
    assert_eq!(e1.faults.len(), 1);
    assert_eq!(e1.faults[0].decision, "guilty");
    assert_eq!((e1.faults[0].worker, e1.faults[0].payer), (w1, pk(&c.workers[0])));
    assert_eq!(e1.caught, vec![w1]);
    assert_eq!(e1.slashed.len(), 1);
    assert_eq!((e1.slashed[0].key, e1.slashed[0].reason.as_str()), (w1, "delivered a bad job tile"));
    // Besides 20% of its stake, the pay it earned in epoch 0 that was still vesting: it ends with
    // nothing locked, and what it lost went to the verifiers with the slashed stake.
    let e0_vesting = s.epoch(0).unwrap().payouts.iter().find(|x| x.key == w1).unwrap().vesting;
    assert!(e1.slashed[0].vesting > 0 && e1.slashed[0].vesting <= e0_vesting, "{:?}", e1.slashed[0]);
    assert!(e1.slashed[0].amount > e1.slashed[0].vesting, "and stake");
    assert_eq!(s.accounts[&w1].slashed, e1.slashed[0].amount, "slashed once");
    assert_eq!(e1.penalties, e1.slashed[0].amount);
    assert_eq!(s.accounts[&w1].locked(), 0);
    assert!(e1.payouts.iter().all(|x| x.key != w1 || x.workers == 0));
    let line = e1.workers.iter().find(|l| l.key == w1).unwrap();
    assert_eq!(line.excluded.as_deref(), Some("caught: delivered a bad job tile"));
    // It earned before; after, it is jailed for `jail_epochs` (10): nothing from the worker
    // pool, not slashed again.
    assert!(s.epoch(0).unwrap().payouts.iter().any(|x| x.key == w1 && x.workers > 0));
    for e in [2, 3] {
        let es = s.epoch(e).unwrap();
        assert!(es.payouts.iter().all(|x| x.key != w1 || x.workers == 0), "epoch {e}");
        let line = es.workers.iter().find(|l| l.key == w1).unwrap();
        assert_eq!(line.excluded.as_deref(), Some("caught: jailed after bad delivery"));
        assert!(es.slashed.is_empty() && es.caught.is_empty());
    }
    // With jail_epochs 0 it earns again in the next epoch.
    let mut n0 = n.clone();
    n0.economics.jail_epochs = 0;
    let p = Plan { cheat: None, fault: Some(plan(vec![Some(true); 3])), paid_pct: vec![150], ..Plan::honest() };
    let s0 = settle_entries(&n0, history(&c, &p), 10);
    assert!(s0.epoch(2).unwrap().payouts.iter().any(|x| x.key == w1 && x.workers > 0));
    // One verifier of three: pending, nobody slashed (a lone verifier cannot frame a worker).
    let s = run(plan(vec![Some(true), None, None]));
    let e1 = s.epoch(1).unwrap();
    assert_eq!(e1.faults[0].decision, "pending");
    assert!(s.sealed().all(|e| e.slashed.is_empty()));
    let left = |s: &Settlements| s.epoch(1).unwrap().jobs.iter().find(|j| j.job == job_id(1, 1)).unwrap().remaining;
    assert_eq!(left(&s), TILE_UNITS, "half the 2 tiles' credit is left");
    // Still pending in the next epochs (the window is 4 epochs).
    assert!(s.epoch(3).unwrap().faults.iter().all(|f| f.decision == "pending"));
    // A majority rules it unfounded: the worker is untouched and the accuser's credit for the
    // job is void (later receipts of it count nothing).
    let s = run(plan(vec![Some(false), Some(true), Some(false)]));
    let e1 = s.epoch(1).unwrap();
    assert_eq!(e1.faults[0].decision, "unfounded");
    assert!(e1.slashed.is_empty());
    assert_eq!(left(&s), 0);
    // Altered bytes (the worker never signed them) and a key that did not pay: refused.
    for (f, why) in [
        (
            FaultPlan { forged: true, ..plan(vec![Some(true); 3]) },
            "delivery-fault: proves nothing (signature, opening or worker)",
        ),
        (
            FaultPlan { stranger: true, ..plan(vec![Some(true); 3]) },
            "delivery-fault: not evidence about a job its author paid for",
        ),
    ] {
        let s = run(f);
        let e1 = s.epoch(1).unwrap();
        assert!(e1.faults.is_empty());
        assert_eq!(e1.refused.get(why), Some(&1), "{:?}", e1.refused);
        assert!(s.sealed().all(|e| e.slashed.is_empty()));
    }
}

/// Inference batches are paid by the rows the paid job puts in them, and a wrong batch is
/// slashed like a bad tile, with its own reason; evidence of a batch the job does not have
/// (other rows) is refused.
#[test]
fn inference_batches_are_paid_by_their_rows_and_a_wrong_batch_is_slashed() {
    let c = cast();
    let n = network(&c);
    let w1 = pk(&c.workers[1]);
    let run = |f: InferPlan| {
        let p = Plan { cheat: None, infer: Some(f), ..Plan::honest() };
        let s = settle_entries(&n, history(&c, &p), 10);
        assert!(s.epochs.iter().all(|e| e.balanced()));
        assert!(conserved(&n, &s));
        s
    };
    let s = run(InferPlan { rulings: vec![Some(true), Some(true), None], rows: 36 });
    let e1 = s.epoch(1).unwrap();
    let line = e1.jobs.iter().find(|j| j.job == INFER_JOB).unwrap();
    // 64 CNN rows are 39.6 MFLOP (40 units), the last 36 rows 22.3 (23).
    assert_eq!(line.delivered, 40 + 23);
    assert_eq!(e1.faults.len(), 1);
    assert_eq!(e1.faults[0].decision, "guilty");
    assert_eq!(e1.slashed.len(), 1);
    assert_eq!((e1.slashed[0].key, e1.slashed[0].reason.as_str()), (w1, "answered an inference batch wrongly"));
    assert_eq!(
        s.epoch(2).unwrap().workers.iter().find(|l| l.key == w1).unwrap().excluded.as_deref(),
        Some("caught: jailed after bad delivery")
    );
    // Evidence with a full 64-row batch 1, which the 100-row job does not have: refused.
    let s = run(InferPlan { rulings: vec![Some(true); 3], rows: 64 });
    let e1 = s.epoch(1).unwrap();
    assert!(e1.faults.is_empty());
    assert_eq!(e1.refused.get("delivery-fault: not evidence about a job its author paid for"), Some(&1));
    assert!(s.sealed().all(|e| e.slashed.is_empty()));
}

#[test]
fn governance_without_quorum_changes_nothing() {
    let c = cast();
    let n = network(&c);
    // One verifier's yes: 2000 of 6000 + 400 IFX staked is below the 33.34% quorum.
    let p = Plan { yes_votes: 1, ..Plan::honest() };
    let s = settle_entries(&n, history(&c, &p), 10);
    assert!(s.epochs.iter().all(|e| e.params.workers_bps == 8_108));
    let g = &s.epoch(2).unwrap().governance[0];
    assert!(!g.passed);
    assert!(g.reason.as_deref().unwrap().contains("quorum"));
}

fn arb_plan() -> impl Strategy<Value = Plan> {
    (
        2u64..5,
        proptest::collection::vec(0u64..=30, 4),
        (proptest::collection::vec(0u64..1_000_000, 4), proptest::collection::vec(0u64..=150, 4)),
        proptest::option::of((0usize..4, 0u64..4)),
        0u64..80,
        0u64..120,
        (0usize..=3, proptest::option::of(proptest::collection::vec(proptest::option::of(any::<bool>()), 3))),
        2usize..=3,
    )
        .prop_map(|(epochs, seen, (units, paid_pct), cheat, bond, unbond, (yes_votes, rulings), sealers)| Plan {
            epochs,
            seen,
            units,
            paid_pct,
            cheat,
            bond: bond * UNITS_PER_IFX,
            unbond: unbond * UNITS_PER_IFX,
            yes_votes,
            sealers,
            forgers: false,
            self_deal: false,
            flood: 0,
            dodger: None,
            copier: None,
            infer: rulings.clone().map(|rulings| InferPlan { rulings, rows: 36 }),
            fault: rulings.map(|rulings| FaultPlan { rulings, forged: false, stranger: false }),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Two nodes holding the same entries, received in any order and in any batches, compute
    /// identical settlements and roots; every epoch balances and every unit is accounted for.
    #[test]
    fn any_order_same_payouts_and_no_unit_lost(plan in arb_plan(), seed in any::<u64>(), cut in 1usize..40) {
        let c = cast();
        let n = network(&c);
        let entries = history(&c, &plan);
        let a = settle_entries(&n, entries.clone(), 20);
        // Shuffle (seeded), then deliver in batches.
        let mut shuffled = entries.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut l = Ledger::new("settle-test");
        for chunk in shuffled.chunks(cut) {
            l.ingest(chunk.to_vec(), None);
        }
        let b = settle(&n, l.iter_sorted(), 20);
        prop_assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        prop_assert!(a.epochs.iter().all(|e| e.balanced()));
        prop_assert!(conserved(&n, &a));
        for e in a.sealed() {
            // The burn is reported exactly, and what holders hold moves by mint - kept - burn.
            prop_assert_eq!(e.burned, e.jobs.iter().map(|j| j.burned).sum::<u64>());
            prop_assert_eq!(e.net_supply, e.minted as i128 - e.unallocated as i128 - e.burned as i128);
            // A job never delivers more than it paid for (each is paid and done in one epoch)
            // nor more than its tiles; unpaid jobs deliver nothing.
            for j in e.jobs.iter().filter(|j| j.job != [9; 16]) {
                prop_assert!(j.delivered <= j.bought, "{:?}", j);
            }
            for i in 1..c.workers.len() {
                let tiles = plan.units[i % plan.units.len()] / TILE_UNITS;
                let line = e.jobs.iter().find(|j| j.job == job_id(e.epoch, i));
                if tiles == 0 || plan.paid_pct[i % plan.paid_pct.len()] == 0 {
                    prop_assert!(line.is_none());
                } else if let Some(l) = line {
                    prop_assert!(l.delivered <= tiles * TILE_UNITS);
                }
            }
        }
        // The FL task is paid once, in epoch 0, and delivers from its credit after.
        let fl = |f: fn(&ifx_protocols::settle::JobLine) -> u64| {
            a.sealed().flat_map(|e| &e.jobs).filter(|j| j.job == [9; 16]).map(f).sum::<u64>()
        };
        prop_assert!(fl(|j| j.delivered) <= fl(|j| j.bought));
        // The artists' reward never pays back more than the rebate share of what was burned.
        for (k, acct) in &a.accounts {
            let back: u128 =
                a.sealed().flat_map(|e| &e.payouts).filter(|p| p.key == *k).map(|p| p.artists as u128).sum();
            prop_assert!(back * 10_000 <= acct.burned as u128 * n.economics.artist_rebate_bps as u128);
        }
        // Honest workers are never slashed: only a caught PoR cheater in its epoch, or the
        // worker a majority of verifiers found guilty of a bad tile in the epoch that decided
        // it (and that one is always slashed there).
        for e in &a.epochs {
            let guilty: Vec<[u8; 32]> = e.faults.iter().filter(|f| f.decision == "guilty").map(|f| f.worker).collect();
            for s in &e.slashed {
                let cheater = plan.cheat.is_some_and(|(who, when)| pk(&c.workers[who]) == s.key && when == e.epoch);
                prop_assert!(cheater || guilty.contains(&s.key), "{:?} slashed in epoch {}", s, e.epoch);
            }
            for g in &guilty {
                prop_assert!(plan.fault.is_some() && *g == pk(&c.workers[1]));
                prop_assert!(e.slashed.iter().any(|s| s.key == *g));
            }
            if let Some((who, when)) = plan.cheat && when == e.epoch && e.status == Status::Sealed {
                prop_assert!(e.caught.contains(&pk(&c.workers[who])));
                prop_assert!(e.payouts.iter().all(|p| p.key != pk(&c.workers[who]) || p.workers == 0));
            }
        }
    }
}
