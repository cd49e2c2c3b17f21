//! `ifx verify IMAGE.png --job ID`: a render certificate (issue #18 item 7). Checks a finished
//! image against what the network recorded of it, offline, from a node's data dir:
//! - each tile is what a worker signed (`ifx_protocols::ledger::body::certificate`): the job owner's
//!   receipt carries the worker's commitment, and the EXR beside the PNG holds the linear pixels
//!   it was made over, bit for bit; the PNG is their sRGB encoding;
//! - those receipts sit in sealed epochs (settled from the node's ledger store with the network
//!   parameters the node ran with, as `ifx rewards` does), and were written by the job's payer;
//! - a random sample of sub-tiles, re-rendered here on the CPU reference, matches within the
//!   tolerance the job owner's spot check uses (`commit::compare`).
//!
//! Exit status: 0 verified; 1 a tile failed (each named, with why) or the check could not
//! run; 2 nothing failed but some receipts are not sealed yet.
//!
//! A tile receipted more than once fails too: an owner writes one receipt per tile, restarts
//! included.
//!
//! The job's spec (scene included) comes from `--spec`, else the job owner's store in the data
//! dir, else its `GET /jobs/{id}`; either way it is checked, since every worker signed its hash.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use ifx_protocols::ledger::body::certificate::check;
use ifx_protocols::ledger::{EntryKind, JobPayment, RenderReceipt};
use ifx_protocols::render::commit::{self, sub_tiles};
use ifx_protocols::render::job::JobSpec;
use ifx_protocols::render::{Image, Tile};
use ifx_protocols::settle::Status;

use super::http::{ApiTarget, api_get};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The image: a PNG the job wrote, with the EXR beside it (the same name, `.exr`).
    pub image: PathBuf,
    /// The job's id (hex).
    #[arg(long)]
    pub job: String,
    /// The job's spec as JSON (the body of `POST /jobs`); default: the node's `GET /jobs/{id}`.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// The frame the image is, for a sequence; default: the number the file is named by
    /// (`0007.png`), else the job's first frame.
    #[arg(long)]
    pub frame: Option<u32>,
    /// Sub-tiles (8 x 8 pixels) re-rendered here, chosen at random.
    #[arg(long, default_value_t = 8)]
    pub samples: usize,
    /// Wait up to this many seconds for the job's receipts to be sealed.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
    /// The node whose ledger store is read (`--data-dir`), and whose API gives the spec.
    #[command(flatten)]
    pub api: ApiTarget,
}

/// What one reading of the ledger says of the job's receipts.
struct Recorded {
    /// The job owner's receipts, with the epoch of each.
    receipts: Vec<(RenderReceipt, u64)>,
    sealed: BTreeSet<u64>,
    payer: Option<[u8; 32]>,
}

/// Reads the job's receipts (by the job's payer, or by its one author when nobody paid) and
/// the sealed epochs from the node's ledger store.
fn recorded(a: &VerifyArgs, job: [u8; 16]) -> anyhow::Result<Recorded> {
    let net = super::rewards::network_of(&a.api.data_dir)?;
    let db = ifx_storage::Db::open_read_only(&a.api.data_dir.join("db"))?;
    let store = ifx_storage::LedgerStore::open_existing(db)?;
    let l = store.ledger();
    let payer = l
        .iter_sorted()
        .filter(|e| e.kind == EntryKind::JobPayment)
        .find(|e| JobPayment::decode(&e.body).is_ok_and(|p| p.job == job))
        .map(|e| e.author);
    let mut by_author: BTreeMap<[u8; 32], Vec<(RenderReceipt, u64)>> = BTreeMap::new();
    for e in l.iter_sorted().filter(|e| e.kind == EntryKind::RenderReceipt) {
        if let Ok(r) = RenderReceipt::decode(&e.body)
            && r.job == job
        {
            by_author.entry(e.author).or_default().push((r, e.epoch));
        }
    }
    let receipts = match payer {
        Some(p) => by_author.remove(&p).unwrap_or_default(),
        None if by_author.len() <= 1 => by_author.into_values().next().unwrap_or_default(),
        None => anyhow::bail!(
            "nobody paid for job {} and {} nodes wrote receipts for it: whose image this is cannot be told",
            a.job,
            by_author.len()
        ),
    };
    let now = net.epoch_at(ifx_node::unix_time_us() / 1000);
    let st = ifx_protocols::settle::settle(&net, l.iter_sorted(), now);
    let sealed = st.epochs.iter().filter(|e| e.status == Status::Sealed).map(|e| e.epoch).collect();
    Ok(Recorded { receipts, sealed, payer })
}

