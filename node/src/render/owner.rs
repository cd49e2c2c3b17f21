//! A job owner's task: hands tiles to workers as the queue says, checks what comes back (its
//! size and values, the worker's signed commitment, and a re-render of one sub-tile the owner
//! picks after the tile arrived), writes a receipt per accepted tile or evidence against the
//! worker of a bad one, and saves the PNG.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use ifx_protocols::ledger::body::fault::{DeliveryFault, signed_by};
use ifx_protocols::ledger::{EntryKind, RenderReceipt};
use ifx_protocols::render::Tile;
use ifx_protocols::render::commit::{self, sub_tiles};
use ifx_protocols::render::job::{Delivered, JobSpec, TileRequest, check_tile};
use ifx_render::{Image, Renderer};
use libp2p::PeerId;
use tracing::{info, warn};

use super::queue::{IN_FLIGHT, TileQueue, allowances};
use super::{JobError, Jobs};
use crate::network::Proto;

/// A sub-tile that did not match its re-render.
struct BadTile {
    index: u32,
    reason: String,
}

/// A job fails when it has had no worker for this long.
const NO_WORKER_TIMEOUT: Duration = Duration::from_secs(60);

impl Jobs {
    /// Connected workers from the heartbeat table: (peer id, public key).
    async fn workers(&self) -> Vec<(PeerId, [u8; 32])> {
        let Ok(snap) = self.ctx.net.snapshot().await else { return Vec::new() };
        crate::heartbeat::connected_workers(
            &self.ctx.heartbeats.lock().unwrap_or_else(|e| e.into_inner()),
            &snap.connected,
        )
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
        let mut checker: Option<Arc<Renderer>> = None;
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
                let links: Vec<(PeerId, Option<u32>)> =
                    workers.iter().map(|(p, k)| (*p, self.ctx.links.get(k).map(|l| l.slowest_kbit()))).collect();
                let allowed = allowances(&links);
                for (peer, _) in allowed.iter().filter(|(_, n)| *n < IN_FLIGHT) {
                    let kbit = links.iter().find(|(p, _)| p == peer).and_then(|(_, k)| *k).unwrap_or(0);
                    let mut newly = false;
                    self.update(&id, |st| newly = st.slow_links.insert(peer.to_string(), kbit).is_none());
                    if newly {
                        info!(job = id, %peer, kbit, "the verifiers attest a slow link to this worker: one tile at a time");
                    }
                }
                for (peer, i) in queue.assign(&allowed, Instant::now()) {
                    let t = tiles[i];
                    let req = TileRequest { job, spec: spec.clone(), tile: [t.x, t.y, t.w, t.h] };
                    let (net, key) = (self.ctx.net.clone(), keys[&peer]);
                    inflight.push(async move {
                        let answer = net.request(Proto::Render, peer, req.encode()).await;
                        (peer, key, i, req, answer)
                    });
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
            let Some((peer, key, i, req, result)) = next else { continue };
            let t = tiles[i];
            let delivered = match result {
                Ok(Ok(bytes)) => check_tile(&bytes, &req, t).map_err(|e| e.to_string()).and_then(|d| {
                    if signed_by(&d.commitment, &key, &d.sig) {
                        Ok(d)
                    } else {
                        Err("the tile's commitment is not signed by its worker".to_string())
                    }
                }),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => return Err(JobError::Stopped("the network stopped".into())),
            };
            // The spot check: one sub-tile of the owner's choosing, re-rendered here.
            let delivered = match delivered {
                Ok(d) => match self.spot_check(&mut checker, &spec, t, &d).await {
                    Ok(checked) => {
                        self.update(&id, |st| st.spot_checked += checked as u64);
                        Ok(d)
                    }
                    Err(bad) => {
                        warn!(job = id, %peer, tile = i, sub_tile = bad.index, reason = bad.reason, "bad tile: evidence to the ledger; the worker gets no more tiles of this job");
                        queue.ban(peer);
                        self.update(&id, |st| st.bad_tiles += 1);
                        self.evidence(job, &spec, key, &d, bad).await;
                        Err("failed the spot check".to_string())
                    }
                },
                Err(e) => Err(e),
            };
            queue.answered(peer, i, delivered.is_ok(), Instant::now());
            let done = queue.done();
            match delivered {
                Ok(Delivered { px, .. }) => {
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

    /// Re-renders one random sub-tile of a delivered tile (`checker`: the job's renderer on this
    /// node's compute, built at the first check) and compares it with what the worker sent:
    /// `Ok(true)` it matched, `Ok(false)` the owner could not check it (its own failure says
    /// nothing about the worker; the tile is taken unchecked and not counted as checked).
    async fn spot_check(
        &self,
        checker: &mut Option<Arc<Renderer>>,
        spec: &JobSpec,
        t: Tile,
        d: &Delivered,
    ) -> Result<bool, BadTile> {
        let subs = sub_tiles(t.w, t.h);
        let index = rand::Rng::gen_range(&mut rand::thread_rng(), 0..subs.len()) as u32;
        let sub = subs[index as usize];
        let at = Tile { x: t.x + sub.x, y: t.y + sub.y, w: sub.w, h: sub.h };
        let s = spec.settings();
        // The spec is cloned (scene and all) only for the first check, which builds the renderer.
        let (existing, compute) = (checker.clone().ok_or_else(|| spec.clone()), self.ctx.compute.clone());
        let rendered = tokio::task::spawn_blocking(move || {
            let r = match existing {
                Ok(r) => r,
                Err(spec) => {
                    Arc::new(Renderer::with_gpu(&super::job_scene(&spec)?, &s, compute.backend(), compute.gpu())?)
                }
            };
            let px = r.render_tile(&s, at)?;
            Ok::<_, ifx_render::RenderError>((r, px))
        })
        .await;
        let (r, mine) = match rendered {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                warn!(error = %e, "cannot re-render a sub-tile to check it; accepting the tile unchecked");
                return Ok(false);
            }
            Err(e) => {
                warn!(error = %e, "the spot check stopped; accepting the tile unchecked");
                return Ok(false);
            }
        };
        *checker = Some(r);
        commit::compare(sub, &commit::sub_bytes(&d.pixels, t.w, sub), &mine)
            .map(|()| true)
            .map_err(|reason| BadTile { index, reason })
    }

    /// Writes the evidence of a bad tile: the spec, the worker's signed commitment and the
    /// failed sub-tile with its Merkle path.
    async fn evidence(&self, job: [u8; 16], spec: &JobSpec, worker: [u8; 32], d: &Delivered, bad: BadTile) {
        let [_, _, w, h] = d.commitment.tile;
        let sub = sub_tiles(w, h)[bad.index as usize];
        let fault = DeliveryFault {
            job,
            spec: spec.clone(),
            tile: d.commitment.tile,
            worker,
            root: d.commitment.root,
            sig: d.sig,
            index: bad.index,
            bytes: commit::sub_bytes(&d.pixels, w, sub),
            proof: commit::tree(&d.pixels, w, h).proof(bad.index as usize),
            reason: bad.reason.chars().take(200).collect(),
        };
        let c = &self.ctx;
        if let Err(e) =
            c.ledger.append_and_gossip(&c.net, &c.key, &c.network, EntryKind::DeliveryFault, fault.encode()).await
        {
            warn!(error = %e, "cannot write the evidence of a bad tile");
        }
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
