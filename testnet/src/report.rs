//! The JSON report of a run: one document that later features extend with their own sections.

use std::path::Path;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::TestnetArgs;
use crate::launch::Testnet;
use crate::watch::{Outcome, SealedEpochs, sealed_epochs};

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// True only if the network did its job (see `failures` otherwise).
    pub ok: bool,
    /// Every reason `ok` is false, in words.
    pub failures: Vec<String>,
    pub network_id: String,
    pub base_dir: String,
    /// The same run as a self-contained HTML page with charts (next to the JSON report).
    pub html: Option<String>,
    pub duration_secs: u64,
    pub elapsed_secs: f64,
    /// Seconds from the first launch until every running node had every other in its Kademlia
    /// routing table (null if that never happened).
    pub discovery_secs: Option<f64>,
    /// Seconds until every running node had received heartbeats from every other.
    pub heartbeat_coverage_secs: Option<f64>,
    /// Heartbeat publish-to-receipt delay across all pairs.
    pub heartbeat_latency_ms: LatencyMs,
    /// Faults injected.
    pub faults: Vec<Fault>,
    /// The contribution ledger at the end of the run.
    pub ledger: LedgerSection,
    /// The render job submitted to node 0 (null when the run submitted none).
    pub render: Option<RenderSection>,
    /// Proof-of-Rendering challenges by the verifiers.
    pub por: PorSection,
    /// The federated task run on node 0 (null when the run started none).
    pub fl: Option<FlSection>,
    /// Settlement of the sealed epochs, as every running node computed it.
    pub settlement: SettlementSection,
    /// Nodes killed and started again: did they catch up and keep their own entries?
    pub restarts: Vec<RestartReport>,
    /// Partitions applied and healed: did the network converge again, and how fast?
    pub partitions: Vec<PartitionReport>,
    /// Memory at the end of the run.
    pub memory: MemoryReport,
    pub nodes: Vec<NodeReport>,
}

/// `settlement` section of the report.
#[derive(Debug, Serialize, Default)]
pub struct SettlementSection {
    /// Agreed over at least one sealed epoch, every cheater slashed, no honest node slashed,
    /// the governance change applied exactly at its epoch.
    pub ok: bool,
    /// Every running node computed the same settlement root for every epoch sealed on all.
    pub agreed: bool,
    /// Epochs sealed on every running node.
    pub sealed_epochs: Vec<u64>,
    /// Per node index, per sealed epoch, the settlement root.
    pub roots: BTreeMap<usize, BTreeMap<u64, String>>,
    /// Units minted over the sealed epochs (node 0's view).
    pub minted: u64,
    /// Units earned by peer id through the last epoch node 0 settled.
    pub payouts: BTreeMap<String, u64>,
    /// Peer ids slashed in a sealed epoch.
    pub slashed: Vec<String>,
    pub cheaters: Vec<String>,
    pub honest_slashed: Vec<String>,
    /// The governance change: proposed value, epoch named, first sealed epoch it was in force
    /// on every node, and whether that is exactly the named epoch.
    pub governance: Option<serde_json::Value>,
}

/// Accuracy a federated run must reach.
pub const FL_TARGET: f64 = 0.95;

/// `fl` section of the report.
#[derive(Debug, Serialize)]
pub struct FlSection {
    pub task_id: String,
    /// Done, final accuracy at least `target`, every poisoner caught, every audit matched.
    pub ok: bool,
    pub state: String,
    /// The task owner (node 0's peer id) and the aggregation rule.
    pub owner: String,
    pub aggregator: String,
    pub rounds: u64,
    pub accuracy_by_round: Vec<f64>,
    pub final_accuracy: Option<f64>,
    pub target: f64,
    /// Rejected updates per peer id.
    pub rejected: std::collections::BTreeMap<String, usize>,
    /// The last few reasons per peer id.
    pub rejected_reasons: serde_json::Value,
    /// Workers the owner excluded from the task (peer id: round and reason).
    pub banned: serde_json::Value,
    /// Honest workers among them (must be empty).
    pub honest_banned: Vec<String>,
    /// Accepted updates per peer id.
    pub accepted: serde_json::Value,
    /// Updates that missed a deadline per peer id.
    pub dropped: serde_json::Value,
    /// Peer ids of the poisoners, and those with a rejected update and none accepted.
    pub poisoners: Vec<String>,
    pub poisoners_caught: Vec<String>,
    /// Honest peers with a rejected update (the screen's false positives).
    pub honest_rejected: Vec<String>,
    /// FL receipts the owner wrote to the ledger.
    pub receipts: u64,
    /// Rounds each running verifier recomputed: matched / mismatched / failed, summed.
    pub audits_matched: u64,
    pub audits_mismatched: u64,
    pub audits_failed: u64,
    pub secs: f64,
    pub plot: Option<String>,
    pub weights: Option<String>,
    pub error: Option<String>,
}

