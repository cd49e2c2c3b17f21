//! The local API's answers read back as the protocol's API types (`ifx_protocols::api`), which
//! the CLI and the testnet rely on: two real nodes (a worker and a verifier) on 127.0.0.1, every
//! GET endpoint, and the refusals' bodies.

use std::time::{Duration, Instant};

use ifx_node::{Node, NodeConfig};
use ifx_protocols::api;
use serde::de::DeserializeOwned;

fn config(dir: &std::path::Path, role: ifx_protocols::Role, bootnode: Option<String>) -> NodeConfig {
    let mut cfg = NodeConfig::default();
    cfg.node.data_dir = dir.into();
    cfg.node.role = role;
    cfg.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    cfg.node.api = "127.0.0.1:0".into();
    cfg.network.id = "api-types".into();
    cfg.network.genesis_unix_secs = ifx_node::unix_time_us() / 1_000_000 - 10;
    cfg.network.epoch_secs = 3600;
    cfg.network.heartbeat_interval_ms = 200;
    cfg.network.bootnodes = bootnode.into_iter().collect();
    cfg
}

async fn get<T: DeserializeOwned>(c: &reqwest::Client, node: &Node, path: &str) -> (u16, T) {
    let r = c.get(format!("http://{}/{path}", node.api_addr.unwrap())).send().await.unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET /{path}: {e}: {text}"));
    (code, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_reads_back_as_its_api_type() {
    let tmp = tempfile::tempdir().unwrap();
    let worker = Node::start(config(&tmp.path().join("w"), ifx_protocols::Role::Worker, None)).await.unwrap();
    let boot = format!("{}/p2p/{}", worker.listen_addrs[0], worker.peer_id);
    let verifier = Node::start(config(&tmp.path().join("v"), ifx_protocols::Role::Verifier, Some(boot))).await.unwrap();
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let start = Instant::now();
    loop {
        let (_, p): (_, api::Peers) = get(&c, &verifier, "peers").await;
        if p.heartbeats.iter().any(|h| h.peer_id == worker.peer_id.to_string() && !h.by_epoch.is_empty()) {
            assert!(p.connected.iter().any(|x| x.peer_id == worker.peer_id.to_string()));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the verifier never heard the worker: {p:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in [&worker, &verifier] {
        let (_, s): (_, api::Status) = get(&c, node, "status").await;
        assert_eq!(s.peer_id, node.peer_id.to_string());
        assert_eq!(s.network, "api-types");
        let (_, _): (_, api::Latency) = get(&c, node, "heartbeats/latency").await;
        let (_, l): (_, api::LedgerRoot) = get(&c, node, "ledger/root").await;
        assert_eq!(l.root.len(), 64);
        let (_, jobs): (_, Vec<api::JobStatus>) = get(&c, node, "jobs").await;
        assert!(jobs.is_empty());
        let (_, fl): (_, api::FlList) = get(&c, node, "fl").await;
        assert!(fl.tasks.is_empty());
        let (_, _): (_, api::Standings) = get(&c, node, "por/standings").await;
        let (_, r): (_, api::Rewards) = get(&c, node, "rewards").await;
        assert_eq!(r.current_epoch, 0);
        let (code, e): (_, api::ApiError) = get(&c, node, "jobs/nope").await;
        assert_eq!((code, e.error.as_str()), (404, "no such job"));
        let (code, e): (_, api::ApiError) = get(&c, node, "fl/nope").await;
        assert_eq!((code, e.error.as_str()), (404, "no such task"));
    }
    let (_, por): (_, api::PorStats) = get(&c, &verifier, "por/stats").await;
    assert!(por.verifier);
    // A refused write answers an `ApiError` too.
    let api_addr = worker.api_addr.unwrap();
    let bad =
        serde_json::json!({ "scene": "no-such-scene", "width": 8, "height": 8, "spp": 1, "max_bounces": 1, "tile": 8 });
    let r = c.post(format!("http://{api_addr}/jobs")).json(&bad).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e: api::ApiError = r.json().await.unwrap();
    assert!(!e.error.is_empty());
    // An accepted one, the job it names.
    let job =
        serde_json::json!({ "scene": "cornell", "width": 16, "height": 16, "spp": 1, "max_bounces": 1, "tile": 16 });
    let r = c.post(format!("http://{api_addr}/jobs")).json(&job).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let a: api::JobAccepted = r.json().await.unwrap();
    let (_, j): (_, api::JobStatus) = get(&c, &worker, &format!("jobs/{}", a.job_id)).await;
    assert_eq!(j.job_id, a.job_id);
    verifier.stop().await;
    worker.stop().await;
}
