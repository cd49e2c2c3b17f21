//! `ifx render`: render a scene locally to a PNG, or `render submit` a job to a node and follow
//! it until the PNG is written.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ifx_protocols::api::RunState;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RenderCmd {
    #[command(subcommand)]
    pub submit: Option<RenderSub>,
    #[command(flatten)]
    pub local: RenderArgs,
}

#[derive(Subcommand, Debug)]
pub enum RenderSub {
    /// Submit a distributed render job to a running node and follow it until the PNG is done.
    Submit(SubmitArgs),
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    api: super::http::ApiTarget,
    /// A built-in scene or a .toml scene file (sent inline; no mesh files).
    #[arg(long, default_value = "cornell")]
    scene: String,
    #[arg(long, default_value_t = 256)]
    width: u32,
    #[arg(long, default_value_t = 256)]
    height: u32,
    #[arg(long, default_value_t = 16)]
    spp: u32,
    #[arg(long, default_value_t = 6)]
    bounces: u32,
    #[arg(long, default_value_t = 32)]
    tile: u32,
    /// Run without paying: the job renders, but settlement counts its receipts for nobody.
    /// Without it the node pays first (job_price_per_minute per delivery minute) and refuses
    /// the job when its key lacks the liquid units.
    #[arg(long)]
    unpaid: bool,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// A built-in scene (cornell, spheres) or a .toml/.json scene file.
    #[arg(long, default_value = "cornell")]
    scene: String,
    #[arg(long, default_value_t = 256)]
    width: u32,
    #[arg(long, default_value_t = 256)]
    height: u32,
    /// Samples per pixel.
    #[arg(long, default_value_t = 16)]
    spp: u32,
    /// Most bounces per path.
    #[arg(long, default_value_t = 6)]
    bounces: u32,
    /// Tile side in pixels.
    #[arg(long, default_value_t = 64)]
    tile: u32,
    /// auto (a GPU, else a software adapter, else the CPU), gpu or cpu.
    #[arg(long, default_value = "auto")]
    backend: ifx_render::Backend,
    /// Where to write the PNG.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `ifx render submit`.
pub async fn submit(a: SubmitArgs) -> anyhow::Result<ExitCode> {
    let scene_toml = if a.scene.ends_with(".toml") {
        Some(std::fs::read_to_string(&a.scene).with_context(|| format!("reading {}", a.scene))?)
    } else {
        None
    };
    let spec = ifx_node::render::JobSpec {
        scene: a.scene.clone(),
        scene_toml,
        width: a.width,
        height: a.height,
        spp: a.spp,
        max_bounces: a.bounces,
        tile: a.tile,
        unpaid: a.unpaid,
    };
    let client = reqwest::Client::builder().no_proxy().build()?;
    let base = format!("http://{}", a.api.addr()?);
    let accepted: ifx_protocols::api::JobAccepted =
        super::http::post_to_node(&client, &a.api, "jobs", &spec, "the job").await?;
    let id = accepted.job_id;
    println!("job {id} submitted to {base}");
    let first: ifx_protocols::api::JobStatus =
        super::http::get_from_node(&client, &a.api, &format!("jobs/{id}")).await?;
    match first.paid {
        0 => println!("unpaid: the job renders, but its receipts earn nobody anything"),
        paid => println!(
            "paid {paid} units ({} IFX) burned for {} work units",
            paid as f64 / ifx_protocols::settle::UNITS_PER_IFX as f64,
            first.spec.settings().total_units()
        ),
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} tiles {elapsed} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    loop {
        let j: ifx_protocols::api::JobStatus =
            super::http::get_from_node(&client, &a.api, &format!("jobs/{id}")).await?;
        bar.set_length(j.tiles as u64);
        bar.set_position(j.tiles_done as u64);
        bar.set_message(format!(
            "{} workers, {} re-assigned, {} spot-checked, {} bad",
            j.tiles_by_worker.len(),
            j.reassigned,
            j.spot_checked,
            j.bad_tiles
        ));
        match j.state {
            RunState::Done => {
                bar.finish_and_clear();
                println!("done in {:.2} s: {}", j.secs, j.png.as_deref().unwrap_or(""));
                println!("tiles by worker: {}", serde_json::to_string(&j.tiles_by_worker)?);
                println!(
                    "verified delivery: {} tiles spot-checked and accepted, {} bad (evidence in the ledger)",
                    j.spot_checked, j.bad_tiles
                );
                return Ok(ExitCode::SUCCESS);
            }
            RunState::Failed => {
                bar.finish_and_clear();
                eprintln!("job failed: {}", j.error.as_deref().unwrap_or("?"));
                return Ok(ExitCode::from(1));
            }
            RunState::Running => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// Runs `ifx render` (local).
pub fn local(a: RenderArgs) -> anyhow::Result<()> {
    use ifx_render::{self as render, RenderSettings, Renderer, load};
    let out = a.out.clone().ok_or_else(|| anyhow::anyhow!("--out FILE.png is required"))?;
    let scene = load::scene(&a.scene)?;
    let s = RenderSettings { width: a.width, height: a.height, spp: a.spp, max_bounces: a.bounces, tile: a.tile };
    let started = std::time::Instant::now();
    let r = Renderer::new(&scene, &s, a.backend)?;
    tracing::info!(
        backend = r.describe(),
        scene = a.scene,
        width = s.width,
        height = s.height,
        spp = s.spp,
        "rendering"
    );
    let bar = indicatif::ProgressBar::new(s.tiles().len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} tiles {elapsed} (eta {eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    let img = render::render_image(&r, &s, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    render::png::save(&img, &out)?;
    let secs = started.elapsed().as_secs_f64();
    let samples = s.width as f64 * s.height as f64 * s.spp as f64;
    println!(
        "wrote {} and {} ({}x{}, {} spp) in {secs:.2} s with {}: {:.2} M samples/s",
        out.display(),
        render::png::exr_path(&out).display(),
        s.width,
        s.height,
        s.spp,
        r.describe(),
        samples / secs / 1e6
    );
    Ok(())
}
