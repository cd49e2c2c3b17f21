//! The verifier side of PoR: the challenge loop. It picks a worker and a challenge kind by
//! the policy of `schedule.rs`, runs the challenge over request-response (render, open, verify;
//! or echo, benchmark, echo), records the outcome in its stats and gossips it on the `por`
//! topic. Timeouts are QoS failures, not PoR failures.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ifx_protocols::por::proof::{self, AnswerProof};
use ifx_protocols::por::wire::{Request, Response, settings_wire};
use ifx_protocols::por::{self, AngvParams, Answer, Opening, PorError, SPOT_CHECKS, angv, spot};
use ifx_protocols::{PeerTable, Role};
use ifx_render::{Backend, Renderer, builtin};
use libp2p::PeerId;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::CHALLENGE;
use super::schedule::{self, Candidate, ChallengeKind, next_kind};
use super::stats::{Announcements, PorStats, WorkerStats};
use crate::network::{NetHandle, Proto, author_peer_id};

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
    Bench(Result<(u64, f64), PorError>),
    Timeout(String),
}

impl Challenger {
    /// Starts a challenge of a worker every `every` (jittered) while fewer than
    /// `max_in_flight` are under way, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut busy: BTreeSet<PeerId> = Default::default();
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
                let result = self
                    .stats
                    .record(&peer, |w| w.judge_time(ratio))
                    .map(|()| ib)
                    .map_err(|e| PorError::check(e.to_string()));
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

    fn record_bench(&self, peer: &PeerId, ms: f64, result: Result<u64, PorError>) {
        if let Err(reason) = &result {
            warn!(%peer, reason = %reason, "benchmark challenge failed");
        }
        self.stats.record(peer, |w| w.record_bench(ms, result));
    }

    /// The worker to challenge next ([`schedule::pick`] over the workers heard of).
    async fn pick(&self, busy: &BTreeSet<PeerId>) -> Option<PeerId> {
        let snap = self.net.snapshot().await.ok()?;
        let connected: BTreeSet<String> = snap.connected.into_iter().map(|c| c.peer_id).collect();
        let candidates: Vec<Candidate> = {
            let t = self.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
            t.iter()
                // A paused worker does no work: not challenged, so no QoS miss either.
                .filter(|(_, r)| r.role == Role::Worker && !r.paused)
                .filter_map(|(k, r)| {
                    let peer = author_peer_id(k)?;
                    Some(Candidate {
                        peer,
                        last_seen_unix_ms: r.last_seen_unix_ms,
                        connected: connected.contains(&peer.to_string()),
                    })
                })
                .collect()
        };
        let heard_since =
            (crate::unix_time_us() / 1000).saturating_sub(self.network.heartbeat_interval_ms.saturating_mul(3));
        schedule::pick(&candidates, busy, &self.stats.snapshot(), heard_since, rand::random())
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
        let answer = self.net.request(Proto::Por, peer, Request::Bench { seed }.encode()).await.map_err(|_| ())?;
        let round_trip = started.elapsed().as_micros() as u64;
        let echo_after = self.echo(peer).await?;
        let observed_us = schedule::observed_us(round_trip, rtt_us, echo_before, echo_after);
        let (rows, claimed_us) = match answer {
            Err(e) => return Ok(Outcome::Timeout(e.to_string())),
            Ok(bytes) => match Response::decode(&bytes) {
                Ok(Response::Benched { rows, claimed_us, proof }) => {
                    let (challenge, answer) = (proof::bench_challenge(seed), proof::bench_answer(&rows, claimed_us));
                    if !self.proven(peer, &proof, challenge, answer) {
                        return Ok(Outcome::Timeout("an answer without its signature".into()));
                    }
                    (rows, claimed_us)
                }
                Ok(Response::Busy(r)) => return Ok(Outcome::Timeout(format!("busy: {r}"))),
                Ok(Response::Refused(r)) => {
                    return Ok(Outcome::Bench(Err(PorError::check(format!("benchmark refused: {r}")))));
                }
                Ok(_) => return Ok(Outcome::Bench(Err(PorError::check("answered out of turn")))),
                Err(e) => return Ok(Outcome::Bench(Err(PorError::check(format!("malformed benchmark answer: {e}"))))),
            },
        };
        let check_rows: Vec<u32> = (0..3).map(|_| rand::thread_rng().gen_range(0..b.height)).collect();
        let checked = tokio::task::spawn_blocking(move || b.check_rows(&rows, &check_rows)).await.map_err(|_| ())?;
        if let Err(e) = checked {
            return Ok(Outcome::Bench(Err(PorError::check(format!("benchmark: {e}")))));
        }
        let ratio = observed_us as f64 / claimed_us.max(1) as f64;
        let iters: u64 =
            (0..b.height).flat_map(|y| (0..b.width).map(move |x| (x, y))).map(|(x, y)| b.pixel(x, y) as u64).sum();
        Ok(Outcome::Bench(Ok((schedule::ib_milli(iters, observed_us, self.ib_reference), ratio))))
    }

