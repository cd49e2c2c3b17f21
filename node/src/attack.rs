//! Hostile peers you can run (`ifx attack`, started by `ifx testnet --attack NAME`): each
//! attack of issue #16 as a real peer built from this crate's network stack and the
//! protocol crate's messages, so that anyone can rerun what the node must survive. An attacker
//! speaks the network's protocols (it is a peer like any other) and sends what an honest node
//! never would; at the end it writes what it sent and how the targets answered.
//!
//! This is test tooling shipped in the binary like `ifx testnet`; a node never runs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use ifx_protocols::ledger::entry::GENESIS_PREV;
use ifx_protocols::ledger::{Entry, EntryKind};
use ifx_protocols::{Kind, SignedEnvelope};
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::NodeConfig;
use crate::identity::Identity;
use crate::network::{NetHandle, Proto, event_loop};

pub use ifx_testnet::attacks::{ALL, Attack};

/// What an attacker did, written as JSON at the end.
#[derive(Debug, Default, Serialize)]
pub struct AttackStats {
    pub attack: String,
    /// Messages published or requests sent.
    pub sent: u64,
    /// Requests that came back with an answer, by answer.
    pub answers: BTreeMap<String, u64>,
    /// Requests that failed (refused streams, timeouts, closed connections).
    pub failed: u64,
    /// Sync requests received and left unanswered (`sync-stall`).
    pub stalled: u64,
    /// Attacker peer ids connected to a target at the end, the fewest of five looks (`eclipse`).
    pub connected_at_end: u64,
    pub seconds: f64,
}

/// Where to attack from and whom.
pub struct Plan {
    pub attack: Attack,
    /// The network config every node of the run shares.
    pub config: PathBuf,
    pub data_dir: PathBuf,
    /// A peer to join the network through.
    pub bootnode: String,
    /// The peers attacked directly (request attacks, eclipse); gossip reaches everyone.
    pub targets: Vec<Multiaddr>,
    pub duration: Duration,
}

fn load_config(plan: &Plan, dir: &Path, bootnode: &str) -> anyhow::Result<NodeConfig> {
    let mut cfg = NodeConfig::load(Some(&plan.config), &Default::default())?;
    cfg.node.data_dir = dir.to_path_buf();
    cfg.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    cfg.node.api = String::new();
    cfg.network.bootnodes = vec![bootnode.to_owned()];
    cfg.network.id = cfg.network.wire_id();
    Ok(cfg)
}

