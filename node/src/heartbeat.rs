//! The heartbeat publisher: every `heartbeat_interval_ms` a signed heartbeat with this node's
//! epoch, sequence, role, capacity, uptime and version goes out on the heartbeat topic.
//! Receiving is the router's job (it feeds the shared [`PeerTable`]).

use std::time::Duration;

use ed25519_dalek::SigningKey;
use ifx_protocols::{Capacity, Heartbeat, Kind, NetworkConfig, Role, SignedEnvelope};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::metrics::NodeMetrics;
use crate::network::NetHandle;

/// Everything a heartbeat says about this node that does not change while it runs.
pub struct Announcer {
    pub key: SigningKey,
    pub net: NetworkConfig,
    pub role: Role,
    pub capacity: Capacity,
    pub boot_unix_ms: u64,
    /// The operator's pause: heartbeats say whether work is paused.
    pub pause: crate::pause::Pause,
}

impl Announcer {
    /// The signed heartbeat number `seq`, sent at `now_us` (Unix µs).
    pub fn heartbeat(&self, seq: u64, now_us: u64) -> SignedEnvelope {
        let hb = Heartbeat {
            boot_unix_ms: self.boot_unix_ms,
            seq,
            sent_unix_us: now_us,
            role: self.role,
            capacity: self.capacity.clone(),
            uptime_secs: (now_us / 1000).saturating_sub(self.boot_unix_ms) / 1000,
            version: env!("CARGO_PKG_VERSION").into(),
            paused: self.pause.is_paused(),
        };
        let epoch = self.net.epoch_at(now_us / 1000);
        SignedEnvelope::sign(&self.key, &self.net.id, Kind::Heartbeat, epoch, hb.encode())
            .expect("a validated network id and a small heartbeat always sign")
    }

    /// Publishes a heartbeat every interval until `shutdown`.
    pub async fn run(self, net: NetHandle, metrics: NodeMetrics, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.net.heartbeat_interval_ms));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut seq = 0u64;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let env = self.heartbeat(seq, crate::unix_time_us());
            seq += 1;
            match net.publish(Kind::Heartbeat, env.encode()).await {
                Ok(Ok(())) => {
                    metrics.heartbeats_published.inc();
                }
                Ok(Err(e)) => {
                    // Usually no peer is subscribed yet; the next tick tries again.
                    metrics.heartbeats_unpublished.inc();
                    debug!(seq, error = %e, "heartbeat not published");
                }
                Err(e) => {
                    warn!(error = %e, "heartbeat publisher stopping");
                    return;
                }
            }
        }
    }
}

/// Workers that can take work now: heard in `table` as workers, not paused, with a connection
/// open among `connected` (a network snapshot's): (peer id, public key), by key. A job owner
/// hands them tiles; a verifier measures their links.
pub fn connected_workers(
    table: &ifx_protocols::PeerTable,
    connected: &[ifx_protocols::api::ConnectedPeer],
) -> Vec<(libp2p::PeerId, [u8; 32])> {
    let connected: std::collections::BTreeSet<&str> = connected.iter().map(|c| c.peer_id.as_str()).collect();
    table
        .iter()
        .filter(|(_, r)| r.role == Role::Worker && !r.paused)
        .filter_map(|(k, _)| crate::network::author_peer_id(k).map(|p| (p, *k)))
        .filter(|(p, _)| connected.contains(p.to_string().as_str()))
        .collect()
}
