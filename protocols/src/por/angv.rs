//! ANGV (Active Noise Generation and Verification): from a secret job key a keyed PRF places
//! `n` imprints in the image, each a 4-7 px rectangle of periodic (checkerboard) noise with a
//! keyed phase, built into the *scene* as camera-facing emissive cells just in front of the
//! camera: one cell per pixel, so only a real render of the watermarked scene carries them. The
//! verifier takes each imprint's surrounding window (3x its size), applies a Laplacian, and
//! rejects the image if any `e_i = |mean(|lap|(window)) - mean(|lap|(imprint))|` is below `T`.

use super::PorError;
use crate::render::scene::{Material, Scene, Triangle};
use crate::render::{RenderError, RenderSettings};

/// ANGV parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AngvParams {
    /// Number of imprints (8 to 15).
    pub n: u32,
    /// Smallest and largest imprint side in pixels (4 to 7).
    pub min_px: u32,
    pub max_px: u32,
    /// Rejection threshold on `e_i`, in 8-bit Laplacian units.
    pub threshold: f32,
}

impl Default for AngvParams {
    /// T = 100 lies between the two sides with room on both: the six image cheats score at most
    /// 41 on a missing imprint, honest renders at least 390 (4800 imprints of random keys and
    /// seeds on the Cornell box, the noisier built-in scene; the spheres at least 705).
    fn default() -> Self {
        Self { n: 12, min_px: 4, max_px: 7, threshold: 100.0 }
    }
}

/// One imprint: a pixel rectangle and the phase of its checkerboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Imprint {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub phase: u32,
}

impl Imprint {
    /// The surrounding window: the rectangle grown by its own size on every side (3x).
    pub fn window(&self) -> (u32, u32, u32, u32) {
        (self.x - self.w, self.y - self.h, 3 * self.w, 3 * self.h)
    }
}

/// Distance of the imprint cells in front of the camera, as a fraction of the image plane's
/// distance (close enough to be in front of any scene geometry, far beyond the ray epsilon).
const DEPTH: f32 = 0.02;
/// Cell emissions (linear): bright and dark squares of the checkerboard.
const HI: f32 = 1.0;
const LO: f32 = 0.0;

/// Why parameters or an image cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum AngvError {
    #[error("invalid ANGV parameters: {0}")]
    Params(String),
    #[error("image {w}x{h} is too small for {n} imprints")]
    TooSmall { w: u32, h: u32, n: u32 },
    #[error("image has {got} bytes, expected {expected}")]
    Size { got: usize, expected: usize },
}

impl AngvParams {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), AngvError> {
        if !(8..=15).contains(&self.n) || !(4..=7).contains(&self.min_px) || !(self.min_px..=7).contains(&self.max_px) {
            return Err(AngvError::Params(format!("{self:?}: n must be 8-15 and sides 4-7 px")));
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err(AngvError::Params("threshold must be positive".into()));
        }
        Ok(())
    }
}

/// A keyed PRF stream.
struct Prf(blake3::OutputReader);

impl Prf {
    fn new(key: &[u8; 32], width: u32, height: u32) -> Self {
        let mut h = blake3::Hasher::new_keyed(key);
        h.update(b"ifx/angv/imprints/v1");
        h.update(&width.to_le_bytes());
        h.update(&height.to_le_bytes());
        Prf(h.finalize_xof())
    }
    fn below(&mut self, n: u32) -> u32 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        (u64::from_le_bytes(b) % n as u64) as u32
    }
}

/// The imprints a key places in a `width` x `height` image: inside it with their windows, the
/// windows pairwise disjoint.
pub fn imprints(key: &[u8; 32], width: u32, height: u32, p: &AngvParams) -> Result<Vec<Imprint>, AngvError> {
    p.validate()?;
    let mut prf = Prf::new(key, width, height);
    let mut out: Vec<Imprint> = Vec::new();
    let mut tries = 0;
    while (out.len() as u32) < p.n {
        tries += 1;
        if tries > 20_000 {
            return Err(AngvError::TooSmall { w: width, h: height, n: p.n });
        }
        let w = p.min_px + prf.below(p.max_px - p.min_px + 1);
        let h = p.min_px + prf.below(p.max_px - p.min_px + 1);
        if 3 * w + 2 > width || 3 * h + 2 > height {
            return Err(AngvError::TooSmall { w: width, h: height, n: p.n });
        }
        // Window inside the image with a 1-pixel margin (the Laplacian needs neighbours).
        let x = w + 1 + prf.below(width - 3 * w - 1);
        let y = h + 1 + prf.below(height - 3 * h - 1);
        let phase = prf.below(2);
        let cand = Imprint { x, y, w, h, phase };
        let (cx, cy, cw, ch) = cand.window();
        let overlaps = out.iter().any(|o| {
            let (ox, oy, ow, oh) = o.window();
            cx < ox + ow && ox < cx + cw && cy < oy + oh && oy < cy + ch
        });
        if !overlaps {
            out.push(cand);
        }
    }
    Ok(out)
}

