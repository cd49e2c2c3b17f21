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
    n_shade: u32,
};

// compile.rs `GpuMaterial`.
struct Material {
    albedo: vec3<f32>,
    kind: u32,
    emission: vec3<f32>,
    param: f32,
    metallic: f32,
    roughness: f32,
    base_tex: u32,
    mr_tex: u32,
    normal_tex: u32,
    normal_scale: f32,
    alpha_cutoff: f32,
    alpha: f32,
    emit_tex: u32,
};

// compile.rs `GpuShade`: normals (w: U), Vs (w: handedness), the face's tangent.
struct Shade {
    n0: vec4<f32>,
    n1: vec4<f32>,
    n2: vec4<f32>,
    v: vec4<f32>,
    tangent: vec4<f32>,
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
@group(0) @binding(8) var<storage, read> shade: array<Shade>;
// compile.rs `Compiled::tex`: ggx.rs's tables, the texture table, the texels.
@group(0) @binding(9) var<storage, read> tex: array<u32>;

const NO_TEXTURE: u32 = 0xffffffffu;
// ggx.rs: AUX_SRGB, AUX_E, AUX_EAVG, AUX_ED, AUX_FDAVG, AUX_WORDS, E_N, ALPHA_MIN.
const AUX_SRGB: u32 = 0u;
const AUX_E: u32 = 256u;
const AUX_EAVG: u32 = 1280u;
const AUX_ED: u32 = 1312u;
const AUX_FDAVG: u32 = 2336u;
const AUX_WORDS: u32 = 2337u;
const E_N: u32 = 32u;
const ALPHA_MIN: f32 = 0.001;

const ROULETTE_FROM: u32 = 5u;
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
    let u1 = rnd();
    let u2 = rnd();
    return unit_from(u1, u2);
}

