//! The `attacks` section: what each hostile peer sent and how it was answered, and every node
//! of the run against the same node of the baseline run (the same settings, no attacks).
//! Whether honest nodes were failed or slashed, lost entries, or epochs went unsealed is what
//! the other sections already judge; this one adds panics, the API, memory and heartbeats.

use serde::Serialize;

use crate::attacks::{Attack, AttackerStats};

/// A victim's peak memory may grow this much over the baseline (issue #16).
pub const MEMORY_RATIO: f64 = 1.5;
/// Its heartbeat delay p99 this much.
pub const P99_RATIO: f64 = 3.0;
/// Heartbeat p99s below a fifth of the heartbeat interval count as that for the ratio: a delay
/// shorter than that changes nothing a verifier attests (heartbeats are counted per epoch),
/// and at tens of ms a 3x ratio is a stall of the 2-core machine, not an attack's effect (one
/// 0.6 s stall of an idle verifier once made a p99 of 580 ms against 18).
pub const P99_FLOOR_SHARE: u64 = 5;

/// One attack of the run.
#[derive(Debug, Serialize)]
pub struct AttackLine {
    pub attack: &'static str,
    /// What the attacker process reported (peer attacks).
    pub stats: Option<AttackerStats>,
    /// Why it reported nothing.
    pub error: Option<String>,
    /// `api-rebind`: requests made, and those the API accepted (must be none).
    pub api_requests: u64,
    pub api_accepted: Vec<String>,
}

/// One node under attack against itself in the baseline.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct NodeUnderAttack {
    pub index: usize,
    pub role: &'static str,
    pub alive: bool,
    pub peak_rss_mb: Option<f64>,
    pub baseline_peak_rss_mb: Option<f64>,
    pub cpu_secs: Option<f64>,
    pub baseline_cpu_secs: Option<f64>,
    pub heartbeat_p99_ms: Option<f64>,
    pub baseline_heartbeat_p99_ms: Option<f64>,
    /// p99s below this count as this for the ratio (a fifth of the heartbeat interval).
    pub p99_floor_ms: f64,
}

impl NodeUnderAttack {
    /// Peak memory over the baseline's.
    pub fn memory_ratio(&self) -> Option<f64> {
        Some(self.peak_rss_mb? / self.baseline_peak_rss_mb?.max(1.0))
    }

    /// Heartbeat p99 over the baseline's (both floored at `p99_floor_ms`).
    pub fn p99_ratio(&self) -> Option<f64> {
        let floor = self.p99_floor_ms.max(1.0);
        Some(self.heartbeat_p99_ms?.max(floor) / self.baseline_heartbeat_p99_ms?.max(floor))
    }
}

/// The section.
#[derive(Debug, Serialize)]
pub struct AttacksSection {
    /// The node the targeted attacks aimed at.
    pub victim: usize,
    pub attacks: Vec<AttackLine>,
    /// The baseline report compared with (null: run with --no-baseline).
    pub baseline: Option<String>,
    pub nodes: Vec<NodeUnderAttack>,
    /// Lines of node logs that report a panic.
    pub panics: Vec<String>,
    pub memory_ratio_limit: f64,
    pub p99_ratio_limit: f64,
    /// What the attackers with money (issue #21) made, beside an honest worker.
    pub economics: Vec<AttackerNet>,
    /// The honest workers' pay under attack beside the baseline's (issue #21).
    pub honest_payout: HonestPayout,
}

/// Most the honest workers' pay per seat may fall below the baseline's (issue #21: "honest
/// payouts within 10% of the same run without attacks").
pub const HONEST_DROP: f64 = 0.10;

