//! Starting and stopping the node processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ifx_protocols::fl::poison::Poison;
use ifx_protocols::infer::InferCheat;
use ifx_protocols::por::cheat::{Behaviour, CheatMode};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::process::{Child, Command};

use crate::{TestnetArgs, TestnetError};

/// The cheat modes handed out in turn to `--cheaters` (every image cheat, then a forged
/// benchmark time).
const CHEATS: [Behaviour; 7] = [
    Behaviour::Image(CheatMode::Constant),
    Behaviour::Image(CheatMode::WhiteNoise),
    Behaviour::Image(CheatMode::OldTile),
    Behaviour::Image(CheatMode::QuarterRes),
    Behaviour::Image(CheatMode::NoWatermark),
    Behaviour::Image(CheatMode::Fake25),
    Behaviour::ForgedTime,
];

/// The digits data set (see testdata/README.md), the default federated data of a run.
const DIGITS: &[u8] = include_bytes!("../../testdata/digits.csv.gz");

/// The poison modes handed out in turn to `--poisoners` (those a screened round must catch).
const POISONS: [Poison; 5] = [Poison::SignFlip, Poison::Scale, Poison::Random, Poison::Nan, Poison::Shape];

/// The inference cheat modes handed out in turn to `--infer-cheaters`.
const INFER_CHEATS: [InferCheat; 2] = [InferCheat::Random, InferCheat::Cheap];

/// How long a node may take to start serving its API.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Nodes started at once in process.
const IN_PROCESS_STARTS: usize = 8;
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Liquid IFX node 0, the run's artist, starts with: enough for every job a run submits.
const ARTIST_LIQUID_IFX: u64 = 10_000_000;

/// One `[[network.genesis]]` allocation of the run's config, stake and liquid in IFX.
fn genesis_alloc(key: &str, role: &str, stake_ifx: u64, liquid_ifx: u64) -> String {
    let units = ifx_protocols::settle::UNITS_PER_IFX;
    format!(
        "\n[[network.genesis]]\nkey = \"{key}\"\nrole = \"{role}\"\nstake = {}\nliquid = {}\n",
        stake_ifx * units,
        liquid_ifx * units
    )
}

/// The burn price of a test network: the default price per delivery minute scaled by how much
/// shorter its epochs are than 72 hours. The wash-trading bound (a delivery minute may add at
/// most pool x W_PoD / (4 x epoch minutes) to a self-dealer's reward, `docs/ECONOMICS.md`)
/// scales the same way, so a 3-second epoch keeps the default's margin.
pub fn job_price_per_minute(epoch_secs: u64) -> u64 {
    let d = ifx_protocols::settle::EconParams::default();
    let v = d.job_price_per_minute as u128 * (72 * 3_600) / epoch_secs.max(1) as u128;
    v.min(1 << 60) as u64
}

/// One node process.
pub struct NodeProc {
    pub index: usize,
    pub role: &'static str,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Proc>,
    pub api: Option<SocketAddr>,
    pub peer_id: String,
    /// Seconds into the run at which the harness killed it.
    pub killed_at: Option<f64>,
    /// How it ended, if it ended before the stop (crash, fault).
    pub exited: Option<String>,
    /// The cheat mode it runs in, if any.
    pub cheat: Option<Behaviour>,
    /// The poison mode of its federated-learning updates, if any.
    pub poison: Option<Poison>,
    /// How it answers inference batches wrongly, if it does.
    pub infer_cheat: Option<InferCheat>,
    /// The shard of the federated data it trains on (workers only, when a task runs).
    pub fl_shard: Option<u32>,
    /// It holds a copy of another worker's shard (`--fl-copiers`).
    pub fl_copier: bool,
    /// Seconds into the run at which the harness started it again after a kill.
    pub restarted_at: Option<f64>,
    /// How late it answers requests (`--slow`), in ms.
    pub slow_ms: u64,
    /// How many times as long its work takes (`--slow` with `--slow-factor`; 1: as fast as it can).
    pub slow_factor: u32,
    /// Its ed25519 public key (hex), created before the launch for the genesis allocations.
    pub public_key: String,
    /// Its TCP listen address on 127.0.0.1, once it runs.
    pub listen_addr: Option<String>,
    /// In a topology of namespaces: its API inside its namespace (`api` is the harness's
    /// forwarder to it).
    pub api_inner: Option<SocketAddr>,
}