/// `por` section of the report.
#[derive(Debug, Serialize)]
pub struct PorSection {
    /// Challenges issued (answered or not) by all verifiers.
    pub challenges: u64,
    pub passed: u64,
    pub failed: u64,
    /// Per worker peer id: passed, failed, timeouts (QoS), verifiers that challenged it.
    pub per_node: std::collections::BTreeMap<String, serde_json::Value>,
    /// Peer ids of the nodes that ran a cheat mode.
    pub cheaters: Vec<String>,
    /// Peer ids failed by a majority of the verifiers whose verdict on them is decided (they saw
    /// a failure, or passed both an image challenge and a benchmark).
    pub caught: Vec<String>,
    /// Honest peer ids with a failed verdict (must be empty).
    pub honest_failed: Vec<String>,
    /// Verifier time / worker render time over all challenges.
    pub verify_cost_ratio: Option<f64>,
    /// Workers caught according to the PoR verdicts in node 0's ledger (attested per finished
    /// epoch, so the last epoch's challenges are not in it yet).
    pub ledger_caught: Vec<String>,
}

/// `render` section of the report.
#[derive(Debug, Serialize)]
pub struct RenderSection {
    pub job_id: String,
    pub ok: bool,
    pub state: String,
    pub tiles: u64,
    pub tiles_done: u64,
    pub tiles_by_worker: serde_json::Value,
    /// Tiles given to another worker after a failure or timeout.
    pub reassigned: u64,
    /// Render receipts the job owner wrote to the ledger.
    pub receipts: u64,
    pub secs: f64,
    pub png: Option<String>,
    pub error: Option<String>,
}

/// `ledger` section of the report.
#[derive(Debug, Serialize)]
pub struct LedgerSection {
    /// Every running node had the same ledger root at the end.
    pub converged: bool,
    /// Seconds from the last append anywhere until all roots were equal (null if they never
    /// were; 0 when equality was seen no later than the first poll after the append).
    pub convergence_secs: Option<f64>,
    /// Entries in the (converged) ledger, or the most any node held.
    pub entries: usize,
    /// The common root, if converged.
    pub root: Option<String>,
    /// Seconds into the run of the last append by any node.
    pub last_append_secs: Option<f64>,
}

/// Percentiles of a latency distribution, milliseconds.
#[derive(Debug, Serialize, Clone, Copy, PartialEq)]
pub struct LatencyMs {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    pub samples: usize,
}

/// Memory at the end of the run, MiB.
#[derive(Debug, Serialize, Default)]
pub struct MemoryReport {
    /// The nodes ran inside the harness process.
    pub in_process: bool,
    /// Peak resident memory of the harness process (all the nodes, in process).
    pub harness_peak_rss_mb: f64,
    /// Resident memory of the node processes, summed (0 in process).
    pub node_processes_rss_mb: f64,
}

/// A node killed and started again.
#[derive(Debug, Serialize)]
pub struct RestartReport {
    pub node: usize,
    pub killed_at_secs: Option<f64>,
    pub restarted_at_secs: f64,
    /// Entries it authored: at the last poll before the kill, and at the end.
    pub own_entries_before: usize,
    pub own_entries_after: usize,
    /// Its ledger root at the end equals the common root.
    pub caught_up: bool,
    pub ok: bool,
    pub error: Option<String>,
}

/// A partition applied and healed.
#[derive(Debug, Serialize)]
pub struct PartitionReport {
    /// The nodes cut off from the rest.
    pub group: Vec<usize>,
    pub cut_at_secs: f64,
    pub healed_at_secs: Option<f64>,
    /// The running nodes' roots differed at some poll during the partition.
    pub diverged: bool,
    /// Seconds from the heal until every running node had the same ledger root.
    pub converged_after_secs: Option<f64>,
    /// Nodes whose API refused the block or unblock.
    pub unreachable: Vec<usize>,
    pub ok: bool,
}

