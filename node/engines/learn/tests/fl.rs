//! Federated learning without a network: the real digits data, a centralized candle baseline,
//! federated rounds over a non-IID split, and 30% sign-flip poisoners against each aggregator.

use std::path::Path;

use ifx_learn::data::Dataset;
use ifx_learn::model::{self, TrainConfig};
use ifx_protocols::fl::aggregate::{Aggregator, Update, aggregate, from_fixed, next_global, to_fixed};

fn data() -> (Dataset, Dataset) {
    let d = Dataset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../testdata/digits.csv.gz")).unwrap();
    assert_eq!(d.len(), 1797);
    d.split()
}

/// One round: each client trains 2 epochs from `global` and returns its update; the clients
/// `flipped(i)` names send it sign-flipped and scaled (x -4).
fn round_updates(global: &[f32], clients: &[Dataset], round: usize, flipped: impl Fn(usize) -> bool) -> Vec<Update> {
    clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let cfg = TrainConfig { epochs: 2, batch: 16, lr: 0.01, seed: (round * 100 + i) as u64 };
            let (local, _) = model::train(global, c, &cfg).unwrap();
            let mut delta: Vec<f32> = local.iter().zip(global).map(|(l, g)| l - g).collect();
            if flipped(i) {
                delta.iter_mut().for_each(|d| *d *= -4.0);
            }
            Update { values: to_fixed(&delta).unwrap(), examples: c.len() as u64 }
        })
        .collect()
}

/// `rounds` of federated training; clients `0..poisoned` send sign-flipped updates (x4);
/// updates are clipped to the median norm.
fn federated(train: &Dataset, test: &Dataset, agg: Aggregator, poisoned: usize, rounds: usize) -> Vec<f64> {
    federated_clip(train, test, agg, poisoned, rounds, 0)
}

fn federated_clip(
    train: &Dataset,
    test: &Dataset,
    agg: Aggregator,
    poisoned: usize,
    rounds: usize,
    clip: i64,
) -> Vec<f64> {
    let clients = train.non_iid(10, 0.5, 42);
    let mut global = model::init(7);
    let mut acc = Vec::new();
    for round in 0..rounds {
        let updates = round_updates(&global, &clients, round, |i| i < poisoned);
        let agg_delta = from_fixed(&aggregate(&updates, agg, clip).unwrap());
        global.iter_mut().zip(&agg_delta).for_each(|(g, d)| *g += d);
        acc.push(model::accuracy(&global, test).unwrap());
    }
    acc
}

#[test]
fn centralized_baseline_and_federated_rounds_learn_the_digits() {
    let (train, test) = data();
    let (p, loss) =
        model::train(&model::init(7), &train, &TrainConfig { epochs: 30, batch: 32, lr: 0.01, seed: 1 }).unwrap();
    let central = model::accuracy(&p, &test).unwrap();
    eprintln!("centralized: accuracy {central:.3}, final loss {loss:.4}");
    assert!(central >= 0.95, "{central}");
    // Reproducible bit for bit.
    let (p2, _) =
        model::train(&model::init(7), &train, &TrainConfig { epochs: 30, batch: 32, lr: 0.01, seed: 1 }).unwrap();
    assert_eq!(p, p2);

    let clean = federated(&train, &test, Aggregator::FedAvg { cap: 10_000 }, 0, 40);
    eprintln!(
        "federated FedAvg, 10 non-IID clients: {:?}",
        clean.iter().map(|a| format!("{a:.3}")).collect::<Vec<_>>()
    );
    assert!(*clean.last().unwrap() >= 0.95, "{clean:?}");
}

/// 30% sign-flippers: 10 clients, 7 honest ones holding the 7 non-IID shards of the training
/// rows and 3 poisoners holding copies of shards 0-2 that send their update x -4. The clean run
/// has the same 10 clients, all honest. With screening (norm > 3x the median, then a negative
/// inner product with the robust aggregate) every robust rule stays within 2 points of its clean
/// run and names the flippers; FedAvg, which is not defended, collapses.
#[test]
fn robust_aggregators_hold_against_30_percent_sign_flippers() {
    let (train, test) = data();
    let rounds = 20;
    let mut report = vec![];
    for agg in [Aggregator::Median, Aggregator::TrimmedMean { trim_pct: 30 }, Aggregator::Krum { f: 0, m: 0 }] {
        let (clean, _, clean_rejected) = screened_run(&train, &test, agg, 7, 0.5, 3, false, rounds);
        let (poisoned, caught, honest_rejected) = screened_run(&train, &test, agg, 7, 0.5, 3, true, rounds);
        let (c, p) = (*clean.last().unwrap(), *poisoned.last().unwrap());
        report.push(format!(
            "{agg}: clean {c:.3} (honest rejected {clean_rejected}), poisoned {p:.3}, flips caught {caught}/{}, \
             honest rejected {honest_rejected}",
            3 * rounds
        ));
        assert!(c >= 0.88, "{agg} clean {c:.3}");
        assert!(p >= c - 0.02, "{agg}: poisoned {p:.3} is more than 2 points below clean {c:.3}");
        assert!(caught * 10 >= 3 * rounds * 9, "{agg}: only {caught} of {} flipped updates caught", 3 * rounds);
        assert!(honest_rejected <= rounds / 5, "{agg}: {honest_rejected} honest updates rejected");
    }
    let fedavg = *federated(&train, &test, Aggregator::FedAvg { cap: 10_000 }, 3, rounds).last().unwrap();
    let unclipped =
        *federated_clip(&train, &test, Aggregator::FedAvg { cap: 10_000 }, 3, rounds, 1 << 40).last().unwrap();
    report.push(format!("FedAvg (not screened) clipped to the median norm {fedavg:.3}, unclipped {unclipped:.3}"));
    assert!(unclipped < 0.5, "FedAvg should be broken by sign-flippers: {unclipped:.3}");
    eprintln!("{}", report.join("\n"));
}

