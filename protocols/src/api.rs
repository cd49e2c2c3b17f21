//! What the node's local HTTP API answers, as types: the node serializes them, and the CLI and
//! the testnet harness read them back, so the three agree by construction (a field renamed on
//! one side breaks the build on the other, not a report at runtime).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fl::wire::TaskSpec;
use crate::heartbeat::{Capacity, PeerRecord, Role};
pub use crate::link::LinkPath;
use crate::por::quorum::Standing;
use crate::render::job::JobSpec;
use crate::settle::{Account, EconParams, Status as EpochStatus};

/// Where a render job or a federated task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Done,
    Failed,
    /// Stopped by its owner's operator (`ifx render cancel`); render jobs only.
    Cancelled,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        })
    }
}

/// How a render job's owner hands out its tiles (`POST /jobs?schedule=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Each tile to the worker expected to finish it first, from its measured time per tile
    /// (before it has one, its attested IB), and an idle worker re-renders a tile a slow one
    /// still holds at the end when it would finish sooner (issue #18).
    #[default]
    Capacity,
    /// First come first served: every worker keeps the same number of tiles in flight whatever
    /// its speed, and nothing is re-issued until it fails (before issue #18).
    Fifo,
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Schedule::Capacity => "capacity",
            Schedule::Fifo => "fifo",
        })
    }
}

/// One worker's part in a render job, as its owner measured it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerShare {
    /// Tiles it delivered that the job kept.
    pub tiles: u64,
    /// Good tiles it delivered, kept or not (a duplicate that came second is not kept).
    pub delivered: u64,
    /// Seconds it had at least one of the job's tiles (its busy time).
    pub busy_secs: f64,
    /// Its latest estimate of seconds per tile (from its answers; 0: none yet).
    pub secs_per_tile: f64,
    /// Its IB x 1000 as the verifiers attest it (0: none).
    pub ib_milli: u32,
}

/// `GET /status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub peer_id: String,
    pub role: Role,
    pub network: String,
    pub version: String,
    pub epoch: u64,
    pub uptime_secs: u64,
    pub listen_addrs: Vec<String>,
    pub capacity: Capacity,
    pub connected_peers: usize,
    pub routing_table_size: usize,
    pub heartbeat_peers: usize,
    pub heartbeats_received: u64,
    /// Whether peers can dial this node, and what to do if they cannot.
    pub reachability: Reachability,
    /// Why the operator paused its work (`POST /pause`), if it is paused.
    #[serde(default)]
    pub paused: Option<String>,
    /// How far peers' clocks are from this node's, in ms (positive: this clock is behind), the
    /// median over `clock_peers` peers' latest heartbeats; `None` before any heartbeat.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
    #[serde(default)]
    pub clock_peers: usize,
}

/// The network as the swarm task sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NetSnapshot {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    /// Connected peers, sorted by peer id.
    pub connected: Vec<ConnectedPeer>,
    /// Peers in the Kademlia routing table, sorted.
    pub routing_table: Vec<String>,
    /// Peers in the gossip mesh of the heartbeat topic, sorted.
    pub heartbeat_mesh: Vec<String>,
    /// Peers blocked by the operator, sorted.
    pub blocked: Vec<String>,
    /// Addresses of the routing table's peers, by peer (sorted; at most 4 each).
    pub routing_addrs: BTreeMap<String, Vec<String>>,
    /// Whether peers can dial this node.
    pub reachability: Reachability,
}

/// How a node can be reached, as its AutoNAT probes and relay reservations tell.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reachability {
    /// `public` (peers dialled back an address), `private` (behind NAT or a firewall: their
    /// dial-backs failed), `unknown` (not probed yet).
    pub nat_status: String,
    /// The configured policy: `auto`, `public` or `private`.
    pub policy: String,
    /// Kademlia mode: `server` (answers DHT queries, is in others' routing tables) or `client`.
    pub dht_mode: String,
    /// Addresses confirmed reachable from outside (AutoNAT or relay reservations), sorted.
    pub external_addrs: Vec<String>,
    /// Relays this node holds a reservation on (peer ids, sorted).
    pub relays: Vec<String>,
    /// Reservations lost (the relay went away or refused a renewal) and replaced since start.
    pub relays_lost: u64,
    /// Whether this node offers relay service to others.
    pub relay_service: bool,
    /// Circuits this node relays for others now.
    pub relayed_circuits: u64,
    /// Relayed connections upgraded to direct ones by hole punching (DCUtR), and attempts failed.
    pub hole_punches_ok: u64,
    pub hole_punches_failed: u64,
    /// One line for the operator: the state and what to do about it.
    pub advice: String,
}

