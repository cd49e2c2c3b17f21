//! The local API's answers read back as the protocol's API types (`ifx_protocols::api`), which
//! the CLI and the testnet rely on: two real nodes (a worker and a verifier) on 127.0.0.1, every
//! GET endpoint, and the refusals' bodies. And the API as a hostile local caller or web page
//! meets it: a foreign `Host` or `Origin`, a missing or wrong token, on every write endpoint.

use std::time::{Duration, Instant};

use ifx_node::{Node, NodeConfig};
use ifx_protocols::api;
use serde::de::DeserializeOwned;

/// One genesis for every node of this test binary: a node with another genesis is on another
/// network (the network id commits to it).
fn genesis_secs() -> u64 {
    static GENESIS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *GENESIS.get_or_init(|| ifx_node::unix_time_us() / 1_000_000)
}

fn config(dir: &std::path::Path, role: ifx_protocols::Role, bootnode: Option<String>) -> NodeConfig {
    let mut cfg = NodeConfig::default();
    cfg.node.data_dir = dir.into();
    cfg.node.role = role;
    cfg.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    cfg.node.api = "127.0.0.1:0".into();
    cfg.network.id = "api-types".into();
    cfg.network.genesis_unix_secs = genesis_secs() - 10;
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
        assert!(s.network.starts_with("api-types-"), "the wire id: the name and the fingerprint: {}", s.network);
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
    let token = std::fs::read_to_string(tmp.path().join("w").join("api.token")).unwrap();
    let bad =
        serde_json::json!({ "scene": "no-such-scene", "width": 8, "height": 8, "spp": 1, "max_bounces": 1, "tile": 8 });
    let r = c.post(format!("http://{api_addr}/jobs")).bearer_auth(&token).json(&bad).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e: api::ApiError = r.json().await.unwrap();
    assert!(!e.error.is_empty());
    // Issue #21: a job is paid for before any tile is handed out; this node's key holds
    // nothing, so it is refused with the price, and runs only as unpaid work.
    let job =
        serde_json::json!({ "scene": "cornell", "width": 16, "height": 16, "spp": 1, "max_bounces": 1, "tile": 16 });
    let r = c.post(format!("http://{api_addr}/jobs")).bearer_auth(&token).json(&job).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 402);
    let e: api::ApiError = r.json().await.unwrap();
    assert!(e.error.contains("can spend 0") && e.error.contains("unpaid"), "{}", e.error);
    let job = serde_json::json!({
        "scene": "cornell", "width": 16, "height": 16, "spp": 1, "max_bounces": 1, "tile": 16, "unpaid": true
    });
    let r = c.post(format!("http://{api_addr}/jobs")).bearer_auth(&token).json(&job).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let a: api::JobAccepted = r.json().await.unwrap();
    let (_, j): (_, api::JobStatus) = get(&c, &worker, &format!("jobs/{}", a.job_id)).await;
    assert_eq!((j.job_id.as_str(), j.paid, j.payment.as_deref()), (a.job_id.as_str(), 0, None));
    verifier.stop().await;
    worker.stop().await;
}

