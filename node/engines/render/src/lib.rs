//! The ifx render engine: a path tracer twice over the same math, the WGSL kernel run by wgpu
//! (`gpu`, `shader.wgsl`) and the CPU reference (`cpu`), over scenes compiled with a BVH
//! (`compile`, `bvh`); scene files and meshes (`load`), built-in scenes (`builtin`), PNG output
//! (`png`), and the GPU half of the IB benchmark (`ib`).
//!
//! The scene description, settings, tiles and limits are the protocol's
//! (`ifx_protocols::render`); this crate is the only one that links wgpu. It implements
//! [`TileRenderer`], which is all PoR needs of it.

mod anim;
pub mod builtin;
pub mod bvh;
pub mod compile;
pub mod cpu;
pub mod ggx;
pub mod gpu;
pub mod ib;
pub mod load;
pub mod png;

use std::sync::Arc;

pub use compile::{Compiled, compile};
pub use ifx_protocols::render::{
    Backend, Image, RenderError, RenderSettings, Scene, Tile, TileRenderer, psnr, render_image,
};

/// A renderer ready to render tiles of one scene.
pub enum Renderer {
    Cpu(Box<Compiled>),
    Gpu(Arc<gpu::GpuRenderer>, Box<gpu::GpuScene>, Box<Compiled>),
}

impl Renderer {
    /// Compiles `scene` for `s` and opens the backend (`Auto` falls back to the CPU).
    pub fn new(scene: &Scene, s: &RenderSettings, backend: Backend) -> Result<Self, RenderError> {
        Self::with_gpu(scene, s, backend, "")
    }

    /// The same on the adapter `gpu` names (`gpu::select_adapter`).
    pub fn with_gpu(scene: &Scene, s: &RenderSettings, backend: Backend, gpu: &str) -> Result<Self, RenderError> {
        s.validate()?;
        Self::from_compiled(compile(scene, s.width, s.height)?, s, backend, gpu)
    }

    /// A renderer of a scene already compiled for `s` (its size known: `Compiled::bytes`).
    pub fn from_compiled(c: Compiled, s: &RenderSettings, backend: Backend, gpu: &str) -> Result<Self, RenderError> {
        s.validate()?;
        let c = Box::new(c);
        let gpu = match backend {
            Backend::Cpu => None,
            Backend::Gpu => Some(gpu::GpuRenderer::on(gpu)?),
            Backend::Auto => gpu::GpuRenderer::on_hardware(gpu).ok(),
        };
        Ok(match gpu {
            Some(g) => {
                let up = g.upload(&c)?;
                Renderer::Gpu(Arc::new(g), Box::new(up), c)
            }
            None => Renderer::Cpu(c),
        })
    }

    /// A renderer of `scene` on an already opened device (opening one costs 60-800 ms on a
    /// software adapter; a node keeps one).
    pub fn on_device(device: Arc<gpu::GpuRenderer>, scene: &Scene, s: &RenderSettings) -> Result<Self, RenderError> {
        s.validate()?;
        let c = Box::new(compile(scene, s.width, s.height)?);
        let up = device.upload(&c)?;
        Ok(Renderer::Gpu(device, Box::new(up), c))
    }

    /// What renders, for logs.
    pub fn describe(&self) -> String {
        match self {
            Renderer::Cpu(_) => format!("cpu ({} threads)", rayon::current_num_threads()),
            Renderer::Gpu(g, ..) => format!("wgpu: {}", g.describe()),
        }
    }

    /// Renders one tile (linear RGB, row-major within the tile).
    pub fn render_tile(&self, s: &RenderSettings, tile: Tile) -> Result<Vec<[f32; 3]>, RenderError> {
        let inside = |at: u32, len: u32, side: u32| len > 0 && at as u64 + len as u64 <= side as u64;
        if !inside(tile.x, tile.w, s.width) || !inside(tile.y, tile.h, s.height) {
            return Err(RenderError::Settings(format!("tile {tile:?} is outside the {}x{} image", s.width, s.height)));
        }
        match self {
            Renderer::Cpu(c) => Ok(cpu::render_tile(c, s, tile)),
            Renderer::Gpu(g, up, c) => g.render_tile(up, c, s, tile),
        }
    }
}

impl TileRenderer for Renderer {
    fn render_tile(&self, s: &RenderSettings, tile: Tile) -> Result<Vec<[f32; 3]>, RenderError> {
        Renderer::render_tile(self, s, tile)
    }
}

/// A whole image of `scene` on the CPU reference (the PoR cheat modes forge from it).
pub fn render_cpu(scene: &Scene, s: &RenderSettings) -> Result<Image, RenderError> {
    render_image(&Renderer::new(scene, s, Backend::Cpu)?, s, |_, _| {})
}