/// `POST /net/dial`: whether the node reached the peer, and how.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DialOutcome {
    pub connected: bool,
    pub path: Option<LinkPath>,
    pub addr: Option<String>,
    pub error: Option<String>,
    /// Time to the connection (or the failure).
    pub ms: u64,
}

/// `POST /net/measure`: a link measurement to a peer (see [`crate::link`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkMeasurement {
    pub peer: String,
    pub path: Option<LinkPath>,
    /// One small request's round trip.
    pub rtt_us: u64,
    /// Bytes moved each way.
    pub bytes: u64,
    /// Throughput to the peer (our upload) and from it, kbit/s, the round trip taken out
    /// (at most half the time: [`crate::link::transfer_kbit`]).
    pub up_kbit: u64,
    pub down_kbit: u64,
}

/// One connected peer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnectedPeer {
    pub peer_id: String,
    /// Gossipsub score (negative after invalid messages).
    pub gossip_score: Option<f64>,
    /// Last ping round trip in microseconds.
    pub rtt_us: Option<u64>,
    /// Address of the connection.
    pub addr: String,
    /// How the connection runs (the best of the peer's connections).
    pub path: LinkPath,
}

/// One entry of the heartbeat peer table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeartbeatPeer {
    pub peer_id: String,
    pub public_key: String,
    /// Latest role, capacity and software version announced.
    pub role: Role,
    pub capacity: Capacity,
    pub version: String,
    /// Boot time of the sequence being tracked.
    pub boot_unix_ms: u64,
    /// Highest sequence number seen in that boot.
    pub last_seq: u64,
    /// Local time the latest fresh heartbeat and the first one arrived (Unix ms).
    pub last_seen_unix_ms: u64,
    pub first_seen_unix_ms: u64,
    /// Uptime the peer reported in its latest heartbeat.
    pub uptime_secs: u64,
    /// Distinct heartbeats received (fresh and out-of-order), repeats ignored, and those that
    /// arrived after a newer one.
    pub received: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Publish-to-receipt delay of the latest fresh heartbeat, µs.
    pub last_delay_us: u64,
    /// Distinct heartbeats counted per epoch (the last few epochs; none while paused).
    pub by_epoch: BTreeMap<u64, u64>,
    /// Whether its latest heartbeat said its operator paused it.
    #[serde(default)]
    pub paused: bool,
}

impl HeartbeatPeer {
    /// The table's record of the peer with this public key and peer id.
    pub fn of(peer_id: String, public_key: &[u8; 32], r: &PeerRecord) -> Self {
        HeartbeatPeer {
            peer_id,
            public_key: hex::encode(public_key),
            role: r.role,
            capacity: r.capacity.clone(),
            version: r.version.clone(),
            boot_unix_ms: r.boot_unix_ms,
            last_seq: r.last_seq,
            last_seen_unix_ms: r.last_seen_unix_ms,
            first_seen_unix_ms: r.first_seen_unix_ms,
            uptime_secs: r.uptime_secs,
            received: r.received,
            duplicates: r.duplicates,
            out_of_order: r.out_of_order,
            last_delay_us: r.last_delay_us,
            by_epoch: r.by_epoch.clone(),
            paused: r.paused,
        }
    }
}