fn spec_of(a: &VerifyArgs, job: [u8; 16]) -> anyhow::Result<JobSpec> {
    if let Some(p) = &a.spec {
        let t = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        return serde_json::from_str(&t).with_context(|| format!("{} is not a job spec", p.display()));
    }
    // The owner's store: there whether the node runs or not.
    let stored = ifx_storage::Db::open_read_only(&a.api.data_dir.join("db"))
        .and_then(|db| ifx_storage::JobStore::new(db).jobs())
        .ok()
        .and_then(|jobs| jobs.into_iter().find(|j| j.id == job));
    if let Some(j) = stored {
        let st = ifx_node::render::persist::decode_job(&j).map_err(anyhow::Error::msg).context("the stored job")?;
        return Ok(st.spec);
    }
    let v = api_get(&a.api, &format!("jobs/{}", a.job))
        .context("the job's spec: give --spec FILE.json, or the data dir of the node that owns the job")?;
    let status: ifx_protocols::api::JobStatus = serde_json::from_value(v).context("the node's job status")?;
    Ok(status.spec)
}

/// The PNG's 8-bit pixels and the EXR's linear ones.
fn images(png: &std::path::Path) -> anyhow::Result<(Vec<u8>, Image)> {
    let p = image::open(png).with_context(|| format!("reading {}", png.display()))?.into_rgb8();
    let exr = ifx_render::png::exr_path(png);
    let e = image::open(&exr)
        .with_context(|| format!("reading {} (the linear image the tiles were signed over)", exr.display()))?
        .into_rgb32f();
    if p.dimensions() != e.dimensions() {
        anyhow::bail!("the PNG is {:?} and the EXR {:?}", p.dimensions(), e.dimensions());
    }
    let (w, h) = e.dimensions();
    let img = Image { width: w, height: h, rgb: e.pixels().map(|p| p.0).collect() };
    Ok((p.into_raw(), img))
}

/// Re-renders `n` random sub-tiles on the CPU reference; the problems, by tile index.
fn resample(
    spec: &JobSpec,
    img: &Image,
    n: usize,
    blobs: Option<&ifx_storage::BlobStore>,
) -> anyhow::Result<Vec<(u32, String)>> {
    let s = spec.settings();
    let scene = ifx_node::render::job_scene(spec, blobs)?;
    let r = ifx_render::Renderer::new(&scene, &s, ifx_render::Backend::Cpu)?;
    let tiles = s.tiles();
    let mut rng = rand::thread_rng();
    let mut out = Vec::new();
    for _ in 0..n {
        let i = rand::Rng::gen_range(&mut rng, 0..tiles.len());
        let t = tiles[i];
        let subs = sub_tiles(t.w, t.h);
        let k = rand::Rng::gen_range(&mut rng, 0..subs.len());
        let sub = subs[k];
        let at = Tile { x: t.x + sub.x, y: t.y + sub.y, w: sub.w, h: sub.h };
        let mine = r.render_tile(&s, at)?;
        let theirs = commit::encode_pixels(&img.crop(at));
        if let Err(why) = commit::compare(Tile { x: 0, y: 0, w: sub.w, h: sub.h }, &theirs, &mine) {
            out.push((i as u32, format!("sub-tile {k} re-rendered here differs: {why}")));
        }
    }
    Ok(out)
}

