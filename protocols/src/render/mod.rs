//! Rendering as the protocols see it: scenes (`scene`), image settings and their limits, tiles,
//! linear images, and [`TileRenderer`], the one thing PoR and the job protocol need of a
//! renderer. A pixel's randomness depends only on `(seed, x, y, sample)`, so any tiling of an
//! image renders the same pixels. The path tracer itself is the `ifx-render` engine crate.

pub mod assets;
pub mod commit;
pub mod job;
pub mod scene;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use scene::Scene;

/// Largest image side in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest image in pixels (a 64-megapixel RGB f32 image is 768 MB).
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;
/// Most samples per pixel.
pub const MAX_SPP: u32 = 65_536;
/// Most bounces per path.
pub const MAX_BOUNCES: u32 = 64;

/// Why a render could not be done.
#[derive(Debug, Error)]
pub enum RenderError {
    #[error("invalid scene: {0}")]
    Scene(String),
    #[error("scene file {path}: {message}")]
    SceneFile { path: String, message: String },
    #[error("mesh file {path}: {message}")]
    Mesh { path: String, message: String },
    #[error("unknown scene {0:?} (built-in scenes: cornell, spheres; or a path to a .toml/.json scene file)")]
    UnknownScene(String),
    #[error("invalid render settings: {0}")]
    Settings(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error("{0}")]
    Tile(String),
    #[error("assets: {0}")]
    Asset(String),
    #[error("cannot write {path}: {message}")]
    Output { path: String, message: String },
}

/// Image size, quality and tiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderSettings {
    pub width: u32,
    pub height: u32,
    pub spp: u32,
    pub max_bounces: u32,
    /// Tile side in pixels.
    pub tile: u32,
}

impl RenderSettings {
    /// Checks every value against the limits.
    pub fn validate(&self) -> Result<(), RenderError> {
        let bad = |m: String| Err(RenderError::Settings(m));
        if self.width == 0 || self.height == 0 || self.width > MAX_SIDE || self.height > MAX_SIDE {
            return bad(format!("{}x{}: width and height must be 1 to {MAX_SIDE}", self.width, self.height));
        }
        if self.width as u64 * self.height as u64 > MAX_PIXELS {
            return bad(format!("{}x{} exceeds {MAX_PIXELS} pixels", self.width, self.height));
        }
        if self.spp == 0 || self.spp > MAX_SPP {
            return bad(format!("spp {} must be 1 to {MAX_SPP}", self.spp));
        }
        if self.max_bounces == 0 || self.max_bounces > MAX_BOUNCES {
            return bad(format!("max_bounces {} must be 1 to {MAX_BOUNCES}", self.max_bounces));
        }
        if self.tile == 0 || self.tile > 4096 {
            return bad(format!("tile {} must be 1 to 4096", self.tile));
        }
        Ok(())
    }

    /// Work units of a tile: pixels x samples x bounce budget / 1,000 (the receipt's measure of
    /// work; it does not depend on how fast the worker was or on what the paths hit).
    pub fn work_units(&self, tile: Tile) -> u64 {
        tile.w as u64 * tile.h as u64 * self.spp as u64 * self.max_bounces as u64 / 1000
    }

    /// How many tiles the image has.
    pub fn tile_count(&self) -> u64 {
        let t = self.tile.max(1);
        self.width.div_ceil(t) as u64 * self.height.div_ceil(t) as u64
    }

    /// Tile `index` of [`RenderSettings::tiles`], without building the list; `None` past the
    /// last.
    pub fn tile_at(&self, index: u64) -> Option<Tile> {
        let t = self.tile.max(1);
        let cols = self.width.div_ceil(t) as u64;
        if index >= self.tile_count() {
            return None;
        }
        let (x, y) = ((index % cols) as u32 * t, (index / cols) as u32 * t);
        Some(Tile { x, y, w: t.min(self.width - x), h: t.min(self.height - y) })
    }

    /// The work units of every tile together (the sum of [`RenderSettings::work_units`] over
    /// [`RenderSettings::tiles`]), from the four tile shapes at most an image has, so a
    /// million-tile job costs nothing to price.
    pub fn total_units(&self) -> u64 {
        let t = self.tile.max(1);
        let (full_x, rest_x) = ((self.width / t) as u64, self.width % t);
        let (full_y, rest_y) = ((self.height / t) as u64, self.height % t);
        let units = |w: u32, h: u32, n: u64| self.work_units(Tile { x: 0, y: 0, w, h }).saturating_mul(n);
        [
            units(t, t, full_x * full_y),
            if rest_x > 0 { units(rest_x, t, full_y) } else { 0 },
            if rest_y > 0 { units(t, rest_y, full_x) } else { 0 },
            if rest_x > 0 && rest_y > 0 { units(rest_x, rest_y, 1) } else { 0 },
        ]
        .into_iter()
        .fold(0, u64::saturating_add)
    }

