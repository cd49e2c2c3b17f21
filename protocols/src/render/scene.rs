//! Scenes as the protocol carries them: a camera, spheres, triangles (planes, boxes and meshes
//! become triangles), materials and a sky, their limits and validation, and their wire form. The
//! render engine (`ifx-render`) compiles and traces them.

use serde::{Deserialize, Serialize};

use super::RenderError;

/// Most triangles a scene may hold (about 200 MB of GPU buffers with its BVH).
pub const MAX_TRIANGLES: usize = 2_000_000;
/// Most spheres a scene may hold (they are tested one by one).
pub const MAX_SPHERES: usize = 1024;
/// Most materials.
pub const MAX_MATERIALS: usize = 4096;
/// Most point lights: each costs a shadow ray at every diffuse bounce.
pub const MAX_POINT_LIGHTS: usize = 64;
/// Most directional lights: each costs a shadow ray at every diffuse bounce, as a point's.
pub const MAX_DIRECTIONAL_LIGHTS: usize = 16;
/// Most textures a scene may hold (each is an entry in the kernels' texture table).
pub const MAX_TEXTURES: usize = 256;
/// Widest or tallest texture, in texels (glTF images as artists paint them reach 8K; 16K is
/// a quarter of this limit's memory on its own).
pub const MAX_TEXTURE_SIDE: u32 = 16384;
/// Most decoded texture memory a scene may hold, all textures together (RGBA, 8 bits a
/// channel): a worker holds it once in RAM and once on its GPU, and a 100k x 100k image
/// declared in a file is refused from its header, before anything is allocated.
pub const MAX_TEXTURE_BYTES: u64 = 512 << 20;

/// A surface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Material {
    /// Lambertian.
    Diffuse { albedo: [f32; 3] },
    /// Mirror-like, `fuzz` 0 (perfect) to 1.
    Metal { albedo: [f32; 3], fuzz: f32 },
    /// Glass with index of refraction `ior`.
    Dielectric { ior: f32 },
    /// A light.
    Emissive { emission: [f32; 3] },
    /// glTF's metallic-roughness material: a GGX microfacet specular layer over a Lambertian
    /// base, its textures (from glTF files only) and its emission.
    Pbr(Pbr),
}

/// glTF 2.0's metallic-roughness material (its spec's appendix B): a GGX specular lobe with
/// Schlick's Fresnel from `f0 = mix(0.04, base, metallic)` over a Lambertian base of
/// `base * (1 - metallic)`, with the energy single scattering misses given back as Blender
/// Cycles' Principled BSDF does (the specular lobe scaled by the view direction's missing
/// share, the base weighted by what the specular layer leaves), so that a rough metal does
/// not lose light and ifx renders what Blender shows. Textures multiply their factors, as
/// glTF says. In a TOML scene: `{ type = "pbr", base_color = [..], metallic = .., roughness = .. }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pbr {
    /// Linear base colour.
    pub base_color: [f32; 3],
    #[serde(default)]
    pub metallic: f32,
    /// Perceptual roughness (GGX's alpha is its square).
    #[serde(default = "half")]
    pub roughness: f32,
    /// Emitted radiance (glTF's emissive factor times its strength).
    #[serde(default)]
    pub emission: [f32; 3],
    /// sRGB emissive texture: multiplies `emission` where the surface is.
    #[serde(skip)]
    pub emissive_texture: Option<u32>,
    /// sRGB base colour (and alpha) texture, an index into [`Scene::textures`].
    #[serde(skip)]
    pub base_texture: Option<u32>,
    /// Linear texture: roughness in green, metallic in blue.
    #[serde(skip)]
    pub metal_rough_texture: Option<u32>,
    /// Tangent-space normal map (linear; +Y is the image's up, as glTF and Blender draw them).
    #[serde(skip)]
    pub normal_texture: Option<u32>,
    /// Scales the normal map's X and Y.
    #[serde(skip, default = "one")]
    pub normal_scale: f32,
    /// Alpha mask: a surface point whose alpha (factor times the base texture's) is below the
    /// cutoff is not there. `None`: opaque.
    #[serde(skip)]
    pub alpha_cutoff: Option<f32>,
    /// The base colour factor's alpha.
    #[serde(skip, default = "one")]
    pub alpha: f32,
}