/// A fault the harness injected.
#[derive(Debug, Serialize)]
pub struct Fault {
    pub node: usize,
    pub kind: &'static str,
    pub at_secs: f64,
}

/// One node at the end of the run.
#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub index: usize,
    pub peer_id: String,
    pub role: &'static str,
    /// Whether the process was running at the end of the run.
    pub alive: bool,
    /// Peers in its routing table at its last answer.
    pub peers_known: usize,
    /// Connections at its last answer.
    pub connected: usize,
    /// Peers it had heard heartbeats from.
    pub heartbeat_peers: usize,
    /// Heartbeats it had received in all.
    pub heartbeats_received: u64,
    /// Its ledger root and size at its last answer.
    pub ledger_root: String,
    pub ledger_entries: usize,
    /// How the process ended.
    pub stop: String,
    pub log: String,
}

impl LatencyMs {
    /// Percentiles of µs samples, in ms.
    pub fn from_samples_us(samples: &[u64]) -> Self {
        let mut v = samples.to_vec();
        v.sort_unstable();
        let pct = |p: usize| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            let rank = (p * v.len()).div_ceil(100).max(1);
            Some(v[rank - 1] as f64 / 1000.0)
        };
        Self { p50: pct(50), p99: pct(99), max: v.last().map(|m| *m as f64 / 1000.0), samples: v.len() }
    }
}

