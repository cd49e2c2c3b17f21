//! The render job protocol (`/ifx/<net>/render/2`): a job's spec (the body of `POST /jobs`,
//! and part of every tile request), the tile request and response, and the owner's check of an
//! answered tile.

use std::time::Duration;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::commit::{PIXEL_BYTES, TileCommitment};
use super::{RenderError, RenderSettings, Tile};
use crate::codec::DecodeError;

/// Largest tile side a distributed job may use.
pub const MAX_TILE: u32 = 256;
/// Tiles a job owner keeps in flight at one worker: one rendering, one on the wire behind it.
pub const IN_FLIGHT: usize = 2;
/// Largest tile response (256 x 256 pixels x 12 bytes, plus framing).
pub const MAX_TILE_RESPONSE: usize = (MAX_TILE * MAX_TILE * 12) as usize + 1024;
/// Largest image a distributed job may ask for: 4K UHD and a little (2^23 pixels). The owner
/// holds the image as linear f32 RGB, 12 bytes a pixel, so this is 100 MiB; the 16384 x 4096
/// job the render limits alone allowed would have been 768 MiB from one request.
pub const MAX_JOB_PIXELS: u64 = 1 << 23;
/// Most samples one tile may ask for (pixels x spp): 256 x 256 at 256 spp, or 64 x 64 at 4096.
/// With at most [`crate::render::MAX_BOUNCES`] bounces, that is what a GPU renders well inside
/// [`TILE_TIMEOUT`]; a peer cannot order more work with one request.
pub const MAX_TILE_SAMPLES: u64 = 1 << 24;
/// A worker that does not answer a tile within this is given up on (the tile is re-assigned).
pub const TILE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most frames one job may ask for: seven minutes at 24 fps. Longer films are several jobs.
pub const MAX_FRAMES: u32 = 10_000;
/// Most frames a second: a frame's time is `frame / fps`.
pub const MAX_FPS: u32 = 1000;
/// Most tiles of one job, all frames together. The owner tracks each tile's state (about ten
/// bytes a tile: 20 MiB at this) and a receipt names its tile by a `u32`.
pub const MAX_JOB_TILES: u64 = 1 << 21;

/// A job's frames, `first` to `last`, at `fps`: frame `f` of an animated glTF scene is its
/// animations sampled at `f / fps` seconds, as Blender exports them (frame 1 at 24 fps is
/// 1/24 s). A scene without animations renders the same each frame. A still is frame 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Frames {
    #[serde(default)]
    pub first: u32,
    #[serde(default)]
    pub last: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
}

fn default_fps() -> u32 {
    24
}

impl Default for Frames {
    fn default() -> Self {
        Self { first: 0, last: 0, fps: default_fps() }
    }
}

impl Frames {
    /// How many frames (0 when `last` is before `first`, which [`JobSpec::validate`] refuses).
    pub fn count(&self) -> u64 {
        (self.last as u64 + 1).saturating_sub(self.first as u64)
    }

    /// Seconds into the animations of frame `frame`.
    pub fn time(&self, frame: u32) -> f32 {
        (frame as f64 / self.fps.max(1) as f64) as f32
    }

    /// Checks the range and the rate against [`MAX_FRAMES`] and [`MAX_FPS`].
    pub fn validate(&self) -> Result<(), String> {
        if self.last < self.first {
            return Err(format!("frames {}..{}: the last frame is before the first", self.first, self.last));
        }
        if self.count() > MAX_FRAMES as u64 {
            return Err(format!("{} frames: a job renders at most {MAX_FRAMES}", self.count()));
        }
        if self.fps == 0 || self.fps > MAX_FPS {
            return Err(format!("fps {} must be 1 to {MAX_FPS}", self.fps));
        }
        Ok(())
    }
}

/// A frame (`12`) or a range of frames with both ends included (`1..24`, `1..=24`), as the
/// command lines take them: first and last.
pub fn parse_frame_range(s: &str) -> Result<(u32, u32), String> {
    let num = |t: &str| t.trim().parse::<u32>().map_err(|_| format!("{t:?} is not a frame number"));
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b.strip_prefix('=').unwrap_or(b))?);
            if b < a {
                return Err(format!("{s}: the last frame is before the first"));
            }
            Ok((a, b))
        }
        None => num(s).map(|f| (f, f)),
    }
}

