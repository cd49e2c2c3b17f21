//! Inference jobs (issue #20), the protocol part: which models a job may name (`Arch`, fixed
//! shapes, so a peer cannot ask for unbounded work), a published model (`ModelSpec`: its
//! architecture and its safetensors weights by BLAKE3 hash), the `infer` request-response
//! messages (one batch of rows in, logits and the worker's signature out), the commitment a
//! worker signs over what it answered, the check of outputs against a re-execution, and the
//! work units a batch is paid for.
//!
//! A worker's signed [`Commitment`] binds the job, the batch index, the model, the inputs and
//! its outputs; an owner that re-executes a batch and gets other logits files the inputs, the
//! outputs and the signature as evidence (`ledger::body::InferFault`), which verifiers judge by
//! re-executing it themselves.

use bincode::{Decode, Encode};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::codec::DecodeError;
use crate::fl::FlError;
use crate::fl::shape::{CLASSES, FEATURES, HIDDEN};

/// Most rows in one batch: a batch's inputs and outputs (64 x 74 floats, 19 KiB) fit in one
/// evidence entry (32 KiB), so any batch a worker answers wrongly can be shown to verifiers.
pub const MAX_BATCH_ROWS: usize = 64;
/// Largest request: a full batch of inputs and a model spec, plus framing.
pub const MAX_REQUEST_BYTES: usize = MAX_BATCH_ROWS * FEATURES * 4 + 1024;
/// Largest response: a full batch of logits and a signature, or an error, plus framing.
pub const MAX_RESPONSE_BYTES: usize = MAX_BATCH_ROWS * CLASSES * 4 + 1024;
/// Largest input value: the digits' pixel counts are 0..=16; anything past this is not an
/// image of the task, and huge values would only make logits overflow.
pub const MAX_INPUT: f32 = 1.0e4;
/// Most rows one job may hold (the owner keeps its inputs and outputs in memory: 1M rows is
/// 296 MB; a job this size is 15,625 batches).
pub const MAX_JOB_ROWS: usize = 1 << 20;
/// Logits match a re-execution when every one is within `TOLERANCE_PPM` parts per million of
/// the larger magnitude (at least 1) and every row's top class agrees. Two CPUs running the
/// same candle build agree bit for bit (reported as exact); a GPU's reductions reorder sums,
/// which moves logits by about 1e-6 relative, three orders below this bar, while the cheapest
/// cheat (a quarter of the model) moves them by 10% and more.
pub const TOLERANCE_PPM: u32 = 1_000;
/// How long an owner waits for a batch (the worker's queue included).
pub const BATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest error text in a response.
pub const MAX_REASON: usize = 200;

/// A model architecture a job may name. Shapes are fixed: the cost of a batch follows from the
/// architecture and the row count alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum Arch {
    /// The federated model: an MLP 64-64-10 with ReLU (the weights an FL task publishes serve
    /// as they are).
    Mlp,
    /// A small convolutional classifier of the 8x8 digits: conv 3x3 1->16, ReLU, conv 3x3
    /// 16->32, ReLU (both padded), 2x2 max-pool, linear 512->10. 65x the MLP's arithmetic.
    Cnn,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 2] = [Arch::Mlp, Arch::Cnn];

    /// Its name in flags, config and the API.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Mlp => "mlp",
            Arch::Cnn => "cnn",
        }
    }

    /// Its tensors, name and shape, in flat parameter order (candle layouts: linear `[out, in]`,
    /// conv `[out, in, kh, kw]`).
    pub fn tensors(self) -> &'static [(&'static str, &'static [usize])] {
        match self {
            Arch::Mlp => &crate::fl::wire::TENSORS,
            Arch::Cnn => &CNN_TENSORS,
        }
    }

    /// Parameters in all.
    pub fn params(self) -> usize {
        self.tensors().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }

    /// Multiply-adds per row of one forward pass.
    pub fn macs_per_row(self) -> u64 {
        let px = FEATURES as u64;
        match self {
            Arch::Mlp => (FEATURES * HIDDEN + HIDDEN * CLASSES) as u64,
            Arch::Cnn => {
                let [c1, c2] = CNN_CHANNELS.map(|c| c as u64);
                c1 * 9 * px + c2 * c1 * 9 * px + CLASSES as u64 * c2 * px / 4
            }
        }
    }

    /// Work units of `rows` rows: floating-point operations (2 per multiply-add) in millions,
    /// rounded up, so a batch of the small MLP is worth one unit and not nothing.
    pub fn work_units(self, rows: u64) -> u64 {
        (rows * 2 * self.macs_per_row()).div_ceil(1_000_000)
    }
}

crate::named_mode!(Arch, "model architecture");

