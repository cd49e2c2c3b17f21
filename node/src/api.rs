//! The local HTTP JSON API (loopback only): `GET /status`, `/peers`, `/heartbeats/latency`,
//! `/metrics` (Prometheus text, libp2p's metrics included), the ledger (`/ledger/*`), render
//! jobs (`/jobs`), Proof of Rendering (`/por/*`), federated learning (`POST /fl`,
//! `GET /fl`, `GET /fl/{task}`), settlement (`GET /rewards`, `GET /rewards/{epoch}`) and the
//! operator's stake and governance entries (`POST /stake`, `GET /gov`, `POST /gov/proposals`,
//! `POST /gov/votes`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ifx_protocols::heartbeat::PeerRecord;
use ifx_protocols::{Capacity, NetworkConfig, PeerTable, Role};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ledger::{LedgerHandle, LedgerStats};
use crate::metrics::SharedRegistry;
use crate::network::{NetHandle, NetSnapshot, author_peer_id};

/// What the handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub peer_id: String,
    pub role: Role,
    pub network: NetworkConfig,
    pub capacity: Capacity,
    pub started_at: Instant,
    pub net: NetHandle,
    pub heartbeats: Arc<Mutex<PeerTable>>,
    pub registry: SharedRegistry,
    pub ledger: LedgerHandle,
    pub jobs: crate::render::Jobs,
    pub por: crate::por::PorStats,
    pub verifier: bool,
    pub announcements: crate::por::Announcements,
    pub fl: crate::fl::Fl,
    pub settle: crate::settle::Settle,
}

/// `GET /status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub peer_id: String,
    pub role: Role,
    pub network: String,
    pub version: &'static str,
    pub epoch: u64,
    pub uptime_secs: u64,
    pub listen_addrs: Vec<String>,
    pub capacity: Capacity,
    pub connected_peers: usize,
    pub routing_table_size: usize,
    pub heartbeat_peers: usize,
    pub heartbeats_received: u64,
}

/// One entry of the heartbeat peer table.
#[derive(Debug, Serialize)]
pub struct HeartbeatPeer {
    pub peer_id: String,
    pub public_key: String,
    #[serde(flatten)]
    pub record: PeerRecord,
}

/// `GET /peers`.
#[derive(Debug, Serialize)]
pub struct Peers {
    #[serde(flatten)]
    pub network: NetSnapshot,
    pub heartbeats: Vec<HeartbeatPeer>,
}

/// `GET /heartbeats/latency`: recent publish-to-receipt delays.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub samples_us: Vec<u64>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

/// Spawns the server on `listener`; it stops when `shutdown` is cancelled.
pub fn serve(listener: tokio::net::TcpListener, state: ApiState, shutdown: CancellationToken) -> JoinHandle<()> {
    let app = Router::new()
        .route("/status", get(status))
        .route("/peers", get(peers))
        .route("/heartbeats/latency", get(latency))
        .route("/metrics", get(metrics))
        .route("/ledger/root", get(ledger_root))
        .route("/ledger/stats", get(ledger_stats))
        .route("/jobs", get(jobs_list).post(jobs_submit))
        .route("/jobs/{id}", get(jobs_get))
        .route("/por/stats", get(por_stats))
        .route("/por/standings", get(por_standings))
        .route("/por/announcements", get(por_announcements))
        .route("/fl", get(fl_list).post(fl_start))
        .route("/fl/{task}", get(fl_get))
        .route("/net/block", axum::routing::post(net_block))
        .route("/net/unblock", axum::routing::post(net_unblock))
        .route("/rewards", get(rewards_list))
        .route("/rewards/{epoch}", get(rewards_get))
        .route("/stake", axum::routing::post(stake_post))
        .route("/gov", get(gov_list))
        .route("/gov/proposals", axum::routing::post(gov_propose))
        .route("/gov/votes", axum::routing::post(gov_vote))
        .with_state(state);
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "API server stopped");
        }
    })
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down").into_response()
}

async fn status(State(s): State<ApiState>) -> Response {
    let Ok(net) = s.net.snapshot().await else { return unavailable() };
    let (heartbeat_peers, heartbeats_received) = {
        let t = s.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        (t.len(), t.total_received())
    };
    Json(Status {
        peer_id: s.peer_id,
        role: s.role,
        network: s.network.id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        epoch: s.network.epoch_at(crate::unix_time_us() / 1000),
        uptime_secs: s.started_at.elapsed().as_secs(),
        listen_addrs: net.listen_addrs,
        capacity: s.capacity,
        connected_peers: net.connected.len(),
        routing_table_size: net.routing_table.len(),
        heartbeat_peers,
        heartbeats_received,
    })
    .into_response()
}

async fn peers(State(s): State<ApiState>) -> Response {
    let Ok(network) = s.net.snapshot().await else { return unavailable() };
    let heartbeats = {
        let t = s.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        t.iter()
            .map(|(author, rec)| HeartbeatPeer {
                peer_id: author_peer_id(author).map(|p| p.to_string()).unwrap_or_default(),
                public_key: hex::encode(author),
                record: rec.clone(),
            })
            .collect()
    };
    Json(Peers { network, heartbeats }).into_response()
}

