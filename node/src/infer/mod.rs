//! Inference jobs (issue #20).
//!
//! A **job owner** publishes a model (`POST /infer/models`: safetensors weights of a known
//! architecture, kept as a blob by BLAKE3 hash) and submits a job (`POST /infer`: rows of
//! inputs). The owner cuts the rows into batches and sends them over the `infer` protocol to
//! connected workers, two in flight per worker; a worker that lacks the model fetches its
//! weights from the owner over `fl` (chunks, hash-checked), keeps it loaded, runs the batch
//! with candle on its CPU and answers the logits with its signature over what it answered
//! (`infer::Commitment`). The owner checks every answer's shape and signature, re-executes
//! each worker's first batch and a random share of the rest (`verify_ppm`) and compares
//! (`infer::compare`: bit for bit, or within the stated tolerance with the same top class). A
//! worker caught is dropped from the job, its batch goes to another, and the owner files the
//! batch, the answer and the signature as evidence (`InferFault`); bonded verifiers re-execute
//! it (`render::judge`) and settlement slashes the worker on their majority. Every accepted
//! batch gets a receipt (`InferReceipt`) paid by the rows of the job's payment.
//!
//! Files: `mod.rs` (the service, and the worker side: serving batches), `job.rs` (the owner).

mod job;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ed25519_dalek::SigningKey;
use ifx_learn::infer::Model;
use ifx_protocols::infer::{Commitment, InferCheat, InferRequest, InferResponse, ModelSpec, weights_of};
use ifx_protocols::{NetworkConfig, Role};
use ifx_storage::BlobStore;
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use ifx_protocols::api::{InferJobStatus, InferWorker};

use crate::fl::round::clip_reason;
use crate::ledger::LedgerHandle;
use crate::network::{InboundRequest, NetHandle, Proto};

/// Batches a worker holds at once: one running, the rest waiting (an owner keeps two in
/// flight, so this is eight owners' worth); past it a batch is refused as busy, which the
/// owner sends elsewhere.
pub const QUEUE: usize = 16;
/// Models a worker keeps loaded (each at most the CNN's 40 KB of weights).
pub const LOADED_MODELS: usize = 8;