/// How a cheating worker answers batches (tests and the testnet; `infer.cheat` /
/// `ifx node --infer-cheat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InferCheat {
    #[default]
    Honest,
    /// Random logits (no work at all).
    Random,
    /// A quarter of the model (a smaller model's answers for a quarter of the work).
    Cheap,
}

impl InferCheat {
    /// Every mode, honest first.
    pub const ALL: [InferCheat; 3] = [InferCheat::Honest, InferCheat::Random, InferCheat::Cheap];

    /// Its name in config files and flags (`""` is honest).
    pub fn name(self) -> &'static str {
        match self {
            InferCheat::Honest => "",
            InferCheat::Random => "infer-random",
            InferCheat::Cheap => "infer-cheap",
        }
    }
}

crate::named_mode!(InferCheat, "inference cheat mode");

/// Channels of the CNN's two convolutions.
pub const CNN_CHANNELS: [usize; 2] = [16, 32];
const CNN_TENSORS: [(&str, &[usize]); 6] = [
    ("c1w", &[CNN_CHANNELS[0], 1, 3, 3]),
    ("c1b", &[CNN_CHANNELS[0]]),
    ("c2w", &[CNN_CHANNELS[1], CNN_CHANNELS[0], 3, 3]),
    ("c2b", &[CNN_CHANNELS[1]]),
    ("fw", &[CLASSES, CNN_CHANNELS[1] * FEATURES / 4]),
    ("fb", &[CLASSES]),
];

/// A published model: its architecture and its weights, a safetensors blob named by BLAKE3
/// hash and length (fetched from whoever holds it, checked by hash).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize)]
pub struct ModelSpec {
    pub arch: Arch,
    #[serde(with = "hex::serde")]
    pub weights: [u8; 32],
    pub len: u32,
}

impl ModelSpec {
    /// The model of `arch` with the safetensors `bytes`, after checking they parse as its weights.
    pub fn publish(arch: Arch, bytes: &[u8]) -> Result<Self, FlError> {
        weights_of(arch, bytes)?;
        Ok(Self { arch, weights: *blake3::hash(bytes).as_bytes(), len: bytes.len() as u32 })
    }

    /// Its id: BLAKE3 of its encoding (what commitments name).
    pub fn id(&self) -> [u8; 32] {
        *blake3::hash(&crate::codec::encode(self)).as_bytes()
    }

    /// Checks the announced length against the weights limit of its architecture.
    pub fn validate(&self) -> Result<(), FlError> {
        let max = self.arch.params() * 4 + 1024;
        if self.len as usize > max || self.len == 0 {
            return Err(FlError::invalid(format!(
                "model weights of {} bytes; a {} model is at most {max}",
                self.len,
                self.arch.name()
            )));
        }
        Ok(())
    }
}

/// Parses `bytes` as the weights of `arch` (shapes, dtype, finite values; the FL weights' rules).
pub fn weights_of(arch: Arch, bytes: &[u8]) -> Result<Vec<f32>, FlError> {
    crate::fl::wire::tensors_from_safetensors(arch.tensors(), bytes)
}

/// Flat parameters of `arch` as safetensors bytes.
pub fn weights_to_bytes(arch: Arch, params: &[f32]) -> Result<Vec<u8>, FlError> {
    crate::fl::wire::tensors_to_safetensors(arch.tensors(), params)
}

/// Requests of the `infer` protocol.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub enum InferRequest {
    /// Run `model` on `inputs` (rows of [`FEATURES`] values, at most [`MAX_BATCH_ROWS`]); the
    /// worker fetches the model's weights from the requester over `fl` if it lacks them.
    Batch { job: [u8; 16], batch: u32, model: ModelSpec, inputs: Vec<f32> },
}

/// Responses of the `infer` protocol.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub enum InferResponse {
    /// The logits, rows of [`CLASSES`], and the worker's signature over the [`Commitment`].
    Outputs {
        outputs: Vec<f32>,
        sig: [u8; 64],
    },
    Error(String),
}

/// Rows of `values` of `width`, when it is a whole, non-empty batch of finite values within
/// `max` in magnitude.
pub fn check_rows(values: &[f32], width: usize, max: f32, what: &str) -> Result<usize, FlError> {
    if values.is_empty() || !values.len().is_multiple_of(width) || values.len() / width > MAX_BATCH_ROWS {
        return Err(FlError::invalid(format!(
            "{what}: {} values are not 1..={MAX_BATCH_ROWS} rows of {width}",
            values.len()
        )));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite() || v.abs() > max) {
        return Err(FlError::invalid(format!("{what}[{i}] = {} (NaN, infinite or beyond +-{max})", values[i])));
    }
    Ok(values.len() / width)
}

