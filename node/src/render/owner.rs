//! A job owner's task: hands tiles to workers as the queue says, checks what comes back (its
//! size and values, the worker's signed commitment, and a re-render of one sub-tile the owner
//! picks after the tile arrived), writes a receipt per accepted tile or evidence against the
//! worker of a bad one, and saves the PNG.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use ifx_protocols::ledger::body::fault::{DeliveryFault, signed_by};
use ifx_protocols::ledger::{EntryBody, EntryKind, RenderReceipt, TileSignature};
use ifx_protocols::render::Tile;
use ifx_protocols::render::commit::{self, sub_tiles};
use ifx_protocols::render::job::{Delivered, JobSpec, TileRequest, check_tile};
use ifx_render::{Image, Renderer};
use libp2p::PeerId;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::persist::KeptTile;
use super::queue::{IN_FLIGHT, Schedule, TileQueue, Worker, allowances};
use super::{JobError, Jobs};
use crate::network::Proto;

/// A sub-tile that did not match its re-render.
struct BadTile {
    index: u32,
    reason: String,
}

/// A job's tile requests in flight: each answers (worker, its key, tile, request, answer, sent,
/// answered).
type Inflight = FuturesUnordered<
    tokio::task::JoinHandle<(
        PeerId,
        [u8; 32],
        usize,
        TileRequest,
        Result<Result<Vec<u8>, crate::network::RequestFailed>, crate::network::NetworkStopped>,
        Instant,
        Instant,
    )>,
>;

/// What the tile requests of one job are made of.
struct Run {
    id: String,
    job: [u8; 16],
    spec: JobSpec,
    tiles: Vec<Tile>,
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

