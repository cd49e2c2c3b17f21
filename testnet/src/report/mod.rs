//! The JSON report of a run: one document, one section per concern. Each section is built
//! from typed inputs (the API answers in `ifx_protocols::api`, the harness's own records) by
//! its own `of`, and says what in it fails the run by its own `failures`; this module only
//! gathers them.

pub mod attacks;
mod faults;
mod fl;
mod infer;
mod ledger;
mod por;
pub mod reach;
mod render;
mod settlement;
mod summary;

use std::collections::BTreeMap;

use serde::Serialize;

pub use self::faults::{Fault, PartitionReport, RestartReport};
pub use self::fl::{FlSection, centralized_baseline};
pub use self::infer::InferSection;
pub use self::ledger::LedgerSection;
pub use self::por::PorSection;
pub use self::render::RenderSection;
pub use self::settlement::SettlementSection;
use crate::TestnetArgs;
use crate::launch::Testnet;
use crate::watch::Outcome;

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
    /// The inference job run on node 0 (null when the run submitted none).
    pub infer: Option<InferSection>,
    /// Settlement of the sealed epochs, as every running node computed it.
    pub settlement: SettlementSection,
    /// Nodes killed and started again: did they catch up and keep their own entries?
    pub restarts: Vec<RestartReport>,
    /// Partitions applied and healed: did the network converge again, and how fast?
    pub partitions: Vec<PartitionReport>,
    /// Memory at the end of the run.
    pub memory: MemoryReport,
    /// Hostile peers in the run (`--attack`), and every node against the baseline run.
    pub attacks: Option<attacks::AttacksSection>,
    /// `ifx verify` on the render job's image and on a copy with one tile altered (issue #18).
    pub certificate: Option<crate::certify::CertificateSection>,
    /// A run in network namespaces: NAT verdicts, how worker pairs connected, leaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachability: Option<reach::ReachSection>,
    pub nodes: Vec<NodeReport>,
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
    /// Peak resident memory of its process, MiB (null in process or when not running).
    pub peak_rss_mb: Option<f64>,
    /// CPU time of its process (user + system), seconds.
    pub cpu_secs: Option<f64>,
    /// p99 of the heartbeat delays it measured, ms.
    pub heartbeat_p99_ms: Option<f64>,
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
                peak_rss_mb: None,
                cpu_secs: None,
                heartbeat_p99_ms: None,
            });
        }
        let t0_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
            .saturating_sub(net.t0.elapsed().as_millis() as u64);
        let ledger = LedgerSection::of(&o.views, &o.alive, o.roots_equal_since_ms, t0_unix_ms);
        failures.extend(ledger.failures(args.verifiers));
        if let Some(e) = &o.job_error {
            failures.push(format!("the render job could not be submitted: {e}"));
        }
        if let Some(e) = &o.job_fifo_error {
            failures.push(format!("the fifo render job could not be submitted: {e}"));
        }
        let render = o.job.as_ref().map(|j| {
            let mut r = RenderSection {
                makespan_limit: args.render_makespan,
                fifo: o.job_fifo.as_ref().map(|f| Box::new(RenderSection::of(f))),
                ..RenderSection::of(j)
            };
            if args.owner_restart {
                let (resumed, restored) = j.last.as_ref().map_or((0, 0), |s| (s.resumed, s.restored_tiles));
                let owner =
                    render::OwnerRestartSection::of(o.owner_restart.as_ref(), &r, resumed, restored, &o.tiles_rendered);
                r.owner_restart = Some(owner);
            }
            r
        });
        failures.extend(render.iter().flat_map(RenderSection::failures));
        let peer_ids = |pick: &dyn Fn(&crate::launch::NodeProc) -> bool| -> Vec<String> {
            net.nodes.iter().filter(|n| pick(n)).map(|n| n.peer_id.clone()).collect()
        };
        let cheaters = peer_ids(&|n| n.cheat.is_some());
        let por_stats: Vec<_> = o.por.iter().map(|(_, v)| v.clone()).collect();
        let por = PorSection::of(&por_stats, cheaters.clone(), o.standings.as_ref());
        failures.extend(por.failures());
        if let Some(e) = &o.fl_error {
            failures.push(format!("the federated task could not be started: {e}"));
        }
        let audits: Vec<_> = o.fl_audits.iter().map(|(_, a)| a.clone()).collect();
        let fl = o.fl.as_ref().map(|t| {
            let baseline = fl_baseline(net, t);
            // Copiers beside the worker whose shard they copy; unique: honest shards nobody copies.
            let copiers: Vec<&crate::launch::NodeProc> = net.nodes.iter().filter(|n| n.fl_copier).collect();
            let copied: Vec<u32> = copiers.iter().filter_map(|n| n.fl_shard).collect();
            let original = |shard: Option<u32>| {
                net.nodes.iter().find(|o| o.fl_shard == shard && !o.fl_copier && o.poison.is_none())
            };
            let copies: Vec<(String, String)> = copiers
                .iter()
                .filter_map(|c| Some((c.peer_id.clone(), original(c.fl_shard)?.peer_id.clone())))
                .collect();
            let unique =
                peer_ids(&|n| n.fl_shard.is_some_and(|s| !copied.contains(&s)) && !n.fl_copier && n.poison.is_none());
            FlSection::of(t, net.nodes[0].peer_id.clone(), peer_ids(&|n| n.poison.is_some()), &audits, baseline)
                .with_copies(&copies, &unique)
        });
        failures.extend(fl.iter().flat_map(FlSection::failures));
        if let Some(e) = &o.infer_error {
            failures.push(format!("the inference job could not be submitted: {e}"));
        }
        let infer_cheaters = peer_ids(&|n| n.infer_cheat.is_some());
        let infer = o.infer.as_ref().map(|t| {
            let honest = net
                .nodes
                .iter()
                .filter(|n| n.index > 0 && n.role == "worker" && n.infer_cheat.is_none() && n.child.is_some())
                .count();
            InferSection::of(t, infer_cheaters.clone(), honest, net.infer.as_ref().map(|w| w.accuracy))
        });
        failures.extend(infer.iter().flat_map(InferSection::failures));
        let peer_of: BTreeMap<String, String> =
            net.nodes.iter().map(|n| (n.public_key.clone(), n.peer_id.clone())).collect();
        let running = net.nodes.iter().filter(|n| n.child.is_some()).count();
        let job_paid = o.job.as_ref().and_then(|t| t.last.as_ref()).map_or(0, |j| j.paid);
        let task_paid = o.fl.as_ref().and_then(|t| t.last.as_ref()).map_or(0, |t| t.paid);
        let infer_paid = o.infer.as_ref().and_then(|t| t.last.as_ref()).map_or(0, |j| j.paid);
        // Attackers whose cheat must be slashed are expected among the slashed, like cheaters.
        // Inference cheaters are to be slashed when they answered (an idle one did nothing).
        let mut to_slash = cheaters;
        let idle = infer.as_ref().map(|i| i.idle_cheaters.clone()).unwrap_or_default();
        to_slash.extend(infer_cheaters.into_iter().filter(|c| !idle.contains(c)));
        for (name, keys) in &net.attacker_keys {
            if name.parse::<crate::attacks::Attack>().is_ok_and(|a| a.must_be_slashed()) {
                to_slash.extend(keys.iter().cloned());
            }
        }
        let settlement = SettlementSection::of(
            &o.rewards,
            running,
            &peer_of,
            to_slash,
            o.gov.as_ref(),
            o.gov_error.as_deref(),
            Some(&net.nodes[0].public_key),
            (job_paid, task_paid, infer_paid),
        );
        failures.extend(settlement.failures());
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
                let view = o.views[r.node].as_ref();
                RestartReport::of(r, view, o.alive[r.node], n.killed_at, n.exited.clone(), ledger.root.as_deref())
            })
            .collect();
        failures.extend(restarts.iter().flat_map(RestartReport::failures));
        let partitions: Vec<PartitionReport> = o.partitions.iter().map(PartitionReport::of).collect();
        failures.extend(partitions.iter().flat_map(PartitionReport::failures));
        faults.extend(partitions.iter().map(|p| Fault { node: p.group[0], kind: "partition", at_secs: p.cut_at_secs }));
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
            infer,
            settlement,
            restarts,
            partitions,
            memory: MemoryReport::default(),
            attacks: None,
            certificate: None,
            reachability: None,
            nodes,
        }
    }
}

