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
/// How long a tile request waits for its job's assets to arrive before it is answered busy
/// with the fetch's progress (the fetch goes on; the owner asks again after its bench time).
/// Short, because other peers' tiles wait behind it.
pub const ASSET_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

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
    /// Tiles this worker rendered and sent (`GET /metrics`: `ifx_render_tiles_total`).
    pub rendered: prometheus_client::metrics::counter::Counter,
}

/// What an operator lets the worker use (`[render]`): tiles rendered at once, and the memory a
/// job's scene and tiles may take on the GPU and in RAM (0: no cap). A job past a cap is
/// answered busy with the figures, and its owner gives the tile to another worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub max_tiles: usize,
    pub max_vram_bytes: u64,
    pub max_memory_bytes: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Self { max_tiles: 1, max_vram_bytes: 0, max_memory_bytes: 0 }
    }
}

impl Caps {
    /// Whether a job whose scene compiles to `scene_bytes` and whose tiles are `tile` pixels on a
    /// side fits, rendering on a GPU or not; why not if not. In RAM: the compiled scene and each
    /// tile's pixels (12 bytes each); on the GPU: the scene's buffers and each tile's output and
    /// read-back buffers (16 bytes a pixel, twice); `max_tiles` tiles at once.
    pub fn admit(&self, scene_bytes: u64, tile: u32, on_gpu: bool) -> Result<(), String> {
        let px = (tile as u64 * tile as u64).saturating_mul(self.max_tiles.max(1) as u64);
        let mib = |b: u64| b.div_ceil(1 << 20);
        let ram = scene_bytes.saturating_add(px.saturating_mul(12));
        if self.max_memory_bytes > 0 && ram > self.max_memory_bytes {
            return Err(format!(
                "busy: the job needs {} MiB of memory, over this worker's render.max_memory_mb = {}",
                mib(ram),
                self.max_memory_bytes >> 20
            ));
        }
        let vram = scene_bytes.saturating_add(px.saturating_mul(32));
        if on_gpu && self.max_vram_bytes > 0 && vram > self.max_vram_bytes {
            return Err(format!(
                "busy: the job needs {} MiB of GPU memory, over this worker's render.max_vram_mb = {}",
                mib(vram),
                self.max_vram_bytes >> 20
            ));
        }
        Ok(())
    }
}

/// A tile request ready to render, or its answer now.
enum Prepared {
    Render(Box<TileRequest>, ifx_protocols::render::Tile, Arc<Renderer>),
    Answer(TileResponse),
    /// Malformed: dropped, which fails the peer's request.
    Drop,
}

/// The renderer of the last job, by the job and its spec's hash: a peer reusing another owner's
/// job id with a scene of its own must not have that owner's tiles rendered from it.
type Cached = Option<(([u8; 16], [u8; 32]), Arc<Renderer>)>;