/// `GET /peers`: the network as the swarm task sees it, and the heartbeat table. (No
/// `#[serde(flatten)]` here or above: serde reads integer map keys such as `by_epoch`'s back
/// from JSON only outside a flattened struct.)
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Peers {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub connected: Vec<ConnectedPeer>,
    pub routing_table: Vec<String>,
    pub heartbeat_mesh: Vec<String>,
    pub blocked: Vec<String>,
    pub routing_addrs: BTreeMap<String, Vec<String>>,
    pub reachability: Reachability,
    pub heartbeats: Vec<HeartbeatPeer>,
    /// Workers' links as the bonded verifiers attest them in the ledger (the median over
    /// verifiers of each one's latest measurement), by peer id.
    #[serde(default)]
    pub links: BTreeMap<String, crate::ledger::body::AttestedLink>,
}

impl Peers {
    pub fn of(
        n: NetSnapshot,
        heartbeats: Vec<HeartbeatPeer>,
        links: BTreeMap<String, crate::ledger::body::AttestedLink>,
    ) -> Self {
        Peers {
            peer_id: n.peer_id,
            listen_addrs: n.listen_addrs,
            connected: n.connected,
            routing_table: n.routing_table,
            heartbeat_mesh: n.heartbeat_mesh,
            blocked: n.blocked,
            routing_addrs: n.routing_addrs,
            reachability: n.reachability,
            heartbeats,
            links,
        }
    }
}

/// `GET /heartbeats/latency`: recent publish-to-receipt delays.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Latency {
    pub samples_us: Vec<u64>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

/// `GET /ledger/root`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerRoot {
    pub root: String,
    pub entries: usize,
    /// Entries this node authored.
    pub own_entries: usize,
    /// When this node last appended an entry of its own (Unix ms; 0 = never).
    pub last_append_unix_ms: u64,
}

/// `POST /assets` kept: the asset's BLAKE3 hash (hex) and length, for a job's spec.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AssetKept {
    pub hash: String,
    pub len: u64,
}

/// `POST /jobs` accepted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobAccepted {
    pub job_id: String,
}

/// `GET /jobs/{id}`: a render job this node owns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobStatus {
    pub job_id: String,
    pub state: RunState,
    pub spec: JobSpec,
    pub tiles: usize,
    pub tiles_done: usize,
    /// Accepted tiles per worker peer id.
    pub tiles_by_worker: BTreeMap<String, u64>,
    /// Tiles given to another worker after a failure or timeout.
    pub reassigned: u64,
    /// Render receipts written to the ledger.
    pub receipts: u64,
    /// Units the owner burned for the job (0: unpaid, its receipts count for nobody).
    #[serde(default)]
    pub paid: u64,
    /// The payment entry's id.
    #[serde(default)]
    pub payment: Option<String>,
    /// Tiles whose sub-tile the owner re-rendered and found as delivered (issue #21: every
    /// accepted tile is spot-checked before its receipt).
    #[serde(default)]
    pub spot_checked: u64,
    /// Tiles that failed the spot check: each one evidence in the ledger against its worker,
    /// which gets no more tiles of the job.
    #[serde(default)]
    pub bad_tiles: u64,
    /// Workers given one tile at a time because the verifiers attest a slow link to them
    /// (issue #17): peer id and the slower direction in kbit/s.
    #[serde(default)]
    pub slow_links: BTreeMap<String, u32>,
    pub secs: f64,
    pub png: Option<String>,
    /// The linear HDR image beside the PNG (OpenEXR, 32-bit float).
    #[serde(default)]
    pub exr: Option<String>,
    pub error: Option<String>,
    /// How its tiles were handed out.
    #[serde(default)]
    pub schedule: Schedule,
    /// Seconds from the first tile handed out to the last one kept (since the owner last
    /// started: a resumed job counts the tiles it asked for after the restart).
    #[serde(default)]
    pub makespan_secs: f64,
    /// The makespan it would have had if every worker had been busy to the end at the
    /// throughput it showed in the job: tiles / the sum of each worker's answers per busy
    /// second (0: not known yet).
    #[serde(default)]
    pub ideal_secs: f64,
    /// Tiles handed to a second worker while the first still held them (re-issued stragglers).
    #[serde(default)]
    pub speculative: u64,
    /// Each worker's part, by peer id.
    #[serde(default)]
    pub workers: BTreeMap<String, WorkerShare>,
    /// When the owner accepted the job (Unix ms).
    #[serde(default)]
    pub submitted_unix_ms: u64,
    /// Times the owner restarted while the job ran and resumed it from its store.
    #[serde(default)]
    pub resumed: u64,
    /// Tiles kept before the last restart, never asked for again: those loaded from the store
    /// and those of the frames already written.
    #[serde(default)]
    pub restored_tiles: u64,
    /// The frames written so far, as ranges (first, last), ascending (issue #18 item 4).
    #[serde(default)]
    pub frames_saved: Vec<[u32; 2]>,
    /// A sequence's folder: frame `f` is `{f:04}.png` (and `.exr`) in it. A still is `png`.
    #[serde(default)]
    pub sequence: Option<String>,
}

