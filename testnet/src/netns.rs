//! A testnet of real network stacks: every node in its own Linux network namespace, a bridge as
//! the internet, home routers made of a namespace with nftables masquerade, and `tc` caps on
//! chosen links (`ifx testnet --scenario home-nat`, or a `[topology]` in a scenario file).
//!
//! Addresses: the "internet" is 198.18.0.0/16 (RFC 2544's benchmarking range: never routed on
//! the real internet, and not private, so nodes treat it as public); public nodes are
//! 198.18.0.(10+i), routers 198.18.1.(1+j). Every home LAN is 192.168.1.0/24, as real homes
//! are, so that a private address leaking into another node's routing table would point at the
//! wrong machine. Nothing here touches the host's own network namespace: the harness reaches
//! each node's loopback-only API by opening its sockets inside the node's namespace.
//!
//! Everything created is named `ifx<pid>…`; it is removed when the run ends (also on panic,
//! through `Drop`), and a later run removes what a killed harness left (its pid is gone).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::TestnetError;

/// How a home router maps its LAN's connections onto its public address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatKind {
    /// Masquerade that keeps the source port (one mapping per local address and port, whatever
    /// the destination: endpoint-independent mapping, as most home routers): hole-punchable.
    Cone,
    /// Masquerade with `random-fully` (a new port for every destination: the mapping a peer
    /// observes is useless to any other peer): defeats hole punching, relayed only.
    Symmetric,
}

/// Where the nodes sit. `nodes[i]` is `"public"` or a router's name; nodes past the list are
/// public. Node 0 (the bootnode) must be public.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topology {
    pub routers: BTreeMap<String, NatKind>,
    pub nodes: Vec<String>,
    /// Bandwidth caps in Mbit/s on a node's link (both directions), by node index.
    pub caps_mbit: BTreeMap<String, u32>,
}

/// Where one node sits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub namespace: String,
    pub ip: String,
    /// The router it sits behind and that router's NAT kind, if any.
    pub router: Option<String>,
    pub nat: Option<NatKind>,
    pub cap_mbit: Option<u32>,
    /// The port it listens on (TCP and QUIC): 4001, and 4002, 4003… for the second and later
    /// nodes behind one router, as an operator running two nodes at home must configure (a
    /// router maps one LAN host's port 4001 onto its own 4001; a second host's 4001 gets
    /// another port per destination, which no peer can predict).
    pub port: u16,
}

impl Topology {
    /// The node's router, if it is behind one.
    pub fn router_of(&self, i: usize) -> Option<&str> {
        self.nodes.get(i).map(String::as_str).filter(|r| *r != "public")
    }

    /// Checks names and indices against a run of `nodes` nodes.
    pub fn validate(&self, nodes: usize) -> Result<(), TestnetError> {
        let bad = |m: String| Err(TestnetError::Options(format!("topology: {m}")));
        if self.router_of(0).is_some() {
            return bad("node 0 is the bootnode and must be public".into());
        }
        if self.nodes.len() > nodes {
            return bad(format!("places {} nodes but the run has {nodes}", self.nodes.len()));
        }
        if self.routers.len() > 200 {
            return bad("more than 200 routers".into());
        }
        for (i, r) in self.nodes.iter().enumerate() {
            if r != "public" && !self.routers.contains_key(r) {
                return bad(format!("node {i} sits behind {r:?}, which is not among the routers"));
            }
        }
        for (k, m) in &self.caps_mbit {
            match k.parse::<usize>() {
                Ok(i) if i < nodes => {}
                _ => return bad(format!("caps_mbit: {k:?} is not a node index below {nodes}")),
            }
            if !(1..=10_000).contains(m) {
                return bad(format!("caps_mbit.{k}: {m} is not between 1 and 10000 Mbit/s"));
            }
        }
        Ok(())
    }
}

/// The namespaces, links and rules of one run; removed on drop.
pub struct Netns {
    tag: String,
    namespaces: Vec<String>,
    pub placements: Vec<Placement>,
}

