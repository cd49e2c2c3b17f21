//! Ledger ingest (batch verify + CRDT merge + one synced RocksDB WriteBatch) of 1,000 fresh
//! entries, beside the two physical limits measured in the same run: ed25519 batch
//! verification of 1,000 signatures, and a raw synced RocksDB WriteBatch of 1,000 rows of the
//! same size. Throughput is reported in elements per second, so the ratios read directly.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use ifx_protocols::ledger::entry::GENESIS_PREV;
use ifx_protocols::ledger::{Entry, EntryKind};
use ifx_storage::{Db, LedgerStore};

const N: usize = 1_000;
const AUTHORS: usize = 50;
const NET: &str = "bench";

/// Continues 50 authors' chains by 20 entries each (1,000 entries, 160-byte bodies).
struct Chains {
    keys: Vec<SigningKey>,
    heads: Vec<(u64, [u8; 32])>,
}

impl Chains {
    fn new() -> Self {
        Self {
            keys: (0..AUTHORS).map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32])).collect(),
            heads: vec![(0, GENESIS_PREV); AUTHORS],
        }
    }

    fn next_batch(&mut self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(N);
        for (k, (seq, prev)) in self.keys.iter().zip(self.heads.iter_mut()) {
            for _ in 0..N / AUTHORS {
                let e = Entry::sign(k, NET, *seq, *prev, *seq / 1000, EntryKind::Liveness, vec![0x5a; 160]).unwrap();
                *prev = e.id();
                *seq += 1;
                out.push(e);
            }
        }
        out
    }
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("ledger");
    g.sample_size(20);
    g.throughput(Throughput::Elements(N as u64));

    // Limit 1: ed25519 batch verification of N signatures over 32-byte digests.
    let mut chains = Chains::new();
    let sample = chains.next_batch();
    let msgs: Vec<[u8; 32]> = sample.iter().map(|e| e.id()).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
    let sigs: Vec<Signature> = sample.iter().map(|e| Signature::from_bytes(&e.sig)).collect();
    let vks: Vec<VerifyingKey> = sample.iter().map(|e| VerifyingKey::from_bytes(&e.author).unwrap()).collect();
    let _ = chains.keys[0].sign(b"warm");
    g.bench_function("limit_dalek_verify_batch_1000", |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&refs), &sigs, &vks).unwrap())
    });

    // Limit 2: one synced RocksDB WriteBatch of N rows shaped like ledger rows.
    let raw = rocksdb::DB::open_default(tmp.path().join("raw")).unwrap();
    let rows: Vec<(Vec<u8>, Vec<u8>)> = sample.iter().map(|e| (e.id().to_vec(), e.encode())).collect();
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    let mut round = 0u64;
    g.bench_function("limit_rocksdb_writebatch_1000_synced", |b| {
        b.iter(|| {
            round += 1;
            let mut batch = rocksdb::WriteBatch::default();
            for (k, v) in &rows {
                let mut k = k.clone();
                k.extend_from_slice(&round.to_be_bytes());
                batch.put(k, v);
            }
            raw.write_opt(batch, &sync).unwrap();
        })
    });

    // The real thing: verify + merge + durable write, 1,000 new entries per iteration.
    let mut store = LedgerStore::open(Db::open(&tmp.path().join("ledger")).unwrap(), NET).unwrap();
    let mut chains = Chains::new();
    g.bench_function("ingest_1000", |b| {
        b.iter_batched(
            || chains.next_batch(),
            |batch| {
                let out = store.ingest(batch, None).unwrap();
                assert_eq!(out.accepted.len(), N);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