/// What the honest workers were paid in one run against an equal split: their mean earnings
/// (nodes 1.., cheaters left out) times the seats (every payee that is not a verifier node nor
/// node 0, the artist, and earned at least a tenth of that mean, attackers included) over
/// everything the seats were paid, in parts per million. Without a paid attacker it is exactly
/// 1,000,000 whatever the run's noise; an attacker paid like one more worker leaves it there; one
/// paid more than a seat lowers it. It judges theft from honest workers, not disruption: what no
/// seat was paid divides out (a start-up epoch nobody could be paid for happens in runs with and
/// without attacks), and node 0 is left out because its pay (artist rebates, its own tiles) spread
/// +-8% between harmless runs on this machine.
#[derive(Debug, Serialize, Clone, PartialEq, Default)]
pub struct SeatShare {
    pub mean_honest: u64,
    pub seats: usize,
    pub paid_to_seats: u64,
    pub ppm: u64,
}

impl SeatShare {
    /// From a report (as JSON: this run's, or the baseline's file).
    pub fn of(report: &serde_json::Value) -> Option<Self> {
        let s = &report["settlement"];
        let payouts = s["payouts"].as_object()?;
        let cheaters: Vec<&str> = s["cheaters"].as_array()?.iter().filter_map(|c| c.as_str()).collect();
        let nodes = report["nodes"].as_array()?;
        let not_seats: Vec<&str> = nodes
            .iter()
            .filter(|n| n["role"] == "verifier" || n["index"].as_u64() == Some(0))
            .filter_map(|n| n["peer_id"].as_str())
            .collect();
        let honest: Vec<u128> = nodes
            .iter()
            .filter(|n| n["index"].as_u64().is_some_and(|i| i > 0) && n["role"] == "worker")
            .filter_map(|n| n["peer_id"].as_str())
            .filter(|p| !cheaters.contains(p))
            .map(|p| payouts.get(p).and_then(|v| v.as_u64()).unwrap_or(0) as u128)
            .collect();
        if honest.is_empty() {
            return None;
        }
        let mean_honest = honest.iter().sum::<u128>() / honest.len() as u128;
        // A seat earned at least a tenth of an honest worker's mean: an attacker's key that got
        // a few units back as an artist is not one more worker.
        let seats: Vec<u128> = payouts
            .iter()
            .filter(|(p, _)| !not_seats.contains(&p.as_str()))
            .filter_map(|(_, v)| v.as_u64().map(u128::from).filter(|v| *v > 0 && *v * 10 >= mean_honest))
            .collect();
        let paid: u128 = seats.iter().sum();
        if paid == 0 {
            return None;
        }
        let ppm = (mean_honest * seats.len() as u128 * 1_000_000 / paid).min(u64::MAX as u128) as u64;
        Some(Self { mean_honest: mean_honest as u64, seats: seats.len(), paid_to_seats: paid as u64, ppm })
    }
}

/// The honest workers' pay per seat, under attack and in the baseline.
#[derive(Debug, Serialize, Clone, PartialEq, Default)]
pub struct HonestPayout {
    pub baseline: Option<SeatShare>,
    pub under_attack: Option<SeatShare>,
    /// under_attack.ppm / baseline.ppm.
    pub ratio: Option<f64>,
    pub limit_drop: f64,
}

impl HonestPayout {
    /// This run's report against the baseline's.
    pub fn compare(run: &serde_json::Value, baseline: Option<&serde_json::Value>) -> Self {
        let (under_attack, baseline) = (SeatShare::of(run), baseline.and_then(SeatShare::of));
        let ratio = match (&under_attack, &baseline) {
            (Some(a), Some(b)) if b.ppm > 0 => Some(a.ppm as f64 / b.ppm as f64),
            _ => None,
        };
        Self { baseline, under_attack, ratio, limit_drop: HONEST_DROP }
    }

    /// Why the honest workers lost pay to the attacks.
    pub fn failure(&self) -> Option<String> {
        let r = self.ratio.filter(|r| *r < 1.0 - HONEST_DROP)?;
        Some(format!(
            "honest workers were paid {:.1}% less per seat than in the baseline (limit {:.0}%)",
            (1.0 - r) * 100.0,
            HONEST_DROP * 100.0
        ))
    }
}

