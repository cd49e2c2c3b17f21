//! `ifx testnet --attack NAME`: hostile peers in the run (issue #16). Each peer attack is an
//! `ifx attack` process (built from the node's own crates) joined to the network; `api-rebind`
//! is the harness itself calling a victim's local API as a web page or a local user would.
//! The report's `attacks` section says what was sent and compares the victims with the same
//! run without attacks (the baseline the harness runs first).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Child;

use crate::launch::Testnet;
use crate::{TestnetArgs, TestnetError};

/// The attacks, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// Signed heartbeats at seq u64::MAX and u64::MAX - 1, random seqs, garbage.
    HbOverflow,
    /// PoR challenges, heavy challenges and openings of unknown ones, without pause.
    ChallengeFlood,
    /// Huge and overflowing tiles, benchmarks, FL train requests for tasks never joined.
    WorkFlood,
    /// One key signing thousands of siblings at one seq, each with a child.
    ForkBomb,
    /// Thousands of fresh keys writing entries.
    AuthorFlood,
    /// Sync requests with the largest budget, sync requests never answered.
    SyncStall,
    /// 64 peer ids from one host against one victim.
    Eclipse,
    /// The victim's local API from a foreign Host and Origin, and without the token.
    ApiRebind,
    /// A funded throwaway key writing receipts that name the victim with u64::MAX units (no
    /// payment, a tile past its small paid job, the same tile again).
    ForgedReceipt,
    /// 1,000 fresh keys writing a payment and a receipt each in one epoch.
    SealSpam,
    /// A staked worker online for a moment every other epoch, with a burst of heartbeats.
    HeartbeatBurst,
    /// A staked worker that heartbeats like an honest one and never answers a challenge.
    TimeoutDodge,
    /// A real, honest worker node whose owner pays for jobs from a second funded key and
    /// receipts its own worker for them, every epoch, at the network's price.
    SelfDeal,
    /// A bonded verifier that never challenges anyone and writes, every epoch, the verdict the
    /// quorum will reach on the victim (passed), to be paid for agreeing.
    VerifierCopy,
    /// A staked worker node that answers PoR honestly but renders job tiles at a sixty-fourth
    /// of the samples and signs them as the job's (saving the work it is paid for).
    FakeJobTile,
}

/// Where a self-dealer keeps its second key, under its data dir.
pub const SECOND_KEY_DIR: &str = "second-key";

/// Every attack, in the order `all` runs them.
pub const ALL: [Attack; 15] = [
    Attack::HbOverflow,
    Attack::ChallengeFlood,
    Attack::WorkFlood,
    Attack::ForkBomb,
    Attack::AuthorFlood,
    Attack::SyncStall,
    Attack::Eclipse,
    Attack::ApiRebind,
    Attack::ForgedReceipt,
    Attack::SealSpam,
    Attack::HeartbeatBurst,
    Attack::TimeoutDodge,
    Attack::SelfDeal,
    Attack::VerifierCopy,
    Attack::FakeJobTile,
];

