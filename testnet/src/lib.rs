//! `ifx testnet`: a whole network of `ifx node` processes on 127.0.0.1, watched through their
//! HTTP APIs, with faults injected on schedule, ending in one JSON report.
//!
//! The launcher knows nodes only as processes and HTTP endpoints (it does not link the node
//! crate), so what it measures is what a user of the real binary gets.

pub mod attacks;
mod certify;
mod html;
mod launch;
pub mod netns;
mod probe;
mod report;
mod watch;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use launch::{BoxFuture, Host, RunningNode};
pub use report::{LatencyMs, NodeReport, Report, centralized_baseline};

/// Options of `ifx testnet`.
#[derive(clap::Args, Debug, Clone)]
pub struct TestnetArgs {
    /// Number of node processes in all (the first is the bootnode).
    #[arg(long, default_value_t = 8)]
    pub nodes: usize,
    /// How many of the nodes run as verifiers (the last ones).
    #[arg(long, default_value_t = 1)]
    pub verifiers: usize,
    /// Seconds the network runs, counted from the first launch.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Directory for the nodes' data dirs, logs and the report (default: a new dir under /tmp).
    #[arg(long)]
    pub base_dir: Option<PathBuf>,
    /// Where to write the JSON report (default: <base-dir>/report.json).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Kill node IDX with SIGKILL SECS seconds into the run, e.g. `--kill 3@8` (repeatable).
    #[arg(long = "kill")]
    pub kills: Vec<Kill>,
    /// Start a killed node IDX again (same data dir and key) at SECS, e.g. `--restart 3@14`; it
    /// must catch up to the same ledger root and keep every entry of its own (repeatable).
    #[arg(long = "restart")]
    pub restarts: Vec<Kill>,
    /// Cut nodes IDX,IDX,... off from all the others from T1 to T2 seconds (blocking peers
    /// through each node's API), e.g. `--partition 4,5,6@10-20` (repeatable).
    #[arg(long = "partition")]
    pub partitions: Vec<Partition>,
    /// Heartbeat interval of the test network, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// Epoch length of the test network, in seconds (short, so verifiers attest during a run).
    #[arg(long, default_value_t = 3)]
    pub epoch_secs: u64,
    /// How many workers cheat on proof-of-rendering challenges (nodes 1..=C, modes in turn).
    #[arg(long, default_value_t = 0)]
    pub cheaters: usize,
    /// Side of the square image of the render job the run submits to node 0 (0: no job).
    #[arg(long, default_value_t = 192)]
    pub render_size: u32,
    /// Samples per pixel of that job.
    #[arg(long, default_value_t = 32)]
    pub render_spp: u32,
    /// A .toml/.json scene file for that job instead of the built-in Cornell box: node 0 gets
    /// it and every file it reads (meshes, glTF buffers) as assets, as `ifx render submit`
    /// uploads them, and the workers fetch them by hash.
    #[arg(long)]
    pub render_scene: Option<std::path::PathBuf>,
    /// Render frames `A..B` (both included) of that scene's animations as a PNG sequence, the
    /// frames' tiles handed out together; default: one still.
    #[arg(long, value_parser = ifx_protocols::render::job::parse_frame_range)]
    pub render_frames: Option<(u32, u32)>,
    /// Frames a second of that sequence (frame `f` is `f / fps` seconds into the animations).
    #[arg(long, default_value_t = 24)]
    pub render_fps: u32,
    /// Seconds into the run at which the artist's job (and FL task) go in: later, the job
    /// owner already reads the verifiers' link attestations when it hands out tiles.
    #[arg(long, default_value_t = 0)]
    pub job_at: u64,
    /// Make the federated task differentially private with this budget ε (at δ = 1e-5; the
    /// task aggregates with fedavg, the only rule DP allows, so no poisoners). The verdict then
    /// requires ε within the budget instead of the accuracy target (the accuracy is reported).
    #[arg(long)]
    pub fl_dp_epsilon: Option<f64>,
    /// How many workers hold a copy of another worker's federated shard (the workers just
    /// before the poisoners; copies of shards 0, 1, ... in turn). Issue #20: a copy must earn
    /// clearly less than unique data.
    #[arg(long, default_value_t = 0)]
    pub fl_copiers: usize,
    /// SCAFFOLD drift correction of the federated task, 0 (off) to 1 (`TaskSpec::scaffold`; a
    /// private task runs without). 0.1 brought the non-IID task within 1.5 points of the
    /// centralized model on the same shards, which the verdict requires (docs/BENCHMARKS.md).
    #[arg(long, default_value_t = 0.1)]
    pub fl_scaffold: f64,
    /// Rows of the inference job the run submits to node 0 beside the render job and the FL
    /// task: the digits' rows (in turn, when more) through a CNN the harness trains before the
    /// launch (0: no job).
    #[arg(long, default_value_t = 1797)]
    pub infer_rows: usize,
    /// How many workers answer inference batches wrongly (the workers after the PoR cheaters;
    /// modes infer-random, infer-cheap in turn). Each must be caught with evidence and slashed.
    #[arg(long, default_value_t = 0)]
    pub infer_cheaters: usize,
    /// How many workers poison their federated-learning updates (the last workers before the
    /// verifiers; modes sign-flip, scale, random, nan, shape in turn).
    #[arg(long, default_value_t = 0)]
    pub poisoners: usize,
    /// Rounds of the federated task the run starts on node 0 (0: no task). 60 rounds reached
    /// 0.961-0.969 over six task seeds with four non-IID shards (40: 0.953-0.967).
    #[arg(long, default_value_t = 60)]
    pub fl_rounds: u32,
    /// The data file the workers train on (digits format: CSV or CSV.gz of 64 pixel counts
    /// and a label); each honest worker holds one non-IID shard, each poisoner a copy of one.
    /// Default: the digits set built into the binary (testdata/digits.csv.gz).
    #[arg(long)]
    pub fl_data: Option<PathBuf>,
    /// Aggregation rule of the federated task (fedavg, median, trimmed-mean, krum, multi-krum).
    #[arg(long, default_value = "trimmed-mean")]
    pub fl_aggregator: String,
    /// A governance change node 0 proposes and every node votes for, `param=value`, applied
    /// from a few epochs after the start (`none`: no proposal).
    #[arg(long, default_value = "workers_bps=7000")]
    pub gov_change: String,
    /// Percent of inbound gossip every node drops on arrival (message loss).
    #[arg(long, default_value_t = 0)]
    pub loss: u32,
    /// Node IDX works slowly: each tile, challenge, benchmark and training run takes `--slow-ms`
    /// longer, as on a weaker GPU (repeatable).
    #[arg(long = "slow")]
    pub slow: Vec<usize>,
    /// How much longer each piece of work of a `--slow` node takes, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub slow_ms: u64,
    /// How many times as long each piece of work of a `--slow` node takes (its IB comes out
    /// this many times lower). `--slow 1 --slow-factor 4 --slow-ms 0`: a worker of a quarter
    /// of the others' IB.
    #[arg(long, default_value_t = 1)]
    pub slow_factor: u32,
    /// After the render job, node 0 renders the same job again handing out tiles first come
    /// first served (`schedule=fifo`, as before issue #18), one job at a time: the report sets
    /// the two makespans side by side, each beside its ideal.
    #[arg(long)]
    pub render_compare: bool,
    /// The render job's makespan must be within this many times its ideal (its tiles over the
    /// workers' summed throughput, as measured in the job); 0: not judged.
    #[arg(long, default_value_t = 0.0)]
    pub render_makespan: f64,
    /// Once node 0's render job has kept half its tiles, SIGKILL node 0 (the job's owner) and
    /// start it again a second later: the job must resume and finish, asking for no kept tile
    /// again and writing no receipt twice (issue #18).
    #[arg(long)]
    pub owner_restart: bool,
    /// A scenario: `smoke`, `byzantine`, `chaos`, `scale`, `scale-byzantine`, `home-nat`, `capacity`, `owner-restart` (built in) or a TOML file with the same keys
    /// as these flags (see testnet/scenarios/); flags given on the command line win.
    #[arg(long)]
    pub scenario: Option<String>,
    /// Run every node inside this one process (over libp2p's memory transport) instead of one
    /// process each: many more nodes fit on a small machine. A kill is then a stop.
    #[arg(long)]
    pub in_process: bool,
    /// Hide the progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
    /// Run a hostile peer in the network (repeatable; `all` for every one): hb-overflow,
    /// challenge-flood, work-flood, fork-bomb, author-flood, sync-stall, eclipse, api-rebind.
    /// The run is preceded by the same run without attacks, the baseline the victims are
    /// compared with (see the report's `attacks` section).
    #[arg(long = "attack")]
    pub attack: Vec<String>,
    /// With --attack: skip the baseline run (the attacks section then has no comparison).
    #[arg(long)]
    pub no_baseline: bool,
    /// With --attack: compare with this report of an earlier run without attacks (the same
    /// settings) instead of running the baseline first (for a matrix of attack runs).
    #[arg(long)]
    pub baseline_report: Option<PathBuf>,
    /// Run every node in its own Linux network namespace, behind the NAT routers and link caps
    /// a TOML file describes (keys as a scenario's `[topology]`; see
    /// testnet/scenarios/home-nat.toml). Needs root, iproute2 and nftables.
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// The topology in force (from `--topology` or the scenario).
    #[arg(skip)]
    pub net_topology: Option<netns::Topology>,
}

