//! The CPU reference path tracer: the same math as `shader.wgsl`, line for line, over the same
//! compiled arrays, parallel over rows with rayon. Each pixel's random stream derives from
//! `(seed, x, y, sample)` only, so a pixel renders the same whatever the tiling.

use rayon::prelude::*;

use crate::bvh::BvhNode;
use crate::compile::{Compiled, GpuLight, GpuMaterial, GpuSphere, GpuTriangle, NO_TEXTURE};
use crate::ggx::{AUX_E, AUX_EAVG, AUX_ED, AUX_FDAVG, AUX_SRGB, AUX_WORDS, E_N};
use ifx_protocols::render::{RenderSettings, Tile};

type V = [f32; 3];

fn add(a: V, b: V) -> V {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
fn sub(a: V, b: V) -> V {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn mul(a: V, b: V) -> V {
    [a[0] * b[0], a[1] * b[1], a[2] * b[2]]
}
fn sc(a: V, s: f32) -> V {
    [a[0] * s, a[1] * s, a[2] * s]
}
fn dot(a: V, b: V) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: V, b: V) -> V {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
fn normalize(a: V) -> V {
    sc(a, 1.0 / dot(a, a).sqrt())
}
fn reflect(d: V, n: V) -> V {
    sub(d, sc(n, 2.0 * dot(d, n)))
}

/// The integer hash both kernels use (PCG output function); bit-exact on every backend.
pub fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// `(sin, cos)` of `t` turns (t in [0, 1)), from polynomials of `+ - *` only, so the GPU kernel
/// computes the same bits (the backends' own sin/cos differ by an ulp or two, which is enough
/// to send a glass-refracted path past the edge of a light on one backend only).
pub fn sincos_turn(t: f32) -> (f32, f32) {
    let q4 = (t * 4.0).floor();
    let x = (t * 4.0 - q4) * 1.570_796_4;
    let x2 = x * x;
    let s = x
        * (1.0
            + x2 * (-0.166_666_67
                + x2 * (0.008_333_334
                    + x2 * (-0.000_198_412_7 + x2 * (0.000_002_755_732 + x2 * -0.000_000_025_052_108)))));
    let c = 1.0
        + x2 * (-0.5
            + x2 * (0.041_666_668
                + x2 * (-0.001_388_888_9
                    + x2 * (0.000_024_801_587 + x2 * (-0.000_000_275_573_2 + x2 * 0.000_000_002_087_676)))));
    match q4 as u32 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

struct Rng(u32);

impl Rng {
    fn new(seed: u32, x: u32, y: u32, sample: u32) -> Self {
        Rng(pcg(seed ^ pcg(x ^ pcg(y ^ pcg(sample)))))
    }
    fn next(&mut self) -> f32 {
        self.0 = pcg(self.0);
        (self.0 >> 8) as f32 * (1.0 / 16_777_216.0)
    }
    fn unit(&mut self) -> V {
        let u1 = self.next();
        unit_from(u1, self.next())
    }
}

/// A point on the unit sphere from two uniform numbers: the height from the first, the turn
/// about the axis from the second (uniform over the sphere; the WGSL kernel's `unit_from`).
fn unit_from(u1: f32, u2: f32) -> V {
    let z = 1.0 - 2.0 * u1;
    let (sin, cos) = sincos_turn(u2);
    let r = (1.0 - z * z).max(0.0).sqrt();
    [r * cos, r * sin, z]
}

const T_FAR: f32 = 1e30;
const EDGE_EPS: f32 = 1e-5;

struct Hit {
    t: f32,
    n: V,
    material: u32,
    /// The sphere hit ([`NO_SPHERE`] for a triangle).
    sphere: u32,
    /// The triangle hit ([`NO_SPHERE`] for a sphere).
    tri: u32,
    /// Where on the triangle: the barycentric weights of its second and third vertices.
    b: [f32; 2],
}

/// No sphere: a ray from the camera, or from a triangle.
const NO_SPHERE: u32 = u32::MAX;

/// Where a ray starts: on sphere `sphere` (or none), going into it or out of it. A sphere is
/// convex, so a ray leaving it outwards cannot meet it again, and one going in meets it once,
/// at the far root. The path decides both, not arithmetic at the surface: a hit on the ground
/// sphere (radius 1,000 in `spheres`) is computed from numbers near 10^6, whose rounding
/// (1/16) dwarfs the start's offset, so whether a bounce re-hit its own sphere was decided by
/// rounding, and two honest backends disagreed (on an NVIDIA GPU 2.5% of pixels of `spheres`
/// at 4 spp, 51 of 1,024 sub-tiles failing the spot check, against this CPU reference).
#[derive(Clone, Copy)]
struct Start {
    sphere: u32,
    inside: bool,
}

/// The nearest positive root of a ray and a sphere within `tmax` (only the far root when `far`:
/// the ray starts on the sphere, going in); -1 if none.
fn hit_sphere(s: &GpuSphere, o: V, d: V, tmax: f32, far: bool) -> f32 {
    let oc = sub(o, s.center);
    let a = dot(d, d);
    let hb = dot(oc, d);
    let c = dot(oc, oc) - s.radius * s.radius;
    let disc = hb * hb - a * c;
    if disc < 0.0 {
        return -1.0;
    }
    let sq = disc.sqrt();
    let mut t = (-hb - sq) / a;
    if far || t <= 0.0 || t > tmax {
        t = (-hb + sq) / a;
        if t <= 0.0 || t > tmax {
            return -1.0;
        }
    }
    t
}

/// The distance to the triangle and the barycentric weights of its second and third vertices;
/// the distance is -1 if the ray misses it within `tmax`.
fn hit_triangle(tri: &GpuTriangle, o: V, d: V, tmax: f32) -> V {
    const MISS: V = [-1.0, 0.0, 0.0];
    let v0 = [tri.v0[0], tri.v0[1], tri.v0[2]];
    let e1 = sub([tri.v1[0], tri.v1[1], tri.v1[2]], v0);
    let e2 = sub([tri.v2[0], tri.v2[1], tri.v2[2]], v0);
    let p = cross(d, e2);
    let det = dot(e1, p);
    if det.abs() < 1e-9 {
        return MISS;
    }
    let inv = 1.0 / det;
    let s = sub(o, v0);
    // Barycentric bounds widened by EDGE_EPS: a ray through the seam of two triangles hits
    // both instead of slipping between them on one backend and not the other.
    let u = dot(s, p) * inv;
    if !(-EDGE_EPS..=1.0 + EDGE_EPS).contains(&u) {
        return MISS;
    }
    let q = cross(s, e1);
    let v = dot(d, q) * inv;
    if v < -EDGE_EPS || u + v > 1.0 + EDGE_EPS {
        return MISS;
    }
    let t = dot(e2, q) * inv;
    if t <= 0.0 || t > tmax {
        return MISS;
    }
    [t, u, v]
}

fn safe_inv(d: f32) -> f32 {
    1.0 / if d.abs() < 1e-20 { 1e-20 } else { d }
}

fn hit_box(n: &BvhNode, o: V, inv: V, tmax: f32) -> bool {
    let mut tnear = 0.0f32;
    let mut tfar = tmax;
    for k in 0..3 {
        let t0 = (n.min[k] - o[k]) * inv[k];
        let t1 = (n.max[k] - o[k]) * inv[k];
        tnear = tnear.max(t0.min(t1));
        tfar = tfar.min(t0.max(t1));
    }
    tnear <= tfar
}

fn closest(c: &Compiled, o: V, d: V, from: Start) -> Option<Hit> {
    let mut best: Option<Hit> = None;
    let mut tmax = T_FAR;
    for (i, s) in c.spheres.iter().enumerate() {
        let own = i as u32 == from.sphere;
        if own && !from.inside {
            continue;
        }
        let t = hit_sphere(s, o, d, tmax, own);
        if t > 0.0 {
            tmax = t;
            let n = sc(sub(add(o, sc(d, t)), s.center), 1.0 / s.radius);
            best = Some(Hit { t, n, material: s.material, sphere: i as u32, tri: NO_SPHERE, b: [0.0; 2] });
        }
    }
    if !c.triangles.is_empty() {
        let inv = [safe_inv(d[0]), safe_inv(d[1]), safe_inv(d[2])];
        let mut stack = [0u32; 64];
        let mut sp = 1;
        while sp > 0 {
            sp -= 1;
            let ni = stack[sp] as usize;
            let node = &c.nodes[ni];
            if !hit_box(node, o, inv, tmax) {
                continue;
            }
            if node.count > 0 {
                for i in node.left_or_first..node.left_or_first + node.count {
                    let tri = &c.triangles[i as usize];
                    let [t, bu, bv] = hit_triangle(tri, o, d, tmax);
                    if t > 0.0 {
                        let material = tri.v0[3].to_bits();
                        if masked(c, material, i, [bu, bv]) {
                            continue;
                        }
                        tmax = t;
                        let v0 = [tri.v0[0], tri.v0[1], tri.v0[2]];
                        let e1 = sub([tri.v1[0], tri.v1[1], tri.v1[2]], v0);
                        let e2 = sub([tri.v2[0], tri.v2[1], tri.v2[2]], v0);
                        let n = normalize(cross(e1, e2));
                        best = Some(Hit { t, n, material, sphere: NO_SPHERE, tri: i, b: [bu, bv] });
                    }
                }
            } else if sp + 2 <= stack.len() {
                stack[sp] = node.left_or_first;
                stack[sp + 1] = ni as u32 + 1;
                sp += 2;
            }
        }
    }
    best
}

/// The start of a ray leaving the surface point `p` (reached from `o`) towards the side `n`
/// points to: `p` moved along `n` by `OFFSET` times the largest coordinate of `p` and `o`. The
/// hit point `o + t d` carries rounding errors of a few ulps of that magnitude in every
/// coordinate, so a fixed distance cannot do: `t > 1e-3` skipped geometry in small scenes and
/// let rays re-hit their surface in large ones, dying inside the solid (issue #18). A step
/// proportional to the scene's coordinates clears the error at every scale, and the image does
/// not change when the scene is scaled. (Per-coordinate ulp steps, as in Ray Tracing Gems 6,
/// assume a hit point computed from its triangle's vertices; from `o + t d` the floor's
/// `y = 0` is off by the error of the other coordinates.)
fn offset(p: V, o: V, n: V) -> V {
    let s = [p[0].abs(), p[1].abs(), p[2].abs(), o[0].abs(), o[1].abs(), o[2].abs()].into_iter().fold(0.0f32, f32::max);
    add(p, sc(n, s * OFFSET))
}

/// See [`offset`]: 2^-16 of the scene's coordinates, about 500 times the rounding error of a
/// hit point (2^-23 relative, a few times over) and far below any detail a scene shows at that
/// scale (the Cornell box's light hangs 1/555 of the box below its ceiling).
const OFFSET: f32 = 1.0 / 65536.0;

/// The Fresnel reflectance of a dielectric for unpolarized light: `cos` the incident cosine,
/// `ratio` the indices' ratio (incident over transmitted), `cos_t` the transmitted cosine.
/// Exact, from either side (Schlick's approximation at the inside cosine gave about 4% where a
/// ray leaving glass near the critical angle reflects up to 40% and more; issue #18).
pub fn fresnel(cos: f32, ratio: f32, cos_t: f32) -> f32 {
    let rs = (ratio * cos - cos_t) / (ratio * cos + cos_t);
    let rp = (ratio * cos_t - cos) / (ratio * cos_t + cos);
    0.5 * (rs * rs + rp * rp)
}

/// 1/pi, as both kernels write it.
const INV_PI: f32 = 0.31830987;

/// The light table's entry for a uniform `u` in [0, 1): the first whose running share exceeds
/// it (a binary search, the same steps in both kernels).
fn pick(lights: &[GpuLight], u: f32) -> usize {
    let (mut lo, mut hi) = (0usize, lights.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if u < lights[mid].cdf {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// The power heuristic's weight of a strategy of density `a` against one of density `b`.
fn mis(a: f32, b: f32) -> f32 {
    let (a2, b2) = (a * a, b * b);
    a2 * (1.0 / (a2 + b2))
}

/// A word of the kernels' tables (`crate::ggx`) as the float it holds.
fn aux(c: &Compiled, i: usize) -> f32 {
    f32::from_bits(c.tex[i])
}

/// A texel coordinate `x` (in texels, possibly one past either edge) on a side of `n` texels,
/// wrapped by mode `w` (0 repeat, 1 clamp, 2 mirror).
fn wrap_index(x: i32, n: u32, w: u32) -> u32 {
    let n = n as i32;
    if x < 0 {
        return if w == 0 { (n - 1) as u32 } else { 0 };
    }
    if x >= n {
        return if w == 0 { 0 } else { (n - 1) as u32 };
    }
    x as u32
}

/// A texture coordinate wrapped into [0, 1] by mode `w`.
fn wrap_coord(u: f32, w: u32) -> f32 {
    if w == 1 {
        return u.clamp(0.0, 1.0);
    }
    if w == 2 {
        let m = u - 2.0 * (u * 0.5).floor();
        return if m > 1.0 { 2.0 - m } else { m };
    }
    u - u.floor()
}

/// One texel's channels: RGB through the sRGB curve when `srgb`, else (and alpha) over 255.
fn texel(c: &Compiled, word: u32, srgb: bool) -> [f32; 4] {
    let ch = |k: u32| (word >> (8 * k)) & 0xff;
    let lin = |k: u32| if srgb { aux(c, AUX_SRGB + ch(k) as usize) } else { ch(k) as f32 * (1.0 / 255.0) };
    [lin(0), lin(1), lin(2), ch(3) as f32 * (1.0 / 255.0)]
}

/// Texture `t` at `uv`, filtered bilinearly between texel centres (decoded first, as GPUs
/// filter sRGB textures).
fn sample(c: &Compiled, t: u32, uv: [f32; 2], srgb: bool) -> [f32; 4] {
    let e = AUX_WORDS + t as usize * 4;
    let (offset, w, h, wrap) = (c.tex[e], c.tex[e + 1], c.tex[e + 2], c.tex[e + 3]);
    let x = wrap_coord(uv[0], wrap & 3) * w as f32 - 0.5;
    let y = wrap_coord(uv[1], wrap >> 2) * h as f32 - 0.5;
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (ix0, ix1) = (wrap_index(x0 as i32, w, wrap & 3), wrap_index(x0 as i32 + 1, w, wrap & 3));
    let (iy0, iy1) = (wrap_index(y0 as i32, h, wrap >> 2), wrap_index(y0 as i32 + 1, h, wrap >> 2));
    let at = |ix: u32, iy: u32| texel(c, c.tex[(offset + iy * w + ix) as usize], srgb);
    let (a, b, cc, d) = (at(ix0, iy0), at(ix1, iy0), at(ix0, iy1), at(ix1, iy1));
    std::array::from_fn(|k| (a[k] * (1.0 - fx) + b[k] * fx) * (1.0 - fy) + (cc[k] * (1.0 - fx) + d[k] * fx) * fy)
}

/// The texture coordinates at barycentric `b` of triangle `tri` (which has a shading).
fn uv_at(c: &Compiled, tri: u32, b: [f32; 2]) -> [f32; 2] {
    let s = &c.shade[tri as usize];
    let w0 = 1.0 - b[0] - b[1];
    [s.n0[3] * w0 + s.n1[3] * b[0] + s.n2[3] * b[1], s.v[0] * w0 + s.v[1] * b[0] + s.v[2] * b[1]]
}

/// Whether an alpha-masked material is absent at barycentric `b` of triangle `tri`: its alpha
/// (the factor times the base texture's) is below its cutoff. Rays pass through such points.
fn masked(c: &Compiled, material: u32, tri: u32, b: [f32; 2]) -> bool {
    let m = &c.materials[material as usize];
    if m.alpha_cutoff < 0.0 {
        return false;
    }
    let mut alpha = m.alpha;
    if m.base_tex != NO_TEXTURE && !c.shade.is_empty() {
        alpha *= sample(c, m.base_tex, uv_at(c, tri, b), true)[3];
    }
    alpha < m.alpha_cutoff
}

/// The radiance material `m` emits at barycentrics `b` of triangle `tri`: its emission, times
/// its emissive texture there (sRGB) where it has one.
fn emitted(c: &Compiled, m: &GpuMaterial, tri: u32, b: [f32; 2]) -> V {
    if m.emit_tex != NO_TEXTURE && tri != NO_SPHERE && !c.shade.is_empty() {
        let t = sample(c, m.emit_tex, uv_at(c, tri, b), true);
        return mul(m.emission, [t[0], t[1], t[2]]);
    }
    m.emission
}

/// A surface point as the BSDF sees it: its kind (0 Lambertian, 4 PBR), colour, metallic,
/// roughness, shading normal (on the side the ray came from) and the way back along the ray.
struct Surf {
    kind: u32,
    base: V,
    metallic: f32,
    rough: f32,
    ns: V,
    wo: V,
    /// The shading normal without the normal map (the face's where it has none).
    nsm: V,
}

/// The surface of material `m` at `hit`, seen along `d`, with the geometric normal `n`
/// already turned towards the ray: textures applied, the interpolated normal (turned with
/// `n`), its normal map. A shading normal facing away from the ray is not used.
fn surface(c: &Compiled, m: &GpuMaterial, hit: &Hit, n: V, d: V) -> Surf {
    let wo = sc(normalize(d), -1.0);
    let mut sf = Surf { kind: m.kind, base: m.albedo, metallic: m.metallic, rough: m.roughness, ns: n, wo, nsm: n };
    if hit.tri == NO_SPHERE || c.shade.is_empty() {
        return sf;
    }
    let s = &c.shade[hit.tri as usize];
    let (b, w0) = (hit.b, 1.0 - hit.b[0] - hit.b[1]);
    let v3 = |v: [f32; 4]| [v[0], v[1], v[2]];
    let mut ns = add(add(sc(v3(s.n0), w0), sc(v3(s.n1), b[0])), sc(v3(s.n2), b[1]));
    let len2 = dot(ns, ns);
    if len2.is_nan() || len2 <= 0.0 {
        ns = n;
    } else {
        ns = sc(ns, 1.0 / len2.sqrt());
        if dot(ns, hit.n) * dot(n, hit.n) < 0.0 {
            ns = sc(ns, -1.0);
        }
    }
    let unmapped = ns;
    let uv = uv_at(c, hit.tri, b);
    if m.base_tex != NO_TEXTURE {
        let t = sample(c, m.base_tex, uv, true);
        sf.base = mul(sf.base, [t[0], t[1], t[2]]);
    }
    if m.mr_tex != NO_TEXTURE {
        let t = sample(c, m.mr_tex, uv, false);
        sf.rough *= t[1];
        sf.metallic *= t[2];
    }
    if m.normal_tex != NO_TEXTURE {
        let t = sample(c, m.normal_tex, uv, false);
        let k = [(2.0 * t[0] - 1.0) * m.normal_scale, (2.0 * t[1] - 1.0) * m.normal_scale, 2.0 * t[2] - 1.0];
        let tg = v3(s.tangent);
        let tn = sub(tg, sc(ns, dot(ns, tg)));
        let tl = dot(tn, tn);
        if tl > 0.0 {
            let tn = sc(tn, 1.0 / tl.sqrt());
            let bn = sc(cross(ns, tn), s.v[3]);
            let mapped = add(add(sc(tn, k[0]), sc(bn, k[1])), sc(ns, k[2]));
            let ml = dot(mapped, mapped);
            if ml > 0.0 {
                ns = sc(mapped, 1.0 / ml.sqrt());
            }
        }
    }
    if dot(ns, wo) > 0.0 {
        sf.ns = ns;
        sf.nsm = unmapped;
    }
    sf
}

/// Cycles' bump shadowing of a diffuse lobe (Chiang, Li and Burley 2019, "Taming the shadow
/// terminator"): where a normal map turns the shading normal `ns` away from the smooth one
/// `nsm`, light arriving at `wi` (`nl` its cosine to `ns`) from low over the smooth surface
/// is faded, `g = (nsm.wi) / ((ns.wi)(nsm.ns))` through `-g^3 + g^2 + g`, 1 from `g` = 1 on;
/// without a normal map it is 1. It only darkens (the density is unchanged), as the bumps'
/// own shadows would.
fn bump_shadowing(sf: &Surf, wi: V, nl: f32) -> f32 {
    if sf.nsm == sf.ns {
        return 1.0;
    }
    let den = nl * dot(sf.nsm, sf.ns);
    let g = if den != 0.0 { dot(sf.nsm, wi) * (1.0 / den) } else { 0.0 };
    if g >= 1.0 {
        return 1.0;
    }
    if g.is_nan() || g < 0.0 {
        return 0.0;
    }
    let g2 = g * g;
    -g2 * g + g2 + g
}

/// Schlick's Fresnel factor `(1 - cos)^5`.
fn schlick_w(cos: f32) -> f32 {
    let m = (1.0 - cos).clamp(0.0, 1.0);
    let m2 = m * m;
    m2 * m2 * m
}

/// A GGX albedo table (`crate::ggx`, at word `table`) at cosine `cos` and roughness `rough`,
/// bilinearly.
fn albedo_e(c: &Compiled, table: usize, cos: f32, rough: f32) -> f32 {
    let last = (E_N - 1) as f32;
    let x = cos.clamp(0.0, 1.0) * last;
    let y = rough.clamp(0.0, 1.0) * last;
    let (x0, y0) = (x.floor().min(last - 1.0), y.floor().min(last - 1.0));
    let (fx, fy) = (x - x0, y - y0);
    let at = |i: f32, j: f32| aux(c, table + j as usize * E_N + i as usize);
    let lo = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
    let hi = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
    lo * (1.0 - fy) + hi * fy
}

/// A table's average albedo (at word `table`) at roughness `rough`, linearly between rows.
fn albedo_avg(c: &Compiled, table: usize, rough: f32) -> f32 {
    let last = (E_N - 1) as f32;
    let y = rough.clamp(0.0, 1.0) * last;
    let y0 = y.floor().min(last - 1.0);
    let fy = y - y0;
    aux(c, table + y0 as usize) * (1.0 - fy) + aux(c, table + y0 as usize + 1) * fy
}

/// The share of what single scattering misses that multiple scattering gives back, for a
/// Fresnel whose hemispherical average is `favg` and the single-scattering average albedo
/// `eavg`: Kulla and Conty's `F_avg E_avg / (1 - F_avg (1 - E_avg))`, as Cycles' Principled
/// BSDF uses it. Schlick's average for reflectance `f0` is `f0 + (1 - f0) / 21`.
fn ms_fresnel(favg: f32, eavg: f32) -> f32 {
    favg * eavg * (1.0 / (1.0 - favg * (1.0 - eavg)))
}

/// `ggx::fresnel_dielectric` at IOR 1.5 in f32, as both kernels compute it.
pub(crate) fn fresnel_d(c: f32) -> f32 {
    let g = (1.25 + c * c).sqrt();
    let a = (g - c) * (1.0 / (g + c));
    let b = (c * (g + c) - 1.0) * (1.0 / (c * (g - c) + 1.0));
    0.5 * a * a * (1.0 + b * b)
}

/// The chance that a PBR bounce samples the specular lobe: its share of the Fresnel-weighted
/// colour against the diffuse base, kept between 10% and 90% so neither lobe is starved.
fn spec_chance(sf: &Surf) -> f32 {
    let f0 = f0_of(sf);
    let fw = schlick_w(dot(sf.ns, sf.wo));
    let spec = (f0[0] + f0[1] + f0[2]) * (1.0 - fw) + 3.0 * fw;
    let diff = (sf.base[0] + sf.base[1] + sf.base[2]) * (1.0 - sf.metallic);
    (spec * (1.0 / (spec + diff).max(1e-6))).clamp(0.1, 0.9)
}

/// Reflectance at normal incidence: 4% (IOR 1.5) for the dielectric, the base for metal.
fn f0_of(sf: &Surf) -> V {
    let m = sf.metallic;
    [0.04 * (1.0 - m) + sf.base[0] * m, 0.04 * (1.0 - m) + sf.base[1] * m, 0.04 * (1.0 - m) + sf.base[2] * m]
}

/// The reciprocal part of the specular lobe toward `wi` (a unit vector, `nl` its cosine), for
/// GGX's alpha squared `a2` (`ggx::alpha`, squared):
/// single-scattering GGX without Fresnel as GGX's distribution `D` and Smith's
/// height-correlated visibility `G2 / (4 nv nl)`; and `v.h`, Fresnel's cosine. `D` times the
/// visibility is the same with the two directions swapped.
fn ggx_single(sf: &Surf, wi: V, nl: f32, nv: f32, a2: f32) -> (f32, f32, f32) {
    let h = normalize(add(wi, sf.wo));
    let nh = dot(sf.ns, h).max(0.0);
    let vh = dot(sf.wo, h).clamp(0.0, 1.0);
    let dd = nh * nh * (a2 - 1.0) + 1.0;
    let dist = a2 * (1.0 / (std::f32::consts::PI * dd * dd));
    let vis = 0.5 * (1.0 / (nl * (nv * nv * (1.0 - a2) + a2).sqrt() + nv * (nl * nl * (1.0 - a2) + a2).sqrt()));
    (dist, vis, vh)
}

/// The BSDF times the cosine towards `wi` (a unit vector), and the density with which the
/// bounce would have sampled `wi` (per solid angle). Lambertian: albedo cos / pi. PBR: glTF's
/// metallic-roughness (`Pbr` in scene.rs) with its energy kept as Cycles' Principled BSDF
/// keeps it, from the view direction: the specular lobe scaled by `1 + F_ms (1 - E(nv)) /
/// E(nv)` for the light single scattering misses, and the diffuse base under a dielectric
/// weighted by `1 - A(nv)`, what the specular layer of albedo `A` leaves. Both white
/// surfaces then reflect all they get, and ifx renders what Blender shows.
fn bsdf(c: &Compiled, sf: &Surf, wi: V) -> (V, f32) {
    let nl = dot(sf.ns, wi);
    if nl.is_nan() || nl <= 0.0 {
        return ([0.0; 3], 0.0);
    }
    if sf.kind != 4 {
        let p = nl * INV_PI;
        return (sc(sf.base, p), p);
    }
    let nv = dot(sf.ns, sf.wo).max(1e-6);
    let a = crate::ggx::alpha(sf.rough);
    let a2 = a * a;
    let (dist, vis, vh) = ggx_single(sf, wi, nl, nv, a2);
    let spec = dist * vis;
    let fw = schlick_w(vh);
    let m = sf.metallic;
    let e = albedo_e(c, AUX_E, nv, sf.rough);
    let eavg = albedo_avg(c, AUX_EAVG, sf.rough);
    let missing = (1.0 - e) * (1.0 / e.max(1e-6));
    // The dielectric's specular layer: the exact Fresnel of IOR 1.5 (Cycles'; glTF writes
    // Schlick's of f0 0.04, whose average is 7% lower), energy kept; its albedo seen from the
    // view is what the diffuse base does not get.
    let fdm = 1.0 + ms_fresnel(aux(c, AUX_FDAVG), eavg) * missing;
    let layer = albedo_e(c, AUX_ED, nv, sf.rough) * fdm;
    let diff = (1.0 - m) * (1.0 - layer).max(0.0) * INV_PI * bump_shadowing(sf, wi, nl);
    let dielectric = (1.0 - m) * fresnel_d(vh) * fdm;
    let f = sf.base.map(|b| {
        // The metal's: Schlick's from the base colour.
        let metal = m * (b + (1.0 - b) * fw) * (1.0 + ms_fresnel(b + (1.0 - b) * (1.0 / 21.0), eavg) * missing);
        ((dielectric + metal) * spec + b * diff) * nl
    });
    let g1v = 2.0 * nv * (1.0 / (nv + (a2 + (1.0 - a2) * nv * nv).sqrt()));
    let p_spec = g1v * dist * (1.0 / (4.0 * nv));
    let ps = spec_chance(sf);
    (f, ps * p_spec + (1.0 - ps) * nl * INV_PI)
}

/// A direction for the next bounce off a PBR surface from three uniform numbers: the
/// specular lobe's visible normals (Heitz 2018) with the chance [`spec_chance`], else the
/// cosine lobe (as a Lambertian bounce draws it).
fn sample_pbr(sf: &Surf, u0: f32, u1: f32, u2: f32) -> V {
    let n = sf.ns;
    if u0 >= spec_chance(sf) {
        let dir = add(n, unit_from(u1, u2));
        return if dot(dir, dir) < 1e-12 { n } else { normalize(dir) };
    }
    // An orthonormal frame about n (Duff et al. 2017).
    let sg = if n[2] >= 0.0 { 1.0 } else { -1.0 };
    let a = -1.0 / (sg + n[2]);
    let b = n[0] * n[1] * a;
    let t = [1.0 + sg * n[0] * n[0] * a, sg * b, -sg * n[0]];
    let bt = [b, sg + n[1] * n[1] * a, -n[1]];
    let wo = [dot(sf.wo, t), dot(sf.wo, bt), dot(sf.wo, n)];
    let al = crate::ggx::alpha(sf.rough);
    let vh = normalize([al * wo[0], al * wo[1], wo[2]]);
    let len2 = vh[0] * vh[0] + vh[1] * vh[1];
    let t1 = if len2 > 0.0 { sc([-vh[1], vh[0], 0.0], 1.0 / len2.sqrt()) } else { [1.0, 0.0, 0.0] };
    let t2 = cross(vh, t1);
    let r = u1.sqrt();
    let (sin, cos) = sincos_turn(u2);
    let p1 = r * cos;
    let s = 0.5 * (1.0 + vh[2]);
    let p2 = (1.0 - s) * (1.0 - p1 * p1).max(0.0).sqrt() + s * (r * sin);
    let p3 = (1.0 - p1 * p1 - p2 * p2).max(0.0).sqrt();
    let nh = add(add(sc(t1, p1), sc(t2, p2)), sc(vh, p3));
    let m = normalize([al * nh[0], al * nh[1], nh[2].max(1e-6)]);
    let hw = add(add(sc(t, m[0]), sc(bt, m[1])), sc(n, m[2]));
    sub(sc(hw, 2.0 * dot(sf.wo, hw)), sf.wo)
}

/// Next-event estimation at a surface point `start` (already offset) with geometric normal
/// `n` (towards the ray): one point on one emissive triangle, chosen by power; its light along
/// the shadow ray through the BSDF, weighted against the BSDF sampling that could also have
/// found it (MIS, power heuristic) and divided by its density. Draws three numbers whatever
/// happens, so both kernels stay in step.
fn direct(c: &Compiled, sf: &Surf, start: V, n: V, from: Start, rng: &mut Rng) -> V {
    let (u, mut a, mut b) = (rng.next(), rng.next(), rng.next());
    let li = c.lights[pick(&c.lights, u)].tri;
    let tri = &c.triangles[li as usize];
    if a + b > 1.0 {
        a = 1.0 - a;
        b = 1.0 - b;
    }
    let v0 = [tri.v0[0], tri.v0[1], tri.v0[2]];
    let e1 = sub([tri.v1[0], tri.v1[1], tri.v1[2]], v0);
    let e2 = sub([tri.v2[0], tri.v2[1], tri.v2[2]], v0);
    let to = sub(add(v0, add(sc(e1, a), sc(e2, b))), start);
    let d2 = dot(to, to);
    let cos_g = dot(n, to);
    let ln = cross(e1, e2);
    let cos_l = dot(ln, to).abs();
    if !(cos_g > 0.0 && dot(sf.ns, to) > 0.0 && cos_l > 0.0 && d2 > 0.0) {
        return [0.0; 3];
    }
    match closest(c, start, to, from) {
        Some(h) if h.tri == li => {}
        _ => return [0.0; 3],
    }
    let dist = d2.sqrt();
    let cos_l = cos_l * (1.0 / (dot(ln, ln).sqrt() * dist));
    let p_light = tri.v1[3] * d2 * (1.0 / cos_l);
    // A grazing light point whose cosine underflows has an infinite density: it adds nothing
    // (and inf / inf in the weight would be NaN, which a job owner refuses in a tile).
    if !(p_light > 0.0 && p_light < 1e30) {
        return [0.0; 3];
    }
    let (f, p_bsdf) = bsdf(c, sf, sc(to, 1.0 / dist));
    let m = &c.materials[tri.v0[3].to_bits() as usize];
    sc(mul(emitted(c, m, li, [a, b]), f), mis(p_light, p_bsdf) * (1.0 / p_light))
}

/// The direct light of every point, spot and directional light at a surface point `start`
/// (already offset) with geometric normal `n`: a point's intensity through the BSDF over the
/// squared distance, a directional light's irradiance through the BSDF, where nothing lies
/// between. Such lights cannot be hit, so there is nothing to weigh them against; draws no
/// random numbers.
fn point_lights(c: &Compiled, sf: &Surf, start: V, n: V, from: Start) -> V {
    let mut sum = [0.0f32; 3];
    for l in &c.points {
        // A directional light is unit distance away in the direction it comes from, and
        // anything along that way shadows it.
        let sun = l.spot > 1.5;
        let to = if sun { sc(l.axis, -1.0) } else { sub(l.position, start) };
        let d2 = if sun { 1.0 } else { dot(to, to) };
        if !(dot(n, to) > 0.0 && dot(sf.ns, to) > 0.0 && d2 > 0.0) {
            continue;
        }
        let dist = d2.sqrt();
        // A spot light's cone (scene.rs `Cone`), before the shadow ray: a direction it does
        // not shine costs no ray.
        let mut fall = 1.0f32;
        if l.spot > 0.5 && !sun {
            let cd = -dot(l.axis, to) * (1.0 / dist);
            let s = ((cd - l.cos_outer) * (1.0 / (l.cos_inner - l.cos_outer).max(0.001))).clamp(0.0, 1.0);
            fall = s * s;
            if fall.is_nan() || fall <= 0.0 {
                continue;
            }
        }
        if closest(c, start, to, from).is_some_and(|h| sun || h.t < 1.0) {
            continue;
        }
        let (f, _) = bsdf(c, sf, sc(to, 1.0 / dist));
        let w = fall * (1.0 / d2);
        // A light on the surface (d2 near 0) would be infinite: it adds nothing.
        if w.is_nan() || w >= 1e30 {
            continue;
        }
        sum = add(sum, mul(l.intensity, sc(f, w)));
    }
    sum
}

/// The weight of light found by a bounce of density `p_bsdf` on emissive triangle `tri` at
/// distance `t` along `d` (1 when light sampling could not have found it).
fn hit_light_weight(c: &Compiled, hit: &Hit, d: V, p_bsdf: f32) -> f32 {
    let tri = c.triangles.get(hit.tri as usize);
    match tri.filter(|t| p_bsdf > 0.0 && t.v1[3] > 0.0) {
        Some(tri) => {
            let cos_l = dot(hit.n, d).abs() * (1.0 / dot(d, d).sqrt());
            let p_light = tri.v1[3] * (hit.t * hit.t * dot(d, d)) * (1.0 / cos_l);
            mis(p_bsdf, p_light)
        }
        None => 1.0,
    }
}

/// Russian roulette starts once a path has met this many surfaces: from then on it goes on
/// with the chance `min(1, sqrt(largest channel of its throughput))` (Cycles' gentler rule),
/// and what survives is divided by that chance, so the mean is unchanged while dim paths stop
/// early. Not sooner: the first surfaces carry most of an image, and a roulette from the
/// fourth cost the PoR watermark test's sky-lit scene 1.4 dB of PSNR at 4 bounces (0.6 dB
/// with the square root), under its 20 dB bound: PoR's short renders (4-6 bounces) would pay
/// in noise for little time. The
/// number is drawn at every such step whatever the throughput, so both kernels' random
/// streams stay in step.
pub const ROULETTE_FROM: u32 = 5;

fn trace(c: &Compiled, mut o: V, mut d: V, rng: &mut Rng, max_bounces: u32) -> V {
    let mut color = [0.0f32; 3];
    let mut through = [1.0f32; 3];
    let mut from = Start { sphere: NO_SPHERE, inside: false };
    // The density of the diffuse or PBR bounce that chose `d` (0: the camera's or a specular
    // ray, which light sampling could not have found).
    let mut p_bsdf = 0.0f32;
    for bounce in 0..max_bounces {
        if bounce >= ROULETTE_FROM {
            let u = rng.next();
            let q = through[0].max(through[1]).max(through[2]).sqrt().min(1.0);
            // A black path (q 0) stops here; so would one gone NaN.
            if u >= q || q.is_nan() {
                return color;
            }
            through = sc(through, 1.0 / q);
        }
        let Some(hit) = closest(c, o, d, from) else {
            let t = 0.5 * (normalize(d)[1] + 1.0);
            let sky = add(sc(c.view.horizon, 1.0 - t), sc(c.view.zenith, t));
            return add(color, mul(through, sky));
        };
        let m: &GpuMaterial = &c.materials[hit.material as usize];
        let p = add(o, sc(d, hit.t));
        let mut n = hit.n;
        let front = dot(d, n) < 0.0;
        if !front {
            n = sc(n, -1.0);
        }
        // A scatter to the side `n` points to goes out of a sphere hit from outside (`front`)
        // and into one hit from inside; through the surface, the other way.
        from = Start { sphere: hit.sphere, inside: !front };
        match m.kind {
            3 => {
                // A light found by a diffuse bounce is weighted against light sampling, which
                // could have found it too.
                let w = hit_light_weight(c, &hit, d, p_bsdf);
                return add(color, mul(through, sc(m.emission, w)));
            }
            0 | 4 => {
                let sf = surface(c, m, &hit, n, d);
                if m.kind == 4 && m.emission != [0.0; 3] {
                    let w = hit_light_weight(c, &hit, d, p_bsdf);
                    color = add(color, mul(through, sc(emitted(c, m, hit.tri, hit.b), w)));
                }
                let start = offset(p, o, n);
                if !c.lights.is_empty() {
                    color = add(color, mul(through, direct(c, &sf, start, n, from, rng)));
                }
                if !c.points.is_empty() {
                    color = add(color, mul(through, point_lights(c, &sf, start, n, from)));
                }
                let dir = if m.kind == 4 {
                    let (u0, u1, u2) = (rng.next(), rng.next(), rng.next());
                    sample_pbr(&sf, u0, u1, u2)
                } else {
                    let dir = add(n, rng.unit());
                    if dot(dir, dir) < 1e-12 { n } else { normalize(dir) }
                };
                let (f, pdf) = bsdf(c, &sf, dir);
                // Below the surface (a shading normal's lobe can reach there), or nothing.
                if !(pdf > 0.0 && dot(n, dir) > 0.0) {
                    return color;
                }
                p_bsdf = pdf;
                d = dir;
                o = start;
                through = mul(through, sc(f, 1.0 / pdf));
            }
            1 => {
                let r = add(reflect(normalize(d), n), sc(rng.unit(), m.param));
                if dot(r, n) <= 0.0 {
                    return color;
                }
                d = r;
                o = offset(p, o, n);
                through = mul(through, m.albedo);
                p_bsdf = 0.0;
            }
            _ => {
                p_bsdf = 0.0;
                let ratio = if front { 1.0 / m.param } else { m.param };
                let unit = normalize(d);
                let cos = dot(sc(unit, -1.0), n).min(1.0);
                let sin2 = ratio * ratio * (1.0 - cos * cos);
                let r = rng.next();
                let cos_t = (1.0 - sin2).max(0.0).sqrt();
                if sin2 >= 1.0 || fresnel(cos, ratio, cos_t) > r {
                    d = reflect(unit, n);
                    o = offset(p, o, n);
                } else {
                    d = add(sc(unit, ratio), sc(n, ratio * cos - cos_t));
                    o = offset(p, o, sc(n, -1.0));
                    from.inside = front;
                }
            }
        }
    }
    color
}

/// Renders one tile: linear RGB per pixel, row-major within the tile.
pub fn render_tile(c: &Compiled, s: &RenderSettings, tile: Tile) -> Vec<[f32; 3]> {
    let rows: Vec<Vec<[f32; 3]>> = (tile.y..tile.y + tile.h)
        .into_par_iter()
        .map(|y| {
            (tile.x..tile.x + tile.w)
                .map(|x| {
                    let mut sum = [0.0f32; 3];
                    for sample in 0..s.spp {
                        let mut rng = Rng::new(c.seed, x, y, sample);
                        let u = (x as f32 + rng.next()) / s.width as f32;
                        let v = 1.0 - (y as f32 + rng.next()) / s.height as f32;
                        let v0 = &c.view;
                        let d = add(add(v0.corner, sc(v0.horizontal, u)), sc(v0.vertical, v));
                        sum = add(sum, trace(c, v0.origin, d, &mut rng, s.max_bounces));
                    }
                    sc(sum, 1.0 / s.spp as f32)
                })
                .collect()
        })
        .collect();
    rows.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact Fresnel from both sides of glass (ior 1.5): 4% head-on either way; the same
    /// reflectance for a ray and its reverse (reciprocity); near the critical angle from inside,
    /// far more than Schlick's formula at the inside cosine, which the tracer used to take.
    #[test]
    fn fresnel_is_exact_from_both_sides() {
        let (ior, into, out) = (1.5f32, 1.0 / 1.5f32, 1.5f32);
        let cos_t = |cos: f32, ratio: f32| (1.0 - ratio * ratio * (1.0 - cos * cos)).sqrt();
        assert!((fresnel(1.0, into, 1.0) - 0.04).abs() < 1e-6);
        assert!((fresnel(1.0, out, 1.0) - 0.04).abs() < 1e-6);
        for cos in [0.3f32, 0.5, 0.8, 0.95] {
            let ct = cos_t(cos, into);
            let (f_in, f_back) = (fresnel(cos, into, ct), fresnel(ct, out, cos));
            assert!((f_in - f_back).abs() < 1e-5, "cos {cos}: {f_in} entering, {f_back} leaving");
        }
        // Leaving glass at cos 0.76, just inside the critical angle (cos 0.745).
        let leaving = fresnel(0.76, out, cos_t(0.76, out));
        let r0 = ((1.0 - ior) / (1.0 + ior)).powi(2);
        let schlick_inside = r0 + (1.0 - r0) * (1.0f32 - 0.76).powi(5);
        assert!(
            leaving > 0.25 && schlick_inside < 0.05,
            "exact {leaving}, Schlick at the inside cosine {schlick_inside}"
        );
        // Grazing from outside: everything reflects.
        assert!(fresnel(0.0, into, cos_t(0.0, into)) > 0.999);
    }

    /// Bounces off the ground of `spheres` (a sphere of radius 1,000 under a scene a few units
    /// wide): whether a bounce meets its own sphere again is decided by the path, not by
    /// rounding. Here the CPU's correctly rounded arithmetic keeps every start above the
    /// ground; a backend whose hit point lands two ulps of the sphere's coordinates (2^-13)
    /// lower, as an NVIDIA GPU's did, re-hits it from the offset start unless the rule skips
    /// it. Such decisions went the other way on 2.5% of the pixels of `spheres` there, and
    /// failed honest tiles' spot checks.
    #[test]
    fn a_bounce_off_a_huge_sphere_never_meets_it_again_by_rounding() {
        let scene = crate::builtin::spheres();
        let c = crate::compile(&scene, 64, 64).unwrap();
        let ground = c.spheres.iter().position(|s| s.radius == 1000.0).unwrap() as u32;
        let none = Start { sphere: NO_SPHERE, inside: false };
        let from = Start { sphere: ground, inside: false };
        let (mut here, mut lower_by_rounding, mut lower_by_rule, mut bounces) = (0, 0, 0, 0);
        for k in 0..100_000u32 {
            let mut rng = Rng::new(7, k, k >> 8, 0);
            let o = [0.0, 1.6, 6.0];
            let d = [rng.next() * 4.0 - 2.0, -1.0 - rng.next(), rng.next() * 4.0 - 3.0];
            let Some(hit) = closest(&c, o, d, none) else { continue };
            if hit.sphere != ground {
                continue;
            }
            bounces += 1;
            let start = offset(add(o, sc(d, hit.t)), o, hit.n);
            let dir = add(hit.n, rng.unit());
            let meets = |at: V, from: Start| closest(&c, at, dir, from).is_some_and(|h| h.sphere == ground) as u32;
            here += meets(start, none);
            let lower = sub(start, sc(hit.n, 1.0 / 8192.0));
            lower_by_rounding += meets(lower, none);
            lower_by_rule += meets(lower, from);
        }
        eprintln!(
            "{bounces} bounces: {here} re-hit here, {lower_by_rounding} two ulps lower, {lower_by_rule} by the rule"
        );
        assert!(bounces > 25_000, "{bounces} rays reached the ground");
        assert_eq!((here, lower_by_rule), (0, 0));
        assert!(lower_by_rounding * 100 > bounces, "{lower_by_rounding} of {bounces}");
    }

    /// A surface of the PBR kind with normal +Z, seen from `wo`.
    fn pbr(base: V, metallic: f32, rough: f32, wo: V) -> Surf {
        Surf { kind: 4, base, metallic, rough, ns: [0.0, 0.0, 1.0], wo: normalize(wo), nsm: [0.0, 0.0, 1.0] }
    }

    /// A direction above the +Z hemisphere's horizon at cosine `cos` and turn `turn`.
    fn dir(cos: f32, turn: f32) -> V {
        let (s, c) = sincos_turn(turn);
        let r = (1.0 - cos * cos).max(0.0).sqrt();
        [r * c, r * s, cos]
    }

    /// Issue #18 item 3: the GGX microfacet term is reciprocal (`D` times the visibility, and
    /// Fresnel's `v.h`, the same with the two directions swapped), for smooth and rough; and a
    /// metal's BSDF is that term times Fresnel times a scale of the view direction alone
    /// (Cycles' energy keeping, `1 + F_ms (1 - E) / E`, at least 1), whatever the light's.
    #[test]
    fn the_ggx_microfacet_term_is_reciprocal_and_its_energy_scale_is_the_views() {
        let c = crate::compile(&crate::builtin::cornell(), 8, 8).unwrap();
        let mut rng = Rng::new(3, 1, 4, 1);
        let mut checked = 0;
        for k in 0..4000 {
            let (base, metallic, rough) = ([rng.next(), rng.next(), rng.next()], (k % 3) as f32 * 0.5, rng.next());
            let (a, b) = (dir(0.05 + 0.95 * rng.next(), rng.next()), dir(0.05 + 0.95 * rng.next(), rng.next()));
            let (sa, sb) = (pbr(base, metallic, rough, a), pbr(base, metallic, rough, b));
            let a2 = crate::ggx::alpha(rough) * crate::ggx::alpha(rough);
            let (da, va, ha) = ggx_single(&sa, b, b[2], a[2], a2);
            let (db, vb, hb) = ggx_single(&sb, a, a[2], b[2], a2);
            let (x, y) = (da * va, db * vb);
            assert!((x - y).abs() <= 2e-4 * x.max(y) + 1e-7, "m {metallic} r {rough}: {x} against {y}");
            assert!((ha - hb).abs() <= 1e-5, "v.h {ha} against {hb}");
            // A metal's BSDF from view `a` is that term times Fresnel times one scale, the
            // view's: the same toward `b` as toward any third direction.
            let metal = pbr(base, 1.0, rough, a);
            let c3 = dir(0.05 + 0.95 * rng.next(), rng.next());
            let (dc, vc, hc) = ggx_single(&metal, c3, c3[2], a[2], a2);
            let (fb, fc) = (bsdf(&c, &metal, b).0, bsdf(&c, &metal, c3).0);
            for ch in 0..3 {
                let fr = |vh: f32| base[ch] + (1.0 - base[ch]) * schlick_w(vh);
                let (mb, mc) = (fr(ha) * da * va * b[2], fr(hc) * dc * vc * c3[2]);
                if mb > 1e-6 && mc > 1e-6 {
                    let (sb, sc3) = (fb[ch] / mb, fc[ch] / mc);
                    assert!((sb - sc3).abs() <= 1e-4 * sb && sb >= 1.0 - 1e-5, "r {rough}: scale {sb} against {sc3}");
                }
            }
            checked += 1;
        }
        assert_eq!(checked, 4000);
    }

    /// The albedo of one bounce, the integral of the BSDF times the cosine over the
    /// hemisphere, by the kernels' own importance sampling (`sample_pbr` and its density), over
    /// a stratified grid of `n` x `n` numbers and the lobe choice.
    fn albedo(c: &Compiled, sf: &Surf, n: u32) -> (V, f32, f32) {
        // u0 = 0.05 picks the specular lobe, 0.95 the cosine one (the chance is within
        // [0.1, 0.9]); each lobe's mean counts by its chance.
        let ps = spec_chance(sf) as f64;
        let mut sum = [0.0f64; 3];
        let mut valid = 0.0f64;
        for (lobe, share) in [(0.05f32, ps), (0.95, 1.0 - ps)] {
            for i in 0..n {
                for j in 0..n {
                    let (u1, u2) = ((i as f32 + 0.5) / n as f32, (j as f32 + 0.5) / n as f32);
                    let (f, pdf) = bsdf(c, sf, normalize(sample_pbr(sf, lobe, u1, u2)));
                    if pdf > 0.0 {
                        valid += share / (n * n) as f64;
                        for k in 0..3 {
                            sum[k] += share * (f[k] / pdf) as f64 / (n * n) as f64;
                        }
                    }
                }
            }
        }
        // The density integrates to one: estimated with directions uniform in the hemisphere.
        let mut mass = 0.0f64;
        for i in 0..n {
            for j in 0..n {
                let wi = dir((i as f32 + 0.5) / n as f32, (j as f32 + 0.5) / n as f32);
                mass += bsdf(c, sf, wi).1 as f64 * 2.0 * std::f64::consts::PI / (n * n) as f64;
            }
        }
        (sum.map(|x| x as f32), mass as f32, valid as f32)
    }

    /// Issue #18 item 3, energy: a metal of Fresnel 1 (white) reflects all the light it gets at
    /// every roughness and angle (the single-scattering GGX lobe alone loses up to a third at
    /// roughness 1; the multiple-scattering term gives it back), so does a white dielectric
    /// (its diffuse base takes what its specular layer leaves), and the density `bsdf` gives
    /// is the density with which `sample_pbr` draws.
    #[test]
    fn a_white_ggx_surface_keeps_its_energy_and_samples_by_its_density() {
        let c = crate::compile(&crate::builtin::cornell(), 8, 8).unwrap();
        let mut report = Vec::new();
        for rough in [0.05f32, 0.3, 0.6, 1.0] {
            for cos in [0.15f32, 0.5, 0.9] {
                let wo = dir(cos, 0.3);
                let metal = pbr([1.0; 3], 1.0, rough, wo);
                let (a, mass, valid) = albedo(&c, &metal, 256);
                let (d, _, _) = albedo(&c, &pbr([1.0; 3], 0.0, rough, wo), 256);
                report.push(format!(
                    "r {rough} cos {cos}: metal {:.4} dielectric {:.4}; density {mass:.4} over the hemisphere, {valid:.4} of samples there",
                    a[0], d[0]
                ));
                assert!((a[0] - 1.0).abs() < 0.02, "{}", report.last().unwrap());
                assert!((d[0] - 1.0).abs() < 0.02, "{}", report.last().unwrap());
                // Visible normals reflect some directions below the horizon (those samples are
                // lost; the estimate stays unbiased): the density integrated over the hemisphere
                // is the share of samples that land there. (Below roughness 0.3 the lobe is too
                // narrow for a uniform grid to integrate.)
                if rough >= 0.3 {
                    assert!((mass - valid).abs() < 0.02, "{}", report.last().unwrap());
                }
            }
        }
        eprintln!("{}", report.join("\n"));
        // Without the multiple-scattering term a rough metal loses light: the table says how much.
        let e = albedo_e(&c, AUX_E, 0.5, 1.0);
        assert!(e < 0.8 && e > 0.4, "single-scattering albedo at roughness 1: {e}");
    }

    /// Light sampling on lights no density can be given to: a zero-area emitter (left out of
    /// the table), an emitter edge-on to the floor it lights (cosine 0 at every point), and
    /// one at the camera's side. Every pixel stays finite: a NaN would have the owner refuse
    /// every worker's tile.
    #[test]
    fn light_sampling_never_makes_a_non_finite_pixel() {
        use ifx_protocols::render::scene::{Material, Triangle};
        let mut scene = crate::builtin::cornell();
        let m = scene.materials.len() as u32;
        scene.materials.push(Material::Emissive { emission: [5.0, 5.0, 5.0] });
        let tri = |v: [[f32; 3]; 3]| Triangle { v, material: m };
        scene.triangles.push(tri([[100.0, 1.0, 100.0], [100.0, 1.0, 100.0], [200.0, 2.0, 200.0]]));
        scene.triangles.push(tri([[100.0, 0.0, 100.0], [300.0, 0.0, 100.0], [200.0, 0.0, 300.0]]));
        scene.triangles.push(tri([[500.0, 300.0, 0.0], [500.0, 300.0, 0.01], [500.0, 300.01, 0.0]]));
        let c = crate::compile(&scene, 32, 32).unwrap();
        assert_eq!(c.lights.len(), 4, "the lamp's two triangles and the two with an area");
        let s = RenderSettings { width: 32, height: 32, spp: 8, max_bounces: 6, tile: 32 };
        let px = render_tile(&c, &s, Tile { x: 0, y: 0, w: 32, h: 32 });
        assert!(px.iter().flatten().all(|v| v.is_finite() && *v >= 0.0));
        assert!(px.iter().any(|p| p[0] > 0.0), "the image is black");
    }
}
