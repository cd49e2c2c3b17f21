//! Distributed render jobs. A job owner (the node a job is submitted to) splits the image into
//! tiles, asks worker peers (role worker in the heartbeat table, connected) for them over
//! request-response, two tiles in flight per worker, re-queues a tile whose worker fails or
//! times out, assembles the PNG, and signs a render receipt into the ledger for every tile it
//! accepts. Workers render what they are asked with their best backend and sign a commitment
//! to each tile; the owner re-renders one sub-tile of every tile, of its own choosing, before
//! the receipt, and a tile that does not match is evidence in the ledger (`judge` is the
//! verifiers' side of it).
//!
//! The owner keeps each job's spec, status and accepted tiles in its store: a restart resumes
//! the jobs that were running, asking only for the tiles not yet kept, and a tile's receipt is
//! written once whatever the restarts (`persist`).
//!
//! `owner`: the job's task (the I/O); `queue`: its tile queue, sans I/O; `worker`: rendering
//! tiles for others; `persist`: the records on disk. The wire types are the protocol's
//! (`ifx_protocols::render::job`).

pub mod judge;
mod owner;
pub mod persist;
pub mod queue;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ed25519_dalek::SigningKey;
pub use ifx_protocols::api::{JobStatus, RunState, Schedule};
use ifx_protocols::ledger::PaidWork;
pub use ifx_protocols::render::job::{JobSpec, MAX_TILE, MAX_TILE_RESPONSE, TILE_TIMEOUT};
use ifx_protocols::{NetworkConfig, PeerTable};
use ifx_render::{RenderError, Scene, builtin, load};
use ifx_storage::{BlobStore, JobStore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use worker::{Caps, Signer, serve};

use crate::ledger::LedgerHandle;
use crate::network::NetHandle;

/// Checks a job's spec and builds its scene at its (first) frame: a built-in, its inline TOML,
/// or its scene file and the files that reads, from the assets in `blobs` (each checked against
/// its hash and length again: a store is a cache on a disk that can rot).
pub fn job_scene(spec: &JobSpec, blobs: Option<&BlobStore>) -> Result<Scene, RenderError> {
    spec.validate()?;
    if spec.assets.is_empty() {
        return match &spec.scene_toml {
            Some(t) => load::parse_inline_toml(t),
            None => builtin::by_name(&spec.scene),
        };
    }
    let blobs =
        blobs.ok_or_else(|| RenderError::Asset("the job's scene is in assets, and no store holds them here".into()))?;
    let mut files = BTreeMap::new();
    for a in &spec.assets {
        let bytes =
            blobs.get(&a.hash).map_err(|e| RenderError::Asset(format!("{}: {e}", a.name)))?.ok_or_else(|| {
                RenderError::Asset(format!("{} ({}) is not held here", a.name, hex::encode(&a.hash[..6])))
            })?;
        if bytes.len() as u64 != a.len || *blake3::hash(&bytes).as_bytes() != a.hash {
            return Err(RenderError::Asset(format!("{}: the bytes held are not the asset's", a.name)));
        }
        files.insert(a.name.clone(), Arc::new(bytes));
    }
    load::load_at(&load::Memory(files), &spec.scene, spec.time())
}

pub use ifx_render::load::{Package, package};

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The owner could not pay for the job (unfunded: HTTP 402).
    #[error("cannot pay for the job: {0}")]
    Pay(#[from] crate::settle::PayError),
    /// As many jobs as the owner runs at once are running (HTTP 429).
    #[error("{0} jobs are running on this node, the most it runs at once: submit when one has ended")]
    Busy(usize),
    /// The job could not be stored, so a restart could not resume it.
    #[error("cannot store the job: {0}")]
    Store(#[from] ifx_storage::StorageError),
}

/// Why a job could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no such job")]
    NotFound,
    #[error("the job has ended: it is {0}")]
    Ended(RunState),
}

/// Why a render job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The job could not go on (no worker, the network gone).
    #[error("{0}")]
    Stopped(String),
    /// The node is stopping: the job resumes when it starts again.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// Its operator cancelled it.
    #[error("cancelled by the operator")]
    Cancelled,
}

/// The jobs this node owns.
#[derive(Clone)]
pub struct Jobs {
    jobs: Arc<Mutex<BTreeMap<String, JobStatus>>>,
    /// Each running job's cancel switch.
    cancels: Arc<Mutex<HashMap<String, CancellationToken>>>,
    /// The jobs' tasks: the node waits for them when it stops (they hold the store).
    tasks: tokio_util::task::TaskTracker,
    ctx: Arc<JobContext>,
}

