//! Watching the running network through the nodes' APIs: discovery, heartbeat coverage,
//! liveness, scheduled faults and the progress bar.

use std::collections::BTreeSet;
use std::time::Duration;

use ifx_protocols::api::{
    AuditStats, EntryAccepted, FlList, InferJobRequest, InferJobStatus, JobAccepted, JobStatus, Latency, LedgerRoot,
    Peers, PorStats, Rewards, RunState, Standings, Status, TaskAccepted, TaskStatus,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::launch::Testnet;
use crate::{TestnetArgs, TestnetError};

/// With `--attack fake-job-tile`, how long the artist waits before submitting its job.
const FAKER_JOINS: Duration = Duration::from_secs(8);

/// After the run, a render job that finished no tile for this long is given up on.
const JOB_STALL: Duration = Duration::from_secs(20);
/// Kademlia's bucket size.
const KAD_K: usize = 20;
/// Time between two polls of every node, in a small network.
const POLL: Duration = Duration::from_millis(500);
/// Per node, once that is longer (1 s for 100 nodes): polling 100 nodes twice a second would
/// load the machine the network runs on (in process, the very runtime whose latency is being
/// measured).
const POLL_PER_NODE: Duration = Duration::from_millis(10);

/// Time between two polls of a network of `nodes`.
fn poll_every(nodes: usize) -> Duration {
    POLL.max(POLL_PER_NODE * nodes as u32)
}

/// What a node's `/peers` said, last time it answered.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub routing_table: BTreeSet<String>,
    pub connected: usize,
    pub heartbeat_peers: BTreeSet<String>,
    pub heartbeats_received: u64,
    pub ledger_root: String,
    pub ledger_entries: usize,
    /// When the node last appended an entry of its own (Unix ms; 0 = never).
    pub last_append_unix_ms: u64,
    /// Entries it authored.
    pub own_entries: usize,
}

/// Something node 0 accepted (a render job, a federated task) and its last reported state.
#[derive(Debug, Clone)]
pub struct Tracked<T> {
    pub id: String,
    /// As its API last reported it (none before the first answer).
    pub last: Option<T>,
}

impl<T> Tracked<T> {
    fn new(id: String) -> Self {
        Self { id, last: None }
    }
}

/// The result of watching a run.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Seconds until every running node had every other running node in its routing table.
    pub discovery_secs: Option<f64>,
    /// Seconds until every running node had heartbeats from every other running node.
    pub heartbeats_secs: Option<f64>,
    /// Last view of each node.
    pub views: Vec<Option<View>>,
    /// Whether each node's process was running at the end.
    pub alive: Vec<bool>,
    /// The run was cut short by Ctrl-C.
    pub interrupted: bool,
    pub elapsed_secs: f64,
    /// Unix ms of the first poll of the current streak in which every running node had the
    /// same ledger root.
    pub roots_equal_since_ms: Option<u64>,
    /// The render job submitted to node 0, as its API last reported it.
    pub job: Option<Tracked<JobStatus>>,
    /// Why the job could not be submitted.
    pub job_error: Option<String>,
    /// With `--render-compare`: the same job again under `schedule=fifo`, submitted once the
    /// first ended, and why it could not be.
    pub job_fifo: Option<Tracked<JobStatus>>,
    pub job_fifo_error: Option<String>,
    /// `GET /por/stats` of each verifier still running at the end, by node index.
    pub por: Vec<(usize, PorStats)>,
    /// `GET /por/standings` of node 0: the standing computed from its (converged) ledger.
    pub standings: Option<Standings>,
    /// The federated task started on node 0, as its API last reported it.
    pub fl: Option<Tracked<TaskStatus>>,
    /// Why the task could not be started.
    pub fl_error: Option<String>,
    /// The inference job submitted to node 0, as its API last reported it.
    pub infer: Option<Tracked<InferJobStatus>>,
    /// Why it could not be submitted.
    pub infer_error: Option<String>,
    /// `GET /fl` audits of each verifier still running at the end, by node index.
    pub fl_audits: Vec<(usize, AuditStats)>,
    /// The governance change proposed on node 0.
    pub gov: Option<GovRun>,
    /// Why it could not be proposed.
    pub gov_error: Option<String>,
    /// `GET /rewards` of each node still running at the end, by node index.
    pub rewards: Vec<(usize, Rewards)>,
    /// Restarts done: node, seconds into the run, its own entries before the kill, an error.
    pub restarts: Vec<Restart>,
    /// With `--owner-restart`: when the harness killed the job's owner.
    pub owner_restart: Option<OwnerRestart>,
    /// Tiles each node still running at the end rendered for job owners (its
    /// `ifx_render_tiles_total`), by node index.
    pub tiles_rendered: Vec<(usize, u64)>,
    /// Partitions done.
    pub partitions: Vec<PartitionRun>,
    /// Every poll: seconds into the run, distinct ledger roots among running nodes, most
    /// entries a node held (the HTML report's convergence chart).
    pub timeline: Vec<RootPoint>,
}

