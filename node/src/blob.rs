//! Blobs between peers (`ifx_protocols::blob`): this node serves the blobs its store holds,
//! chunk by chunk, and fetches the ones a job needs from the peer that asked for the work or,
//! when that peer goes away mid-transfer, from the others, going on from the same offset.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ifx_protocols::blob::{self, ChunkError, Fetch};
use ifx_protocols::render::assets::{AssetRef, MAX_ASSET_BYTES};
use ifx_storage::{BlobLimits, BlobStore};
use libp2p::PeerId;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::network::{InboundRequest, NetHandle, Proto};

/// The node's blob store: FL weights and updates, models and render assets share it. 1 GiB
/// on disk and 4,096 blobs, twice the largest job's assets
/// ([`ifx_protocols::render::assets::MAX_JOB_ASSET_BYTES`]); the largest blob is the largest
/// asset (FL and models check their own, much smaller, limits).
pub const LIMITS: BlobLimits = BlobLimits { max_bytes: 1 << 30, max_blobs: 4096, max_blob: MAX_ASSET_BYTES as usize };
/// Chunk requests answered at once (each is one read of up to 512 KiB).
const SERVING: usize = 4;
/// Peers other than the first tried for one blob, when the first fails mid-transfer.
pub const MAX_SOURCES: usize = 4;
/// Jobs whose assets are fetched at once by one worker; a request for another job's tile is
/// answered busy meanwhile.
pub const MAX_FETCHES: usize = 2;

/// Answers blob requests from `store` until `shutdown`.
pub async fn serve(
    mut inbound: mpsc::Receiver<InboundRequest>,
    net: NetHandle,
    store: BlobStore,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(SERVING));
    loop {
        let req = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = inbound.recv() => match r { Some(r) => r, None => return },
        };
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (net, store) = (net.clone(), store.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let data = req.data;
            let answer = tokio::task::spawn_blocking(move || {
                blob::answer(&data, |hash, offset| {
                    store
                        .chunk(hash, offset.min(usize::MAX as u64) as usize, blob::CHUNK_BYTES)
                        .map_err(|e| e.to_string())
                })
            })
            .await
            .unwrap_or_else(|e| blob::BlobResponse::Error(e.to_string()));
            net.respond(Proto::Blob, req.channel, answer.encode()).await;
        });
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The first source (the job's owner) does not hold it: nobody is asked further.
    #[error("the peer that asked for the work does not hold it")]
    NotHeld,
    #[error("no peer served it: {0}")]
    NoSource(String),
    #[error("{0}")]
    Bad(String),
    #[error("the network stopped")]
    Stopped,
}

/// Chunks asked of one peer back to back before pacing, and the pace after: half the burst and
/// three quarters of the rate a holder allows each peer (`network::rate`, 64 and 64 a second).
/// A holder drops a request over its rate (that costs a stranger, not the node), so a fetch at
/// full speed on a fast link had its requests dropped after 64 chunks and failed (found by the
/// 48 MiB fetch of `node/tests/assets.rs`).
fn pace() -> (u64, u64) {
    let r = crate::network::rate::rate_of(Proto::Blob);
    ((r.burst / 2) as u64, (r.milli_per_sec as u64 * 3 / 4 / 1000).max(1))
}

/// Goes on with `f` from its offset, asking `sources` in order, at [`pace`]: a source that
/// fails, refuses or lies is left for the next. When the first source says it does not hold the blob, the
/// fetch ends there (the owner of a job holds its assets; a stranger's request for blobs
/// nobody holds must not make this node ask every peer it knows).
pub async fn fetch_from(net: &NetHandle, f: &mut Fetch, sources: &[PeerId]) -> Result<(), FetchError> {
    let mut why = Vec::new();
    let (burst, per_sec) = pace();
    for (n, peer) in sources.iter().enumerate() {
        let (t0, mut asked) = (tokio::time::Instant::now(), 0u64);
        while !f.complete() {
            if asked >= burst {
                tokio::time::sleep_until(t0 + Duration::from_millis((asked - burst) * 1000 / per_sec)).await;
            }
            asked += 1;
            let answer = match net.request(Proto::Blob, *peer, f.request().encode()).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    why.push(format!("{peer}: {e}"));
                    break;
                }
                Err(_) => return Err(FetchError::Stopped),
            };
            match f.accept(&answer) {
                Ok(()) => {}
                Err(ChunkError::NotHeld) if n == 0 && f.received() == 0 => return Err(FetchError::NotHeld),
                Err(e) => {
                    debug!(%peer, error = %e, "blob source left");
                    why.push(format!("{peer}: {e}"));
                    break;
                }
            }
        }
        if f.complete() {
            if n > 0 {
                info!(from = %peer, "a blob fetch went on from another peer");
            }
            return Ok(());
        }
    }
    Err(FetchError::NoSource(why.join("; ")))
}

