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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use futures::stream::{FuturesUnordered, StreamExt};
use ifx_protocols::fl::aggregate::{Aggregator, Update, next_global, to_fixed};
use ifx_protocols::fl::data::{Dataset, Rng};
use ifx_protocols::fl::model::{self, TrainConfig};
use ifx_protocols::fl::wire::{
    CHUNK_BYTES, FlGossip, FlRequest, FlResponse, MAX_REASON, MAX_WEIGHTS_BYTES, RoundInput, RoundResult, TaskSpec,
    from_safetensors, to_safetensors, work_units,
};
use ifx_protocols::ledger::{EntryKind, FlReceipt};
use ifx_protocols::{Kind, NetworkConfig, Role, SignedEnvelope};
use libp2p::PeerId;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ledger::LedgerHandle;
use crate::network::{InboundRequest, NetHandle, Proto, author_peer_id};

/// The poison modes `[fl] poison` accepts (tests and the testnet only).
pub const POISONS: [&str; 6] = ["sign-flip", "scale", "random", "nan", "shape", "slow"];
/// Blobs (weights and updates) kept for peers to fetch.
const MAX_BLOBS: usize = 2048;
/// Example counts above this are capped in FedAvg weights and work units.
const EXAMPLE_CAP: u64 = 10_000;
/// How long a round waits for enough joined workers before the task fails.
const NO_CLIENTS_TIMEOUT: Duration = Duration::from_secs(60);
/// A round with too few valid updates by its deadline is retried this often.
const ROUND_ATTEMPTS: usize = 5;
/// A worker whose updates were rejected this many times within its last [`BAN_WINDOW`]
/// updates is excluded from the task (an honest non-IID update is rejected now and then; a
/// poisoner nearly always).
pub const BAN_STRIKES: usize = 3;
pub const BAN_WINDOW: usize = 5;
/// A worker late in [`LATE_STRIKES`] of its last [`LATE_WINDOW`] rounds sits out this many
/// rounds (doubling each time, up to 8x).
pub const STRAGGLER_BENCH_ROUNDS: u32 = 5;
pub const LATE_STRIKES: usize = 2;
pub const LATE_WINDOW: usize = 3;

/// Each worker's last few yes/no marks (rejected, late), oldest first.
type Recent = BTreeMap<[u8; 32], std::collections::VecDeque<bool>>;

/// Records `mark` for `worker`, keeping its last `window` marks; returns how many are set.
fn note(recent: &mut Recent, worker: [u8; 32], mark: bool, window: usize) -> usize {
    let h = recent.entry(worker).or_default();
    h.push_back(mark);
    if h.len() > window {
        h.pop_front();
    }
    h.iter().filter(|x| **x).count()
}
/// How long round 0 waits for `clients_per_round` workers to join before it starts with fewer.
const JOIN_GRACE: Duration = Duration::from_secs(5);

/// What `GET /fl/{task}` shows.
#[derive(Clone, Debug, Serialize)]
pub struct TaskStatus {
    pub task_id: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub spec: TaskSpec,
    pub aggregator: String,
    /// Rounds completed.
    pub rounds_done: u32,
    pub accuracy_by_round: Vec<f64>,
    pub loss_by_round: Vec<f32>,
    /// Valid updates aggregated per round (before screening).
    pub clients_by_round: Vec<usize>,
    /// Accepted updates per worker peer id.
    pub accepted: BTreeMap<String, u64>,
    /// Rejected updates per worker peer id, with the reasons (the last few).
    pub rejected: BTreeMap<String, Vec<String>>,
    /// Rejected updates per worker peer id (all of them).
    pub rejected_count: BTreeMap<String, u64>,
    /// Workers the owner stopped asking (peer id: when and why): rejected [`BAN_STRIKES`]
    /// times within their last [`BAN_WINDOW`] updates.
    pub banned: BTreeMap<String, String>,
    /// Clients that did not deliver in time (timeouts, disconnects) per peer id.
    pub dropped: BTreeMap<String, u64>,
    /// FL receipts written to the ledger.
    pub receipts: u64,
    /// BLAKE3 of the current weights (safetensors bytes).
    pub global_hash: String,
    pub final_accuracy: Option<f64>,
    /// Final weights (safetensors) and the accuracy plot (PNG), once done.
    pub weights: Option<String>,
    pub plot: Option<String>,
    pub secs: f64,
    pub error: Option<String>,
}

