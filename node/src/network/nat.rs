//! What the node knows about its own reachability, sans I/O: the AutoNAT verdict, the relays it
//! knows and holds reservations on, hole-punch outcomes, and the path of each connection. The
//! event loop feeds it swarm events and asks it which relays to reserve on and which relayed
//! addresses to try for a peer it cannot dial directly.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ifx_protocols::api::{LinkPath, Reachability};
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::config::ReachPolicy;

/// Relays remembered (peers that announced the relay hop protocol at a dialable address).
pub const MAX_KNOWN_RELAYS: usize = 32;
/// Relayed addresses tried at once for a peer without a direct one.
pub const RELAYED_DIAL_FANOUT: usize = 4;

/// AutoNAT's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatStatus {
    Unknown,
    Public,
    Private,
}

/// The node's reachability state.
#[derive(Debug)]
pub struct NatState {
    /// This node: its relay choices are spread by a hash of its id and the relay's.
    me: PeerId,
    policy: ReachPolicy,
    status: NatStatus,
    relay_service: bool,
    /// Relays by peer id, with one dialable address each.
    relays: BTreeMap<PeerId, Multiaddr>,
    /// Reservation listeners, by the relay they are on; `true` once the relay accepted.
    reservations: HashMap<ListenerId, (PeerId, bool)>,
    /// Relays that refused or dropped us recently are tried last.
    failed_relays: BTreeSet<PeerId>,
    pub external: BTreeSet<Multiaddr>,
    /// Reservations lost since start.
    pub relays_lost: u64,
    pub relayed_circuits: u64,
    pub hole_punches_ok: u64,
    pub hole_punches_failed: u64,
    /// Peers a hole punch reached: their direct connections are `HolePunched`.
    punched: BTreeSet<PeerId>,
}

impl NatState {
    pub fn new(me: PeerId, policy: ReachPolicy, relay_service: bool) -> Self {
        Self {
            me,
            policy,
            status: NatStatus::Unknown,
            relay_service,
            relays: BTreeMap::new(),
            reservations: HashMap::new(),
            failed_relays: BTreeSet::new(),
            external: BTreeSet::new(),
            relays_lost: 0,
            relayed_circuits: 0,
            hole_punches_ok: 0,
            hole_punches_failed: 0,
            punched: BTreeSet::new(),
        }
    }

    pub fn status(&self) -> NatStatus {
        self.status
    }

    /// AutoNAT changed its verdict; returns whether the node should now be a DHT server.
    pub fn set_status(&mut self, status: NatStatus) -> bool {
        self.status = status;
        self.dht_server()
    }

    /// Whether the node should answer DHT queries (be in others' routing tables).
    pub fn dht_server(&self) -> bool {
        match self.policy {
            ReachPolicy::Public => true,
            ReachPolicy::Private => false,
            ReachPolicy::Auto => self.status == NatStatus::Public,
        }
    }

    /// Whether the node needs relay reservations (peers cannot dial it).
    pub fn needs_relays(&self) -> bool {
        match self.policy {
            ReachPolicy::Public => false,
            ReachPolicy::Private => true,
            ReachPolicy::Auto => self.status == NatStatus::Private,
        }
    }

    /// A peer announced the relay protocol at `addrs`: remember one direct, learnable address.
    pub fn relay_seen(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        if self.relays.len() >= MAX_KNOWN_RELAYS && !self.relays.contains_key(&peer) {
            return;
        }
        if let Some(a) = addrs.into_iter().find(|a| !super::addrs::is_relayed(a)) {
            self.relays.insert(peer, a);
        }
    }

    /// A peer no longer offers relay service (or is gone for good).
    pub fn relay_gone(&mut self, peer: &PeerId) {
        self.relays.remove(peer);
    }

    /// Relays to reserve on now: enough to hold `want`, healthy ones first, not one twice.
    pub fn relays_to_reserve(&self, want: usize) -> Vec<(PeerId, Multiaddr)> {
        if !self.needs_relays() {
            return Vec::new();
        }
        let held: BTreeSet<PeerId> = self.reservations.values().map(|(p, _)| *p).collect();
        let missing = want.saturating_sub(held.len());
        let mut fresh: Vec<_> = self.relays.iter().filter(|(p, _)| !held.contains(p)).collect();
        // Rendezvous hashing: each node ranks the relays its own way, so NATed nodes spread
        // over the relays (and a relay's loss hits only its share of them).
        let rank = |p: &PeerId| {
            let mut h = blake3::Hasher::new();
            h.update(&self.me.to_bytes());
            h.update(&p.to_bytes());
            *h.finalize().as_bytes()
        };
        fresh.sort_by_key(|(p, _)| (self.failed_relays.contains(p), rank(p)));
        fresh.into_iter().take(missing).map(|(p, a)| (*p, circuit_addr(a, p))).collect()
    }

