//! Inference costs in one run (issue #20), for a full batch (64 rows) of each model.
//!
//! - `limit_candle_forward_*`: candle's own layers (`candle_nn::Conv2d`, `Linear`) holding the
//!   same weights, input tensor in and logits out: the floor serving cannot beat.
//! - `model_forward_*`: ifx's served model (`ifx_learn::infer::Model::forward`).
//! - `serve_batch_*`: all a worker does per batch without the network: decode the request,
//!   run the model, hash and sign the commitment, encode the answer.
//! - `over_libp2p_*`: one batch from an owner to a real worker node on 127.0.0.1 and back
//!   (request-response over TCP, the worker's queue and signature): a worker's throughput.
//! - `verify_answer_*`: checking an answer's signature (hash inputs and outputs, check the
//!   ed25519 signature); `reexecute_*`: running the batch again and comparing. The owner does
//!   both to a sampled batch only (each worker's first and `verify_ppm` of the rest).
//!
//! Before the benchmarks, the verification share at the default sampling (3%) is printed from
//! the same measurements: 3% x (signature check + re-execution) / serving.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Module, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ifx_learn::data::Dataset;
use ifx_learn::infer::{self, Model};
use ifx_protocols::infer::{
    Arch, Commitment, InferRequest, InferResponse, MAX_BATCH_ROWS, ModelSpec, compare, weights_to_bytes,
};

/// candle's own layers with the same weights (the limit).
enum Limit {
    Mlp(candle_nn::Linear, candle_nn::Linear),
    Cnn(candle_nn::Conv2d, candle_nn::Conv2d, candle_nn::Linear),
}

impl Limit {
    fn new(arch: Arch, p: &[f32]) -> Self {
        let mut at = 0;
        let mut t = |i: usize| {
            let shape = arch.tensors()[i].1;
            let n: usize = shape.iter().product();
            let v = Tensor::from_slice(&p[at..at + n], shape, &Device::Cpu).unwrap();
            at += n;
            v
        };
        let conv = candle_nn::Conv2dConfig { padding: 1, ..Default::default() };
        match arch {
            Arch::Mlp => {
                let l1 = candle_nn::Linear::new(t(0), Some(t(1)));
                Limit::Mlp(l1, candle_nn::Linear::new(t(2), Some(t(3))))
            }
            Arch::Cnn => {
                let c1 = candle_nn::Conv2d::new(t(0), Some(t(1)), conv);
                let c2 = candle_nn::Conv2d::new(t(2), Some(t(3)), conv);
                Limit::Cnn(c1, c2, candle_nn::Linear::new(t(4), Some(t(5))))
            }
        }
    }

    fn forward(&self, rows: &[f32]) -> Vec<f32> {
        let n = rows.len() / 64;
        let x = Tensor::from_slice(rows, (n, 64), &Device::Cpu).unwrap();
        let y = match self {
            Limit::Mlp(a, b) => b.forward(&a.forward(&x).unwrap().relu().unwrap()).unwrap(),
            Limit::Cnn(c1, c2, f) => {
                let x = x.reshape((n, 1, 8, 8)).unwrap();
                let h = c2.forward(&c1.forward(&x).unwrap().relu().unwrap()).unwrap().relu().unwrap();
                f.forward(&h.max_pool2d(2).unwrap().flatten_from(1).unwrap()).unwrap()
            }
        };
        y.flatten_all().unwrap().to_vec1().unwrap()
    }
}

/// Median seconds of `n` runs of `f`.
fn median(n: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[n / 2]
}

