// The GPU path tracer: the same math as cpu.rs, line for line. One invocation per pixel of a
// tile; each pixel's random stream derives from (seed, x, y, sample) only.

struct Params {
    origin: vec4<f32>,
    corner: vec4<f32>,
    horizontal: vec4<f32>,
    vertical: vec4<f32>,
    horizon: vec4<f32>,
    zenith: vec4<f32>,
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
};

struct Material {
    albedo: vec3<f32>,
    kind: u32,
    emission: vec3<f32>,
    param: f32,
};

struct Sphere {
    center: vec3<f32>,
    radius: f32,
    material: u32,
};

struct Tri {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
};

struct Light {
    tri: u32,
    cdf: f32,
};

// compile.rs `GpuPoint`: a spot light (`spot` 1) is scaled by its cone (scene.rs `Cone`).
struct Point {
    position: vec3<f32>,
    cos_outer: f32,
    intensity: vec3<f32>,
    cos_inner: f32,
    axis: vec3<f32>,
    spot: f32,
};

struct Node {
    min: vec3<f32>,
    left_or_first: u32,
    max: vec3<f32>,
    count: u32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> materials: array<Material>;
@group(0) @binding(2) var<storage, read> spheres: array<Sphere>;
@group(0) @binding(3) var<storage, read> tris: array<Tri>;
@group(0) @binding(4) var<storage, read> nodes: array<Node>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> lights: array<Light>;
@group(0) @binding(7) var<storage, read> points: array<Point>;

const T_FAR: f32 = 1e30;
const EDGE_EPS: f32 = 1e-5;

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

var<private> rng_state: u32;

fn rnd() -> f32 {
    rng_state = pcg(rng_state);
    return f32(rng_state >> 8u) * (1.0 / 16777216.0);
}

// (sin, cos) of t turns from + - * only: see cpu.rs sincos_turn.
fn sincos_turn(t: f32) -> vec2<f32> {
    let q4 = floor(t * 4.0);
    let x = (t * 4.0 - q4) * 1.5707964;
    let x2 = x * x;
    let s = x * (1.0 + x2 * (-0.16666667 + x2 * (0.008333334 + x2 * (-0.0001984127 + x2 * (0.000002755732 + x2 * -0.000000025052108)))));
    let c = 1.0 + x2 * (-0.5 + x2 * (0.041666668 + x2 * (-0.0013888889 + x2 * (0.000024801587 + x2 * (-0.0000002755732 + x2 * 0.000000002087676)))));
    let q = u32(q4);
    if (q == 0u) {
        return vec2<f32>(s, c);
    } else if (q == 1u) {
        return vec2<f32>(c, -s);
    } else if (q == 2u) {
        return vec2<f32>(-s, -c);
    }
    return vec2<f32>(-c, s);
}

fn rnd_unit() -> vec3<f32> {
    let z = 1.0 - 2.0 * rnd();
    let sc = sincos_turn(rnd());
    let r = sqrt(max(1.0 - z * z, 0.0));
    return vec3<f32>(r * sc.y, r * sc.x, z);
}

fn dot3(a: vec3<f32>, b: vec3<f32>) -> f32 {
    return a.x * b.x + a.y * b.y + a.z * b.z;
}

fn cross3(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    return vec3<f32>(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x);
}

fn norm(a: vec3<f32>) -> vec3<f32> {
    return a * (1.0 / sqrt(dot3(a, a)));
}

fn refl(d: vec3<f32>, n: vec3<f32>) -> vec3<f32> {
    return d - n * (2.0 * dot3(d, n));
}

// cpu.rs `hit_sphere`: only the far root when `far` (the ray starts on the sphere, going in).
fn hit_sphere(s: Sphere, o: vec3<f32>, d: vec3<f32>, tmax: f32, far: bool) -> f32 {
    let oc = o - s.center;
    let a = dot3(d, d);
    let hb = dot3(oc, d);
    let c = dot3(oc, oc) - s.radius * s.radius;
    let disc = hb * hb - a * c;
    if (disc < 0.0) {
        return -1.0;
    }
    let sq = sqrt(disc);
    var t = (-hb - sq) / a;
    if (far || t <= 0.0 || t > tmax) {
        t = (-hb + sq) / a;
        if (t <= 0.0 || t > tmax) {
            return -1.0;
        }
    }
    return t;
}

fn hit_triangle(tri: Tri, o: vec3<f32>, d: vec3<f32>, tmax: f32) -> f32 {
    let v0 = tri.v0.xyz;
    let e1 = tri.v1.xyz - v0;
    let e2 = tri.v2.xyz - v0;
    let p = cross3(d, e2);
    let det = dot3(e1, p);
    if (abs(det) < 1e-9) {
        return -1.0;
    }
    let inv = 1.0 / det;
    let s = o - v0;
    let u = dot3(s, p) * inv;
    if (u < -EDGE_EPS || u > 1.0 + EDGE_EPS) {
        return -1.0;
    }
    let q = cross3(s, e1);
    let v = dot3(d, q) * inv;
    if (v < -EDGE_EPS || u + v > 1.0 + EDGE_EPS) {
        return -1.0;
    }
    let t = dot3(e2, q) * inv;
    if (t <= 0.0 || t > tmax) {
        return -1.0;
    }
    return t;
}

fn safe_inv(d: f32) -> f32 {
    var x = d;
    if (abs(d) < 1e-20) {
        x = 1e-20;
    }
    return 1.0 / x;
}

fn hit_box(n: Node, o: vec3<f32>, inv: vec3<f32>, tmax: f32) -> bool {
    let t0 = (n.min - o) * inv;
    let t1 = (n.max - o) * inv;
    let lo = min(t0, t1);
    let hi = max(t0, t1);
    let tnear = max(max(max(0.0, lo.x), lo.y), lo.z);
    let tfar = min(min(min(tmax, hi.x), hi.y), hi.z);
    return tnear <= tfar;
}

struct Hit {
    t: f32,
    n: vec3<f32>,
    material: u32,
    // The sphere hit (NO_SPHERE for a triangle).
    sphere: u32,
    // The triangle hit (NO_SPHERE for a sphere).
    tri: u32,
};

// cpu.rs `Start`: the sphere a ray starts on, and whether it goes into it (a ray leaving a
// sphere outwards cannot meet it again; one going in meets it at the far root).
const NO_SPHERE: u32 = 0xffffffffu;

fn closest(o: vec3<f32>, d: vec3<f32>, from_sphere: u32, from_inside: bool) -> Hit {
    var best = Hit(-1.0, vec3<f32>(0.0), 0u, NO_SPHERE, NO_SPHERE);
    var tmax = T_FAR;
    for (var i = 0u; i < params.n_spheres; i++) {
        let own = i == from_sphere;
        if (own && !from_inside) {
            continue;
        }
        let s = spheres[i];
        let t = hit_sphere(s, o, d, tmax, own);
        if (t > 0.0) {
            tmax = t;
            best = Hit(t, (o + d * t - s.center) * (1.0 / s.radius), s.material, i, NO_SPHERE);
        }
    }
    if (params.n_triangles > 0u) {
        let inv = vec3<f32>(safe_inv(d.x), safe_inv(d.y), safe_inv(d.z));
        var stack: array<u32, 64>;
        var sp = 1u;
        stack[0] = 0u;
        while (sp > 0u) {
            sp -= 1u;
            let ni = stack[sp];
            let node = nodes[ni];
            if (!hit_box(node, o, inv, tmax)) {
                continue;
            }
            if (node.count > 0u) {
                for (var i = node.left_or_first; i < node.left_or_first + node.count; i++) {
                    let tri = tris[i];
                    let t = hit_triangle(tri, o, d, tmax);
                    if (t > 0.0) {
                        tmax = t;
                        let e1 = tri.v1.xyz - tri.v0.xyz;
                        let e2 = tri.v2.xyz - tri.v0.xyz;
                        best = Hit(t, norm(cross3(e1, e2)), bitcast<u32>(tri.v0.w), NO_SPHERE, i);
                    }
                }
            } else if (sp + 2u <= 64u) {
                stack[sp] = node.left_or_first;
                stack[sp + 1u] = ni + 1u;
                sp += 2u;
            }
        }
    }
    return best;
}

// cpu.rs `offset`: p moved along n by 2^-16 of the largest coordinate of p and o.
fn offset(p: vec3<f32>, o: vec3<f32>, n: vec3<f32>) -> vec3<f32> {
    let a = max(abs(p), abs(o));
    let s = max(max(a.x, a.y), a.z);
    return p + n * (s * (1.0 / 65536.0));
}

// cpu.rs `fresnel`: exact dielectric reflectance for unpolarized light.
fn fresnel(cosv: f32, ratio: f32, cos_t: f32) -> f32 {
    let rs = (ratio * cosv - cos_t) / (ratio * cosv + cos_t);
    let rp = (ratio * cos_t - cosv) / (ratio * cos_t + cosv);
    return 0.5 * (rs * rs + rp * rp);
}

// cpu.rs `INV_PI`, `pick`, `mis`, `direct`: next-event estimation at a diffuse point.
const INV_PI: f32 = 0.31830987;

fn pick(u: f32) -> u32 {
    var lo = 0u;
    var hi = params.n_lights - 1u;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        if (u < lights[mid].cdf) {
            hi = mid;
        } else {
            lo = mid + 1u;
        }
    }
    return lo;
}

