//! Federated learning on the mesh.
//!
//! A **task owner** (the node a task is started on, `POST /fl`) announces the task on the `fl`
//! topic every round. Workers with data (`[fl] data`) answer with a `Join` request. Each round
//! the owner picks `clients_per_round` plus the over-selection among joined, connected workers
//! (a seeded rotation), sends each a `Train` request naming the current weights by hash; the
//! worker fetches them from the owner in chunks (safetensors bytes, hash-checked), trains on its
//! shard with candle, keeps its update as a blob and answers with the update's hash; the owner
//! fetches the update in chunks, checks it (size, hash, safetensors shapes, NaN/Inf, range),
//! and stops waiting once it has `clients_per_round` valid updates or the deadline passes, so
//! stragglers never stall a round. The valid updates are aggregated in fixed point with
//! screening (`fl::aggregate::next_global`), the owner scores the new weights on its test split,
//! signs an FL receipt into the ledger for every accepted and every rejected update, and gossips
//! the round's result. A **verifier** that hears a result fetches the previous weights and the
//! inputs from the owner and recomputes the aggregate: it must get the same hash.
//!
//! Files: `owner` (the owner's task loop, the I/O), `round` (the round's rules, sans I/O),
//! `worker` (training for others, and the poison modes), `audit`, `transfer` (blobs in chunks
//! over request-response), `status` (what the API shows).

mod audit;
mod owner;
pub mod round;
mod status;
mod transfer;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ed25519_dalek::SigningKey;
use ifx_learn::data::Dataset;
use ifx_protocols::fl::poison::Poison;
use ifx_protocols::fl::wire::{CHUNK_BYTES, FlGossip, FlRequest, FlResponse};
use ifx_protocols::{Kind, NetworkConfig, Role, SignedEnvelope};
use ifx_storage::{BlobStore, StorageError};
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use round::{BAN_STRIKES, BAN_WINDOW, LATE_STRIKES, LATE_WINDOW, STRAGGLER_BENCH_ROUNDS};
pub use status::{AuditStats, RunState, TaskStatus};
pub use transfer::fetch_blob;