    /// A reservation listener was opened on `relay`.
    pub fn reserving(&mut self, id: ListenerId, relay: PeerId) {
        self.reservations.insert(id, (relay, false));
    }

    /// The relay accepted the reservation.
    pub fn reserved(&mut self, relay: &PeerId) {
        for (p, ok) in self.reservations.values_mut() {
            if p == relay {
                *ok = true;
            }
        }
        self.failed_relays.remove(relay);
    }

    /// A listener closed: if it was a reservation, the relay refused it or went away.
    pub fn listener_closed(&mut self, id: ListenerId) -> Option<PeerId> {
        let (relay, accepted) = self.reservations.remove(&id)?;
        self.failed_relays.insert(relay);
        if accepted {
            self.relays_lost += 1;
        }
        Some(relay)
    }

    /// Reservation listeners to close (the node became reachable).
    pub fn release_all(&mut self) -> Vec<ListenerId> {
        self.reservations.drain().map(|(id, _)| id).collect()
    }

    /// Relayed addresses to try for `peer` (it may hold a reservation on any known relay).
    pub fn relayed_addrs_for(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let mut v: Vec<_> = self.relays.iter().filter(|(r, _)| *r != peer).map(|(r, a)| circuit_addr(a, r)).collect();
        v.sort_by_key(|a| a.to_string());
        v.truncate(RELAYED_DIAL_FANOUT);
        v
    }

    pub fn punched(&mut self, peer: PeerId, ok: bool) {
        if ok {
            self.hole_punches_ok += 1;
            self.punched.insert(peer);
        } else {
            self.hole_punches_failed += 1;
        }
    }

    /// The path of a connection to `peer` at `addr`.
    pub fn path(&self, peer: &PeerId, relayed: bool) -> LinkPath {
        if relayed {
            LinkPath::Relayed
        } else if self.punched.contains(peer) {
            LinkPath::HolePunched
        } else {
            LinkPath::Direct
        }
    }

    /// The operator's view.
    pub fn view(&self) -> Reachability {
        let mut relays: Vec<String> =
            self.reservations.values().filter(|(_, ok)| *ok).map(|(p, _)| p.to_string()).collect();
        relays.sort();
        relays.dedup();
        let nat_status = match self.status {
            NatStatus::Unknown => "unknown",
            NatStatus::Public => "public",
            NatStatus::Private => "private",
        };
        let advice = match (self.policy, self.status, relays.is_empty()) {
            (ReachPolicy::Public, _, _) => {
                "configured public (nat.reachability): peers are expected to dial this node's listen addresses".into()
            }
            (_, NatStatus::Public, _) => "reachable: peers dialled back a confirmed address; nothing to do".into(),
            (_, NatStatus::Unknown, _) if self.policy == ReachPolicy::Auto => {
                "not probed yet: AutoNAT needs a few connected peers".into()
            }
            (_, _, false) => {
                // What the hole punches so far say about the router.
                let punch = match (self.hole_punches_ok, self.hole_punches_failed) {
                    (0, 0) => "no hole punch tried yet",
                    (0, _) => {
                        "relayed only: every hole punch failed (the router picks a new port per destination, a symmetric or carrier-grade NAT)"
                    }
                    _ => "hole-punchable: relayed connections upgrade to direct ones",
                };
                format!(
                    "behind NAT, reachable through {} relay(s); {punch}; for direct connections forward the \
                     listen port (TCP and UDP) to this machine",
                    relays.len()
                )
            }
            (_, _, true) => "unreachable: peers cannot dial this node and no relay holds a reservation yet; \
                             forward the listen port (TCP and UDP) or connect to a bootnode that offers relay \
                             service"
                .into(),
        };
        Reachability {
            nat_status: nat_status.into(),
            policy: self.policy.name().into(),
            dht_mode: if self.dht_server() { "server" } else { "client" }.into(),
            external_addrs: self.external.iter().map(|a| a.to_string()).collect(),
            relays,
            relays_lost: self.relays_lost,
            relay_service: self.relay_service,
            relayed_circuits: self.relayed_circuits,
            hole_punches_ok: self.hole_punches_ok,
            hole_punches_failed: self.hole_punches_failed,
            advice,
        }
    }
}