    /// The tiles of the image, row by row.
    pub fn tiles(&self) -> Vec<Tile> {
        let mut out = Vec::new();
        for y in (0..self.height).step_by(self.tile as usize) {
            for x in (0..self.width).step_by(self.tile as usize) {
                out.push(Tile { x, y, w: self.tile.min(self.width - x), h: self.tile.min(self.height - y) });
            }
        }
        out
    }
}

/// A rectangle of the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// Which renderer to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// wgpu when an adapter opens (a real GPU or a software one), else the CPU.
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 3] = [Backend::Auto, Backend::Gpu, Backend::Cpu];

    /// Its name in config files and flags.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Gpu => "gpu",
            Backend::Cpu => "cpu",
        }
    }
}

crate::named_mode!(Backend, "backend");

/// A renderer of one scene: the pixels of any tile of it (linear RGB, row-major within the
/// tile). PoR's spot re-render and the job queue use it; the engine implements it for the GPU
/// kernel and the CPU reference.
pub trait TileRenderer {
    /// Renders `tile` of the image `s` describes.
    fn render_tile(&self, s: &RenderSettings, tile: Tile) -> Result<Vec<[f32; 3]>, RenderError>;
}

/// A linear-RGB image.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<[f32; 3]>,
}

impl Image {
    /// A black image.
    pub fn new(width: u32, height: u32) -> Self {
        Self { width, height, rgb: vec![[0.0; 3]; width as usize * height as usize] }
    }

    /// Copies a rendered tile into place.
    pub fn put(&mut self, tile: Tile, px: &[[f32; 3]]) {
        for row in 0..tile.h {
            let src = (row * tile.w) as usize;
            let dst = ((tile.y + row) * self.width + tile.x) as usize;
            self.rgb[dst..dst + tile.w as usize].copy_from_slice(&px[src..src + tile.w as usize]);
        }
    }

    /// The pixels of `tile` (inside the image), row-major.
    pub fn crop(&self, tile: Tile) -> Vec<[f32; 3]> {
        (tile.y..tile.y + tile.h)
            .flat_map(|y| {
                let start = (y * self.width + tile.x) as usize;
                self.rgb[start..start + tile.w as usize].iter().copied()
            })
            .collect()
    }

    /// 8-bit sRGB bytes ([`srgb8`]), 3 per pixel.
    pub fn to_rgb8(&self) -> Vec<u8> {
        self.rgb.iter().flat_map(|p| p.map(srgb8)).collect()
    }
}

