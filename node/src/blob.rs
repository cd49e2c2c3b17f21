//! Blobs between peers (`ifx_protocols::blob`): this node serves the blobs its store holds,
//! chunk by chunk, and fetches the ones a job needs from the peer that asked for the work or,
//! when that peer goes away mid-transfer, from the holders the DHT names (Kademlia provider
//! records: a node that fetched a blob announces it), going on from the same offset. Chunks
//! go to the store as they come, so a fetch a restart interrupted goes on from there too.

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
    /// This node could not keep what came (its store is full of pinned blobs, or failing).
    #[error("cannot keep it: {0}")]
    Store(String),
    #[error("the network stopped")]
    Stopped,
}

/// How long a fetch waits for the DHT to name a blob's holders when its first source failed.
/// A lookup on a healthy DHT of hundreds of nodes takes a few round trips; one that takes
/// longer is not worth the wait (the fetch is retried by the next request for the work).
pub const PROVIDER_WAIT: Duration = Duration::from_secs(5);

/// Where a fetch's chunks go, in order: the node's blob store, or memory.
pub trait Sink {
    /// Keeps `bytes`, which belong at `offset` (every earlier byte has been kept).
    fn keep(&mut self, offset: u64, bytes: Vec<u8>) -> impl Future<Output = Result<(), String>> + Send;
}

impl Sink for Vec<u8> {
    async fn keep(&mut self, offset: u64, bytes: Vec<u8>) -> Result<(), String> {
        if offset != self.len() as u64 {
            return Err(format!("bytes for offset {offset} after {}", self.len()));
        }
        self.extend_from_slice(&bytes);
        Ok(())
    }
}

/// A blob's chunks written to its partial in the store ([`BlobStore::append`]).
struct StoreSink {
    store: BlobStore,
    hash: [u8; 32],
}

impl Sink for StoreSink {
    async fn keep(&mut self, offset: u64, bytes: Vec<u8>) -> Result<(), String> {
        let (store, hash) = (self.store.clone(), self.hash);
        blocking(move || store.append(&hash, offset, &bytes)).await
    }
}

/// Runs `f` off the async threads; its error as text.
async fn blocking<T: Send + 'static, E: ToString + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the store task stopped: {e}")),
    }
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

