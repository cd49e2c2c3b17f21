//! A render certificate (issue #18 item 7): what `ifx verify` checks of a finished image, sans
//! I/O. Each tile of the image must be what a worker signed. The job owner's receipt for the
//! tile carries the worker's commitment (the Merkle root of the tile's linear pixels and the
//! worker's signature, [`crate::render::commit::TileCommitment`]). The commitment recomputed from the
//! image's pixels must be that root, signed by that worker, for this job and this spec. The
//! 8-bit PNG must be the sRGB encoding of those pixels. The pixels come from the OpenEXR beside
//! the PNG, which holds the linear f32 values bit for bit.
//!
//! Whether the receipts sit in sealed epochs, and the re-render of sampled sub-tiles, are the
//! caller's: they need the ledger and a renderer.

use super::RenderReceipt;
use super::fault::signed_by;
use crate::render::commit::{TileCommitment, encode_pixels};
use crate::render::job::JobSpec;
use crate::render::{Image, Tile, srgb8};

/// One tile's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileVerdict {
    pub index: u32,
    pub tile: Tile,
    /// The worker whose signed commitment the tile matches.
    pub worker: Option<[u8; 32]>,
    /// Which of the receipts it matched (its index in the slice given).
    pub receipt: Option<usize>,
    /// Why it fails, if it does.
    pub problem: Option<String>,
}

/// Checks every tile of `img` (the job's linear pixels of one frame) and of `png` (its 8-bit
/// sRGB bytes, three a pixel) against `receipts` (the job owner's receipts for job `job`).
/// `spec` is the frame's ([`JobSpec::at_frame`]: what its workers signed), and `first` the
/// receipt index of its first tile (frame offset x tiles per frame; 0 for a still). A verdict's
/// `index` is the tile's within the frame. An image of another size than the spec's is an
/// error; every other finding is a tile's problem.
pub fn check(
    job: [u8; 16],
    spec: &JobSpec,
    first: u32,
    img: &Image,
    png: &[u8],
    receipts: &[RenderReceipt],
) -> Result<Vec<TileVerdict>, String> {
    let s = spec.settings();
    if (img.width, img.height) != (s.width, s.height) || img.rgb.len() != (s.width * s.height) as usize {
        return Err(format!("the image is {}x{}; the job rendered {}x{}", img.width, img.height, s.width, s.height));
    }
    if png.len() != img.rgb.len() * 3 {
        return Err(format!(
            "the PNG has {} bytes of pixels; a {}x{} image has {}",
            png.len(),
            s.width,
            s.height,
            img.rgb.len() * 3
        ));
    }
    let spec_hash = spec.hash();
    let verdicts = s
        .tiles()
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let index = i as u32;
            let px = img.crop(t);
            let mut v = TileVerdict { index, tile: t, worker: None, receipt: None, problem: None };
            let png_off = (t.y..t.y + t.h).any(|y| {
                (t.x..t.x + t.w).any(|x| {
                    let p = (y * s.width + x) as usize;
                    img.rgb[p].map(srgb8) != [png[3 * p], png[3 * p + 1], png[3 * p + 2]]
                })
            });
            let mine: Vec<(usize, &RenderReceipt)> =
                receipts.iter().enumerate().filter(|(_, r)| r.job == job && r.tile == first + index).collect();
            let commitment = TileCommitment::of(job, spec_hash, t, &encode_pixels(&px));
            let matched = mine.iter().find(|(_, r)| {
                r.signed
                    .as_ref()
                    .is_some_and(|c| c.root == commitment.root && signed_by(&commitment, &r.worker, &c.sig))
            });
            v.problem = match (matched, mine.first()) {
                (Some((k, r)), _) => {
                    (v.worker, v.receipt) = (Some(r.worker), Some(*k));
                    png_off.then(|| "the PNG is not the sRGB encoding of the signed pixels".to_string())
                }
                (None, None) => Some("no receipt for this tile".into()),
                (None, Some((_, r))) => Some(match &r.signed {
                    None => "its receipt carries no signed commitment".into(),
                    Some(c) if c.root != commitment.root => format!(
                        "the pixels are not what worker {} signed (root {} here, {} signed)",
                        short(&r.worker),
                        short(&commitment.root),
                        short(&c.root)
                    ),
                    Some(_) => format!("worker {}'s signature does not verify", short(&r.worker)),
                }),
            };
            v
        })
        .collect();
    Ok(verdicts)
}

