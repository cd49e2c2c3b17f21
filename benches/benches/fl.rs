//! Federated-learning costs in one run. The work a round pays for: one client's local training
//! (a shard of 5, 2 epochs). The round overhead around it: safetensors encode and decode of
//! the weights and of the update, the update to fixed point, both transfers over a real libp2p
//! connection on 127.0.0.1 (request-response, 8 KiB chunks, hash-checked), and the client's share
//! of the screened aggregation. Aggregation throughput beside a copy of the same bytes (memory
//! bandwidth for this working set). And the baselines: centralized training on the same split
//! and a federated run without a network, accuracies printed at the start.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ifx_learn::data::Dataset;
use ifx_learn::model::{self, PARAMS, TrainConfig};
use ifx_protocols::fl::aggregate::{Aggregator, Update, aggregate, next_global, to_fixed};
use ifx_protocols::fl::wire::{from_safetensors, to_safetensors};

fn baselines(train: &Dataset, test: &Dataset) {
    let t = Instant::now();
    let (p, _) =
        model::train(&model::init(7), train, &TrainConfig { epochs: 30, batch: 32, lr: 0.01, seed: 1 }).unwrap();
    eprintln!(
        "baseline: centralized candle training, 30 epochs: test accuracy {:.4} in {:.2} s",
        model::accuracy(&p, test).unwrap(),
        t.elapsed().as_secs_f64()
    );
    let parts = train.non_iid(5, 0.5, 42);
    let mut global = model::init(7);
    let t = Instant::now();
    for round in 0..30 {
        let ups: Vec<Update> = parts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let cfg = TrainConfig { epochs: 2, batch: 16, lr: 0.01, seed: (round * 100 + i) as u64 };
                let (l, _) = model::train(&global, c, &cfg).unwrap();
                let d: Vec<f32> = l.iter().zip(&global).map(|(l, g)| l - g).collect();
                Update { values: to_fixed(&d).unwrap(), examples: c.len() as u64 }
            })
            .collect();
        global = next_global(&global, &ups, Aggregator::Median, 0).unwrap().0;
    }
    eprintln!(
        "federated, 5 non-IID clients, median, 30 rounds (no network): test accuracy {:.4} in {:.2} s",
        model::accuracy(&global, test).unwrap(),
        t.elapsed().as_secs_f64()
    );
}

fn bench(c: &mut Criterion) {
    let d = Dataset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/digits.csv.gz")).unwrap();
    let (train, test) = d.split();
    baselines(&train, &test);
    let clients = train.non_iid(5, 0.5, 42);
    let global = model::init(7);
    let mut g = c.benchmark_group("fl");
    g.sample_size(10);
    let cfg = TrainConfig { epochs: 2, batch: 16, lr: 0.01, seed: 1 };
    g.bench_function("local_training_one_client_2_epochs", |b| {
        b.iter(|| model::train(&global, &clients[0], &cfg).unwrap())
    });
    g.bench_function("centralized_epoch", |b| {
        b.iter(|| model::train(&global, &train, &TrainConfig { epochs: 1, batch: 32, lr: 0.01, seed: 1 }).unwrap())
    });
    let updates: Vec<Update> = (0..10)
        .map(|i| {
            let (local, _) = model::train(&global, &clients[i % 5], &cfg).unwrap();
            let delta: Vec<f32> = local.iter().zip(&global).map(|(l, g)| l - g).collect();
            Update { values: to_fixed(&delta).unwrap(), examples: clients[i % 5].len() as u64 }
        })
        .collect();
    let deltas: Vec<f32> = ifx_protocols::fl::aggregate::from_fixed(&updates[0].values);
    g.bench_function("overhead_to_fixed_one_update", |b| b.iter(|| to_fixed(black_box(&deltas)).unwrap()));
    g.bench_function("overhead_safetensors_encode_decode", |b| {
        b.iter(|| from_safetensors(&to_safetensors(black_box(&global)).unwrap()).unwrap())
    });

    // Transfer: two real nodes on 127.0.0.1; B fetches A's weights blob.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b_node) = ifx_benches::two_nodes(&rt, tmp.path(), "fl-bench");
    let blob = to_safetensors(&global).unwrap();
    let len = blob.len();
    let hash = a.fl.put_blob(blob).unwrap();
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("overhead_transfer_weights_over_libp2p", |bn| {
        bn.iter_custom(|iters| {
            let mut timed = std::time::Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                rt.block_on(ifx_node::fl::fetch_blob(&b_node.net, a.peer_id, hash)).unwrap();
                timed += t.elapsed();
                // A fetch is 3 chunk requests and a peer may send 1,024 `fl` requests a second
                // (`network::rate`): paced outside the timed part, as an honest fetcher is.
                std::thread::sleep(std::time::Duration::from_millis(3));
            }
            timed
        })
    });
    // The physical floor of that transfer: one loopback TCP round trip carrying the same bytes.
    {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let n = len;
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_nodelay(true).unwrap();
            let mut req = [0u8; 1];
            let data = vec![5u8; n];
            while s.read_exact(&mut req).is_ok() {
                s.write_all(&data).unwrap();
            }
        });
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; n];
        g.bench_function("limit_tcp_loopback_same_bytes", |bn| {
            bn.iter(|| {
                s.write_all(&[1]).unwrap();
                s.read_exact(&mut buf).unwrap();
            })
        });
    }
    rt.block_on(async {
        a.stop().await;
        b_node.stop().await;
    });

    let bytes = (10 * PARAMS * 4) as u64;
    g.throughput(Throughput::Bytes(bytes));
    for agg in [Aggregator::FedAvg { cap: 10_000 }, Aggregator::Median, Aggregator::Krum { f: 3, m: 7 }] {
        g.bench_function(format!("aggregate_10_{agg:?}").replace([' ', '{', '}', ':', ','], ""), |b| {
            b.iter(|| aggregate(black_box(&updates), agg, 0).unwrap())
        });
    }
    g.bench_function("aggregate_10_median_screened", |b| {
        b.iter(|| next_global(black_box(&global), black_box(&updates), Aggregator::Median, 0).unwrap())
    });
    // Issue #20: scoring the round's contributions (inside the screened aggregate above), with
    // two of the ten updates from the same data (one more aggregation and a shared score).
    let mut with_copy = updates.clone();
    with_copy[1] = with_copy[0].clone();
    let screened = ifx_protocols::fl::aggregate::aggregate_screened(&with_copy, Aggregator::Median, 0).unwrap();
    g.bench_function("contributions_10_median_one_copy", |b| {
        b.iter(|| {
            ifx_protocols::fl::aggregate::contributions(
                black_box(&with_copy),
                &screened.rejected,
                &screened.values,
                Aggregator::Median,
                0,
            )
        })
    });
    // A worker's differential privacy: clip and Gaussian noise on one update (against the
    // local training above, the work it protects).
    let plan = ifx_protocols::fl::dp::DpSpec { epsilon: 8.0, delta: 1e-5, clip: 1.0 }.plan(30, 10).unwrap();
    let mut noisy = deltas.clone();
    g.bench_function("overhead_privatize_one_update", |b| {
        b.iter(|| ifx_protocols::fl::dp::privatize(black_box(&mut noisy), &plan))
    });
    // The limit: moving the same bytes once (memory bandwidth for this working set).
    let src: Vec<u8> = vec![7; bytes as usize];
    let mut dst = vec![0u8; bytes as usize];
    g.bench_function("limit_memcpy_same_bytes", |b| b.iter(|| dst.copy_from_slice(black_box(&src))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
