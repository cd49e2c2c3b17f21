//! The PoR request-response protocol (`/ifx/<net>/por/1`): a verifier's render challenge and
//! its opening round, benchmark challenges, and the echo that times the path before one.

use bincode::{Decode, Encode};

use crate::codec::DecodeError;
use crate::render::RenderSettings;
use crate::render::scene::MAX_WIRE_SCENE;

/// Largest encoded request or response (a wire scene plus the rest).
pub const MAX_MESSAGE: usize = MAX_WIRE_SCENE + 65_536;
/// Largest answer (a 256x256 image, or openings).
pub const MAX_ANSWER: usize = 256 * 256 * 3 + 65_536;
/// Largest challenge image side a worker renders.
pub const MAX_CHALLENGE_SIDE: u32 = 256;

/// What a verifier asks a worker.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Request {
    /// Render this watermarked scene (`settings`: width, height, spp, bounces, tile) and commit.
    Render { id: [u8; 16], scene: Vec<u8>, settings: [u32; 5] },
    /// Reveal these sub-tiles of challenge `id` with their inclusion proofs.
    Open { id: [u8; 16], indices: Vec<u32> },
    /// Run the IB benchmark of `seed` and claim the time it took.
    Bench { seed: u64 },
    /// Answered at once: the verifier times it just before a benchmark, so that delays of the
    /// path (a loaded machine, a slow link) are not counted as compute time.
    /// The answer to [`Request::Echo`].
    Echo,
}

/// What a worker answers.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Response {
    /// The image and the Merkle root over its sub-tiles.
    Committed { root: [u8; 32], rgb8: Vec<u8>, render_us: u64 },
    /// The sub-tiles asked for: (index, bytes, proof).
    Opened { openings: Vec<(u32, Vec<u8>, Vec<[u8; 32]>)> },
    /// The benchmark's row digests and the time the worker claims.
    Benched { rows: Vec<[u8; 32]>, claimed_us: u64 },
    /// Not answered, and why.
    Refused(String),
    /// The answer to [`Request::Echo`].
    Echo,
}

impl Request {
    /// Bytes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes at most [`MAX_MESSAGE`] bytes.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        crate::codec::decode::<_, MAX_MESSAGE>(b)
    }
}

impl Response {
    /// Bytes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes at most [`MAX_MESSAGE`] bytes.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        crate::codec::decode::<_, MAX_MESSAGE>(b)
    }
}

/// A render challenge's settings from the wire, checked against the render limits and
/// [`MAX_CHALLENGE_SIDE`].
pub fn challenge_settings(s: [u32; 5]) -> Result<RenderSettings, crate::render::RenderError> {
    let r = RenderSettings { width: s[0], height: s[1], spp: s[2], max_bounces: s[3], tile: s[4] };
    r.validate()?;
    if r.width > MAX_CHALLENGE_SIDE || r.height > MAX_CHALLENGE_SIDE {
        return Err(crate::render::RenderError::Settings(format!(
            "challenges are at most {MAX_CHALLENGE_SIDE}x{MAX_CHALLENGE_SIDE}"
        )));
    }
    Ok(r)
}

/// The wire form of a challenge's settings.
pub fn settings_wire(s: &RenderSettings) -> [u32; 5] {
    [s.width, s.height, s.spp, s.max_bounces, s.tile]
}