/// What this node's audits of other owners' rounds found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditStats {
    /// Rounds recomputed to the announced hash.
    pub matched: u64,
    /// Rounds whose recomputed weights differ from the announcement.
    pub mismatched: u64,
    /// Rounds that could not be recomputed (inputs unavailable).
    pub failed: u64,
    pub last_error: Option<String>,
}

/// How a poisoning worker corrupts its update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poison {
    Honest,
    SignFlip,
    Scale,
    Random,
    Nan,
    Shape,
    /// Answers honestly, but after the round's deadline.
    Slow,
}

impl std::str::FromStr for Poison {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "" | "none" => Poison::Honest,
            "sign-flip" => Poison::SignFlip,
            "scale" => Poison::Scale,
            "random" => Poison::Random,
            "nan" => Poison::Nan,
            "shape" => Poison::Shape,
            "slow" => Poison::Slow,
            o => return Err(format!("{o:?} is not one of {}", POISONS.join(", "))),
        })
    }
}

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
    out_dir: PathBuf,
    blobs: Mutex<Blobs>,
    tasks: Mutex<BTreeMap<String, TaskStatus>>,
    /// Owner side: workers that joined each task (peer id -> public key).
    joined: Mutex<BTreeMap<[u8; 16], Workers>>,
    /// Worker side: tasks this node has joined.
    my_joins: Mutex<BTreeSet<[u8; 16]>>,
    audits: Mutex<AuditStats>,
    shutdown: CancellationToken,
}

/// Joined workers of one task: peer id -> public key.
type Workers = BTreeMap<PeerId, [u8; 32]>;

#[derive(Default)]
struct Blobs {
    by_hash: BTreeMap<[u8; 32], Arc<Vec<u8>>>,
    order: VecDeque<[u8; 32]>,
}

impl Blobs {
    fn put(&mut self, bytes: Vec<u8>) -> [u8; 32] {
        let h = *blake3::hash(&bytes).as_bytes();
        if self.by_hash.insert(h, Arc::new(bytes)).is_none() {
            self.order.push_back(h);
            while self.order.len() > MAX_BLOBS {
                if let Some(old) = self.order.pop_front() {
                    self.by_hash.remove(&old);
                }
            }
        }
        h
    }
}

/// Why a selected client's update did not make it into a round.
enum Miss {
    /// It arrived and is bad: recorded in the ledger as a rejection.
    Rejected { update: [u8; 32], reason: String },
    /// It never arrived (error, timeout, disconnect).
    Dropped(String),
}