/// The scene with the key's imprints built in (two emissive materials and one quad per
/// imprint pixel, facing the camera). `settings` fixes the image geometry.
pub fn watermark(scene: &Scene, s: &RenderSettings, key: &[u8; 32], p: &AngvParams) -> Result<Scene, RenderError> {
    let marks = imprints(key, s.width, s.height, p).map_err(|e| RenderError::Scene(e.to_string()))?;
    scene.validate()?;
    let mut out = scene.recentred();
    let v = out.view(s.width, s.height)?;
    let hi = out.materials.len() as u32;
    out.materials.push(Material::Emissive { emission: [HI; 3] });
    out.materials.push(Material::Emissive { emission: [LO; 3] });
    let at = |u: f32, w: f32| -> [f32; 3] {
        // origin + DEPTH * (corner + u*horizontal + w*vertical)
        std::array::from_fn(|k| v.origin[k] + DEPTH * (v.corner[k] + u * v.horizontal[k] + w * v.vertical[k]))
    };
    let (fw, fh) = (s.width as f32, s.height as f32);
    for m in &marks {
        for j in 0..m.h {
            for i in 0..m.w {
                let (px, py) = (m.x + i, m.y + j);
                let material = if (i + j + m.phase) % 2 == 0 { hi } else { hi + 1 };
                let (u0, u1) = (px as f32 / fw, (px + 1) as f32 / fw);
                let (w0, w1) = (1.0 - (py + 1) as f32 / fh, 1.0 - py as f32 / fh);
                let (a, b, cc, d) = (at(u0, w0), at(u1, w0), at(u1, w1), at(u0, w1));
                out.triangles.push(Triangle { v: [a, b, cc], material });
                out.triangles.push(Triangle { v: [a, cc, d], material });
            }
        }
    }
    Ok(out)
}

/// Mean absolute Laplacian of the luminance of an 8-bit RGB image over a rectangle (whose
/// pixels all have four neighbours inside the image).
fn mean_abs_laplacian(rgb8: &[u8], w: u32, rect: (u32, u32, u32, u32)) -> f32 {
    let lum = |x: u32, y: u32| {
        let i = ((y * w + x) * 3) as usize;
        (rgb8[i] as f32 + rgb8[i + 1] as f32 + rgb8[i + 2] as f32) / 3.0
    };
    let (x0, y0, rw, rh) = rect;
    let mut sum = 0.0;
    for y in y0..y0 + rh {
        for x in x0..x0 + rw {
            sum += (4.0 * lum(x, y) - lum(x - 1, y) - lum(x + 1, y) - lum(x, y - 1) - lum(x, y + 1)).abs();
        }
    }
    sum / (rw * rh) as f32
}

/// The statistic `e_i` of every imprint in an 8-bit RGB image.
pub fn scores(rgb8: &[u8], width: u32, height: u32, marks: &[Imprint]) -> Result<Vec<f32>, AngvError> {
    let expected = (width * height * 3) as usize;
    if rgb8.len() != expected {
        return Err(AngvError::Size { got: rgb8.len(), expected });
    }
    Ok(marks
        .iter()
        .map(|m| {
            (mean_abs_laplacian(rgb8, width, m.window()) - mean_abs_laplacian(rgb8, width, (m.x, m.y, m.w, m.h))).abs()
        })
        .collect())
}

/// The ANGV verdict on an 8-bit RGB image: `Ok(min e_i)` when every imprint is there, else
/// which one is missing.
pub fn check(rgb8: &[u8], width: u32, height: u32, key: &[u8; 32], p: &AngvParams) -> Result<f32, PorError> {
    let marks = imprints(key, width, height, p).map_err(|e| PorError::check(e.to_string()))?;
    let e = scores(rgb8, width, height, &marks).map_err(|e| PorError::check(e.to_string()))?;
    match e.iter().enumerate().find(|(_, v)| **v < p.threshold) {
        Some((i, v)) => Err(PorError::check(format!("imprint {i} missing (e = {v:.1} < T = {})", p.threshold))),
        None => Ok(e.iter().copied().fold(f32::INFINITY, f32::min)),
    }
}
