//! The node configuration: a TOML file with documented defaults, overridden by CLI flags, checked
//! before anything starts. Unknown keys and bad values are errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ifx_protocols::fl::poison::Poison;
use ifx_protocols::por::cheat::Behaviour;
use ifx_protocols::render::Backend;
use ifx_protocols::{InvalidValue, NetworkConfig, Role};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a configuration could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(#[from] InvalidValue),
}

/// TOML that does not parse as a config; the message names the key and the line.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct TomlError(pub String);

/// Everything a node needs to start (`ifx config show` prints it as TOML).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node: where it keeps state, where it listens, what it does.
    pub node: NodeSection,
    /// Resource limits of the peer-to-peer layer.
    pub limits: LimitsSection,
    /// Reachability behind NAT routers: AutoNAT, relays, hole punching.
    pub nat: NatSection,
    /// Ledger replication.
    pub ledger: LedgerSection,
    /// Rendering for other nodes' jobs.
    pub render: RenderSection,
    /// Proof of Rendering.
    pub por: PorSection,
    /// Federated learning.
    pub fl: FlSection,
    /// Inference serving.
    pub infer: InferSection,
    /// When this node works: hours, idle-only mode.
    pub work: WorkSection,
    /// Injected faults (tests and the testnet only).
    pub faults: FaultsSection,
    /// Parameters shared by every node of the network.
    pub network: NetworkConfig,
}

/// `[node]`: this node's own settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Directory for the key, the database and `api.addr`.
    pub data_dir: PathBuf,
    /// Multiaddrs to listen on (TCP and/or QUIC); port 0 picks a free port.
    pub listen: Vec<String>,
    /// `worker` or `verifier`.
    pub role: Role,
    /// Loopback address of the HTTP API (`127.0.0.1:0` picks a free port); empty disables it.
    pub api: String,
    /// Log as JSON lines instead of human-readable text.
    pub json_logs: bool,
    /// Log filter in `RUST_LOG` syntax (the `RUST_LOG` variable wins when set).
    pub log: String,
}

impl Default for NodeSection {
    fn default() -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| ".".into());
        Self {
            data_dir: home.join(".local/share/ifx"),
            listen: vec!["/ip4/0.0.0.0/tcp/4001".into(), "/ip4/0.0.0.0/udp/4001/quic-v1".into()],
            role: Role::Worker,
            api: "127.0.0.1:7070".into(),
            json_logs: false,
            log: "info".into(),
        }
    }
}

/// `[limits]`: bounds on connections and discovery effort.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Established connections in total.
    pub max_connections: u32,
    /// Established connections to one peer.
    pub max_connections_per_peer: u32,
    /// Connections being set up (each direction).
    pub max_pending: u32,
    /// The node dials peers found through the DHT until it has this many connections.
    pub target_peers: u32,
    /// Idle connections are closed after this many seconds.
    pub idle_timeout_secs: u64,
    /// Connection slots only this node's own dials may use (inbound peers get the rest): a
    /// flood of inbound peers cannot push out the peers this node chose.
    pub reserved_outbound: u32,
    /// Inbound peers from one IP address.
    pub max_inbound_per_ip: u32,
    /// Inbound peers from one /24 (IPv4) or /48 (IPv6).
    pub max_inbound_per_subnet: u32,
    /// Loopback peers are exempt from the per-IP and per-subnet caps (several nodes on one
    /// machine, as `ifx testnet` runs them).
    pub loopback_exempt: bool,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_connections: 128,
            // Our dial and theirs at once, a relayed connection and the direct one a hole punch
            // makes of it, an AutoNAT dial-back.
            max_connections_per_peer: 4,
            max_pending: 32,
            target_peers: 24,
            idle_timeout_secs: 60,
            reserved_outbound: 32,
            max_inbound_per_ip: 4,
            max_inbound_per_subnet: 16,
            loopback_exempt: true,
        }
    }
}

/// How a node decides whether peers can dial it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReachPolicy {
    /// AutoNAT probes decide: a DHT server once peers dialled back one of its addresses, a DHT
    /// client holding relay reservations while they cannot.
    #[default]
    Auto,
    /// Always a DHT server, no relay reservations (bootnodes, a forwarded port, one machine).
    Public,
    /// Always a DHT client behind relays (a node that knows it is not reachable).
    Private,
}