impl JobStatus {
    /// A job just started: `tiles` to render, none done.
    pub fn started(job_id: String, spec: JobSpec, tiles: usize) -> Self {
        JobStatus {
            job_id,
            state: RunState::Running,
            spec,
            tiles,
            tiles_done: 0,
            tiles_by_worker: BTreeMap::new(),
            reassigned: 0,
            receipts: 0,
            paid: 0,
            payment: None,
            spot_checked: 0,
            bad_tiles: 0,
            slow_links: BTreeMap::new(),
            secs: 0.0,
            png: None,
            exr: None,
            error: None,
            schedule: Schedule::Capacity,
            makespan_secs: 0.0,
            ideal_secs: 0.0,
            speculative: 0,
            workers: BTreeMap::new(),
            submitted_unix_ms: 0,
            resumed: 0,
            restored_tiles: 0,
            frames_saved: Vec::new(),
            sequence: None,
        }
    }

    /// Frames written so far.
    pub fn frames_done(&self) -> u64 {
        self.frames_saved.iter().map(|[a, b]| (*b as u64 + 1).saturating_sub(*a as u64)).sum()
    }

    /// Whether frame `f` was written.
    pub fn frame_saved(&self, f: u32) -> bool {
        self.frames_saved.iter().any(|[a, b]| (*a..=*b).contains(&f))
    }

    /// Records frame `f` as written, keeping the ranges ascending and merged.
    pub fn save_frame(&mut self, f: u32) {
        if self.frame_saved(f) {
            return;
        }
        self.frames_saved.push([f, f]);
        self.frames_saved.sort();
        let mut merged: Vec<[u32; 2]> = Vec::with_capacity(self.frames_saved.len());
        for r in self.frames_saved.drain(..) {
            match merged.last_mut() {
                Some(last) if last[1].checked_add(1) == Some(r[0]) => last[1] = r[1],
                _ => merged.push(r),
            }
        }
        self.frames_saved = merged;
    }
}

/// `POST /fl` accepted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskAccepted {
    pub task_id: String,
}

/// `GET /fl/{task}`: a federated task this node owns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task_id: String,
    pub state: RunState,
    pub spec: TaskSpec,
    pub aggregator: String,
    /// Rounds completed.
    pub rounds_done: u32,
    pub accuracy_by_round: Vec<f64>,
    pub loss_by_round: Vec<f32>,
    /// Valid updates aggregated per round (before screening).
    pub clients_by_round: Vec<usize>,
    /// Accepted updates per worker peer id.
    pub accepted: BTreeMap<String, u64>,
    /// Each worker's contributions summed over the rounds (parts per million of each round's
    /// largest; what its FL pay is proportional to).
    #[serde(default)]
    pub contribution_ppm: BTreeMap<String, u64>,
    /// Rejected updates per worker peer id, with the reasons (the last few).
    pub rejected: BTreeMap<String, Vec<String>>,
    /// Rejected updates per worker peer id (all of them).
    pub rejected_count: BTreeMap<String, u64>,
    /// Workers the owner stopped asking (peer id: when and why).
    pub banned: BTreeMap<String, String>,
    /// Clients that did not deliver in time (timeouts, disconnects) per peer id.
    pub dropped: BTreeMap<String, u64>,
    /// FL receipts written to the ledger.
    pub receipts: u64,
    /// The task's differential privacy: the noise its workers add and the ε it spends (none
    /// without a budget).
    #[serde(default)]
    pub privacy: Option<crate::fl::dp::DpPlan>,
    /// Units the owner burned for the task (0: unpaid, its receipts count for nobody).
    #[serde(default)]
    pub paid: u64,
    /// BLAKE3 of the current weights (safetensors bytes).
    pub global_hash: String,
    pub final_accuracy: Option<f64>,
    /// Final weights (safetensors) and the accuracy plot (PNG), once done.
    pub weights: Option<String>,
    pub plot: Option<String>,
    pub secs: f64,
    pub error: Option<String>,
}

