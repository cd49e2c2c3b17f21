//! The render job protocol (`/ifx/<net>/render/1`): a job's spec (the body of `POST /jobs`,
//! and part of every tile request), the tile request and response, and the owner's check of an
//! answered tile.

use std::time::Duration;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::{RenderError, RenderSettings, Tile};
use crate::codec::DecodeError;

/// Largest tile side a distributed job may use.
pub const MAX_TILE: u32 = 256;
/// Largest tile response (256 x 256 pixels x 12 bytes, plus framing).
pub const MAX_TILE_RESPONSE: usize = (MAX_TILE * MAX_TILE * 12) as usize + 1024;
/// A worker that does not answer a tile within this is given up on (the tile is re-assigned).
pub const TILE_TIMEOUT: Duration = Duration::from_secs(60);

/// What to render (the body of `POST /jobs`).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct JobSpec {
    /// A built-in scene name; ignored when `scene_toml` is given.
    #[serde(default = "default_scene")]
    pub scene: String,
    /// An inline TOML scene (no mesh files).
    #[serde(default)]
    pub scene_toml: Option<String>,
    pub width: u32,
    pub height: u32,
    pub spp: u32,
    #[serde(default = "default_bounces")]
    pub max_bounces: u32,
    #[serde(default = "default_tile")]
    pub tile: u32,
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

    /// Checks the settings against the render limits and the tile side against [`MAX_TILE`].
    pub fn validate(&self) -> Result<(), RenderError> {
        self.settings().validate()?;
        if self.tile > MAX_TILE {
            return Err(RenderError::Settings(format!("tile {} exceeds {MAX_TILE} for distributed jobs", self.tile)));
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
}

impl TileRequest {
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
    /// Bytes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes at most [`MAX_TILE_RESPONSE`] bytes.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        crate::codec::decode::<_, MAX_TILE_RESPONSE>(b)
    }
}

/// Decodes a tile response and checks its size and values.
pub fn check_tile(bytes: &[u8], t: Tile) -> Result<Vec<[f32; 3]>, RenderError> {
    let r = TileResponse::decode(bytes).map_err(|e| RenderError::Tile(e.to_string()))?;
    if !r.error.is_empty() {
        return Err(RenderError::Tile(format!("worker error: {}", r.error)));
    }
    let n = t.w as usize * t.h as usize;
    if r.pixels.len() != n * 12 {
        return Err(RenderError::Tile(format!("tile has {} bytes, expected {}", r.pixels.len(), n * 12)));
    }
    let px: Vec<[f32; 3]> = r
        .pixels
        .chunks_exact(12)
        .map(|c| {
            let f = |i: usize| f32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            [f(0), f(4), f(8)]
        })
        .collect();
    if px.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(RenderError::Tile("tile has negative or non-finite values".into()));
    }
    Ok(px)
}
