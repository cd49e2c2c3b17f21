//! The CPU reference path tracer: the same math as `shader.wgsl`, line for line, over the same
//! compiled arrays, parallel over rows with rayon. Each pixel's random stream derives from
//! `(seed, x, y, sample)` only, so a pixel renders the same whatever the tiling.

use rayon::prelude::*;

use crate::bvh::BvhNode;
use crate::compile::{Compiled, GpuLight, GpuMaterial, GpuSphere, GpuTriangle};
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
        let z = 1.0 - 2.0 * self.next();
        let (sin, cos) = sincos_turn(self.next());
        let r = (1.0 - z * z).max(0.0).sqrt();
        [r * cos, r * sin, z]
    }
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

fn hit_triangle(tri: &GpuTriangle, o: V, d: V, tmax: f32) -> f32 {
    let v0 = [tri.v0[0], tri.v0[1], tri.v0[2]];
    let e1 = sub([tri.v1[0], tri.v1[1], tri.v1[2]], v0);
    let e2 = sub([tri.v2[0], tri.v2[1], tri.v2[2]], v0);
    let p = cross(d, e2);
    let det = dot(e1, p);
    if det.abs() < 1e-9 {
        return -1.0;
    }
    let inv = 1.0 / det;
    let s = sub(o, v0);
    // Barycentric bounds widened by EDGE_EPS: a ray through the seam of two triangles hits
    // both instead of slipping between them on one backend and not the other.
    let u = dot(s, p) * inv;
    if !(-EDGE_EPS..=1.0 + EDGE_EPS).contains(&u) {
        return -1.0;
    }
    let q = cross(s, e1);
    let v = dot(d, q) * inv;
    if v < -EDGE_EPS || u + v > 1.0 + EDGE_EPS {
        return -1.0;
    }
    let t = dot(e2, q) * inv;
    if t <= 0.0 || t > tmax {
        return -1.0;
    }
    t
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
            best = Some(Hit { t, n, material: s.material, sphere: i as u32, tri: NO_SPHERE });
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
                    let t = hit_triangle(tri, o, d, tmax);
                    if t > 0.0 {
                        tmax = t;
                        let v0 = [tri.v0[0], tri.v0[1], tri.v0[2]];
                        let e1 = sub([tri.v1[0], tri.v1[1], tri.v1[2]], v0);
                        let e2 = sub([tri.v2[0], tri.v2[1], tri.v2[2]], v0);
                        let (n, material) = (normalize(cross(e1, e2)), tri.v0[3].to_bits());
                        best = Some(Hit { t, n, material, sphere: NO_SPHERE, tri: i });
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

/// Next-event estimation at a diffuse point `start` (already offset) with normal `n`: one point
/// on one emissive triangle, chosen by power; its light along the shadow ray, times the
/// cosine over pi, weighted against the cosine sampling that could also have found it (MIS,
/// power heuristic) and divided by its density. Times the albedo, it is the point's direct
/// light. Draws three numbers whatever happens, so both kernels stay in step.
fn direct(c: &Compiled, start: V, n: V, from: Start, rng: &mut Rng) -> V {
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
    let cos_s = dot(n, to);
    let ln = cross(e1, e2);
    let cos_l = dot(ln, to).abs();
    if !(cos_s > 0.0 && cos_l > 0.0 && d2 > 0.0) {
        return [0.0; 3];
    }
    match closest(c, start, to, from) {
        Some(h) if h.tri == li => {}
        _ => return [0.0; 3],
    }
    let dist = d2.sqrt();
    let cos_s = cos_s * (1.0 / dist);
    let cos_l = cos_l * (1.0 / (dot(ln, ln).sqrt() * dist));
    let p_light = tri.v1[3] * d2 * (1.0 / cos_l);
    // A grazing light point whose cosine underflows has an infinite density: it adds nothing
    // (and inf / inf in the weight would be NaN, which a job owner refuses in a tile).
    if !(p_light > 0.0 && p_light < 1e30) {
        return [0.0; 3];
    }
    let p_bsdf = cos_s * INV_PI;
    let m = &c.materials[tri.v0[3].to_bits() as usize];
    sc(m.emission, cos_s * INV_PI * mis(p_light, p_bsdf) * (1.0 / p_light))
}

/// The direct light of every point light at a diffuse point `start` (already offset) with
/// normal `n`: each one's intensity times the cosine over pi, over the squared distance,
/// where nothing lies between (times the albedo, the point's light from them). A point light
/// cannot be hit, so there is nothing to weigh it against; draws no random numbers.
fn point_lights(c: &Compiled, start: V, n: V, from: Start) -> V {
    let mut sum = [0.0f32; 3];
    for l in &c.points {
        let to = sub(l.position, start);
        let d2 = dot(to, to);
        let cos_s = dot(n, to);
        if !(cos_s > 0.0 && d2 > 0.0) {
            continue;
        }
        // A spot light's cone (scene.rs `Cone`), before the shadow ray: a direction it does
        // not shine costs no ray.
        let mut fall = 1.0f32;
        if l.spot > 0.0 {
            let cd = -dot(l.axis, to) * (1.0 / d2.sqrt());
            let s = ((cd - l.cos_outer) * (1.0 / (l.cos_inner - l.cos_outer).max(0.001))).clamp(0.0, 1.0);
            fall = s * s;
            if fall.is_nan() || fall <= 0.0 {
                continue;
            }
        }
        if closest(c, start, to, from).is_some_and(|h| h.t < 1.0) {
            continue;
        }
        let w = cos_s * (1.0 / d2.sqrt()) * INV_PI * (1.0 / d2);
        // A light on the surface (d2 near 0) would be infinite: it adds nothing.
        if w.is_nan() || w >= 1e30 {
            continue;
        }
        sum = add(sum, sc(l.intensity, w * fall));
    }
    sum
}

fn trace(c: &Compiled, mut o: V, mut d: V, rng: &mut Rng, max_bounces: u32) -> V {
    let mut color = [0.0f32; 3];
    let mut through = [1.0f32; 3];
    let mut from = Start { sphere: NO_SPHERE, inside: false };
    // The cosine density of the diffuse bounce that chose `d` (0: the camera's or a specular
    // ray, which light sampling could not have found).
    let mut p_bsdf = 0.0f32;
    for _ in 0..max_bounces {
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
                let mut w = 1.0f32;
                let tri = c.triangles.get(hit.tri as usize);
                if let Some(tri) = tri.filter(|t| p_bsdf > 0.0 && t.v1[3] > 0.0) {
                    let cos_l = dot(hit.n, d).abs() * (1.0 / dot(d, d).sqrt());
                    let p_light = tri.v1[3] * (hit.t * hit.t * dot(d, d)) * (1.0 / cos_l);
                    w = mis(p_bsdf, p_light);
                }
                return add(color, mul(through, sc(m.emission, w)));
            }
            0 => {
                let start = offset(p, o, n);
                if !c.lights.is_empty() {
                    color = add(color, mul(mul(through, m.albedo), direct(c, start, n, from, rng)));
                }
                if !c.points.is_empty() {
                    color = add(color, mul(mul(through, m.albedo), point_lights(c, start, n, from)));
                }
                let mut dir = add(n, rng.unit());
                if dot(dir, dir) < 1e-12 {
                    dir = n;
                }
                p_bsdf = dot(n, dir) * (1.0 / dot(dir, dir).sqrt()) * INV_PI;
                d = dir;
                o = start;
                through = mul(through, m.albedo);
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
