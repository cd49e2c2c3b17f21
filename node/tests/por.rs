//! Proof of Rendering between real nodes: a verifier challenges two workers; the honest one
//! passes, the one that answers too late is recorded as a QoS failure (a timeout), never as a
//! PoR failure, and nothing crashes; malformed challenges are refused with a reason.

use std::time::{Duration, Instant};

use ifx_node::{Node, NodeConfig};

/// One genesis for every node of this test binary: a node with another genesis is on another
/// network (the network id commits to it).
fn genesis_secs() -> u64 {
    static GENESIS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *GENESIS.get_or_init(|| ifx_node::unix_time_us() / 1_000_000)
}

fn config(dir: &std::path::Path, boot: Option<String>) -> NodeConfig {
    let mut c = NodeConfig::default();
    c.node.data_dir = dir.into();
    c.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    c.node.api = String::new();
    c.network.id = "por-test".into();
    c.network.genesis_unix_secs = genesis_secs();
    c.network.epoch_secs = 3600;
    c.network.heartbeat_interval_ms = 200;
    c.network.bootnodes = boot.into_iter().collect();
    c.render.backend = ifx_protocols::render::Backend::Cpu;
    c.por.challenge_interval_ms = 200;
    c.por.answer_timeout_ms = 1500;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_is_a_qos_failure_not_a_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let honest = Node::start(config(&tmp.path().join("honest"), None)).await.unwrap();
    let boot = format!("{}/p2p/{}", honest.listen_addrs[0], honest.peer_id);
    let mut late_cfg = config(&tmp.path().join("late"), Some(boot.clone()));
    late_cfg.por.cheat = "late".parse().unwrap();
    let late = Node::start(late_cfg).await.unwrap();
    let mut v_cfg = config(&tmp.path().join("v"), Some(boot));
    v_cfg.node.role = ifx_protocols::Role::Verifier;
    let v = Node::start(v_cfg).await.unwrap();

    let start = Instant::now();
    loop {
        let s = v.por.snapshot();
        let h = s.get(&honest.peer_id.to_string()).cloned().unwrap_or_default();
        let l = s.get(&late.peer_id.to_string()).cloned().unwrap_or_default();
        if h.passed >= 2 && l.timeouts >= 2 {
            assert_eq!(h.failed, 0, "{h:?}");
            assert_eq!((l.failed, l.passed), (0, 0), "a late answer must not be a verdict: {l:?}");
            eprintln!("after {:.1} s: honest {h:?}\nlate {l:?}", start.elapsed().as_secs_f64());
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "honest {h:?}, late {l:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The verifier is still serving.
    assert!(v.net.snapshot().await.is_ok());
    // Its outcomes were announced on the `por` topic: the honest worker heard them.
    let start = Instant::now();
    loop {
        let heard = honest.announcements.snapshot();
        let about_late = heard.iter().filter(|a| a.worker == late.peer_id.to_string()).collect::<Vec<_>>();
        if !about_late.is_empty() {
            assert!(about_late.iter().all(|a| a.announcement.challenge == "timeout" && !a.announcement.passed));
            assert!(heard.iter().all(|a| a.verifier == v.peer_id.to_string()));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no announcement heard: {heard:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Malformed challenges get a refusal with a reason, not a crash.
    let answer = v.net.request(ifx_node::network::Proto::Por, honest.peer_id, vec![0xff; 40]).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("malformed challenge"));
    let answer = v.net.request(ifx_node::network::Proto::Por, honest.peer_id, vec![]).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("malformed challenge"));
    for n in [honest, late, v] {
        n.stop().await;
    }
}

/// Issue #16: a stranger streaming challenges (renders, heavy settings, openings of ids it never
/// got) at a worker neither gets that worker failed nor pushes out the honest verifier's open
/// challenges; past its in-flight cap it is answered `Busy`, which a verifier counts as QoS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_challenge_flood_does_not_fail_an_honest_worker() {
    use ifx_protocols::por::wire::Response;
    let tmp = tempfile::tempdir().unwrap();
    let worker = Node::start(config(&tmp.path().join("worker"), None)).await.unwrap();
    let boot = format!("{}/p2p/{}", worker.listen_addrs[0], worker.peer_id);
    let stranger = Node::start(config(&tmp.path().join("stranger"), Some(boot.clone()))).await.unwrap();
    let mut v_cfg = config(&tmp.path().join("v"), Some(boot));
    v_cfg.node.role = ifx_protocols::Role::Verifier;
    let v = Node::start(v_cfg).await.unwrap();

    let scene = ifx_render::builtin::cornell().to_wire();
    let flood = {
        let (net, target) = (stranger.net.clone(), worker.peer_id);
        tokio::spawn(async move {
            let (mut busy, mut refused, mut answered) = (0u32, 0u32, 0u32);
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(12) {
                let reqs = ifx_node::attack::challenge_burst(&scene);
                let answers = futures::future::join_all(
                    reqs.into_iter().map(|r| net.request(ifx_node::network::Proto::Por, target, r.encode())),
                )
                .await;
                for a in answers {
                    match a.ok().and_then(|r| r.ok()).map(|b| Response::decode(&b)) {
                        Some(Ok(Response::Busy(_))) => busy += 1,
                        Some(Ok(Response::Refused(_))) => refused += 1,
                        Some(Ok(_)) => answered += 1,
                        _ => {}
                    }
                }
            }
            (busy, refused, answered)
        })
    };
    let start = Instant::now();
    loop {
        let s = v.por.snapshot();
        let w = s.get(&worker.peer_id.to_string()).cloned().unwrap_or_default();
        assert_eq!(w.failed, 0, "the flood got the honest worker failed: {w:?}");
        if w.passed >= 3 && start.elapsed() > Duration::from_secs(8) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{w:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (busy, refused, answered) = flood.await.unwrap();
    eprintln!("stranger: {busy} busy, {refused} refused, {answered} answered");
    assert!(busy > 0 && refused > 0, "busy {busy}, refused {refused}");
    let w = v.por.snapshot().get(&worker.peer_id.to_string()).cloned().unwrap_or_default();
    assert_eq!(w.failed, 0, "{w:?}");
    for n in [worker, stranger, v] {
        n.stop().await;
    }
}
