//! What federated learning puts on the wire: the task a task owner announces, the gossip that
//! announces tasks and round results on the `fl` topic, the request-response messages of a
//! round (join, train, chunked fetch of content-addressed blobs), and model weights as
//! safetensors bytes, decoded with a size limit and every shape and value checked.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::FlError;
use super::aggregate::{Aggregator, MAX_ABS};
use super::shape::{CLASSES, FEATURES, HIDDEN, PARAMS};

/// The model every task of this version trains.
pub const MODEL: &str = "mlp-64-64-10";
/// Largest weights or update file accepted (the model's 19,240 bytes of f32 plus the header,
/// with room to spare).
pub const MAX_WEIGHTS_BYTES: usize = 64 * 1024;
/// Bytes per fetched chunk.
pub const CHUNK_BYTES: usize = 8 * 1024;
/// Largest request or response of the `fl` protocol (a chunk or a task spec, plus framing).
pub const MAX_MESSAGE_BYTES: usize = CHUNK_BYTES + 4 * 1024;
/// Largest `fl` gossip body.
pub const MAX_GOSSIP_BYTES: usize = 16 * 1024;
/// Most clients one round lists.
pub const MAX_ROUND_CLIENTS: usize = 64;
/// Longest reason text carried.
pub const MAX_REASON: usize = 160;

/// How the training data is split across clients (each worker holds one shard of its own copy of
/// the data file: its configured `fl.shard` of `shards` Dirichlet(alpha) label-skewed shards).
#[derive(Clone, Debug, PartialEq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRule {
    #[serde(default = "d_shards")]
    pub shards: u32,
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    #[serde(default = "d_seed")]
    pub seed: u64,
}

impl Default for DataRule {
    fn default() -> Self {
        Self { shards: d_shards(), alpha: d_alpha(), seed: d_seed() }
    }
}

/// A federated training task, as announced (also the body of `POST /fl`; every field has a
/// default).
#[derive(Clone, Debug, PartialEq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    #[serde(default = "d_model")]
    pub model: String,
    #[serde(default)]
    pub data: DataRule,
    #[serde(default = "d_rounds")]
    pub rounds: u32,
    /// Updates aggregated per round.
    #[serde(default = "d_clients")]
    pub clients_per_round: u32,
    /// Extra clients asked, in percent of `clients_per_round`, so stragglers do not stall a round.
    #[serde(default = "d_over")]
    pub over_select_pct: u32,
    /// Fewest valid updates a round may aggregate (a round with fewer by its deadline is retried).
    #[serde(default = "d_min")]
    pub min_clients: u32,
    #[serde(default = "d_epochs")]
    pub local_epochs: u32,
    #[serde(default = "d_batch")]
    pub batch: u32,
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// The learning rate of round r is `lr x lr_decay^r` (settles the model in late rounds).
    #[serde(default = "d_decay")]
    pub lr_decay: f64,
    /// `fedavg`, `median`, `trimmed-mean`, `krum` or `multi-krum`.
    #[serde(default = "d_agg")]
    pub aggregator: String,
    /// Run without paying: the task trains, but its receipts count for nobody (settlement
    /// counts only paid work). By default the owner pays for every round's updates first.
    #[serde(default)]
    pub unpaid: bool,
    /// L2 clip of each update in fixed point (Q16.16); 0 clips to the median norm.
    #[serde(default)]
    pub clip: i64,
    /// Per-round deadline for the selected clients' updates.
    #[serde(default = "d_deadline")]
    pub deadline_ms: u64,
    /// Seed of the initial weights.
    #[serde(default = "d_seed")]
    pub init_seed: u64,
    /// Client-level differential privacy (`dp::DpSpec`: the budget ε at δ and the clip):
    /// workers clip and noise their updates before sending them. Needs `fedavg`, which then
    /// weighs every update alike.
    #[serde(default)]
    pub dp: Option<super::dp::DpSpec>,
    /// SCAFFOLD-style drift correction, 0 (off) to 1: a worker's local loss adds
    /// `scaffold x <c - c_i, w>`, where `c_i` is the worker's own mean gradient at the round's
    /// weights and `c` the round's control, the mean of the kept workers' gradients of the
    /// round before, each clipped to their median norm (`aggregate::control`). On label-skewed shards it keeps a
    /// worker from forgetting the classes it lacks; it closed the gap to the centralized
    /// baseline in `docs/BENCHMARKS.md`. A worker then also sends its gradient, which says more
    /// about its data than an update, so a private task refuses it.
    #[serde(default)]
    pub scaffold: f64,
}