impl ReachPolicy {
    pub fn name(self) -> &'static str {
        match self {
            ReachPolicy::Auto => "auto",
            ReachPolicy::Public => "public",
            ReachPolicy::Private => "private",
        }
    }
}

/// `[nat]`: reachability behind home routers (AutoNAT, Circuit Relay v2, DCUtR hole punching).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatSection {
    /// `auto`, `public` or `private` (see [`ReachPolicy`]).
    pub reachability: ReachPolicy,
    /// Offer relay service to NATed peers; unset: verifiers do, workers do not.
    pub relay_service: Option<bool>,
    /// Relays a node that peers cannot dial keeps reservations on (more survive a relay's loss).
    pub relays: u32,
    /// Relay service: reservations held for other peers at once.
    pub relay_max_reservations: u32,
    /// Relay service: circuits relayed at once, and per peer.
    pub relay_max_circuits: u32,
    pub relay_max_circuits_per_peer: u32,
    /// Relay service: bytes one circuit may carry (both directions) before the relay closes it.
    /// Tiles, challenges and FL rounds must fit until a hole punch moves the connection.
    pub relay_circuit_bytes: u64,
    /// Relay service: seconds a circuit may stay open.
    pub relay_circuit_secs: u64,
}

impl Default for NatSection {
    fn default() -> Self {
        Self {
            reachability: ReachPolicy::Auto,
            relay_service: None,
            relays: 2,
            relay_max_reservations: 128,
            relay_max_circuits: 64,
            relay_max_circuits_per_peer: 8,
            relay_circuit_bytes: 64 << 20,
            relay_circuit_secs: 600,
        }
    }
}

impl NatSection {
    /// Whether this node offers relay service in `role`.
    pub fn serves_relay(&self, role: Role) -> bool {
        self.relay_service.unwrap_or(role == Role::Verifier)
    }

    /// The policy in force: `auto` on a node that listens only on loopback or in process (one
    /// machine, no router between its peers and it) is `public`.
    pub fn effective_policy(&self, listen: &[Multiaddr]) -> ReachPolicy {
        let local = |a: &Multiaddr| {
            a.iter().any(|p| match p {
                Protocol::Ip4(ip) => ip.is_loopback(),
                Protocol::Ip6(ip) => ip.is_loopback(),
                Protocol::Memory(_) => true,
                _ => false,
            })
        };
        match self.reachability {
            ReachPolicy::Auto if !listen.is_empty() && listen.iter().all(local) => ReachPolicy::Public,
            p => p,
        }
    }
}

/// `[ledger]`: replication of the contribution ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// How often the node pulls missing entries from a random peer (anti-entropy), in ms.
    pub sync_interval_ms: u64,
}

impl Default for LedgerSection {
    fn default() -> Self {
        Self { sync_interval_ms: 10_000 }
    }
}

/// `[render]`: how this node renders tiles for jobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderSection {
    /// `auto` (a hardware GPU, else the CPU reference, which outruns a software adapter), `gpu` (any adapter) or `cpu`.
    pub backend: Backend,
    /// Which GPU, when the machine has several: empty for the best (a real GPU before a
    /// software one), a number for its place in `ifx gpus`, or part of its name ("4090").
    pub gpu: String,
    /// Tiles rendered for others at once (1 to 64).
    pub max_tiles: u32,
    /// GPU memory a job's scene and tiles may take, in MiB (0: no cap); a larger job is
    /// answered busy and goes to another worker.
    pub max_vram_mb: u64,
    /// Memory a job's scene and tiles may take, in MiB (0: no cap).
    pub max_memory_mb: u64,
    /// For tests and the testnet only (`--attack fake-job-tile`): render job tiles at one
    /// sample per pixel whatever the job asked, and sign them as the job's.
    pub fake_tiles: bool,
}

/// Most tiles at once (`render.max_tiles`): a job owner keeps two of its tiles at a worker,
/// so 64 serves 32 owners; more would only hold more memory.
pub const MAX_TILES_AT_ONCE: u32 = 64;

/// Largest `faults.slow_factor`: a tile that takes a second would take 100 s, past the owner's
/// tile timeout; slower is a dead node, which the testnet's kills model better.
pub const MAX_SLOW_FACTOR: u32 = 100;

impl Default for RenderSection {
    fn default() -> Self {
        Self {
            backend: Backend::Auto,
            gpu: String::new(),
            max_tiles: 1,
            max_vram_mb: 0,
            max_memory_mb: 0,
            fake_tiles: false,
        }
    }
}

