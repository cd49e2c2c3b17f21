//! Distributed render jobs. A job owner (the node a job is submitted to) splits the image into
//! tiles, asks worker peers (role worker in the heartbeat table, connected) for them over
//! request-response, two tiles in flight per worker, re-queues a tile whose worker fails or
//! times out, assembles the PNG, and signs a render receipt into the ledger for every tile it
//! accepts. Workers render what they are asked with their best backend and sign a commitment
//! to each tile; the owner re-renders one sub-tile of every tile, of its own choosing, before
//! the receipt, and a tile that does not match is evidence in the ledger (`judge` is the
//! verifiers' side of it).
//!
//! `owner`: the job's task (the I/O); `queue`: its tile queue, sans I/O; `worker`: rendering
//! tiles for others. The wire types are the protocol's (`ifx_protocols::render::job`).

pub mod judge;
mod owner;
pub mod queue;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ed25519_dalek::SigningKey;
pub use ifx_protocols::api::{JobStatus, RunState, Schedule};
use ifx_protocols::ledger::PaidWork;
pub use ifx_protocols::render::job::{JobSpec, MAX_TILE, MAX_TILE_RESPONSE, TILE_TIMEOUT};
use ifx_protocols::{NetworkConfig, PeerTable};
use ifx_render::{RenderError, Scene, builtin, load};
use tokio_util::sync::CancellationToken;

pub use worker::{Caps, Signer, serve};

use crate::ledger::LedgerHandle;
use crate::network::NetHandle;

/// Checks a job's spec and builds its scene (a built-in, or its inline TOML).
pub fn job_scene(spec: &JobSpec) -> Result<Scene, RenderError> {
    spec.validate()?;
    match &spec.scene_toml {
        Some(t) => load::parse_inline_toml(t),
        None => builtin::by_name(&spec.scene),
    }
}

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The owner could not pay for the job (unfunded: HTTP 402).
    #[error("cannot pay for the job: {0}")]
    Pay(#[from] crate::settle::PayError),
}

/// Why a render job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The job could not go on (no worker, the node stopping, the network gone).
    #[error("{0}")]
    Stopped(String),
}

/// The jobs this node owns.
#[derive(Clone)]
pub struct Jobs {
    jobs: Arc<Mutex<BTreeMap<String, JobStatus>>>,
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
    shutdown: CancellationToken,
}

impl Jobs {
    /// A job manager writing PNGs to `out_dir`.
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
        shutdown: CancellationToken,
    ) -> Self {
        let ctx = JobContext { net, compute, heartbeats, ledger, key, network, out_dir, links, shutdown };
        Self { jobs: Arc::new(Mutex::new(BTreeMap::new())), ctx: Arc::new(ctx) }
    }

    /// Starts a job, paying for it first unless it is `unpaid`, its tiles handed out as
    /// `schedule` says; returns its id.
    pub async fn submit(&self, spec: JobSpec, schedule: Schedule) -> Result<String, SubmitError> {
        job_scene(&spec)?;
        let job: [u8; 16] = rand::random();
        let id = hex::encode(job);
        let mut status = JobStatus::started(id.clone(), spec.clone(), spec.settings().tile_count() as usize);
        status.schedule = schedule;
        if !spec.unpaid {
            let c = &self.ctx;
            let (work, units) = (PaidWork::render(&spec.settings()), spec.settings().total_units());
            let (paid, entry) = crate::settle::pay_for(&c.ledger, &c.net, &c.key, &c.network, job, work, units).await?;
            (status.paid, status.payment) = (paid, Some(entry));
        }
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), status);
        let me = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = me.run(job, spec, schedule, started).await;
            me.update(&hex::encode(job), |s| {
                s.secs = started.elapsed().as_secs_f64();
                match result {
                    Ok(png) => {
                        s.state = RunState::Done;
                        s.exr = Some(ifx_render::png::exr_path(&png).display().to_string());
                        s.png = Some(png.display().to_string());
                    }
                    Err(e) => {
                        s.state = RunState::Failed;
                        s.error = Some(e.to_string());
                    }
                }
            });
        });
        Ok(id)
    }

    /// A job's status.
    pub fn get(&self, id: &str) -> Option<JobStatus> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
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