fn d_model() -> String {
    MODEL.into()
}
fn d_shards() -> u32 {
    6
}
fn d_alpha() -> f64 {
    0.5
}
fn d_seed() -> u64 {
    42
}
fn d_rounds() -> u32 {
    30
}
fn d_clients() -> u32 {
    5
}
fn d_over() -> u32 {
    30
}
fn d_min() -> u32 {
    2
}
fn d_epochs() -> u32 {
    3
}
fn d_batch() -> u32 {
    16
}
fn d_lr() -> f64 {
    0.01
}
fn d_decay() -> f64 {
    0.95
}
fn d_agg() -> String {
    "median".into()
}
fn d_deadline() -> u64 {
    10_000
}

impl Default for TaskSpec {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field has a default")
    }
}

impl TaskSpec {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<Aggregator, FlError> {
        if self.model != MODEL {
            return Err(FlError::invalid(format!("model: {:?} is not supported (only {MODEL:?})", self.model)));
        }
        let d = &self.data;
        if d.shards == 0 || d.shards > 1024 {
            return Err(FlError::invalid(format!("data.shards: {} is outside 1..=1024", d.shards)));
        }
        if !(d.alpha.is_finite() && d.alpha > 0.0 && d.alpha <= 1000.0) {
            return Err(FlError::invalid(format!("data.alpha: {} is outside (0, 1000]", d.alpha)));
        }
        if self.rounds == 0 || self.rounds > 10_000 {
            return Err(FlError::invalid(format!("rounds: {} is outside 1..=10000", self.rounds)));
        }
        if self.clients_per_round == 0 || self.clients_per_round as usize > MAX_ROUND_CLIENTS {
            return Err(FlError::invalid(format!(
                "clients_per_round: {} is outside 1..={MAX_ROUND_CLIENTS}",
                self.clients_per_round
            )));
        }
        if self.over_select_pct > 200 {
            return Err(FlError::invalid(format!("over_select_pct: {} exceeds 200", self.over_select_pct)));
        }
        if self.min_clients == 0 || self.min_clients > self.clients_per_round {
            return Err(FlError::invalid(format!(
                "min_clients: {} is outside 1..=clients_per_round",
                self.min_clients
            )));
        }
        if self.local_epochs == 0 || self.local_epochs > 100 {
            return Err(FlError::invalid(format!("local_epochs: {} is outside 1..=100", self.local_epochs)));
        }
        if self.batch == 0 || self.batch > 4096 {
            return Err(FlError::invalid(format!("batch: {} is outside 1..=4096", self.batch)));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            return Err(FlError::invalid(format!("lr: {} is outside (0, 10]", self.lr)));
        }
        if !(self.lr_decay.is_finite() && self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return Err(FlError::invalid(format!("lr_decay: {} is outside (0, 1]", self.lr_decay)));
        }
        if self.clip < 0 {
            return Err(FlError::invalid(format!("clip: {} is negative", self.clip)));
        }
        if !(100..=600_000).contains(&self.deadline_ms) {
            return Err(FlError::invalid(format!("deadline_ms: {} is outside 100..=600000", self.deadline_ms)));
        }
        if !(self.scaffold.is_finite() && (0.0..=1.0).contains(&self.scaffold)) {
            return Err(FlError::invalid(format!("scaffold: {} is outside [0, 1]", self.scaffold)));
        }
        if self.scaffold > 0.0 && self.dp.is_some() {
            return Err(FlError::invalid(
                "scaffold with dp: the workers' gradients would leave their machines without noise",
            ));
        }
        let agg = self.aggregator.parse::<Aggregator>().map_err(|e| FlError::invalid(format!("aggregator: {e}")))?;
        match (&self.dp, agg) {
            (None, agg) => Ok(agg),
            // DP-FedAvg: the accountant counts a mean of clipped updates. Screening would reject
            // noisy honest updates, a coordinate-wise rule's sensitivity is another one, and
            // the example counts clients report would weigh one client beyond its clip.
            (Some(dp), Aggregator::FedAvg { .. }) => {
                dp.validate()?;
                Ok(Aggregator::FedAvg { cap: 1 })
            }
            (Some(_), other) => Err(FlError::invalid(format!(
                "aggregator: {other} cannot be used with dp (differential privacy needs fedavg)"
            ))),
        }
    }