#[test]
fn data_errors_are_named_and_the_split_is_skewed_but_complete() {
    assert!(Dataset::parse("1,2\n").unwrap_err().to_string().contains("line 1"));
    let mut row = vec!["0"; 64];
    row.push("11");
    assert!(Dataset::parse(&row.join(",")).unwrap_err().to_string().contains("label"));
    row[64] = "3";
    row[5] = "17";
    assert!(Dataset::parse(&row.join(",")).unwrap_err().to_string().contains("outside 0..16"));
    row[5] = "x";
    assert!(Dataset::parse(&row.join(",")).unwrap_err().to_string().contains("not a number"));
    assert!(Dataset::parse("").is_err());
    assert!(Dataset::load(std::path::Path::new("/nonexistent.csv.gz")).is_err());

    let (train, _) = data();
    let parts = train.non_iid(10, 0.3, 9);
    assert_eq!(parts.iter().map(Dataset::len).sum::<usize>(), train.len(), "every example goes to a client");
    assert!(parts.iter().all(|p| !p.is_empty()));
    // Label skew: some client holds far more of one class than a tenth of it.
    let most = parts.iter().map(|p| p.y.iter().filter(|&&y| y == 0).count()).max().unwrap();
    let zeros = train.y.iter().filter(|&&y| y == 0).count();
    assert!(most * 10 > zeros * 3, "{most} of {zeros}");
    assert_eq!(parts, train.non_iid(10, 0.3, 9), "seeded");
    // Wrong parameter counts are refused, not a panic.
    assert!(model::accuracy(&[0.0; 10], &train).unwrap_err().to_string().contains("parameters"));
}

/// Rounds with screening (`next_global`): `shards` non-IID clients, plus `copies` clients
/// holding copies of shards 0.., which sign-flip (x4) when `poison`. Returns accuracies and how
/// many poisoned / honest updates were rejected.
#[allow(clippy::too_many_arguments)]
fn screened_run(
    train: &Dataset,
    test: &Dataset,
    agg: Aggregator,
    shards: usize,
    alpha: f64,
    copies: usize,
    poison: bool,
    rounds: usize,
) -> (Vec<f64>, usize, usize) {
    let mut parts = train.non_iid(shards, alpha, 42);
    for i in 0..copies {
        parts.push(parts[i % shards].clone());
    }
    let poisoned = |i: usize| poison && i >= shards;
    let mut global = model::init(7);
    let mut acc = Vec::new();
    let (mut caught, mut honest_rejected) = (0, 0);
    for round in 0..rounds {
        let updates = round_updates(&global, &parts, round, poisoned);
        let (next, s) = next_global(&global, &updates, agg, 0).unwrap();
        for (i, _) in &s.rejected {
            if poisoned(*i) { caught += 1 } else { honest_rejected += 1 }
        }
        global = next;
        acc.push(model::accuracy(&global, test).unwrap());
    }
    (acc, caught, honest_rejected)
}

/// FedProx's proximal term pulls a client's weights toward the round's start: the larger `mu`,
/// the smaller the step, and `mu` 0 is plain training bit for bit.
#[test]
fn the_proximal_term_shortens_the_local_step() {
    let (train, _) = data();
    let shard = &train.non_iid(5, 0.5, 42)[0];
    let start = model::init(7);
    let cfg = TrainConfig { epochs: 2, batch: 16, lr: 0.01, seed: 3 };
    let step = |mu: f64| -> f64 {
        let (w, _) = model::train_prox(&start, shard, &cfg, mu).unwrap();
        w.iter().zip(&start).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt()
    };
    assert_eq!(model::train_prox(&start, shard, &cfg, 0.0).unwrap(), model::train(&start, shard, &cfg).unwrap());
    let (plain, some, strong) = (step(0.0), step(1.0), step(10.0));
    assert!(plain > some && some > strong, "steps {plain} {some} {strong}");
}