/// Renders tiles for peers until `shutdown`, up to `caps.max_tiles` at once, taking turns
/// between peers ([`FairQueue`]); keeps the renderer of the last job; signs each tile.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    mut inbound: mpsc::Receiver<InboundRequest>,
    net: NetHandle,
    compute: crate::compute::Compute,
    signer: Signer,
    pause: crate::pause::Pause,
    caps: Caps,
    fetches: crate::blob::AssetFetches,
    shutdown: CancellationToken,
) {
    use futures::StreamExt;
    let mut cached: Cached = None;
    let mut queue: FairQueue<InboundRequest> = FairQueue::default();
    let mut running = futures::stream::FuturesUnordered::new();
    let mut open = true;
    loop {
        while running.len() < caps.max_tiles.max(1) {
            let Some(req) = queue.pop() else { break };
            match prepare(&req.data, req.peer, &mut cached, &compute, &caps, &fetches).await {
                Prepared::Render(tr, tile, r) => {
                    let (channel, faults, signer) = (req.channel, compute.faults(), signer.clone());
                    running.push(async move { (channel, render(*tr, tile, r, faults, &signer.clone()).await) });
                }
                Prepared::Answer(resp) => net.respond(Proto::Render, req.channel, resp.encode()).await,
                Prepared::Drop => {}
            }
        }
        if !open && running.is_empty() && queue.len() == 0 {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some((channel, resp)) = running.next(), if !running.is_empty() => {
                net.respond(Proto::Render, channel, resp.encode()).await;
            }
            r = inbound.recv(), if open => match r {
                Some(r) => admit(&mut queue, r, &net, &pause).await,
                None => open = false,
            },
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

/// Checks a tile request and finds (or builds, within the caps) the renderer of its job.
async fn prepare(
    data: &[u8],
    peer: libp2p::PeerId,
    cached: &mut Cached,
    compute: &crate::compute::Compute,
    caps: &Caps,
    fetches: &crate::blob::AssetFetches,
) -> Prepared {
    let tr = match TileRequest::decode(data) {
        Ok(tr) => tr,
        Err(e) => {
            debug!(%peer, error = %e, "malformed tile request");
            return Prepared::Drop;
        }
    };
    let t = match tr.checked_tile() {
        Ok(t) => t,
        Err(e) => {
            debug!(%peer, error = %e, "tile request refused");
            return Prepared::Answer(TileResponse::error(e.to_string()));
        }
    };
    let key = (tr.job, tr.spec.hash());
    if let Some((k, r)) = &*cached
        && *k == key
    {
        return Prepared::Render(Box::new(tr), t, r.clone());
    }
    if !tr.spec.assets.is_empty()
        && let Err(e) = fetches.ensure(&tr.spec.assets, peer, ASSET_WAIT).await
    {
        debug!(%peer, job = hex::encode(tr.job), error = %e, "tile waits for the job's assets");
        return Prepared::Answer(TileResponse::error(e));
    }
    let (spec, compute, caps, blobs) = (tr.spec.clone(), compute.clone(), *caps, fetches.store().clone());
    let built = tokio::task::spawn_blocking(move || {
        let scene = job_scene(&spec, Some(&blobs)).map_err(|e| e.to_string())?;
        let s = spec.settings();
        let c = ifx_render::compile(&scene, s.width, s.height).map_err(|e| e.to_string())?;
        caps.admit(c.bytes(), spec.tile, compute.backend() != ifx_render::Backend::Cpu)?;
        // A device of the job's own, as before the restructuring: tiles never queue behind
        // PoR renders on the shared device (a tile that waited could time out and be
        // re-assigned).
        Renderer::from_compiled(c, &s, compute.backend(), compute.gpu()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match built {
        Ok(r) => {
            info!(job = hex::encode(tr.job), backend = r.describe(), "rendering tiles for a job");
            let r = Arc::new(r);
            *cached = Some((key, r.clone()));
            Prepared::Render(Box::new(tr), t, r)
        }
        Err(e) => {
            debug!(%peer, job = hex::encode(tr.job), error = %e, "job refused");
            Prepared::Answer(TileResponse::error(e))
        }
    }
}

/// Renders and signs one tile.
async fn render(
    tr: TileRequest,
    t: ifx_protocols::render::Tile,
    r: Arc<Renderer>,
    faults: crate::faults::Faults,
    signer: &Signer,
) -> TileResponse {
    let mut s = tr.spec.settings();
    if signer.fake {
        // The cheat: a sixty-fourth of the samples (one per pixel at 64 spp), signed as the
        // job's render.
        s.spp = (s.spp / 64).max(1);
    }
    match tokio::task::spawn_blocking(move || faults.work(|| r.render_tile(&s, t))).await {
        Ok(Ok(px)) => {
            let pixels = encode_pixels(&px);
            let c = TileCommitment::of(tr.job, tr.spec.hash(), t, &pixels);
            signer.rendered.inc();
            TileResponse { pixels, error: String::new(), root: c.root, sig: c.sign(&signer.key) }
        }
        Ok(Err(e)) => TileResponse::error(e.to_string()),
        Err(e) => TileResponse::error(e.to_string()),
    }
}

#[cfg(test)]
mod fair_tests {
    use super::*;

    /// What a cap counts: the scene, and each tile at once, 12 bytes a pixel in RAM and 32 on
    /// the GPU (output and read-back); at the cap is within it; 0 is no cap.
    #[test]
    fn caps_count_the_scene_and_every_tile_at_once() {
        let c = Caps { max_tiles: 2, max_vram_bytes: 4 << 20, max_memory_bytes: 2 << 20 };
        // Two 256 x 256 tiles: 1.5 MiB of pixels in RAM, 4 MiB on the GPU.
        assert_eq!(c.admit(512 << 10, 256, false), Ok(()));
        let e = c.admit((512 << 10) + 1, 256, false).unwrap_err();
        assert!(e.contains("needs 3 MiB of memory") && e.contains("max_memory_mb = 2"), "{e}");
        assert_eq!(c.admit(0, 256, true), Ok(()));
        let e = c.admit(1, 256, true).unwrap_err();
        assert!(e.contains("needs 5 MiB of GPU memory") && e.contains("max_vram_mb = 4"), "{e}");
        // The GPU cap holds only on a GPU.
        assert_eq!(c.admit(1, 256, false), Ok(()));
        assert_eq!(Caps::default().admit(u64::MAX, u32::MAX, true), Ok(()));
    }

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
