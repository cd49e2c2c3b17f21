//! `reachability`: in a run of network namespaces, how each node sees itself (AutoNAT, relays,
//! hole punches), how every pair of workers connected when one dialled the other, and whether a
//! private address leaked into a routing table; judged against what the topology allows.

use std::collections::BTreeMap;

use ifx_protocols::api::{DialOutcome, LinkPath, NetSnapshot};
use serde::{Deserialize, Serialize};

use crate::netns::{NatKind, Placement};

/// Hole punches between cone-NAT pairs that must succeed (the public IPFS network measured
/// about 70% with DCUtR; between routers that keep ports, nothing but timing stands in the way).
pub const PUNCH_SHARE: f64 = 0.9;

/// Reservations a node behind NAT holds (the nodes' default `nat.relays`): after a relay's
/// loss it must have moved to another one by the end of the run.
pub const RELAYS_WANTED: usize = 2;

/// One node's view of itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeReach {
    pub index: usize,
    pub ip: String,
    /// `public`, or the router and its NAT kind (`home-a (cone)`).
    pub placement: String,
    pub nat_status: String,
    pub dht_mode: String,
    pub relays: usize,
    /// Reservations it lost (a relay died) and replaced.
    pub relays_lost: u64,
    pub relay_service: bool,
    pub hole_punches_ok: u64,
    pub hole_punches_failed: u64,
    pub external_addrs: Vec<String>,
}

/// How one pair connected when the first dialled the second.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairReach {
    pub from: usize,
    pub to: usize,
    /// What the topology makes of the pair: `direct` (one side public), `punch` (both behind
    /// different cone NATs), `same-nat`, `symmetric`.
    pub class: String,
    pub connected: bool,
    /// The path right after the dial, and a few seconds later (after any hole punch).
    pub first_path: Option<LinkPath>,
    pub path: Option<LinkPath>,
    pub ms: u64,
    pub error: Option<String>,
}

/// The section.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReachSection {
    pub nodes: Vec<NodeReach>,
    pub pairs: Vec<PairReach>,
    /// Pairs of workers that connected, of all pairs.
    pub pairs_connected: usize,
    pub pairs_total: usize,
    /// Cone-NAT pairs that ended direct (hole-punched), of all cone-NAT pairs.
    pub punched: usize,
    pub punch_pairs: usize,
    pub punch_share_limit: f64,
    /// Private (LAN) addresses found in routing tables: `node i: <peer> <addr>`.
    pub private_addr_leaks: Vec<String>,
    /// What each worker did, wherever it sits: behind NAT it must still render, answer
    /// challenges and earn.
    pub work: Vec<WorkerWork>,
    /// Link measurements from node 0 to every node with a capped link (and one uncapped node,
    /// for comparison), beside the cap.
    pub links: Vec<LinkReport>,
    /// How far a measured rate may be from its cap, as a share of it.
    pub link_tolerance: f64,
    /// Each worker's link as the verifiers attested it in the ledger (issue #17, item 4), read
    /// from node 0's `GET /peers` at the end of the run.
    #[serde(default)]
    pub attested: Vec<AttestedRow>,
}

/// One worker's attested link beside what the topology says it must be.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttestedRow {
    pub index: usize,
    pub placement: String,
    pub cap_kbit: Option<u64>,
    /// Verifiers whose measurement counts (0: never attested).
    pub verifiers: u32,
    pub path: Option<LinkPath>,
    /// The path the verifiers' placements allow (`None` when they disagree).
    pub expected_path: Option<LinkPath>,
    pub rtt_ms: f64,
    pub to_worker_kbit: u32,
    pub from_worker_kbit: u32,
    /// Whether node 0's job gave it one tile at a time for its slow link.
    pub one_at_a_time: bool,
}

/// The path a connection between two placements of `class` takes.
pub fn path_of(class: &str) -> LinkPath {
    match class {
        "direct" => LinkPath::Direct,
        "punch" => LinkPath::HolePunched,
        _ => LinkPath::Relayed,
    }
}

/// How far a capped link's measured throughput may stray from its configured rate.
pub const LINK_TOLERANCE: f64 = 0.2;

/// One link measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkReport {
    pub from: usize,
    pub to: usize,
    pub cap_kbit: Option<u64>,
    pub path: Option<LinkPath>,
    pub rtt_ms: f64,
    pub up_kbit: u64,
    pub down_kbit: u64,
    pub error: Option<String>,
}

/// One worker's work in the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerWork {
    pub index: usize,
    pub placement: String,
    pub tiles: u64,
    pub challenges_passed: u64,
    pub earned: u64,
}

/// Where a node sits, for the report: `public`, or its router and NAT kind (`home-a (cone)`).
pub fn placement_name(p: &Placement) -> String {
    match (&p.router, p.nat) {
        (Some(r), Some(k)) => format!("{r} ({})", if k == NatKind::Cone { "cone" } else { "symmetric" }),
        _ => "public".into(),
    }
}

