//! The wgpu renderer: `shader.wgsl` as a compute pipeline, the compiled scene in storage
//! buffers, one dispatch per tile, read back as linear RGB.

use std::sync::mpsc;

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use crate::compile::Compiled;
use ifx_protocols::render::{RenderError, RenderSettings, Tile};

const SHADER: &str = include_str!("shader.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    origin: [f32; 4],
    corner: [f32; 4],
    horizontal: [f32; 4],
    vertical: [f32; 4],
    horizon: [f32; 4],
    zenith: [f32; 4],
    width: u32,
    height: u32,
    tile_x: u32,
    tile_y: u32,
    tile_w: u32,
    tile_h: u32,
    spp: u32,
    max_bounces: u32,
    seed: u32,
    n_spheres: u32,
    n_triangles: u32,
    n_lights: u32,
    n_points: u32,
    n_shade: u32,
    /// The uniform's size rounds up to 16 bytes.
    _pad: [u32; 2],
}

fn entry(binding: u32, b: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }
}

fn v4(v: [f32; 3]) -> [f32; 4] {
    [v[0], v[1], v[2], 0.0]
}

/// A device with the path-tracing pipeline.
pub struct GpuRenderer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    info: wgpu::AdapterInfo,
}

/// A scene uploaded to the device.
pub struct GpuScene {
    materials: wgpu::Buffer,
    spheres: wgpu::Buffer,
    triangles: wgpu::Buffer,
    nodes: wgpu::Buffer,
    lights: wgpu::Buffer,
    points: wgpu::Buffer,
    shade: wgpu::Buffer,
    tex: wgpu::Buffer,
    n_shade: u32,
    n_spheres: u32,
    n_triangles: u32,
    n_lights: u32,
    n_points: u32,
}

fn adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc.with_env());
    futures::executor::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    }
}

/// The adapter every GPU path of ifx uses: a real GPU before a virtual or software one,
/// Vulkan/Metal/DX12 before OpenGL (GL is only probed when none of those has an adapter:
/// initialising it on a headless machine prints driver noise), ties to the first listed.
/// `WGPU_BACKEND` still overrides.
pub fn best_adapter() -> Option<wgpu::Adapter> {
    ranked().into_iter().next()
}

/// Every adapter (GL only when no other backend has one), best first: a real GPU before a
/// virtual or software one, equals in the order listed.
fn ranked() -> Vec<wgpu::Adapter> {
    let mut found = adapters(wgpu::Backends::PRIMARY);
    if found.is_empty() {
        found = adapters(wgpu::Backends::GL);
    }
    // A stable sort keeps equals in the order listed.
    found.sort_by_key(|a| std::cmp::Reverse(rank(a.get_info().device_type)));
    found
}

/// The adapter an operator chose (`render.gpu`): empty, the best; a number, its place in
/// [`adapter_summaries`] (`ifx gpus` lists them); anything else, the best whose name contains
/// it, in any case. The error lists what there is.
pub fn select_adapter(choice: &str) -> Result<wgpu::Adapter, RenderError> {
    let all = ranked();
    let choice = choice.trim();
    let found = if choice.is_empty() {
        all.into_iter().next()
    } else if let Ok(i) = choice.parse::<usize>() {
        all.into_iter().nth(i)
    } else {
        let want = choice.to_lowercase();
        all.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&want))
    };
    found.ok_or_else(|| {
        let list: Vec<String> = adapter_summaries()
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{i}: {} ({}, {})", a.name, a.class, a.backend))
            .collect();
        let have = if list.is_empty() {
            "none (install mesa-vulkan-drivers for a software one)".into()
        } else {
            list.join("; ")
        };
        let what =
            if choice.is_empty() { "no wgpu adapter".to_string() } else { format!("no adapter matches {choice:?}") };
        RenderError::NoAdapter(format!("{what}; adapters: {have}"))
    })
}

/// An adapter as the node reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    /// `vulkan`, `metal`, `dx12` or `gl`.
    pub backend: String,
    pub name: String,
    /// `discrete`, `integrated`, `virtual`, `cpu` (a software rasteriser such as llvmpipe) or
    /// `other`.
    pub class: &'static str,
    /// The driver's name and version, as far as the backend tells.
    pub driver: String,
}