/// Runs `ip …` (or another tool), failing with its stderr.
fn sh(program: &str, args: &[&str]) -> Result<(), TestnetError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| TestnetError::Io(format!("cannot run {program}: {e}")))?;
    if !out.status.success() {
        return Err(TestnetError::Io(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn in_ns(ns: &str, args: &[&str]) -> Result<(), TestnetError> {
    let mut v = vec!["netns", "exec", ns];
    v.extend_from_slice(args);
    sh("ip", &v)
}

/// Whether this machine lets us build namespaces, with the reason if not.
pub fn check_privilege() -> Result<(), TestnetError> {
    let refuse = |why: String| {
        Err(TestnetError::Options(format!(
            "a topology of network namespaces needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN), iproute2 and \
             nftables: {why}"
        )))
    };
    if !nix::unistd::geteuid().is_root() {
        return refuse("not running as root (run with sudo)".into());
    }
    for tool in ["ip", "nft", "tc"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return refuse(format!("`{tool}` is not installed (apt-get install iproute2 nftables)"));
        }
    }
    let probe = format!("ifx{}probe", std::process::id());
    if let Err(e) = sh("ip", &["netns", "add", &probe]) {
        return refuse(format!("this machine refused to create one: {e}"));
    }
    let _ = sh("ip", &["netns", "del", &probe]);
    Ok(())
}

/// Removes what earlier harnesses that are no longer running left behind.
pub fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("ifx") else { continue };
        let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if pid.is_empty() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // Its nodes outlived it (a namespace lives on while a process is inside): stop them.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
            for p in String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
            }
        }
        let _ = sh("ip", &["netns", "del", name]);
    }
}

