//! The digits data set (or any file of the same format): gzip-compressed (or plain) CSV rows of
//! 64 pixel counts 0..16 and a label 0..9. The test set is every 5th row (index % 5 == 4); the
//! rest is split across clients with label skew drawn from a seeded Dirichlet distribution.

use std::io::Read;
use std::path::Path;

use crate::LearnError;

pub use ifx_protocols::fl::shape::{CLASSES, FEATURES};

/// Largest data file read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Examples: features scaled to [0, 1], labels 0..9.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    pub x: Vec<[f32; FEATURES]>,
    pub y: Vec<u8>,
}

impl Dataset {
    /// Examples held.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Loads a `.csv` or `.csv.gz` file; the error names the line.
    pub fn load(path: &Path) -> Result<Self, LearnError> {
        let meta = std::fs::metadata(path).map_err(|e| LearnError::data(format!("{}: {e}", path.display())))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(LearnError::data(format!("{}: {} bytes exceed {MAX_FILE_BYTES}", path.display(), meta.len())));
        }
        let raw = std::fs::read(path).map_err(|e| LearnError::data(format!("{}: {e}", path.display())))?;
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&raw[..])
                .take(4 * MAX_FILE_BYTES)
                .read_to_string(&mut s)
                .map_err(|e| LearnError::data(format!("{}: not valid gzip text: {e}", path.display())))?;
            s
        } else {
            String::from_utf8(raw).map_err(|_| LearnError::data(format!("{}: not UTF-8 text", path.display())))?
        };
        Self::parse(&text).map_err(|e| LearnError::data(format!("{}: {e}", path.display())))
    }

    /// Parses CSV text.
    pub fn parse(text: &str) -> Result<Self, LearnError> {
        let mut d = Dataset::default();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != FEATURES + 1 {
                return Err(LearnError::data(format!(
                    "line {}: {} fields, expected {}",
                    i + 1,
                    fields.len(),
                    FEATURES + 1
                )));
            }
            let mut x = [0f32; FEATURES];
            for (k, f) in fields[..FEATURES].iter().enumerate() {
                let v: f32 =
                    f.parse().map_err(|_| LearnError::data(format!("line {}: {f:?} is not a number", i + 1)))?;
                if !(0.0..=16.0).contains(&v) {
                    return Err(LearnError::data(format!("line {}: pixel {v} outside 0..16", i + 1)));
                }
                x[k] = v / 16.0;
            }
            let y: u8 = fields[FEATURES].parse().map_err(|_| LearnError::data(format!("line {}: bad label", i + 1)))?;
            if y as usize >= CLASSES {
                return Err(LearnError::data(format!("line {}: label {y} outside 0..9", i + 1)));
            }
            d.x.push(x);
            d.y.push(y);
        }
        if d.is_empty() {
            return Err(LearnError::data("no rows"));
        }
        Ok(d)
    }

    /// (train, test): the test set is every 5th row (index % 5 == 4).
    pub fn split(&self) -> (Dataset, Dataset) {
        let (mut train, mut test) = (Dataset::default(), Dataset::default());
        for i in 0..self.len() {
            let d = if i % 5 == 4 { &mut test } else { &mut train };
            d.x.push(self.x[i]);
            d.y.push(self.y[i]);
        }
        (train, test)
    }

    /// Splits among `clients` with label skew: for each class, client shares drawn from a
    /// Dirichlet(alpha) with a seeded RNG (smaller alpha, more skew). Every client gets at
    /// least one example.
    pub fn non_iid(&self, clients: usize, alpha: f64, seed: u64) -> Vec<Dataset> {
        let mut rng = Rng(seed | 1);
        let mut out = vec![Dataset::default(); clients.max(1)];
        for class in 0..CLASSES as u8 {
            let idx: Vec<usize> = (0..self.len()).filter(|&i| self.y[i] == class).collect();
            let shares: Vec<f64> = (0..out.len()).map(|_| rng.gamma(alpha)).collect();
            let total: f64 = shares.iter().sum::<f64>().max(f64::MIN_POSITIVE);
            let mut start = 0usize;
            let mut acc = 0.0;
            for (c, s) in shares.iter().enumerate() {
                acc += s / total;
                let end = if c + 1 == out.len() {
                    idx.len()
                } else {
                    ((acc * idx.len() as f64).round() as usize).min(idx.len())
                };
                for &i in &idx[start..end.max(start)] {
                    out[c].x.push(self.x[i]);
                    out[c].y.push(self.y[i]);
                }
                start = end.max(start);
            }
        }
        // Nobody is left empty: take one example from the largest client.
        for c in 0..out.len() {
            if out[c].is_empty() {
                let big = (0..out.len()).max_by_key(|&k| out[k].len()).expect("clients");
                let (x, y) = (out[big].x.pop().expect("non-empty"), out[big].y.pop().expect("non-empty"));
                out[c].x.push(x);
                out[c].y.push(y);
            }
        }
        out
    }
}

/// A small seeded RNG (xorshift64*) with uniform, normal and gamma draws.
pub struct Rng(pub u64);

impl Rng {
    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (v as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Gamma(shape, 1) (Marsaglia-Tsang; boosted for shape < 1).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            return self.gamma(shape + 1.0) * self.uniform().powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }
}