struct JobContext {
    net: NetHandle,
    /// Where the owner re-renders the sub-tiles it spot-checks.
    compute: crate::compute::Compute,
    heartbeats: Arc<Mutex<PeerTable>>,
    ledger: LedgerHandle,
    key: SigningKey,
    network: NetworkConfig,
    out_dir: PathBuf,
    /// Workers' attested links: a slow one gets fewer tiles at a time.
    links: crate::links::AttestedLinks,
    /// Jobs, their status and their kept tiles on disk.
    store: JobStore,
    /// Jobs' assets (pinned while a job runs: its workers fetch them from here).
    blobs: BlobStore,
    shutdown: CancellationToken,
}

impl Jobs {
    /// A job manager writing PNGs to `out_dir` and keeping its jobs in `store`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        net: NetHandle,
        compute: crate::compute::Compute,
        heartbeats: Arc<Mutex<PeerTable>>,
        ledger: LedgerHandle,
        key: SigningKey,
        network: NetworkConfig,
        out_dir: PathBuf,
        links: crate::links::AttestedLinks,
        store: JobStore,
        blobs: BlobStore,
        shutdown: CancellationToken,
    ) -> Self {
        let ctx = JobContext { net, compute, heartbeats, ledger, key, network, out_dir, links, store, blobs, shutdown };
        let tasks = tokio_util::task::TaskTracker::new();
        Self { jobs: Default::default(), cancels: Default::default(), tasks, ctx: Arc::new(ctx) }
    }

    /// Starts a job, paying for it first unless it is `unpaid`, its tiles handed out as
    /// `schedule` says; returns its id. The job is stored before it is paid for: a restart
    /// resumes it.
    pub async fn submit(&self, spec: JobSpec, schedule: Schedule) -> Result<String, SubmitError> {
        let blobs = self.ctx.blobs.clone();
        let checked = spec.clone();
        tokio::task::spawn_blocking(move || job_scene(&checked, Some(&blobs)))
            .await
            .map_err(|e| RenderError::Asset(format!("the scene check stopped: {e}")))??;
        let running = self.list().iter().filter(|j| j.state == RunState::Running).count();
        if running >= persist::MAX_RUNNING {
            return Err(SubmitError::Busy(running));
        }
        self.forget_oldest_ended();
        let job: [u8; 16] = rand::random();
        let id = hex::encode(job);
        let mut status = JobStatus::started(id.clone(), spec.clone(), spec.tile_total() as usize);
        status.schedule = schedule;
        status.submitted_unix_ms = crate::unix_time_us() / 1000;
        let (spec_bytes, status_bytes) = (persist::spec_bytes(&spec), persist::status_bytes(&status));
        self.on_store(move |store| store.create(&job, &spec_bytes, &status_bytes)).await?;
        if !spec.unpaid {
            let c = &self.ctx;
            let (work, units) = (PaidWork::render(&spec), spec.total_units());
            match crate::settle::pay_for(&c.ledger, &c.net, &c.key, &c.network, job, work, units).await {
                Ok((paid, entry)) => (status.paid, status.payment) = (paid, Some(entry)),
                Err(e) => {
                    let _ = self.ctx.store.remove(&job);
                    return Err(e.into());
                }
            }
        }
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), status);
        self.persist(&id).await;
        self.start(job, spec, schedule);
        Ok(id)
    }

    /// Waits for every job task to end (call once the node's shutdown token is cancelled).
    pub async fn stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Loads the stored jobs: ended ones are listed, running ones resume where they stopped.
    /// A record that does not decode is skipped with a warning.
    pub async fn resume(&self) {
        let stored = match self.on_store(|store| store.jobs()).await {
            Ok(j) => j,
            Err(e) => return warn!(error = %e, "cannot read the stored render jobs"),
        };
        for j in stored {
            let mut st = match persist::decode_job(&j) {
                Ok(st) => st,
                Err(e) => {
                    warn!(job = hex::encode(j.id), error = e, "a stored render job does not decode: skipped");
                    continue;
                }
            };
            let running = st.state == RunState::Running;
            if running && !st.spec.unpaid && st.payment.is_none() {
                // Stopped between storing the job and recording its payment: whether it paid
                // is in the ledger, not here; the job is not rendered unpaid for.
                st.state = RunState::Failed;
                st.error = Some("the node stopped while paying for the job; submit it again".into());
            } else if running {
                st.resumed += 1;
                info!(job = st.job_id, tiles = st.tiles, done = st.tiles_done, "resuming a render job after a restart");
            }
            let (id, spec, schedule) = (st.job_id.clone(), st.spec.clone(), st.schedule);
            self.jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), st);
            self.persist(&id).await;
            if running && self.get(&id).is_some_and(|s| s.state == RunState::Running) {
                // Its holder records lived in the DHT's memory: announced again, so that
                // workers whose fetch from this node fails find it among the holders.
                for a in spec.assets.iter().filter(|a| self.ctx.blobs.has(&a.hash)) {
                    self.ctx.net.provide(a.hash).await;
                }
                self.start(j.id, spec, schedule);
            }
        }
    }

    /// Runs job `job` in a task of its own, and records how it ended.
    fn start(&self, job: [u8; 16], spec: JobSpec, schedule: Schedule) {
        let id = hex::encode(job);
        let cancel = self.ctx.shutdown.child_token();
        self.cancels.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), cancel.clone());
        let me = self.clone();
        // Its assets stay while it runs, whatever else the store is asked to hold.
        for a in &spec.assets {
            self.ctx.blobs.pin(&a.hash);
        }
        self.tasks.spawn(async move {
            let started = Instant::now();
            let assets = spec.assets.clone();
            let result = me.run(job, spec, schedule, started, cancel).await;
            for a in &assets {
                me.ctx.blobs.unpin(&a.hash);
            }
            me.cancels.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            if let Err(JobError::ShuttingDown) = result {
                // Left running on disk: the next start resumes it.
                return;
            }
            me.update(&id, |s| {
                s.secs = started.elapsed().as_secs_f64();
                match result {
                    Ok(png) => {
                        s.state = RunState::Done;
                        s.exr = Some(ifx_render::png::exr_path(&png).display().to_string());
                        s.png = Some(png.display().to_string());
                    }
                    Err(JobError::Cancelled) => s.state = RunState::Cancelled,
                    Err(e) => {
                        s.state = RunState::Failed;
                        s.error = Some(e.to_string());
                    }
                }
            });
            me.persist(&id).await;
            if let Err(e) = me.on_store(move |store| store.drop_tiles(&job)).await {
                warn!(job = id, error = %e, "cannot drop an ended job's kept tiles");
            }
        });
    }

    /// Stops a running job; its tiles kept so far are dropped, its receipts stay.
    pub fn cancel(&self, id: &str) -> Result<JobStatus, CancelError> {
        let st = self.get(id).ok_or(CancelError::NotFound)?;
        if st.state != RunState::Running {
            return Err(CancelError::Ended(st.state));
        }
        if let Some(t) = self.cancels.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            t.cancel();
        }
        info!(job = id, "render job cancelled by the operator");
        Ok(st)
    }

    /// Makes room for one more job: forgets the oldest ended jobs past [`persist::MAX_KEPT`].
    fn forget_oldest_ended(&self) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        while jobs.len() >= persist::MAX_KEPT {
            let Some(id) = jobs
                .values()
                .filter(|j| j.state != RunState::Running)
                .min_by_key(|j| (j.submitted_unix_ms, j.job_id.clone()))
                .map(|j| j.job_id.clone())
            else {
                return;
            };
            jobs.remove(&id);
            if let Some(Err(e)) = hex_id(&id).map(|job| self.ctx.store.remove(&job)) {
                warn!(job = id, error = %e, "cannot forget an ended job");
            }
        }
    }

    /// Writes job `id`'s status to the store.
    async fn persist(&self, id: &str) {
        let (Some(st), Some(job)) = (self.get(id), hex_id(id)) else { return };
        let bytes = persist::status_bytes(&st);
        if let Err(e) = self.on_store(move |store| store.put_status(&job, &bytes)).await {
            warn!(job = id, error = %e, "cannot store a render job's status");
        }
    }

    /// Runs `f` on the job store on a blocking thread (RocksDB's synced writes must not hold
    /// the runtime's threads).
    async fn on_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&JobStore) -> Result<T, ifx_storage::StorageError> + Send + 'static,
    ) -> Result<T, ifx_storage::StorageError> {
        let store = self.ctx.store.clone();
        tokio::task::spawn_blocking(move || f(&store)).await.unwrap_or_else(|e| {
            Err(ifx_storage::StorageError::Corrupt {
                cf: "render jobs",
                reason: format!("the store task stopped: {e}"),
            })
        })
    }

    /// A job's status.
    pub fn get(&self, id: &str) -> Option<JobStatus> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// Keeps an asset for a job to come (`POST /assets`) and announces this node as its holder
    /// in the DHT; its hash.
    pub async fn put_asset(&self, bytes: Vec<u8>) -> Result<[u8; 32], ifx_storage::StorageError> {
        let blobs = self.ctx.blobs.clone();
        let hash = tokio::task::spawn_blocking(move || blobs.put(&bytes)).await.unwrap_or_else(|e| {
            Err(ifx_storage::StorageError::Corrupt { cf: "blobs", reason: format!("the store task stopped: {e}") })
        })?;
        self.ctx.net.provide(hash).await;
        Ok(hash)
    }

    /// Every job's status.
    pub fn list(&self) -> Vec<JobStatus> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut JobStatus)) {
        if let Some(s) = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
            f(s);
        }
    }
}

/// A job id's 16 bytes.
fn hex_id(id: &str) -> Option<[u8; 16]> {
    hex::decode(id).ok()?.try_into().ok()
}
