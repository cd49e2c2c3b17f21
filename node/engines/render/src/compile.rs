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

/// An emissive triangle in the light table the kernels sample (8 bytes): its index among the
/// compiled triangles, and the running share of the scene's emitted power up to and including
/// it (the last is exactly 1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct GpuLight {
    pub tri: u32,
    pub cdf: f32,
}

/// A point or spot light as the kernels read it (48 bytes: WGSL aligns each `vec3` to 16).
/// A point light has `spot` 0 (the cone fields unused).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct GpuPoint {
    pub position: [f32; 3],
    pub cos_outer: f32,
    pub intensity: [f32; 3],
    pub cos_inner: f32,
    pub axis: [f32; 3],
    pub spot: f32,
}

/// A scene flattened for rendering at one aspect ratio.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub view: View,
    pub materials: Vec<GpuMaterial>,
    pub spheres: Vec<GpuSphere>,
    pub triangles: Vec<GpuTriangle>,
    pub nodes: Vec<BvhNode>,
    /// The emissive triangles, for next-event estimation (empty: light is found only by the
    /// paths that hit it). Each one's pdf per unit area (chosen by power, then a uniform point)
    /// is in its `v1[3]`; 0 on other triangles.
    pub lights: Vec<GpuLight>,
    /// Point lights, each sampled at every diffuse bounce.
    pub points: Vec<GpuPoint>,
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
            + of(&self.lights)
            + of(&self.points)
    }
}

/// Flattens `scene` for an image of `width` x `height`.
pub fn compile(scene: &Scene, width: u32, height: u32) -> Result<Compiled, RenderError> {
    scene.validate()?;
    let view = scene.view(width, height)?;
    let materials: Vec<GpuMaterial> = scene
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
    let mut triangles: Vec<GpuTriangle> = triangles;
    let lights = light_table(&materials, &mut triangles);
    let points = scene
        .points
        .iter()
        .map(|l| {
            let c =
                l.cone.unwrap_or(ifx_protocols::render::scene::Cone { axis: [0.0; 3], cos_outer: 0.0, cos_inner: 0.0 });
            GpuPoint {
                position: l.position,
                cos_outer: c.cos_outer,
                intensity: l.intensity,
                cos_inner: c.cos_inner,
                axis: c.axis,
                spot: l.cone.is_some() as u32 as f32,
            }
        })
        .collect();
    Ok(Compiled { view, materials, spheres, triangles, nodes: bvh.nodes, lights, points, seed: scene.seed })
}

/// The light table: every emissive triangle, chosen in proportion to its power (area times
/// the sum of its emission's channels), a point on it uniformly; writes each one's pdf per
/// unit area into its `v1[3]`. Sums in f64 and in triangle order: the same table on every
/// machine.
fn light_table(materials: &[GpuMaterial], triangles: &mut [GpuTriangle]) -> Vec<GpuLight> {
    let power = |t: &GpuTriangle| -> (f64, f64) {
        let m = materials.get(t.v0[3].to_bits() as usize);
        let Some(m) = m.filter(|m| m.kind == 3) else { return (0.0, 0.0) };
        let e = |v: [f32; 4]| [v[0] as f64, v[1] as f64, v[2] as f64];
        let (a, b, c) = (e(t.v0), e(t.v1), e(t.v2));
        let (u, v) = ([b[0] - a[0], b[1] - a[1], b[2] - a[2]], [c[0] - a[0], c[1] - a[1], c[2] - a[2]]);
        let n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
        let area = 0.5 * (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        let emitted = (m.emission[0] + m.emission[1] + m.emission[2]) as f64;
        (area, area * emitted)
    };
    let total: f64 = triangles.iter().map(|t| power(t).1).sum();
    if !(total > 0.0 && total.is_finite()) {
        return Vec::new();
    }
    let mut lights = Vec::new();
    let mut run = 0.0f64;
    for (i, t) in triangles.iter_mut().enumerate() {
        let (area, p) = power(t);
        if p <= 0.0 || area <= 0.0 {
            continue;
        }
        run += p;
        t.v1[3] = ((p / total) / area) as f32;
        lights.push(GpuLight { tri: i as u32, cdf: (run / total) as f32 });
    }
    if let Some(last) = lights.last_mut() {
        last.cdf = 1.0;
    }
    lights
}
