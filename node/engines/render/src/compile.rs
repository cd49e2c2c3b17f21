//! Compiling a scene: `compile` flattens a [`Scene`] into the arrays both renderers read (the
//! GPU kernel through storage buffers, the CPU reference directly), BVH included, so the two run
//! the same math on the same data.

use bytemuck::{Pod, Zeroable};
use ifx_protocols::render::RenderError;
use ifx_protocols::render::scene::{Material, Scene, View};

use crate::bvh::{Bvh, BvhNode};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct GpuMaterial {
    pub albedo: [f32; 3],
    /// 0 diffuse, 1 metal, 2 dielectric, 3 emissive.
    pub kind: u32,
    pub emission: [f32; 3],
    /// Fuzz (metal) or index of refraction (dielectric).
    pub param: f32,
}

/// Sphere as the kernels read it (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct GpuSphere {
    pub center: [f32; 3],
    pub radius: f32,
    pub material: u32,
    pub _pad: [u32; 3],
}

/// Triangle as the kernels read it (48 bytes): vertices, material in `v0[3]` as bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct GpuTriangle {
    pub v0: [f32; 4],
    pub v1: [f32; 4],
    pub v2: [f32; 4],
}

/// A scene flattened for rendering at one aspect ratio.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub view: View,
    pub materials: Vec<GpuMaterial>,
    pub spheres: Vec<GpuSphere>,
    pub triangles: Vec<GpuTriangle>,
    pub nodes: Vec<BvhNode>,
    pub seed: u32,
}

impl Compiled {
    /// Bytes its buffers hold: what a renderer keeps of the scene in memory, and uploads to
    /// the GPU.
    pub fn bytes(&self) -> u64 {
        fn of<T>(v: &[T]) -> u64 {
            std::mem::size_of_val(v) as u64
        }
        std::mem::size_of::<Self>() as u64
            + of(&self.materials)
            + of(&self.spheres)
            + of(&self.triangles)
            + of(&self.nodes)
    }
}

/// Flattens `scene` for an image of `width` x `height`.
pub fn compile(scene: &Scene, width: u32, height: u32) -> Result<Compiled, RenderError> {
    scene.validate()?;
    let view = scene.view(width, height)?;
    let materials = scene
        .materials
        .iter()
        .map(|m| match *m {
            Material::Diffuse { albedo } => GpuMaterial { albedo, kind: 0, emission: [0.0; 3], param: 0.0 },
            Material::Metal { albedo, fuzz } => GpuMaterial { albedo, kind: 1, emission: [0.0; 3], param: fuzz },
            Material::Dielectric { ior } => GpuMaterial { albedo: [1.0; 3], kind: 2, emission: [0.0; 3], param: ior },
            Material::Emissive { emission } => GpuMaterial { albedo: [0.0; 3], kind: 3, emission, param: 0.0 },
        })
        .collect();
    let spheres = scene
        .spheres
        .iter()
        .map(|s| GpuSphere { center: s.center, radius: s.radius, material: s.material, _pad: [0; 3] })
        .collect();
    let bvh = Bvh::build(&scene.triangles);
    let triangles = bvh
        .order
        .iter()
        .map(|&i| {
            let t = &scene.triangles[i as usize];
            GpuTriangle {
                v0: [t.v[0][0], t.v[0][1], t.v[0][2], f32::from_bits(t.material)],
                v1: [t.v[1][0], t.v[1][1], t.v[1][2], 0.0],
                v2: [t.v[2][0], t.v[2][1], t.v[2][2], 0.0],
            }
        })
        .collect();
    Ok(Compiled { view, materials, spheres, triangles, nodes: bvh.nodes, seed: scene.seed })
}
