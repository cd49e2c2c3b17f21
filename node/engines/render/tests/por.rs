//! Proof of Rendering, end to end without a network: the detection matrix (every cheat mode
//! caught in every trial; at least 200 honest challenges across both built-in scenes and both
//! backends with no false rejection), the watermark's visibility (PSNR against the plain
//! render), and malformed answers rejected with a reason.

use std::sync::Arc;

use ifx_protocols::por::cheat::{CheatMode, forge};
use ifx_protocols::por::{self, AngvParams, Answer, SPOT_CHECKS, angv, spot};
use ifx_render::gpu::GpuRenderer;
use ifx_render::{Backend, RenderSettings, Renderer, Scene, builtin, psnr, render_image};

const S: RenderSettings = RenderSettings { width: 128, height: 128, spp: 8, max_bounces: 4, tile: 128 };

fn key(trial: u64, tag: &str) -> [u8; 32] {
    *blake3::hash(format!("{tag}-{trial}").as_bytes()).as_bytes()
}

struct Verifier {
    id: [u8; 32],
    params: AngvParams,
}

impl Verifier {
    /// One challenge: the verifier's checks on `rgb8` sent for the scene watermarked with `k`.
    fn judge(&self, k: &[u8; 32], watermarked: &Scene, rgb8: Vec<u8>, trial: u64) -> por::Verdict {
        let (answer, tree) = por::commit(rgb8, &S);
        let nonce = key(trial, "nonce");
        let chosen = spot::choose(&answer.root, &nonce, &self.id, SPOT_CHECKS, tree.leaves());
        let openings = por::reveal(&answer, &tree, &S, &chosen);
        let r = Renderer::new(watermarked, &S, Backend::Cpu).unwrap();
        por::verify(k, &self.params, &S, &answer, &chosen, &openings, &r)
    }
}

fn render(r: &Renderer) -> Vec<u8> {
    render_image(r, &S, |_, _| {}).unwrap().to_rgb8()
}

/// How far above the threshold every honest imprint must stand in the detection matrix.
const HONEST_MARGIN: f32 = 3.0;

#[test]
fn detection_matrix() {
    let v = Verifier { id: [9; 32], params: AngvParams::default() };
    let gpu = Arc::new(GpuRenderer::new().expect("a wgpu adapter (lavapipe in CI)"));
    let mut honest = 0;
    let mut min_honest_e = f32::INFINITY;
    for name in builtin::NAMES {
        for trial in 0..50u64 {
            // A fresh key and scene seed each time, as the challenger draws them.
            let mut plain = builtin::by_name(name).unwrap();
            plain.seed = u32::from_le_bytes(key(trial, "seed")[..4].try_into().unwrap());
            let k = key(trial, name);
            let wm = angv::watermark(&plain, &S, &k, &v.params).unwrap();
            for backend in [Backend::Cpu, Backend::Gpu] {
                let r = match backend {
                    Backend::Gpu => Renderer::on_device(gpu.clone(), &wm, &S).unwrap(),
                    _ => Renderer::new(&wm, &S, Backend::Cpu).unwrap(),
                };
                match v.judge(&k, &wm, render(&r), trial) {
                    por::Verdict::Pass { min_e } => min_honest_e = min_honest_e.min(min_e),
                    por::Verdict::Fail { reason } => {
                        panic!("honest {name} {backend:?} trial {trial} rejected: {reason}")
                    }
                }
                honest += 1;
            }
        }
    }
    eprintln!("{honest} honest challenges passed; smallest e_i {min_honest_e:.1} (T = {})", v.params.threshold);
    assert!(honest >= 200);
    // The margin, not just the verdict: an honest imprint must stand far above T. Before the
    // watermarked scene was recentred on its camera, the Cornell box's imprint cells (0.02 units
    // in front of a camera 800 units out) were a few f32 steps wide: the smallest e_i over 4800
    // honest imprints was 85, and a testnet slashed an honest worker at e = 49.2 (T was 50).
    // Now it is 390 over the same 4800 (3.9 T at T = 100); this test's 2400 came to 428.
    assert!(
        min_honest_e >= HONEST_MARGIN * v.params.threshold,
        "an honest imprint came within {HONEST_MARGIN} T of the threshold: e = {min_honest_e:.1}"
    );

    let mut caught = 0;
    for name in builtin::NAMES {
        let plain = builtin::by_name(name).unwrap();
        let old_k = key(999, name);
        let old =
            render(&Renderer::new(&angv::watermark(&plain, &S, &old_k, &v.params).unwrap(), &S, Backend::Cpu).unwrap());
        for mode in CheatMode::ALL {
            for trial in 0..5u64 {
                let k = key(1000 + trial, name);
                let wm = angv::watermark(&plain, &S, &k, &v.params).unwrap();
                let fake = forge(mode, &wm, &plain, &S, Some(&old), trial + 1, ifx_render::render_cpu).unwrap();
                match v.judge(&k, &wm, fake, trial) {
                    por::Verdict::Pass { min_e } => {
                        panic!("{} passed on {name} trial {trial} (min e {min_e:.1})", mode.name())
                    }
                    por::Verdict::Fail { reason } => {
                        if trial == 0 {
                            eprintln!("{name} {}: caught: {reason}", mode.name());
                        }
                        caught += 1;
                    }
                }
            }
        }
    }
    assert_eq!(caught, 2 * 6 * 5);
}

