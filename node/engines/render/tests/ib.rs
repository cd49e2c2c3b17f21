//! The IB benchmark kernel is bit-exact between wgpu (lavapipe in CI) and its Rust twin, so a
//! CPU-only verifier checks a GPU worker exactly; wrong answers and absurd challenges are
//! refused.

use std::time::Instant;

use ifx_protocols::por::ib::Bench;
use ifx_render::ib::GpuBench;

#[test]
fn gpu_and_cpu_agree_bit_for_bit() {
    let gpu = GpuBench::new().expect("a wgpu adapter (lavapipe in CI)");
    for seed in 0..6u64 {
        let b = Bench::from_seed(seed);
        b.validate().unwrap();
        let t = Instant::now();
        let g = gpu.rows(&b).unwrap();
        let gt = t.elapsed();
        let t = Instant::now();
        let c = b.cpu_rows();
        let ct = t.elapsed();
        assert_eq!(g, c, "seed {seed}: GPU and CPU differ");
        let iters: u64 = gpu.counts(&b).unwrap().iter().map(|&n| n as u64).sum();
        eprintln!("seed {seed}: {iters} iterations; wgpu ({}) {gt:.2?}, cpu {ct:.2?}", gpu.adapter);
        assert!(iters > 10_000, "seed {seed}: the view misses the set's boundary");
        // A verifier re-computing a few rows accepts the honest digests and refuses a forged one.
        b.check_rows(&g, &[0, 17, 255]).unwrap();
        let mut forged = g.clone();
        forged[17][0] ^= 1;
        assert!(b.check_rows(&forged, &[17]).unwrap_err().to_string().contains("row 17"));
        assert!(b.check_rows(&g[..10], &[0]).is_err());
    }
}

#[test]
fn absurd_challenges_are_refused() {
    let ok = Bench::from_seed(1);
    for bad in [
        Bench { width: 0, ..ok },
        Bench { width: 100_000, ..ok },
        Bench { max_iter: 1_000_000, ..ok },
        Bench { step: 0, ..ok },
        Bench { x0: i32::MAX / 2, ..ok },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}