/// The class of a pair given where both sit.
pub fn class(a: &Placement, b: &Placement) -> &'static str {
    match (a.nat, b.nat) {
        (None, _) | (_, None) => "direct",
        _ if a.router == b.router => "same-nat",
        (Some(NatKind::Cone), Some(NatKind::Cone)) => "punch",
        _ => "symmetric",
    }
}

impl ReachSection {
    /// Builds the section from the nodes' `/net` snapshots and the dial outcomes (with the
    /// path seen after the wait).
    pub fn build(
        placements: &[Placement],
        nets: &[Option<NetSnapshot>],
        dials: Vec<(usize, usize, DialOutcome, Option<LinkPath>)>,
    ) -> Self {
        let mut s =
            ReachSection { punch_share_limit: PUNCH_SHARE, link_tolerance: LINK_TOLERANCE, ..Default::default() };
        for (i, (p, net)) in placements.iter().zip(nets).enumerate() {
            let placement = placement_name(p);
            let r = net.as_ref().map(|n| n.reachability.clone()).unwrap_or_default();
            s.nodes.push(NodeReach {
                index: i,
                ip: p.ip.clone(),
                placement,
                nat_status: r.nat_status,
                dht_mode: r.dht_mode,
                relays: r.relays.len(),
                relays_lost: r.relays_lost,
                relay_service: r.relay_service,
                hole_punches_ok: r.hole_punches_ok,
                hole_punches_failed: r.hole_punches_failed,
                external_addrs: r.external_addrs,
            });
            if let Some(n) = net {
                let mut leaks: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
                for (peer, addrs) in &n.routing_addrs {
                    for a in addrs.iter().filter(|a| a.starts_with("/ip4/192.168.")) {
                        leaks.entry(peer).or_default().push(a);
                    }
                }
                for (peer, addrs) in leaks {
                    for a in addrs {
                        s.private_addr_leaks.push(format!("node {i}: {peer} {a}"));
                    }
                }
            }
        }
        for (from, to, d, later) in dials {
            let class = class(&placements[from], &placements[to]);
            s.pairs.push(PairReach {
                from,
                to,
                class: class.into(),
                connected: d.connected,
                first_path: d.path,
                path: later.or(d.path),
                ms: d.ms,
                error: d.error,
            });
        }
        s.pairs_total = s.pairs.len();
        s.pairs_connected = s.pairs.iter().filter(|p| p.connected).count();
        let punch: Vec<&PairReach> = s.pairs.iter().filter(|p| p.class == "punch").collect();
        s.punch_pairs = punch.len();
        s.punched = punch.iter().filter(|p| p.path == Some(LinkPath::HolePunched)).count();
        s
    }

