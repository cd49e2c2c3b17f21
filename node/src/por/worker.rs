//! The worker side of PoR: answers verifiers' render challenges (render, commit, later open
//! the sub-tiles asked for), benchmarks and echoes, honestly unless the node runs a cheat mode.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ifx_protocols::por::cheat::{self, Behaviour, CheatMode};
use ifx_protocols::por::proof::{self, AnswerProof};
use ifx_protocols::por::wire::{Request, Response, challenge_settings};
use ifx_protocols::por::{self, Answer, spot};
use ifx_render::{RenderSettings, Scene};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::admission::{IN_FLIGHT_PER_PEER, InFlight, OpenBook};
use crate::compute::Compute;
use crate::network::{InboundRequest, NetHandle, Proto};

/// How long a `late` node sleeps before answering.
pub const LATE: Duration = Duration::from_secs(5);
/// Renders and benchmarks run at once for all challengers together (the rest wait their turn;
/// a verifier that waits too long counts a QoS miss, not a failure).
pub const WORK_SLOTS: usize = 2;

/// Challenges a worker answered and may be asked to open.
type OpenChallenges = OpenBook<(Answer, spot::Tree, RenderSettings)>;

/// What a worker signs its answers with (its proofs of the verifiers' challenges).
#[derive(Clone)]
pub struct Prover {
    pub key: ed25519_dalek::SigningKey,
    /// The network's clock: a proof names the worker's epoch.
    pub network: ifx_protocols::NetworkConfig,
}

impl Prover {
    /// The proof of answering `answer` to `peer`'s `challenge` now; none for a peer without an
    /// ed25519 key.
    fn prove(&self, peer: &libp2p::PeerId, challenge: [u8; 32], answer: [u8; 32]) -> Option<AnswerProof> {
        let verifier = crate::fl::peer_key(peer)?;
        let epoch = self.network.epoch_at(crate::unix_time_us() / 1000);
        Some(AnswerProof::sign(&self.key, &verifier, epoch, challenge, answer))
    }
}

/// Who may ask this worker for heavy work (renders and benchmarks), and when.
#[derive(Clone)]
pub struct HeavyWork {
    /// The bonded verifiers (anyone while none is bonded).
    pub verifiers: super::verifiers::BondedVerifiers,
    /// The operator's pause: nobody, while it holds.
    pub pause: crate::pause::Pause,
}

impl HeavyWork {
    /// Why `peer`'s heavy request is answered Busy, if it is (verifiers that heard a paused
    /// heartbeat do not ask; one that raced it is busy, a QoS miss, never a verdict).
    fn refusal(&self, peer: &libp2p::PeerId) -> Option<&'static str> {
        if self.pause.is_paused() {
            Some("paused by its operator")
        } else if !self.verifiers.allows(peer) {
            Some("not a bonded verifier of this network (as this worker sees the ledger)")
        } else {
            None
        }
    }
}

