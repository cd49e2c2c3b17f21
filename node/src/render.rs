//! Distributed render jobs. A job owner (the node a job is submitted to) splits the image into
//! tiles, asks worker peers (role worker in the heartbeat table, connected) for them over
//! request-response, two tiles in flight per worker, re-queues a tile whose worker fails or
//! times out, assembles the PNG, and signs a render receipt into the ledger for every tile it
//! accepts. Workers render what they are asked with their best backend.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bincode::{Decode, Encode};
use ed25519_dalek::SigningKey;
use futures::stream::{FuturesUnordered, StreamExt};
use ifx_protocols::codec::encode;
use ifx_protocols::ledger::{EntryKind, RenderReceipt};
use ifx_protocols::render::{Backend, Image, RenderSettings, Renderer, Tile, builtin, load};
use ifx_protocols::{NetworkConfig, PeerTable, Role};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ledger::LedgerHandle;
use crate::network::{InboundRequest, NetHandle, Proto, author_peer_id};

/// Largest tile side a distributed job may use.
pub const MAX_TILE: u32 = 256;
/// Largest tile response (256 x 256 pixels x 12 bytes, plus framing).
pub const MAX_TILE_RESPONSE: usize = (MAX_TILE * MAX_TILE * 12) as usize + 1024;
/// A worker that does not answer a tile within this is given up on (the tile is re-assigned).
pub const TILE_TIMEOUT: Duration = Duration::from_secs(60);
/// Tiles in flight per worker.
const IN_FLIGHT: usize = 2;
/// A job fails when it has had no worker for this long.
const NO_WORKER_TIMEOUT: Duration = Duration::from_secs(60);
/// A worker that failed a tile gets no new tile for this long.
const BENCH: Duration = Duration::from_secs(10);

/// What to render (the body of `POST /jobs`).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct JobSpec {
    /// A built-in scene name; ignored when `scene_toml` is given.
    #[serde(default = "default_scene")]
    pub scene: String,
    /// An inline TOML scene (no mesh files).
    #[serde(default)]
    pub scene_toml: Option<String>,
    pub width: u32,
    pub height: u32,
    pub spp: u32,
    #[serde(default = "default_bounces")]
    pub max_bounces: u32,
    #[serde(default = "default_tile")]
    pub tile: u32,
}

fn default_scene() -> String {
    "cornell".into()
}
fn default_bounces() -> u32 {
    6
}
fn default_tile() -> u32 {
    32
}

impl JobSpec {
    /// The render settings.
    pub fn settings(&self) -> RenderSettings {
        RenderSettings {
            width: self.width,
            height: self.height,
            spp: self.spp,
            max_bounces: self.max_bounces,
            tile: self.tile,
        }
    }

    /// Checks the spec and builds its scene.
    pub fn scene(&self) -> Result<ifx_protocols::render::Scene, String> {
        self.settings().validate().map_err(|e| e.to_string())?;
        if self.tile > MAX_TILE {
            return Err(format!("tile {} exceeds {MAX_TILE} for distributed jobs", self.tile));
        }
        match &self.scene_toml {
            Some(t) => load::parse_inline_toml(t),
            None => builtin::by_name(&self.scene),
        }
        .map_err(|e| e.to_string())
    }
}

#[derive(Encode, Decode)]
struct TileRequest {
    job: [u8; 16],
    spec: JobSpec,
    tile: [u32; 4],
}

#[derive(Encode, Decode)]
struct TileResponse {
    /// Linear RGB f32, little-endian, row-major; empty on error.
    pixels: Vec<u8>,
    error: String,
}

fn decode<T: Decode<()>>(b: &[u8]) -> Result<T, String> {
    ifx_protocols::codec::decode::<T, MAX_TILE_RESPONSE>(b)
}

/// The state of a job, as `GET /jobs/{id}` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    pub job_id: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub spec: JobSpec,
    pub tiles: usize,
    pub tiles_done: usize,
    /// Accepted tiles per worker peer id.
    pub tiles_by_worker: BTreeMap<String, u64>,
    /// Tiles given to another worker after a failure or timeout.
    pub reassigned: u64,
    /// Render receipts written to the ledger.
    pub receipts: u64,
    pub secs: f64,
    pub png: Option<String>,
    pub error: Option<String>,
}

/// The jobs this node owns.
#[derive(Clone)]
pub struct Jobs {
    jobs: Arc<Mutex<BTreeMap<String, JobStatus>>>,
    ctx: Arc<JobContext>,
}

struct JobContext {
    net: NetHandle,
    heartbeats: Arc<Mutex<PeerTable>>,
    ledger: LedgerHandle,
    key: SigningKey,
    network: NetworkConfig,
    out_dir: PathBuf,
    shutdown: CancellationToken,
}