    /// The noise and the ε of a task with a privacy budget (`None` without one).
    pub fn dp_plan(&self) -> Result<Option<super::dp::DpPlan>, FlError> {
        self.dp.as_ref().map(|d| d.plan(self.rounds, self.min_clients)).transpose()
    }

    /// Learning rate of round `round`.
    pub fn lr_at(&self, round: u32) -> f64 {
        self.lr * self.lr_decay.powi(round.min(10_000) as i32)
    }

    /// Clients asked per round: `clients_per_round` plus the over-selection, rounded up.
    pub fn selected_per_round(&self) -> usize {
        (self.clients_per_round as usize * (100 + self.over_select_pct as usize)).div_ceil(100)
    }
}

/// Work units of one accepted update: examples trained x local epochs x 6 x parameters
/// (a forward and backward pass costs about 6 floating-point operations per parameter and
/// example), in millions. Examples are capped at `cap`, since clients report them.
pub fn work_units(examples: u64, epochs: u32, cap: u64) -> u64 {
    examples.min(cap) * epochs as u64 * 6 * PARAMS as u64 / 1_000_000
}

/// `units` scaled by a contribution in parts per million (capped at the full share), rounded
/// up: a kept update that contributed anything earns at least a unit (rounded down, a 5%
/// contribution to a 14-unit update earned nothing; the FL mesh test caught one).
pub fn contributed(units: u64, contribution_ppm: u32) -> u64 {
    let full = super::aggregate::FULL_CONTRIBUTION_PPM as u128;
    (units as u128 * contribution_ppm.min(super::aggregate::FULL_CONTRIBUTION_PPM) as u128).div_ceil(full) as u64
}

/// One update that went into a round's aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct RoundInput {
    /// The client's public key.
    pub worker: [u8; 32],
    /// BLAKE3 of the update's safetensors bytes.
    pub update: [u8; 32],
    /// Examples the client reported.
    pub examples: u64,
    /// Its contribution to the round (`aggregate::contributions`), which auditors recompute.
    pub contribution_ppm: u32,
    /// BLAKE3 of the gradient it sent with the update (tasks with `scaffold`).
    pub grad: Option<[u8; 32]>,
}

/// A finished round, as the task owner announces it: anyone holding the previous weights and
/// the inputs (all fetchable from the owner by hash) recomputes `global` bit for bit.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct RoundResult {
    pub task: [u8; 16],
    pub round: u32,
    /// BLAKE3 of the weights the round started from.
    pub prev: [u8; 32],
    /// BLAKE3 of the weights it produced.
    pub global: [u8; 32],
    /// The updates aggregated (before screening), sorted by worker key.
    pub inputs: Vec<RoundInput>,
    /// Workers whose update was left out, with the reason.
    pub rejected: Vec<([u8; 32], String)>,
    /// Test accuracy on the owner's test set, in thousandths (information only).
    pub accuracy_milli: u32,
    /// BLAKE3 of the control the next round trains with (`aggregate::control` of the inputs'
    /// gradients; tasks with `scaffold`).
    pub control: Option<[u8; 32]>,
}

/// Gossip on the `fl` topic.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub enum FlGossip {
    /// A task looking for clients (re-announced every round, so late joiners hear it).
    Task { task: [u8; 16], round: u32, spec: TaskSpec },
    /// A round's result.
    Round(RoundResult),
}

impl FlGossip {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes and checks the limits; never panics.
    pub fn decode(b: &[u8]) -> Result<Self, FlError> {
        let g: FlGossip = crate::codec::decode::<_, MAX_GOSSIP_BYTES>(b)?;
        match &g {
            FlGossip::Task { spec, .. } => {
                spec.validate()?;
            }
            FlGossip::Round(r) => {
                if r.inputs.len() > MAX_ROUND_CLIENTS * 3 || r.rejected.len() > MAX_ROUND_CLIENTS * 3 {
                    return Err(FlError::invalid("too many clients in a round"));
                }
                if r.rejected.iter().any(|(_, why)| why.len() > MAX_REASON) {
                    return Err(FlError::invalid("reason too long"));
                }
            }
        }
        Ok(g)
    }
}