fn mis(a: f32, b: f32) -> f32 {
    let a2 = a * a;
    let b2 = b * b;
    return a2 * (1.0 / (a2 + b2));
}

fn direct(start: vec3<f32>, n: vec3<f32>, from_sphere: u32, from_inside: bool) -> vec3<f32> {
    let u = rnd();
    var a = rnd();
    var b = rnd();
    let li = lights[pick(u)].tri;
    let tri = tris[li];
    if (a + b > 1.0) {
        a = 1.0 - a;
        b = 1.0 - b;
    }
    let v0 = tri.v0.xyz;
    let e1 = tri.v1.xyz - v0;
    let e2 = tri.v2.xyz - v0;
    let to = (v0 + (e1 * a + e2 * b)) - start;
    let d2 = dot3(to, to);
    let cos_s0 = dot3(n, to);
    let ln = cross3(e1, e2);
    let cos_l0 = abs(dot3(ln, to));
    if (!(cos_s0 > 0.0 && cos_l0 > 0.0 && d2 > 0.0)) {
        return vec3<f32>(0.0);
    }
    let h = closest(start, to, from_sphere, from_inside);
    if (h.t < 0.0 || h.tri != li) {
        return vec3<f32>(0.0);
    }
    let dist = sqrt(d2);
    let cos_s = cos_s0 * (1.0 / dist);
    let cos_l = cos_l0 * (1.0 / (sqrt(dot3(ln, ln)) * dist));
    let p_light = tri.v1.w * d2 * (1.0 / cos_l);
    if (!(p_light > 0.0 && p_light < 1e30)) {
        return vec3<f32>(0.0);
    }
    let p_bsdf = cos_s * INV_PI;
    let m = materials[bitcast<u32>(tri.v0.w)];
    return m.emission * (cos_s * INV_PI * mis(p_light, p_bsdf) * (1.0 / p_light));
}