/// Why a federated task, a training run or an audit failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Fl(#[from] ifx_protocols::fl::FlError),
    #[error(transparent)]
    Learn(#[from] ifx_learn::LearnError),
    #[error("blob store: {0}")]
    Blobs(#[from] StorageError),
    /// What a peer answered, or why it did not.
    #[error("{0}")]
    Peer(String),
    /// The task's own condition (no data, too few clients, shutting down).
    #[error("{0}")]
    Task(String),
    /// The owner could not pay for the task (unfunded: HTTP 402).
    #[error("cannot pay for the task: {0}")]
    Pay(#[from] crate::settle::PayError),
}

impl TaskError {
    /// The task's own condition.
    pub fn task(why: impl Into<String>) -> Self {
        TaskError::Task(why.into())
    }
}

use crate::ledger::LedgerHandle;
use crate::network::{InboundRequest, NetHandle, Proto, author_peer_id};
use round::clip_reason;

/// Federated learning: owned tasks, local training for others, audits. Cheap to clone.
#[derive(Clone)]
pub struct Fl {
    inner: Arc<Inner>,
}

struct Inner {
    net: NetHandle,
    key: SigningKey,
    me: PeerId,
    network: NetworkConfig,
    ledger: LedgerHandle,
    role: Role,
    /// Train and test split of the configured data file.
    data: Option<(Dataset, Dataset)>,
    shard: Option<u32>,
    poison: Poison,
    faults: crate::faults::Faults,
    out_dir: PathBuf,
    blobs: BlobStore,
    tasks: Mutex<BTreeMap<String, TaskStatus>>,
    /// Owner side: workers that joined each task (peer id -> public key).
    joined: Mutex<BTreeMap<[u8; 16], Workers>>,
    /// Worker side: tasks this node has joined, and their owner (the only peer it trains for).
    my_joins: Mutex<BTreeMap<[u8; 16], PeerId>>,
    audits: Mutex<AuditStats>,
    /// One local training at a time: an owner's request waits its turn (training is the
    /// heaviest work a peer can ask for).
    training: tokio::sync::Semaphore,
    /// One audit at a time, at most [`AUDIT_QUEUE`] waiting; past that a round is not audited
    /// (any peer can announce rounds, and each audit fetches and recomputes).
    auditing: Arc<tokio::sync::Semaphore>,
    audits_waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// The operator's pause: no training for others while it holds.
    pause: crate::pause::Pause,
    /// Peers' heartbeats: the owner asks only workers whose heartbeats say they work.
    heartbeats: Arc<Mutex<ifx_protocols::PeerTable>>,
    shutdown: CancellationToken,
}

/// Audits that may wait for the one running (an honest owner announces a round every few
/// seconds, and an audit takes less than a round).
pub const AUDIT_QUEUE: usize = 16;

/// Joined workers of one task: peer id -> public key.
type Workers = BTreeMap<PeerId, [u8; 32]>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The public key of an ed25519 peer id.
pub fn peer_key(peer: &PeerId) -> Option<[u8; 32]> {
    let pk = libp2p::identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok()?;
    Some(pk.try_into_ed25519().ok()?.to_bytes())
}

impl Fl {
    /// The service; `data` is the configured file (loaded here), `out_dir` receives weights
    /// and plots of owned tasks.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        net: NetHandle,
        key: SigningKey,
        network: NetworkConfig,
        ledger: LedgerHandle,
        role: Role,
        cfg: &crate::config::FlSection,
        faults: crate::faults::Faults,
        blobs: BlobStore,
        out_dir: PathBuf,
        pause: crate::pause::Pause,
        heartbeats: Arc<Mutex<ifx_protocols::PeerTable>>,
        shutdown: CancellationToken,
    ) -> Result<Self, ifx_learn::LearnError> {
        let data = match &cfg.data {
            Some(p) => Some(Dataset::load(p)?.split()),
            None => None,
        };
        let poison = cfg.poison;
        if poison != Poison::Honest {
            warn!(mode = %poison, "this node POISONS its federated-learning updates (test mode)");
        }
        let me = net.local_peer_id();
        Ok(Self {
            inner: Arc::new(Inner {
                net,
                key,
                me,
                network,
                ledger,
                role,
                data,
                shard: cfg.shard,
                poison,
                faults,
                out_dir,
                blobs,
                tasks: Mutex::default(),
                joined: Mutex::default(),
                my_joins: Mutex::default(),
                audits: Mutex::default(),
                training: tokio::sync::Semaphore::new(1),
                auditing: Arc::new(tokio::sync::Semaphore::new(1)),
                audits_waiting: Arc::default(),
                pause,
                heartbeats,
                shutdown,
            }),
        })
    }

    /// A task's status.
    pub fn get(&self, id: &str) -> Option<TaskStatus> {
        lock(&self.inner.tasks).get(id).cloned()
    }

    /// Every owned task's status.
    pub fn list(&self) -> Vec<TaskStatus> {
        lock(&self.inner.tasks).values().cloned().collect()
    }

    /// What this node's audits found.
    pub fn audits(&self) -> AuditStats {
        lock(&self.inner.audits).clone()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut TaskStatus)) {
        if let Some(s) = lock(&self.inner.tasks).get_mut(id) {
            f(s);
        }
    }

    /// Blobs this node holds (FL weights and updates, published models) and their bytes.
    pub fn blob_usage(&self) -> (usize, u64) {
        self.inner.blobs.usage()
    }

    /// Keeps bytes for peers to fetch by their BLAKE3 hash (returned).
    pub fn put_blob(&self, bytes: Vec<u8>) -> Result<[u8; 32], StorageError> {
        self.inner.blobs.put(&bytes)
    }

    async fn gossip(&self, g: FlGossip) {
        let c = &self.inner;
        let epoch = c.network.epoch_at(crate::unix_time_us() / 1000);
        if let Ok(env) = SignedEnvelope::sign(&c.key, &c.network.id, Kind::Fl, epoch, g.encode())
            && let Ok(Err(e)) = c.net.publish(Kind::Fl, env.encode()).await
        {
            debug!(error = %e, "fl gossip not published");
        }
    }

    /// Handles gossip from the `fl` topic (already verified by the router).
    pub fn on_gossip(&self, author: [u8; 32], g: FlGossip) {
        let Some(owner) = author_peer_id(&author) else { return };
        if owner == self.inner.me {
            return;
        }
        match g {
            FlGossip::Task { task, .. } => {
                let c = &self.inner;
                if c.data.is_none() || c.role != Role::Worker || lock(&c.my_joins).contains_key(&task) {
                    return;
                }
                // Mark first, so a burst of announcements sends one join.
                lock(&c.my_joins).insert(task, owner);
                let me = self.clone();
                tokio::spawn(async move {
                    let req = FlRequest::Join { task }.encode();
                    let ok = matches!(
                        me.inner.net.request(Proto::Fl, owner, req).await,
                        Ok(Ok(b)) if matches!(FlResponse::decode(&b), Ok(FlResponse::Joined { .. }))
                    );
                    if ok {
                        info!(task = hex::encode(task), %owner, "joined a federated task");
                    } else {
                        // Try again at the next announcement.
                        lock(&me.inner.my_joins).remove(&task);
                    }
                });
            }
            FlGossip::Round(r) => {
                if self.inner.role != Role::Verifier {
                    return;
                }
                use std::sync::atomic::Ordering;
                let waiting = self.inner.audits_waiting.clone();
                if waiting.fetch_add(1, Ordering::SeqCst) >= AUDIT_QUEUE {
                    waiting.fetch_sub(1, Ordering::SeqCst);
                    debug!(round = r.round, %owner, "{AUDIT_QUEUE} audits waiting: this round is not audited");
                    return;
                }
                let me = self.clone();
                tokio::spawn(async move {
                    let permit = me.inner.auditing.clone().acquire_owned().await;
                    waiting.fetch_sub(1, Ordering::SeqCst);
                    let Ok(_permit) = permit else { return };
                    let outcome = me.audit(owner, &r).await;
                    let mut a = lock(&me.inner.audits);
                    match outcome {
                        Ok(true) => a.matched += 1,
                        Ok(false) => {
                            a.mismatched += 1;
                            warn!(task = hex::encode(r.task), round = r.round, %owner,
                                "AUDIT MISMATCH: recomputed weights differ from the announced ones");
                            a.last_error = Some(format!("round {} of {}: hash mismatch", r.round, hex::encode(r.task)));
                        }
                        Err(e) => {
                            debug!(error = %e, "audit not possible");
                            a.failed += 1;
                            a.last_error = Some(e.to_string());
                        }
                    }
                });
            }
        }
    }

    /// Answers `fl` requests until `shutdown`.
    pub async fn serve(self, mut inbound: mpsc::Receiver<InboundRequest>, shutdown: CancellationToken) {
        loop {
            let req = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = inbound.recv() => match r { Some(r) => r, None => return },
            };
            let msg = match FlRequest::decode(&req.data) {
                Ok(m) => m,
                Err(e) => {
                    debug!(peer = %req.peer, error = %e, "malformed fl request");
                    let resp = FlResponse::Error(clip_reason(e.to_string()));
                    self.inner.net.respond(Proto::Fl, req.channel, resp.encode()).await;
                    continue;
                }
            };
            match msg {
                FlRequest::Train { task, round, spec, global, len, control } => {
                    // Training takes a while: answer from a task of its own.
                    let me = self.clone();
                    tokio::spawn(async move {
                        let resp =
                            me.train(req.peer, task, round, spec, (global, len), control).await.unwrap_or_else(|e| {
                                warn!(task = hex::encode(task), round, error = %e, "cannot train");
                                FlResponse::Error(clip_reason(e.to_string()))
                            });
                        me.inner.net.respond(Proto::Fl, req.channel, resp.encode()).await;
                    });
                }
                other => {
                    let resp = self.answer(req.peer, other);
                    self.inner.net.respond(Proto::Fl, req.channel, resp.encode()).await;
                }
            }
        }
    }

    fn answer(&self, peer: PeerId, msg: FlRequest) -> FlResponse {
        match msg {
            FlRequest::Join { task } => {
                let Some(key) = peer_key(&peer) else { return FlResponse::Error("not an ed25519 peer".into()) };
                match lock(&self.inner.joined).get_mut(&task) {
                    Some(j) => {
                        if j.insert(peer, key).is_none() {
                            info!(task = hex::encode(task), %peer, "worker joined");
                        }
                        FlResponse::Joined { examples: 0 }
                    }
                    None => FlResponse::Error("unknown task".into()),
                }
            }
            FlRequest::Fetch { hash, offset } => match self.inner.blobs.chunk(&hash, offset as usize, CHUNK_BYTES) {
                Ok(Some((total, bytes))) => FlResponse::Chunk { total: total as u32, bytes },
                Ok(None) => FlResponse::Error("unknown blob".into()),
                Err(e) => FlResponse::Error(clip_reason(format!("blob store: {e}"))),
            },
            FlRequest::Spec { task } => match self.get(&hex::encode(task)) {
                Some(s) => FlResponse::Spec(s.spec),
                None => FlResponse::Error("unknown task".into()),
            },
            FlRequest::Train { .. } => FlResponse::Error("unexpected".into()),
        }
    }
}
