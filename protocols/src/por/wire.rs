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
/// The one render challenge the protocol has: 128x128 at 8 spp and 4 bounces, one tile (about
/// 0.5 M path segments; tens of milliseconds on a GPU, under a second on lavapipe). A worker
/// renders nothing else for a challenger, so no peer can order heavier work through PoR.
pub const CHALLENGE: RenderSettings = RenderSettings { width: 128, height: 128, spp: 8, max_bounces: 4, tile: 128 };

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
    /// The image and the Merkle root over its sub-tiles, and the worker's signature on that
    /// root for the asking verifier (its proof of the challenge).
    Committed { root: [u8; 32], rgb8: Vec<u8>, render_us: u64, proof: crate::ledger::body::proof::AnswerProof },
    /// The sub-tiles asked for: (index, bytes, proof).
    Opened { openings: Vec<(u32, Vec<u8>, Vec<[u8; 32]>)> },
    /// The benchmark's row digests and the time the worker claims, signed for the asking
    /// verifier.
    Benched { rows: Vec<[u8; 32]>, claimed_us: u64, proof: crate::ledger::body::proof::AnswerProof },
    /// Not answered, and why.
    Refused(String),
    /// The answer to [`Request::Echo`].
    Echo,
    /// Not answered for want of capacity or of state (too many challenges in flight from this
    /// peer, a challenge the worker no longer holds): a QoS miss for the verifier, never a
    /// PoR failure, so a stranger flooding a worker cannot get it failed.
    Busy(String),
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

/// A render challenge's settings from the wire: exactly [`CHALLENGE`], or refused.
pub fn challenge_settings(s: [u32; 5]) -> Result<RenderSettings, crate::render::RenderError> {
    if s != settings_wire(&CHALLENGE) {
        return Err(crate::render::RenderError::Settings(format!(
            "challenge settings {s:?} are not the protocol's {:?} (width, height, spp, bounces, tile)",
            settings_wire(&CHALLENGE)
        )));
    }
    Ok(CHALLENGE)
}

/// The wire form of a challenge's settings.
pub const fn settings_wire(s: &RenderSettings) -> [u32; 5] {
    [s.width, s.height, s.spp, s.max_bounces, s.tile]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_protocols_challenge_is_rendered() {
        assert_eq!(challenge_settings(settings_wire(&CHALLENGE)).unwrap(), CHALLENGE);
        for heavy in [[256, 256, 65_536, 64, 256], [128, 128, 9, 4, 128], [128, 128, 8, 4, 64], [u32::MAX; 5], [0; 5]] {
            assert!(challenge_settings(heavy).is_err(), "{heavy:?}");
        }
        assert!(CHALLENGE.width <= MAX_CHALLENGE_SIDE && CHALLENGE.validate().is_ok());
    }

    #[test]
    fn a_busy_answer_reads_back() {
        let r = Response::Busy("2 challenges in flight from this peer".into());
        assert_eq!(Response::decode(&r.encode()).unwrap(), r);
    }
}
