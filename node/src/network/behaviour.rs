//! The composed libp2p behaviour and the swarm built around it.

use std::num::NonZeroUsize;
use std::time::Duration;

use ifx_protocols::envelope::MAX_ENVELOPE_BYTES;
use ifx_protocols::{Kind, NetworkConfig};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, allow_block_list, autonat, connection_limits, dcutr, gossipsub, identify,
    identity::Keypair, kad, noise, ping, relay, request_response, tcp, yamux,
};
use prometheus_client::registry::Registry;

use super::frame_codec::FrameCodec;
use super::scoring;
use crate::config::{LimitsSection, NatSection, ReachPolicy};

/// Every protocol the node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Peers the operator blocked (`POST /net/block`): no connection either way.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    /// Caps by address (refused before the handshake).
    pub ip_limits: super::ip_limits::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<FrameCodec>,
    pub render: request_response::Behaviour<FrameCodec>,
    pub blob: request_response::Behaviour<FrameCodec>,
    pub por: request_response::Behaviour<FrameCodec>,
    pub fl: request_response::Behaviour<FrameCodec>,
    pub infer: request_response::Behaviour<FrameCodec>,
    pub link: request_response::Behaviour<FrameCodec>,
    /// AutoNAT (v1): asks peers to dial back, and dials back for them.
    pub autonat: autonat::Behaviour,
    /// Circuit Relay v2, client side: reservations on relays, relayed dials.
    pub relay_client: relay::client::Behaviour,
    /// Circuit Relay v2, relay side (`nat.relay_service`).
    pub relay: Toggle<relay::Behaviour>,
    /// Direct Connection Upgrade through Relay: hole punching over a relayed connection.
    pub dcutr: dcutr::Behaviour,
}

/// What the network layer needs to know about this node beyond the shared network parameters.
pub struct SwarmSettings<'a> {
    pub limits: &'a LimitsSection,
    pub nat: &'a NatSection,
    /// `nat.reachability` as it applies to this node's listen addresses.
    pub policy: ReachPolicy,
    /// Offer relay service.
    pub relay_service: bool,
    pub por_timeout: Duration,
    pub agent_version: String,
}

/// The relay service's limits: every one bounds what a stranger can take from a relay.
pub fn relay_config(nat: &NatSection) -> relay::Config {
    use std::num::NonZeroU32;
    relay::Config {
        max_reservations: nat.relay_max_reservations as usize,
        // A peer needs one slot per relay; two cover a reconnect racing its old reservation.
        max_reservations_per_peer: 2,
        reservation_duration: Duration::from_secs(3600),
        max_circuits: nat.relay_max_circuits as usize,
        max_circuits_per_peer: nat.relay_max_circuits_per_peer as usize,
        max_circuit_duration: Duration::from_secs(nat.relay_circuit_secs),
        max_circuit_bytes: nat.relay_circuit_bytes,
        ..Default::default()
    }
    // A reservation is renewed every few minutes; 30 an hour per peer is far above that.
    .reservation_rate_per_peer(NonZeroU32::new(30).expect("nonzero"), Duration::from_secs(120))
    .circuit_src_per_peer(NonZeroU32::new(60).expect("nonzero"), Duration::from_secs(60))
}

/// Why the swarm could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("transport setup failed: {0}")]
    Transport(String),
    #[error("gossipsub setup failed: {0}")]
    Gossipsub(String),
}

/// Gossip topic of each kind of envelope on this network.
pub fn topic(net: &NetworkConfig, kind: Kind) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(net.topic(kind.name()))
}

