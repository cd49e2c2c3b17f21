//! Compiling a scene: `compile` flattens a [`Scene`] into the arrays both renderers read (the
//! GPU kernel through storage buffers, the CPU reference directly), BVH included, so the two run
//! the same math on the same data.

use bytemuck::{Pod, Zeroable};
use ifx_protocols::render::RenderError;
use ifx_protocols::render::scene::{Material, Scene, View};

use crate::bvh::{Bvh, BvhNode};

/// A material as the kernels read it (80 bytes: WGSL rounds the struct up to 16).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct GpuMaterial {
    /// Albedo, or PBR's base colour.
    pub albedo: [f32; 3],
    /// 0 diffuse, 1 metal, 2 dielectric, 3 emissive, 4 PBR (metallic-roughness).
    pub kind: u32,
    pub emission: [f32; 3],
    /// Fuzz (metal) or index of refraction (dielectric).
    pub param: f32,
    /// PBR: metallic and perceptual roughness factors.
    pub metallic: f32,
    pub roughness: f32,
    /// PBR: the base colour texture, and the metallic-roughness one ([`NO_TEXTURE`]: none).
    pub base_tex: u32,
    pub mr_tex: u32,
    /// PBR: the normal map ([`NO_TEXTURE`]: none) and its scale.
    pub normal_tex: u32,
    pub normal_scale: f32,
    /// PBR: the alpha mask's cutoff (negative: opaque) and the base colour's alpha.
    pub alpha_cutoff: f32,
    pub alpha: f32,
    /// PBR: the emissive texture ([`NO_TEXTURE`]: none), times `emission`.
    pub emit_tex: u32,
    pub _pad: [u32; 3],
}

/// No texture.
pub const NO_TEXTURE: u32 = u32::MAX;

/// A triangle's shading as the kernels read it (80 bytes), at the triangle's index: its
/// vertices' normals (`w`: each vertex's U), their Vs (`w`: the tangent's handedness), and
/// the face's tangent along U (from its texture coordinates).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct GpuShade {
    pub n0: [f32; 4],
    pub n1: [f32; 4],
    pub n2: [f32; 4],
    pub v: [f32; 4],
    pub tangent: [f32; 4],
}

/// A texture in the kernels' texture buffer: where its texels start (in words, from the
/// buffer's start), its size, and its wrap modes (U in bits 0-1, V in bits 2-3: 0 repeat, 1 clamp,
/// 2 mirror).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct GpuTexture {
    pub offset: u32,
    pub width: u32,
    pub height: u32,
    pub wrap: u32,
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

/// A point, spot or directional light as the kernels read it (48 bytes: WGSL aligns each
/// `vec3` to 16). `spot` is the kind: 0 a point (the cone fields unused), 1 a spot, 2 a
/// directional light (`axis` the way its light travels, `intensity` its irradiance, the
/// position and cone unused).
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
    /// Each triangle's shading (empty: every triangle flat, untextured).
    pub shade: Vec<GpuShade>,
    /// The texture table (four words a texture) and then every texture's texels, RGBA8 packed
    /// little-endian in a word.
    pub tex: Vec<u32>,
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
            + of(&self.shade)
            + of(&self.tex)
    }
}

