//! A job owner's task: hands tiles to workers as the queue says, checks what comes back (its
//! size and values, the worker's signed commitment, and a re-render of one sub-tile the owner
//! picks after the tile arrived), writes a receipt per accepted tile or evidence against the
//! worker of a bad one, and saves the PNG.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// The whole job, every frame.
    spec: JobSpec,
    /// One frame's tiles: the job's tile `i` is tile `i % tiles.len()` of frame
    /// `first + i / tiles.len()`.
    tiles: Vec<Tile>,
}

impl Run {
    /// Bytes of a full tile's answer (its pixels on the wire; edge tiles are smaller).
    fn answer_bytes(&self) -> u64 {
        self.tiles.iter().map(|t| t.w as u64 * t.h as u64).max().unwrap_or(0) * commit::PIXEL_BYTES as u64
    }

    /// Frame and rectangle of the job's tile `i`.
    fn at(&self, i: usize) -> (u32, Tile) {
        let per = self.tiles.len().max(1);
        (self.spec.frames.first + (i / per) as u32, self.tiles[i % per])
    }

    /// The request for the job's tile `i`: its frame's spec and its rectangle.
    fn request(&self, i: usize) -> TileRequest {
        let (f, t) = self.at(i);
        TileRequest { job: self.job, spec: self.spec.at_frame(f), tile: [t.x, t.y, t.w, t.h] }
    }

    /// The job's tile indices of frame `f`.
    fn frame_tiles(&self, f: u32) -> std::ops::Range<usize> {
        let per = self.tiles.len();
        let start = (f - self.spec.frames.first) as usize * per;
        start..start + per
    }

    /// A sequence's folder, `{id}` in `out` (`None` for a still).
    fn sequence(&self, out: &std::path::Path) -> Option<PathBuf> {
        (self.spec.frames.count() > 1).then(|| out.join(&self.id))
    }

    /// Where frame `f` is written: `{id}.png` for a still, `{id}/{f:04}.png` in a sequence.
    fn png(&self, out: &std::path::Path, f: u32) -> PathBuf {
        match self.sequence(out) {
            Some(dir) => dir.join(format!("{f:04}.png")),
            None => out.join(format!("{}.png", self.id)),
        }
    }
}

/// The frames of a job being assembled, each with how many of its tiles it holds. A frame is
/// written and dropped as soon as its last tile is in, and the queue hands tiles out in frame
/// order, so the frames open at once are about those with a tile in flight (each up to
/// `MAX_JOB_PIXELS` x 12 bytes).
type Open = BTreeMap<u32, (Image, usize)>;