impl Netns {
    /// Builds the topology for `nodes` nodes.
    pub fn create(topology: &Topology, nodes: usize) -> Result<Self, TestnetError> {
        topology.validate(nodes)?;
        check_privilege()?;
        sweep_stale();
        let tag = format!("ifx{}", std::process::id());
        let mut net = Netns { tag: tag.clone(), namespaces: Vec::new(), placements: Vec::new() };
        let inet = format!("{tag}inet");
        net.add_ns(&inet)?;
        in_ns(&inet, &["ip", "link", "add", "br0", "type", "bridge"])?;
        in_ns(&inet, &["ip", "link", "set", "br0", "up"])?;

        // Routers: a WAN leg on the internet bridge, a LAN bridge, masquerade, a stateful filter.
        let routers: Vec<(&String, &NatKind)> = topology.routers.iter().collect();
        for (j, (name, kind)) in routers.iter().enumerate() {
            let ns = format!("{tag}r{j}");
            net.add_ns(&ns)?;
            let leg = format!("r{j}");
            sh("ip", &["link", "add", "wan", "netns", &ns, "type", "veth", "peer", "name", &leg, "netns", &inet])?;
            in_ns(&inet, &["ip", "link", "set", &leg, "master", "br0", "up"])?;
            let wan_ip = format!("198.18.1.{}/16", j + 1);
            in_ns(&ns, &["ip", "addr", "add", &wan_ip, "dev", "wan"])?;
            in_ns(&ns, &["ip", "link", "set", "wan", "up"])?;
            in_ns(&ns, &["ip", "link", "add", "lan", "type", "bridge"])?;
            in_ns(&ns, &["ip", "addr", "add", "192.168.1.1/24", "dev", "lan"])?;
            in_ns(&ns, &["ip", "link", "set", "lan", "up"])?;
            in_ns(&ns, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
            let masq = match kind {
                NatKind::Cone => "masquerade",
                NatKind::Symmetric => "masquerade fully-random",
            };
            // Unsolicited packets to the router are dropped silently, as home routers do: an RST
            // or port-unreachable would end a hole punch's first attempt, and a UDP packet that
            // reached the router's own stack would leave a conntrack entry holding the very
            // port the LAN host's mapping needs (the NAT would then pick another port).
            let rules = format!(
                "table ip ifx {{\n\
                 chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" {masq}; }}\n\
                 chain lan_out {{ type filter hook forward priority filter; policy drop;\n\
                 iifname \"lan\" oifname \"wan\" accept; ct state established,related accept; }}\n\
                 chain wan_in {{ type filter hook input priority filter; policy accept;\n\
                 iifname \"wan\" ct state new drop; }}\n\
                 }}\n"
            );
            let file = std::env::temp_dir().join(format!("{ns}.nft"));
            std::fs::write(&file, rules).map_err(|e| TestnetError::Io(format!("{}: {e}", file.display())))?;
            in_ns(&ns, &["nft", "-f", &file.display().to_string()])?;
            let _ = std::fs::remove_file(&file);
            let _ = name;
        }

        // Nodes.
        let mut lan_hosts = vec![0u32; routers.len()];
        for i in 0..nodes {
            let ns = format!("{tag}n{i}");
            net.add_ns(&ns)?;
            in_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
            let cap = topology.caps_mbit.get(&i.to_string()).copied();
            let mut port = 4001;
            let (ip, router, nat, far_ns, far_leg) = match topology.router_of(i) {
                None => {
                    let leg = format!("n{i}");
                    sh(
                        "ip",
                        &["link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &leg, "netns", &inet],
                    )?;
                    in_ns(&inet, &["ip", "link", "set", &leg, "master", "br0", "up"])?;
                    let ip = format!("198.18.0.{}", 10 + i);
                    in_ns(&ns, &["ip", "addr", "add", &format!("{ip}/16"), "dev", "eth0"])?;
                    in_ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
                    (ip, None, None, inet.clone(), leg)
                }
                Some(r) => {
                    let j = routers.iter().position(|(n, _)| n.as_str() == r).expect("validated");
                    let rns = format!("{tag}r{j}");
                    let leg = format!("h{i}");
                    sh(
                        "ip",
                        &["link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &leg, "netns", &rns],
                    )?;
                    in_ns(&rns, &["ip", "link", "set", &leg, "master", "lan", "up"])?;
                    lan_hosts[j] += 1;
                    port = 4000 + lan_hosts[j] as u16;
                    let ip = format!("192.168.1.{}", 10 + lan_hosts[j]);
                    in_ns(&ns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
                    in_ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
                    in_ns(&ns, &["ip", "route", "add", "default", "via", "192.168.1.1"])?;
                    (ip, Some(r.to_string()), Some(*routers[j].1), rns, leg)
                }
            };
            if let Some(m) = cap {
                // A token bucket on each end's egress caps both directions of the node's link.
                let rate = format!("{m}mbit");
                let burst = format!("{}kb", (m * 4).max(32));
                for (n, dev) in [(ns.as_str(), "eth0"), (far_ns.as_str(), far_leg.as_str())] {
                    in_ns(
                        n,
                        &[
                            "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", &rate, "burst", &burst, "latency",
                            "100ms",
                        ],
                    )?;
                }
            }
            net.placements.push(Placement { namespace: ns, ip, router, nat, cap_mbit: cap, port });
        }
        Ok(net)
    }

    fn add_ns(&mut self, name: &str) -> Result<(), TestnetError> {
        sh("ip", &["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        Ok(())
    }

    /// The prefix of every namespace of this run.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Removes every namespace (their links and rules go with them).
    pub fn remove(&mut self) {
        for ns in self.namespaces.drain(..).rev() {
            let _ = sh("ip", &["netns", "del", &ns]);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Opens a TCP connection to `addr` from inside network namespace `ns` (the socket stays in
/// that namespace; the thread returns to its own).
pub fn connect_in(ns: &str, addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    use nix::sched::{CloneFlags, setns};
    let target = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
    let own = std::fs::File::open("/proc/thread-self/ns/net")?;
    setns(&target, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    let r = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5));
    setns(&own, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    r
}

/// A listener on the host's loopback that forwards every connection to `api` inside `ns` (the
/// node's API stays loopback-only in its own namespace). Returns the host-side address.
pub async fn forward_api(ns: String, api: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let ns = ns.clone();
            tokio::spawn(async move {
                // A dedicated thread: it leaves and re-enters its namespace, no other task runs there.
                let out = std::thread::spawn(move || connect_in(&ns, api)).join();
                let Ok(Ok(out)) = out else { return };
                if out.set_nonblocking(true).is_err() {
                    return;
                }
                let Ok(mut out) = tokio::net::TcpStream::from_std(out) else { return };
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topology_names_only_routers_it_has_and_keeps_the_bootnode_public() {
        let mut t = Topology::default();
        t.routers.insert("home".into(), NatKind::Cone);
        t.nodes = vec!["public".into(), "home".into()];
        assert!(t.validate(4).is_ok());
        assert_eq!(t.router_of(1), Some("home"));
        assert_eq!(t.router_of(3), None);
        let mut bad = t.clone();
        bad.nodes[0] = "home".into();
        assert!(bad.validate(4).unwrap_err().to_string().contains("bootnode"));
        let mut bad = t.clone();
        bad.nodes[1] = "office".into();
        assert!(bad.validate(4).unwrap_err().to_string().contains("office"));
        let mut bad = t.clone();
        bad.caps_mbit.insert("9".into(), 10);
        assert!(bad.validate(4).is_err());
        let mut bad = t;
        bad.caps_mbit.insert("1".into(), 0);
        assert!(bad.validate(4).is_err());
    }
}
