//! The node's compute: its render backend, the GPU devices it opens once, and the slow-work
//! fault. Nothing here is process-wide: a [`Devices`] is made by whoever starts nodes (one per
//! `ifx node`; one shared by every node of an in-process testnet, since a machine has one GPU
//! however many nodes run on it), and each node's [`Compute`] carries its own faults.

use std::sync::{Arc, Mutex};

use ifx_protocols::por::ib::Bench;
use ifx_render::gpu::GpuRenderer;
use ifx_render::ib::GpuBench;
use ifx_render::{Backend, RenderError, RenderSettings, Renderer, Scene, render_image};

use crate::faults::Faults;

/// GPU devices, each opened on first use (60-800 ms on a software adapter) and then shared.
#[derive(Default)]
pub struct Devices {
    /// The adapter the operator chose (`render.gpu`; empty: the best).
    gpu: String,
    render: Mutex<Option<Arc<GpuRenderer>>>,
    bench: Mutex<Option<Arc<GpuBench>>>,
}

impl Devices {
    /// Devices on the adapter `gpu` names (`ifx_render::gpu::select_adapter`).
    pub fn choosing(gpu: &str) -> Self {
        Self { gpu: gpu.to_owned(), ..Default::default() }
    }

    /// The render device, opening it if needed; `Err` only when it cannot open and `required`.
    /// When not required (`Auto`), only a hardware adapter: on a software one the CPU reference
    /// is faster (`GpuRenderer::on_hardware`).
    fn render(&self, required: bool) -> Result<Option<Arc<GpuRenderer>>, RenderError> {
        let mut dev = self.render.lock().unwrap_or_else(|e| e.into_inner());
        if dev.is_none() {
            let opened = if required { GpuRenderer::on(&self.gpu) } else { GpuRenderer::on_hardware(&self.gpu) };
            match opened {
                Ok(g) => *dev = Some(Arc::new(g)),
                Err(e) if required => return Err(e),
                Err(_) => {}
            }
        }
        Ok(dev.clone())
    }

    /// The benchmark device, opening it if needed.
    fn bench(&self) -> Option<Arc<GpuBench>> {
        let mut dev = self.bench.lock().unwrap_or_else(|e| e.into_inner());
        if dev.is_none()
            && let Ok(g) = GpuBench::on(&self.gpu)
        {
            *dev = Some(Arc::new(g));
        }
        dev.clone()
    }
}

/// Renders and benchmarks with one node's backend on shared devices, slowed by its faults.
#[derive(Clone)]
pub struct Compute {
    backend: Backend,
    devices: Arc<Devices>,
    faults: Faults,
}

impl Compute {
    /// Compute for `backend` (`Auto` uses a GPU adapter when one opens) on `devices`.
    pub fn new(backend: Backend, devices: Arc<Devices>, faults: Faults) -> Self {
        Self { backend, devices, faults }
    }

    /// The configured backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The adapter chosen (`render.gpu`; empty: the best).
    pub fn gpu(&self) -> &str {
        &self.devices.gpu
    }

    /// The node's injected faults.
    pub fn faults(&self) -> Faults {
        self.faults
    }

    /// Runs the IB benchmark (GPU kernel when the backend allows one, else the CPU twin).
    pub fn bench(&self, b: &Bench) -> Result<Vec<[u8; 32]>, RenderError> {
        if self.backend != Backend::Cpu {
            // Not under the lock: other benchmarks share the device.
            if let Some(g) = self.devices.bench() {
                return g.rows(b);
            }
        }
        Ok(b.cpu_rows())
    }

    /// Renders a whole image (blocking).
    pub fn render(&self, scene: &Scene, s: &RenderSettings) -> Result<Vec<u8>, RenderError> {
        let r = self.renderer(scene, s)?;
        Ok(render_image(&r, s, |_, _| {})?.to_rgb8())
    }

    /// A renderer of `scene` on the shared device (the CPU when the backend says so or no
    /// adapter opens under `Auto`).
    fn renderer(&self, scene: &Scene, s: &RenderSettings) -> Result<Renderer, RenderError> {
        if self.backend != Backend::Cpu
            && let Some(g) = self.devices.render(self.backend == Backend::Gpu)?
        {
            return Renderer::on_device(g, scene, s);
        }
        Renderer::new(scene, s, Backend::Cpu)
    }
}
