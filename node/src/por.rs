//! Proof of Rendering on the network. Verifiers challenge random worker peers at random times:
//! a scene carrying a fresh secret ANGV watermark goes out over request-response; the worker
//! renders it and answers with the image and a Merkle root; the verifier then asks for the
//! sub-tiles the root selects, checks the imprints and the openings, re-renders those
//! sub-tiles, and records the verdict, the latency and any timeout (a QoS failure, not a PoR
//! failure). Workers can be started in a cheat mode for tests and the testnet.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bincode::{Decode, Encode};
use ifx_protocols::codec::encode;
use ifx_protocols::por::cheat::{self, CheatMode};
use ifx_protocols::por::{self, AngvParams, Answer, Opening, SPOT_CHECKS, angv, spot};
use ifx_protocols::render::gpu::GpuRenderer;
use ifx_protocols::render::{Backend, RenderSettings, Renderer, Scene, builtin, render_image};
use ifx_protocols::{PeerTable, Role};
use libp2p::PeerId;
use rand::Rng;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::network::{InboundRequest, NetHandle, Proto, author_peer_id};

/// Largest answer (a 256x256 image, or openings).
pub const MAX_ANSWER: usize = 256 * 256 * 3 + 65_536;
/// The challenge image.
pub const CHALLENGE: RenderSettings = RenderSettings { width: 128, height: 128, spp: 8, max_bounces: 4, tile: 128 };
/// Challenges a worker keeps open for their second round.
const OPEN_CHALLENGES: usize = 16;

#[derive(Encode, Decode)]
enum Request {
    Render {
        id: [u8; 16],
        scene: Vec<u8>,
        settings: [u32; 5],
    },
    Open {
        id: [u8; 16],
        indices: Vec<u32>,
    },
    Bench {
        seed: u64,
    },
    /// Answered at once: the verifier times it just before a benchmark, so that delays of the
    /// path (a loaded machine, a slow link) are not counted as compute time.
    Echo,
}

#[derive(Encode, Decode)]
enum Response {
    Committed { root: [u8; 32], rgb8: Vec<u8>, render_us: u64 },
    Opened { openings: Vec<(u32, Vec<u8>, Vec<[u8; 32]>)> },
    Benched { rows: Vec<[u8; 32]>, claimed_us: u64 },
    Refused(String),
    Echo,
}

/// How a node answers challenges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Fakes rendered images.
    Image(CheatMode),
    /// Computes benchmarks but claims a tenth of the time it took.
    ForgedTime,
    /// Answers every challenge honestly but [`LATE`] too late.
    Late,
}

/// How long a `late` node sleeps before answering.
pub const LATE: Duration = Duration::from_secs(5);

impl std::str::FromStr for Behaviour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Ok(Behaviour::Honest),
            "forged-time" => Ok(Behaviour::ForgedTime),
            "late" => Ok(Behaviour::Late),
            m => m.parse().map(Behaviour::Image).map_err(|e| format!("{e} (or forged-time)")),
        }
    }
}

/// Every cheat mode name a node accepts.
pub const CHEATS: [&str; 8] =
    ["constant", "white-noise", "old-tile", "quarter-res", "no-watermark", "fake-25", "forged-time", "late"];

fn decode<T: Decode<()>>(b: &[u8]) -> Result<T, String> {
    ifx_protocols::codec::decode::<T, { ifx_protocols::render::scene::MAX_WIRE_SCENE + 65_536 }>(b)
}

fn settings_of(s: [u32; 5]) -> Result<RenderSettings, String> {
    let r = RenderSettings { width: s[0], height: s[1], spp: s[2], max_bounces: s[3], tile: s[4] };
    r.validate().map_err(|e| e.to_string())?;
    if r.width > 256 || r.height > 256 {
        return Err("challenges are at most 256x256".into());
    }
    Ok(r)
}