impl Report {
    /// Judges the run.
    pub fn build(net: &Testnet, args: &TestnetArgs, o: Outcome, latency_us: Vec<u64>, stops: Vec<String>) -> Self {
        let mut failures = Vec::new();
        if o.interrupted {
            failures.push("interrupted before the end of the run".into());
        }
        if o.discovery_secs.is_none() {
            failures.push("discovery never completed: some node missed some peer in its routing table".into());
        }
        if o.heartbeats_secs.is_none() {
            failures.push("some node never heard heartbeats from every other node".into());
        }
        let mut nodes = Vec::new();
        for (i, n) in net.nodes.iter().enumerate() {
            let view = o.views[i].clone().unwrap_or_default();
            let alive = o.alive[i];
            let killed = n.killed_at.is_some();
            if !alive && !killed {
                failures.push(format!("node {i} died: {}", n.exited.clone().unwrap_or_else(|| "unknown".into())));
            }
            if alive && stops[i] != "clean" {
                failures.push(format!("node {i} did not stop cleanly: {}", stops[i]));
            }
            nodes.push(NodeReport {
                index: i,
                peer_id: n.peer_id.clone(),
                role: n.role,
                alive,
                peers_known: view.routing_table.len(),
                connected: view.connected,
                heartbeat_peers: view.heartbeat_peers.len(),
                heartbeats_received: view.heartbeats_received,
                ledger_root: view.ledger_root.clone(),
                ledger_entries: view.ledger_entries,
                stop: stops[i].clone(),
                log: n.log.display().to_string(),
            });
        }
        let ledger = ledger_section(net, &o);
        if !ledger.converged {
            failures.push("ledger did not converge: running nodes ended with different roots".into());
        }
        if args.verifiers > 0 && ledger.entries == 0 {
            failures.push(format!("no ledger entries although {} verifier(s) ran", args.verifiers));
        }
        let render = o.job.as_ref().map(|j| RenderSection {
            job_id: j["job_id"].as_str().unwrap_or_default().into(),
            ok: j["state"] == "done",
            state: j["state"].as_str().unwrap_or("unknown").into(),
            tiles: j["tiles"].as_u64().unwrap_or(0),
            tiles_done: j["tiles_done"].as_u64().unwrap_or(0),
            tiles_by_worker: j["tiles_by_worker"].clone(),
            reassigned: j["reassigned"].as_u64().unwrap_or(0),
            receipts: j["receipts"].as_u64().unwrap_or(0),
            secs: j["secs"].as_f64().unwrap_or(0.0),
            png: j["png"].as_str().map(str::to_owned),
            error: j["error"].as_str().map(str::to_owned),
        });
        if let Some(e) = &o.job_error {
            failures.push(format!("the render job could not be submitted: {e}"));
        }
        if let Some(r) = &render
            && !r.ok
        {
            failures.push(format!("the render job did not complete: {} ({}/{} tiles)", r.state, r.tiles_done, r.tiles));
        }
        let por = por_section(net, &o);
        if por.caught != por.cheaters {
            failures.push(format!("cheaters {:?} but caught {:?}", por.cheaters, por.caught));
        }
        for peer in &por.honest_failed {
            failures
                .push(format!("honest node {peer} failed proof of rendering: {}", por.per_node[peer]["last_failure"]));
        }
        if let Some(e) = &o.fl_error {
            failures.push(format!("the federated task could not be started: {e}"));
        }
        let fl = fl_section(net, &o);
        if let Some(f) = &fl
            && !f.ok
        {
            if f.state != "done" {
                failures.push(format!(
                    "the federated task did not complete: {} after {} rounds ({})",
                    f.state,
                    f.rounds,
                    f.error.as_deref().unwrap_or("-")
                ));
            } else if f.final_accuracy.unwrap_or(0.0) < f.target {
                failures.push(format!(
                    "federated accuracy {:.4} is below the target {}",
                    f.final_accuracy.unwrap_or(0.0),
                    f.target
                ));
            }
            let missed: Vec<&String> = f.poisoners.iter().filter(|p| !f.poisoners_caught.contains(p)).collect();
            if !missed.is_empty() {
                failures.push(format!("poisoners not caught: {missed:?}"));
            }
            if !f.honest_banned.is_empty() {
                failures.push(format!("honest workers excluded from the federated task: {:?}", f.honest_banned));
            }
            if f.audits_mismatched > 0 {
                failures
                    .push(format!("{} federated rounds did not recompute to the same weights", f.audits_mismatched));
            }
        }
        let settlement = settlement_section(net, &o, &mut failures);
        let heartbeat_latency_ms = LatencyMs::from_samples_us(&latency_us);
        if heartbeat_latency_ms.samples == 0 {
            failures.push("no heartbeat latency samples".into());
        }
        let mut faults: Vec<Fault> = net
            .nodes
            .iter()
            .filter_map(|n| n.killed_at.map(|at| Fault { node: n.index, kind: "sigkill", at_secs: at }))
            .collect();
        faults.extend(
            net.nodes
                .iter()
                .filter_map(|n| n.restarted_at.map(|at| Fault { node: n.index, kind: "restart", at_secs: at })),
        );
        let restarts: Vec<RestartReport> = o
            .restarts
            .iter()
            .filter(|r| r.at_secs > 0.0)
            .map(|r| {
                let n = &net.nodes[r.node];
                let view = o.views[r.node].clone().unwrap_or_default();
                let own_after = view.own_entries;
                let caught_up = o.alive[r.node] && ledger.root.as_deref() == Some(view.ledger_root.as_str());
                let ok = r.error.is_none() && caught_up && own_after >= r.own_before;
                if let Some(e) = &r.error {
                    failures.push(format!("node {} could not restart: {e}", r.node));
                } else if !o.alive[r.node] {
                    failures.push(format!(
                        "node {} died after its restart: {}",
                        r.node,
                        n.exited.clone().unwrap_or_default()
                    ));
                } else if !caught_up {
                    failures
                        .push(format!("node {} did not catch up to the common ledger root after its restart", r.node));
                }
                if own_after < r.own_before {
                    failures.push(format!(
                        "node {} lost entries of its own across its restart: {} before the kill, {} after",
                        r.node, r.own_before, own_after
                    ));
                }
                RestartReport {
                    node: r.node,
                    killed_at_secs: n.killed_at,
                    restarted_at_secs: r.at_secs,
                    own_entries_before: r.own_before,
                    own_entries_after: own_after,
                    caught_up,
                    ok,
                    error: r.error.clone(),
                }
            })
            .collect();
        let partitions: Vec<PartitionReport> = o
            .partitions
            .iter()
            .map(|p| {
                let ok = p.unreachable.is_empty() && p.healed_at_secs.is_some() && p.converged_after_secs.is_some();
                if !p.unreachable.is_empty() {
                    failures.push(format!(
                        "partition {:?}: nodes {:?} refused to block or unblock",
                        p.group, p.unreachable
                    ));
                }
                if p.converged_after_secs.is_none() {
                    failures.push(format!("partition {:?}: the network did not converge after it healed", p.group));
                }
                faults.push(Fault { node: p.group[0], kind: "partition", at_secs: p.cut_at_secs });
                PartitionReport {
                    group: p.group.clone(),
                    cut_at_secs: p.cut_at_secs,
                    healed_at_secs: p.healed_at_secs,
                    diverged: p.diverged,
                    converged_after_secs: p.converged_after_secs,
                    unreachable: p.unreachable.clone(),
                    ok,
                }
            })
            .collect();
        Report {
            ok: failures.is_empty(),
            failures,
            network_id: net.network_id.clone(),
            html: None,
            base_dir: net.base_dir.display().to_string(),
            duration_secs: args.duration,
            elapsed_secs: o.elapsed_secs,
            discovery_secs: o.discovery_secs,
            heartbeat_coverage_secs: o.heartbeats_secs,
            heartbeat_latency_ms,
            faults,
            ledger,
            render,
            por,
            fl,
            settlement,
            restarts,
            partitions,
            memory: MemoryReport::default(),
            nodes,
        }
    }