// cpu.rs::point_lights: every point or spot light's direct light where nothing lies between.
fn point_lights(start: vec3<f32>, n: vec3<f32>, from_sphere: u32, from_inside: bool) -> vec3<f32> {
    var sum = vec3<f32>(0.0);
    for (var i = 0u; i < params.n_points; i = i + 1u) {
        let l = points[i];
        let to = l.position - start;
        let d2 = dot3(to, to);
        let cos_s = dot3(n, to);
        if (!(cos_s > 0.0 && d2 > 0.0)) {
            continue;
        }
        var fall = 1.0;
        if (l.spot > 0.0) {
            let cd = -dot3(l.axis, to) * (1.0 / sqrt(d2));
            let s = clamp((cd - l.cos_outer) * (1.0 / max(l.cos_inner - l.cos_outer, 0.001)), 0.0, 1.0);
            fall = s * s;
            if (!(fall > 0.0)) {
                continue;
            }
        }
        let h = closest(start, to, from_sphere, from_inside);
        if (h.t >= 0.0 && h.t < 1.0) {
            continue;
        }
        let w = cos_s * (1.0 / sqrt(d2)) * INV_PI * (1.0 / d2);
        if (!(w < 1e30)) {
            continue;
        }
        sum = sum + l.intensity * (w * fall);
    }
    return sum;
}