impl RenderSection {
    /// The worker's caps in bytes.
    pub fn caps(&self) -> crate::render::Caps {
        crate::render::Caps {
            max_tiles: self.max_tiles as usize,
            max_vram_bytes: self.max_vram_mb.saturating_mul(1 << 20),
            max_memory_bytes: self.max_memory_mb.saturating_mul(1 << 20),
        }
    }
}

/// `[por]`: Proof-of-Rendering challenges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PorSection {
    /// Mean time between two challenges a verifier issues, in ms (jittered 0.5x to 1.5x).
    pub challenge_interval_ms: u64,
    /// Challenges a verifier keeps under way at once, each to a different worker (a challenge
    /// mostly waits on the network and the worker; a big network needs several to reach every
    /// worker within a few epochs).
    pub max_in_flight: u32,
    /// A challenge unanswered after this many ms is a QoS failure.
    pub answer_timeout_ms: u64,
    /// For tests and the testnet only: answer challenges in this cheat mode (`constant`,
    /// `white-noise`, `old-tile`, `quarter-res`, `no-watermark`, `fake-25`); empty = honest.
    pub cheat: Behaviour,
}

impl Default for PorSection {
    fn default() -> Self {
        Self { challenge_interval_ms: 30_000, max_in_flight: 1, answer_timeout_ms: 20_000, cheat: Behaviour::Honest }
    }
}

/// `[fl]`: federated learning. A node with `data` trains for tasks it hears of (as a worker); a
/// node with `data` also owns tasks started through its API (its test split scores them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FlSection {
    /// A digits-format data file (CSV, optionally gzip): 64 pixel counts 0..16 and a label per
    /// row. Empty: this node does not take part in federated learning.
    pub data: Option<PathBuf>,
    /// Train on only this shard of the task's non-IID split of the training rows (simulates a
    /// client holding part of the data); unset: train on all of them.
    pub shard: Option<u32>,
    /// For tests and the testnet only: poison updates (`sign-flip`, `scale`, `random`, `nan`,
    /// `shape`, `slow`); empty = honest.
    pub poison: Poison,
}

/// `[infer]`: serving inference batches (workers serve any model a job names, fetched from the
/// job's owner; see `node/src/infer`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferSection {
    /// For tests and the testnet only: answer batches wrongly (`infer-random`, `infer-cheap`);
    /// empty = honest.
    pub cheat: ifx_protocols::infer::InferCheat,
}

/// `[work]`: when this node takes work (issue #19). Outside the hours, or while the machine is
/// busy in idle-only mode, it is paused as by `ifx pause` (see `pause.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkSection {
    /// Work only between these hours, "HH:MM-HH:MM" (wrapping midnight when the end is
    /// earlier, e.g. "22:00-07:00"); empty: at any hour.
    pub hours: String,
    /// The offset from UTC the hours are in, "+HH:MM" or "-HH:MM".
    pub utc_offset: String,
    /// Pause while the machine's other processes keep its CPUs busy.
    pub idle_only: bool,
    /// Busy: other processes use more than this share of all CPUs, in percent (1-100).
    pub idle_busy_pct: u32,
    /// Resume after this many seconds without a busy sample (1-86400).
    pub idle_quiet_secs: u64,
}

impl Default for WorkSection {
    fn default() -> Self {
        Self {
            hours: String::new(),
            utc_offset: "+00:00".into(),
            idle_only: false,
            idle_busy_pct: 50,
            idle_quiet_secs: 120,
        }
    }
}

impl WorkSection {
    /// The policy these settings make; the error names the key.
    pub fn policy(&self) -> Result<crate::pause::work::Policy, InvalidValue> {
        use crate::pause::work::{IdleRule, Policy, WorkHours};
        if !(1..=100).contains(&self.idle_busy_pct) {
            return Err(InvalidValue::new("work.idle_busy_pct", "must be between 1 and 100"));
        }
        if !(1..=86_400).contains(&self.idle_quiet_secs) {
            return Err(InvalidValue::new("work.idle_quiet_secs", "must be between 1 and 86400"));
        }
        Ok(Policy {
            hours: WorkHours::parse(&self.hours, &self.utc_offset)?,
            idle: self.idle_only.then(|| IdleRule {
                busy_pct: self.idle_busy_pct,
                quiet: std::time::Duration::from_secs(self.idle_quiet_secs),
            }),
        })
    }
}

