//! The IB (Inferix Bench) benchmark: a fixed-point escape-time render in integer arithmetic,
//! run by `ib.wgsl` on a GPU and by a bit-exact Rust twin here, so a CPU-only verifier checks a
//! GPU worker's answer exactly (a few random rows re-computed) while timing it.
//! IB = the reference time of the network config / this node's time.

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use crate::render::RenderError;

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
    pub fn validate(&self) -> Result<(), String> {
        if self.width == 0 || self.height == 0 || self.width > 1024 || self.height > 1024 || self.max_iter > 4096 {
            return Err(format!(
                "benchmark {}x{} x {} iterations is out of range",
                self.width, self.height, self.max_iter
            ));
        }
        // |c| must stay small enough for the Q12 squares to fit in i32.
        let far = |v: i64| v.abs() > 3 * 4096;
        let (x1, y1) = (
            self.x0 as i64 + self.step as i64 * self.width as i64,
            self.y0 as i64 + self.step as i64 * self.height as i64,
        );
        if self.step <= 0 || far(self.x0 as i64) || far(self.y0 as i64) || far(x1) || far(y1) {
            return Err("benchmark region is out of range".into());
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
    pub fn check_rows(&self, digests: &[[u8; 32]], rows: &[u32]) -> Result<(), String> {
        if digests.len() != self.height as usize {
            return Err(format!("{} row digests for {} rows", digests.len(), self.height));
        }
        for &y in rows {
            let mine = Self::row_digest(&(0..self.width).map(|x| self.pixel(x, y)).collect::<Vec<_>>());
            if digests.get(y as usize) != Some(&mine) {
                return Err(format!("row {y} differs from the reference computation"));
            }
        }
        Ok(())
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    width: u32,
    height: u32,
    max_iter: u32,
    _pad: u32,
    x0: i32,
    y0: i32,
    step: i32,
    _pad2: i32,
}

/// The benchmark kernel on a wgpu device.
pub struct GpuBench {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    pub adapter: String,
}

impl GpuBench {
    /// Opens the best adapter (as the renderer does).
    pub fn new() -> Result<Self, RenderError> {
        let adapter = crate::render::gpu::best_adapter().ok_or_else(|| {
            RenderError::NoAdapter("no wgpu adapter (install mesa-vulkan-drivers for a software one)".into())
        })?;
        let name = adapter.get_info().name;
        let (device, queue) = futures::executor::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))
            .map_err(|e| RenderError::NoAdapter(e.to_string()))?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("ib"),
            source: wgpu::ShaderSource::Wgsl(include_str!("ib.wgsl").into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("ib"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        Ok(Self { device, queue, pipeline, adapter: name })
    }

    /// All iteration counts, row-major.
    pub fn counts(&self, b: &Bench) -> Result<Vec<u32>, RenderError> {
        let p = Params {
            width: b.width,
            height: b.height,
            max_iter: b.max_iter,
            _pad: 0,
            x0: b.x0,
            y0: b.y0,
            step: b.step,
            _pad2: 0,
        };
        let params = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("ib params"),
            contents: bytemuck::bytes_of(&p),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let size = b.width as u64 * b.height as u64 * 4;
        let out = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ib counts"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let layout = self.pipeline.get_bind_group_layout(0);
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("ib"),
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: out.as_entire_binding() },
            ],
        });
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ib") });
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("ib"), timestamp_writes: None });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(b.width.div_ceil(8), b.height.div_ceil(8), 1);
        }
        let bytes = crate::render::gpu::read_back(&self.device, &self.queue, enc, &out, size)?;
        Ok(bytemuck::cast_slice::<u8, u32>(&bytes).to_vec())
    }

    /// All row digests.
    pub fn rows(&self, b: &Bench) -> Result<Vec<[u8; 32]>, RenderError> {
        let c = self.counts(b)?;
        Ok(c.chunks(b.width as usize).map(Bench::row_digest).collect())
    }
}