/// One attacker peer on the network: its handle, and its inbound queues drained (sync
/// requests held unanswered when `hold_sync`).
async fn peer(
    plan: &Plan,
    dir: &Path,
    bootnode: &str,
    hold_sync: bool,
    stalled: std::sync::Arc<std::sync::atomic::AtomicU64>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(NetHandle, NodeConfig, SigningKey)> {
    std::fs::create_dir_all(dir)?;
    let id = Identity::load_or_create(dir)?;
    let cfg = load_config(plan, dir, bootnode)?;
    let mut registry = prometheus_client::registry::Registry::default();
    let started = event_loop::start(&id, &cfg, &mut registry, None, shutdown.child_token()).await?;
    let handle = started.handle.clone();
    let mut inbound = started.inbound;
    tokio::spawn(async move { while inbound.recv().await.is_some() {} });
    let mut sync = started.sync_inbound;
    tokio::spawn(async move {
        let mut held = std::collections::VecDeque::new();
        while let Some(r) = sync.recv().await {
            if hold_sync {
                stalled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                held.push_back((Instant::now(), r));
                // The requester's own timeout ends each; the memory of the held ones is bounded.
                while held.front().is_some_and(|(t, _)| t.elapsed() > Duration::from_secs(40)) || held.len() > 256 {
                    held.pop_front();
                }
            }
        }
    });
    for mut rx in
        [started.render_inbound, started.blob_inbound, started.por_inbound, started.fl_inbound, started.infer_inbound]
    {
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
    }
    Ok((handle, cfg, id.signing_key().clone()))
}

fn answer_name(
    r: &Result<Result<Vec<u8>, crate::network::RequestFailed>, crate::network::NetworkStopped>,
    proto: Proto,
) -> Option<String> {
    let bytes = r.as_ref().ok()?.as_ref().ok()?;
    Some(match proto {
        Proto::Por => match ifx_protocols::por::wire::Response::decode(bytes) {
            Ok(ifx_protocols::por::wire::Response::Busy(_)) => "por:busy".into(),
            Ok(ifx_protocols::por::wire::Response::Refused(_)) => "por:refused".into(),
            Ok(_) => "por:answered".into(),
            Err(_) => "por:undecodable".into(),
        },
        Proto::Render => match ifx_protocols::render::job::TileResponse::decode(bytes) {
            Ok(t) if t.error.is_empty() => "render:pixels".into(),
            Ok(_) => "render:refused".into(),
            Err(_) => "render:undecodable".into(),
        },
        Proto::Fl => "fl:answered".into(),
        Proto::Infer => "infer:answered".into(),
        Proto::LedgerSync => "sync:answered".into(),
        Proto::Link => "link:answered".into(),
        Proto::Blob => "blob:answered".into(),
    })
}

/// Runs `plan` until its duration ends; returns what was done.
pub async fn run(plan: Plan) -> anyhow::Result<AttackStats> {
    let shutdown = CancellationToken::new();
    let stalled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut stats = AttackStats { attack: plan.attack.name().into(), ..Default::default() };
    let targets: Vec<PeerId> = plan.targets.iter().filter_map(crate::network::peer_of).collect();
    let deadline = started + plan.duration;
    let live = || Instant::now() < deadline;

    if plan.attack == Attack::Eclipse {
        let mut handles = Vec::new();
        for i in 0..64 {
            let dir = plan.data_dir.join(format!("id{i}"));
            // The target is the bootnode: every id dials it straight away.
            let target = plan.targets.first().map(|t| t.to_string()).unwrap_or_else(|| plan.bootnode.clone());
            let (h, _, _) = peer(&plan, &dir, &target, false, stalled.clone(), &shutdown).await?;
            handles.push(h);
            stats.sent += 1;
        }
        while deadline.saturating_duration_since(Instant::now()) > Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The ids the victim keeps: the fewest connected over five looks half a second apart
        // (a refused id is connected for the moment between its handshake and the victim's
        // close, and its bootnode redial brings it back now and then).
        let mut fewest = u64::MAX;
        for _ in 0..5 {
            let mut n = 0;
            for h in &handles {
                if let Ok(s) = h.snapshot().await
                    && s.connected.iter().any(|p| targets.iter().any(|t| t.to_string() == p.peer_id))
                {
                    n += 1;
                }
            }
            fewest = fewest.min(n);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        stats.connected_at_end = fewest;
        stats.seconds = started.elapsed().as_secs_f64();
        shutdown.cancel();
        return Ok(stats);
    }

    if plan.attack == Attack::SelfDeal {
        return self_deal(&plan, started, deadline, stats).await;
    }
    if plan.attack == Attack::FakeJobTile {
        return fake_job_tile(&plan, started, deadline, stats).await;
    }

    let hold = plan.attack == Attack::SyncStall;
    let (net, cfg, key) = peer(&plan, &plan.data_dir, &plan.bootnode, hold, stalled.clone(), &shutdown).await?;
    let net_id = cfg.network.id.clone();
    // Let the attacker join the mesh before it starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let epoch = || cfg.network.epoch_at(crate::unix_time_us() / 1000);
    let publish = async |kind: Kind, body: Vec<u8>, key: &SigningKey| {
        if let Ok(env) = SignedEnvelope::sign(key, &net_id, kind, epoch(), body) {
            let _ = net.publish(kind, env.encode()).await;
        }
    };

    match plan.attack {
        Attack::HbOverflow => {
            let mut i = 0u64;
            while live() {
                let seq = match i % 4 {
                    0 => u64::MAX,
                    1 => u64::MAX - 1,
                    _ => rand::random(),
                };
                let hb = ifx_protocols::heartbeat::Heartbeat {
                    boot_unix_ms: if i % 8 < 4 { 1 } else { rand::random() },
                    seq,
                    sent_unix_us: if i.is_multiple_of(3) { u64::MAX } else { crate::unix_time_us() },
                    role: ifx_protocols::Role::Worker,
                    capacity: ifx_protocols::heartbeat::Capacity {
                        backend: "x".repeat(64),
                        adapter: "attacker".into(),
                        device_type: "other".into(),
                        cores: u32::MAX,
                        memory_mb: u64::MAX,
                    },
                    uptime_secs: u64::MAX,
                    version: "hostile".into(),
                    paused: false,
                };
                publish(Kind::Heartbeat, hb.encode(), &key).await;
                // Garbage and a forged signature too (a fresh key's envelope, re-signed badly).
                if i.is_multiple_of(5) {
                    let _ = net.publish(Kind::Heartbeat, (0..300).map(|_| rand::random::<u8>()).collect()).await;
                }
                stats.sent += 1;
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Attack::ChallengeFlood => {
            let scene = ifx_render::builtin::cornell().to_wire();
            while live() {
                for t in &targets {
                    let reqs = challenge_burst(&scene);
                    let answers =
                        futures::future::join_all(reqs.into_iter().map(|r| net.request(Proto::Por, *t, r.encode())))
                            .await;
                    tally(&mut stats, answers, Proto::Por);
                }
            }
        }
        Attack::WorkFlood => {
            use ifx_protocols::render::job::{JobSpec, TileRequest};
            let spec = |w: u32, h: u32| JobSpec {
                scene: "cornell".into(),
                scene_toml: None,
                assets: Vec::new(),
                width: w,
                height: h,
                spp: 65_536,
                max_bounces: 64,
                tile: 8192,
                unpaid: true,
                frames: Default::default(),
            };
            while live() {
                for t in &targets {
                    let mut reqs: Vec<(Proto, Vec<u8>)> = vec![
                        (
                            Proto::Render,
                            TileRequest { job: rand::random(), spec: spec(8192, 8192), tile: [0, 0, 8192, 8192] }
                                .encode(),
                        ),
                        (
                            Proto::Render,
                            TileRequest { job: rand::random(), spec: spec(64, 64), tile: [u32::MAX - 1, 0, 16, 16] }
                                .encode(),
                        ),
                        (Proto::Por, ifx_protocols::por::wire::Request::Bench { seed: rand::random() }.encode()),
                    ];
                    for _ in 0..4 {
                        reqs.push((
                            Proto::Fl,
                            ifx_protocols::fl::wire::FlRequest::Train {
                                control: None,
                                task: rand::random(),
                                round: 0,
                                spec: Default::default(),
                                global: rand::random(),
                                len: u32::MAX,
                            }
                            .encode(),
                        ));
                    }
                    let net = &net;
                    let answers = futures::future::join_all(
                        reqs.into_iter().map(|(p, b)| async move { (p, net.request(p, *t, b).await) }),
                    )
                    .await;
                    for (p, a) in answers {
                        tally(&mut stats, vec![a], p);
                    }
                }
            }
        }
        Attack::ForkBomb => {
            let genesis = Entry::sign(&key, &net_id, 0, GENESIS_PREV, epoch(), EntryKind::Unknown(900), vec![])
                .expect("small body");
            publish(Kind::LedgerEntry, genesis.encode(), &key).await;
            let mut i = 0u64;
            while live() {
                let sib = Entry::sign(
                    &key,
                    &net_id,
                    1,
                    genesis.id(),
                    epoch(),
                    EntryKind::Unknown(900),
                    i.to_le_bytes().to_vec(),
                )
                .expect("small body");
                let child = Entry::sign(&key, &net_id, 2, sib.id(), epoch(), EntryKind::Unknown(900), vec![1])
                    .expect("small body");
                publish(Kind::LedgerEntry, sib.encode(), &key).await;
                publish(Kind::LedgerEntry, child.encode(), &key).await;
                stats.sent += 2;
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Attack::AuthorFlood => {
            while live() {
                let fresh = SigningKey::from_bytes(&rand::random());
                let e = Entry::sign(&fresh, &net_id, 0, GENESIS_PREV, epoch(), EntryKind::Unknown(901), vec![0; 64])
                    .expect("small body");
                publish(Kind::LedgerEntry, e.encode(), &fresh).await;
                stats.sent += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Attack::SyncStall => {
            use ifx_protocols::ledger::{AuthorSummary, SyncRequest};
            while live() {
                for t in &targets {
                    let req = SyncRequest {
                        after: None,
                        until: None,
                        // Claims of chains it does not have: the responder sends whole chains.
                        summaries: (0..64)
                            .map(|_| AuthorSummary {
                                author: rand::random(),
                                len: u64::MAX,
                                tip: rand::random(),
                                fork: 1,
                            })
                            .collect(),
                        max_bytes: u32::MAX,
                        resume: Some((rand::random(), u64::MAX)),
                    };
                    let a = net.request(Proto::LedgerSync, *t, req.encode()).await;
                    tally(&mut stats, vec![a], Proto::LedgerSync);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Attack::ForgedReceipt => {
            use ifx_protocols::ledger::{JobPayment, Ledger, PaidWork, RenderReceipt};
            let mut chain = Ledger::new(&net_id);
            let victims: Vec<[u8; 32]> = targets.iter().filter_map(crate::fl::peer_key).collect();
            let mut append = async |kind: EntryKind, body: Vec<u8>| {
                let Some(e) = extend(&mut chain, &key, epoch(), kind, body) else { return };
                publish(Kind::LedgerEntry, e.encode(), &key).await;
            };
            let mut last_paid = None;
            while live() {
                for &worker in &victims {
                    // Each epoch a tiny paid job (one 32x32 tile at 1 spp and 1 bounce: one
                    // work unit), then its tile again and a tile past it: at most one unit
                    // counts, whatever is claimed.
                    if last_paid != Some(epoch()) {
                        last_paid = Some(epoch());
                        let job: [u8; 16] = rand::random();
                        let work = PaidWork::Render {
                            width: 32,
                            height: 32,
                            spp: 1,
                            max_bounces: 1,
                            tile: 32,
                            frames: [0, 0],
                        };
                        let p = &cfg.network.economics;
                        let amount = p.price_of(1, p.render_units_per_minute).max(1);
                        append(EntryKind::JobPayment, JobPayment { job, work, amount }.encode()).await;
                        for tile in [0, 0, 5] {
                            let r = RenderReceipt { job, tile, worker, work_units: u64::MAX, signed: None };
                            append(EntryKind::RenderReceipt, r.encode()).await;
                            stats.sent += 1;
                        }
                    }
                    // Receipts for jobs nobody paid for, claiming everything.
                    let r = RenderReceipt { job: rand::random(), tile: 0, worker, work_units: u64::MAX, signed: None };
                    append(EntryKind::RenderReceipt, r.encode()).await;
                    stats.sent += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Attack::SealSpam => {
            use ifx_protocols::ledger::{JobPayment, PaidWork, RenderReceipt};
            let victims: Vec<[u8; 32]> = targets.iter().filter_map(crate::fl::peer_key).collect();
            let worker = victims.first().copied().unwrap_or([1; 32]);
            while live() {
                // 1,000 fresh keys, each a payment it cannot make and a receipt, within one
                // epoch; then a pause of two epochs.
                let e = epoch();
                for i in 0..1_000u32 {
                    if epoch() != e || !live() {
                        break;
                    }
                    let fresh = SigningKey::from_bytes(&rand::random());
                    let job: [u8; 16] = rand::random();
                    let work =
                        PaidWork::Render { width: 32, height: 32, spp: 1, max_bounces: 1, tile: 32, frames: [0, 0] };
                    let pay = Entry::sign(
                        &fresh,
                        &net_id,
                        0,
                        GENESIS_PREV,
                        e,
                        EntryKind::JobPayment,
                        JobPayment { job, work, amount: u64::MAX }.encode(),
                    )
                    .expect("small body");
                    let receipt = Entry::sign(
                        &fresh,
                        &net_id,
                        1,
                        pay.id(),
                        e,
                        EntryKind::RenderReceipt,
                        RenderReceipt { job, tile: 0, worker, work_units: u64::MAX, signed: None }.encode(),
                    )
                    .expect("small body");
                    publish(Kind::LedgerEntry, pay.encode(), &fresh).await;
                    publish(Kind::LedgerEntry, receipt.encode(), &fresh).await;
                    stats.sent += 2;
                    if i % 50 == 49 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                tokio::time::sleep(Duration::from_secs(cfg.network.epoch_secs * 2)).await;
            }
        }
        Attack::VerifierCopy => {
            use ifx_protocols::ledger::{Ledger, PorVerdicts, WorkerVerdict};
            let mut chain = Ledger::new(&net_id);
            let victims: Vec<[u8; 32]> = targets.iter().filter_map(crate::fl::peer_key).collect();
            let mut written = None;
            while live() {
                // In each epoch's first moments, the verdict on the last one the quorum reaches
                // (the victim is honest: passed both kinds), with no challenge behind it.
                if let Some(e) = epoch().checked_sub(1)
                    && written != Some(e)
                {
                    written = Some(e);
                    let mut workers: Vec<WorkerVerdict> = victims
                        .iter()
                        .map(|w| WorkerVerdict {
                            worker: *w,
                            passed: 2,
                            failed: 0,
                            timeouts: 0,
                            mean_latency_ms: 20,
                            benches: 1,
                            ib_milli: 1_000,
                            last_failure: String::new(),
                            proof: None,
                        })
                        .collect();
                    workers.sort_by_key(|w| w.worker);
                    let body = PorVerdicts { epoch: e, workers }.encode();
                    if let Some(entry) = extend(&mut chain, &key, e, EntryKind::PorVerdicts, body) {
                        publish(Kind::LedgerEntry, entry.encode(), &key).await;
                        stats.sent += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Attack::HeartbeatBurst | Attack::TimeoutDodge => {
            let boot = crate::unix_time_us() / 1000;
            let interval = Duration::from_millis(cfg.network.heartbeat_interval_ms.max(1));
            let mut seq = 0u64;
            let burst = plan.attack == Attack::HeartbeatBurst;
            while live() {
                // timeout-dodge: one heartbeat an interval, like an honest worker; heartbeat-
                // burst: 30 at once, then silence for two epochs. Neither answers a challenge
                // (the PoR requests are drained unanswered).
                for _ in 0..if burst { 30 } else { 1 } {
                    let hb = ifx_protocols::heartbeat::Heartbeat {
                        boot_unix_ms: boot,
                        seq,
                        sent_unix_us: crate::unix_time_us(),
                        role: ifx_protocols::Role::Worker,
                        capacity: ifx_protocols::heartbeat::Capacity {
                            backend: "vulkan".into(),
                            adapter: "a GPU it will not use".into(),
                            device_type: "discrete".into(),
                            cores: 16,
                            memory_mb: 65_536,
                        },
                        uptime_secs: seq,
                        version: "0.1.0".into(),
                        paused: false,
                    };
                    publish(Kind::Heartbeat, hb.encode(), &key).await;
                    stats.sent += 1;
                    seq += 1;
                }
                let pause = if burst { Duration::from_secs(cfg.network.epoch_secs * 2) } else { interval };
                tokio::time::sleep(pause).await;
            }
        }
        Attack::Eclipse | Attack::SelfDeal | Attack::FakeJobTile => unreachable!("handled above"),
        Attack::ApiRebind => anyhow::bail!("api-rebind is the harness's own attack (HTTP), not a peer's"),
    }
    stats.stalled = stalled.load(std::sync::atomic::Ordering::Relaxed);
    stats.seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    Ok(stats)
}

/// The next entry of `key`'s own chain, kept in `chain` so that the one after links to it.
fn extend(
    chain: &mut ifx_protocols::ledger::Ledger,
    key: &SigningKey,
    epoch: u64,
    kind: EntryKind,
    body: Vec<u8>,
) -> Option<Entry> {
    let e = chain.next_entry(key, epoch, kind, body).ok()?;
    chain.ingest(vec![e.clone()], None);
    Some(e)
}

/// `self-deal`: a real worker node on the attacker's key (it heartbeats, answers challenges and
/// renders like any honest worker), whose owner pays every epoch for a 64 x 64 job from its
/// second key and receipts its own worker for every tile: the burn the network's price asks,
/// against what delivery adds to the worker's reward and the artists' rebate to the second key.
async fn self_deal(
    plan: &Plan,
    started: Instant,
    deadline: Instant,
    mut stats: AttackStats,
) -> anyhow::Result<AttackStats> {
    use ifx_protocols::ledger::{JobPayment, Ledger, PaidWork, RenderReceipt};
    let cfg = node_config(plan)?;
    let net_id = cfg.network.wire_id();
    let node = crate::Node::start(cfg.clone()).await?;
    let worker = node.settle.key.verifying_key().to_bytes();
    let second =
        Identity::load_or_create(&plan.data_dir.join(ifx_testnet::attacks::SECOND_KEY_DIR))?.signing_key().clone();
    let mut chain = Ledger::new(&net_id);
    let epoch = || cfg.network.epoch_at(crate::unix_time_us() / 1000);
    let mut paid_in = None;
    // Let the worker join the mesh (and be heard) before it deals.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while Instant::now() < deadline {
        let e = epoch();
        if paid_in != Some(e) {
            paid_in = Some(e);
            let work = PaidWork::Render { width: 64, height: 64, spp: 16, max_bounces: 6, tile: 32, frames: [0, 0] };
            let settings = work.settings().expect("a render job");
            let p = &cfg.network.economics;
            let amount = p.price_of(settings.total_units(), p.render_units_per_minute).max(1);
            let job: [u8; 16] = rand::random();
            let mut bodies = vec![(EntryKind::JobPayment, JobPayment { job, work, amount }.encode())];
            for tile in 0..settings.tile_count() as u32 {
                bodies.push((
                    EntryKind::RenderReceipt,
                    RenderReceipt { job, tile, worker, work_units: 0, signed: None }.encode(),
                ));
            }
            for (kind, body) in bodies {
                let Some(entry) = extend(&mut chain, &second, e, kind, body) else { continue };
                if let Ok(env) = SignedEnvelope::sign(&second, &net_id, Kind::LedgerEntry, e, entry.encode()) {
                    let _ = node.net.publish(Kind::LedgerEntry, env.encode()).await;
                    stats.sent += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stats.seconds = started.elapsed().as_secs_f64();
    node.stop().await;
    Ok(stats)
}

/// The config of a real node of this crate run by an attack (`self-deal`, `fake-job-tile`).
fn node_config(plan: &Plan) -> anyhow::Result<NodeConfig> {
    let mut cfg = NodeConfig::load(Some(&plan.config), &Default::default())?;
    cfg.node.data_dir = plan.data_dir.clone();
    cfg.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    cfg.node.api = String::new();
    cfg.network.bootnodes = vec![plan.bootnode.clone()];
    Ok(cfg)
}

/// `fake-job-tile`: a real, staked worker node that answers PoR challenges honestly and fakes
/// every job tile it is given (`render.fake_tiles`), until the deadline.
async fn fake_job_tile(
    plan: &Plan,
    started: Instant,
    deadline: Instant,
    mut stats: AttackStats,
) -> anyhow::Result<AttackStats> {
    use ifx_protocols::ledger::body::EntryBody;
    let mut cfg = node_config(plan)?;
    cfg.render.fake_tiles = true;
    let node = crate::Node::start(cfg).await?;
    tokio::time::sleep_until(deadline.into()).await;
    // What became of its tiles, as its own ledger says: receipted (not caught) or evidence.
    let me = node.settle.key.verifying_key().to_bytes();
    let (receipted, caught) = node.settle.ledger.with(|s| {
        let mut n = (0u64, 0u64);
        for e in s.ledger().iter_sorted() {
            match EntryBody::of(&e) {
                Ok(EntryBody::RenderReceipt(r)) if r.worker == me => n.0 += 1,
                Ok(EntryBody::DeliveryFault(f)) if f.worker == me => n.1 += 1,
                _ => {}
            }
        }
        n
    });
    stats.sent = receipted + caught;
    stats.answers.insert("tile receipted".into(), receipted);
    stats.answers.insert("tile caught (evidence filed)".into(), caught);
    stats.seconds = started.elapsed().as_secs_f64();
    node.stop().await;
    Ok(stats)
}

/// One burst of a stranger's PoR challenges: 24 at once, in turn the protocol's render, a
/// 65,536-spp render, and an opening of a challenge never issued.
pub fn challenge_burst(scene: &[u8]) -> Vec<ifx_protocols::por::wire::Request> {
    use ifx_protocols::por::wire::{CHALLENGE, Request, settings_wire};
    (0..24u8)
        .map(|i| match i % 3 {
            0 => Request::Render { id: rand::random(), scene: scene.to_vec(), settings: settings_wire(&CHALLENGE) },
            1 => Request::Render { id: rand::random(), scene: scene.to_vec(), settings: [256, 256, 65_536, 64, 256] },
            _ => Request::Open { id: rand::random(), indices: vec![0, 1, 2] },
        })
        .collect()
}

fn tally(
    stats: &mut AttackStats,
    answers: Vec<Result<Result<Vec<u8>, crate::network::RequestFailed>, crate::network::NetworkStopped>>,
    proto: Proto,
) {
    for a in answers {
        stats.sent += 1;
        match answer_name(&a, proto) {
            Some(name) => *stats.answers.entry(name).or_default() += 1,
            None => stats.failed += 1,
        }
    }
}