/// Issue #18: a job outlives its owner's restart: listed, resumed (still waiting for a worker:
/// this node is alone), cancelled through the CLI, and listed as cancelled after another restart,
/// not resumed again. Cancelling it twice, or a job that does not exist, is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_outlives_its_owners_restart_and_is_cancelled_once() {
    const IFX: &str = env!("CARGO_BIN_EXE_ifx");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("o");
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let node = Node::start(config(&dir, ifx_protocols::Role::Worker, None)).await.unwrap();
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    let job = serde_json::json!({
        "scene": "cornell", "width": 64, "height": 64, "spp": 1, "max_bounces": 1, "tile": 32, "unpaid": true
    });
    let r = c.post(format!("http://{}/jobs", node.api_addr.unwrap())).bearer_auth(&token).json(&job).send().await;
    let a: api::JobAccepted = r.unwrap().json().await.unwrap();
    node.stop().await;

    let node = Node::start(config(&dir, ifx_protocols::Role::Worker, None)).await.unwrap();
    let api_addr = node.api_addr.unwrap().to_string();
    // A new token each start.
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    let (_, jobs): (_, Vec<api::JobStatus>) = get(&c, &node, "jobs").await;
    assert_eq!(jobs.len(), 1);
    let j = &jobs[0];
    assert_eq!((j.job_id.as_str(), j.state, j.tiles, j.resumed), (a.job_id.as_str(), api::RunState::Running, 4, 1));
    assert_eq!((j.spec.width, j.spec.tile), (64, 32));
    let ifx = |args: &[&str]| {
        let out = std::process::Command::new(IFX)
            .args(args)
            .args(["--api", &api_addr])
            .env("IFX_API_TOKEN", token.trim())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, text) = ifx(&["render", "list"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&a.job_id) && text.contains("running") && text.contains("0/4") && text.contains("resumed 1x"),
        "{text}"
    );
    let (code, text) = ifx(&["render", "status", &a.job_id]);
    assert_eq!(code, Some(2), "running: {text}");
    let (code, text) = ifx(&["render", "cancel", &a.job_id]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("cancelled"), "{text}");
    let (code, text) = ifx(&["render", "cancel", &a.job_id]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("the job has ended: it is cancelled"), "{text}");
    let (code, text) = ifx(&["render", "cancel", "00112233445566778899aabbccddeeff"]);
    assert!(code == Some(1) && text.contains("no such job"), "{text}");
    let (code, text) = ifx(&["render", "status", "../status"]);
    assert!(code == Some(1) && text.contains("not a job id"), "{text}");

    // A scene with mesh files: loaded here, then it and its meshes go to the node as assets.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cycles/scene.toml");
    let size = ["--width", "16", "--height", "16", "--spp", "1", "--tile", "16", "--unpaid", "--detach"];
    let (code, text) = ifx(&[&["render", "submit", "--scene", fixture.to_str().unwrap()][..], &size].concat());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("uploading 5 assets"), "{text}");
    let id = text.lines().find_map(|l| l.strip_prefix("job ")).unwrap().split_whitespace().next().unwrap().to_string();
    let (_, j): (_, api::JobStatus) = get(&c, &node, &format!("jobs/{id}")).await;
    let names: Vec<_> = j.spec.assets.iter().map(|a| a.name.as_str()).collect();
    assert_eq!((j.spec.scene.as_str(), names.len()), ("scene.toml", 5), "{names:?}");
    assert_eq!(ifx(&["render", "cancel", &id]).0, Some(0));
    // A scene that reads a file outside its folder is refused here, before anything is sent.
    let sub = tmp.path().join("scene");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::copy(fixture.with_file_name("red.glb"), tmp.path().join("red.glb")).unwrap();
    let head = std::fs::read_to_string(&fixture).unwrap();
    let head = &head[..head.find("[[meshes]]").unwrap()];
    std::fs::write(sub.join("s.toml"), format!("{head}[[meshes]]\npath = \"../red.glb\"\nmaterial = \"red\"\n"))
        .unwrap();
    let (code, text) =
        ifx(&[&["render", "submit", "--scene", sub.join("s.toml").to_str().unwrap()][..], &size].concat());
    assert!(code == Some(1) && text.contains("../red.glb") && text.contains("inside the scene's folder"), "{text}");
    assert!(!text.contains("uploading"), "{text}");
    node.stop().await;

    let node = Node::start(config(&dir, ifx_protocols::Role::Worker, None)).await.unwrap();
    let (_, j): (_, api::JobStatus) = get(&c, &node, &format!("jobs/{}", a.job_id)).await;
    assert_eq!((j.state, j.resumed), (api::RunState::Cancelled, 1), "an ended job is listed, not resumed");
    node.stop().await;
}

/// Issue #16: with a foreign `Host` and `Origin`, `POST /net/block` answered 200 and
/// `POST /stake` (unbond) 202 and signed an entry; a 16384 x 4096 job was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_token_and_every_request_a_loopback_host() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(config(&tmp.path().join("n"), ifx_protocols::Role::Worker, None)).await.unwrap();
    let api = node.api_addr.unwrap();
    let token = std::fs::read_to_string(tmp.path().join("n").join("api.token")).unwrap();
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let entries = || node.ledger.with(|l| l.ledger().len());
    let before = entries();
    let someone = libp2p::PeerId::random().to_string();
    let writes = ifx_testnet::attacks::write_endpoints(&someone);
    let post = |path: &str| c.post(format!("http://{api}/{path}"));
    for (path, body) in &writes {
        let r = post(path).json(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "POST /{path} without a token");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let e: api::ApiError = r.json().await.unwrap();
        assert!(e.error.contains("api.token"), "{}", e.error);
        let r = post(path).bearer_auth("not-the-token").json(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "POST /{path} with a wrong token");
        let r =
            post(path).bearer_auth(token.trim()).header("host", "evil.example:7070").json(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "POST /{path} with a rebound Host");
        let r = post(path)
            .bearer_auth(token.trim())
            .header("origin", "http://evil.example")
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "POST /{path} from a foreign Origin");
        let r = post(path).bearer_auth(token.trim()).header("origin", "null").json(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "POST /{path} from an opaque Origin");
    }
    assert_eq!(entries(), before, "a refused write signed nothing");
    assert!(node.net.snapshot().await.unwrap().blocked.is_empty(), "a refused block blocked nothing");
    assert!(!node.pause.is_paused(), "a refused pause paused nothing");
    // Reads with a rebound Host are refused too (DNS rebinding would read the answers).
    for path in ["status", "peers", "rewards", "ledger/root"] {
        let r = c.get(format!("http://{api}/{path}")).header("host", "evil.example").send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "GET /{path}");
    }
    let r =
        c.get(format!("http://{api}/status")).header("host", format!("localhost:{}", api.port())).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // With the token: the write goes through (and a too-large job is refused by its limits).
    let r = post("net/block").bearer_auth(token.trim()).json(&writes[2].1).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let huge = serde_json::json!({ "scene": "cornell", "width": 16384, "height": 4096, "spp": 1, "tile": 32 });
    let r = post("jobs").bearer_auth(token.trim()).json(&huge).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.json::<api::ApiError>().await.unwrap().error.contains("pixels"));
    // Bodies past the cap are refused before they are read whole.
    let big = vec![b' '; ifx_node::api::guard::MAX_BODY + 1];
    let r = post("jobs")
        .bearer_auth(token.trim())
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    node.stop().await;
}