    /// A short human summary on stdout.
    pub fn print_summary(&self, path: &Path) {
        let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        println!(
            "testnet {}: {} nodes, {} alive, discovery {} s, heartbeat latency p50 {} ms p99 {} ms",
            self.network_id,
            self.nodes.len(),
            self.nodes.iter().filter(|n| n.alive).count(),
            f(self.discovery_secs),
            f(self.heartbeat_latency_ms.p50),
            f(self.heartbeat_latency_ms.p99),
        );
        for n in &self.nodes {
            println!(
                "  node {:>2} {:<8} {} alive={} peers_known={} heartbeats={} stop={}",
                n.index, n.role, n.peer_id, n.alive, n.peers_known, n.heartbeats_received, n.stop
            );
        }
        println!(
            "  ledger: converged={} entries={} convergence {} s",
            self.ledger.converged,
            self.ledger.entries,
            f(self.ledger.convergence_secs)
        );
        println!(
            "  por: {} challenges, {} passed, {} failed; cheaters {} caught {}; honest failed {}; verify cost {}",
            self.por.challenges,
            self.por.passed,
            self.por.failed,
            self.por.cheaters.len(),
            self.por.caught.len(),
            self.por.honest_failed.len(),
            self.por.verify_cost_ratio.map(|r| format!("{:.2}%", r * 100.0)).unwrap_or_else(|| "-".into())
        );
        if let Some(r) = &self.render {
            println!(
                "  render: {} {}/{} tiles in {:.2} s, {} re-assigned, {} receipts, png {}",
                r.state,
                r.tiles_done,
                r.tiles,
                r.secs,
                r.reassigned,
                r.receipts,
                r.png.as_deref().unwrap_or("-")
            );
        }
        if let Some(f) = &self.fl {
            println!(
                "  fl: {} {} rounds ({}), final accuracy {}, poisoners {} caught {}, honest rejected {}, audits {}/{}",
                f.state,
                f.rounds,
                f.aggregator,
                f.final_accuracy.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into()),
                f.poisoners.len(),
                f.poisoners_caught.len(),
                f.honest_rejected.len(),
                f.audits_matched,
                f.audits_matched + f.audits_mismatched + f.audits_failed,
            );
        }
        let st = &self.settlement;
        println!(
            "  settlement: {} sealed epochs, agreed {}, minted {} units, slashed {}, honest slashed {}{}",
            st.sealed_epochs.len(),
            st.agreed,
            st.minted,
            st.slashed.len(),
            st.honest_slashed.len(),
            st.governance
                .as_ref()
                .map(|g| format!(
                    ", {}={} named epoch {} applied at {}",
                    g["param"].as_str().unwrap_or("?"),
                    g["value"],
                    g["from_epoch"],
                    g["applied_at"]
                ))
                .unwrap_or_default()
        );
        for r in &self.restarts {
            println!(
                "  restart: node {} killed at {:.1}s, back at {:.1}s, caught up {}, own entries {} -> {}",
                r.node,
                r.killed_at_secs.unwrap_or(0.0),
                r.restarted_at_secs,
                r.caught_up,
                r.own_entries_before,
                r.own_entries_after
            );
        }
        for p in &self.partitions {
            println!(
                "  partition: {:?} cut at {:.1}s, healed at {}, diverged {}, converged {} s after the heal",
                p.group,
                p.cut_at_secs,
                f(p.healed_at_secs),
                p.diverged,
                f(p.converged_after_secs)
            );
        }
        println!(
            "  memory: harness peak {:.0} MiB{}, node processes {:.0} MiB",
            self.memory.harness_peak_rss_mb,
            if self.memory.in_process { " (every node in process)" } else { "" },
            self.memory.node_processes_rss_mb
        );
        for fail in &self.failures {
            println!("  FAIL: {fail}");
        }
        println!("{}: report {}", if self.ok { "OK" } else { "FAILED" }, path.display());
        if let Some(h) = &self.html {
            println!("open {h} in a browser for the charts");
        }
    }
}

