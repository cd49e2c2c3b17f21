//! After the run, while the nodes still run: the render certificate (issue #18 item 7). The
//! harness runs `ifx verify` on the artist's image against node 0's data dir, as an artist would,
//! and then on a copy with one tile altered (brighter in the EXR and the PNG alike, as a forger
//! would): the first must pass (or only wait for a seal, which the settlement section judges),
//! the second must name that tile and no other.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::launch::Testnet;

/// The `certificate` section of the report.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateSection {
    /// The honest image verified, receipts sealed.
    pub honest_ok: bool,
    /// Nothing failed, but some of its receipts were not sealed within the wait (`ifx verify`
    /// exit status 2): sealing is judged by the settlement section, not here.
    pub honest_pending: bool,
    /// The tile the harness altered in the copy, and whether `ifx verify` failed it alone.
    pub altered_tile: u32,
    pub altered_named: bool,
    pub secs: f64,
    /// What `ifx verify` printed, each run.
    pub honest_output: String,
    pub altered_output: String,
}

impl CertificateSection {
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.honest_ok && !self.honest_pending {
            out.push(format!("ifx verify failed the honest image: {}", last_line(&self.honest_output)));
        }
        if !self.altered_named {
            out.push(format!(
                "ifx verify did not name tile {} alone in the altered image: {}",
                self.altered_tile,
                last_line(&self.altered_output)
            ));
        }
        out
    }
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or("")
}

/// What running `ifx verify` against node 0 takes, owned (it runs on a blocking thread).
pub struct Verifier {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub api: Option<std::net::SocketAddr>,
    pub base_dir: PathBuf,
}

impl Verifier {
    /// Node 0's.
    pub fn of(net: &Testnet) -> Self {
        let n = &net.nodes[0];
        Self { binary: net.binary.clone(), data_dir: n.data_dir.clone(), api: n.api, base_dir: net.base_dir.clone() }
    }

    /// `ifx verify`'s exit status (-1: none) and what it printed.
    fn verify(&self, job: &str, image: &Path, frame: u32, wait: Duration) -> (i32, String) {
        let mut c = Command::new(&self.binary);
        c.arg("verify").arg(image).args(["--job", job, "--frame", &frame.to_string()]);
        c.args(["--wait", &wait.as_secs().to_string(), "--data-dir"]);
        c.arg(&self.data_dir);
        if let Some(a) = self.api {
            c.args(["--api", &a.to_string()]);
        }
        match c.env_remove("RUST_LOG").output() {
            Ok(o) => {
                let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
                (o.status.code().unwrap_or(-1), text.trim().to_owned())
            }
            Err(e) => (-1, format!("cannot run ifx verify: {e}")),
        }
    }

    /// Runs `ifx verify` on the image `png`, frame `frame` of job `job` (`tiles` tiles a frame
    /// of side `tile`, in rows of `width` pixels), waiting up to `wait` for its receipts' seal,
    /// then on an altered copy.
    #[allow(clippy::too_many_arguments)]
    pub fn certify(
        &self,
        job: &str,
        png: &Path,
        frame: u32,
        tile: u32,
        width: u32,
        tiles: usize,
        wait: Duration,
    ) -> CertificateSection {
        let started = Instant::now();
        let (honest, honest_output) = self.verify(job, png, frame, wait);
        let per_row = width.div_ceil(tile.max(1)).max(1);
        let altered_tile = (tiles / 2) as u32;
        let copy = self.base_dir.join("altered.png");
        let (altered_named, altered_output) = match alter(png, &copy, altered_tile, tile, per_row) {
            Ok(copy) => {
                let (code, out) = self.verify(job, &copy, frame, Duration::ZERO);
                let named = code == 1 && last_line(&out) == format!("FAILED: tile {altered_tile}");
                (named, out)
            }
            Err(e) => (false, format!("cannot alter a copy of the image: {e}")),
        };
        CertificateSection {
            honest_ok: honest == 0,
            honest_pending: honest == 2,
            altered_tile,
            altered_named,
            secs: started.elapsed().as_secs_f64(),
            honest_output,
            altered_output,
        }
    }
}

/// Copies `png` and its EXR to `to`, tile `index` made brighter in both; the copy's path.
fn alter(png: &Path, to: &Path, index: u32, tile: u32, per_row: u32) -> Result<PathBuf, String> {
    let exr = png.with_extension("exr");
    let mut lin = image::open(&exr).map_err(|e| format!("{}: {e}", exr.display()))?.into_rgb32f();
    let (x0, y0) = ((index % per_row) * tile, (index / per_row) * tile);
    let (w, h) = lin.dimensions();
    for y in y0..(y0 + tile).min(h) {
        for x in x0..(x0 + tile).min(w) {
            for c in &mut lin.get_pixel_mut(x, y).0 {
                *c += 0.25;
            }
        }
    }
    let srgb =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb(lin.get_pixel(x, y).0.map(ifx_protocols::render::srgb8)));
    srgb.save(to).map_err(|e| e.to_string())?;
    lin.save(to.with_extension("exr")).map_err(|e| e.to_string())?;
    Ok(to.to_path_buf())
}