/// Issue #19, pausing: a paused worker stays in the network and says so in its heartbeats
/// and status; the job owner gives it no tiles, and its heartbeats fill no liveness slot (paid
/// uptime) at the owner; resumed, it counts and works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_stays_known_takes_no_tiles_and_fills_no_slot_until_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let owner = Node::start(config(&tmp.path().join("o"), ifx_protocols::Role::Worker, None)).await.unwrap();
    let boot = format!("{}/p2p/{}", owner.listen_addrs[0], owner.peer_id);
    let start = |name: &'static str| {
        let cfg = config(&tmp.path().join(name), ifx_protocols::Role::Worker, Some(boot.clone()));
        async move { Node::start(cfg).await.unwrap() }
    };
    let (paused, busy) = (start("p").await, start("b").await);
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = |name: &str| std::fs::read_to_string(tmp.path().join(name).join("api.token")).unwrap();
    let post = |node: &Node, path: &str, token: String, body: serde_json::Value| {
        c.post(format!("http://{}/{path}", node.api_addr.unwrap())).bearer_auth(token.trim()).json(&body).send()
    };
    let paused_key = ifx_node::fl::peer_key(&paused.peer_id).unwrap();
    let seen_at_owner =
        || owner.heartbeats.lock().unwrap().get(&paused_key).map(|r| (r.paused, r.by_epoch.values().sum::<u64>()));
    let wait = async |what: &str, done: &dyn Fn() -> bool| {
        let t0 = Instant::now();
        while !done() {
            assert!(t0.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait("the owner hears both workers", &|| owner.heartbeats.lock().unwrap().len() >= 2).await;
    let r = post(&paused, "pause", token("p"), serde_json::json!({ "reason": "gaming tonight" })).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let s: api::Status = r.json().await.unwrap();
    assert_eq!(s.paused.as_deref(), Some("gaming tonight"));
    wait("the owner hears the pause", &|| seen_at_owner().is_some_and(|(p, _)| p)).await;
    let (_, slots_then) = seen_at_owner().unwrap();
    // A job now: every tile goes to the other worker.
    let job = serde_json::json!({
        "scene": "cornell", "width": 32, "height": 32, "spp": 1, "max_bounces": 1, "tile": 16, "unpaid": true
    });
    let r = post(&owner, "jobs", token("o"), job).await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let a: api::JobAccepted = r.json().await.unwrap();
    let t0 = Instant::now();
    let j = loop {
        let (_, j): (_, api::JobStatus) = get(&c, &owner, &format!("jobs/{}", a.job_id)).await;
        if j.state != api::RunState::Running {
            break j;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the job did not finish: {j:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(j.tiles_done, 4, "{j:?}");
    assert_eq!(j.tiles_by_worker.get(&paused.peer_id.to_string()), None, "{j:?}");
    assert_eq!(j.tiles_by_worker.get(&busy.peer_id.to_string()), Some(&4), "{j:?}");
    // Heard all along, but no slot filled while paused.
    let (_, slots_paused) = seen_at_owner().unwrap();
    assert_eq!(slots_paused, slots_then, "paused heartbeats filled liveness slots");
    let (_, p): (_, api::Peers) = get(&c, &owner, "peers").await;
    assert!(p.heartbeats.iter().any(|h| h.peer_id == paused.peer_id.to_string() && h.paused));
    // Resumed: it says so and fills slots again.
    let r = post(&paused, "resume", token("p"), serde_json::json!({})).await.unwrap();
    assert_eq!(r.json::<api::Status>().await.unwrap().paused, None);
    wait("the owner hears the resume and counts slots", &|| {
        seen_at_owner().is_some_and(|(p, n)| !p && n > slots_paused)
    })
    .await;
    for n in [paused, busy, owner] {
        n.stop().await;
    }
}