fn trace(origin: vec3<f32>, dir: vec3<f32>) -> vec3<f32> {
    var o = origin;
    var d = dir;
    var color = vec3<f32>(0.0);
    var through = vec3<f32>(1.0);
    var from_sphere = NO_SPHERE;
    var from_inside = false;
    var p_bsdf = 0.0;
    for (var bounce = 0u; bounce < params.max_bounces; bounce++) {
        let hit = closest(o, d, from_sphere, from_inside);
        if (hit.t < 0.0) {
            let t = 0.5 * (norm(d).y + 1.0);
            let sky = params.horizon.xyz * (1.0 - t) + params.zenith.xyz * t;
            return color + through * sky;
        }
        let m = materials[hit.material];
        let p = o + d * hit.t;
        var n = hit.n;
        let front = dot3(d, n) < 0.0;
        if (!front) {
            n = n * -1.0;
        }
        // cpu.rs: a scatter to the side `n` points to goes out of a sphere hit from outside
        // and into one hit from inside; through the surface, the other way.
        from_sphere = hit.sphere;
        from_inside = !front;
        if (m.kind == 3u) {
            var w = 1.0;
            if (p_bsdf > 0.0 && hit.tri != NO_SPHERE && tris[hit.tri].v1.w > 0.0) {
                let tri = tris[hit.tri];
                let cos_l = abs(dot3(hit.n, d)) * (1.0 / sqrt(dot3(d, d)));
                let p_light = tri.v1.w * (hit.t * hit.t * dot3(d, d)) * (1.0 / cos_l);
                w = mis(p_bsdf, p_light);
            }
            return color + through * (m.emission * w);
        } else if (m.kind == 0u) {
            let start = offset(p, o, n);
            if (params.n_lights > 0u) {
                color = color + (through * m.albedo) * direct(start, n, from_sphere, from_inside);
            }
            if (params.n_points > 0u) {
                color = color + (through * m.albedo) * point_lights(start, n, from_sphere, from_inside);
            }
            var nd = n + rnd_unit();
            if (dot3(nd, nd) < 1e-12) {
                nd = n;
            }
            p_bsdf = dot3(n, nd) * (1.0 / sqrt(dot3(nd, nd))) * INV_PI;
            d = nd;
            o = start;
            through = through * m.albedo;
        } else if (m.kind == 1u) {
            let r = refl(norm(d), n) + rnd_unit() * m.param;
            if (dot3(r, n) <= 0.0) {
                return color;
            }
            d = r;
            o = offset(p, o, n);
            through = through * m.albedo;
            p_bsdf = 0.0;
        } else {
            p_bsdf = 0.0;
            var ratio = m.param;
            if (front) {
                ratio = 1.0 / m.param;
            }
            let unit = norm(d);
            let cosv = min(dot3(unit * -1.0, n), 1.0);
            let sin2 = ratio * ratio * (1.0 - cosv * cosv);
            let r = rnd();
            let cos_t = sqrt(max(1.0 - sin2, 0.0));
            if (sin2 >= 1.0 || fresnel(cosv, ratio, cos_t) > r) {
                d = refl(unit, n);
                o = offset(p, o, n);
            } else {
                d = unit * ratio + n * (ratio * cosv - cos_t);
                o = offset(p, o, n * -1.0);
                from_inside = front;
            }
        }
    }
    return color;
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.tile_w || gid.y >= params.tile_h) {
        return;
    }
    let x = params.tile_x + gid.x;
    let y = params.tile_y + gid.y;
    var sum = vec3<f32>(0.0);
    for (var sample = 0u; sample < params.spp; sample++) {
        rng_state = pcg(params.seed ^ pcg(x ^ pcg(y ^ pcg(sample))));
        let u = (f32(x) + rnd()) / f32(params.width);
        let v = 1.0 - (f32(y) + rnd()) / f32(params.height);
        let d = params.corner.xyz + params.horizontal.xyz * u + params.vertical.xyz * v;
        sum = sum + trace(params.origin.xyz, d);
    }
    out[gid.y * params.tile_w + gid.x] = vec4<f32>(sum * (1.0 / f32(params.spp)), 1.0);
}