fn por_section(net: &Testnet, o: &Outcome) -> PorSection {
    let mut per: BTreeMap<String, (u64, u64, u64, u64, u64)> = BTreeMap::new(); // passed, failed, timeouts, by, failed_by
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    let (mut verify_us, mut render_us) = (0.0, 0.0);
    for (_, v) in &o.por {
        for (peer, w) in v["workers"].as_object().into_iter().flatten() {
            let e = per.entry(peer.clone()).or_default();
            let (p, f, t) = (
                w["passed"].as_u64().unwrap_or(0),
                w["failed"].as_u64().unwrap_or(0),
                w["timeouts"].as_u64().unwrap_or(0),
            );
            e.0 += p;
            e.1 += f;
            e.2 += t;
            // A verifier's verdict on a worker is decided once it saw a failure, or saw both an
            // image challenge and a benchmark pass (a cheat may show in one kind only).
            let benches = w["benches"].as_u64().unwrap_or(0);
            if f > 0 || (p > benches && benches > 0) {
                e.3 += 1;
                if f > 0 {
                    e.4 += 1;
                }
            }
            if let Some(r) = w["last_failure"].as_str() {
                reasons.insert(peer.clone(), r.to_owned());
            }
            verify_us += w["verify_us"].as_f64().unwrap_or(0.0);
            render_us += w["worker_render_us"].as_f64().unwrap_or(0.0);
        }
    }
    let cheaters: Vec<String> = net.nodes.iter().filter(|n| n.cheat.is_some()).map(|n| n.peer_id.clone()).collect();
    let caught: Vec<String> = per.iter().filter(|(_, e)| e.4 * 2 > e.3).map(|(p, _)| p.clone()).collect();
    let honest_failed = per.iter().filter(|(p, e)| e.1 > 0 && !cheaters.contains(p)).map(|(p, _)| p.clone()).collect();
    let mut cheaters = cheaters;
    cheaters.sort();
    PorSection {
        challenges: per.values().map(|e| e.0 + e.1 + e.2).sum(),
        passed: per.values().map(|e| e.0).sum(),
        failed: per.values().map(|e| e.1).sum(),
        per_node: per
            .iter()
            .map(|(p, e)| {
                (p.clone(), serde_json::json!({ "passed": e.0, "failed": e.1, "timeouts": e.2, "verifiers": e.3 }))
            })
            .collect(),
        cheaters,
        caught,
        honest_failed,
        verify_cost_ratio: (render_us > 0.0).then(|| verify_us / render_us),
        ledger_caught: o
            .standings
            .as_ref()
            .and_then(|s| s.as_object())
            .map(|m| m.iter().filter(|(_, v)| v["caught"] == true).map(|(k, _)| k.clone()).collect())
            .unwrap_or_default(),
    }
}

