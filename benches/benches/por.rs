//! What checking a render costs the verifier against what the render cost the worker, in the
//! same run: the worker renders a 128x128 watermarked challenge (8 spp) and commits to it; the
//! verifier runs the ANGV check on the image and re-renders the chosen sub-tiles. Target: the
//! verifier's cost at most 2% of the worker's.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ifx_protocols::por::{self, AngvParams, SPOT_CHECKS, angv, spot};
use ifx_render::{Backend, RenderSettings, Renderer, builtin, render_image};

fn bench(c: &mut Criterion) {
    let s = RenderSettings { width: 128, height: 128, spp: 8, max_bounces: 4, tile: 128 };
    let p = AngvParams::default();
    let key = [7u8; 32];
    let mut g = c.benchmark_group("por");
    g.sample_size(20);
    for name in builtin::NAMES {
        let wm = angv::watermark(&builtin::by_name(name).unwrap(), &s, &key, &p).unwrap();
        let r = Renderer::new(&wm, &s, Backend::Cpu).unwrap();
        g.bench_function(format!("{name}_worker_render_and_commit"), |b| {
            b.iter(|| por::commit(render_image(&r, &s, |_, _| {}).unwrap().to_rgb8(), &s))
        });
        let (answer, tree) = por::commit(render_image(&r, &s, |_, _| {}).unwrap().to_rgb8(), &s);
        let chosen = spot::choose(&answer.root, &[1; 32], &[2; 32], SPOT_CHECKS, tree.leaves());
        let openings = por::reveal(&answer, &tree, &s, &chosen);
        g.bench_function(format!("{name}_verifier_angv"), |b| {
            b.iter(|| angv::check(black_box(&answer.rgb8), s.width, s.height, &key, &p).unwrap())
        });
        g.bench_function(format!("{name}_verifier_full"), |b| {
            b.iter(|| assert!(por::verify(&key, &p, &s, &answer, &chosen, &openings, &r).passed()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