    /// Whether `proof` is `peer`'s signature on `answer` to this verifier's `challenge`, in an
    /// epoch next to this verifier's: an answer without one counts as unanswered, and a kept
    /// proof is what lets this verifier's verdict on the worker earn anything.
    fn proven(&self, peer: PeerId, proof: &AnswerProof, challenge: [u8; 32], answer: [u8; 32]) -> bool {
        let Some(worker) = crate::fl::peer_key(&peer) else { return false };
        let now = self.network.epoch_at(crate::unix_time_us() / 1000);
        let ok = proof.challenge == challenge
            && proof.answer == answer
            && proof.epoch.abs_diff(now) <= 1
            && proof.verify(&worker, &self.verifier_id);
        if ok {
            self.stats.record(&peer, |w| w.keep_proof(proof.clone()));
        }
        ok
    }

    /// The round trip of an echo in µs (0 when the worker did not echo); `Err(())` when the
    /// network stopped.
    async fn echo(&self, peer: PeerId) -> Result<u64, ()> {
        let started = Instant::now();
        Ok(match self.net.request(Proto::Por, peer, Request::Echo.encode()).await.map_err(|_| ())? {
            Ok(bytes) if matches!(Response::decode(&bytes), Ok(Response::Echo)) => started.elapsed().as_micros() as u64,
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
        let req = Request::Render { id, scene: wm.to_wire(), settings: settings_wire(&s) };
        let (root, rgb8, render_us) = match self.net.request(Proto::Por, peer, req.encode()).await.map_err(|_| ())? {
            Err(e) => return Ok(Outcome::Timeout(e.to_string())),
            Ok(bytes) => match Response::decode(&bytes) {
                Ok(Response::Committed { root, rgb8, render_us, proof }) => {
                    if !self.proven(peer, &proof, proof::render_challenge(&id), root) {
                        return Ok(Outcome::Timeout("an answer without its signature".into()));
                    }
                    (root, rgb8, render_us)
                }
                Ok(Response::Busy(r)) => return Ok(Outcome::Timeout(format!("busy: {r}"))),
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
            .request(Proto::Por, peer, Request::Open { id, indices: chosen.clone() }.encode())
            .await
            .map_err(|_| ())?
        {
            Err(e) => return Ok(Outcome::Timeout(e.to_string())),
            Ok(bytes) => match Response::decode(&bytes) {
                Ok(Response::Opened { openings }) => openings
                    .into_iter()
                    .map(|(index, bytes, proof)| Opening { index, bytes, proof })
                    .collect::<Vec<_>>(),
                // The worker no longer holds the challenge (others' challenges pushed it out):
                // unanswered, not failed.
                Ok(Response::Busy(r)) => return Ok(Outcome::Timeout(format!("busy: {r}"))),
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
