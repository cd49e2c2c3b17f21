//! The sweep behind docs/BENCHMARKS.md's "FL against the centralized baseline" table (issue
//! #20): federated rounds without a network (`model::train_prox` on each shard, then the
//! task's aggregation `next_global`) against the testnet's centralized baseline (the same recipe
//! on the union of the same shards, `ifx_testnet::centralized_baseline`), on the digits.
//!
//! `cargo run --profile dev -p ifx-testnet --example fl_baseline_sweep -- SHARDS CLIENTS AGG
//! ROUNDS LOCAL_EPOCHS LR DECAY [SEED]`, e.g. `-- 6 6 trimmed-mean 60 3 0.01 0.95` (the split of
//! `ifx testnet --nodes 9 --verifiers 2 --cheaters 3`). Environment: `PROX=mu` (FedProx's
//! proximal term), `SM=beta` (server momentum), `SLR=eta` (server learning rate), `SCAF=s`
//! (SCAFFOLD's drift correction as the task's `scaffold`: each shard's gradient, the control
//! by `aggregate::control`).

use ifx_learn::data::Dataset;
use ifx_learn::model;
use ifx_protocols::fl::aggregate::{Update, control, from_fixed, next_global, to_fixed};
use ifx_protocols::fl::wire::{DataRule, TaskSpec};

fn arg<T: std::str::FromStr>(a: &[String], i: usize, what: &str) -> T {
    a.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("argument {i}: {what}"))
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let shards: u32 = arg(&a, 1, "shards");
    let clients: u32 = arg(&a, 2, "clients (the first ones take part)");
    let agg_name: String = arg(&a, 3, "aggregator");
    let rounds: u32 = arg(&a, 4, "rounds");
    let epochs: u32 = arg(&a, 5, "local epochs");
    let lr: f64 = arg(&a, 6, "learning rate");
    let decay: f64 = arg(&a, 7, "learning-rate decay per round");
    let seed: u64 = a.get(8).and_then(|s| s.parse().ok()).unwrap_or(42);
    let spec = TaskSpec {
        rounds,
        local_epochs: epochs,
        lr,
        lr_decay: decay,
        aggregator: agg_name.clone(),
        data: DataRule { shards, alpha: 0.5, seed },
        ..Default::default()
    };
    let agg = spec.validate().expect("a valid task");
    let (mu, momentum, server_lr) = (env("PROX", 0.0), env("SM", 0.0f32), env("SLR", 1.0f32));
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/digits.csv.gz");
    let all = Dataset::load(&data).expect("the digits");
    let (train, test) = all.split();
    let parts = train.non_iid(shards as usize, 0.5, seed);
    let base = ifx_testnet::centralized_baseline(&data, &spec, &(0..clients).map(|c| (c, rounds as u64)).collect())
        .expect("the baseline");
    let mut g = model::init(spec.init_seed);
    let mut velocity = vec![0f32; g.len()];
    let mut curve = Vec::new();
    let mut rejected = 0;
    let scaffold: f32 = env("SCAF", 0.0);
    let mut ctl: Option<Vec<f32>> = None;
    for r in 0..rounds {
        let grads: Vec<Vec<f32>> = (0..clients as usize)
            .map(|i| if scaffold > 0.0 { model::gradient(&g, &parts[i]).expect("gradient") } else { Vec::new() })
            .collect();
        let ups: Vec<Update> = (0..clients as usize)
            .map(|i| {
                let cfg = model::TrainConfig {
                    epochs: epochs as usize,
                    batch: spec.batch as usize,
                    lr: spec.lr_at(r),
                    seed: 77 ^ (r as u64) << 32,
                };
                let (l, _) = match &ctl {
                    Some(c) => {
                        let corr: Vec<f32> = c.iter().zip(&grads[i]).map(|(c, o)| scaffold * (c - o)).collect();
                        model::train_corrected(&g, &parts[i], &cfg, &corr).expect("training")
                    }
                    None => model::train_prox(&g, &parts[i], &cfg, mu).expect("training"),
                };
                let d: Vec<f32> = l.iter().zip(&g).map(|(a, b)| a - b).collect();
                Update { values: to_fixed(&d).expect("finite"), examples: parts[i].len() as u64 }
            })
            .collect();
        let (next, screened) = next_global(&g, &ups, agg, spec.clip).expect("aggregation");
        rejected += screened.rejected.len();
        if scaffold > 0.0 {
            let gs: Vec<Option<Update>> =
                grads.iter().map(|v| Some(Update { values: to_fixed(v).expect("finite"), examples: 1 })).collect();
            ctl = control(&gs, &screened.rejected).expect("control").map(|c| from_fixed(&c));
        }
        for k in 0..g.len() {
            velocity[k] = momentum * velocity[k] + (next[k] - g[k]);
            g[k] += server_lr * velocity[k];
        }
        if r % 10 == 9 {
            curve.push(format!("{:.4}", model::accuracy(&g, &test).expect("accuracy")));
        }
    }
    let fed = model::accuracy(&g, &test).expect("accuracy");
    println!(
        "{shards} shards, {clients} clients, {agg_name}, {rounds} rounds x {epochs} epochs, lr {lr} decay {decay}, \
         prox {mu}, scaffold {scaffold}, seed {seed}: federated {fed:.4}, centralized {base:.4}, gap {:.2} points; \
         {rejected} honest updates rejected; every 10 rounds {curve:?}",
        (base - fed) * 100.0
    );
}