/// The governance change node 0 proposed, and how many nodes' votes were accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct GovRun {
    pub param: String,
    pub value: u64,
    pub from_epoch: u64,
    pub votes: usize,
}

/// A restart the harness did.
#[derive(Debug, Clone, Default)]
pub struct Restart {
    pub node: usize,
    pub at_secs: f64,
    /// Its own entries at the last poll before the kill.
    pub own_before: usize,
    pub error: Option<String>,
}

/// The job owner's kill and restart (`--owner-restart`).
#[derive(Debug, Clone, Default)]
pub struct OwnerRestart {
    /// Tiles the job had kept at the last poll before the kill, of its tiles.
    pub killed_at_tiles: usize,
    pub tiles: usize,
    pub killed_at_secs: f64,
    /// Why node 0 could not be started again.
    pub error: Option<String>,
}

/// A partition the harness applied and healed.
#[derive(Debug, Clone, Default)]
pub struct PartitionRun {
    pub group: Vec<usize>,
    pub cut_at_secs: f64,
    pub healed_at_secs: Option<f64>,
    /// Nodes whose API refused a block or unblock.
    pub unreachable: Vec<usize>,
    /// The running nodes' ledger roots differed at some poll during the partition.
    pub diverged: bool,
    /// Seconds from the heal until every running node had the same root.
    pub converged_after_secs: Option<f64>,
}

/// What the harness does at a moment of the run.
#[derive(Debug, Clone, Copy)]
enum Action {
    Kill(usize),
    Restart(usize),
    Cut(usize),
    Heal(usize),
}

/// Node 0 proposes the change from a few epochs ahead; every node votes yes.
async fn propose_gov(net: &Testnet, args: &TestnetArgs, param: &str, value: u64) -> Result<GovRun, TestnetError> {
    let api = net.nodes[0].api.ok_or_else(|| TestnetError::run("node 0 has no API"))?;
    let status: Status = get(&net.client, api, "status").await?;
    let now = status.epoch;
    // Short epochs: leave room for the proposal and the votes to be sealed before it applies.
    let from_epoch = now + 2 + if args.epoch_secs < 10 { 2 } else { 0 };
    let body =
        ifx_protocols::settle::Proposal { param: param.to_owned(), value, from_epoch, note: "ifx testnet".into() };
    let id = post_to_node0::<EntryAccepted>(net, "gov/proposals", &body, "proposal").await?.entry;
    let votes = net.nodes.iter().filter_map(|n| n.api.filter(|_| n.child.is_some()).map(|a| (a, n.api_token()))).map(
        |(api, token)| {
            let client = net.client.clone();
            let vote = serde_json::json!({ "proposal": id, "yes": true });
            async move {
                let r = client
                    .post(format!("http://{api}/gov/votes"))
                    .timeout(WRITE_TIMEOUT)
                    .bearer_auth(token)
                    .json(&vote)
                    .send()
                    .await
                    .ok()?;
                r.status().is_success().then_some(())
            }
        },
    );
    let accepted = futures::future::join_all(votes).await.into_iter().flatten().count();
    Ok(GovRun { param: param.to_owned(), value, from_epoch, votes: accepted })
}

async fn start_fl(net: &Testnet, args: &TestnetArgs) -> Result<String, TestnetError> {
    // Every worker is asked every round (poisoners included: screening, not luck, must keep
    // them out), so each honest non-IID shard counts in each round; a round closes at its
    // deadline without whoever is down.
    let honest = net.fl_shards;
    let workers = net.nodes.iter().filter(|n| n.fl_shard.is_some()).count() as u32;
    let spec = ifx_protocols::fl::wire::TaskSpec {
        rounds: args.fl_rounds,
        clients_per_round: workers.clamp(1, 64),
        over_select_pct: 0,
        min_clients: (honest / 2).max(1),
        // A private task needs fedavg (DP-FedAvg: the noise is calibrated to the plain mean).
        aggregator: if args.fl_dp_epsilon.is_some() { "fedavg".into() } else { args.fl_aggregator.clone() },
        dp: args.fl_dp_epsilon.map(|epsilon| ifx_protocols::fl::dp::DpSpec {
            epsilon,
            delta: ifx_protocols::fl::dp::DEFAULT_DELTA,
            clip: ifx_protocols::fl::dp::DEFAULT_CLIP,
        }),
        data: ifx_protocols::fl::wire::DataRule { shards: honest, alpha: 0.5, seed: 42 },
        // Drift correction sends gradients, which a private task keeps at home.
        scaffold: if args.fl_dp_epsilon.is_some() { 0.0 } else { args.fl_scaffold },
        deadline_ms: 10_000,
        ..Default::default()
    };
    Ok(post_to_node0::<TaskAccepted>(net, "fl", &spec, "task").await?.task_id)
}