/// Linear radiance at which the sRGB encoding crosses from level `i` to `i + 1`: the sRGB
/// transfer curve's inverse at `(i + 0.5) / 255`, rounded to f32 once and written down, so the
/// encoding is a comparison, the same bits on every machine (an encoder through `powf` could
/// differ by an ulp between platforms' libm and move a level, and two honest workers' tile
/// commitments with it).
const SRGB_STEPS: [f32; 255] = [
    0.0001517635,
    0.0004552905,
    0.0007588175,
    0.0010623444,
    0.0013658714,
    0.0016693984,
    0.0019729254,
    0.0022764525,
    0.0025799794,
    0.0028835062,
    0.0031883009,
    0.0035092593,
    0.003848315,
    0.004205748,
    0.004581833,
    0.0049768374,
    0.005391024,
    0.0058246506,
    0.0062779696,
    0.0067512277,
    0.0072446684,
    0.0077585303,
    0.0082930485,
    0.008848453,
    0.0094249705,
    0.010022826,
    0.010642237,
    0.011283421,
    0.0119465925,
    0.01263196,
    0.013339732,
    0.014070112,
    0.014823303,
    0.015599503,
    0.01639891,
    0.017221715,
    0.018068114,
    0.018938294,
    0.019832443,
    0.020750744,
    0.021693382,
    0.022660539,
    0.02365239,
    0.024669115,
    0.025710888,
    0.026777882,
    0.02787027,
    0.02898822,
    0.030131903,
    0.03130148,
    0.032497123,
    0.03371899,
    0.034967244,
    0.036242045,
    0.037543554,
    0.038871925,
    0.04022732,
    0.041609887,
    0.043019786,
    0.044457164,
    0.04592217,
    0.047414962,
    0.048935685,
    0.050484486,
    0.052061506,
    0.053666897,
    0.055300802,
    0.05696336,
    0.058654718,
    0.060375012,
    0.062124383,
    0.063902974,
    0.06571092,
    0.06754835,
    0.06941541,
    0.071312234,
    0.073238954,
    0.07519571,
    0.07718261,
    0.07919982,
    0.08124744,
    0.083325624,
    0.08543449,
    0.087574154,
    0.08974477,
    0.09194644,
    0.0941793,
    0.096443474,
    0.098739095,
    0.10106627,
    0.10342513,
    0.105815805,
    0.1082384,
    0.110693045,
    0.11317986,
    0.11569897,
    0.11825048,
    0.12083452,
    0.1234512,
    0.12610064,
    0.12878296,
    0.13149826,
    0.13424668,
    0.1370283,
    0.13984327,
    0.14269169,
    0.14557366,
    0.14848931,
    0.15143873,
    0.15442206,
    0.15743938,
    0.16049083,
    0.1635765,
    0.16669649,
    0.16985093,
    0.17303991,
    0.17626357,
    0.17952198,
    0.18281525,
    0.1861435,
    0.18950683,
    0.19290535,
    0.19633915,
    0.19980834,
    0.20331304,
    0.20685335,
    0.21042934,
    0.21404114,
    0.21768884,
    0.22137256,
    0.2250924,
    0.22884843,
    0.23264076,
    0.2364695,
    0.24033478,
    0.24423663,
    0.2481752,
    0.25215057,
    0.25616285,
    0.26021212,
    0.26429847,
    0.26842204,
    0.2725829,
    0.2767811,
    0.2810168,
    0.2852901,
    0.28960103,
    0.29394972,
    0.2983363,
    0.3027608,
    0.30722335,
    0.31172404,
    0.31626296,
    0.32084018,
    0.32545584,
    0.33010998,
    0.33480275,
    0.33953416,
    0.34430438,
    0.34911346,
    0.3539615,
    0.35884857,
    0.36377478,
    0.36874023,
    0.37374496,
    0.37878913,
    0.38387278,
    0.388996,
    0.3941589,
    0.39936152,
    0.40460402,
    0.40988642,
    0.41520882,
    0.42057136,
    0.42597404,
    0.43141702,
    0.43690035,
    0.44242412,
    0.44798842,
    0.4535933,
    0.45923892,
    0.4649253,
    0.47065252,
    0.4764207,
    0.48222992,
    0.48808023,
    0.49397177,
    0.49990454,
    0.5058787,
    0.5118943,
    0.5179514,
    0.5240501,
    0.5301905,
    0.5363727,
    0.54259676,
    0.5488627,
    0.55517066,
    0.5615207,
    0.5679129,
    0.5743473,
    0.58082414,
    0.58734334,
    0.593905,
    0.6005092,
    0.6071561,
    0.6138457,
    0.6205781,
    0.62735337,
    0.6341716,
    0.6410329,
    0.64793724,
    0.6548848,
    0.66187567,
    0.6689098,
    0.67598736,
    0.68310845,
    0.6902731,
    0.69748133,
    0.7047334,
    0.71202916,
    0.7193688,
    0.72675246,
    0.73418003,
    0.7416518,
    0.7491677,
    0.7567278,
    0.7643323,
    0.7719811,
    0.7796744,
    0.7874123,
    0.79519475,
    0.8030219,
    0.81089383,
    0.8188105,
    0.8267722,
    0.8347788,
    0.8428305,
    0.8509273,
    0.8590692,
    0.8672565,
    0.87548906,
    0.88376707,
    0.89209056,
    0.9004596,
    0.9088742,
    0.91733456,
    0.9258406,
    0.9343926,
    0.94299036,
    0.95163417,
    0.96032405,
    0.96906,
    0.97784215,
    0.98667055,
    0.99554527,
];

/// A linear value as an 8-bit sRGB level (IEC 61966-2-1, what image viewers expect): the
/// number of steps it reaches; NaN and negatives are 0, 1 and more 255.
pub fn srgb8(c: f32) -> u8 {
    SRGB_STEPS.partition_point(|t| *t <= c) as u8
}

/// Peak signal-to-noise ratio of two 8-bit images in dB (infinite when equal).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>() / a.len() as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}

/// Renders a whole image tile by tile, calling `progress(done, total)` after each tile.
pub fn render_image(
    r: &(impl TileRenderer + ?Sized),
    s: &RenderSettings,
    mut progress: impl FnMut(usize, usize),
) -> Result<Image, RenderError> {
    let mut img = Image::new(s.width, s.height);
    let tiles = s.tiles();
    for (i, t) in tiles.iter().enumerate() {
        let px = r.render_tile(s, *t)?;
        img.put(*t, &px);
        progress(i + 1, tiles.len());
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table encoder is the sRGB curve rounded to the nearest level: against the formula in
    /// f64 on a fine sweep (agreeing wherever the value is not within float error of a step),
    /// monotone, and total on hostile values.
    #[test]
    fn srgb8_is_the_srgb_curve_to_the_nearest_level() {
        let formula = |c: f64| {
            let v = if c <= 0.003_130_8 { 12.92 * c } else { 1.055 * c.powf(1.0 / 2.4) - 0.055 };
            v.clamp(0.0, 1.0) * 255.0
        };
        let mut last = 0u8;
        for i in 0..=200_000u32 {
            let c = i as f32 / 200_000.0;
            let level = srgb8(c);
            let exact = formula(c as f64);
            if (exact - exact.floor() - 0.5).abs() > 1e-4 {
                assert_eq!(level, exact.round() as u8, "at {c}: {exact}");
            }
            assert!(level >= last, "not monotone at {c}");
            last = level;
        }
        assert_eq!(srgb8(0.5), 188);
        assert_eq!(srgb8(0.214), 127);
        assert_eq!((srgb8(f32::NAN), srgb8(-1.0), srgb8(0.0)), (0, 0, 0));
        assert_eq!((srgb8(1.0), srgb8(7.5), srgb8(f32::INFINITY)), (255, 255, 255));
    }
}