impl TaskStatus {
    /// A task just started: no round done.
    pub fn started(task_id: String, spec: TaskSpec, aggregator: String) -> Self {
        TaskStatus {
            task_id,
            state: RunState::Running,
            spec,
            aggregator,
            rounds_done: 0,
            accuracy_by_round: Vec::new(),
            loss_by_round: Vec::new(),
            clients_by_round: Vec::new(),
            accepted: BTreeMap::new(),
            contribution_ppm: BTreeMap::new(),
            privacy: None,
            rejected: BTreeMap::new(),
            rejected_count: BTreeMap::new(),
            banned: BTreeMap::new(),
            dropped: BTreeMap::new(),
            receipts: 0,
            paid: 0,
            global_hash: String::new(),
            final_accuracy: None,
            weights: None,
            plot: None,
            secs: 0.0,
            error: None,
        }
    }
}

/// What this node's audits of other owners' rounds found.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuditStats {
    /// Rounds recomputed to the announced hash.
    pub matched: u64,
    /// Rounds whose recomputed weights differ from the announcement.
    pub mismatched: u64,
    /// Rounds that could not be recomputed (inputs unavailable).
    pub failed: u64,
    pub last_error: Option<String>,
}

/// `GET /fl`: owned tasks and this node's audits of other owners' rounds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlList {
    pub tasks: Vec<TaskStatus>,
    pub audits: AuditStats,
}

/// What one verifier has seen of one worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PorWorker {
    pub challenges: u64,
    pub passed: u64,
    pub failed: u64,
    /// Answers that came too late or never (QoS failures).
    pub timeouts: u64,
    pub last_failure: Option<String>,
    pub mean_latency_ms: f64,
    /// Time spent verifying, and what the worker said rendering took (µs).
    pub verify_us: u64,
    pub worker_render_us: u64,
    /// Benchmark challenges issued, and answered correctly.
    pub bench_attempts: u64,
    pub benches: u64,
    /// IB x 1000: the median of the last benchmark samples.
    pub ib_milli: u64,
    /// Smallest observed / claimed benchmark time so far (an honest worker's is near 1).
    pub best_time_ratio: Option<f64>,
    /// Benchmarks whose claimed time was judged.
    pub judged_benches: u64,
}

/// `GET /por/stats`: a verifier's challenge results by worker peer id.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PorStats {
    pub verifier: bool,
    pub challenges: u64,
    /// Verifier time spent checking / worker time spent rendering, over all challenges.
    pub verify_cost_ratio: Option<f64>,
    pub workers: BTreeMap<String, PorWorker>,
}

/// `GET /por/standings`: each worker's standing (by peer id) from the ledger's verdicts.
pub type Standings = BTreeMap<String, Standing>;

/// One epoch in `GET /rewards`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RewardsEpoch {
    pub epoch: u64,
    pub status: EpochStatus,
    pub root: String,
    pub seal_root: Option<String>,
    pub minted: u64,
    pub paid: usize,
    /// Public keys (hex) slashed in this epoch.
    pub slashed: Vec<String>,
    pub workers_bps: u64,
    /// Units paid from the worker pool.
    pub paid_workers: u64,
    /// Units paid from the artist pool (paid work consumed).
    #[serde(default)]
    pub paid_artists: u64,
    /// Units job owners burned (the burn side of Burn-Mint-Work).
    #[serde(default)]
    pub burned: u64,
    /// What the accounts hold together changed by (minted - unallocated - burned).
    #[serde(default)]
    pub net_supply: i128,
    /// Paid work units delivered (receipts counted against paid credit).
    #[serde(default)]
    pub delivered: u64,
    /// Entries settlement did not read or count (who may write what, quotas, unpaid receipts).
    #[serde(default)]
    pub refused: u64,
}