impl Jobs {
    /// A job manager writing PNGs to `out_dir`.
    pub fn new(
        net: NetHandle,
        heartbeats: Arc<Mutex<PeerTable>>,
        ledger: LedgerHandle,
        key: SigningKey,
        network: NetworkConfig,
        out_dir: PathBuf,
        shutdown: CancellationToken,
    ) -> Self {
        let ctx = JobContext { net, heartbeats, ledger, key, network, out_dir, shutdown };
        Self { jobs: Arc::new(Mutex::new(BTreeMap::new())), ctx: Arc::new(ctx) }
    }

    /// Starts a job; returns its id.
    pub fn submit(&self, spec: JobSpec) -> Result<String, String> {
        spec.scene()?;
        let job: [u8; 16] = rand::random();
        let id = hex::encode(job);
        let status = JobStatus {
            job_id: id.clone(),
            state: "running".into(),
            tiles: spec.settings().tiles().len(),
            spec: spec.clone(),
            tiles_done: 0,
            tiles_by_worker: BTreeMap::new(),
            reassigned: 0,
            receipts: 0,
            secs: 0.0,
            png: None,
            error: None,
        };
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), status);
        let me = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = me.run(job, spec, started).await;
            me.update(&hex::encode(job), |s| {
                s.secs = started.elapsed().as_secs_f64();
                match result {
                    Ok(png) => {
                        s.state = "done".into();
                        s.png = Some(png.display().to_string());
                    }
                    Err(e) => {
                        s.state = "failed".into();
                        s.error = Some(e);
                    }
                }
            });
        });
        Ok(id)
    }

    /// A job's status.
    pub fn get(&self, id: &str) -> Option<JobStatus> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// Every job's status.
    pub fn list(&self) -> Vec<JobStatus> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut JobStatus)) {
        if let Some(s) = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
            f(s);
        }
    }

    /// Connected workers from the heartbeat table: (peer id, public key).
    async fn workers(&self) -> Vec<(PeerId, [u8; 32])> {
        let Ok(snap) = self.ctx.net.snapshot().await else { return Vec::new() };
        let connected: std::collections::BTreeSet<String> = snap.connected.into_iter().map(|c| c.peer_id).collect();
        let table = self.ctx.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        table
            .iter()
            .filter(|(_, r)| r.role == Role::Worker)
            .filter_map(|(k, _)| author_peer_id(k).map(|p| (p, *k)))
            .filter(|(p, _)| connected.contains(&p.to_string()))
            .collect()
    }

    async fn run(&self, job: [u8; 16], spec: JobSpec, started: Instant) -> Result<PathBuf, String> {
        let id = hex::encode(job);
        let s = spec.settings();
        let tiles = s.tiles();
        info!(job = id, tiles = tiles.len(), width = s.width, height = s.height, spp = s.spp, "render job started");
        let mut queue: VecDeque<usize> = (0..tiles.len()).collect();
        let mut img = Image::new(s.width, s.height);
        let mut busy: HashMap<PeerId, usize> = HashMap::new();
        let mut benched: HashMap<PeerId, Instant> = HashMap::new();
        let mut inflight = FuturesUnordered::new();
        let mut done = 0;
        let mut last_worker_seen = Instant::now();
        while done < tiles.len() {
            if self.ctx.shutdown.is_cancelled() {
                return Err("the node is shutting down".into());
            }
            // Hand out tiles to free workers.
            if !queue.is_empty() {
                let workers = self.workers().await;
                if !workers.is_empty() {
                    last_worker_seen = Instant::now();
                }
                for (peer, key) in workers {
                    if benched.get(&peer).is_some_and(|t| t.elapsed() < BENCH) {
                        continue;
                    }
                    while busy.get(&peer).copied().unwrap_or(0) < IN_FLIGHT {
                        let Some(i) = queue.pop_front() else { break };
                        *busy.entry(peer).or_default() += 1;
                        let t = tiles[i];
                        let req = encode(&TileRequest { job, spec: spec.clone(), tile: [t.x, t.y, t.w, t.h] });
                        let net = self.ctx.net.clone();
                        inflight.push(async move { (peer, key, i, net.request(Proto::Render, peer, req).await) });
                    }
                }
                if inflight.is_empty() {
                    if last_worker_seen.elapsed() > NO_WORKER_TIMEOUT {
                        return Err(format!("no worker for {NO_WORKER_TIMEOUT:?}"));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            let next = tokio::select! {
                n = inflight.next() => n,
                _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
            };
            let Some((peer, key, i, result)) = next else { continue };
            *busy.entry(peer).or_default() -= 1;
            let t = tiles[i];
            let pixels = match result {
                Ok(Ok(bytes)) => check_tile(&bytes, t),
                Ok(Err(e)) => Err(e),
                Err(_) => return Err("the network stopped".into()),
            };
            match pixels {
                Ok(px) => {
                    img.put(t, &px);
                    done += 1;
                    let receipt = RenderReceipt { job, tile: i as u32, worker: key, work_units: s.work_units(t) };
                    let wrote = self.receipt(receipt).await;
                    self.update(&id, |st| {
                        st.tiles_done = done;
                        *st.tiles_by_worker.entry(peer.to_string()).or_default() += 1;
                        st.receipts += wrote as u64;
                        st.secs = started.elapsed().as_secs_f64();
                    });
                }
                Err(e) => {
                    warn!(job = id, %peer, tile = i, error = e, "tile failed; re-assigning it");
                    benched.insert(peer, Instant::now());
                    queue.push_front(i);
                    self.update(&id, |st| st.reassigned += 1);
                }
            }
        }
        std::fs::create_dir_all(&self.ctx.out_dir).map_err(|e| e.to_string())?;
        let path = self.ctx.out_dir.join(format!("{id}.png"));
        let save = img.clone();
        let p = path.clone();
        tokio::task::spawn_blocking(move || save.save_png(&p))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        info!(job = id, png = %path.display(), secs = started.elapsed().as_secs_f64(), "render job done");
        Ok(path)
    }

    /// Appends and gossips a receipt; false if it could not be stored.
    async fn receipt(&self, r: RenderReceipt) -> bool {
        let c = &self.ctx;
        match c.ledger.append_and_gossip(&c.net, &c.key, &c.network, EntryKind::RenderReceipt, r.encode()).await {
            Ok(_) => true,
            Err(e) => {
                warn!(error = %e, "cannot write a render receipt");
                false
            }
        }
    }
}

/// Decodes a tile response and checks its size and values.
fn check_tile(bytes: &[u8], t: Tile) -> Result<Vec<[f32; 3]>, String> {
    let r: TileResponse = decode(bytes)?;
    if !r.error.is_empty() {
        return Err(format!("worker error: {}", r.error));
    }
    let n = t.w as usize * t.h as usize;
    if r.pixels.len() != n * 12 {
        return Err(format!("tile has {} bytes, expected {}", r.pixels.len(), n * 12));
    }
    let px: Vec<[f32; 3]> = r
        .pixels
        .chunks_exact(12)
        .map(|c| {
            let f = |i: usize| f32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            [f(0), f(4), f(8)]
        })
        .collect();
    if px.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
        return Err("tile has negative or non-finite values".into());
    }
    Ok(px)
}

/// Renders tiles for peers until `shutdown`; keeps the renderer of the last job.
pub async fn serve(
    mut inbound: mpsc::Receiver<InboundRequest>,
    net: NetHandle,
    backend: Backend,
    shutdown: CancellationToken,
) {
    let mut cached: Option<([u8; 16], Arc<Renderer>)> = None;
    loop {
        let req = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = inbound.recv() => match r { Some(r) => r, None => return },
        };
        let resp = match decode::<TileRequest>(&req.data) {
            Ok(tr) => {
                let renderer = match &cached {
                    Some((job, r)) if *job == tr.job => Ok(r.clone()),
                    _ => {
                        let spec = tr.spec.clone();
                        tokio::task::spawn_blocking(move || {
                            let scene = spec.scene()?;
                            Renderer::new(&scene, &spec.settings(), backend).map_err(|e| e.to_string())
                        })
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r)
                        .map(|r| {
                            info!(job = hex::encode(tr.job), backend = r.describe(), "rendering tiles for a job");
                            let r = Arc::new(r);
                            cached = Some((tr.job, r.clone()));
                            r
                        })
                    }
                };
                match renderer {
                    Ok(r) => {
                        let s = tr.spec.settings();
                        let [x, y, w, h] = tr.tile;
                        let t = Tile { x, y, w, h };
                        match tokio::task::spawn_blocking(move || {
                            crate::faults::slow_work();
                            r.render_tile(&s, t)
                        })
                        .await
                        {
                            Ok(Ok(px)) => TileResponse {
                                pixels: px.iter().flatten().flat_map(|v| v.to_le_bytes()).collect(),
                                error: String::new(),
                            },
                            Ok(Err(e)) => TileResponse { pixels: Vec::new(), error: e.to_string() },
                            Err(e) => TileResponse { pixels: Vec::new(), error: e.to_string() },
                        }
                    }
                    Err(e) => TileResponse { pixels: Vec::new(), error: e },
                }
            }
            Err(e) => {
                debug!(peer = %req.peer, error = e, "malformed tile request");
                continue;
            }
        };
        net.respond(Proto::Render, req.channel, encode(&resp)).await;
    }
}