fn fl_section(net: &Testnet, o: &Outcome) -> Option<FlSection> {
    let t = o.fl.as_ref()?;
    let rejected: std::collections::BTreeMap<String, usize> = t["rejected_count"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0) as usize)).collect())
        .unwrap_or_default();
    let accepted_by = |p: &str| t["accepted"][p].as_u64().unwrap_or(0);
    let mut poisoners: Vec<String> =
        net.nodes.iter().filter(|n| n.poison.is_some()).map(|n| n.peer_id.clone()).collect();
    poisoners.sort();
    // A poisoner is caught when the owner excluded it (rejected in 3 of its last 5 updates),
    // or rejected its updates and accepted none; one the owner never heard from is not caught.
    let banned: Vec<String> = t["banned"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let poisoners_caught = poisoners
        .iter()
        .filter(|p| banned.contains(p) || (rejected.contains_key(*p) && accepted_by(p) == 0))
        .cloned()
        .collect::<Vec<_>>();
    let honest_rejected = rejected.keys().filter(|p| !poisoners.contains(p)).cloned().collect();
    let honest_banned: Vec<String> = banned.iter().filter(|p| !poisoners.contains(p)).cloned().collect();
    let sum = |k: &str| o.fl_audits.iter().map(|(_, a)| a[k].as_u64().unwrap_or(0)).sum::<u64>();
    let state = t["state"].as_str().unwrap_or("unknown").to_string();
    let final_accuracy = t["final_accuracy"].as_f64();
    let mut f = FlSection {
        task_id: t["task_id"].as_str().unwrap_or_default().into(),
        ok: false,
        state,
        owner: net.nodes[0].peer_id.clone(),
        aggregator: t["aggregator"].as_str().unwrap_or_default().into(),
        rounds: t["rounds_done"].as_u64().unwrap_or(0),
        accuracy_by_round: t["accuracy_by_round"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default(),
        final_accuracy,
        target: FL_TARGET,
        rejected,
        rejected_reasons: t["rejected"].clone(),
        banned: t["banned"].clone(),
        honest_banned,
        accepted: t["accepted"].clone(),
        dropped: t["dropped"].clone(),
        poisoners,
        poisoners_caught,
        honest_rejected,
        receipts: t["receipts"].as_u64().unwrap_or(0),
        audits_matched: sum("matched"),
        audits_mismatched: sum("mismatched"),
        audits_failed: sum("failed"),
        secs: t["secs"].as_f64().unwrap_or(0.0),
        plot: t["plot"].as_str().map(str::to_owned),
        weights: t["weights"].as_str().map(str::to_owned),
        error: t["error"].as_str().map(str::to_owned),
    };
    f.ok = f.state == "done"
        && final_accuracy.is_some_and(|a| a >= FL_TARGET)
        && f.poisoners_caught.len() == f.poisoners.len()
        && f.honest_banned.is_empty()
        && f.audits_mismatched == 0;
    Some(f)
}

fn ledger_section(net: &Testnet, o: &Outcome) -> LedgerSection {
    let views: Vec<&crate::watch::View> = o.views.iter().flatten().collect();
    let last_append = views.iter().map(|v| v.last_append_unix_ms).max().filter(|t| *t > 0);
    let t0_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        .saturating_sub(net.t0.elapsed().as_millis() as u64);
    let converged = o.roots_equal_since_ms.is_some();
    let running_root =
        (0..net.nodes.len()).find(|&i| o.alive[i]).and_then(|i| o.views[i].as_ref()).map(|v| v.ledger_root.clone());
    LedgerSection {
        converged,
        convergence_secs: match (o.roots_equal_since_ms, last_append) {
            (Some(eq), Some(last)) => Some(eq.saturating_sub(last) as f64 / 1000.0),
            (Some(_), None) => Some(0.0),
            _ => None,
        },
        entries: views.iter().map(|v| v.ledger_entries).max().unwrap_or(0),
        root: if converged { running_root } else { None },
        last_append_secs: last_append.map(|t| t.saturating_sub(t0_unix_ms) as f64 / 1000.0),
    }
}

/// Compares the settlements the running nodes computed; adds what failed to `failures`.
fn settlement_section(net: &Testnet, o: &Outcome, failures: &mut Vec<String>) -> SettlementSection {
    let mut s = SettlementSection::default();
    let peer_of: BTreeMap<&str, &str> = net.nodes.iter().map(|n| (n.public_key.as_str(), n.peer_id.as_str())).collect();
    let views: Vec<(usize, SealedEpochs)> = o.rewards.iter().map(|(i, v)| (*i, sealed_epochs(v))).collect();
    let running = net.nodes.iter().filter(|n| n.child.is_some()).count();
    if views.len() < running || views.is_empty() {
        failures.push(format!("settlement: {} of {running} running nodes answered GET /rewards", views.len()));
        return s;
    }
    let common: BTreeSet<u64> = views
        .iter()
        .map(|(_, m)| m.keys().copied().collect::<BTreeSet<u64>>())
        .reduce(|a, b| a.intersection(&b).copied().collect())
        .unwrap_or_default();
    s.sealed_epochs = common.iter().copied().collect();
    s.agreed = !common.is_empty()
        && common.iter().all(|e| views.iter().map(|(_, m)| &m[e].0).collect::<BTreeSet<_>>().len() == 1);
    for (i, m) in &views {
        s.roots.insert(*i, m.iter().filter(|(e, _)| common.contains(e)).map(|(e, v)| (*e, v.0.clone())).collect());
    }
    let (_, first) = &views[0];
    s.minted = common.iter().map(|e| first[e].1).sum();
    let mut slashed_keys: BTreeSet<String> = BTreeSet::new();
    for e in &common {
        slashed_keys.extend(first[e].3.iter().cloned());
    }
    let peer = |k: &str| peer_of.get(k).map(|p| p.to_string()).unwrap_or_else(|| k.to_owned());
    s.slashed = slashed_keys.iter().map(|k| peer(k)).collect();
    s.cheaters = net.nodes.iter().filter(|n| n.cheat.is_some()).map(|n| n.peer_id.clone()).collect();
    s.honest_slashed = s.slashed.iter().filter(|p| !s.cheaters.contains(p)).cloned().collect();
    if let Some(accounts) =
        o.rewards.iter().find(|(i, _)| *i == views[0].0).and_then(|(_, v)| v["accounts"].as_object())
    {
        for (k, a) in accounts {
            let earned = a["earned"].as_u64().unwrap_or(0);
            if earned > 0 {
                s.payouts.insert(peer(k), earned);
            }
        }
    }
    let mut ok = true;
    if !s.agreed {
        ok = false;
        failures.push(if common.is_empty() {
            "settlement: no epoch was sealed on every running node".to_string()
        } else {
            "settlement: running nodes computed different settlement roots".to_string()
        });
    }
    let missed: Vec<&String> = s.cheaters.iter().filter(|c| !s.slashed.contains(c)).collect();
    if !missed.is_empty() {
        ok = false;
        failures.push(format!("settlement: cheaters not slashed: {missed:?}"));
    }
    if !s.honest_slashed.is_empty() {
        ok = false;
        failures.push(format!("settlement: honest nodes slashed: {:?}", s.honest_slashed));
    }
    if let Some(e) = &o.gov_error {
        ok = false;
        failures.push(format!("governance: the proposal was refused: {e}"));
    }
    if let Some((param, value, from, votes)) = &o.gov {
        // Only workers_bps is visible in /rewards' epoch summary; other changes are reported
        // without the epoch check. Parameters are in force for unsealed epochs too, so every
        // epoch a node lists counts: the change must first show at exactly the named epoch, on
        // every node.
        let first_with = |v: &serde_json::Value| {
            v["epochs"]
                .as_array()?
                .iter()
                .filter(|e| e["status"] == "sealed" || e["status"] == "unsealed")
                .find(|e| e["workers_bps"].as_u64() == Some(*value))?["epoch"]
                .as_u64()
        };
        let firsts: BTreeSet<Option<u64>> = o.rewards.iter().map(|(_, v)| first_with(v)).collect();
        let at = (param == "workers_bps" && firsts.len() == 1).then(|| firsts.into_iter().next().flatten()).flatten();
        let reached = common.iter().any(|e| e >= from);
        let on_time = param != "workers_bps" || !reached || at == Some(*from);
        if !on_time {
            ok = false;
            failures.push(format!("governance: {param}={value} named epoch {from} but was in force from {at:?}"));
        }
        // Visible in the payouts: the worker pool paid out in the last sealed epoch before the
        // change and in the first sealed epoch from it.
        let paid = |e: Option<&u64>| {
            let e = *e?;
            o.rewards.first().and_then(|(_, v)| {
                v["epochs"].as_array()?.iter().find(|x| x["epoch"] == e && x["status"] == "sealed")?["paid_workers"]
                    .as_u64()
            })
        };
        let before = common.range(..*from).next_back();
        let after = common.range(*from..).next();
        s.governance = Some(serde_json::json!({
            "param": param, "value": value, "from_epoch": from, "votes": votes,
            "applied_at": at, "reached": reached, "on_time": on_time,
            "paid_workers_before": paid(before), "sealed_before": before,
            "paid_workers_at": paid(after), "sealed_at": after,
        }));
    }
    s.ok = ok;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let l = LatencyMs::from_samples_us(&(1..=100).map(|x| x * 1000).collect::<Vec<_>>());
        assert_eq!((l.p50, l.p99, l.max, l.samples), (Some(50.0), Some(99.0), Some(100.0), 100));
        assert_eq!(LatencyMs::from_samples_us(&[]).p50, None);
    }
}