/// GETs a node's `/{path}` as `T`.
pub(crate) async fn get<T: DeserializeOwned>(
    client: &reqwest::Client,
    api: std::net::SocketAddr,
    path: &str,
) -> Result<T, TestnetError> {
    let r = client.get(format!("http://{api}/{path}")).send().await.map_err(|e| TestnetError::run(e.to_string()))?;
    if !r.status().is_success() {
        return Err(TestnetError::run(format!("GET /{path}: {}", r.status())));
    }
    r.json().await.map_err(|e| TestnetError::run(format!("GET /{path}: {e}")))
}

/// POSTs `body` as JSON to a node's `/{path}` with its API token and reads the answer as
/// `T`; a refusal reads as the API's own error message.
pub(crate) async fn post<T: DeserializeOwned>(
    client: &reqwest::Client,
    api: std::net::SocketAddr,
    token: &str,
    path: &str,
    body: &impl Serialize,
    timeout: Duration,
) -> Result<T, String> {
    post_with(client, api, token, path, timeout, |r| r.json(body)).await
}

/// POSTs to a node's `/{path}` with its API token and the body `with` sets, and reads the
/// answer as `T`; a refusal reads as the API's own error message.
async fn post_with<T: DeserializeOwned>(
    client: &reqwest::Client,
    api: std::net::SocketAddr,
    token: &str,
    path: &str,
    timeout: Duration,
    with: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> Result<T, String> {
    let req = client.post(format!("http://{api}/{path}")).timeout(timeout).bearer_auth(token);
    let r = with(req).send().await.map_err(|e| format!("POST /{path}: {e}"))?;
    if !r.status().is_success() {
        let status = r.status();
        return Err(r.json::<ifx_protocols::api::ApiError>().await.map_or_else(|_| status.to_string(), |e| e.error));
    }
    r.json().await.map_err(|e| format!("POST /{path}: {e}"))
}

/// How long the harness waits for node 0 to answer a write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// POSTs `body` to node 0's `/{path}` and reads what it accepted as `T`.
async fn post_to_node0<T: DeserializeOwned>(
    net: &Testnet,
    path: &str,
    body: &impl Serialize,
    what: &str,
) -> Result<T, TestnetError> {
    let api = net.nodes[0].api.ok_or_else(|| TestnetError::run("node 0 has no API"))?;
    // A write signs an entry (a job's payment, a proposal) and waits for it to be durable,
    // and node 0 may first have to fetch its own chain from peers: under `--attack all` that
    // took longer than the polls' timeout. One request, so a long timeout costs nothing.
    post(&net.client, api, &net.nodes[0].api_token(), path, body, WRITE_TIMEOUT)
        .await
        .map_err(|why| TestnetError::run(format!("{what} refused: {why}")))
}

/// Refreshes what node 0 reports of `slot` from `/{path}/{id}`.
async fn refresh_from_node0<T: DeserializeOwned>(net: &Testnet, path: &str, slot: &mut Option<Tracked<T>>) {
    let (Some(api), Some(t)) = (net.nodes[0].api, slot.as_mut()) else { return };
    if let Ok(v) = get(&net.client, api, &format!("{path}/{}", t.id)).await {
        t.last = Some(v);
    }
}

async fn poll_fl(net: &Testnet, out: &mut Outcome) {
    refresh_from_node0(net, "fl", &mut out.fl).await;
}

fn fl_running(out: &Outcome) -> bool {
    out.fl.as_ref().is_some_and(|t| t.last.as_ref().is_none_or(|f| f.state == RunState::Running))
}

/// Publishes the run's CNN on node 0 and submits the inference job of its rows (paid; 32
/// rows a batch, so several workers share even a small job; 3% of batches re-executed
/// besides each worker's first).
async fn submit_infer(net: &Testnet) -> Result<String, TestnetError> {
    let work = net.infer.as_ref().ok_or_else(|| TestnetError::run("no inference work prepared"))?;
    let api = net.nodes[0].api.ok_or_else(|| TestnetError::run("node 0 has no API"))?;
    let token = net.nodes[0].api_token();
    let weights = work.weights.clone();
    let model = post_with(&net.client, api, &token, "infer/models?arch=cnn", WRITE_TIMEOUT, |r| r.body(weights))
        .await
        .map_err(|why| TestnetError::run(format!("the model was refused: {why}")))?;
    let req = InferJobRequest { model, inputs: work.inputs.clone(), batch_rows: 32, verify_ppm: 30_000, unpaid: false };
    Ok(post_to_node0::<TaskAccepted>(net, "infer", &req, "inference job").await?.task_id)
}

async fn poll_infer(net: &Testnet, out: &mut Outcome) {
    refresh_from_node0(net, "infer", &mut out.infer).await;
}

fn infer_running(out: &Outcome) -> bool {
    out.infer.as_ref().is_some_and(|t| t.last.as_ref().is_none_or(|j| j.state == RunState::Running))
}

async fn submit_job(net: &Testnet, args: &TestnetArgs) -> Result<String, TestnetError> {
    let mut spec = job_spec(args);
    if let Some(path) = &args.render_scene {
        // What `ifx render submit` does: load the scene here, upload it and what it read.
        let p = path.clone();
        let (scene, files) = tokio::task::spawn_blocking(move || ifx_render::load::package(&p))
            .await
            .map_err(|e| TestnetError::run(e.to_string()))?
            .map_err(|e| TestnetError::run(format!("--render-scene {}: {e}", path.display())))?;
        let api = net.nodes[0].api.ok_or_else(|| TestnetError::run("node 0 has no API"))?;
        for (a, bytes) in files {
            let body = bytes.to_vec();
            let kept: ifx_protocols::api::AssetKept =
                post_with(&net.client, api, &net.nodes[0].api_token(), "assets", WRITE_TIMEOUT, |r| r.body(body))
                    .await
                    .map_err(|why| TestnetError::run(format!("the asset {} refused: {why}", a.name)))?;
            if kept.hash != hex::encode(a.hash) {
                return Err(TestnetError::run(format!("node 0 kept {} as {}", a.name, kept.hash)));
            }
            spec.assets.push(a);
        }
        spec.scene = scene;
    }
    Ok(post_to_node0::<JobAccepted>(net, "jobs", &spec, "job").await?.job_id)
}

/// The run's render job (its scene file's assets, with `--render-scene`, are added as they
/// are uploaded).
fn job_spec(args: &TestnetArgs) -> ifx_protocols::render::job::JobSpec {
    ifx_protocols::render::job::JobSpec {
        scene: "cornell".into(),
        scene_toml: None,
        assets: Vec::new(),
        width: args.render_size,
        height: args.render_size,
        spp: args.render_spp,
        max_bounces: 6,
        tile: 32,
        // Node 0, the testnet's artist, pays for its job (issue #21: unpaid work earns nothing).
        unpaid: false,
        frames: match args.render_frames {
            Some((first, last)) => ifx_protocols::render::job::Frames { first, last, fps: args.render_fps },
            None => Default::default(),
        },
    }
}

/// Polls the render job; with `--render-compare`, once it ended, submits the same job to be
/// handed out first come first served (unpaid: it is a measurement, not the artist's work)
/// and polls that one.
async fn poll_job(net: &Testnet, args: &TestnetArgs, out: &mut Outcome) {
    refresh_from_node0(net, "jobs", &mut out.job).await;
    let first_ended = out.job.as_ref().and_then(|t| t.last.as_ref()).is_some_and(|j| j.state != RunState::Running);
    if args.render_compare && first_ended && out.job_fifo.is_none() && out.job_fifo_error.is_none() {
        let first = out.job.as_ref().and_then(|t| t.last.as_ref()).map(|j| j.spec.clone());
        let spec = ifx_protocols::render::job::JobSpec { unpaid: true, ..first.unwrap_or_else(|| job_spec(args)) };
        match post_to_node0::<JobAccepted>(net, "jobs?schedule=fifo", &spec, "the fifo job").await {
            Ok(a) => out.job_fifo = Some(Tracked::new(a.job_id)),
            Err(e) => out.job_fifo_error = Some(e.to_string()),
        }
    }
    refresh_from_node0(net, "jobs", &mut out.job_fifo).await;
}

fn job_running(args: &TestnetArgs, out: &Outcome) -> bool {
    let running = |t: &Option<Tracked<JobStatus>>| {
        t.as_ref().is_some_and(|t| t.last.as_ref().is_none_or(|j| j.state == RunState::Running))
    };
    let fifo_pending =
        args.render_compare && out.job.is_some() && out.job_fifo.is_none() && out.job_fifo_error.is_none();
    running(&out.job) || running(&out.job_fifo) || fifo_pending
}

/// Submits the run's work to node 0: the render job, the federated task, the governance
/// proposal (a failure is kept for the report).
async fn submit_work(net: &Testnet, args: &TestnetArgs, out: &mut Outcome) {
    if args.render_size > 0 && args.render_spp > 0 {
        match submit_job(net, args).await {
            Ok(id) => out.job = Some(Tracked::new(id)),
            Err(e) => out.job_error = Some(e.to_string()),
        }
    }
    if net.fl_data.is_some() {
        match start_fl(net, args).await {
            Ok(id) => out.fl = Some(Tracked::new(id)),
            Err(e) => out.fl_error = Some(e.to_string()),
        }
    }
    if let Ok(Some((param, value))) = args.gov() {
        match propose_gov(net, args, &param, value).await {
            Ok(g) => out.gov = Some(g),
            Err(e) => out.gov_error = Some(e.to_string()),
        }
    }
}

/// Polls until the duration is over, applying the scheduled kills.
pub async fn watch(net: &mut Testnet, args: &TestnetArgs) -> Outcome {
    let mut out = Outcome { views: vec![None; net.nodes.len()], ..Default::default() };
    // With `--attack fake-job-tile` the faking worker must be in the mesh, heard as a worker,
    // before the artist's job hands out its tiles (it joins in a few seconds, like any
    // attacker): the work goes in then, and the network is watched meanwhile.
    let fake_tile = args.attacks().unwrap_or_default().contains(&crate::attacks::Attack::FakeJobTile);
    // (Never past the run's end: a run shorter than that submits at its last poll.)
    let last_poll = Duration::from_secs(args.duration).saturating_sub(poll_every(net.nodes.len()));
    let asked = Duration::from_secs(args.job_at);
    let mut submit_at = Some(if fake_tile { FAKER_JOINS.max(asked) } else { asked }.min(last_poll));
    let mut infer_pending = net.infer.is_some();
    let mut schedule: Vec<(Duration, Action)> = args.kills.iter().map(|k| (k.at, Action::Kill(k.node))).collect();
    schedule.extend(args.restarts.iter().map(|r| (r.at, Action::Restart(r.node))));
    for (i, p) in args.partitions.iter().enumerate() {
        schedule.push((p.from, Action::Cut(i)));
        schedule.push((p.to, Action::Heal(i)));
    }
    schedule.sort_by_key(|(at, _)| *at);
    let bar = progress(args);
    let (mut polls, mut sealed) = (0u64, 0usize);
    let end = Duration::from_secs(args.duration);
    loop {
        let elapsed = net.t0.elapsed();
        if elapsed >= end {
            break;
        }
        while let Some((_, action)) = schedule.first().copied().filter(|(at, _)| *at <= elapsed) {
            schedule.remove(0);
            apply(net, args, &mut out, action, &bar).await;
        }
        if submit_at.is_some_and(|at| at <= elapsed) {
            submit_at = None;
            submit_work(net, args, &mut out).await;
        }
        // The inference job goes in once node 0 has heard every worker (it sends batches to
        // the workers whose heartbeats it holds, and a short job ends in a few seconds: a
        // cheater not yet heard would get no batch to be caught on), or at the last poll.
        if infer_pending && submit_at.is_none() && (out.heartbeats_secs.is_some() || elapsed >= last_poll) {
            infer_pending = false;
            match submit_infer(net).await {
                Ok(id) => out.infer = Some(Tracked::new(id)),
                Err(e) => out.infer_error = Some(e.to_string()),
            }
        }
        net.reap();
        poll_views(net, &mut out.views).await;
        track_roots(net, &mut out);
        poll_job(net, args, &mut out).await;
        restart_owner(net, args, &mut out, &bar).await;
        poll_fl(net, &mut out).await;
        poll_infer(net, &mut out).await;
        let (running, discovered, heard) = track_coverage(net, &mut out, &bar);
        bar.set_position(elapsed.as_secs().min(args.duration));
        let job = match out.job.as_ref().map(|t| t.last.as_ref()) {
            Some(Some(j)) => format!(" · render {}/{}", j.tiles_done, j.tiles),
            Some(None) => " · render 0/?".into(),
            None => String::new(),
        };
        let infer = match out.infer.as_ref().map(|t| t.last.as_ref()) {
            Some(j) => format!(
                " · infer {}/{}",
                j.map_or(0, |j| j.batches_done),
                j.map_or("?".into(), |j| j.batches.to_string())
            ),
            None => String::new(),
        };
        let fl = match out.fl.as_ref().map(|t| t.last.as_ref()) {
            Some(f) => format!(
                " · fl round {}/{} acc {:.3}",
                f.map_or(0, |f| f.rounds_done),
                args.fl_rounds,
                f.and_then(|f| f.accuracy_by_round.last().copied()).unwrap_or(0.0)
            ),
            None => String::new(),
        };
        // Epochs sealed, as node 0 settles them (every 2 s: it recomputes the settlement).
        polls += 1;
        if polls % 4 == 1
            && let Some(api) = net.nodes[0].api.filter(|_| net.nodes[0].child.is_some())
            && let Ok(v) = get::<Rewards>(&net.client, api, "rewards").await
        {
            sealed = v.sealed().len();
        }
        bar.set_message(format!(
            "alive {running}/{} · discovered all {discovered}/{running} · heard all {heard}/{running} · sealed {sealed}{job}{infer}{fl}",
            net.nodes.len(),
        ));
        if crate::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            out.interrupted = true;
            bar.println("interrupted: stopping the network");
            break;
        }
        let next = (net.t0 + elapsed + poll_every(net.nodes.len())).min(net.t0 + end);
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = tokio::signal::ctrl_c() => {
                out.interrupted = true;
                bar.println("interrupted: stopping the network");
                break;
            }
        }
    }
    bar.finish_and_clear();
    net.reap();
    out.alive = net.nodes.iter().map(|n| n.child.is_some()).collect();
    out.elapsed_secs = net.elapsed();
    out
}