/// `[faults]`: faults this node injects into its own traffic, for tests and the testnet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsSection {
    /// Share of inbound gossip messages dropped on arrival, in percent (message loss).
    pub drop_gossip_pct: u32,
    /// Every piece of work (tile, challenge, benchmark, training run) takes this much longer, as
    /// on a slower GPU (a slow node).
    pub slow_ms: u64,
    /// Every piece of work takes this many times as long as it did (1: as fast as the machine
    /// allows; 4: a GPU with a quarter of the IB). Issue #18's scheduling test.
    pub slow_factor: u32,
}

/// The flags of `ifx node` (and `ifx config show`), defined once: clap parses them, tests build
/// them, and each one given replaces the config file's value.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// Directory for the key, the database and api.addr.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Multiaddr to listen on, e.g. /ip4/0.0.0.0/tcp/4001 or /ip4/0.0.0.0/udp/4001/quic-v1
    /// (repeatable).
    #[arg(long = "listen")]
    pub listen: Vec<String>,
    /// Bootnode multiaddr ending in /p2p/<peer id> (repeatable).
    #[arg(long = "bootnode")]
    pub bootnodes: Vec<String>,
    /// worker or verifier.
    #[arg(long)]
    pub role: Option<Role>,
    /// Loopback address of the HTTP API (127.0.0.1:0 picks a port, written to <data-dir>/api.addr).
    #[arg(long)]
    pub api: Option<String>,
    /// Log JSON lines instead of text.
    #[arg(long)]
    pub json_logs: bool,
    /// Log filter, e.g. info or ifx_node=debug (RUST_LOG wins when set).
    #[arg(long)]
    pub log: Option<String>,
    /// Test mode: answer proof-of-rendering challenges in this cheat mode.
    #[arg(long, hide = true)]
    pub cheat: Option<Behaviour>,
    /// Test mode: poison federated-learning updates (sign-flip, scale, random, nan, shape, slow).
    #[arg(long, hide = true)]
    pub poison: Option<Poison>,
    /// Test mode: answer inference batches wrongly (infer-random, infer-cheap).
    #[arg(long, hide = true)]
    pub infer_cheat: Option<ifx_protocols::infer::InferCheat>,
    /// Train federated tasks on this data file (digits format: CSV or CSV.gz); sets `fl.data`.
    #[arg(long)]
    pub fl_data: Option<PathBuf>,
    /// Train only this shard of each task's non-IID split; sets `fl.shard`.
    #[arg(long)]
    pub fl_shard: Option<u32>,
    /// Test mode: drop this percentage of inbound gossip (`faults.drop_gossip_pct`).
    #[arg(long, hide = true)]
    pub drop_gossip_pct: Option<u32>,
    /// Test mode: every piece of work (tile, challenge render, benchmark, training run) takes
    /// this many ms longer, as on a slower GPU (`faults.slow_ms`).
    #[arg(long, hide = true)]
    pub slow_ms: Option<u64>,
    /// Test mode: every piece of work takes this many times as long (`faults.slow_factor`).
    #[arg(long, hide = true)]
    pub slow_factor: Option<u32>,
    /// Count loopback peers against the per-IP and per-subnet caps (`limits.loopback_exempt =
    /// false`), as the victim of `ifx testnet --attack eclipse` does.
    #[arg(long, hide = true)]
    pub cap_loopback: bool,
    /// Whether peers can dial this node: auto (AutoNAT decides), public, private (`nat.reachability`).
    #[arg(long, value_enum)]
    pub reachability: Option<ReachPolicy>,
    /// Offer relay service to NATed peers (`nat.relay_service`; default: verifiers do).
    #[arg(long)]
    pub relay_service: Option<bool>,
}

