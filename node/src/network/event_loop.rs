//! The task that owns the swarm: it dials bootnodes with backoff, walks the DHT to discover
//! peers, keeps connections up to the target, hands gossip to the router and answers commands.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ifx_protocols::Kind;
use ifx_storage::{PeerStore, StoredPeer};
use libp2p::gossipsub::{self, MessageAcceptance, TopicHash};
use libp2p::metrics::{Metrics, Recorder};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, autonat, dcutr, identify, kad, ping, relay};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backoff::Bootnodes;
use super::behaviour::{Behaviour, BehaviourEvent, SwarmSettings, build_swarm, topic};
use super::connections::Connections;
use super::discovery::Discovery;
use super::nat::{NatState, NatStatus};
use super::{
    Command, ConnectedPeer, InboundMessage, InboundRequest, NetHandle, NetSnapshot, Proto, PublishFailed,
    RequestFailed, peer_of,
};
use crate::config::NodeConfig;
use crate::identity::Identity;

/// Peers whose announced addresses are remembered for redialling.
const KNOWN_ADDRS: usize = 4096;
/// How often connections beyond the target are trimmed.
const TRIM_EVERY: Duration = Duration::from_secs(10);
/// How often the known peers are written to the peer store.
const PERSIST_EVERY: Duration = Duration::from_secs(60);
/// Gossip messages queued for validation before new ones are dropped (and ignored).
const INBOUND_QUEUE: usize = 1024;

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Build(#[from] super::behaviour::BuildError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("invalid configuration: {0}")]
    Config(#[from] ifx_protocols::InvalidValue),
}

/// A started network: its handle, the gossip to validate, and the addresses it listens on.
pub struct Started {
    pub handle: NetHandle,
    pub inbound: mpsc::Receiver<InboundMessage>,
    pub sync_inbound: mpsc::Receiver<InboundRequest>,
    pub render_inbound: mpsc::Receiver<InboundRequest>,
    pub blob_inbound: mpsc::Receiver<InboundRequest>,
    pub por_inbound: mpsc::Receiver<InboundRequest>,
    pub fl_inbound: mpsc::Receiver<InboundRequest>,
    pub infer_inbound: mpsc::Receiver<InboundRequest>,
    pub listen_addrs: Vec<Multiaddr>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Builds the swarm, binds every listen address (reporting a port in use as an error), and
/// spawns the loop. It runs until `shutdown` is cancelled, then saves the known peers.
pub async fn start(
    identity: &Identity,
    cfg: &NodeConfig,
    registry: &mut Registry,
    peer_store: Option<PeerStore>,
    shutdown: CancellationToken,
) -> Result<Started, StartError> {
    let agent = format!("ifx/{}", env!("CARGO_PKG_VERSION"));
    let por_timeout = Duration::from_millis(cfg.por.answer_timeout_ms);
    let relay_service = cfg.nat.serves_relay(cfg.node.role);
    let policy = cfg.nat.effective_policy(&cfg.listen_addrs()?);
    let settings =
        SwarmSettings { limits: &cfg.limits, nat: &cfg.nat, policy, relay_service, por_timeout, agent_version: agent };
    let mut swarm = build_swarm(identity.libp2p_keypair(), &cfg.network, settings, registry)?;
    let metrics = Metrics::new(registry);
    let rate_dropped = prometheus_client::metrics::counter::Counter::default();
    registry.register(
        "ifx_requests_rate_limited",
        "Inbound requests dropped because their peer was over its rate",
        rate_dropped.clone(),
    );

    let mut pending = Vec::new();
    for addr in cfg.listen_addrs()? {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| StartError::Listen { addr: addr.clone(), reason: transport_error(&e) })?;
        pending.push((id, addr));
    }
    // Wait until every listener reports an address (a port 0 becomes a real port).
    let mut listen_addrs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pending.is_empty() {
        let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| StartError::Listen { addr: pending[0].1.clone(), reason: "no address after 10 s".into() })?;
        match ev {
            SwarmEvent::NewListenAddr { listener_id, address } => {
                pending.retain(|(id, _)| *id != listener_id);
                info!(%address, "listening");
                listen_addrs.push(address);
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                if let Some((_, addr)) = pending.iter().find(|(id, _)| *id == listener_id) {
                    let reason = match reason {
                        Ok(()) => "listener closed".to_string(),
                        Err(e) => e.to_string(),
                    };
                    return Err(StartError::Listen { addr: addr.clone(), reason });
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                warn!(%error, "listener error while starting");
            }
            _ => {}
        }
    }

    let mut kinds_by_topic = BTreeMap::new();
    for kind in Kind::ALL {
        let t = topic(&cfg.network, kind);
        swarm.behaviour_mut().gossipsub.subscribe(&t).expect("subscribing to a fresh topic");
        kinds_by_topic.insert(t.hash(), kind);
    }

    let now = Instant::now();
    let mut boots = Vec::new();
    for addr in cfg.bootnodes()? {
        let peer = peer_of(&addr).expect("validated: bootnodes end in /p2p/");
        if peer == *swarm.local_peer_id() {
            continue;
        }
        let mut plain = addr.clone();
        plain.pop();
        swarm.behaviour_mut().kad.add_address(&peer, plain.clone());
        boots.push((peer, plain));
    }
    if let Some(store) = &peer_store {
        match store.load() {
            Ok(peers) => {
                let mut n = 0;
                for p in peers {
                    let Ok(peer) = PeerId::from_bytes(&p.peer_id) else { continue };
                    for a in p.addrs.iter().filter_map(|a| Multiaddr::try_from(a.clone()).ok()) {
                        swarm.behaviour_mut().kad.add_address(&peer, a);
                        n += 1;
                    }
                }
                if n > 0 {
                    info!(addresses = n, "loaded known peers from the peer store");
                }
            }
            Err(e) => warn!(error = %e, "cannot load the peer store; starting from bootnodes only"),
        }
    }

    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
    let (sync_tx, sync_rx) = mpsc::channel(64);
    let (render_tx, render_rx) = mpsc::channel(64);
    let (blob_tx, blob_rx) = mpsc::channel(64);
    let (por_tx, por_rx) = mpsc::channel(64);
    let (fl_tx, fl_rx) = mpsc::channel(64);
    let (infer_tx, infer_rx) = mpsc::channel(64);
    let handle = NetHandle { commands: cmd_tx, local_peer_id: *swarm.local_peer_id() };
    let kad_protocol = StreamProtocol::try_from_owned(cfg.network.kad_protocol()).expect("validated id");
    let network_protocol = StreamProtocol::try_from_owned(cfg.network.ledger_sync_protocol()).expect("validated id");
    let lp = EventLoop {
        swarm,
        commands: cmd_rx,
        inbound: in_tx,
        sync_inbound: sync_tx,
        render_inbound: render_tx,
        blob_inbound: blob_tx,
        por_inbound: por_tx,
        fl_inbound: fl_tx,
        infer_inbound: infer_tx,
        pending: HashMap::new(),
        bootnodes: Bootnodes::new(boots, now),
        kinds_by_topic,
        rtt: HashMap::new(),
        peer_conns: HashMap::new(),
        dial_waiters: HashMap::new(),
        provider_queries: HashMap::new(),
        known_addrs: HashMap::new(),
        connections: Connections::default(),
        bootnode_dials: HashMap::new(),
        metrics,
        peer_store,
        target_peers: cfg.limits.target_peers as usize,
        rates: Default::default(),
        rate_dropped,
        blocked: Default::default(),
        kad_protocol,
        network_protocol,
        nat: NatState::new(handle.local_peer_id(), policy, relay_service),
        want_relays: cfg.nat.relays as usize,
        heartbeat_topic: topic(&cfg.network, Kind::Heartbeat).hash(),
        listen_addrs: listen_addrs.clone(),
    };
    let task = tokio::spawn(lp.run(shutdown));
    Ok(Started {
        handle,
        inbound: in_rx,
        sync_inbound: sync_rx,
        render_inbound: render_rx,
        blob_inbound: blob_rx,
        por_inbound: por_rx,
        fl_inbound: fl_rx,
        infer_inbound: infer_rx,
        listen_addrs,
        task,
    })
}

fn transport_error(e: &libp2p::TransportError<std::io::Error>) -> String {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(a) => format!("multiaddr {a} is not supported"),
        libp2p::TransportError::Other(io)
            if io.kind() == std::io::ErrorKind::AddrInUse
                || io.to_string().to_lowercase().contains("address already in use") =>
        {
            "address already in use (is another node running on this port?)".into()
        }
        libp2p::TransportError::Other(io) => io.to_string(),
    }
}

