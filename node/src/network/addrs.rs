//! Which of a peer's announced addresses this node may keep and pass on, sans I/O.
//!
//! A node behind a home router listens on a private address (192.168.1.20) that means nothing
//! outside its LAN; announced into the DHT it would send every other node dialling into its own
//! LAN (or nowhere), and tell strangers the layout of the operator's network. The rule: a peer's
//! private address is learnt only from a peer seen at a private address (same LAN, or a local
//! network of ifx nodes), a loopback address only from a peer seen at loopback (one machine), and
//! a global address from anyone. A relayed address is judged by its relay's address.

use std::net::IpAddr;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// How far an address carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// 127.0.0.0/8, ::1: this machine.
    Loopback,
    /// RFC 1918, carrier-grade NAT (100.64/10), link-local, IPv6 unique-local: one site.
    Private,
    /// Everything else, and addresses without an IP (the in-process memory transport).
    Global,
    /// 0.0.0.0, ::, multicast, broadcast: never an address to dial.
    Unusable,
}

/// The scope of an IP address.
pub fn ip_scope(ip: IpAddr) -> Scope {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() {
                Scope::Unusable
            } else if v4.is_loopback() {
                Scope::Loopback
            } else if v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b)) {
                Scope::Private
            } else {
                Scope::Global
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_unspecified() || v6.is_multicast() {
                Scope::Unusable
            } else if v6.is_loopback() {
                Scope::Loopback
            } else if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
                Scope::Private
            } else if let Some(v4) = v6.to_ipv4_mapped() {
                ip_scope(IpAddr::V4(v4))
            } else {
                Scope::Global
            }
        }
    }
}

/// The scope of an address: of its first IP (for a relayed address, the relay's).
pub fn scope(addr: &Multiaddr) -> Scope {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Ip4(ip) => Some(ip_scope(IpAddr::V4(ip))),
            Protocol::Ip6(ip) => Some(ip_scope(IpAddr::V6(ip))),
            _ => None,
        })
        .unwrap_or(Scope::Global)
}

/// Whether a relayed (`/p2p-circuit`) address.
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Whether `addr`, announced by a peer we see at `seen_at`, may be stored, dialled and passed on.
pub fn learnable(addr: &Multiaddr, seen_at: &Multiaddr) -> bool {
    let seen = if is_relayed(seen_at) { Scope::Global } else { scope(seen_at) };
    match scope(addr) {
        Scope::Global => true,
        Scope::Private => matches!(seen, Scope::Private | Scope::Loopback),
        Scope::Loopback => seen == Scope::Loopback,
        Scope::Unusable => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn scopes_of_the_address_ranges_a_home_network_meets() {
        for (s, want) in [
            ("/ip4/127.0.0.1/tcp/1", Scope::Loopback),
            ("/ip4/192.168.1.20/tcp/1", Scope::Private),
            ("/ip4/10.0.0.1/tcp/1", Scope::Private),
            ("/ip4/172.16.5.1/tcp/1", Scope::Private),
            ("/ip4/100.64.0.9/tcp/1", Scope::Private),
            ("/ip4/100.128.0.9/tcp/1", Scope::Global),
            ("/ip4/169.254.1.1/tcp/1", Scope::Private),
            ("/ip4/198.18.0.5/tcp/1", Scope::Global),
            ("/ip4/0.0.0.0/tcp/1", Scope::Unusable),
            ("/ip6/fd00::1/tcp/1", Scope::Private),
            ("/ip6/fe80::1/tcp/1", Scope::Private),
            ("/ip6/::1/tcp/1", Scope::Loopback),
            ("/ip6/2001:db8::1/tcp/1", Scope::Global),
            ("/ip6/::ffff:192.168.0.1/tcp/1", Scope::Private),
            ("/memory/5", Scope::Global),
        ] {
            assert_eq!(scope(&a(s)), want, "{s}");
        }
    }

    #[test]
    fn a_private_address_is_learnt_only_from_a_peer_on_a_private_network() {
        let lan = a("/ip4/192.168.1.20/tcp/4001");
        let public = a("/ip4/198.18.0.7/tcp/4001");
        // Seen through its NAT router's public address, or through a relay: not learnt.
        assert!(!learnable(&lan, &a("/ip4/198.18.0.2/tcp/4001")));
        assert!(!learnable(
            &lan,
            &a("/ip4/198.18.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit")
        ));
        // Seen on the same LAN (or one machine): learnt.
        assert!(learnable(&lan, &a("/ip4/192.168.1.21/tcp/4001")));
        assert!(learnable(&lan, &a("/ip4/127.0.0.1/tcp/4001")));
        // Global addresses from anyone; loopback only from loopback; never 0.0.0.0.
        assert!(learnable(&public, &a("/ip4/192.168.1.21/tcp/4001")));
        assert!(!learnable(&a("/ip4/127.0.0.1/tcp/1"), &a("/ip4/198.18.0.2/tcp/4001")));
        assert!(learnable(&a("/ip4/127.0.0.1/tcp/1"), &a("/ip4/127.0.0.1/tcp/2")));
        assert!(!learnable(&a("/ip4/0.0.0.0/tcp/1"), &a("/ip4/127.0.0.1/tcp/2")));
        // A relayed address is as good as its relay's.
        let via = a("/ip4/198.18.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit");
        assert!(learnable(&via, &a("/ip4/198.18.0.3/tcp/1")));
        assert!(is_relayed(&via) && !is_relayed(&public));
    }
}