impl InferRequest {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes and checks the batch (rows, values, the model's announced size); never panics.
    pub fn decode(b: &[u8]) -> Result<Self, FlError> {
        let r: Self = crate::codec::decode::<_, MAX_REQUEST_BYTES>(b)?;
        let InferRequest::Batch { model, inputs, .. } = &r;
        model.validate()?;
        check_rows(inputs, FEATURES, MAX_INPUT, "inputs")?;
        Ok(r)
    }
}

impl InferResponse {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a response (its outputs are checked against the batch by the caller).
    pub fn decode(b: &[u8]) -> Result<Self, FlError> {
        let r: Self = crate::codec::decode::<_, MAX_RESPONSE_BYTES>(b)?;
        if let InferResponse::Error(e) = &r
            && e.len() > MAX_REASON
        {
            return Err(FlError::invalid("error text too long"));
        }
        Ok(r)
    }
}

/// BLAKE3 of floats as little-endian bytes.
pub fn hash_values(v: &[f32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for x in v {
        h.update(&x.to_le_bytes());
    }
    *h.finalize().as_bytes()
}

const SIG_DOMAIN: &[u8] = b"ifx/infer-commitment/1";

/// What a worker signs with its answer: these outputs are its run of this model on these
/// inputs, for this batch of this job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commitment {
    pub job: [u8; 16],
    pub batch: u32,
    /// [`ModelSpec::id`].
    pub model: [u8; 32],
    pub inputs: [u8; 32],
    pub outputs: [u8; 32],
}

impl Commitment {
    /// The commitment to `outputs` for a batch.
    pub fn of(job: [u8; 16], batch: u32, model: &ModelSpec, inputs: &[f32], outputs: &[f32]) -> Self {
        Self { job, batch, model: model.id(), inputs: hash_values(inputs), outputs: hash_values(outputs) }
    }

    /// The signed digest (domain-separated from every other ifx signature).
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(SIG_DOMAIN)
            .update(&self.job)
            .update(&self.batch.to_le_bytes())
            .update(&self.model)
            .update(&self.inputs)
            .update(&self.outputs);
        *h.finalize().as_bytes()
    }

    /// The worker's signature.
    pub fn sign(&self, key: &SigningKey) -> [u8; 64] {
        key.sign(&self.digest()).to_bytes()
    }
}

/// How a worker's logits compare with a re-execution's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Agreement {
    /// Bit for bit.
    Exact,
    /// Within [`TOLERANCE_PPM`], same top class in every row; the largest difference in ppm.
    Within { worst_ppm: u32 },
}

/// Compares a worker's logits `got` with a re-execution's `want` (rows of [`CLASSES`]); an
/// error names the first row that differs and how.
pub fn compare(want: &[f32], got: &[f32]) -> Result<Agreement, String> {
    if want.len() != got.len() {
        return Err(format!("{} logits, the re-execution has {}", got.len(), want.len()));
    }
    if want.iter().zip(got).all(|(a, b)| a.to_bits() == b.to_bits()) {
        return Ok(Agreement::Exact);
    }
    let mut worst = 0u32;
    for (row, (w, g)) in want.chunks(CLASSES).zip(got.chunks(CLASSES)).enumerate() {
        if top(w) != top(g) {
            return Err(format!("row {row}: class {} where the re-execution gives {}", top(g), top(w)));
        }
        for (c, (a, b)) in w.iter().zip(g).enumerate() {
            if !b.is_finite() {
                return Err(format!("row {row} class {c}: logit {b}"));
            }
            let ppm = ((a - b).abs() as f64 / (a.abs().max(b.abs()).max(1.0) as f64) * 1e6).min(u32::MAX as f64) as u32;
            if ppm > TOLERANCE_PPM {
                return Err(format!("row {row} class {c}: logit {b}, the re-execution gives {a} ({ppm} ppm apart)"));
            }
            worst = worst.max(ppm);
        }
    }
    Ok(Agreement::Within { worst_ppm: worst })
}