fn summary(info: wgpu::AdapterInfo) -> AdapterSummary {
    let class = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    };
    let driver = [info.driver, info.driver_info].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    AdapterSummary { backend: format!("{:?}", info.backend).to_lowercase(), name: info.name, class, driver }
}

/// The adapter `choice` names ([`select_adapter`]), as the node reports it.
pub fn adapter_summary(choice: &str) -> Result<AdapterSummary, RenderError> {
    Ok(summary(select_adapter(choice)?.get_info()))
}

/// Every adapter of the machine (GL only when no other backend has one, as `best_adapter`),
/// the one `best_adapter` picks first.
pub fn adapter_summaries() -> Vec<AdapterSummary> {
    ranked().into_iter().map(|a| summary(a.get_info())).collect()
}

/// Records a copy of `src` (`size` bytes) into a mappable buffer at the end of `enc`, submits
/// it, waits for the device and returns the bytes.
pub fn read_back(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    mut enc: wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    size: u64,
) -> Result<Vec<u8>, RenderError> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
    queue.submit([enc.finish()]);
    let slice = staging.slice(..);
    let (tx, rx) = mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| RenderError::Gpu(e.to_string()))?;
    rx.recv().map_err(|e| RenderError::Gpu(e.to_string()))?.map_err(|e| RenderError::Gpu(e.to_string()))?;
    let data = slice.get_mapped_range().map_err(|e| RenderError::Gpu(e.to_string()))?;
    let bytes = data.to_vec();
    drop(data);
    staging.unmap();
    Ok(bytes)
}

impl GpuRenderer {
    /// Opens the best adapter: a real GPU before a software one, Vulkan/Metal/DX12 before GL.
    pub fn new() -> Result<Self, RenderError> {
        Self::on("")
    }

    /// Opens the adapter `choice` names ([`select_adapter`]).
    pub fn on(choice: &str) -> Result<Self, RenderError> {
        Self::open(select_adapter(choice)?)
    }

    /// lavapipe (Mesa's software Vulkan, what machines without a GPU have) runs a workgroup's
    /// invocations as the lanes of one SIMD program, and there a lane's path came out differently
    /// depending on what the other lanes had run before: on `showcase.glb` with its point light,
    /// a pixel's sample 12 differed from the CPU reference when it was the 13th sample of its
    /// invocation, not when it was the 5th (12% of 8-bit pixels in all, 99.4% equal without the
    /// point light). One pixel a workgroup made the showcase equal but put a PoR challenge's
    /// bottom sub-tile off, so the layout stays 8 x 8 and `Auto` renders on the CPU reference
    /// rather than a software adapter (it is faster there too).
    ///
    /// Opens the adapter `choice` names if it is hardware: a software adapter (lavapipe)
    /// renders the path tracer several times slower than the CPU reference on the same cores
    /// (`showcase.glb` at 96 x 96, 16 spp on 2 cores: 4.4 s against 0.58 s), so `Auto` renders
    /// on the CPU rather than on it.
    pub fn on_hardware(choice: &str) -> Result<Self, RenderError> {
        let adapter = select_adapter(choice)?;
        let info = adapter.get_info();
        if info.device_type == wgpu::DeviceType::Cpu {
            return Err(RenderError::NoAdapter(format!(
                "{} is a software adapter; the CPU reference renders faster",
                info.name
            )));
        }
        Self::open(adapter)
    }

