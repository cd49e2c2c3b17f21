//! Figures for `docs/BENCHMARKS.md` on a machine with a GPU: the WGSL kernel (wgpu) against the
//! CPU reference on the built-in scenes, both timed on the same frames in the same run; whether
//! their pixels agree bit for bit; and, where they do not, whether every 8 x 8 sub-tile still
//! passes the spot check's comparison (`commit::compare`, the tolerance PoR and the job owner's
//! check use), at a few sample counts (fewer samples weigh each diverged path more).
//!
//! `cargo run --release -p ifx-render --example gpu_figures -- [SIZE] [SPP] [TILE]`
//! (default 512 x 512, 64 spp, 128-pixel tiles; 6 bounces).

use std::time::Instant;

use ifx_protocols::render::commit::{self, sub_tiles};
use ifx_render::{Backend, Image, RenderSettings, Renderer, Tile, builtin, gpu, render_image};

fn arg(i: usize, default: u32) -> u32 {
    std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// Renders the frame twice (the first warms the device and the caches) and times the second.
fn timed(r: &Renderer, s: &RenderSettings) -> Result<(Image, f64), Box<dyn std::error::Error>> {
    render_image(r, s, |_, _| {})?;
    let t = Instant::now();
    let img = render_image(r, s, |_, _| {})?;
    Ok((img, t.elapsed().as_secs_f64()))
}

/// 8 x 8 sub-tiles of the frame where `theirs` fails the spot check against `mine`, and all.
fn failing_sub_tiles(mine: &Image, theirs: &Image) -> (usize, usize) {
    let (mut bad, mut all) = (0, 0);
    for sub in sub_tiles(mine.width, mine.height) {
        let at = Tile { x: sub.x, y: sub.y, w: sub.w, h: sub.h };
        let delivered = commit::encode_pixels(&theirs.crop(at));
        all += 1;
        bad += commit::compare(Tile { x: 0, y: 0, w: sub.w, h: sub.h }, &delivered, &mine.crop(at)).is_err() as usize;
    }
    (bad, all)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (size, spp, tile) = (arg(1, 512), arg(2, 64), arg(3, 128));
    for a in gpu::adapter_summaries() {
        println!("adapter: {} {} ({}), driver {}", a.backend, a.name, a.class, a.driver);
    }
    let s = RenderSettings { width: size, height: size, spp, max_bounces: 6, tile };
    let samples = size as f64 * size as f64 * spp as f64;
    println!("frame: {size}x{size}, {spp} spp, 6 bounces, {tile}-pixel tiles");
    println!("| scene | CPU reference | wgpu | wgpu / CPU | pixels bit-identical | largest difference |");
    println!("|---|---|---|---|---|---|");
    for name in ["cornell", "spheres"] {
        let scene = builtin::by_name(name)?;
        let cpu = Renderer::new(&scene, &s, Backend::Cpu)?;
        let gpu = Renderer::new(&scene, &s, Backend::Gpu)?;
        let (a, cpu_secs) = timed(&cpu, &s)?;
        let (b, gpu_secs) = timed(&gpu, &s)?;
        let same = a.rgb.iter().zip(&b.rgb).filter(|(x, y)| x == y).count();
        let worst =
            a.rgb.iter().zip(&b.rgb).flat_map(|(x, y)| (0..3).map(move |c| (x[c] - y[c]).abs())).fold(0f32, f32::max);
        println!(
            "| {name} | {:.2} M samples/s ({}) | {:.2} M samples/s ({}) | {:.1}x | {:.2}% | {worst:e} |",
            samples / cpu_secs / 1e6,
            cpu.describe(),
            samples / gpu_secs / 1e6,
            gpu.describe(),
            cpu_secs / gpu_secs,
            same as f64 * 100.0 / a.rgb.len() as f64,
        );
    }
    println!();
    println!("spot check of every 8x8 sub-tile, wgpu against the CPU reference, 256x256, 6 bounces:");
    println!("| scene | spp | pixels bit-identical | pixels more than 8 levels off | sub-tiles failing |");
    println!("|---|---|---|---|---|");
    for name in ["cornell", "spheres"] {
        let scene = builtin::by_name(name)?;
        for spp in [1, 4, 16, 64] {
            let s = RenderSettings { width: 256, height: 256, spp, max_bounces: 6, tile: 32 };
            let a = render_image(&Renderer::new(&scene, &s, Backend::Cpu)?, &s, |_, _| {})?;
            let b = render_image(&Renderer::new(&scene, &s, Backend::Gpu)?, &s, |_, _| {})?;
            let same = a.rgb.iter().zip(&b.rgb).filter(|(x, y)| x == y).count();
            let off = commit::pixels_off(&a.to_rgb8(), &b.to_rgb8());
            let (bad, all) = failing_sub_tiles(&a, &b);
            let n = a.rgb.len() as f64;
            println!(
                "| {name} | {spp} | {:.2}% | {:.3}% | {bad} of {all} |",
                same as f64 * 100.0 / n,
                off as f64 * 100.0 / n
            );
        }
    }
    Ok(())
}