/// A valid update from one client.
struct Delivered {
    key: [u8; 32],
    hash: [u8; 32],
    update: Update,
    loss: f32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn clip_reason(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The public key of an ed25519 peer id.
pub fn peer_key(peer: &PeerId) -> Option<[u8; 32]> {
    let pk = libp2p::identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok()?;
    Some(pk.try_into_ed25519().ok()?.to_bytes())
}

/// Fetches the blob `hash` of `len` bytes from `peer` in chunks and checks its hash.
async fn fetch(net: &NetHandle, peer: PeerId, hash: [u8; 32], len: usize) -> Result<Vec<u8>, Miss> {
    if len > MAX_WEIGHTS_BYTES {
        return Err(Miss::Rejected {
            update: hash,
            reason: format!("{len} bytes announced, the limit is {MAX_WEIGHTS_BYTES}"),
        });
    }
    let mut out = Vec::with_capacity(len);
    while out.len() < len || len == 0 {
        let req = FlRequest::Fetch { hash, offset: out.len() as u32 }.encode();
        let bytes = match net.request(Proto::Fl, peer, req).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(Miss::Dropped(format!("fetch failed: {e}"))),
            Err(_) => return Err(Miss::Dropped("the network stopped".into())),
        };
        match FlResponse::decode(&bytes) {
            Ok(FlResponse::Chunk { total, bytes }) => {
                if total as usize != len {
                    return Err(Miss::Rejected {
                        update: hash,
                        reason: format!("blob is {total} bytes, {len} were announced"),
                    });
                }
                if bytes.is_empty() || bytes.len() > CHUNK_BYTES || out.len() + bytes.len() > len {
                    return Err(Miss::Rejected { update: hash, reason: "malformed chunk".into() });
                }
                out.extend_from_slice(&bytes);
            }
            Ok(FlResponse::Error(e)) => return Err(Miss::Dropped(format!("fetch refused: {}", clip_reason(e)))),
            Ok(_) => return Err(Miss::Rejected { update: hash, reason: "unexpected response to a fetch".into() }),
            Err(e) => return Err(Miss::Rejected { update: hash, reason: format!("undecodable chunk: {e}") }),
        }
        if len == 0 {
            break;
        }
    }
    if *blake3::hash(&out).as_bytes() != hash {
        return Err(Miss::Rejected { update: hash, reason: "bytes do not match the announced hash".into() });
    }
    Ok(out)
}

/// Parses and checks an update's safetensors bytes into fixed point.
fn parse_update(bytes: &[u8], examples: u64) -> Result<Update, String> {
    let delta = from_safetensors(bytes)?;
    Ok(Update { values: to_fixed(&delta)?, examples })
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
        out_dir: PathBuf,
        shutdown: CancellationToken,
    ) -> Result<Self, String> {
        let data = match &cfg.data {
            Some(p) => Some(Dataset::load(p)?.split()),
            None => None,
        };
        let poison: Poison = cfg.poison.parse()?;
        if poison != Poison::Honest {
            warn!(mode = cfg.poison, "this node POISONS its federated-learning updates (test mode)");
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
                out_dir,
                blobs: Mutex::default(),
                tasks: Mutex::default(),
                joined: Mutex::default(),
                my_joins: Mutex::default(),
                audits: Mutex::default(),
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

    /// Keeps bytes for peers to fetch by their BLAKE3 hash (returned).
    pub fn put_blob(&self, bytes: Vec<u8>) -> [u8; 32] {
        lock(&self.inner.blobs).put(bytes)
    }

    /// Starts a task owned by this node; returns its id.
    pub fn start(&self, spec: TaskSpec) -> Result<String, String> {
        let agg = spec.validate()?;
        if self.inner.data.is_none() {
            return Err("this node has no [fl] data to score the task on (its test split)".into());
        }
        let task: [u8; 16] = rand::random();
        let id = hex::encode(task);
        let status = TaskStatus {
            task_id: id.clone(),
            state: "running".into(),
            aggregator: agg.to_string(),
            spec: spec.clone(),
            rounds_done: 0,
            accuracy_by_round: Vec::new(),
            loss_by_round: Vec::new(),
            clients_by_round: Vec::new(),
            accepted: BTreeMap::new(),
            rejected: BTreeMap::new(),
            rejected_count: BTreeMap::new(),
            banned: BTreeMap::new(),
            dropped: BTreeMap::new(),
            receipts: 0,
            global_hash: String::new(),
            final_accuracy: None,
            weights: None,
            plot: None,
            secs: 0.0,
            error: None,
        };
        lock(&self.inner.tasks).insert(id.clone(), status);
        lock(&self.inner.joined).insert(task, BTreeMap::new());
        let me = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = me.run(task, spec, agg, started).await;
            me.update(&hex::encode(task), |s| {
                s.secs = started.elapsed().as_secs_f64();
                match result {
                    Ok(()) => s.state = "done".into(),
                    Err(e) => {
                        warn!(task = s.task_id, error = e, "federated task failed");
                        s.state = "failed".into();
                        s.error = Some(e);
                    }
                }
            });
        });
        Ok(id)
    }

    async fn gossip(&self, g: FlGossip) {
        let c = &self.inner;
        let epoch = c.network.epoch_at(crate::unix_time_us() / 1000);
        if let Ok(env) = SignedEnvelope::sign(&c.key, &c.network.id, Kind::Fl, epoch, g.encode())
            && let Ok(Err(e)) = c.net.publish(Kind::Fl, env.encode()).await
        {
            debug!(error = e, "fl gossip not published");
        }
    }

