//! The node itself: status, peers, heartbeat latency, metrics, and the operator's peer blocks.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ifx_protocols::api::{Blocked, HeartbeatPeer, Latency, Peers, Status};
use ifx_protocols::{Capacity, NetworkConfig, PeerTable, Role};
use tracing::info;

use super::{refused, unavailable};
use crate::metrics::SharedRegistry;
use crate::network::{NetHandle, author_peer_id};

/// What the node's own routes read.
#[derive(Clone)]
pub struct NodeApi {
    pub peer_id: String,
    pub role: Role,
    pub network: NetworkConfig,
    pub capacity: Capacity,
    pub started_at: Instant,
    pub net: NetHandle,
    pub heartbeats: Arc<Mutex<PeerTable>>,
    pub registry: SharedRegistry,
    /// Workers' links as the bonded verifiers attest them.
    pub links: crate::links::AttestedLinks,
    /// The operator's pause of this node's work.
    pub pause: crate::pause::Pause,
}

pub fn routes(state: NodeApi) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/peers", get(peers))
        .route("/heartbeats/latency", get(latency))
        .route("/metrics", get(metrics))
        .route("/logs", get(logs))
        .route("/net/block", post(net_block))
        .route("/net/unblock", post(net_unblock))
        .route("/net/dial", post(net_dial))
        .route("/net/measure", post(net_measure))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .with_state(state)
}

async fn status(State(s): State<NodeApi>) -> Response {
    let Ok(net) = s.net.snapshot().await else { return unavailable() };
    let (heartbeat_peers, heartbeats_received, clock) = {
        let t = s.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        (t.len(), t.total_received(), t.clock_offset())
    };
    Json(Status {
        peer_id: s.peer_id,
        role: s.role,
        network: s.network.id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        epoch: s.network.epoch_at(crate::unix_time_us() / 1000),
        uptime_secs: s.started_at.elapsed().as_secs(),
        listen_addrs: net.listen_addrs,
        capacity: s.capacity,
        connected_peers: net.connected.len(),
        routing_table_size: net.routing_table.len(),
        heartbeat_peers,
        heartbeats_received,
        reachability: net.reachability,
        paused: s.pause.reason(),
        clock_offset_ms: clock.map(|c| c.0),
        clock_peers: clock.map_or(0, |c| c.1),
    })
    .into_response()
}

/// Body of `POST /pause` (optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why (shown in `/status` and the log; at most [`crate::pause::MAX_REASON`] bytes kept).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /pause {"reason": ...}`: stop taking work without leaving the network (see
/// [`crate::pause`]); the node's status after it.
async fn pause(State(s): State<NodeApi>, body: Option<Json<PauseRequest>>) -> Response {
    let reason = body.and_then(|Json(b)| b.reason).unwrap_or_else(|| "paused by its operator".into());
    if s.pause.set(Some(reason.clone())) {
        info!(reason, "work paused: no tiles, challenges or training until resumed");
    }
    status(State(s)).await
}

/// `POST /resume`: take work again.
async fn resume(State(s): State<NodeApi>) -> Response {
    if s.pause.set(None) {
        info!("work resumed");
    }
    status(State(s)).await
}

async fn peers(State(s): State<NodeApi>) -> Response {
    let Ok(network) = s.net.snapshot().await else { return unavailable() };
    let heartbeats = {
        let t = s.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        t.iter()
            .map(|(author, rec)| {
                HeartbeatPeer::of(author_peer_id(author).map(|p| p.to_string()).unwrap_or_default(), author, rec)
            })
            .collect()
    };
    let links = s.links.all().into_iter().filter_map(|(k, l)| author_peer_id(&k).map(|p| (p.to_string(), l))).collect();
    Json(Peers::of(network, heartbeats, links)).into_response()
}

async fn latency(State(s): State<NodeApi>) -> Json<Latency> {
    let samples_us = s.heartbeats.lock().unwrap_or_else(|e| e.into_inner()).latency().to_vec();
    Json(Latency {
        p50_us: ifx_protocols::heartbeat::percentile(&samples_us, 50),
        p99_us: ifx_protocols::heartbeat::percentile(&samples_us, 99),
        samples_us,
    })
}