/// One funded attacker's net as settled on node 0 at the end: what it earned, less what it
/// burned and what was slashed from it, beside the median honest worker's.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct AttackerNet {
    pub attack: &'static str,
    /// Its keys (a self-dealer's worker and its paying second key), their sums below.
    pub keys: Vec<String>,
    pub earned: u64,
    pub burned: u64,
    pub slashed: u64,
    pub net: i128,
    /// The median net of the honest workers (node 0, the artist, left out).
    pub honest_worker_net: i128,
    /// The attacker must not profit at all (forged receipts, seal spam), else only stay below
    /// the honest worker.
    pub must_not_profit: bool,
}

impl AttackerNet {
    /// The line of `attack` (its keys `keys`) from the accounts (hex key -> account) and the
    /// honest workers' keys.
    pub fn of(
        attack: crate::attacks::Attack,
        keys: &[String],
        accounts: &std::collections::BTreeMap<String, ifx_protocols::settle::Account>,
        honest: &[String],
    ) -> Self {
        let net = |k: &str| accounts.get(k).map_or(0, |a| a.earned as i128 - a.burned as i128 - a.slashed as i128);
        let mut h: Vec<i128> = honest.iter().map(|k| net(k)).collect();
        h.sort_unstable();
        let sum = |f: fn(&ifx_protocols::settle::Account) -> u64| {
            keys.iter().filter_map(|k| accounts.get(k)).map(f).fold(0u64, u64::saturating_add)
        };
        AttackerNet {
            attack: attack.name(),
            keys: keys.to_vec(),
            earned: sum(|a| a.earned),
            burned: sum(|a| a.burned),
            slashed: sum(|a| a.slashed),
            net: keys.iter().map(|k| net(k)).sum(),
            honest_worker_net: h.get(h.len().saturating_sub(1) / 2).copied().unwrap_or(0),
            must_not_profit: attack.must_not_profit(),
        }
    }

    /// Why the attack paid.
    pub fn failure(&self) -> Option<String> {
        if self.must_not_profit && self.net > 0 {
            return Some(format!("attack {}: the attacker netted {} units (must be <= 0)", self.attack, self.net));
        }
        // Judged against honest work only once honest workers earned.
        if !self.must_not_profit && self.honest_worker_net > 0 && self.net >= self.honest_worker_net {
            return Some(format!(
                "attack {}: the attacker netted {} units, an honest worker {}",
                self.attack, self.net, self.honest_worker_net
            ));
        }
        None
    }
}

impl AttacksSection {
    /// Why the network did not hold.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self.economics.iter().filter_map(AttackerNet::failure).collect();
        out.extend(self.honest_payout.failure());
        for a in &self.attacks {
            if let Some(e) = &a.error {
                out.push(format!("attack {}: the attacker reported nothing ({e})", a.attack));
            }
            if a.stats.as_ref().is_some_and(|s| s.sent == 0) {
                out.push(format!("attack {}: the attacker sent nothing (the attack did not happen)", a.attack));
            }
            for acc in &a.api_accepted {
                out.push(format!("attack {}: the API accepted {acc}", a.attack));
            }
        }
        if let Some(p) = self.panics.first() {
            out.push(format!("{} panics in node logs, first: {p}", self.panics.len()));
        }
        for n in &self.nodes {
            if let Some(r) = n.memory_ratio().filter(|r| *r > MEMORY_RATIO) {
                out.push(format!(
                    "node {} peaked at {:.0} MiB under attack, {r:.2}x its baseline (limit {MEMORY_RATIO}x)",
                    n.index,
                    n.peak_rss_mb.unwrap_or(0.0)
                ));
            }
            if let Some(r) = n.p99_ratio().filter(|r| *r > P99_RATIO) {
                out.push(format!(
                    "node {}: heartbeat p99 {:.0} ms under attack, {r:.2}x its baseline (limit {P99_RATIO}x)",
                    n.index,
                    n.heartbeat_p99_ms.unwrap_or(0.0)
                ));
            }
        }
        out
    }
}