    fn open(adapter: wgpu::Adapter) -> Result<Self, RenderError> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        if limits.max_storage_buffers_per_shader_stage < 9 {
            return Err(RenderError::NoAdapter(format!(
                "{} binds only {} storage buffers per stage; the kernel needs 9",
                info.name, limits.max_storage_buffers_per_shader_stage
            )));
        }
        // Ask for what the adapter offers: large scenes need its full buffer sizes.
        let desc = wgpu::DeviceDescriptor { label: Some("ifx-render"), required_limits: limits, ..Default::default() };
        let (device, queue) = futures::executor::block_on(adapter.request_device(&desc))
            .map_err(|e| RenderError::NoAdapter(format!("{}: {e}", info.name)))?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("path tracer"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("path tracer"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = futures::executor::block_on(scope.pop()) {
            return Err(RenderError::Gpu(format!("{}: the path tracer does not build: {e}", info.name)));
        }
        Ok(Self { device, queue, pipeline, info })
    }

    /// Adapter name and backend, for logs and reports.
    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    /// Uploads a compiled scene.
    pub fn upload(&self, c: &Compiled) -> Result<GpuScene, RenderError> {
        let max = self.device.limits().max_storage_buffer_binding_size as usize;
        let bytes = c.triangles.len() * 48;
        if bytes > max {
            return Err(RenderError::TooLarge(format!(
                "{} triangles need {bytes} bytes; the adapter binds at most {max}",
                c.triangles.len()
            )));
        }
        for (what, bytes) in [("shading", c.shade.len() * 80), ("textures", c.tex.len() * 4)] {
            if bytes > max {
                return Err(RenderError::TooLarge(format!(
                    "the scene's {what} need {bytes} bytes; the adapter binds at most {max}"
                )));
            }
        }
        let buf = |label: &str, data: &[u8]| {
            // Storage buffers may not be empty: pad with one zeroed element.
            let pad = [0u8; 80];
            self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: if data.is_empty() { &pad } else { data },
                usage: wgpu::BufferUsages::STORAGE,
            })
        };
        Ok(GpuScene {
            materials: buf("materials", bytemuck::cast_slice(&c.materials)),
            spheres: buf("spheres", bytemuck::cast_slice(&c.spheres)),
            triangles: buf("triangles", bytemuck::cast_slice(&c.triangles)),
            nodes: buf("nodes", bytemuck::cast_slice(&c.nodes)),
            lights: buf("lights", bytemuck::cast_slice(&c.lights)),
            points: buf("points", bytemuck::cast_slice(&c.points)),
            shade: buf("shade", bytemuck::cast_slice(&c.shade)),
            tex: buf("textures", bytemuck::cast_slice(&c.tex)),
            n_shade: c.shade.len() as u32,
            n_spheres: c.spheres.len() as u32,
            n_triangles: c.triangles.len() as u32,
            n_lights: c.lights.len() as u32,
            n_points: c.points.len() as u32,
        })
    }

    /// Renders one tile of an uploaded scene.
    pub fn render_tile(
        &self,
        scene: &GpuScene,
        c: &Compiled,
        s: &RenderSettings,
        tile: Tile,
    ) -> Result<Vec<[f32; 3]>, RenderError> {
        let v = &c.view;
        let params = Params {
            origin: v4(v.origin),
            corner: v4(v.corner),
            horizontal: v4(v.horizontal),
            vertical: v4(v.vertical),
            horizon: v4(v.horizon),
            zenith: v4(v.zenith),
            width: s.width,
            height: s.height,
            tile_x: tile.x,
            tile_y: tile.y,
            tile_w: tile.w,
            tile_h: tile.h,
            spp: s.spp,
            max_bounces: s.max_bounces,
            seed: c.seed,
            n_spheres: scene.n_spheres,
            n_triangles: scene.n_triangles,
            n_lights: scene.n_lights,
            n_points: scene.n_points,
            n_shade: scene.n_shade,
            _pad: [0; 2],
        };
        let params = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::bytes_of(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let size = tile.w as u64 * tile.h as u64 * 16;
        let out = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tile"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let layout = self.pipeline.get_bind_group_layout(0);
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("scene"),
            layout: &layout,
            entries: &[
                entry(0, &params),
                entry(1, &scene.materials),
                entry(2, &scene.spheres),
                entry(3, &scene.triangles),
                entry(4, &scene.nodes),
                entry(5, &out),
                entry(6, &scene.lights),
                entry(7, &scene.points),
                entry(8, &scene.shade),
                entry(9, &scene.tex),
            ],
        });
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tile") });
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("trace"), timestamp_writes: None });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(tile.w.div_ceil(8), tile.h.div_ceil(8), 1);
        }
        let bytes = read_back(&self.device, &self.queue, enc, &out, size)?;
        let px: &[[f32; 4]] = bytemuck::cast_slice(&bytes);
        Ok(px.iter().map(|p| [p[0], p[1], p[2]]).collect())
    }
}