/// Requests of the `fl` protocol.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
#[allow(clippy::large_enum_variant)] // decoded once per message and dropped; Train is the common one
pub enum FlRequest {
    /// A worker offers to train for a task (sent to the owner).
    Join { task: [u8; 16] },
    /// The owner asks a selected client for an update from weights `global` (`len` bytes, fetched
    /// from the owner with [`FlRequest::Fetch`]).
    /// With `spec.scaffold`, `control` is the round's control (hash and length; none in round
    /// 0), fetched like the weights.
    Train { task: [u8; 16], round: u32, spec: TaskSpec, global: [u8; 32], len: u32, control: Option<([u8; 32], u32)> },
    /// A chunk of a blob this peer announced (weights or an update), by BLAKE3 hash.
    Fetch { hash: [u8; 32], offset: u32 },
    /// The spec of a task this peer owns (for auditors).
    Spec { task: [u8; 16] },
}

/// Responses of the `fl` protocol.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub enum FlResponse {
    Joined {
        examples: u64,
    },
    /// The update is ready to fetch from the client.
    Trained {
        update: [u8; 32],
        len: u32,
        examples: u64,
        loss: f32,
        /// With `spec.scaffold`: the worker's mean gradient at the round's weights (hash, length).
        grad: Option<([u8; 32], u32)>,
    },
    Chunk {
        total: u32,
        bytes: Vec<u8>,
    },
    Spec(TaskSpec),
    Error(String),
}

impl FlRequest {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }
    pub fn decode(b: &[u8]) -> Result<Self, FlError> {
        Ok(crate::codec::decode::<_, MAX_MESSAGE_BYTES>(b)?)
    }
}

impl FlResponse {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }
    pub fn decode(b: &[u8]) -> Result<Self, FlError> {
        Ok(crate::codec::decode::<_, MAX_MESSAGE_BYTES>(b)?)
    }
}

/// The model's tensors: name and shape, in the flat parameter order.
pub const TENSORS: [(&str, &[usize]); 4] =
    [("w1", &[HIDDEN, FEATURES]), ("b1", &[HIDDEN]), ("w2", &[CLASSES, HIDDEN]), ("b2", &[CLASSES])];

/// Weights (or an update) as safetensors bytes; the same parameters always give the same bytes.
pub fn to_safetensors(p: &[f32]) -> Result<Vec<u8>, FlError> {
    tensors_to_safetensors(&TENSORS, p)
}

/// Parses safetensors bytes into the flat parameters, refusing oversized files, missing, extra
/// or misshapen tensors, other dtypes, NaN, infinities and values beyond the fixed-point range.
pub fn from_safetensors(b: &[u8]) -> Result<Vec<f32>, FlError> {
    tensors_from_safetensors(&TENSORS, b)
}

/// Flat parameters as the safetensors of the named tensors `tensors` (in flat order).
pub fn tensors_to_safetensors(tensors: &[(&str, &[usize])], p: &[f32]) -> Result<Vec<u8>, FlError> {
    let params: usize = tensors.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    if p.len() != params {
        return Err(FlError::invalid(format!("{} parameters, expected {params}", p.len())));
    }
    let bytes: Vec<u8> = p.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut at = 0;
    let mut views = Vec::new();
    for (name, shape) in tensors {
        let n: usize = shape.iter().product::<usize>() * 4;
        let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &bytes[at..at + n])
            .map_err(|e| FlError::invalid(e.to_string()))?;
        views.push((*name, v));
        at += n;
    }
    safetensors::serialize(views, None).map_err(|e| FlError::invalid(e.to_string()))
}