async fn latency(State(s): State<ApiState>) -> Json<Latency> {
    let samples_us = s.heartbeats.lock().unwrap_or_else(|e| e.into_inner()).latency().to_vec();
    Json(Latency {
        p50_us: ifx_protocols::heartbeat::percentile(&samples_us, 50),
        p99_us: ifx_protocols::heartbeat::percentile(&samples_us, 99),
        samples_us,
    })
}

async fn metrics(State(s): State<ApiState>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.registry.encode())
        .into_response()
}

/// `GET /ledger/root`.
#[derive(Debug, Serialize)]
pub struct LedgerRoot {
    pub root: String,
    pub entries: usize,
    /// Entries this node authored.
    pub own_entries: usize,
    /// When this node last appended an entry of its own (Unix ms; 0 = never).
    pub last_append_unix_ms: u64,
}

async fn ledger_root(State(s): State<ApiState>) -> Json<LedgerRoot> {
    let me = s.settle.key.verifying_key().to_bytes();
    let (root, entries, own_entries) =
        s.ledger.with(|l| (hex::encode(l.ledger().root()), l.ledger().len(), l.ledger().chain(&me).len()));
    Json(LedgerRoot { root, entries, own_entries, last_append_unix_ms: s.ledger.last_append_unix_ms() })
}

async fn ledger_stats(State(s): State<ApiState>) -> Json<LedgerStats> {
    Json(s.ledger.with(|l| LedgerStats::of(l.ledger())))
}

async fn jobs_submit(State(s): State<ApiState>, Json(spec): Json<crate::render::JobSpec>) -> Response {
    match s.jobs.submit(spec) {
        Ok(id) => (StatusCode::ACCEPTED, Json(serde_json::json!({ "job_id": id }))).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": e.to_string() }))).into_response(),
    }
}

async fn jobs_get(State(s): State<ApiState>, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    match s.jobs.get(&id) {
        Some(j) => Json(j).into_response(),
        None => (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "no such job" }))).into_response(),
    }
}

async fn jobs_list(State(s): State<ApiState>) -> Json<Vec<crate::render::JobStatus>> {
    Json(s.jobs.list())
}

/// `GET /por/stats`: a verifier's challenge results by worker.
#[derive(Debug, Serialize)]
pub struct PorStatsView {
    pub verifier: bool,
    pub challenges: u64,
    /// Verifier time spent checking / worker time spent rendering, over all challenges.
    pub verify_cost_ratio: Option<f64>,
    pub workers: std::collections::BTreeMap<String, crate::por::WorkerStats>,
}

async fn por_stats(State(s): State<ApiState>) -> Json<PorStatsView> {
    let workers = s.por.snapshot();
    let (v, r): (u64, u64) = workers.values().fold((0, 0), |(v, r), w| (v + w.verify_us, r + w.worker_render_us));
    Json(PorStatsView {
        verifier: s.verifier,
        challenges: workers.values().map(|w| w.challenges + w.timeouts).sum(),
        verify_cost_ratio: (r > 0).then(|| v as f64 / r as f64),
        workers,
    })
}

/// `GET /por/standings`: every worker's standing from the PoR verdicts in this node's ledger
/// (decided verifiers, how many failed it, caught by a strict majority).
async fn por_standings(
    State(s): State<ApiState>,
) -> Json<std::collections::BTreeMap<String, ifx_protocols::por::quorum::Standing>> {
    let verdicts: Vec<([u8; 32], ifx_protocols::ledger::PorVerdicts)> = s.ledger.with(|l| {
        l.ledger()
            .iter_sorted()
            .filter(|e| e.kind == ifx_protocols::ledger::EntryKind::PorVerdicts)
            .filter_map(|e| ifx_protocols::ledger::PorVerdicts::decode(&e.body).ok().map(|v| (e.author, v)))
            .collect()
    });
    let st = ifx_protocols::por::quorum::standings(verdicts.iter().map(|(a, v)| (*a, v)));
    Json(
        st.into_iter()
            .map(|(k, v)| (author_peer_id(&k).map(|p| p.to_string()).unwrap_or_else(|| hex::encode(k)), v))
            .collect(),
    )
}

/// `GET /por/announcements`: recent challenge outcomes announced on the `por` topic.
async fn por_announcements(State(s): State<ApiState>) -> Json<Vec<crate::por::AnnouncementView>> {
    Json(s.announcements.snapshot())
}

async fn fl_start(State(s): State<ApiState>, Json(spec): Json<ifx_protocols::fl::wire::TaskSpec>) -> Response {
    match s.fl.start(spec) {
        Ok(id) => (StatusCode::ACCEPTED, Json(serde_json::json!({ "task_id": id }))).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": e.to_string() }))).into_response(),
    }
}

async fn fl_get(State(s): State<ApiState>, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    match s.fl.get(&id) {
        Some(t) => Json(t).into_response(),
        None => (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "no such task" }))).into_response(),
    }
}

