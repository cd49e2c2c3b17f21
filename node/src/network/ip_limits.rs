//! Connections by address (issue #16): a [`NetworkBehaviour`] that refuses an inbound
//! connection from an IP or subnet already at its cap *before* the handshake (a refused
//! attacker costs an accept and a close, not a Noise handshake and a stream setup each time it
//! redials), and tells the event loop which inbound peers exceed the node's inbound share.
//!
//! The policy is [`AddressBook`], sans I/O; the behaviour only feeds it swarm events.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::{Endpoint, transport::PortUse};
use libp2p::multiaddr::{Multiaddr, Protocol};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};

/// Caps by address.
#[derive(Clone, Copy, Debug)]
pub struct InboundCaps {
    /// Connections from one IP address (this node's own dials to it count too).
    pub per_ip: usize,
    /// Connections from one /24 (IPv4) or /48 (IPv6).
    pub per_subnet: usize,
    /// Inbound peers in all (the connection slots less those kept for this node's own dials).
    pub max_inbound: usize,
    /// Loopback peers are exempt (several nodes on one machine: a testnet, a developer).
    pub loopback_exempt: bool,
}

/// Why an inbound connection is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many connections from this IP address")]
    PerIp,
    #[error("too many connections from this subnet")]
    PerSubnet,
}

/// The IP of a multiaddr, if it has one.
///
/// A relayed address (`/p2p-circuit`) has none: its IP is the relay's, and the relay caps each
/// peer's circuits itself.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// The subnet an address counts against: /24 for IPv4, /48 for IPv6.
fn subnet(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4([a, b, c, 0].into())
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Conn {
    ip: IpAddr,
    inbound: bool,
    /// Unknown while an inbound connection is still in its handshake.
    peer: Option<PeerId>,
}

/// Every connection's address, and the caps (sans I/O).
#[derive(Debug)]
pub struct AddressBook {
    caps: InboundCaps,
    conns: HashMap<ConnectionId, Conn>,
}

impl AddressBook {
    pub fn new(caps: InboundCaps) -> Self {
        Self { caps, conns: HashMap::new() }
    }

    fn over_cap(&self, ip: IpAddr) -> Option<Refusal> {
        if self.caps.loopback_exempt && ip.is_loopback() {
            return None;
        }
        if self.conns.values().filter(|c| c.ip == ip).count() >= self.caps.per_ip {
            return Some(Refusal::PerIp);
        }
        let net = subnet(ip);
        if self.conns.values().filter(|c| subnet(c.ip) == net).count() >= self.caps.per_subnet {
            return Some(Refusal::PerSubnet);
        }
        None
    }

    /// An inbound connection from `ip` starts its handshake: admitted (and counted from now
    /// on) or refused.
    pub fn inbound(&mut self, id: ConnectionId, ip: Option<IpAddr>) -> Result<(), Refusal> {
        let Some(ip) = ip else { return Ok(()) };
        if let Some(why) = self.over_cap(ip) {
            return Err(why);
        }
        self.conns.insert(id, Conn { ip, inbound: true, peer: None });
        Ok(())
    }

    /// The handshake of an admitted inbound connection named its peer.
    pub fn inbound_established(&mut self, id: ConnectionId, peer: PeerId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.peer = Some(peer);
        }
    }

    /// A connection this node dialled: never refused, but it counts against its address.
    pub fn outbound(&mut self, id: ConnectionId, peer: PeerId, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.conns.insert(id, Conn { ip, inbound: false, peer: Some(peer) });
        }
    }

    /// A connection ended (or its handshake failed).
    pub fn closed(&mut self, id: ConnectionId) {
        self.conns.remove(&id);
    }

    /// Whether dialling a peer at `ip` keeps within the caps (discovery skips those that do
    /// not: a DHT full of one host's ids must not fill the node's own dials either).
    pub fn may_dial(&self, ip: IpAddr) -> bool {
        self.over_cap(ip).is_none()
    }

    /// Peers connected inbound.
    pub fn inbound_peers(&self) -> BTreeSet<PeerId> {
        self.conns.values().filter(|c| c.inbound).filter_map(|c| c.peer).collect()
    }

    /// The caps in force.
    pub fn caps(&self) -> &InboundCaps {
        &self.caps
    }
}