/// Parses the safetensors of exactly the named tensors `tensors` into flat parameters (see
/// [`from_safetensors`] for what is refused).
pub fn tensors_from_safetensors(tensors: &[(&str, &[usize])], b: &[u8]) -> Result<Vec<f32>, FlError> {
    if b.len() > MAX_WEIGHTS_BYTES {
        return Err(FlError::invalid(format!("{} bytes exceed the {MAX_WEIGHTS_BYTES}-byte limit", b.len())));
    }
    let st = safetensors::SafeTensors::deserialize(b)
        .map_err(|e| FlError::invalid(format!("not a safetensors file: {e}")))?;
    if st.len() != tensors.len() {
        let names: Vec<&str> = tensors.iter().map(|(n, _)| *n).collect();
        return Err(FlError::invalid(format!(
            "{} tensors, expected {} ({})",
            st.len(),
            tensors.len(),
            names.join(", ")
        )));
    }
    let mut out = Vec::new();
    for (name, shape) in tensors {
        let t = st.tensor(name).map_err(|_| FlError::invalid(format!("tensor {name} is missing")))?;
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(FlError::invalid(format!("tensor {name} is {:?}, expected F32", t.dtype())));
        }
        if t.shape() != *shape {
            return Err(FlError::invalid(format!("tensor {name} has shape {:?}, expected {shape:?}", t.shape())));
        }
        for (i, c) in t.data().chunks_exact(4).enumerate() {
            let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if !v.is_finite() || v.abs() > MAX_ABS {
                return Err(FlError::invalid(format!(
                    "tensor {name}[{i}] = {v} (NaN, infinite or beyond +-{MAX_ABS})"
                )));
            }
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_and_bad_files_are_named() {
        let p: Vec<f32> = (0..PARAMS).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
        let b = to_safetensors(&p).unwrap();
        assert_eq!(b, to_safetensors(&p).unwrap(), "deterministic bytes");
        assert_eq!(from_safetensors(&b).unwrap(), p);
        assert!(from_safetensors(&b[..b.len() - 1]).unwrap_err().to_string().contains("not a safetensors"));
        assert!(from_safetensors(&[0u8; 70_000]).unwrap_err().to_string().contains("limit"));
        assert!(from_safetensors(b"garbage").is_err());
        // A NaN smuggled in.
        let mut nan = p.clone();
        nan[100] = f32::NAN;
        let bad = to_safetensors(&nan).unwrap();
        assert!(from_safetensors(&bad).unwrap_err().to_string().contains("w1[100]"));
        // A wrong shape.
        let w = vec![0u8; 4 * 10];
        let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![10], &w).unwrap();
        let odd = safetensors::serialize([("w1", v)], None).unwrap();
        assert!(from_safetensors(&odd).unwrap_err().to_string().contains("1 tensors"));
        assert!(to_safetensors(&[0.0; 3]).is_err());
    }

    #[test]
    fn specs_validate_with_named_fields() {
        let s = TaskSpec::default();
        assert_eq!(s.validate().unwrap(), Aggregator::Median);
        assert_eq!(s.selected_per_round(), 7);
        let bad = |f: &dyn Fn(&mut TaskSpec), key: &str| {
            let mut t = TaskSpec::default();
            f(&mut t);
            let e = t.validate().unwrap_err().to_string();
            assert!(e.starts_with(key), "{e}");
        };
        bad(&|t| t.model = "cnn".into(), "model");
        bad(&|t| t.rounds = 0, "rounds");
        bad(&|t| t.data.alpha = f64::NAN, "data.alpha");
        bad(&|t| t.min_clients = 9, "min_clients");
        bad(&|t| t.aggregator = "mean".into(), "aggregator");
        bad(&|t| t.deadline_ms = 1, "deadline_ms");
        // Contributions scale work units, rounded up: anything kept earns a unit.
        assert_eq!([0, 1, 50_000, 1_000_000, 2_000_000].map(|c| contributed(14, c)), [0, 1, 1, 14, 14]);
        bad(&|t| t.scaffold = 1.5, "scaffold");
        bad(&|t| t.scaffold = f64::NAN, "scaffold");
        bad(
            &|t| {
                t.aggregator = "fedavg".into();
                t.dp = Some(crate::fl::dp::DpSpec { epsilon: 8.0, delta: 1e-5, clip: 1.0 });
                t.scaffold = 0.1;
            },
            "scaffold with dp",
        );
        assert!(TaskSpec { scaffold: 0.1, ..Default::default() }.validate().is_ok());
        assert!(serde_json::from_str::<TaskSpec>(r#"{"roundz": 3}"#).is_err());
        let g = FlGossip::Task { task: [1; 16], round: 0, spec: s };
        assert_eq!(FlGossip::decode(&g.encode()).unwrap(), g);
        assert!(FlGossip::decode(&[9, 9, 9]).is_err());
    }
}