// A point on the unit sphere from two uniform numbers (cpu.rs::unit_from).
fn unit_from(u1: f32, u2: f32) -> vec3<f32> {
    let z = 1.0 - 2.0 * u1;
    let sc = sincos_turn(u2);
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

// cpu.rs `hit_triangle`: the distance (-1: a miss) and the barycentrics of v1 and v2.
fn hit_triangle(tri: Tri, o: vec3<f32>, d: vec3<f32>, tmax: f32) -> vec3<f32> {
    let miss = vec3<f32>(-1.0, 0.0, 0.0);
    let v0 = tri.v0.xyz;
    let e1 = tri.v1.xyz - v0;
    let e2 = tri.v2.xyz - v0;
    let p = cross3(d, e2);
    let det = dot3(e1, p);
    if (abs(det) < 1e-9) {
        return miss;
    }
    let inv = 1.0 / det;
    let s = o - v0;
    let u = dot3(s, p) * inv;
    if (u < -EDGE_EPS || u > 1.0 + EDGE_EPS) {
        return miss;
    }
    let q = cross3(s, e1);
    let v = dot3(d, q) * inv;
    if (v < -EDGE_EPS || u + v > 1.0 + EDGE_EPS) {
        return miss;
    }
    let t = dot3(e2, q) * inv;
    if (t <= 0.0 || t > tmax) {
        return miss;
    }
    return vec3<f32>(t, u, v);
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

// cpu.rs `aux`, `wrap_index`, `wrap_coord`, `texel`, `sample`, `uv_at`, `masked`.
fn auxf(i: u32) -> f32 {
    return bitcast<f32>(tex[i]);
}

fn wrap_index(x: i32, n: u32, w: u32) -> u32 {
    if (x < 0) {
        if (w == 0u) {
            return n - 1u;
        }
        return 0u;
    }
    if (x >= i32(n)) {
        if (w == 0u) {
            return 0u;
        }
        return n - 1u;
    }
    return u32(x);
}

fn wrap_coord(u: f32, w: u32) -> f32 {
    if (w == 1u) {
        return clamp(u, 0.0, 1.0);
    }
    if (w == 2u) {
        let m = u - 2.0 * floor(u * 0.5);
        if (m > 1.0) {
            return 2.0 - m;
        }
        return m;
    }
    return u - floor(u);
}

fn texel(word: u32, srgb: bool) -> vec4<f32> {
    let r = word & 0xffu;
    let g = (word >> 8u) & 0xffu;
    let b = (word >> 16u) & 0xffu;
    let a = f32(word >> 24u) * (1.0 / 255.0);
    if (srgb) {
        return vec4<f32>(auxf(AUX_SRGB + r), auxf(AUX_SRGB + g), auxf(AUX_SRGB + b), a);
    }
    return vec4<f32>(f32(r) * (1.0 / 255.0), f32(g) * (1.0 / 255.0), f32(b) * (1.0 / 255.0), a);
}

fn sample_tex(t: u32, uv: vec2<f32>, srgb: bool) -> vec4<f32> {
    let e = AUX_WORDS + t * 4u;
    let offset = tex[e];
    let w = tex[e + 1u];
    let h = tex[e + 2u];
    let wrap = tex[e + 3u];
    let x = wrap_coord(uv.x, wrap & 3u) * f32(w) - 0.5;
    let y = wrap_coord(uv.y, wrap >> 2u) * f32(h) - 0.5;
    let x0 = floor(x);
    let y0 = floor(y);
    let fx = x - x0;
    let fy = y - y0;
    let ix0 = wrap_index(i32(x0), w, wrap & 3u);
    let ix1 = wrap_index(i32(x0) + 1, w, wrap & 3u);
    let iy0 = wrap_index(i32(y0), h, wrap >> 2u);
    let iy1 = wrap_index(i32(y0) + 1, h, wrap >> 2u);
    let a = texel(tex[offset + iy0 * w + ix0], srgb);
    let b = texel(tex[offset + iy0 * w + ix1], srgb);
    let c = texel(tex[offset + iy1 * w + ix0], srgb);
    let d = texel(tex[offset + iy1 * w + ix1], srgb);
    return (a * (1.0 - fx) + b * fx) * (1.0 - fy) + (c * (1.0 - fx) + d * fx) * fy;
}

fn uv_at(tri: u32, b: vec2<f32>) -> vec2<f32> {
    let s = shade[tri];
    let w0 = 1.0 - b.x - b.y;
    return vec2<f32>(s.n0.w * w0 + s.n1.w * b.x + s.n2.w * b.y, s.v.x * w0 + s.v.y * b.x + s.v.z * b.y);
}

// cpu.rs `emitted`.
fn emitted(m: Material, tri: u32, b: vec2<f32>) -> vec3<f32> {
    if (m.emit_tex != NO_TEXTURE && tri != NO_SPHERE && params.n_shade > 0u) {
        return m.emission * sample_tex(m.emit_tex, uv_at(tri, b), true).xyz;
    }
    return m.emission;
}

fn masked(material: u32, tri: u32, b: vec2<f32>) -> bool {
    let m = materials[material];
    if (m.alpha_cutoff < 0.0) {
        return false;
    }
    var alpha = m.alpha;
    if (m.base_tex != NO_TEXTURE && params.n_shade > 0u) {
        alpha = alpha * sample_tex(m.base_tex, uv_at(tri, b), true).w;
    }
    return alpha < m.alpha_cutoff;
}

struct Hit {
    t: f32,
    n: vec3<f32>,
    material: u32,
    // The sphere hit (NO_SPHERE for a triangle).
    sphere: u32,
    // The triangle hit (NO_SPHERE for a sphere).
    tri: u32,
    // The barycentrics of its second and third vertices.
    b: vec2<f32>,
};

// cpu.rs `Start`: the sphere a ray starts on, and whether it goes into it (a ray leaving a
// sphere outwards cannot meet it again; one going in meets it at the far root).
const NO_SPHERE: u32 = 0xffffffffu;

fn closest(o: vec3<f32>, d: vec3<f32>, from_sphere: u32, from_inside: bool) -> Hit {
    var best = Hit(-1.0, vec3<f32>(0.0), 0u, NO_SPHERE, NO_SPHERE, vec2<f32>(0.0));
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
            best = Hit(t, (o + d * t - s.center) * (1.0 / s.radius), s.material, i, NO_SPHERE, vec2<f32>(0.0));
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
                    let th = hit_triangle(tri, o, d, tmax);
                    let t = th.x;
                    if (t > 0.0) {
                        let material = bitcast<u32>(tri.v0.w);
                        if (masked(material, i, th.yz)) {
                            continue;
                        }
                        tmax = t;
                        let e1 = tri.v1.xyz - tri.v0.xyz;
                        let e2 = tri.v2.xyz - tri.v0.xyz;
                        best = Hit(t, norm(cross3(e1, e2)), material, NO_SPHERE, i, th.yz);
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

// cpu.rs `Surf`: what the BSDF sees at a surface point.
struct Surf {
    kind: u32,
    base: vec3<f32>,
    metallic: f32,
    rough: f32,
    ns: vec3<f32>,
    wo: vec3<f32>,
    nsm: vec3<f32>,
};

// cpu.rs `surface`: textures, the interpolated normal, its normal map.
fn surface(m: Material, hit: Hit, n: vec3<f32>, d: vec3<f32>) -> Surf {
    let wo = norm(d) * -1.0;
    var sf = Surf(m.kind, m.albedo, m.metallic, m.roughness, n, wo, n);
    if (hit.tri == NO_SPHERE || params.n_shade == 0u) {
        return sf;
    }
    let s = shade[hit.tri];
    let b = hit.b;
    let w0 = 1.0 - b.x - b.y;
    var ns = (s.n0.xyz * w0 + s.n1.xyz * b.x) + s.n2.xyz * b.y;
    let len2 = dot3(ns, ns);
    if (!(len2 > 0.0)) {
        ns = n;
    } else {
        ns = ns * (1.0 / sqrt(len2));
        if (dot3(ns, hit.n) * dot3(n, hit.n) < 0.0) {
            ns = ns * -1.0;
        }
    }
    let unmapped = ns;
    let uv = uv_at(hit.tri, b);
    if (m.base_tex != NO_TEXTURE) {
        let t = sample_tex(m.base_tex, uv, true);
        sf.base = sf.base * t.xyz;
    }
    if (m.mr_tex != NO_TEXTURE) {
        let t = sample_tex(m.mr_tex, uv, false);
        sf.rough = sf.rough * t.y;
        sf.metallic = sf.metallic * t.z;
    }
    if (m.normal_tex != NO_TEXTURE) {
        let t = sample_tex(m.normal_tex, uv, false);
        let k = vec3<f32>((2.0 * t.x - 1.0) * m.normal_scale, (2.0 * t.y - 1.0) * m.normal_scale, 2.0 * t.z - 1.0);
        let tg = s.tangent.xyz;
        let tn0 = tg - ns * dot3(ns, tg);
        let tl = dot3(tn0, tn0);
        if (tl > 0.0) {
            let tn = tn0 * (1.0 / sqrt(tl));
            let bn = cross3(ns, tn) * s.v.w;
            let mapped = (tn * k.x + bn * k.y) + ns * k.z;
            let ml = dot3(mapped, mapped);
            if (ml > 0.0) {
                ns = mapped * (1.0 / sqrt(ml));
            }
        }
    }
    if (dot3(ns, wo) > 0.0) {
        sf.ns = ns;
        sf.nsm = unmapped;
    }
    return sf;
}

// cpu.rs `bump_shadowing`.
fn bump_shadowing(sf: Surf, wi: vec3<f32>, nl: f32) -> f32 {
    if (all(sf.nsm == sf.ns)) {
        return 1.0;
    }
    let den = nl * dot3(sf.nsm, sf.ns);
    var g = 0.0;
    if (den != 0.0) {
        g = dot3(sf.nsm, wi) * (1.0 / den);
    }
    if (g >= 1.0) {
        return 1.0;
    }
    if (!(g >= 0.0)) {
        return 0.0;
    }
    let g2 = g * g;
    return -g2 * g + g2 + g;
}

fn schlick_w(c: f32) -> f32 {
    let m = clamp(1.0 - c, 0.0, 1.0);
    let m2 = m * m;
    return m2 * m2 * m;
}

fn albedo_e(table: u32, c: f32, rough: f32) -> f32 {
    let last = f32(E_N - 1u);
    let x = clamp(c, 0.0, 1.0) * last;
    let y = clamp(rough, 0.0, 1.0) * last;
    let x0 = min(floor(x), last - 1.0);
    let y0 = min(floor(y), last - 1.0);
    let fx = x - x0;
    let fy = y - y0;
    let i = u32(x0);
    let j = u32(y0);
    let lo = auxf(table + j * E_N + i) * (1.0 - fx) + auxf(table + j * E_N + i + 1u) * fx;
    let hi = auxf(table + (j + 1u) * E_N + i) * (1.0 - fx) + auxf(table + (j + 1u) * E_N + i + 1u) * fx;
    return lo * (1.0 - fy) + hi * fy;
}

fn albedo_avg(table: u32, rough: f32) -> f32 {
    let last = f32(E_N - 1u);
    let y = clamp(rough, 0.0, 1.0) * last;
    let y0 = min(floor(y), last - 1.0);
    let fy = y - y0;
    let j = u32(y0);
    return auxf(table + j) * (1.0 - fy) + auxf(table + j + 1u) * fy;
}

// cpu.rs `ms_fresnel`, the share of the missing energy multiple scattering gives back.
fn ms_fresnel(favg: f32, eavg: f32) -> f32 {
    return favg * eavg * (1.0 / (1.0 - favg * (1.0 - eavg)));
}

// cpu.rs `fresnel_d`: the exact Fresnel of IOR 1.5.
fn fresnel_d(c: f32) -> f32 {
    let g = sqrt(1.25 + c * c);
    let a = (g - c) * (1.0 / (g + c));
    let b = (c * (g + c) - 1.0) * (1.0 / (c * (g - c) + 1.0));
    return 0.5 * a * a * (1.0 + b * b);
}

fn f0_of(sf: Surf) -> vec3<f32> {
    let m = sf.metallic;
    return vec3<f32>(0.04 * (1.0 - m) + sf.base.x * m, 0.04 * (1.0 - m) + sf.base.y * m, 0.04 * (1.0 - m) + sf.base.z * m);
}

fn spec_chance(sf: Surf) -> f32 {
    let f0 = f0_of(sf);
    let fw = schlick_w(dot3(sf.ns, sf.wo));
    let spec = (f0.x + f0.y + f0.z) * (1.0 - fw) + 3.0 * fw;
    let diff = (sf.base.x + sf.base.y + sf.base.z) * (1.0 - sf.metallic);
    return clamp(spec * (1.0 / max(spec + diff, 1e-6)), 0.1, 0.9);
}

// cpu.rs `bsdf`: (the BSDF times the cosine, the density of sampling wi).
struct Eval {
    f: vec3<f32>,
    pdf: f32,
};

fn bsdf(sf: Surf, wi: vec3<f32>) -> Eval {
    let nl = dot3(sf.ns, wi);
    if (!(nl > 0.0)) {
        return Eval(vec3<f32>(0.0), 0.0);
    }
    if (sf.kind != 4u) {
        let p = nl * INV_PI;
        return Eval(sf.base * p, p);
    }
    let nv = max(dot3(sf.ns, sf.wo), 1e-6);
    // cpu.rs `ggx_single`.
    let a = max(sf.rough * sf.rough, ALPHA_MIN);
    let a2 = a * a;
    let h = norm(wi + sf.wo);
    let nh = max(dot3(sf.ns, h), 0.0);
    let vh = clamp(dot3(sf.wo, h), 0.0, 1.0);
    let dd = nh * nh * (a2 - 1.0) + 1.0;
    let dist = a2 * (1.0 / (3.1415927 * dd * dd));
    let vis = 0.5 * (1.0 / (nl * sqrt(nv * nv * (1.0 - a2) + a2) + nv * sqrt(nl * nl * (1.0 - a2) + a2)));
    let spec = dist * vis;
    let fw = schlick_w(vh);
    let m = sf.metallic;
    let e = albedo_e(AUX_E, nv, sf.rough);
    let eavg = albedo_avg(AUX_EAVG, sf.rough);
    let missing = (1.0 - e) * (1.0 / max(e, 1e-6));
    let fdm = 1.0 + ms_fresnel(auxf(AUX_FDAVG), eavg) * missing;
    let layer = albedo_e(AUX_ED, nv, sf.rough) * fdm;
    let diff = (1.0 - m) * max(1.0 - layer, 0.0) * INV_PI * bump_shadowing(sf, wi, nl);
    let dielectric = (1.0 - m) * fresnel_d(vh) * fdm;
    var f = vec3<f32>(0.0);
    for (var k = 0; k < 3; k++) {
        let b = sf.base[k];
        let metal = m * (b + (1.0 - b) * fw) * (1.0 + ms_fresnel(b + (1.0 - b) * (1.0 / 21.0), eavg) * missing);
        f[k] = ((dielectric + metal) * spec + b * diff) * nl;
    }
    let g1v = 2.0 * nv * (1.0 / (nv + sqrt(a2 + (1.0 - a2) * nv * nv)));
    let p_spec = g1v * dist * (1.0 / (4.0 * nv));
    let ps = spec_chance(sf);
    return Eval(f, ps * p_spec + (1.0 - ps) * nl * INV_PI);
}

// cpu.rs `sample_pbr`.
fn sample_pbr(sf: Surf, u0: f32, u1: f32, u2: f32) -> vec3<f32> {
    let n = sf.ns;
    if (u0 >= spec_chance(sf)) {
        let dir = n + unit_from(u1, u2);
        if (dot3(dir, dir) < 1e-12) {
            return n;
        }
        return norm(dir);
    }
    var sg = -1.0;
    if (n.z >= 0.0) {
        sg = 1.0;
    }
    let a = -1.0 / (sg + n.z);
    let b = n.x * n.y * a;
    let t = vec3<f32>(1.0 + sg * n.x * n.x * a, sg * b, -sg * n.x);
    let bt = vec3<f32>(b, sg + n.y * n.y * a, -n.y);
    let wo = vec3<f32>(dot3(sf.wo, t), dot3(sf.wo, bt), dot3(sf.wo, n));
    let al = max(sf.rough * sf.rough, ALPHA_MIN);
    let vh = norm(vec3<f32>(al * wo.x, al * wo.y, wo.z));
    let len2 = vh.x * vh.x + vh.y * vh.y;
    var t1 = vec3<f32>(1.0, 0.0, 0.0);
    if (len2 > 0.0) {
        t1 = vec3<f32>(-vh.y, vh.x, 0.0) * (1.0 / sqrt(len2));
    }
    let t2 = cross3(vh, t1);
    let r = sqrt(u1);
    let scv = sincos_turn(u2);
    let p1 = r * scv.y;
    let s = 0.5 * (1.0 + vh.z);
    let p2 = (1.0 - s) * sqrt(max(1.0 - p1 * p1, 0.0)) + s * (r * scv.x);
    let p3 = sqrt(max(1.0 - p1 * p1 - p2 * p2, 0.0));
    let nh = (t1 * p1 + t2 * p2) + vh * p3;
    let m = norm(vec3<f32>(al * nh.x, al * nh.y, max(nh.z, 1e-6)));
    let hw = (t * m.x + bt * m.y) + n * m.z;
    return hw * (2.0 * dot3(sf.wo, hw)) - sf.wo;
}

// cpu.rs `direct`: next-event estimation through the BSDF, weighted by MIS.
fn direct(sf: Surf, start: vec3<f32>, n: vec3<f32>, from_sphere: u32, from_inside: bool) -> vec3<f32> {
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
    let cos_g = dot3(n, to);
    let ln = cross3(e1, e2);
    let cos_l0 = abs(dot3(ln, to));
    if (!(cos_g > 0.0 && dot3(sf.ns, to) > 0.0 && cos_l0 > 0.0 && d2 > 0.0)) {
        return vec3<f32>(0.0);
    }
    let h = closest(start, to, from_sphere, from_inside);
    if (h.t < 0.0 || h.tri != li) {
        return vec3<f32>(0.0);
    }
    let dist = sqrt(d2);
    let cos_l = cos_l0 * (1.0 / (sqrt(dot3(ln, ln)) * dist));
    let p_light = tri.v1.w * d2 * (1.0 / cos_l);
    if (!(p_light > 0.0 && p_light < 1e30)) {
        return vec3<f32>(0.0);
    }
    let e = bsdf(sf, to * (1.0 / dist));
    let m = materials[bitcast<u32>(tri.v0.w)];
    return (emitted(m, li, vec2<f32>(a, b)) * e.f) * (mis(p_light, e.pdf) * (1.0 / p_light));
}

// cpu.rs::point_lights: every point, spot or directional light through the BSDF where nothing
// lies between.
fn point_lights(sf: Surf, start: vec3<f32>, n: vec3<f32>, from_sphere: u32, from_inside: bool) -> vec3<f32> {
    var sum = vec3<f32>(0.0);
    for (var i = 0u; i < params.n_points; i = i + 1u) {
        let l = points[i];
        let sun = l.spot > 1.5;
        var to = l.position - start;
        var d2 = 1.0;
        if (sun) {
            to = l.axis * -1.0;
        } else {
            d2 = dot3(to, to);
        }
        if (!(dot3(n, to) > 0.0 && dot3(sf.ns, to) > 0.0 && d2 > 0.0)) {
            continue;
        }
        let dist = sqrt(d2);
        var fall = 1.0;
        if (l.spot > 0.5 && !sun) {
            let cd = -dot3(l.axis, to) * (1.0 / dist);
            let s = clamp((cd - l.cos_outer) * (1.0 / max(l.cos_inner - l.cos_outer, 0.001)), 0.0, 1.0);
            fall = s * s;
            if (!(fall > 0.0)) {
                continue;
            }
        }
        let h = closest(start, to, from_sphere, from_inside);
        if (h.t >= 0.0 && (sun || h.t < 1.0)) {
            continue;
        }
        let e = bsdf(sf, to * (1.0 / dist));
        let w = fall * (1.0 / d2);
        if (!(w < 1e30)) {
            continue;
        }
        sum = sum + l.intensity * (e.f * w);
    }
    return sum;
}

// cpu.rs `hit_light_weight`.
fn hit_light_weight(hit: Hit, d: vec3<f32>, p_bsdf: f32) -> f32 {
    if (p_bsdf > 0.0 && hit.tri != NO_SPHERE && tris[hit.tri].v1.w > 0.0) {
        let tri = tris[hit.tri];
        let cos_l = abs(dot3(hit.n, d)) * (1.0 / sqrt(dot3(d, d)));
        let p_light = tri.v1.w * (hit.t * hit.t * dot3(d, d)) * (1.0 / cos_l);
        return mis(p_bsdf, p_light);
    }
    return 1.0;
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
        // cpu.rs `ROULETTE_FROM`: Russian roulette, a number drawn at every step from there.
        if (bounce >= ROULETTE_FROM) {
            let u = rnd();
            let q = min(sqrt(max(through.x, max(through.y, through.z))), 1.0);
            if (!(u < q)) {
                return color;
            }
            through = through * (1.0 / q);
        }
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
            let w = hit_light_weight(hit, d, p_bsdf);
            return color + through * (m.emission * w);
        } else if (m.kind == 0u || m.kind == 4u) {
            let sf = surface(m, hit, n, d);
            if (m.kind == 4u && any(m.emission != vec3<f32>(0.0))) {
                let w = hit_light_weight(hit, d, p_bsdf);
                color = color + through * (emitted(m, hit.tri, hit.b) * w);
            }
            let start = offset(p, o, n);
            if (params.n_lights > 0u) {
                color = color + through * direct(sf, start, n, from_sphere, from_inside);
            }
            if (params.n_points > 0u) {
                color = color + through * point_lights(sf, start, n, from_sphere, from_inside);
            }
            var nd: vec3<f32>;
            if (m.kind == 4u) {
                let u0 = rnd();
                let u1 = rnd();
                let u2 = rnd();
                nd = sample_pbr(sf, u0, u1, u2);
            } else {
                nd = n + rnd_unit();
                if (dot3(nd, nd) < 1e-12) {
                    nd = n;
                } else {
                    nd = norm(nd);
                }
            }
            let e = bsdf(sf, nd);
            if (!(e.pdf > 0.0 && dot3(n, nd) > 0.0)) {
                return color;
            }
            p_bsdf = e.pdf;
            d = nd;
            o = start;
            through = through * (e.f * (1.0 / e.pdf));
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