/// Flattens `scene` for an image of `width` x `height`.
pub fn compile(scene: &Scene, width: u32, height: u32) -> Result<Compiled, RenderError> {
    scene.validate()?;
    let view = scene.view(width, height)?;
    let plain = |albedo: [f32; 3], kind: u32, emission: [f32; 3], param: f32| GpuMaterial {
        albedo,
        kind,
        emission,
        param,
        metallic: 0.0,
        roughness: 0.0,
        base_tex: NO_TEXTURE,
        mr_tex: NO_TEXTURE,
        normal_tex: NO_TEXTURE,
        normal_scale: 0.0,
        alpha_cutoff: -1.0,
        alpha: 1.0,
        emit_tex: NO_TEXTURE,
        _pad: [0; 3],
    };
    let materials: Vec<GpuMaterial> = scene
        .materials
        .iter()
        .map(|m| match *m {
            Material::Diffuse { albedo } => plain(albedo, 0, [0.0; 3], 0.0),
            Material::Metal { albedo, fuzz } => plain(albedo, 1, [0.0; 3], fuzz),
            Material::Dielectric { ior } => plain([1.0; 3], 2, [0.0; 3], ior),
            Material::Emissive { emission } => plain([0.0; 3], 3, emission, 0.0),
            Material::Pbr(ref p) => GpuMaterial {
                metallic: p.metallic,
                roughness: p.roughness,
                base_tex: p.base_texture.unwrap_or(NO_TEXTURE),
                mr_tex: p.metal_rough_texture.unwrap_or(NO_TEXTURE),
                normal_tex: p.normal_texture.unwrap_or(NO_TEXTURE),
                normal_scale: p.normal_scale,
                alpha_cutoff: p.alpha_cutoff.unwrap_or(-1.0),
                alpha: p.alpha,
                emit_tex: p.emissive_texture.unwrap_or(NO_TEXTURE),
                ..plain(p.base_color, 4, p.emission, 0.0)
            },
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
        .chain(scene.directional.iter().map(|l| GpuPoint {
            position: [0.0; 3],
            cos_outer: 0.0,
            intensity: l.irradiance,
            cos_inner: 0.0,
            axis: l.direction,
            spot: 2.0,
        }))
        .collect();
    let shade = if scene.shading.is_empty() {
        Vec::new()
    } else {
        bvh.order.iter().map(|&i| shade(&scene.triangles[i as usize], &scene.shading[i as usize])).collect()
    };
    let tex = textures(&scene.textures);
    Ok(Compiled { view, materials, spheres, triangles, nodes: bvh.nodes, lights, points, shade, tex, seed: scene.seed })
}

/// A triangle's shading for the kernels: its normals and UVs, and its tangent along U with
/// the handedness of V (glTF's rule where a mesh gives no tangents: the bitangent is the
/// normal cross the tangent, times the handedness). Texture coordinates that span no area
/// give any tangent across the normal.
fn shade(t: &ifx_protocols::render::scene::Triangle, s: &ifx_protocols::render::scene::Shading) -> GpuShade {
    let sub = |a: [f32; 3], b: [f32; 3]| [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    let cross =
        |a: [f32; 3], b: [f32; 3]| [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
    let dot = |a: [f32; 3], b: [f32; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let (e1, e2) = (sub(t.v[1], t.v[0]), sub(t.v[2], t.v[0]));
    let ng = cross(e1, e2);
    let [uv0, uv1, uv2] = s.uv;
    let (du1, dv1, du2, dv2) = (uv1[0] - uv0[0], uv1[1] - uv0[1], uv2[0] - uv0[0], uv2[1] - uv0[1]);
    let det = du1 * dv2 - du2 * dv1;
    let along =
        |a: [f32; 3], x: f32, b: [f32; 3], y: f32| [a[0] * x - b[0] * y, a[1] * x - b[1] * y, a[2] * x - b[2] * y];
    let (mut tangent, mut hand) = ([0.0f32; 3], 1.0f32);
    if det.abs() > 1e-20 {
        // dP/dU and dP/dV of the face.
        let tu = along(e1, dv2, e2, dv1).map(|x| x / det);
        let tv = along(e2, du1, e1, du2).map(|x| x / det);
        tangent = tu;
        // glTF's V runs down the image: with a mapping that is not mirrored, N x T points the
        // other way from dP/dV, and that is handedness +1.
        hand = if dot(cross(ng, tu), tv) > 0.0 { -1.0 } else { 1.0 };
    }
    if !(dot(tangent, tangent) > 0.0 && tangent.iter().all(|x| x.is_finite())) {
        tangent = if ng[0].abs() > ng[2].abs() { [-ng[1], ng[0], 0.0] } else { [0.0, -ng[2], ng[1]] };
    }
    let n = |k: usize| [s.normals[k][0], s.normals[k][1], s.normals[k][2], s.uv[k][0]];
    GpuShade {
        n0: n(0),
        n1: n(1),
        n2: n(2),
        v: [s.uv[0][1], s.uv[1][1], s.uv[2][1], hand],
        tangent: [tangent[0], tangent[1], tangent[2], 0.0],
    }
}

/// The texture buffer: the kernels' tables (`crate::ggx::aux`), the texture table, then each
/// texture's texels packed into words.
fn textures(textures: &[ifx_protocols::render::scene::Texture]) -> Vec<u32> {
    use crate::ggx::{AUX_WORDS, aux};
    use ifx_protocols::render::scene::Wrap;
    let texels: usize = textures.iter().map(|t| t.texels.len() / 4).sum();
    let mut out = Vec::with_capacity(AUX_WORDS + textures.len() * 4 + texels);
    out.extend_from_slice(aux());
    out.resize(AUX_WORDS + textures.len() * 4, 0);
    let wrap = |w: Wrap| match w {
        Wrap::Repeat => 0u32,
        Wrap::Clamp => 1,
        Wrap::Mirror => 2,
    };
    for (i, t) in textures.iter().enumerate() {
        let entry = GpuTexture {
            offset: out.len() as u32,
            width: t.width,
            height: t.height,
            wrap: wrap(t.wrap[0]) | wrap(t.wrap[1]) << 2,
        };
        let at = AUX_WORDS + i * 4;
        out[at..at + 4].copy_from_slice(bytemuck::cast_slice(&[entry]));
        out.extend(t.texels.chunks_exact(4).map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]])));
    }
    out
}

/// The light table: every emissive triangle, chosen in proportion to its power (area times
/// the sum of its emission's channels), a point on it uniformly; writes each one's pdf per
/// unit area into its `v1[3]`. Sums in f64 and in triangle order: the same table on every
/// machine.
fn light_table(materials: &[GpuMaterial], triangles: &mut [GpuTriangle]) -> Vec<GpuLight> {
    let power = |t: &GpuTriangle| -> (f64, f64) {
        let m = materials.get(t.v0[3].to_bits() as usize);
        let Some(m) = m.filter(|m| m.kind == 3 || m.kind == 4) else { return (0.0, 0.0) };
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
