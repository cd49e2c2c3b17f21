//! Proof of Rendering. A verifier hands a worker a scene carrying a secret ANGV watermark
//! (`angv`), the worker renders it and commits a Merkle root over its sub-tiles (`spot`), the
//! verifier checks every imprint in the image and re-renders a few sub-tiles the root chose.
//! `cheat` holds the ways a worker can fake a render, for tests and the testnet. Rendering
//! itself is the engine's: PoR asks only for a [`TileRenderer`].

pub mod angv;
pub mod announce;
pub mod cheat;
pub mod ib;
pub mod quorum;
pub mod spot;
pub mod wire;

/// Proofs of challenge live with the verdicts that carry them (`ledger::body::proof`).
pub use crate::ledger::body::proof;

use crate::render::{RenderSettings, TileRenderer};

pub use angv::AngvParams;

/// A PoR check that failed (an answer, an opening, a benchmark), and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PorError(pub String);

impl PorError {
    /// A failed check, saying what was wrong.
    pub fn check(why: impl Into<String>) -> Self {
        PorError(why.into())
    }
}

/// Sub-tiles a verifier re-renders per challenge.
pub const SPOT_CHECKS: usize = 2;

/// One revealed sub-tile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    pub index: u32,
    pub bytes: Vec<u8>,
    pub proof: Vec<[u8; 32]>,
}

/// The worker's answer: its image (8-bit RGB) and the root it committed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub rgb8: Vec<u8>,
    pub root: [u8; 32],
}

/// Worker side: the commitment of an image.
pub fn commit(rgb8: Vec<u8>, s: &RenderSettings) -> (Answer, spot::Tree) {
    let tree = spot::Tree::commit(&rgb8, s.width, s.height);
    (Answer { root: tree.root(), rgb8 }, tree)
}

/// Worker side: opens the sub-tiles the verifier chose.
pub fn reveal(answer: &Answer, tree: &spot::Tree, s: &RenderSettings, indices: &[u32]) -> Vec<Opening> {
    let subs = spot::sub_tiles(s.width, s.height);
    indices
        .iter()
        .filter_map(|&i| {
            let t = *subs.get(i as usize)?;
            Some(Opening {
                index: i,
                bytes: spot::sub_tile_bytes(&answer.rgb8, s.width, t),
                proof: tree.proof(i as usize),
            })
        })
        .collect()
}

/// A verifier's decision on one challenge.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Pass { min_e: f32 },
    Fail { reason: String },
}

impl Verdict {
    /// Whether the worker passed.
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass { .. })
    }
}

/// Verifier side, everything after the answer: the image size, every ANGV imprint, the
/// openings' proofs and indices, and a re-render of each opened sub-tile with `watermarked`
/// (the renderer of the watermarked scene, on the verifier's own backend).
pub fn verify(
    key: &[u8; 32],
    params: &AngvParams,
    s: &RenderSettings,
    answer: &Answer,
    chosen: &[u32],
    openings: &[Opening],
    watermarked: &(impl TileRenderer + ?Sized),
) -> Verdict {
    let fail = |reason: String| Verdict::Fail { reason };
    let expected = (s.width * s.height * 3) as usize;
    if answer.rgb8.len() != expected {
        return fail(format!("image has {} bytes, expected {expected}", answer.rgb8.len()));
    }
    let min_e = match angv::check(&answer.rgb8, s.width, s.height, key, params) {
        Ok(e) => e,
        Err(reason) => return fail(format!("watermark: {reason}")),
    };
    let opened: Vec<u32> = openings.iter().map(|o| o.index).collect();
    if opened != chosen {
        return fail(format!("opened sub-tiles {opened:?}, asked for {chosen:?}"));
    }
    for o in openings {
        if !spot::verify_proof(&answer.root, o.index, &o.bytes, &o.proof) {
            return fail(format!("sub-tile {}: bad inclusion proof", o.index));
        }
        if let Err(e) = spot::recheck(watermarked, s, o.index, &o.bytes) {
            return fail(format!("spot re-render: {e}"));
        }
    }
    Verdict::Pass { min_e }
}