/// Goes on with `f` from its offset, asking `sources` in order, at [`pace`], giving each chunk
/// to `sink`: a source that fails, refuses or lies is left for the next. When the first source
/// says it does not hold the blob and has sent nothing, the fetch ends there (the owner of a
/// job holds its assets; a stranger's request for blobs nobody holds must not make this node
/// ask every peer it knows).
pub async fn fetch_from(
    net: &NetHandle,
    f: &mut Fetch,
    sources: &[PeerId],
    sink: &mut impl Sink,
) -> Result<(), FetchError> {
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
            let offset = f.received();
            match f.accept(&answer) {
                Ok(bytes) => sink.keep(offset, bytes).await.map_err(FetchError::Store)?,
                Err(ChunkError::NotHeld) if n == 0 && asked == 1 => return Err(FetchError::NotHeld),
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

/// How a fetch went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Bytes an earlier, interrupted fetch had kept, which this one went on from.
    pub resumed: u64,
    /// The peers asked, in order: the first source, then the holders found when it failed.
    pub sources: Vec<PeerId>,
}

/// Peers to go on with when `first` failed mid-fetch: up to [`MAX_SOURCES`] holders the DHT
/// names (waiting at most [`PROVIDER_WAIT`]), or, when it names none, connected peers.
async fn other_holders(net: &NetHandle, hash: [u8; 32], first: PeerId) -> Vec<PeerId> {
    let named = tokio::time::timeout(PROVIDER_WAIT, net.providers(hash)).await.ok().and_then(|r| r.ok());
    let mut others: Vec<PeerId> = named.unwrap_or_default().into_iter().filter(|p| *p != first).collect();
    if others.is_empty()
        && let Ok(s) = net.snapshot().await
    {
        others = s.connected.iter().filter_map(|p| p.peer_id.parse::<PeerId>().ok()).filter(|p| *p != first).collect();
    }
    others.truncate(MAX_SOURCES);
    others
}

/// Fetches `a` into `store`, from `first` (the peer that asked for the work), then, if it
/// fails mid-transfer, from other holders ([`other_holders`]), going on from whatever an
/// earlier fetch kept; checks it against its hash, keeps it, and announces this node as a
/// holder in the DHT. A fetch that fails keeps what came (the next goes on from it), unless
/// the bytes did not hash to the asked hash: then they are dropped.
pub async fn fetch(net: &NetHandle, store: &BlobStore, a: &AssetRef, first: PeerId) -> Result<Fetched, FetchError> {
    if a.len > MAX_ASSET_BYTES {
        return Err(FetchError::Bad(format!("{} bytes announced, the limit is {MAX_ASSET_BYTES}", a.len)));
    }
    let (hash, len, s) = (a.hash, a.len, store.clone());
    // What an earlier fetch kept is read back and hashed (up to 256 MiB: a fraction of a
    // second, against minutes of transfer).
    // `None`: the whole blob is held already.
    let f = blocking(move || -> Result<Option<Fetch>, String> {
        let held = s.begin(&hash, len).map_err(|e| e.to_string())?;
        if s.has(&hash) {
            return Ok(None);
        }
        let mut f = Fetch::new(hash, len);
        while f.received() < held {
            let b = s.read_partial(&hash, f.received(), blob::CHUNK_BYTES).map_err(|e| e.to_string())?;
            if b.is_empty() {
                return Err("a partial fetch reads back short".into());
            }
            f.held(&b)?;
        }
        Ok(Some(f))
    })
    .await
    .map_err(FetchError::Store)?;
    let Some(mut f) = f else { return Ok(Fetched { resumed: len, sources: Vec::new() }) };
    let resumed = f.received();
    if resumed > 0 {
        info!(
            asset = a.name,
            resumed_kib = resumed >> 10,
            kib = len.div_ceil(1024),
            "a blob fetch goes on from what an earlier one kept"
        );
    }
    let mut sink = StoreSink { store: store.clone(), hash };
    let mut sources = vec![first];
    match fetch_from(net, &mut f, &sources, &mut sink).await {
        Ok(()) => {}
        Err(FetchError::NoSource(why)) => {
            sources.extend(other_holders(net, hash, first).await);
            fetch_from(net, &mut f, &sources[1..], &mut sink).await.map_err(|e| match e {
                FetchError::NoSource(more) if !more.is_empty() => FetchError::NoSource(format!("{why}; {more}")),
                FetchError::NoSource(_) => FetchError::NoSource(why),
                e => e,
            })?;
        }
        Err(e) => return Err(e),
    }
    let s = store.clone();
    if let Err(e) = f.finish() {
        let _ = blocking(move || s.abandon(&hash)).await;
        return Err(FetchError::Bad(e));
    }
    blocking(move || s.commit(&hash)).await.map_err(FetchError::Store)?;
    net.provide(hash).await;
    Ok(Fetched { resumed, sources })
}

/// How far one job's asset fetch is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    Fetching { have: u64, total: u64 },
    Done,
    Failed(String),
}

/// The lock one blob's fetch holds.
type OneFetch = Arc<tokio::sync::Mutex<()>>;

/// A worker's asset fetches, one task per job (by spec hash); tile requests of that job wait a
/// little for it, then are answered busy with its progress.
#[derive(Clone)]
pub struct AssetFetches {
    store: BlobStore,
    net: NetHandle,
    running: Arc<Mutex<BTreeMap<[u8; 32], watch::Receiver<Progress>>>>,
    /// Blobs being fetched, each behind its lock.
    by_hash: Arc<Mutex<BTreeMap<[u8; 32], OneFetch>>>,
}

impl AssetFetches {
    pub fn new(store: BlobStore, net: NetHandle) -> Self {
        Self { store, net, running: Default::default(), by_hash: Default::default() }
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
            // One fetch of a blob at a time, whichever jobs share it (their partial in the
            // store takes its pieces in order).
            let lock = {
                let mut by_hash = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
                by_hash.retain(|_, l| Arc::strong_count(l) > 1);
                by_hash.entry(a.hash).or_default().clone()
            };
            let _one = lock.lock().await;
            if !self.store.has(&a.hash) {
                let got = fetch(&self.net, &self.store, a, owner).await.map_err(|e| format!("{}: {e}", a.name))?;
                debug!(
                    asset = a.name,
                    bytes = a.len,
                    resumed = got.resumed,
                    sources = got.sources.len(),
                    "fetched a job's asset"
                );
                fetched += a.len - got.resumed;
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