/// The GPU device of this process, opened on first use and shared by every renderer in it: a
/// machine has one GPU however many nodes an in-process testnet runs on it.
static DEVICE: Mutex<Option<Arc<GpuRenderer>>> = Mutex::new(None);
/// The benchmark kernel's device, likewise.
static BENCH_DEVICE: Mutex<Option<Arc<ifx_protocols::por::ib::GpuBench>>> = Mutex::new(None);

/// Renders with the node's backend on the process's GPU device.
#[derive(Clone)]
pub struct LocalRenderer {
    backend: Backend,
}

impl LocalRenderer {
    /// A renderer for `backend` (`Auto` uses a GPU adapter when one opens).
    pub fn new(backend: Backend) -> Self {
        Self { backend }
    }

    /// Runs the IB benchmark (GPU kernel when the backend allows one, else the CPU twin).
    pub fn bench(&self, b: &ifx_protocols::por::ib::Bench) -> Result<Vec<[u8; 32]>, String> {
        if self.backend != Backend::Cpu {
            let device = {
                let mut dev = BENCH_DEVICE.lock().unwrap_or_else(|e| e.into_inner());
                if dev.is_none()
                    && let Ok(g) = ifx_protocols::por::ib::GpuBench::new()
                {
                    *dev = Some(Arc::new(g));
                }
                dev.clone()
            };
            // Not under the lock: other benchmarks share the device.
            if let Some(g) = device {
                return g.rows(b).map_err(|e| e.to_string());
            }
        }
        Ok(b.cpu_rows())
    }

    /// Renders a whole image (blocking).
    pub fn render(&self, scene: &Scene, s: &RenderSettings) -> Result<Vec<u8>, String> {
        let r = self.renderer(scene, s)?;
        Ok(render_image(&r, s, |_, _| {}).map_err(|e| e.to_string())?.to_rgb8())
    }

    fn renderer(&self, scene: &Scene, s: &RenderSettings) -> Result<Renderer, String> {
        if self.backend != Backend::Cpu {
            let mut dev = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
            if dev.is_none() {
                match GpuRenderer::new() {
                    Ok(g) => *dev = Some(Arc::new(g)),
                    Err(e) if self.backend == Backend::Gpu => return Err(e.to_string()),
                    Err(_) => {}
                }
            }
            if let Some(g) = dev.clone() {
                return Renderer::on_device(g, scene, s).map_err(|e| e.to_string());
            }
        }
        Renderer::new(scene, s, Backend::Cpu).map_err(|e| e.to_string())
    }
}

/// Challenges a worker answered and may be asked to open, by id.
type OpenChallenges = HashMap<[u8; 16], (Answer, spot::Tree, RenderSettings)>;