fn half() -> f32 {
    0.5
}
fn one() -> f32 {
    1.0
}

impl Pbr {
    /// A material of these factors and no textures.
    pub fn plain(base_color: [f32; 3], metallic: f32, roughness: f32) -> Self {
        Pbr {
            base_color,
            metallic,
            roughness,
            emission: [0.0; 3],
            emissive_texture: None,
            base_texture: None,
            metal_rough_texture: None,
            normal_texture: None,
            normal_scale: 1.0,
            alpha_cutoff: None,
            alpha: 1.0,
        }
    }

    fn textures(&self) -> impl Iterator<Item = u32> {
        [self.base_texture, self.metal_rough_texture, self.normal_texture, self.emissive_texture].into_iter().flatten()
    }

    fn valid(&self, textures: usize) -> bool {
        let unit = |x: f32| (0.0..=1.0).contains(&x);
        finite(&self.base_color)
            && self.base_color.iter().all(|c| *c >= 0.0)
            && unit(self.metallic)
            && unit(self.roughness)
            && finite(&self.emission)
            && self.emission.iter().all(|e| *e >= 0.0)
            && self.normal_scale.is_finite()
            && self.normal_scale.abs() <= 16.0
            && self.alpha_cutoff.is_none_or(unit)
            && unit(self.alpha)
            && self.textures().all(|t| (t as usize) < textures)
    }
}

/// How a texture repeats outside [0, 1] (glTF's sampler wrap modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Wrap {
    #[default]
    Repeat,
    Clamp,
    Mirror,
}

/// A texture: RGBA texels, 8 bits a channel, rows from the top (glTF's UV (0, 0) is the top
/// left), sampled bilinearly with its wrap modes. Whether a channel is sRGB is the use's: a
/// base colour is, a normal or metallic-roughness map is not.
#[derive(Clone, Debug, PartialEq)]
pub struct Texture {
    pub width: u32,
    pub height: u32,
    pub wrap: [Wrap; 2],
    pub texels: std::sync::Arc<Vec<u8>>,
}

/// A triangle's shading: its vertices' normals (of any length; zero: the face's own) and
/// texture coordinates, from a glTF mesh.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shading {
    pub normals: [[f32; 3]; 3],
    pub uv: [[f32; 2]; 3],
}

/// A pinhole camera.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    pub position: [f32; 3],
    pub look_at: [f32; 3],
    #[serde(default = "up")]
    pub up: [f32; 3],
    /// Vertical field of view in degrees.
    pub fov_deg: f32,
}

fn up() -> [f32; 3] {
    [0.0, 1.0, 0.0]
}

/// Background seen by rays that hit nothing: a gradient from horizon to zenith.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sky {
    pub horizon: [f32; 3],
    pub zenith: [f32; 3],
}

/// A triangle with a material index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Triangle {
    pub v: [[f32; 3]; 3],
    pub material: u32,
}

/// A sphere with a material index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sphere {
    pub center: [f32; 3],
    pub radius: f32,
    pub material: u32,
}

/// A point light (glTF's `KHR_lights_punctual` point): radiant intensity per channel, in the
/// scene's radiance units times its length unit squared (a diffuse surface of albedo `a` at
/// distance `d`, facing it, reflects `a / pi * intensity / d^2`). Found only by light sampling:
/// a point cannot be hit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PointLight {
    pub position: [f32; 3],
    pub intensity: [f32; 3],
    /// A spot light's cone (glTF's `spot`); `None`: it shines every way.
    pub cone: Option<Cone>,
}

/// A directional light (glTF's `KHR_lights_punctual` directional, Blender's sun): parallel
/// light from infinitely far, travelling along `direction` (a unit vector), with `irradiance`
/// per channel on a surface facing it (a diffuse surface of albedo `a` facing it reflects
/// `a / pi * irradiance`, at any distance and any scale). Found only by light sampling: it
/// cannot be hit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DirectionalLight {
    pub direction: [f32; 3],
    pub irradiance: [f32; 3],
}

