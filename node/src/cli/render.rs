//! `ifx render`: render a scene locally to a PNG, or `render submit` a job to a node and follow
//! it until the PNG is written; `render list|status|cancel` the jobs a node owns.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ifx_protocols::api::{JobStatus, RunState};

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
    /// The render jobs a node owns, running and ended, with their progress (they survive the
    /// node's restarts; a running job resumes where it stopped).
    List(ListArgs),
    /// One job's progress, workers and output.
    Status(JobArgs),
    /// Stop a running job: no more tiles are asked for; receipts already written stay.
    Cancel(JobArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    api: super::http::ApiTarget,
    /// Print the node's answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct JobArgs {
    /// The job's id (32 hex digits, as `render submit` and `render list` print it).
    job: String,
    #[command(flatten)]
    api: super::http::ApiTarget,
    /// Print the node's answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    api: super::http::ApiTarget,
    /// A built-in scene, or a .toml/.json scene file: it is loaded here first, then it and
    /// every file it reads (meshes, glTF buffers) are uploaded to the node as assets, which
    /// workers fetch by hash.
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
    /// Print the job's id and return once the node accepted it (follow it with `render
    /// status`); without it, follow the job until its PNG is written.
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    frames: FrameArgs,
}

/// Which frames of an animated glTF scene to render.
#[derive(Args, Debug, Clone)]
pub struct FrameArgs {
    /// A frame (`12`) or a range of frames, both ends included (`1..24`): one PNG each,
    /// numbered `0001.png`, in a folder. Frame `f` poses the scene's animations at `f / fps`
    /// seconds, as Blender exports them. Default: frame 0, one image.
    #[arg(long, value_parser = ifx_protocols::render::job::parse_frame_range)]
    frames: Option<(u32, u32)>,
    /// Frames a second.
    #[arg(long, default_value_t = 24)]
    fps: u32,
}

impl FrameArgs {
    fn frames(&self) -> ifx_protocols::render::job::Frames {
        let (first, last) = self.frames.unwrap_or((0, 0));
        ifx_protocols::render::job::Frames { first, last, fps: self.fps }
    }
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
    /// auto (a hardware GPU, else the CPU reference: it outruns a software adapter such as lavapipe), gpu (any adapter, software too) or cpu.
    #[arg(long, default_value = "auto")]
    backend: ifx_render::Backend,
    /// Where to write the PNG (with the EXR beside it); for a range of frames, a folder.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    frames: FrameArgs,
}

/// Loads the scene file at `path` as a worker will, then uploads it and every file it read to
/// the node (`POST /assets`); the scene's name among them and the list for the spec.
pub async fn upload_scene(
    client: &reqwest::Client,
    api: &super::http::ApiTarget,
    path: &std::path::Path,
) -> anyhow::Result<(String, Vec<ifx_protocols::render::assets::AssetRef>)> {
    let p = path.to_path_buf();
    let (scene, files) = tokio::task::spawn_blocking(move || ifx_node::render::package(&p))
        .await?
        .with_context(|| format!("the scene {}", path.display()))?;
    let total: u64 = files.iter().map(|(a, _)| a.len).sum();
    println!("uploading {} assets ({} KiB) to the node", files.len(), total.div_ceil(1024));
    let mut refs = Vec::new();
    for (a, bytes) in files {
        let kept: ifx_protocols::api::AssetKept =
            super::http::post_bytes_to_node(client, api, "assets", bytes.to_vec(), &format!("the asset {}", a.name))
                .await?;
        if kept.hash != hex::encode(a.hash) || kept.len != a.len {
            anyhow::bail!("the node kept {} as {} ({} bytes), not as sent", a.name, kept.hash, kept.len);
        }
        refs.push(a);
    }
    Ok((scene, refs))
}