/// Renderers the owner spot-checks with, by frame: the two latest frames (tiles of the frame
/// before arrive while the next one starts).
type Checkers = BTreeMap<u32, Arc<Renderer>>;
const CHECKERS: usize = 2;

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
        let id = run.id.clone();
        let total = run.spec.tile_total() as usize;
        let frames = run.spec.frames;
        info!(job = id, tiles = total, frames = frames.count(), first = frames.first, width = s.width, height = s.height, spp = s.spp, %schedule, "render job started");
        // The folder is made when its first frame is written.
        if let Some(dir) = run.sequence(&self.ctx.out_dir) {
            self.update(&id, |st| st.sequence = Some(dir.display().to_string()));
        }
        let mut queue = TileQueue::new(total, schedule).with_answer_bytes(run.answer_bytes());
        let mut open = Open::new();
        // Tiles kept before a restart are in their frames and never asked for again.
        let mut receipted = self.restore(&run, &mut queue, &mut open).await;
        let mut last_png = None;
        for f in open.iter().filter(|(_, (_, n))| *n == run.tiles.len()).map(|(f, _)| *f).collect::<Vec<_>>() {
            last_png = Some(self.write_frame(&run, f, &mut open).await?);
        }
        let mut inflight: Inflight = FuturesUnordered::new();
        let mut last_worker_seen = Instant::now();
        let mut checkers = Checkers::new();
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
            let (frame, t) = run.at(i);
            let answer = result.map_err(|_| JobError::Stopped("the network stopped".into()))?;
            let delivered = self.check_answer(&mut checkers, &run, peer, key, i, &req, answer).await;
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
                    let (img, held) = open.entry(frame).or_insert_with(|| (Image::new(s.width, s.height), 0));
                    img.put(t, &d.px);
                    *held += 1;
                    let complete = *held == run.tiles.len();
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
                    if complete {
                        last_png = Some(self.write_frame(&run, frame, &mut open).await?);
                    }
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
            self.tasks.spawn(async move { me.check_late(inflight, checkers, run).await });
        }
        let path = match last_png {
            Some(p) => p,
            // Every frame was written before a restart.
            None => self.get(&id).and_then(|st| st.png).map(PathBuf::from).unwrap_or_default(),
        };
        info!(job = id, png = %path.display(), secs = started.elapsed().as_secs_f64(), "render job done");
        Ok(path)
    }

    /// Writes frame `f` of `run` (its PNG and EXR) from `open`, records it in the job's status
    /// and drops its kept tiles, the two in one durable write: a restart renders it no more.
    async fn write_frame(&self, run: &Run, f: u32, open: &mut Open) -> Result<PathBuf, JobError> {
        let Some((img, _)) = open.remove(&f) else { return Err(JobError::Stopped(format!("frame {f} is not held"))) };
        let path = run.png(&self.ctx.out_dir, f);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| JobError::Stopped(format!("{}: {e}", dir.display())))?;
        }
        let p = path.clone();
        tokio::task::spawn_blocking(move || ifx_render::png::save(&img, &p))
            .await
            .map_err(|e| JobError::Stopped(e.to_string()))??;
        let shown = path.display().to_string();
        self.update(&run.id, |st| {
            st.save_frame(f);
            st.png = Some(shown.clone());
            st.exr = Some(ifx_render::png::exr_path(std::path::Path::new(&shown)).display().to_string());
        });
        if let Some(st) = self.get(&run.id) {
            let (status, job, range) = (super::persist::status_bytes(&st), run.job, run.frame_tiles(f));
            let dropped =
                self.on_store(move |store| store.drop_tile_range(&job, range.start as u32, range.end as u32, &status));
            if let Err(e) = dropped.await {
                warn!(job = run.id, frame = f, error = %e, "cannot record a written frame: a restart writes it again");
            }
        }
        info!(job = run.id, frame = f, png = %path.display(), "frame written");
        Ok(path)
    }

    /// Marks the frames job `run` wrote before a restart done in `queue`, puts the tiles it
    /// kept of the others into `open` and marks them done; writes the receipts a restart came
    /// between a kept tile and; returns the tiles this node has receipted for the job. A kept
    /// tile that fails its check again is rendered again.
    async fn restore(&self, run: &Run, queue: &mut TileQueue, open: &mut Open) -> BTreeSet<u32> {
        let job = run.job;
        let saved: Vec<u32> = match self.get(&run.id) {
            Some(st) => (run.spec.frames.first..=run.spec.frames.last).filter(|f| st.frame_saved(*f)).collect(),
            None => Vec::new(),
        };
        queue.restore(saved.iter().flat_map(|f| run.frame_tiles(*f)));
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
        let s = run.spec.settings();
        let total = run.spec.tile_total();
        let mut restored = Vec::new();
        for (i, bytes) in kept {
            if i as u64 >= total {
                warn!(job = run.id, tile = i, "a kept tile is outside the job: ignored");
                continue;
            }
            let (frame, t) = run.at(i as usize);
            if saved.contains(&frame) {
                continue;
            }
            let req = run.request(i as usize);
            let checked = KeptTile::decode(&bytes).map_err(|e| e.to_string()).and_then(|k| Ok((k.check(&req, t)?, k)));
            let (d, k) = match checked {
                Ok(v) => v,
                Err(e) => {
                    warn!(job = run.id, tile = i, error = e, "a kept tile fails its check: rendering it again");
                    continue;
                }
            };
            let (img, held) = open.entry(frame).or_insert_with(|| (Image::new(s.width, s.height), 0));
            img.put(t, &d.px);
            *held += 1;
            restored.push(i as usize);
            if receipted.insert(i) && !self.receipt(tile_receipt(run, i, k.worker, &d)).await {
                receipted.remove(&i);
            }
        }
        // Restored: the frames written (never asked for again) and the tiles loaded.
        let n = (saved.len() * run.tiles.len() + restored.len()) as u64;
        queue.restore(restored);
        info!(
            job = run.id,
            restored = n,
            frames_written = saved.len(),
            receipts = receipted.len(),
            "kept tiles restored"
        );
        let done = queue.done();
        self.update(&run.id, |st| {
            st.restored_tiles = n;
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
        checkers: &mut Checkers,
        run: &Run,
        peer: PeerId,
        key: [u8; 32],
        i: usize,
        req: &TileRequest,
        answer: Result<Vec<u8>, crate::network::RequestFailed>,
    ) -> Result<Delivered, (String, bool)> {
        let (_, t) = run.at(i);
        let d = match answer {
            Ok(bytes) => check_tile(&bytes, req, t).map_err(|e| (e.to_string(), false))?,
            Err(e) => return Err((e.to_string(), false)),
        };
        if !signed_by(&d.commitment, &key, &d.sig) {
            return Err(("the tile's commitment is not signed by its worker".into(), false));
        }
        match self.spot_check(checkers, &req.spec, t, &d).await {
            Ok(checked) => {
                self.update(&run.id, |st| st.spot_checked += checked as u64);
                Ok(d)
            }
            Err(bad) => {
                warn!(job = run.id, %peer, tile = i, sub_tile = bad.index, reason = bad.reason, "bad tile: evidence to the ledger; the worker gets no more tiles of this job");
                self.update(&run.id, |st| st.bad_tiles += 1);
                self.evidence(run.job, &req.spec, key, &d, bad).await;
                Err(("failed the spot check".into(), true))
            }
        }
    }

    /// Checks the copies still out when the job ended, as they come (each request ends within
    /// its timeout); a bad one is evidence as during the job.
    async fn check_late(self, mut inflight: Inflight, mut checkers: Checkers, run: Run) {
        while let Some(joined) = inflight.next().await {
            if let Ok((peer, key, i, req, Ok(answer), ..)) = joined {
                let checked = self.check_answer(&mut checkers, &run, peer, key, i, &req, answer).await;
                debug!(job = run.id, %peer, tile = i, ok = checked.is_ok(), "a copy that came after the job was checked");
            }
        }
    }

    /// Hands tiles to free workers as the queue says (queued ones, and at the end under the
    /// capacity schedule copies of stragglers), each request a task of its own; false when no
    /// worker is connected.
    async fn hand_out(&self, run: &Run, queue: &mut TileQueue, inflight: &mut Inflight) -> bool {
        let id = &run.id;
        let workers = self.workers().await;
        let keys: HashMap<PeerId, [u8; 32]> = workers.iter().copied().collect();
        let links: Vec<(PeerId, Option<u32>)> =
            workers.iter().map(|(p, k)| (*p, self.ctx.links.get(k).map(|l| l.slowest_kbit()))).collect();
        let allowed = allowances(&links);
        let kbit_of: HashMap<PeerId, Option<u32>> = links.iter().copied().collect();
        for (peer, _) in allowed.iter().filter(|(_, n)| *n < IN_FLIGHT) {
            let kbit = kbit_of[peer].unwrap_or(0);
            let mut newly = false;
            self.update(id, |st| newly = st.slow_links.insert(peer.to_string(), kbit).is_none());
            if newly {
                info!(job = id, %peer, kbit, "the verifiers attest a slow link to this worker: one tile at a time");
            }
        }
        let ws: Vec<Worker> = allowed
            .iter()
            .map(|(peer, n)| Worker {
                peer: *peer,
                allowance: *n,
                ib_milli: self.ctx.links.ib_milli(&keys[peer]),
                link_kbit: kbit_of[peer],
            })
            .collect();
        for (peer, i) in queue.assign(&ws, Instant::now()) {
            let req = run.request(i);
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

    /// Re-renders one random sub-tile of a delivered tile (`checkers`: the job's renderers of
    /// its latest frames on this node's compute, each built at its frame's first check) and compares it with what the worker sent:
    /// `Ok(true)` it matched, `Ok(false)` the owner could not check it (its own failure says
    /// nothing about the worker; the tile is taken unchecked and not counted as checked).
    async fn spot_check(
        &self,
        checkers: &mut Checkers,
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
        let frame = spec.frames.first;
        let (existing, compute) = (checkers.get(&frame).cloned().ok_or_else(|| spec.clone()), self.ctx.compute.clone());
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
        checkers.insert(frame, r);
        while checkers.len() > CHECKERS {
            checkers.pop_first();
        }
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
    RenderReceipt { job: run.job, tile: i, worker, work_units: s.work_units(run.at(i as usize).1), signed }
}