/// `GET /fl`: owned tasks and this node's audits of other owners' rounds.
async fn fl_list(State(s): State<ApiState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "tasks": s.fl.list(), "audits": s.fl.audits() }))
}

/// One epoch in `GET /rewards`.
#[derive(Debug, Serialize)]
pub struct RewardsEpoch {
    pub epoch: u64,
    pub status: ifx_protocols::settle::Status,
    pub root: String,
    pub seal_root: Option<String>,
    pub minted: u64,
    pub paid: usize,
    pub slashed: Vec<String>,
    pub workers_bps: u64,
    /// Units paid from the worker pool.
    pub paid_workers: u64,
}

/// `GET /rewards`: every epoch settlement reached, balances, parameters in force.
async fn rewards_list(State(s): State<ApiState>) -> Json<serde_json::Value> {
    let st = s.settle.compute();
    let epochs: Vec<RewardsEpoch> = st
        .epochs
        .iter()
        .map(|e| RewardsEpoch {
            epoch: e.epoch,
            status: e.status,
            root: hex::encode(e.root),
            seal_root: e.seal_root.map(hex::encode),
            minted: e.minted,
            paid: e.payouts.len(),
            slashed: e.slashed.iter().map(|x| hex::encode(x.key)).collect(),
            workers_bps: e.params.workers_bps,
            paid_workers: e.payouts.iter().map(|p| p.workers).sum(),
        })
        .collect();
    Json(serde_json::json!({
        "current_epoch": s.network.epoch_at(crate::unix_time_us() / 1000),
        "epochs": epochs,
        "accounts": st.accounts.iter().map(|(k, a)| (hex::encode(k), a)).collect::<std::collections::BTreeMap<_, _>>(),
        "params": st.params,
    }))
}

/// `GET /rewards/{epoch}`: one epoch's settlement (payouts, vesting, slashes, root).
async fn rewards_get(State(s): State<ApiState>, axum::extract::Path(epoch): axum::extract::Path<u64>) -> Response {
    let st = s.settle.compute();
    match st.epoch(epoch) {
        Some(e) => Json(e).into_response(),
        None => {
            let why = match st.epochs.last() {
                Some(l)
                    if l.epoch < epoch
                        && matches!(
                            l.status,
                            ifx_protocols::settle::Status::Pending | ifx_protocols::settle::Status::Incomplete
                        ) =>
                {
                    format!("settlement stops at epoch {} ({:?})", l.epoch, l.status)
                }
                _ => format!("epoch {epoch} has no entries and no seal, or has not ended"),
            };
            (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": why }))).into_response()
        }
    }
}

fn appended(r: Result<String, crate::settle::SettleError>) -> Response {
    match r {
        Ok(id) => (StatusCode::ACCEPTED, Json(serde_json::json!({ "entry": id }))).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": e.to_string() }))).into_response(),
    }
}

async fn stake_post(State(s): State<ApiState>, Json(op): Json<ifx_protocols::settle::StakeOp>) -> Response {
    appended(s.settle.stake(op).await)
}

async fn gov_propose(State(s): State<ApiState>, Json(p): Json<ifx_protocols::settle::Proposal>) -> Response {
    appended(s.settle.propose(p).await)
}

async fn gov_vote(State(s): State<ApiState>, Json(v): Json<ifx_protocols::settle::Vote>) -> Response {
    appended(s.settle.vote(v).await)
}

/// `GET /gov`: parameters in force, open proposals with their votes, decided ones.
async fn gov_list(State(s): State<ApiState>) -> Json<serde_json::Value> {
    let st = s.settle.compute();
    let decided: Vec<&ifx_protocols::settle::GovOutcome> = st.epochs.iter().flat_map(|e| &e.governance).collect();
    Json(serde_json::json!({ "params": st.params, "open": st.open_proposals, "decided": decided }))
}

/// Body of `POST /net/block` and `POST /net/unblock`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerList {
    pub peers: Vec<String>,
}

async fn set_blocked(s: &ApiState, list: PeerList, block: bool) -> Response {
    let mut peers = Vec::new();
    for p in &list.peers {
        match p.parse::<libp2p::PeerId>() {
            Ok(id) => peers.push(id),
            Err(e) => {
                return (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": format!("peer {p:?}: {e}") })))
                    .into_response();
            }
        }
    }
    match s.net.set_blocked(peers, block).await {
        Ok(blocked) => Json(serde_json::json!({ "blocked": blocked })).into_response(),
        Err(_) => unavailable(),
    }
}

/// `POST /net/block {"peers": [...]}`: close and refuse connections with these peers (a
/// partition, for tests and operators).
async fn net_block(State(s): State<ApiState>, Json(list): Json<PeerList>) -> Response {
    set_blocked(&s, list, true).await
}

/// `POST /net/unblock {"peers": [...]}`.
async fn net_unblock(State(s): State<ApiState>, Json(list): Json<PeerList>) -> Response {
    set_blocked(&s, list, false).await
}