/// The stated visibility bound: the watermarked render against the plain one, at 128x128 (the
/// imprints cover ~2% of the pixels at full contrast; the PSNR grows with the image area,
/// ~10 dB more at 256x256). Softer imprints were tried and lost against path-tracing noise.
const MIN_WATERMARK_PSNR_DB: f64 = 20.0;

#[test]
fn watermark_visibility_is_bounded() {
    let p = AngvParams::default();
    for name in builtin::NAMES {
        let plain = builtin::by_name(name).unwrap();
        let wm = angv::watermark(&plain, &S, &key(1, "vis"), &p).unwrap();
        let a = render(&Renderer::new(&plain, &S, Backend::Cpu).unwrap());
        let b = render(&Renderer::new(&wm, &S, Backend::Cpu).unwrap());
        let db = psnr(&a, &b);
        let marks = angv::imprints(&key(1, "vis"), S.width, S.height, &p).unwrap();
        let covered: u32 = marks.iter().map(|m| m.w * m.h).sum();
        eprintln!(
            "{name}: watermarked vs plain PSNR {db:.1} dB ({covered} of {} pixels carry imprints)",
            S.width * S.height
        );
        assert!(db >= MIN_WATERMARK_PSNR_DB, "{name}: {db:.1} dB");
    }
}

#[test]
fn malformed_answers_are_rejected_with_a_reason() {
    let v = Verifier { id: [3; 32], params: AngvParams::default() };
    let plain = builtin::cornell();
    let k = key(5, "malformed");
    let wm = angv::watermark(&plain, &S, &k, &v.params).unwrap();
    let r = Renderer::new(&wm, &S, Backend::Cpu).unwrap();
    let good = render(&r);
    let (answer, tree) = por::commit(good.clone(), &S);
    let chosen = spot::choose(&answer.root, &[1; 32], &v.id, SPOT_CHECKS, tree.leaves());
    let openings = por::reveal(&answer, &tree, &S, &chosen);
    assert!(por::verify(&k, &v.params, &S, &answer, &chosen, &openings, &r).passed());
    let reason = |verdict: por::Verdict| match verdict {
        por::Verdict::Fail { reason } => reason,
        p => panic!("passed: {p:?}"),
    };
    // Wrong size.
    let short = Answer { rgb8: good[..good.len() - 3].to_vec(), root: answer.root };
    assert!(reason(por::verify(&k, &v.params, &S, &short, &chosen, &openings, &r)).contains("bytes"));
    // A bad proof (a flipped byte in a revealed sub-tile).
    let mut bad = openings.clone();
    bad[0].bytes[0] ^= 0xff;
    assert!(reason(por::verify(&k, &v.params, &S, &answer, &chosen, &bad, &r)).contains("proof"));
    // Other sub-tiles than asked for.
    let other = por::reveal(&answer, &tree, &S, &[(chosen[0] + 1) % tree.leaves() as u32]);
    assert!(reason(por::verify(&k, &v.params, &S, &answer, &chosen, &other, &r)).contains("asked for"));
    // A root that does not commit to the image.
    let wrong_root = Answer { root: [0; 32], ..answer.clone() };
    assert!(reason(por::verify(&k, &v.params, &S, &wrong_root, &chosen, &openings, &r)).contains("proof"));
    // Bad parameters and images too small for the imprints.
    assert!(angv::imprints(&k, 96, 96, &AngvParams { n: 3, ..v.params }).is_err());
    assert!(angv::imprints(&k, 16, 16, &v.params).is_err());
}
