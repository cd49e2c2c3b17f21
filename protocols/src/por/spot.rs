//! Spot re-render: the worker commits a BLAKE3 Merkle root over the sub-tiles of its image; the
//! verifier derives `k` sub-tile indices from `H(root, nonce, verifier id)` (so the worker cannot
//! know them before committing), the worker reveals those sub-tiles with inclusion proofs, and
//! the verifier re-renders them and compares within the renderer's tolerance.

use super::PorError;
use crate::merkle;
use crate::render::{Image, RenderError, RenderSettings, Tile, TileRenderer};

/// The sub-tile side and the match tolerance are the job tiles' too (`render::commit`).
pub use crate::render::commit::{LEVELS, MAX_BAD_SHARE, SUB, sub_tiles};

/// The 8-bit RGB bytes of one sub-tile of an image.
pub fn sub_tile_bytes(rgb8: &[u8], width: u32, t: Tile) -> Vec<u8> {
    let mut out = Vec::with_capacity((t.w * t.h * 3) as usize);
    for y in t.y..t.y + t.h {
        let start = ((y * width + t.x) * 3) as usize;
        out.extend_from_slice(&rgb8[start..start + (t.w * 3) as usize]);
    }
    out
}

fn leaf(index: u32, bytes: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"ifx/por/leaf/v1");
    h.update(&index.to_le_bytes());
    h.update(bytes);
    *h.finalize().as_bytes()
}

/// Node domain of the sub-tile trees.
const NODE_DOMAIN: &[u8] = b"ifx/por/node/v1";

/// A Merkle tree over an image's sub-tiles.
pub struct Tree(merkle::Tree);

impl Tree {
    /// Commits to the sub-tiles of an 8-bit RGB image.
    pub fn commit(rgb8: &[u8], width: u32, height: u32) -> Self {
        let subs = sub_tiles(width, height);
        let leaves = subs.iter().enumerate().map(|(i, t)| leaf(i as u32, &sub_tile_bytes(rgb8, width, *t))).collect();
        Self(merkle::Tree::new(NODE_DOMAIN, leaves))
    }

    /// The root.
    pub fn root(&self) -> [u8; 32] {
        self.0.root()
    }

    /// The sibling path of leaf `index`.
    pub fn proof(&self, index: usize) -> Vec<[u8; 32]> {
        self.0.proof(index)
    }

    /// Number of real leaves.
    pub fn leaves(&self) -> usize {
        self.0.leaves()
    }
}

/// Checks that `bytes` are sub-tile `index` under `root`.
pub fn verify_proof(root: &[u8; 32], index: u32, bytes: &[u8], proof: &[[u8; 32]]) -> bool {
    merkle::verify(NODE_DOMAIN, root, index, leaf(index, bytes), proof)
}

/// The `k` distinct sub-tile indices a verifier checks, from the worker's root, the verifier's
/// nonce and id.
pub fn choose(root: &[u8; 32], nonce: &[u8; 32], verifier: &[u8; 32], k: usize, leaves: usize) -> Vec<u32> {
    let mut h = blake3::Hasher::new();
    h.update(b"ifx/por/spot/v1");
    h.update(root);
    h.update(nonce);
    h.update(verifier);
    let mut xof = h.finalize_xof();
    let mut out: Vec<u32> = Vec::new();
    while out.len() < k.min(leaves) {
        let mut b = [0u8; 8];
        xof.fill(&mut b);
        let i = (u64::from_le_bytes(b) % leaves as u64) as u32;
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Re-renders sub-tile `index` of the challenge and compares it with the revealed bytes.
pub fn recheck(
    r: &(impl TileRenderer + ?Sized),
    s: &RenderSettings,
    index: u32,
    revealed: &[u8],
) -> Result<(), PorError> {
    let subs = sub_tiles(s.width, s.height);
    let t = *subs.get(index as usize).ok_or_else(|| PorError::check(format!("sub-tile {index} does not exist")))?;
    if revealed.len() != (t.w * t.h * 3) as usize {
        return Err(PorError::check(format!(
            "sub-tile {index} has {} bytes, expected {}",
            revealed.len(),
            t.w * t.h * 3
        )));
    }
    let px = r.render_tile(s, t).map_err(|e: RenderError| PorError::check(e.to_string()))?;
    let mut img = Image::new(t.w, t.h);
    img.put(Tile { x: 0, y: 0, w: t.w, h: t.h }, &px);
    let mine = img.to_rgb8();
    let bad = crate::render::commit::pixels_off(&mine, revealed);
    let share = bad as f64 / (t.w * t.h) as f64;
    if !crate::render::commit::within_tolerance(bad, (t.w * t.h) as usize) {
        return Err(PorError::check(format!(
            "sub-tile {index}: {:.1}% of pixels differ from the re-render",
            share * 100.0
        )));
    }
    Ok(())
}