    pub(super) async fn run(
        &self,
        job: [u8; 16],
        spec: JobSpec,
        schedule: Schedule,
        started: Instant,
        cancel: CancellationToken,
    ) -> Result<PathBuf, JobError> {
        let s = spec.settings();
        let run = Run { id: hex::encode(job), job, tiles: s.tiles(), spec };
        let (id, tiles) = (run.id.clone(), &run.tiles);
        info!(job = id, tiles = tiles.len(), width = s.width, height = s.height, spp = s.spp, %schedule, "render job started");
        let mut queue = TileQueue::new(tiles.len(), schedule);
        let mut img = Image::new(s.width, s.height);
        // Tiles kept before a restart are in the image and never asked for again.
        let mut receipted = self.restore(&run, &mut queue, &mut img).await;
        let mut inflight: Inflight = FuturesUnordered::new();
        let mut last_worker_seen = Instant::now();
        let mut checker: Option<Arc<Renderer>> = None;
        while !queue.is_done() {
            if self.ctx.shutdown.is_cancelled() {
                return Err(JobError::ShuttingDown);
            }
            if cancel.is_cancelled() {
                return Err(JobError::Cancelled);
            }
            if self.hand_out(&run, &mut queue, &mut inflight).await {
                last_worker_seen = Instant::now();
            }
            self.update(&id, |st| st.speculative = queue.speculative());
            if inflight.is_empty() {
                if last_worker_seen.elapsed() > NO_WORKER_TIMEOUT {
                    return Err(JobError::Stopped(format!("no worker for {NO_WORKER_TIMEOUT:?}")));
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = cancel.cancelled() => {}
                }
                continue;
            }
            let next = tokio::select! {
                n = inflight.next() => n,
                _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                _ = cancel.cancelled() => continue,
            };
            let Some(joined) = next else { continue };
            let (peer, key, i, req, result, sent, at) =
                joined.map_err(|e| JobError::Stopped(format!("a tile request stopped: {e}")))?;
            debug!(job = id, %peer, tile = i, secs = at.duration_since(sent).as_secs_f64(), since_start = at.duration_since(started).as_secs_f64(), "tile answered");
            queue.arrived(peer, i, matches!(result, Ok(Ok(_))), at);
            // A copy that came second is checked as any tile (a bad one is evidence), then
            // dropped: not placed, no receipt.
            let late = !queue.wanted(i);
            // The worker's slot is refilled before its tile is checked: the check and the
            // receipt take this node a while, and the worker would sit idle meanwhile.
            if !late && self.hand_out(&run, &mut queue, &mut inflight).await {
                last_worker_seen = Instant::now();
            }
            let t = tiles[i];
            let answer = result.map_err(|_| JobError::Stopped("the network stopped".into()))?;
            let delivered = self.check_answer(&mut checker, &run, peer, key, i, &req, answer).await;
            if let Err((_, true)) = &delivered {
                queue.ban(peer);
            }
            let delivered = delivered.map_err(|(e, _)| e);
            queue.settle(peer, i, delivered.is_ok(), at);
            self.record(&id, &queue, started);
            if late {
                debug!(job = id, %peer, tile = i, ok = delivered.is_ok(), "a copy of a tile already kept came back: checked, dropped");
                continue;
            }
            let done = queue.done();
            match delivered {
                Ok(d) => {
                    img.put(t, &d.px);
                    self.update(&id, |st| {
                        st.tiles_done = done;
                        *st.tiles_by_worker.entry(peer.to_string()).or_default() += 1;
                        st.secs = started.elapsed().as_secs_f64();
                    });
                    // Kept on disk, with the status that counts it, before its receipt: a
                    // restart from here on finds the tile and does not ask for it again.
                    self.keep(&run, i, KeptTile::of(key, peer.to_string(), &d)).await;
                    let receipt = tile_receipt(&run, i as u32, key, &d);
                    let wrote = receipted.insert(i as u32) && self.receipt(receipt).await;
                    self.update(&id, |st| st.receipts += wrote as u64);
                }
                Err(e) => {
                    warn!(job = id, %peer, tile = i, error = e, "tile failed; re-assigning it");
                    self.update(&id, |st| st.reassigned += 1);
                }
            }
        }
        // Copies still out are checked as they come, after the job: a cheater whose slow tile
        // was copied is caught all the same.
        if !inflight.is_empty() {
            let me = self.clone();
            self.tasks.spawn(async move { me.check_late(inflight, checker, run).await });
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

    /// Puts the tiles job `run` kept before a restart into `img` and marks them done in
    /// `queue`; writes the receipts a restart came between a kept tile and; returns the tiles
    /// this node has receipted for the job. A kept tile that fails its check again is
    /// rendered again.
    async fn restore(&self, run: &Run, queue: &mut TileQueue, img: &mut Image) -> BTreeSet<u32> {
        let job = run.job;
        let kept = self.on_store(move |store| store.tiles(&job)).await.unwrap_or_else(|e| {
            warn!(job = run.id, error = %e, "cannot read the job's kept tiles: rendering them again");
            Vec::new()
        });
        // A new job has receipted nothing. A resumed one may have receipts even without kept
        // tiles: a tile whose write to the store failed is receipted all the same.
        if kept.is_empty() && self.get(&run.id).is_none_or(|st| st.resumed == 0) {
            return BTreeSet::new();
        }
        let mut receipted = self.receipted(job);
        let mut req = TileRequest { job, spec: run.spec.clone(), tile: [0; 4] };
        let mut restored = 0u64;
        for (i, bytes) in kept {
            let Some(&t) = run.tiles.get(i as usize) else {
                warn!(job = run.id, tile = i, "a kept tile is outside the job: ignored");
                continue;
            };
            req.tile = [t.x, t.y, t.w, t.h];
            let checked = KeptTile::decode(&bytes).map_err(|e| e.to_string()).and_then(|k| Ok((k.check(&req, t)?, k)));
            let (d, k) = match checked {
                Ok(v) => v,
                Err(e) => {
                    warn!(job = run.id, tile = i, error = e, "a kept tile fails its check: rendering it again");
                    continue;
                }
            };
            img.put(t, &d.px);
            queue.restore(i as usize);
            restored += 1;
            if receipted.insert(i) && !self.receipt(tile_receipt(run, i, k.worker, &d)).await {
                receipted.remove(&i);
            }
        }
        info!(job = run.id, restored, receipts = receipted.len(), "kept tiles restored");
        let done = queue.done();
        self.update(&run.id, |st| {
            st.restored_tiles = restored;
            st.tiles_done = done;
            st.receipts = receipted.len() as u64;
        });
        receipted
    }

    /// The tiles of `job` this node has written a receipt for, from its own chain.
    fn receipted(&self, job: [u8; 16]) -> BTreeSet<u32> {
        let me = self.ctx.key.verifying_key().to_bytes();
        let own = self.ctx.ledger.with(|s| s.entries_by_author(&me));
        let own = own.unwrap_or_else(|e| {
            warn!(error = %e, "cannot read this node's own receipts");
            Vec::new()
        });
        own.iter()
            .filter(|e| e.kind == EntryKind::RenderReceipt)
            .filter_map(|e| match EntryBody::of(e) {
                Ok(EntryBody::RenderReceipt(r)) if r.job == job => Some(r.tile),
                _ => None,
            })
            .collect()
    }

    /// Stores tile `i` of `run` and the job's status, in one durable write.
    async fn keep(&self, run: &Run, i: usize, tile: KeptTile) {
        let Some(st) = self.get(&run.id) else { return };
        let (status, bytes, job) = (super::persist::status_bytes(&st), tile.encode(), run.job);
        if let Err(e) = self.on_store(move |store| store.put_tile(&job, i as u32, &bytes, &status)).await {
            warn!(job = run.id, tile = i, error = %e, "cannot keep a tile on disk: a restart renders it again");
        }
    }

    /// Checks a worker's answer to tile `i`: its size and values, the worker's signature of its
    /// commitment, and a sub-tile of this node's choosing re-rendered here. A tile failing the
    /// last is evidence in the ledger against its worker: `Err((why, true))`.
    #[allow(clippy::too_many_arguments)]
    async fn check_answer(
        &self,
        checker: &mut Option<Arc<Renderer>>,
        run: &Run,
        peer: PeerId,
        key: [u8; 32],
        i: usize,
        req: &TileRequest,
        answer: Result<Vec<u8>, crate::network::RequestFailed>,
    ) -> Result<Delivered, (String, bool)> {
        let t = run.tiles[i];
        let d = match answer {
            Ok(bytes) => check_tile(&bytes, req, t).map_err(|e| (e.to_string(), false))?,
            Err(e) => return Err((e.to_string(), false)),
        };
        if !signed_by(&d.commitment, &key, &d.sig) {
            return Err(("the tile's commitment is not signed by its worker".into(), false));
        }
        match self.spot_check(checker, &run.spec, t, &d).await {
            Ok(checked) => {
                self.update(&run.id, |st| st.spot_checked += checked as u64);
                Ok(d)
            }
            Err(bad) => {
                warn!(job = run.id, %peer, tile = i, sub_tile = bad.index, reason = bad.reason, "bad tile: evidence to the ledger; the worker gets no more tiles of this job");
                self.update(&run.id, |st| st.bad_tiles += 1);
                self.evidence(run.job, &run.spec, key, &d, bad).await;
                Err(("failed the spot check".into(), true))
            }
        }
    }

    /// Checks the copies still out when the job ended, as they come (each request ends within
    /// its timeout); a bad one is evidence as during the job.
    async fn check_late(self, mut inflight: Inflight, mut checker: Option<Arc<Renderer>>, run: Run) {
        while let Some(joined) = inflight.next().await {
            if let Ok((peer, key, i, req, Ok(answer), ..)) = joined {
                let checked = self.check_answer(&mut checker, &run, peer, key, i, &req, answer).await;
                debug!(job = run.id, %peer, tile = i, ok = checked.is_ok(), "a copy that came after the job was checked");
            }
        }
    }

    /// Hands tiles to free workers as the queue says (queued ones, and at the end under the
    /// capacity schedule copies of stragglers), each request a task of its own; false when no
    /// worker is connected.
    async fn hand_out(&self, run: &Run, queue: &mut TileQueue, inflight: &mut Inflight) -> bool {
        let (id, job, spec, tiles) = (&run.id, run.job, &run.spec, &run.tiles);
        let workers = self.workers().await;
        let keys: HashMap<PeerId, [u8; 32]> = workers.iter().copied().collect();
        let links: Vec<(PeerId, Option<u32>)> =
            workers.iter().map(|(p, k)| (*p, self.ctx.links.get(k).map(|l| l.slowest_kbit()))).collect();
        let allowed = allowances(&links);
        for (peer, _) in allowed.iter().filter(|(_, n)| *n < IN_FLIGHT) {
            let kbit = links.iter().find(|(p, _)| p == peer).and_then(|(_, k)| *k).unwrap_or(0);
            let mut newly = false;
            self.update(id, |st| newly = st.slow_links.insert(peer.to_string(), kbit).is_none());
            if newly {
                info!(job = id, %peer, kbit, "the verifiers attest a slow link to this worker: one tile at a time");
            }
        }
        let ws: Vec<Worker> = allowed
            .iter()
            .map(|(peer, n)| Worker { peer: *peer, allowance: *n, ib_milli: self.ctx.links.ib_milli(&keys[peer]) })
            .collect();
        for (peer, i) in queue.assign(&ws, Instant::now()) {
            let t = tiles[i];
            let req = TileRequest { job, spec: spec.clone(), tile: [t.x, t.y, t.w, t.h] };
            let (net, key) = (self.ctx.net.clone(), keys[&peer]);
            // A task of its own: the answer is timed when it comes, not when this loop
            // gets to it.
            let sent = Instant::now();
            inflight.push(tokio::spawn(async move {
                let answer = net.request(Proto::Render, peer, req.encode()).await;
                (peer, key, i, req, answer, sent, Instant::now())
            }));
        }
        !workers.is_empty()
    }

    /// Puts the queue's figures in the job's status: each worker's part, the makespan so far
    /// and its ideal.
    fn record(&self, id: &str, queue: &TileQueue, started: Instant) {
        let shares = queue.shares();
        self.update(id, |st| {
            st.workers = shares.into_iter().map(|(p, w)| (p.to_string(), w)).collect();
            st.makespan_secs = queue.makespan_secs();
            st.ideal_secs = queue.ideal_secs();
            st.speculative = queue.speculative();
            st.secs = started.elapsed().as_secs_f64();
        });
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
        let blobs = self.ctx.blobs.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let r = match existing {
                Ok(r) => r,
                Err(spec) => Arc::new(Renderer::with_gpu(
                    &super::job_scene(&spec, Some(&blobs))?,
                    &s,
                    compute.backend(),
                    compute.gpu(),
                )?),
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

/// The receipt of tile `i` of `run`, delivered as `d` by `worker`: its work units and the
/// worker's signed commitment.
fn tile_receipt(run: &Run, i: u32, worker: [u8; 32], d: &Delivered) -> RenderReceipt {
    let s = run.spec.settings();
    let signed = Some(TileSignature { root: d.commitment.root, sig: d.sig });
    RenderReceipt { job: run.job, tile: i, worker, work_units: s.work_units(run.tiles[i as usize]), signed }
}