fn short(b: &[u8]) -> String {
    hex::encode(&b[..b.len().min(6)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::TileSignature;

    fn spec() -> JobSpec {
        JobSpec {
            scene: "cornell".into(),
            scene_toml: None,
            assets: Vec::new(),
            width: 64,
            height: 48,
            spp: 4,
            max_bounces: 2,
            tile: 16,
            unpaid: true,
            frames: Default::default(),
        }
    }

    /// A made-up image and honest receipts for it: tile i by worker i % 2.
    fn honest() -> (Image, Vec<u8>, Vec<RenderReceipt>, [ed25519_dalek::SigningKey; 2]) {
        let (spec, job) = (spec(), [5; 16]);
        let mut img = Image::new(64, 48);
        for (i, p) in img.rgb.iter_mut().enumerate() {
            *p = [i as f32 / 3072.0, 0.25, (i % 7) as f32 * 0.3];
        }
        let keys = [1u8, 2].map(|k| ed25519_dalek::SigningKey::from_bytes(&[k; 32]));
        let receipts = spec
            .settings()
            .tiles()
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let key = &keys[i % 2];
                let c = TileCommitment::of(job, spec.hash(), t, &encode_pixels(&img.crop(t)));
                let signed = Some(TileSignature { root: c.root, sig: c.sign(key) });
                RenderReceipt { job, tile: i as u32, worker: key.verifying_key().to_bytes(), work_units: 1, signed }
            })
            .collect();
        let png = img.to_rgb8();
        (img, png, receipts, keys)
    }

    fn problems(img: &Image, png: &[u8], receipts: &[RenderReceipt]) -> Vec<(u32, String)> {
        check([5; 16], &spec(), 0, img, png, receipts)
            .unwrap()
            .into_iter()
            .filter_map(|v| Some((v.index, v.problem?)))
            .collect()
    }

    /// An honest image passes, every tile matched to its worker; one changed pixel, a PNG
    /// changed alone, a missing receipt, a receipt without a commitment, one signed by another
    /// key and another spec: each names its tile and what is wrong, and only that tile.
    #[test]
    fn an_altered_tile_is_named_and_an_honest_image_passes() {
        let (img, png, receipts, keys) = honest();
        let v = check([5; 16], &spec(), 0, &img, &png, &receipts).unwrap();
        assert_eq!(v.len(), 12);
        assert!(v.iter().all(|v| v.problem.is_none() && v.worker.is_some()), "{v:?}");
        assert_eq!(v[3].worker, Some(keys[1].verifying_key().to_bytes()));

        // One pixel of tile 5 (x 16-31, y 16-31), in the linear image and the PNG alike.
        let mut changed = img.clone();
        changed.rgb[20 * 64 + 17][0] += 0.5;
        let p = problems(&changed, &changed.to_rgb8(), &receipts);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, 5);
        assert!(
            p[0].1.contains("not what worker")
                && p[0].1.contains(&hex::encode(&keys[1].verifying_key().to_bytes()[..6])),
            "{p:?}"
        );

        // The PNG alone, in tile 11 (the last).
        let mut png2 = png.clone();
        let last = png2.len() - 1;
        png2[last] ^= 0x40;
        assert_eq!(
            problems(&img, &png2, &receipts),
            vec![(11, "the PNG is not the sRGB encoding of the signed pixels".into())]
        );

        // No receipt for tile 0; none signed for tile 1; tile 2 signed by a stranger.
        let mut r = receipts.clone();
        r.retain(|r| r.tile != 0);
        r.iter_mut().find(|r| r.tile == 1).unwrap().signed = None;
        r.iter_mut().find(|r| r.tile == 2).unwrap().worker = [9; 32];
        let p = problems(&img, &png, &r);
        assert_eq!(p.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(p[0].1.contains("no receipt") && p[1].1.contains("no signed commitment"), "{p:?}");
        assert!(p[2].1.contains("signature does not verify"), "{p:?}");

        // Receipts of the same pixels under another spec (a cheaper render claimed as this one).
        let other = JobSpec { spp: 1, ..spec() };
        assert_eq!(
            check([5; 16], &other, 0, &img, &png, &receipts).unwrap().iter().filter(|v| v.problem.is_some()).count(),
            12
        );
        // The same pixels as frame 3 of a sequence: its receipts are other indices, its spec
        // another hash; receipts of frame 0 pass for no other frame.
        let mut seq = spec();
        seq.frames = crate::render::job::Frames { first: 0, last: 4, fps: 24 };
        let shifted: Vec<RenderReceipt> =
            receipts.iter().map(|r| RenderReceipt { tile: r.tile + 36, ..r.clone() }).collect();
        let bad = |spec: &JobSpec, first: u32, r: &[RenderReceipt]| {
            check([5; 16], spec, first, &img, &png, r).unwrap().iter().filter(|v| v.problem.is_some()).count()
        };
        assert_eq!(bad(&spec(), 36, &shifted), 0, "frame 3's receipts, at its offset");
        assert_eq!(bad(&spec(), 0, &shifted), 12, "at another offset: no receipt");
        assert_eq!(bad(&seq.at_frame(3), 36, &shifted), 12, "signed as a still, not as frame 3");
        // A wrong size is an error, not a verdict.
        assert!(check([5; 16], &spec(), 0, &Image::new(64, 47), &png, &receipts).unwrap_err().contains("64x47"));
    }
}
