//! glTF animations sampled at one time (issue #18 item 4): a frame of an animated scene is the
//! scene with every animated node's translation, rotation and scale taken from its channels at
//! `frame / fps` seconds, as Blender exports and evaluates them (frame 1 at 24 fps is
//! 1/24 s). Every animation in the file plays at once; where two drive the same property of
//! one node, the lower-numbered wins. STEP, LINEAR (rotations by spherical interpolation) and
//! CUBICSPLINE (Hermite, tangents scaled by the key interval) are sampled; before the first
//! key a channel holds its first value, after the last its last. Morph-target weights are
//! refused: ifx renders no morph targets.

use std::collections::BTreeMap;
use std::sync::Arc;

use gltf::animation::util::ReadOutputs;
use gltf::animation::{Interpolation, Property};

/// A key's time counts as reached from this close (seconds): frame times are computed in f64
/// and keys were written in f32, so a frame on a key may fall a rounding error short of it.
const SNAP: f32 = 1e-5;

/// A node's local transform as glTF decomposes it: translation, rotation (x, y, z, w), scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Trs {
    pub t: [f32; 3],
    pub r: [f32; 4],
    pub s: [f32; 3],
}

impl Trs {
    /// Its column-major matrix: translate x rotate x scale.
    pub fn matrix(&self) -> [[f32; 4]; 4] {
        let [x, y, z, w] = self.r;
        let rot = [
            [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + z * w), 2.0 * (x * z - y * w)],
            [2.0 * (x * y - z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + x * w)],
            [2.0 * (x * z + y * w), 2.0 * (y * z - x * w), 1.0 - 2.0 * (x * x + y * y)],
        ];
        let col = |c: usize| [rot[c][0] * self.s[c], rot[c][1] * self.s[c], rot[c][2] * self.s[c], 0.0];
        [col(0), col(1), col(2), [self.t[0], self.t[1], self.t[2], 1.0]]
    }
}

/// One channel's keys: times, and values of `dims` components (3, or 4 for rotations), three
/// a key for CUBICSPLINE (in-tangent, value, out-tangent).
struct Keys {
    times: Vec<f32>,
    values: Vec<[f32; 4]>,
    dims: usize,
    how: Interpolation,
}

impl Keys {
    fn value(&self, k: usize) -> [f32; 4] {
        match self.how {
            Interpolation::CubicSpline => self.values[3 * k + 1],
            _ => self.values[k],
        }
    }

    /// The channel at time `t`.
    fn sample(&self, t: f32) -> [f32; 4] {
        let n = self.times.len();
        // The last key at or before `t` (snapped), if any.
        let at = self.times.partition_point(|k| *k <= t + SNAP);
        if at == 0 {
            return self.value(0);
        }
        let i = at - 1;
        if i + 1 >= n || self.how == Interpolation::Step {
            return self.value(i);
        }
        let (t0, t1) = (self.times[i], self.times[i + 1]);
        let dt = t1 - t0;
        let u = ((t - t0) / dt).clamp(0.0, 1.0);
        let out = match self.how {
            Interpolation::Linear if self.dims == 4 => slerp(self.value(i), self.value(i + 1), u),
            Interpolation::Linear => lerp(self.value(i), self.value(i + 1), u),
            Interpolation::CubicSpline => {
                let (u2, u3) = (u * u, u * u * u);
                let (v0, b0) = (self.values[3 * i + 1], self.values[3 * i + 2]);
                let (a1, v1) = (self.values[3 * i + 3], self.values[3 * i + 4]);
                let mut p = [0.0; 4];
                for c in 0..4 {
                    p[c] = (2.0 * u3 - 3.0 * u2 + 1.0) * v0[c]
                        + (u3 - 2.0 * u2 + u) * dt * b0[c]
                        + (-2.0 * u3 + 3.0 * u2) * v1[c]
                        + (u3 - u2) * dt * a1[c];
                }
                p
            }
            Interpolation::Step => unreachable!("returned above"),
        };
        if self.dims == 4 { normalize(out) } else { out }
    }
}