/// `GET /logs`: the process's latest warnings and errors ([`crate::logs`]).
async fn logs() -> Json<ifx_protocols::api::RecentLogs> {
    Json(crate::logs::recent())
}

async fn metrics(State(s): State<NodeApi>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.registry.encode())
        .into_response()
}

/// Body of `POST /net/block` and `POST /net/unblock`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerList {
    pub peers: Vec<String>,
}

async fn set_blocked(s: &NodeApi, list: PeerList, block: bool) -> Response {
    let mut peers = Vec::new();
    for p in &list.peers {
        match p.parse::<libp2p::PeerId>() {
            Ok(id) => peers.push(id),
            Err(e) => return refused(StatusCode::BAD_REQUEST, format!("peer {p:?}: {e}")),
        }
    }
    match s.net.set_blocked(peers, block).await {
        Ok(blocked) => Json(Blocked { blocked }).into_response(),
        Err(_) => unavailable(),
    }
}

/// `POST /net/block {"peers": [...]}`: close and refuse connections with these peers (a
/// partition, for tests and operators).
async fn net_block(State(s): State<NodeApi>, Json(list): Json<PeerList>) -> Response {
    set_blocked(&s, list, true).await
}

/// `POST /net/unblock {"peers": [...]}`.
async fn net_unblock(State(s): State<NodeApi>, Json(list): Json<PeerList>) -> Response {
    set_blocked(&s, list, false).await
}

/// Body of `POST /net/dial`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialRequest {
    pub peer: String,
}

/// How long `POST /net/dial` waits for a connection.
const DIAL_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// `POST /net/dial {"peer": ...}`: connect to a peer (directly, or through a relay when it is
/// behind NAT) and say how the connection runs: whether two nodes can reach each other.
async fn net_dial(State(s): State<NodeApi>, Json(req): Json<DialRequest>) -> Response {
    let peer = match req.peer.parse::<libp2p::PeerId>() {
        Ok(p) => p,
        Err(e) => return refused(StatusCode::BAD_REQUEST, format!("peer {:?}: {e}", req.peer)),
    };
    let t0 = Instant::now();
    let outcome = match tokio::time::timeout(DIAL_WAIT, s.net.dial(peer)).await {
        Err(_) => Err(format!("no connection within {} s", DIAL_WAIT.as_secs())),
        Ok(Err(_)) => return unavailable(),
        Ok(Ok(r)) => r,
    };
    let ms = t0.elapsed().as_millis() as u64;
    let Ok(net) = s.net.snapshot().await else { return unavailable() };
    let link = net.connected.into_iter().find(|c| c.peer_id == req.peer);
    Json(ifx_protocols::api::DialOutcome {
        connected: link.is_some(),
        path: link.as_ref().map(|l| l.path),
        addr: link.map(|l| l.addr),
        error: outcome.err(),
        ms,
    })
    .into_response()
}

/// `POST /net/measure {"peer": ...}`: round trip and throughput both ways to a peer over the
/// link protocol (a small request, then [`ifx_protocols::link::MAX_LINK_BYTES`] up, then as
/// much down), on whatever path the connection takes.
async fn net_measure(State(s): State<NodeApi>, Json(req): Json<DialRequest>) -> Response {
    let peer = match req.peer.parse::<libp2p::PeerId>() {
        Ok(p) => p,
        Err(e) => return refused(StatusCode::BAD_REQUEST, format!("peer {:?}: {e}", req.peer)),
    };
    match s.net.measure_link(peer, ifx_protocols::link::MAX_LINK_BYTES, DIAL_WAIT).await {
        Err(_) => unavailable(),
        Ok(Err(e)) => refused(StatusCode::BAD_GATEWAY, e),
        Ok(Ok(m)) => Json(m).into_response(),
    }
}