/// Answers verifiers' challenges until `shutdown`, honestly unless `cheat` is set; signs each
/// answer for the verifier that asked.
pub async fn serve(
    mut inbound: mpsc::Receiver<InboundRequest>,
    net: NetHandle,
    renderer: Compute,
    behaviour: Behaviour,
    heavy_work: HeavyWork,
    prover: Prover,
    shutdown: CancellationToken,
) {
    let cheat = match behaviour {
        Behaviour::Image(m) => Some(m),
        _ => None,
    };
    let open: Arc<Mutex<OpenChallenges>> = Arc::default();
    let old: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let in_flight = InFlight::default();
    let work = Arc::new(tokio::sync::Semaphore::new(WORK_SLOTS));
    loop {
        let req = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = inbound.recv() => match r { Some(r) => r, None => return },
        };
        // Each challenge is answered on its own task: a benchmark must not wait behind another
        // verifier's render (the verifier would see the wait as slowness, or as a forged time).
        let (renderer, open, old, net) = (renderer.clone(), open.clone(), old.clone(), net.clone());
        let (in_flight, work, heavy_work, prover) =
            (in_flight.clone(), work.clone(), heavy_work.clone(), prover.clone());
        tokio::spawn(async move {
            if behaviour == Behaviour::Late {
                tokio::time::sleep(LATE).await;
            }
            let peer = req.peer;
            let decoded = Request::decode(&req.data);
            // Renders and benchmarks take a slot of the peer's and then a work slot; echoes and
            // openings are cheap and answered at once.
            let heavy = matches!(decoded, Ok(Request::Render { .. } | Request::Bench { .. }));
            if let Some(why) = heavy.then(|| heavy_work.refusal(&peer)).flatten() {
                net.respond(Proto::Por, req.channel, Response::Busy(why.into()).encode()).await;
                return;
            }
            let slot = if heavy { in_flight.acquire(peer) } else { None };
            if heavy && slot.is_none() {
                let busy = Response::Busy(format!("{IN_FLIGHT_PER_PEER} challenges in flight from this peer"));
                net.respond(Proto::Por, req.channel, busy.encode()).await;
                return;
            }
            // A render waits for a work slot. A benchmark does not: the verifier times it, and
            // time spent queued behind others' work would read as a forged time; it is answered
            // Busy instead (a QoS miss).
            let _permit = match decoded {
                Ok(Request::Bench { .. }) => match work.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        let busy = Response::Busy("every work slot is taken by other challenges".into());
                        net.respond(Proto::Por, req.channel, busy.encode()).await;
                        return;
                    }
                },
                Ok(Request::Render { .. }) => work.acquire_owned().await.ok(),
                _ => None,
            };
            let resp = match decoded {
                Ok(Request::Render { id, scene, settings }) => {
                    let (open, old) = (open.clone(), old.clone());
                    tokio::task::spawn_blocking(move || {
                        let s = challenge_settings(settings).map_err(|e| e.to_string())?;
                        let scene = Scene::from_wire(&scene).map_err(|e| e.to_string())?;
                        let started = Instant::now();
                        let rgb8 = renderer
                            .faults()
                            .work(|| match cheat {
                                None => renderer.render(&scene, &s),
                                Some(CheatMode::NoWatermark) => renderer.render(&cheat::strip_near_camera(&scene), &s),
                                Some(mode) => {
                                    let prev = old.lock().unwrap_or_else(|e| e.into_inner()).clone();
                                    cheat::forge(
                                        mode,
                                        &scene,
                                        &scene,
                                        &s,
                                        prev.as_deref(),
                                        rand::random(),
                                        ifx_render::render_cpu,
                                    )
                                }
                            })
                            .map_err(|e| e.to_string())?;
                        let render_us = started.elapsed().as_micros() as u64;
                        *old.lock().unwrap_or_else(|e| e.into_inner()) = Some(rgb8.clone());
                        let (answer, tree) = por::commit(rgb8, &s);
                        let proof = prover
                            .prove(&peer, proof::render_challenge(&id), answer.root)
                            .ok_or_else(|| "the challenger's peer id has no ed25519 key".to_string())?;
                        let resp =
                            Response::Committed { root: answer.root, rgb8: answer.rgb8.clone(), render_us, proof };
                        open.lock().unwrap_or_else(|e| e.into_inner()).insert(peer, id, (answer, tree, s));
                        Ok::<_, String>(resp)
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                    .unwrap_or_else(Response::Refused)
                }
                Ok(Request::Bench { seed }) => tokio::task::spawn_blocking(move || {
                    let b = ifx_protocols::por::ib::Bench::from_seed(seed);
                    b.validate().map_err(|e| e.to_string())?;
                    let started = Instant::now();
                    let rows = renderer.faults().work(|| renderer.bench(&b)).map_err(|e| e.to_string())?;
                    let mut claimed_us = started.elapsed().as_micros() as u64;
                    if behaviour == Behaviour::ForgedTime {
                        claimed_us /= 10;
                    }
                    let proof = prover
                        .prove(&peer, proof::bench_challenge(seed), proof::bench_answer(&rows, claimed_us))
                        .ok_or_else(|| "the challenger's peer id has no ed25519 key".to_string())?;
                    Ok::<_, String>(Response::Benched { rows, claimed_us, proof })
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .unwrap_or_else(Response::Refused),
                Ok(Request::Echo) => Response::Echo,
                Ok(Request::Open { id, indices }) => {
                    let kept = open.lock().unwrap_or_else(|e| e.into_inner()).take(&peer, &id);
                    match kept {
                        Some((answer, tree, s)) if indices.len() <= 64 => Response::Opened {
                            openings: por::reveal(&answer, &tree, &s, &indices)
                                .into_iter()
                                .map(|o| (o.index, o.bytes, o.proof))
                                .collect(),
                        },
                        Some(_) => Response::Refused("too many sub-tiles asked".into()),
                        None => Response::Busy("unknown challenge (never answered here, or evicted)".into()),
                    }
                }
                Err(e) => {
                    debug!(peer = %req.peer, error = %e, "malformed challenge");
                    Response::Refused(format!("malformed challenge: {e}"))
                }
            };
            net.respond(Proto::Por, req.channel, resp.encode()).await;
        });
    }
}