/// A spot light's cone, as glTF defines it: along `axis` (a unit vector, the way it shines) the
/// light is its intensity; at angle `a` from the axis it is scaled by
/// `clamp((cos a - cos_outer) / (cos_inner - cos_outer), 0, 1)^2` (the difference floored at
/// 0.001), so full inside the inner cone and none outside the outer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cone {
    pub axis: [f32; 3],
    pub cos_outer: f32,
    pub cos_inner: f32,
}

impl Cone {
    /// How much of the light reaches direction `d` (from the light; any length).
    pub fn falloff(&self, d: [f32; 3]) -> f32 {
        let len = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        let cd = (self.axis[0] * d[0] + self.axis[1] * d[1] + self.axis[2] * d[2]) / len;
        let s = ((cd - self.cos_outer) / (self.cos_inner - self.cos_outer).max(0.001)).clamp(0.0, 1.0);
        s * s
    }
}

/// Camera and sky as the kernels read them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    pub origin: [f32; 3],
    /// From the camera to the lower-left corner of the image plane (one unit ahead): a
    /// direction, not a point, so a camera far from the origin keeps its rays' precision (as
    /// a point, 800,000 units out it was rounded to 1/16 and rays changed direction; issue #18).
    pub corner: [f32; 3],
    pub horizontal: [f32; 3],
    pub vertical: [f32; 3],
    pub horizon: [f32; 3],
    pub zenith: [f32; 3],
}

/// A scene ready to compile.
#[derive(Clone, Debug)]
pub struct Scene {
    pub camera: Camera,
    pub sky: Sky,
    pub materials: Vec<Material>,
    pub spheres: Vec<Sphere>,
    pub triangles: Vec<Triangle>,
    /// Point lights.
    pub points: Vec<PointLight>,
    /// Directional lights.
    pub directional: Vec<DirectionalLight>,
    /// Textures the materials refer to.
    pub textures: Vec<Texture>,
    /// The triangles' shading, one for each triangle in order, or none (every triangle flat).
    pub shading: Vec<Shading>,
    /// Seed of every pixel's random stream.
    pub seed: u32,
}

/// Whether every number is finite (scene validation, and the engine's compile).
pub fn finite(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite())
}

impl Scene {
    /// The same scene moved so that the camera sits at the origin: the image is the same, and
    /// geometry near the camera keeps f32's full precision (a camera 800 units out, as in the
    /// Cornell box, leaves 6e-5 between neighbouring coordinates there).
    pub fn recentred(&self) -> Scene {
        let o = self.camera.position;
        self.mapped(|p| std::array::from_fn(|k| p[k] - o[k]), |r| r)
    }

    /// The same scene scaled by `f` about the origin (a unit conversion: millimetres to metres
    /// is 0.001). The image is the same; radiance must not depend on it (issue #18).
    pub fn scaled(&self, f: f32) -> Scene {
        let mut out = self.mapped(|p| p.map(|x| x * f), |r| r * f);
        // A point light's irradiance falls with the square of distance: the same light at
        // every scale is the intensity times the scale squared.
        for l in &mut out.points {
            l.intensity = l.intensity.map(|i| i * f * f);
        }
        out
    }

    /// The same scene with every point (camera, look-at, sphere centres, vertices) through
    /// `point` and every radius through `radius`.
    fn mapped(&self, point: impl Fn([f32; 3]) -> [f32; 3], radius: impl Fn(f32) -> f32) -> Scene {
        let mut out = self.clone();
        out.camera.position = point(self.camera.position);
        out.camera.look_at = point(self.camera.look_at);
        for s in &mut out.spheres {
            s.center = point(s.center);
            s.radius = radius(s.radius);
        }
        for t in &mut out.triangles {
            t.v = t.v.map(&point);
        }
        // Normals are directions: a uniform scale or a shift leaves them as they are.
        for l in &mut out.points {
            l.position = point(l.position);
        }
        out
    }