/// What to render (the body of `POST /jobs`).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct JobSpec {
    /// A built-in scene name; with `assets`, the name of the asset that is the scene file
    /// (`.toml`, `.json`, `.gltf`, `.glb`); ignored when `scene_toml` is given.
    #[serde(default = "default_scene")]
    pub scene: String,
    /// An inline TOML scene (no mesh files).
    #[serde(default)]
    pub scene_toml: Option<String>,
    /// The files the scene reads, by hash ([`super::assets`]); workers fetch them as blobs.
    #[serde(default)]
    pub assets: Vec<super::assets::AssetRef>,
    pub width: u32,
    pub height: u32,
    pub spp: u32,
    #[serde(default = "default_bounces")]
    pub max_bounces: u32,
    #[serde(default = "default_tile")]
    pub tile: u32,
    /// Run without paying: the job renders, but its receipts count for nobody (settlement
    /// counts only paid work). By default the owner pays before any tile is handed out.
    #[serde(default)]
    pub unpaid: bool,
    /// The frames to render (a still by default). A tile request's spec names one frame
    /// ([`JobSpec::at_frame`]), so a worker's signed commitment binds the frame too.
    #[serde(default)]
    pub frames: Frames,
}

fn default_scene() -> String {
    "cornell".into()
}
fn default_bounces() -> u32 {
    6
}
fn default_tile() -> u32 {
    32
}

impl JobSpec {
    /// The hash of the whole spec (scene included) as its bincode bytes: what a worker's tile
    /// commitment binds the work by (`render::commit`).
    pub fn hash(&self) -> [u8; 32] {
        *blake3::Hasher::new().update(b"ifx/job/spec/v1").update(&crate::codec::encode(self)).finalize().as_bytes()
    }

    /// The render settings.
    pub fn settings(&self) -> RenderSettings {
        RenderSettings {
            width: self.width,
            height: self.height,
            spp: self.spp,
            max_bounces: self.max_bounces,
            tile: self.tile,
        }
    }

    /// This job narrowed to frame `frame`: what one of its tile requests carries.
    pub fn at_frame(&self, frame: u32) -> JobSpec {
        JobSpec { frames: Frames { first: frame, last: frame, ..self.frames }, ..self.clone() }
    }

    /// Seconds into the scene's animations of the job's first frame (its only one in a tile
    /// request).
    pub fn time(&self) -> f32 {
        self.frames.time(self.frames.first)
    }

    /// Tiles of one frame.
    pub fn tiles_per_frame(&self) -> u64 {
        self.settings().tile_count()
    }

    /// Tiles of the whole job, every frame: a tile's index is `frame offset x tiles per frame +
    /// its index in the frame`.
    pub fn tile_total(&self) -> u64 {
        self.tiles_per_frame().saturating_mul(self.frames.count())
    }

    /// Work units of every tile of every frame.
    pub fn total_units(&self) -> u64 {
        self.settings().total_units().saturating_mul(self.frames.count())
    }

    /// Checks the settings against the render limits, the image against [`MAX_JOB_PIXELS`],
    /// the tile side against [`MAX_TILE`], a tile's samples against [`MAX_TILE_SAMPLES`], the
    /// frames against [`Frames::validate`] and the tiles of all of them against
    /// [`MAX_JOB_TILES`].
    pub fn validate(&self) -> Result<(), RenderError> {
        self.settings().validate()?;
        self.frames.validate().map_err(RenderError::Settings)?;
        if self.tile_total() > MAX_JOB_TILES {
            return Err(RenderError::Settings(format!(
                "{} frames of {} tiles are more than {MAX_JOB_TILES} tiles: use larger tiles or fewer frames",
                self.frames.count(),
                self.tiles_per_frame()
            )));
        }
        super::assets::check(&self.assets, &self.scene)?;
        if !self.assets.is_empty() && self.scene_toml.is_some() {
            return Err(RenderError::Asset("a job has an inline scene or assets, not both".into()));
        }
        let bad = |m: String| Err(RenderError::Settings(m));
        if self.width as u64 * self.height as u64 > MAX_JOB_PIXELS {
            return bad(format!(
                "{}x{} exceeds {MAX_JOB_PIXELS} pixels for a distributed job",
                self.width, self.height
            ));
        }
        if self.tile > MAX_TILE {
            return bad(format!("tile {} exceeds {MAX_TILE} for distributed jobs", self.tile));
        }
        if self.tile as u64 * self.tile as u64 * self.spp as u64 > MAX_TILE_SAMPLES {
            return bad(format!(
                "a {0}x{0} tile at {1} spp is more than {MAX_TILE_SAMPLES} samples: use smaller tiles",
                self.tile, self.spp
            ));
        }
        Ok(())
    }
}