/// The top class of one row of logits (the first of equals).
pub fn top(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// Rows of batch `batch` of a job of `rows` rows in batches of `batch_rows` (0 past its end).
pub fn batch_len(rows: u64, batch_rows: u32, batch: u32) -> u64 {
    rows.saturating_sub(batch as u64 * batch_rows as u64).min(batch_rows as u64)
}

/// Checks a job's shape: `rows` rows in batches of `batch_rows`.
pub fn check_job(rows: u64, batch_rows: u32) -> Result<(), DecodeError> {
    if rows == 0 || rows > MAX_JOB_ROWS as u64 || batch_rows == 0 || batch_rows as usize > MAX_BATCH_ROWS {
        return Err(DecodeError::invalid(format!(
            "an inference job is 1..={MAX_JOB_ROWS} rows in batches of 1..={MAX_BATCH_ROWS}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mlp() -> ModelSpec {
        let bytes = weights_to_bytes(Arch::Mlp, &vec![0.01; Arch::Mlp.params()]).unwrap();
        ModelSpec::publish(Arch::Mlp, &bytes).unwrap()
    }

    #[test]
    fn shapes_and_costs() {
        assert_eq!(Arch::Mlp.params(), crate::fl::shape::PARAMS);
        assert_eq!(Arch::Cnn.params(), 144 + 16 + 4608 + 32 + 5120 + 10);
        assert_eq!(Arch::Cnn.macs_per_row(), 9_216 + 294_912 + 5_120);
        assert!(Arch::Cnn.macs_per_row() > 60 * Arch::Mlp.macs_per_row());
        // A full MLP batch is 0.6 MFLOP: one unit, not zero; a CNN batch 39.6: 40.
        assert_eq!(Arch::Mlp.work_units(64), 1);
        assert_eq!(Arch::Cnn.work_units(64), 40);
        assert_eq!(batch_len(130, 64, 0), 64);
        assert_eq!(batch_len(130, 64, 2), 2);
        assert_eq!(batch_len(130, 64, 3), 0);
        assert_eq!("cnn".parse::<Arch>().unwrap(), Arch::Cnn);
        assert!("resnet".parse::<Arch>().unwrap_err().to_string().contains("mlp, cnn"));
    }

    #[test]
    fn weights_round_trip_and_wrong_arch_is_refused() {
        let p: Vec<f32> = (0..Arch::Cnn.params()).map(|i| i as f32 * 1e-4).collect();
        let b = weights_to_bytes(Arch::Cnn, &p).unwrap();
        assert_eq!(weights_of(Arch::Cnn, &b).unwrap(), p);
        let err = ModelSpec::publish(Arch::Mlp, &b).unwrap_err().to_string();
        assert!(err.contains("6 tensors, expected 4"), "{err}");
        let m = ModelSpec::publish(Arch::Cnn, &b).unwrap();
        assert_eq!(m.len as usize, b.len());
        assert_ne!(m.id(), mlp().id());
    }

    #[test]
    fn hostile_requests_are_refused_by_name() {
        let ok = InferRequest::Batch { job: [1; 16], batch: 0, model: mlp(), inputs: vec![1.0; 64 * 3] };
        assert_eq!(InferRequest::decode(&ok.encode()).unwrap(), ok);
        let with = |inputs: Vec<f32>, model: ModelSpec| {
            InferRequest::decode(&InferRequest::Batch { job: [1; 16], batch: 0, model, inputs }.encode())
                .unwrap_err()
                .to_string()
        };
        assert!(with(vec![1.0; 65], mlp()).contains("not 1..=64 rows of 64"));
        assert!(with(vec![], mlp()).contains("not 1..=64 rows"));
        let mut nan = vec![1.0; 64];
        nan[5] = f32::NAN;
        assert!(with(nan, mlp()).contains("inputs[5] = NaN"));
        assert!(with(vec![1e9; 64], mlp()).contains("beyond"));
        let huge = ModelSpec { len: 1 << 30, ..mlp() };
        assert!(with(vec![1.0; 64], huge).contains("at most"));
        // More rows than the limit do not decode at all (the frame is bounded before parsing).
        let big = InferRequest::Batch { job: [1; 16], batch: 0, model: mlp(), inputs: vec![1.0; 64 * 80] };
        assert!(InferRequest::decode(&big.encode()).is_err());
        assert!(InferRequest::decode(&[0xff; 40]).is_err());
    }

    #[test]
    fn commitments_name_everything() {
        let (i, o) = (vec![1.0; 64], vec![0.5; 10]);
        let c = Commitment::of([1; 16], 3, &mlp(), &i, &o).digest();
        let others = [
            Commitment::of([2; 16], 3, &mlp(), &i, &o),
            Commitment::of([1; 16], 4, &mlp(), &i, &o),
            Commitment::of([1; 16], 3, &mlp(), &[2.0; 64], &o),
            Commitment::of([1; 16], 3, &mlp(), &i, &[0.4; 10]),
        ];
        assert!(others.iter().all(|d| d.digest() != c));
    }

    #[test]
    fn compare_exact_within_and_wrong() {
        let want: Vec<f32> = (0..20).map(|i| i as f32 * 0.3 - 2.0).collect();
        assert_eq!(compare(&want, &want), Ok(Agreement::Exact));
        let near: Vec<f32> = want.iter().map(|v| v * (1.0 + 1e-6)).collect();
        assert!(matches!(compare(&want, &near), Ok(Agreement::Within { worst_ppm }) if worst_ppm <= 2));
        let off: Vec<f32> = want.iter().map(|v| v * 1.01).collect();
        assert!(compare(&want, &off).unwrap_err().contains("ppm apart"));
        let mut swapped = want.clone();
        swapped.swap(9, 0);
        assert!(compare(&want, &swapped).unwrap_err().starts_with("row 0: class 0"));
        assert!(compare(&want, &want[..10]).unwrap_err().contains("10 logits"));
    }
}
