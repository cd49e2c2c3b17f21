//! A worker's signed commitment to a job tile (issue #21, verified delivery): the worker hashes
//! the tile's pixels, exactly as it sends them (linear f32, little-endian), in sub-tiles of
//! [`SUB`] x [`SUB`] under a BLAKE3 Merkle root, and signs the root with the job, the hash of
//! the job's whole spec (scene included) and the tile's rectangle. The job owner re-renders a
//! sub-tile of its own choosing after the tile arrived (the worker cannot know which one); a
//! sub-tile that does not match is evidence anyone can check: the worker's signature binds the
//! bytes through the root, so an owner can neither alter them nor pin on a worker bytes it did
//! not send, and a verifier re-renders that one sub-tile to judge.

use ed25519_dalek::{Signer, SigningKey};

use super::{Image, RenderSettings, Tile};
use crate::merkle;

/// Side of a committed sub-tile in pixels (PoR's spot check uses the same).
pub const SUB: u32 = 8;
/// A sub-tile matches its re-render when at most this share of its pixels have a channel more
/// than [`LEVELS`] away in 8-bit (honest backends disagree on ~0.2% of pixels, rare diverged
/// paths that can cluster; a 25% fake puts ~23% of the pixels out).
pub const MAX_BAD_SHARE: f64 = 0.125;
/// See [`MAX_BAD_SHARE`].
pub const LEVELS: i32 = 8;
/// Bytes of one pixel on the wire (three little-endian f32).
pub const PIXEL_BYTES: usize = 12;
/// Most bytes one sub-tile's opening carries.
pub const MAX_SUB_BYTES: usize = (SUB * SUB) as usize * PIXEL_BYTES;

const SIG_DOMAIN: &[u8] = b"ifx/job/tile/v1";
const LEAF_DOMAIN: &[u8] = b"ifx/job/leaf/v1";
const NODE_DOMAIN: &[u8] = b"ifx/job/node/v1";

/// The sub-tiles of a `w` x `h` tile (or image), in its own coordinates, row-major.
pub fn sub_tiles(w: u32, h: u32) -> Vec<Tile> {
    RenderSettings { width: w, height: h, spp: 1, max_bounces: 1, tile: SUB }.tiles()
}

/// Pixels of two 8-bit RGB images of one size with a channel more than [`LEVELS`] apart.
pub fn pixels_off(a: &[u8], b: &[u8]) -> usize {
    a.chunks_exact(3)
        .zip(b.chunks_exact(3))
        .filter(|(a, b)| a.iter().zip(b.iter()).any(|(x, y)| (*x as i32 - *y as i32).abs() > LEVELS))
        .count()
}

/// Whether `off` of `n` pixels off is still a match.
pub fn within_tolerance(off: usize, n: usize) -> bool {
    off as f64 <= MAX_BAD_SHARE * n as f64
}

/// Sibling-path length of a tile with `leaves` sub-tiles (what every opening of it must have).
pub fn depth(leaves: usize) -> usize {
    leaves.next_power_of_two().max(1).trailing_zeros() as usize
}

/// The wire bytes of sub-tile `s` of a tile `w` pixels wide.
pub fn sub_bytes(pixels: &[u8], w: u32, s: Tile) -> Vec<u8> {
    let mut out = Vec::with_capacity((s.w * s.h) as usize * PIXEL_BYTES);
    for y in s.y..s.y + s.h {
        let start = (y * w + s.x) as usize * PIXEL_BYTES;
        out.extend_from_slice(&pixels[start..start + s.w as usize * PIXEL_BYTES]);
    }
    out
}

fn leaf(index: u32, bytes: &[u8]) -> [u8; 32] {
    *blake3::Hasher::new().update(LEAF_DOMAIN).update(&index.to_le_bytes()).update(bytes).finalize().as_bytes()
}

/// The Merkle tree over a tile's sub-tiles (`pixels`: `w x h x 12` wire bytes).
pub fn tree(pixels: &[u8], w: u32, h: u32) -> merkle::Tree {
    let leaves = sub_tiles(w, h).iter().enumerate().map(|(i, s)| leaf(i as u32, &sub_bytes(pixels, w, *s))).collect();
    merkle::Tree::new(NODE_DOMAIN, leaves)
}

/// Whether `bytes` are sub-tile `index` of a tile of `leaves` sub-tiles under `root` (the
/// proof exactly as long as such a tree is deep).
pub fn verify_opening(root: &[u8; 32], leaves: usize, index: u32, bytes: &[u8], proof: &[[u8; 32]]) -> bool {
    (index as usize) < leaves
        && proof.len() == depth(leaves)
        && merkle::verify(NODE_DOMAIN, root, index, leaf(index, bytes), proof)
}

/// What a worker signs for one tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileCommitment {
    pub job: [u8; 16],
    /// The job spec's hash (`JobSpec::hash`).
    pub spec: [u8; 32],
    /// x, y, width, height.
    pub tile: [u32; 4],
    pub root: [u8; 32],
}

impl TileCommitment {
    /// The commitment to a tile's wire pixels of job `job` with spec hash `spec`.
    pub fn of(job: [u8; 16], spec: [u8; 32], t: Tile, pixels: &[u8]) -> Self {
        Self { job, spec, tile: [t.x, t.y, t.w, t.h], root: tree(pixels, t.w, t.h).root() }
    }