impl NodeConfig {
    /// Defaults, then the file (if any), then the overrides; validated.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut cfg = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        cfg.apply(overrides);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML file (no validation of values yet).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::from_toml(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.0 })
    }

    /// Parses TOML text; the error names the key and line.
    pub fn from_toml(text: &str) -> Result<Self, TomlError> {
        toml::from_str(text).map_err(|e| TomlError(e.to_string().trim_end().to_string()))
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config is plain data")
    }

    /// Only the `[network]` table, as TOML (what every node of the network shares).
    pub fn network_toml(&self) -> String {
        #[derive(serde::Serialize)]
        struct Only<'a> {
            network: &'a ifx_protocols::NetworkConfig,
        }
        toml::to_string_pretty(&Only { network: &self.network }).expect("config is plain data")
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(d) = &o.data_dir {
            self.node.data_dir = d.clone();
        }
        if o.cap_loopback {
            self.limits.loopback_exempt = false;
        }
        if !o.listen.is_empty() {
            self.node.listen = o.listen.clone();
        }
        if !o.bootnodes.is_empty() {
            self.network.bootnodes = o.bootnodes.clone();
        }
        if let Some(r) = o.role {
            self.node.role = r;
        }
        if let Some(a) = &o.api {
            self.node.api = a.clone();
        }
        if o.json_logs {
            self.node.json_logs = true;
        }
        if let Some(l) = &o.log {
            self.node.log = l.clone();
        }
        if let Some(c) = o.cheat {
            self.por.cheat = c;
        }
        if let Some(p) = o.poison {
            self.fl.poison = p;
        }
        if let Some(c) = o.infer_cheat {
            self.infer.cheat = c;
        }
        if let Some(d) = &o.fl_data {
            self.fl.data = Some(d.clone());
        }
        if let Some(s) = o.fl_shard {
            self.fl.shard = Some(s);
        }
        if let Some(p) = o.drop_gossip_pct {
            self.faults.drop_gossip_pct = p;
        }
        if let Some(ms) = o.slow_ms {
            self.faults.slow_ms = ms;
        }
        if let Some(f) = o.slow_factor {
            self.faults.slow_factor = f;
        }
        if let Some(r) = o.reachability {
            self.nat.reachability = r;
        }
        if let Some(r) = o.relay_service {
            self.nat.relay_service = Some(r);
        }
    }

    /// Checks every value; the error names the first bad key.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        self.network.validate("network")?;
        if self.faults.drop_gossip_pct > 100 {
            return Err(InvalidValue::new(
                "faults.drop_gossip_pct",
                format!("{} exceeds 100", self.faults.drop_gossip_pct),
            ));
        }
        if !(1..=MAX_TILES_AT_ONCE).contains(&self.render.max_tiles) {
            return Err(InvalidValue::new(
                "render.max_tiles",
                format!("{} is not between 1 and {MAX_TILES_AT_ONCE}", self.render.max_tiles),
            ));
        }
        if self.render.gpu.len() > 128 {
            return Err(InvalidValue::new("render.gpu", "longer than 128 characters"));
        }
        if self.faults.slow_ms > 60_000 {
            return Err(InvalidValue::new("faults.slow_ms", format!("{} exceeds 60000", self.faults.slow_ms)));
        }
        if self.faults.slow_factor > MAX_SLOW_FACTOR {
            return Err(InvalidValue::new(
                "faults.slow_factor",
                format!("{} exceeds {MAX_SLOW_FACTOR}", self.faults.slow_factor),
            ));
        }
        self.work.policy()?;
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(InvalidValue::new("node.data_dir", "must not be empty"));
        }
        if self.node.listen.is_empty() {
            return Err(InvalidValue::new("node.listen", "needs at least one multiaddr"));
        }
        self.listen_addrs()?;
        self.bootnodes()?;
        self.api_addr()?;
        tracing_subscriber::EnvFilter::try_new(&self.node.log)
            .map_err(|e| InvalidValue::new("node.log", format!("{:?}: {e}", self.node.log)))?;
        let l = &self.limits;
        for (key, v) in [
            ("limits.max_connections", l.max_connections),
            ("limits.max_connections_per_peer", l.max_connections_per_peer),
            ("limits.max_pending", l.max_pending),
            ("limits.target_peers", l.target_peers),
            ("limits.max_inbound_per_ip", l.max_inbound_per_ip),
            ("limits.max_inbound_per_subnet", l.max_inbound_per_subnet),
        ] {
            if v == 0 {
                return Err(InvalidValue::new(key, "must be at least 1"));
            }
        }
        if l.reserved_outbound >= l.max_connections {
            return Err(InvalidValue::new(
                "limits.reserved_outbound",
                format!(
                    "{} leaves no inbound slot of limits.max_connections ({})",
                    l.reserved_outbound, l.max_connections
                ),
            ));
        }
        if l.target_peers > l.max_connections {
            return Err(InvalidValue::new(
                "limits.target_peers",
                format!("{} exceeds limits.max_connections ({})", l.target_peers, l.max_connections),
            ));
        }
        if !(100..=600_000).contains(&self.por.answer_timeout_ms) {
            return Err(InvalidValue::new("por.answer_timeout_ms", "must be between 100 and 600000"));
        }
        if !(100..=86_400_000).contains(&self.por.challenge_interval_ms) {
            return Err(InvalidValue::new("por.challenge_interval_ms", "must be between 100 and 86400000"));
        }
        if !(1..=64).contains(&self.por.max_in_flight) {
            return Err(InvalidValue::new("por.max_in_flight", "must be between 1 and 64"));
        }
        if let Some(d) = &self.fl.data
            && !d.is_file()
        {
            return Err(InvalidValue::new("fl.data", format!("{} is not a readable file", d.display())));
        }
        if !(100..=3_600_000).contains(&self.ledger.sync_interval_ms) {
            return Err(InvalidValue::new("ledger.sync_interval_ms", "must be between 100 and 3600000"));
        }
        let n = &self.nat;
        if !(1..=8).contains(&n.relays) {
            return Err(InvalidValue::new("nat.relays", "must be between 1 and 8"));
        }
        if !(1..=4096).contains(&n.relay_max_reservations) {
            return Err(InvalidValue::new("nat.relay_max_reservations", "must be between 1 and 4096"));
        }
        if !(1..=4096).contains(&n.relay_max_circuits) {
            return Err(InvalidValue::new("nat.relay_max_circuits", "must be between 1 and 4096"));
        }
        if !(1..=n.relay_max_circuits).contains(&n.relay_max_circuits_per_peer) {
            return Err(InvalidValue::new(
                "nat.relay_max_circuits_per_peer",
                "must be between 1 and nat.relay_max_circuits",
            ));
        }
        if !(64 << 10..=1 << 30).contains(&n.relay_circuit_bytes) {
            return Err(InvalidValue::new("nat.relay_circuit_bytes", "must be between 65536 and 1073741824"));
        }
        if !(10..=86_400).contains(&n.relay_circuit_secs) {
            return Err(InvalidValue::new("nat.relay_circuit_secs", "must be between 10 and 86400"));
        }
        if !(1..=86_400).contains(&l.idle_timeout_secs) {
            return Err(InvalidValue::new("limits.idle_timeout_secs", "must be between 1 and 86400"));
        }
        Ok(())
    }

    /// The listen multiaddrs, parsed; TCP and QUIC over IP, or the in-process memory transport.
    pub fn listen_addrs(&self) -> Result<Vec<Multiaddr>, InvalidValue> {
        self.node
            .listen
            .iter()
            .map(|s| {
                let addr = parse_multiaddr("node.listen", s)?;
                // In-process networks (tests, `ifx testnet --in-process`) use the memory transport.
                if matches!(addr.iter().next(), Some(Protocol::Memory(_))) && addr.iter().count() == 1 {
                    return Ok(addr);
                }
                let mut it = addr.iter();
                let ip = matches!(it.next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_)));
                let transport = match (it.next(), it.next()) {
                    (Some(Protocol::Tcp(_)), None) => true,
                    (Some(Protocol::Udp(_)), Some(Protocol::QuicV1)) => it.next().is_none(),
                    _ => false,
                };
                if ip && transport {
                    Ok(addr)
                } else {
                    Err(InvalidValue::new(
                        "node.listen",
                        format!(
                            "{s:?} must be /ip4|ip6/<ip>/tcp/<port>, /ip4|ip6/<ip>/udp/<port>/quic-v1 or /memory/<n>"
                        ),
                    ))
                }
            })
            .collect()
    }

    /// The bootnode multiaddrs, parsed; each must end in `/p2p/<peer id>`.
    pub fn bootnodes(&self) -> Result<Vec<Multiaddr>, InvalidValue> {
        self.network
            .bootnodes
            .iter()
            .map(|s| {
                let addr = parse_multiaddr("network.bootnodes", s)?;
                match addr.iter().last() {
                    Some(Protocol::P2p(_)) => Ok(addr),
                    _ => Err(InvalidValue::new(
                        "network.bootnodes",
                        format!("{s:?} must end in /p2p/<peer id> so the node can check who answers"),
                    )),
                }
            })
            .collect()
    }

    /// The API socket address, or `None` when the API is disabled.
    pub fn api_addr(&self) -> Result<Option<SocketAddr>, InvalidValue> {
        if self.node.api.is_empty() {
            return Ok(None);
        }
        let addr: SocketAddr = self.node.api.parse().map_err(|e| {
            InvalidValue::new("node.api", format!("{:?} is not an ip:port address: {e}", self.node.api))
        })?;
        if !addr.ip().is_loopback() {
            return Err(InvalidValue::new(
                "node.api",
                format!("{addr} is not a loopback address; the API is for this machine only"),
            ));
        }
        Ok(Some(addr))
    }
}

