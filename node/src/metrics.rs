//! The node's Prometheus registry: libp2p's own metrics (connections, bandwidth, gossipsub,
//! Kademlia, identify, ping) plus the node's counters, rendered at `GET /metrics`.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the envelope counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvelopeLabels {
    /// Envelope kind, or `unknown`.
    pub kind: String,
    /// `accepted`, `rejected` or `ignored`.
    pub verdict: String,
    /// Why (an [`ifx_protocols::EnvelopeError::label`] or a router reason); `ok` when accepted.
    pub reason: String,
}

/// The node's own metrics.
#[derive(Clone, Default)]
pub struct NodeMetrics {
    /// Gossip envelopes by kind, verdict and reason.
    pub envelopes: Family<EnvelopeLabels, Counter>,
    /// Heartbeats this node published.
    pub heartbeats_published: Counter,
    /// Heartbeats this node failed to publish (no peers yet, or the network stopped).
    pub heartbeats_unpublished: Counter,
    /// Peers in the heartbeat peer table.
    pub heartbeat_peers: Gauge,
    /// Entries in the ledger.
    pub ledger_entries: Gauge,
    /// Ledger entries refused, by reason.
    pub ledger_rejected: Family<Vec<(String, String)>, Counter>,
    /// Bytes received in ledger sync responses.
    pub ledger_sync_bytes: Counter,
    /// Render tiles this node rendered for job owners.
    pub render_tiles: Counter,
}

impl NodeMetrics {
    /// Registers every metric under the `ifx` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("ifx");
        r.register("envelopes", "Gossip envelopes received, by kind and verdict", self.envelopes.clone());
        r.register("heartbeats_published", "Heartbeats published", self.heartbeats_published.clone());
        r.register(
            "heartbeats_unpublished",
            "Heartbeats that could not be published",
            self.heartbeats_unpublished.clone(),
        );
        r.register("heartbeat_peers", "Peers in the heartbeat table", self.heartbeat_peers.clone());
        r.register("ledger_entries", "Entries in the ledger", self.ledger_entries.clone());
        r.register("ledger_rejected", "Ledger entries refused, by reason", self.ledger_rejected.clone());
        r.register("ledger_sync_bytes", "Bytes received in ledger sync responses", self.ledger_sync_bytes.clone());
        r.register("render_tiles", "Render tiles rendered for job owners", self.render_tiles.clone());
    }

    /// Counts one envelope verdict.
    pub fn envelope(&self, kind: &str, verdict: &str, reason: &str) {
        self.envelopes
            .get_or_create(&EnvelopeLabels { kind: kind.into(), verdict: verdict.into(), reason: reason.into() })
            .inc();
    }
}

/// The finished registry, shared with the HTTP API.
#[derive(Clone)]
pub struct SharedRegistry(Arc<Mutex<Registry>>);

impl SharedRegistry {
    /// Wraps a registry once everything is registered.
    pub fn new(registry: Registry) -> Self {
        Self(Arc::new(Mutex::new(registry)))
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let reg = self.0.lock().unwrap_or_else(|e| e.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("writing to a String");
        out
    }
}
