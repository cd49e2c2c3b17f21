//! The GPU half of the IB benchmark: `ib.wgsl`, the kernel twin of
//! [`ifx_protocols::por::ib::Bench::pixel`], run on a wgpu device. The protocol side (challenge,
//! row digests, the check) lives in `ifx_protocols::por::ib`.

use bytemuck::{Pod, Zeroable};
use ifx_protocols::por::ib::Bench;
use ifx_protocols::render::RenderError;
use wgpu::util::DeviceExt;

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
        Self::on("")
    }

    /// Opens the adapter `choice` names (`gpu::select_adapter`).
    pub fn on(choice: &str) -> Result<Self, RenderError> {
        let adapter = crate::gpu::select_adapter(choice)?;
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
        let bytes = crate::gpu::read_back(&self.device, &self.queue, enc, &out, size)?;
        Ok(bytemuck::cast_slice::<u8, u32>(&bytes).to_vec())
    }

    /// All row digests.
    pub fn rows(&self, b: &Bench) -> Result<Vec<[u8; 32]>, RenderError> {
        let c = self.counts(b)?;
        Ok(c.chunks(b.width as usize).map(Bench::row_digest).collect())
    }
}