impl Attack {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Attack::HbOverflow => "hb-overflow",
            Attack::ChallengeFlood => "challenge-flood",
            Attack::WorkFlood => "work-flood",
            Attack::ForkBomb => "fork-bomb",
            Attack::AuthorFlood => "author-flood",
            Attack::SyncStall => "sync-stall",
            Attack::Eclipse => "eclipse",
            Attack::ApiRebind => "api-rebind",
            Attack::ForgedReceipt => "forged-receipt",
            Attack::SealSpam => "seal-spam",
            Attack::HeartbeatBurst => "heartbeat-burst",
            Attack::TimeoutDodge => "timeout-dodge",
            Attack::SelfDeal => "self-deal",
            Attack::VerifierCopy => "verifier-copy",
            Attack::FakeJobTile => "fake-job-tile",
        }
    }

    /// The genesis allocations the attacker's keys get (issue #21's attackers have money to
    /// game with): `(sub-directory of its data dir, role, stake IFX, liquid IFX)`; the first is
    /// its own key. Workers get what honest workers get.
    pub fn funding(self) -> Vec<(&'static str, &'static str, u64, u64)> {
        match self {
            Attack::ForgedReceipt => vec![("", "worker", 0, 1_000_000)],
            Attack::HeartbeatBurst | Attack::TimeoutDodge | Attack::FakeJobTile => vec![("", "worker", 1_000, 100)],
            // The node, and the second key that pays its jobs (as much as the run's artist).
            Attack::SelfDeal => vec![("", "worker", 1_000, 100), (SECOND_KEY_DIR, "worker", 0, 10_000_000)],
            // The minimum verifier stake: the honest verifiers' seals still hold 2/3 of it all.
            Attack::VerifierCopy => vec![("", "verifier", 1_000, 0)],
            _ => Vec::new(),
        }
    }

    /// Whether the attacker's net (earned - burned - slashed) must be at most zero, rather than
    /// below an honest worker's.
    pub fn must_not_profit(self) -> bool {
        matches!(self, Attack::ForgedReceipt | Attack::SealSpam | Attack::VerifierCopy)
    }

    /// Whether settlement must slash the attacker (its cheat leaves evidence: `fake-job-tile`);
    /// the report then counts it with the cheaters, not the honest.
    pub fn must_be_slashed(self) -> bool {
        self == Attack::FakeJobTile
    }

    /// The attacker's data dir under the run's base dir.
    pub fn dir(self, base: &std::path::Path) -> PathBuf {
        base.join(format!("attacker-{}", self.name()))
    }

    /// Whether a peer process runs it (all but `api-rebind`).
    pub fn is_peer(self) -> bool {
        self != Attack::ApiRebind
    }

    /// `NAME` or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<Attack>, TestnetError> {
        if s == "all" {
            return Ok(ALL.to_vec());
        }
        s.parse().map(|a| vec![a])
    }
}

impl std::str::FromStr for Attack {
    type Err = TestnetError;
    fn from_str(s: &str) -> Result<Self, TestnetError> {
        ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            TestnetError::options(format!("--attack {s:?}: one of {} or all", ALL.map(Attack::name).join(", ")))
        })
    }
}

/// The node the targeted attacks aim at: the first honest worker (not node 0, which owns the
/// job and the task, not a cheater or a poisoner, not a verifier).
pub fn victim(args: &TestnetArgs) -> usize {
    (args.cheaters + 1).min(args.nodes - args.verifiers - 1).max(1)
}

/// What one attacker process reported (`ifx attack --stats`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct AttackerStats {
    pub attack: String,
    pub sent: u64,
    #[serde(default)]
    pub answers: std::collections::BTreeMap<String, u64>,
    pub failed: u64,
    pub stalled: u64,
    pub connected_at_end: u64,
    pub seconds: f64,
}

/// The running attackers of a run.
#[derive(Default)]
pub struct Attackers {
    procs: Vec<(Attack, Child, PathBuf)>,
}