/// `GET /rewards`: every epoch settlement reached, balances, parameters in force.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rewards {
    pub current_epoch: u64,
    pub epochs: Vec<RewardsEpoch>,
    /// By public key (hex).
    pub accounts: BTreeMap<String, Account>,
    pub params: EconParams,
}

impl Rewards {
    /// The sealed epochs, by number.
    pub fn sealed(&self) -> BTreeMap<u64, &RewardsEpoch> {
        self.epochs.iter().filter(|e| e.status == EpochStatus::Sealed).map(|e| (e.epoch, e)).collect()
    }
}

/// A write endpoint accepted a signed entry (`POST /stake`, `/gov/proposals`, `/gov/votes`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EntryAccepted {
    /// The entry id (hex).
    pub entry: String,
}

/// `POST /net/block` and `/net/unblock`: the peers blocked now.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Blocked {
    pub blocked: Vec<String>,
}

/// Any refusal: the status code says which kind, this says why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_peer_reads_back_with_its_epoch_counts() {
        let mut t = crate::PeerTable::new(60_000, 16);
        let capacity = Capacity {
            backend: "cpu".into(),
            adapter: "none".into(),
            device_type: "cpu".into(),
            cores: 2,
            memory_mb: 1024,
        };
        let hb = |seq: u64| crate::Heartbeat {
            boot_unix_ms: 1_000,
            seq,
            sent_unix_us: 2_000_000 + seq,
            role: Role::Worker,
            capacity: capacity.clone(),
            uptime_secs: 1,
            version: "0.1.0".into(),
            paused: false,
        };
        t.observe([7; 32], &hb(0), 2_000_100);
        t.observe([7; 32], &hb(1), 62_000_200);
        let (author, rec) = t.iter().next().unwrap();
        let peers =
            Peers::of(NetSnapshot::default(), vec![HeartbeatPeer::of("p".into(), author, rec)], BTreeMap::new());
        let back: Peers = serde_json::from_str(&serde_json::to_string(&peers).unwrap()).unwrap();
        assert_eq!(back.heartbeats[0].by_epoch, rec.by_epoch);
        assert!(!back.heartbeats[0].by_epoch.is_empty());
    }

    #[test]
    fn saved_frames_are_kept_as_merged_ranges() {
        let spec = crate::render::job::JobSpec {
            scene: "cornell".into(),
            scene_toml: None,
            assets: Vec::new(),
            width: 8,
            height: 8,
            spp: 1,
            max_bounces: 1,
            tile: 8,
            unpaid: true,
            frames: Default::default(),
        };
        let mut st = JobStatus::started("j".into(), spec, 1);
        for f in [5, 3, 4, 9, 4, u32::MAX, 0] {
            st.save_frame(f);
        }
        assert_eq!(st.frames_saved, vec![[0, 0], [3, 5], [9, 9], [u32::MAX, u32::MAX]]);
        assert_eq!(st.frames_done(), 6);
        assert!(st.frame_saved(4) && !st.frame_saved(6));
    }

    #[test]
    fn run_state_is_lowercase_on_the_wire() {
        assert_eq!(serde_json::to_string(&RunState::Running).unwrap(), "\"running\"");
        assert_eq!(serde_json::from_str::<RunState>("\"failed\"").unwrap(), RunState::Failed);
        assert!(serde_json::from_str::<RunState>("\"paused\"").is_err());
        for s in [RunState::Running, RunState::Done, RunState::Failed, RunState::Cancelled] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }
}