impl NodeProc {
    /// The token its API wants on writes (the node writes it to its data dir at every start).
    pub fn api_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("api.token")).map(|t| t.trim().to_owned()).unwrap_or_default()
    }
}

/// Starts nodes inside this process (`ifx testnet --in-process`): given the arguments of
/// `ifx node`, start one and hand back a way to stop it. The node crate implements it (it
/// links this crate, not the other way round).
pub trait Host: Send + Sync {
    fn start(&self, args: Vec<String>) -> BoxFuture<'static, Result<Box<dyn RunningNode>, TestnetError>>;
}

/// A node started by a [`Host`].
pub trait RunningNode: Send {
    /// Stops the node (in-process, a kill is a stop too: there is no process to kill).
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A future that can cross threads.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// How a node runs: its own process, or inside this one.
pub enum Proc {
    Child(Child),
    InProcess(Box<dyn RunningNode>),
}

impl Proc {
    /// The exit status, if the process ended (in-process nodes do not end on their own).
    fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        match self {
            Proc::Child(c) => c.try_wait().ok().flatten(),
            Proc::InProcess(_) => None,
        }
    }
}

/// The launched network.
pub struct Testnet {
    pub binary: PathBuf,
    pub base_dir: PathBuf,
    config: PathBuf,
    pub network_id: String,
    pub nodes: Vec<NodeProc>,
    pub t0: Instant,
    pub client: reqwest::Client,
    /// Absolute path of the federated data file, when a task runs.
    pub fl_data: Option<PathBuf>,
    /// Node 0's address, once it runs (restarted nodes dial it).
    bootnode: Option<String>,
    /// Percent of inbound gossip every node drops.
    loss: u32,
    /// Starts nodes in this process instead of spawning `binary` (`--in-process`).
    host: Option<std::sync::Arc<dyn Host>>,
    /// Shards of the federated split (one per honest worker).
    pub fl_shards: u32,
    /// The inference job's model (a CNN the harness trained on the digits, safetensors) and
    /// its input rows, when the run submits one.
    pub infer: Option<InferWork>,
    /// The node that counts loopback peers against its per-IP caps (the eclipse victim).
    cap_loopback: Option<usize>,
    /// Public keys (hex) of the attackers given genesis allocations, by attack name (its own
    /// first).
    pub attacker_keys: std::collections::BTreeMap<String, Vec<String>>,
    /// The network namespaces the nodes run in (`--topology`), if any.
    pub netns: Option<crate::netns::Netns>,
}

/// What the run's inference job serves: a model and rows.
pub struct InferWork {
    pub weights: Vec<u8>,
    pub inputs: Vec<f32>,
    /// The CNN's accuracy on the digits' test split, as trained.
    pub accuracy: f64,
}

impl InferWork {
    /// Trains the CNN on the training split of `data` (two seeded epochs, a few seconds) and
    /// takes `rows` rows of the whole file, in turn.
    fn prepare(data: &Path, rows: usize) -> Result<Self, TestnetError> {
        use ifx_protocols::infer::Arch;
        let err = |e: String| TestnetError::Io(format!("preparing the inference job: {e}"));
        let all = ifx_learn::data::Dataset::load(data).map_err(|e| err(e.to_string()))?;
        let (train, test) = all.split();
        let cfg = ifx_learn::model::TrainConfig { epochs: 2, batch: 32, lr: 0.005, seed: 7 };
        let init = ifx_learn::infer::init(Arch::Cnn, 7);
        let (p, _) = ifx_learn::infer::train(Arch::Cnn, &init, &train, &cfg).map_err(|e| err(e.to_string()))?;
        let accuracy = ifx_learn::infer::accuracy(Arch::Cnn, &p, &test).map_err(|e| err(e.to_string()))?;
        let weights = ifx_protocols::infer::weights_to_bytes(Arch::Cnn, &p).map_err(|e| err(e.to_string()))?;
        let inputs = ifx_learn::infer::rows(&all, (0..rows).map(|i| i % all.len().max(1)));
        Ok(Self { weights, inputs, accuracy })
    }
}

