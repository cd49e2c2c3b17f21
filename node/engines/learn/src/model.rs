//! The federated model: a candle MLP 64-64-10 (ReLU) for the digits set, its parameters as one
//! flat vector (w1, b1, w2, b2; candle's `Linear` layout, weights `[out, in]`), initialised from
//! a seeded RNG of our own (candle's CPU RNG cannot be seeded), trained with AdamW in
//! mini-batches whose order is also seeded: a run is reproducible bit for bit.

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

pub use ifx_protocols::fl::shape::{HIDDEN, PARAMS};

use crate::LearnError;
use crate::data::{CLASSES, Dataset, FEATURES, Rng};

/// Local training settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { epochs: 1, batch: 32, lr: 0.01, seed: 1 }
    }
}

/// Initial parameters: uniform in +-1/sqrt(fan-in), biases zero.
pub fn init(seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed | 1);
    let mut p = Vec::with_capacity(PARAMS);
    let mut layer = |out: usize, inp: usize, p: &mut Vec<f32>| {
        let b = 1.0 / (inp as f64).sqrt();
        p.extend((0..out * inp).map(|_| ((rng.uniform() * 2.0 - 1.0) * b) as f32));
        p.extend(std::iter::repeat_n(0.0, out));
    };
    layer(HIDDEN, FEATURES, &mut p);
    layer(CLASSES, HIDDEN, &mut p);
    p
}

fn err(e: candle_core::Error) -> LearnError {
    LearnError::Candle(e.to_string())
}

struct Net {
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

impl Net {
    fn new(p: &[f32]) -> Result<Self, LearnError> {
        if p.len() != PARAMS {
            return Err(LearnError::Shape { got: p.len(), expected: PARAMS });
        }
        let dev = Device::Cpu;
        let mut at = 0;
        let mut take = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            let t = Tensor::from_slice(&p[at..at + n], shape, &dev).and_then(|t| Var::from_tensor(&t));
            at += n;
            t.map_err(err)
        };
        Ok(Self {
            w1: take(&[HIDDEN, FEATURES])?,
            b1: take(&[HIDDEN])?,
            w2: take(&[CLASSES, HIDDEN])?,
            b2: take(&[CLASSES])?,
        })
    }

    fn vars(&self) -> impl Iterator<Item = &Var> {
        [&self.w1, &self.b1, &self.w2, &self.b2].into_iter()
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = x.matmul(&self.w1.as_tensor().t()?)?.broadcast_add(self.b1.as_tensor())?.relu()?;
        h.matmul(&self.w2.as_tensor().t()?)?.broadcast_add(self.b2.as_tensor())
    }

    fn flat(&self) -> Result<Vec<f32>, LearnError> {
        flatten(self.vars().map(|v| v.as_tensor()))
    }
}

/// Tensors in the layout of the parameters (w1, b1, w2, b2), as one flat vector.
fn flatten<'a>(ts: impl Iterator<Item = &'a Tensor>) -> Result<Vec<f32>, LearnError> {
    let mut out = Vec::with_capacity(PARAMS);
    for t in ts {
        out.extend(t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(err)?);
    }
    Ok(out)
}

pub(crate) fn tensors(d: &Dataset, idx: &[usize]) -> Result<(Tensor, Tensor), LearnError> {
    let xs: Vec<f32> = idx.iter().flat_map(|&i| d.x[i]).collect();
    let ys: Vec<u32> = idx.iter().map(|&i| d.y[i] as u32).collect();
    let x = Tensor::from_vec(xs, (idx.len(), FEATURES), &Device::Cpu).map_err(err)?;
    let y = Tensor::from_vec(ys, idx.len(), &Device::Cpu).map_err(err)?;
    Ok((x, y))
}

/// Trains from `params` on `data`; returns the new parameters and the last epoch's mean loss.
pub fn train(params: &[f32], data: &Dataset, cfg: &TrainConfig) -> Result<(Vec<f32>, f32), LearnError> {
    train_prox(params, data, cfg, 0.0)
}

/// [`train`] with FedProx's proximal term: the loss adds `mu / 2 x |w - params|^2`, which keeps
/// a client's weights near the round's start on skewed data (`mu` 0: plain training).
pub fn train_prox(params: &[f32], data: &Dataset, cfg: &TrainConfig, mu: f64) -> Result<(Vec<f32>, f32), LearnError> {
    train_local(params, data, cfg, mu, None)
}

/// [`train`] with SCAFFOLD's drift correction: the loss adds `<correction, w>` (the task's
/// `scaffold x (c - c_i)`, control minus this worker's [`gradient`]), so every step's gradient
/// is shifted by `correction`, towards the federation's direction on the classes this shard
/// lacks.
pub fn train_corrected(
    params: &[f32],
    data: &Dataset,
    cfg: &TrainConfig,
    correction: &[f32],
) -> Result<(Vec<f32>, f32), LearnError> {
    if correction.len() != PARAMS {
        return Err(LearnError::Shape { got: correction.len(), expected: PARAMS });
    }
    train_local(params, data, cfg, 0.0, Some(correction))
}