fn parse_multiaddr(key: &str, s: &str) -> Result<Multiaddr, InvalidValue> {
    s.parse::<Multiaddr>().map_err(|e| InvalidValue::new(key, format!("{s:?} is not a valid multiaddr: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        let cfg = NodeConfig::default();
        cfg.validate().unwrap();
        let back = NodeConfig::from_toml(&cfg.to_toml()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = NodeConfig::from_toml("[node]\nlisten_on = []\n").unwrap_err();
        assert!(err.0.contains("listen_on"), "{err}");
        let err = NodeConfig::from_toml("[network]\nepoch = 5\n").unwrap_err();
        assert!(err.0.contains("epoch"), "{err}");
        let err = NodeConfig::from_toml("[nodes]\n").unwrap_err();
        assert!(err.0.contains("nodes"), "{err}");
    }

    #[test]
    fn wrong_types_are_errors() {
        let err = NodeConfig::from_toml("[network]\nepoch_secs = \"long\"\n").unwrap_err();
        assert!(err.0.contains("epoch_secs") || err.0.contains("line 2"), "{err}");
        let err = NodeConfig::from_toml("[node]\nrole = \"miner\"\n").unwrap_err();
        assert!(err.0.contains("miner"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let check = |edit: &dyn Fn(&mut NodeConfig), key: &str| {
            let mut c = NodeConfig::default();
            edit(&mut c);
            let e = c.validate().unwrap_err();
            assert_eq!(e.key, key, "{e}");
        };
        check(&|c| c.node.listen = vec!["not-a-multiaddr".into()], "node.listen");
        check(&|c| c.node.listen = vec!["/ip4/127.0.0.1/udp/1".into()], "node.listen");
        check(&|c| c.node.listen.clear(), "node.listen");
        check(&|c| c.network.bootnodes = vec!["/ip4/127.0.0.1/tcp/1".into()], "network.bootnodes");
        check(&|c| c.network.bootnodes = vec!["/ip4/1.2.3/tcp/1".into()], "network.bootnodes");
        check(&|c| c.node.api = "0.0.0.0:7070".into(), "node.api");
        check(&|c| c.node.api = "localhost".into(), "node.api");
        check(&|c| c.network.epoch_secs = 0, "network.epoch_secs");
        check(&|c| c.network.id = "Bad Id".into(), "network.id");
        check(&|c| c.limits.max_connections = 0, "limits.max_connections");
        check(&|c| c.limits.target_peers = 1000, "limits.target_peers");
        check(&|c| c.node.log = "info,[".into(), "node.log");
        check(&|c| c.por.max_in_flight = 0, "por.max_in_flight");
        check(&|c| c.por.max_in_flight = 65, "por.max_in_flight");
        check(&|c| c.work.hours = "after dinner".into(), "work.hours");
        check(&|c| (c.work.hours, c.work.utc_offset) = ("22:00-07:00".into(), "CET".into()), "work.utc_offset");
        check(&|c| c.work.idle_busy_pct = 0, "work.idle_busy_pct");
        check(&|c| c.work.idle_quiet_secs = 0, "work.idle_quiet_secs");
    }

    #[test]
    fn overrides_replace_file_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ifx.toml");
        std::fs::write(&path, "[node]\nrole = \"verifier\"\napi = \"\"\n[network]\nid = \"lab\"\n").unwrap();
        let o = Overrides {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            api: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        let cfg = NodeConfig::load(Some(&path), &o).unwrap();
        assert_eq!(cfg.node.role, Role::Verifier);
        assert_eq!(cfg.network.id, "lab");
        assert_eq!(cfg.node.listen, vec!["/ip4/127.0.0.1/tcp/0".to_string()]);
        assert_eq!(cfg.api_addr().unwrap(), Some("127.0.0.1:0".parse().unwrap()));
        let missing = NodeConfig::load(Some(&dir.path().join("nope.toml")), &o).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
    }
}
