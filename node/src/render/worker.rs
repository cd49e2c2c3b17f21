//! The worker side of render jobs: renders the tiles peers ask for, on this node's compute,
//! keeping the renderer of the last job, and signs a commitment to each tile it sends
//! (`ifx_protocols::render::commit`): what it is paid for is what it can be held to.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use ifx_protocols::render::commit::{TileCommitment, encode_pixels};
use ifx_protocols::render::job::{TileRequest, TileResponse};
use ifx_render::Renderer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::job_scene;
use crate::network::{InboundRequest, NetHandle, Proto};

/// Tile requests one peer may have waiting; past that it is answered busy at once (a job
/// owner keeps [`super::queue::IN_FLIGHT`] tiles at a worker).
pub const PER_PEER_QUEUE: usize = 4;
/// Tile requests waiting in all.
pub const MAX_QUEUED: usize = 256;

/// Waiting tile requests, served round-robin by peer (issue #16: one at a time in arrival
/// order let a stranger's flood delay every honest owner's tiles until they timed out).
pub struct FairQueue<T> {
    by_peer: std::collections::HashMap<libp2p::PeerId, std::collections::VecDeque<T>>,
    turn: std::collections::VecDeque<libp2p::PeerId>,
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self { by_peer: Default::default(), turn: Default::default(), len: 0 }
    }
}

impl<T> FairQueue<T> {
    /// Queues `item` of `peer`, or hands it back when that peer's share or the whole queue is
    /// full.
    pub fn push(&mut self, peer: libp2p::PeerId, item: T) -> Result<(), T> {
        let q = self.by_peer.entry(peer).or_default();
        if q.len() >= PER_PEER_QUEUE || self.len >= MAX_QUEUED {
            if q.is_empty() {
                self.by_peer.remove(&peer);
            }
            return Err(item);
        }
        if q.is_empty() {
            self.turn.push_back(peer);
        }
        q.push_back(item);
        self.len += 1;
        Ok(())
    }

    /// The next item: the oldest of the peer whose turn it is.
    pub fn pop(&mut self) -> Option<T> {
        let peer = self.turn.pop_front()?;
        let q = self.by_peer.get_mut(&peer)?;
        let item = q.pop_front();
        if q.is_empty() {
            self.by_peer.remove(&peer);
        } else {
            self.turn.push_back(peer);
        }
        self.len -= item.is_some() as usize;
        item
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.len
    }
}

/// How a worker signs its tiles, and whether it fakes them (test mode, `render.fake_tiles`).
#[derive(Clone)]
pub struct Signer {
    pub key: SigningKey,
    pub fake: bool,
}

/// Renders tiles for peers until `shutdown`, one at a time, taking turns between peers
/// ([`FairQueue`]); keeps the renderer of the last job; signs each tile.
pub async fn serve(
    mut inbound: mpsc::Receiver<InboundRequest>,
    net: NetHandle,
    compute: crate::compute::Compute,
    signer: Signer,
    pause: crate::pause::Pause,
    shutdown: CancellationToken,
) {
    let mut cached: Option<([u8; 16], Arc<Renderer>)> = None;
    let mut queue: FairQueue<InboundRequest> = FairQueue::default();
    let mut open = true;
    loop {
        let Some(req) = queue.pop() else {
            if !open {
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = inbound.recv() => match r {
                    Some(r) => admit(&mut queue, r, &net, &pause).await,
                    None => return,
                },
            }
            continue;
        };
        let work = answer(&req.data, req.peer, &mut cached, &compute, &signer);
        tokio::pin!(work);
        let resp = loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                resp = &mut work => break resp,
                r = inbound.recv(), if open => match r {
                    Some(r) => admit(&mut queue, r, &net, &pause).await,
                    None => open = false,
                },
            }
        };
        if let Some(resp) = resp {
            net.respond(Proto::Render, req.channel, resp.encode()).await;
        }
    }
}

