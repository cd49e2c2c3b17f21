//! A job owner's task: hands tiles to workers as the queue says, checks what comes back,
//! writes a receipt per accepted tile, and saves the PNG.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use ifx_protocols::Role;
use ifx_protocols::ledger::{EntryKind, RenderReceipt};
use ifx_protocols::render::job::{JobSpec, TileRequest, check_tile};
use ifx_render::Image;
use libp2p::PeerId;
use tracing::{info, warn};

use super::queue::TileQueue;
use super::{JobError, Jobs};
use crate::network::{Proto, author_peer_id};

/// A job fails when it has had no worker for this long.
const NO_WORKER_TIMEOUT: Duration = Duration::from_secs(60);

impl Jobs {
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

    pub(super) async fn run(&self, job: [u8; 16], spec: JobSpec, started: Instant) -> Result<PathBuf, JobError> {
        let id = hex::encode(job);
        let s = spec.settings();
        let tiles = s.tiles();
        info!(job = id, tiles = tiles.len(), width = s.width, height = s.height, spp = s.spp, "render job started");
        let mut queue = TileQueue::new(tiles.len());
        let mut img = Image::new(s.width, s.height);
        let mut inflight = FuturesUnordered::new();
        let mut last_worker_seen = Instant::now();
        while !queue.is_done() {
            if self.ctx.shutdown.is_cancelled() {
                return Err(JobError::Stopped("the node is shutting down".into()));
            }
            // Hand out tiles to free workers.
            if queue.has_queued() {
                let workers = self.workers().await;
                if !workers.is_empty() {
                    last_worker_seen = Instant::now();
                }
                let keys: HashMap<PeerId, [u8; 32]> = workers.iter().copied().collect();
                let peers: Vec<PeerId> = workers.iter().map(|(p, _)| *p).collect();
                for (peer, i) in queue.assign(&peers, Instant::now()) {
                    let t = tiles[i];
                    let req = TileRequest { job, spec: spec.clone(), tile: [t.x, t.y, t.w, t.h] }.encode();
                    let (net, key) = (self.ctx.net.clone(), keys[&peer]);
                    inflight.push(async move { (peer, key, i, net.request(Proto::Render, peer, req).await) });
                }
                if inflight.is_empty() {
                    if last_worker_seen.elapsed() > NO_WORKER_TIMEOUT {
                        return Err(JobError::Stopped(format!("no worker for {NO_WORKER_TIMEOUT:?}")));
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
            let t = tiles[i];
            let pixels = match result {
                Ok(Ok(bytes)) => check_tile(&bytes, t).map_err(|e| e.to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => return Err(JobError::Stopped("the network stopped".into())),
            };
            queue.answered(peer, i, pixels.is_ok(), Instant::now());
            let done = queue.done();
            match pixels {
                Ok(px) => {
                    img.put(t, &px);
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
                    self.update(&id, |st| st.reassigned += 1);
                }
            }
        }
        std::fs::create_dir_all(&self.ctx.out_dir).map_err(|e| JobError::Stopped(e.to_string()))?;
        let path = self.ctx.out_dir.join(format!("{id}.png"));
        let save = img.clone();
        let p = path.clone();
        tokio::task::spawn_blocking(move || ifx_render::png::save(&save, &p))
            .await
            .map_err(|e| JobError::Stopped(e.to_string()))??;
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
