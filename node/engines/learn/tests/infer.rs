//! Serving the inference models without a network: the CNN trains on the digits to a useful
//! accuracy, the MLP served for inference is the FL model (same logits as its evaluation), a
//! forward pass is bit-reproducible, and the cheap forward a cheating worker answers with is
//! caught by the logit comparison (and often not by the top class alone).

use std::path::Path;

use ifx_learn::data::Dataset;
use ifx_learn::infer::{self, Model};
use ifx_learn::model::{self, TrainConfig};
use ifx_protocols::infer::{Agreement, Arch, compare, top};

fn data() -> (Dataset, Dataset) {
    Dataset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../testdata/digits.csv.gz")).unwrap().split()
}

#[test]
fn the_cnn_learns_the_digits_and_serves_them_reproducibly() {
    let (train, test) = data();
    let cfg = TrainConfig { epochs: 4, batch: 32, lr: 0.005, seed: 11 };
    let t = std::time::Instant::now();
    let (p, loss) = infer::train(Arch::Cnn, &infer::init(Arch::Cnn, 5), &train, &cfg).unwrap();
    let acc = infer::accuracy(Arch::Cnn, &p, &test).unwrap();
    println!("cnn: 4 epochs in {:.1} s, loss {loss:.3}, test accuracy {acc:.4}", t.elapsed().as_secs_f64());
    assert!(acc > 0.9, "test accuracy {acc}");
    // Training is seeded: the same run gives the same weights.
    let (again, _) = infer::train(Arch::Cnn, &infer::init(Arch::Cnn, 5), &train, &cfg).unwrap();
    assert_eq!(p, again);

    let m = Model::load(Arch::Cnn, &p).unwrap();
    let rows = infer::rows(&test, 0..64);
    let out = m.forward(&rows).unwrap();
    assert_eq!(out.len(), 64 * 10);
    assert_eq!(compare(&out, &m.forward(&rows).unwrap()), Ok(Agreement::Exact));
    // Row by row gives the same top classes as the batch (batching changes nothing visible).
    for i in [0usize, 17, 63] {
        let one = m.forward(&rows[i * 64..(i + 1) * 64]).unwrap();
        assert_eq!(top(&one), top(&out[i * 10..(i + 1) * 10]));
    }
    // The cheap answer (a quarter of the channels) fails the comparison.
    let cheap = m.cheap_forward(&rows).unwrap();
    let why = compare(&out, &cheap).unwrap_err();
    assert!(why.starts_with("row "), "{why}");
    // Wrong inputs are refused, not served.
    assert!(m.forward(&rows[..63]).is_err());
    assert!(Model::load(Arch::Cnn, &p[1..]).is_err());
}

#[test]
fn the_served_mlp_is_the_fl_model() {
    let (train, test) = data();
    let cfg = TrainConfig { epochs: 3, batch: 32, lr: 0.01, seed: 3 };
    let (p, _) = model::train(&model::init(7), &train, &cfg).unwrap();
    let m = Model::load(Arch::Mlp, &p).unwrap();
    let idx: Vec<usize> = (0..test.len()).collect();
    let out = m.forward(&infer::rows(&test, idx.iter().copied())).unwrap();
    let served: usize = out.chunks(10).zip(&test.y).filter(|(l, y)| top(l) == **y as usize).count();
    let acc = model::accuracy(&p, &test).unwrap();
    assert_eq!(served as f64 / test.len() as f64, acc, "the FL evaluation and the served model agree");
    assert_eq!(infer::accuracy(Arch::Mlp, &p, &test).unwrap(), acc);
    // A quarter of the hidden units: other logits, caught.
    let rows = infer::rows(&test, 0..64);
    assert!(compare(&m.forward(&rows).unwrap(), &m.cheap_forward(&rows).unwrap()).is_err());
}