/// Builds the swarm: TCP+Noise+Yamux and QUIC, metrics registered in `registry`.
pub fn build_swarm(
    keypair: Keypair,
    net: &NetworkConfig,
    settings: SwarmSettings<'_>,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>, BuildError> {
    let SwarmSettings { limits, nat, policy, relay_service, por_timeout, agent_version } = settings;
    let kad_protocol =
        StreamProtocol::try_from_owned(net.kad_protocol()).map_err(|e| BuildError::Transport(e.to_string()))?;
    let identify_protocol = net.identify_protocol();
    let limits_cfg = limits.clone();
    let inbound_refused = prometheus_client::metrics::counter::Counter::default();
    registry.register(
        "ifx_inbound_refused",
        "Inbound connections refused by address (per-IP or per-subnet cap)",
        inbound_refused.clone(),
    );
    let sync_protocol =
        StreamProtocol::try_from_owned(net.ledger_sync_protocol()).map_err(|e| BuildError::Transport(e.to_string()))?;
    let render_protocol =
        StreamProtocol::try_from_owned(net.render_protocol()).map_err(|e| BuildError::Transport(e.to_string()))?;
    let blob_protocol =
        StreamProtocol::try_from_owned(net.blob_protocol()).map_err(|e| BuildError::Transport(e.to_string()))?;
    let por_protocol =
        StreamProtocol::try_from_owned(net.por_protocol()).map_err(|e| BuildError::Transport(e.to_string()))?;
    let fl_protocol =
        StreamProtocol::try_from_owned(net.fl_protocol()).map_err(|e| BuildError::Transport(e.to_string()))?;
    let infer_protocol =
        StreamProtocol::try_from_owned(net.infer_protocol()).map_err(|e| BuildError::Transport(e.to_string()))?;
    let link_protocol =
        StreamProtocol::try_from_owned(net.link_protocol()).map_err(|e| BuildError::Transport(e.to_string()))?;
    let topics: Vec<_> = Kind::ALL.iter().map(|k| topic(net, *k).hash()).collect();
    let limits = limits.clone();
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| BuildError::Transport(e.to_string()))?
        .with_quic()
        .with_other_transport(|key| {
            // In-process networks: `/memory/<n>` addresses, with the same security and muxing.
            use libp2p::core::transport::Transport as _;
            use libp2p::core::upgrade::Version;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                libp2p::core::transport::MemoryTransport::default()
                    .upgrade(Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()),
            )
        })
        .map_err(|e| BuildError::Transport(e.to_string()))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| BuildError::Transport(e.to_string()))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let mut kcfg = kad::Config::new(kad_protocol);
            kcfg.set_query_timeout(Duration::from_secs(30));
            // Lookups run on our own schedule (see the event loop); this is the slow fallback.
            kcfg.set_periodic_bootstrap_interval(Some(Duration::from_secs(300)));
            kcfg.set_replication_factor(NonZeroUsize::new(20).expect("nonzero"));
            let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kcfg);
            // Server mode only where peers can dial us: a public node from the start, an `auto`
            // one once AutoNAT confirms an address (the event loop decides; a relayed address
            // must not make a DHT server, as libp2p's own automatic mode would).
            kad.set_mode(Some(match policy {
                ReachPolicy::Public => kad::Mode::Server,
                ReachPolicy::Auto | ReachPolicy::Private => kad::Mode::Client,
            }));

            let identify = identify::Behaviour::new(
                identify::Config::new(identify_protocol, key.public())
                    .with_agent_version(agent_version)
                    .with_interval(Duration::from_secs(60)),
            );

            let ping = ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15)));

            // Anonymous gossip: every payload is a `SignedEnvelope` whose author signature the
            // router checks once per message. gossipsub's own signatures (Strict mode) would be
            // verified on every copy received, duplicates included, before deduplication: at
            // 100 nodes that was a quarter of all CPU time, for no added assurance.
            let gcfg = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Anonymous)
                .validate_messages()
                .message_id_fn(|m: &gossipsub::Message| {
                    gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes()[..20].to_vec())
                })
                .max_transmit_size(MAX_ENVELOPE_BYTES + 1024)
                .heartbeat_interval(Duration::from_secs(1))
                // A ledger entry is validated only after its durable write: on a loaded machine
                // that can take seconds, and a verdict that comes after the message left the
                // cache (5 heartbeats by default) no longer forwards it.
                .history_length(10)
                .build()
                .map_err(|e| BuildError::Gossipsub(e.to_string()))?;
            let mut gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gcfg)
                .map_err(|e| BuildError::Gossipsub(e.to_string()))?
                .with_metrics(registry.sub_registry_with_prefix("gossipsub"), Default::default());
            gossipsub
                .with_peer_score(scoring::params(&topics), scoring::thresholds())
                .map_err(|e| BuildError::Gossipsub(e.to_string()))?;

            let limits = connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(limits.max_connections))
                    // The inbound share, plus room for one round of trimming by score: a new
                    // inbound peer may displace the lowest-scored one instead of being refused.
                    .with_max_established_incoming(Some(
                        (limits.max_connections - limits.reserved_outbound + limits.reserved_outbound / 4)
                            .min(limits.max_connections),
                    ))
                    .with_max_established_per_peer(Some(limits.max_connections_per_peer))
                    .with_max_pending_incoming(Some(limits.max_pending))
                    .with_max_pending_outgoing(Some(limits.max_pending)),
            );
            use ifx_protocols::ledger::sync::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
            let sync = request_response::Behaviour::with_codec(
                FrameCodec { max_request: MAX_REQUEST_BYTES, max_response: MAX_RESPONSE_BYTES },
                [(sync_protocol, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            );
            let render = request_response::Behaviour::with_codec(
                FrameCodec { max_request: 64 * 1024, max_response: ifx_protocols::render::job::MAX_TILE_RESPONSE },
                [(render_protocol, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(ifx_protocols::render::job::TILE_TIMEOUT),
            );
            let blob = request_response::Behaviour::with_codec(
                FrameCodec {
                    max_request: ifx_protocols::blob::MAX_REQUEST_BYTES,
                    max_response: ifx_protocols::blob::MAX_RESPONSE_BYTES,
                },
                [(blob_protocol, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            );
            let por = request_response::Behaviour::with_codec(
                FrameCodec {
                    max_request: ifx_protocols::render::scene::MAX_WIRE_SCENE + 1024,
                    max_response: ifx_protocols::por::wire::MAX_ANSWER,
                },
                [(por_protocol, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(por_timeout),
            );
            // Train requests wait for local training; the task's round deadline is the real limit.
            let fl = request_response::Behaviour::with_codec(
                FrameCodec {
                    max_request: ifx_protocols::fl::wire::MAX_MESSAGE_BYTES,
                    max_response: ifx_protocols::fl::wire::MAX_MESSAGE_BYTES,
                },
                [(fl_protocol, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(120)),
            );
            // A batch is milliseconds of compute, but a worker queues batches behind others'.
            let infer = request_response::Behaviour::with_codec(
                FrameCodec {
                    max_request: ifx_protocols::infer::MAX_REQUEST_BYTES,
                    max_response: ifx_protocols::infer::MAX_RESPONSE_BYTES,
                },
                [(infer_protocol, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(ifx_protocols::infer::BATCH_TIMEOUT),
            );
            let autonat = autonat::Behaviour::new(
                peer_id,
                autonat::Config {
                    boot_delay: Duration::from_secs(3),
                    retry_interval: Duration::from_secs(20),
                    refresh_interval: Duration::from_secs(300),
                    throttle_server_period: Duration::from_secs(15),
                    // Dial-backs go only to the IP the asker is seen at (AutoNAT v1's own rule),
                    // so serving peers on private networks (a LAN, a testnet) cannot be turned
                    // into dials of third parties; nodes on such networks may then confirm them.
                    only_global_ips: false,
                    ..Default::default()
                },
            );
            use ifx_protocols::link::MAX_LINK_BYTES;
            let link = request_response::Behaviour::with_codec(
                FrameCodec { max_request: MAX_LINK_BYTES as usize + 4, max_response: MAX_LINK_BYTES as usize },
                [(link_protocol, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            );
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Behaviour {
                infer,
                link,
                autonat,
                relay_client,
                relay: Toggle::from(relay_service.then(|| relay::Behaviour::new(peer_id, relay_config(nat)))),
                dcutr: dcutr::Behaviour::new(peer_id),
                blocked: allow_block_list::Behaviour::default(),
                limits,
                ip_limits: super::ip_limits::Behaviour::new(
                    super::ip_limits::InboundCaps {
                        per_ip: limits_cfg.max_inbound_per_ip as usize,
                        per_subnet: limits_cfg.max_inbound_per_subnet as usize,
                        max_inbound: (limits_cfg.max_connections - limits_cfg.reserved_outbound) as usize,
                        loopback_exempt: limits_cfg.loopback_exempt,
                    },
                    inbound_refused,
                ),
                kad,
                identify,
                ping,
                gossipsub,
                sync,
                render,
                blob,
                por,
                fl,
            })
        })
        .map_err(|e| BuildError::Gossipsub(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(limits.idle_timeout_secs)))
        .build();
    Ok(swarm)
}