/// Queues a request, or answers busy at once (also while the operator paused work: a job
/// owner that has not heard the paused heartbeat yet gives the tile to another worker).
async fn admit(queue: &mut FairQueue<InboundRequest>, r: InboundRequest, net: &NetHandle, pause: &crate::pause::Pause) {
    if pause.is_paused() {
        debug!(peer = %r.peer, "tile request refused: paused");
        net.respond(Proto::Render, r.channel, TileResponse::error("busy: paused by its operator").encode()).await;
        return;
    }
    if let Err(r) = queue.push(r.peer, r) {
        debug!(peer = %r.peer, queued = queue.len(), "tile request refused: queue full");
        let busy =
            TileResponse::error(format!("busy: {PER_PEER_QUEUE} tiles of yours or {MAX_QUEUED} in all are waiting"));
        net.respond(Proto::Render, r.channel, busy.encode()).await;
    }
}

/// The answer to one tile request (`None`: malformed, dropped, which fails the peer's request).
async fn answer(
    data: &[u8],
    peer: libp2p::PeerId,
    cached: &mut Option<([u8; 16], Arc<Renderer>)>,
    compute: &crate::compute::Compute,
    signer: &Signer,
) -> Option<TileResponse> {
    let resp = match TileRequest::decode(data).map(|tr| {
        let t = tr.checked_tile();
        (tr, t)
    }) {
        Ok((_, Err(e))) => {
            debug!(%peer, error = %e, "tile request refused");
            TileResponse::error(e.to_string())
        }
        Ok((tr, Ok(t))) => {
            let renderer = match &*cached {
                Some((job, r)) if *job == tr.job => Ok(r.clone()),
                _ => {
                    let (spec, compute) = (tr.spec.clone(), compute.clone());
                    tokio::task::spawn_blocking(move || {
                        let scene = job_scene(&spec).map_err(|e| e.to_string())?;
                        // A device of the job's own, as before the restructuring: tiles never
                        // queue behind PoR renders on the shared device (a tile that waited
                        // could time out and be re-assigned).
                        Renderer::new(&scene, &spec.settings(), compute.backend()).map_err(|e| e.to_string())
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                    .map(|r| {
                        info!(job = hex::encode(tr.job), backend = r.describe(), "rendering tiles for a job");
                        let r = Arc::new(r);
                        *cached = Some((tr.job, r.clone()));
                        r
                    })
                }
            };
            match renderer {
                Ok(r) => {
                    let mut s = tr.spec.settings();
                    if signer.fake {
                        // The cheat: a sixty-fourth of the samples (one per pixel at 64 spp),
                        // signed as the job's render.
                        s.spp = (s.spp / 64).max(1);
                    }
                    let faults = compute.faults();
                    match tokio::task::spawn_blocking(move || {
                        faults.slow_work();
                        r.render_tile(&s, t)
                    })
                    .await
                    {
                        Ok(Ok(px)) => {
                            let pixels = encode_pixels(&px);
                            let c = TileCommitment::of(tr.job, tr.spec.hash(), t, &pixels);
                            TileResponse { pixels, error: String::new(), root: c.root, sig: c.sign(&signer.key) }
                        }
                        Ok(Err(e)) => TileResponse::error(e.to_string()),
                        Err(e) => TileResponse::error(e.to_string()),
                    }
                }
                Err(e) => TileResponse::error(e),
            }
        }
        Err(e) => {
            debug!(%peer, error = %e, "malformed tile request");
            return None;
        }
    };
    Some(resp)
}

#[cfg(test)]
mod fair_tests {
    use super::*;

    /// A flooder's requests wait their turn: the honest owner's tile is served second, not
    /// after the flood; past its share the flooder is refused.
    #[test]
    fn peers_take_turns_and_one_peer_holds_a_small_share() {
        let (flood, honest) = (libp2p::PeerId::random(), libp2p::PeerId::random());
        let mut q = FairQueue::default();
        for i in 0..10 {
            let r = q.push(flood, ("flood", i));
            assert_eq!(r.is_ok(), i < PER_PEER_QUEUE, "request {i}");
        }
        q.push(honest, ("honest", 0)).unwrap();
        q.push(honest, ("honest", 1)).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![("flood", 0), ("honest", 0), ("flood", 1), ("honest", 1), ("flood", 2), ("flood", 3)]);
        assert_eq!(q.len(), 0);
        // Many peers: the whole queue has a cap too.
        let mut q = FairQueue::default();
        let taken = (0..1000).filter(|i| q.push(libp2p::PeerId::random(), *i).is_ok()).count();
        assert_eq!(taken, MAX_QUEUED);
    }
}
