//! `ifx fl start`: start a federated task on a node and follow it round by round.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use ifx_protocols::api::{RunState, TaskStatus};

#[derive(Subcommand, Debug)]
pub enum FlCommand {
    /// Start a federated task on a running node (it becomes the task owner) and follow it round
    /// by round until the final weights and the accuracy plot are written.
    Start(FlStartArgs),
}

#[derive(Args, Debug)]
pub struct FlStartArgs {
    #[command(flatten)]
    api: super::http::ApiTarget,
    #[arg(long, default_value_t = 30)]
    rounds: u32,
    /// Updates aggregated per round.
    #[arg(long, default_value_t = 5)]
    clients: u32,
    /// fedavg, median, trimmed-mean, krum or multi-krum (default: median; fedavg with
    /// --dp-epsilon, the only rule differential privacy allows).
    #[arg(long)]
    aggregator: Option<String>,
    #[arg(long, default_value_t = 3)]
    local_epochs: u32,
    /// Number of non-IID shards the workers' data is split into (each worker trains its
    /// `[fl] shard`).
    #[arg(long, default_value_t = 6)]
    shards: u32,
    /// Dirichlet concentration of the label skew (smaller = more skewed).
    #[arg(long, default_value_t = 0.5)]
    alpha: f64,
    /// Per-round deadline in ms.
    #[arg(long, default_value_t = 10_000)]
    deadline_ms: u64,
    /// Print the final status as JSON.
    #[arg(long)]
    json: bool,
    /// Run without paying: the task trains, but settlement counts its receipts for nobody.
    #[arg(long)]
    unpaid: bool,
    /// Client-level differential privacy: the task's budget ε (at --dp-delta); workers clip
    /// their updates to --dp-clip and add Gaussian noise before sending. Needs fedavg.
    #[arg(long)]
    dp_epsilon: Option<f64>,
    #[arg(long, default_value_t = ifx_protocols::fl::dp::DEFAULT_DELTA)]
    dp_delta: f64,
    #[arg(long, default_value_t = ifx_protocols::fl::dp::DEFAULT_CLIP)]
    dp_clip: f64,
}

/// Runs `ifx fl start`.
pub async fn start(a: FlStartArgs) -> anyhow::Result<ExitCode> {
    let spec = ifx_protocols::fl::wire::TaskSpec {
        rounds: a.rounds,
        clients_per_round: a.clients,
        min_clients: a.clients.div_ceil(2),
        aggregator: a
            .aggregator
            .clone()
            .unwrap_or_else(|| if a.dp_epsilon.is_some() { "fedavg" } else { "median" }.into()),
        local_epochs: a.local_epochs,
        data: ifx_protocols::fl::wire::DataRule { shards: a.shards, alpha: a.alpha, ..Default::default() },
        deadline_ms: a.deadline_ms,
        unpaid: a.unpaid,
        dp: a.dp_epsilon.map(|epsilon| ifx_protocols::fl::dp::DpSpec { epsilon, delta: a.dp_delta, clip: a.dp_clip }),
        ..Default::default()
    };
    spec.validate().map_err(|e| anyhow::anyhow!("invalid task: {e}"))?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let base = format!("http://{}", a.api.addr()?);
    let accepted: ifx_protocols::api::TaskAccepted =
        super::http::post_to_node(&client, &a.api, "fl", &spec, "the task").await?;
    let id = accepted.task_id;
    eprintln!("task {id} started on {base}");
    let bar = indicatif::ProgressBar::new(a.rounds as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] round {pos}/{len} {elapsed} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    loop {
        let t: TaskStatus = super::http::get_from_node(&client, &a.api, &format!("fl/{id}")).await?;
        bar.set_position(t.rounds_done as u64);
        if let Some(acc) = t.accuracy_by_round.last() {
            bar.set_message(format!("test accuracy {acc:.3}, {} rejected", t.rejected.len()));
        }
        match t.state {
            RunState::Done => {
                bar.finish_and_clear();
                if a.json {
                    println!("{}", serde_json::to_string(&t)?);
                } else {
                    println!(
                        "done in {:.1} s: final test accuracy {:.4} ({} aggregation)",
                        t.secs,
                        t.final_accuracy.unwrap_or(0.0),
                        t.aggregator
                    );
                    println!("weights: {}", t.weights.as_deref().unwrap_or(""));
                    println!("accuracy plot: {}", t.plot.as_deref().unwrap_or(""));
                    println!("accepted updates by worker: {}", serde_json::to_string(&t.accepted)?);
                    println!(
                        "contributions by worker (ppm of each round's largest, summed): {}",
                        serde_json::to_string(&t.contribution_ppm)?
                    );
                    if let Some(p) = &t.privacy {
                        println!(
                            "differential privacy: ε = {:.3} per client at δ = {:e} for the published model \
                             ({:.1} against the task owner, who sees single updates); noise multiplier {:.3}, clip {}",
                            p.epsilon, p.delta, p.epsilon_vs_owner, p.noise_multiplier, p.clip
                        );
                    }
                    if !t.rejected.is_empty() {
                        println!("rejected updates: {}", serde_json::to_string(&t.rejected)?);
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            RunState::Failed | RunState::Cancelled => {
                bar.finish_and_clear();
                eprintln!("task failed: {}", t.error.as_deref().unwrap_or("?"));
                return Ok(ExitCode::from(1));
            }
            RunState::Running => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}