fn bench(c: &mut Criterion) {
    let d = Dataset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/digits.csv.gz")).unwrap();
    let (train, test) = d.split();
    let rows = infer::rows(&test, 0..MAX_BATCH_ROWS);
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let pk = key.verifying_key().to_bytes();
    let mut g = c.benchmark_group("infer");
    g.sample_size(20);
    g.throughput(Throughput::Elements(MAX_BATCH_ROWS as u64));
    let mut models = Vec::new();
    for arch in Arch::ALL {
        let cfg = ifx_learn::model::TrainConfig { epochs: 1, batch: 32, lr: 0.005, seed: 1 };
        let (p, _) = infer::train(arch, &infer::init(arch, 1), &train, &cfg).unwrap();
        let bytes = weights_to_bytes(arch, &p).unwrap();
        let spec = ModelSpec::publish(arch, &bytes).unwrap();
        let model = Model::load(arch, &p).unwrap();
        let limit = Limit::new(arch, &p);
        let out = model.forward(&rows).unwrap();
        // The limit computes the same logits (within float reordering).
        assert!(compare(&out, &limit.forward(&rows)).is_ok());
        let name = arch.name();
        let req = InferRequest::Batch { job: [1; 16], batch: 0, model: spec, inputs: rows.clone() }.encode();
        let serve = |req: &[u8]| {
            let InferRequest::Batch { job, batch, model: m, inputs } = InferRequest::decode(req).unwrap();
            let outputs = model.forward(&inputs).unwrap();
            let sig = Commitment::of(job, batch, &m, &inputs, &outputs).sign(&key);
            InferResponse::Outputs { outputs, sig }.encode()
        };
        let answer = serve(&req);
        let InferResponse::Outputs { outputs, sig } = InferResponse::decode(&answer).unwrap() else { panic!() };
        let check = || {
            ifx_protocols::ledger::body::infer::signed_by(
                &Commitment::of([1; 16], 0, &spec, &rows, &outputs),
                &pk,
                &sig,
            )
        };
        assert!(check());
        let reexecute = || compare(&model.forward(&rows).unwrap(), &outputs).unwrap();
        // The share at the default 3% sampling, from the same machine and run.
        let (t_serve, t_check, t_re) = (
            median(200, || drop(serve(&req))),
            median(200, || assert!(check())),
            median(200, || {
                reexecute();
            }),
        );
        eprintln!(
            "{name}: serving {:.1} µs/batch, checking an answer {:.1} µs, re-executing {:.1} µs; \
             verification at 3% = {:.1}% of serving ({:.1}% of it the signature check)",
            t_serve * 1e6,
            t_check * 1e6,
            t_re * 1e6,
            100.0 * 0.03 * (t_check + t_re) / t_serve,
            100.0 * 0.03 * t_check / t_serve
        );
        g.bench_function(format!("limit_candle_forward_{name}"), |b| b.iter(|| limit.forward(black_box(&rows))));
        g.bench_function(format!("model_forward_{name}"), |b| b.iter(|| model.forward(black_box(&rows)).unwrap()));
        g.bench_function(format!("serve_batch_{name}"), |b| b.iter(|| serve(black_box(&req))));
        g.bench_function(format!("verify_answer_{name}"), |b| b.iter(|| assert!(check())));
        g.bench_function(format!("reexecute_{name}"), |b| b.iter(reexecute));
        models.push((arch, bytes, spec));
    }

    // A worker node on 127.0.0.1 serving an owner node's batches.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (owner, worker) = ifx_benches::two_nodes(&rt, tmp.path(), "infer-bench");
    for (arch, bytes, spec) in &models {
        owner.infer.publish(*arch, bytes).unwrap();
        let req = InferRequest::Batch { job: [2; 16], batch: 0, model: *spec, inputs: rows.clone() }.encode();
        let one = || {
            let r = rt.block_on(owner.net.request(ifx_node::network::Proto::Infer, worker.peer_id, req.clone()));
            match InferResponse::decode(&r.unwrap().unwrap()).unwrap() {
                InferResponse::Outputs { outputs, .. } => outputs,
                InferResponse::Error(e) => panic!("{e}"),
            }
        };
        one(); // the worker fetches and loads the model once
        g.bench_function(format!("over_libp2p_{}", arch.name()), |b| b.iter(one));
    }
    g.finish();
    rt.block_on(async {
        owner.stop().await;
        worker.stop().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
