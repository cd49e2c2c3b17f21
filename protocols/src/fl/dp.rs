//! Client-level differential privacy for federated tasks (issue #20), in the manner of
//! DP-FedAvg: each worker clips its update to an L2 norm `clip` and adds Gaussian noise before
//! the update leaves the machine, and the task's rounds are counted by a Rényi-DP accountant.
//!
//! The noise is split over the clients of a round: each adds N(0, (z·clip)² / m) per
//! coordinate, `m` the task's `min_clients`, so the aggregate of k >= m updates carries noise of
//! standard deviation at least z·clip while one client's data moves it by at most `clip`
//! (add/remove adjacency of one client's whole data). The published model is then (ε, δ)-DP per
//! client at the ε [`Accountant`] reports for z over the task's rounds. The owner sees each update
//! before aggregation, with only 1/√m of that noise: its view is counted separately
//! ([`DpPlan::epsilon_vs_owner`]), because ifx has no secure aggregation to hide single updates.
//! No amplification by subsampling is claimed: the owner, not a random draw, picks the clients.
//!
//! The accountant composes the Gaussian mechanism's RDP, ε(α) = α / (2 z²) per release, over a
//! fixed grid of orders and converts with ε = ε(α) + ln(1/δ) / (α − 1) (Mironov 2017, Prop. 3).

use bincode::{Decode, Encode};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::FlError;

/// The δ of a task that names none (issue #20: ε is reported at δ = 1e-5).
pub const DEFAULT_DELTA: f64 = 1e-5;
/// The clip of a task that names none: honest AdamW updates of the digits task measured norms of
/// 0.3-1.5 per round at the default learning rate.
pub const DEFAULT_CLIP: f64 = 1.0;
/// Rényi orders the accountant minimises over.
const ORDERS: [f64; 36] = [
    1.05, 1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 14.0,
    16.0, 20.0, 24.0, 28.0, 32.0, 40.0, 48.0, 64.0, 80.0, 96.0, 128.0, 192.0, 256.0, 512.0, 1024.0,
];

/// A task's privacy budget, as its spec states it (absent: no DP).
#[derive(Clone, Debug, PartialEq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpSpec {
    /// ε of the whole task at `delta`, per client.
    pub epsilon: f64,
    #[serde(default = "d_delta")]
    pub delta: f64,
    /// L2 norm every update is clipped to on its worker before the noise.
    #[serde(default = "d_clip")]
    pub clip: f64,
}

fn d_delta() -> f64 {
    DEFAULT_DELTA
}
fn d_clip() -> f64 {
    DEFAULT_CLIP
}

/// What a budget means for a task of `rounds` rounds of at least `min_clients` updates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DpPlan {
    pub clip: f64,
    /// z: the aggregate's noise standard deviation over `clip`.
    pub noise_multiplier: f64,
    /// The standard deviation each worker adds per coordinate.
    pub worker_noise_std: f64,
    /// ε of the published model per client, at `delta` (at most the budget).
    pub epsilon: f64,
    /// ε of one client's updates as the task owner sees them, at `delta`.
    pub epsilon_vs_owner: f64,
    pub delta: f64,
    pub rounds: u32,
}

impl DpSpec {
    /// Checks the fields; the error names the one out of range.
    pub fn validate(&self) -> Result<(), FlError> {
        if !(self.epsilon.is_finite() && self.epsilon > 0.0 && self.epsilon <= 1000.0) {
            return Err(FlError::invalid(format!("dp.epsilon: {} is outside (0, 1000]", self.epsilon)));
        }
        if !(self.delta.is_finite() && self.delta > 0.0 && self.delta <= 0.01) {
            return Err(FlError::invalid(format!("dp.delta: {} is outside (0, 0.01]", self.delta)));
        }
        if !(self.clip.is_finite() && self.clip > 0.0 && self.clip <= 1000.0) {
            return Err(FlError::invalid(format!("dp.clip: {} is outside (0, 1000]", self.clip)));
        }
        Ok(())
    }

    /// The noise that keeps a task of `rounds` rounds within the budget.
    pub fn plan(&self, rounds: u32, min_clients: u32) -> Result<DpPlan, FlError> {
        self.validate()?;
        let z = noise_multiplier(self.epsilon, self.delta, rounds);
        let m = min_clients.max(1) as f64;
        Ok(DpPlan {
            clip: self.clip,
            noise_multiplier: z,
            worker_noise_std: z * self.clip / m.sqrt(),
            epsilon: Accountant::gaussian(z, rounds).epsilon(self.delta),
            epsilon_vs_owner: Accountant::gaussian(z / m.sqrt(), rounds).epsilon(self.delta),
            delta: self.delta,
            rounds,
        })
    }
}

/// Rényi-DP of a composition of Gaussian mechanisms, per order of [`ORDERS`].
#[derive(Clone, Debug, PartialEq)]
pub struct Accountant {
    rdp: [f64; ORDERS.len()],
}

impl Accountant {
    /// `releases` Gaussian mechanisms of noise multiplier `z` (sensitivity 1, std z).
    pub fn gaussian(z: f64, releases: u32) -> Self {
        let mut rdp = [0.0; ORDERS.len()];
        for (r, a) in rdp.iter_mut().zip(ORDERS) {
            *r = releases as f64 * a / (2.0 * z * z);
        }
        Self { rdp }
    }

    /// ε at `delta`: the least over the orders of ε(α) + ln(1/δ) / (α − 1).
    pub fn epsilon(&self, delta: f64) -> f64 {
        let l = (1.0 / delta).ln();
        self.rdp.iter().zip(ORDERS).map(|(r, a)| r + l / (a - 1.0)).fold(f64::INFINITY, f64::min)
    }
}