#[test]
fn the_gradient_is_the_loss_slope_and_a_correction_shifts_every_step() {
    let (train, _) = data();
    let shard = &train.non_iid(5, 0.5, 42)[0];
    let start = model::init(7);
    let g = model::gradient(&start, shard).unwrap();
    assert_eq!(g.len(), model::PARAMS);
    // Central differences on the five steepest coordinates.
    let mut steep: Vec<usize> = (0..g.len()).collect();
    steep.sort_by(|a, b| g[*b].abs().total_cmp(&g[*a].abs()));
    for &k in &steep[..5] {
        let h = 1e-2f32;
        let at = |d: f32| {
            let mut p = start.clone();
            p[k] += d;
            model::evaluate(&p, shard).unwrap().1 as f64
        };
        let slope = (at(h) - at(-h)) / (2.0 * h as f64);
        assert!((slope - g[k] as f64).abs() <= 0.05 * g[k].abs() as f64 + 1e-4, "coordinate {k}: {slope} vs {}", g[k]);
    }
    assert_eq!(model::gradient(&start, &Dataset::default()).unwrap(), vec![0.0; model::PARAMS]);
    // A zero correction is plain training; a positive one on the last bias pushes it down.
    let cfg = TrainConfig { epochs: 2, batch: 16, lr: 0.01, seed: 3 };
    let plain = model::train(&start, shard, &cfg).unwrap();
    assert_eq!(model::train_corrected(&start, shard, &cfg, &vec![0.0; model::PARAMS]).unwrap(), plain);
    let mut c = vec![0.0; model::PARAMS];
    c[model::PARAMS - 1] = 1.0;
    let (pushed, _) = model::train_corrected(&start, shard, &cfg, &c).unwrap();
    assert!(
        pushed[model::PARAMS - 1] < plain.0[model::PARAMS - 1] - 0.05,
        "{} vs {}",
        pushed[model::PARAMS - 1],
        plain.0[model::PARAMS - 1]
    );
    assert!(model::train_corrected(&start, shard, &cfg, &c[1..]).is_err());
}

/// Issue #20's baseline, without a network: the testnet's split (6 non-IID shards, seed 42),
/// its recipe (trimmed mean, 60 rounds x 3 epochs, AdamW lr 0.01 decaying 0.95) with and without
/// SCAFFOLD's correction (0.1; the control in fixed point by `aggregate::control`), against the
/// centralized model on the union of the same shards with the same recipe. Measured: 0.9721
/// centralized, 0.9443 federated, 0.9610 with the correction (split seeds 7 and 13: 0.9582 and
/// 0.9471 without, 0.9666 and 0.9694 with).
#[test]
fn drift_correction_brings_federated_training_within_the_margin_of_the_centralized_model() {
    let (train, test) = data();
    let parts = train.non_iid(6, 0.5, 42);
    let agg = Aggregator::TrimmedMean { trim_pct: 20 };
    let lr = |r: u32| 0.01 * 0.95f64.powi(r as i32);
    let rounds = 60;
    let run = |scaffold: f32| -> f64 {
        let mut g = model::init(42);
        let mut control: Option<Vec<f32>> = None;
        for r in 0..rounds {
            let cfg = TrainConfig { epochs: 3, batch: 32, lr: lr(r), seed: 77 ^ (r as u64) << 32 };
            let (mut ups, mut grads) = (Vec::new(), Vec::new());
            for p in &parts {
                let own = model::gradient(&g, p).unwrap();
                let (l, _) = match &control {
                    Some(c) if scaffold > 0.0 => {
                        let corr: Vec<f32> = c.iter().zip(&own).map(|(c, o)| scaffold * (c - o)).collect();
                        model::train_corrected(&g, p, &cfg, &corr).unwrap()
                    }
                    _ => model::train(&g, p, &cfg).unwrap(),
                };
                let d: Vec<f32> = l.iter().zip(&g).map(|(a, b)| a - b).collect();
                ups.push(Update { values: to_fixed(&d).unwrap(), examples: p.len() as u64 });
                grads.push(Some(Update { values: to_fixed(&own).unwrap(), examples: p.len() as u64 }));
            }
            let (next, screened) = next_global(&g, &ups, agg, 0).unwrap();
            control =
                ifx_protocols::fl::aggregate::control(&grads, &screened.rejected).unwrap().map(|c| from_fixed(&c));
            g = next;
        }
        model::accuracy(&g, &test).unwrap()
    };
    let mut union = Dataset::default();
    for p in &parts {
        union.x.extend_from_slice(&p.x);
        union.y.extend_from_slice(&p.y);
    }
    let mut central = model::init(42);
    for r in 0..rounds {
        let cfg = TrainConfig { epochs: 3, batch: 32, lr: lr(r), seed: r as u64 };
        central = model::train(&central, &union, &cfg).unwrap().0;
    }
    let central = model::accuracy(&central, &test).unwrap();
    let (plain, corrected) = (run(0.0), run(0.1));
    eprintln!("centralized {central:.4}, federated {plain:.4}, with the correction {corrected:.4}");
    assert!(central - corrected <= 0.015, "gap {:.2} points", (central - corrected) * 100.0);
    assert!(corrected > plain, "the correction did not help: {corrected} vs {plain}");
}