/// Where a request's response (or failure) goes.
type Reply = oneshot::Sender<Result<Vec<u8>, RequestFailed>>;

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<InboundMessage>,
    sync_inbound: mpsc::Sender<InboundRequest>,
    render_inbound: mpsc::Sender<InboundRequest>,
    blob_inbound: mpsc::Sender<InboundRequest>,
    por_inbound: mpsc::Sender<InboundRequest>,
    fl_inbound: mpsc::Sender<InboundRequest>,
    infer_inbound: mpsc::Sender<InboundRequest>,
    pending: HashMap<(Proto, OutboundRequestId), Reply>,
    bootnodes: Bootnodes,
    kinds_by_topic: BTreeMap<TopicHash, Kind>,
    rtt: HashMap<PeerId, Duration>,
    /// Open connections to each peer, with their remote addresses.
    peer_conns: HashMap<PeerId, Vec<(ConnectionId, Multiaddr)>>,
    /// Provider lookups under way: the holders found so far and who waits for them.
    provider_queries: HashMap<kad::QueryId, (Vec<PeerId>, oneshot::Sender<Vec<PeerId>>)>,
    /// `Command::Dial`s waiting for a connection, by peer.
    dial_waiters: HashMap<PeerId, Vec<oneshot::Sender<Result<(), String>>>>,
    /// Listen addresses peers of our network announced (identify), kept after they disconnect
    /// so that a request to them can dial again; at most [`KNOWN_ADDRS`] peers.
    known_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// Connection use, for trimming.
    connections: Connections,
    /// Our own dials of bootnodes in flight.
    bootnode_dials: HashMap<ConnectionId, PeerId>,
    metrics: Metrics,
    peer_store: Option<PeerStore>,
    target_peers: usize,
    /// Per-peer request rates.
    rates: super::rate::RateLimits,
    rate_dropped: prometheus_client::metrics::counter::Counter,
    /// Peers blocked by the operator (the behaviour holds the same set; kept here to list it).
    blocked: std::collections::BTreeSet<PeerId>,
    kad_protocol: StreamProtocol,
    /// A protocol every ifx node of this network speaks, DHT server or client (ledger sync).
    network_protocol: StreamProtocol,
    /// Reachability: AutoNAT's verdict, relays, hole punches.
    nat: NatState,
    /// Relays to hold reservations on while peers cannot dial us (`nat.relays`).
    want_relays: usize,
    heartbeat_topic: TopicHash,
    listen_addrs: Vec<Multiaddr>,
}