    /// Joined workers that are connected now, in this round's rotation order.
    async fn candidates(&self, task: [u8; 16], round: u32, excluded: &BTreeSet<[u8; 32]>) -> Vec<(PeerId, [u8; 32])> {
        let Ok(snap) = self.inner.net.snapshot().await else { return Vec::new() };
        let connected: BTreeSet<String> = snap.connected.into_iter().map(|c| c.peer_id).collect();
        let joined = lock(&self.inner.joined).get(&task).cloned().unwrap_or_default();
        let mut c: Vec<([u8; 32], PeerId, [u8; 32])> = joined
            .into_iter()
            .filter(|(p, k)| connected.contains(&p.to_string()) && !excluded.contains(k))
            .map(|(p, k)| {
                let mut h = blake3::Hasher::new();
                h.update(&task).update(&round.to_le_bytes()).update(&k);
                (*h.finalize().as_bytes(), p, k)
            })
            .collect();
        c.sort();
        c.into_iter().map(|(_, p, k)| (p, k)).collect()
    }

    async fn run(&self, task: [u8; 16], spec: TaskSpec, agg: Aggregator, started: Instant) -> Result<(), String> {
        let id = hex::encode(task);
        let (_, test) = self.inner.data.clone().ok_or("no data")?;
        let k = spec.clients_per_round as usize;
        // Each worker's recent verdicts (true: rejected); repeat offenders are not asked again.
        let mut history: Recent = BTreeMap::new();
        let mut banned: BTreeSet<[u8; 32]> = BTreeSet::new();
        // Stragglers: late in 2 of their last 3 rounds, they sit out the next few rounds, so a
        // slow worker does not cost every round its full deadline.
        let mut lateness: Recent = BTreeMap::new();
        let mut benched_until: BTreeMap<[u8; 32], u32> = BTreeMap::new();
        let mut benched_times: BTreeMap<[u8; 32], u32> = BTreeMap::new();
        let mut global = model::init(spec.init_seed);
        let (acc0, _) = model::evaluate(&global, &test)?;
        info!(task = id, rounds = spec.rounds, clients = k, aggregator = %agg, initial_accuracy = acc0,
            "federated task started");
        for round in 0..spec.rounds {
            let excluded: BTreeSet<[u8; 32]> = banned
                .iter()
                .copied()
                .chain(benched_until.iter().filter(|(_, until)| **until > round).map(|(k, _)| *k))
                .collect();
            let global_bytes = to_safetensors(&global)?;
            let global_len = global_bytes.len() as u32;
            let global_hash = self.put_blob(global_bytes);
            let mut delivered: Vec<Delivered> = Vec::new();
            let mut misses: Vec<([u8; 32], PeerId, Miss)> = Vec::new();
            let mut late: Vec<[u8; 32]> = Vec::new();
            let mut attempt = 0;
            loop {
                if self.inner.shutdown.is_cancelled() {
                    return Err("the node is shutting down".into());
                }
                self.gossip(FlGossip::Task { task, round, spec: spec.clone() }).await;
                let waiting = Instant::now();
                let mut cands = self.candidates(task, round, &excluded).await;
                // Round 0 also gives workers that are still joining a moment to arrive.
                while cands.len() < spec.min_clients as usize
                    || (round == 0 && cands.len() < k && waiting.elapsed() < JOIN_GRACE)
                {
                    if waiting.elapsed() > NO_CLIENTS_TIMEOUT {
                        return Err(format!(
                            "round {round}: {} joined worker(s) connected, {} needed, after {NO_CLIENTS_TIMEOUT:?}",
                            cands.len(),
                            spec.min_clients
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if waiting.elapsed().as_millis() % 3000 < 300 {
                        self.gossip(FlGossip::Task { task, round, spec: spec.clone() }).await;
                    }
                    cands = self.candidates(task, round, &excluded).await;
                }
                cands.truncate(spec.selected_per_round());
                let mut futs = FuturesUnordered::new();
                let mut outstanding: BTreeMap<PeerId, [u8; 32]> = cands.iter().copied().collect();
                for (peer, key) in cands {
                    let req =
                        FlRequest::Train { task, round, spec: spec.clone(), global: global_hash, len: global_len };
                    let net = self.inner.net.clone();
                    futs.push(async move { (peer, key, client(&net, peer, req.encode()).await) });
                }
                let deadline = tokio::time::Instant::now() + Duration::from_millis(spec.deadline_ms);
                loop {
                    match tokio::time::timeout_at(deadline, futs.next()).await {
                        Ok(Some((peer, key, Ok((bytes, update, loss))))) => {
                            outstanding.remove(&peer);
                            // Kept so that auditors can fetch every input from the owner.
                            let hash = self.put_blob(bytes);
                            delivered.push(Delivered { key, hash, update, loss });
                            if delivered.len() >= k {
                                break;
                            }
                        }
                        Ok(Some((peer, key, Err(m)))) => {
                            outstanding.remove(&peer);
                            misses.push((key, peer, m));
                        }
                        Ok(None) => break,
                        Err(_) => {
                            // The deadline passed: whoever is still out is late.
                            late.extend(outstanding.values().copied());
                            break;
                        }
                    }
                }
                // Whoever is still out missed the deadline, or was not needed any more.
                drop(futs);
                for (peer, key) in outstanding {
                    misses.push((key, peer, Miss::Dropped("still out when the round closed".into())));
                }
                if delivered.len() >= spec.min_clients as usize {
                    break;
                }
                attempt += 1;
                warn!(task = id, round, valid = delivered.len(), attempt, "too few valid updates; retrying the round");
                if attempt >= ROUND_ATTEMPTS {
                    return Err(format!("round {round}: too few valid updates after {attempt} attempts"));
                }
                delivered.clear();
            }
            // Aggregate, sorted by worker key so the inputs have one order everywhere.
            delivered.sort_by_key(|d| d.key);
            let updates: Vec<Update> = delivered.iter().map(|d| d.update.clone()).collect();
            let (next, screened) = next_global(&global, &updates, agg, spec.clip)?;
            let (acc, loss) = model::evaluate(&next, &test)?;
            let next_bytes = to_safetensors(&next)?;
            let next_hash = self.put_blob(next_bytes);
            global = next;
            let mut rejected: Vec<([u8; 32], String)> = Vec::new();
            let mut receipts = Vec::new();
            for (i, d) in delivered.iter().enumerate() {
                let reason = screened.rejected.iter().find(|(r, _)| *r == i).map(|(_, why)| clip_reason(why.clone()));
                if let Some(r) = &reason {
                    rejected.push((d.key, r.clone()));
                }
                receipts.push(FlReceipt {
                    task,
                    round,
                    worker: d.key,
                    update: d.hash,
                    accepted: reason.is_none(),
                    work_units: if reason.is_none() {
                        work_units(d.update.examples, spec.local_epochs, EXAMPLE_CAP)
                    } else {
                        0
                    },
                    reason: reason.unwrap_or_default(),
                });
            }
            for (key, _, m) in &misses {
                if let Miss::Rejected { update, reason } = m {
                    rejected.push((*key, clip_reason(reason.clone())));
                    receipts.push(FlReceipt {
                        task,
                        round,
                        worker: *key,
                        update: *update,
                        accepted: false,
                        work_units: 0,
                        reason: clip_reason(reason.clone()),
                    });
                }
            }
            let mut newly_banned = Vec::new();
            for r in &receipts {
                if note(&mut history, r.worker, !r.accepted, BAN_WINDOW) >= BAN_STRIKES && banned.insert(r.worker) {
                    newly_banned.push(r.worker);
                }
            }
            for (key, was_late) in delivered.iter().map(|d| (d.key, false)).chain(late.iter().map(|k| (*k, true))) {
                if note(&mut lateness, key, was_late, LATE_WINDOW) >= LATE_STRIKES {
                    lateness.remove(&key);
                    let times = benched_times.entry(key).or_insert(0u32);
                    let sit_out = (STRAGGLER_BENCH_ROUNDS << (*times).min(3)).min(spec.rounds);
                    *times += 1;
                    benched_until.insert(key, round + 1 + sit_out);
                    debug!(task = id, round, worker = hex::encode(&key[..4]), sit_out, "straggler sits out");
                }
            }
            let mut wrote = 0;
            for r in receipts {
                let c = &self.inner;
                match c.ledger.append_and_gossip(&c.net, &c.key, &c.network, EntryKind::FlReceipt, r.encode()).await {
                    Ok(_) => wrote += 1,
                    Err(e) => warn!(error = %e, "cannot write an FL receipt"),
                }
            }
            let result = RoundResult {
                task,
                round,
                prev: global_hash,
                global: next_hash,
                inputs: delivered
                    .iter()
                    .map(|d| RoundInput { worker: d.key, update: d.hash, examples: d.update.examples })
                    .collect(),
                rejected: rejected.clone(),
                accuracy_milli: (acc * 1000.0).round() as u32,
            };
            self.gossip(FlGossip::Round(result)).await;
            let mean_client_loss = delivered.iter().map(|d| d.loss).sum::<f32>() / delivered.len().max(1) as f32;
            info!(
                task = id,
                round,
                accuracy = acc,
                loss,
                client_loss = mean_client_loss,
                clients = delivered.len(),
                rejected = rejected.len(),
                dropped = misses.iter().filter(|m| matches!(m.2, Miss::Dropped(_))).count(),
                "federated round done"
            );
            self.update(&id, |s| {
                s.rounds_done = round + 1;
                s.accuracy_by_round.push(acc);
                s.loss_by_round.push(loss);
                s.clients_by_round.push(delivered.len());
                s.receipts += wrote;
                s.global_hash = hex::encode(next_hash);
                s.secs = started.elapsed().as_secs_f64();
                for (i, d) in delivered.iter().enumerate() {
                    if !screened.rejected.iter().any(|(r, _)| *r == i)
                        && let Some(p) = author_peer_id(&d.key)
                    {
                        *s.accepted.entry(p.to_string()).or_default() += 1;
                    }
                }
                for key in &newly_banned {
                    if let Some(p) = author_peer_id(key) {
                        warn!(task = id, round, worker = %p, "worker excluded from the task: rejected {BAN_STRIKES} times in its last {BAN_WINDOW} updates");
                        s.banned.insert(
                            p.to_string(),
                            format!("round {round}: rejected {BAN_STRIKES} times in its last {BAN_WINDOW} updates"),
                        );
                    }
                }
                for (key, why) in &rejected {
                    if let Some(p) = author_peer_id(key) {
                        *s.rejected_count.entry(p.to_string()).or_default() += 1;
                        let v = s.rejected.entry(p.to_string()).or_default();
                        v.push(format!("round {round}: {why}"));
                        if v.len() > 8 {
                            v.remove(0);
                        }
                    }
                }
                for (_, peer, m) in &misses {
                    if matches!(m, Miss::Dropped(_)) {
                        *s.dropped.entry(peer.to_string()).or_default() += 1;
                    }
                }
            });
        }
        // Outputs: final weights and the accuracy plot.
        let dir = self.inner.out_dir.join(&id);
        let bytes = to_safetensors(&global)?;
        let status = self.get(&id).ok_or("task vanished")?;
        let accs = status.accuracy_by_round.clone();
        let final_acc = accs.last().copied();
        let d2 = dir.clone();
        let (weights, plot) = tokio::task::spawn_blocking(move || -> Result<(PathBuf, PathBuf), String> {
            std::fs::create_dir_all(&d2).map_err(|e| format!("{}: {e}", d2.display()))?;
            let w = d2.join("final.safetensors");
            std::fs::write(&w, &bytes).map_err(|e| format!("{}: {e}", w.display()))?;
            let p = d2.join("accuracy.png");
            ifx_protocols::fl::plot::accuracy_png(&accs, 0.95, &p)?;
            Ok((w, p))
        })
        .await
        .map_err(|e| e.to_string())??;
        info!(task = id, final_accuracy = final_acc, weights = %weights.display(), plot = %plot.display(),
            secs = started.elapsed().as_secs_f64(), "federated task done");
        self.update(&id, |s| {
            s.final_accuracy = final_acc;
            s.weights = Some(weights.display().to_string());
            s.plot = Some(plot.display().to_string());
        });
        Ok(())
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
                if c.data.is_none() || c.role != Role::Worker || lock(&c.my_joins).contains(&task) {
                    return;
                }
                // Mark first, so a burst of announcements sends one join.
                lock(&c.my_joins).insert(task);
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
                let me = self.clone();
                tokio::spawn(async move {
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
                            debug!(error = e, "audit not possible");
                            a.failed += 1;
                            a.last_error = Some(e);
                        }
                    }
                });
            }
        }
    }

    /// Recomputes an announced round from the owner's blobs; true if the weights match.
    async fn audit(&self, owner: PeerId, r: &RoundResult) -> Result<bool, String> {
        let net = &self.inner.net;
        let miss = |m: Miss| match m {
            Miss::Rejected { reason, .. } | Miss::Dropped(reason) => reason,
        };
        // The spec is needed for the aggregator: it came with the task announcements, but the
        // owner may have started before we listened; ask for nothing more than the round lists.
        let spec = self.spec_of(owner, r.task).await?;
        let agg = spec.validate()?;
        let prev = fetch_any(net, owner, r.prev).await.map_err(miss)?;
        let prev = from_safetensors(&prev)?;
        let mut updates = Vec::with_capacity(r.inputs.len());
        for i in &r.inputs {
            let b = fetch_any(net, owner, i.update).await.map_err(miss)?;
            updates.push(parse_update(&b, i.examples)?);
        }
        let (next, _) = next_global(&prev, &updates, agg, spec.clip)?;
        Ok(*blake3::hash(&to_safetensors(&next)?).as_bytes() == r.global)
    }

    async fn spec_of(&self, owner: PeerId, task: [u8; 16]) -> Result<TaskSpec, String> {
        let req = FlRequest::Spec { task }.encode();
        match self.inner.net.request(Proto::Fl, owner, req).await {
            Ok(Ok(b)) => match FlResponse::decode(&b)? {
                FlResponse::Spec(s) => Ok(s),
                FlResponse::Error(e) => Err(e),
                _ => Err("unexpected response".into()),
            },
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the network stopped".into()),
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
                    debug!(peer = %req.peer, error = e, "malformed fl request");
                    self.inner.net.respond(Proto::Fl, req.channel, FlResponse::Error(clip_reason(e)).encode()).await;
                    continue;
                }
            };
            match msg {
                FlRequest::Train { task, round, spec, global, len } => {
                    // Training takes a while: answer from a task of its own.
                    let me = self.clone();
                    tokio::spawn(async move {
                        let resp = me.train(req.peer, task, round, spec, global, len).await.unwrap_or_else(|e| {
                            warn!(task = hex::encode(task), round, error = e, "cannot train");
                            FlResponse::Error(clip_reason(e))
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
            FlRequest::Fetch { hash, offset } => match lock(&self.inner.blobs).by_hash.get(&hash) {
                Some(b) => {
                    let start = (offset as usize).min(b.len());
                    let end = (start + CHUNK_BYTES).min(b.len());
                    FlResponse::Chunk { total: b.len() as u32, bytes: b[start..end].to_vec() }
                }
                None => FlResponse::Error("unknown blob".into()),
            },
            FlRequest::Spec { task } => match self.get(&hex::encode(task)) {
                Some(s) => FlResponse::Spec(s.spec),
                None => FlResponse::Error("unknown task".into()),
            },
            FlRequest::Train { .. } => FlResponse::Error("unexpected".into()),
        }
    }

    /// Fetches the weights, trains on this node's shard and keeps the (possibly poisoned) update.
    async fn train(
        &self,
        owner: PeerId,
        task: [u8; 16],
        round: u32,
        spec: TaskSpec,
        global: [u8; 32],
        len: u32,
    ) -> Result<FlResponse, String> {
        let c = &self.inner;
        let (train, _) = c.data.clone().ok_or("this node has no [fl] data")?;
        spec.validate()?;
        let miss = |m: Miss| match m {
            Miss::Rejected { reason, .. } | Miss::Dropped(reason) => reason,
        };
        let bytes = fetch(&c.net, owner, global, len as usize).await.map_err(miss)?;
        let weights = from_safetensors(&bytes)?;
        let shard = c.shard;
        let poison = c.poison;
        let deadline = Duration::from_millis(spec.deadline_ms);
        let (delta, loss, examples) = tokio::task::spawn_blocking(move || -> Result<(Vec<f32>, f32, u64), String> {
            crate::faults::slow_work();
            let data = match shard {
                Some(i) => {
                    let d = &spec.data;
                    if i >= d.shards {
                        return Err(format!("fl.shard {i} is beyond the task's {} shards", d.shards));
                    }
                    train.non_iid(d.shards as usize, d.alpha, d.seed).swap_remove(i as usize)
                }
                None => train,
            };
            let cfg = TrainConfig {
                epochs: spec.local_epochs as usize,
                batch: spec.batch as usize,
                lr: spec.lr_at(round),
                seed: u64::from_le_bytes(task[..8].try_into().expect("8 bytes")) ^ (round as u64) << 32,
            };
            let (local, loss) = model::train(&weights, &data, &cfg)?;
            let delta = local.iter().zip(&weights).map(|(l, g)| l - g).collect();
            Ok((delta, loss, data.len() as u64))
        })
        .await
        .map_err(|e| e.to_string())??;
        if poison == Poison::Slow {
            tokio::time::sleep(deadline + Duration::from_millis(500)).await;
        }
        let update = poisoned(poison, delta, round)?;
        let len = update.len() as u32;
        let hash = self.put_blob(update);
        debug!(task = hex::encode(task), round, loss, examples, "update ready");
        Ok(FlResponse::Trained { update: hash, len, examples, loss })
    }
}

/// Fetches the blob `hash` from `peer` in chunks (at most [`MAX_WEIGHTS_BYTES`]), checking
/// its hash: what task owners, clients and auditors do to move weights and updates.
pub async fn fetch_blob(net: &NetHandle, peer: PeerId, hash: [u8; 32]) -> Result<Vec<u8>, String> {
    fetch_any(net, peer, hash).await.map_err(|m| match m {
        Miss::Rejected { reason, .. } | Miss::Dropped(reason) => reason,
    })
}

/// Fetches a blob whose length is not known in advance (the first chunk tells it).
async fn fetch_any(net: &NetHandle, peer: PeerId, hash: [u8; 32]) -> Result<Vec<u8>, Miss> {
    let req = FlRequest::Fetch { hash, offset: 0 }.encode();
    let total = match net.request(Proto::Fl, peer, req).await {
        Ok(Ok(b)) => match FlResponse::decode(&b) {
            Ok(FlResponse::Chunk { total, .. }) => total as usize,
            Ok(FlResponse::Error(e)) => return Err(Miss::Dropped(e)),
            _ => return Err(Miss::Dropped("unexpected response to a fetch".into())),
        },
        Ok(Err(e)) => return Err(Miss::Dropped(e)),
        Err(_) => return Err(Miss::Dropped("the network stopped".into())),
    };
    fetch(net, peer, hash, total).await
}

/// One selected client's part of a round, from the owner's side.
async fn client(net: &NetHandle, peer: PeerId, req: Vec<u8>) -> Result<(Vec<u8>, Update, f32), Miss> {
    let bytes = match net.request(Proto::Fl, peer, req).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(Miss::Dropped(e)),
        Err(_) => return Err(Miss::Dropped("the network stopped".into())),
    };
    match FlResponse::decode(&bytes) {
        Ok(FlResponse::Trained { update, len, examples, loss }) => {
            let b = fetch(net, peer, update, len as usize).await?;
            let u = parse_update(&b, examples).map_err(|reason| Miss::Rejected { update, reason })?;
            Ok((b, u, loss))
        }
        Ok(FlResponse::Error(e)) => Err(Miss::Dropped(format!("client error: {}", clip_reason(e)))),
        Ok(_) => Err(Miss::Rejected { update: [0; 32], reason: "unexpected response to a train request".into() }),
        Err(e) => Err(Miss::Rejected { update: [0; 32], reason: format!("undecodable response: {e}") }),
    }
}

/// The bytes a worker in `poison` mode sends for an honest `delta`.
fn poisoned(poison: Poison, mut delta: Vec<f32>, round: u32) -> Result<Vec<u8>, String> {
    match poison {
        Poison::Honest | Poison::Slow => {}
        Poison::SignFlip => delta.iter_mut().for_each(|d| *d *= -4.0),
        Poison::Scale => delta.iter_mut().for_each(|d| *d *= 25.0),
        Poison::Random => {
            let mut rng = Rng(0x9e37_79b9 ^ round as u64);
            delta.iter_mut().for_each(|d| *d = rng.normal() as f32);
        }
        Poison::Nan => delta[7] = f32::NAN,
        Poison::Shape => {
            let w = vec![0u8; 4 * 63 * 64];
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![63, 64], &w)
                .map_err(|e| e.to_string())?;
            return safetensors::serialize([("w1", v)], None).map_err(|e| e.to_string());
        }
    }
    to_safetensors(&delta)
}
