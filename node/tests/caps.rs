//! Issue #19, what an operator lets a worker use, on live nodes over 127.0.0.1: the GPU it
//! names (a name that matches none stops the node at start, listing what there is), a cap on
//! GPU memory (a job past it is answered busy and its tiles go to another worker), and how many
//! tiles it renders at once (two at once finish a slow worker's job in about half the time).

use std::path::Path;
use std::time::{Duration, Instant};

use ifx_node::render::{JobSpec, RunState};
use ifx_node::{Node, NodeConfig};

fn config(dir: &Path, boot: Option<String>) -> NodeConfig {
    let mut c = NodeConfig::default();
    c.node.data_dir = dir.into();
    c.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    c.node.api = String::new();
    c.network.id = "caps-test".into();
    c.network.genesis_unix_secs = 1_700_000_000;
    c.network.epoch_secs = 3600;
    c.network.heartbeat_interval_ms = 200;
    c.network.bootnodes = boot.into_iter().collect();
    c.por.challenge_interval_ms = 86_400_000;
    c
}

/// Waits until `owner` hears `workers` workers (connected and heartbeating).
async fn heard(owner: &Node, workers: usize) {
    let t0 = Instant::now();
    loop {
        let n = owner.heartbeats.lock().unwrap().iter().filter(|(_, r)| r.role == ifx_protocols::Role::Worker).count();
        if n >= workers && owner.net.snapshot().await.unwrap().connected.len() >= workers {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the owner heard {n} workers, not {workers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a job of `tiles` tiles of `side` pixels (one row) on `owner`'s workers; its status and
/// how long it took.
async fn job(owner: &Node, tiles: u32, side: u32) -> (ifx_protocols::api::JobStatus, Duration) {
    let spec = JobSpec {
        scene: "cornell".into(),
        scene_toml: None,
        assets: Vec::new(),
        width: side * tiles,
        height: side,
        spp: 1,
        max_bounces: 1,
        tile: side,
        unpaid: true,
        frames: Default::default(),
    };
    let t0 = Instant::now();
    let id = owner.jobs.submit(spec, ifx_node::render::Schedule::Capacity).await.unwrap();
    loop {
        let s = owner.jobs.get(&id).unwrap();
        if s.state != RunState::Running {
            assert_eq!(s.state, RunState::Done, "{s:?}");
            return (s, t0.elapsed());
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "the job is still running: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_to_its_gpu_its_memory_cap_and_its_tiles_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |n: &str| tmp.path().join(n);
    let adapters = ifx_render::gpu::adapter_summaries();

    // A GPU that is not there: the node does not start, and the error lists what there is.
    let mut typo = config(&dir("typo"), None);
    typo.render.gpu = "no-such-gpu-9000".into();
    let err = Node::start(typo).await.err().expect("a node started on a GPU that is not there").to_string();
    assert!(err.contains("render.gpu") && err.contains("no adapter matches \"no-such-gpu-9000\""), "{err}");
    if let Some(a) = adapters.first() {
        assert!(err.contains(&format!("0: {}", a.name)), "{err}");
    }

    // The owner names its GPU by part of its name, in another case; its heartbeats carry what it
    // renders on.
    let mut oc = config(&dir("owner"), None);
    if let Some(a) = adapters.first() {
        oc.render.gpu = a.name.split_whitespace().next().unwrap().to_uppercase();
    }
    let owner = Node::start(oc).await.unwrap();
    let boot = format!("{}/p2p/{}", owner.listen_addrs[0], owner.peer_id);

    // A worker whose operator allows 1 MiB of GPU memory: tiles of 256 x 256 need 2 (output and
    // read-back buffers of 16 bytes a pixel), so it answers busy and the other worker renders.
    let mut sc = config(&dir("small"), Some(boot.clone()));
    sc.render.max_vram_mb = 1;
    if adapters.is_empty() {
        // No GPU here: the memory cap is the one that bites (12 bytes a pixel, 4 tiles at once).
        sc.render.max_memory_mb = 1;
        sc.render.max_tiles = 4;
    }
    let small = Node::start(sc).await.unwrap();
    let big = Node::start(config(&dir("big"), Some(boot.clone()))).await.unwrap();
    heard(&owner, 2).await;
    if let Some(a) = adapters.first() {
        let t0 = Instant::now();
        let owner_key = ifx_node::identity::Identity::load(&dir("owner")).unwrap().public_key();
        let adapter = || big.heartbeats.lock().unwrap().get(&owner_key).map(|r| r.capacity.adapter.clone());
        while adapter().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(10), "no heartbeat of the owner");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // `auto` renders on the CPU reference beside a software adapter (lavapipe), and says so.
        assert_eq!(adapter().unwrap(), if a.class == "cpu" { "cpu" } else { a.name.as_str() });
    }
    let (s, _) = job(&owner, 4, 256).await;
    eprintln!("capped: {s:?}");
    assert_eq!(s.tiles_by_worker.get(&small.peer_id.to_string()), None, "the capped worker rendered: {s:?}");
    assert_eq!(s.tiles_by_worker.get(&big.peer_id.to_string()).copied(), Some(4));
    assert!(s.reassigned > 0, "the capped worker was never asked: {s:?}");
    // A job within its cap, it renders.
    let (s, _) = job(&owner, 8, 16).await;
    assert!(s.tiles_by_worker.get(&small.peer_id.to_string()).copied().unwrap_or(0) > 0, "{s:?}");
    small.stop().await;
    big.stop().await;

    // Tiles at once: one slow worker (each tile 700 ms longer, as on a slower GPU) renders a
    // job of 6 tiles one at a time, then two at a time (a job owner keeps two at a worker).
    let mut took = Vec::new();
    for at_once in [1, 2] {
        let mut c = config(&dir(&format!("slow{at_once}")), Some(boot.clone()));
        c.faults.slow_ms = 700;
        c.render.max_tiles = at_once;
        let w = Node::start(c).await.unwrap();
        heard(&owner, 1).await;
        let (s, t) = job(&owner, 6, 16).await;
        assert_eq!(s.tiles_by_worker.get(&w.peer_id.to_string()).copied(), Some(6), "{s:?}");
        took.push(t);
        let gone = w.peer_id.to_string();
        w.stop().await;
        // The owner forgets the stopped worker before the next one joins.
        let t0 = Instant::now();
        while owner.net.snapshot().await.unwrap().connected.iter().any(|c| c.peer_id == gone) {
            assert!(t0.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!("6 slow tiles: one at a time {:?}, two at a time {:?}", took[0], took[1]);
    assert!(took[0] >= Duration::from_millis(6 * 700), "{took:?}");
    assert!(took[1] * 4 < took[0] * 3, "two at a time was not faster: {took:?}");
    owner.stop().await;
}