/// Runs `ifx render submit`.
pub async fn submit(a: SubmitArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let (scene, assets) = if ifx_render::builtin::NAMES.contains(&a.scene.as_str()) {
        (a.scene.clone(), Vec::new())
    } else {
        upload_scene(&client, &a.api, std::path::Path::new(&a.scene)).await?
    };
    let spec = ifx_node::render::JobSpec {
        scene,
        scene_toml: None,
        assets,
        width: a.width,
        height: a.height,
        spp: a.spp,
        max_bounces: a.bounces,
        tile: a.tile,
        unpaid: a.unpaid,
        frames: a.frames.frames(),
    };
    spec.frames.validate().map_err(anyhow::Error::msg)?;
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
            first.spec.total_units()
        ),
    }
    if a.detach {
        return Ok(ExitCode::SUCCESS);
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
        let frames = if j.spec.frames.count() > 1 {
            format!("{}/{} frames, ", j.frames_done(), j.spec.frames.count())
        } else {
            String::new()
        };
        bar.set_message(format!(
            "{frames}{} workers, {} re-assigned, {} spot-checked, {} bad",
            j.tiles_by_worker.len(),
            j.reassigned,
            j.spot_checked,
            j.bad_tiles
        ));
        match j.state {
            RunState::Done => {
                bar.finish_and_clear();
                match &j.sequence {
                    Some(dir) => println!(
                        "done in {:.2} s: frames {}..{} in {dir}",
                        j.secs, j.spec.frames.first, j.spec.frames.last
                    ),
                    None => println!("done in {:.2} s: {}", j.secs, j.png.as_deref().unwrap_or("")),
                }
                println!("tiles by worker: {}", serde_json::to_string(&j.tiles_by_worker)?);
                println!(
                    "verified delivery: {} tiles spot-checked and accepted, {} bad (evidence in the ledger)",
                    j.spot_checked, j.bad_tiles
                );
                return Ok(ExitCode::SUCCESS);
            }
            RunState::Failed | RunState::Cancelled => {
                bar.finish_and_clear();
                eprintln!("job {}: {}", j.state, j.error.as_deref().unwrap_or("?"));
                return Ok(ExitCode::from(1));
            }
            RunState::Running => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// A job id as the node names it, checked before it goes into a URL.
fn job_id(id: &str) -> anyhow::Result<&str> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!("{id:?} is not a job id: 32 hex digits, as `ifx render list` prints them");
    }
    Ok(id)
}

/// One line of `render list`.
fn line(j: &JobStatus) -> String {
    let pct = if j.tiles == 0 { 100.0 } else { j.tiles_done as f64 * 100.0 / j.tiles as f64 };
    let resumed = if j.resumed > 0 {
        format!(", resumed {}x ({} tiles kept)", j.resumed, j.restored_tiles)
    } else {
        String::new()
    };
    let frames = match j.spec.frames.count() {
        1 => String::new(),
        n => format!(", frames {}..{} ({}/{n} written)", j.spec.frames.first, j.spec.frames.last, j.frames_done()),
    };
    format!(
        "{}  {:<9} {:>5}/{:<5} {pct:5.1}%  {}x{} {} spp  {}  {} workers{frames}{resumed}{}",
        j.job_id,
        j.state.to_string(),
        j.tiles_done,
        j.tiles,
        j.spec.width,
        j.spec.height,
        j.spec.spp,
        j.spec.scene,
        j.tiles_by_worker.len(),
        j.sequence.as_deref().or(j.png.as_deref()).map(|p| format!("  {p}")).unwrap_or_default(),
    )
}