/// The centralized FL baseline (`fl::centralized_baseline`, a report figure) on the shards of
/// the honest workers whose updates node 0 accepted, each in as many rounds as it had updates
/// accepted; `None` without a task's status or when it cannot be trained, which the log says.
fn fl_baseline(
    net: &crate::launch::Testnet,
    t: &crate::watch::Tracked<ifx_protocols::api::TaskStatus>,
) -> Option<self::fl::Baseline> {
    let task = t.last.as_ref()?;
    let data = net.fl_data.as_ref()?;
    let mut shards = std::collections::BTreeMap::<u32, u64>::new();
    for n in net.nodes.iter().filter(|n| n.poison.is_none()) {
        if let (Some(s), Some(a)) = (n.fl_shard, task.accepted.get(&n.peer_id).filter(|a| **a > 0)) {
            // Two honest workers on one shard (a copier): the shard is seen in either's rounds.
            let k = shards.entry(s).or_default();
            *k = (*k).max(*a);
        }
    }
    match self::fl::centralized_baseline(data, &task.spec, &shards) {
        Ok(accuracy) => Some(self::fl::Baseline {
            accuracy,
            shards: shards.into_keys().collect(),
            margin: self::fl::BASELINE_MARGIN,
            within_margin: None,
        }),
        Err(e) => {
            tracing::warn!(error = e, "no centralized FL baseline for the report");
            None
        }
    }
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
