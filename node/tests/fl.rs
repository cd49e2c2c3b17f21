//! Federated learning between real nodes on 127.0.0.1: a task owner, five honest workers each
//! holding one non-IID shard of the digits, four misbehaving workers (a sign-flipper, one that
//! sends NaN, one that sends misshapen tensors, one too slow for the deadline) and a verifier
//! that audits every round by recomputing the aggregate from the owner's blobs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ifx_node::{Node, NodeConfig};
use ifx_protocols::fl::wire::{DataRule, TaskSpec};
use ifx_protocols::ledger::{EntryKind, FlReceipt};

/// One genesis for every node of this test binary: a node with another genesis is on another
/// network (the network id commits to it).
fn genesis_secs() -> u64 {
    static GENESIS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *GENESIS.get_or_init(|| ifx_node::unix_time_us() / 1_000_000)
}

fn digits() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/digits.csv.gz")
}

fn config(dir: &Path, boot: Option<String>) -> NodeConfig {
    let mut c = NodeConfig::default();
    c.node.data_dir = dir.into();
    c.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    c.node.api = String::new();
    c.network.id = "fl-test".into();
    c.network.genesis_unix_secs = genesis_secs();
    c.network.epoch_secs = 3600;
    c.network.heartbeat_interval_ms = 300;
    c.network.bootnodes = boot.into_iter().collect();
    c.ledger.sync_interval_ms = 500;
    c.por.challenge_interval_ms = 86_400_000;
    c
}

/// A task owner holding the digits data, and `shards` honest workers, each training its shard.
async fn owner_and_workers(dir: &Path, shards: u32) -> (Node, String, Vec<Node>) {
    let mut owner_cfg = config(&dir.join("owner"), None);
    owner_cfg.fl.data = Some(digits());
    let owner = Node::start(owner_cfg).await.unwrap();
    let boot = format!("{}/p2p/{}", owner.listen_addrs[0], owner.peer_id);
    let mut workers = Vec::new();
    for shard in 0..shards {
        workers.push(worker(&dir.join(format!("w{shard}")), &boot, shard, "").await);
    }
    (owner, boot, workers)
}

