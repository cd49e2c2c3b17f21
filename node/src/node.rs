//! A running node: checks the data dir, loads the identity, opens the database, starts the
//! network, the router, the heartbeat publisher and the API, and stops them all in order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ifx_protocols::PeerTable;
use ifx_storage::{Db, LedgerStore, PeerStore};
use libp2p::{Multiaddr, PeerId};
use prometheus_client::registry::Registry;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api;
use crate::compute::{Compute, Devices};
use crate::config::NodeConfig;
use crate::faults::Faults;
use crate::heartbeat::Announcer;
use crate::identity::{Identity, IdentityError};
use crate::ledger::{Attester, LedgerHandle};
use crate::metrics::{NodeMetrics, SharedRegistry};
use crate::network::{NetHandle, event_loop};
use crate::router::Router;
use crate::supervisor::{ServiceFailed, Services};

/// File in the data dir holding the bound API address (written once the API listens).
pub const API_ADDR_FILE: &str = "api.addr";
pub use crate::api::guard::TOKEN_FILE as API_TOKEN_FILE;
/// File in the data dir holding the network parameters the node ran with (`[network]`).
pub const NETWORK_FILE: &str = "network.toml";
/// Latency samples kept for `/heartbeats/latency`.
const LATENCY_SAMPLES: usize = 8192;

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("data dir {path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("database in {path}: {reason}")]
    Storage { path: PathBuf, reason: String },
    #[error(transparent)]
    Network(#[from] event_loop::StartError),
    #[error("cannot serve the API on {addr}: {reason}")]
    Api { addr: SocketAddr, reason: String },
    #[error(transparent)]
    Config(#[from] ifx_protocols::InvalidValue),
}

/// A started node. Dropping it without [`Node::stop`] leaves its tasks running until the
/// runtime ends.
pub struct Node {
    pub peer_id: PeerId,
    pub listen_addrs: Vec<Multiaddr>,
    pub api_addr: Option<SocketAddr>,
    pub net: NetHandle,
    pub heartbeats: Arc<Mutex<PeerTable>>,
    pub registry: SharedRegistry,
    pub ledger: LedgerHandle,
    pub jobs: crate::render::Jobs,
    /// This node's challenge results (empty unless it is a verifier).
    pub por: crate::por::PorStats,
    /// Challenge outcomes announced on the `por` topic (its own, if a verifier, and received).
    pub announcements: crate::por::Announcements,
    /// Federated learning: owned tasks, training for others, audits.
    pub fl: crate::fl::Fl,
    /// Inference: owned jobs, serving batches for others.
    pub infer: crate::infer::Infer,
    /// Settlement: seals (verifiers), rewards, stake and governance entries.
    pub settle: crate::settle::Settle,
    /// The operator's pause of this node's work.
    pub pause: crate::pause::Pause,
    /// Content-addressed blobs: render assets, FL weights, models; partial fetches.
    pub blobs: ifx_storage::BlobStore,
    shutdown: CancellationToken,
    /// Watches every service and the network task (see [`Services::supervise`]).
    supervisor: JoinHandle<Result<(), ServiceFailed>>,
}

impl Node {
    /// Starts every part of the node described by a validated `cfg`, with GPU devices of its
    /// own.
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        let devices = Arc::new(Devices::choosing(&cfg.render.gpu));
        Self::start_on(cfg, devices).await
    }

    /// Starts a node whose GPU work runs on `devices` (shared by the nodes of one process).
    pub async fn start_on(mut cfg: NodeConfig, devices: Arc<Devices>) -> Result<Node, NodeError> {
        cfg.validate()?;
        // A GPU the operator named must be there: a typo would otherwise render elsewhere.
        if !cfg.render.gpu.trim().is_empty() && cfg.render.backend != ifx_render::Backend::Cpu {
            let gpu = cfg.render.gpu.clone();
            tokio::task::spawn_blocking(move || ifx_render::gpu::select_adapter(&gpu).map(|_| ()))
                .await
                .map_err(|e| ifx_protocols::InvalidValue::new("render.gpu", e.to_string()))?
                .map_err(|e| ifx_protocols::InvalidValue::new("render.gpu", e.to_string()))?;
        }
        let faults = Faults { slow_ms: cfg.faults.slow_ms, slow_factor: cfg.faults.slow_factor };
        let started_at = Instant::now();
        let data_dir = cfg.node.data_dir.clone();
        prepare_data_dir(&data_dir)?;
        // A stale address from an earlier run must not be mistaken for this one.
        let _ = std::fs::remove_file(data_dir.join(API_ADDR_FILE));
        let identity = Identity::load_or_create(&data_dir)?;
        // The network parameters beside the database, so `ifx rewards --data-dir` settles
        // offline with the same economics and genesis.
        write_atomic(&data_dir, NETWORK_FILE, &cfg.network_toml())
            .map_err(|e| NodeError::DataDir { path: data_dir.clone(), reason: e.to_string() })?;
        // From here on the node runs on the wire id: the name and the fingerprint of the genesis,
        // clock and economics it was given (signatures, protocol names, topics, the ledger).
        let wire_id = cfg.network.wire_id();
        let name = std::mem::replace(&mut cfg.network.id, wire_id);
        info!(network = name, wire_id = cfg.network.id, "network fingerprinted");
        let db_path = data_dir.join("db");
        let db = Db::open(&db_path)
            .map_err(|e| NodeError::Storage { path: db_path.clone(), reason: storage_reason(&e.to_string()) })?;

        let mut registry = Registry::default();
        let metrics = NodeMetrics::default();
        metrics.register(&mut registry);
        let ledger = LedgerStore::open(db.clone(), &cfg.network.id)
            .map_err(|e| NodeError::Storage { path: db_path.clone(), reason: e.to_string() })?;
        info!(entries = ledger.ledger().len(), root = hex::encode(ledger.ledger().root()), "ledger opened");
        let ledger = LedgerHandle::new(ledger, metrics.clone());
        ledger.hold_appends_until_own_chain_fetched(&identity.public_key());
        let capacity = crate::capacity::probe(&cfg.render.gpu, cfg.render.backend).await;
        // The renderers' GGX tables, once per process, before any render or check waits on them.
        tokio::task::spawn_blocking(ifx_render::ggx::warm);
        info!(peer_id = %identity.peer_id(), role = cfg.node.role.as_str(), network = cfg.network.id,
            backend = capacity.backend, adapter = capacity.adapter, "starting node");

        let shutdown = CancellationToken::new();
        let started =
            event_loop::start(&identity, &cfg, &mut registry, Some(PeerStore::new(db.clone())), shutdown.child_token())
                .await?;
        let registry = SharedRegistry::new(registry);
        let n = &cfg.network;
        let slots = ifx_protocols::heartbeat::SlotClock::new(
            n.genesis_unix_secs.saturating_mul(1000),
            n.epoch_secs.saturating_mul(1000),
            n.heartbeat_interval_ms,
        );
        let heartbeats = Arc::new(Mutex::new(
            PeerTable::new(n.epoch_secs.saturating_mul(1000).max(60_000), LATENCY_SAMPLES).with_slots(slots),
        ));

        let mut services = Services::default();
        let settle = crate::settle::Settle {
            ledger: ledger.clone(),
            key: identity.signing_key().clone(),
            network: cfg.network.clone(),
            net: started.handle.clone(),
            cache: Default::default(),
        };
        // The last epoch this verifier's attester is done with: its seal of an epoch waits for
        // its own attestations of it.
        let attested = Arc::new(std::sync::atomic::AtomicU64::new(cfg.network.epoch_at(crate::unix_time_us() / 1000)));
        if cfg.node.role == ifx_protocols::Role::Verifier {
            services.spawn("sealer", settle.clone().run_sealer(attested.clone(), shutdown.child_token()));
        }
        let announcements = crate::por::Announcements::default();
        // The operator's pause (`POST /pause`): the node stays in the network, does no work.
        let pause = crate::pause::Pause::default();
        let policy = cfg.work.policy()?;
        if policy != crate::pause::work::Policy::default() {
            services.spawn("work-hours", crate::pause::watch(pause.clone(), policy, shutdown.child_token()));
        }
        let blobs = ifx_storage::BlobStore::open(db.clone(), crate::blob::LIMITS)
            .map_err(|e| NodeError::Storage { path: db_path.clone(), reason: e.to_string() })?;
        // One set of fetches for the worker and the judge: a blob is fetched once whoever needs it.
        let fetches = crate::blob::AssetFetches::new(blobs.clone(), started.handle.clone());
        let fl = crate::fl::Fl::new(
            started.handle.clone(),
            identity.signing_key().clone(),
            cfg.network.clone(),
            ledger.clone(),
            cfg.node.role,
            &cfg.fl,
            faults,
            blobs.clone(),
            data_dir.join("fl"),
            pause.clone(),
            heartbeats.clone(),
            shutdown.child_token(),
        )
        .map_err(|e| ifx_protocols::InvalidValue::new("fl.data", e.to_string()))?;
        services.spawn("fl", fl.clone().serve(started.fl_inbound, shutdown.child_token()));
        // Models are blobs beside FL's weights, so workers fetch them from owners over `fl`.
        let infer = crate::infer::Infer::new(crate::infer::Parts {
            net: started.handle.clone(),
            key: identity.signing_key().clone(),
            network: cfg.network.clone(),
            ledger: ledger.clone(),
            role: cfg.node.role,
            cheat: cfg.infer.cheat,
            faults,
            blobs: blobs.clone(),
            out_dir: data_dir.join("infer"),
            pause: pause.clone(),
            heartbeats: heartbeats.clone(),
            shutdown: shutdown.child_token(),
        });
        services.spawn("infer", infer.clone().serve(started.infer_inbound, shutdown.child_token()));
        services.spawn("storage", ledger.clone().watch_durability(shutdown.child_token()));
        let router = Router::new(
            cfg.network.clone(),
            heartbeats.clone(),
            ledger.clone(),
            metrics.clone(),
            announcements.clone(),
        )
        .with_fl(fl.clone())
        .with_loss(cfg.faults.drop_gossip_pct);
        services.spawn("router", router.run(started.inbound, started.handle.clone(), shutdown.child_token()));
        services.spawn(
            "ledger-sync",
            ledger.clone().serve(started.sync_inbound, started.handle.clone(), shutdown.child_token()),
        );
        services.spawn(
            "anti-entropy",
            ledger.clone().anti_entropy(
                started.handle.clone(),
                std::time::Duration::from_millis(cfg.ledger.sync_interval_ms),
                identity.public_key(),
                // A bootnode listing itself is not one to wait for (the swarm skips it too).
                cfg.bootnodes()?
                    .iter()
                    .filter_map(crate::network::peer_of)
                    .filter(|p| *p != identity.peer_id())
                    .collect(),
                shutdown.child_token(),
            ),
        );
        let backend = cfg.render.backend;
        let compute = Compute::new(backend, devices, faults);
        services.spawn(
            "render-worker",
            crate::render::serve(
                started.render_inbound,
                started.handle.clone(),
                compute.clone(),
                crate::render::Signer {
                    key: identity.signing_key().clone(),
                    fake: cfg.render.fake_tiles,
                    rendered: metrics.render_tiles.clone(),
                },
                pause.clone(),
                cfg.render.caps(),
                fetches.clone(),
                shutdown.child_token(),
            ),
        );
        services.spawn(
            "blobs",
            crate::blob::serve(started.blob_inbound, started.handle.clone(), blobs.clone(), shutdown.child_token()),
        );
        if cfg.render.fake_tiles {
            tracing::warn!("this node FAKES job tiles: one sample in 64, signed as the job's (test mode)");
        }
        // Who may challenge this worker: the verifiers bonded in the settlement.
        let verifiers = crate::por::verifiers::BondedVerifiers::default();
        services.spawn("verifier-view", verifiers.clone().refresh(settle.clone(), shutdown.child_token()));
        // Workers' links as those verifiers attest them: for the tile queue and `GET /peers`.
        let links = crate::links::AttestedLinks::default();
        services.spawn(
            "link-view",
            links.clone().refresh(ledger.clone(), cfg.network.clone(), verifiers.clone(), shutdown.child_token()),
        );
        let jobs = crate::render::Jobs::new(
            started.handle.clone(),
            compute.clone(),
            heartbeats.clone(),
            ledger.clone(),
            identity.signing_key().clone(),
            cfg.network.clone(),
            data_dir.join("jobs"),
            links.clone(),
            ifx_storage::JobStore::new(db.clone()),
            blobs.clone(),
            shutdown.child_token(),
        );
        // Jobs that were running when the node stopped go on where they were. Awaited (it reads
        // the job records and starts the running ones' tasks): a job the store holds is listed
        // before the API answers, never "no such job" for a moment after a restart.
        jobs.resume().await;
        let cheat = cfg.por.cheat;
        if cheat != ifx_protocols::por::cheat::Behaviour::Honest {
            tracing::warn!(mode = ?cheat, "this node CHEATS on proof-of-rendering challenges (test mode)");
        }
        services.spawn(
            "por-worker",
            crate::por::serve(
                started.por_inbound,
                started.handle.clone(),
                compute.clone(),
                cheat,
                crate::por::HeavyWork { verifiers, pause: pause.clone() },
                crate::por::Prover { key: identity.signing_key().clone(), network: cfg.network.clone() },
                shutdown.child_token(),
            ),
        );
        let por_stats = crate::por::PorStats::default();
        if cfg.node.role == ifx_protocols::Role::Verifier {
            let challenger = crate::por::Challenger {
                net: started.handle.clone(),
                heartbeats: heartbeats.clone(),
                stats: por_stats.clone(),
                verifier_id: identity.public_key(),
                every: std::time::Duration::from_millis(cfg.por.challenge_interval_ms),
                max_in_flight: cfg.por.max_in_flight as usize,
                ib_reference: cfg.network.ib_reference_iters_per_sec,
                key: identity.signing_key().clone(),
                network: cfg.network.clone(),
                announcements: announcements.clone(),
                last: Default::default(),
            };
            services.spawn("challenger", challenger.run(shutdown.child_token()));
            let judge = crate::render::judge::Judge {
                ledger: ledger.clone(),
                net: started.handle.clone(),
                key: identity.signing_key().clone(),
                network: cfg.network.clone(),
                fetches: fetches.clone(),
            };
            services.spawn("delivery-judge", judge.run(shutdown.child_token()));
            let link_samples = crate::por::links::LinkSamples::default();
            let attester = Attester {
                ledger: ledger.clone(),
                key: identity.signing_key().clone(),
                net: cfg.network.clone(),
                heartbeats: heartbeats.clone(),
                por: por_stats.clone(),
                attested: attested.clone(),
                links: link_samples.clone(),
            };
            services.spawn("attester", attester.run(started.handle.clone(), shutdown.child_token()));
            let prober = crate::por::links::LinkProber {
                net: started.handle.clone(),
                heartbeats: heartbeats.clone(),
                network: cfg.network.clone(),
                samples: link_samples,
            };
            services.spawn("link-prober", prober.run(shutdown.child_token()));
        }
        let announcer = Announcer {
            key: identity.signing_key().clone(),
            net: cfg.network.clone(),
            role: cfg.node.role,
            capacity: capacity.clone(),
            boot_unix_ms: crate::unix_time_us() / 1000,
            pause: pause.clone(),
        };
        services.spawn("heartbeats", announcer.run(started.handle.clone(), metrics.clone(), shutdown.child_token()));

        let mut api_addr = None;
        if let Some(addr) = cfg.api_addr()? {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| NodeError::Api {
                addr,
                reason: if e.kind() == std::io::ErrorKind::AddrInUse {
                    "address already in use (is another node running with this --api?)".into()
                } else {
                    e.to_string()
                },
            })?;
            let bound = listener.local_addr().map_err(|e| NodeError::Api { addr, reason: e.to_string() })?;
            // Each service brings its routes and the state they read.
            let app = api::node_routes(api::NodeApi {
                peer_id: identity.peer_id().to_string(),
                role: cfg.node.role,
                network: cfg.network.clone(),
                capacity,
                started_at,
                net: started.handle.clone(),
                heartbeats: heartbeats.clone(),
                registry: registry.clone(),
                links: links.clone(),
                pause: pause.clone(),
            })
            .merge(api::ledger_routes(api::LedgerApi { ledger: ledger.clone(), me: identity.public_key() }))
            .merge(api::jobs_routes(jobs.clone()))
            .merge(api::por_routes(api::PorApi {
                stats: por_stats.clone(),
                verifier: cfg.node.role == ifx_protocols::Role::Verifier,
                announcements: announcements.clone(),
                ledger: ledger.clone(),
            }))
            .merge(api::fl_routes(fl.clone()))
            .merge(api::infer_routes(infer.clone()))
            .merge(api::settle_routes(settle.clone()))
            .merge(api::dashboard_routes());
            // The token first, the address after: whoever sees `api.addr` finds the token too.
            let token = api::guard::Token::create(&data_dir).map_err(|e| NodeError::DataDir {
                path: data_dir.clone(),
                reason: format!("writing the API token: {e}"),
            })?;
            services.spawn("api", api::serve(listener, app, token, shutdown.child_token()));
            write_api_addr(&data_dir, bound)
                .map_err(|e| NodeError::DataDir { path: data_dir.clone(), reason: e.to_string() })?;
            info!(addr = %bound, "API listening (GET /status, /peers, /metrics, /heartbeats/latency)");
            api_addr = Some(bound);
        }

        Ok(Node {
            peer_id: identity.peer_id(),
            listen_addrs: started.listen_addrs,
            api_addr,
            net: started.handle,
            heartbeats,
            registry,
            ledger,
            jobs,
            por: por_stats,
            announcements,
            fl,
            infer,
            settle,
            pause,
            blobs,
            supervisor: tokio::spawn(services.supervise(started.task, shutdown.clone())),
            shutdown,
        })
    }

    /// A token that stops the node when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops intake (API, heartbeats, validation) first, then the network, which saves the
    /// known peers; returns when every task has ended. A service that had failed is logged.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.stopped().await;
    }

    /// Runs until the node is asked to stop (its token cancelled) or a service fails, which
    /// stops it too; then waits for every task. `Err` names the service that failed.
    pub async fn run_until_stopped(self) -> Result<(), ServiceFailed> {
        self.stopped().await
    }

    async fn stopped(self) -> Result<(), ServiceFailed> {
        let r = self
            .supervisor
            .await
            .unwrap_or_else(|e| Err(ServiceFailed { service: "supervisor", how: format!("ended abnormally: {e}") }));
        // The render jobs' tasks end at the shutdown too; they hold the store.
        self.jobs.stopped().await;
        match &r {
            Ok(()) => info!("node stopped"),
            Err(f) => tracing::error!(error = %f, "node stopped after a failure"),
        }
        r
    }
}

/// Creates the data dir if needed and checks that it is a writable directory.
fn prepare_data_dir(dir: &Path) -> Result<(), NodeError> {
    let err = |reason: String| NodeError::DataDir { path: dir.into(), reason };
    if dir.exists() && !dir.is_dir() {
        return Err(err("exists but is not a directory".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create it: {e}")))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok").map_err(|e| err(format!("is not writable: {e}")))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

fn storage_reason(e: &str) -> String {
    if e.contains("LOCK") || e.contains("lock") {
        format!("{e} (is another node using this data dir?)")
    } else {
        e.to_string()
    }
}

/// Writes `dir/name` through a temp file and a rename, so readers never see half a file.
fn write_atomic(dir: &Path, name: &str, contents: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(tmp, dir.join(name))
}

fn write_api_addr(dir: &Path, addr: SocketAddr) -> std::io::Result<()> {
    write_atomic(dir, API_ADDR_FILE, &addr.to_string())
}
