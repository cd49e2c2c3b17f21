//! Ten real nodes in one process on 127.0.0.1: every node discovers every other through one
//! bootnode (Kademlia) and hears every other's heartbeats (gossipsub); then a node that
//! publishes garbage and forged envelopes is rejected and loses gossip score.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ifx_node::{Node, NodeConfig};
use ifx_protocols::{Kind, SignedEnvelope};

const NODES: usize = 10;

/// One genesis for every node of this test binary: a node with another genesis is on another
/// network (the network id commits to it).
fn genesis_secs() -> u64 {
    static GENESIS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *GENESIS.get_or_init(|| ifx_node::unix_time_us() / 1_000_000)
}

fn config(dir: &std::path::Path, net_id: &str, bootnode: Option<String>) -> NodeConfig {
    let mut cfg = NodeConfig::default();
    cfg.node.data_dir = dir.into();
    cfg.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    cfg.node.api = String::new();
    cfg.network.id = net_id.into();
    cfg.network.genesis_unix_secs = genesis_secs() - 10;
    cfg.network.epoch_secs = 3600;
    cfg.network.heartbeat_interval_ms = 300;
    cfg.network.bootnodes = bootnode.into_iter().collect();
    cfg
}

/// A node of one-second epochs and fast sync, so that attestations (a verifier) come quickly.
fn fast_ledger(dir: &std::path::Path, net_id: &str, boot: Option<String>, verifier: bool) -> NodeConfig {
    let mut c = config(dir, net_id, boot);
    c.network.genesis_unix_secs = genesis_secs();
    c.network.epoch_secs = 1;
    c.network.heartbeat_interval_ms = 200;
    c.ledger.sync_interval_ms = 300;
    if verifier {
        c.node.role = ifx_protocols::Role::Verifier;
    }
    c
}