pub fn run(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let job: [u8; 16] = hex::decode(&a.job)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("--job {}: not a job id (32 hex digits)", a.job))?;
    let whole = spec_of(&a, job)?;
    whole.validate()?;
    let frames = whole.frames;
    let named = a.image.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u32>().ok());
    let frame = a.frame.or(named.filter(|_| frames.count() > 1)).unwrap_or(frames.first);
    if !(frames.first..=frames.last).contains(&frame) {
        anyhow::bail!("frame {frame} is not one of the job's ({}..={})", frames.first, frames.last);
    }
    let spec = whole.at_frame(frame);
    let first = ((frame - frames.first) as u64 * whole.tiles_per_frame()) as u32;
    let (png, img) = images(&a.image)?;
    let deadline = Instant::now() + Duration::from_secs(a.wait);
    let (rec, verdicts) = loop {
        let rec = recorded(&a, job)?;
        let receipts: Vec<RenderReceipt> = rec.receipts.iter().map(|(r, _)| r.clone()).collect();
        let verdicts = check(job, &spec, first, &img, &png, &receipts).map_err(anyhow::Error::msg)?;
        let unsealed = verdicts.iter().filter_map(|v| v.receipt).any(|k| !rec.sealed.contains(&rec.receipts[k].1));
        if !unsealed || Instant::now() >= deadline {
            break (rec, verdicts);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut problems: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    // Tiles whose receipt is right but not sealed yet, with its epoch.
    let mut unsealed: BTreeMap<u32, u64> = BTreeMap::new();
    for v in &verdicts {
        if let Some(p) = &v.problem {
            problems.entry(v.index).or_default().push(p.clone());
        }
        if let Some(k) = v.receipt {
            let epoch = rec.receipts[k].1;
            if !rec.sealed.contains(&epoch) {
                unsealed.insert(v.index, epoch);
            }
        }
    }
    let mut per_tile: BTreeMap<u32, usize> = BTreeMap::new();
    for (r, _) in rec.receipts.iter() {
        if let Some(i) = r.tile.checked_sub(first).filter(|i| (*i as usize) < verdicts.len()) {
            *per_tile.entry(i).or_default() += 1;
        }
    }
    for (tile, n) in per_tile.into_iter().filter(|(_, n)| *n > 1) {
        problems.entry(tile).or_default().push(format!("receipted {n} times: an owner writes one receipt a tile"));
    }
    // A job's assets are in the owner's blob store (pinned while it ran).
    let blobs = if spec.assets.is_empty() {
        None
    } else {
        let db = ifx_storage::Db::open_read_only(&a.api.data_dir.join("db"))
            .context("the job's assets: give the data dir of the node that owns the job")?;
        Some(ifx_storage::BlobStore::open(db, ifx_node::blob::LIMITS)?)
    };
    let resampled = resample(&spec, &img, a.samples, blobs.as_ref())?;
    for (i, p) in &resampled {
        problems.entry(*i).or_default().push(p.clone());
    }
    let workers: BTreeSet<[u8; 32]> = verdicts.iter().filter_map(|v| v.worker).collect();
    let epochs: BTreeSet<u64> = verdicts.iter().filter_map(|v| v.receipt).map(|k| rec.receipts[k].1).collect();
    let which = if frames.count() > 1 {
        format!(" frame {frame} of {}..={}", frames.first, frames.last)
    } else {
        String::new()
    };
    println!(
        "job {}{which}: {}x{} at {} spp, {} tiles; receipts by {} ({})",
        a.job,
        spec.width,
        spec.height,
        spec.spp,
        verdicts.len(),
        rec.payer
            .map(|p| format!("the payer {}", &hex::encode(p)[..12]))
            .unwrap_or_else(|| "an unpaid job's owner".into()),
        rec.receipts.len()
    );
    for (i, ps) in &problems {
        let t = verdicts[*i as usize].tile;
        for p in ps {
            println!("tile {i} (x {}, y {}, {}x{}): {p}", t.x, t.y, t.w, t.h);
        }
    }
    if !unsealed.is_empty() {
        let tiles: Vec<String> = unsealed.keys().map(|i| i.to_string()).collect();
        let epochs: BTreeSet<u64> = unsealed.values().copied().collect();
        println!("not sealed yet: tiles {} (receipts of epochs {epochs:?})", tiles.join(", "));
    }
    if problems.is_empty() && !unsealed.is_empty() {
        println!(
            "PENDING: every tile signed by its worker, but the receipts of {} tiles are not in a sealed epoch yet (rerun later, or give --wait SECS)",
            unsealed.len()
        );
        Ok(ExitCode::from(2))
    } else if problems.is_empty() {
        println!(
            "VERIFIED: every tile signed by its worker ({} workers), receipts in sealed epochs {}-{}, {} sub-tiles re-rendered here within the tolerance",
            workers.len(),
            epochs.first().copied().unwrap_or(0),
            epochs.last().copied().unwrap_or(0),
            a.samples
        );
        Ok(ExitCode::SUCCESS)
    } else {
        let names: Vec<String> = problems.keys().map(|i| i.to_string()).collect();
        println!("FAILED: tile{} {}", if names.len() == 1 { "" } else { "s" }, names.join(", "));
        Ok(ExitCode::from(1))
    }
}