impl EventLoop {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut discovery = Discovery::new(Instant::now());
        let mut next_persist = tokio::time::Instant::now() + PERSIST_EVERY;
        let mut trim = tokio::time::interval(TRIM_EVERY);
        trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_boot = self
                .bootnodes
                .next_due()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                _ = tokio::time::sleep_until(next_boot) => self.dial_bootnodes(),
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(discovery.next_due())) => {
                    self.discover();
                    discovery.walked(Instant::now(), self.routing_table_len(), self.target_peers);
                }
                _ = trim.tick() => {
                    self.trim();
                    self.keep_reservations();
                }
                _ = tokio::time::sleep_until(next_persist) => {
                    self.persist_peers().await;
                    next_persist = tokio::time::Instant::now() + PERSIST_EVERY;
                }
            }
        }
        info!("network shutting down");
        self.persist_peers().await;
        // Dropping the swarm closes every connection.
    }

    fn dial_bootnodes(&mut self) {
        for (peer, addr) in self.bootnodes.due(Instant::now()) {
            info!(%peer, %addr, "dialling bootnode");
            let opts = DialOpts::peer_id(peer).condition(PeerCondition::Always).addresses(vec![addr]).build();
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    self.bootnode_dials.insert(id, peer);
                }
                Err(e) => self.bootnode_failed(peer, &e.to_string()),
            }
        }
    }

    fn bootnode_failed(&mut self, peer: PeerId, error: &str) {
        if let Some(delay) = self.bootnodes.failed(&peer, Instant::now()) {
            warn!(%peer, error, retry_in_ms = delay.as_millis() as u64,
                "bootnode unreachable; retrying with exponential backoff");
        }
    }

    /// A random walk through the DHT, then dials to reach the target connection count.
    fn discover(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        if kad.kbuckets().next().is_some() {
            kad.get_closest_peers(PeerId::random());
        }
        let connected = self.swarm.connected_peers().count();
        if connected >= self.target_peers {
            return;
        }
        let mut candidates: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for e in bucket.iter() {
                candidates.push((*e.node.key.preimage(), e.node.value.iter().cloned().collect()));
            }
        }
        let mut budget = self.target_peers - connected;
        for (peer, addrs) in candidates {
            if budget == 0 {
                break;
            }
            // Bootnodes are dialled on their own backoff schedule.
            if self.swarm.is_connected(&peer) || self.bootnodes.contains(&peer) || self.blocked.contains(&peer) {
                continue;
            }
            let book = &self.swarm.behaviour().ip_limits.book;
            let mut ips = addrs.iter().filter_map(super::ip_limits::ip_of).peekable();
            if ips.peek().is_some() && !ips.any(|ip| book.may_dial(ip)) {
                continue;
            }
            let opts =
                DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing).addresses(addrs).build();
            if self.swarm.dial(opts).is_ok() {
                budget -= 1;
            }
        }
    }

    /// Closes the connections [`Connections::to_trim`] names (see there for the rule).
    fn trim(&mut self) {
        // Inbound past its share of the slots: the lowest-scored inbound peers go.
        let b = self.swarm.behaviour();
        let (gossip, book) = (&b.gossipsub, &b.ip_limits.book);
        let bootnodes = &self.bootnodes;
        let excess = self.connections.inbound_excess(
            &book.inbound_peers(),
            book.caps().max_inbound,
            |p| gossip.peer_score(p).unwrap_or(0.0),
            |p| bootnodes.contains(p),
        );
        for peer in excess {
            debug!(%peer, "closing the lowest-scored inbound connection (inbound slots full)");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let mesh: std::collections::BTreeSet<PeerId> =
            self.swarm.behaviour().gossipsub.all_mesh_peers().copied().collect();
        let bootnodes = &self.bootnodes;
        let trim =
            self.connections.to_trim(&connected, &mesh, |p| bootnodes.contains(p), self.target_peers, Instant::now());
        for peer in trim {
            debug!(%peer, "closing an unused connection (above the target peer count)");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Peers in the Kademlia routing table.
    fn routing_table_len(&mut self) -> usize {
        self.swarm.behaviour_mut().kad.kbuckets().map(|b| b.num_entries()).sum()
    }

    /// Notes a request to or from `peer` (`opened`) or its end.
    fn used(&mut self, peer: PeerId, opened: bool) {
        if opened {
            self.connections.request_started(peer, Instant::now());
        } else {
            let connected = self.swarm.is_connected(&peer);
            self.connections.request_ended(peer, connected, Instant::now());
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { kind, data, reply } => {
                let topic = self
                    .kinds_by_topic
                    .iter()
                    .find(|(_, k)| **k == kind)
                    .map(|(t, _)| t.clone())
                    .expect("every kind has a topic");
                let r = self.swarm.behaviour_mut().gossipsub.publish(topic, data);
                let _ = reply.send(r.map(|_| ()).map_err(|e| PublishFailed(e.to_string())));
            }
            Command::Validated { id, from, acceptance } => {
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &from, acceptance);
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
            Command::Request { proto, peer, data, reply } => {
                // A peer we were connected to before (or one a DHT walk did not put in the
                // routing table) is dialled at its announced addresses.
                if !self.swarm.is_connected(&peer) {
                    let _ = self.dial_anyhow(peer);
                }
                self.used(peer, true);
                let id = self.rr(proto).send_request(&peer, data);
                self.pending.insert((proto, id), reply);
            }
            Command::Dial { peer, reply } => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                } else if let Err(e) = self.dial_anyhow(peer) {
                    let _ = reply.send(Err(e));
                } else {
                    self.dial_waiters.entry(peer).or_default().push(reply);
                }
            }
            Command::Provide { hash } => {
                // The local store keeps at most 1,024 of our own records (libp2p's
                // MemoryStore): past that a blob is served but not announced.
                if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(kad::RecordKey::new(&hash)) {
                    debug!(error = %e, "a blob not announced in the DHT");
                }
            }
            Command::Providers { hash, reply } => {
                let id = self.swarm.behaviour_mut().kad.get_providers(kad::RecordKey::new(&hash));
                self.provider_queries.insert(id, (Vec::new(), reply));
            }
            Command::Respond { proto, channel, data } => {
                if self.rr(proto).send_response(channel, data).is_err() {
                    debug!(?proto, "response not sent: the requester went away");
                }
            }
            Command::Block { peers, block, reply } => {
                let now = Instant::now();
                for p in &peers {
                    if block {
                        self.blocked.insert(*p);
                        self.swarm.behaviour_mut().blocked.block_peer(*p);
                    } else {
                        self.blocked.remove(p);
                        self.swarm.behaviour_mut().blocked.unblock_peer(*p);
                        self.bootnodes.retry_now(p, now);
                    }
                }
                if !block {
                    // Heal at once: redial unblocked bootnodes and fill up from the DHT.
                    self.dial_bootnodes();
                    self.discover();
                }
                info!(blocked = self.blocked.len(), "peer block list changed");
                let _ = reply.send(self.blocked.iter().map(|p| p.to_string()).collect());
            }
        }
    }

    fn snapshot(&mut self) -> NetSnapshot {
        let mut connected: Vec<ConnectedPeer> = Vec::new();
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            let best = self.best_addr(&p);
            let relayed = best.is_some_and(super::addrs::is_relayed);
            connected.push(ConnectedPeer {
                peer_id: p.to_string(),
                gossip_score: self.swarm.behaviour().gossipsub.peer_score(&p),
                rtt_us: self.rtt.get(&p).map(|d| d.as_micros() as u64),
                addr: best.map(|a| a.to_string()).unwrap_or_default(),
                path: self.nat.path(&p, relayed),
            });
        }
        connected.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        let mut routing_table: Vec<String> = Vec::new();
        let mut routing_addrs = BTreeMap::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for e in bucket.iter() {
                let peer = e.node.key.preimage().to_string();
                let mut addrs: Vec<String> = e.node.value.iter().take(4).map(|a| a.to_string()).collect();
                addrs.sort();
                routing_addrs.insert(peer.clone(), addrs);
                routing_table.push(peer);
            }
        }
        routing_table.sort();
        let mut heartbeat_mesh: Vec<String> =
            self.swarm.behaviour().gossipsub.mesh_peers(&self.heartbeat_topic).map(|p| p.to_string()).collect();
        heartbeat_mesh.sort();
        NetSnapshot {
            peer_id: self.swarm.local_peer_id().to_string(),
            listen_addrs: self.listen_addrs.iter().map(|a| a.to_string()).collect(),
            connected,
            routing_table,
            heartbeat_mesh,
            blocked: self.blocked.iter().map(|p| p.to_string()).collect(),
            routing_addrs,
            reachability: self.nat.view(),
        }
    }

    async fn persist_peers(&mut self) {
        let Some(store) = self.peer_store.clone() else { return };
        let mut peers = Vec::new();
        let now_ms = crate::unix_time_us() / 1000;
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for e in bucket.iter() {
                peers.push(StoredPeer {
                    peer_id: e.node.key.preimage().to_bytes(),
                    addrs: e.node.value.iter().map(|a| a.to_vec()).collect(),
                    last_seen_unix_ms: now_ms,
                });
            }
        }
        peers.truncate(ifx_storage::peers::MAX_PEERS);
        let n = peers.len();
        match tokio::task::spawn_blocking(move || store.save(&peers)).await {
            Ok(Ok(())) => debug!(peers = n, "peer store saved"),
            Ok(Err(e)) => warn!(error = %e, "cannot save the peer store"),
            Err(e) => warn!(error = %e, "peer store task failed"),
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&ev);
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => {
                self.metrics.record(&e);
                self.on_gossip(e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => {
                self.metrics.record(&e);
                match e {
                    kad::Event::RoutingUpdated { peer, is_new_peer: true, .. } => {
                        debug!(%peer, "peer added to the routing table");
                    }
                    kad::Event::OutboundQueryProgressed { result: kad::QueryResult::Bootstrap(Err(e)), .. } => {
                        debug!(error = %e, "bootstrap query failed")
                    }
                    kad::Event::OutboundQueryProgressed {
                        id, result: kad::QueryResult::GetProviders(r), step, ..
                    } => self.on_providers(id, r, step.last),
                    kad::Event::OutboundQueryProgressed {
                        result: kad::QueryResult::StartProviding(Err(e)), ..
                    } => {
                        debug!(error = %e, "a provider record found no DHT server to hold it")
                    }
                    _ => {}
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => {
                self.metrics.record(&e);
                if let identify::Event::Received { peer_id, info, .. } = e {
                    self.on_identified(peer_id, info);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => {
                self.metrics.record(&e);
                let ping::Event { peer, result, .. } = e;
                if let Ok(rtt) = result {
                    self.rtt.insert(peer, rtt);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(e)) => self.on_autonat(e),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => match e {
                relay::client::Event::ReservationReqAccepted { relay_peer_id, renewal: false, .. } => {
                    info!(relay = %relay_peer_id, "relay reservation accepted: reachable through the relay");
                    self.nat.reserved(&relay_peer_id);
                }
                relay::client::Event::ReservationReqAccepted { relay_peer_id, .. } => self.nat.reserved(&relay_peer_id),
                relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                    debug!(relay = %relay_peer_id, "relayed connection out")
                }
                relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                    debug!(peer = %src_peer_id, "relayed connection in")
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => self.on_relay_service(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result })) => {
                match &result {
                    Ok(_) => {
                        info!(peer = %remote_peer_id, "hole punch succeeded: relayed connection upgraded to direct")
                    }
                    Err(e) => info!(peer = %remote_peer_id, error = %e, "hole punch failed: staying relayed"),
                }
                self.nat.punched(remote_peer_id, result.is_ok());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Limits(v)) => match v {},
            SwarmEvent::Behaviour(BehaviourEvent::IpLimits(v)) => match v {},
            SwarmEvent::Behaviour(BehaviourEvent::Blocked(v)) => match v {},
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_request_response(Proto::LedgerSync, e),
            SwarmEvent::Behaviour(BehaviourEvent::Render(e)) => self.on_request_response(Proto::Render, e),
            SwarmEvent::Behaviour(BehaviourEvent::Blob(e)) => self.on_request_response(Proto::Blob, e),
            SwarmEvent::Behaviour(BehaviourEvent::Por(e)) => self.on_request_response(Proto::Por, e),
            SwarmEvent::Behaviour(BehaviourEvent::Fl(e)) => self.on_request_response(Proto::Fl, e),
            SwarmEvent::Behaviour(BehaviourEvent::Infer(e)) => self.on_request_response(Proto::Infer, e),
            SwarmEvent::Behaviour(BehaviourEvent::Link(e)) => self.on_request_response(Proto::Link, e),
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, num_established, .. } => {
                self.bootnode_dials.remove(&connection_id);
                debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.peer_conns
                    .entry(peer_id)
                    .or_default()
                    .push((connection_id, endpoint.get_remote_address().clone()));
                for w in self.dial_waiters.remove(&peer_id).unwrap_or_default() {
                    let _ = w.send(Ok(()));
                }
                self.connections.opened(peer_id, endpoint.is_dialer(), Instant::now());
                if self.bootnodes.contains(&peer_id) && num_established.get() == 1 {
                    info!(peer = %peer_id, "connected to bootnode");
                    self.bootnodes.connected(&peer_id);
                    // Self-lookup: learn our neighbourhood from the bootnode (not again after a
                    // reconnection, once the routing table is full enough).
                    if self.routing_table_len() < self.target_peers {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } if num_established > 0 => {
                if let Some(c) = self.peer_conns.get_mut(&peer_id) {
                    c.retain(|(id, _)| *id != connection_id);
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, cause, .. } => {
                debug!(peer = %peer_id, cause = ?cause, "disconnected");
                self.rtt.remove(&peer_id);
                self.peer_conns.remove(&peer_id);
                self.connections.closed(&peer_id);
                self.rates.forget(&peer_id);
                if self.bootnodes.contains(&peer_id) {
                    info!(peer = %peer_id, "lost the bootnode connection; will redial");
                    self.bootnodes.disconnected(&peer_id, Instant::now());
                }
            }
            SwarmEvent::OutgoingConnectionError { connection_id, peer_id, error } => {
                // Only our own scheduled dials drive the bootnode backoff; Kademlia's dials of
                // the same peer fail too but are not retries.
                if let Some(p) = peer_id
                    && !self.swarm.is_connected(&p)
                {
                    for w in self.dial_waiters.remove(&p).unwrap_or_default() {
                        let _ = w.send(Err(error.to_string()));
                    }
                }
                if let Some(peer) = self.bootnode_dials.remove(&connection_id) {
                    self.bootnode_failed(peer, &error.to_string());
                } else {
                    debug!(peer = ?peer_id, %error, "dial failed");
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listen_addrs.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                if let Some(relay) = self.nat.listener_closed(listener_id) {
                    warn!(%relay, reason = ?reason, "relay reservation lost; reserving on another relay");
                    self.keep_reservations();
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "external address confirmed");
                self.nat.external.insert(address);
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                self.nat.external.remove(&address);
            }
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            _ => {}
        }
    }

    /// The remote address of the best open connection to `peer`: a direct one if there is any.
    fn best_addr(&self, peer: &PeerId) -> Option<&Multiaddr> {
        self.peer_conns.get(peer)?.iter().map(|(_, a)| a).min_by_key(|a| super::addrs::is_relayed(a))
    }

    /// Dials `peer` at its known addresses and, lacking a direct one, through every relay we
    /// know (a peer behind NAT holds reservations on some of them).
    ///
    /// Lacking a direct address of its own, the dial also takes the behaviours' addresses (the
    /// DHT's routing table): a peer a walk found but that never connected to us is dialled
    /// there too, not only through relays (the dial suppresses request-response's own).
    fn dial_anyhow(&mut self, peer: PeerId) -> Result<(), String> {
        let mut addrs = self.known_addrs.get(&peer).cloned().unwrap_or_default();
        let direct = addrs.iter().any(|a| !super::addrs::is_relayed(a));
        if !direct {
            addrs.extend(self.nat.relayed_addrs_for(&peer));
        }
        let opts = DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing).addresses(addrs);
        let opts = if direct { opts } else { opts.extend_addresses_through_behaviour() };
        match self.swarm.dial(opts.build()) {
            Ok(()) => Ok(()),
            // Already dialling: the waiter hears of that dial's outcome.
            Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => Ok(()),
            Err(libp2p::swarm::DialError::NoAddresses) => Err("no known address and no known relay".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A peer told us who it is: keep its learnable addresses (see [`super::addrs`]) for the DHT
    /// and for redialling, note relays; hang up on peers of other networks.
    fn on_identified(&mut self, peer_id: PeerId, info: identify::Info) {
        // Every ifx node of our network speaks ledger sync; a DHT client does not announce the
        // DHT protocol, so that cannot be the test.
        if !info.protocols.contains(&self.network_protocol) {
            warn!(%peer_id, agent = info.agent_version, protocol = info.protocol_version,
                "peer is not on our network; disconnecting");
            if self.bootnodes.remove(&peer_id) {
                warn!(%peer_id, "a configured bootnode is not on our network; no longer dialling it");
            }
            self.nat.relay_gone(&peer_id);
            self.swarm.behaviour_mut().kad.remove_peer(&peer_id);
            let _ = self.swarm.disconnect_peer_id(peer_id);
            return;
        }
        let Some(seen_at) = self.best_addr(&peer_id).cloned() else {
            return;
        };
        let addrs: Vec<Multiaddr> =
            info.listen_addrs.into_iter().filter(|a| super::addrs::learnable(a, &seen_at)).take(8).collect();
        if self.known_addrs.len() < KNOWN_ADDRS || self.known_addrs.contains_key(&peer_id) {
            self.known_addrs.insert(peer_id, addrs.iter().take(4).cloned().collect());
        }
        if info.protocols.contains(&relay::HOP_PROTOCOL_NAME) {
            self.nat.relay_seen(peer_id, addrs.iter().cloned());
            self.keep_reservations();
        } else {
            self.nat.relay_gone(&peer_id);
        }
        // Only DHT servers go into the routing table, at their direct addresses.
        if info.protocols.contains(&self.kad_protocol) {
            for addr in addrs.into_iter().filter(|a| !super::addrs::is_relayed(a)) {
                self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            }
        }
    }

    /// A provider lookup's progress: holders are gathered, this node left out, until the lookup
    /// ends or [`super::MAX_PROVIDERS`] are found (then it is stopped).
    fn on_providers(&mut self, id: kad::QueryId, r: kad::GetProvidersResult, last: bool) {
        let me = *self.swarm.local_peer_id();
        let Some((found, _)) = self.provider_queries.get_mut(&id) else { return };
        if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = r {
            let mut new: Vec<PeerId> = providers.into_iter().filter(|p| *p != me && !found.contains(p)).collect();
            new.sort();
            found.extend(new);
            found.truncate(super::MAX_PROVIDERS);
        }
        let full = found.len() >= super::MAX_PROVIDERS;
        if last || full {
            if let Some((found, reply)) = self.provider_queries.remove(&id) {
                let _ = reply.send(found);
            }
            if full && let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
        }
    }

    fn on_autonat(&mut self, e: autonat::Event) {
        let autonat::Event::StatusChanged { old, new } = e else { return };
        let status = match &new {
            autonat::NatStatus::Public(_) => NatStatus::Public,
            autonat::NatStatus::Private => NatStatus::Private,
            autonat::NatStatus::Unknown => NatStatus::Unknown,
        };
        let server = self.nat.set_status(status);
        let mode = if server { kad::Mode::Server } else { kad::Mode::Client };
        self.swarm.behaviour_mut().kad.set_mode(Some(mode));
        let view = self.nat.view();
        info!(old = ?old, new = ?new, dht_mode = view.dht_mode, advice = view.advice, "reachability changed");
        if self.nat.needs_relays() {
            self.keep_reservations();
        } else {
            for id in self.nat.release_all() {
                self.swarm.remove_listener(id);
            }
        }
    }

    /// Opens reservations on relays until `nat.relays` are held (while peers cannot dial us).
    fn keep_reservations(&mut self) {
        for (relay, addr) in self.nat.relays_to_reserve(self.want_relays) {
            match self.swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    debug!(%relay, %addr, "reserving a relay slot");
                    self.nat.reserving(id, relay);
                }
                Err(e) => warn!(%relay, %addr, error = %e, "cannot reserve on the relay"),
            }
        }
    }

    fn on_relay_service(&mut self, e: relay::Event) {
        #[allow(deprecated)]
        match e {
            relay::Event::ReservationReqAccepted { src_peer_id, renewed: false } => {
                debug!(peer = %src_peer_id, "relay: reservation accepted")
            }
            relay::Event::ReservationReqDenied { src_peer_id, .. } => {
                info!(peer = %src_peer_id, "relay: reservation denied (limits)")
            }
            relay::Event::CircuitReqAccepted { src_peer_id, dst_peer_id } => {
                self.nat.relayed_circuits += 1;
                debug!(src = %src_peer_id, dst = %dst_peer_id, "relay: circuit opened")
            }
            relay::Event::CircuitReqDenied { src_peer_id, dst_peer_id, .. } => {
                info!(src = %src_peer_id, dst = %dst_peer_id, "relay: circuit denied (limits or no reservation)")
            }
            relay::Event::CircuitClosed { src_peer_id, dst_peer_id, .. } => {
                self.nat.relayed_circuits = self.nat.relayed_circuits.saturating_sub(1);
                debug!(src = %src_peer_id, dst = %dst_peer_id, "relay: circuit closed")
            }
            _ => {}
        }
    }

    fn rr(&mut self, proto: Proto) -> &mut request_response::Behaviour<super::frame_codec::FrameCodec> {
        match proto {
            Proto::LedgerSync => &mut self.swarm.behaviour_mut().sync,
            Proto::Render => &mut self.swarm.behaviour_mut().render,
            Proto::Blob => &mut self.swarm.behaviour_mut().blob,
            Proto::Por => &mut self.swarm.behaviour_mut().por,
            Proto::Fl => &mut self.swarm.behaviour_mut().fl,
            Proto::Infer => &mut self.swarm.behaviour_mut().infer,
            Proto::Link => &mut self.swarm.behaviour_mut().link,
        }
    }

    fn on_request_response(&mut self, proto: Proto, e: request_response::Event<Vec<u8>, Vec<u8>>) {
        match e {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    if !self.rates.allow(proto, peer, Instant::now()) {
                        // Over its rate: dropping the channel fails the peer's request.
                        debug!(%peer, ?proto, "request dropped: over the peer's rate");
                        self.rate_dropped.inc();
                        return;
                    }
                    self.used(peer, true);
                    let msg = InboundRequest { peer, data: request, channel };
                    let queue = match proto {
                        Proto::LedgerSync => &self.sync_inbound,
                        Proto::Render => &self.render_inbound,
                        Proto::Blob => &self.blob_inbound,
                        Proto::Por => &self.por_inbound,
                        Proto::Fl => &self.fl_inbound,
                        Proto::Infer => &self.infer_inbound,
                        // Nothing to compute: answered here.
                        Proto::Link => {
                            match ifx_protocols::link::wanted(&msg.data) {
                                Ok(n) => {
                                    let _ = self.rr(proto).send_response(msg.channel, vec![0u8; n as usize]);
                                }
                                Err(e) => debug!(%peer, error = %e, "link request refused"),
                            }
                            return;
                        }
                    };
                    if queue.try_send(msg).is_err() {
                        // Dropping the channel tells the requester we are busy.
                        debug!(%peer, ?proto, "request dropped: too many waiting");
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    self.used(peer, false);
                    if let Some(reply) = self.pending.remove(&(proto, request_id)) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                self.used(peer, false);
                debug!(%peer, ?proto, %error, "request failed");
                if let Some(reply) = self.pending.remove(&(proto, request_id)) {
                    let _ = reply.send(Err(RequestFailed(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.used(peer, false);
                debug!(%peer, ?proto, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { peer, .. } => self.used(peer, false),
        }
    }

    fn on_gossip(&mut self, e: gossipsub::Event) {
        match e {
            gossipsub::Event::Message { propagation_source, message_id, message } => {
                let msg = InboundMessage {
                    id: message_id.clone(),
                    from: propagation_source,
                    kind: self.kinds_by_topic.get(&message.topic).copied(),
                    data: message.data,
                };
                if self.inbound.try_send(msg).is_err() {
                    warn!("validation queue full; ignoring a gossip message");
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Ignore,
                    );
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } => debug!(peer = %peer_id, %topic, "peer subscribed"),
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                debug!(peer = %peer_id, "peer does not speak gossipsub")
            }
            _ => {}
        }
    }
}