/// A job owner's request for one tile.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TileRequest {
    pub job: [u8; 16],
    pub spec: JobSpec,
    /// x, y, width, height.
    pub tile: [u32; 4],
}

/// A worker's answer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TileResponse {
    /// Linear RGB f32, little-endian, row-major; empty on error.
    pub pixels: Vec<u8>,
    pub error: String,
    /// The Merkle root over the pixels' sub-tiles ([`super::commit`]); zero on error.
    pub root: [u8; 32],
    /// The worker's signature of the [`TileCommitment`]; zero on error.
    pub sig: [u8; 64],
}

impl TileRequest {
    /// The tile asked for, checked: the spec valid, the rectangle inside the image (no
    /// overflow, whatever the numbers) and no larger than the job's tile side.
    pub fn checked_tile(&self) -> Result<Tile, RenderError> {
        self.spec.validate()?;
        if self.spec.frames.count() != 1 {
            return Err(RenderError::Settings(format!(
                "a tile request names one frame, not {}..{}",
                self.spec.frames.first, self.spec.frames.last
            )));
        }
        let [x, y, w, h] = self.tile;
        let inside = |at: u32, len: u32, side: u32| len > 0 && at.checked_add(len).is_some_and(|end| end <= side);
        if !inside(x, w, self.spec.width) || !inside(y, h, self.spec.height) {
            return Err(RenderError::Settings(format!(
                "tile {:?} is outside the {}x{} image",
                self.tile, self.spec.width, self.spec.height
            )));
        }
        if w > self.spec.tile || h > self.spec.tile {
            return Err(RenderError::Settings(format!(
                "tile {w}x{h} is larger than the job's {0}x{0}",
                self.spec.tile
            )));
        }
        Ok(Tile { x, y, w, h })
    }

    /// Bytes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes at most [`MAX_TILE_RESPONSE`] bytes.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        crate::codec::decode::<_, MAX_TILE_RESPONSE>(b)
    }
}

impl TileResponse {
    /// An answer that says why there is no tile.
    pub fn error(why: impl Into<String>) -> Self {
        Self { pixels: Vec::new(), error: why.into(), root: [0; 32], sig: [0; 64] }
    }

    /// Bytes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes at most [`MAX_TILE_RESPONSE`] bytes.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        crate::codec::decode::<_, MAX_TILE_RESPONSE>(b)
    }
}

/// A tile as delivered: its pixels (and their wire bytes) and the worker's signed commitment.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered {
    pub px: Vec<[f32; 3]>,
    pub pixels: Vec<u8>,
    pub commitment: TileCommitment,
    pub sig: [u8; 64],
}

/// Decodes the answer to `req` and checks its size and values, and that its root is the root
/// of exactly these pixels; the caller checks the worker's signature of the commitment
/// (`ledger::body::fault::signed_by`: a tile without one is not taken, nothing could be proven
/// about it later).
pub fn check_tile(bytes: &[u8], req: &TileRequest, t: Tile) -> Result<Delivered, RenderError> {
    check_response(TileResponse::decode(bytes).map_err(|e| RenderError::Tile(e.to_string()))?, req, t)
}

