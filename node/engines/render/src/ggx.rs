//! glTF's metallic-roughness BSDF as both kernels evaluate it (`cpu.rs` here, `shader.wgsl`
//! line for line), and the tables they read: the sRGB transfer curve for 8-bit texels, and
//! GGX's directional albedo for the energy single scattering misses (Kulla and Conty 2017),
//! which the BSDF gives back as Cycles' Principled BSDF does.
//!
//! The tables are computed here, in f64 with a fixed point set, so every machine uploads the
//! same numbers; the kernels interpolate them with the same f32 operations.

use std::sync::OnceLock;

/// Texel value to linear: the sRGB transfer curve at each of the 256 8-bit values.
pub const AUX_SRGB: usize = 0;
/// GGX's directional albedo `E(cos, roughness)` with Fresnel 1, on a [`E_N`] x [`E_N`] grid:
/// row by roughness, column by the cosine.
pub const AUX_E: usize = 256;
/// Its cosine-weighted average over the hemisphere, `E_avg(roughness)`, per row.
pub const AUX_EAVG: usize = AUX_E + E_N * E_N;
/// The same albedo with the exact Fresnel of a dielectric of IOR [`IOR`], on the same grid:
/// the single-scattering albedo of the dielectric's specular layer, which its diffuse base
/// needs to take only what that layer leaves.
pub const AUX_ED: usize = AUX_EAVG + E_N;
/// That Fresnel's cosine-weighted hemispherical average, `2 int F(mu) mu dmu` (one word).
pub const AUX_FDAVG: usize = AUX_ED + E_N * E_N;
/// Words of tables before the texture table in `Compiled::tex`.
pub const AUX_WORDS: usize = AUX_FDAVG + 1;
/// The dielectric's index of refraction: glTF's (its `f0` of 0.04) and Blender's default.
pub const IOR: f64 = 1.5;
/// Points on each axis of the albedo table.
pub const E_N: usize = 32;
/// Smallest GGX alpha (roughness squared): a smoother surface is rendered as this one. At
/// 1e-3 the highlight of a point light is 1/(pi alpha^2), some 3e5 times a diffuse one, which
/// f32 still resolves.
pub const ALPHA_MIN: f32 = 1e-3;

/// Computes the tables now, so that no render pays for them (a node calls it as it starts).
pub fn warm() {
    let _ = aux();
}

/// The tables, as words (f32 bits) in the order the constants above give.
pub fn aux() -> &'static [u32] {
    static T: OnceLock<Vec<u32>> = OnceLock::new();
    T.get_or_init(|| {
        let mut out = Vec::with_capacity(AUX_WORDS);
        for i in 0..256 {
            let c = i as f64 / 255.0;
            let l = if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) };
            out.push((l as f32).to_bits());
        }
        let (e, ed) = albedo_tables();
        out.extend(e.iter().map(|x| (*x as f32).to_bits()));
        for r in 0..E_N {
            out.push((average(&e[r * E_N..(r + 1) * E_N]) as f32).to_bits());
        }
        out.extend(ed.iter().map(|x| (*x as f32).to_bits()));
        out.push((fresnel_average() as f32).to_bits());
        out
    })
}

/// The cosine at column `i` of the albedo table (the first is just above grazing).
fn cos_at(i: usize) -> f64 {
    (i as f64 / (E_N - 1) as f64).max(1e-3)
}

/// GGX alpha of roughness `r`, as the kernels compute it.
pub fn alpha(r: f32) -> f32 {
    (r * r).max(ALPHA_MIN)
}