/// A bare ifx network stack (the node's own swarm and event loop, no services behind it) on
/// `cfg`'s network, keyed in its data dir: a stranger that speaks the protocols and answers
/// only what the test makes it answer.
async fn bare_stack(
    mut cfg: NodeConfig,
    shutdown: &tokio_util::sync::CancellationToken,
) -> ifx_node::network::event_loop::Started {
    std::fs::create_dir_all(&cfg.node.data_dir).unwrap();
    let id = ifx_node::identity::Identity::load_or_create(&cfg.node.data_dir).unwrap();
    cfg.network.id = cfg.network.wire_id();
    let mut registry = prometheus_client::registry::Registry::default();
    ifx_node::network::event_loop::start(&id, &cfg, &mut registry, None, shutdown.child_token()).await.unwrap()
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{what}: {:.2} s", start.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_discover_each_other_and_exchange_heartbeats() {
    let tmp = tempfile::tempdir().unwrap();
    // The bootnode listens on TCP and QUIC; odd nodes join over QUIC, even ones over TCP.
    let mut cfg = config(&tmp.path().join("n0"), "mesh", None);
    cfg.node.listen.push("/ip4/127.0.0.1/udp/0/quic-v1".into());
    let boot = Node::start(cfg).await.unwrap();
    let addr_of = |proto: &str| {
        let a = boot.listen_addrs.iter().find(|a| a.to_string().contains(proto)).unwrap();
        format!("{a}/p2p/{}", boot.peer_id)
    };
    let (tcp_boot, quic_boot) = (addr_of("/tcp/"), addr_of("/quic-v1"));
    let mut nodes = vec![boot];
    for i in 1..NODES {
        let (listen, bootnode) = if i % 2 == 1 {
            ("/ip4/127.0.0.1/udp/0/quic-v1", quic_boot.clone())
        } else {
            ("/ip4/127.0.0.1/tcp/0", tcp_boot.clone())
        };
        let mut cfg = config(&tmp.path().join(format!("n{i}")), "mesh", Some(bootnode));
        cfg.node.listen = vec![listen.into()];
        nodes.push(Node::start(cfg).await.unwrap());
    }
    let ids: Vec<String> = nodes.iter().map(|n| n.peer_id.to_string()).collect();
    let others = |i: usize| ids.iter().enumerate().filter(move |(j, _)| *j != i).map(|(_, p)| p.clone());

    wait_for("every node has every other in its routing table", Duration::from_secs(60), async || {
        for (i, n) in nodes.iter().enumerate() {
            let snap = n.net.snapshot().await.unwrap();
            let known: BTreeSet<String> = snap.routing_table.into_iter().collect();
            if !others(i).all(|p| known.contains(&p)) {
                return false;
            }
        }
        true
    })
    .await;

    wait_for("every node has heartbeats from every other", Duration::from_secs(60), async || {
        nodes.iter().enumerate().all(|(i, n)| {
            let table = n.heartbeats.lock().unwrap();
            let heard: BTreeSet<String> = table
                .iter()
                .filter_map(|(author, _)| ifx_node::network::author_peer_id(author))
                .map(|p| p.to_string())
                .collect();
            others(i).all(|p| heard.contains(&p))
        })
    })
    .await;
    for n in &nodes {
        let t = n.heartbeats.lock().unwrap();
        for (_, rec) in t.iter() {
            assert_eq!(rec.role, ifx_protocols::Role::Worker);
            assert!(rec.capacity.cores >= 1 && !rec.capacity.backend.is_empty());
        }
        assert!(!t.latency().to_vec().is_empty());
    }

    // Node 1 turns bad: garbage bytes, then a well-formed envelope whose signature does not
    // match its contents (another node's heartbeat with a changed epoch).
    let bad = &nodes[1];
    let mesh_id = config(&tmp.path().join("unused"), "mesh", None).network.wire_id();
    let mut forged = SignedEnvelope::sign(
        &ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        &mesh_id,
        Kind::Heartbeat,
        0,
        vec![1, 2, 3],
    )
    .unwrap();
    forged.epoch = 1;
    for n in &nodes {
        let snap = n.net.snapshot().await.unwrap();
        assert!(snap.connected.iter().all(|c| c.gossip_score.unwrap_or(0.0) >= 0.0), "honest peers score >= 0");
    }
    // Version byte 1, then bytes that are no valid envelope.
    bad.net.publish(Kind::Heartbeat, b"\x01 definitely not an envelope".to_vec()).await.unwrap().unwrap();
    bad.net.publish(Kind::Heartbeat, forged.encode()).await.unwrap().unwrap();
    let bad_id = bad.peer_id.to_string();
    wait_for("a direct peer of the bad node scores it negative", Duration::from_secs(20), async || {
        for (i, n) in nodes.iter().enumerate() {
            if i == 1 {
                continue;
            }
            let snap = n.net.snapshot().await.unwrap();
            if snap.connected.iter().any(|c| c.peer_id == bad_id && c.gossip_score.is_some_and(|s| s < 0.0)) {
                return true;
            }
        }
        false
    })
    .await;
    let rejected = |reason: &str| {
        let metrics: String = nodes.iter().map(|n| n.registry.encode()).collect();
        metrics.lines().any(|l| l.contains("verdict=\"rejected\"") && l.contains(&format!("reason=\"{reason}\"")))
    };
    wait_for("both bad envelopes are counted as rejected", Duration::from_secs(20), async || {
        rejected("malformed") && rejected("bad_signature")
    })
    .await;
    assert!(nodes[0].registry.encode().contains("libp2p_"), "libp2p's own metrics are exported");

    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_different_networks_do_not_mix() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(config(&tmp.path().join("a"), "net-a", None)).await.unwrap();
    // A node of network b given a's address: it connects, but neither adds the other to
    // its routing table and no heartbeat crosses (protocols and topics differ).
    let mut cfg = config(&tmp.path().join("b"), "net-b", Some(format!("{}/p2p/{}", a.listen_addrs[0], a.peer_id)));
    cfg.network.heartbeat_interval_ms = 200;
    let b = Node::start(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in [&a, &b] {
        assert!(n.net.snapshot().await.unwrap().routing_table.is_empty(), "routing table mixed networks");
        assert!(n.heartbeats.lock().unwrap().is_empty(), "heartbeat crossed networks");
    }
    a.stop().await;
    b.stop().await;
}

/// Issue #16: nodes were told apart only by the network's name, so nodes with a different
/// genesis or economics under one name mixed (and would compute different rewards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_name_but_other_economics_do_not_mix() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(config(&tmp.path().join("a"), "same-name", None)).await.unwrap();
    let boot = format!("{}/p2p/{}", a.listen_addrs[0], a.peer_id);
    let mut cfg = config(&tmp.path().join("b"), "same-name", Some(boot.clone()));
    cfg.network.heartbeat_interval_ms = 200;
    cfg.network.economics.workers_bps -= 1;
    let b = Node::start(cfg).await.unwrap();
    // The control: a third node with a's exact parameters joins a.
    let c = Node::start(config(&tmp.path().join("c"), "same-name", Some(boot))).await.unwrap();
    wait_for("the node of the same network joins", Duration::from_secs(20), async || {
        a.net.snapshot().await.unwrap().routing_table.contains(&c.peer_id.to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b_id = b.peer_id.to_string();
    for n in [&a, &c] {
        assert!(!n.net.snapshot().await.unwrap().routing_table.contains(&b_id), "routing table mixed networks");
    }
    assert!(b.net.snapshot().await.unwrap().routing_table.is_empty());
    assert!(b.heartbeats.lock().unwrap().is_empty(), "a heartbeat crossed into the other economics");
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_finds_its_peers_again_without_a_bootnode() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(config(&tmp.path().join("a"), "restart", None)).await.unwrap();
    let boot = format!("{}/p2p/{}", a.listen_addrs[0], a.peer_id);
    let b_dir = tmp.path().join("b");
    let b = Node::start(config(&b_dir, "restart", Some(boot))).await.unwrap();
    let b_id = b.peer_id;
    wait_for("b connects to a", Duration::from_secs(20), async || {
        !b.net.snapshot().await.unwrap().connected.is_empty()
    })
    .await;
    b.stop().await; // saves its routing table to the peer store
    // Same data dir, no bootnode: the stored peers are enough.
    let b = Node::start(config(&b_dir, "restart", None)).await.unwrap();
    assert_eq!(b.peer_id, b_id, "the identity survives a restart");
    wait_for("the restarted node hears a's heartbeats", Duration::from_secs(30), async || {
        !b.heartbeats.lock().unwrap().is_empty()
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifier_attestations_replicate_and_a_late_joiner_catches_up_by_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = |name: &str, boot: Option<String>, verifier: bool| {
        fast_ledger(&tmp.path().join(name), "ledger", boot, verifier)
    };
    let a = Node::start(cfg("a", None, false)).await.unwrap();
    let boot = format!("{}/p2p/{}", a.listen_addrs[0], a.peer_id);
    let v = Node::start(cfg("v", Some(boot.clone()), true)).await.unwrap();
    let b = Node::start(cfg("b", Some(boot.clone()), false)).await.unwrap();
    let root = |n: &Node| n.ledger.with(|s| (s.ledger().root(), s.ledger().len()));
    wait_for("three attestations reach every node", Duration::from_secs(30), async || {
        let (r, len) = root(&v);
        len >= 3 && root(&a) == (r, len) && root(&b) == (r, len)
    })
    .await;
    // Attestations say what the verifier saw: both workers, heartbeats in the attested epoch.
    // The latest one is checked: every node was up for the whole of that epoch (the first
    // ones may cover an epoch a worker joined halfway through).
    let entries = v.ledger.with(|s| s.ledger().iter_sorted().collect::<Vec<_>>());
    let last = entries.iter().filter(|e| e.kind == ifx_protocols::ledger::EntryKind::Liveness).max_by_key(|e| e.seq);
    let att = ifx_protocols::ledger::LivenessAttestation::decode(&last.unwrap().body).unwrap();
    assert_eq!(att.expected, 5);
    assert_eq!(att.peers.len(), 2, "{att:?}");
    assert!(att.peers.iter().all(|p| p.seen >= 3), "{att:?}");

    // A node that joins now missed the gossip of earlier entries: anti-entropy brings them.
    let late = Node::start(cfg("late", Some(boot), false)).await.unwrap();
    wait_for("the late joiner holds the same ledger", Duration::from_secs(30), async || {
        let (r, len) = root(&late);
        len >= 3 && (r, len) == root(&a)
    })
    .await;
    let synced: u64 = late
        .registry
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("ifx_ledger_sync_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(synced > 0, "the late joiner's entries came by anti-entropy");
    // The store can be read while the node holds it.
    let ro =
        ifx_storage::LedgerStore::open_existing(ifx_storage::Db::open_read_only(&tmp.path().join("late/db")).unwrap())
            .unwrap();
    assert!(ro.ledger().len() >= 3);
    for n in [a, v, b, late] {
        n.stop().await;
    }
}

/// Issue #16, durable or nothing: a verifier whose `db/` is deleted while its key is kept must
/// not sign seq 0 again (it would equivocate against its own history and be slashed). On
/// restart it fetches its chain from a peer first, then goes on from where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_store_with_a_kept_key_fetches_its_chain_before_signing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg =
        |name: &str, boot: Option<String>, verifier: bool| fast_ledger(&tmp.path().join(name), "wiped", boot, verifier);
    let a = Node::start(cfg("a", None, false)).await.unwrap();
    let boot = format!("{}/p2p/{}", a.listen_addrs[0], a.peer_id);
    let v = Node::start(cfg("v", Some(boot.clone()), true)).await.unwrap();
    let me = v.settle.key.verifying_key().to_bytes();
    let chain_len = |n: &Node| n.ledger.with(|s| s.ledger().author_summary(&me).map_or(0, |a| a.len));
    wait_for("the verifier's attestations reach a", Duration::from_secs(30), async || chain_len(&a) >= 3).await;
    v.stop().await;
    let before = chain_len(&a);
    std::fs::remove_dir_all(tmp.path().join("v/db")).unwrap();

    let v = Node::start(cfg("v", Some(boot), true)).await.unwrap();
    assert_eq!(v.settle.key.verifying_key().to_bytes(), me, "the key was kept");
    wait_for("the restarted verifier signs again", Duration::from_secs(30), async || chain_len(&a) > before).await;
    let (forks, equivocators) = a.ledger.with(|s| (s.ledger().forks(&me), s.ledger().equivocators().count()));
    assert!(forks.is_empty() && equivocators == 0, "the verifier equivocated against itself: {forks:?}");
    let chain = a.ledger.with(|s| s.ledger().chain(&me));
    assert!(chain.windows(2).all(|w| w[1].seq == w[0].seq + 1 && w[1].prev == w[0].id()), "one unbroken chain");
    a.stop().await;
    v.stop().await;
}

/// Hostile peers against a restarting node (found in a testnet under attack): three strangers
/// that answer every sync request at once with "nothing" reach a verifier whose `db/` was wiped
/// while its only bootnode, which holds its chain, is down. Believing the first answer, the
/// verifier signed seq 0 again and equivocated against its own history (a slashable offence
/// an attacker brought about). Now it waits to hear a bootnode, and goes on from its chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_answering_nothing_do_not_make_a_wiped_node_sign_its_history_again() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg_a = || {
        let mut c = fast_ledger(&tmp.path().join("a"), "liars", None, false);
        c.node.listen = vec![format!("/ip4/127.0.0.1/tcp/{port}")];
        c
    };
    let a = Node::start(cfg_a()).await.unwrap();
    let boot = format!("{}/p2p/{}", a.listen_addrs[0], a.peer_id);
    let cfg_v = || fast_ledger(&tmp.path().join("v"), "liars", Some(boot.clone()), true);
    let v = Node::start(cfg_v()).await.unwrap();
    let me = v.settle.key.verifying_key().to_bytes();
    let chain_len = |n: &Node| n.ledger.with(|s| s.ledger().author_summary(&me).map_or(0, |a| a.len));
    wait_for("the verifier's attestations reach a", Duration::from_secs(30), async || chain_len(&a) >= 3).await;
    v.stop().await;
    a.stop().await;
    std::fs::remove_dir_all(tmp.path().join("v/db")).unwrap();

    let v = Node::start(cfg_v()).await.unwrap();
    let v_addr = format!("{}/p2p/{}", v.listen_addrs[0], v.peer_id);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut liars = Vec::new();
    for i in 0..3 {
        let cfg = fast_ledger(&tmp.path().join(format!("liar{i}")), "liars", Some(v_addr.clone()), false);
        let mut liar = bare_stack(cfg, &shutdown).await;
        let (net, mut inbound) =
            (liar.handle.clone(), std::mem::replace(&mut liar.sync_inbound, tokio::sync::mpsc::channel(1).1));
        tokio::spawn(async move {
            while let Some(req) = inbound.recv().await {
                let nothing = ifx_protocols::ledger::SyncResponse { entries: Vec::new(), next: None };
                net.respond(ifx_node::network::Proto::LedgerSync, req.channel, nothing.encode()).await;
            }
        });
        liars.push(liar);
    }
    wait_for("the liars connect to the verifier", Duration::from_secs(10), async || {
        v.net.snapshot().await.unwrap().connected.len() >= 3
    })
    .await;
    // The liars have answered by now; a comes back, and the verifier's redial finds it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a = Node::start(cfg_a()).await.unwrap();
    let before = chain_len(&a);
    let forked = |n: &Node| n.ledger.with(|s| !s.ledger().forks(&me).is_empty());
    wait_for("the restarted verifier signs again", Duration::from_secs(40), async || {
        chain_len(&a) > before || forked(&a)
    })
    .await;
    let (forks, equivocators) = a.ledger.with(|s| (s.ledger().forks(&me), s.ledger().equivocators().count()));
    assert!(forks.is_empty() && equivocators == 0, "the verifier equivocated against itself: {forks:?}");
    let chain = a.ledger.with(|s| s.ledger().chain(&me));
    assert!(chain.windows(2).all(|w| w[1].seq == w[0].seq + 1 && w[1].prev == w[0].id()), "one unbroken chain");
    shutdown.cancel();
    a.stop().await;
    v.stop().await;
}

/// Issue #17, the link measurement protocol as a stranger's lever: each request makes the node
/// send up to 2 MiB. A peer that asks 20 times at once gets the burst of 8 answered and the
/// rest refused; five seconds later, one more (the refill, 1 per 5 s). What a stranger can make
/// a node send is bounded: 8 x 2 MiB, then 2 MiB per 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_request_flood_gets_its_burst_then_one_answer_per_five_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(config(&tmp.path().join("n"), "link-flood", None)).await.unwrap();
    let addr = format!("{}/p2p/{}", node.listen_addrs[0], node.peer_id);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stranger = bare_stack(config(&tmp.path().join("stranger"), "link-flood", Some(addr)), &shutdown).await;
    let net = stranger.handle.clone();
    let most = ifx_protocols::link::MAX_LINK_BYTES;
    let ask = || {
        let net = net.clone();
        let peer = node.peer_id;
        async move {
            matches!(
                net.request(ifx_node::network::Proto::Link, peer, ifx_protocols::link::request(most, 0)).await,
                Ok(Ok(b)) if b.len() == most as usize
            )
        }
    };
    wait_for("the stranger connects", Duration::from_secs(10), async || {
        node.net.snapshot().await.unwrap().connected.len() == 1
    })
    .await;
    let answered = futures::future::join_all((0..20).map(|_| ask())).await.iter().filter(|ok| **ok).count();
    assert_eq!(answered, 8, "the burst, and only the burst");
    tokio::time::sleep(Duration::from_millis(5_200)).await;
    let again = futures::future::join_all((0..5).map(|_| ask())).await.iter().filter(|ok| **ok).count();
    assert_eq!(again, 1, "one refill in 5 s");
    shutdown.cancel();
    node.stop().await;
}

/// Issue #17, link data collection: a verifier measures each worker it is connected to (a
/// round trip and 2 MiB each way over the link protocol), writes what it measured in an epoch
/// as that epoch's `LinkReport`, and every node's `GET /peers` shows each worker's attested
/// link (the median over verifiers; here one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_attests_each_workers_link_and_peers_shows_it() {
    use ifx_protocols::ledger::{EntryKind, LinkReport};
    let tmp = tempfile::tempdir().unwrap();
    let cfg =
        |name: &str, boot: Option<String>, verifier: bool| fast_ledger(&tmp.path().join(name), "links", boot, verifier);
    let mut with_api = cfg("a", None, false);
    with_api.node.api = "127.0.0.1:0".into();
    let a = Node::start(with_api).await.unwrap();
    let boot = format!("{}/p2p/{}", a.listen_addrs[0], a.peer_id);
    let v = Node::start(cfg("v", Some(boot.clone()), true)).await.unwrap();
    let b = Node::start(cfg("b", Some(boot), false)).await.unwrap();
    let reported = |n: &Node| {
        let mut workers = std::collections::BTreeMap::new();
        for e in n.ledger.with(|s| s.ledger().iter_sorted().collect::<Vec<_>>()) {
            if e.kind == EntryKind::LinkReport {
                for l in LinkReport::decode(&e.body).unwrap().links {
                    workers.insert(ifx_node::network::author_peer_id(&l.worker).unwrap(), l);
                }
            }
        }
        workers
    };
    wait_for("link reports of both workers reach node a", Duration::from_secs(40), async || {
        let r = reported(&a);
        r.contains_key(&a.peer_id) && r.contains_key(&b.peer_id)
    })
    .await;
    for (peer, l) in reported(&a) {
        assert!([a.peer_id, b.peer_id].contains(&peer), "only workers are measured, not {peer}");
        assert_eq!(l.path, ifx_protocols::api::LinkPath::Direct);
        assert!(l.rtt_us > 0 && l.to_worker_kbit > 0 && l.from_worker_kbit > 0, "{l:?}");
    }
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{}/peers", a.api_addr.unwrap());
    wait_for("GET /peers shows both workers' attested links", Duration::from_secs(20), async || {
        let p: ifx_protocols::api::Peers = c.get(&url).send().await.unwrap().json().await.unwrap();
        [a.peer_id, b.peer_id].iter().all(|w| p.links.get(&w.to_string()).is_some_and(|l| l.verifiers == 1))
    })
    .await;
    for n in [a, v, b] {
        n.stop().await;
    }
}

/// Issue #16, eclipse: one host brings 64 peer ids (real ifx network stacks, built from the
/// node's own crates) against a victim. Before, all 64 got in, and the victim, far above its
/// target, trimmed the only connections it ever trims, its own dials: the honest peers. Now at
/// most four peers per IP get in, and the victim keeps its honest peers and hears them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eclipse_from_one_host_with_64_ids_leaves_the_victim_its_honest_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let h0 = Node::start(config(&tmp.path().join("h0"), "eclipse", None)).await.unwrap();
    let boot = format!("{}/p2p/{}", h0.listen_addrs[0], h0.peer_id);
    let mut honest = vec![h0];
    for i in 1..3 {
        honest
            .push(Node::start(config(&tmp.path().join(format!("h{i}")), "eclipse", Some(boot.clone()))).await.unwrap());
    }
    let mut vcfg = config(&tmp.path().join("victim"), "eclipse", Some(boot.clone()));
    // On one machine every peer is 127.0.0.1: this victim treats loopback as a real address.
    vcfg.limits.loopback_exempt = false;
    vcfg.limits.target_peers = 8;
    let victim = Node::start(vcfg).await.unwrap();
    let honest_ids: BTreeSet<_> = honest.iter().map(|n| n.peer_id.to_string()).collect();
    let connected = async |n: &Node| -> BTreeSet<String> {
        n.net.snapshot().await.unwrap().connected.into_iter().map(|p| p.peer_id).collect()
    };
    wait_for("the victim connects to its honest peers", Duration::from_secs(30), async || {
        connected(&victim).await.is_superset(&honest_ids)
    })
    .await;

    // The attacker: 64 identities on one host, each a full ifx network stack dialling the victim.
    let victim_addr = format!("{}/p2p/{}", victim.listen_addrs[0], victim.peer_id);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut attackers = Vec::new();
    for i in 0..64 {
        let cfg = config(&tmp.path().join(format!("attacker{i}")), "eclipse", Some(victim_addr.clone()));
        attackers.push(bare_stack(cfg, &shutdown).await);
    }
    let attacker_ids: BTreeSet<String> = attackers.iter().map(|a| a.handle.local_peer_id().to_string()).collect();
    // Give the flood time to arrive and the victim time to trim.
    let refused = |n: &Node| -> u64 {
        n.registry
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix("ifx_inbound_refused_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_for("the victim refuses most of the flood", Duration::from_secs(30), async || refused(&victim) >= 50).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let now = connected(&victim).await;
    let attackers_in = now.intersection(&attacker_ids).count();
    assert!(now.is_superset(&honest_ids), "the victim lost honest peers: {now:?}");
    assert!(attackers_in <= 4, "{attackers_in} attacker ids connected");
    // And it still hears its honest peers.
    let heard = |n: &Node| n.heartbeats.lock().unwrap().len();
    assert!(heard(&victim) >= 3, "heartbeats from {} peers", heard(&victim));
    shutdown.cancel();
    victim.stop().await;
    for n in honest {
        n.stop().await;
    }
}