/// [`check_tile`] of an answer already decoded (a tile the owner kept on disk is checked again
/// when it is loaded).
pub fn check_response(r: TileResponse, req: &TileRequest, t: Tile) -> Result<Delivered, RenderError> {
    if !r.error.is_empty() {
        return Err(RenderError::Tile(format!("worker error: {}", r.error)));
    }
    let n = t.w as usize * t.h as usize;
    if r.pixels.len() != n * PIXEL_BYTES {
        return Err(RenderError::Tile(format!("tile has {} bytes, expected {}", r.pixels.len(), n * PIXEL_BYTES)));
    }
    let px = super::commit::decode_pixels(&r.pixels);
    if px.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(RenderError::Tile("tile has negative or non-finite values".into()));
    }
    let commitment = TileCommitment::of(req.job, req.spec.hash(), t, &r.pixels);
    if commitment.root != r.root {
        return Err(RenderError::Tile("the committed root is not the root of the pixels sent".into()));
    }
    Ok(Delivered { px, pixels: r.pixels, commitment, sig: r.sig })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(width: u32, height: u32, spp: u32, tile: u32) -> JobSpec {
        JobSpec {
            scene: "cornell".into(),
            scene_toml: None,
            assets: Vec::new(),
            width,
            height,
            spp,
            max_bounces: 6,
            tile,
            unpaid: false,
            frames: Frames::default(),
        }
    }

    #[test]
    fn a_job_is_capped_in_pixels_and_a_tile_in_samples() {
        assert!(spec(3840, 2160, 64, 32).validate().is_ok());
        assert!(spec(16_384, 4096, 1, 32).validate().is_err(), "768 MiB from one request");
        assert!(spec(256, 256, 256, 256).validate().is_ok());
        assert!(spec(256, 256, 257, 256).validate().is_err());
    }

    /// Issue #16: a tile rectangle was unchecked (8192 x 8192 from a small request; `x + w`
    /// could overflow).
    #[test]
    fn tile_rectangles_are_checked_without_overflow() {
        let req = |tile: [u32; 4]| TileRequest { job: [0; 16], spec: spec(256, 256, 16, 32), tile };
        assert_eq!(req([32, 64, 32, 32]).checked_tile().unwrap(), Tile { x: 32, y: 64, w: 32, h: 32 });
        for bad in [
            [0, 0, 8192, 8192],
            [u32::MAX, 0, 2, 2],
            [0, u32::MAX - 1, 32, 32],
            [250, 0, 32, 32],
            [0, 0, 0, 32],
            [0, 0, 64, 32],
        ] {
            assert!(req(bad).checked_tile().is_err(), "{bad:?}");
        }
    }

    /// Issue #18 item 4: a job is a frame range; each tile request names one frame of it, so
    /// a tile of one frame cannot pass for another (the spec hash differs).
    #[test]
    fn frames_are_checked_and_a_tile_request_names_one() {
        let mut s = spec(64, 64, 4, 32);
        s.frames = Frames { first: 1, last: 24, fps: 24 };
        assert!(s.validate().is_ok());
        assert_eq!((s.frames.count(), s.tiles_per_frame(), s.tile_total()), (24, 4, 96));
        assert_eq!(s.total_units(), 24 * s.settings().total_units());
        let req = TileRequest { job: [0; 16], spec: s.clone(), tile: [0, 0, 32, 32] };
        assert!(req.checked_tile().unwrap_err().to_string().contains("one frame"));
        let one = TileRequest { spec: s.at_frame(7), ..req };
        assert!(one.checked_tile().is_ok());
        assert_eq!(one.spec.time(), 7.0 / 24.0);
        assert_ne!(s.at_frame(7).hash(), s.at_frame(8).hash(), "the frame is in the spec hash");
        let bad = |f: Frames| JobSpec { frames: f, ..s.clone() }.validate().unwrap_err().to_string();
        assert!(bad(Frames { first: 5, last: 4, fps: 24 }).contains("before the first"));
        assert!(bad(Frames { first: 0, last: MAX_FRAMES, fps: 24 }).contains("at most"));
        assert!(bad(Frames { first: u32::MAX, last: u32::MAX, fps: 0 }).contains("fps"));
        // 4K at 32-pixel tiles is 8,160 tiles a frame: 257 frames pass the tile limit, 258 not.
        let uhd = JobSpec { frames: Frames { first: 0, last: 256, fps: 24 }, ..spec(3840, 2160, 1, 32) };
        assert!(uhd.validate().is_ok());
        let more = JobSpec { frames: Frames { first: 0, last: 257, fps: 24 }, ..uhd };
        assert!(more.validate().unwrap_err().to_string().contains("larger tiles"));
        assert_eq!(parse_frame_range("1..24"), Ok((1, 24)));
        assert_eq!(parse_frame_range("1..=24"), Ok((1, 24)));
        assert_eq!(parse_frame_range("7"), Ok((7, 7)));
        for bad in ["24..1", "a..3", "-1", "1..2..3", ""] {
            assert!(parse_frame_range(bad).is_err(), "{bad}");
        }
    }
}