impl TestnetArgs {
    /// The attacks asked for, `all` expanded, each once.
    pub fn attacks(&self) -> Result<Vec<attacks::Attack>, TestnetError> {
        let mut out = Vec::new();
        for a in &self.attack {
            out.extend(attacks::Attack::parse_list(a)?);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// A scheduled SIGKILL: `IDX@SECS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    pub node: usize,
    pub at: Duration,
}

impl FromStr for Kill {
    type Err = TestnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (idx, secs) =
            s.split_once('@').ok_or_else(|| TestnetError::options(format!("{s:?}: expected IDX@SECS, e.g. 3@8")))?;
        let node =
            idx.parse().map_err(|_| TestnetError::options(format!("{s:?}: node index {idx:?} is not a number")))?;
        let secs: f64 =
            secs.parse().map_err(|_| TestnetError::options(format!("{s:?}: {secs:?} is not a number of seconds")))?;
        let at =
            duration_of(secs).ok_or_else(|| TestnetError::options(format!("{s:?}: seconds must be zero or more")))?;
        Ok(Kill { node, at })
    }
}

/// A scheduled partition: `IDX,IDX,...@T1-T2`, those nodes against the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub group: Vec<usize>,
    pub from: Duration,
    pub to: Duration,
}

impl FromStr for Partition {
    type Err = TestnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TestnetError::options(format!("{s:?}: expected IDX,IDX,...@T1-T2, e.g. 4,5,6@10-20"));
        let (nodes, span) = s.split_once('@').ok_or_else(bad)?;
        let (a, b) = span.split_once('-').ok_or_else(bad)?;
        let secs =
            |x: &str| -> Result<Duration, TestnetError> { x.trim().parse().ok().and_then(duration_of).ok_or_else(bad) };
        let group: Vec<usize> =
            nodes.split(',').map(|n| n.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
        let (from, to) = (secs(a)?, secs(b)?);
        if group.is_empty() || from >= to {
            return Err(TestnetError::options(format!("{s:?}: needs at least one node and T1 < T2")));
        }
        Ok(Partition { group, from, to })
    }
}