    /// The signed digest. No network id, as for proofs of challenge: the job id is random and
    /// the spec hash names the work, and settlement checks it without the wire id.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(SIG_DOMAIN).update(&self.job).update(&self.spec).update(&self.root);
        for v in self.tile {
            h.update(&v.to_le_bytes());
        }
        *h.finalize().as_bytes()
    }

    /// The worker's signature (checked by `ledger::body::fault::signed_by`, under the
    /// ledger's one signature rule).
    pub fn sign(&self, key: &SigningKey) -> [u8; 64] {
        key.sign(&self.digest()).to_bytes()
    }
}

/// Decodes wire pixels (12 bytes each; the caller checked the length).
pub fn decode_pixels(bytes: &[u8]) -> Vec<[f32; 3]> {
    bytes
        .chunks_exact(PIXEL_BYTES)
        .map(|c| {
            let f = |i: usize| f32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            [f(0), f(4), f(8)]
        })
        .collect()
}

/// Wire bytes of pixels.
pub fn encode_pixels(px: &[[f32; 3]]) -> Vec<u8> {
    px.iter().flatten().flat_map(|v| v.to_le_bytes()).collect()
}

/// Compares a delivered sub-tile (wire bytes) with a re-render of it, as PoR's spot check
/// does: in 8-bit, a pixel is off when a channel is more than [`LEVELS`] away, and the
/// sub-tile fails when more than [`MAX_BAD_SHARE`] of its pixels are off (honest backends
/// differ on rare diverged paths; a cheaper render, or made-up pixels, on far more).
pub fn compare(s: Tile, delivered: &[u8], rerendered: &[[f32; 3]]) -> Result<(), String> {
    let n = (s.w * s.h) as usize;
    if delivered.len() != n * PIXEL_BYTES || rerendered.len() != n {
        return Err(format!("sub-tile has {} bytes, expected {}", delivered.len(), n * PIXEL_BYTES));
    }
    let rgb8 = |px: Vec<[f32; 3]>| Image { width: s.w, height: s.h, rgb: px }.to_rgb8();
    let theirs = rgb8(decode_pixels(delivered));
    let mine = rgb8(rerendered.to_vec());
    let bad = pixels_off(&mine, &theirs);
    if !within_tolerance(bad, n) {
        return Err(format!("{bad} of {n} pixels differ from the re-render"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::job::JobSpec;
    use super::*;

    fn spec() -> JobSpec {
        JobSpec {
            scene: "cornell".into(),
            scene_toml: None,
            assets: Vec::new(),
            width: 64,
            height: 48,
            spp: 4,
            max_bounces: 6,
            tile: 20,
            unpaid: false,
            frames: Default::default(),
        }
    }

    fn pixels(w: u32, h: u32, seed: u8) -> Vec<u8> {
        let px: Vec<[f32; 3]> =
            (0..w * h).map(|i| [((i as u8).wrapping_add(seed)) as f32 / 255.0, 0.25, (i % 7) as f32 / 7.0]).collect();
        encode_pixels(&px)
    }

    /// Every sub-tile of a ragged tile opens under the signed root; other bytes, indices or
    /// proof lengths do not, and the signature names the worker, job, spec and rectangle.
    #[test]
    fn openings_and_signatures_bind_the_delivered_bytes() {
        let t = Tile { x: 40, y: 20, w: 20, h: 20 };
        let px = pixels(t.w, t.h, 3);
        let c = TileCommitment::of([9; 16], spec().hash(), t, &px);
        let tree = tree(&px, t.w, t.h);
        let subs = sub_tiles(t.w, t.h);
        assert_eq!(subs.len(), 9, "8, 8 and 4 pixels a side");
        for (i, s) in subs.iter().enumerate() {
            let b = sub_bytes(&px, t.w, *s);
            assert!(verify_opening(&c.root, subs.len(), i as u32, &b, &tree.proof(i)), "{i}");
            let mut forged = b.clone();
            forged[0] ^= 1;
            assert!(!verify_opening(&c.root, subs.len(), i as u32, &forged, &tree.proof(i)));
            assert!(!verify_opening(&c.root, subs.len(), (i as u32 + 1) % 9, &b, &tree.proof(i)));
            assert!(!verify_opening(&c.root, subs.len(), i as u32, &b, &tree.proof(i)[1..]));
        }
        assert!(!verify_opening(&c.root, subs.len(), 16, &[], &tree.proof(0)));
        let mut other = spec();
        other.spp = 5;
        let changed = [
            TileCommitment { job: [8; 16], ..c },
            TileCommitment { spec: other.hash(), ..c },
            TileCommitment { tile: [40, 20, 20, 19], ..c },
            TileCommitment { root: [0; 32], ..c },
        ];
        assert!(changed.iter().all(|d| d.digest() != c.digest()), "the digest names job, spec, rectangle, root");
    }

    #[test]
    fn compare_passes_noise_and_fails_other_pixels() {
        let s = Tile { x: 0, y: 0, w: 8, h: 8 };
        let base: Vec<[f32; 3]> = (0..64).map(|i| [i as f32 / 64.0, 0.5, 0.1]).collect();
        assert!(compare(s, &encode_pixels(&base), &base).is_ok());
        // A few pixels off (diverged paths) pass; a constant grey does not.
        let mut few = base.clone();
        for p in few.iter_mut().take(7) {
            *p = [1.0, 1.0, 1.0];
        }
        assert!(compare(s, &encode_pixels(&few), &base).is_ok());
        let grey = vec![[0.2f32; 3]; 64];
        assert!(compare(s, &encode_pixels(&grey), &base).is_err());
        assert!(compare(s, &encode_pixels(&base[..60]), &base).is_err(), "short");
    }
}