/// `E(cos, roughness)`: the fraction of light a GGX surface of Fresnel 1 reflects once, and
/// `E_d`, the same with the dielectric's exact Fresnel at `v.h`; by importance sampling the visible normals at
/// 1,024 Hammersley points (each sample's weight is G2 / G1, Heitz 2018), in f64. About 60 ms
/// once per process (a node computes them as it starts, `warm`); 4,096 points changed the
/// furnace by less than its noise.
fn albedo_tables() -> (Vec<f64>, Vec<f64>) {
    const N: u32 = 1024;
    let mut out = Vec::with_capacity(E_N * E_N);
    let mut outw = Vec::with_capacity(E_N * E_N);
    for r in 0..E_N {
        let rough = r as f32 / (E_N - 1) as f32;
        let a = alpha(rough) as f64;
        for i in 0..E_N {
            let nv = cos_at(i);
            let wo = [(1.0 - nv * nv).sqrt(), 0.0, nv];
            let (mut sum, mut sumw) = (0.0, 0.0);
            for k in 0..N {
                let u1 = (k as f64 + 0.5) / N as f64;
                let u2 = (k.reverse_bits() as f64) / 4_294_967_296.0;
                let h = vndf64(wo, a, u1, u2);
                let vh = wo[0] * h[0] + wo[1] * h[1] + wo[2] * h[2];
                let nl = 2.0 * vh * h[2] - wo[2];
                if nl <= 0.0 {
                    continue;
                }
                let w = g2(nv, nl, a) / g1(nv, a);
                sum += w;
                sumw += w * fresnel_dielectric(vh.clamp(0.0, 1.0), IOR);
            }
            out.push(sum / N as f64);
            outw.push(sumw / N as f64);
        }
    }
    (out, outw)
}

/// The exact Fresnel reflectance of unpolarised light meeting a dielectric of relative index
/// `eta` (> 1) from outside at cosine `c` (Walter et al. 2007): 0.04 head-on at 1.5, 1 at
/// grazing. Both kernels evaluate it in f32 the same way (`fresnel_d`).
pub fn fresnel_dielectric(c: f64, eta: f64) -> f64 {
    let g = (eta * eta - 1.0 + c * c).sqrt();
    let a = (g - c) / (g + c);
    let b = (c * (g + c) - 1.0) / (c * (g - c) + 1.0);
    0.5 * a * a * (1.0 + b * b)
}

/// `2 int_0^1 F(mu) mu dmu` for [`IOR`], by the midpoint rule on 65,536 steps.
fn fresnel_average() -> f64 {
    const N: u32 = 65_536;
    (0..N).map(|i| (i as f64 + 0.5) / N as f64).map(|mu| 2.0 * fresnel_dielectric(mu, IOR) * mu / N as f64).sum()
}

fn lambda(c: f64, a: f64) -> f64 {
    let t2 = (1.0 - c * c) / (c * c);
    0.5 * (-1.0 + (1.0 + a * a * t2).sqrt())
}
fn g1(c: f64, a: f64) -> f64 {
    1.0 / (1.0 + lambda(c, a))
}
fn g2(nv: f64, nl: f64, a: f64) -> f64 {
    1.0 / (1.0 + lambda(nv, a) + lambda(nl, a))
}

/// A visible normal of GGX (alpha `a`) seen from `wo` (local frame, z the normal).
fn vndf64(wo: [f64; 3], a: f64, u1: f64, u2: f64) -> [f64; 3] {
    let vh = norm64([a * wo[0], a * wo[1], wo[2]]);
    let len2 = vh[0] * vh[0] + vh[1] * vh[1];
    let t1 = if len2 > 0.0 { [-vh[1] / len2.sqrt(), vh[0] / len2.sqrt(), 0.0] } else { [1.0, 0.0, 0.0] };
    let t2 = [vh[1] * t1[2] - vh[2] * t1[1], vh[2] * t1[0] - vh[0] * t1[2], vh[0] * t1[1] - vh[1] * t1[0]];
    let r = u1.sqrt();
    let phi = 2.0 * std::f64::consts::PI * u2;
    let p1 = r * phi.cos();
    let s = 0.5 * (1.0 + vh[2]);
    let p2 = (1.0 - s) * (1.0 - p1 * p1).sqrt() + s * r * phi.sin();
    let p3 = (1.0 - p1 * p1 - p2 * p2).max(0.0).sqrt();
    let nh = [0, 1, 2].map(|k| p1 * t1[k] + p2 * t2[k] + p3 * vh[k]);
    norm64([a * nh[0], a * nh[1], nh[2].max(1e-9)])
}

