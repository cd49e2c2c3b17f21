//! Rendering as the protocols see it: scenes (`scene`), image settings and their limits, tiles,
//! linear images, and [`TileRenderer`], the one thing PoR and the job protocol need of a
//! renderer. A pixel's randomness depends only on `(seed, x, y, sample)`, so any tiling of an
//! image renders the same pixels. The path tracer itself is the `ifx-render` engine crate.

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

    /// 8-bit sRGB-ish (gamma 2) bytes, 3 per pixel.
    pub fn to_rgb8(&self) -> Vec<u8> {
        self.rgb.iter().flat_map(|p| p.map(|c| (c.clamp(0.0, 1.0).sqrt() * 255.0 + 0.5) as u8)).collect()
    }
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