/// Answers verifiers' challenges until `shutdown`, honestly unless `cheat` is set.
pub async fn serve(
    mut inbound: mpsc::Receiver<InboundRequest>,
    net: NetHandle,
    renderer: LocalRenderer,
    behaviour: Behaviour,
    shutdown: CancellationToken,
) {
    let cheat = match behaviour {
        Behaviour::Image(m) => Some(m),
        _ => None,
    };
    let open: Arc<Mutex<OpenChallenges>> = Arc::default();
    let old: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    loop {
        let req = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = inbound.recv() => match r { Some(r) => r, None => return },
        };
        // Each challenge is answered on its own task: a benchmark must not wait behind another
        // verifier's render (the verifier would see the wait as slowness, or as a forged time).
        let (renderer, open, old, net) = (renderer.clone(), open.clone(), old.clone(), net.clone());
        tokio::spawn(async move {
            if behaviour == Behaviour::Late {
                tokio::time::sleep(LATE).await;
            }
            let resp = match decode::<Request>(&req.data) {
                Ok(Request::Render { id, scene, settings }) => {
                    let (open, old) = (open.clone(), old.clone());
                    tokio::task::spawn_blocking(move || {
                        let s = settings_of(settings)?;
                        let scene = Scene::from_wire(&scene).map_err(|e| e.to_string())?;
                        let started = Instant::now();
                        crate::faults::slow_work();
                        let rgb8 = match cheat {
                            None => renderer.render(&scene, &s)?,
                            Some(CheatMode::NoWatermark) => renderer.render(&cheat::strip_near_camera(&scene), &s)?,
                            Some(mode) => {
                                let prev = old.lock().unwrap_or_else(|e| e.into_inner()).clone();
                                cheat::forge(mode, &scene, &scene, &s, prev.as_deref(), rand::random())
                                    .map_err(|e| e.to_string())?
                            }
                        };
                        let render_us = started.elapsed().as_micros() as u64;
                        *old.lock().unwrap_or_else(|e| e.into_inner()) = Some(rgb8.clone());
                        let (answer, tree) = por::commit(rgb8, &s);
                        let resp = Response::Committed { root: answer.root, rgb8: answer.rgb8.clone(), render_us };
                        let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
                        if open.len() >= OPEN_CHALLENGES {
                            open.clear();
                        }
                        open.insert(id, (answer, tree, s));
                        Ok::<_, String>(resp)
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                    .unwrap_or_else(Response::Refused)
                }
                Ok(Request::Bench { seed }) => tokio::task::spawn_blocking(move || {
                    let b = ifx_protocols::por::ib::Bench::from_seed(seed);
                    b.validate()?;
                    let started = Instant::now();
                    crate::faults::slow_work();
                    let rows = renderer.bench(&b)?;
                    let mut claimed_us = started.elapsed().as_micros() as u64;
                    if behaviour == Behaviour::ForgedTime {
                        claimed_us /= 10;
                    }
                    Ok::<_, String>(Response::Benched { rows, claimed_us })
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .unwrap_or_else(Response::Refused),
                Ok(Request::Echo) => Response::Echo,
                Ok(Request::Open { id, indices }) => match open.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
                    Some((answer, tree, s)) if indices.len() <= 64 => Response::Opened {
                        openings: por::reveal(&answer, &tree, &s, &indices)
                            .into_iter()
                            .map(|o| (o.index, o.bytes, o.proof))
                            .collect(),
                    },
                    Some(_) => Response::Refused("too many sub-tiles asked".into()),
                    None => Response::Refused("unknown challenge".into()),
                },
                Err(e) => {
                    debug!(peer = %req.peer, error = e, "malformed challenge");
                    Response::Refused(format!("malformed challenge: {e}"))
                }
            };
            net.respond(Proto::Por, req.channel, encode(&resp)).await;
        });
    }
}

/// What one verifier has seen of one worker.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerStats {
    pub challenges: u64,
    pub passed: u64,
    pub failed: u64,
    /// Answers that came too late or never (QoS failures).
    pub timeouts: u64,
    pub last_failure: Option<String>,
    pub mean_latency_ms: f64,
    latency_ms_sum: f64,
    /// Time spent verifying, and what the worker said rendering took (µs).
    pub verify_us: u64,
    pub worker_render_us: u64,
    /// Benchmark challenges issued, answered correctly, and the latest IB estimate x 1000.
    pub bench_attempts: u64,
    pub benches: u64,
    /// IB x 1000: the median of the last benchmark samples.
    pub ib_milli: u64,
    #[serde(skip)]
    ib_samples: std::collections::VecDeque<u64>,
    /// Smallest observed / claimed benchmark time so far (an honest worker's is near 1).
    pub best_time_ratio: Option<f64>,
    /// Benchmarks whose claimed time was judged.
    pub judged_benches: u64,
}

/// A verifier's results, by worker peer id (for `GET /por/stats`).
#[derive(Clone, Default)]
pub struct PorStats(Arc<Mutex<BTreeMap<String, WorkerStats>>>);

/// Benchmark samples the IB estimate is the median of (repeated measurements: one slow sample
/// does not move it).
const IB_SAMPLES: usize = 5;

/// Recent `por` topic announcements (this node's own and those gossiped to it), newest last.
#[derive(Clone, Default)]
pub struct Announcements(Arc<Mutex<std::collections::VecDeque<AnnouncementView>>>);

/// One announcement as `GET /por/announcements` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AnnouncementView {
    pub verifier: String,
    pub worker: String,
    #[serde(flatten)]
    pub announcement: ifx_protocols::por::announce::Announcement,
    pub received_unix_ms: u64,
}