fn norm64(v: [f64; 3]) -> [f64; 3] {
    let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    v.map(|x| x / l)
}

/// `2 * integral of E(cos) cos dcos` over [0, 1] of the piecewise-linear `E` the kernels
/// interpolate (exact for it, so that a rough conductor of Fresnel 1 returns all its light).
fn average(row: &[f64]) -> f64 {
    let mut sum = 0.0;
    let mut x0 = 0.0;
    let mut e0 = row[0];
    for (i, &e1) in row.iter().enumerate().skip(1) {
        let x1 = i as f64 / (E_N - 1) as f64;
        // integral over [x0, x1] of (e0 + (e1 - e0) (x - x0) / (x1 - x0)) x dx
        let (h, m) = (x1 - x0, e1 - e0);
        sum +=
            e0 * (x1 * x1 - x0 * x0) / 2.0 + m / h * ((x1.powi(3) - x0.powi(3)) / 3.0 - x0 * (x1 * x1 - x0 * x0) / 2.0);
        (x0, e0) = (x1, e1);
    }
    2.0 * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's copies of the table offsets (and the roulette's start) are these (WGSL
    /// cannot import them).
    #[test]
    fn the_kernel_reads_the_tables_where_they_are() {
        let wgsl = include_str!("shader.wgsl");
        for (name, value) in [
            ("AUX_SRGB", AUX_SRGB),
            ("AUX_E", AUX_E),
            ("AUX_EAVG", AUX_EAVG),
            ("AUX_ED", AUX_ED),
            ("AUX_FDAVG", AUX_FDAVG),
            ("AUX_WORDS", AUX_WORDS),
            ("E_N", E_N),
            // Not a table's, but a constant both kernels must share all the same.
            ("ROULETTE_FROM", crate::cpu::ROULETTE_FROM as usize),
        ] {
            assert!(wgsl.contains(&format!("const {name}: u32 = {value}u;")), "{name} is not {value} in the kernel");
        }
        assert!(wgsl.contains(&format!("const ALPHA_MIN: f32 = {ALPHA_MIN};")));
        assert_eq!(aux().len(), AUX_WORDS);
        // The sRGB curve's ends and middle.
        let srgb = |i: usize| f32::from_bits(aux()[AUX_SRGB + i]);
        assert_eq!((srgb(0), srgb(255)), (0.0, 1.0));
        assert!((srgb(128) - 0.21586).abs() < 1e-5, "{}", srgb(128));
    }

    /// The dielectric's Fresnel: 0.04 head-on and 1 at grazing for IOR 1.5, its hemispherical
    /// average the textbook 0.0918 (7% above Schlick's 0.04 + 0.96 / 21 = 0.0857), and the
    /// kernels' f32 form the f64 one within 1e-6.
    #[test]
    fn the_dielectric_fresnel_is_the_exact_one() {
        assert!((fresnel_dielectric(1.0, IOR) - 0.04).abs() < 1e-12);
        assert!((fresnel_dielectric(0.0, IOR) - 1.0).abs() < 1e-12);
        let avg = f32::from_bits(aux()[AUX_FDAVG]);
        assert!((avg - 0.0918).abs() < 5e-4, "{avg}");
        for i in 0..=1000 {
            let c = i as f32 / 1000.0;
            let (k, r) = (crate::cpu::fresnel_d(c), fresnel_dielectric(c as f64, IOR));
            assert!((k as f64 - r).abs() < 1e-6, "at {c}: {k} against {r}");
        }
    }
}