    /// Checks sizes, indices and numbers; the error names what is wrong.
    pub fn validate(&self) -> Result<(), RenderError> {
        let bad = |m: String| Err(RenderError::Scene(m));
        if self.materials.is_empty() || self.materials.len() > MAX_MATERIALS {
            return bad(format!("needs 1 to {MAX_MATERIALS} materials, has {}", self.materials.len()));
        }
        if self.spheres.len() > MAX_SPHERES {
            return bad(format!("{} spheres exceed the limit of {MAX_SPHERES}", self.spheres.len()));
        }
        if self.triangles.len() > MAX_TRIANGLES {
            return bad(format!("{} triangles exceed the limit of {MAX_TRIANGLES}", self.triangles.len()));
        }
        let c = &self.camera;
        if !finite(&c.position) || !finite(&c.look_at) || !finite(&c.up) || !(1.0..=179.0).contains(&c.fov_deg) {
            return bad("camera: positions must be finite and fov_deg between 1 and 179".into());
        }
        if c.position == c.look_at {
            return bad("camera: position and look_at are the same point".into());
        }
        let n = self.materials.len() as u32;
        for (i, m) in self.materials.iter().enumerate() {
            let ok = match m {
                Material::Diffuse { albedo } => finite(albedo),
                Material::Metal { albedo, fuzz } => finite(albedo) && (0.0..=1.0).contains(fuzz),
                Material::Dielectric { ior } => (1.0..=4.0).contains(ior),
                Material::Emissive { emission } => finite(emission) && emission.iter().all(|e| *e >= 0.0),
                Material::Pbr(p) => p.valid(self.textures.len()),
            };
            if !ok {
                return bad(format!("material {i} has an out-of-range value: {m:?}"));
            }
        }
        for (i, s) in self.spheres.iter().enumerate() {
            if s.material >= n || !finite(&s.center) || !(s.radius.is_finite() && s.radius > 0.0) {
                return bad(format!("sphere {i}: material index must exist and radius be positive"));
            }
        }
        for (i, t) in self.triangles.iter().enumerate() {
            if t.material >= n || !t.v.iter().all(|v| finite(v)) {
                return bad(format!("triangle {i}: material index {} or a vertex is invalid", t.material));
            }
        }
        if !self.shading.is_empty() && self.shading.len() != self.triangles.len() {
            return bad(format!("{} shadings for {} triangles", self.shading.len(), self.triangles.len()));
        }
        for (i, sh) in self.shading.iter().enumerate() {
            if !sh.normals.iter().all(|n| finite(n)) || !sh.uv.iter().all(|uv| finite(uv)) {
                return bad(format!("triangle {i}: a normal or texture coordinate is not finite"));
            }
        }
        if self.textures.len() > MAX_TEXTURES {
            return bad(format!("{} textures exceed the limit of {MAX_TEXTURES}", self.textures.len()));
        }
        let mut bytes = 0u64;
        for (i, t) in self.textures.iter().enumerate() {
            if !(1..=MAX_TEXTURE_SIDE).contains(&t.width) || !(1..=MAX_TEXTURE_SIDE).contains(&t.height) {
                return bad(format!("texture {i} is {}x{}: sides from 1 to {MAX_TEXTURE_SIDE}", t.width, t.height));
            }
            let len = t.width as u64 * t.height as u64 * 4;
            if t.texels.len() as u64 != len {
                return bad(format!("texture {i} has {} bytes for {}x{} RGBA", t.texels.len(), t.width, t.height));
            }
            bytes += len;
        }
        if bytes > MAX_TEXTURE_BYTES {
            return bad(format!("textures take {bytes} bytes decoded, over the limit of {MAX_TEXTURE_BYTES}"));
        }
        if self.points.len() > MAX_POINT_LIGHTS {
            return bad(format!("{} point lights exceed the limit of {MAX_POINT_LIGHTS}", self.points.len()));
        }
        for (i, l) in self.points.iter().enumerate() {
            if !finite(&l.position) || !l.intensity.iter().all(|x| x.is_finite() && *x >= 0.0) {
                return bad(format!("point light {i}: its position must be finite and its intensity finite, >= 0"));
            }
            if let Some(c) = l.cone {
                let len = c.axis.iter().map(|x| x * x).sum::<f32>().sqrt();
                if !finite(&c.axis) || (len - 1.0).abs() > 1e-3 {
                    return bad(format!("spot light {i}: its axis must be a unit vector"));
                }
                if !((0.0..=1.0).contains(&c.cos_outer) && (c.cos_outer..=1.0).contains(&c.cos_inner)) {
                    return bad(format!("spot light {i}: its cone angles must be 0 <= inner <= outer <= 90 degrees"));
                }
            }
        }
        if self.directional.len() > MAX_DIRECTIONAL_LIGHTS {
            return bad(format!(
                "{} directional lights exceed the limit of {MAX_DIRECTIONAL_LIGHTS}",
                self.directional.len()
            ));
        }
        for (i, l) in self.directional.iter().enumerate() {
            let len = l.direction.iter().map(|x| x * x).sum::<f32>().sqrt();
            if !finite(&l.direction) || (len - 1.0).abs() > 1e-3 {
                return bad(format!("directional light {i}: its direction must be a unit vector"));
            }
            if !l.irradiance.iter().all(|x| x.is_finite() && *x >= 0.0) {
                return bad(format!("directional light {i}: its irradiance must be finite, >= 0"));
            }
        }
        Ok(())
    }