    /// What fails the run.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        for p in self.pairs.iter().filter(|p| !p.connected) {
            f.push(format!(
                "reachability: node {} could not reach node {} ({}): {}",
                p.from,
                p.to,
                p.class,
                p.error.as_deref().unwrap_or("no connection")
            ));
        }
        if self.punch_pairs > 0 && (self.punched as f64) < PUNCH_SHARE * self.punch_pairs as f64 {
            f.push(format!(
                "reachability: {} of {} cone-NAT pairs hole-punched, under {:.0}%",
                self.punched,
                self.punch_pairs,
                PUNCH_SHARE * 100.0
            ));
        }
        for n in self.nodes.iter().filter(|n| n.placement != "public" && n.relays < RELAYS_WANTED) {
            f.push(format!(
                "reachability: node {} ({}) holds {} relay reservations at the end, not {RELAYS_WANTED}",
                n.index, n.placement, n.relays
            ));
        }
        for w in self.work.iter().filter(|w| w.tiles == 0 || w.challenges_passed == 0 || w.earned == 0) {
            f.push(format!(
                "reachability: worker {} ({}) rendered {} tiles, passed {} challenges, earned {} units: \
                 behind NAT it must still do all three",
                w.index, w.placement, w.tiles, w.challenges_passed, w.earned
            ));
        }
        for l in &self.links {
            if let Some(e) = &l.error {
                f.push(format!("reachability: link {} -> {} not measured: {e}", l.from, l.to));
                continue;
            }
            let Some(cap) = l.cap_kbit else { continue };
            for (dir, got) in [("up", l.up_kbit), ("down", l.down_kbit)] {
                let off = (got as f64 - cap as f64).abs() / cap as f64;
                if off > LINK_TOLERANCE {
                    f.push(format!(
                        "reachability: link {} -> {} {dir} {got} kbit/s against a cap of {cap} kbit/s ({:.0}% off)",
                        l.from,
                        l.to,
                        off * 100.0
                    ));
                }
            }
        }
        for a in &self.attested {
            if a.verifiers == 0 {
                f.push(format!("reachability: no verifier attested the link of worker {} ({})", a.index, a.placement));
                continue;
            }
            if let Some(want) = a.expected_path.filter(|w| Some(*w) != a.path) {
                f.push(format!(
                    "reachability: worker {} ({}) attested {} where its routers allow {}",
                    a.index,
                    a.placement,
                    a.path.map_or("-", |p| p.name()),
                    want.name()
                ));
            }
            // A link cannot beat its cap: an attested rate above it is a wrong measurement.
            let slowest = a.to_worker_kbit.min(a.from_worker_kbit) as f64;
            if let Some(cap) = a.cap_kbit.filter(|c| slowest > *c as f64 * (1.0 + LINK_TOLERANCE)) {
                f.push(format!(
                    "reachability: worker {} attested at {slowest} kbit/s, above its {cap} kbit/s cap",
                    a.index
                ));
            }
        }
        for l in &self.private_addr_leaks {
            f.push(format!("reachability: a private address in a routing table: {l}"));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(router: Option<&str>, nat: Option<NatKind>) -> Placement {
        Placement {
            namespace: String::new(),
            ip: String::new(),
            router: router.map(Into::into),
            nat,
            cap_mbit: None,
            port: 4001,
        }
    }

    fn dial(connected: bool, path: Option<LinkPath>) -> DialOutcome {
        DialOutcome { connected, path, addr: None, error: (!connected).then(|| "timeout".into()), ms: 5 }
    }

    #[test]
    fn pairs_are_judged_by_what_their_routers_allow() {
        let p = vec![
            at(None, None),
            at(Some("a"), Some(NatKind::Cone)),
            at(Some("a"), Some(NatKind::Cone)),
            at(Some("b"), Some(NatKind::Cone)),
            at(Some("c"), Some(NatKind::Symmetric)),
        ];
        assert_eq!(class(&p[0], &p[1]), "direct");
        assert_eq!(class(&p[1], &p[2]), "same-nat");
        assert_eq!(class(&p[1], &p[3]), "punch");
        assert_eq!(class(&p[3], &p[4]), "symmetric");
        let mut nets = vec![Some(NetSnapshot::default()); 5];
        for n in &mut nets[1..5] {
            n.as_mut().unwrap().reachability.relays = vec!["r1".into(), "r2".into()];
        }
        nets[0].as_mut().unwrap().routing_addrs.insert("X".into(), vec!["/ip4/192.168.1.11/tcp/4001".into()]);
        let dials = vec![
            (1, 3, dial(true, Some(LinkPath::Relayed)), Some(LinkPath::HolePunched)),
            (2, 3, dial(true, Some(LinkPath::Relayed)), Some(LinkPath::Relayed)),
            (3, 4, dial(false, None), None),
        ];
        let s = ReachSection::build(&p, &nets, dials);
        assert_eq!((s.pairs_connected, s.pairs_total, s.punched, s.punch_pairs), (2, 3, 1, 2));
        let f = s.failures();
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f[0].contains("node 3 could not reach node 4"));
        assert!(f[1].contains("1 of 2 cone-NAT pairs"));
        assert!(f[2].contains("node 0: X /ip4/192.168.1.11"));
        // Node 4 lost its relays and found none.
        let mut s = s;
        s.nodes[4].relays = 1;
        assert!(s.failures().iter().any(|l| l.contains("node 4 (c (symmetric)) holds 1 relay")));
        // A worker that did nothing behind its NAT fails the run.
        s.work.push(WorkerWork { index: 3, placement: "b (cone)".into(), tiles: 0, challenges_passed: 4, earned: 9 });
        assert!(s.failures().iter().any(|l| l.contains("worker 3 (b (cone)) rendered 0 tiles")));
    }

    /// Attested links are judged against the topology: every worker attested, on the path its
    /// routers allow, never faster than its cap.
    #[test]
    fn attested_links_are_judged_by_path_and_cap() {
        let row = |index, verifiers, path, kbit| AttestedRow {
            index,
            placement: "home-a (cone)".into(),
            cap_kbit: Some(20_000),
            verifiers,
            path: Some(path),
            expected_path: Some(LinkPath::Direct),
            rtt_ms: 1.0,
            to_worker_kbit: kbit,
            from_worker_kbit: kbit,
            one_at_a_time: true,
        };
        let mut s = ReachSection {
            attested: vec![row(1, 2, LinkPath::Direct, 19_300), row(2, 2, LinkPath::Direct, 24_001)],
            ..Default::default()
        };
        s.attested.push(row(3, 0, LinkPath::Direct, 0));
        s.attested.push(row(4, 1, LinkPath::Relayed, 100));
        let f = s.failures();
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f[0].contains("worker 2 attested at 24001 kbit/s, above its 20000"));
        assert!(f[1].contains("no verifier attested the link of worker 3"));
        assert!(f[2].contains("worker 4 (home-a (cone)) attested relayed where its routers allow direct"));
        assert_eq!(path_of(class(&at(None, None), &at(Some("a"), Some(NatKind::Symmetric)))), LinkPath::Direct);
    }
}
