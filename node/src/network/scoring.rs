//! Gossipsub scoring numbers, kept apart from the logic that uses them.
//!
//! The goal is narrow: a peer that relays an invalid envelope (bad signature, wrong network,
//! garbage bytes) falls below the gossip threshold at once and below the graylist threshold
//! after a few more, while honest low-rate publishers are never penalised. So the mesh delivery
//! penalties (P3, P3b), tuned for high-rate chains, are off; P4 (invalid messages) is strong and
//! decays slowly. All nodes of a testnet share 127.0.0.1, so loopback is exempt from the
//! IP-colocation penalty (P6).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use libp2p::gossipsub::{PeerScoreParams, PeerScoreThresholds, TopicHash, TopicScoreParams};

/// Score added per invalid message (before squaring by the count, times topic weight 1).
pub const INVALID_MESSAGE_WEIGHT: f64 = -20.0;

/// Below these a peer is first ignored for gossip, then for publishing, then entirely.
pub fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 3.0,
    }
}

/// Score parameters for the given topics.
pub fn params(topics: &[TopicHash]) -> PeerScoreParams {
    let mut p = PeerScoreParams {
        topic_score_cap: 50.0,
        app_specific_weight: 0.0,
        decay_interval: Duration::from_secs(1),
        decay_to_zero: 0.01,
        retain_score: Duration::from_secs(3600),
        ..PeerScoreParams::default()
    };
    p.ip_colocation_factor_whitelist =
        [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)].into_iter().collect();
    for t in topics {
        p.topics.insert(t.clone(), topic_params());
    }
    p
}

fn topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        // P1: a little credit for staying in the mesh (at most +1).
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        // P2: credit for being first to deliver a valid message (at most +10).
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        // P3, P3b: off (see the module docs).
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // P4: invalid messages; forgiven slowly (about 1% per second).
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: 0.99,
        ..TopicScoreParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_accepted_by_gossipsub() {
        let t = TopicHash::from_raw("ifx/test/heartbeat/1");
        params(&[t]).validate().unwrap();
        thresholds().validate().unwrap();
        // One invalid message already puts a peer below the gossip threshold.
        assert!(INVALID_MESSAGE_WEIGHT < thresholds().gossip_threshold);
    }
}