fn lerp(a: [f32; 4], b: [f32; 4], u: f32) -> [f32; 4] {
    std::array::from_fn(|c| a[c] + (b[c] - a[c]) * u)
}

fn normalize(q: [f32; 4]) -> [f32; 4] {
    let n = q.iter().map(|v| v * v).sum::<f32>().sqrt();
    if n > 0.0 && n.is_finite() { q.map(|v| v / n) } else { [0.0, 0.0, 0.0, 1.0] }
}

/// Spherical interpolation of unit quaternions, the short way round.
fn slerp(a: [f32; 4], b: [f32; 4], u: f32) -> [f32; 4] {
    let mut dot: f32 = (0..4).map(|c| a[c] * b[c]).sum();
    let b = if dot < 0.0 {
        dot = -dot;
        b.map(|v| -v)
    } else {
        b
    };
    if dot > 0.9995 {
        return normalize(lerp(a, b, u));
    }
    let theta = dot.clamp(-1.0, 1.0).acos();
    let (wa, wb) = (((1.0 - u) * theta).sin() / theta.sin(), (u * theta).sin() / theta.sin());
    normalize(std::array::from_fn(|c| wa * a[c] + wb * b[c]))
}

/// The local matrices at time `t` (seconds) of every node an animation moves, by node index.
pub(crate) fn poses(
    doc: &gltf::Document,
    buffers: &[Arc<Vec<u8>>],
    t: f32,
) -> Result<BTreeMap<usize, [[f32; 4]; 4]>, String> {
    if !t.is_finite() {
        return Err(format!("time {t} is not a number of seconds"));
    }
    let mut trs: BTreeMap<usize, Trs> = BTreeMap::new();
    let mut driven = std::collections::BTreeSet::new();
    for anim in doc.animations() {
        for ch in anim.channels() {
            let what = format!("animation {} channel {}", anim.index(), ch.index());
            let node = ch.target().node();
            let prop = ch.target().property();
            if prop == Property::MorphTargetWeights {
                return Err(format!("{what} animates morph-target weights, which ifx does not render"));
            }
            if !driven.insert((node.index(), prop as u8)) {
                continue;
            }
            let keys = read_keys(&ch, buffers).map_err(|e| format!("{what}: {e}"))?;
            let v = keys.sample(t);
            let (t0, r0, s0) = node.transform().decomposed();
            let pose = trs.entry(node.index()).or_insert(Trs { t: t0, r: r0, s: s0 });
            match prop {
                Property::Translation => pose.t = [v[0], v[1], v[2]],
                Property::Rotation => pose.r = v,
                Property::Scale => pose.s = [v[0], v[1], v[2]],
                Property::MorphTargetWeights => unreachable!("refused above"),
            }
        }
    }
    Ok(trs.into_iter().map(|(i, p)| (i, p.matrix())).collect())
}