/// Why an inference job or a batch could not be run.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Input(#[from] ifx_protocols::fl::FlError),
    #[error(transparent)]
    Learn(#[from] ifx_learn::LearnError),
    #[error("blob store: {0}")]
    Blobs(#[from] ifx_storage::StorageError),
    /// The job's own condition (unknown model, no workers, shutting down).
    #[error("{0}")]
    Job(String),
    /// The owner could not pay for the job (unfunded: HTTP 402).
    #[error("cannot pay for the job: {0}")]
    Pay(#[from] crate::settle::PayError),
}

impl InferError {
    fn job(why: impl Into<String>) -> Self {
        InferError::Job(why.into())
    }
}

/// Inference: jobs this node owns, and serving batches for others. Cheap to clone.
#[derive(Clone)]
pub struct Infer {
    inner: Arc<Inner>,
}

struct Inner {
    net: NetHandle,
    key: SigningKey,
    network: NetworkConfig,
    ledger: LedgerHandle,
    role: Role,
    cheat: InferCheat,
    faults: crate::faults::Faults,
    blobs: BlobStore,
    out_dir: PathBuf,
    pause: crate::pause::Pause,
    heartbeats: Arc<Mutex<ifx_protocols::PeerTable>>,
    /// Loaded models by weights hash, oldest first.
    loaded: Mutex<VecDeque<([u8; 32], Arc<Model>)>>,
    /// One batch runs at a time; `waiting` counts those queued for it.
    serving: tokio::sync::Semaphore,
    waiting: AtomicUsize,
    jobs: Mutex<BTreeMap<String, InferJobStatus>>,
    shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a node needs to serve and own inference jobs.
pub struct Parts {
    pub net: NetHandle,
    pub key: SigningKey,
    pub network: NetworkConfig,
    pub ledger: LedgerHandle,
    pub role: Role,
    pub cheat: InferCheat,
    pub faults: crate::faults::Faults,
    /// The FL blob store: models are blobs fetched over `fl` like weights.
    pub blobs: BlobStore,
    pub out_dir: PathBuf,
    pub pause: crate::pause::Pause,
    pub heartbeats: Arc<Mutex<ifx_protocols::PeerTable>>,
    pub shutdown: CancellationToken,
}

impl Infer {
    pub fn new(p: Parts) -> Self {
        if p.cheat != InferCheat::Honest {
            warn!(mode = %p.cheat, "this node ANSWERS INFERENCE BATCHES WRONGLY (test mode)");
        }
        Self {
            inner: Arc::new(Inner {
                net: p.net,
                key: p.key,
                network: p.network,
                ledger: p.ledger,
                role: p.role,
                cheat: p.cheat,
                faults: p.faults,
                blobs: p.blobs,
                out_dir: p.out_dir,
                pause: p.pause,
                heartbeats: p.heartbeats,
                loaded: Mutex::default(),
                serving: tokio::sync::Semaphore::new(1),
                waiting: AtomicUsize::new(0),
                jobs: Mutex::default(),
                shutdown: p.shutdown,
            }),
        }
    }

    /// Publishes `bytes` as the weights of an `arch` model this node serves to its jobs'
    /// workers; returns the model.
    pub fn publish(&self, arch: ifx_protocols::infer::Arch, bytes: &[u8]) -> Result<ModelSpec, InferError> {
        let m = ModelSpec::publish(arch, bytes)?;
        m.validate()?;
        self.inner.blobs.put(bytes)?;
        Ok(m)
    }

    /// The loaded model `spec`: from memory, from the blob store (a model this node published),
    /// or fetched from `from`. A fetched model is kept loaded in memory only, never written to
    /// the blob store: any peer can name a model, and the store's oldest-first eviction would let
    /// a stranger naming thousands of them evict an FL owner's round weights.
    async fn model(&self, spec: &ModelSpec, from: PeerId) -> Result<Arc<Model>, InferError> {
        if let Some((_, m)) = lock(&self.inner.loaded).iter().find(|(h, _)| *h == spec.weights)
            && m.arch() == spec.arch
        {
            return Ok(m.clone());
        }
        let bytes = match self.inner.blobs.get(&spec.weights)? {
            Some(b) => b,
            None => {
                let b = crate::fl::fetch_blob(&self.inner.net, from, spec.weights)
                    .await
                    .map_err(|e| InferError::job(format!("cannot fetch the model: {e}")))?;
                if b.len() != spec.len as usize {
                    return Err(InferError::job("the model's weights are not the announced size"));
                }
                b
            }
        };
        let params = weights_of(spec.arch, &bytes)?;
        let arch = spec.arch;
        let model = Arc::new(
            tokio::task::spawn_blocking(move || Model::load(arch, &params))
                .await
                .map_err(|e| InferError::job(e.to_string()))??,
        );
        let mut loaded = lock(&self.inner.loaded);
        loaded.retain(|(h, _)| *h != spec.weights);
        if loaded.len() >= LOADED_MODELS {
            loaded.pop_front();
        }
        loaded.push_back((spec.weights, model.clone()));
        Ok(model)
    }

    /// Answers one batch: the logits (or this node's cheat) and the signature over them.
    async fn serve_batch(&self, from: PeerId, req: InferRequest) -> Result<InferResponse, InferError> {
        let c = &self.inner;
        if c.role != Role::Worker {
            return Err(InferError::job("not a worker"));
        }
        if c.pause.is_paused() {
            return Err(InferError::job("busy: paused by its operator"));
        }
        let InferRequest::Batch { job, batch, model: spec, inputs } = req;
        let model = self.model(&spec, from).await?;
        let _turn = c.serving.acquire().await.map_err(|_| InferError::job("the node is stopping"))?;
        let (cheat, faults) = (c.cheat, c.faults);
        let (inputs, outputs) = tokio::task::spawn_blocking(move || -> Result<_, InferError> {
            let out = faults.work(|| match cheat {
                InferCheat::Honest => model.forward(&inputs),
                InferCheat::Cheap => model.cheap_forward(&inputs),
                InferCheat::Random => {
                    let seed = u64::from_le_bytes(job[..8].try_into().expect("8 bytes")) ^ batch as u64;
                    let mut rng = ifx_learn::data::Rng(seed | 1);
                    let rows = inputs.len() / ifx_protocols::fl::shape::FEATURES;
                    Ok((0..rows * ifx_protocols::fl::shape::CLASSES).map(|_| (rng.normal() * 3.0) as f32).collect())
                }
            })?;
            Ok((inputs, out))
        })
        .await
        .map_err(|e| InferError::job(e.to_string()))??;
        let sig = Commitment::of(job, batch, &spec, &inputs, &outputs).sign(&c.key);
        Ok(InferResponse::Outputs { outputs, sig })
    }

    /// Answers `infer` requests until `shutdown`; at most [`QUEUE`] batches wait at once.
    pub async fn serve(self, mut inbound: mpsc::Receiver<InboundRequest>, shutdown: CancellationToken) {
        loop {
            let req = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = inbound.recv() => match r { Some(r) => r, None => return },
            };
            let msg = match InferRequest::decode(&req.data) {
                Ok(m) => m,
                Err(e) => {
                    debug!(peer = %req.peer, error = %e, "malformed infer request");
                    let resp = InferResponse::Error(clip_reason(e.to_string()));
                    self.inner.net.respond(Proto::Infer, req.channel, resp.encode()).await;
                    continue;
                }
            };
            if self.inner.waiting.fetch_add(1, Ordering::SeqCst) >= QUEUE {
                self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
                let resp = InferResponse::Error(format!("busy: {QUEUE} batches queued"));
                self.inner.net.respond(Proto::Infer, req.channel, resp.encode()).await;
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let resp = me.serve_batch(req.peer, msg).await.unwrap_or_else(|e| {
                    debug!(peer = %req.peer, error = %e, "batch not served");
                    InferResponse::Error(clip_reason(e.to_string()))
                });
                me.inner.waiting.fetch_sub(1, Ordering::SeqCst);
                me.inner.net.respond(Proto::Infer, req.channel, resp.encode()).await;
            });
        }
    }

    /// How many models this node keeps loaded (at most [`LOADED_MODELS`]).
    pub fn loaded_models(&self) -> usize {
        lock(&self.inner.loaded).len()
    }

    /// A job's status.
    pub fn get(&self, id: &str) -> Option<InferJobStatus> {
        lock(&self.inner.jobs).get(id).cloned()
    }

    /// Every owned job's status.
    pub fn list(&self) -> Vec<InferJobStatus> {
        lock(&self.inner.jobs).values().cloned().collect()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut InferJobStatus)) {
        if let Some(s) = lock(&self.inner.jobs).get_mut(id) {
            f(s);
        }
    }
}