/// Fetches `a` (from `first`, then up to [`MAX_SOURCES`] connected peers) and checks it against
/// its hash.
pub async fn fetch(net: &NetHandle, a: &AssetRef, first: PeerId) -> Result<Vec<u8>, FetchError> {
    if a.len > MAX_ASSET_BYTES {
        return Err(FetchError::Bad(format!("{} bytes announced, the limit is {MAX_ASSET_BYTES}", a.len)));
    }
    let mut f = Fetch::new(a.hash, a.len);
    let mut sources = vec![first];
    if let Ok(s) = net.snapshot().await {
        let others = s.connected.iter().filter_map(|p| p.peer_id.parse::<PeerId>().ok()).filter(|p| *p != first);
        sources.extend(others.take(MAX_SOURCES));
    }
    fetch_from(net, &mut f, &sources).await?;
    f.finish().map_err(FetchError::Bad)
}

/// How far one job's asset fetch is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    Fetching { have: u64, total: u64 },
    Done,
    Failed(String),
}

/// A worker's asset fetches, one task per job (by spec hash); tile requests of that job wait a
/// little for it, then are answered busy with its progress.
#[derive(Clone)]
pub struct AssetFetches {
    store: BlobStore,
    net: NetHandle,
    running: Arc<Mutex<BTreeMap<[u8; 32], watch::Receiver<Progress>>>>,
}

impl AssetFetches {
    pub fn new(store: BlobStore, net: NetHandle) -> Self {
        Self { store, net, running: Default::default() }
    }

    /// The blob store the assets go to.
    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// Makes sure `assets` are in the store, fetching the missing ones from `owner` (the peer
    /// that asked for the work); waits up to `wait`. `Ok(())` when they are all held. One fetch
    /// per set of assets, whatever asks: the frames of a sequence (each its own spec) share it.
    pub async fn ensure(&self, assets: &[AssetRef], owner: PeerId, wait: Duration) -> Result<(), String> {
        if assets.iter().all(|a| self.store.has(&a.hash)) {
            return Ok(());
        }
        let mut key = blake3::Hasher::new();
        for a in assets {
            key.update(&a.hash);
        }
        let key: [u8; 32] = *key.finalize().as_bytes();
        let mut rx = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            // Finished fetches are forgotten (what they fetched is in the store, or failed:
            // a later request tries again).
            running.retain(|_, rx| matches!(*rx.borrow(), Progress::Fetching { .. }));
            match running.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    if running.len() >= MAX_FETCHES {
                        return Err(format!("busy: fetching the assets of {MAX_FETCHES} other jobs"));
                    }
                    let total = assets.iter().map(|a| a.len).sum();
                    let (tx, rx) = watch::channel(Progress::Fetching { have: 0, total });
                    running.insert(key, rx.clone());
                    let me = self.clone();
                    let assets = assets.to_vec();
                    tokio::spawn(async move {
                        let end = match me.fetch_all(&assets, owner, &tx).await {
                            Ok(()) => Progress::Done,
                            Err(e) => Progress::Failed(e),
                        };
                        tx.send_replace(end);
                    });
                    rx
                }
            }
        };
        let done = tokio::time::timeout(wait, rx.wait_for(|p| !matches!(p, Progress::Fetching { .. })))
            .await
            .map(|r| r.map(|p| p.clone()));
        let state = match done {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => Progress::Failed("the fetch stopped".into()),
            Err(_) => rx.borrow().clone(),
        };
        match state {
            Progress::Done => Ok(()),
            Progress::Failed(e) => Err(format!("cannot fetch the job's assets: {e}")),
            Progress::Fetching { have, total } => {
                Err(format!("busy: fetching the job's assets ({} of {} KiB)", have >> 10, total.div_ceil(1024)))
            }
        }
    }

    async fn fetch_all(&self, assets: &[AssetRef], owner: PeerId, tx: &watch::Sender<Progress>) -> Result<(), String> {
        let total = assets.iter().map(|a| a.len).sum();
        let (mut have, mut fetched, t0) = (0u64, 0u64, std::time::Instant::now());
        for a in assets {
            if !self.store.has(&a.hash) {
                let bytes = fetch(&self.net, a, owner).await.map_err(|e| format!("{}: {e}", a.name))?;
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || store.put(&bytes))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("{}: {e}", a.name))?;
                debug!(asset = a.name, bytes = a.len, "fetched a job's asset");
                fetched += a.len;
            }
            have += a.len;
            tx.send_replace(Progress::Fetching { have, total });
        }
        info!(
            assets = assets.len(),
            fetched_kib = fetched.div_ceil(1024),
            held_kib = (total - fetched).div_ceil(1024),
            ms = t0.elapsed().as_millis() as u64,
            %owner,
            "a job's assets are here"
        );
        Ok(())
    }
}