    /// Adds an axis-aligned quad (two triangles) spanning `corner`, `corner + u`, `corner + v`.
    pub fn quad(&mut self, corner: [f32; 3], u: [f32; 3], v: [f32; 3], material: u32) {
        let p = |a: f32, b: f32| {
            [corner[0] + a * u[0] + b * v[0], corner[1] + a * u[1] + b * v[1], corner[2] + a * u[2] + b * v[2]]
        };
        self.triangles.push(Triangle { v: [p(0.0, 0.0), p(1.0, 0.0), p(1.0, 1.0)], material });
        self.triangles.push(Triangle { v: [p(0.0, 0.0), p(1.0, 1.0), p(0.0, 1.0)], material });
    }

    /// Adds an axis-aligned box between `min` and `max`, rotated by `yaw_deg` about its centre.
    pub fn cuboid(&mut self, min: [f32; 3], max: [f32; 3], yaw_deg: f32, material: u32) {
        let c = [(min[0] + max[0]) / 2.0, (min[1] + max[1]) / 2.0, (min[2] + max[2]) / 2.0];
        let (s, co) = yaw_deg.to_radians().sin_cos();
        let rot = |p: [f32; 3]| {
            let (x, z) = (p[0] - c[0], p[2] - c[2]);
            [c[0] + x * co + z * s, p[1], c[2] - x * s + z * co]
        };
        let corner = |i: usize| {
            rot([
                if i & 1 == 0 { min[0] } else { max[0] },
                if i & 2 == 0 { min[1] } else { max[1] },
                if i & 4 == 0 { min[2] } else { max[2] },
            ])
        };
        const FACES: [[usize; 4]; 6] =
            [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]];
        for f in FACES {
            let [a, b, cc, d] = f.map(corner);
            self.triangles.push(Triangle { v: [a, b, cc], material });
            self.triangles.push(Triangle { v: [a, cc, d], material });
        }
    }
    /// The camera and sky as the kernels read them, for an image of `width` x `height` (PoR
    /// places its imprints through the same view).
    pub fn view(&self, width: u32, height: u32) -> Result<View, RenderError> {
        let c = &self.camera;
        let aspect = width as f32 / height as f32;
        let h = (c.fov_deg.to_radians() / 2.0).tan();
        let (vh, vw) = (2.0 * h, 2.0 * h * aspect);
        let w = normalize(sub(c.position, c.look_at));
        let u = normalize(cross(c.up, w));
        if !finite(&u) {
            return Err(RenderError::Scene("camera: up is parallel to the viewing direction".into()));
        }
        let v = cross(w, u);
        let horizontal = scale(u, vw);
        let vertical = scale(v, vh);
        let corner = sub(sub(sub([0.0; 3], scale(horizontal, 0.5)), scale(vertical, 0.5)), w);
        let view = View {
            origin: c.position,
            corner,
            horizontal,
            vertical,
            horizon: self.sky.horizon,
            zenith: self.sky.zenith,
        };
        Ok(view)
    }
}

fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn scale(a: [f32; 3], s: f32) -> [f32; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}
fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
fn normalize(a: [f32; 3]) -> [f32; 3] {
    let l = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt();
    scale(a, 1.0 / l)
}

/// Largest encoded scene sent over the network.
pub const MAX_WIRE_SCENE: usize = 4 << 20;

#[derive(bincode::Encode, bincode::Decode)]
struct WireScene {
    camera: [f32; 10],
    sky: [f32; 6],
    /// Kind, colour, and the kind's numbers (fuzz or IOR; PBR's metallic and roughness).
    materials: Vec<(u32, [f32; 3], [f32; 2])>,
    spheres: Vec<([f32; 3], f32, u32)>,
    triangles: Vec<([[f32; 3]; 3], u32)>,
    points: Vec<WirePoint>,
    /// Directional lights: direction and irradiance.
    directional: Vec<([f32; 3], [f32; 3])>,
    seed: u32,
}

/// A point light on the wire: position, intensity, and a spot's axis, cos outer and cos inner.
type WirePoint = ([f32; 3], [f32; 3], Option<([f32; 3], f32, f32)>);

impl Scene {
    /// Compact bytes for the network (bincode).
    pub fn to_wire(&self) -> Vec<u8> {
        let c = &self.camera;
        let w = WireScene {
            camera: [
                c.position[0],
                c.position[1],
                c.position[2],
                c.look_at[0],
                c.look_at[1],
                c.look_at[2],
                c.up[0],
                c.up[1],
                c.up[2],
                c.fov_deg,
            ],
            sky: [
                self.sky.horizon[0],
                self.sky.horizon[1],
                self.sky.horizon[2],
                self.sky.zenith[0],
                self.sky.zenith[1],
                self.sky.zenith[2],
            ],
            materials: self
                .materials
                .iter()
                .map(|m| match *m {
                    Material::Diffuse { albedo } => (0, albedo, [0.0; 2]),
                    Material::Metal { albedo, fuzz } => (1, albedo, [fuzz, 0.0]),
                    Material::Dielectric { ior } => (2, [0.0; 3], [ior, 0.0]),
                    Material::Emissive { emission } => (3, emission, [0.0; 2]),
                    // Textures, shading normals and emission do not travel: PoR's scenes
                    // have none (a scene that needs them goes as a job's assets).
                    Material::Pbr(ref p) => (4, p.base_color, [p.metallic, p.roughness]),
                })
                .collect(),
            spheres: self.spheres.iter().map(|s| (s.center, s.radius, s.material)).collect(),
            triangles: self.triangles.iter().map(|t| (t.v, t.material)).collect(),
            points: self
                .points
                .iter()
                .map(|l| (l.position, l.intensity, l.cone.map(|c| (c.axis, c.cos_outer, c.cos_inner))))
                .collect(),
            directional: self.directional.iter().map(|l| (l.direction, l.irradiance)).collect(),
            seed: self.seed,
        };
        crate::codec::encode(&w)
    }

