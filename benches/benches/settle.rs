//! Settlement of one sealed epoch of 500 workers and 3 verifiers (issue #21: every verdict now
//! carries the worker's signed answer, which settlement checks, and receipts count against a
//! paid job's credit), beside its physical limit measured in the same run: verifying the same
//! 1,500 ed25519 signatures one by one, the floor of what the proof check costs.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use ifx_protocols::NetworkConfig;
use ifx_protocols::ledger::{
    EntryKind, JobPayment, Ledger, LivenessAttestation, PaidWork, PeerLiveness, PorVerdicts, RenderReceipt,
    WorkerVerdict,
};
use ifx_protocols::por::proof::AnswerProof;
use ifx_protocols::settle::{EconParams, GenesisAlloc, StakeRole, UNITS_PER_IFX, seal_view, settle};

const WORKERS: usize = 500;
const VERIFIERS: usize = 3;
const NET: &str = "bench";

fn key(i: usize) -> SigningKey {
    let mut s = [7u8; 32];
    s[..4].copy_from_slice(&(i as u32).to_le_bytes());
    SigningKey::from_bytes(&s)
}

/// Epoch 0 of a network of 500 workers, 3 verifiers and an artist paying for a 500-tile job,
/// sealed by every verifier in epoch 1; and the proofs its verdicts carry.
/// A proof with its worker's and verifier's keys.
type Proven = (AnswerProof, [u8; 32], [u8; 32]);

fn epoch() -> (NetworkConfig, Ledger, Vec<Proven>) {
    let verifiers: Vec<SigningKey> = (0..VERIFIERS).map(|i| key(100_000 + i)).collect();
    let workers: Vec<SigningKey> = (0..WORKERS).map(key).collect();
    let artist = key(200_000);
    let pk = |k: &SigningKey| k.verifying_key().to_bytes();
    let alloc = |k: &SigningKey, role, stake, liquid| GenesisAlloc { key: hex_key(&pk(k)), role, stake, liquid };
    let mut genesis: Vec<GenesisAlloc> =
        verifiers.iter().map(|k| alloc(k, StakeRole::Verifier, 2_000 * UNITS_PER_IFX, 0)).collect();
    genesis.extend(workers.iter().map(|k| alloc(k, StakeRole::Worker, 1_000 * UNITS_PER_IFX, 0)));
    genesis.push(alloc(&artist, StakeRole::Worker, 0, 1_000_000 * UNITS_PER_IFX));
    let net = NetworkConfig {
        id: NET.into(),
        genesis_unix_secs: 0,
        epoch_secs: 60,
        economics: EconParams::default(),
        genesis,
        ..Default::default()
    };
    let mut l = Ledger::new(NET);
    let put = |l: &mut Ledger, k: &SigningKey, label: u64, kind: EntryKind, body: Vec<u8>| {
        let e = l.next_entry(k, label, kind, body).unwrap();
        assert!(l.ingest(vec![e], None).rejected.is_empty());
    };
    let work =
        PaidWork::Render { width: 32 * WORKERS as u32, height: 32, spp: 16, max_bounces: 6, tile: 32, frames: [0, 0] };
    let amount = net.economics.price_of(work.total_units(0), net.economics.render_units_per_minute);
    put(&mut l, &artist, 0, EntryKind::JobPayment, JobPayment { job: [1; 16], work, amount }.encode());
    for (i, w) in workers.iter().enumerate() {
        let r = RenderReceipt { job: [1; 16], tile: i as u32, worker: pk(w), work_units: 0, signed: None };
        put(&mut l, &artist, 0, EntryKind::RenderReceipt, r.encode());
    }
    let mut proofs = Vec::new();
    for v in &verifiers {
        let mut peers: Vec<PeerLiveness> = workers.iter().map(|w| PeerLiveness { peer: pk(w), seen: 12 }).collect();
        peers.sort_by_key(|p| p.peer);
        for part in LivenessAttestation::split(0, 12, peers) {
            put(&mut l, v, 0, EntryKind::Liveness, part.encode());
        }
        let mut verdicts: Vec<WorkerVerdict> = workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let proof = AnswerProof::sign(w, &pk(v), 0, [i as u8; 32], [3; 32]);
                proofs.push((proof.clone(), pk(w), pk(v)));
                WorkerVerdict {
                    worker: pk(w),
                    passed: 2,
                    failed: 0,
                    timeouts: 0,
                    mean_latency_ms: 10,
                    benches: 1,
                    ib_milli: 1_000,
                    last_failure: String::new(),
                    proof: Some(proof),
                }
            })
            .collect();
        verdicts.sort_by_key(|w| w.worker);
        for part in verdicts.chunks(64) {
            put(&mut l, v, 0, EntryKind::PorVerdicts, PorVerdicts { epoch: 0, workers: part.to_vec() }.encode());
        }
    }
    let held: Vec<_> = l.iter_sorted().collect();
    let seal = seal_view(0, held.iter().map(|e| e.as_ref())).unwrap();
    for v in &verifiers {
        for part in &seal {
            put(&mut l, v, 1, EntryKind::Seal, part.encode());
        }
    }
    (net, l, proofs)
}

fn hex_key(k: &[u8; 32]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

fn bench(c: &mut Criterion) {
    let (net, ledger, proofs) = epoch();
    let entries: Vec<_> = ledger.iter_sorted().collect();
    let s = settle(&net, entries.clone(), 2);
    let e0 = s.epoch(0).expect("settled");
    assert_eq!(e0.status, ifx_protocols::settle::Status::Sealed);
    assert_eq!(e0.workers.len(), WORKERS);
    assert!(e0.payouts.iter().filter(|p| p.verifier_weight > 1).count() == VERIFIERS, "proofs counted");

    let mut g = c.benchmark_group("settle");
    g.sample_size(10);
    g.throughput(Throughput::Elements((WORKERS * VERIFIERS) as u64));
    // The limit: the proofs' signatures verified one by one with dalek's strict check.
    let sigs: Vec<(VerifyingKey, [u8; 32], Signature)> = proofs
        .iter()
        .map(|(p, w, _)| (VerifyingKey::from_bytes(w).unwrap(), p.challenge, Signature::from_bytes(&p.sig)))
        .collect();
    g.bench_function("limit_dalek_verify_1500_one_by_one", |b| {
        b.iter(|| {
            for (vk, m, sig) in &sigs {
                // Not the proof's digest (it is private): the same work, a 32-byte message.
                let _ = black_box(vk.verify_strict(m, sig));
            }
        })
    });
    g.bench_function("proof_checks_1500", |b| {
        b.iter(|| {
            for (p, w, v) in &proofs {
                assert!(black_box(p.verify(w, v)));
            }
        })
    });
    g.bench_function("settle_epoch_500_workers_3_verifiers", |b| {
        b.iter(|| black_box(settle(&net, entries.clone(), 2)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