/// `<relay addr>/p2p/<relay>/p2p-circuit`.
pub fn circuit_addr(relay_addr: &Multiaddr, relay: &PeerId) -> Multiaddr {
    let mut a = relay_addr.clone();
    if !matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.push(Protocol::P2p(*relay));
    }
    a.with(Protocol::P2pCircuit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> Multiaddr {
        format!("/ip4/198.18.0.{i}/tcp/4001").parse().unwrap()
    }

    #[test]
    fn a_private_node_reserves_on_the_wanted_number_of_relays_and_replaces_a_lost_one() {
        let mut s = NatState::new(PeerId::random(), ReachPolicy::Auto, false);
        let relays: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for (i, r) in relays.iter().enumerate() {
            s.relay_seen(*r, [addr(i as u8 + 1)]);
        }
        // Unknown: no reservations, a DHT client.
        assert!(s.relays_to_reserve(2).is_empty());
        assert!(!s.dht_server());
        assert!(!s.set_status(NatStatus::Private));
        let first = s.relays_to_reserve(2);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|(_, a)| a.to_string().ends_with("/p2p-circuit")));
        let ids: Vec<ListenerId> = first.iter().map(|_| ListenerId::next()).collect();
        for ((p, _), id) in first.iter().zip(&ids) {
            s.reserving(*id, *p);
            s.reserved(p);
        }
        assert!(s.relays_to_reserve(2).is_empty());
        assert_eq!(s.view().relays.len(), 2);
        assert!(s.view().advice.starts_with("behind NAT"), "{}", s.view().advice);
        assert!(s.view().advice.contains("no hole punch tried yet"));
        s.punched(relays[0], false);
        assert!(s.view().advice.contains("relayed only"), "{}", s.view().advice);
        s.punched(relays[0], true);
        assert!(s.view().advice.contains("hole-punchable"), "{}", s.view().advice);
        // One relay dies: the third one is picked, not the dead one.
        let lost = s.listener_closed(ids[0]).unwrap();
        assert_eq!(s.view().relays_lost, 1);
        let next = s.relays_to_reserve(2);
        assert_eq!(next.len(), 1);
        assert_ne!(next[0].0, lost);
        // Nodes rank relays their own way: over many nodes every relay is someone's first.
        let firsts: BTreeSet<PeerId> = (0..64)
            .map(|_| {
                let mut t = NatState::new(PeerId::random(), ReachPolicy::Private, false);
                for (i, r) in relays.iter().enumerate() {
                    t.relay_seen(*r, [addr(i as u8 + 1)]);
                }
                t.relays_to_reserve(1)[0].0
            })
            .collect();
        assert_eq!(firsts.len(), 3, "64 nodes all picked among {} relays first", firsts.len());
        // Reachable after all: a DHT server, the reservations released.
        assert!(s.set_status(NatStatus::Public));
        assert_eq!(s.release_all().len(), 1);
        assert!(s.relays_to_reserve(2).is_empty());
    }

    #[test]
    fn relayed_addresses_for_a_peer_skip_itself_and_are_capped() {
        let mut s = NatState::new(PeerId::random(), ReachPolicy::Public, true);
        let relays: Vec<PeerId> = (0..8).map(|_| PeerId::random()).collect();
        for (i, r) in relays.iter().enumerate() {
            s.relay_seen(*r, [format!("/ip4/198.18.0.{}/tcp/1/p2p-circuit", i).parse().unwrap(), addr(i as u8)]);
        }
        let v = s.relayed_addrs_for(&relays[0]);
        assert_eq!(v.len(), RELAYED_DIAL_FANOUT);
        assert!(v.iter().all(|a| !a.to_string().contains(&relays[0].to_string())));
        assert!(v.iter().all(|a| a.iter().filter(|p| matches!(p, Protocol::P2pCircuit)).count() == 1));
        // A public node never reserves.
        assert!(s.relays_to_reserve(2).is_empty());
        assert_eq!(s.path(&relays[1], true), LinkPath::Relayed);
        s.punched(relays[1], true);
        assert_eq!(s.path(&relays[1], false), LinkPath::HolePunched);
        assert_eq!(s.path(&relays[2], false), LinkPath::Direct);
    }
}