/// The behaviour: [`AddressBook`] fed by the swarm.
pub struct Behaviour {
    pub book: AddressBook,
    /// Inbound connections refused (the `ifx_inbound_refused` metric).
    refused: prometheus_client::metrics::counter::Counter,
}

impl Behaviour {
    pub fn new(caps: InboundCaps, refused: prometheus_client::metrics::counter::Counter) -> Self {
        Self { book: AddressBook::new(caps), refused }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.book.inbound(connection_id, ip_of(remote)).map_err(|why| {
            self.refused.inc();
            ConnectionDenied::new(why)
        })
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.book.inbound_established(connection_id, peer);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.book.outbound(connection_id, peer, ip_of(addr));
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => self.book.closed(connection_id),
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => self.book.closed(connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> InboundCaps {
        InboundCaps { per_ip: 4, per_subnet: 16, max_inbound: 96, loopback_exempt: false }
    }

    /// Issue #16: 64 connections from one host. Four get in; the fifth from that IP, and the
    /// seventeenth from its /24, are refused; another subnet still gets in; loopback is exempt
    /// only when configured so; a closed connection frees its slot; this node's own dials
    /// count, and it does not dial a fifth peer at one address.
    #[test]
    fn connections_are_capped_per_ip_and_per_subnet() {
        let mut b = AddressBook::new(caps());
        let host: IpAddr = "203.0.113.7".parse().unwrap();
        let ids: Vec<ConnectionId> = (0..64).map(|_| ConnectionId::new_unchecked(rand::random())).collect();
        let admitted: Vec<_> = ids.iter().filter(|id| b.inbound(**id, Some(host)).is_ok()).collect();
        assert_eq!(admitted.len(), 4);
        assert_eq!(b.inbound(ConnectionId::new_unchecked(rand::random()), Some(host)), Err(Refusal::PerIp));
        assert!(!b.may_dial(host));
        for i in 1..=12u8 {
            for _ in 0..4 {
                let _ = b.inbound(ConnectionId::new_unchecked(rand::random()), Some([203, 0, 113, 7 + i].into()));
            }
        }
        assert_eq!(b.conns.len(), 16);
        let other: IpAddr = [203, 0, 113, 99].into();
        assert_eq!(b.inbound(ConnectionId::new_unchecked(rand::random()), Some(other)), Err(Refusal::PerSubnet));
        assert!(b.inbound(ConnectionId::new_unchecked(rand::random()), Some([198, 51, 100, 1].into())).is_ok());
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mut exempt = AddressBook::new(InboundCaps { loopback_exempt: true, ..caps() });
        assert!((0..10).all(|_| exempt.inbound(ConnectionId::new_unchecked(rand::random()), Some(lo)).is_ok()));
        // IPv6: one /48 is one subnet.
        let v6 = |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last));
        let mut six = AddressBook::new(caps());
        let n = (0..20u16)
            .filter(|i| six.inbound(ConnectionId::new_unchecked(rand::random()), Some(v6(*i))).is_ok())
            .count();
        assert_eq!(n, 16);
        // A closed connection frees its slot.
        b.closed(*admitted[0]);
        assert!(b.inbound(ConnectionId::new_unchecked(rand::random()), Some(host)).is_ok());
        // Own dials count against the address.
        let mut d = AddressBook::new(caps());
        let far: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..4 {
            d.outbound(ConnectionId::new_unchecked(rand::random()), PeerId::random(), Some(far));
        }
        assert!(!d.may_dial(far));
        assert_eq!(d.inbound(ConnectionId::new_unchecked(rand::random()), Some(far)), Err(Refusal::PerIp));
        assert!(d.inbound_peers().is_empty());
    }
}
