//! Inference between real nodes on 127.0.0.1 (issue #20): a paying job owner publishes a CNN
//! trained here on the digits, two honest workers, one answering random logits and one
//! answering with a quarter of the model serve its batches, and a bonded verifier judges the
//! owner's evidence by re-executing it (and finds a framed honest worker innocent).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ifx_learn::data::Dataset;
use ifx_learn::model::TrainConfig;
use ifx_node::identity::Identity;
use ifx_node::network::Proto;
use ifx_node::{Node, NodeConfig};
use ifx_protocols::api::{InferJobRequest, RunState};
use ifx_protocols::infer::{Arch, InferRequest, InferResponse, top};
use ifx_protocols::ledger::EntryKind;
use ifx_protocols::ledger::body::{EntryBody, InferFault, InferReceipt};
use ifx_protocols::settle::{GenesisAlloc, StakeRole, UNITS_PER_IFX};

fn digits() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/digits.csv.gz")
}

fn key_of(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    hex::encode(Identity::load_or_create(dir).unwrap().public_key())
}

fn config(dir: &Path, boot: Option<String>, genesis: &[GenesisAlloc], secs: u64) -> NodeConfig {
    let mut c = NodeConfig::default();
    c.node.data_dir = dir.into();
    c.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    c.node.api = String::new();
    c.network.id = "infer-test".into();
    c.network.genesis_unix_secs = secs;
    c.network.epoch_secs = 3600;
    c.network.heartbeat_interval_ms = 300;
    c.network.bootnodes = boot.into_iter().collect();
    c.network.genesis = genesis.to_vec();
    c.ledger.sync_interval_ms = 500;
    c.por.challenge_interval_ms = 86_400_000;
    c
}

/// A node and one worker on 127.0.0.1, connected (`tweak` adjusts the worker's config).
async fn owner_and_worker(dir: &Path, tweak: impl FnOnce(&mut NodeConfig)) -> (Node, Node) {
    let secs = ifx_node::unix_time_us() / 1_000_000;
    let owner = Node::start(config(&dir.join("o"), None, &[], secs)).await.unwrap();
    let boot = format!("{}/p2p/{}", owner.listen_addrs[0], owner.peer_id);
    let mut wc = config(&dir.join("w"), Some(boot), &[], secs);
    tweak(&mut wc);
    let worker = Node::start(wc).await.unwrap();
    while owner.net.snapshot().await.unwrap().connected.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (owner, worker)
}