    /// Decodes and validates network bytes; never panics.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, RenderError> {
        let bad = |m: String| RenderError::Scene(m);
        let w: WireScene = crate::codec::decode::<_, MAX_WIRE_SCENE>(bytes).map_err(|e| bad(e.to_string()))?;
        let c = w.camera;
        let mut materials = Vec::with_capacity(w.materials.len());
        for (kind, v, p) in w.materials {
            materials.push(match kind {
                0 => Material::Diffuse { albedo: v },
                1 => Material::Metal { albedo: v, fuzz: p[0] },
                2 => Material::Dielectric { ior: p[0] },
                3 => Material::Emissive { emission: v },
                4 => Material::Pbr(Pbr::plain(v, p[0], p[1])),
                k => return Err(bad(format!("unknown material kind {k}"))),
            });
        }
        let s = Scene {
            camera: Camera {
                position: [c[0], c[1], c[2]],
                look_at: [c[3], c[4], c[5]],
                up: [c[6], c[7], c[8]],
                fov_deg: c[9],
            },
            sky: Sky { horizon: [w.sky[0], w.sky[1], w.sky[2]], zenith: [w.sky[3], w.sky[4], w.sky[5]] },
            materials,
            spheres: w
                .spheres
                .into_iter()
                .map(|(center, radius, material)| Sphere { center, radius, material })
                .collect(),
            triangles: w.triangles.into_iter().map(|(v, material)| Triangle { v, material }).collect(),
            points: w
                .points
                .into_iter()
                .map(|(position, intensity, cone)| PointLight {
                    position,
                    intensity,
                    cone: cone.map(|(axis, cos_outer, cos_inner)| Cone { axis, cos_outer, cos_inner }),
                })
                .collect(),
            directional: w
                .directional
                .into_iter()
                .map(|(direction, irradiance)| DirectionalLight { direction, irradiance })
                .collect(),
            textures: Vec::new(),
            shading: Vec::new(),
            seed: w.seed,
        };
        s.validate()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scene's lights cross the wire as they are, a spot's cone included; a cone wider than
    /// a hemisphere or an axis that is not a unit vector is refused on decoding.
    #[test]
    fn lights_cross_the_wire_and_bad_cones_are_refused() {
        let cone = Cone { axis: [0.0, -1.0, 0.0], cos_outer: 0.8, cos_inner: 0.9 };
        let mut s = Scene {
            camera: Camera { position: [0.0, 1.0, 5.0], look_at: [0.0; 3], up: [0.0, 1.0, 0.0], fov_deg: 40.0 },
            sky: Sky { horizon: [0.0; 3], zenith: [0.0; 3] },
            materials: vec![Material::Diffuse { albedo: [0.5; 3] }],
            spheres: Vec::new(),
            triangles: Vec::new(),
            points: vec![
                PointLight { position: [0.0, 2.0, 0.0], intensity: [1.0; 3], cone: None },
                PointLight { position: [1.0, 2.0, 0.0], intensity: [2.0; 3], cone: Some(cone) },
            ],
            directional: vec![DirectionalLight { direction: [0.6, -0.8, 0.0], irradiance: [3.0, 2.0, 1.0] }],
            textures: Vec::new(),
            shading: Vec::new(),
            seed: 1,
        };
        let back = Scene::from_wire(&s.to_wire()).unwrap();
        assert_eq!(back.points, s.points);
        assert_eq!(back.directional, s.directional);
        // A directional light must point somewhere and shine a finite, non-negative amount.
        for (direction, irradiance) in [
            ([0.0, -0.5, 0.0], [1.0; 3]),
            ([f32::NAN, -1.0, 0.0], [1.0; 3]),
            ([0.0, -1.0, 0.0], [-1.0, 1.0, 1.0]),
            ([0.0, -1.0, 0.0], [f32::INFINITY, 1.0, 1.0]),
        ] {
            let mut bad = s.clone();
            bad.directional[0] = DirectionalLight { direction, irradiance };
            assert!(Scene::from_wire(&bad.to_wire()).is_err(), "{direction:?} {irradiance:?}");
        }
        let mut many = s.clone();
        many.directional = vec![s.directional[0]; MAX_DIRECTIONAL_LIGHTS + 1];
        let e = Scene::from_wire(&many.to_wire()).unwrap_err().to_string();
        assert!(e.contains("directional lights exceed the limit of 16"), "{e}");
        for bad in [
            Cone { cos_outer: -0.1, ..cone },
            Cone { cos_inner: 0.7, ..cone },
            Cone { axis: [0.0, 0.5, 0.0], ..cone },
            Cone { axis: [f32::NAN, 0.0, 0.0], ..cone },
        ] {
            s.points[1].cone = Some(bad);
            assert!(Scene::from_wire(&s.to_wire()).is_err(), "{bad:?}");
        }
        // The falloff: full on the axis and inside the inner cone, none outside the outer.
        assert_eq!(cone.falloff([0.0, -3.0, 0.0]), 1.0);
        assert_eq!(cone.falloff([1.0, -0.1, 0.0]), 0.0);
        let mid = cone.falloff([0.0, -0.85, (1.0f32 - 0.85 * 0.85).sqrt()]);
        assert!((mid - 0.25).abs() < 1e-3, "{mid}");
    }
}
