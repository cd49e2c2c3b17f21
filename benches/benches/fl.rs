//! Federated-learning costs in one run: local training of one client (the work a round pays
//! for), the round overhead around it (updates to fixed point, safetensors encode/decode of the
//! weights, aggregation of 10 updates), and aggregation throughput beside the machine's memory
//! bandwidth (a plain copy of the same bytes), plus the centralized baseline's epoch.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ifx_protocols::fl::aggregate::{Aggregator, Update, aggregate, to_fixed};
use ifx_protocols::fl::data::Dataset;
use ifx_protocols::fl::model::{self, PARAMS, TrainConfig};

fn bench(c: &mut Criterion) {
    let d = Dataset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/digits.csv.gz")).unwrap();
    let (train, _) = d.split();
    let clients = train.non_iid(10, 0.5, 42);
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
            let (local, _) = model::train(&global, &clients[i], &cfg).unwrap();
            let delta: Vec<f32> = local.iter().zip(&global).map(|(l, g)| l - g).collect();
            Update { values: to_fixed(&delta).unwrap(), examples: clients[i].len() as u64 }
        })
        .collect();
    let deltas: Vec<f32> = ifx_protocols::fl::aggregate::from_fixed(&updates[0].values);
    g.bench_function("overhead_to_fixed_one_update", |b| b.iter(|| to_fixed(black_box(&deltas)).unwrap()));
    g.bench_function("overhead_safetensors_roundtrip", |b| {
        b.iter(|| {
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                vec![PARAMS],
                bytemuck::cast_slice(&global),
            )
            .unwrap();
            let bytes = safetensors::serialize([("w", view)], None).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            black_box(st.tensor("w").unwrap().data().len())
        })
    });
    let bytes = (10 * PARAMS * 4) as u64;
    g.throughput(Throughput::Bytes(bytes));
    for agg in [Aggregator::FedAvg { cap: 10_000 }, Aggregator::Median, Aggregator::Krum { f: 3, m: 7 }] {
        g.bench_function(format!("aggregate_10_{agg:?}").replace([' ', '{', '}', ':', ','], ""), |b| {
            b.iter(|| aggregate(black_box(&updates), agg, 0).unwrap())
        });
    }
    // The limit: moving the same bytes once (memory bandwidth for this working set).
    let src: Vec<u8> = vec![7; bytes as usize];
    let mut dst = vec![0u8; bytes as usize];
    g.bench_function("limit_memcpy_same_bytes", |b| b.iter(|| dst.copy_from_slice(black_box(&src))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