/// The log file of every node of an in-process run, in the base dir.
pub const IN_PROCESS_LOG: &str = "nodes.log";

/// Where a run keeps its nodes and report when `--base-dir` is not given: a new dir under the
/// temp dir.
pub fn default_base_dir() -> std::path::PathBuf {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    std::env::temp_dir().join(format!("ifx-testnet-{}", now.as_millis()))
}

/// The built-in scenarios, by name.
pub const SCENARIOS: [(&str, &str); 8] = [
    ("smoke", include_str!("../scenarios/smoke.toml")),
    ("byzantine", include_str!("../scenarios/byzantine.toml")),
    ("chaos", include_str!("../scenarios/chaos.toml")),
    ("scale", include_str!("../scenarios/scale.toml")),
    ("scale-byzantine", include_str!("../scenarios/scale-byzantine.toml")),
    ("home-nat", include_str!("../scenarios/home-nat.toml")),
    ("capacity", include_str!("../scenarios/capacity.toml")),
    ("owner-restart", include_str!("../scenarios/owner-restart.toml")),
];

/// A scenario file: any of the run's settings, and the faults on a timeline.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub nodes: Option<usize>,
    pub verifiers: Option<usize>,
    pub cheaters: Option<usize>,
    pub poisoners: Option<usize>,
    pub infer_rows: Option<usize>,
    pub fl_copiers: Option<usize>,
    pub fl_dp_epsilon: Option<f64>,
    pub fl_scaffold: Option<f64>,
    pub infer_cheaters: Option<usize>,
    pub duration: Option<u64>,
    pub epoch_secs: Option<u64>,
    pub heartbeat_ms: Option<u64>,
    pub render_size: Option<u32>,
    pub render_spp: Option<u32>,
    pub job_at: Option<u64>,
    pub fl_rounds: Option<u32>,
    pub fl_aggregator: Option<String>,
    pub gov_change: Option<String>,
    pub loss: Option<u32>,
    pub slow: Option<Vec<usize>>,
    pub slow_ms: Option<u64>,
    pub slow_factor: Option<u32>,
    pub render_compare: Option<bool>,
    pub render_makespan: Option<f64>,
    pub owner_restart: Option<bool>,
    pub in_process: Option<bool>,
    pub attack: Option<Vec<String>>,
    pub topology: Option<netns::Topology>,
    #[serde(default)]
    pub kill: Vec<At>,
    #[serde(default)]
    pub restart: Vec<At>,
    #[serde(default)]
    pub partition: Vec<PartitionToml>,
}

/// `{ node = IDX, at = SECS }`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct At {
    pub node: usize,
    pub at: f64,
}

/// `{ group = [IDX, ...], from = SECS, to = SECS }`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionToml {
    pub group: Vec<usize>,
    pub from: f64,
    pub to: f64,
}

impl Scenario {
    /// A built-in scenario by name, or a TOML file.
    pub fn load(name_or_path: &str) -> Result<Self, TestnetError> {
        let text = match SCENARIOS.iter().find(|(n, _)| *n == name_or_path) {
            Some((_, t)) => t.to_string(),
            None => std::fs::read_to_string(name_or_path).map_err(|e| {
                TestnetError::Options(format!(
                    "--scenario {name_or_path}: not a built-in scenario ({}) nor a readable file: {e}",
                    SCENARIOS.map(|(n, _)| n).join(", ")
                ))
            })?,
        };
        toml::from_str(&text).map_err(|e| TestnetError::Options(format!("--scenario {name_or_path}: {e}")))
    }
}