/// The attack lines from what the attackers and the API attack returned.
pub fn lines(peers: Vec<(Attack, Result<AttackerStats, String>)>, api: Option<(u64, Vec<String>)>) -> Vec<AttackLine> {
    let mut out: Vec<AttackLine> = peers
        .into_iter()
        .map(|(a, r)| {
            let (stats, error) = match r {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e)),
            };
            AttackLine { attack: a.name(), stats, error, api_requests: 0, api_accepted: Vec::new() }
        })
        .collect();
    if let Some((tried, accepted)) = api {
        out.push(AttackLine {
            attack: Attack::ApiRebind.name(),
            stats: None,
            error: None,
            api_requests: tried,
            api_accepted: accepted,
        });
    }
    out
}

/// Log lines that report a panic, at most `max`.
pub fn panics_in(logs: &[std::path::PathBuf], max: usize) -> Vec<String> {
    let mut out = Vec::new();
    for log in logs {
        let Ok(text) = std::fs::read_to_string(log) else { continue };
        for line in text.lines().filter(|l| l.contains("panicked at")) {
            if out.len() < max {
                out.push(format!("{}: {}", log.display(), line.chars().take(300).collect::<String>()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per seat: an attacker paid like one more worker changes nothing; one that takes honest
    /// workers' pay fails the run; what a run paid in all is divided out.
    #[test]
    fn honest_pay_is_judged_per_seat_against_the_baseline() {
        let report = |minted: u64, pay: &[(&str, u64)]| {
            let payouts: serde_json::Map<String, serde_json::Value> =
                pay.iter().map(|(p, v)| (p.to_string(), serde_json::json!(v))).collect();
            serde_json::json!({
                "settlement": { "minted": minted, "payouts": payouts, "cheaters": ["c"] },
                "nodes": [
                    { "index": 0, "peer_id": "artist", "role": "worker" },
                    { "index": 1, "peer_id": "v", "role": "verifier" },
                    { "index": 2, "peer_id": "a", "role": "worker" },
                    { "index": 3, "peer_id": "b", "role": "worker" },
                    { "index": 4, "peer_id": "c", "role": "worker" },
                ]
            })
        };
        let base = report(1_000, &[("artist", 100), ("v", 300), ("a", 300), ("b", 300)]);
        let b = SeatShare::of(&base).unwrap();
        assert_eq!((b.mean_honest, b.seats, b.paid_to_seats, b.ppm), (300, 2, 600, 1_000_000));
        // One more paid worker (an attacker with real work), more minted, an epoch lost.
        let diluted = report(1_500, &[("artist", 110), ("v", 450), ("a", 330), ("b", 330), ("x", 330), ("dust", 5)]);
        let h = HonestPayout::compare(&diluted, Some(&base));
        assert!(h.failure().is_none(), "{h:?}");
        // The attacker takes most of the pool.
        let robbed = report(1_000, &[("artist", 100), ("v", 300), ("a", 150), ("b", 150), ("x", 300)]);
        let h = HonestPayout::compare(&robbed, Some(&base));
        assert!(h.failure().unwrap().contains("less per seat"), "{h:?}");
        // No baseline: nothing to judge.
        assert!(HonestPayout::compare(&robbed, None).failure().is_none());
    }

    fn node(rss: f64, base_rss: f64, p99: f64, base_p99: f64) -> NodeUnderAttack {
        NodeUnderAttack {
            index: 1,
            role: "worker",
            alive: true,
            peak_rss_mb: Some(rss),
            baseline_peak_rss_mb: Some(base_rss),
            cpu_secs: None,
            baseline_cpu_secs: None,
            heartbeat_p99_ms: Some(p99),
            baseline_heartbeat_p99_ms: Some(base_p99),
            p99_floor_ms: 50.0,
        }
    }

    fn section(nodes: Vec<NodeUnderAttack>, attacks: Vec<AttackLine>) -> AttacksSection {
        AttacksSection {
            economics: Vec::new(),
            honest_payout: HonestPayout::default(),
            victim: 1,
            attacks,
            baseline: Some("b.json".into()),
            nodes,
            panics: Vec::new(),
            memory_ratio_limit: MEMORY_RATIO,
            p99_ratio_limit: P99_RATIO,
        }
    }

    #[test]
    fn memory_and_heartbeat_ratios_judge_against_the_baseline() {
        assert!(section(vec![node(140.0, 100.0, 120.0, 45.0)], vec![]).failures().is_empty());
        let f = section(vec![node(160.0, 100.0, 10.0, 2.0)], vec![]).failures();
        assert_eq!(f.len(), 1, "{f:?}: 10 ms against 2 ms is under the floor");
        assert!(f[0].contains("1.60x"), "{f:?}");
        let f = section(vec![node(100.0, 100.0, 400.0, 100.0)], vec![]).failures();
        assert!(f.len() == 1 && f[0].contains("heartbeat p99 400 ms"), "{f:?}");
        // With a 1 s heartbeat the floor is 200 ms: a 580 ms stall against 18 ms passes, 700 not.
        let stall = |p99| NodeUnderAttack { p99_floor_ms: 200.0, ..node(100.0, 100.0, p99, 18.0) };
        assert!(section(vec![stall(580.0)], vec![]).failures().is_empty());
        assert_eq!(section(vec![stall(700.0)], vec![]).failures().len(), 1);
    }

    #[test]
    fn an_accepted_api_write_a_silent_attacker_and_a_panic_fail_the_run() {
        let api = lines(vec![], Some((21, vec!["POST /stake (rebound) answered 202".into()])));
        assert_eq!(section(vec![], api).failures().len(), 1);
        let silent = lines(
            vec![
                (Attack::HbOverflow, Err("no stats".into())),
                (Attack::ForkBomb, Ok(AttackerStats { sent: 0, ..Default::default() })),
            ],
            None,
        );
        assert_eq!(section(vec![], silent).failures().len(), 2);
        let mut s = section(vec![], vec![]);
        s.panics.push("node-1.log: thread 'x' panicked at a.rs:1".into());
        assert_eq!(s.failures().len(), 1);
    }

    #[test]
    fn a_funded_attacker_is_judged_by_its_net_against_honest_work() {
        use ifx_protocols::settle::Account;
        let acct = |earned, burned, slashed| Account { earned, burned, slashed, ..Default::default() };
        let accounts: std::collections::BTreeMap<String, Account> = [
            ("h1".to_string(), acct(100, 0, 0)),
            ("h2".to_string(), acct(300, 0, 0)),
            ("h3".to_string(), acct(200, 0, 0)),
            ("forger".to_string(), acct(0, 7, 0)),
            ("dodger".to_string(), acct(250, 0, 0)),
        ]
        .into();
        let honest = ["h1", "h2", "h3"].map(String::from);
        let f = AttackerNet::of(crate::attacks::Attack::ForgedReceipt, &["forger".into()], &accounts, &honest);
        assert_eq!((f.net, f.honest_worker_net, f.failure()), (-7, 200, None));
        // Earning more than the median honest worker fails the run.
        let d = AttackerNet::of(crate::attacks::Attack::TimeoutDodge, &["dodger".into()], &accounts, &honest);
        // A self-dealer's two keys count together.
        let both =
            AttackerNet::of(crate::attacks::Attack::SelfDeal, &["dodger".into(), "forger".into()], &accounts, &honest);
        assert_eq!((both.net, both.earned, both.burned), (243, 250, 7));
        assert!(d.failure().unwrap().contains("timeout-dodge"));
        let mut s = section(vec![], vec![]);
        s.economics = vec![f, d];
        assert_eq!(s.failures().len(), 1);
        // A forger that netted anything fails, whatever honest workers made.
        let rich = [("forger".to_string(), acct(1, 0, 0))].into();
        assert!(
            AttackerNet::of(crate::attacks::Attack::ForgedReceipt, &["forger".into()], &rich, &[]).failure().is_some()
        );
    }
}