/// Runs `ifx render list`.
pub async fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut jobs: Vec<JobStatus> = super::http::get_from_node(&client, &a.api, "jobs").await?;
    jobs.sort_by_key(|j| (j.submitted_unix_ms, j.job_id.clone()));
    if a.json {
        println!("{}", serde_json::to_string(&jobs)?);
    } else if jobs.is_empty() {
        println!("no render jobs on this node");
    } else {
        jobs.iter().for_each(|j| println!("{}", line(j)));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `ifx render status ID`: exit 0 done, 1 failed or cancelled, 2 still running.
pub async fn status(a: JobArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let j: JobStatus = super::http::get_from_node(&client, &a.api, &format!("jobs/{}", job_id(&a.job)?)).await?;
    if a.json {
        println!("{}", serde_json::to_string(&j)?);
    } else {
        println!("{}", line(&j));
        println!(
            "schedule {}, {} receipts, {} spot-checked, {} bad, {} re-assigned, {} copies of stragglers, paid {} units",
            j.schedule, j.receipts, j.spot_checked, j.bad_tiles, j.reassigned, j.speculative, j.paid
        );
        for (peer, w) in &j.workers {
            println!("  {peer}: {} tiles, {:.2} s a tile", w.tiles, w.secs_per_tile);
        }
        if let Some(e) = &j.error {
            println!("error: {e}");
        }
    }
    Ok(ExitCode::from(match j.state {
        RunState::Done => 0,
        RunState::Failed | RunState::Cancelled => 1,
        RunState::Running => 2,
    }))
}

/// Runs `ifx render cancel ID`, and waits (up to 10 s) for the job to stop.
pub async fn cancel(a: JobArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let id = job_id(&a.job)?;
    let _: JobStatus =
        super::http::post_to_node(&client, &a.api, &format!("jobs/{id}/cancel"), &(), "the cancel").await?;
    for _ in 0..40 {
        let j: JobStatus = super::http::get_from_node(&client, &a.api, &format!("jobs/{id}")).await?;
        if j.state != RunState::Running {
            println!("{}", line(&j));
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    println!("job {id}: cancel asked; it has not stopped yet");
    Ok(ExitCode::from(2))
}

/// Runs `ifx render` (local): one image, or each frame of a range into a folder.
pub fn local(a: RenderArgs) -> anyhow::Result<()> {
    use ifx_render::{self as render, RenderSettings, Renderer, load};
    let out =
        a.out.clone().ok_or_else(|| anyhow::anyhow!("--out FILE.png is required (a folder for --frames A..B)"))?;
    let frames = a.frames.frames();
    frames.validate().map_err(anyhow::Error::msg)?;
    let s = RenderSettings { width: a.width, height: a.height, spp: a.spp, max_bounces: a.bounces, tile: a.tile };
    let sequence = frames.count() > 1;
    if sequence {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    }
    let bar = indicatif::ProgressBar::new(s.tiles().len() as u64 * frames.count());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} tiles {elapsed} (eta {eta}) {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let mut backend = String::new();
    for (k, f) in (frames.first..=frames.last).enumerate() {
        let scene = load::scene_at(&a.scene, frames.time(f))?;
        let r = Renderer::new(&scene, &s, a.backend)?;
        if k == 0 {
            backend = r.describe();
            tracing::info!(
                backend,
                scene = a.scene,
                width = s.width,
                height = s.height,
                spp = s.spp,
                frames = frames.count(),
                "rendering"
            );
        }
        bar.set_message(if sequence { format!("frame {f}") } else { String::new() });
        let before = k as u64 * s.tiles().len() as u64;
        let img = render::render_image(&r, &s, |done, _| bar.set_position(before + done as u64))?;
        let path = if sequence { out.join(format!("{f:04}.png")) } else { out.clone() };
        render::png::save(&img, &path)?;
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let samples = s.width as f64 * s.height as f64 * s.spp as f64 * frames.count() as f64;
    let what = if sequence {
        format!("frames {}..{} into {}", frames.first, frames.last, out.display())
    } else {
        format!("{} and {}", out.display(), render::png::exr_path(&out).display())
    };
    println!(
        "wrote {what} ({}x{}, {} spp) in {secs:.2} s with {backend}: {:.2} M samples/s",
        s.width,
        s.height,
        s.spp,
        samples / secs / 1e6
    );
    Ok(())
}