/// The mean cross-entropy gradient over all of `data` at `params`, flat like the parameters
/// (zeros for no data).
pub fn gradient(params: &[f32], data: &Dataset) -> Result<Vec<f32>, LearnError> {
    let net = Net::new(params)?;
    if data.is_empty() {
        return Ok(vec![0.0; PARAMS]);
    }
    let idx: Vec<usize> = (0..data.len()).collect();
    let (x, y) = tensors(data, &idx)?;
    let grads = net.forward(&x).and_then(|l| candle_nn::loss::cross_entropy(&l, &y)).and_then(|l| l.backward());
    let grads = grads.map_err(err)?;
    let per_var = net.vars().map(|v| grads.get(v.as_tensor()));
    flatten(
        per_var
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| LearnError::Candle("a parameter has no gradient".into()))?
            .into_iter(),
    )
}

fn train_local(
    params: &[f32],
    data: &Dataset,
    cfg: &TrainConfig,
    mu: f64,
    correction: Option<&[f32]>,
) -> Result<(Vec<f32>, f32), LearnError> {
    let net = Net::new(params)?;
    // The correction as one constant tensor per variable (the layout of `Net::new`).
    let correction = correction
        .map(|c| Net::new(c).map(|n| n.vars().map(|v| v.as_tensor().detach()).collect::<Vec<_>>()))
        .transpose()?;
    // The anchors are copies: a tensor sharing the variables' storage would move with them.
    let anchors: Vec<Tensor> = net
        .vars()
        .map(|v| v.as_tensor().copy().map(|t| t.detach()))
        .collect::<candle_core::Result<_>>()
        .map_err(err)?;
    if data.is_empty() {
        return Ok((params.to_vec(), 0.0));
    }
    let vars: Vec<Var> = net.vars().cloned().collect();
    let last = fit(
        vars.clone(),
        data,
        cfg,
        |x| net.forward(x),
        |loss| {
            let mut t = loss.clone();
            if let Some(c) = &correction {
                for (v, c) in vars.iter().zip(c.iter()) {
                    t = (t + (v.as_tensor() * c)?.sum_all()?)?;
                }
            }
            if mu > 0.0 {
                for (v, a) in vars.iter().zip(&anchors) {
                    t = (t + (v.as_tensor() - a)?.sqr()?.sum_all()?.affine(mu / 2.0, 0.0)?)?;
                }
            }
            Ok(t)
        },
    )?;
    Ok((net.flat()?, last))
}

/// Seeded AdamW over `data` in `cfg`'s epochs and batches (one batch order per seed): each step
/// minimises `total(cross_entropy(logits(x), y))`; returns the last epoch's mean cross-entropy.
/// The one training loop of the FL model and the inference models.
pub(crate) fn fit(
    vars: Vec<Var>,
    data: &Dataset,
    cfg: &TrainConfig,
    logits: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    total: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<f32, LearnError> {
    let mut opt = AdamW::new(vars, ParamsAdamW { lr: cfg.lr, weight_decay: 0.0, ..Default::default() }).map_err(err)?;
    let mut rng = Rng(cfg.seed | 1);
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut last = 0.0;
    for _ in 0..cfg.epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.uniform() * (i + 1) as f64) as usize % (i + 1));
        }
        let (mut sum, mut batches) = (0.0, 0);
        for chunk in order.chunks(cfg.batch.max(1)) {
            let (x, y) = tensors(data, chunk)?;
            let loss = logits(&x).and_then(|l| candle_nn::loss::cross_entropy(&l, &y)).map_err(err)?;
            opt.backward_step(&total(&loss).map_err(err)?).map_err(err)?;
            sum += loss.to_scalar::<f32>().map_err(err)?;
            batches += 1;
        }
        last = sum / batches as f32;
    }
    Ok(last)
}

/// The share of rows whose largest logit is their label.
pub(crate) fn correct_share(logits: &Tensor, y: &Tensor) -> Result<f64, LearnError> {
    let pred = logits.argmax(D::Minus1).map_err(err)?;
    let ok =
        pred.eq(y).and_then(|e| e.to_dtype(DType::F32)).and_then(|e| e.sum_all()).and_then(|s| s.to_scalar::<f32>());
    Ok(ok.map_err(err)? as f64 / y.dim(0).map_err(err)?.max(1) as f64)
}

/// Share of `data` classified correctly.
pub fn accuracy(params: &[f32], data: &Dataset) -> Result<f64, LearnError> {
    evaluate(params, data).map(|(a, _)| a)
}

/// Accuracy and mean cross-entropy loss on `data`.
pub fn evaluate(params: &[f32], data: &Dataset) -> Result<(f64, f32), LearnError> {
    let net = Net::new(params)?;
    if data.is_empty() {
        return Ok((0.0, 0.0));
    }
    let idx: Vec<usize> = (0..data.len()).collect();
    let (x, y) = tensors(data, &idx)?;
    let logits = net.forward(&x).map_err(err)?;
    let loss = candle_nn::loss::cross_entropy(&logits, &y).and_then(|l| l.to_scalar::<f32>()).map_err(err)?;
    Ok((correct_share(&logits, &y)?, loss))
}