/// Announcements kept.
const ANNOUNCEMENTS_KEPT: usize = 256;

impl Announcements {
    /// Records one announcement by `verifier`.
    pub fn push(&self, verifier: [u8; 32], a: ifx_protocols::por::announce::Announcement) {
        let peer = |k: &[u8; 32]| author_peer_id(k).map(|p| p.to_string()).unwrap_or_else(|| hex::encode(k));
        let view = AnnouncementView {
            verifier: peer(&verifier),
            worker: peer(&a.worker),
            announcement: a,
            received_unix_ms: crate::unix_time_us() / 1000,
        };
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(view);
        if q.len() > ANNOUNCEMENTS_KEPT {
            q.pop_front();
        }
    }

    /// A copy, oldest first.
    pub fn snapshot(&self) -> Vec<AnnouncementView> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

/// Observed time above this multiple of the claimed one, in every benchmark of a worker, is a
/// forged claim. One sample can be slowed by scheduling; the best of several cannot all be.
const MAX_TIME_RATIO: f64 = 4.0;
/// Benchmarks a forged-time verdict needs.
const JUDGED_MIN: u64 = 2;

impl PorStats {
    /// Folds a benchmark's observed / claimed time into the worker's best; once enough samples
    /// were judged, a best still above [`MAX_TIME_RATIO`] is a forged claim.
    fn judge_time(&self, peer: &PeerId, ratio: f64) -> Result<(), String> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let w = m.entry(peer.to_string()).or_default();
        w.judged_benches += 1;
        let best = w.best_time_ratio.map_or(ratio, |b| b.min(ratio));
        w.best_time_ratio = Some(best);
        if w.judged_benches >= JUDGED_MIN && best > MAX_TIME_RATIO {
            return Err(format!(
                "benchmark time forged: observed at least {best:.1}x the claimed time in all of {} judged benchmarks",
                w.judged_benches
            ));
        }
        Ok(())
    }

    /// A copy of the table.
    pub fn snapshot(&self) -> BTreeMap<String, WorkerStats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, peer: &PeerId, f: impl FnOnce(&mut WorkerStats)) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let w = m.entry(peer.to_string()).or_default();
        f(w);
        w.mean_latency_ms = if w.challenges > 0 { w.latency_ms_sum / w.challenges as f64 } else { 0.0 };
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChallengeKind {
    Image,
    Bench,
}

/// What to ask a worker next, from what this verifier asked it so far: an image challenge
/// first (in a big network a verifier reaches each worker rarely, and most cheats show only in
/// images), a benchmark next (a view is decided only once both kinds passed), a second
/// benchmark (a forged time is judged on two), then one benchmark in three (`one_in_three`).
fn next_kind(seen: Option<&WorkerStats>, one_in_three: bool) -> ChallengeKind {
    let benches = seen.map_or(0, |w| w.bench_attempts);
    let images = seen.map_or(0, |w| w.challenges.saturating_sub(w.bench_attempts));
    match (images, benches) {
        (0, _) => ChallengeKind::Image,
        (_, b) if b < JUDGED_MIN || one_in_three => ChallengeKind::Bench,
        _ => ChallengeKind::Image,
    }
}

/// The verifier's challenge loop.
pub struct Challenger {
    pub net: NetHandle,
    pub heartbeats: Arc<Mutex<PeerTable>>,
    pub stats: PorStats,
    pub verifier_id: [u8; 32],
    pub every: Duration,
    /// Challenges under way at once (to distinct workers).
    pub max_in_flight: usize,
    /// IB reference (iterations per second for IB = 1.0).
    pub ib_reference: u64,
    /// Signs the `por` topic announcements.
    pub key: ed25519_dalek::SigningKey,
    pub network: ifx_protocols::NetworkConfig,
    pub announcements: Announcements,
    /// Each worker's stats after the previous announcement (to tell what the last challenge was).
    pub last: Arc<Mutex<HashMap<PeerId, WorkerStats>>>,
}

