//! The IB (Inferix Bench) benchmark: a fixed-point escape-time render in integer arithmetic,
//! run by the render engine's `ib.wgsl` on a GPU and by a bit-exact Rust twin here, so a
//! CPU-only verifier checks a GPU worker's answer exactly (a few random rows re-computed) while
//! timing it. IB = the reference time of the network config / this node's time.

use super::PorError;

/// A benchmark challenge: the region and size are derived from a seed the worker cannot
/// predict, so answers cannot be precomputed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bench {
    pub width: u32,
    pub height: u32,
    pub max_iter: u32,
    /// Fixed-point (Q12) origin and step.
    pub x0: i32,
    pub y0: i32,
    pub step: i32,
}

impl Bench {
    /// The challenge for `seed`: a 256x256 view somewhere on the set's boundary.
    pub fn from_seed(seed: u64) -> Self {
        let h = blake3::hash(&seed.to_le_bytes());
        let b = h.as_bytes();
        let r = |i: usize| i32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        // Centre in [-1.5, 0.5] x [-1, 1], width 0.5 to 2 (Q12: 4096 = 1.0).
        let cx = -6144 + r(0).rem_euclid(8192);
        let cy = -4096 + r(4).rem_euclid(8192);
        let span = 2048 + r(8).rem_euclid(6144);
        let (width, height) = (256, 256);
        let step = (span / width as i32).max(1);
        Self { width, height, max_iter: 256, x0: cx - step * width as i32 / 2, y0: cy - step * height as i32 / 2, step }
    }

    /// Checks sizes (a worker refuses absurd challenges).
    pub fn validate(&self) -> Result<(), PorError> {
        if self.width == 0 || self.height == 0 || self.width > 1024 || self.height > 1024 || self.max_iter > 4096 {
            return Err(PorError::check(format!(
                "benchmark {}x{} x {} iterations is out of range",
                self.width, self.height, self.max_iter
            )));
        }
        // |c| must stay small enough for the Q12 squares to fit in i32.
        let far = |v: i64| v.abs() > 3 * 4096;
        let (x1, y1) = (
            self.x0 as i64 + self.step as i64 * self.width as i64,
            self.y0 as i64 + self.step as i64 * self.height as i64,
        );
        if self.step <= 0 || far(self.x0 as i64) || far(self.y0 as i64) || far(x1) || far(y1) {
            return Err(PorError::check("benchmark region is out of range"));
        }
        Ok(())
    }

    /// Iteration count of one pixel (the Rust twin of the kernel, bit for bit).
    pub fn pixel(&self, x: u32, y: u32) -> u32 {
        let cr = self.x0.wrapping_add((x as i32).wrapping_mul(self.step));
        let ci = self.y0.wrapping_add((y as i32).wrapping_mul(self.step));
        let (mut zr, mut zi, mut n) = (0i32, 0i32, 0u32);
        while n < self.max_iter {
            let zr2 = zr.wrapping_mul(zr) >> 12;
            let zi2 = zi.wrapping_mul(zi) >> 12;
            if zr2.wrapping_add(zi2) > (4 << 12) {
                break;
            }
            zi = (2i32.wrapping_mul(zr).wrapping_mul(zi) >> 12).wrapping_add(ci);
            zr = zr2.wrapping_sub(zi2).wrapping_add(cr);
            n += 1;
        }
        n
    }

    /// The digest of one row of counts.
    pub fn row_digest(counts: &[u32]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"ifx/ib/row/v1");
        for c in counts {
            h.update(&c.to_le_bytes());
        }
        *h.finalize().as_bytes()
    }

    /// All row digests, computed on the CPU.
    pub fn cpu_rows(&self) -> Vec<[u8; 32]> {
        (0..self.height)
            .map(|y| Self::row_digest(&(0..self.width).map(|x| self.pixel(x, y)).collect::<Vec<_>>()))
            .collect()
    }

    /// Recomputes rows `rows` and compares them with the worker's digests.
    pub fn check_rows(&self, digests: &[[u8; 32]], rows: &[u32]) -> Result<(), PorError> {
        if digests.len() != self.height as usize {
            return Err(PorError::check(format!("{} row digests for {} rows", digests.len(), self.height)));
        }
        for &y in rows {
            let mine = Self::row_digest(&(0..self.width).map(|x| self.pixel(x, y)).collect::<Vec<_>>());
            if digests.get(y as usize) != Some(&mine) {
                return Err(PorError::check(format!("row {y} differs from the reference computation")));
            }
        }
        Ok(())
    }
}