/// Seconds as a duration: `None` when negative, not finite or too large.
fn duration_of(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

/// Seconds as a duration, for scenario times.
fn secs(what: &str, v: f64) -> Result<Duration, TestnetError> {
    duration_of(v).ok_or_else(|| TestnetError::Options(format!("scenario {what}: {v} is not a number of seconds >= 0")))
}

impl TestnetArgs {
    /// Applies `--scenario` (if given) to every setting not given on the command line
    /// (`explicit(field)` says which were).
    pub fn with_scenario(mut self, explicit: &dyn Fn(&str) -> bool) -> Result<Self, TestnetError> {
        let Some(name) = self.scenario.clone() else { return Ok(self) };
        let sc = Scenario::load(&name)?;
        macro_rules! take {
            ($($field:ident),*) => {$(
                if let Some(v) = sc.$field.clone() && !explicit(stringify!($field)) {
                    self.$field = v;
                }
            )*};
        }
        take!(
            nodes,
            verifiers,
            cheaters,
            poisoners,
            duration,
            epoch_secs,
            heartbeat_ms,
            render_size,
            render_spp,
            job_at
        );
        take!(fl_rounds, fl_aggregator, gov_change, loss, slow, slow_ms, in_process, attack);
        take!(infer_rows, infer_cheaters, fl_copiers, fl_scaffold);
        take!(slow_factor, render_compare, render_makespan, owner_restart);
        if sc.fl_dp_epsilon.is_some() && !explicit("fl_dp_epsilon") {
            self.fl_dp_epsilon = sc.fl_dp_epsilon;
        }
        if sc.topology.is_some() && !explicit("topology") {
            self.net_topology = sc.topology.clone();
        }
        if !sc.kill.is_empty() && !explicit("kills") {
            self.kills =
                sc.kill.iter().map(|k| Ok(Kill { node: k.node, at: secs("kill", k.at)? })).collect::<Result<_, _>>()?;
        }
        if !sc.restart.is_empty() && !explicit("restarts") {
            self.restarts = sc
                .restart
                .iter()
                .map(|k| Ok(Kill { node: k.node, at: secs("restart", k.at)? }))
                .collect::<Result<_, _>>()?;
        }
        if !sc.partition.is_empty() && !explicit("partitions") {
            self.partitions = sc
                .partition
                .iter()
                .map(|p| {
                    Ok(Partition {
                        group: p.group.clone(),
                        from: secs("partition", p.from)?,
                        to: secs("partition", p.to)?,
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(self)
    }
}

/// Why a testnet could not run at all (a network that ran but failed gives a report instead).
#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    #[error("invalid option: {0}")]
    Options(String),
    #[error("{0}")]
    Io(String),
    #[error("node {index} failed to start: {reason}")]
    Start { index: usize, reason: String },
    /// A step of the run (a request to a node) failed.
    #[error("{0}")]
    Run(String),
    /// An in-process host could not start a node.
    #[error("{0}")]
    Host(String),
}

impl TestnetError {
    /// A bad option, saying which and why.
    pub fn options(why: impl Into<String>) -> Self {
        TestnetError::Options(why.into())
    }

    /// A failed step of the run.
    pub fn run(why: impl Into<String>) -> Self {
        TestnetError::Run(why.into())
    }
}

impl TestnetArgs {
    fn check(&self) -> Result<(), TestnetError> {
        let bad = |m: String| Err(TestnetError::Options(m));
        if self.nodes < 2 {
            return bad(format!("--nodes {} must be at least 2", self.nodes));
        }
        let most = if self.in_process { 256 } else { 64 };
        if self.nodes > most {
            return bad(format!(
                "--nodes {} is more than this launcher supports ({most}; 256 with --in-process)",
                self.nodes
            ));
        }
        if self.cheaters > 0 && self.cheaters + 1 > self.nodes - self.verifiers {
            return bad(format!("--cheaters {} leaves no honest worker besides node 0", self.cheaters));
        }
        let workers = self.nodes.saturating_sub(self.verifiers + 1);
        // Inference cheaters are the workers after the PoR cheaters (who serve inference
        // honestly); at least one worker must serve it honestly.
        if self.infer_cheaters > 0 && (self.cheaters + self.infer_cheaters > workers || self.infer_cheaters >= workers)
        {
            return bad(format!(
                "--infer-cheaters {} after {} PoR cheaters: there are {workers} workers besides node 0, and one must serve inference honestly",
                self.infer_cheaters, self.cheaters
            ));
        }
        if self.infer_cheaters > 0 && self.infer_rows == 0 {
            return bad("--infer-cheaters needs an inference job (--infer-rows > 0)".into());
        }
        if self.poisoners > 0 && self.poisoners >= workers {
            return bad(format!("--poisoners {} leaves no honest federated worker among {workers}", self.poisoners));
        }
        let scaffold = ifx_protocols::fl::wire::TaskSpec { scaffold: self.fl_scaffold, ..Default::default() };
        scaffold.validate().map_err(|e| TestnetError::Options(format!("--fl-scaffold: {e}")))?;
        if let Some(e) = self.fl_dp_epsilon {
            let dp = ifx_protocols::fl::dp::DpSpec {
                epsilon: e,
                delta: ifx_protocols::fl::dp::DEFAULT_DELTA,
                clip: ifx_protocols::fl::dp::DEFAULT_CLIP,
            };
            dp.validate().map_err(|err| TestnetError::Options(format!("--fl-dp-epsilon: {err}")))?;
            if self.poisoners > 0 {
                return bad("--fl-dp-epsilon with --poisoners: a private task aggregates with fedavg, which screens out no poisoner".into());
            }
        }
        if self.fl_copiers > 0 && self.poisoners + self.fl_copiers + 2 > workers {
            return bad(format!(
                "--fl-copiers {} with {} poisoners among {workers} workers leaves fewer than two unique shards",
                self.fl_copiers, self.poisoners
            ));
        }
        if self.fl_rounds > 0
            && let Some(d) = &self.fl_data
            && !d.is_file()
        {
            return bad(format!("--fl-data {}: no such file", d.display()));
        }
        if self.verifiers >= self.nodes {
            return bad(format!("--verifiers {} must be fewer than --nodes {}", self.verifiers, self.nodes));
        }
        if self.epoch_secs == 0 || self.epoch_secs * 1000 < self.heartbeat_ms {
            return bad(format!("--epoch-secs {} must be at least one heartbeat interval", self.epoch_secs));
        }
        if self.duration == 0 || self.duration > 24 * 3600 {
            return bad(format!("--duration {} must be between 1 and 86400 seconds", self.duration));
        }
        self.gov()?;
        if self.loss > 100 {
            return bad(format!("--loss {} must be a percentage (0-100)", self.loss));
        }
        if let Some(i) = self.slow.iter().find(|i| **i >= self.nodes) {
            return bad(format!("--slow {i}: node index must be below {}", self.nodes));
        }
        if self.in_process && !self.slow.is_empty() {
            return bad("--slow cannot be used with --in-process (the slow-work fault is process-wide)".into());
        }
        let attacks = self.attacks()?;
        if !attacks.is_empty() && self.in_process {
            return bad("--attack runs attacker processes on TCP; it cannot be used with --in-process".into());
        }
        if !attacks.is_empty() && self.duration < 20 {
            return bad(format!("--attack needs --duration of at least 20 seconds (got {})", self.duration));
        }
        if self.slow_ms > 60_000 {
            return bad(format!("--slow-ms {} must be at most 60000", self.slow_ms));
        }
        if let Some(p) = &self.render_scene
            && (self.render_size == 0 || !p.is_file())
        {
            return bad(format!(
                "--render-scene {} needs a render job (--render-size > 0) and a scene file",
                p.display()
            ));
        }
        if self.render_frames.is_some() && self.render_size == 0 {
            return bad("--render-frames needs a render job (--render-size > 0)".into());
        }
        if let Some((first, last)) = self.render_frames {
            ifx_protocols::render::job::Frames { first, last, fps: self.render_fps }.validate().map_err(|e| {
                TestnetError::Options(format!("--render-frames {first}..{last} --render-fps {}: {e}", self.render_fps))
            })?;
        }
        if self.owner_restart && (self.render_size == 0 || self.in_process) {
            return bad(
                "--owner-restart needs a render job (--render-size > 0) and node processes (not --in-process)".into()
            );
        }
        if !(1..=100).contains(&self.slow_factor) {
            return bad(format!("--slow-factor {} must be between 1 and 100", self.slow_factor));
        }
        if !(self.render_makespan == 0.0 || (1.0..=100.0).contains(&self.render_makespan)) {
            return bad(format!(
                "--render-makespan {} must be 0 (not judged) or between 1 and 100",
                self.render_makespan
            ));
        }
        for r in &self.restarts {
            if !self.kills.iter().any(|k| k.node == r.node && k.at < r.at) {
                return bad(format!(
                    "--restart {}@{:?}: node {} is not killed before then (add --kill)",
                    r.node, r.at, r.node
                ));
            }
            if r.at.as_secs() >= self.duration {
                return bad(format!(
                    "--restart {}@{:?}: must happen before --duration {}",
                    r.node, r.at, self.duration
                ));
            }
        }
        for p in &self.partitions {
            if p.group.iter().any(|i| *i >= self.nodes) || p.group.len() >= self.nodes {
                return bad(format!(
                    "--partition {:?}: node indices must be below {} and leave nodes on the other side",
                    p.group, self.nodes
                ));
            }
            if p.to.as_secs() >= self.duration {
                return bad(format!("--partition ..@..-{:?}: must heal before --duration {}", p.to, self.duration));
            }
        }
        for k in &self.kills {
            if k.node == 0 || k.node >= self.nodes {
                return bad(format!(
                    "--kill {}@..: node index must be between 1 and {} (node 0 is the bootnode)",
                    k.node,
                    self.nodes - 1
                ));
            }
            if k.at.as_secs() >= self.duration {
                return bad(format!("--kill {}@{:?}: must happen before --duration {}", k.node, k.at, self.duration));
            }
        }
        Ok(())
    }
}

impl TestnetArgs {
    /// The `--gov-change` parameter and value, if any.
    pub fn gov(&self) -> Result<Option<(String, u64)>, TestnetError> {
        if self.gov_change == "none" {
            return Ok(None);
        }
        let bad = || {
            TestnetError::options(format!(
                "--gov-change {:?}: expected PARAM=VALUE (e.g. workers_bps=7000) or none",
                self.gov_change
            ))
        };
        let (k, v) = self.gov_change.split_once('=').ok_or_else(bad)?;
        let v: u64 = v.trim().parse().map_err(|_| bad())?;
        ifx_protocols::settle::EconParams::default()
            .with(k.trim(), v)
            .map_err(|e| TestnetError::options(format!("--gov-change: {e}")))?;
        Ok(Some((k.trim().to_owned(), v)))
    }
}

/// Set once SIGINT arrived: the run stops at its next poll and tears down as usual (nodes
/// stopped, namespaces removed), even if the signal came while the nodes were starting.
pub(crate) static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Catches SIGINT for the whole run (from then on it no longer kills the harness outright).
fn catch_interrupt() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tokio::spawn(async {
            while tokio::signal::ctrl_c().await.is_ok() {
                INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
    });
}

/// Runs a testnet of `binary` (the `ifx` executable), writes the report and returns it.
pub async fn run(binary: PathBuf, args: TestnetArgs) -> Result<Report, TestnetError> {
    run_with(binary, args, None).await
}

/// [`run`], with `host` starting the nodes in this process when `--in-process` is given.
pub async fn run_with(
    binary: PathBuf,
    args: TestnetArgs,
    host: Option<std::sync::Arc<dyn Host>>,
) -> Result<Report, TestnetError> {
    let mut args = args;
    args.check()?;
    catch_interrupt();
    let attacks = args.attacks()?;
    // With attacks, first the same run without them: what the victims are compared with.
    let base = args.base_dir.get_or_insert_with(default_base_dir).clone();
    let baseline_nodes: Option<(String, Vec<BaselineNode>, serde_json::Value)> = match &args.baseline_report {
        Some(path) if !attacks.is_empty() => {
            let (nodes, json) = BaselineNode::read(path)?;
            Some((path.display().to_string(), nodes, json))
        }
        _ => None,
    };
    let baseline = if !attacks.is_empty() && !args.no_baseline && baseline_nodes.is_none() {
        let mut b = args.clone();
        b.attack.clear();
        b.base_dir = Some(base.join("baseline"));
        b.report = Some(base.join("baseline").join("report.json"));
        println!("baseline: the same run without attacks, in {}", base.join("baseline").display());
        Some(Box::pin(run_with(binary.clone(), b, host.clone())).await?)
    } else {
        None
    };
    if let Some(path) = &args.topology {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TestnetError::options(format!("--topology {}: {e}", path.display())))?;
        args.net_topology = Some(
            toml::from_str(&text).map_err(|e| TestnetError::options(format!("--topology {}: {e}", path.display())))?,
        );
    }
    // Checked (and the machine's privilege with it) before any node directory is touched.
    let namespaces = match &args.net_topology {
        Some(t) => {
            if args.in_process || !attacks.is_empty() {
                return Err(TestnetError::options(
                    "a topology of network namespaces runs node processes without attacks (drop --in-process and --attack)",
                ));
            }
            Some(netns::Netns::create(t, args.nodes)?)
        }
        None => None,
    };
    let mut net = launch::Testnet::prepare(binary.clone(), &args)?;
    if let Some(ns) = namespaces {
        println!("network namespaces: {} ({} nodes)", ns.tag(), ns.placements.len());
        net.in_namespaces(ns);
    }
    net.cap_loopback(attacks.contains(&attacks::Attack::Eclipse).then(|| attacks::victim(&args)));
    if args.in_process {
        let host =
            host.ok_or_else(|| TestnetError::Options("--in-process: this build cannot start nodes in process".into()))?;
        net.in_process(host);
    }
    let victim = attacks::victim(&args);
    let result = async {
        net.launch_all().await?;
        let attackers = if attacks.is_empty() { None } else { Some(attacks::Attackers::launch(&net, &binary, &args)?) };
        let api = match attacks.contains(&attacks::Attack::ApiRebind) {
            true => Some(attacks::api_rebind(&net, victim).await),
            false => None,
        };
        let outcome = watch::watch(&mut net, &args).await;
        let peers = match attackers {
            Some(a) => a.finish(Duration::from_secs(20)).await,
            None => Vec::new(),
        };
        Ok::<_, TestnetError>((outcome, peers, api))
    }
    .await;
    let (outcome, attackers, api) = match result {
        Ok(r) => r,
        Err(e) => {
            net.stop_all().await;
            return Err(e);
        }
    };
    let outcome = watch::settle(&mut net, &args, outcome).await;
    // The render certificate, while the nodes still run (issue #18 item 7).
    let done_job =
        outcome.job.as_ref().and_then(|t| t.last.clone()).filter(|j| j.state == ifx_protocols::api::RunState::Done);
    let certificate = match done_job.and_then(|j| Some((j.png.clone()?, j))) {
        Some((png, j)) if !outcome.interrupted => {
            let v = certify::Verifier::of(&net);
            // Its last receipts are sealed once their epoch ends and the seal grace passes.
            let grace =
                ifx_protocols::NetworkConfig { epoch_secs: args.epoch_secs, ..Default::default() }.seal_grace_ms();
            let wait = Duration::from_millis(2 * args.epoch_secs * 1000 + grace) + Duration::from_secs(5);
            // A sequence's last frame written is the image checked (`png`).
            let frame = j.frames_saved.last().map(|r| r[1]).unwrap_or(j.spec.frames.first);
            let tiles = j.spec.tiles_per_frame() as usize;
            tokio::task::spawn_blocking(move || {
                v.certify(&j.job_id, std::path::Path::new(&png), frame, j.spec.tile, j.spec.width, tiles, wait)
            })
            .await
            .ok()
        }
        _ => None,
    };
    let reach = if outcome.interrupted { None } else { probe::probe_reachability(&net).await };
    let per_node_latency = watch::collect_latency_per_node(&net).await;
    let latency: Vec<u64> = per_node_latency.iter().flatten().flatten().copied().collect();
    let usage = net.usage();
    let memory = report::MemoryReport {
        in_process: args.in_process,
        harness_peak_rss_mb: launch::status_kb("/proc/self/status", "VmHWM:") as f64 / 1024.0,
        node_processes_rss_mb: net.nodes_rss_mb(),
    };
    let stops = net.stop_all().await;
    let timeline = outcome.timeline.clone();
    let accounts = outcome.rewards.first().map(|(_, r)| r.accounts.clone()).unwrap_or_default();
    let mut report = Report::build(&net, &args, outcome, latency.clone(), stops);
    report.memory = memory;
    if let Some(c) = certificate {
        report.failures.extend(c.failures());
        report.ok = report.failures.is_empty();
        report.certificate = Some(c);
    }
    if let Some(mut r) = reach {
        for n in report.nodes.iter().filter(|n| n.role == "worker" && n.index > 0) {
            let p = &n.peer_id;
            r.work.push(report::reach::WorkerWork {
                index: n.index,
                placement: r.nodes.get(n.index).map(|x| x.placement.clone()).unwrap_or_default(),
                tiles: report.render.as_ref().and_then(|x| x.tiles_by_worker.get(p).copied()).unwrap_or(0),
                challenges_passed: report.por.per_node.get(p).map_or(0, |t| t.passed),
                earned: report.settlement.payouts.get(p).copied().unwrap_or(0),
            });
        }
        let slow = report.render.as_ref().map(|x| x.slow_links.clone()).unwrap_or_default();
        for a in &mut r.attested {
            a.one_at_a_time = slow.contains_key(&report.nodes[a.index].peer_id);
        }
        report.failures.extend(r.failures());
        report.ok = report.failures.is_empty();
        report.reachability = Some(r);
    }
    for (n, (u, l)) in report.nodes.iter_mut().zip(usage.iter().zip(&per_node_latency)) {
        n.peak_rss_mb = u.map(|u| u.0);
        n.cpu_secs = u.map(|u| u.1);
        n.heartbeat_p99_ms = l.as_deref().and_then(|l| LatencyMs::from_samples_us(l).p99);
    }
    if !attacks.is_empty() {
        use report::attacks as ra;
        let (baseline_path, base_nodes, base_json) = match (baseline_nodes, &baseline) {
            (Some(b), _) => (Some(b.0), b.1, Some(b.2)),
            (None, Some(b)) => (
                Some(base.join("baseline").join("report.json").display().to_string()),
                b.nodes
                    .iter()
                    .map(|n| BaselineNode {
                        peak_rss_mb: n.peak_rss_mb,
                        cpu_secs: n.cpu_secs,
                        heartbeat_p99_ms: n.heartbeat_p99_ms,
                    })
                    .collect(),
                serde_json::to_value(b).ok(),
            ),
            (None, None) => (None, Vec::new(), None),
        };
        let honest_payout =
            ra::HonestPayout::compare(&serde_json::to_value(&report).unwrap_or_default(), base_json.as_ref());
        let nodes = report
            .nodes
            .iter()
            .map(|n| {
                let b = base_nodes.get(n.index);
                ra::NodeUnderAttack {
                    index: n.index,
                    role: n.role,
                    alive: n.alive,
                    peak_rss_mb: n.peak_rss_mb,
                    baseline_peak_rss_mb: b.and_then(|b| b.peak_rss_mb),
                    cpu_secs: n.cpu_secs,
                    baseline_cpu_secs: b.and_then(|b| b.cpu_secs),
                    heartbeat_p99_ms: n.heartbeat_p99_ms,
                    baseline_heartbeat_p99_ms: b.and_then(|b| b.heartbeat_p99_ms),
                    p99_floor_ms: (args.heartbeat_ms / ra::P99_FLOOR_SHARE) as f64,
                }
            })
            .collect();
        let logs: Vec<PathBuf> = net.nodes.iter().map(|n| n.log.clone()).collect();
        let honest: Vec<String> = net
            .nodes
            .iter()
            .filter(|n| n.index > 0 && n.role == "worker" && n.cheat.is_none() && n.poison.is_none())
            .map(|n| n.public_key.clone())
            .collect();
        let economics = attacks
            .iter()
            .filter_map(|a| net.attacker_keys.get(a.name()).map(|k| ra::AttackerNet::of(*a, k, &accounts, &honest)))
            .collect();
        let section = ra::AttacksSection {
            economics,
            honest_payout,
            victim,
            attacks: ra::lines(attackers, api),
            baseline: baseline_path,
            nodes,
            panics: ra::panics_in(&logs, 20),
            memory_ratio_limit: ra::MEMORY_RATIO,
            p99_ratio_limit: ra::P99_RATIO,
        };
        report.failures.extend(section.failures());
        report.ok = report.failures.is_empty();
        report.attacks = Some(section);
    }
    let path = args.report.clone().unwrap_or_else(|| net.base_dir.join("report.json"));
    let page = path.with_extension("html");
    match html::write(&report, &latency, &timeline, &page) {
        Ok(()) => report.html = Some(page.display().to_string()),
        Err(e) => tracing::warn!(error = %e, path = %page.display(), "cannot write the HTML report"),
    }
    let json = serde_json::to_string_pretty(&report).expect("report is plain data");
    std::fs::write(&path, json + "\n")
        .map_err(|e| TestnetError::Io(format!("cannot write the report to {}: {e}", path.display())))?;
    report.print_summary(&path);
    Ok(report)
}

/// A node of a baseline report: what an attack run compares with.
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct BaselineNode {
    peak_rss_mb: Option<f64>,
    cpu_secs: Option<f64>,
    heartbeat_p99_ms: Option<f64>,
}

impl BaselineNode {
    /// The nodes of a report written by an earlier run, and the whole report.
    fn read(path: &std::path::Path) -> Result<(Vec<Self>, serde_json::Value), TestnetError> {
        #[derive(serde::Deserialize)]
        struct Only {
            nodes: Vec<BaselineNode>,
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| TestnetError::options(format!("--baseline-report {}: {e}", path.display())))?;
        let bad = |e: serde_json::Error| {
            TestnetError::options(format!("--baseline-report {}: not a testnet report: {e}", path.display()))
        };
        let json: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
        let r: Only = serde_json::from_value(json.clone()).map_err(bad)?;
        Ok((r.nodes, json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_scenarios_parse_and_pass_the_checks() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: TestnetArgs,
        }
        for (name, _) in SCENARIOS {
            let args = Cli::parse_from(["testnet", "--scenario", name]).args;
            let args = args.with_scenario(&|_| false).unwrap();
            args.check().unwrap();
            if name == "chaos" {
                assert_eq!((args.kills.len(), args.restarts.len(), args.partitions.len(), args.loss), (1, 1, 1, 2));
            }
            if name.starts_with("scale") {
                assert_eq!((args.nodes, args.verifiers, args.in_process), (100, 3, true));
            }
            if name == "scale-byzantine" {
                assert_eq!((args.cheaters, args.duration), (3, 150));
            }
        }
        // A flag given on the command line wins over the scenario.
        let args = Cli::parse_from(["testnet", "--scenario", "smoke", "--nodes", "9"]).args;
        let args = args.with_scenario(&|id| id == "nodes").unwrap();
        assert_eq!((args.nodes, args.duration), (9, 20));
        assert!("4,5@3-1".parse::<Partition>().is_err());
        assert!("4,5@1-1e300".parse::<Partition>().is_err());
        assert_eq!("4, 5@3-7".parse::<Partition>().unwrap().group, vec![4, 5]);
    }

    #[test]
    fn kill_specs_parse_or_explain() {
        assert_eq!("3@8".parse::<Kill>().unwrap(), Kill { node: 3, at: Duration::from_secs(8) });
        assert_eq!("1@0.5".parse::<Kill>().unwrap().at, Duration::from_millis(500));
        for bad in ["3", "x@1", "3@y", "3@-1", "3@inf", "3@1e300"] {
            assert!(bad.parse::<Kill>().is_err(), "{bad}");
        }
    }
}