/// The least noise multiplier (within 0.1%) whose `releases` compose to at most `epsilon` at
/// `delta`.
pub fn noise_multiplier(epsilon: f64, delta: f64, releases: u32) -> f64 {
    let eps = |z: f64| Accountant::gaussian(z, releases).epsilon(delta);
    let (mut lo, mut hi) = (1e-3, 1e7);
    if eps(hi) > epsilon {
        return hi;
    }
    while hi / lo > 1.001 {
        let mid = (lo * hi).sqrt();
        if eps(mid) > epsilon { lo = mid } else { hi = mid }
    }
    hi
}

/// A worker's privatised update: `delta` clipped to L2 norm `plan.clip`, then N(0,
/// `plan.worker_noise_std`²) added to each coordinate from the operating system's randomness
/// through ChaCha (noise anyone could predict, say from the task's seeds, could be subtracted).
pub fn privatize(delta: &mut [f32], plan: &DpPlan) {
    let norm = delta.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
    if norm > plan.clip {
        let s = plan.clip / norm;
        delta.iter_mut().for_each(|x| *x = (*x as f64 * s) as f32);
    }
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut normal = || {
        // Box-Muller: u1 in (0, 1] keeps the logarithm finite.
        let u1: f64 = 1.0 - rng.r#gen::<f64>();
        let u2: f64 = rng.r#gen::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    delta.iter_mut().for_each(|x| *x = (*x as f64 + plan.worker_noise_std * normal()) as f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grid's minimum is within 1% of the closed-form minimum over all real orders,
    /// T/(2z²) + 2·sqrt(T·ln(1/δ)/(2z²)), and never below it.
    #[test]
    fn the_accountant_matches_the_closed_form_of_gaussian_rdp() {
        for (z, t) in [(0.8, 1), (1.0, 1), (1.1, 30), (4.0, 30), (30.0, 60), (2.0, 500)] {
            let l = (1e5f64).ln();
            let c = t as f64 / (2.0 * z * z);
            let exact = c + 2.0 * (c * l).sqrt();
            let got = Accountant::gaussian(z, t).epsilon(1e-5);
            assert!(got >= exact - 1e-9 && got <= exact * 1.01, "z {z}, T {t}: {got} against {exact}");
        }
        // The textbook point: one release at z = 1 is (5.3, 1e-5) by this conversion.
        assert!((Accountant::gaussian(1.0, 1).epsilon(1e-5) - 5.30).abs() < 0.02);
    }

    #[test]
    fn the_noise_for_a_budget_spends_the_budget_and_no_more() {
        let mut last = 0.0;
        for eps in [8.0, 4.0, 1.0, 0.1] {
            let z = noise_multiplier(eps, 1e-5, 30);
            let got = Accountant::gaussian(z, 30).epsilon(1e-5);
            assert!(got <= eps && got > eps * 0.995, "ε {eps}: z {z} gives {got}");
            assert!(z > last, "a smaller budget needs more noise");
            last = z;
        }
        let plan = DpSpec { epsilon: 4.0, delta: 1e-5, clip: 0.5 }.plan(30, 4).unwrap();
        assert!((plan.worker_noise_std - plan.noise_multiplier * 0.5 / 2.0).abs() < 1e-12);
        assert!(plan.epsilon <= 4.0 && plan.epsilon_vs_owner > 4.0 * 2.0, "{plan:?}");
    }

    #[test]
    fn a_bad_budget_is_refused_by_name() {
        for (s, field) in [
            (DpSpec { epsilon: 0.0, delta: 1e-5, clip: 1.0 }, "dp.epsilon"),
            (DpSpec { epsilon: f64::NAN, delta: 1e-5, clip: 1.0 }, "dp.epsilon"),
            (DpSpec { epsilon: 1.0, delta: 0.5, clip: 1.0 }, "dp.delta"),
            (DpSpec { epsilon: 1.0, delta: 1e-5, clip: -1.0 }, "dp.clip"),
            (DpSpec { epsilon: 1.0, delta: 1e-5, clip: f64::INFINITY }, "dp.clip"),
        ] {
            assert!(s.validate().unwrap_err().to_string().contains(field), "{s:?}");
        }
    }

    /// Clipped to the plan's norm, then noise of the plan's standard deviation, fresh each time.
    #[test]
    fn privatize_clips_then_adds_unpredictable_noise_of_the_planned_size() {
        let plan = DpPlan {
            clip: 1.0,
            noise_multiplier: 1.0,
            worker_noise_std: 0.01,
            epsilon: 1.0,
            epsilon_vs_owner: 1.0,
            delta: 1e-5,
            rounds: 1,
        };
        let big = vec![1.0f32; 20_000];
        let mut a = big.clone();
        privatize(&mut a, &plan);
        let mut b = big.clone();
        privatize(&mut b, &plan);
        assert_ne!(a, b, "the noise is fresh");
        let clipped = 1.0 / (20_000f64).sqrt();
        let noise: Vec<f64> = a.iter().map(|x| *x as f64 - clipped).collect();
        let mean = noise.iter().sum::<f64>() / noise.len() as f64;
        let std = (noise.iter().map(|n| (n - mean) * (n - mean)).sum::<f64>() / noise.len() as f64).sqrt();
        assert!(mean.abs() < 0.0003 && (std / 0.01 - 1.0).abs() < 0.03, "mean {mean}, std {std}");
        let mut small = vec![0.001f32; 4];
        privatize(&mut small, &DpPlan { worker_noise_std: 0.0, ..plan });
        assert_eq!(small, vec![0.001f32; 4], "a short update is not scaled up");
    }
}
