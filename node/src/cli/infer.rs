//! `ifx infer`: train a model to serve (`train`), and run an inference job across the workers
//! a node reaches (`submit`), following it batch by batch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ifx_learn::data::Dataset;
use ifx_learn::model::TrainConfig;
use ifx_protocols::api::{InferJobRequest, InferJobStatus, RunState, TaskAccepted};
use ifx_protocols::infer::{Arch, ModelSpec};

#[derive(Subcommand, Debug)]
pub enum InferCommand {
    /// Train a model locally on a digits file and write its weights (safetensors) to serve.
    Train(TrainArgs),
    /// Publish a model on a running node and run an inference job of a digits file's rows on
    /// the workers it reaches; writes the logits and prints per-worker latency and throughput.
    Submit(SubmitArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// mlp or cnn.
    #[arg(long, default_value = "cnn")]
    arch: Arch,
    /// A digits-format file (CSV or CSV.gz).
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    api: super::http::ApiTarget,
    /// The model's weights (safetensors), e.g. from `ifx infer train` or an FL task's weights.
    #[arg(long)]
    model: PathBuf,
    /// Its architecture: mlp or cnn.
    #[arg(long, default_value = "cnn")]
    arch: Arch,
    /// A digits-format file: its rows are the inputs (their labels score the answers).
    #[arg(long)]
    input: PathBuf,
    #[arg(long, default_value_t = 64)]
    batch_rows: u32,
    /// Share of batches the owner re-executes, in ppm (each worker's first batch always).
    #[arg(long, default_value_t = 30_000)]
    verify_ppm: u32,
    #[arg(long)]
    unpaid: bool,
    /// Print the final status as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `ifx infer train`.
pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    let (train, test) = Dataset::load(&a.data)?.split();
    let cfg = TrainConfig { epochs: a.epochs, batch: 32, lr: 0.005, seed: a.seed };
    let t = std::time::Instant::now();
    let (p, loss) = ifx_learn::infer::train(a.arch, &ifx_learn::infer::init(a.arch, a.seed), &train, &cfg)?;
    let acc = ifx_learn::infer::accuracy(a.arch, &p, &test)?;
    let bytes = ifx_protocols::infer::weights_to_bytes(a.arch, &p)?;
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    let m = ModelSpec::publish(a.arch, &bytes)?;
    println!(
        "{} trained in {:.1} s: loss {loss:.3}, test accuracy {acc:.4}; {} ({} bytes, blake3 {})",
        a.arch,
        t.elapsed().as_secs_f64(),
        a.out.display(),
        m.len,
        hex::encode(m.weights)
    );
    Ok(())
}

/// Runs `ifx infer submit`.
pub async fn submit(a: SubmitArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&a.model).with_context(|| format!("reading {}", a.model.display()))?;
    let data = Dataset::load(&a.input)?;
    let inputs = ifx_learn::infer::rows(&data, 0..data.len());
    let client = reqwest::Client::builder().no_proxy().build()?;
    let model: ModelSpec =
        super::http::post_bytes_to_node(&client, &a.api, &format!("infer/models?arch={}", a.arch), bytes, "the model")
            .await?;
    let req = InferJobRequest { model, inputs, batch_rows: a.batch_rows, verify_ppm: a.verify_ppm, unpaid: a.unpaid };
    let TaskAccepted { task_id: id } = super::http::post_to_node(&client, &a.api, "infer", &req, "the job").await?;
    eprintln!("inference job {id}: {} rows of {}", data.len(), a.arch);
    let bar = indicatif::ProgressBar::new(data.len().div_ceil(a.batch_rows.max(1) as usize) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] batch {pos}/{len} {elapsed} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    loop {
        let j: InferJobStatus = super::http::get_from_node(&client, &a.api, &format!("infer/{id}")).await?;
        bar.set_position(j.batches_done);
        bar.set_message(format!("{} workers, {} verified, {} caught", j.workers.len(), j.verified, j.caught.len()));
        match j.state {
            RunState::Done => {
                bar.finish_and_clear();
                if a.json {
                    println!("{}", serde_json::to_string(&j)?);
                    return Ok(ExitCode::SUCCESS);
                }
                let path = j.outputs.clone().unwrap_or_default();
                let classes: Vec<usize> = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {path}"))?
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split(',').nth(1)?.parse().ok())
                    .collect();
                let right = classes.iter().zip(&data.y).filter(|(c, y)| **c == **y as usize).count();
                println!(
                    "done in {:.1} s: {} rows, accuracy against the file's labels {:.4}; logits: {path}",
                    j.secs,
                    j.rows,
                    right as f64 / data.len().max(1) as f64
                );
                println!(
                    "verified {} of {} batches by re-execution ({:.1}% of the job's time)",
                    j.verified,
                    j.batches,
                    100.0 * j.verify_secs / j.secs.max(1e-9)
                );
                for (peer, w) in &j.workers {
                    println!(
                        "  {peer}: {} batches, p50 {:.1} ms, p99 {:.1} ms, {:.0} rows/s, {} failed",
                        w.batches, w.p50_ms, w.p99_ms, w.rows_per_sec, w.failed
                    );
                }
                for (peer, why) in &j.caught {
                    println!("  CAUGHT {peer}: {why} (evidence filed)");
                }
                return Ok(ExitCode::SUCCESS);
            }
            RunState::Failed | RunState::Cancelled => {
                bar.finish_and_clear();
                eprintln!("job failed: {}", j.error.as_deref().unwrap_or("?"));
                return Ok(ExitCode::from(1));
            }
            RunState::Running => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}