impl Attackers {
    /// Starts one `ifx attack` process per peer attack, each until a few seconds before the
    /// run ends.
    pub fn launch(net: &Testnet, binary: &std::path::Path, args: &TestnetArgs) -> Result<Self, TestnetError> {
        let mut out = Attackers::default();
        let v = victim(args);
        let target = net.nodes[v]
            .listen_addr
            .clone()
            .map(|a| format!("{a}/p2p/{}", net.nodes[v].peer_id))
            .ok_or_else(|| TestnetError::run(format!("the victim (node {v}) has no TCP address to attack")))?;
        let bootnode = net.bootnode().ok_or_else(|| TestnetError::run("no bootnode to join through"))?;
        let secs = (args.duration as f64 - net.elapsed() - 3.0).max(3.0);
        for a in args.attacks()?.into_iter().filter(|a| a.is_peer()) {
            let dir = a.dir(&net.base_dir);
            std::fs::create_dir_all(&dir).map_err(|e| TestnetError::Io(format!("{}: {e}", dir.display())))?;
            let stats = dir.join("stats.json");
            let log = std::fs::File::create(dir.join("attacker.log"))
                .map_err(|e| TestnetError::Io(format!("{}: {e}", dir.display())))?;
            let log2 = log.try_clone().map_err(|e| TestnetError::Io(e.to_string()))?;
            // At the lowest priority: on a real network the attacker brings its own machine;
            // here it shares the nodes' cores, and what is measured is the nodes' defence, not
            // who gets the CPU first.
            let child = tokio::process::Command::new("nice")
                .args(["-n", "19"])
                .arg(binary)
                .arg("attack")
                .args(["--attack", a.name()])
                .arg("--config")
                .arg(net.config_path())
                .arg("--data-dir")
                .arg(&dir)
                .args(["--bootnode", &bootnode, "--target", &target])
                .args(["--duration", &format!("{secs:.1}")])
                .arg("--stats")
                .arg(&stats)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| TestnetError::run(format!("cannot start the {} attacker: {e}", a.name())))?;
            out.procs.push((a, child, stats));
        }
        Ok(out)
    }

    /// Waits for every attacker to finish (at most `wait`) and reads what each reported; an
    /// attacker that wrote nothing is reported with its exit.
    pub async fn finish(self, wait: Duration) -> Vec<(Attack, Result<AttackerStats, String>)> {
        let mut out = Vec::new();
        for (a, mut child, stats) in self.procs {
            let exit = match tokio::time::timeout(wait, child.wait()).await {
                Ok(Ok(s)) => s.to_string(),
                _ => {
                    let _ = child.kill().await;
                    "killed after its time".into()
                }
            };
            let read = std::fs::read_to_string(&stats)
                .map_err(|e| format!("no stats ({exit}): {e}"))
                .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("unreadable stats: {e}")));
            out.push((a, read));
        }
        out
    }
}

/// Every write endpoint of the node API with a body it would accept (`someone`: a peer id to
/// block), for the tests and `api-rebind` alike.
pub fn write_endpoints(someone: &str) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("jobs", serde_json::json!({ "scene": "cornell", "width": 16, "height": 16, "spp": 1, "tile": 16 })),
        ("fl", serde_json::json!({ "rounds": 1 })),
        ("net/block", serde_json::json!({ "peers": [someone] })),
        ("net/unblock", serde_json::json!({ "peers": [someone] })),
        ("stake", serde_json::json!({ "op": "unbond", "amount": 1 })),
        ("gov/proposals", serde_json::json!({ "param": "workers_bps", "value": 7000, "from_epoch": 99 })),
        ("gov/votes", serde_json::json!({ "proposal": "01".repeat(32), "yes": true })),
        ("pause", serde_json::json!({ "reason": "a stranger's" })),
        ("resume", serde_json::json!({})),
        ("jobs/00112233445566778899aabbccddeeff/cancel", serde_json::json!({})),
        ("assets", serde_json::json!({ "a": "stranger's file" })),
    ]
}

/// `api-rebind`: every write endpoint of the victim's API, as a web page that rebound DNS
/// (foreign Host and Origin, no token) and as a local user without the token. Returns the
/// requests made and those the API accepted (any 2xx is a failure).
pub async fn api_rebind(net: &Testnet, victim: usize) -> (u64, Vec<String>) {
    let Some(api) = net.nodes[victim].api else { return (0, vec!["the victim has no API address".into()]) };
    let writes = write_endpoints("12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN");
    let (mut tried, mut accepted) = (0, Vec::new());
    for (path, body) in &writes {
        let url = format!("http://{api}/{path}");
        let ways = [
            ("rebound", net.client.post(&url).header("host", "evil.example").header("origin", "http://evil.example")),
            ("no token", net.client.post(&url)),
            ("wrong token", net.client.post(&url).bearer_auth("0".repeat(64))),
        ];
        for (how, req) in ways {
            tried += 1;
            if let Ok(r) = req.json(body).send().await
                && r.status().is_success()
            {
                accepted.push(format!("POST /{path} ({how}) answered {}", r.status()));
            }
        }
    }
    (tried, accepted)
}