enum Outcome {
    Verdict(por::Verdict, u64, u64),
    /// IB x 1000 and observed / claimed time, or why the answer is wrong.
    Bench(Result<(u64, f64), String>),
    Timeout(String),
}

impl Challenger {
    /// Starts a challenge of a worker every `every` (jittered) while fewer than
    /// `max_in_flight` are under way, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut busy: std::collections::BTreeSet<PeerId> = Default::default();
        loop {
            let wait = self.every.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some((peer, r)) = futures::StreamExt::next(&mut in_flight), if !in_flight.is_empty() => {
                    busy.remove(&peer);
                    if r == Err(()) {
                        return;
                    }
                    continue;
                }
                _ = tokio::time::sleep(wait), if in_flight.len() < self.max_in_flight.max(1) => {}
            }
            let Some(peer) = self.pick(&busy).await else { continue };
            busy.insert(peer);
            let this = &self;
            in_flight.push(async move { (peer, this.challenge_once(peer).await) });
        }
    }

    /// One challenge of `peer`, recorded and announced; `Err(())` when the network stopped.
    async fn challenge_once(&self, peer: PeerId) -> Result<(), ()> {
        let started = Instant::now();
        let kind = next_kind(self.stats.snapshot().get(&peer.to_string()), rand::thread_rng().gen_range(0..3) == 0);
        let outcome = match kind {
            ChallengeKind::Bench => self.bench(peer).await,
            ChallengeKind::Image => self.challenge(peer).await,
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match outcome {
            Ok(Outcome::Verdict(v, verify_us, render_us)) => {
                if let por::Verdict::Fail { reason } = &v {
                    warn!(%peer, reason, "proof of rendering failed");
                } else {
                    debug!(%peer, ms, "proof of rendering passed");
                }
                self.stats.record(&peer, |w| {
                    w.challenges += 1;
                    w.latency_ms_sum += ms;
                    w.verify_us += verify_us;
                    w.worker_render_us += render_us;
                    match v {
                        por::Verdict::Pass { .. } => w.passed += 1,
                        por::Verdict::Fail { reason } => {
                            w.failed += 1;
                            w.last_failure = Some(reason);
                        }
                    }
                });
            }
            Ok(Outcome::Bench(Ok((ib, ratio)))) => {
                let result = self.stats.judge_time(&peer, ratio).map(|()| ib);
                self.record_bench(&peer, ms, result);
            }
            Ok(Outcome::Bench(Err(reason))) => self.record_bench(&peer, ms, Err(reason)),
            Ok(Outcome::Timeout(e)) => {
                info!(%peer, error = e, "challenge unanswered: QoS failure");
                self.stats.record(&peer, |w| {
                    w.timeouts += 1;
                });
            }
            Err(()) => return Err(()),
        }
        self.announce(peer, ms).await;
        Ok(())
    }

    /// Gossips (and records) the outcome of the challenge just recorded for `peer`.
    async fn announce(&self, peer: PeerId, ms: f64) {
        let Some(w) = self.stats.snapshot().get(&peer.to_string()).cloned() else { return };
        let Some(worker) = ({
            let t = self.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
            t.iter().map(|(k, _)| *k).find(|k| author_peer_id(k) == Some(peer))
        }) else {
            return;
        };
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).insert(peer, w.clone());
        let before = last.unwrap_or_default();
        let (challenge, passed) = if w.timeouts > before.timeouts {
            ("timeout", false)
        } else if w.bench_attempts > before.bench_attempts {
            ("bench", w.failed == before.failed)
        } else {
            ("image", w.failed == before.failed)
        };
        let reason = if passed { String::new() } else { w.last_failure.clone().unwrap_or_else(|| "timeout".into()) };
        let a = ifx_protocols::por::announce::Announcement {
            worker,
            challenge: challenge.into(),
            passed,
            reason: reason.chars().take(ifx_protocols::por::announce::MAX_REASON / 4).collect(),
            latency_ms: ms as u32,
        };
        self.announcements.push(self.key.verifying_key().to_bytes(), a.clone());
        let epoch = self.network.epoch_at(crate::unix_time_us() / 1000);
        if let Ok(env) = ifx_protocols::SignedEnvelope::sign(
            &self.key,
            &self.network.id,
            ifx_protocols::Kind::PorAnnouncement,
            epoch,
            a.encode(),
        ) {
            let _ = self.net.publish(ifx_protocols::Kind::PorAnnouncement, env.encode()).await;
        }
    }

    fn record_bench(&self, peer: &PeerId, ms: f64, result: Result<u64, String>) {
        if let Err(reason) = &result {
            warn!(%peer, reason, "benchmark challenge failed");
        }
        self.stats.record(peer, |w| {
            w.challenges += 1;
            w.bench_attempts += 1;
            w.latency_ms_sum += ms;
            match result {
                Ok(ib) => {
                    w.passed += 1;
                    w.benches += 1;
                    w.ib_samples.push_back(ib);
                    if w.ib_samples.len() > IB_SAMPLES {
                        w.ib_samples.pop_front();
                    }
                    let mut sorted: Vec<u64> = w.ib_samples.iter().copied().collect();
                    sorted.sort_unstable();
                    w.ib_milli = sorted[sorted.len() / 2];
                }
                Err(reason) => {
                    w.failed += 1;
                    w.last_failure = Some(reason);
                }
            }
        });
    }

    async fn pick(&self, busy: &std::collections::BTreeSet<PeerId>) -> Option<PeerId> {
        let snap = self.net.snapshot().await.ok()?;
        let connected: std::collections::BTreeSet<String> = snap.connected.into_iter().map(|c| c.peer_id).collect();
        // Workers connected now, or heard from lately: in a big network a node keeps only some
        // connections open, and a request to any other worker dials it.
        let heard_since =
            (crate::unix_time_us() / 1000).saturating_sub(self.network.heartbeat_interval_ms.saturating_mul(3));
        let workers: Vec<PeerId> = {
            let t = self.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
            t.iter()
                .filter(|(_, r)| r.role == Role::Worker)
                .filter_map(|(k, r)| author_peer_id(k).map(|p| (p, r.last_seen_unix_ms)))
                .filter(|(p, seen)| *seen >= heard_since || connected.contains(&p.to_string()))
                .filter(|(p, _)| !busy.contains(p))
                .map(|(p, _)| p)
                .collect()
        };
        // The least-challenged worker first (ties at random), so every worker is checked soon
        // and cheaters cannot hide in small samples; the timing stays random.
        let seen = self.stats.snapshot();
        let count = |p: &PeerId| seen.get(&p.to_string()).map_or(0, |w| w.challenges + w.timeouts);
        let least = workers.iter().map(count).min()?;
        let pool: Vec<PeerId> = workers.into_iter().filter(|p| count(p) == least).collect();
        Some(pool[rand::thread_rng().gen_range(0..pool.len())])
    }

    /// One benchmark challenge: rows re-computed exactly, the claimed time checked against the
    /// observed one, IB from the observed compute time; `Err(())` when the network stopped.
    async fn bench(&self, peer: PeerId) -> Result<Outcome, ()> {
        let seed: u64 = rand::random();
        let b = ifx_protocols::por::ib::Bench::from_seed(seed);
        let rtt_us = self
            .net
            .snapshot()
            .await
            .map_err(|_| ())?
            .connected
            .iter()
            .find(|c| c.peer_id == peer.to_string())
            .and_then(|c| c.rtt_us)
            .unwrap_or(0);
        // Echoes over the same protocol just before and just after: the path's delay around
        // the benchmark (transport, both sides' schedulers), which a loaded verifier or worker
        // would otherwise count as compute time.
        let echo_before = self.echo(peer).await?;
        let started = Instant::now();
        let answer = self.net.request(Proto::Por, peer, encode(&Request::Bench { seed })).await.map_err(|_| ())?;
        let round_trip = started.elapsed().as_micros() as u64;
        let echo_after = self.echo(peer).await?;
        // The round trip less the path delay, but never less than half the round trip: a
        // worker that slows its echoes on purpose gains at most a factor 2 on its IB, and
        // cannot make a forged claim look honest.
        let noise_us = rtt_us.max(echo_before).max(echo_after);
        let observed_us = round_trip.saturating_sub(noise_us.min(round_trip / 2)).max(1);
        let (rows, claimed_us) = match answer {
            Err(e) => return Ok(Outcome::Timeout(e)),
            Ok(bytes) => match decode::<Response>(&bytes) {
                Ok(Response::Benched { rows, claimed_us }) => (rows, claimed_us),
                Ok(Response::Refused(r)) => return Ok(Outcome::Bench(Err(format!("benchmark refused: {r}")))),
                Ok(_) => return Ok(Outcome::Bench(Err("answered out of turn".into()))),
                Err(e) => return Ok(Outcome::Bench(Err(format!("malformed benchmark answer: {e}")))),
            },
        };
        let check_rows: Vec<u32> = (0..3).map(|_| rand::thread_rng().gen_range(0..b.height)).collect();
        let checked = tokio::task::spawn_blocking(move || b.check_rows(&rows, &check_rows)).await.map_err(|_| ())?;
        if let Err(e) = checked {
            return Ok(Outcome::Bench(Err(format!("benchmark: {e}"))));
        }
        let ratio = observed_us as f64 / claimed_us.max(1) as f64;
        let iters: u64 =
            (0..b.height).flat_map(|y| (0..b.width).map(move |x| (x, y))).map(|(x, y)| b.pixel(x, y) as u64).sum();
        let rate = iters.saturating_mul(1_000_000) / observed_us;
        Ok(Outcome::Bench(Ok((rate.saturating_mul(1000) / self.ib_reference.max(1), ratio))))
    }

    /// The round trip of an echo in µs (0 when the worker did not echo); `Err(())` when the
    /// network stopped.
    async fn echo(&self, peer: PeerId) -> Result<u64, ()> {
        let started = Instant::now();
        Ok(match self.net.request(Proto::Por, peer, encode(&Request::Echo)).await.map_err(|_| ())? {
            Ok(bytes) if matches!(decode::<Response>(&bytes), Ok(Response::Echo)) => {
                started.elapsed().as_micros() as u64
            }
            _ => 0,
        })
    }

    /// One challenge; `Err(())` when the network stopped.
    async fn challenge(&self, peer: PeerId) -> Result<Outcome, ()> {
        let key: [u8; 32] = rand::random();
        let nonce: [u8; 32] = rand::random();
        let id: [u8; 16] = rand::random();
        let name = builtin::NAMES[rand::thread_rng().gen_range(0..builtin::NAMES.len())];
        let mut plain = builtin::by_name(name).expect("built-in");
        plain.seed = rand::random();
        let s = CHALLENGE;
        let params = AngvParams::default();
        let Ok(wm) = angv::watermark(&plain, &s, &key, &params) else {
            return Ok(Outcome::Timeout("cannot build".into()));
        };
        let req =
            Request::Render { id, scene: wm.to_wire(), settings: [s.width, s.height, s.spp, s.max_bounces, s.tile] };
        let (root, rgb8, render_us) = match self.net.request(Proto::Por, peer, encode(&req)).await.map_err(|_| ())? {
            Err(e) => return Ok(Outcome::Timeout(e)),
            Ok(bytes) => match decode::<Response>(&bytes) {
                Ok(Response::Committed { root, rgb8, render_us }) => (root, rgb8, render_us),
                Ok(Response::Refused(r)) => {
                    return Ok(Outcome::Verdict(por::Verdict::Fail { reason: format!("refused: {r}") }, 0, 0));
                }
                Ok(_) => {
                    return Ok(Outcome::Verdict(por::Verdict::Fail { reason: "answered out of turn".into() }, 0, 0));
                }
                Err(e) => {
                    return Ok(Outcome::Verdict(por::Verdict::Fail { reason: format!("malformed answer: {e}") }, 0, 0));
                }
            },
        };
        let answer = Answer { rgb8, root };
        let leaves = spot::sub_tiles(s.width, s.height).len();
        let chosen = spot::choose(&root, &nonce, &self.verifier_id, SPOT_CHECKS, leaves);
        let openings = match self
            .net
            .request(Proto::Por, peer, encode(&Request::Open { id, indices: chosen.clone() }))
            .await
            .map_err(|_| ())?
        {
            Err(e) => return Ok(Outcome::Timeout(e)),
            Ok(bytes) => match decode::<Response>(&bytes) {
                Ok(Response::Opened { openings }) => openings
                    .into_iter()
                    .map(|(index, bytes, proof)| Opening { index, bytes, proof })
                    .collect::<Vec<_>>(),
                Ok(Response::Refused(r)) => {
                    return Ok(Outcome::Verdict(por::Verdict::Fail { reason: format!("refused to open: {r}") }, 0, 0));
                }
                Ok(_) => {
                    return Ok(Outcome::Verdict(por::Verdict::Fail { reason: "answered out of turn".into() }, 0, 0));
                }
                Err(e) => {
                    return Ok(Outcome::Verdict(
                        por::Verdict::Fail { reason: format!("malformed openings: {e}") },
                        0,
                        0,
                    ));
                }
            },
        };
        let verdict = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            // The verifier re-renders on the CPU: the sub-tiles are tiny.
            let v = match Renderer::new(&wm, &s, Backend::Cpu) {
                Ok(r) => por::verify(&key, &params, &s, &answer, &chosen, &openings, &r),
                Err(e) => por::Verdict::Fail { reason: format!("verifier cannot render: {e}") },
            };
            (v, started.elapsed().as_micros() as u64)
        })
        .await
        .map_err(|_| ())?;
        Ok(Outcome::Verdict(verdict.0, verdict.1, render_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_times_are_judged_on_the_best_of_two_samples() {
        let stats = PorStats::default();
        let (honest, forger) = (PeerId::random(), PeerId::random());
        // An honest worker slowed once by scheduling (6x) is not judged on that sample alone,
        // and its best sample clears it.
        assert!(stats.judge_time(&honest, 6.0).is_ok());
        assert!(stats.judge_time(&honest, 1.3).is_ok());
        assert!(stats.judge_time(&honest, 9.0).is_ok());
        // A forger claiming a tenth of its time is caught at the second benchmark.
        assert!(stats.judge_time(&forger, 10.2).is_ok());
        let e = stats.judge_time(&forger, 9.7).unwrap_err();
        assert!(e.contains("forged") && e.contains("2 judged"), "{e}");
    }

    #[test]
    fn an_image_challenge_comes_first_then_two_benchmarks() {
        use ChallengeKind::{Bench, Image};
        let after = |images: u64, benches: u64| WorkerStats {
            challenges: images + benches,
            bench_attempts: benches,
            ..Default::default()
        };
        assert_eq!(next_kind(None, true), Image);
        // An image timed out (not counted) or never asked: still an image first.
        assert_eq!(next_kind(Some(&after(0, 0)), true), Image);
        assert_eq!(next_kind(Some(&after(1, 0)), false), Bench);
        assert_eq!(next_kind(Some(&after(1, 1)), false), Bench);
        // Then one benchmark in three.
        assert_eq!(next_kind(Some(&after(1, 2)), false), Image);
        assert_eq!(next_kind(Some(&after(4, 2)), true), Bench);
    }

    #[test]
    fn cheat_names_parse() {
        for c in CHEATS {
            assert!(c.parse::<Behaviour>().is_ok(), "{c}");
        }
        assert_eq!("".parse::<Behaviour>().unwrap(), Behaviour::Honest);
        assert!("sloppy".parse::<Behaviour>().is_err());
    }
}
