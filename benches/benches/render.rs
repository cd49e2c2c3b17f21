//! Path-tracing throughput in samples per second: the wgpu kernel (a real GPU when one is
//! present; lavapipe, a software Vulkan adapter, on machines without) beside the CPU reference
//! (rayon over all cores) in the same run, on both built-in scenes.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ifx_render::{Backend, RenderSettings, Renderer, builtin, render_image};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    g.sample_size(10);
    let s = RenderSettings { width: 128, height: 128, spp: 8, max_bounces: 6, tile: 128 };
    g.throughput(Throughput::Elements(s.width as u64 * s.height as u64 * s.spp as u64));
    for name in builtin::NAMES {
        let scene = builtin::by_name(name).unwrap();
        for backend in [Backend::Cpu, Backend::Gpu] {
            let r = match Renderer::new(&scene, &s, backend) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("skipping {name} on {backend:?}: {e}");
                    continue;
                }
            };
            eprintln!("{name} {backend:?}: {}", r.describe());
            g.bench_function(format!("{name}_{backend:?}").to_lowercase(), |b| {
                b.iter(|| render_image(&r, &s, |_, _| {}).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