/// Notes when discovery and heartbeat coverage first became complete; returns the running
/// nodes, how many know enough peers, and how many hear every other node.
fn track_coverage(net: &Testnet, out: &mut Outcome, bar: &ProgressBar) -> (usize, usize, usize) {
    let running: Vec<usize> = (0..net.nodes.len()).filter(|&i| net.nodes[i].child.is_some()).collect();
    let ids: Vec<&str> = running.iter().map(|&i| net.nodes[i].peer_id.as_str()).collect();
    let covers = |set: &dyn Fn(&View) -> &BTreeSet<String>, i: usize| {
        out.views[i]
            .as_ref()
            .is_some_and(|v| ids.iter().filter(|id| **id != net.nodes[i].peer_id).all(|id| set(v).contains(*id)))
    };
    // Kademlia keeps at most K = 20 peers per bucket, so in a large network a node's table
    // cannot hold everyone: discovery is complete when each table holds every other running
    // node, or K of them. Behind NAT a node is a DHT client, in no one's table: in a run of
    // network namespaces only the public nodes count.
    let servers: Vec<&str> = running
        .iter()
        .filter(|&&i| net.netns.as_ref().is_none_or(|ns| ns.placements[i].nat.is_none()))
        .map(|&i| net.nodes[i].peer_id.as_str())
        .collect();
    let known = |i: usize| {
        out.views[i].as_ref().map_or(0, |v| {
            servers.iter().filter(|id| **id != net.nodes[i].peer_id && v.routing_table.contains(**id)).count()
        })
    };
    let want = |i: usize| servers.iter().filter(|id| **id != net.nodes[i].peer_id).count().min(KAD_K);
    let discovered = running.iter().filter(|&&i| known(i) >= want(i)).count();
    let heard = running.iter().filter(|&&i| covers(&|v| &v.heartbeat_peers, i)).count();
    if out.discovery_secs.is_none() && discovered == running.len() {
        out.discovery_secs = Some(net.elapsed());
        bar.println(format!("discovery complete at {:.1}s", net.elapsed()));
    }
    if out.heartbeats_secs.is_none() && heard == running.len() {
        out.heartbeats_secs = Some(net.elapsed());
        bar.println(format!("every node hears every other at {:.1}s", net.elapsed()));
    }
    (running.len(), discovered, heard)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Whether every running node answered with the same ledger root.
fn roots_equal(net: &Testnet, views: &[Option<View>]) -> bool {
    let mut roots = (0..net.nodes.len())
        .filter(|&i| net.nodes[i].child.is_some())
        .map(|i| views[i].as_ref().map(|v| v.ledger_root.as_str()));
    match roots.next() {
        Some(Some(first)) => roots.all(|r| r == Some(first)),
        _ => false,
    }
}

fn track_roots(net: &Testnet, out: &mut Outcome) {
    let equal = roots_equal(net, &out.views);
    let running: Vec<&View> =
        (0..net.nodes.len()).filter(|&i| net.nodes[i].child.is_some()).filter_map(|i| out.views[i].as_ref()).collect();
    let distinct = running.iter().map(|v| v.ledger_root.as_str()).collect::<BTreeSet<_>>().len();
    let entries = running.iter().map(|v| v.ledger_entries).max().unwrap_or(0);
    out.timeline.push((net.elapsed(), distinct, entries));
    if equal {
        out.roots_equal_since_ms.get_or_insert_with(unix_ms);
    } else {
        out.roots_equal_since_ms = None;
    }
    let now = net.elapsed();
    for p in &mut out.partitions {
        match p.healed_at_secs {
            None => p.diverged |= !equal,
            Some(healed) if equal && p.converged_after_secs.is_none() => p.converged_after_secs = Some(now - healed),
            Some(_) => {}
        }
    }
}

/// With `--owner-restart`, once node 0's job has kept half its tiles: SIGKILL node 0 and start
/// it again a second later (once).
async fn restart_owner(net: &mut Testnet, args: &TestnetArgs, out: &mut Outcome, bar: &ProgressBar) {
    if !args.owner_restart || out.owner_restart.is_some() {
        return;
    }
    let Some(j) = out.job.as_ref().and_then(|t| t.last.as_ref()) else { return };
    if j.state != RunState::Running || j.tiles_done * 2 < j.tiles {
        return;
    }
    let (killed_at_tiles, tiles) = (j.tiles_done, j.tiles);
    bar.println(format!("fault: SIGKILL the job's owner (node 0) at {killed_at_tiles}/{tiles} tiles"));
    apply(net, args, out, Action::Kill(0), bar).await;
    let killed_at_secs = net.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    apply(net, args, out, Action::Restart(0), bar).await;
    let error = out.restarts.iter().rev().find(|r| r.node == 0).and_then(|r| r.error.clone());
    out.owner_restart = Some(OwnerRestart { killed_at_tiles, tiles, killed_at_secs, error });
}

/// Each running node's `ifx_render_tiles_total`, by node index.
async fn tiles_rendered(net: &Testnet) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    for (i, n) in net.nodes.iter().enumerate() {
        let Some(api) = n.api.filter(|_| n.child.is_some()) else { continue };
        let text = match net.client.get(format!("http://{api}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => continue,
        };
        let count = text.lines().find_map(|l| l.strip_prefix("ifx_render_tiles_total ")?.trim().parse().ok());
        if let Some(c) = count {
            out.push((i, c));
        }
    }
    out
}

/// Does one scheduled fault.
async fn apply(net: &mut Testnet, args: &TestnetArgs, out: &mut Outcome, action: Action, bar: &ProgressBar) {
    match action {
        Action::Kill(i) => {
            bar.println(format!("fault: SIGKILL node {i} at {:.1}s", net.elapsed()));
            let own = out.views[i].as_ref().map_or(0, |v| v.own_entries);
            net.kill(i).await;
            out.restarts.push(Restart { node: i, own_before: own, ..Default::default() });
        }
        Action::Restart(i) => {
            bar.println(format!("fault: restart node {i} at {:.1}s", net.elapsed()));
            let result = net.restart(i).await;
            // The entry the kill opened for this node.
            if let Some(r) = out.restarts.iter_mut().rev().find(|r| r.node == i && r.at_secs == 0.0) {
                r.at_secs = net.elapsed();
                r.error = result.err().map(|e| e.to_string());
            }
        }
        Action::Cut(p) => {
            let group = args.partitions[p].group.clone();
            bar.println(format!("fault: partition {group:?} from the rest at {:.1}s", net.elapsed()));
            let unreachable = net.partition(&group, true).await;
            out.partitions.push(PartitionRun { group, cut_at_secs: net.elapsed(), unreachable, ..Default::default() });
        }
        Action::Heal(p) => {
            let group = args.partitions[p].group.clone();
            bar.println(format!("fault: heal partition {group:?} at {:.1}s", net.elapsed()));
            let unreachable = net.partition(&group, false).await;
            if let Some(run) = out.partitions.iter_mut().find(|r| r.group == group && r.healed_at_secs.is_none()) {
                run.healed_at_secs = Some(net.elapsed());
                run.unreachable.extend(unreachable);
            }
        }
    }
}

/// After the run: polls until the render job has ended (as long as it keeps finishing tiles,
/// [`JOB_STALL`] without one, 120 s at most) and (up to 120 s) the
/// federated task; with cheaters in the run, also (up to two epochs and the seal grace) until
/// every cheater is slashed in a sealed epoch (a cheater caught in the run's last epoch is
/// slashed only once that epoch is sealed, after the run). Then (up to 10 s; 250 ms per node
/// and two epochs in a bigger network) until every running node has the same ledger root; FL
/// receipts written meanwhile must converge too.
pub async fn settle(net: &mut Testnet, args: &TestnetArgs, mut out: Outcome) -> Outcome {
    let start = std::time::Instant::now();
    let mut fl_end = None;
    let cheaters: BTreeSet<String> = net
        .nodes
        .iter()
        .filter(|n| n.cheat.is_some() || n.infer_cheat.is_some())
        .map(|n| n.public_key.clone())
        .collect();
    let epoch_ms = args.epoch_secs * 1000;
    // The nodes run with the default seal grace (the testnet's network.toml does not set it).
    let seal_grace_ms =
        ifx_protocols::NetworkConfig { epoch_secs: args.epoch_secs, ..Default::default() }.seal_grace_ms();
    let slash_wait = Duration::from_millis(2 * epoch_ms + seal_grace_ms + 2000);
    let mut slashed_all = cheaters.is_empty();
    let mut slash_polled: Option<std::time::Instant> = None;
    let mut rest_done: Option<std::time::Instant> = None;
    let mut job_progress = (0usize, std::time::Instant::now());
    // Gossip takes longer to reach every node of a big network (10 s up to 16 nodes), and the
    // verifiers keep writing: every node holds the same set only in a quiet moment, which may
    // come once an epoch (near its end, after the last re-seal).
    let roots_wait = Duration::from_millis(250 * net.nodes.len() as u64 + 2 * epoch_ms).max(Duration::from_secs(10));
    loop {
        net.reap();
        poll_views(net, &mut out.views).await;
        track_roots(net, &mut out);
        // A big network may complete these only now (its start took a while).
        track_coverage(net, &mut out, &ProgressBar::hidden());
        poll_job(net, args, &mut out).await;
        restart_owner(net, args, &mut out, &ProgressBar::hidden()).await;
        poll_fl(net, &mut out).await;
        poll_infer(net, &mut out).await;
        // A job still finishing tiles is waited for (a loaded machine renders slowly, and the
        // verdict must not fail a healthy network for it); one that stalls is given up on.
        let tiles: usize =
            [&out.job, &out.job_fifo].iter().filter_map(|t| t.as_ref()?.last.as_ref()).map(|j| j.tiles_done).sum();
        if tiles > job_progress.0 {
            job_progress = (tiles, std::time::Instant::now());
        }
        let job_done = (!job_running(args, &out) || job_progress.1.elapsed() > JOB_STALL)
            && (!infer_running(&out) || start.elapsed() > JOB_STALL)
            || start.elapsed() > Duration::from_secs(120);
        if !fl_running(&out) && fl_end.is_none() {
            fl_end = Some(std::time::Instant::now());
            // Equality seen before the last receipts were written does not count.
            out.roots_equal_since_ms = None;
            continue;
        }
        let fl_done = fl_end.is_some() || start.elapsed() > Duration::from_secs(120);
        // Once a second (each request recomputes the settlement): slashed in a sealed epoch yet?
        if !slashed_all
            && start.elapsed() < slash_wait
            && slash_polled.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            slash_polled = Some(std::time::Instant::now());
            slashed_all = sealed_slashes(net).await.is_some_and(|s| cheaters.is_subset(&s));
        }
        let slash_done = slashed_all || start.elapsed() > slash_wait;
        if job_done && fl_done && slash_done {
            rest_done.get_or_insert_with(std::time::Instant::now);
        }
        // Roots are compared once nothing else is awaited (no more receipts coming), for up to
        // `roots_wait` after that: the network keeps writing (attestations, seals) meanwhile,
        // so the run ends on a moment its roots are equal if one comes.
        let done = rest_done.is_some_and(|t| out.roots_equal_since_ms.is_some() || t.elapsed() > roots_wait)
            || start.elapsed() > Duration::from_secs(130) + slash_wait;
        if done || out.interrupted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out.alive = net.nodes.iter().map(|n| n.child.is_some()).collect();
    out.tiles_rendered = tiles_rendered(net).await;
    for (i, n) in net.nodes.iter().enumerate() {
        if n.role == "verifier"
            && n.child.is_some()
            && let Some(api) = n.api
            && let Ok(v) = get::<PorStats>(&net.client, api, "por/stats").await
        {
            out.por.push((i, v));
        }
    }
    for (i, n) in net.nodes.iter().enumerate() {
        if n.role == "verifier"
            && n.child.is_some()
            && let Some(api) = n.api
            && let Ok(v) = get::<FlList>(&net.client, api, "fl").await
        {
            out.fl_audits.push((i, v.audits));
        }
    }
    if let Some(api) = net.nodes[0].api.filter(|_| net.nodes[0].child.is_some()) {
        out.standings = get(&net.client, api, "por/standings").await.ok();
    }
    // Settlements, read from every running node at one moment (their ledgers have converged).
    let polls =
        net.nodes.iter().enumerate().filter(|(_, n)| n.child.is_some()).filter_map(|(i, n)| n.api.map(|a| (i, a))).map(
            |(i, api)| {
                let client = net.client.clone();
                async move { Some((i, get::<Rewards>(&client, api, "rewards").await.ok()?)) }
            },
        );
    out.rewards = futures::future::join_all(polls).await.into_iter().flatten().collect();
    out
}

/// The keys slashed in the epochs the first running node has sealed.
async fn sealed_slashes(net: &Testnet) -> Option<BTreeSet<String>> {
    let api = net.nodes.iter().find(|n| n.child.is_some())?.api?;
    let v: Rewards = get(&net.client, api, "rewards").await.ok()?;
    Some(v.sealed().into_values().flat_map(|e| e.slashed.iter().cloned()).collect())
}

fn progress(args: &TestnetArgs) -> ProgressBar {
    let bar = ProgressBar::new(args.duration);
    if args.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len}s {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar
}

async fn poll_views(net: &Testnet, views: &mut [Option<View>]) {
    let polls = net.nodes.iter().map(|n| {
        let client = net.client.clone();
        let api = n.api.filter(|_| n.child.is_some());
        async move {
            let api = api?;
            let p: Peers = get(&client, api, "peers").await.ok()?;
            let l: LedgerRoot = get(&client, api, "ledger/root").await.ok()?;
            Some(View {
                routing_table: p.routing_table.into_iter().collect(),
                connected: p.connected.len(),
                heartbeats_received: p.heartbeats.iter().map(|h| h.received).sum(),
                heartbeat_peers: p.heartbeats.into_iter().map(|h| h.peer_id).collect(),
                ledger_root: l.root,
                ledger_entries: l.entries,
                last_append_unix_ms: l.last_append_unix_ms,
                own_entries: l.own_entries,
            })
        }
    });
    for (slot, v) in views.iter_mut().zip(futures::future::join_all(polls).await) {
        if v.is_some() {
            *slot = v;
        }
    }
}

/// Heartbeat publish-to-receipt samples (µs) of each node (`None`: not running or no answer).
pub async fn collect_latency_per_node(net: &Testnet) -> Vec<Option<Vec<u64>>> {
    let polls = net.nodes.iter().map(|n| {
        let client = net.client.clone();
        let api = n.api.filter(|_| n.child.is_some());
        async move {
            let l: Latency = get(&client, api?, "heartbeats/latency").await.ok()?;
            Some(l.samples_us)
        }
    });
    futures::future::join_all(polls).await
}

/// One poll of the ledger roots: seconds into the run, distinct roots among running nodes,
/// most entries any node held.
pub type RootPoint = (f64, usize, usize);