/// A channel's keys, checked: times finite and increasing, as many values as keys (three times
/// as many for CUBICSPLINE), every value finite.
fn read_keys(ch: &gltf::animation::Channel, buffers: &[Arc<Vec<u8>>]) -> Result<Keys, String> {
    let reader = ch.reader(|b| buffers.get(b.index()).map(|d| &d[..]));
    let times: Vec<f32> = reader.read_inputs().ok_or("its key times cannot be read")?.collect();
    if times.is_empty() {
        return Err("no keys".into());
    }
    if times.iter().any(|t| !t.is_finite()) || times.windows(2).any(|w| w[1] <= w[0]) {
        return Err("key times must be finite and increasing".into());
    }
    let (values, dims): (Vec<[f32; 4]>, usize) = match reader.read_outputs().ok_or("its values cannot be read")? {
        ReadOutputs::Translations(v) | ReadOutputs::Scales(v) => (v.map(|p| [p[0], p[1], p[2], 0.0]).collect(), 3),
        ReadOutputs::Rotations(r) => (r.into_f32().collect(), 4),
        ReadOutputs::MorphTargetWeights(_) => return Err("morph-target weights".into()),
    };
    let how = ch.sampler().interpolation();
    let per_key = if how == Interpolation::CubicSpline { 3 } else { 1 };
    if values.len() != times.len() * per_key {
        return Err(format!("{} values for {} keys ({per_key} a key)", values.len(), times.len()));
    }
    if values.iter().flatten().any(|v| !v.is_finite()) {
        return Err("a value is not finite".into());
    }
    Ok(Keys { times, values, dims, how })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(how: Interpolation, times: &[f32], values: &[[f32; 4]], dims: usize) -> Keys {
        Keys { times: times.to_vec(), values: values.to_vec(), dims, how }
    }

    #[test]
    fn step_linear_and_clamping() {
        let v = [[0.0, 0.0, 0.0, 0.0], [2.0, 4.0, 6.0, 0.0]];
        let step = keys(Interpolation::Step, &[1.0, 2.0], &v, 3);
        let lin = keys(Interpolation::Linear, &[1.0, 2.0], &v, 3);
        assert_eq!(step.sample(0.0), v[0], "before the first key");
        assert_eq!(step.sample(1.99), v[0]);
        assert_eq!(step.sample(2.0 - 1e-6), v[1], "a key within the snap is reached");
        assert_eq!(lin.sample(1.25), [0.5, 1.0, 1.5, 0.0]);
        assert_eq!(lin.sample(9.0), v[1], "after the last key");
    }

    /// A Hermite segment with zero tangents is smoothstep; with tangents equal to the chord it
    /// is a straight line (the tangents are per second, scaled by the interval).
    #[test]
    fn cubic_spline_is_hermite() {
        let zero = [0.0; 4];
        let flat =
            keys(Interpolation::CubicSpline, &[0.0, 2.0], &[zero, zero, zero, zero, [1.0, 0.0, 0.0, 0.0], zero], 3);
        let u: f32 = 0.25;
        assert!((flat.sample(0.5)[0] - (3.0 * u * u - 2.0 * u * u * u)).abs() < 1e-6);
        let slope = [0.5, 0.0, 0.0, 0.0];
        let line =
            keys(Interpolation::CubicSpline, &[0.0, 2.0], &[slope, zero, slope, slope, [1.0, 0.0, 0.0, 0.0], slope], 3);
        for t in [0.0f32, 0.3, 1.0, 1.7, 2.0] {
            assert!((line.sample(t)[0] - t / 2.0).abs() < 1e-6, "t {t}");
        }
    }

    /// Halfway between no turn and a half turn about y is a quarter turn, whichever sign the
    /// second key has (the short way round).
    #[test]
    fn rotations_slerp_the_short_way() {
        let id = [0.0, 0.0, 0.0, 1.0];
        let half = [0.0, 1.0, 0.0, 0.0];
        let s = std::f32::consts::FRAC_1_SQRT_2;
        for end in [[0.0, s, 0.0, s], [0.0, -s, 0.0, -s]] {
            let k = keys(Interpolation::Linear, &[0.0, 1.0], &[id, end], 4);
            let q = k.sample(0.5);
            let want = [0.0, (std::f32::consts::PI / 8.0).sin(), 0.0, (std::f32::consts::PI / 8.0).cos()];
            assert!(q.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5), "{q:?}");
        }
        let k = keys(Interpolation::Linear, &[0.0, 1.0], &[id, half], 4);
        let q = k.sample(0.5);
        assert!((q[1] - s).abs() < 1e-5 && (q[3] - s).abs() < 1e-5, "{q:?}");
        // A quarter turn about y takes +x to -z.
        let m = Trs { t: [0.0; 3], r: [0.0, s, 0.0, s], s: [1.0; 3] }.matrix();
        assert!((m[0][2] + 1.0).abs() < 1e-6 && m[0][0].abs() < 1e-6, "{m:?}");
    }
}
