//! Verified delivery (issue #21): what checking a job tile costs beside what rendering it cost
//! the worker, in the same run. The worker renders a 32 x 32 tile of the Cornell box at 64 spp
//! and commits to it (Merkle root over its 16 sub-tiles, ed25519 signature); the owner checks
//! the root and re-renders one sub-tile of its choosing; a verifier checks a piece of evidence
//! (signature and Merkle path: what settlement does too) and re-renders its sub-tile. The limit
//! the owner's check is judged by is one sub-tile's share of the tile's pixels, 1/16.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use ifx_protocols::ledger::body::DeliveryFault;
use ifx_protocols::render::commit::{self, TileCommitment};
use ifx_protocols::render::job::JobSpec;
use ifx_render::{Backend, Renderer, Tile, builtin};

fn bench(c: &mut Criterion) {
    let spec = JobSpec {
        scene: "cornell".into(),
        scene_toml: None,
        assets: Vec::new(),
        width: 128,
        height: 128,
        spp: 64,
        max_bounces: 6,
        tile: 32,
        unpaid: false,
        frames: Default::default(),
    };
    let s = spec.settings();
    let key = SigningKey::from_bytes(&[3; 32]);
    let r = Renderer::new(&builtin::by_name("cornell").unwrap(), &s, Backend::Cpu).unwrap();
    let t = Tile { x: 64, y: 32, w: 32, h: 32 };
    let sub = commit::sub_tiles(t.w, t.h)[5];
    let at = Tile { x: t.x + sub.x, y: t.y + sub.y, w: sub.w, h: sub.h };
    let mut g = c.benchmark_group("delivery");
    g.sample_size(20);
    g.bench_function("worker_render_and_commit_tile", |b| {
        b.iter(|| {
            let pixels = commit::encode_pixels(&r.render_tile(&s, t).unwrap());
            let c = TileCommitment::of([1; 16], spec.hash(), t, &pixels);
            black_box(c.sign(&key))
        })
    });
    let pixels = commit::encode_pixels(&r.render_tile(&s, t).unwrap());
    let c = TileCommitment::of([1; 16], spec.hash(), t, &pixels);
    let sig = c.sign(&key);
    g.bench_function("owner_root_and_spot_check", |b| {
        b.iter(|| {
            assert_eq!(commit::tree(&pixels, t.w, t.h).root(), c.root);
            let mine = r.render_tile(&s, at).unwrap();
            commit::compare(sub, &commit::sub_bytes(&pixels, t.w, sub), &mine).unwrap()
        })
    });
    let evidence = DeliveryFault {
        job: [1; 16],
        spec: spec.clone(),
        tile: [t.x, t.y, t.w, t.h],
        worker: key.verifying_key().to_bytes(),
        root: c.root,
        sig,
        index: 5,
        bytes: commit::sub_bytes(&pixels, t.w, sub),
        proof: commit::tree(&pixels, t.w, t.h).proof(5),
        reason: String::new(),
    };
    g.bench_function("evidence_check_signature_and_path", |b| b.iter(|| black_box(&evidence).check().unwrap()));
    g.bench_function("verifier_ruling_rerender", |b| {
        b.iter(|| {
            let r = Renderer::new(&builtin::by_name("cornell").unwrap(), &s, Backend::Cpu).unwrap();
            let local = Tile { x: 0, y: 0, w: at.w, h: at.h };
            black_box(commit::compare(local, &evidence.bytes, &r.render_tile(&s, at).unwrap()).is_ok())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