/// The task's status once it stopped running, at most `limit` later.
async fn finished(owner: &Node, id: &str, limit: Duration) -> ifx_protocols::api::TaskStatus {
    let start = Instant::now();
    loop {
        let s = owner.fl.get(id).unwrap();
        if s.state != ifx_protocols::api::RunState::Running {
            return s;
        }
        assert!(start.elapsed() < limit, "task still running: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A worker on `shard` in poison mode `poison` ("" for honest), booting from `boot`.
async fn worker(dir: &Path, boot: &str, shard: u32, poison: &str) -> Node {
    let mut c = config(dir, Some(boot.to_owned()));
    c.fl.data = Some(digits());
    c.fl.shard = Some(shard);
    c.fl.poison = poison.parse().unwrap();
    Node::start(c).await.unwrap()
}

/// A verifier, which audits every round it hears.
async fn auditor(dir: &Path, boot: String) -> Node {
    let mut c = config(dir, Some(boot));
    c.node.role = ifx_protocols::Role::Verifier;
    Node::start(c).await.unwrap()
}

/// Waits until `owner` is connected to `peers` peers (at most 30 s).
async fn connected(owner: &Node, peers: usize) {
    let start = Instant::now();
    while owner.net.snapshot().await.unwrap().connected.len() < peers {
        assert!(start.elapsed() < Duration::from_secs(30), "the mesh did not form");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The FL receipts in `node`'s ledger, in ledger order.
fn fl_receipts(node: &Node) -> Vec<FlReceipt> {
    node.ledger.with(|l| {
        l.ledger()
            .iter_sorted()
            .filter(|e| e.kind == EntryKind::FlReceipt)
            .map(|e| FlReceipt::decode(&e.body).unwrap())
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_non_iid_clients_learn_over_the_mesh_despite_poisoners_and_an_auditor_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let (owner, boot, honest) = owner_and_workers(tmp.path(), 5).await;
    let mut bad = Vec::new();
    for (i, mode) in ["sign-flip", "nan", "shape", "slow"].into_iter().enumerate() {
        bad.push((mode, worker(&tmp.path().join(format!("p{i}")), &boot, i as u32, mode).await));
    }
    let auditor = auditor(&tmp.path().join("auditor"), boot).await;

    // Every worker must be connected to the owner before the task starts (they join on its
    // announcements; a late joiner simply joins a later round).
    connected(&owner, 10).await;

    let rounds = 60;
    let spec = TaskSpec {
        rounds,
        clients_per_round: 5,
        over_select_pct: 100,
        min_clients: 3,
        data: DataRule { shards: 5, alpha: 0.5, seed: 42 },
        aggregator: "trimmed-mean".into(),
        // Drift correction on: workers send gradients, the owner their control, auditors
        // recompute both (a round whose control differs fails its audit).
        scaffold: 0.1,
        deadline_ms: 4000,
        // This test's network has no genesis: nobody holds units to pay with.
        unpaid: true,
        ..Default::default()
    };
    let id = owner.fl.start(spec).await.unwrap();
    let status = finished(&owner, &id, Duration::from_secs(240)).await;
    eprintln!(
        "{} rounds in {:.1} s; accuracy by round {:?}",
        status.rounds_done,
        status.secs,
        status.accuracy_by_round.iter().map(|a| format!("{a:.3}")).collect::<Vec<_>>()
    );
    eprintln!("accepted {:?}\nrejected {:?}\ndropped {:?}", status.accepted, status.rejected, status.dropped);
    assert_eq!(status.state, ifx_protocols::api::RunState::Done, "{:?}", status.error);
    assert_eq!(status.rounds_done, rounds);
    let final_acc = status.final_accuracy.unwrap();
    // Issue #6's bar: at least 95% on the non-IID split, over the mesh.
    assert!(final_acc >= 0.95, "final accuracy {final_acc}");

    // The misbehaving workers: every update of theirs that arrived was rejected, with its reason;
    // the slow one never made a deadline.
    for (mode, n) in &bad {
        let p = n.peer_id.to_string();
        assert_eq!(status.accepted.get(&p), None, "{mode} worker had updates accepted");
        match *mode {
            "slow" => assert!(status.dropped.get(&p).copied().unwrap_or(0) > 0, "slow worker never dropped"),
            _ => {
                let why = status.rejected.get(&p).unwrap_or_else(|| panic!("{mode} worker never rejected"));
                let expect: &[&str] = match *mode {
                    "sign-flip" => &["x the median", "points away"],
                    "nan" => &["NaN"],
                    _ => &["tensors"],
                };
                assert!(why.iter().all(|w| expect.iter().any(|e| w.contains(e))), "{mode}: {why:?}");
            }
        }
    }
    for n in &honest {
        assert!(status.accepted.get(&n.peer_id.to_string()).copied().unwrap_or(0) > 0, "an honest worker unused");
    }

    // Outputs: the final weights load back and score the reported accuracy; the plot exists.
    let weights = std::fs::read(status.weights.as_ref().unwrap()).unwrap();
    let w = ifx_protocols::fl::wire::from_safetensors(&weights).unwrap();
    let (_, test) = ifx_learn::data::Dataset::load(&digits()).unwrap().split();
    assert_eq!(ifx_learn::model::accuracy(&w, &test).unwrap(), final_acc);
    assert!(std::fs::metadata(status.plot.as_ref().unwrap()).unwrap().len() > 1000);

    // Receipts: one per delivered update, accepted or rejected, in the owner's ledger ...
    let receipts = fl_receipts(&owner);
    let accepted: u64 = status.accepted.values().sum();
    assert_eq!(receipts.iter().filter(|r| r.accepted).count() as u64, accepted);
    assert!(
        receipts
            .iter()
            .filter(|r| r.accepted)
            .all(|r| (r.work_units > 0 || r.contribution_ppm == 0) && r.reason.is_empty())
    );
    assert!(receipts.iter().filter(|r| !r.accepted).all(|r| r.work_units == 0 && !r.reason.is_empty()));
    assert_eq!(status.receipts as usize, receipts.len());

    // ... and the auditor recomputed every round to the same bits, and holds the receipts too.
    let start = Instant::now();
    loop {
        let a = auditor.fl.audits();
        let held = auditor.ledger.with(|l| l.ledger().iter_sorted().filter(|e| e.kind == EntryKind::FlReceipt).count());
        if a.matched >= rounds as u64 && held == receipts.len() {
            assert_eq!(a.mismatched, 0, "{a:?}");
            eprintln!("audits {a:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "audits {a:?}, receipts held {held}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Issue #16: only a task's owner may make a worker train. The auditor asks an honest
    // worker that joined this task: refused, and nothing is trained.
    let task: [u8; 16] = hex::decode(&id).unwrap().try_into().unwrap();
    let train = ifx_protocols::fl::wire::FlRequest::Train {
        task,
        round: 0,
        spec: status.spec.clone(),
        global: [0; 32],
        len: 1000,
        control: None,
    };
    let answer =
        auditor.net.request(ifx_node::network::Proto::Fl, honest[0].peer_id, train.encode()).await.unwrap().unwrap();
    match ifx_protocols::fl::wire::FlResponse::decode(&answer).unwrap() {
        ifx_protocols::fl::wire::FlResponse::Error(e) => assert!(e.contains("owner"), "{e}"),
        other => panic!("a stranger made a worker train: {other:?}"),
    }

    // Malformed requests on the fl protocol get a reason, not a crash.
    let answer =
        auditor.net.request(ifx_node::network::Proto::Fl, owner.peer_id, vec![0xff; 40]).await.unwrap().unwrap();
    let resp = ifx_protocols::fl::wire::FlResponse::decode(&answer).unwrap();
    assert!(matches!(resp, ifx_protocols::fl::wire::FlResponse::Error(_)), "{resp:?}");

    for n in honest.into_iter().chain(bad.into_iter().map(|(_, n)| n)).chain([owner, auditor]) {
        n.stop().await;
    }
}

/// Issue #19: a paused worker is not asked to train. Its heartbeats say paused, so the owner
/// leaves it out of every round (before, it asked, heard "busy" and counted a dropped update);
/// the task runs on the others, and the paused one is neither used nor held to have failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_is_not_asked_to_train() {
    let tmp = tempfile::tempdir().unwrap();
    let (owner, _, workers) = owner_and_workers(tmp.path(), 3).await;
    workers[2].pause.set(Some("gaming".into()));
    let paused = workers[2].peer_id;
    // Connected, and heard paused by the owner.
    let start = Instant::now();
    loop {
        let heard = owner
            .heartbeats
            .lock()
            .unwrap()
            .iter()
            .any(|(k, r)| r.paused && ifx_node::network::author_peer_id(k).is_some_and(|p| p == paused));
        if heard && owner.net.snapshot().await.unwrap().connected.len() >= 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the owner never heard the pause");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spec = TaskSpec {
        rounds: 4,
        clients_per_round: 3,
        over_select_pct: 100,
        min_clients: 2,
        data: DataRule { shards: 3, alpha: 0.5, seed: 7 },
        deadline_ms: 4000,
        unpaid: true,
        ..Default::default()
    };
    let id = owner.fl.start(spec).await.unwrap();
    let status = finished(&owner, &id, Duration::from_secs(120)).await;
    assert_eq!(status.state, ifx_protocols::api::RunState::Done, "{:?}", status.error);
    assert_eq!(status.clients_by_round, vec![2; 4], "{status:?}");
    let p = paused.to_string();
    for (what, map) in
        [("accepted", &status.accepted), ("dropped", &status.dropped), ("rejected", &status.rejected_count)]
    {
        assert_eq!(map.get(&p), None, "the paused worker was {what}: {status:?}");
    }
    for w in &workers[..2] {
        assert!(status.accepted.get(&w.peer_id.to_string()).copied().unwrap_or(0) > 0, "{status:?}");
    }
}

/// Issue #20: FL is paid by contribution. Over a real mesh, three workers train their own
/// shards, a fourth holds a copy of the first's shard and a fifth flips signs; a verifier
/// audits every round. The two holders of one shard split one share (each earns clearly less
/// than a worker with unique data), the poisoner earns nothing, the receipts carry the
/// contributions the owner announced, and the auditor recomputed every round's contributions
/// to the same numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fl_pay_follows_contribution_a_copied_shard_earns_less_and_an_auditor_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let (owner, boot, unique) = owner_and_workers(tmp.path(), 3).await;
    let mut extra = Vec::new();
    for (name, shard, poison) in [("copy", 0, ""), ("flip", 1, "sign-flip")] {
        extra.push(worker(&tmp.path().join(name), &boot, shard, poison).await);
    }
    let auditor = auditor(&tmp.path().join("auditor"), boot).await;
    connected(&owner, 6).await;
    let rounds = 6;
    let spec = TaskSpec {
        rounds,
        clients_per_round: 5,
        over_select_pct: 0,
        min_clients: 3,
        data: DataRule { shards: 3, alpha: 0.5, seed: 42 },
        aggregator: "trimmed-mean".into(),
        deadline_ms: 8000,
        unpaid: true,
        ..Default::default()
    };
    let id = owner.fl.start(spec).await.unwrap();
    let status = finished(&owner, &id, Duration::from_secs(120)).await;
    assert_eq!(status.state, ifx_protocols::api::RunState::Done, "{:?}", status.error);
    let receipts = fl_receipts(&owner);
    let earned = |n: &Node| -> (u64, u64) {
        receipts
            .iter()
            .filter(|r| ifx_node::network::author_peer_id(&r.worker) == Some(n.peer_id))
            .fold((0, 0), |(c, u), r| (c + r.contribution_ppm as u64, u + r.work_units))
    };
    let (original, copy, flip) = (earned(&unique[0]), earned(&extra[0]), earned(&extra[1]));
    let others = [earned(&unique[1]), earned(&unique[2])];
    eprintln!(
        "contribution ppm, units: shard 0 {original:?}, its copy {copy:?}, unique {others:?}, sign-flip {flip:?}"
    );
    assert_eq!(original, copy, "the holders of one shard send the same update and split its share");
    assert_eq!(flip, (0, 0), "the poisoner earns nothing");
    let unique_mean = (others[0].0 + others[1].0) / 2;
    assert!(copy.0 * 10 < unique_mean * 7, "a copy earned {} against {unique_mean} for unique data", copy.0);
    for (who, n) in [("shard 0", &unique[0]), ("copy", &extra[0])] {
        assert_eq!(status.contribution_ppm.get(&n.peer_id.to_string()).copied(), Some(earned(n).0), "{who}");
    }
    // Every round audited to the same weights and the same contributions.
    let start = Instant::now();
    loop {
        let a = auditor.fl.audits();
        if a.matched + a.mismatched >= rounds as u64 {
            assert_eq!((a.matched, a.mismatched), (rounds as u64, 0), "{a:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "audits {a:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in unique.into_iter().chain(extra).chain([owner, auditor]) {
        n.stop().await;
    }
}

/// Issue #20: a task with a privacy budget over a real mesh. A budget with a screening rule is
/// refused by name; a DP task reports the noise and the ε it spends; and the workers do add the
/// noise: the same task at ε = 1 stays near chance where it learns without DP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_task_is_noised_on_the_workers_and_reports_its_epsilon() {
    let tmp = tempfile::tempdir().unwrap();
    let (owner, _, workers) = owner_and_workers(tmp.path(), 3).await;
    connected(&owner, 3).await;
    let dp = ifx_protocols::fl::dp::DpSpec { epsilon: 1.0, delta: 1e-5, clip: 1.0 };
    let spec = |dp: Option<ifx_protocols::fl::dp::DpSpec>, aggregator: &str| TaskSpec {
        rounds: 5,
        clients_per_round: 3,
        over_select_pct: 0,
        min_clients: 3,
        data: DataRule { shards: 3, alpha: 0.5, seed: 42 },
        aggregator: aggregator.into(),
        deadline_ms: 8000,
        unpaid: true,
        dp,
        ..Default::default()
    };
    let refused = owner.fl.start(spec(Some(dp.clone()), "median")).await.unwrap_err().to_string();
    assert!(refused.contains("needs fedavg"), "{refused}");
    let plain = owner.fl.start(spec(None, "fedavg")).await.unwrap();
    let plain = finished(&owner, &plain, Duration::from_secs(120)).await;
    let private = owner.fl.start(spec(Some(dp), "fedavg")).await.unwrap();
    let private = finished(&owner, &private, Duration::from_secs(120)).await;
    for s in [&plain, &private] {
        assert_eq!(s.state, ifx_protocols::api::RunState::Done, "{:?}", s.error);
    }
    assert!(plain.privacy.is_none());
    let p = private.privacy.clone().expect("the plan is reported");
    assert!(p.epsilon <= 1.0 && p.epsilon > 0.99 && p.epsilon_vs_owner > p.epsilon, "{p:?}");
    let (a_plain, a_private) = (plain.final_accuracy.unwrap(), private.final_accuracy.unwrap());
    eprintln!("5 rounds, 3 workers: {a_plain:.4} without DP, {a_private:.4} at ε = 1 ({p:?})");
    assert!(a_plain > 0.8 && a_private < a_plain - 0.3, "{a_plain} without DP, {a_private} at ε = 1");
    for n in workers.into_iter().chain([owner]) {
        n.stop().await;
    }
}
