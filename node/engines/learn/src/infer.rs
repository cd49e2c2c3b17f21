//! Serving the inference models (`ifx_protocols::infer::Arch`) with candle: a loaded model runs
//! batches of rows to logits on the CPU, deterministically (the same build gives the same bits,
//! which is what lets an owner or a verifier re-execute a batch and compare). Also the seeded
//! initialisation and training the CNN's weights come from (the network trains the MLP by FL;
//! the CNN is trained locally by whoever publishes it), and the "cheap" forward a cheating
//! worker answers with (the same model cut to a quarter of its width: a quarter of the work).

use candle_core::{Device, Tensor, Var};
use ifx_protocols::infer::Arch;

use crate::LearnError;
use crate::data::{Dataset, FEATURES, Rng};
use crate::model::TrainConfig;

fn err(e: candle_core::Error) -> LearnError {
    LearnError::Candle(e.to_string())
}

/// A model's tensors, loaded for serving (or as trainable variables).
pub struct Model {
    arch: Arch,
    vars: Vec<Var>,
}

impl Model {
    /// `params` (flat, in `arch.tensors()` order) as a model of `arch`.
    pub fn load(arch: Arch, params: &[f32]) -> Result<Self, LearnError> {
        if params.len() != arch.params() {
            return Err(LearnError::Shape { got: params.len(), expected: arch.params() });
        }
        let mut at = 0;
        let mut vars = Vec::new();
        for (_, shape) in arch.tensors() {
            let n: usize = shape.iter().product();
            let t = Tensor::from_slice(&params[at..at + n], *shape, &Device::Cpu).map_err(err)?;
            vars.push(Var::from_tensor(&t).map_err(err)?);
            at += n;
        }
        Ok(Self { arch, vars })
    }

    /// Its architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    fn t(&self, i: usize) -> &Tensor {
        self.vars[i].as_tensor()
    }

    /// Logits of `x` (`[rows, 64]`), at `width` parts of four of the model (4: all of it).
    fn logits(&self, x: &Tensor, width: usize) -> candle_core::Result<Tensor> {
        let part = |t: &Tensor, dim: usize| {
            let n = t.dim(dim)?;
            t.narrow(dim, 0, n * width / 4)
        };
        match self.arch {
            Arch::Mlp => {
                let (w1, b1) = (part(self.t(0), 0)?, part(self.t(1), 0)?);
                let w2 = part(self.t(2), 1)?;
                let h = x.matmul(&w1.t()?)?.broadcast_add(&b1)?.relu()?;
                h.matmul(&w2.t()?)?.broadcast_add(self.t(3))
            }
            Arch::Cnn => {
                let rows = x.dim(0)?;
                let img = x.reshape((rows, 1, 8, 8))?;
                let (c1w, c1b) = (part(self.t(0), 0)?, part(self.t(1), 0)?);
                let (c2w, c2b) = (part(&part(self.t(2), 0)?, 1)?, part(self.t(3), 0)?);
                let conv = |x: &Tensor, w: &Tensor, b: &Tensor| -> candle_core::Result<Tensor> {
                    let c = b.dim(0)?;
                    x.conv2d(w, 1, 1, 1, 1)?.broadcast_add(&b.reshape((1, c, 1, 1))?)?.relu()
                };
                let h = conv(&conv(&img, &c1w, &c1b)?, &c2w, &c2b)?.max_pool2d(2)?;
                // Flattened as [channel, y, x]: a quarter of the channels is the first quarter
                // of the linear layer's inputs.
                let h = h.flatten_from(1)?;
                let fw = part(self.t(4), 1)?;
                h.matmul(&fw.t()?)?.broadcast_add(self.t(5))
            }
        }
    }

    fn run(&self, inputs: &[f32], width: usize) -> Result<Vec<f32>, LearnError> {
        if inputs.is_empty() || !inputs.len().is_multiple_of(FEATURES) {
            return Err(LearnError::Shape { got: inputs.len(), expected: FEATURES });
        }
        let x = Tensor::from_slice(inputs, (inputs.len() / FEATURES, FEATURES), &Device::Cpu).map_err(err)?;
        self.logits(&x, width).and_then(|l| l.flatten_all()?.to_vec1::<f32>()).map_err(err)
    }

    /// Logits (rows of 10) of `inputs` (rows of 64).
    pub fn forward(&self, inputs: &[f32]) -> Result<Vec<f32>, LearnError> {
        self.run(inputs, 4)
    }

    /// What a cheating worker answers: the model cut to its first quarter of hidden units or
    /// channels (a quarter of the arithmetic, logits of a smaller model).
    pub fn cheap_forward(&self, inputs: &[f32]) -> Result<Vec<f32>, LearnError> {
        self.run(inputs, 1)
    }

    /// Its parameters, flat.
    pub fn params(&self) -> Result<Vec<f32>, LearnError> {
        let mut out = Vec::with_capacity(self.arch.params());
        for v in &self.vars {
            out.extend(v.as_tensor().flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(err)?);
        }
        Ok(out)
    }
}

/// Seeded initial weights of `arch`: uniform in +-1/sqrt(fan-in), biases zero.
pub fn init(arch: Arch, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed | 1);
    let mut p = Vec::with_capacity(arch.params());
    for (_, shape) in arch.tensors() {
        let n: usize = shape.iter().product();
        if shape.len() == 1 {
            p.extend(std::iter::repeat_n(0.0, n));
            continue;
        }
        let fan_in: usize = shape[1..].iter().product();
        let b = 1.0 / (fan_in as f64).sqrt();
        p.extend((0..n).map(|_| ((rng.uniform() * 2.0 - 1.0) * b) as f32));
    }
    p
}

/// Trains `arch` from `params` on `data` (AdamW, seeded batch order); returns the parameters and
/// the last epoch's mean loss.
pub fn train(arch: Arch, params: &[f32], data: &Dataset, cfg: &TrainConfig) -> Result<(Vec<f32>, f32), LearnError> {
    let m = Model::load(arch, params)?;
    if data.is_empty() {
        return Ok((params.to_vec(), 0.0));
    }
    let last = crate::model::fit(m.vars.clone(), data, cfg, |x| m.logits(x, 4), |loss| Ok(loss.clone()))?;
    Ok((m.params()?, last))
}

/// Share of `data` a model of `arch` classifies correctly.
pub fn accuracy(arch: Arch, params: &[f32], data: &Dataset) -> Result<f64, LearnError> {
    let m = Model::load(arch, params)?;
    if data.is_empty() {
        return Ok(0.0);
    }
    let idx: Vec<usize> = (0..data.len()).collect();
    let (x, y) = crate::model::tensors(data, &idx)?;
    crate::model::correct_share(&m.logits(&x, 4).map_err(err)?, &y)
}

/// Inputs of `data`'s rows `idx`, flat (what an inference job sends).
pub fn rows(data: &Dataset, idx: impl IntoIterator<Item = usize>) -> Vec<f32> {
    idx.into_iter().flat_map(|i| data.x[i]).collect()
}