/// An MLP of seed `seed` (odd: the RNG takes odd seeds) published by `node`: its weights and spec.
fn mlp(node: &Node, seed: u64) -> (Vec<f32>, ifx_protocols::infer::ModelSpec) {
    let p = ifx_learn::infer::init(Arch::Mlp, seed);
    let model = node.infer.publish(Arch::Mlp, &ifx_protocols::infer::weights_to_bytes(Arch::Mlp, &p).unwrap()).unwrap();
    (p, model)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_serve_a_paid_job_and_both_inference_cheaters_are_caught_with_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |n: &str| tmp.path().join(n);
    let secs = ifx_node::unix_time_us() / 1_000_000;
    let genesis = vec![
        GenesisAlloc { key: key_of(&dir("owner")), role: StakeRole::Worker, stake: 0, liquid: 50 * UNITS_PER_IFX },
        GenesisAlloc { key: key_of(&dir("v")), role: StakeRole::Verifier, stake: 2_000 * UNITS_PER_IFX, liquid: 0 },
    ];
    let owner_cfg = config(&dir("owner"), None, &genesis, secs);
    let owner = Node::start(owner_cfg.clone()).await.unwrap();
    let boot = format!("{}/p2p/{}", owner.listen_addrs[0], owner.peer_id);
    let mut workers = Vec::new();
    for (name, cheat) in [("a", ""), ("b", ""), ("random", "infer-random"), ("cheap", "infer-cheap")] {
        let mut c = config(&dir(name), Some(boot.clone()), &genesis, secs);
        c.infer.cheat = cheat.parse().unwrap();
        workers.push(Node::start(c).await.unwrap());
    }
    let mut vc = config(&dir("v"), Some(boot), &genesis, secs);
    vc.node.role = ifx_protocols::Role::Verifier;
    let verifier = Node::start(vc).await.unwrap();

    // The model: a CNN trained here on the training split; the job: the test split's rows.
    let (train, test) = Dataset::load(&digits()).unwrap().split();
    let cfg = TrainConfig { epochs: 3, batch: 32, lr: 0.005, seed: 2 };
    let (p, _) = ifx_learn::infer::train(Arch::Cnn, &ifx_learn::infer::init(Arch::Cnn, 2), &train, &cfg).unwrap();
    let local = ifx_learn::infer::Model::load(Arch::Cnn, &p).unwrap();
    let bytes = ifx_protocols::infer::weights_to_bytes(Arch::Cnn, &p).unwrap();
    let model = owner.infer.publish(Arch::Cnn, &bytes).unwrap();
    let inputs = ifx_learn::infer::rows(&test, 0..test.len());

    // Bad jobs are refused by name before anything is paid or sent.
    let bad = |f: &dyn Fn(&mut InferJobRequest)| {
        let mut r = InferJobRequest { model, inputs: inputs.clone(), batch_rows: 32, verify_ppm: 0, unpaid: true };
        f(&mut r);
        r
    };
    for (req, why) in [
        (bad(&|r| r.batch_rows = 65), "batch_rows 65"),
        (bad(&|r| r.inputs.truncate(63)), "63 input values"),
        (bad(&|r| r.inputs[70] = f32::NAN), "inputs (batch of rows from 0)[70] = NaN"),
        (bad(&|r| r.model.weights = [9; 32]), "unknown model"),
        (bad(&|r| r.verify_ppm = 2_000_000), "verify_ppm"),
    ] {
        let e = owner.infer.submit(req).await.unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }

    // Everyone connected and heard (the owner sends batches only to workers whose heartbeats it
    // holds).
    let start = Instant::now();
    while owner.net.snapshot().await.unwrap().connected.len() < 5 || owner.heartbeats.lock().unwrap().iter().count() < 5
    {
        assert!(start.elapsed() < Duration::from_secs(30), "the mesh did not form");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let req = InferJobRequest { model, inputs: inputs.clone(), batch_rows: 32, verify_ppm: 50_000, unpaid: false };
    let id = owner.infer.submit(req).await.unwrap();
    let start = Instant::now();
    let job = loop {
        let j = owner.infer.get(&id).unwrap();
        if j.state != RunState::Running {
            break j;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "job still running: {j:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job.state, RunState::Done, "{:?}", job.error);
    assert!(job.paid > 0);
    eprintln!(
        "{} rows in {:.2} s, {} batches verified ({:.1}% of the time), caught {:?}",
        job.rows,
        job.secs,
        job.verified,
        100.0 * job.verify_secs / job.secs,
        job.caught
    );
    for (p, w) in &job.workers {
        eprintln!("  {p}: {w:?}");
    }
    let peer = |n: &Node| n.peer_id.to_string();
    // Both cheaters caught on their first batch (always re-executed); no honest worker.
    let caught: Vec<&String> = job.caught.keys().collect();
    assert_eq!(caught.len(), 2, "{:?}", job.caught);
    for n in &workers[2..] {
        assert!(job.caught.contains_key(&peer(n)), "{} not caught", peer(n));
    }
    // The honest workers served the job between them, each with latency figures.
    let served: u64 = workers[..2].iter().map(|n| job.workers.get(&peer(n)).map_or(0, |w| w.batches)).sum();
    assert_eq!(served, job.batches, "every batch came from an honest worker");
    for n in &workers[..2] {
        let w = &job.workers[&peer(n)];
        assert!(w.batches > 0 && w.p50_ms > 0.0 && w.p99_ms >= w.p50_ms && w.rows_per_sec > 0.0, "{w:?}");
    }
    // The logits written are the model's: the owner's local forward pass of every row, bit for bit.
    let text = std::fs::read_to_string(job.outputs.as_ref().unwrap()).unwrap();
    let want = local.forward(&inputs).unwrap();
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), test.len());
    for (i, l) in lines.iter().enumerate() {
        let class: usize = l.split(',').nth(1).unwrap().parse().unwrap();
        assert_eq!(class, top(&want[i * 10..(i + 1) * 10]), "row {i}");
    }
    let right = (0..test.len()).filter(|&i| top(&want[i * 10..(i + 1) * 10]) == test.y[i] as usize).count();
    assert!(right as f64 / test.len() as f64 > 0.9);
    // One receipt per batch, all for honest workers; two pieces of evidence.
    let (receipts, faults): (Vec<InferReceipt>, usize) = owner.ledger.with(|l| {
        let l = l.ledger();
        let r = l
            .iter_sorted()
            .filter(|e| e.kind == EntryKind::InferReceipt)
            .map(|e| InferReceipt::decode(&e.body).unwrap())
            .collect();
        (r, l.iter_sorted().filter(|e| e.kind == EntryKind::InferFault).count())
    });
    assert_eq!(receipts.len() as u64, job.batches);
    assert_eq!(faults, 2);
    // An owner framing an honest worker: it asks worker a for batch 0 of the paid job itself
    // and files the true, signed answer as evidence.
    let job_id: [u8; 16] = hex::decode(&id).unwrap().try_into().unwrap();
    let req = InferRequest::Batch { job: job_id, batch: 0, model, inputs: inputs[..32 * 64].to_vec() };
    let answer = owner.net.request(Proto::Infer, workers[0].peer_id, req.encode()).await.unwrap().unwrap();
    let InferResponse::Outputs { outputs, sig } = InferResponse::decode(&answer).unwrap() else { panic!() };
    let framed = InferFault {
        job: job_id,
        batch: 0,
        model,
        inputs: inputs[..32 * 64].to_vec(),
        outputs,
        worker: ifx_node::fl::peer_key(&workers[0].peer_id).unwrap(),
        sig,
        reason: "framed".into(),
    };
    assert!(framed.check().is_ok(), "a real signed answer");
    let (k, n) = (Identity::load_or_create(&dir("owner")).unwrap().signing_key().clone(), owner_cfg.network.clone());
    let framed_id =
        owner.ledger.append_and_gossip(&owner.net, &k, &n, EntryKind::InferFault, framed.encode()).await.unwrap().id();
    // The verifier re-executes all three: both cheaters guilty, the framed worker innocent.
    let start = Instant::now();
    loop {
        let rulings: Vec<([u8; 32], bool)> = verifier.ledger.with(|l| {
            l.ledger()
                .iter_sorted()
                .filter_map(|e| match EntryBody::of(&e) {
                    Ok(EntryBody::FaultRulings(r)) => Some(r.rulings.into_iter().map(|r| (r.fault, r.guilty))),
                    _ => None,
                })
                .flatten()
                .collect()
        });
        if rulings.len() >= 3 {
            assert_eq!(rulings.iter().filter(|(_, g)| *g).count(), 2, "{rulings:?}");
            assert!(rulings.contains(&(framed_id, false)), "the framed worker is innocent: {rulings:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "rulings {rulings:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in workers.into_iter().chain([owner, verifier]) {
        n.stop().await;
    }
}

/// An owner's batches back to back, as fast as a worker answers them (hundreds a second for
/// the small MLP): none is refused or dropped by the worker's rate limit or queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_back_to_back_are_all_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let (owner, worker) = owner_and_worker(tmp.path(), |_| {}).await;
    let (_, model) = mlp(&owner, 1);
    let req = ifx_protocols::infer::InferRequest::Batch { job: [1; 16], batch: 0, model, inputs: vec![0.5; 64 * 64] };
    let t = Instant::now();
    let n = 2_000;
    for i in 0..n {
        let r = owner.net.request(ifx_node::network::Proto::Infer, worker.peer_id, req.encode()).await.unwrap();
        match r.map(|b| ifx_protocols::infer::InferResponse::decode(&b).unwrap()) {
            Ok(ifx_protocols::infer::InferResponse::Outputs { outputs, .. }) => assert_eq!(outputs.len(), 640),
            other => panic!("batch {i}: {other:?}"),
        }
    }
    eprintln!("{n} batches in {:.2} s", t.elapsed().as_secs_f64());
    owner.stop().await;
    worker.stop().await;
}

/// A stranger naming model after model (issue #20's review): the worker serves each from
/// memory, keeps at most `LOADED_MODELS` loaded, and writes none of them to its blob store,
/// whose oldest-first eviction would otherwise drop an FL owner's round weights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_named_by_a_stranger_evict_nothing_from_the_blob_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (stranger, worker) = owner_and_worker(tmp.path(), |_| {}).await;
    // The worker holds a blob of its own, as an FL round's weights would be.
    let round = worker.fl.put_blob(vec![7; 1000]).unwrap();
    let before = worker.fl.blob_usage();
    let models = ifx_node::infer::LOADED_MODELS + 4;
    for seed in 0..models as u64 {
        let (p, model) = mlp(&stranger, 2 * seed + 1);
        let req = InferRequest::Batch { job: [9; 16], batch: seed as u32, model, inputs: vec![0.25; 64 * 8] };
        let r = stranger.net.request(Proto::Infer, worker.peer_id, req.encode()).await.unwrap().unwrap();
        match InferResponse::decode(&r).unwrap() {
            InferResponse::Outputs { outputs, .. } => {
                let local = ifx_learn::infer::Model::load(Arch::Mlp, &p).unwrap();
                assert_eq!(outputs, local.forward(&vec![0.25; 64 * 8]).unwrap(), "model {seed}");
            }
            other => panic!("model {seed}: {other:?}"),
        }
    }
    assert_eq!(worker.fl.blob_usage(), before, "the worker stored a stranger's model");
    let held = ifx_node::fl::fetch_blob(&stranger.net, worker.peer_id, round).await.unwrap();
    assert_eq!(held, vec![7; 1000], "the round's blob is still served");
    assert_eq!(worker.infer.loaded_models(), ifx_node::infer::LOADED_MODELS);
    stranger.stop().await;
    worker.stop().await;
}

/// More batches at once than a worker queues: the excess is refused as busy at once (the owner
/// sends it elsewhere), everything queued is answered, and the worker serves again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_busy_and_then_serves_again() {
    let tmp = tempfile::tempdir().unwrap();
    // Each batch takes 40 ms more, so the burst below outruns the worker.
    let (owner, worker) = owner_and_worker(tmp.path(), |c| c.faults.slow_ms = 40).await;
    let (_, model) = mlp(&owner, 3);
    let req = InferRequest::Batch { job: [2; 16], batch: 0, model, inputs: vec![0.5; 64 * 64] };
    let ask = |req: InferRequest| {
        let net = owner.net.clone();
        let peer = worker.peer_id;
        async move {
            match InferResponse::decode(&net.request(Proto::Infer, peer, req.encode()).await.unwrap().unwrap()).unwrap()
            {
                InferResponse::Outputs { outputs, .. } => Ok(outputs.len()),
                InferResponse::Error(e) => Err(e),
            }
        }
    };
    assert_eq!(ask(req.clone()).await, Ok(640), "the model loads");
    let burst = 3 * ifx_node::infer::QUEUE;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..burst {
        set.spawn(ask(req.clone()));
    }
    let (mut served, mut busy) = (0, 0);
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(n) => {
                assert_eq!(n, 640);
                served += 1;
            }
            Err(e) => {
                assert!(e.starts_with("busy:"), "{e}");
                busy += 1;
            }
        }
    }
    eprintln!("{burst} at once: {served} served, {busy} refused as busy");
    assert!(busy > 0, "a burst of {burst} never filled a queue of {}", ifx_node::infer::QUEUE);
    assert!(served >= ifx_node::infer::QUEUE, "only {served} served");
    assert_eq!(ask(req).await, Ok(640), "the worker serves again once its queue drains");
    owner.stop().await;
    worker.stop().await;
}