#[derive(Deserialize)]
struct StatusView {
    peer_id: String,
    listen_addrs: Vec<String>,
}

impl Testnet {
    /// Creates the base dir, clears earlier node dirs and writes the shared network config.
    pub fn prepare(binary: PathBuf, args: &TestnetArgs) -> Result<Self, TestnetError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let base_dir = args.base_dir.clone().unwrap_or_else(crate::default_base_dir);
        let io = |what: &str, p: &Path, e: std::io::Error| TestnetError::Io(format!("{what} {}: {e}", p.display()));
        std::fs::create_dir_all(&base_dir).map_err(|e| io("cannot create", &base_dir, e))?;
        let network_id = format!("testnet-{}", now.as_secs() % 1_000_000);
        // Workers are nodes 1..first_verifier; the poisoners are the last of them; every honest
        // worker holds its own shard, a poisoner a copy of one (no data is only in bad hands).
        let first_verifier = args.nodes - args.verifiers;
        let first_poisoner = first_verifier - args.poisoners;
        // Copiers hold a copy of shard 0, 1, ... (the shards of nodes 1, 2, ...).
        let first_copier = first_poisoner - args.fl_copiers;
        let fl_shards = (first_copier - 1).max(1) as u32;
        let data = match &args.fl_data {
            Some(d) => std::fs::canonicalize(d).map_err(|e| io("cannot find", d, e))?,
            None => {
                let d = base_dir.join("digits.csv.gz");
                std::fs::write(&d, DIGITS).map_err(|e| io("cannot write", &d, e))?;
                d
            }
        };
        let fl_data = (args.fl_rounds > 0).then(|| data.clone());
        let infer = match args.infer_rows {
            0 => None,
            rows => Some(InferWork::prepare(&data, rows)?),
        };
        let mut nodes = Vec::new();
        for index in 0..args.nodes {
            let data_dir = base_dir.join(format!("node-{index}"));
            if data_dir.exists() {
                std::fs::remove_dir_all(&data_dir).map_err(|e| io("cannot clear", &data_dir, e))?;
            }
            std::fs::create_dir_all(&data_dir).map_err(|e| io("cannot create", &data_dir, e))?;
            let role = if index >= args.nodes - args.verifiers { "verifier" } else { "worker" };
            nodes.push(NodeProc {
                index,
                role,
                log: data_dir.join("node.log"),
                data_dir,
                child: None,
                api: None,
                peer_id: String::new(),
                killed_at: None,
                exited: None,
                cheat: (index >= 1 && index <= args.cheaters).then(|| CHEATS[(index - 1) % CHEATS.len()]),
                infer_cheat: (index > args.cheaters && index <= args.cheaters + args.infer_cheaters)
                    .then(|| INFER_CHEATS[(index - args.cheaters - 1) % INFER_CHEATS.len()]),
                poison: (index >= first_poisoner && index < first_verifier)
                    .then(|| POISONS[(index - first_poisoner) % POISONS.len()]),
                fl_shard: (index >= 1 && index < first_verifier).then(|| match index {
                    i if i >= first_copier && i < first_poisoner => (i - first_copier) as u32 % fl_shards,
                    i => (i as u32 - 1) % fl_shards,
                }),
                fl_copier: index >= first_copier && index < first_poisoner,
                public_key: String::new(),
                listen_addr: None,
                api_inner: None,
                restarted_at: None,
                slow_ms: if args.slow.contains(&index) { args.slow_ms } else { 0 },
                slow_factor: if args.slow.contains(&index) { args.slow_factor } else { 1 },
            });
        }
        // Every node's key exists before the launch, so the network config can give each one
        // its genesis stake (workers: enough for any IB; verifiers: the minimum verifier stake).
        let mut genesis = String::new();
        for n in &mut nodes {
            n.public_key = create_key(&binary, &n.data_dir)?;
            // Node 0 is also the run's artist: it pays for the render job it owns.
            let (stake, liquid) = match (n.role, n.index) {
                ("verifier", _) => (2_000, 0),
                (_, 0) => (1_000, ARTIST_LIQUID_IFX),
                _ => (1_000, 100),
            };
            genesis += &genesis_alloc(&n.public_key, n.role, stake, liquid);
        }
        // Attackers with money to game with (issue #21) get their keys and allocations now.
        let mut attacker_keys: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for a in args.attacks()? {
            for (sub, role, stake, liquid) in a.funding() {
                let dir = a.dir(&base_dir).join(sub);
                std::fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
                let key = create_key(&binary, &dir)?;
                genesis += &genesis_alloc(&key, role, stake, liquid);
                attacker_keys.entry(a.name().to_string()).or_default().push(key);
            }
        }
        let config = base_dir.join("network.toml");
        let text = format!(
            "# Written by `ifx testnet`: the parameters every node of this run shares.\n\
             [network]\nid = \"{network_id}\"\ngenesis_unix_secs = {}\nepoch_secs = {}\n\
             heartbeat_interval_ms = {}\n\n[network.economics]\njob_price_per_minute = {}\n\n[limits]\ntarget_peers = {}\n\n[ledger]\nsync_interval_ms = {}\n\n[por]\nchallenge_interval_ms = 500\nmax_in_flight = {}\n",
            now.as_secs(),
            args.epoch_secs,
            args.heartbeat_ms,
            job_price_per_minute(args.epoch_secs),
            args.nodes.min(24),
            // Anti-entropy backs gossip up; a hundred nodes syncing every second would be most
            // of the traffic.
            (args.nodes as u64 * 20).max(1000),
            // One challenge at a time up to 8 workers per verifier; more in a big network, so
            // that every worker meets both kinds of challenge within a few epochs.
            (args.nodes.saturating_sub(args.verifiers) / (args.verifiers.max(1) * 8)).clamp(1, 4),
        );
        std::fs::write(&config, text + &genesis).map_err(|e| io("cannot write", &config, e))?;
        // A node of a big in-process network answers its API on a busy runtime.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3) + Duration::from_millis(50) * args.nodes as u32)
            .no_proxy()
            .build()
            .map_err(|e| TestnetError::Io(format!("HTTP client: {e}")))?;
        Ok(Self {
            binary,
            base_dir,
            config,
            network_id,
            nodes,
            t0: Instant::now(),
            client,
            fl_data,
            fl_shards,
            infer,
            bootnode: None,
            loss: args.loss,
            host: None,
            cap_loopback: None,
            attacker_keys,
            netns: None,
        })
    }

    /// Runs every node inside this process through `host`; they all log to one file.
    pub fn in_process(&mut self, host: std::sync::Arc<dyn Host>) {
        self.host = Some(host);
        for n in &mut self.nodes {
            n.log = self.base_dir.join(crate::IN_PROCESS_LOG);
        }
    }

    /// Runs every node in its own network namespace of `netns`.
    pub fn in_namespaces(&mut self, netns: crate::netns::Netns) {
        self.netns = Some(netns);
    }

    /// Node `i`'s address on its network (its namespace's, or loopback).
    fn ip_of(&self, i: usize) -> String {
        match &self.netns {
            Some(ns) => ns.placements[i].ip.clone(),
            None => "127.0.0.1".into(),
        }
    }

    /// Resident memory of the running node processes, summed, in MiB (0 in process).
    pub fn nodes_rss_mb(&self) -> f64 {
        self.nodes
            .iter()
            .filter_map(|n| match &n.child {
                Some(Proc::Child(c)) => c.id(),
                _ => None,
            })
            .map(|pid| status_kb(&format!("/proc/{pid}/status"), "VmRSS:") as f64 / 1024.0)
            .sum()
    }

    /// Starts node 0, then every other node with node 0 as bootnode; waits for every API.
    pub async fn launch_all(&mut self) -> Result<(), TestnetError> {
        self.t0 = Instant::now();
        self.spawn(0, None).await?;
        let boot = self.wait_ready(0).await?;
        let addr = boot
            .listen_addrs
            .iter()
            .find(|a| {
                if self.host.is_some() {
                    a.starts_with("/memory/")
                } else {
                    a.starts_with(&format!("/ip4/{}/tcp/", self.ip_of(0)))
                }
            })
            .ok_or_else(|| TestnetError::Start { index: 0, reason: "no listen address to boot from".into() })?;
        let bootnode = format!("{addr}/p2p/{}", boot.peer_id);
        if let Some(host) = self.host.clone() {
            // In process a start opens a database and a swarm on this runtime: several at a
            // time, so that a hundred nodes are up in seconds rather than minutes.
            use futures::StreamExt;
            let starts: Vec<_> = (1..self.nodes.len()).map(|i| (i, self.node_args(i, Some(&bootnode)))).collect();
            let mut started = futures::stream::iter(starts)
                .map(|(i, args)| {
                    let host = host.clone();
                    async move { (i, host.start(args).await) }
                })
                .buffer_unordered(IN_PROCESS_STARTS);
            while let Some((i, result)) = started.next().await {
                let running = result.map_err(|e| TestnetError::Start { index: i, reason: e.to_string() })?;
                self.nodes[i].child = Some(Proc::InProcess(running));
            }
        } else {
            for i in 1..self.nodes.len() {
                self.spawn(i, Some(&bootnode)).await?;
            }
        }
        self.bootnode = Some(bootnode);
        for i in 1..self.nodes.len() {
            self.wait_ready(i).await?;
        }
        Ok(())
    }

    /// The arguments of `ifx node` for node `i`.
    fn node_args(&self, i: usize, bootnode: Option<&str>) -> Vec<String> {
        let n = &self.nodes[i];
        let listen = if self.host.is_some() { "/memory/0" } else { "/ip4/127.0.0.1/tcp/0" };
        let mut args: Vec<String> = vec!["--config".into(), self.config.display().to_string()];
        args.extend(["--data-dir".into(), n.data_dir.display().to_string()]);
        if self.netns.is_some() {
            // As at home: one port for TCP and QUIC; the bootnode and verifiers know they are
            // public, workers let AutoNAT find out.
            let ip = self.ip_of(i);
            let port = self.netns.as_ref().map_or(4001, |ns| ns.placements[i].port);
            for a in [format!("/ip4/{ip}/tcp/{port}"), format!("/ip4/{ip}/udp/{port}/quic-v1")] {
                args.extend(["--listen".into(), a]);
            }
            // The bootnode relays too, so that a relay's loss leaves a NATed node one to move to.
            if i == 0 || n.role == "verifier" {
                args.extend(["--reachability".into(), "public".into(), "--relay-service".into(), "true".into()]);
            }
        } else {
            args.extend(["--listen".into(), listen.into()]);
        }
        for a in ["--api", "127.0.0.1:0", "--role", n.role] {
            args.push(a.into());
        }
        let mut opt = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                args.extend([flag.to_string(), v]);
            }
        };
        opt("--bootnode", bootnode.map(str::to_owned));
        opt("--cheat", n.cheat.map(|m| m.name().to_owned()));
        opt("--poison", n.poison.map(|m| m.name().to_owned()));
        opt("--infer-cheat", n.infer_cheat.map(|m| m.name().to_owned()));
        opt("--drop-gossip-pct", (self.loss > 0).then(|| self.loss.to_string()));
        opt("--slow-ms", (n.slow_ms > 0).then(|| n.slow_ms.to_string()));
        opt("--slow-factor", (n.slow_factor > 1).then(|| n.slow_factor.to_string()));
        // Node 0 owns the federated task and scores it on the test split; workers train.
        if let Some(d) = &self.fl_data
            && (i == 0 || n.fl_shard.is_some())
        {
            opt("--fl-data", Some(d.display().to_string()));
            opt("--fl-shard", n.fl_shard.map(|s| s.to_string()));
        }
        if self.cap_loopback == Some(i) {
            args.push("--cap-loopback".into());
        }
        args
    }

    async fn spawn(&mut self, i: usize, bootnode: Option<&str>) -> Result<(), TestnetError> {
        let args = self.node_args(i, bootnode);
        let n = &mut self.nodes[i];
        let start_err = |reason: String| TestnetError::Start { index: i, reason };
        if let Some(host) = &self.host {
            let running = host.start(args).await.map_err(|e| start_err(e.to_string()))?;
            n.child = Some(Proc::InProcess(running));
            return Ok(());
        }
        // A restarted node appends to the log of its first run.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .map_err(|e| start_err(format!("log file: {e}")))?;
        let log2 = log.try_clone().map_err(|e| start_err(format!("log file: {e}")))?;
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the node: the child's pid is the node's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.placements[i].namespace]).arg(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        cmd.arg("node").args(&args);
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2).kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| start_err(format!("cannot run {}: {e}", self.binary.display())))?;
        n.child = Some(Proc::Child(child));
        Ok(())
    }

    /// Waits for `<data-dir>/api.addr` and a first `/status`; fails if the process exits.
    async fn wait_ready(&mut self, i: usize) -> Result<StatusView, TestnetError> {
        // In process, every node shares the harness's two cores with all the others started
        // before it: the later ones take longer.
        let wait = if self.host.is_some() { START_TIMEOUT * 4 } else { START_TIMEOUT };
        let deadline = Instant::now() + wait;
        let addr_file = self.nodes[i].data_dir.join("api.addr");
        loop {
            let n = &mut self.nodes[i];
            if let Some(status) = n.child.as_mut().and_then(|c| c.try_wait()) {
                return Err(TestnetError::Start {
                    index: i,
                    reason: format!("exited with {status}; end of {}:\n{}", n.log.display(), tail(&n.log, 15)),
                });
            }
            if let Some(api) =
                std::fs::read_to_string(&addr_file).ok().and_then(|s| s.trim().parse::<SocketAddr>().ok())
            {
                match &self.netns {
                    Some(ns) if n.api_inner != Some(api) => {
                        let fwd = crate::netns::forward_api(ns.placements[i].namespace.clone(), api)
                            .await
                            .map_err(|e| TestnetError::Io(format!("API forwarder for node {i}: {e}")))?;
                        n.api_inner = Some(api);
                        n.api = Some(fwd);
                    }
                    Some(_) => {}
                    None => n.api = Some(api),
                }
                let api = n.api.expect("set above");
                if let Ok(r) = self.client.get(format!("http://{api}/status")).send().await
                    && let Ok(s) = r.json::<StatusView>().await
                {
                    self.nodes[i].peer_id = s.peer_id.clone();
                    let prefix = format!("/ip4/{}/tcp/", self.ip_of(i));
                    self.nodes[i].listen_addr = s.listen_addrs.iter().find(|a| a.starts_with(&prefix)).cloned();
                    return Ok(s);
                }
            }
            if Instant::now() > deadline {
                return Err(TestnetError::Start {
                    index: i,
                    reason: format!("no API after {wait:?}; see {}", self.nodes[i].log.display()),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Node `i` counts loopback peers against its per-IP caps (the eclipse victim; every peer
    /// of a testnet is 127.0.0.1).
    pub fn cap_loopback(&mut self, i: Option<usize>) {
        self.cap_loopback = i;
    }

    /// Node 0's address, once it runs.
    pub fn bootnode(&self) -> Option<String> {
        self.bootnode.clone()
    }

    /// The network config every node of the run shares.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Peak resident memory (MiB) and CPU time (s, user + system) of each node process
    /// (`None`: not running, or in process).
    pub fn usage(&self) -> Vec<Option<(f64, f64)>> {
        self.nodes
            .iter()
            .map(|n| match &n.child {
                Some(Proc::Child(c)) => c.id(),
                _ => None,
            })
            .map(|pid| {
                let pid = pid?;
                let peak = status_kb(&format!("/proc/{pid}/status"), "VmHWM:") as f64 / 1024.0;
                Some((peak, cpu_secs(pid)?))
            })
            .collect()
    }

    /// Seconds since the first launch.
    pub fn elapsed(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Starts killed node `i` again with its data dir, and waits for its API.
    pub async fn restart(&mut self, i: usize) -> Result<(), TestnetError> {
        if self.nodes[i].child.is_some() {
            return Ok(());
        }
        // Node 0 is everyone's bootnode; started again, it boots from another running node.
        let boot = if i == 0 {
            self.nodes
                .iter()
                .skip(1)
                .filter(|n| n.child.is_some() && !n.peer_id.is_empty())
                .find_map(|n| Some(format!("{}/p2p/{}", n.listen_addr.as_ref()?, n.peer_id)))
        } else {
            self.bootnode.clone()
        };
        let _ = std::fs::remove_file(self.nodes[i].data_dir.join("api.addr"));
        self.spawn(i, boot.as_deref()).await?;
        self.wait_ready(i).await?;
        let at = self.elapsed();
        let n = &mut self.nodes[i];
        n.restarted_at = Some(at);
        n.exited = None;
        Ok(())
    }

    /// Blocks (or unblocks) every peer outside `group` on the nodes of `group`, and the group on
    /// every other node, through their APIs; returns the nodes that did not answer.
    pub async fn partition(&self, group: &[usize], block: bool) -> Vec<usize> {
        let path = if block { "net/block" } else { "net/unblock" };
        let calls =
            self.nodes.iter().enumerate().filter_map(|(i, n)| n.api.filter(|_| n.child.is_some()).map(|a| (i, a))).map(
                |(i, api)| {
                    let inside = group.contains(&i);
                    let peers: Vec<String> = self
                        .nodes
                        .iter()
                        .enumerate()
                        .filter(|(j, m)| *j != i && group.contains(j) != inside && !m.peer_id.is_empty())
                        .map(|(_, m)| m.peer_id.clone())
                        .collect();
                    let client = self.client.clone();
                    let token = self.nodes[i].api_token();
                    async move {
                        let ok = client
                            .post(format!("http://{api}/{path}"))
                            .bearer_auth(token)
                            .json(&serde_json::json!({ "peers": peers }))
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success());
                        (!ok).then_some(i)
                    }
                },
            );
        futures::future::join_all(calls).await.into_iter().flatten().collect()
    }

    /// Sends SIGKILL to node `i` now (a fault).
    pub async fn kill(&mut self, i: usize) {
        let at = self.elapsed();
        let n = &mut self.nodes[i];
        match n.child.take() {
            Some(Proc::Child(mut child)) => {
                let _ = child.start_kill();
                let status = child.wait().await;
                n.killed_at = Some(at);
                n.exited = Some(format!("killed with SIGKILL by the harness ({})", describe(status)));
            }
            Some(Proc::InProcess(node)) => {
                node.stop().await;
                n.killed_at = Some(at);
                n.exited = Some("stopped by the harness (in-process: a kill is a stop)".into());
            }
            None => {}
        }
    }

    /// Notes processes that ended on their own.
    pub fn reap(&mut self) {
        for n in &mut self.nodes {
            if let Some(status) = n.child.as_mut().and_then(|c| c.try_wait()) {
                n.child = None;
                n.exited = Some(format!("exited on its own with {status}"));
            }
        }
    }

    /// SIGTERM to every running node, SIGKILL after [`STOP_TIMEOUT`]; returns how each stopped.
    pub async fn stop_all(&mut self) -> Vec<String> {
        let stops = self.nodes.iter_mut().map(|n| async move {
            let mut child = match n.child.take() {
                None => return n.exited.clone().unwrap_or_else(|| "never started".into()),
                Some(Proc::InProcess(node)) => {
                    node.stop().await;
                    return "clean".to_string();
                }
                Some(Proc::Child(c)) => c,
            };
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
            match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                Ok(Ok(s)) if s.success() => "clean".to_string(),
                Ok(r) => format!("after SIGTERM: {}", describe(r)),
                Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    format!("did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed")
                }
            }
        });
        futures::future::join_all(stops).await
    }
}

fn describe(r: std::io::Result<std::process::ExitStatus>) -> String {
    match r {
        Ok(s) => s.to_string(),
        Err(e) => format!("wait failed: {e}"),
    }
}

/// The last `lines` lines of a file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `ifx key init` for a data dir and returns the public key it prints.
fn create_key(binary: &Path, data_dir: &Path) -> Result<String, TestnetError> {
    let out = std::process::Command::new(binary)
        .args(["key", "init", "--data-dir"])
        .arg(data_dir)
        .output()
        .map_err(|e| TestnetError::Io(format!("running {} key init: {e}", binary.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("public_key: "))
        .map(|k| k.trim().to_owned())
        .filter(|_| out.status.success())
        .ok_or_else(|| {
            TestnetError::Io(format!(
                "{} key init --data-dir {} failed: {}",
                binary.display(),
                data_dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })
}

/// A `kB` field of a `/proc/.../status` file (0 when unreadable).
pub fn status_kb(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix(field).map(|v| v.trim().trim_end_matches(" kB").trim().to_owned()))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of a process, in seconds (fields 14 and 15 of /proc/PID/stat,
/// in clock ticks of 1/100 s on Linux).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