/// `GET /account`: this node's key as settlement sees it (the dashboard's earnings, stake and
/// PoR panels).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountView {
    /// The node's public key (hex) and peer id.
    pub key: String,
    pub peer_id: String,
    pub current_epoch: u64,
    /// Balances as the last settled epoch left them (default: nothing yet).
    pub account: Account,
    /// Every epoch settlement reached, in order, with this key's part in it.
    pub epochs: Vec<AccountEpoch>,
    /// What the ledger's PoR verdicts say about this node as a worker.
    pub por: PorRecord,
}

/// This key's part in one epoch's settlement.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AccountEpoch {
    pub epoch: u64,
    pub status: Option<EpochStatus>,
    /// Paid in all, the part liquid at once and the part vesting.
    pub total: u64,
    pub liquid: u64,
    pub vesting: u64,
    /// Taken (stake and forfeited vesting pay), and why.
    pub slashed: u64,
    pub slash_reason: Option<String>,
    /// Its line as a worker, when it was one.
    pub worker: Option<crate::settle::WorkerLine>,
}

/// The bonded verifiers' PoR verdicts about one worker, summed over the ledger.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PorRecord {
    pub passed: u64,
    pub failed: u64,
    pub timeouts: u64,
    /// Of `passed`, benchmarks.
    pub benches: u64,
    /// The latest failures' reasons, newest first: `(epoch, verifier peer id, why)`.
    pub last_failures: Vec<(u64, String, String)>,
}

/// `GET /logs`: this process's latest warnings and errors, oldest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RecentLogs {
    pub lines: Vec<LogLine>,
    /// Warnings and errors logged since the start, kept or not.
    pub total: u64,
}

/// One warning or error.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogLine {
    pub unix_ms: u64,
    pub level: String,
    pub target: String,
    /// The message and its fields (`key=value`), cut at 512 bytes.
    pub message: String,
}

/// `POST /infer`: an inference job of `model` (published on this node with
/// `POST /infer/models`) on `inputs`, rows of 64 values.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InferJobRequest {
    pub model: crate::infer::ModelSpec,
    pub inputs: Vec<f32>,
    /// Rows per batch (1..=64).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: u32,
    /// Share of batches the owner re-executes to check them, in parts per million, besides
    /// each worker's first batch (default 3%: with the signature check of every answer, the
    /// CNN's verification is then under 5% of its serving, `docs/BENCHMARKS.md`).
    #[serde(default = "default_verify_ppm")]
    pub verify_ppm: u32,
    /// Run without paying (its receipts count for nobody).
    #[serde(default)]
    pub unpaid: bool,
}

fn default_batch_rows() -> u32 {
    crate::infer::MAX_BATCH_ROWS as u32
}

fn default_verify_ppm() -> u32 {
    30_000
}

/// One worker's part of an inference job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InferWorker {
    /// Batches it answered that were accepted.
    pub batches: u64,
    pub rows: u64,
    /// Of them, re-executed by the owner and found to agree.
    pub verified: u64,
    /// Requests that failed (timeouts, refusals, malformed answers).
    pub failed: u64,
    /// Round-trip latency of its accepted batches, median and 99th percentile, in ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Rows per second of the time it had a batch in flight.
    pub rows_per_sec: f64,
}

/// `GET /infer/{job}`: an inference job this node owns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InferJobStatus {
    pub job_id: String,
    pub state: RunState,
    pub model: crate::infer::ModelSpec,
    pub rows: u64,
    pub batches: u64,
    pub batches_done: u64,
    /// Batches the owner re-executed, and the time that took against the whole job's.
    pub verified: u64,
    pub verify_secs: f64,
    /// Workers by peer id.
    pub workers: BTreeMap<String, InferWorker>,
    /// Workers caught answering wrongly (peer id: the first difference), each with evidence
    /// filed in the ledger.
    pub caught: BTreeMap<String, String>,
    pub receipts: u64,
    /// Units the owner burned for the job (0: unpaid).
    pub paid: u64,
    /// The logits file (CSV: row, class, ten logits), once done.
    pub outputs: Option<String>,
    pub secs: f64,
    pub error: Option<String>,
}

/// `GET /infer`: inference jobs this node owns.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InferList {
    pub jobs: Vec<InferJobStatus>,
}
