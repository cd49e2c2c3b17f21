//! Envelope sign / verify / encode / decode, beside raw ed25519-dalek verify and batch verify
//! measured in the same run (the physical limit of checking a signed message on this CPU).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use ifx_protocols::{Kind, SignedEnvelope};
use std::hint::black_box;

const BATCH: usize = 64;

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let body = vec![0xabu8; 200]; // about a heartbeat body
    let env = SignedEnvelope::sign(&key, "ifx-bench", Kind::Heartbeat, 1, body.clone()).unwrap();
    let bytes = env.encode();

    let mut g = c.benchmark_group("limit");
    let msg = [0x5au8; 32];
    let sig = key.sign(&msg);
    let vk = key.verifying_key();
    g.bench_function("dalek_verify", |b| b.iter(|| vk.verify(black_box(&msg), &sig).unwrap()));
    g.bench_function("dalek_verify_strict", |b| b.iter(|| vk.verify_strict(black_box(&msg), &sig).unwrap()));
    // A ledger entry's rule (cofactored, the same alone and in a batch), on the same message,
    // beside the verify_strict it replaced.
    let author = vk.to_bytes();
    let sig_bytes = sig.to_bytes();
    g.bench_function("entry_verify_cofactored", |b| {
        b.iter(|| ifx_protocols::ledger::entry::verify_cofactored(&author, black_box(&msg), &sig_bytes).unwrap())
    });
    let keys: Vec<SigningKey> = (0..BATCH).map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32])).collect();
    let msgs: Vec<[u8; 32]> = (0..BATCH).map(|i| [i as u8; 32]).collect();
    let sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
    let vks: Vec<VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("dalek_verify_batch_64", |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&refs), &sigs, &vks).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("envelope");
    g.bench_function("sign", |b| {
        b.iter(|| SignedEnvelope::sign(&key, "ifx-bench", Kind::Heartbeat, 1, black_box(body.clone())).unwrap())
    });
    g.bench_function("encode", |b| b.iter(|| black_box(&env).encode()));
    g.bench_function("decode", |b| b.iter(|| SignedEnvelope::decode(black_box(&bytes)).unwrap()));
    g.bench_function("verify", |b| b.iter(|| black_box(&env).verify("ifx-bench").unwrap()));
    g.bench_function("open", |b| b.iter(|| SignedEnvelope::open(black_box(&bytes), "ifx-bench").unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
